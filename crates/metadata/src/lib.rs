//! The guest-side contract of a cloud: what an instance learns about itself at boot.
//!
//! - [`tree`]: the metadata as Nova lays it out, the OpenStack tree (`/openstack/<version>/
//!   meta_data.json`, `user_data`, `network_data.json`, `vendor_data*.json`, `password`) and
//!   the EC2 tree (`/<version>/meta-data/…`, `/<version>/user-data`), from an
//!   [`InstanceFacts`], with no I/O.
//! - [`service`]: the HTTP service at `http://169.254.169.254`. The instance is identified by
//!   the network the request arrived on and its source address (Neutron + Nova do the same
//!   through a proxy that adds headers; here the socket itself lives in the network's
//!   namespace, so there is nothing to forge).
//! - [`listeners`]: one such socket per network namespace, kept in line with what the
//!   network agent built.
//! - [`signed`]: the metadata API as a service of its own (nova-api-metadata) for requests a
//!   proxy forwards with the instance in signed headers; [`proxy`]: that proxy (Neutron's),
//!   the namespace listeners of a network agent whose process does not run the metadata role.
//! - [`config_drive`]: the same trees as an ISO 9660 (`config-2`) or vfat image.

pub mod config;
pub mod config_drive;
mod ec2;
pub mod facts;
pub mod listeners;
pub mod network_data;
pub mod proxy;
pub mod service;
pub mod signed;
pub mod tree;

pub use facts::{InstanceFacts, PublicKey};
pub use service::{Directory, DirectoryError, PasswordOutcome};

/// The link-local address guests reach the metadata service at.
pub const METADATA_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// Nova's limit on user_data (65535 bytes of base64 in the API's schema: 64 KiB).
pub const MAX_USER_DATA_BASE64: usize = 65535;
