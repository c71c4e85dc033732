//! Glance v2: the image service of kumo.
//!
//! - [`model`]: images, members, tasks and their state machines.
//! - [`store`]: persistence (sea-orm) and migrations.
//! - [`filestore`]: the filesystem store (streamed, hashed, atomic writes).
//! - [`inspect`]: `qemu-img info` and Glance's disk-format rules.
//! - [`core`]: [`core::ImageService`], the service logic (no HTTP, no SQL).
//! - [`api`]: the HTTP API, Glance's paths and bodies.

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod filestore;
pub mod inspect;
pub mod model;
pub mod store;

pub use core::ImageService;
