//! What the metadata shows of one instance, gathered once per request by a [`crate::Directory`].

use serde_json::Value;
use std::collections::BTreeMap;

/// A key pair as `meta_data.json` lists it (`keys` and `public_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    /// `ssh` or `x509`, as Nova's key pair types.
    pub kind: String,
    pub data: String,
}

/// Everything the OpenStack and EC2 trees are rendered from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceFacts {
    pub uuid: String,
    /// The display name (`name` in meta_data.json).
    pub name: String,
    /// The short host name (Nova's `instance.hostname`); the domain is added when rendering.
    pub hostname: String,
    pub project_id: String,
    pub availability_zone: Option<String>,
    pub launch_index: i32,
    pub reservation_id: String,
    pub flavor_name: String,
    pub image_id: String,
    pub key: Option<PublicKey>,
    /// Server metadata (`meta`).
    pub meta: BTreeMap<String, String>,
    /// Decoded user_data.
    pub user_data: Option<Vec<u8>>,
    /// Nova's network_info (the VIF model) of the instance.
    pub network_info: Value,
    pub security_groups: Vec<String>,
    /// Floating IPs associated with the instance's fixed addresses.
    pub floating_ips: Vec<String>,
    /// The encrypted password the guest posted (empty when none).
    pub password: String,
}

impl InstanceFacts {
    /// The instance's fixed IPv4 addresses, in VIF order.
    pub fn fixed_ipv4(&self) -> Vec<String> {
        let mut out = Vec::new();
        for vif in self.network_info.as_array().into_iter().flatten() {
            for subnet in vif["network"]["subnets"].as_array().into_iter().flatten() {
                for ip in subnet["ips"].as_array().into_iter().flatten() {
                    if let Some(a) = ip["address"].as_str().filter(|a| !a.contains(':')) {
                        out.push(a.to_string());
                    }
                }
            }
        }
        out
    }
}
