//! The QEMU driver (DESIGN §6): one detached `qemu-system-x86_64` per instance, driven over
//! QMP by kumo's own client ([`qmp`]); disks are qcow2 overlays on base images cached once per
//! host ([`disk`]); the command line ([`cmdline`]) is q35 with hot-plug root ports.

mod cmdline;
pub mod disk;
mod driver;
pub mod host;
pub mod qmp;
mod tap;

pub use driver::{QemuConfig, QemuDriver};
pub use host::{Accel, AccelChoice};
