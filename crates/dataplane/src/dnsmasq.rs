//! One dnsmasq per network, inside the network's `qdhcp-` namespace, as Neutron's DHCP agent
//! runs it: static leases only (`hosts` file of `MAC,hostname,IP`), per-subnet options (`opts`
//! file), SIGHUP after a change, stopped by its pid (checked against `/proc/PID/cmdline`), and
//! found again from its pid file after kumo restarts.

use crate::cmd::run;
use crate::{Error, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A subnet served by the network's dnsmasq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSubnet {
    /// The `set:TAG` of the range (Neutron uses `subnet-<id>`).
    pub tag: String,
    /// Network address and prefix length (`10.0.0.0`, 24).
    pub network: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
    pub lease_seconds: u32,
    /// Routes pushed with DHCP option 121 (and Microsoft's 249): (destination CIDR, next hop),
    /// e.g. the subnet's host_routes and `169.254.169.254/32` via the DHCP port for the
    /// metadata service. A client that gets option 121 ignores the router option (RFC 3442),
    /// so the default route via the gateway is added to the list.
    pub classless_routes: Vec<(String, IpAddr)>,
    /// The network's MTU, pushed with option 26 (IPv4); `None`: not pushed.
    pub mtu: Option<u32>,
}

/// A port's fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: String,
    pub hostname: String,
    pub ip: IpAddr,
}

/// What one network's dnsmasq serves, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The namespace dnsmasq runs in (normally [`crate::dhcp_namespace`]).
    pub namespace: String,
    /// The interface inside it that dnsmasq binds (the `tap`/`ns-` device).
    pub interface: String,
    /// Directory for this network's files (hosts, opts, leases, pid); created 0755 because
    /// dnsmasq re-reads the files after dropping privileges.
    pub dir: PathBuf,
    pub subnets: Vec<DhcpSubnet>,
}

/// The dnsmasq of one network.
#[derive(Debug, Clone)]
pub struct Dnsmasq {
    config: DhcpConfig,
}

fn mask_v4(len: u8) -> String {
    let bits: u32 = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    std::net::Ipv4Addr::from(bits).to_string()
}

fn check_field(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains([',', '\n', ' ', '\0']) {
        return Err(Error::Invalid(format!("{what} `{value}`")));
    }
    Ok(())
}

impl Dnsmasq {
    pub fn new(config: DhcpConfig) -> Self {
        Dnsmasq { config }
    }

    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    pub fn hosts_path(&self) -> PathBuf {
        self.config.dir.join("host")
    }
    pub fn opts_path(&self) -> PathBuf {
        self.config.dir.join("opts")
    }
    pub fn leases_path(&self) -> PathBuf {
        self.config.dir.join("leases")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.config.dir.join("pid")
    }

    /// The command line (without the program name), Neutron's flags.
    pub fn args(&self) -> Result<Vec<String>> {
        check_field("interface", &self.config.interface)?;
        let p = |path: PathBuf| path.display().to_string();
        let mut args = vec![
            "--conf-file=/dev/null".to_owned(),
            "--no-hosts".to_owned(),
            "--no-resolv".to_owned(),
            "--port=0".to_owned(),
            format!("--interface={}", self.config.interface),
            "--bind-interfaces".to_owned(),
            "--except-interface=lo".to_owned(),
        ];
        for s in &self.config.subnets {
            check_field("subnet tag", &s.tag)?;
            let mask = match s.network {
                IpAddr::V4(_) => mask_v4(s.prefix_len),
                IpAddr::V6(_) => s.prefix_len.to_string(),
            };
            args.push(format!(
                "--dhcp-range=set:{},{},static,{},{}s",
                s.tag, s.network, mask, s.lease_seconds
            ));
        }
        args.extend([
            format!("--dhcp-hostsfile={}", p(self.hosts_path())),
            format!("--dhcp-optsfile={}", p(self.opts_path())),
            format!("--dhcp-leasefile={}", p(self.leases_path())),
            format!("--pid-file={}", p(self.pid_path())),
            // Its own log next to its files (there is no syslog in a namespace); one line
            // per lease, so a guest without an address can be diagnosed.
            format!("--log-facility={}", p(self.config.dir.join("log"))),
            "--log-dhcp".to_owned(),
        ]);
        Ok(args)
    }

    /// The hosts file text: `MAC,hostname,IP` per line (IPv6 in brackets, as Neutron writes).
    pub fn render_hosts(hosts: &[DhcpHost]) -> Result<String> {
        let mut out = String::new();
        for h in hosts {
            check_field("MAC", &h.mac)?;
            check_field("hostname", &h.hostname)?;
            let ip = match h.ip {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            let _ = writeln!(out, "{},{},{}", h.mac, h.hostname, ip);
        }
        Ok(out)
    }

    /// The opts file text: router and DNS servers per subnet tag (an empty router option for a
    /// subnet without gateway, so clients get no default route); for an IPv6 subnet only its
    /// DNS servers (its routes come from router advertisements).
    pub fn render_opts(&self) -> String {
        let mut out = String::new();
        for s in self.config.subnets.iter().filter(|s| s.network.is_ipv6()) {
            let dns: Vec<String> = s
                .dns_servers
                .iter()
                .filter(|d| d.is_ipv6())
                .map(|d| format!("[{d}]"))
                .collect();
            if !dns.is_empty() {
                let _ = writeln!(out, "tag:{},option6:dns-server,{}", s.tag, dns.join(","));
            }
        }
        for s in self.config.subnets.iter().filter(|s| s.network.is_ipv4()) {
            match s.gateway {
                Some(gw) => {
                    let _ = writeln!(out, "tag:{},option:router,{gw}", s.tag);
                }
                None => {
                    let _ = writeln!(out, "tag:{},option:router", s.tag);
                }
            }
            if let Some(mtu) = s.mtu {
                let _ = writeln!(out, "tag:{},option:mtu,{mtu}", s.tag);
            }
            if !s.dns_servers.is_empty() {
                let dns: Vec<String> = s.dns_servers.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(out, "tag:{},option:dns-server,{}", s.tag, dns.join(","));
            }
            if !s.classless_routes.is_empty() {
                let mut routes: Vec<String> = s
                    .classless_routes
                    .iter()
                    .map(|(dest, hop)| format!("{dest},{hop}"))
                    .collect();
                if let Some(gw) = s.gateway {
                    routes.push(format!("0.0.0.0/0,{gw}"));
                }
                let routes = routes.join(",");
                let _ = writeln!(out, "tag:{},option:classless-static-route,{routes}", s.tag);
                let _ = writeln!(out, "tag:{},249,{routes}", s.tag);
            }
        }
        out
    }

    /// Writes the hosts and opts files; true when either changed.
    pub async fn write_files(&self, hosts: &[DhcpHost]) -> Result<bool> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.config.dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
        let mut changed = false;
        for (path, text) in [
            (self.hosts_path(), Self::render_hosts(hosts)?),
            (self.opts_path(), self.render_opts()),
        ] {
            if tokio::fs::read_to_string(&path).await.ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            // Write-then-rename, so dnsmasq never reads half a file.
            let tmp = path.with_extension("tmp");
            tokio::fs::write(&tmp, &text)
                .await
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                .await
                .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| Error::io(format!("renaming to {}", path.display()), e))?;
            changed = true;
        }
        Ok(changed)
    }

    /// The pid of this network's running dnsmasq: from the pid file, and only if
    /// `/proc/PID/cmdline` is a dnsmasq with this pid file (a reused pid is not ours).
    pub fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_path()).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let want = format!("--pid-file={}", self.pid_path().display());
        let mut parts = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
        let prog_ok = parts.next().is_some_and(|p| p.ends_with("dnsmasq"));
        (prog_ok && parts.any(|a| a == want)).then_some(pid)
    }

    /// Whether the running dnsmasq was started with exactly [`Dnsmasq::args`] (false when it
    /// is not running): a change of interface or subnets needs a restart, not a SIGHUP.
    pub fn running_args_match(&self) -> Result<bool> {
        let Some(pid) = self.pid() else {
            return Ok(false);
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return Ok(false);
        };
        let running: Vec<String> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok(running == self.args()?)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Writes the files and makes dnsmasq serve them: starts it inside the namespace if it is not
    /// running, sends SIGHUP if it is and a file changed. Returns the pid.
    pub async fn ensure(&self, hosts: &[DhcpHost]) -> Result<i32> {
        let changed = self.write_files(hosts).await?;
        if let Some(pid) = self.pid() {
            if changed {
                self.reload()?;
            }
            return Ok(pid);
        }
        self.start().await
    }

    async fn start(&self) -> Result<i32> {
        let ns = &self.config.namespace;
        if !crate::netns::namespace_exists(ns)? {
            return Err(Error::NoNamespace(ns.clone()));
        }
        if !crate::tool_available("dnsmasq") {
            return Err(Error::MissingTool {
                tool: "dnsmasq",
                package: "dnsmasq-base",
            });
        }
        let _ = std::fs::remove_file(self.pid_path());
        let args = self.args()?;
        let mut all: Vec<&str> = vec!["netns", "exec", ns, "dnsmasq"];
        all.extend(args.iter().map(String::as_str));
        // dnsmasq daemonizes; the parent exits once the daemon is up (or failed to start).
        run("ip", &all, None).await?;
        for _ in 0..50 {
            if let Some(pid) = self.pid() {
                tracing::info!(namespace = %ns, pid, "dnsmasq started");
                return Ok(pid);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Invalid(format!(
            "dnsmasq started in {ns} but wrote no usable pid file at {}",
            self.pid_path().display()
        )))
    }

    /// SIGHUP: dnsmasq re-reads the hosts and opts files.
    pub fn reload(&self) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Err(Error::Invalid(format!(
                "dnsmasq for {} is not running; call ensure() to start it",
                self.config.namespace
            )));
        };
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| Error::sys("SIGHUP dnsmasq", e))
    }

    /// Stops this network's dnsmasq (SIGTERM, then SIGKILL after 5 s); succeeds if it is not
    /// running. Files are kept (see [`Dnsmasq::remove_files`]).
    pub async fn stop(&self) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let target = Pid::from_raw(pid);
        match kill(target, Signal::SIGTERM) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => return Err(Error::sys("SIGTERM dnsmasq", e)),
        }
        for _ in 0..250 {
            if !process_alive(pid) {
                let _ = std::fs::remove_file(self.pid_path());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = kill(target, Signal::SIGKILL);
        let _ = std::fs::remove_file(self.pid_path());
        Ok(())
    }

    /// Removes the directory with the hosts, opts, leases and pid files (stop first).
    pub async fn remove_files(&self) -> Result<()> {
        match tokio::fs::remove_dir_all(&self.config.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing {}", self.config.dir.display()),
                e,
            )),
        }
    }
}

/// Whether `pid` is a live process (an exited one waiting to be reaped, state `Z`, is not).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the `(comm)` field, which may itself contain spaces or `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dnsmasq {
        Dnsmasq::new(DhcpConfig {
            namespace: "qdhcp-n1".into(),
            interface: "tap0f6a4c2e-5b".into(),
            dir: "/var/lib/kumo/dhcp/n1".into(),
            subnets: vec![DhcpSubnet {
                mtu: None,
                tag: "subnet-s1".into(),
                network: "10.0.0.0".parse().expect("ip"),
                prefix_len: 24,
                gateway: Some("10.0.0.1".parse().expect("ip")),
                dns_servers: vec!["10.0.0.2".parse().expect("ip")],
                lease_seconds: 86400,
                classless_routes: vec![],
            }],
        })
    }

    #[test]
    fn classless_routes_carry_the_default_route_too() {
        let mut d = sample();
        d.config.subnets[0].classless_routes =
            vec![("169.254.169.254/32".into(), "10.0.0.2".parse().expect("ip"))];
        let opts = d.render_opts();
        assert!(opts.contains(
            "tag:subnet-s1,option:classless-static-route,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n"
        ));
        assert!(
            opts.contains("tag:subnet-s1,249,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n")
        );
    }

    #[test]
    fn the_network_mtu_goes_with_option_26() {
        let mut d = sample();
        assert!(!d.render_opts().contains("option:mtu"));
        d.config.subnets[0].mtu = Some(1450);
        assert!(d.render_opts().contains("tag:subnet-s1,option:mtu,1450\n"));
    }

    #[test]
    fn neutron_flags_and_files() {
        let d = sample();
        let args = d.args().expect("valid");
        assert!(args.contains(
            &"--dhcp-range=set:subnet-s1,10.0.0.0,static,255.255.255.0,86400s".to_owned()
        ));
        assert!(args.contains(&"--pid-file=/var/lib/kumo/dhcp/n1/pid".to_owned()));
        assert!(args.contains(&"--interface=tap0f6a4c2e-5b".to_owned()));
        let hosts = Dnsmasq::render_hosts(&[DhcpHost {
            mac: "fa:16:3e:00:00:01".into(),
            hostname: "host-10-0-0-5".into(),
            ip: "10.0.0.5".parse().expect("ip"),
        }])
        .expect("valid");
        assert_eq!(hosts, "fa:16:3e:00:00:01,host-10-0-0-5,10.0.0.5\n");
        assert_eq!(
            d.render_opts(),
            "tag:subnet-s1,option:router,10.0.0.1\ntag:subnet-s1,option:dns-server,10.0.0.2\n"
        );
        assert_eq!(mask_v4(0), "0.0.0.0");
        assert_eq!(mask_v4(32), "255.255.255.255");
    }
}
