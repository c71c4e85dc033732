//! Volumes exported to other hosts over NBD (Cinder's "target" side of an attachment).
//!
//! A compute host that is not this volume service's own host cannot open the volume's file.
//! For such a connector the volume is exported by a `qemu-storage-daemon` of its own: the
//! daemon opens the volume's format node (qcow2 is parsed here, on the host that holds the
//! file) and serves its guest-visible contents, raw, on `address:port` under the export name
//! `volume-<id>`. The guest's QEMU on the other host opens that export as an `nbd` node.
//!
//! One daemon per exported volume, daemonized (`--daemonize`, `--pidfile`): it outlives a kumo
//! restart or a `kill -9` of kumo, so guests keep their disk meanwhile; nothing but a pid file
//! and a small record (`<volume>.json`: address, port, export name) per export is kept here,
//! and a daemon is only ever stopped by the pid its pid file names, after `/proc/PID/cmdline`
//! proved it is the daemon of that pid file. No QMP state to rebuild after a restart, and one
//! failing export cannot take the others down.
//!
//! When the host's data plane lives in a network namespace (`[network] local_ip` on a
//! `<prefix>kumo-host` namespace), the daemon is started inside it so it listens on the
//! underlay address the other hosts reach; the namespace is entered by a dedicated thread
//! (setns), never by the process.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How attachments are connected (`[volume] target_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetProtocol {
    /// The volume's file for a connector on this host, NBD for a connector on another host.
    Auto,
    /// NBD for every connector, this host's too.
    Nbd,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub protocol: TargetProtocol,
    /// This volume service's host name (`[DEFAULT] host`, else the machine's hostname):
    /// a connector naming another host gets an NBD export.
    pub own_host: String,
    /// The address exports listen on (`[volume] target_ip_address`).
    pub address: String,
    /// The first port exports take (`[volume] target_port`); each export takes the lowest
    /// free one from there.
    pub first_port: u16,
    /// The network namespace to start daemons in (this host's data plane namespace), if any.
    pub namespace: Option<String>,
    /// The qemu-storage-daemon binary.
    pub daemon: String,
    /// Pid files, records and logs of the exports.
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exporting volume {volume} over NBD: {reason}")]
    Start { volume: String, reason: String },
    #[error("network namespace: {0}")]
    Namespace(#[from] dataplane::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io { what, source }
}

/// One running export, as the connection info announces it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdExport {
    pub volume_id: String,
    pub address: String,
    pub port: u16,
    pub name: String,
    /// The TLS pre-shared key (hex) a client must present, with the export name as its
    /// identity; `None`: an export made without TLS.
    #[serde(default)]
    pub psk: Option<String>,
}

impl std::fmt::Debug for NbdExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes to a log.
        f.debug_struct("NbdExport")
            .field("volume_id", &self.volume_id)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("tls", &self.psk.is_some())
            .finish()
    }
}

/// What a re-export must keep: what the attachments were told.
#[derive(Clone, PartialEq, Eq)]
pub struct Reuse {
    pub port: u16,
    pub psk: Option<String>,
}

/// A new TLS pre-shared key: 32 random bytes, hex.
fn new_psk() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// What to export: the volume's file and its format.
#[derive(Debug, Clone)]
pub struct ExportSource<'a> {
    pub volume_id: &'a str,
    pub path: &'a Path,
    pub format: &'a str,
    pub writable: bool,
}

/// Whether a connector's host needs an export: it names a host other than ours, or the
/// protocol is NBD for everyone. A connector without a host is taken as ours (the legacy
/// actions' callers on this host send one without).
pub fn wants_nbd(protocol: TargetProtocol, own_host: &str, connector: &Value) -> bool {
    match protocol {
        TargetProtocol::Nbd => true,
        TargetProtocol::Auto => connector["host"]
            .as_str()
            .is_some_and(|h| !h.is_empty() && h != own_host),
    }
}

/// Whether any thread of process `pid` still runs. The thread group leader of a
/// multi-threaded daemon shows `Z` as soon as it exits while its other threads (and the
/// listening socket they share) are still there: only when every thread is gone is the
/// port free.
pub fn process_running(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| {
                // The state follows the `(comm)` field, which may itself contain `)`.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.trim_start().chars().next()
            })
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Write a file only root reads (it holds a key).
fn write_private(path: &Path, text: &str) -> Result<(), TargetError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io(format!("writing {}", path.display())))
}

/// The export name of a volume.
pub fn export_name(volume_id: &str) -> String {
    format!("volume-{volume_id}")
}

/// The NBD exports of this volume service.
pub struct NbdTargets {
    cfg: TargetConfig,
    /// Serialises port choice and daemon starts/stops.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NbdTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdTargets")
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Ports tried past `target_port` before giving up (other listeners on the address).
const PORT_TRIES: u16 = 64;

impl NbdTargets {
    pub fn new(cfg: TargetConfig) -> Self {
        Self {
            cfg,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &TargetConfig {
        &self.cfg
    }

    pub fn wants_nbd(&self, connector: &Value) -> bool {
        wants_nbd(self.cfg.protocol, &self.cfg.own_host, connector)
    }

    fn file(&self, volume_id: &str, ext: &str) -> PathBuf {
        // Volume ids are uuids; anything else is reduced to a safe file name.
        let safe: String = volume_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.cfg.dir.join(format!("{safe}.{ext}"))
    }

    pub fn pid_path(&self, volume_id: &str) -> PathBuf {
        self.file(volume_id, "pid")
    }

    fn record(&self, volume_id: &str) -> Option<NbdExport> {
        let text = std::fs::read_to_string(self.file(volume_id, "json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the volume has an export's files here (a daemon running, or left by a crash).
    pub fn is_recorded(&self, volume_id: &str) -> bool {
        self.file(volume_id, "json").exists() || self.file(volume_id, "pid").exists()
    }

    /// Every export recorded here (running or not).
    pub fn recorded(&self) -> Vec<NbdExport> {
        let Ok(rd) = std::fs::read_dir(&self.cfg.dir) else {
            return Vec::new();
        };
        let mut out: Vec<NbdExport> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json")
                    .and_then(|id| self.record(id))
                    .or_else(|| {
                        // A pid file without a record (a crash between the start and the
                        // record's write): still ours to stop.
                        name.strip_suffix(".pid").map(|id| NbdExport {
                            volume_id: id.to_string(),
                            address: String::new(),
                            port: 0,
                            name: export_name(id),
                            psk: None,
                        })
                    })
            })
            .collect();
        out.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
        out.dedup_by(|a, b| a.volume_id == b.volume_id);
        out
    }

    /// The pid of the volume's running daemon: from its pid file, and only if
    /// `/proc/PID/cmdline` is a qemu-storage-daemon started with that pid file (a reused pid
    /// is not ours).
    pub fn pid(&self, volume_id: &str) -> Option<i32> {
        let pid_path = self.pid_path(volume_id);
        let pid: i32 = std::fs::read_to_string(&pid_path)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let want = pid_path.to_string_lossy();
        let ours = args
            .first()
            .is_some_and(|p| p.ends_with("qemu-storage-daemon"))
            && args.windows(2).any(|w| w[0] == "--pidfile" && w[1] == want);
        (ours && process_running(pid)).then_some(pid)
    }

    /// The volume's export, started if it is not running. `reuse`: the port and key the
    /// attachments were told (a re-export after a restart must keep them); `None` picks the
    /// lowest free port from `target_port` and a new key.
    pub async fn ensure(
        &self,
        src: &ExportSource<'_>,
        reuse: Option<Reuse>,
    ) -> Result<NbdExport, TargetError> {
        let _g = self.lock.lock().await;
        if self.pid(src.volume_id).is_some()
            && let Some(rec) = self.record(src.volume_id)
            && reuse
                .as_ref()
                .is_none_or(|r| r.port == rec.port && r.psk == rec.psk)
        {
            return Ok(rec);
        }
        let port = reuse.as_ref().map(|r| r.port);
        let psk = match reuse {
            Some(r) => r.psk,
            None => Some(new_psk().map_err(io("reading /dev/urandom"))?),
        };
        // A daemon without a usable record, or on another port than the one asked for.
        self.stop_locked(src.volume_id).await?;
        {
            use std::os::unix::fs::DirBuilderExt;
            // Keys live here: only root reads the directory.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.cfg.dir)
                .map_err(io(format!("creating {}", self.cfg.dir.display())))?;
        }
        if let Some(key) = &psk {
            self.write_psk(src.volume_id, key)?;
        }
        let candidates: Vec<u16> = match port {
            Some(p) => vec![p],
            None => {
                let taken: Vec<u16> = self
                    .recorded()
                    .iter()
                    .filter(|r| r.volume_id != src.volume_id)
                    .map(|r| r.port)
                    .collect();
                (0..PORT_TRIES)
                    .filter_map(|n| self.cfg.first_port.checked_add(n))
                    .filter(|p| !taken.contains(p))
                    .collect()
            }
        };
        let mut last = String::from("no port to try");
        for p in candidates {
            match self.start(src, p, psk.is_some()).await? {
                Ok(()) => {
                    let rec = NbdExport {
                        volume_id: src.volume_id.to_string(),
                        address: self.cfg.address.clone(),
                        port: p,
                        name: export_name(src.volume_id),
                        psk: psk.clone(),
                    };
                    let body = serde_json::to_string(&rec).map_err(|e| TargetError::Start {
                        volume: src.volume_id.into(),
                        reason: e.to_string(),
                    })?;
                    let path = self.file(src.volume_id, "json");
                    write_private(&path, &body)?;
                    tracing::info!(volume = %src.volume_id, address = %rec.address, port = p,
                        tls = rec.psk.is_some(), namespace = ?self.cfg.namespace, pid = ?self.pid(src.volume_id), "volume exported over NBD");
                    return Ok(rec);
                }
                Err(busy) => {
                    tracing::info!(volume = %src.volume_id, port = p, reason = %busy, "NBD port busy, trying the next");
                    last = busy;
                }
            }
        }
        Err(TargetError::Start {
            volume: src.volume_id.into(),
            reason: last,
        })
    }

    /// The directory of an export's `keys.psk` (QEMU's tls-creds-psk reads it there).
    fn psk_dir(&self, volume_id: &str) -> PathBuf {
        self.file(volume_id, "tls")
    }

    fn write_psk(&self, volume_id: &str, key: &str) -> Result<(), TargetError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.psk_dir(volume_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        write_private(
            &dir.join("keys.psk"),
            &format!("{}:{key}\n", export_name(volume_id)),
        )
    }

    fn args(&self, src: &ExportSource<'_>, port: u16, tls: bool) -> Vec<String> {
        let ro = !src.writable;
        let file = serde_json::json!({"driver": "file", "node-name": "file",
            "filename": src.path.to_string_lossy(), "read-only": ro, "discard": "unmap"});
        let fmt = serde_json::json!({"driver": src.format, "node-name": "fmt", "file": "file",
            "read-only": ro, "discard": "unmap"});
        // An IPv6 address goes in brackets in the dotted key syntax's host.
        let host = if self.cfg.address.contains(':') {
            format!("[{}]", self.cfg.address)
        } else {
            self.cfg.address.clone()
        };
        let mut a: Vec<String> = vec![
            "--daemonize".into(),
            "--pidfile".into(),
            self.pid_path(src.volume_id).to_string_lossy().into_owned(),
        ];
        let mut server = format!("addr.type=inet,addr.host={host},addr.port={port}");
        if tls {
            // Clients must complete a TLS handshake with the export's pre-shared key.
            let obj = serde_json::json!({"qom-type": "tls-creds-psk", "id": "tls",
                "endpoint": "server", "dir": self.psk_dir(src.volume_id).to_string_lossy()});
            a.extend(["--object".into(), obj.to_string()]);
            server.push_str(",tls-creds=tls");
        }
        a.extend([
            "--blockdev".into(),
            file.to_string(),
            "--blockdev".into(),
            fmt.to_string(),
            "--nbd-server".into(),
            server,
            "--export".into(),
            format!(
                "type=nbd,id=export,node-name=fmt,name={},writable={}",
                export_name(src.volume_id),
                if src.writable { "on" } else { "off" }
            ),
        ]);
        a
    }

    /// Start the daemon on `port`. Outer error: it cannot start at all; inner error: the port
    /// is taken (try another).
    async fn start(
        &self,
        src: &ExportSource<'_>,
        port: u16,
        tls: bool,
    ) -> Result<Result<(), String>, TargetError> {
        let log = self.file(src.volume_id, "log");
        let stderr =
            std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let mut cmd = std::process::Command::new(&self.cfg.daemon);
        cmd.args(self.args(src, port, tls))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        // With --daemonize the command returns once the daemon listens (or failed to).
        let status = match &self.cfg.namespace {
            Some(ns) => {
                let ns = ns.clone();
                dataplane::netns::run_in_namespace(&ns, move || async move { cmd.status() }).await?
            }
            None => tokio::task::spawn_blocking(move || cmd.status())
                .await
                .map_err(|e| TargetError::Start {
                    volume: src.volume_id.into(),
                    reason: e.to_string(),
                })?,
        }
        .map_err(io(format!("running {}", self.cfg.daemon)))?;
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if status.success() && self.pid(src.volume_id).is_some() {
            return Ok(Ok(()));
        }
        let err = err.trim().to_string();
        if err.contains("Address already in use") {
            return Ok(Err(err));
        }
        Err(TargetError::Start {
            volume: src.volume_id.into(),
            reason: format!("{} exited with {status}: {err}", self.cfg.daemon),
        })
    }

    /// Stop the volume's export (SIGTERM, SIGKILL after 5 s) and forget it; true if a daemon
    /// was running.
    pub async fn stop(&self, volume_id: &str) -> Result<bool, TargetError> {
        let _g = self.lock.lock().await;
        self.stop_locked(volume_id).await
    }

    async fn stop_locked(&self, volume_id: &str) -> Result<bool, TargetError> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = self.pid(volume_id);
        if let Some(pid) = pid {
            let target = Pid::from_raw(pid);
            let _ = kill(target, Signal::SIGTERM);
            let mut gone = false;
            for _ in 0..250 {
                if !process_running(pid) {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !gone {
                tracing::warn!(volume = %volume_id, pid, "qemu-storage-daemon ignored SIGTERM; SIGKILL");
                let _ = kill(target, Signal::SIGKILL);
            }
            tracing::info!(volume = %volume_id, pid, "NBD export stopped");
        }
        for ext in ["pid", "json", "log"] {
            let p = self.file(volume_id, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", p.display()))(e)),
            }
        }
        let tls = self.psk_dir(volume_id);
        match std::fs::remove_dir_all(&tls) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", tls.display()))(e)),
        }
        Ok(pid.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nbd_for_other_hosts_or_when_asked() {
        let other = json!({"host": "hostb", "ip": "10.0.0.2"});
        let mine = json!({"host": "hosta"});
        assert!(wants_nbd(TargetProtocol::Auto, "hosta", &other));
        assert!(!wants_nbd(TargetProtocol::Auto, "hosta", &mine));
        assert!(!wants_nbd(TargetProtocol::Auto, "hosta", &json!({})));
        assert!(wants_nbd(TargetProtocol::Nbd, "hosta", &mine));
    }

    #[test]
    fn daemon_arguments() {
        let t = NbdTargets::new(TargetConfig {
            protocol: TargetProtocol::Auto,
            own_host: "a".into(),
            address: "10.250.0.1".into(),
            first_port: 10809,
            namespace: None,
            daemon: "qemu-storage-daemon".into(),
            dir: "/st/exports".into(),
        });
        let src = ExportSource {
            volume_id: "v1",
            path: Path::new("/st/volumes/volume-v1.qcow2"),
            format: "qcow2",
            writable: false,
        };
        let tls = t.args(&src, 10810, true);
        assert_eq!(tls[3], "--object");
        let obj: Value = serde_json::from_str(&tls[4]).expect("json");
        assert_eq!(
            obj,
            json!({"qom-type": "tls-creds-psk", "id": "tls", "endpoint": "server",
                "dir": "/st/exports/v1.tls"})
        );
        assert_eq!(
            tls[10],
            "addr.type=inet,addr.host=10.250.0.1,addr.port=10810,tls-creds=tls"
        );
        let a = t.args(&src, 10810, false);
        assert_eq!(a[..3], ["--daemonize", "--pidfile", "/st/exports/v1.pid"]);
        let fmt: Value = serde_json::from_str(&a[6]).expect("json");
        assert_eq!(fmt["driver"], "qcow2");
        assert_eq!(fmt["read-only"], true);
        assert_eq!(a[8], "addr.type=inet,addr.host=10.250.0.1,addr.port=10810");
        assert_eq!(
            a[10],
            "type=nbd,id=export,node-name=fmt,name=volume-v1,writable=off"
        );
    }
}
