//! Neutron v2.0: the network service of kumo (first slice: networks, subnets, quotas).
//!
//! - [`ipam`]: CIDRs, gateways and allocation pools (pure logic).
//! - [`model`]: networks and subnets as stored and as rendered.
//! - [`segments`]: provider segments (local, flat, vlan, vxlan): validation and ids (pure).
//! - [`store`]: persistence (sea-orm) and the migration.
//! - [`core`]: [`core::NetworkService`], Neutron's rules (no HTTP, no SQL).
//! - [`hostplan`]: the data plane this host should have, from the database (pure).
//! - [`agent`]: makes the host match it after every change; ports' status; vif-plugged.
//! - [`api`]: the HTTP API, Neutron's paths, bodies, filters and pagination.

pub mod agent;
pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod hostplan;
pub mod ipam;
pub mod model;
pub mod segments;
pub mod store;

pub use core::NetworkService;
