//! `kumo ssh SERVER [COMMAND…]`: log in to a guest the way a user of this host would, without
//! touching the host's own routing: through the "outside world" namespace to the server's
//! floating IP (from the host itself with `[network] external_access = host`), else through
//! its network's DHCP namespace to its fixed IP. The server is
//! found by id or name in the databases (no token needed on the host that runs the cloud).

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use common::config::Config;
use dataplane::plan::{ExternalAccess, Names};

/// Where to reach a server: a namespace (`None`: the one kumo runs in) and an address in it.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub namespace: Option<String>,
    pub address: String,
}

/// The floating IP of one of `ports` (outside namespace), else the first fixed IPv4 (DHCP
/// namespace of that port's network).
pub fn route_to(
    names: &Names,
    external_access: ExternalAccess,
    ports: &[network::model::Port],
    floating: &[network::model::FloatingIp],
) -> Option<Route> {
    for p in ports {
        if let Some(f) = floating
            .iter()
            .find(|f| f.port_id.as_deref() == Some(p.id.as_str()))
        {
            return Some(Route {
                namespace: match external_access {
                    ExternalAccess::Namespace => Some(names.external_namespace()),
                    ExternalAccess::Host => None,
                },
                address: f.floating_ip_address.clone(),
            });
        }
    }
    ports.iter().find_map(|p| {
        p.fixed_ips
            .iter()
            .find(|f| !f.ip_address.contains(':'))
            .map(|f| Route {
                namespace: Some(names.dhcp_namespace(&p.network_id)),
                address: f.ip_address.clone(),
            })
    })
}

pub struct Ask {
    pub server: String,
    pub login: String,
    pub identity: Option<PathBuf>,
    pub command: Vec<String>,
}

/// Finds the route, then replaces this process with `ip netns exec NS ssh …`.
pub async fn run(cfg: &Config, demo_key: PathBuf, ask: Ask) -> Result<()> {
    let db_template = cfg.get_str("database", "connection")?;
    let compute = compute::ComputeService::open(compute::config::ComputeConfig::from_config(
        cfg,
        &db_template,
    )?)
    .await
    .context("opening the compute database")?;
    let network = network::NetworkService::open(network::config::NetworkConfig::from_config(
        cfg,
        &db_template,
    )?)
    .await
    .context("opening the network database")?;
    let instances = compute.live_instances().await.context("listing servers")?;
    let matches: Vec<_> = instances
        .iter()
        .filter(|i| i.uuid == ask.server || i.display_name == ask.server)
        .collect();
    let instance = match matches.as_slice() {
        [one] => *one,
        [] => bail!(
            "no server {:?} (by id or name); `openstack server list --all-projects` shows them",
            ask.server
        ),
        many => bail!(
            "{} servers are named {:?}; use an id: {}",
            many.len(),
            ask.server,
            many.iter()
                .map(|i| i.uuid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let snap = network.snapshot().await.context("reading the ports")?;
    let ports: Vec<_> = snap
        .ports
        .iter()
        .filter(|p| p.device_id == instance.uuid)
        .cloned()
        .collect();
    let names = Names::new(network.cfg.namespace_prefix.clone());
    let Some(route) = route_to(
        &names,
        network.cfg.external_access,
        &ports,
        &snap.floating_ips,
    ) else {
        bail!(
            "server {} has no IPv4 address to reach (no port on a network)",
            instance.uuid
        );
    };
    if let Some(ns) = &route.namespace
        && !dataplane::netns::namespace_exists(ns).unwrap_or(false)
    {
        bail!(
            "namespace {ns} does not exist: is the cloud running with its data plane ([network] dataplane), and is this the host that runs it?"
        );
    }
    let identity = ask
        .identity
        .or_else(|| demo_key.exists().then_some(demo_key));
    let mut cmd = match &route.namespace {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "ssh"]);
            c
        }
        None => std::process::Command::new("ssh"),
    };
    if let Some(key) = &identity {
        cmd.arg("-i").arg(key);
    }
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-l",
        &ask.login,
        &route.address,
    ]);
    cmd.args(&ask.command);
    eprintln!(
        "kumo ssh: {}@{} via {}",
        ask.login,
        route.address,
        route
            .namespace
            .as_deref()
            .map_or("this host".to_string(), |ns| format!("namespace {ns}"))
    );
    let err = cmd.exec();
    Err(err).context("running ssh (packages openssh-client, iproute2)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use network::model::{FixedIp, FloatingIp, Port};

    fn port(id: &str, net: &str, ip: &str) -> Port {
        Port {
            id: id.into(),
            name: String::new(),
            description: String::new(),
            project_id: "p".into(),
            network_id: net.into(),
            mac_address: "fa:16:3e:00:00:01".into(),
            admin_state_up: true,
            status: "ACTIVE".into(),
            device_id: "s".into(),
            device_owner: "compute:nova".into(),
            fixed_ips: vec![FixedIp {
                subnet_id: "sub".into(),
                ip_address: ip.into(),
            }],
            allowed_address_pairs: vec![],
            security_groups: vec![],
            port_security_enabled: true,
            binding_host_id: String::new(),
            binding_profile: serde_json::json!({}),
            binding_vnic_type: "normal".into(),
            binding_vif_type: "bridge".into(),
            binding_vif_details: serde_json::json!({}),
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        }
    }

    #[test]
    fn floating_ip_first_else_fixed_ip_through_dhcp_namespace() {
        let names = Names::new("kt-");
        let ports = vec![port("p1", "n1", "10.0.0.5")];
        assert_eq!(
            route_to(&names, ExternalAccess::Namespace, &ports, &[]),
            Some(Route {
                namespace: Some("kt-qdhcp-n1".into()),
                address: "10.0.0.5".into()
            })
        );
        let fip = FloatingIp {
            id: "f".into(),
            project_id: "p".into(),
            description: String::new(),
            floating_network_id: "ext".into(),
            floating_ip_address: "172.24.4.9".into(),
            floating_port_id: "fp".into(),
            port_id: Some("p1".into()),
            fixed_ip_address: Some("10.0.0.5".into()),
            router_id: Some("r".into()),
            status: "ACTIVE".into(),
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 0,
        };
        assert_eq!(
            route_to(
                &names,
                ExternalAccess::Namespace,
                &ports,
                std::slice::from_ref(&fip)
            ),
            Some(Route {
                namespace: Some("kt-kumo-ext".into()),
                address: "172.24.4.9".into()
            })
        );
        // external_access = host: the host itself holds the external gateway
        assert_eq!(
            route_to(&names, ExternalAccess::Host, &ports, &[fip]),
            Some(Route {
                namespace: None,
                address: "172.24.4.9".into()
            })
        );
        assert_eq!(route_to(&names, ExternalAccess::Namespace, &[], &[]), None);
    }
}
