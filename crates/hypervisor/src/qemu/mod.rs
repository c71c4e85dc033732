//! The QEMU driver's pieces (issue "Real guests"). So far only [`qmp`], kumo's own QMP client;
//! the driver itself (processes, disks, hot-plug) builds on it.

pub mod qmp;
