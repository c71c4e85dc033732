//! What the root tests share: the skip rule, a unique `kt<6 hex>` prefix, and a Sandbox of
//! namespaces under it that a Drop guard empties (processes killed) and deletes, also when a
//! test fails. Each test binary uses part of it.
#![allow(dead_code)]

use dataplane::netns;
use std::time::{SystemTime, UNIX_EPOCH};

/// `kt` + 6 hex digits, unique per call within a process and unlikely across processes.
pub fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Tests in one binary run on threads: a per-call counter goes into the mix.
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mix =
        ((nanos ^ (std::process::id() << 12)).wrapping_add(n.wrapping_mul(0x9e37))) & 0xff_ffff;
    format!("kt{mix:06x}")
}

pub fn skip(tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root (network namespaces)");
        return true;
    }
    for t in tools {
        if !dataplane::tool_available(t) {
            eprintln!("SKIPPED: `{t}` not installed");
            return true;
        }
    }
    false
}

/// A unique prefix and the namespaces made under it, removed on drop.
pub struct Sandbox {
    pub prefix: String,
    pub made: Vec<String>,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            prefix: unique_prefix(),
            made: Vec::new(),
        }
    }

    /// `kt<hex>-ROLE` namespace, created.
    pub async fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        netns::ensure_namespace(&name)
            .await
            .expect("create namespace");
        self.made.push(name.clone());
        name
    }

    /// A link name with the prefix (`kt<hex><role>`, at most 15 bytes).
    pub fn ifname(&self, role: &str) -> String {
        let name = format!("{}{role}", self.prefix);
        assert!(name.len() <= 15, "{name} too long");
        name
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for ns in &self.made {
            if let Ok(pids) = netns::namespace_pids(ns) {
                for pid in pids {
                    if pid != std::process::id() as i32 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = netns::remove_namespace_blocking(ns);
        }
        let left: Vec<String> = netns::list_namespaces()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("namespaces left behind: {left:?}");
        }
    }
}
