//! Keystone v3.

pub mod token;
