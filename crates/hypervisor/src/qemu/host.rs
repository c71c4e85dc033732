//! What this host is: its accelerator, QEMU's version and the resources it can give guests.

use serde_json::{Value, json};
use std::path::Path;

/// How guests' CPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The operator's choice (`[qemu] accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" | "qemu" => Ok(AccelChoice::Tcg),
            other => Err(format!("accel = {other}: expected auto, kvm or tcg")),
        }
    }
}

/// Why KVM is or is not used, for the log.
pub fn pick_accel(choice: AccelChoice) -> (Accel, String) {
    match choice {
        AccelChoice::Kvm => (Accel::Kvm, "forced by [qemu] accel = kvm".into()),
        AccelChoice::Tcg => (Accel::Tcg, "forced by [qemu] accel = tcg".into()),
        AccelChoice::Auto => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            kvm_usable(
                &cpuinfo,
                Path::new("/dev/kvm").exists(),
                Path::new("/sys/module/kvm_pvm").exists(),
            )
        }
    }
}

/// KVM only where it really works: hardware virtualisation flags, /dev/kvm, and not the nested
/// `kvm_pvm` module (under which guest kernels hang in the decompressor).
fn kvm_usable(cpuinfo: &str, dev_kvm: bool, kvm_pvm: bool) -> (Accel, String) {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let hw = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
    if !dev_kvm {
        (Accel::Tcg, "no /dev/kvm".into())
    } else if kvm_pvm {
        (
            Accel::Tcg,
            "/dev/kvm is the nested kvm_pvm module, which does not run stock guest kernels".into(),
        )
    } else if !hw {
        (Accel::Tcg, "the CPU shows no vmx/svm flag".into())
    } else {
        (Accel::Kvm, "vmx/svm present and /dev/kvm usable".into())
    }
}

/// Logical CPUs of the host.
pub fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Host memory in MiB (MemTotal).
pub fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Size of the file system holding `dir`, in GiB.
pub fn disk_gb(dir: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => st.blocks() * st.fragment_size() / (1 << 30),
        Err(_) => 0,
    }
}

/// libvirt's version number for `qemu-system-x86_64 --version` (7.2.1 -> 7002001).
pub fn parse_qemu_version(text: &str) -> u64 {
    let Some(v) = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
    else {
        return 0;
    };
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a * 1_000_000 + b * 1000 + c
}

/// `cpu_info` as os-hypervisors shows it (Nova's libvirt shape) plus the accelerator.
pub fn cpu_info(accel: Accel) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "arch": std::env::consts::ARCH,
        "model": field("model name"),
        "vendor": field("vendor_id"),
        "topology": {"sockets": 1, "cores": cpus(), "threads": 1},
        "features": [],
        "accel": accel.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_with_flags_and_without_pvm() {
        let with = "flags\t\t: fpu vme vmx sse\n";
        let without = "flags\t\t: fpu vme sse\n";
        assert_eq!(kvm_usable(with, true, false).0, Accel::Kvm);
        assert_eq!(kvm_usable(with, true, true).0, Accel::Tcg);
        assert_eq!(kvm_usable(with, false, false).0, Accel::Tcg);
        assert_eq!(kvm_usable(without, true, false).0, Accel::Tcg);
    }

    #[test]
    fn qemu_version_as_libvirt_numbers_it() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            7_002_019
        );
        assert_eq!(parse_qemu_version("nonsense"), 0);
    }

    #[test]
    fn accel_choice_parses() {
        assert_eq!("auto".parse::<AccelChoice>(), Ok(AccelChoice::Auto));
        assert_eq!("qemu".parse::<AccelChoice>(), Ok(AccelChoice::Tcg));
        assert!("xen".parse::<AccelChoice>().is_err());
    }
}
