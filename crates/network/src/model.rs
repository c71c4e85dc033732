//! Networks and subnets as stored (serde) and as Neutron renders them.

use crate::ipam::Pool;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub shared: bool,
    pub external: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    pub availability_zone_hints: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: String,
    pub nexthop: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub network_id: String,
    pub ip_version: u8,
    pub cidr: String,
    pub gateway_ip: Option<String>,
    pub allocation_pools: Vec<Pool>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<String>,
    pub host_routes: Vec<HostRoute>,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

/// Neutron's timestamp format (`2016-03-08T20:19:41Z`).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Network {
    /// The API view; `subnets` are the ids of the network's subnets.
    pub fn render(&self, subnets: Vec<String>) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "admin_state_up": self.admin_state_up,
            "status": "ACTIVE",
            "subnets": subnets,
            "shared": self.shared,
            "router:external": self.external,
            "mtu": self.mtu,
            "port_security_enabled": self.port_security_enabled,
            "availability_zone_hints": self.availability_zone_hints,
            "availability_zones": [],
            "ipv4_address_scope": null,
            "ipv6_address_scope": null,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}

impl Subnet {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "network_id": self.network_id,
            "ip_version": self.ip_version,
            "cidr": self.cidr,
            "gateway_ip": self.gateway_ip,
            "allocation_pools": self.allocation_pools,
            "enable_dhcp": self.enable_dhcp,
            "dns_nameservers": self.dns_nameservers,
            "host_routes": self.host_routes,
            "ipv6_ra_mode": self.ipv6_ra_mode,
            "ipv6_address_mode": self.ipv6_address_mode,
            "subnetpool_id": null,
            "service_types": [],
            "segment_id": null,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}
