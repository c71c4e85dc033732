//! Plumbing shared by every kumo service.
//!
//! Nothing in here knows about a particular OpenStack service: services plug their own
//! fault family, policy defaults and config sections into these pieces.

pub mod policy;
