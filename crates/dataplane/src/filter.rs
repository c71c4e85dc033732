//! Guest ports' anti-spoofing and security groups as nftables rules in the host namespace
//! (issue #7), applied as one atomic `nft -j -f -` transaction that replaces two tables:
//!
//! - `bridge kumo_ports` (stateless; `iifname`/`oifname` are the taps): anti-spoofing on
//!   traffic from each filtered tap (source MAC, ARP sender, IPv4/IPv6 source against the
//!   port's allowed (MAC, IP) pairs), and the packet mark: the input port's index in the low
//!   16 bits (prerouting, priority -300), the output port's index in the high 16 bits (forward,
//!   priority -200, before br_netfilter's hook at -1).
//! - `inet kumo_sg` (stateful): bridged IPv4/IPv6 traffic crosses the inet hooks through
//!   br_netfilter (`bridge-nf-call-iptables`), where conntrack works but the interfaces are the
//!   bridge: a prerouting chain gives each bridge its conntrack zone (overlapping tenant
//!   addresses), the forward chain accepts replies and related traffic and dispatches by the
//!   mark to per-port egress (traffic from the port) and ingress (traffic to it) chains.
//!
//! Why not everything in the bridge family: this kernel has no bridge conntrack
//! (CONFIG_NF_CONNTRACK_BRIDGE unset), so `ct` fails there. Why not everything in inet: there
//! the interfaces are the bridge, not the taps; the mark carries the taps across.
//!
//! Only replies (`ct direction reply`) and related packets skip the rules: packets in the
//! original direction of an established connection are checked again, so removing a rule
//! cuts its existing connections at the next packet (Neutron deletes their conntrack entries
//! instead; with this there is nothing to delete and no `conntrack` tool needed).

use crate::plan::{EtherType, FilterRule, PortFilter, VmPort};
use crate::{Error, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The stateless bridge-family table (anti-spoofing, marks).
pub const PORTS_TABLE: &str = "kumo_ports";
/// The stateful inet-family table (security groups).
pub const SG_TABLE: &str = "kumo_sg";

/// Mark bits holding the index of the port a packet came from.
pub const MARK_IN_MASK: u32 = 0x0000_ffff;
/// Mark bits holding the index of the port a packet goes to (index << 16).
pub const MARK_OUT_MASK: u32 = 0xffff_0000;

const PORTS_PREROUTING_PRIO: i32 = -300;
const PORTS_FORWARD_PRIO: i32 = -200;
const SG_ZONE_PRIO: i32 = -300;
const SG_FORWARD_PRIO: i32 = 0;

// ICMPv6 types Neutron always lets through (neighbour discovery, MLD).
const ICMPV6_MLD_QUERY: u8 = 130;
const ICMPV6_MLD_REPORT: u8 = 131;
const ICMPV6_MLD_DONE: u8 = 132;
const ICMPV6_RS: u8 = 133;
const ICMPV6_RA: u8 = 134;
const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
const ICMPV6_MLD2_REPORT: u8 = 143;

/// An address or prefix, normalized (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `10.0.0.5`, `10.0.0.0/24`, `fd00::/64`.
    fn parse(text: &str) -> Result<Cidr> {
        let bad = || Error::Invalid(format!("address `{text}` (want IP or IP/PREFIXLEN)"));
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(Cidr { addr, len })
    }

    fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn max_len(&self) -> u8 {
        if self.is_v4() { 32 } else { 128 }
    }

    /// Whether `other` lies inside `self`.
    fn contains(&self, other: &Cidr) -> bool {
        if self.is_v4() != other.is_v4() || other.len < self.len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) == u128::from(b) & mask
            }
            _ => false,
        }
    }

    fn to_json(self) -> Value {
        if self.len == self.max_len() {
            json!(self.addr.to_string())
        } else {
            json!({"prefix": {"addr": self.addr.to_string(), "len": self.len}})
        }
    }
}

/// The CIDRs of one family, without duplicates or prefixes inside others (nftables refuses
/// overlapping intervals in a set), as a JSON set.
fn cidr_set(cidrs: &[Cidr], v4: bool) -> Option<Value> {
    let mut same: Vec<Cidr> = cidrs.iter().copied().filter(|c| c.is_v4() == v4).collect();
    same.sort_by_key(|c| c.len);
    let mut kept: Vec<Cidr> = Vec::new();
    for c in same {
        if !kept.iter().any(|k| k.contains(&c)) {
            kept.push(c);
        }
    }
    if kept.is_empty() {
        return None;
    }
    Some(json!({"set": kept.into_iter().map(Cidr::to_json).collect::<Vec<_>>()}))
}

fn parse_mac(mac: &str) -> Result<[u8; 6]> {
    let bad = || Error::Invalid(format!("MAC address `{mac}`"));
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The EUI-64 link-local address (fe80::/64) a guest derives from its MAC.
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

// --- JSON helpers -----------------------------------------------------------------------

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn ct_in(key: &str, right: &str) -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": key}}, "right": right}})
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}

fn and(left: Value, mask: u32) -> Value {
    json!({"&": [left, mask]})
}

/// `meta mark set meta mark & keep | value`.
fn set_mark(keep: u32, value: u32) -> Value {
    json!({"mangle": {"key": meta("mark"), "value": {"|": [and(meta("mark"), keep), value]}}})
}

/// One table's commands: the table replaced, then all chains, then the rules (a rule may jump
/// to a chain declared after it in the code).
struct Doc {
    family: &'static str,
    table: &'static str,
    cmds: Vec<Value>,
    rules: Vec<Value>,
}

impl Doc {
    fn new(family: &'static str, table: &'static str) -> Self {
        let t = json!({"table": {"family": family, "name": table}});
        Doc {
            family,
            table,
            cmds: vec![
                json!({"add": t.clone()}),
                json!({"delete": t.clone()}),
                json!({"add": t}),
            ],
            rules: Vec::new(),
        }
    }

    fn finish(mut self) -> Vec<Value> {
        self.cmds.append(&mut self.rules);
        self.cmds
    }

    fn base_chain(&mut self, name: &str, hook: &str, prio: i32) {
        self.cmds.push(
            json!({"add": {"chain": {"family": self.family, "table": self.table,
            "name": name, "type": "filter", "hook": hook, "prio": prio, "policy": "accept"}}}),
        );
    }

    fn chain(&mut self, name: &str) {
        self.cmds.push(
            json!({"add": {"chain": {"family": self.family, "table": self.table, "name": name}}}),
        );
    }

    fn rule(&mut self, chain: &str, expr: Vec<Value>) {
        self.rules.push(
            json!({"add": {"rule": {"family": self.family, "table": self.table,
            "chain": chain, "expr": expr}}}),
        );
    }
}

/// A filtered port with its index (1..=65535) and parsed sources.
struct Indexed<'a> {
    index: u32,
    tap: String,
    filter: &'a PortFilter,
    /// (MAC, source CIDR) pairs.
    sources: Vec<([u8; 6], Cidr)>,
    macs: Vec<[u8; 6]>,
}

fn index_ports(ports: &[VmPort]) -> Result<Vec<Indexed<'_>>> {
    let mut filtered: Vec<&VmPort> = ports.iter().filter(|p| p.filter.is_some()).collect();
    filtered.sort_by(|a, b| a.id.cmp(&b.id));
    if filtered.len() > MARK_IN_MASK as usize {
        return Err(Error::Invalid(format!(
            "{} filtered ports on one host (at most {MARK_IN_MASK})",
            filtered.len()
        )));
    }
    let mut taps = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(filtered.len());
    for (i, port) in filtered.into_iter().enumerate() {
        let Some(filter) = port.filter.as_ref() else {
            continue;
        };
        let tap = crate::tap_name(&port.id);
        if !taps.insert(tap.clone()) {
            return Err(Error::Invalid(format!(
                "two ports share the tap name `{tap}` (ids with the same first 11 characters)"
            )));
        }
        let mut sources = Vec::new();
        let mut macs = Vec::new();
        for (mac, ip) in &filter.allowed_sources {
            let mac = parse_mac(mac)?;
            sources.push((mac, Cidr::parse(ip)?));
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
        out.push(Indexed {
            index: i as u32 + 1,
            tap,
            filter,
            sources,
            macs,
        });
    }
    Ok(out)
}

// --- the bridge table --------------------------------------------------------------------

fn ports_table(ports: &[Indexed<'_>]) -> Vec<Value> {
    let mut d = Doc::new("bridge", PORTS_TABLE);
    d.base_chain("prerouting", "prerouting", PORTS_PREROUTING_PRIO);
    d.base_chain("forward", "forward", PORTS_FORWARD_PRIO);
    if !ports.is_empty() {
        let from: Vec<Value> = ports
            .iter()
            .map(|p| json!([p.tap, jump(&format!("from_{}", p.index))]))
            .collect();
        d.rule(
            "prerouting",
            vec![json!({"vmap": {"key": meta("iifname"), "data": {"set": from}}})],
        );
        let to: Vec<Value> = ports
            .iter()
            .map(|p| json!([p.tap, jump(&format!("to_{}", p.index))]))
            .collect();
        d.rule(
            "forward",
            vec![json!({"vmap": {"key": meta("oifname"), "data": {"set": to}}})],
        );
    }
    for p in ports {
        let to = format!("to_{}", p.index);
        d.chain(&to);
        d.rule(&to, vec![set_mark(MARK_IN_MASK, p.index << 16)]);

        let c = format!("from_{}", p.index);
        d.chain(&c);
        d.rule(&c, vec![set_mark(MARK_OUT_MASK, p.index)]);
        anti_spoofing(&mut d, &c, p);
    }
    d.finish()
}

/// Traffic from the port's tap: its MACs only; ARP, IPv4 and IPv6 from its allowed pairs.
fn anti_spoofing(d: &mut Doc, c: &str, p: &Indexed<'_>) {
    let macs: Vec<Value> = p.macs.iter().map(|m| json!(mac_text(*m))).collect();
    if macs.is_empty() {
        d.rule(c, vec![verdict("drop")]);
        return;
    }
    d.rule(
        c,
        vec![
            ne(payload("ether", "saddr"), json!({"set": macs})),
            verdict("drop"),
        ],
    );
    // ARP: sender MAC and IP from one pair; probes (sender IP 0.0.0.0, RFC 5227) too.
    for (mac, cidr) in p.sources.iter().filter(|(_, c)| c.is_v4()) {
        d.rule(
            c,
            vec![
                eq(payload("arp", "saddr ether"), json!(mac_text(*mac))),
                eq(payload("arp", "saddr ip"), cidr.to_json()),
                verdict("accept"),
            ],
        );
    }
    d.rule(
        c,
        vec![
            eq(payload("arp", "saddr ip"), json!("0.0.0.0")),
            verdict("accept"),
        ],
    );
    d.rule(
        c,
        vec![eq(payload("ether", "type"), json!("arp")), verdict("drop")],
    );
    // IPv4: DHCP discovery/request before the guest has an address, then its pairs.
    d.rule(
        c,
        vec![
            eq(payload("ip", "saddr"), json!("0.0.0.0")),
            eq(payload("ip", "daddr"), json!("255.255.255.255")),
            eq(payload("udp", "sport"), json!(68)),
            eq(payload("udp", "dport"), json!(67)),
            verdict("accept"),
        ],
    );
    for mac in &p.macs {
        let mine: Vec<Cidr> = p
            .sources
            .iter()
            .filter(|(m, _)| m == mac)
            .map(|(_, c)| *c)
            .collect();
        if let Some(set) = cidr_set(&mine, true) {
            d.rule(
                c,
                vec![
                    eq(payload("ether", "saddr"), json!(mac_text(*mac))),
                    eq(payload("ip", "saddr"), set),
                    verdict("accept"),
                ],
            );
        }
        // IPv6: the pairs plus the MAC's EUI-64 link-local address (Neutron adds it).
        let mut v6 = mine;
        v6.push(Cidr {
            addr: IpAddr::V6(link_local(*mac)),
            len: 128,
        });
        if let Some(set) = cidr_set(&v6, false) {
            d.rule(
                c,
                vec![
                    eq(payload("ether", "saddr"), json!(mac_text(*mac))),
                    eq(payload("ip6", "saddr"), set),
                    verdict("accept"),
                ],
            );
        }
    }
    // IPv6 duplicate address detection and MLD reports come from `::`.
    d.rule(
        c,
        vec![
            eq(payload("ip6", "saddr"), json!("::")),
            eq(meta("l4proto"), json!("ipv6-icmp")),
            eq(
                payload("icmpv6", "type"),
                json!({"set": [ICMPV6_MLD_REPORT, ICMPV6_MLD_DONE, ICMPV6_NS, ICMPV6_MLD2_REPORT]}),
            ),
            verdict("accept"),
        ],
    );
    // Everything else from the port (spoofed IP, other ethertypes) is dropped.
    d.rule(c, vec![verdict("drop")]);
}

// --- the inet table ----------------------------------------------------------------------

fn sg_table(ports: &[Indexed<'_>], all: &[VmPort]) -> Result<Vec<Value>> {
    let mut d = Doc::new("inet", SG_TABLE);
    d.base_chain("zone", "prerouting", SG_ZONE_PRIO);
    d.base_chain("forward", "forward", SG_FORWARD_PRIO);

    // One conntrack zone per bridge: tenants' networks may reuse addresses.
    let mut zones: BTreeMap<String, u32> = BTreeMap::new();
    for p in all {
        let n = zones.len() as u32 + 1;
        zones.entry(crate::bridge_name(&p.network_id)).or_insert(n);
    }
    if zones.len() > u16::MAX as usize {
        return Err(Error::Invalid(
            "more than 65535 networks on one host".into(),
        ));
    }
    if !zones.is_empty() {
        let map: Vec<Value> = zones.iter().map(|(br, z)| json!([br, z])).collect();
        d.rule(
            "zone",
            vec![json!({"mangle": {"key": {"ct": {"key": "zone"}},
                "value": {"map": {"key": meta("iifname"), "data": {"set": map}}}}})],
        );
    }

    // Traffic between unfiltered ports: untouched.
    d.rule(
        "forward",
        vec![eq(meta("mark"), json!(0)), verdict("accept")],
    );
    d.rule("forward", vec![ct_in("state", "invalid"), verdict("drop")]);
    d.rule(
        "forward",
        vec![ct_in("state", "related"), verdict("accept")],
    );
    d.rule(
        "forward",
        vec![
            ct_in("state", "established"),
            eq(json!({"ct": {"key": "direction"}}), json!("reply")),
            verdict("accept"),
        ],
    );
    if !ports.is_empty() {
        let egress: Vec<Value> = ports
            .iter()
            .map(|p| json!([p.index, jump(&format!("egress_{}", p.index))]))
            .collect();
        d.rule(
            "forward",
            vec![json!({"vmap": {"key": and(meta("mark"), MARK_IN_MASK),
                "data": {"set": egress}}})],
        );
        let ingress: Vec<Value> = ports
            .iter()
            .map(|p| json!([p.index << 16, jump(&format!("ingress_{}", p.index))]))
            .collect();
        d.rule(
            "forward",
            vec![json!({"vmap": {"key": and(meta("mark"), MARK_OUT_MASK),
                "data": {"set": ingress}}})],
        );
    }
    for p in ports {
        // Egress: a match returns to the forward chain (the destination's ingress is next).
        let c = format!("egress_{}", p.index);
        d.chain(&c);
        for (proto, sport, dport, v) in [
            ("ipv4", 68, 67, "return"),
            ("ipv6", 546, 547, "return"),
            ("ipv4", 67, 68, "drop"),
            ("ipv6", 547, 546, "drop"),
        ] {
            d.rule(&c, udp_ports(proto, sport, dport, v));
        }
        d.rule(
            &c,
            icmpv6_types(
                &[
                    ICMPV6_RS,
                    ICMPV6_NS,
                    ICMPV6_NA,
                    ICMPV6_MLD_REPORT,
                    ICMPV6_MLD_DONE,
                    ICMPV6_MLD2_REPORT,
                ],
                "return",
            ),
        );
        d.rule(&c, icmpv6_types(&[ICMPV6_RA], "drop"));
        for r in &p.filter.egress {
            if let Some(expr) = rule_expr(r, false, "return")? {
                d.rule(&c, expr);
            }
        }
        d.rule(&c, vec![verdict("drop")]);

        let c = format!("ingress_{}", p.index);
        d.chain(&c);
        d.rule(&c, udp_ports("ipv4", 67, 68, "accept"));
        d.rule(&c, udp_ports("ipv6", 547, 546, "accept"));
        d.rule(
            &c,
            icmpv6_types(
                &[ICMPV6_MLD_QUERY, ICMPV6_RA, ICMPV6_NS, ICMPV6_NA],
                "accept",
            ),
        );
        for r in &p.filter.ingress {
            if let Some(expr) = rule_expr(r, true, "accept")? {
                d.rule(&c, expr);
            }
        }
        d.rule(&c, vec![verdict("drop")]);
    }
    Ok(d.finish())
}

fn udp_ports(nfproto: &str, sport: u16, dport: u16, v: &str) -> Vec<Value> {
    vec![
        eq(meta("nfproto"), json!(nfproto)),
        eq(meta("l4proto"), json!("udp")),
        eq(payload("udp", "sport"), json!(sport)),
        eq(payload("udp", "dport"), json!(dport)),
        verdict(v),
    ]
}

fn icmpv6_types(types: &[u8], v: &str) -> Vec<Value> {
    vec![
        eq(meta("nfproto"), json!("ipv6")),
        eq(meta("l4proto"), json!("ipv6-icmp")),
        eq(payload("icmpv6", "type"), json!({"set": types})),
        verdict(v),
    ]
}

/// One security group rule as nftables expressions, `None` when it can match nothing (its
/// remote addresses are all of the other family).
fn rule_expr(r: &FilterRule, ingress: bool, v: &str) -> Result<Option<Vec<Value>>> {
    let v4 = r.ethertype == EtherType::V4;
    let mut expr = vec![eq(meta("nfproto"), json!(if v4 { "ipv4" } else { "ipv6" }))];
    // Neutron takes "icmp" in an IPv6 rule to mean ICMPv6.
    let protocol = match r.protocol {
        Some(1) if !v4 => Some(58),
        p => p,
    };
    if let Some(proto) = protocol {
        expr.push(eq(meta("l4proto"), json!(proto)));
        let name = match proto {
            6 => Some("tcp"),
            17 => Some("udp"),
            132 => Some("sctp"),
            136 => Some("udplite"),
            _ => None,
        };
        let icmp = match (proto, v4) {
            (1, true) => Some("icmp"),
            (58, false) => Some("icmpv6"),
            _ => None,
        };
        if let Some(name) = name {
            let range = match (r.port_min, r.port_max) {
                (Some(a), Some(b)) if a > b => {
                    return Err(Error::Invalid(format!("port range {a}-{b}")));
                }
                (Some(a), Some(b)) if a == b => Some(json!(a)),
                (Some(a), Some(b)) => Some(json!({"range": [a, b]})),
                (Some(a), None) => Some(json!(a)),
                (None, Some(b)) => Some(json!({"range": [0, b]})),
                (None, None) => None,
            };
            if let Some(range) = range
                && range != json!({"range": [1, 65535]})
            {
                expr.push(eq(payload(name, "dport"), range));
            }
        } else if let Some(icmp) = icmp
            && let Some(t) = r.port_min
        {
            let t = u8::try_from(t).map_err(|_| Error::Invalid(format!("{icmp} type {t}")))?;
            expr.push(eq(payload(icmp, "type"), json!(t)));
            if let Some(code) = r.port_max {
                let code = u8::try_from(code)
                    .map_err(|_| Error::Invalid(format!("{icmp} code {code}")))?;
                expr.push(eq(payload(icmp, "code"), json!(code)));
            }
        }
    }
    if !r.remote.is_empty() {
        let cidrs = r
            .remote
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>>>()?;
        let Some(set) = cidr_set(&cidrs, v4) else {
            return Ok(None);
        };
        let field = if ingress { "saddr" } else { "daddr" };
        expr.push(eq(payload(if v4 { "ip" } else { "ip6" }, field), set));
    }
    expr.push(verdict(v));
    Ok(Some(expr))
}

/// The `nft -j` document replacing both tables with the rules of `ports`.
pub fn ruleset(ports: &[VmPort]) -> Result<Value> {
    let indexed = index_ports(ports)?;
    let mut cmds = ports_table(&indexed);
    cmds.extend(sg_table(&indexed, ports)?);
    Ok(json!({"nftables": cmds}))
}

/// Replaces the host namespace's port filter tables with the rules of `ports`, atomically
/// (one transaction for both tables). Ports with `filter: None` get no rules.
///
/// The security groups (the inet table) see bridged traffic only through br_netfilter: it is
/// on by default in a new namespace, but apply makes sure.
pub async fn apply(host_namespace: &str, ports: &[VmPort]) -> Result<()> {
    let doc = ruleset(ports)?.to_string();
    for key in [
        "bridge/bridge-nf-call-iptables",
        "bridge/bridge-nf-call-ip6tables",
    ] {
        crate::netns::set_net_sysctl(host_namespace, key, "1")
            .await
            .map_err(|e| match e {
                Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Error::Invalid(format!(
                        "/proc/sys/net/{key} is missing: security groups need the kernel's \
                         br_netfilter (modprobe br_netfilter)"
                    ))
                }
                e => e,
            })?;
    }
    crate::nft::nft(
        Some(host_namespace),
        &["-j", "-f", "-"],
        Some(doc.as_bytes()),
    )
    .await?;
    Ok(())
}

/// Removes both filter tables from the host namespace; succeeds if they are gone.
pub async fn remove(host_namespace: &str) -> Result<()> {
    let mut cmds = Vec::new();
    for (family, name) in [("bridge", PORTS_TABLE), ("inet", SG_TABLE)] {
        let t = json!({"table": {"family": family, "name": name}});
        cmds.push(json!({"add": t.clone()}));
        cmds.push(json!({"delete": t}));
    }
    let doc = json!({"nftables": cmds}).to_string();
    crate::nft::nft(
        Some(host_namespace),
        &["-j", "-f", "-"],
        Some(doc.as_bytes()),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: &str, filter: Option<PortFilter>) -> VmPort {
        VmPort {
            id: id.into(),
            network_id: "net-1".into(),
            mac: "fa:16:3e:00:00:05".into(),
            mtu: 1500,
            admin_up: true,
            filter,
        }
    }

    #[test]
    fn cidrs_normalize_and_merge() {
        let c = Cidr::parse("10.0.0.77/24").expect("valid");
        assert_eq!(c.addr.to_string(), "10.0.0.0");
        assert!(c.contains(&Cidr::parse("10.0.0.5").expect("valid")));
        assert!(!c.contains(&Cidr::parse("10.0.1.5").expect("valid")));
        assert!(Cidr::parse("10.0.0.1/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        let set = cidr_set(
            &[
                Cidr::parse("10.0.0.5").expect("v"),
                Cidr::parse("10.0.0.0/24").expect("v"),
                Cidr::parse("fd00::/64").expect("v"),
                Cidr::parse("10.0.0.0/24").expect("v"),
            ],
            true,
        )
        .expect("some");
        assert_eq!(
            set,
            json!({"set": [{"prefix": {"addr": "10.0.0.0", "len": 24}}]})
        );
        assert_eq!(
            Cidr::parse("0.0.0.0/0").expect("v").to_json(),
            json!({"prefix": {"addr": "0.0.0.0", "len": 0}})
        );
    }

    #[test]
    fn link_local_from_mac() {
        let mac = parse_mac("fa:16:3e:12:34:56").expect("mac");
        assert_eq!(link_local(mac).to_string(), "fe80::f816:3eff:fe12:3456");
        assert!(parse_mac("fa:16:3e:12:34").is_err());
    }

    #[test]
    fn rules_translate() {
        let r = FilterRule {
            ethertype: EtherType::V4,
            protocol: Some(6),
            port_min: Some(22),
            port_max: Some(22),
            remote: vec!["10.0.0.6/32".into(), "fd00::1".into()],
        };
        let e = rule_expr(&r, true, "accept").expect("ok").expect("some");
        assert_eq!(e[2], eq(payload("tcp", "dport"), json!(22)));
        assert_eq!(
            e[3],
            eq(payload("ip", "saddr"), json!({"set": ["10.0.0.6"]}))
        );
        assert!(!Value::Array(e).to_string().contains("fd00"));
        // Only addresses of the other family: the rule matches nothing.
        let v6only = FilterRule {
            remote: vec!["fd00::/64".into()],
            ..r.clone()
        };
        assert!(rule_expr(&v6only, true, "accept").expect("ok").is_none());
        let icmp6 = FilterRule {
            ethertype: EtherType::V6,
            protocol: Some(1),
            port_min: Some(128),
            port_max: None,
            remote: vec![],
        };
        let text =
            Value::Array(rule_expr(&icmp6, false, "return").expect("ok").expect("s")).to_string();
        assert!(text.contains(r#""right":58"#), "{text}");
        assert!(text.contains(&eq(payload("icmpv6", "type"), json!(128)).to_string()));
        let bad = FilterRule {
            port_min: Some(30),
            port_max: Some(20),
            ..r
        };
        assert!(rule_expr(&bad, true, "accept").is_err());
    }

    #[test]
    fn document_has_both_tables_and_marks() {
        let f = PortFilter {
            allowed_sources: vec![("fa:16:3e:00:00:05".into(), "10.0.0.5".into())],
            ingress: vec![],
            egress: vec![],
        };
        let ports = vec![
            port("bbbbbbbb-1", Some(f.clone())),
            port("cccccccc-1", None),
            port("aaaaaaaa-1", Some(f)),
        ];
        let doc = ruleset(&ports).expect("valid");
        let text = doc.to_string();
        let cmds = doc["nftables"].as_array().expect("array");
        assert_eq!(cmds[1]["delete"]["table"]["name"], PORTS_TABLE);
        assert!(text.contains(r#"["tapaaaaaaaa-1",{"jump":{"target":"from_1"}}]"#));
        assert!(text.contains(r#"["tapbbbbbbbb-1",{"jump":{"target":"to_2"}}]"#));
        assert!(
            !text.contains("tapcccccccc-1"),
            "unfiltered port has no rules"
        );
        assert!(text.contains(r#"[131072,{"jump":{"target":"ingress_2"}}]"#));
        assert!(
            cmds.iter()
                .any(|c| c["delete"]["table"]["name"] == SG_TABLE)
        );
        assert!(text.contains("fe80::f816:3eff:fe00:5"));
        let dup = vec![
            port("aaaaaaaaaaa-1", Some(PortFilter::default_for_tests())),
            port("aaaaaaaaaaa-2", Some(PortFilter::default_for_tests())),
        ];
        assert!(ruleset(&dup).is_err());
    }

    impl PortFilter {
        fn default_for_tests() -> Self {
            PortFilter {
                allowed_sources: vec![],
                ingress: vec![],
                egress: vec![],
            }
        }
    }
}
