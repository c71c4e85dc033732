//! From the database to the data plane: which networks, guest ports, DHCP servers and routers
//! this host should have ([`dataplane::plan::HostPlan`]), and which ports are then up. Pure
//! functions over a [`Snapshot`], so the rules are unit-tested without a kernel.
//!
//! Only what guests use is built: a network gets its bridge, DHCP namespace and dnsmasq when a
//! guest port on it is bound to a host, or a router that serves such a network has an
//! interface on it; an external network when such a router has its gateway there. A cloud
//! with a hundred idle networks runs no hundred dnsmasqs.

use dataplane::dnsmasq::{DhcpHost, DhcpSubnet};
use dataplane::plan::{
    DhcpPlan, EtherType, ExternalAccess, FilterRule, HostPlan, Names, NetworkPlan, PortFilter,
    RouterAdvert, RouterGateway, RouterPlan, RouterPort, Segment, VmPort,
};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// Where guests reach the metadata service (served from the DHCP namespace).
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

use crate::segments::{self, SegmentConfig};

use crate::core::agents::AgentKind;
use crate::model::{
    Agent, FloatingIp, Network, OWNER_DHCP, OWNER_ROUTER_GATEWAY, OWNER_ROUTER_INTERFACE, Port,
    Router, SecurityGroupRule, Subnet,
};

/// Everything the plan is computed from, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub networks: Vec<Network>,
    pub subnets: Vec<Subnet>,
    pub ports: Vec<Port>,
    pub security_group_rules: Vec<SecurityGroupRule>,
    pub routers: Vec<Router>,
    pub floating_ips: Vec<FloatingIp>,
    /// Each network's provider segment (none: local).
    pub segments: HashMap<String, segments::Segment>,
    /// The registered network agents: where each host's VXLAN endpoint is, which hosts serve
    /// DHCP and routers.
    pub agents: Vec<Agent>,
}

/// Which agents' work this host does. All-in-one does both; in a cloud of several hosts the
/// compute hosts wire their guests' ports and the network host serves DHCP and routers
/// (Neutron's Linux bridge agent on every host, DHCP and L3 agents on the network node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Bridges, taps and security groups of the guest ports bound to this host.
    pub guests: bool,
    /// DHCP namespaces and routers of every network a guest uses on any host, and the
    /// status of unbound, DHCP and router ports.
    pub services: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        guests: true,
        services: true,
    };
}

/// The plan and, per port, whether the data plane carries it (its status: ACTIVE or DOWN).
#[derive(Debug, Clone)]
pub struct Built {
    pub plan: HostPlan,
    pub port_status: HashMap<String, &'static str>,
}

pub struct Options<'a> {
    pub names: Names,
    /// This host's binding name; empty = every bound port is this host's (all-in-one).
    pub host: &'a str,
    pub lease_seconds: u32,
    /// Serve the metadata service from the DHCP namespaces (Neutron's
    /// `enable_isolated_metadata` + `force_metadata`): 169.254.169.254 on the DHCP port and a
    /// route to it pushed by DHCP.
    pub metadata: bool,
    /// This host's uplinks (physical_interface_mappings, the VXLAN endpoint).
    pub uplinks: &'a SegmentConfig,
    /// Where the external networks' gateways live (`[network] external_access`).
    pub external_access: ExternalAccess,
    pub scope: Scope,
}

/// How a network's bridge leaves this host: a flat network on a physnet this host maps gets
/// the interface itself, a VLAN network there `<iface>.<id>`, a VXLAN network `vxlan-<vni>` when
/// this host has a VTEP (its peers are added by [`build`]); everything else (local, flat,
/// unmapped) stays on the host.
pub fn data_segment(seg: Option<&segments::Segment>, uplinks: &SegmentConfig) -> Segment {
    let Some(seg) = seg else {
        return Segment::Local;
    };
    match (seg.network_type.as_str(), seg.segmentation_id) {
        (segments::VLAN, Some(id)) => seg
            .physical_network
            .as_ref()
            .and_then(|p| uplinks.physical_interface_mappings.get(p))
            .and_then(|dev| {
                Some(Segment::Vlan {
                    physdev: dev.clone(),
                    id: u16::try_from(id).ok()?,
                })
            })
            .unwrap_or(Segment::Local),
        (segments::FLAT, _) => seg
            .physical_network
            .as_ref()
            .and_then(|p| uplinks.physical_interface_mappings.get(p))
            .map(|dev| Segment::Flat {
                physdev: dev.clone(),
            })
            .unwrap_or(Segment::Local),
        (segments::VXLAN, Some(vni)) => match &uplinks.vtep {
            Some((local, dev)) => Segment::Vxlan {
                vni,
                local: *local,
                dev: dev.clone(),
                peers: vec![],
            },
            None => Segment::Local,
        },
        _ => Segment::Local,
    }
}

pub fn is_guest_port(p: &Port) -> bool {
    p.device_owner.starts_with("compute:")
}

/// Bound to a host and wired by a Linux bridge agent there.
fn bound(p: &Port) -> bool {
    !p.binding_host_id.is_empty() && p.binding_vif_type == "bridge"
}

fn bound_here(p: &Port, host: &str) -> bool {
    bound(p) && (host.is_empty() || p.binding_host_id == host)
}

/// The host a live migration moves a bound port to (`binding:profile.migrating_to`, which Nova
/// sets before the migration): its agent wires the port ahead, so the guest arriving there finds
/// its tap and filters, while the port's status stays the source host's to report.
pub fn migrating_to(p: &Port) -> Option<&str> {
    p.binding_profile
        .get("migrating_to")
        .and_then(|v| v.as_str())
        .filter(|h| !h.is_empty() && *h != p.binding_host_id)
}

fn arriving_here(p: &Port, host: &str) -> bool {
    bound(p) && !host.is_empty() && migrating_to(p) == Some(host)
}

/// The VXLAN endpoints this host floods a network's traffic to (l2population's idea, from the
/// database instead of RPC): the hosts with a guest port bound on it and the hosts serving DHCP
/// and routers, each at the `tunneling_ip` its Linux bridge agent reported; never this host.
fn tunnel_peers(snap: &Snapshot, network: &str, me: &str, local: IpAddr) -> Vec<IpAddr> {
    let endpoint = |host: &str| -> Option<IpAddr> {
        snap.agents
            .iter()
            .find(|a| a.host == host && a.agent_type == AgentKind::LinuxBridge.agent_type())
            .and_then(|a| a.configurations.get("tunneling_ip")?.as_str()?.parse().ok())
    };
    let mut hosts: BTreeSet<&str> = snap
        .ports
        .iter()
        .filter(|p| is_guest_port(p) && bound(p) && p.network_id == network)
        .flat_map(|p| std::iter::once(p.binding_host_id.as_str()).chain(migrating_to(p)))
        .collect();
    hosts.extend(
        snap.agents
            .iter()
            .filter(|a| a.agent_type == AgentKind::Dhcp.agent_type())
            .map(|a| a.host.as_str()),
    );
    let peers: BTreeSet<IpAddr> = hosts
        .into_iter()
        .filter(|h| me.is_empty() || *h != me)
        .filter_map(endpoint)
        .filter(|ip| *ip != local)
        .collect();
    peers.into_iter().collect()
}

/// The address of `ip` with the prefix length of its subnet (`10.0.0.2/24`).
fn with_prefix(ip: &str, subnet: Option<&Subnet>) -> Option<String> {
    let s = subnet?;
    let net: IpNet = s.cidr.parse().ok()?;
    Some(format!("{ip}/{}", net.prefix_len()))
}

/// Neutron's DHCP hostname of a port without a DNS name: `host-10-0-0-5`.
fn dhcp_hostname(ip: &IpAddr) -> String {
    format!("host-{}", ip.to_string().replace(['.', ':'], "-"))
}

pub fn build(snap: &Snapshot, opts: &Options<'_>) -> Built {
    let subnets: HashMap<&str, &Subnet> = snap.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut realized: BTreeSet<&str> = BTreeSet::new();
    let mut vm_ports = Vec::new();
    let mut port_status: HashMap<String, &'static str> = HashMap::new();
    let nets: HashMap<&str, &Network> = snap.networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let groups = GroupIndex::new(snap);

    for p in snap.ports.iter().filter(|p| is_guest_port(p)) {
        let Some(net) = nets.get(p.network_id.as_str()) else {
            continue;
        };
        let arriving = opts.scope.guests && arriving_here(p, opts.host);
        let wired_here = arriving || (opts.scope.guests && bound_here(p, opts.host));
        if !wired_here {
            // Unbound: down (the services' agent says). Bound to another host: that host's
            // agent says; the network is served here if this host serves networks.
            if opts.scope.services {
                if bound(p) {
                    realized.insert(&net.id);
                } else {
                    port_status.insert(p.id.clone(), "DOWN");
                }
            }
            continue;
        }
        realized.insert(&net.id);
        vm_ports.push(VmPort {
            id: p.id.clone(),
            network_id: p.network_id.clone(),
            mac: p.mac_address.clone(),
            mtu: net.mtu,
            admin_up: p.admin_state_up && net.admin_state_up,
            filter: groups.filter_of(p),
        });
        if arriving {
            continue;
        }
        let up = p.admin_state_up && net.admin_state_up;
        port_status.insert(p.id.clone(), if up { "ACTIVE" } else { "DOWN" });
    }

    // Routers serving a built network are built, with all their interfaces' networks and their
    // gateway's external network.
    let mut routers = Vec::new();
    let mut external: HashMap<&str, Vec<String>> = HashMap::new();
    for r in snap.routers.iter().filter(|_| opts.scope.services) {
        let interfaces: Vec<&Port> = snap
            .ports
            .iter()
            .filter(|p| p.device_owner == OWNER_ROUTER_INTERFACE && p.device_id == r.id)
            .collect();
        if !r.admin_state_up
            || !interfaces
                .iter()
                .any(|p| realized.contains(p.network_id.as_str()))
        {
            continue;
        }
        let mut plan = RouterPlan {
            id: r.id.clone(),
            interfaces: vec![],
            gateway: None,
            routes: r
                .routes
                .iter()
                .filter_map(|h| Some((h.destination.clone(), h.nexthop.parse().ok()?)))
                .collect(),
            floating_ips: vec![],
            metadata_port: None,
        };
        for p in &interfaces {
            let Some(net) = nets.get(p.network_id.as_str()) else {
                continue;
            };
            realized.insert(&net.id);
            plan.interfaces.push(router_port(p, net, &subnets));
            port_status.insert(p.id.clone(), "ACTIVE");
        }
        let gw_port = r.gateway.as_ref().and_then(|g| {
            snap.ports
                .iter()
                .find(|p| p.id == g.port_id && p.device_owner == OWNER_ROUTER_GATEWAY)
        });
        if let (Some(g), Some(gp)) = (&r.gateway, gw_port)
            && let Some(ext) = nets.get(g.network_id.as_str())
        {
            let ext_cidrs: Vec<String> = snap
                .subnets
                .iter()
                .filter(|s| s.network_id == ext.id)
                .filter_map(|s| with_prefix(s.gateway_ip.as_deref()?, Some(s)))
                .collect();
            external.insert(&ext.id, ext_cidrs);
            realized.insert(&ext.id);
            let default_route = gp
                .fixed_ips
                .iter()
                .filter_map(|f| subnets.get(f.subnet_id.as_str()))
                .find(|s| s.ip_version == 4)
                .and_then(|s| s.gateway_ip.as_deref()?.parse().ok());
            plan.gateway = Some(RouterGateway {
                // advertisements go to the inside only
                port: RouterPort {
                    ra: None,
                    ..router_port(gp, ext, &subnets)
                },
                default_route,
                snat: g.enable_snat,
            });
            port_status.insert(gp.id.clone(), "ACTIVE");
            for f in snap
                .floating_ips
                .iter()
                .filter(|f| f.router_id.as_deref() == Some(r.id.as_str()))
            {
                let (Ok(IpAddr::V4(floating)), Some(Ok(IpAddr::V4(fixed)))) = (
                    f.floating_ip_address.parse::<IpAddr>(),
                    f.fixed_ip_address.as_deref().map(str::parse::<IpAddr>),
                ) else {
                    continue;
                };
                plan.floating_ips.push((floating, fixed));
            }
        }
        routers.push(plan);
    }

    let mut networks = Vec::new();
    for id in &realized {
        let Some(net) = nets.get(id) else { continue };
        let dhcp = snap
            .ports
            .iter()
            .filter(|_| opts.scope.services)
            .find(|p| p.network_id == net.id && p.device_owner == OWNER_DHCP)
            .and_then(|dp| dhcp_plan(snap, net, dp, &subnets, opts.lease_seconds, opts.metadata));
        if let Some(d) = &dhcp {
            port_status.insert(d.port_id.clone(), "ACTIVE");
        }
        let mut segment = data_segment(snap.segments.get(&net.id), opts.uplinks);
        if let Segment::Vxlan { local, peers, .. } = &mut segment {
            *peers = tunnel_peers(snap, &net.id, opts.host, *local);
        }
        networks.push(NetworkPlan {
            id: net.id.clone(),
            mtu: net.mtu,
            segment,
            external: external.remove(net.id.as_str()),
            dhcp,
        });
    }
    // DHCP ports of networks not built here are down.
    for p in snap
        .ports
        .iter()
        .filter(|p| opts.scope.services && p.device_owner == OWNER_DHCP)
    {
        port_status.entry(p.id.clone()).or_insert("DOWN");
    }
    Built {
        plan: HostPlan {
            names: opts.names.clone(),
            external_access: opts.external_access,
            networks,
            vm_ports,
            routers,
        },
        port_status,
    }
}

fn router_port(p: &Port, net: &Network, subnets: &HashMap<&str, &Subnet>) -> RouterPort {
    let mine: Vec<&Subnet> = p
        .fixed_ips
        .iter()
        .filter_map(|f| subnets.get(f.subnet_id.as_str()).copied())
        .collect();
    RouterPort {
        ra: router_advert(&mine, net.mtu),
        port_id: p.id.clone(),
        network_id: net.id.clone(),
        mac: p.mac_address.clone(),
        mtu: net.mtu,
        addresses: p
            .fixed_ips
            .iter()
            .filter_map(|f| with_prefix(&f.ip_address, subnets.get(f.subnet_id.as_str()).copied()))
            .collect(),
    }
}

/// Security groups as the data plane needs them: each group's rules, and each group's
/// members' addresses (what `remote_group_id` expands to).
struct GroupIndex<'a> {
    rules: HashMap<&'a str, Vec<&'a SecurityGroupRule>>,
    /// Each group's members' addresses as the filter writes them, per IP version (`true`:
    /// IPv6): made once per plan, not once per port and rule (with hundreds of ports in the
    /// default group, formatting them again for every port was most of an agent's pass).
    members: HashMap<(&'a str, bool), Vec<String>>,
}

impl<'a> GroupIndex<'a> {
    fn new(snap: &'a Snapshot) -> Self {
        let mut rules: HashMap<&str, Vec<&SecurityGroupRule>> = HashMap::new();
        for r in &snap.security_group_rules {
            rules
                .entry(r.security_group_id.as_str())
                .or_default()
                .push(r);
        }
        let mut members: HashMap<&str, Vec<IpNet>> = HashMap::new();
        for p in &snap.ports {
            let mut addrs: Vec<IpNet> = p.ips().map(IpNet::from).collect();
            addrs.extend(p.allowed_address_pairs.iter().filter_map(|a| {
                a.ip_address
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| a.ip_address.parse::<IpAddr>().ok().map(IpNet::from))
            }));
            for g in &p.security_groups {
                members
                    .entry(g.as_str())
                    .or_default()
                    .extend(addrs.iter().copied());
            }
        }
        let members = members
            .into_iter()
            .flat_map(|(g, addrs)| {
                let text = |v6: bool| -> Vec<String> {
                    addrs
                        .iter()
                        .filter(|n| n.addr().is_ipv6() == v6)
                        .map(|n| n.to_string())
                        .collect()
                };
                [((g, false), text(false)), ((g, true), text(true))]
            })
            .collect();
        GroupIndex { rules, members }
    }

    /// The port's filter: `None` with port security off.
    fn filter_of(&self, p: &Port) -> Option<PortFilter> {
        if !p.port_security_enabled {
            return None;
        }
        let mut allowed_sources: Vec<(String, String)> = p
            .fixed_ips
            .iter()
            .map(|f| (p.mac_address.clone(), f.ip_address.clone()))
            .collect();
        allowed_sources.extend(
            p.allowed_address_pairs
                .iter()
                .map(|a| (a.mac_address.clone(), a.ip_address.clone())),
        );
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for g in &p.security_groups {
            for r in self.rules.get(g.as_str()).into_iter().flatten() {
                let Some(rule) = self.rule(r) else { continue };
                if r.direction == "ingress" {
                    ingress.push(rule);
                } else {
                    egress.push(rule);
                }
            }
        }
        Some(PortFilter {
            allowed_sources,
            ingress,
            egress,
        })
    }

    /// One rule for the data plane; `None` when it can match nothing (a remote group without
    /// members of that IP version).
    fn rule(&self, r: &SecurityGroupRule) -> Option<FilterRule> {
        let ethertype = if r.ethertype == "IPv6" {
            EtherType::V6
        } else {
            EtherType::V4
        };
        let v6 = ethertype == EtherType::V6;
        let remote: Vec<String> = match (&r.remote_group_id, r.normalized_cidr()) {
            (Some(g), _) => match self.members.get(&(g.as_str(), v6)) {
                Some(addrs) if !addrs.is_empty() => addrs.clone(),
                _ => return None,
            },
            (None, Some(cidr)) => vec![cidr],
            (None, None) => vec![],
        };
        Some(FilterRule {
            ethertype,
            protocol: r.protocol_number().filter(|n| *n != 0),
            port_min: r.port_range_min.and_then(|v| u16::try_from(v).ok()),
            port_max: r.port_range_max.and_then(|v| u16::try_from(v).ok()),
            remote,
        })
    }
}

/// Whether the network's dnsmasq serves this subnet (Neutron's DHCP agent): IPv4, and IPv6
/// with DHCPv6 (stateful or stateless) or with no IPv6 mode at all.
fn dhcp_serves(s: &Subnet) -> bool {
    s.ip_version == 4
        || matches!(
            s.ipv6_address_mode.as_deref(),
            Some(DHCPV6_STATEFUL | DHCPV6_STATELESS)
        )
        || (s.ipv6_address_mode.is_none() && s.ipv6_ra_mode.is_none())
}

/// An IPv6 subnet whose addresses DHCPv6 hands out (or one without modes, as Neutron).
fn dhcpv6_stateful(s: &Subnet) -> bool {
    s.ip_version == 6
        && match s.ipv6_address_mode.as_deref() {
            Some(mode) => mode == DHCPV6_STATEFUL,
            None => s.ipv6_ra_mode.is_none(),
        }
}

const SLAAC: &str = "slaac";
const DHCPV6_STATEFUL: &str = "dhcpv6-stateful";
const DHCPV6_STATELESS: &str = "dhcpv6-stateless";

/// What the router advertises on an interface with these subnets (Neutron's radvd config):
/// `None` without an IPv6 subnet that has an `ipv6_ra_mode`.
fn router_advert(subnets: &[&Subnet], mtu: u32) -> Option<RouterAdvert> {
    let v6: Vec<&&Subnet> = subnets
        .iter()
        .filter(|s| s.ip_version == 6 && s.ipv6_ra_mode.is_some())
        .collect();
    if v6.is_empty() {
        return None;
    }
    let mode = |s: &Subnet| s.ipv6_ra_mode.clone().unwrap_or_default();
    let mut dns_servers: Vec<IpAddr> = Vec::new();
    for d in v6.iter().flat_map(|s| &s.dns_nameservers) {
        if let Ok(ip) = d.parse::<IpAddr>()
            && ip.is_ipv6()
            && !dns_servers.contains(&ip)
        {
            dns_servers.push(ip);
        }
    }
    Some(RouterAdvert {
        managed: v6.iter().any(|s| mode(s) == DHCPV6_STATEFUL),
        other_config: v6.iter().any(|s| mode(s) == DHCPV6_STATELESS),
        prefixes: v6
            .iter()
            .map(|s| {
                (
                    s.cidr.clone(),
                    matches!(mode(s).as_str(), SLAAC | DHCPV6_STATELESS),
                )
            })
            .collect(),
        dns_servers,
        mtu,
    })
}

fn dhcp_plan(
    snap: &Snapshot,
    net: &Network,
    dhcp_port: &Port,
    subnets: &HashMap<&str, &Subnet>,
    lease_seconds: u32,
    metadata: bool,
) -> Option<DhcpPlan> {
    let served: Vec<&Subnet> = dhcp_port
        .fixed_ips
        .iter()
        .filter_map(|f| subnets.get(f.subnet_id.as_str()).copied())
        .filter(|s| s.enable_dhcp && dhcp_serves(s))
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut addresses: Vec<String> = dhcp_port
        .fixed_ips
        .iter()
        .filter_map(|f| with_prefix(&f.ip_address, subnets.get(f.subnet_id.as_str()).copied()))
        .collect();
    if metadata {
        addresses.push(format!("{}/32", METADATA_ADDRESS));
    }
    let dhcp_subnets = served
        .iter()
        .filter_map(|s| {
            let cidr: IpNet = s.cidr.parse().ok()?;
            let v4 = s.ip_version == 4;
            // IPv6 has no router option nor classless routes: router advertisements do it.
            let mut classless_routes: Vec<(String, IpAddr)> = s
                .host_routes
                .iter()
                .filter(|_| v4)
                .filter_map(|r| Some((r.destination.clone(), r.nexthop.parse().ok()?)))
                .collect();
            let dhcp_ip = dhcp_port
                .fixed_ips
                .iter()
                .find(|f| f.subnet_id == s.id)
                .and_then(|f| f.ip_address.parse::<IpAddr>().ok());
            if let (true, true, Some(ip)) = (v4, metadata, dhcp_ip) {
                classless_routes.push((format!("{}/32", METADATA_ADDRESS), ip));
            }
            Some(DhcpSubnet {
                classless_routes,
                mtu: v4.then_some(net.mtu),
                tag: format!("subnet-{}", s.id),
                network: cidr.network(),
                prefix_len: cidr.prefix_len(),
                gateway: s.gateway_ip.as_deref().and_then(|g| g.parse().ok()),
                dns_servers: s
                    .dns_nameservers
                    .iter()
                    .filter_map(|d| d.parse().ok())
                    .collect(),
                lease_seconds,
            })
        })
        .collect();
    // Addresses are handed out on IPv4 and DHCPv6-stateful subnets; a stateless subnet's
    // hosts make their own (SLAAC) and ask DHCPv6 only for options.
    let served_ids: BTreeSet<&str> = served
        .iter()
        .filter(|s| s.ip_version == 4 || dhcpv6_stateful(s))
        .map(|s| s.id.as_str())
        .collect();
    let mut hosts = Vec::new();
    for p in snap
        .ports
        .iter()
        .filter(|p| p.network_id == net.id && p.id != dhcp_port.id)
    {
        for f in &p.fixed_ips {
            if !served_ids.contains(f.subnet_id.as_str()) {
                continue;
            }
            if let Ok(ip) = f.ip_address.parse::<IpAddr>() {
                hosts.push(DhcpHost {
                    mac: p.mac_address.clone(),
                    hostname: dhcp_hostname(&ip),
                    ip,
                });
            }
        }
    }
    Some(DhcpPlan {
        port_id: dhcp_port.id.clone(),
        mac: dhcp_port.mac_address.clone(),
        addresses,
        subnets: dhcp_subnets,
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FixedIp;
    use serde_json::json;

    fn net(id: &str) -> Network {
        Network {
            id: id.into(),
            name: "n".into(),
            description: String::new(),
            project_id: "p".into(),
            admin_state_up: true,
            shared: false,
            external: false,
            is_default: false,
            mtu: 1500,
            port_security_enabled: true,
            availability_zone_hints: vec![],
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }

    fn subnet(id: &str, net: &str, cidr: &str) -> Subnet {
        Subnet {
            id: id.into(),
            name: String::new(),
            description: String::new(),
            project_id: "p".into(),
            network_id: net.into(),
            ip_version: 4,
            cidr: cidr.into(),
            gateway_ip: Some("10.0.0.1".into()),
            allocation_pools: vec![],
            enable_dhcp: true,
            dns_nameservers: vec!["192.0.2.53".into()],
            host_routes: vec![],
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
            subnetpool_id: None,
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }

    fn port(id: &str, net: &str, owner: &str, ip: &str, host: &str) -> Port {
        Port {
            id: id.into(),
            name: String::new(),
            description: String::new(),
            project_id: "p".into(),
            network_id: net.into(),
            mac_address: format!("fa:16:3e:00:00:{}", &id[..2]),
            admin_state_up: true,
            status: "DOWN".into(),
            device_id: "d".into(),
            device_owner: owner.into(),
            fixed_ips: vec![FixedIp {
                subnet_id: "s1".into(),
                ip_address: ip.into(),
            }],
            allowed_address_pairs: vec![],
            security_groups: vec![],
            port_security_enabled: true,
            binding_host_id: host.into(),
            binding_profile: json!({}),
            binding_vnic_type: "normal".into(),
            binding_vif_type: if host.is_empty() { "unbound" } else { "bridge" }.into(),
            binding_vif_details: json!({}),
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }

    static NO_UPLINKS: std::sync::LazyLock<SegmentConfig> =
        std::sync::LazyLock::new(SegmentConfig::default);

    fn opts() -> Options<'static> {
        Options {
            names: Names::new("kt-"),
            host: "",
            lease_seconds: 600,
            metadata: false,
            uplinks: &NO_UPLINKS,
            external_access: ExternalAccess::Namespace,
            scope: Scope::ALL,
        }
    }

    #[test]
    fn metadata_address_and_route_go_with_the_dhcp_port() {
        let mut s1 = subnet("s1", "n1", "10.0.0.0/24");
        s1.host_routes = vec![crate::model::HostRoute {
            destination: "192.168.0.0/16".into(),
            nexthop: "10.0.0.254".into(),
        }];
        let snap = Snapshot {
            segments: HashMap::new(),
            agents: vec![],
            security_group_rules: vec![],
            routers: vec![],
            floating_ips: vec![],
            networks: vec![net("n1")],
            subnets: vec![s1],
            ports: vec![
                port("d1", "n1", OWNER_DHCP, "10.0.0.2", ""),
                port("g1", "n1", "compute:nova", "10.0.0.3", "h1"),
            ],
        };
        let o = Options {
            metadata: true,
            ..opts()
        };
        let b = build(&snap, &o);
        let d = b.plan.networks[0].dhcp.as_ref().expect("dhcp");
        assert_eq!(d.addresses, vec!["10.0.0.2/24", "169.254.169.254/32"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            d.subnets[0].classless_routes,
            vec![
                ("192.168.0.0/16".to_string(), ip("10.0.0.254")),
                ("169.254.169.254/32".to_string(), ip("10.0.0.2")),
            ]
        );
        // Without metadata only the subnet's own routes are pushed.
        let b = build(&snap, &opts());
        let d = b.plan.networks[0].dhcp.as_ref().expect("dhcp");
        assert_eq!(d.addresses, vec!["10.0.0.2/24"]);
        assert_eq!(d.subnets[0].classless_routes.len(), 1);
    }

    #[test]
    fn ipv6_subnets_get_radvd_and_dhcpv6_as_neutron() {
        let v6 = |id: &str, cidr: &str, ra: &str, addr: &str| {
            let mut s = subnet(id, "n1", cidr);
            s.ip_version = 6;
            s.gateway_ip = None;
            s.dns_nameservers = vec!["fd00:53::53".into()];
            s.ipv6_ra_mode = Some(ra.into());
            s.ipv6_address_mode = Some(addr.into());
            s
        };
        let slaac = v6("s6a", "fd00:a::/64", "slaac", "slaac");
        let stateful = v6("s6b", "fd00:b::/64", "dhcpv6-stateful", "dhcpv6-stateful");
        let stateless = v6("s6c", "fd00:c::/64", "dhcpv6-stateless", "dhcpv6-stateless");
        let on = |mut p: Port, ips: &[(&str, &str)]| {
            p.fixed_ips = ips
                .iter()
                .map(|(s, ip)| FixedIp {
                    subnet_id: (*s).into(),
                    ip_address: (*ip).into(),
                })
                .collect();
            p
        };
        let all = [
            ("s1", "10.0.0.x"),
            ("s6a", "fd00:a::x"),
            ("s6b", "fd00:b::x"),
            ("s6c", "fd00:c::x"),
        ];
        let ips = |last: &str| -> Vec<(&str, String)> {
            all.iter()
                .map(|(s, ip)| (*s, ip.replace('x', last)))
                .collect()
        };
        let with = |p: Port, last: &str| {
            let v = ips(last);
            let refs: Vec<(&str, &str)> = v.iter().map(|(s, ip)| (*s, ip.as_str())).collect();
            on(p, &refs)
        };
        let mut r = Router {
            id: "r1".into(),
            name: String::new(),
            description: String::new(),
            project_id: "p".into(),
            admin_state_up: true,
            status: "ACTIVE".into(),
            gateway: None,
            routes: vec![],
            availability_zone_hints: vec![],
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        };
        r.id = "r1".into();
        let mut qr = with(port("qr", "n1", OWNER_ROUTER_INTERFACE, "", ""), "1");
        qr.device_id = "r1".into();
        let snap = Snapshot {
            segments: HashMap::new(),
            agents: vec![],
            security_group_rules: vec![],
            routers: vec![r],
            floating_ips: vec![],
            networks: vec![net("n1")],
            subnets: vec![
                subnet("s1", "n1", "10.0.0.0/24"),
                slaac,
                stateful,
                stateless,
            ],
            ports: vec![
                with(port("d1", "n1", OWNER_DHCP, "", ""), "2"),
                with(port("g1", "n1", "compute:nova", "", "h1"), "3"),
                qr,
            ],
        };
        let b = build(&snap, &opts());
        // radvd: every IPv6 subnet advertised; SLAAC and stateless prefixes autonomous; the
        // managed and other-config flags from the stateful and stateless subnets
        let ra = b.plan.routers[0].interfaces[0].ra.as_ref().expect("ra");
        assert_eq!(
            ra.prefixes,
            vec![
                ("fd00:a::/64".to_string(), true),
                ("fd00:b::/64".to_string(), false),
                ("fd00:c::/64".to_string(), true),
            ]
        );
        assert!(ra.managed && ra.other_config);
        assert_eq!(
            ra.dns_servers,
            vec!["fd00:53::53".parse::<IpAddr>().expect("ip")]
        );
        // dnsmasq: IPv4 and both DHCPv6 subnets (not the SLAAC one); addresses only for the
        // IPv4 and stateful subnets
        let d = b.plan.networks[0].dhcp.as_ref().expect("dhcp");
        let tags: Vec<&str> = d.subnets.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(tags, vec!["subnet-s1", "subnet-s6b", "subnet-s6c"]);
        assert!(d.subnets[1].classless_routes.is_empty());
        let hosts: Vec<String> = d.hosts.iter().map(|h| h.ip.to_string()).collect();
        assert_eq!(
            hosts,
            vec!["10.0.0.3", "fd00:b::3", "10.0.0.1", "fd00:b::1"]
        );
        // a router without IPv6 subnets advertises nothing
        let mut snap4 = snap.clone();
        snap4.subnets.retain(|s| s.ip_version == 4);
        assert_eq!(
            build(&snap4, &opts()).plan.routers[0].interfaces[0].ra,
            None
        );
    }

    #[test]
    fn only_networks_with_bound_guests_are_built() {
        let snap = Snapshot {
            security_group_rules: vec![],
            routers: vec![],
            floating_ips: vec![],
            segments: HashMap::new(),
            agents: vec![],
            networks: vec![net("n1"), net("n2")],
            subnets: vec![
                subnet("s1", "n1", "10.0.0.0/24"),
                subnet("s2", "n2", "10.1.0.0/24"),
            ],
            ports: vec![
                port("d1", "n1", OWNER_DHCP, "10.0.0.2", ""),
                port("g1", "n1", "compute:nova", "10.0.0.3", "h1"),
                port("g2", "n1", "compute:nova", "10.0.0.4", ""),
                port("d2", "n2", OWNER_DHCP, "10.1.0.2", ""),
            ],
        };
        let b = build(&snap, &opts());
        assert_eq!(b.plan.networks.len(), 1);
        let n = &b.plan.networks[0];
        assert_eq!(n.id, "n1");
        let d = n.dhcp.as_ref().unwrap();
        assert_eq!(d.addresses, vec!["10.0.0.2/24"]);
        assert_eq!(d.subnets[0].lease_seconds, 600);
        // Both guests get a lease entry (the unbound one may boot later).
        assert_eq!(d.hosts.len(), 2);
        assert_eq!(d.hosts[0].hostname, "host-10-0-0-3");
        assert_eq!(b.plan.vm_ports.len(), 1);
        assert_eq!(b.port_status["g1"], "ACTIVE");
        assert_eq!(b.port_status["g2"], "DOWN");
        assert_eq!(b.port_status["d1"], "ACTIVE");
        assert_eq!(b.port_status["d2"], "DOWN");
    }

    #[test]
    fn another_hosts_ports_are_not_built_here() {
        let snap = Snapshot {
            security_group_rules: vec![],
            routers: vec![],
            floating_ips: vec![],
            segments: HashMap::new(),
            agents: vec![],
            networks: vec![net("n1")],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24")],
            ports: vec![port("g1", "n1", "compute:nova", "10.0.0.3", "h2")],
        };
        let o = Options {
            host: "h1",
            scope: Scope {
                guests: true,
                services: false,
            },
            ..opts()
        };
        let b = build(&snap, &o);
        assert!(b.plan.networks.is_empty() && b.plan.vm_ports.is_empty());
        assert!(
            b.port_status.is_empty(),
            "h2's agent sets its port's status"
        );
        // A host that also serves the networks builds the network (for its DHCP and
        // routers), still without h2's port.
        let b = build(
            &snap,
            &Options {
                host: "h1",
                ..opts()
            },
        );
        assert_eq!(b.plan.networks.len(), 1);
        assert!(b.plan.vm_ports.is_empty() && b.port_status.is_empty());
    }

    #[test]
    fn a_port_migrating_here_is_wired_ahead_but_its_status_stays_the_sources() {
        let mut g = port("g1", "n1", "compute:nova", "10.0.0.3", "h2");
        g.binding_profile = serde_json::json!({"migrating_to": "h1"});
        let snap = Snapshot {
            security_group_rules: vec![],
            routers: vec![],
            floating_ips: vec![],
            segments: HashMap::new(),
            agents: vec![],
            networks: vec![net("n1")],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24")],
            ports: vec![g],
        };
        let guests_only = |host| Options {
            host,
            scope: Scope {
                guests: true,
                services: false,
            },
            ..opts()
        };
        let b = build(&snap, &guests_only("h1"));
        assert_eq!(b.plan.networks.len(), 1);
        assert_eq!(b.plan.vm_ports.len(), 1, "the destination wires the port");
        assert!(
            b.port_status.is_empty(),
            "h2's agent sets its port's status"
        );
        let b = build(&snap, &guests_only("h2"));
        assert_eq!(b.plan.vm_ports.len(), 1, "the source keeps it meanwhile");
        assert_eq!(b.port_status.get("g1"), Some(&"ACTIVE"));
        assert!(build(&snap, &guests_only("h3")).plan.vm_ports.is_empty());
    }

    fn agent(host: &str, kind: AgentKind, tunneling_ip: &str) -> Agent {
        Agent {
            id: format!("{host}-{kind:?}"),
            agent_type: kind.agent_type().into(),
            binary: String::new(),
            topic: String::new(),
            host: host.into(),
            admin_state_up: true,
            description: None,
            availability_zone: None,
            configurations: json!({"tunneling_ip": tunneling_ip}),
            created_at: String::new(),
            started_at: String::new(),
            heartbeat_timestamp: String::new(),
        }
    }

    #[test]
    fn compute_hosts_wire_their_guests_and_the_network_host_serves_over_vxlan() {
        // hA serves DHCP; hB and hC each have a guest on n1 (VNI 7); g3 is not bound.
        let mut snap = Snapshot {
            networks: vec![net("n1")],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24")],
            ports: vec![
                port("d1", "n1", OWNER_DHCP, "10.0.0.2", ""),
                port("g1", "n1", "compute:nova", "10.0.0.3", "hB"),
                port("g2", "n1", "compute:nova", "10.0.0.4", "hC"),
                port("g3", "n1", "compute:nova", "10.0.0.5", ""),
            ],
            agents: vec![
                agent("hA", AgentKind::LinuxBridge, "192.0.2.1"),
                agent("hA", AgentKind::Dhcp, ""),
                agent("hB", AgentKind::LinuxBridge, "192.0.2.2"),
                agent("hC", AgentKind::LinuxBridge, "192.0.2.3"),
            ],
            ..Snapshot::default()
        };
        snap.segments.insert(
            "n1".into(),
            segments::Segment {
                network_type: "vxlan".into(),
                physical_network: None,
                segmentation_id: Some(7),
            },
        );
        let uplinks = |ip: &str| SegmentConfig {
            vtep: Some((ip.parse().unwrap(), "ul0".into())),
            ..SegmentConfig::default()
        };
        let peers_of = |b: &Built| -> Vec<String> {
            match &b.plan.networks[0].segment {
                Segment::Vxlan { peers, .. } => peers.iter().map(|p| p.to_string()).collect(),
                other => panic!("not vxlan: {other:?}"),
            }
        };
        let (ub, ua) = (uplinks("192.0.2.2"), uplinks("192.0.2.1"));
        let on_b = build(
            &snap,
            &Options {
                host: "hB",
                uplinks: &ub,
                scope: Scope {
                    guests: true,
                    services: false,
                },
                ..opts()
            },
        );
        assert_eq!(on_b.plan.vm_ports.len(), 1);
        assert_eq!(on_b.plan.vm_ports[0].id, "g1");
        assert!(on_b.plan.networks[0].dhcp.is_none() && on_b.plan.routers.is_empty());
        assert_eq!(peers_of(&on_b), vec!["192.0.2.1", "192.0.2.3"]);
        assert_eq!(on_b.port_status.len(), 1, "{:?}", on_b.port_status);
        assert_eq!(on_b.port_status["g1"], "ACTIVE");

        let on_a = build(
            &snap,
            &Options {
                host: "hA",
                uplinks: &ua,
                scope: Scope {
                    guests: false,
                    services: true,
                },
                ..opts()
            },
        );
        assert!(on_a.plan.vm_ports.is_empty());
        assert!(on_a.plan.networks[0].dhcp.is_some());
        assert_eq!(peers_of(&on_a), vec!["192.0.2.2", "192.0.2.3"]);
        assert_eq!(on_a.port_status["d1"], "ACTIVE");
        assert_eq!(on_a.port_status["g3"], "DOWN");
        assert!(!on_a.port_status.contains_key("g1") && !on_a.port_status.contains_key("g2"));

        // A host without a registered endpoint is no peer; C's guest gone: C is no peer.
        snap.ports.retain(|p| p.id != "g2");
        let on_b = build(
            &snap,
            &Options {
                host: "hB",
                uplinks: &ub,
                ..opts()
            },
        );
        assert_eq!(peers_of(&on_b), vec!["192.0.2.1"]);
    }

    fn rule(
        id: &str,
        sg: &str,
        dir: &str,
        proto: Option<&str>,
        remote_group: Option<&str>,
    ) -> SecurityGroupRule {
        SecurityGroupRule {
            id: id.into(),
            project_id: "p".into(),
            security_group_id: sg.into(),
            direction: dir.into(),
            ethertype: "IPv4".into(),
            protocol: proto.map(str::to_string),
            port_range_min: proto.map(|_| 22),
            port_range_max: proto.map(|_| 22),
            remote_ip_prefix: None,
            remote_group_id: remote_group.map(str::to_string),
            description: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }

    #[test]
    fn security_groups_become_filters() {
        let mut g1 = port("g1", "n1", "compute:nova", "10.0.0.3", "h1");
        let mut g2 = port("g2", "n1", "compute:nova", "10.0.0.4", "h1");
        let mut open = port("g3", "n1", "compute:nova", "10.0.0.5", "h1");
        g1.security_groups = vec!["def".into()];
        g2.security_groups = vec!["def".into(), "ssh".into()];
        open.port_security_enabled = false;
        let snap = Snapshot {
            networks: vec![net("n1")],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24")],
            ports: vec![g1, g2, open],
            routers: vec![],
            floating_ips: vec![],
            segments: HashMap::new(),
            agents: vec![],
            security_group_rules: vec![
                rule("r1", "def", "egress", None, None),
                rule("r2", "def", "ingress", None, Some("def")),
                rule("r3", "ssh", "ingress", Some("tcp"), None),
                // a remote group nobody is in matches nothing
                rule("r4", "ssh", "ingress", Some("udp"), Some("empty")),
            ],
        };
        let b = build(&snap, &opts());
        let f = |id: &str| {
            b.plan
                .vm_ports
                .iter()
                .find(|p| p.id == id)
                .and_then(|p| p.filter.clone())
        };
        let f1 = f("g1").unwrap();
        assert_eq!(
            f1.allowed_sources,
            vec![("fa:16:3e:00:00:g1".to_string(), "10.0.0.3".to_string())]
        );
        assert_eq!(f1.egress.len(), 1);
        assert_eq!(f1.ingress[0].remote, vec!["10.0.0.3/32", "10.0.0.4/32"]);
        let f2 = f("g2").unwrap();
        assert_eq!(f2.ingress.len(), 2);
        assert_eq!(f2.ingress[1].protocol, Some(6));
        assert_eq!(f2.ingress[1].port_min, Some(22));
        assert!(f2.ingress[1].remote.is_empty());
        assert!(f("g3").is_none(), "port security off: no filter");
    }

    #[test]
    fn a_router_serving_a_built_network_is_built_with_its_gateway_and_floating_ips() {
        use crate::model::{FloatingIp, HostRoute, RouterGateway as Gw};
        let mut ext = net("ext");
        ext.external = true;
        let mut ext_sub = subnet("es", "ext", "172.24.4.0/24");
        ext_sub.gateway_ip = Some("172.24.4.1".into());
        ext_sub.enable_dhcp = false;
        let mut gw = port("gw", "ext", OWNER_ROUTER_GATEWAY, "172.24.4.10", "");
        gw.fixed_ips[0].subnet_id = "es".into();
        gw.device_id = "r1".into();
        let mut rif = port("if", "n1", OWNER_ROUTER_INTERFACE, "10.0.0.1", "");
        rif.device_id = "r1".into();
        let router = Router {
            id: "r1".into(),
            name: String::new(),
            description: String::new(),
            project_id: "p".into(),
            admin_state_up: true,
            status: "ACTIVE".into(),
            gateway: Some(Gw {
                network_id: "ext".into(),
                enable_snat: true,
                port_id: "gw".into(),
            }),
            routes: vec![HostRoute {
                destination: "192.168.0.0/24".into(),
                nexthop: "10.0.0.9".into(),
            }],
            availability_zone_hints: vec![],
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        };
        let fip = FloatingIp {
            id: "f1".into(),
            project_id: "p".into(),
            description: String::new(),
            floating_network_id: "ext".into(),
            floating_ip_address: "172.24.4.50".into(),
            floating_port_id: "fp".into(),
            port_id: Some("g1".into()),
            fixed_ip_address: Some("10.0.0.3".into()),
            router_id: Some("r1".into()),
            status: "ACTIVE".into(),
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        };
        let mut snap = Snapshot {
            networks: vec![net("n1"), ext],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24"), ext_sub],
            ports: vec![rif, gw],
            security_group_rules: vec![],
            routers: vec![router],
            floating_ips: vec![fip],
            segments: HashMap::new(),
            agents: vec![],
        };
        // without a bound guest on its network, the router is not built
        assert!(build(&snap, &opts()).plan.routers.is_empty());
        snap.ports
            .push(port("g1", "n1", "compute:nova", "10.0.0.3", "h1"));
        let b = build(&snap, &opts());
        let r = &b.plan.routers[0];
        assert_eq!(r.interfaces[0].addresses, vec!["10.0.0.1/24"]);
        let g = r.gateway.as_ref().unwrap();
        assert_eq!(g.port.addresses, vec!["172.24.4.10/24"]);
        assert_eq!(g.default_route, Some("172.24.4.1".parse().unwrap()));
        assert!(g.snat);
        assert_eq!(
            r.floating_ips,
            vec![("172.24.4.50".parse().unwrap(), "10.0.0.3".parse().unwrap())]
        );
        assert_eq!(r.routes.len(), 1);
        let e = b.plan.networks.iter().find(|n| n.id == "ext").unwrap();
        assert_eq!(e.external, Some(vec!["172.24.4.1/24".to_string()]));
        assert_eq!(b.port_status["gw"], "ACTIVE");
        assert_eq!(b.port_status["if"], "ACTIVE");
    }

    #[test]
    fn provider_segments_map_to_uplinks_only_where_configured() {
        let seg = |t: &str, p: Option<&str>, id: Option<u32>| segments::Segment {
            network_type: t.into(),
            physical_network: p.map(str::to_string),
            segmentation_id: id,
        };
        let vlan = seg("vlan", Some("physnet1"), Some(101));
        let vxlan = seg("vxlan", None, Some(7));
        let flat = seg("flat", Some("physnet1"), None);
        let none = SegmentConfig::default();
        for s in [&vlan, &vxlan, &flat] {
            assert_eq!(data_segment(Some(s), &none), Segment::Local);
        }
        assert_eq!(data_segment(None, &none), Segment::Local);
        let mut uplinks = SegmentConfig::default();
        uplinks
            .physical_interface_mappings
            .insert("physnet1".into(), "eth9".into());
        uplinks.vtep = Some(("192.0.2.10".parse().unwrap(), "eth8".into()));
        assert_eq!(
            data_segment(Some(&vlan), &uplinks),
            Segment::Vlan {
                physdev: "eth9".into(),
                id: 101
            }
        );
        assert_eq!(
            data_segment(Some(&seg("vlan", Some("physnet2"), Some(5))), &uplinks),
            Segment::Local
        );
        assert_eq!(
            data_segment(Some(&vxlan), &uplinks),
            Segment::Vxlan {
                vni: 7,
                local: "192.0.2.10".parse().unwrap(),
                dev: "eth8".into(),
                peers: vec![],
            }
        );
        assert_eq!(
            data_segment(Some(&flat), &uplinks),
            Segment::Flat {
                physdev: "eth9".into()
            }
        );
        assert_eq!(
            data_segment(Some(&seg("flat", Some("physnet2"), None)), &uplinks),
            Segment::Local
        );
        // The plan of a built network carries its segment.
        let mut snap = Snapshot {
            networks: vec![net("n1")],
            subnets: vec![subnet("s1", "n1", "10.0.0.0/24")],
            ports: vec![port("g1", "n1", "compute:nova", "10.0.0.3", "h1")],
            ..Snapshot::default()
        };
        snap.segments.insert("n1".into(), vxlan.clone());
        let o = Options {
            uplinks: &uplinks,
            ..opts()
        };
        let b = build(&snap, &o);
        assert!(matches!(
            b.plan.networks[0].segment,
            Segment::Vxlan { vni: 7, .. }
        ));
    }
}
