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
    /// The deployment's default external network (auto-allocated-topology's `is_default`);
    /// only meaningful on an external network.
    #[serde(default)]
    pub is_default: bool,
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
    /// The pool the cidr was allocated from (`subnet_allocation`).
    #[serde(default)]
    pub subnetpool_id: Option<String>,
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
            // Neutron extends only external networks with their flag.
            "is_default": if self.external { json!(self.is_default) } else { Value::Null },
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
    /// The API view; `external` is the network's `router:external` (subnet-external-network).
    pub fn render(&self, external: bool) -> Value {
        json!({
            "router:external": external,
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
            "subnetpool_id": self.subnetpool_id,
            "service_types": [],
            "segment_id": null,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}

/// A security group (Neutron's `securitygroups` row). The project's default group is the one
/// named `default`: nobody may create or rename a group to that name, as in Neutron.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub stateful: bool,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

/// A security group rule; `protocol` is as Neutron stores it: a lower-case name of its table or
/// a number 0-255 as a string, `None` for any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub id: String,
    pub project_id: String,
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u32>,
    pub port_range_max: Option<u32>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

/// neutron-lib's IP_PROTOCOL_MAP, in its order (the order of Neutron's error message).
pub const IP_PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// The IP protocol number of a protocol as stored (name of [`IP_PROTOCOLS`] or number).
pub fn protocol_number(protocol: &str) -> Option<u8> {
    IP_PROTOCOLS
        .iter()
        .find(|(n, _)| *n == protocol)
        .map(|(_, v)| *v)
        .or_else(|| protocol.trim().parse::<u8>().ok())
}

impl SecurityGroup {
    /// The API view, with its rules rendered.
    pub fn render(&self, rules: &[SecurityGroupRule]) -> Value {
        let default = self.is_default();
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "stateful": self.stateful,
            "shared": false,
            "security_group_rules": rules.iter().map(|r| r.render(default)).collect::<Vec<_>>(),
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }

    /// Whether this is its project's default group.
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }
}

impl SecurityGroupRule {
    /// The IP protocol number (`None`: any protocol).
    pub fn protocol_number(&self) -> Option<u8> {
        self.protocol.as_deref().and_then(protocol_number)
    }

    /// `remote_ip_prefix` with the host bits cleared (Neutron's `normalized_cidr`).
    pub fn normalized_cidr(&self) -> Option<String> {
        self.remote_ip_prefix
            .as_deref()
            .and_then(|p| p.parse::<ipnet::IpNet>().ok())
            .map(|n| n.trunc().to_string())
    }

    /// The API view; `in_default_group`: the rule's group is its project's default.
    pub fn render(&self, in_default_group: bool) -> Value {
        json!({
            "id": self.id,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "security_group_id": self.security_group_id,
            "direction": self.direction,
            "ethertype": self.ethertype,
            "protocol": self.protocol,
            "port_range_min": self.port_range_min,
            "port_range_max": self.port_range_max,
            "remote_ip_prefix": self.remote_ip_prefix,
            "normalized_cidr": self.normalized_cidr(),
            "remote_group_id": self.remote_group_id,
            "belongs_to_default_sg": in_default_group,
            "description": self.description,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}

/// One of a port's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

/// An extra (IP or CIDR, MAC) a port may send from (allowed-address-pairs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip_address: String,
    pub mac_address: String,
}

/// Device owners whose ports the network service makes and removes itself.
pub const OWNER_DHCP: &str = "network:dhcp";
pub const OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
pub const OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";
pub const OWNER_FLOATING_IP: &str = "network:floatingip";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub network_id: String,
    pub mac_address: String,
    pub admin_state_up: bool,
    /// DOWN until the data plane wired it for a host (then ACTIVE).
    pub status: String,
    pub device_id: String,
    pub device_owner: String,
    pub fixed_ips: Vec<FixedIp>,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub security_groups: Vec<String>,
    pub port_security_enabled: bool,
    pub binding_host_id: String,
    pub binding_profile: Value,
    pub binding_vnic_type: String,
    pub binding_vif_type: String,
    pub binding_vif_details: Value,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

impl Port {
    /// The API view; `binding:*` (but vnic_type) are removed by the caller for non-admins.
    pub fn render(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "network_id": self.network_id,
            "mac_address": self.mac_address,
            "admin_state_up": self.admin_state_up,
            "status": self.status,
            "device_id": self.device_id,
            "device_owner": self.device_owner,
            "fixed_ips": self.fixed_ips,
            "allowed_address_pairs": self.allowed_address_pairs,
            "extra_dhcp_opts": [],
            "security_groups": self.security_groups,
            "port_security_enabled": self.port_security_enabled,
            "binding:host_id": self.binding_host_id,
            "binding:profile": self.binding_profile,
            "binding:vnic_type": self.binding_vnic_type,
            "binding:vif_type": self.binding_vif_type,
            "binding:vif_details": self.binding_vif_details,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }

    /// The port's IPv4/IPv6 addresses.
    pub fn ips(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.fixed_ips
            .iter()
            .filter_map(|f| f.ip_address.parse().ok())
    }
}

/// A router's external gateway: the network, SNAT, and the gateway port (which holds the
/// router's external addresses, `external_fixed_ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterGateway {
    pub network_id: String,
    pub enable_snat: bool,
    pub port_id: String,
}

/// A router. Its interfaces are ports with device_owner `network:router_interface` and
/// device_id = the router's id; its gateway port has device_owner `network:router_gateway`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Router {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub admin_state_up: bool,
    /// ACTIVE (Neutron's status of a router the L3 plugin accepted).
    pub status: String,
    pub gateway: Option<RouterGateway>,
    /// Extra routes (extraroute): destination CIDR via a nexthop on an attached subnet.
    pub routes: Vec<HostRoute>,
    pub availability_zone_hints: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

impl Router {
    /// The API view; `gw_port` is the gateway port (for `external_fixed_ips`).
    pub fn render(&self, gw_port: Option<&Port>) -> Value {
        let gw = self.gateway.as_ref().map(|g| {
            json!({
                "network_id": g.network_id,
                "enable_snat": g.enable_snat,
                "external_fixed_ips": gw_port.map(|p| p.fixed_ips.clone()).unwrap_or_default(),
            })
        });
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "admin_state_up": self.admin_state_up,
            "status": self.status,
            "external_gateway_info": gw,
            "routes": self.routes,
            "availability_zone_hints": self.availability_zone_hints,
            "availability_zones": [],
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}

/// A floating IP: an address of an external network (held by its own port, device_owner
/// `network:floatingip`), mapped 1:1 (DNAT/SNAT) to `fixed_ip_address` of `port_id` by
/// `router_id`, the router joining the port's subnet to the external network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub project_id: String,
    pub description: String,
    pub floating_network_id: String,
    pub floating_ip_address: String,
    pub floating_port_id: String,
    pub port_id: Option<String>,
    pub fixed_ip_address: Option<String>,
    pub router_id: Option<String>,
    /// DOWN while not associated, ACTIVE while associated.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

impl FloatingIp {
    pub fn render(&self) -> Value {
        json!({
            "id": self.id,
            "tenant_id": self.project_id,
            "project_id": self.project_id,
            "description": self.description,
            "floating_network_id": self.floating_network_id,
            "floating_ip_address": self.floating_ip_address,
            "router_id": self.router_id,
            "port_id": self.port_id,
            "fixed_ip_address": self.fixed_ip_address,
            "status": self.status,
            "tags": [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision_number": self.revision_number,
        })
    }
}

/// A network agent as it registered itself (Neutron's `agents` table): the Linux bridge agent
/// of every host that wires ports, and the DHCP, L3 and metadata agents of the host that
/// serves the networks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub agent_type: String,
    pub binary: String,
    pub topic: String,
    pub host: String,
    pub admin_state_up: bool,
    pub description: Option<String>,
    pub availability_zone: Option<String>,
    /// What the agent says of itself: `tunneling_ip`, `namespace`, counts, ...
    pub configurations: Value,
    /// Neutron's agent timestamps (`2017-09-12 19:39:56`, UTC).
    pub created_at: String,
    pub started_at: String,
    pub heartbeat_timestamp: String,
}

/// Neutron's agent timestamp format (`2017-09-12 19:39:56`).
pub fn agent_now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Agent {
    /// Whether its last heartbeat is at most `down_time` seconds old.
    pub fn alive(&self, down_time: u64) -> bool {
        chrono::NaiveDateTime::parse_from_str(&self.heartbeat_timestamp, "%Y-%m-%d %H:%M:%S")
            .ok()
            .is_some_and(|t| {
                let age = chrono::Utc::now().naive_utc() - t;
                age.num_seconds() <= down_time as i64
            })
    }

    pub fn render(&self, down_time: u64) -> Value {
        json!({
            "id": self.id,
            "agent_type": self.agent_type,
            "binary": self.binary,
            "topic": self.topic,
            "host": self.host,
            "admin_state_up": self.admin_state_up,
            "alive": self.alive(down_time),
            "description": self.description,
            "availability_zone": self.availability_zone,
            "configurations": self.configurations,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "heartbeat_timestamp": self.heartbeat_timestamp,
            "resources_synced": Value::Null,
        })
    }
}
