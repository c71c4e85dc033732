//! Plumbing shared by every kumo service.
//!
//! Nothing in here knows about a particular OpenStack service: services plug their own
//! fault family, policy defaults and config sections into these pieces.

pub mod auth;
pub mod config;
pub mod db;
pub mod fault;
pub mod microversion;
pub mod pagination;
pub mod policy;
pub mod request_id;

pub use fault::{Family, Fault};
