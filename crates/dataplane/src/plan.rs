//! The desired state of one host's data plane, as the network service computes it from its
//! database, and the names everything gets. [`crate::converge`] makes the host match a plan
//! (create what is missing, fix what differs, remove leftovers of kumo's own), idempotently:
//! applying the same plan twice changes nothing, and a plan applied after a restart finds the
//! running taps, namespaces and dnsmasqs and keeps them (guests keep their connectivity).
//!
//! Layout (all-in-one, DESIGN §7): nothing in the root namespace. A host namespace holds one
//! bridge per network (`brq…`), the guests' taps (`tap…`, QEMU runs in that namespace) and the
//! bridge ends of veth pairs into `qdhcp-<net>` (`ns-…` inside) and `qrouter-<router>`
//! (`qr-…` for interfaces, `qg-…` for the gateway) namespaces. An "outside world" namespace
//! (`kumo-ext`) holds the external subnets' gateway addresses, reached by a veth pair whose
//! host end is on the external network's bridge.

use crate::dnsmasq::{DhcpHost, DhcpSubnet};
use std::net::{IpAddr, Ipv4Addr};

/// Namespace names of one kumo (a test gives its own prefix so that nothing it makes can
/// collide with another kumo on the machine). Interface names need no prefix: they live
/// inside these namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Prepended to every namespace name; "" by default, `kt1a2b3c-` in tests.
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }
    /// The namespace of bridges and guest taps (QEMU is started inside it).
    pub fn host_namespace(&self) -> String {
        format!("{}kumo-host", self.prefix)
    }
    /// The "outside world" namespace holding the external networks' gateways.
    pub fn external_namespace(&self) -> String {
        format!("{}kumo-ext", self.prefix)
    }
    pub fn dhcp_namespace(&self, network_id: &str) -> String {
        format!("{}{}", self.prefix, crate::dhcp_namespace(network_id))
    }
    pub fn router_namespace(&self, router_id: &str) -> String {
        format!("{}{}", self.prefix, crate::router_namespace(router_id))
    }
}

/// Where the "outside world" side of the external networks is: the gateway addresses of their
/// subnets (`172.24.4.1/24`) and what reaches floating IPs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExternalAccess {
    /// In the `kumo-ext` namespace kumo makes: the host's own routing is never touched.
    #[default]
    Namespace,
    /// In the namespace kumo runs in (the host's, as devstack's br-ex): the host reaches
    /// floating IPs directly. The veth end there is named like its peer (`ext…`) and goes away
    /// with it.
    Host,
}

/// How a network's bridge reaches other hosts. All-in-one clouds use `Local` (the bridge has
/// no uplink); the others put a VLAN or VXLAN device on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Local,
    /// The physical interface itself on the bridge (untagged; it must be in the host
    /// namespace; one flat network per interface).
    Flat {
        physdev: String,
    },
    /// 802.1Q sub-interface `<physdev>.<id>` (physdev inside the host namespace).
    Vlan {
        physdev: String,
        id: u16,
    },
    /// `vxlan-<vni>` on the VTEP address `local` (device `dev`), learning off, fixed peers.
    Vxlan {
        vni: u32,
        local: IpAddr,
        dev: String,
        peers: Vec<IpAddr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub names: Names,
    /// Where the external networks' gateway addresses live.
    pub external_access: ExternalAccess,
    pub networks: Vec<NetworkPlan>,
    pub vm_ports: Vec<VmPort>,
    pub routers: Vec<RouterPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub id: String,
    pub mtu: u32,
    pub segment: Segment,
    /// For an external network: the addresses the outside world holds on it, in CIDR form
    /// (`172.24.4.1/24`, the external subnets' gateways). `None` for other networks.
    pub external: Option<Vec<String>>,
    pub dhcp: Option<DhcpPlan>,
}

/// The network's DHCP port and what its dnsmasq serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpPlan {
    pub port_id: String,
    pub mac: String,
    /// The DHCP port's addresses in CIDR form (`10.0.0.2/24`).
    pub addresses: Vec<String>,
    pub subnets: Vec<DhcpSubnet>,
    pub hosts: Vec<DhcpHost>,
}

/// A guest's port: a persistent tap on the network's bridge that QEMU opens by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPort {
    pub id: String,
    pub network_id: String,
    pub mac: String,
    pub mtu: u32,
    pub admin_up: bool,
    /// `None` when port security is off (no anti-spoofing, no security groups).
    pub filter: Option<PortFilter>,
}

/// A port's security: anti-spoofing and its security groups' rules, stateful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFilter {
    /// (MAC, IP or CIDR) pairs the port may send from: its own fixed IPs with its MAC, plus
    /// allowed_address_pairs.
    pub allowed_sources: Vec<(String, String)>,
    /// Traffic to the guest that is allowed besides replies (default: none).
    pub ingress: Vec<FilterRule>,
    /// Traffic from the guest that is allowed (DHCP client traffic is always allowed).
    pub egress: Vec<FilterRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    V4,
    V6,
}

/// One security group rule, with `remote_group_id` already expanded to addresses by the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub ethertype: EtherType,
    /// IP protocol number (`None` = any protocol).
    pub protocol: Option<u8>,
    /// For TCP/UDP/SCTP: destination port range; for ICMP: (type, code) with `None` = any.
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    /// Remote addresses in CIDR form (the source for ingress, the destination for egress);
    /// empty = any.
    pub remote: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterPlan {
    pub id: String,
    pub interfaces: Vec<RouterPort>,
    pub gateway: Option<RouterGateway>,
    /// Static routes (destination CIDR, next hop).
    pub routes: Vec<(String, IpAddr)>,
    /// Floating IP → fixed IP (only with a gateway).
    pub floating_ips: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Metadata redirect target port inside the router namespace (issue #8), if any.
    pub metadata_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterPort {
    pub port_id: String,
    pub network_id: String,
    pub mac: String,
    pub mtu: u32,
    /// The port's addresses in CIDR form (`10.0.0.1/24`).
    pub addresses: Vec<String>,
    /// IPv6 router advertisements on this interface (radvd), when a subnet of it has an
    /// `ipv6_ra_mode`; never on a gateway port.
    pub ra: Option<RouterAdvert>,
}

/// What a router advertises on one interface (Neutron's radvd template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvert {
    /// AdvManagedFlag: addresses by DHCPv6 (a `dhcpv6-stateful` subnet).
    pub managed: bool,
    /// AdvOtherConfigFlag: other settings by DHCPv6 (a `dhcpv6-stateless` subnet).
    pub other_config: bool,
    /// (prefix CIDR, AdvAutonomous: hosts make their own address, slaac and stateless).
    pub prefixes: Vec<(String, bool)>,
    /// RDNSS: the subnets' IPv6 DNS servers.
    pub dns_servers: Vec<IpAddr>,
    /// AdvLinkMTU (the network's MTU; not sent below 1280).
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterGateway {
    pub port: RouterPort,
    /// The external subnet's gateway (the default route of the router).
    pub default_route: Option<IpAddr>,
    /// SNAT of the internal subnets to the gateway address (Neutron's enable_snat).
    pub snat: bool,
}
