//! Compute (Nova v2.1): the API, and the roles behind it, as Nova shapes them: the API
//! records an instance and asks the conductor, which asks the scheduler (placement's
//! allocation candidates, filters, weighers, a claim), then casts to the chosen host's
//! compute agent, which builds through networking -> block_device_mapping -> spawning.
//!
//! - [`model`]: domain types with Nova's names (vm_state, task_state, power_state).
//! - [`store`]: persistence (sea-orm) and the migration.
//! - [`core`]: [`ComputeService`]: what the API asks for, no HTTP.
//! - [`conductor`], [`scheduler`], [`manager`]: the roles, over the bus ([`rpc`] messages).
//! - [`clients`]: placement and image over their REST APIs.
//! - [`hooks`]: the network and volume steps of a build; [`neutron`]: the network service's;
//!   [`cinder`]: the volume service's.
//! - [`console`]: remote consoles (targets, one-time tokens, noVNC URLs).
//! - [`api`]: the HTTP API.
//! - [`upgrade`]: rolling upgrades: service versions and compute message version caps.

pub mod api;
pub mod cinder;
pub mod clients;
pub mod conductor;
pub mod config;
pub mod console;
pub mod core;
pub mod error;
pub mod guest_metadata;
pub mod hooks;
pub mod manager;
pub mod model;
pub mod neutron;
pub mod roles;
pub mod rpc;
pub mod scheduler;
pub mod store;
pub mod upgrade;

pub use core::ComputeService;
