//! Placement: the service that tracks what every resource provider (compute node, shared
//! storage pool, NIC...) has, what is allocated against it, and answers "where could this
//! fit?" (allocation candidates) for the scheduler.
//!
//! - [`model`]: domain types.
//! - [`store`]: persistence (sea-orm) and the migration.
//! - [`core`]: [`Placement`], the service logic (generations, capacity, candidates), with
//!   the in-memory provider view.
//! - [`api`]: the HTTP API, upstream placement's paths, bodies and microversions 1.0-1.39.
//! - [`standard`]: the standard resource classes and traits, as data.

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod standard;
pub mod store;

pub use core::Placement;
