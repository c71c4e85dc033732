//! IPv6 router advertisements of one router, as Neutron's L3 agent sends them: one radvd per
//! `qrouter-` namespace that has an interface on a subnet with an `ipv6_ra_mode`, its config
//! written from the plan, SIGHUP after a change, stopped by its pid (checked against
//! `/proc/PID/cmdline`), found again from its pid file after kumo restarts.

use crate::cmd::run;
use crate::plan::RouterAdvert;
use crate::{Error, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Neutron's defaults (`min_rtr_adv_interval`, `max_rtr_adv_interval`).
const MIN_INTERVAL_S: u32 = 30;
const MAX_INTERVAL_S: u32 = 100;
/// IPv6's minimum link MTU: a smaller network MTU is not advertised.
const IPV6_MIN_MTU: u32 = 1280;
/// radvd takes at most three RDNSS addresses per option.
const MAX_RDNSS: usize = 3;

/// The radvd of one router namespace, its files in `dir`.
#[derive(Debug, Clone)]
pub struct Radvd {
    namespace: String,
    dir: PathBuf,
}

/// The config text for these interfaces (`qr-…` name, what to advertise on it).
pub fn render(interfaces: &[(String, &RouterAdvert)]) -> String {
    let mut out = String::new();
    for (ifname, ra) in interfaces {
        let _ = writeln!(out, "interface {ifname}\n{{");
        let _ = writeln!(out, "   AdvSendAdvert on;");
        let _ = writeln!(out, "   MinRtrAdvInterval {MIN_INTERVAL_S};");
        let _ = writeln!(out, "   MaxRtrAdvInterval {MAX_INTERVAL_S};");
        if ra.mtu >= IPV6_MIN_MTU {
            let _ = writeln!(out, "   AdvLinkMTU {};", ra.mtu);
        }
        if ra.other_config {
            let _ = writeln!(out, "   AdvOtherConfigFlag on;");
        }
        if ra.managed {
            let _ = writeln!(out, "   AdvManagedFlag on;");
        }
        if !ra.dns_servers.is_empty() {
            let dns: Vec<String> = ra
                .dns_servers
                .iter()
                .take(MAX_RDNSS)
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(out, "   RDNSS {} {{}};", dns.join(" "));
        }
        for (prefix, autonomous) in &ra.prefixes {
            let auto = if *autonomous { "on" } else { "off" };
            let _ = writeln!(
                out,
                "   prefix {prefix}\n   {{\n        AdvOnLink on;\n        AdvAutonomous {auto};\n   }};"
            );
        }
        let _ = writeln!(out, "}};");
    }
    out
}

impl Radvd {
    pub fn new(namespace: impl Into<String>, dir: PathBuf) -> Self {
        Radvd {
            namespace: namespace.into(),
            dir,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("radvd.conf")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn args(&self) -> Vec<String> {
        vec![
            "-C".into(),
            self.config_path().display().to_string(),
            "-p".into(),
            self.pid_path().display().to_string(),
            // Its own log next to its files: there is no syslog in a namespace.
            "-m".into(),
            "logfile".into(),
            "-l".into(),
            self.dir.join("log").display().to_string(),
        ]
    }

    /// The pid of this router's running radvd: from the pid file, and only if
    /// `/proc/PID/cmdline` is a radvd with this pid file (a reused pid is not ours).
    pub fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_path()).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let parts: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let want = self.pid_path().display().to_string();
        let prog_ok = parts.first().is_some_and(|p| p.ends_with("radvd"));
        (prog_ok && parts.windows(2).any(|w| w[0] == "-p" && w[1] == want)).then_some(pid)
    }

    /// Writes `config` and makes radvd advertise it: starts radvd in the namespace if it is not
    /// running, SIGHUP if it is and the config changed. True when something changed.
    pub async fn ensure(&self, config: &str) -> Result<bool> {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let path = self.config_path();
        let changed = tokio::fs::read_to_string(&path).await.ok().as_deref() != Some(config);
        if changed {
            let tmp = path.with_extension("tmp");
            tokio::fs::write(&tmp, config)
                .await
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            // radvd refuses a config file others may write.
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                .await
                .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| Error::io(format!("renaming to {}", path.display()), e))?;
        }
        if let Some(pid) = self.pid() {
            if changed {
                kill(Pid::from_raw(pid), Signal::SIGHUP)
                    .map_err(|e| Error::Invalid(format!("SIGHUP to radvd {pid}: {e}")))?;
            }
            return Ok(changed);
        }
        self.start().await?;
        Ok(true)
    }

    async fn start(&self) -> Result<i32> {
        let ns = &self.namespace;
        if !crate::netns::namespace_exists(ns)? {
            return Err(Error::NoNamespace(ns.clone()));
        }
        if !crate::tool_available("radvd") {
            return Err(Error::MissingTool {
                tool: "radvd",
                package: "radvd",
            });
        }
        let _ = std::fs::remove_file(self.pid_path());
        let args = self.args();
        let mut all: Vec<&str> = vec!["netns", "exec", ns, "radvd"];
        all.extend(args.iter().map(String::as_str));
        // radvd daemonizes; the parent exits once the config was read.
        run("ip", &all, None).await?;
        for _ in 0..100 {
            if let Some(pid) = self.pid() {
                tracing::info!(namespace = %ns, pid, "radvd started");
                return Ok(pid);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        Err(Error::Invalid(format!(
            "radvd started in {ns} but wrote no usable pid file at {}; its log: {}",
            self.pid_path().display(),
            log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )))
    }

    /// Stops radvd (if running) and removes its files. True when it was running.
    pub async fn stop(&self) -> Result<bool> {
        let was = match self.pid() {
            Some(pid) => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                for _ in 0..100 {
                    if self.pid().is_none()
                        || !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                true
            }
            None => false,
        };
        match tokio::fs::remove_dir_all(&self.dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", self.dir.display()), e)),
        }
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_as_neutron_writes_it() {
        let slaac = RouterAdvert {
            managed: false,
            other_config: false,
            prefixes: vec![("fd00:1::/64".into(), true)],
            dns_servers: vec![],
            mtu: 1450,
        };
        let stateful = RouterAdvert {
            managed: true,
            other_config: false,
            prefixes: vec![("fd00:2::/64".into(), false)],
            dns_servers: vec!["fd00:2::53".parse().expect("ip")],
            mtu: 1000,
        };
        let text = render(&[("qr-a".into(), &slaac), ("qr-b".into(), &stateful)]);
        assert!(text.starts_with("interface qr-a\n{\n   AdvSendAdvert on;\n"));
        assert!(text.contains("AdvLinkMTU 1450;"));
        // below IPv6's minimum MTU nothing is advertised
        assert_eq!(text.matches("AdvLinkMTU").count(), 1);
        assert!(text.contains(
            "prefix fd00:1::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };"
        ));
        assert!(text.contains("AdvManagedFlag on;"));
        assert!(!text.contains("AdvOtherConfigFlag"));
        assert!(text.contains(
            "prefix fd00:2::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous off;"
        ));
        assert!(text.contains("RDNSS fd00:2::53 {};"));
    }
}
