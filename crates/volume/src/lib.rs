//! Cinder v3: the volume service of kumo.
//!
//! - [`model`]: volumes, snapshots, types, attachments and Cinder's status machine.
//! - [`store`]: persistence (one resource table with JSON bodies, quotas) and migrations.
//! - [`backend`]: the [`backend::Backend`] trait and the `file` backend (qcow2 files).
//! - [`target`]: NBD exports (qemu-storage-daemon) for attachments of other hosts.
//! - [`glance`]: calls to the image service (volume from image, upload to image).
//! - [`server_events`]: what compute is told (`volume-extended`).
//! - [`core`]: [`core::VolumeService`], the service logic (no HTTP, no SQL).
//! - [`api`]: the HTTP API, Cinder's paths, bodies and microversions.

pub mod api;
pub mod backend;
pub mod config;
pub mod core;
pub mod error;
pub mod glance;
pub mod model;
pub mod server_events;
pub mod store;
pub mod target;

pub use core::VolumeService;
