//! Keystone v3: the identity service of kumo.
//!
//! - [`model`]: the domain (users, projects, roles, assignments, catalog...).
//! - [`store`]: persistence (sea-orm) and migrations.
//! - [`core`]: [`core::Identity`], the service logic and caches.
//! - [`api`]: the HTTP API, Keystone's paths and bodies.
//! - [`token`]: Fernet tokens in Keystone's format.
//! - [`remote`]: validating tokens at a remote identity service, with a cache.
//! - [`bootstrap`]: what `kumo bootstrap` creates.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod password;
pub mod remote;
pub mod store;
pub mod token;

pub use core::Identity;
