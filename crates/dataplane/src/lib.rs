//! The network data plane primitives the network service drives (DESIGN §7), with Neutron's
//! names so operators find their way:
//!
//! - [`netns`]: named network namespaces compatible with `ip netns` (`/run/netns/NAME`), and
//!   running async code (or opening sockets) inside one from a dedicated thread that `setns`es.
//! - [`link`]: bridges, veth pairs, up/down, MTU, MAC, addresses, default route, bridge ports,
//!   inside a namespace.
//! - [`nft`]: one nftables table per namespace applied atomically (one `nft -j -f -`
//!   transaction), built from a small typed rule model (DNAT/SNAT/metadata redirect).
//! - [`dnsmasq`]: one dnsmasq per network in its `qdhcp-` namespace, Neutron-style hosts/opts
//!   files, SIGHUP on changes, found again by its pid file after a restart.
//!
//! - [`converge`]: makes one host match a [`plan::HostPlan`] (create, fix, remove leftovers),
//!   idempotently; [`converge::teardown`] removes everything kumo made under a prefix.
//! - [`plan`]: the desired state of a host (networks, guest ports, routers) and its names;
//!   [`filter`]: guest ports' anti-spoofing and security groups as nftables rules.
//!
//! Everything is idempotent: `ensure_*` succeeds when the thing is already there, `remove_*`
//! when it is already gone. Nothing here touches the root namespace unless a caller names it.

pub mod converge;
pub mod dnsmasq;
pub mod filter;
pub mod link;
pub mod netns;
pub mod nft;
pub mod plan;
pub mod radvd;

mod cmd;

pub use cmd::tool_available;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Neutron's bridge name for a network: `brq` + the first 11 characters of its id.
pub fn bridge_name(network_id: &str) -> String {
    format!("brq{}", prefix11(network_id))
}

/// Neutron's tap name for a port: `tap` + the first 11 characters of its id.
pub fn tap_name(port_id: &str) -> String {
    format!("tap{}", prefix11(port_id))
}

/// The DHCP namespace of a network.
pub fn dhcp_namespace(network_id: &str) -> String {
    format!("qdhcp-{network_id}")
}

/// The namespace of a router.
pub fn router_namespace(router_id: &str) -> String {
    format!("qrouter-{router_id}")
}

/// The namespace end of a network's DHCP port: `ns-` + port id[:11].
pub fn dhcp_ns_name(port_id: &str) -> String {
    format!("ns-{}", prefix11(port_id))
}

/// A router's interface (inside its namespace): `qr-` + port id[:11].
pub fn router_interface_name(port_id: &str) -> String {
    format!("qr-{}", prefix11(port_id))
}

/// A router's gateway interface (inside its namespace): `qg-` + port id[:11].
pub fn router_gateway_name(port_id: &str) -> String {
    format!("qg-{}", prefix11(port_id))
}

/// Both ends of an external network's veth into the outside-world namespace: `ext` +
/// network id[:11].
pub fn external_name(network_id: &str) -> String {
    format!("ext{}", prefix11(network_id))
}

/// A VXLAN segment's link: `vxlan-<vni>`.
pub fn vxlan_name(vni: u32) -> String {
    format!("vxlan-{vni}")
}

/// A VLAN segment's link: `<physdev>.<id>`.
pub fn vlan_name(physdev: &str, id: u16) -> String {
    format!("{physdev}.{id}")
}

fn prefix11(id: &str) -> &str {
    match id.char_indices().nth(11) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// What went wrong, phrased so the operator knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{what}: permission denied; the network data plane needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    )]
    NeedsRoot { what: String },
    #[error("`{tool}` not found in PATH; install the Debian package `{package}`")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("network namespace `{0}` does not exist (create it first with ensure_namespace)")]
    NoNamespace(String),
    #[error("invalid name `{name}`: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("unexpected output from `{command}`: {detail}")]
    Parse { command: String, detail: String },
    /// An error while making the host match its plan, naming the object (network, port,
    /// router) it happened on.
    #[error("{object}: {source}")]
    Converge {
        object: String,
        #[source]
        source: Box<Error>,
    },
    #[error("the namespace worker thread stopped before answering (it panicked; see the log)")]
    Worker,
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return Error::NeedsRoot { what };
        }
        Error::Io { what, source }
    }

    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        let what = what.into();
        if matches!(source, nix::Error::EPERM | nix::Error::EACCES) {
            return Error::NeedsRoot { what };
        }
        Error::Sys { what, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_names() {
        let id = "0f6a4c2e-5b1d-4e7a-9c3b-2d8e1f0a6b7c";
        assert_eq!(bridge_name(id), "brq0f6a4c2e-5b");
        assert_eq!(tap_name(id), "tap0f6a4c2e-5b");
        assert!(bridge_name(id).len() <= IFNAME_MAX);
        assert_eq!(dhcp_namespace(id), format!("qdhcp-{id}"));
        assert_eq!(router_namespace(id), format!("qrouter-{id}"));
        assert_eq!(tap_name("abc"), "tapabc");
    }
}
