//! The network service's options. Names are Neutron's where Neutron has one; the section is
//! kumo's `[network]` (Neutron's `[DEFAULT]` and `[quotas]` are shared by kumo's services).

use common::config::{Config, ConfigError, Opt};
use dataplane::plan::ExternalAccess;
use std::path::PathBuf;

use crate::segments::{self, SegmentConfig};

fn invalid(name: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        section: "network".into(),
        name: name.into(),
        value: value.into(),
        expected,
    }
}

/// The `[network]` options of provider networks, checked.
fn segment_config(c: &Config) -> Result<SegmentConfig, ConfigError> {
    let opt = |name: &str| c.get_str("network", name);
    let tenant = opt("tenant_network_type")?;
    if ![segments::LOCAL, segments::VLAN, segments::VXLAN].contains(&tenant.as_str()) {
        return Err(invalid(
            "tenant_network_type",
            &tenant,
            "local, vlan or vxlan",
        ));
    }
    let vni = opt("vni_ranges")?;
    let vlan = opt("network_vlan_ranges")?;
    let flat = opt("flat_networks")?;
    let maps = opt("physical_interface_mappings")?;
    let local_ip = opt("local_ip")?;
    let tunnel = opt("tunnel_interface")?;
    let vtep = match (local_ip.trim(), tunnel.trim()) {
        ("", _) | (_, "") => None,
        (ip, dev) => Some((
            ip.parse()
                .map_err(|_| invalid("local_ip", ip, "an IP address"))?,
            dev.to_string(),
        )),
    };
    Ok(SegmentConfig {
        tenant_network_type: tenant,
        vni_ranges: segments::parse_vni_ranges(&vni)
            .ok_or_else(|| invalid("vni_ranges", &vni, "first:last ranges within 1-16777215"))?,
        vlan_ranges: segments::parse_vlan_ranges(&vlan).ok_or_else(|| {
            invalid(
                "network_vlan_ranges",
                &vlan,
                "physnet or physnet:first:last (1-4094), separated by commas",
            )
        })?,
        flat_networks: segments::parse_flat_networks(&flat),
        physical_interface_mappings: segments::parse_mappings(&maps).ok_or_else(|| {
            invalid(
                "physical_interface_mappings",
                &maps,
                "physnet:interface pairs separated by commas",
            )
        })?,
        vtep,
    })
}

pub static OPTS: &[Opt] = &[
    Opt {
        section: "network",
        name: "connection",
        default: "",
        help: "Database URL of the network service. Empty: [database] connection with $service = network.",
    },
    Opt {
        section: "network",
        name: "public_endpoint",
        default: "",
        help: "Base URL of the network API as clients reach it (e.g. http://cloud:5000/network). Empty: derived from each request's Host header.",
    },
    Opt {
        section: "network",
        name: "policy_file",
        default: "$state_dir/network-policy.yaml",
        help: "Operator overrides of the network policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "network",
        name: "enforce_scope",
        default: "true",
        help: "Deny network calls made with a token whose scope the policy does not list (project).",
    },
    Opt {
        section: "network",
        name: "global_physnet_mtu",
        default: "1500",
        help: "MTU of the underlying physical network; a new network's mtu (Neutron's option).",
    },
    Opt {
        section: "network",
        name: "max_request_body_size",
        default: "114688",
        help: "Largest request body of the network API, in bytes (413 above), as Neutron's api.max_request_body_size.",
    },
    Opt {
        section: "network",
        name: "pagination_max_limit",
        default: "-1",
        help: "Largest page a list returns whatever limit is asked (-1: no cap), as Neutron's option.",
    },
    Opt {
        section: "network",
        name: "max_dns_nameservers",
        default: "5",
        help: "DNS nameservers a subnet may have.",
    },
    Opt {
        section: "network",
        name: "max_subnet_host_routes",
        default: "20",
        help: "Host routes a subnet may have.",
    },
    Opt {
        section: "network",
        name: "quota_network",
        default: "100",
        help: "Networks a project may have by default (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "quota_subnet",
        default: "100",
        help: "Subnets a project may have by default (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "quota_port",
        default: "500",
        help: "Ports a project may have by default (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "quota_router",
        default: "10",
        help: "Routers a project may have by default (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "quota_floatingip",
        default: "50",
        help: "Floating IPs a project may have by default (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "max_routes",
        default: "30",
        help: "Extra routes a router may have (Neutron's max_routes).",
    },
    Opt {
        section: "network",
        name: "base_mac",
        default: "fa:16:3e:00:00:00",
        help: "The first three octets of every generated port MAC (Neutron's base_mac).",
    },
    Opt {
        section: "network",
        name: "dataplane",
        default: "auto",
        help: "The data plane: `linux` (bridges, namespaces, nftables, dnsmasq; needs root), `none` (API only: ports go ACTIVE when bound, no packets move), `auto` (linux when running as root with ip, nft and dnsmasq installed, else none).",
    },
    Opt {
        section: "network",
        name: "namespace_prefix",
        default: "",
        help: "Prepended to the names of every namespace the data plane makes (kumo-host, kumo-ext, qdhcp-..., qrouter-...); tests give each kumo its own.",
    },
    Opt {
        section: "network",
        name: "host",
        default: "",
        help: "This host's name for port bindings (binding:host_id); empty: the machine's hostname, as the compute agent's.",
    },
    Opt {
        section: "network",
        name: "agent_report_interval",
        default: "30",
        help: "Seconds between the heartbeats of this process's network agents (Neutron's [agent] report_interval).",
    },
    Opt {
        section: "network",
        name: "agent_down_time",
        default: "75",
        help: "Seconds without a heartbeat after which a network agent is shown dead (`alive: false`), as Neutron's agent_down_time.",
    },
    Opt {
        section: "network",
        name: "dhcp_lease_duration",
        default: "86400",
        help: "DHCP lease time in seconds (Neutron's dhcp_lease_duration).",
    },
    Opt {
        section: "network",
        name: "isolated_metadata",
        default: "true",
        help: "Serve the metadata service (169.254.169.254) from each network's DHCP namespace and push a route to it by DHCP (Neutron's enable_isolated_metadata with force_metadata).",
    },
    Opt {
        section: "network",
        name: "external_access",
        default: "namespace",
        help: "Where the external networks' gateway addresses (the outside world's side of floating IPs) live: `namespace` (a `kumo-ext` namespace kumo makes; the host's routing is never touched; `kumo ssh` goes through it) or `host` (the namespace kumo runs in, as devstack's br-ex: the host reaches floating IPs directly; forwarding and NAT beyond the host stay the host's business).",
    },
    Opt {
        section: "network",
        name: "quota_security_group",
        default: "10",
        help: "Security groups a project may have by default, its default group included (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "quota_security_group_rule",
        default: "100",
        help: "Security group rules a project may have by default, those of its default group included (-1: unlimited).",
    },
    Opt {
        section: "network",
        name: "tenant_network_type",
        default: "vxlan",
        help: "Type of a network made without provider attributes (ML2's tenant_network_types, one): vxlan (the next free VNI of vni_ranges), vlan (the next free id of network_vlan_ranges) or local.",
    },
    Opt {
        section: "network",
        name: "vni_ranges",
        default: "1:1000",
        help: "VXLAN VNIs tenant networks take, as `first:last` ranges separated by commas (ML2's [ml2_type_vxlan] vni_ranges). Admins may give any VNI 1-16777215.",
    },
    Opt {
        section: "network",
        name: "network_vlan_ranges",
        default: "",
        help: "Physical networks for VLANs, each with the ids tenant networks take: `physnet1:100:199,physnet2` (a physnet without a range carries admins' VLANs only), as ML2's [ml2_type_vlan] network_vlan_ranges.",
    },
    Opt {
        section: "network",
        name: "flat_networks",
        default: "*",
        help: "Physical networks flat networks may use: `*` any, empty none, or names separated by commas (ML2's [ml2_type_flat] flat_networks).",
    },
    Opt {
        section: "network",
        name: "physical_interface_mappings",
        default: "",
        help: "This host's interface of each physical network, `physnet1:eth1` separated by commas (linuxbridge's option). A VLAN network on a mapped physnet gets a <iface>.<id> device on its bridge; the interface must be in the host namespace. Unmapped: the network stays local to this host.",
    },
    Opt {
        section: "network",
        name: "local_ip",
        default: "",
        help: "This host's VXLAN endpoint address (linuxbridge's [vxlan] local_ip). With tunnel_interface set, a VXLAN network gets a vxlan-<vni> device on its bridge; empty: VXLAN networks stay local to this host.",
    },
    Opt {
        section: "network",
        name: "tunnel_interface",
        default: "",
        help: "The interface (in the host namespace) that holds local_ip and carries VXLAN traffic.",
    },
];

/// Typed view of the options above.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub database_url: String,
    pub public_endpoint: Option<String>,
    pub policy_file: PathBuf,
    pub enforce_scope: bool,
    pub global_physnet_mtu: u32,
    pub max_request_body_size: usize,
    pub pagination_max_limit: i64,
    pub max_dns_nameservers: usize,
    pub max_subnet_host_routes: usize,
    pub quota_network: i64,
    pub quota_subnet: i64,
    pub quota_port: i64,
    pub quota_router: i64,
    pub quota_floatingip: i64,
    pub max_routes: usize,
    pub base_mac: String,
    pub dataplane: String,
    pub namespace_prefix: String,
    pub host: String,
    pub agent_report_interval: u64,
    pub agent_down_time: u64,
    pub dhcp_lease_duration: u32,
    pub isolated_metadata: bool,
    pub external_access: ExternalAccess,
    pub state_dir: PathBuf,
    pub quota_security_group: i64,
    pub quota_security_group_rule: i64,
    /// Provider networks: types, ranges, this host's uplinks.
    pub segments: SegmentConfig,
}

impl NetworkConfig {
    /// Read the network options; `database_template` is `[database] connection`.
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let database_url = match c.get::<Option<String>>("network", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "network"),
        };
        Ok(Self {
            database_url,
            public_endpoint: c
                .get::<Option<String>>("network", "public_endpoint")?
                .map(|s| s.trim_end_matches('/').to_string()),
            policy_file: c.get_str("network", "policy_file")?.into(),
            enforce_scope: c.get("network", "enforce_scope")?,
            global_physnet_mtu: c.get("network", "global_physnet_mtu")?,
            max_request_body_size: c.get("network", "max_request_body_size")?,
            pagination_max_limit: c.get("network", "pagination_max_limit")?,
            max_dns_nameservers: c.get("network", "max_dns_nameservers")?,
            max_subnet_host_routes: c.get("network", "max_subnet_host_routes")?,
            quota_network: c.get("network", "quota_network")?,
            quota_subnet: c.get("network", "quota_subnet")?,
            quota_port: c.get("network", "quota_port")?,
            quota_router: c.get("network", "quota_router")?,
            quota_floatingip: c.get("network", "quota_floatingip")?,
            max_routes: c.get("network", "max_routes")?,
            base_mac: c.get("network", "base_mac")?,
            dataplane: c.get_str("network", "dataplane")?,
            namespace_prefix: c.get_str("network", "namespace_prefix")?,
            host: c.get_str("network", "host")?,
            agent_report_interval: c.get("network", "agent_report_interval")?,
            agent_down_time: c.get("network", "agent_down_time")?,
            dhcp_lease_duration: c.get("network", "dhcp_lease_duration")?,
            isolated_metadata: c.get("network", "isolated_metadata")?,
            external_access: match c.get_str("network", "external_access")?.as_str() {
                "namespace" => ExternalAccess::Namespace,
                "host" => ExternalAccess::Host,
                other => return Err(invalid("external_access", other, "namespace or host")),
            },
            state_dir: c.state_dir().join("network"),
            quota_security_group: c.get("network", "quota_security_group")?,
            quota_security_group_rule: c.get("network", "quota_security_group_rule")?,
            segments: segment_config(c)?,
        })
    }

    /// Defaults, rooted at `state_dir` (tests and tools).
    pub fn defaults(state_dir: &std::path::Path) -> Self {
        let mut c = Config::new(state_dir);
        c.declare(OPTS);
        let template = format!("sqlite://{}/db/$service.sqlite", state_dir.display());
        match Self::from_config(&c, &template) {
            Ok(cfg) => cfg,
            Err(e) => panic!("network option defaults do not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_parse() {
        let d = tempfile::tempdir().unwrap();
        let c = super::NetworkConfig::defaults(d.path());
        assert!(c.database_url.ends_with("/db/network.sqlite"));
        assert_eq!(c.global_physnet_mtu, 1500);
        assert_eq!(c.quota_network, 100);
        assert_eq!(c.quota_security_group, 10);
        assert_eq!(c.quota_security_group_rule, 100);
        assert_eq!(c.segments, crate::segments::SegmentConfig::default());
    }
}
