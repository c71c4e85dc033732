//! Opening a tap that lives in another network namespace than QEMU: a thread of its own enters
//! the namespace and attaches to the tap by name (`TUNSETIFF`), as QEMU does with
//! `-netdev tap,ifname=`; the descriptor then goes to QEMU over QMP (`getfd`). libvirt hands
//! QEMU its taps the same way. This is the crate's one `unsafe`: the ioctl.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
/// `_IOW('T', 202, int)`.
const TUNSETIFF: u64 = 0x4004_54ca;

nix::ioctl_write_ptr_bad!(tun_set_iff, TUNSETIFF, IfReq);

/// A descriptor of the existing tap `devname` (made by the network agent: persistent,
/// single-queue, vnet_hdr) from network namespace `ns` (a path under `/run/netns`).
pub fn open_in(ns: &Path, devname: &str) -> Result<OwnedFd, String> {
    let name = devname.as_bytes();
    if name.is_empty() || name.len() >= 16 {
        return Err(format!("{devname:?} is not a network interface name"));
    }
    let netns = File::open(ns).map_err(|e| format!("network namespace {}: {e}", ns.display()))?;
    let devname = devname.to_string();
    std::thread::spawn(move || -> Result<OwnedFd, String> {
        use nix::sched::{CloneFlags, setns};
        setns(&netns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot enter the namespace: {e}"))?;
        // Only an existing tap: TUNSETIFF would create a new, unwired one of that name.
        if nix::net::if_::if_nametoindex(devname.as_str()).is_err() {
            return Err(format!("tap {devname} does not exist there"));
        }
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun: {e}"))?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..devname.len()].copy_from_slice(devname.as_bytes());
        // SAFETY: `req` is a valid, initialised `struct ifreq` that lives across the call, and
        // `tun` is an open /dev/net/tun descriptor; the kernel only reads the struct.
        #[allow(unsafe_code)]
        let r = unsafe { tun_set_iff(tun.as_raw_fd(), &req) };
        r.map_err(|e| format!("TUNSETIFF {devname}: {e}"))?;
        Ok(OwnedFd::from(tun))
    })
    .join()
    .map_err(|_| "the thread opening the tap panicked".to_string())?
}
