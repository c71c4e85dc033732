//! Makes one host's data plane match a [`HostPlan`], idempotently (see `docs/dataplane.md`,
//! "Host layout and converge").
//!
//! Each namespace kumo owns is read once (`ip -d -j addr show`: links, their kinds and
//! addresses; routers also `ip -j route show` and their NAT table), compared in memory with the
//! plan, and only the differences are applied: what is missing is created, what differs is
//! fixed in place, leftovers of kumo's own naming are removed. A link that already matches is
//! never touched (a running guest's tap keeps its ifindex, a running dnsmasq is SIGHUPed only
//! when its files changed and restarted only when its command line must change).
//!
//! Stops at the first error; the error names the network, port or router it happened on.

use crate::dnsmasq::{DhcpConfig, Dnsmasq};
use crate::link::{LinkState, Netns, normalize_cidr};
use crate::nft::{NatRule, NatTable};
use crate::plan::{
    ExternalAccess, HostPlan, Names, NetworkPlan, RouterAdvert, RouterPlan, RouterPort, Segment,
};
use crate::radvd::Radvd;
use crate::{Error, Result, netns};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The NAT table of a router namespace.
pub const NAT_TABLE: &str = "kumo-nat";

/// What a converge did, for the caller's log. Each entry names the object and its namespace
/// (`kumo-host: bridge brq0f6a4c2e-5b`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Report {
    /// Nothing was created, changed or removed: the host already matched the plan.
    pub fn is_noop(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} changed, {} removed",
            self.created.len(),
            self.changed.len(),
            self.removed.len()
        )?;
        for (what, list) in [
            ("created", &self.created),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            if !list.is_empty() {
                write!(f, "; {what}: {}", list.join(", "))?;
            }
        }
        Ok(())
    }
}

trait Context<T> {
    fn ctx(self, object: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn ctx(self, object: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Converge {
            object: object(),
            source: Box::new(source),
        })
    }
}

/// The directory of a network's dnsmasq files.
pub fn dhcp_dir(state_dir: &Path, network_id: &str) -> PathBuf {
    state_dir.join("dhcp").join(network_id)
}

/// Where a router's radvd keeps its config, pid and log.
pub fn ra_dir(state_dir: &Path, router_id: &str) -> PathBuf {
    state_dir.join("ra").join(router_id)
}

/// Stops the radvds (a router namespace's processes die with it; this also catches one whose
/// namespace vanished) and removes the files of the routers `keep` does not hold.
async fn remove_leftover_radvds(
    names: &Names,
    state_dir: &Path,
    keep: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let mut stopped = Vec::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join("ra")) else {
        return Ok(stopped);
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(id) = e.file_name().into_string() else {
            continue;
        };
        if keep.contains(id.as_str()) || !e.path().is_dir() {
            continue;
        }
        let ns = names.router_namespace(&id);
        if Radvd::new(&ns, e.path())
            .stop()
            .await
            .ctx(|| format!("stopping radvd of router {id}"))?
        {
            stopped.push(ns);
        }
    }
    Ok(stopped)
}

/// A dnsmasq handle good enough to find and stop a running one (its pid file is in `dir`).
fn dnsmasq_for_stop(namespace: &str, dir: PathBuf) -> Dnsmasq {
    Dnsmasq::new(DhcpConfig {
        namespace: namespace.to_owned(),
        interface: "unused".to_owned(),
        dir,
        subnets: Vec::new(),
    })
}

/// Stops its dnsmasq (if `dhcp_dir` is given), kills the other processes, removes the namespace.
async fn remove_namespace_fully(name: &str, dhcp_dir: Option<PathBuf>) -> Result<()> {
    if let Some(dir) = dhcp_dir {
        let d = dnsmasq_for_stop(name, dir);
        d.stop().await?;
        d.remove_files().await?;
    }
    netns::kill_namespace_processes(name)?;
    netns::remove_namespace(name).await
}

/// The link a plan wants: what to check and set on an existing one, or set on a new one.
#[derive(Default)]
struct Want<'a> {
    mac: Option<&'a str>,
    mtu: Option<u32>,
    master: Option<&'a str>,
    up: bool,
    /// Exactly these addresses (normalized `ADDR/LEN`); `None`: leave addresses alone.
    addrs: Option<Vec<String>>,
}

/// One namespace's links, read once.
struct Ns {
    name: String,
    handle: Netns,
    links: HashMap<String, LinkState>,
}

impl Ns {
    async fn read(name: &str) -> Result<Ns> {
        Self::read_handle(name, Netns::named(name)).await
    }

    /// The namespace kumo runs in (`[network] external_access = host`), named `host` in
    /// reports.
    async fn read_current() -> Result<Ns> {
        Self::read_handle("host", Netns::current()).await
    }

    async fn read_handle(name: &str, handle: Netns) -> Result<Ns> {
        let links = handle
            .snapshot()
            .await?
            .into_iter()
            .map(|l| (l.ifname.clone(), l))
            .collect();
        Ok(Ns {
            name: name.to_owned(),
            handle,
            links,
        })
    }
}

struct Converger<'a> {
    plan: &'a HostPlan,
    state_dir: &'a Path,
    report: Report,
}

async fn lo_up(ns: &Ns) -> Result<()> {
    if !ns.links.get("lo").is_some_and(LinkState::is_up) {
        ns.handle.set_up("lo").await?;
    }
    Ok(())
}

fn normalize_all(cidrs: &[String]) -> Result<Vec<String>> {
    cidrs.iter().map(|c| normalize_cidr(c)).collect()
}

/// The network address of `10.0.0.1/24` as (10.0.0.0, 24); `None` for IPv6.
fn v4_subnet(cidr: &str) -> Result<Option<(Ipv4Addr, u8)>> {
    let norm = normalize_cidr(cidr)?;
    let (addr, len) = norm.split_once('/').unwrap_or((&norm, "32"));
    let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) else {
        return Ok(None);
    };
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ok(Some((Ipv4Addr::from(u32::from(addr) & mask), len)))
}

/// The first IPv4 address of a list of CIDRs.
fn first_v4(cidrs: &[String]) -> Option<Ipv4Addr> {
    cidrs
        .iter()
        .find_map(|c| c.split_once('/').and_then(|(a, _)| a.parse().ok()))
}

impl<'a> Converger<'a> {
    fn names(&self) -> &'a Names {
        &self.plan.names
    }

    fn network(&self, id: &str) -> Option<&'a NetworkPlan> {
        self.plan.networks.iter().find(|n| n.id == id)
    }

    fn created(&mut self, ns: &str, what: String) {
        tracing::info!(namespace = ns, "created {what}");
        self.report.created.push(format!("{ns}: {what}"));
    }
    fn changed(&mut self, ns: &str, what: String) {
        tracing::info!(namespace = ns, "changed {what}");
        self.report.changed.push(format!("{ns}: {what}"));
    }
    fn removed(&mut self, ns: &str, what: String) {
        tracing::info!(namespace = ns, "removed {what}");
        self.report.removed.push(format!("{ns}: {what}"));
    }

    /// Every id the plan refers to exists, names fit, no two objects share an interface name.
    fn validate(&self) -> Result<()> {
        let p = self.plan;
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut claim = |name: String, owner: String| -> Result<()> {
            crate::link::check_ifname(&name).ctx(|| owner.clone())?;
            if let Some(other) = seen.insert(name.clone(), owner.clone()) {
                return Err(Error::Invalid(format!(
                    "{owner} and {other} both need the interface `{name}` (ids must differ in \
                     their first 11 characters)"
                )));
            }
            Ok(())
        };
        for n in &p.networks {
            let owner = format!("network {}", n.id);
            claim(crate::bridge_name(&n.id), owner.clone())?;
            match &n.segment {
                Segment::Local => {}
                Segment::Flat { physdev } => claim(physdev.clone(), owner.clone())?,
                Segment::Vlan { physdev, id } => {
                    claim(crate::vlan_name(physdev, *id), owner.clone())?
                }
                Segment::Vxlan { vni, .. } => claim(crate::vxlan_name(*vni), owner.clone())?,
            }
            if n.external.is_some() {
                claim(crate::external_name(&n.id), owner.clone())?;
            }
            if let Some(d) = &n.dhcp {
                claim(
                    crate::tap_name(&d.port_id),
                    format!("DHCP port {} of {owner}", d.port_id),
                )?;
            }
        }
        for v in &p.vm_ports {
            let owner = format!("port {}", v.id);
            if self.network(&v.network_id).is_none() {
                return Err(Error::Invalid(format!(
                    "{owner} is on network {} which is not in the plan",
                    v.network_id
                )));
            }
            claim(crate::tap_name(&v.id), owner)?;
        }
        for r in &p.routers {
            let ports = r
                .interfaces
                .iter()
                .chain(r.gateway.as_ref().map(|g| &g.port));
            for port in ports {
                let owner = format!("port {} of router {}", port.port_id, r.id);
                if self.network(&port.network_id).is_none() {
                    return Err(Error::Invalid(format!(
                        "{owner} is on network {} which is not in the plan",
                        port.network_id
                    )));
                }
                claim(crate::tap_name(&port.port_id), owner)?;
            }
        }
        Ok(())
    }

    /// Namespaces under the prefix that the plan no longer lists (routers, DHCP, the outside
    /// world), with their processes; dnsmasq directories of networks without DHCP.
    async fn remove_leftover_namespaces(&mut self) -> Result<()> {
        let names = self.names();
        let dhcp: BTreeSet<&str> = self
            .plan
            .networks
            .iter()
            .filter(|n| n.dhcp.is_some())
            .map(|n| n.id.as_str())
            .collect();
        let routers: BTreeSet<&str> = self.plan.routers.iter().map(|r| r.id.as_str()).collect();
        let any_external = self.plan.networks.iter().any(|n| n.external.is_some());
        for ns in netns::list_namespaces()? {
            let Some(rest) = ns.strip_prefix(&names.prefix) else {
                continue;
            };
            if let Some(id) = rest.strip_prefix("qdhcp-") {
                if !dhcp.contains(id) {
                    remove_namespace_fully(&ns, Some(dhcp_dir(self.state_dir, id)))
                        .await
                        .ctx(|| format!("removing the DHCP namespace {ns} of network {id}"))?;
                    self.removed(&ns, "namespace".into());
                }
            } else if let Some(id) = rest.strip_prefix("qrouter-") {
                if !routers.contains(id) {
                    remove_namespace_fully(&ns, None)
                        .await
                        .ctx(|| format!("removing the namespace {ns} of router {id}"))?;
                    self.removed(&ns, "namespace".into());
                }
            } else if ns == names.external_namespace()
                && (!any_external || self.plan.external_access == ExternalAccess::Host)
            {
                remove_namespace_fully(&ns, None)
                    .await
                    .ctx(|| format!("removing the outside-world namespace {ns}"))?;
                self.removed(&ns, "namespace".into());
            }
        }
        // dnsmasq files (and a dnsmasq whose namespace vanished) of networks without DHCP.
        let dir = self.state_dir.join("dhcp");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.filter_map(|e| e.ok()) {
                let Ok(id) = e.file_name().into_string() else {
                    continue;
                };
                if !dhcp.contains(id.as_str()) && e.path().is_dir() {
                    let d = dnsmasq_for_stop(&names.dhcp_namespace(&id), e.path());
                    d.stop()
                        .await
                        .ctx(|| format!("stopping dnsmasq of network {id}"))?;
                    d.remove_files()
                        .await
                        .ctx(|| format!("removing the DHCP files of network {id}"))?;
                }
            }
        }
        for ns in remove_leftover_radvds(names, self.state_dir, &routers).await? {
            self.removed(&ns, "radvd".into());
        }
        Ok(())
    }

    /// Creates the namespace unless it exists.
    async fn ensure_namespace(&mut self, name: &str) -> Result<()> {
        if !netns::namespace_exists(name)? {
            netns::ensure_namespace(name).await?;
            self.created(name, "namespace".into());
        }
        Ok(())
    }

    /// Creates the namespace unless it exists; `lo` up; reads its links.
    async fn namespace(&mut self, name: &str) -> Result<Ns> {
        self.ensure_namespace(name).await?;
        let ns = Ns::read(name).await?;
        lo_up(&ns).await?;
        Ok(ns)
    }

    async fn forwarding(&mut self, ns: &str) -> Result<()> {
        if netns::ensure_net_sysctl(ns, "ipv4/ip_forward", "1").await? {
            self.changed(ns, "ipv4/ip_forward=1".into());
        }
        Ok(())
    }

    /// Makes `name` (existing as `cur`, or just created when `cur` is `None`) look like `want`.
    async fn fix_link(
        &mut self,
        ns: &Ns,
        name: &str,
        cur: Option<&LinkState>,
        want: &Want<'_>,
    ) -> Result<()> {
        let blank = LinkState::default();
        let fresh = cur.is_none();
        let cur = cur.unwrap_or(&blank);
        let h = &ns.handle;
        let mut what = Vec::new();
        if let Some(mac) = want.mac
            && !cur
                .address
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(mac))
        {
            h.set_mac(name, &mac.to_ascii_lowercase()).await?;
            what.push(format!("mac {mac}"));
        }
        if let Some(mtu) = want.mtu
            && cur.mtu != mtu
        {
            h.set_mtu(name, mtu).await?;
            what.push(format!("mtu {mtu}"));
        }
        if let Some(master) = want.master
            && cur.master.as_deref() != Some(master)
        {
            h.set_master(name, master).await?;
            what.push(format!("master {master}"));
        }
        if let Some(addrs) = &want.addrs {
            let have = cur.cidrs();
            for a in have.iter().filter(|a| !addrs.contains(a)) {
                h.del_address(name, a).await?;
                what.push(format!("-{a}"));
            }
            for a in addrs.iter().filter(|a| !have.contains(a)) {
                h.add_address(name, a).await?;
                what.push(format!("+{a}"));
            }
        }
        if want.up != cur.is_up() || fresh {
            if want.up {
                h.set_up(name).await?;
            } else {
                h.set_down(name).await?;
            }
            if !fresh {
                what.push(if want.up { "up" } else { "down" }.into());
            }
        }
        if !fresh && !what.is_empty() {
            self.changed(&ns.name, format!("link {name} ({})", what.join(", ")));
        }
        Ok(())
    }

    /// A veth pair `host_name` (in `host`) ↔ `peer_name` (in `peer`): kept when both ends exist
    /// and point at each other, else (re)created. True when created.
    async fn veth_pair(
        &mut self,
        host: &Ns,
        host_name: &str,
        peer: &Ns,
        peer_name: &str,
    ) -> Result<bool> {
        let a = host.links.get(host_name);
        let b = peer.links.get(peer_name);
        if let (Some(a), Some(b)) = (a, b)
            && a.kind() == Some("veth")
            && b.kind() == Some("veth")
            && a.link_index == Some(b.ifindex)
            && b.link_index == Some(a.ifindex)
        {
            return Ok(false);
        }
        if a.is_some() {
            host.handle.remove_link(host_name).await?;
        }
        if b.is_some() {
            peer.handle.remove_link(peer_name).await?;
        }
        if peer.handle.name().is_some() {
            host.handle
                .ensure_veth(host_name, peer_name, Some(&peer.handle))
                .await?;
        } else {
            // `ip link … netns` takes a name; the current namespace has none, so the pair is
            // made from there.
            peer.handle
                .ensure_veth(peer_name, host_name, Some(&host.handle))
                .await?;
        }
        self.created(
            &host.name,
            format!("veth {host_name} <-> {}/{peer_name}", peer.name),
        );
        Ok(true)
    }

    /// The host namespace: leftovers out, then bridges, segments and guest taps.
    async fn host(&mut self) -> Result<Ns> {
        let name = self.names().host_namespace();
        let host = self
            .namespace(&name)
            .await
            .ctx(|| format!("host namespace {name}"))?;
        let p = self.plan;
        let mut expected: BTreeSet<String> = BTreeSet::new();
        for n in &p.networks {
            expected.insert(crate::bridge_name(&n.id));
            match &n.segment {
                // The physical interface is the host's: never a leftover (a bridge that goes
                // releases it).
                Segment::Local | Segment::Flat { .. } => {}
                Segment::Vlan { physdev, id } => {
                    expected.insert(crate::vlan_name(physdev, *id));
                }
                Segment::Vxlan { vni, .. } => {
                    expected.insert(crate::vxlan_name(*vni));
                }
            }
            if n.external.is_some() {
                expected.insert(crate::external_name(&n.id));
            }
            if let Some(d) = &n.dhcp {
                expected.insert(crate::tap_name(&d.port_id));
            }
        }
        expected.extend(p.vm_ports.iter().map(|v| crate::tap_name(&v.id)));
        for r in &p.routers {
            for port in r
                .interfaces
                .iter()
                .chain(r.gateway.as_ref().map(|g| &g.port))
            {
                expected.insert(crate::tap_name(&port.port_id));
            }
        }
        // Leftovers: ports first, bridges last.
        let mut leftovers: Vec<&LinkState> = host
            .links
            .values()
            .filter(|l| !expected.contains(&l.ifname))
            .filter(|l| {
                ["brq", "tap", "ext"]
                    .iter()
                    .any(|p| l.ifname.starts_with(p))
                    || matches!(l.kind(), Some("vlan" | "vxlan"))
            })
            .collect();
        leftovers.sort_by_key(|l| (l.kind() == Some("bridge"), l.ifname.clone()));
        let leftovers: Vec<String> = leftovers.iter().map(|l| l.ifname.clone()).collect();
        for l in leftovers {
            let existed = host
                .handle
                .delete_link(&l)
                .await
                .ctx(|| format!("removing the leftover link {l} from {name}"))?;
            if existed {
                self.removed(&name, format!("link {l}"));
            }
        }

        for n in &p.networks {
            self.bridge(&host, n)
                .await
                .ctx(|| format!("network {}", n.id))?;
        }
        for v in &p.vm_ports {
            let Some(net) = self.network(&v.network_id) else {
                continue;
            };
            let tap = crate::tap_name(&v.id);
            let cur = host.links.get(&tap);
            let is_tap = cur.is_some_and(|l| {
                l.kind() == Some("tun") && l.info("type").and_then(|t| t.as_str()) == Some("tap")
            });
            let cur = if is_tap {
                cur
            } else {
                if cur.is_some() {
                    host.handle
                        .remove_link(&tap)
                        .await
                        .ctx(|| format!("port {}: removing {tap} (not a tap)", v.id))?;
                }
                host.handle
                    .ensure_tap(&tap)
                    .await
                    .ctx(|| format!("port {}: creating the tap {tap}", v.id))?;
                self.created(&name, format!("tap {tap}"));
                None
            };
            let bridge = crate::bridge_name(&net.id);
            let want = Want {
                mtu: Some(v.mtu),
                master: Some(&bridge),
                up: v.admin_up,
                ..Want::default()
            };
            self.fix_link(&host, &tap, cur, &want)
                .await
                .ctx(|| format!("port {}: tap {tap}", v.id))?;
        }
        Ok(host)
    }

    /// A network's bridge and its VLAN or VXLAN uplink.
    async fn bridge(&mut self, host: &Ns, n: &NetworkPlan) -> Result<()> {
        let br = crate::bridge_name(&n.id);
        let cur = match host.links.get(&br) {
            Some(l) if l.kind() == Some("bridge") => Some(l),
            other => {
                if other.is_some() {
                    host.handle.remove_link(&br).await?;
                }
                host.handle.ensure_bridge(&br).await?;
                self.created(&host.name, format!("bridge {br}"));
                None
            }
        };
        // The bridge is layer 2 only: without this it would take a SLAAC address from a
        // router's advertisements and the host namespace would join the network.
        if cur.is_none_or(|l| l.addr_info.iter().any(|a| a.local.contains(':'))) {
            let key = format!("ipv6/conf/{br}/disable_ipv6");
            if netns::ensure_net_sysctl(&host.name, &key, "1").await? && cur.is_some() {
                self.changed(&host.name, format!("{key}=1"));
            }
        }
        let want = Want {
            mtu: Some(n.mtu),
            up: true,
            ..Want::default()
        };
        self.fix_link(host, &br, cur, &want).await?;
        match &n.segment {
            Segment::Local => {}
            Segment::Flat { physdev } => {
                let Some(phys) = host.links.get(physdev) else {
                    return Err(Error::Invalid(format!(
                        "flat segment: the physical interface `{physdev}` is not in namespace \
                         {}; move it there (ip link set {physdev} netns {})",
                        host.name, host.name
                    )));
                };
                let want = Want {
                    master: Some(&br),
                    up: true,
                    ..Want::default()
                };
                self.fix_link(host, physdev, Some(phys), &want).await?;
            }
            Segment::Vlan { physdev, id } => {
                let name = crate::vlan_name(physdev, *id);
                let Some(phys) = host.links.get(physdev) else {
                    return Err(Error::Invalid(format!(
                        "VLAN segment: the physical interface `{physdev}` is not in namespace \
                         {}; move it there (ip link set {physdev} netns {})",
                        host.name, host.name
                    )));
                };
                if !phys.is_up() {
                    host.handle.set_up(physdev).await?;
                    self.changed(&host.name, format!("link {physdev} (up)"));
                }
                let cur = host.links.get(&name);
                let ok = cur.is_some_and(|l| {
                    l.kind() == Some("vlan")
                        && l.info("id").and_then(|v| v.as_u64()) == Some(u64::from(*id))
                        && l.link.as_deref() == Some(physdev.as_str())
                });
                let cur = if ok {
                    cur
                } else {
                    if cur.is_some() {
                        host.handle.remove_link(&name).await?;
                    }
                    host.handle.add_vlan(&name, physdev, *id).await?;
                    self.created(&host.name, format!("vlan {name}"));
                    None
                };
                let want = Want {
                    mtu: Some(n.mtu),
                    master: Some(&br),
                    up: true,
                    ..Want::default()
                };
                self.fix_link(host, &name, cur, &want).await?;
            }
            Segment::Vxlan {
                vni,
                local,
                dev,
                peers,
            } => {
                let name = crate::vxlan_name(*vni);
                let cur = host.links.get(&name);
                let ok = cur.is_some_and(|l| {
                    l.kind() == Some("vxlan")
                        && l.info("id").and_then(|v| v.as_u64()) == Some(u64::from(*vni))
                        && l.info("local").and_then(|v| v.as_str()) == Some(&local.to_string())
                        && l.info("link").and_then(|v| v.as_str()) == Some(dev.as_str())
                        && l.info("port").and_then(|v| v.as_u64()) == Some(4789)
                        && l.info("learning").and_then(|v| v.as_bool()) == Some(false)
                });
                let cur = if ok {
                    cur
                } else {
                    if cur.is_some() {
                        host.handle.remove_link(&name).await?;
                    }
                    host.handle.add_vxlan(&name, *vni, *local, dev).await?;
                    self.created(&host.name, format!("vxlan {name}"));
                    None
                };
                let want = Want {
                    mtu: Some(n.mtu),
                    master: Some(&br),
                    up: true,
                    ..Want::default()
                };
                self.fix_link(host, &name, cur, &want).await?;
                let have = host.handle.fdb_peers(&name).await?;
                let want: Vec<String> = peers.iter().map(IpAddr::to_string).collect();
                for peer in want.iter().filter(|p| !have.contains(p)) {
                    host.handle.fdb_append_peer(&name, peer).await?;
                    self.changed(&host.name, format!("vxlan {name} (+peer {peer})"));
                }
                for peer in have.iter().filter(|p| !want.contains(p)) {
                    host.handle.fdb_del_peer(&name, peer).await?;
                    self.changed(&host.name, format!("vxlan {name} (-peer {peer})"));
                }
            }
        }
        Ok(())
    }

    /// The outside-world namespace and one veth per external network.
    async fn external(&mut self, host: &Ns) -> Result<()> {
        let externals: Vec<&NetworkPlan> = self
            .plan
            .networks
            .iter()
            .filter(|n| n.external.is_some())
            .collect();
        if externals.is_empty() {
            return Ok(()); // its namespace went with the leftovers
        }
        let (name, ext) = match self.plan.external_access {
            ExternalAccess::Namespace => {
                let name = self.names().external_namespace();
                let ext = self
                    .namespace(&name)
                    .await
                    .ctx(|| format!("outside-world namespace {name}"))?;
                self.forwarding(&name)
                    .await
                    .ctx(|| format!("outside-world namespace {name}"))?;
                (name, ext)
            }
            // The host's own namespace: its sysctls and other links are the host's business;
            // an `ext…` link of a network no longer external goes with its peer in the host
            // namespace.
            ExternalAccess::Host => {
                let ext = Ns::read_current().await.ctx(|| {
                    "the namespace kumo runs in ([network] external_access = host)".to_string()
                })?;
                (ext.name.clone(), ext)
            }
        };
        let expected: BTreeSet<String> = externals
            .iter()
            .map(|n| crate::external_name(&n.id))
            .collect();
        let own_namespace = self.plan.external_access == ExternalAccess::Namespace;
        for l in ext.links.values().filter(|_| own_namespace) {
            if l.ifname.starts_with("ext") && !expected.contains(&l.ifname) {
                let existed = ext
                    .handle
                    .delete_link(&l.ifname)
                    .await
                    .ctx(|| format!("removing the leftover link {} from {name}", l.ifname))?;
                if existed {
                    self.removed(&name, format!("link {}", l.ifname));
                }
            }
        }
        for n in externals {
            let object = || format!("external network {}", n.id);
            let link = crate::external_name(&n.id);
            let fresh = self.veth_pair(host, &link, &ext, &link).await.ctx(object)?;
            let bridge = crate::bridge_name(&n.id);
            let want = Want {
                mtu: Some(n.mtu),
                master: Some(&bridge),
                up: true,
                ..Want::default()
            };
            let cur = (!fresh).then(|| host.links.get(&link)).flatten();
            self.fix_link(host, &link, cur, &want).await.ctx(object)?;
            let want = Want {
                mtu: Some(n.mtu),
                up: true,
                addrs: Some(normalize_all(n.external.as_deref().unwrap_or_default()).ctx(object)?),
                ..Want::default()
            };
            let cur = (!fresh).then(|| ext.links.get(&link)).flatten();
            self.fix_link(&ext, &link, cur, &want).await.ctx(object)?;
        }
        Ok(())
    }

    /// One network's DHCP namespace, port and dnsmasq.
    async fn dhcp(&mut self, host: &Ns, n: &NetworkPlan) -> Result<()> {
        let Some(d) = &n.dhcp else {
            return Ok(()); // its namespace went with the leftovers
        };
        let name = self.names().dhcp_namespace(&n.id);
        let ns = self.namespace(&name).await?;
        let inner = crate::dhcp_ns_name(&d.port_id);
        for l in ns.links.values() {
            if l.ifname != "lo" && l.ifname != inner && ns.handle.delete_link(&l.ifname).await? {
                self.removed(&name, format!("link {}", l.ifname));
            }
        }
        let outer = crate::tap_name(&d.port_id);
        let fresh = self.veth_pair(host, &outer, &ns, &inner).await?;
        let bridge = crate::bridge_name(&n.id);
        let want = Want {
            mtu: Some(n.mtu),
            master: Some(&bridge),
            up: true,
            ..Want::default()
        };
        let cur = (!fresh).then(|| host.links.get(&outer)).flatten();
        self.fix_link(host, &outer, cur, &want).await?;
        let planned = normalize_all(&d.addresses)?;
        let cur = (!fresh).then(|| ns.links.get(&inner)).flatten();
        // The DHCP port has exactly its fixed IPs: no SLAAC address of its own from the
        // router's advertisements (set before it goes up).
        let stray_v6 = cur.is_some_and(|l| {
            l.addr_info.iter().any(|a| {
                a.local.contains(':')
                    && a.scope.as_deref() != Some("link")
                    && !planned.contains(&format!("{}/{}", a.local, a.prefixlen))
            })
        });
        if cur.is_none() || stray_v6 {
            let key = format!("ipv6/conf/{inner}/accept_ra");
            if netns::ensure_net_sysctl(&name, &key, "0").await? && cur.is_some() {
                self.changed(&name, format!("{key}=0"));
            }
        }
        let want = Want {
            mac: Some(&d.mac),
            mtu: Some(n.mtu),
            up: true,
            addrs: Some(planned),
            ..Want::default()
        };
        self.fix_link(&ns, &inner, cur, &want).await?;

        let dnsmasq = Dnsmasq::new(DhcpConfig {
            namespace: name.clone(),
            interface: inner.clone(),
            dir: dhcp_dir(self.state_dir, &n.id),
            subnets: d.subnets.clone(),
        });
        if dnsmasq.is_running() && (fresh || !dnsmasq.running_args_match()?) {
            // A new interface or other flags: a SIGHUP would not do.
            dnsmasq.stop().await?;
            self.changed(
                &name,
                "dnsmasq (restarted: interface or subnets changed)".into(),
            );
        }
        let files_changed = dnsmasq.write_files(&d.hosts).await?;
        if dnsmasq.is_running() {
            if files_changed {
                dnsmasq.reload()?;
                self.changed(&name, "dnsmasq (hosts/opts reloaded)".into());
            }
        } else {
            let pid = dnsmasq.ensure(&d.hosts).await?;
            self.created(&name, format!("dnsmasq (pid {pid})"));
        }
        Ok(())
    }

    /// One router: namespace, forwarding, qr-/qg- ports, routes, NAT.
    async fn router(&mut self, host: &Ns, r: &RouterPlan) -> Result<()> {
        let name = self.names().router_namespace(&r.id);
        self.ensure_namespace(&name).await?;
        // IPv6 routes only matter with IPv6 addresses (the kernel drops routes whose next hop
        // became unreachable when an address went).
        let v6 = r
            .interfaces
            .iter()
            .chain(r.gateway.as_ref().map(|g| &g.port))
            .flat_map(|p| &p.addresses)
            .any(|a| a.contains(':'));
        // The independent reads at once: links, routes, the NAT table, forwarding.
        let handle = Netns::named(&name);
        let (ns, routes4, routes6, listed, forwarding) = tokio::join!(
            Ns::read(&name),
            handle.routes(false),
            async {
                match v6 {
                    true => handle.routes(true).await,
                    false => Ok(Vec::new()),
                }
            },
            crate::nft::list_table(Some(&name), NAT_TABLE),
            netns::ensure_net_sysctl(&name, "ipv4/ip_forward", "1"),
        );
        let (ns, listed) = (ns?, listed?);
        let mut routes_by_family = [routes4?, routes6?];
        lo_up(&ns).await?;
        if forwarding? {
            self.changed(&name, "ipv4/ip_forward=1".into());
        }
        let mut inside: Vec<(String, &RouterPort, Vec<String>)> = Vec::new();
        for port in &r.interfaces {
            inside.push((
                crate::router_interface_name(&port.port_id),
                port,
                normalize_all(&port.addresses)?,
            ));
        }
        let qg = r.gateway.as_ref().map(|g| {
            (
                crate::router_gateway_name(&g.port.port_id),
                &g.port,
                g.port.addresses.clone(),
            )
        });
        if let Some((qg, port, mut addrs)) = qg.clone() {
            // Floating IPs answer ARP on the gateway port, as Neutron does.
            addrs.extend(r.floating_ips.iter().map(|(fip, _)| format!("{fip}/32")));
            inside.push((qg, port, normalize_all(&addrs)?));
        }
        for l in ns.links.values() {
            if l.ifname != "lo"
                && !inside.iter().any(|(n, _, _)| *n == l.ifname)
                && ns.handle.delete_link(&l.ifname).await?
            {
                self.removed(&name, format!("link {}", l.ifname));
            }
        }
        for (inner, port, addrs) in &inside {
            let outer = crate::tap_name(&port.port_id);
            let fresh = self
                .veth_pair(host, &outer, &ns, inner)
                .await
                .ctx(|| format!("port {}", port.port_id))?;
            let bridge = crate::bridge_name(&port.network_id);
            let want = Want {
                mtu: Some(port.mtu),
                master: Some(&bridge),
                up: true,
                ..Want::default()
            };
            let cur = (!fresh).then(|| host.links.get(&outer)).flatten();
            self.fix_link(host, &outer, cur, &want)
                .await
                .ctx(|| format!("port {}", port.port_id))?;
            let want = Want {
                mac: Some(&port.mac),
                mtu: Some(port.mtu),
                up: true,
                addrs: Some(addrs.clone()),
                ..Want::default()
            };
            let cur = (!fresh).then(|| ns.links.get(inner)).flatten();
            self.fix_link(&ns, inner, cur, &want)
                .await
                .ctx(|| format!("port {}", port.port_id))?;
        }

        // IPv6: forwarding between the interfaces, and the router advertisements of the
        // subnets with an ipv6_ra_mode (radvd).
        if v6 && netns::ensure_net_sysctl(&name, "ipv6/conf/all/forwarding", "1").await? {
            self.changed(&name, "ipv6/conf/all/forwarding=1".into());
        }
        let adverts: Vec<(String, &RouterAdvert)> = r
            .interfaces
            .iter()
            .filter_map(|p| Some((crate::router_interface_name(&p.port_id), p.ra.as_ref()?)))
            .collect();
        let radvd = Radvd::new(&name, ra_dir(self.state_dir, &r.id));
        if adverts.is_empty() {
            if radvd.stop().await.ctx(|| format!("router {}", r.id))? {
                self.removed(&name, "radvd".into());
            }
        } else if radvd
            .ensure(&crate::radvd::render(&adverts))
            .await
            .ctx(|| format!("router {}", r.id))?
        {
            self.changed(&name, "radvd".into());
        }

        // Routes: the default via the gateway, static routes; others with a next hop go.
        let default = r.gateway.as_ref().and_then(|g| g.default_route);
        for v6 in [false, true] {
            let routes = std::mem::take(&mut routes_by_family[usize::from(v6)]);
            let want_default = default.filter(|gw| gw.is_ipv6() == v6);
            let cur_default = routes.iter().find(|rt| rt.dst == "default");
            match (want_default, &qg) {
                (Some(gw), Some((qg, _, _))) => {
                    let same = cur_default.is_some_and(|rt| {
                        rt.gateway.as_deref() == Some(&gw.to_string())
                            && rt.dev.as_deref() == Some(qg.as_str())
                    });
                    if !same {
                        ns.handle.ensure_default_route(gw, qg).await?;
                        self.changed(&name, format!("default route via {gw}"));
                    }
                }
                _ => {
                    if cur_default.is_some() {
                        ns.handle.remove_default_route(!v6).await?;
                        self.removed(&name, "default route".into());
                    }
                }
            }
            let mut planned: Vec<(String, String)> = Vec::new();
            for (dest, via) in r.routes.iter().filter(|(_, via)| via.is_ipv6() == v6) {
                planned.push((normalize_cidr(dest)?, via.to_string()));
            }
            for rt in routes.iter().filter(|rt| rt.dst != "default") {
                let Some(gw) = &rt.gateway else { continue };
                let key = (rt.dst_cidr(), gw.clone());
                if !planned.contains(&key) {
                    ns.handle.remove_route(&key.0, gw).await?;
                    self.removed(&name, format!("route {} via {gw}", key.0));
                }
            }
            for (dest, via) in &planned {
                let present = routes
                    .iter()
                    .any(|rt| rt.dst_cidr() == *dest && rt.gateway.as_deref() == Some(via));
                if !present {
                    let nh: IpAddr = via
                        .parse()
                        .map_err(|_| Error::Invalid(format!("next hop {via}")))?;
                    ns.handle.replace_route(dest, nh).await?;
                    self.created(&name, format!("route {dest} via {via}"));
                }
            }
        }

        // NAT: floating IPs and SNAT out of the gateway, the metadata redirect.
        let mut rules = Vec::new();
        if let Some((qg, _, gw_addrs)) = &qg {
            for (floating, fixed) in &r.floating_ips {
                rules.push(NatRule::FloatingIp {
                    floating: *floating,
                    fixed: *fixed,
                });
            }
            let snat = r.gateway.as_ref().is_some_and(|g| g.snat);
            if let (true, Some(gateway)) = (snat, first_v4(&normalize_all(gw_addrs)?)) {
                for port in &r.interfaces {
                    for a in &port.addresses {
                        if let Some(cidr) = v4_subnet(a)? {
                            rules.push(NatRule::Snat {
                                cidr,
                                out_iface: qg.clone(),
                                gateway,
                            });
                        }
                    }
                }
            }
        } else if !r.floating_ips.is_empty() {
            tracing::warn!(router = %r.id, "floating IPs without a gateway are ignored");
        }
        if let Some(port) = r.metadata_port {
            rules.push(NatRule::MetadataRedirect { port });
        }
        if rules.is_empty() {
            if listed.is_some() {
                crate::nft::remove_table(Some(&name), NAT_TABLE).await?;
                self.removed(&name, format!("nftables table {NAT_TABLE}"));
            }
        } else {
            let table = NatTable {
                name: NAT_TABLE.into(),
                rules,
            };
            let same = match &listed {
                Some(l) => table.matches(l)?,
                None => false,
            };
            if !same {
                crate::nft::apply_table(Some(&name), &table).await?;
                if listed.is_some() {
                    self.changed(&name, format!("nftables table {NAT_TABLE}"));
                } else {
                    self.created(&name, format!("nftables table {NAT_TABLE}"));
                }
            }
        }
        Ok(())
    }
}

/// Makes this host's data plane match `plan` (see the module docs); `state_dir` holds the
/// dnsmasq files (`state_dir/dhcp/<network id>`). Returns what it created, changed and removed.
pub async fn converge(plan: &HostPlan, state_dir: &Path) -> Result<Report> {
    let mut c = Converger {
        plan,
        state_dir,
        report: Report::default(),
    };
    c.validate()?;
    c.remove_leftover_namespaces().await?;
    let nothing_planned =
        plan.networks.is_empty() && plan.vm_ports.is_empty() && plan.routers.is_empty();
    if nothing_planned && !netns::namespace_exists(&plan.names.host_namespace())? {
        // A cloud without wired guests makes no namespace at all.
        return Ok(c.report);
    }
    let host = c.host().await?;
    c.external(&host).await?;
    for n in &plan.networks {
        c.dhcp(&host, n)
            .await
            .ctx(|| format!("DHCP of network {}", n.id))?;
    }
    for r in &plan.routers {
        c.router(&host, r)
            .await
            .ctx(|| format!("router {}", r.id))?;
    }
    if plan.vm_ports.iter().any(|p| p.filter.is_some()) {
        crate::filter::apply(&host.name, &plan.vm_ports)
            .await
            .ctx(|| "security groups of the guest ports".to_owned())?;
    } else if netns::namespace_exists(&host.name)? {
        // The last filtered port is gone: no stale rules for taps that may come back.
        crate::filter::remove(&host.name)
            .await
            .ctx(|| "security groups of the guest ports".to_owned())?;
    }
    Ok(c.report)
}

/// Removes everything kumo made under `names.prefix`: its DHCP namespaces (dnsmasq stopped
/// first, files removed), router namespaces, the outside-world namespace and the host
/// namespace, killing the processes still inside them (QEMU included). For `kumo down --purge`
/// and tests. Returns the namespaces removed.
pub async fn teardown(names: &Names, state_dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for ns in netns::list_namespaces()? {
        let Some(rest) = ns.strip_prefix(&names.prefix) else {
            continue;
        };
        let dhcp = rest
            .strip_prefix("qdhcp-")
            .map(|id| dhcp_dir(state_dir, id));
        let ours = dhcp.is_some()
            || rest.starts_with("qrouter-")
            || ns == names.host_namespace()
            || ns == names.external_namespace();
        if ours {
            remove_namespace_fully(&ns, dhcp)
                .await
                .ctx(|| format!("tearing down namespace {ns}"))?;
            removed.push(ns);
        }
    }
    let dir = state_dir.join("dhcp");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let Ok(id) = e.file_name().into_string() else {
                continue;
            };
            let d = dnsmasq_for_stop(&names.dhcp_namespace(&id), e.path());
            d.stop()
                .await
                .ctx(|| format!("stopping dnsmasq of network {id}"))?;
            d.remove_files()
                .await
                .ctx(|| format!("removing the DHCP files of network {id}"))?;
        }
    }
    remove_leftover_radvds(names, state_dir, &BTreeSet::new()).await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_report() {
        assert_eq!(
            v4_subnet("10.0.0.1/24").expect("valid"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 24))
        );
        assert_eq!(v4_subnet("fd00::1/64").expect("valid"), None);
        assert_eq!(
            first_v4(&["fd00::1/64".into(), "172.24.4.10/24".into()]),
            Some(Ipv4Addr::new(172, 24, 4, 10))
        );
        let mut r = Report::default();
        assert!(r.is_noop());
        r.created.push("h: bridge brq1".into());
        assert_eq!(
            r.to_string(),
            "1 created, 0 changed, 0 removed; created: h: bridge brq1"
        );
    }

    #[test]
    fn validate_names_missing_networks() {
        let plan = HostPlan {
            names: Names::new("kt000000-"),
            external_access: ExternalAccess::Namespace,
            networks: vec![],
            vm_ports: vec![crate::plan::VmPort {
                id: "p1".into(),
                network_id: "nope".into(),
                mac: "fa:16:3e:00:00:01".into(),
                mtu: 1500,
                admin_up: true,
                filter: None,
            }],
            routers: vec![],
        };
        let c = Converger {
            plan: &plan,
            state_dir: Path::new("/nonexistent"),
            report: Report::default(),
        };
        let err = c.validate().expect_err("unknown network").to_string();
        assert!(err.contains("port p1") && err.contains("nope"), "{err}");
    }
}
