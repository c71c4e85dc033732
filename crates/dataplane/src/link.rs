//! Links, addresses and routes inside one network namespace.
//!
//! Deviation from DESIGN §4 (rtnetlink): these call iproute2 (`ip -n NS -j ...`, JSON output)
//! for now; [`Netns`] is the seam an rtnetlink implementation replaces without changing callers.
//! Every operation is idempotent: it checks the current state first.

use crate::cmd::run;
use crate::{Error, IFNAME_MAX, Result};
use serde::Deserialize;

/// One link as `ip -j link show` reports it (the fields kumo needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub address: Option<String>,
    /// The bridge this link is a port of.
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub operstate: Option<String>,
}

impl LinkInfo {
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

/// One link with its details and addresses, as `ip -d -j addr show` reports it: what
/// [`Netns::snapshot`] returns so a caller can diff a whole namespace from one `ip` call.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LinkState {
    pub ifindex: u32,
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub master: Option<String>,
    /// The parent link (VLAN) or veth peer, by name when it is in the same namespace.
    #[serde(default)]
    pub link: Option<String>,
    /// The parent link or veth peer by index (in the peer's namespace for a veth).
    #[serde(default)]
    pub link_index: Option<u32>,
    #[serde(default)]
    pub linkinfo: Option<LinkKind>,
    #[serde(default)]
    pub addr_info: Vec<AddrDetail>,
}

/// `linkinfo` of `ip -d`: the kind (`bridge`, `veth`, `tun`, `vlan`, `vxlan`) and its data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LinkKind {
    #[serde(default)]
    pub info_kind: Option<String>,
    #[serde(default)]
    pub info_data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AddrDetail {
    #[serde(default)]
    pub family: Option<String>,
    pub local: String,
    pub prefixlen: u8,
    #[serde(default)]
    pub scope: Option<String>,
}

impl LinkState {
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// The link kind (`bridge`, `veth`, `tun`, `vlan`, `vxlan`), `None` for lo or a physical NIC.
    pub fn kind(&self) -> Option<&str> {
        self.linkinfo.as_ref()?.info_kind.as_deref()
    }

    /// A field of the kind-specific data (`id` of a VLAN, `local` of a VXLAN, `type` of a tun).
    pub fn info(&self, key: &str) -> Option<&serde_json::Value> {
        self.linkinfo.as_ref()?.info_data.as_ref()?.get(key)
    }

    /// The addresses as `ADDR/LEN`, without IPv6 link-local ones (the kernel makes those).
    pub fn cidrs(&self) -> Vec<String> {
        self.addr_info
            .iter()
            .filter(|a| !(a.local.starts_with("fe80:") && a.family.as_deref() != Some("inet")))
            .filter_map(|a| {
                let addr: std::net::IpAddr = a.local.parse().ok()?;
                Some(format!("{addr}/{}", a.prefixlen))
            })
            .collect()
    }
}

/// One route as `ip -j route show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouteInfo {
    /// `default`, `10.0.0.0/24`, or a host address without `/LEN`.
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

impl RouteInfo {
    /// The destination as `ADDR/LEN` (`default` stays `default`).
    pub fn dst_cidr(&self) -> String {
        if self.dst == "default" || self.dst.contains('/') {
            return self.dst.clone();
        }
        match self.dst.parse::<std::net::IpAddr>() {
            Ok(a) if a.is_ipv4() => format!("{a}/32"),
            Ok(a) => format!("{a}/128"),
            Err(_) => self.dst.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct FdbEntry {
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    dst: Option<String>,
}

#[derive(Deserialize)]
struct AddrLink {
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    local: String,
    prefixlen: u8,
}

/// A network namespace by name (`None` = the namespace kumo runs in, used only when a caller
/// explicitly asks for it, e.g. `[network] external_access = host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: Option<String>,
}

pub(crate) fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains(['/', ' ', '\0']) {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            why: "interface names are 1-15 bytes without `/` or spaces",
        });
    }
    Ok(())
}

fn is_missing(err: &Error) -> bool {
    matches!(err, Error::Command { stderr, .. }
        if stderr.contains("does not exist") || stderr.contains("Cannot find device"))
}

impl Netns {
    /// The named namespace `/run/netns/NAME`.
    pub fn named(name: &str) -> Self {
        Netns {
            name: Some(name.to_owned()),
        }
    }

    /// The namespace of the kumo process itself (the host's, normally). Use with care.
    pub fn current() -> Self {
        Netns { name: None }
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    async fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all: Vec<&str> = Vec::with_capacity(args.len() + 2);
        if let Some(name) = &self.name {
            if !crate::netns::namespace_exists(name)? {
                return Err(Error::NoNamespace(name.clone()));
            }
            all.extend(["-n", name.as_str()]);
        }
        all.extend_from_slice(args);
        run("ip", &all, None).await
    }

    /// Every link with its details and addresses, in one `ip -d -j addr show` call.
    pub async fn snapshot(&self) -> Result<Vec<LinkState>> {
        let out = self.ip(&["-d", "-j", "addr", "show"]).await?;
        parse_json(&out, "ip -d -j addr show")
    }

    /// All links in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let out = self.ip(&["-j", "link", "show"]).await?;
        parse_json(&out, "ip -j link show")
    }

    /// One link, or `None` if there is no such link.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        check_ifname(name)?;
        match self.ip(&["-j", "link", "show", "dev", name]).await {
            Ok(out) => Ok(parse_json::<Vec<LinkInfo>>(&out, "ip -j link show dev")?
                .into_iter()
                .next()),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a Linux bridge `name` unless it exists (left down; see [`Netns::set_up`]).
    pub async fn ensure_bridge(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        if self.link(name).await?.is_some() {
            return Ok(());
        }
        self.ip(&["link", "add", name, "type", "bridge"]).await?;
        Ok(())
    }

    /// Creates a veth pair: `name` here, `peer` in namespace `peer_ns` (here when `None`).
    /// Succeeds without change when `name` already exists here.
    pub async fn ensure_veth(&self, name: &str, peer: &str, peer_ns: Option<&Netns>) -> Result<()> {
        check_ifname(name)?;
        check_ifname(peer)?;
        if self.link(name).await?.is_some() {
            return Ok(());
        }
        let mut args = vec!["link", "add", name, "type", "veth", "peer", "name", peer];
        if let Some(other) = peer_ns.and_then(|ns| ns.name.as_deref()) {
            if !crate::netns::namespace_exists(other)? {
                return Err(Error::NoNamespace(other.to_owned()));
            }
            args.extend(["netns", other]);
        }
        self.ip(&args).await?;
        Ok(())
    }

    /// Creates a persistent tap `name` with `vnet_hdr` (QEMU opens it by name with
    /// `-netdev tap,ifname=NAME,script=no,downscript=no[,vnet_hdr=on]` from inside this
    /// namespace) unless a link `name` exists. Left down, MAC chosen by the kernel.
    pub async fn ensure_tap(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        if self.link(name).await?.is_some() {
            return Ok(());
        }
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"])
            .await
            .map(drop)
    }

    /// Creates the 802.1Q link `name` on `physdev` with VLAN `id` (no existence check).
    pub async fn add_vlan(&self, name: &str, physdev: &str, id: u16) -> Result<()> {
        check_ifname(name)?;
        check_ifname(physdev)?;
        let id = id.to_string();
        self.ip(&[
            "link", "add", "link", physdev, "name", name, "type", "vlan", "id", &id,
        ])
        .await
        .map(drop)
    }

    /// Creates the VXLAN link `name` (VNI `vni`, UDP 4789, learning off, local `local` on
    /// `dev`; no existence check). Peers are flood entries: [`Netns::fdb_append_peer`].
    pub async fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: std::net::IpAddr,
        dev: &str,
    ) -> Result<()> {
        check_ifname(name)?;
        check_ifname(dev)?;
        let (vni, local) = (vni.to_string(), local.to_string());
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            dev,
            "dstport",
            "4789",
            "nolearning",
        ])
        .await
        .map(drop)
    }

    async fn bridge_cmd(&self, args: &[&str]) -> Result<String> {
        let mut all: Vec<&str> = Vec::with_capacity(args.len() + 2);
        if let Some(name) = &self.name {
            if !crate::netns::namespace_exists(name)? {
                return Err(Error::NoNamespace(name.clone()));
            }
            all.extend(["-n", name.as_str()]);
        }
        all.extend_from_slice(args);
        run("bridge", &all, None).await
    }

    /// The remote VTEPs of a VXLAN link: destinations of its all-zero (flood) FDB entries.
    pub async fn fdb_peers(&self, dev: &str) -> Result<Vec<String>> {
        check_ifname(dev)?;
        let out = self.bridge_cmd(&["-j", "fdb", "show", "dev", dev]).await?;
        let entries: Vec<FdbEntry> = parse_json(&out, "bridge -j fdb show")?;
        Ok(entries
            .into_iter()
            .filter(|e| e.mac.as_deref() == Some("00:00:00:00:00:00"))
            .filter_map(|e| e.dst)
            .collect())
    }

    /// `bridge fdb append 00:00:00:00:00:00 dev DEV dst PEER` (flood to PEER).
    pub async fn fdb_append_peer(&self, dev: &str, peer: &str) -> Result<()> {
        check_ifname(dev)?;
        self.bridge_cmd(&[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            dev,
            "dst",
            peer,
        ])
        .await
        .map(drop)
    }

    /// Removes the flood entry to PEER from DEV.
    pub async fn fdb_del_peer(&self, dev: &str, peer: &str) -> Result<()> {
        check_ifname(dev)?;
        self.bridge_cmd(&["fdb", "del", "00:00:00:00:00:00", "dev", dev, "dst", peer])
            .await
            .map(drop)
    }

    /// Like [`Netns::remove_link`]; true when the link was there (a veth whose peer's
    /// namespace was just deleted may vanish by itself first).
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        check_ifname(name)?;
        match self.ip(&["link", "del", "dev", name]).await {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes link `name` (a veth takes its peer with it); succeeds if it is gone.
    pub async fn remove_link(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        match self.ip(&["link", "del", "dev", name]).await {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn set_up(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        self.ip(&["link", "set", "dev", name, "up"]).await.map(drop)
    }

    pub async fn set_down(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        self.ip(&["link", "set", "dev", name, "down"])
            .await
            .map(drop)
    }

    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        check_ifname(name)?;
        let mtu = mtu.to_string();
        self.ip(&["link", "set", "dev", name, "mtu", &mtu])
            .await
            .map(drop)
    }

    /// Sets the MAC address (`aa:bb:cc:dd:ee:ff`).
    pub async fn set_mac(&self, name: &str, mac: &str) -> Result<()> {
        check_ifname(name)?;
        if !is_mac(mac) {
            return Err(Error::Invalid(format!("MAC address `{mac}`")));
        }
        self.ip(&["link", "set", "dev", name, "address", mac])
            .await
            .map(drop)
    }

    /// Makes `name` a port of `bridge` (no change if it already is).
    pub async fn set_master(&self, name: &str, bridge: &str) -> Result<()> {
        check_ifname(bridge)?;
        self.ip(&["link", "set", "dev", name, "master", bridge])
            .await
            .map(drop)
    }

    /// Releases `name` from its bridge.
    pub async fn set_nomaster(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        self.ip(&["link", "set", "dev", name, "nomaster"])
            .await
            .map(drop)
    }

    /// Addresses on `name` as `ADDR/LEN` (IPv4 and IPv6, link-local included).
    pub async fn addresses(&self, name: &str) -> Result<Vec<String>> {
        check_ifname(name)?;
        let out = self.ip(&["-j", "addr", "show", "dev", name]).await?;
        let links: Vec<AddrLink> = parse_json(&out, "ip -j addr show")?;
        Ok(links
            .into_iter()
            .flat_map(|l| l.addr_info)
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
            .collect())
    }

    /// Adds `cidr` (`10.0.0.1/24`, `fd00::1/64`) to `name` unless it is there.
    pub async fn ensure_address(&self, name: &str, cidr: &str) -> Result<()> {
        let cidr = normalize_cidr(cidr)?;
        if self.addresses(name).await?.contains(&cidr) {
            return Ok(());
        }
        self.ip(&["addr", "add", &cidr, "dev", name])
            .await
            .map(drop)
    }

    /// Adds `cidr` to `name` without checking first (fails if it is there).
    pub async fn add_address(&self, name: &str, cidr: &str) -> Result<()> {
        check_ifname(name)?;
        let cidr = normalize_cidr(cidr)?;
        self.ip(&["addr", "add", &cidr, "dev", name])
            .await
            .map(drop)
    }

    /// Removes `cidr` from `name` without checking first.
    pub async fn del_address(&self, name: &str, cidr: &str) -> Result<()> {
        check_ifname(name)?;
        let cidr = normalize_cidr(cidr)?;
        self.ip(&["addr", "del", &cidr, "dev", name])
            .await
            .map(drop)
    }

    /// Removes `cidr` from `name`; succeeds if it is not there.
    pub async fn remove_address(&self, name: &str, cidr: &str) -> Result<()> {
        let cidr = normalize_cidr(cidr)?;
        if !self.addresses(name).await?.contains(&cidr) {
            return Ok(());
        }
        self.ip(&["addr", "del", &cidr, "dev", name])
            .await
            .map(drop)
    }

    /// Sets the default route (IPv4 or IPv6, by the gateway's family) via `gateway` on `dev`,
    /// replacing any other default route of that family.
    pub async fn ensure_default_route(&self, gateway: std::net::IpAddr, dev: &str) -> Result<()> {
        check_ifname(dev)?;
        let family = if gateway.is_ipv4() { "-4" } else { "-6" };
        let gw = gateway.to_string();
        self.ip(&[
            family, "route", "replace", "default", "via", &gw, "dev", dev,
        ])
        .await
        .map(drop)
    }

    /// The main table's routes of one family (`v6` false: IPv4).
    pub async fn routes(&self, v6: bool) -> Result<Vec<RouteInfo>> {
        let family = if v6 { "-6" } else { "-4" };
        let out = self
            .ip(&["-j", family, "route", "show", "table", "main"])
            .await?;
        parse_json(&out, "ip -j route show")
    }

    /// `ip route replace DEST via NEXTHOP` (DEST in CIDR form).
    pub async fn replace_route(&self, dest: &str, via: std::net::IpAddr) -> Result<()> {
        let dest = normalize_cidr(dest)?;
        let via = via.to_string();
        self.ip(&["route", "replace", &dest, "via", &via])
            .await
            .map(drop)
    }

    /// Removes the route to DEST (CIDR form) via NEXTHOP; succeeds if it is gone.
    pub async fn remove_route(&self, dest: &str, via: &str) -> Result<()> {
        let dest = normalize_cidr(dest)?;
        match self.ip(&["route", "del", &dest, "via", via]).await {
            Ok(_) => Ok(()),
            Err(Error::Command { stderr, .. }) if stderr.contains("No such process") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the default route of the family of `v4` (true: IPv4); succeeds if there is none.
    pub async fn remove_default_route(&self, v4: bool) -> Result<()> {
        let family = if v4 { "-4" } else { "-6" };
        match self.ip(&[family, "route", "del", "default"]).await {
            Ok(_) => Ok(()),
            Err(Error::Command { stderr, .. }) if stderr.contains("No such process") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(out: &str, command: &str) -> Result<T> {
    let text = if out.trim().is_empty() { "[]" } else { out };
    serde_json::from_str(text).map_err(|e| Error::Parse {
        command: command.to_owned(),
        detail: e.to_string(),
    })
}

fn is_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `ADDR/LEN` with ADDR parsed (so `fd00:0::1/64` compares equal to what `ip` prints).
pub fn normalize_cidr(cidr: &str) -> Result<String> {
    let bad = || Error::Invalid(format!("address `{cidr}` (want ADDR/PREFIXLEN)"));
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok(format!("{addr}/{len}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_mac_checks() {
        assert_eq!(normalize_cidr("fd00:0::1/64").expect("valid"), "fd00::1/64");
        assert!(normalize_cidr("10.0.0.1/33").is_err());
        assert!(normalize_cidr("10.0.0.1").is_err());
        assert!(is_mac("fa:16:3e:00:aa:01"));
        assert!(!is_mac("fa:16:3e:00:aa"));
        assert!(check_ifname("brq0123456789a").is_ok());
        assert!(check_ifname("tap0123456789ab").is_ok());
        assert!(check_ifname("tap0123456789abc").is_err());
    }

    #[test]
    fn parses_ip_json() {
        let out = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"address":"00:00:00:00:00:00"},{"ifindex":5,"ifname":"v1","flags":["BROADCAST"],"mtu":1500,"master":"br0","address":"fa:16:3e:00:00:01"}]"#;
        let links: Vec<LinkInfo> = parse_json(out, "t").expect("parses");
        assert!(links[0].is_up());
        assert_eq!(links[1].master.as_deref(), Some("br0"));
    }
}
