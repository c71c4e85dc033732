//! The state directory: configuration, credentials, databases, keys, logs, pid.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// `--state-dir`, else `$KUMO_STATE_DIR`, else `~/.kumo`.
    pub fn resolve(arg: Option<PathBuf>) -> Result<Self> {
        let root = match arg {
            Some(p) => p,
            None => match std::env::var_os("KUMO_STATE_DIR") {
                Some(p) => PathBuf::from(p),
                None => {
                    let home =
                        std::env::var_os("HOME").context("HOME is not set; pass --state-dir")?;
                    PathBuf::from(home).join(".kumo")
                }
            },
        };
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()?.join(root)
        };
        Ok(Self { root })
    }

    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(self.logs())
            .with_context(|| format!("cannot create state directory {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).ok();
        Ok(())
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("kumo.pid")
    }
    /// The URL the running kumo listens on, written once it is bound.
    pub fn endpoint_file(&self) -> PathBuf {
        self.root.join("endpoint")
    }
    pub fn admin_password_file(&self) -> PathBuf {
        self.root.join("admin-password")
    }
    pub fn clouds_yaml(&self) -> PathBuf {
        self.root.join("clouds.yaml")
    }
    pub fn openrc(&self) -> PathBuf {
        self.root.join("openrc")
    }
    /// The demo key pair's private key (`kumo ssh`'s default identity).
    pub fn demo_key(&self) -> PathBuf {
        self.root.join("demo-key")
    }

    pub fn demo_marker(&self) -> PathBuf {
        self.root.join("demo")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.logs().join("kumo.log")
    }

    pub fn read_pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn read_endpoint(&self) -> Option<String> {
        let s = fs::read_to_string(self.endpoint_file()).ok()?;
        let s = s.trim();
        if s.is_empty() {
            None
        } else {
            Some(s.to_string())
        }
    }
}

/// Write a file atomically (temp + rename), with `mode`.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Whether a process with this pid is alive: it exists (signal 0) and is not a zombie
/// waiting to be reaped (right after `kill -9`, `kill(pid, 0)` still succeeds).
pub fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}
