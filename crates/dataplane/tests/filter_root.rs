//! Security groups and anti-spoofing with real packets (`dataplane::filter`). Root only; they
//! skip with a SKIPPED line otherwise. Safety as in `dataplane_root.rs`: everything is made in
//! `kt<6 hex>-ROLE` namespaces (links only inside them), nothing in the root namespace, and a
//! Drop guard kills the processes inside and deletes the namespaces, also on failure.
//!
//! Topology per test: a host namespace with one bridge; two guest namespaces `a` (10.0.0.5,
//! fa:16:3e:00:00:05) and `b` (10.0.0.6, fa:16:3e:00:00:06), each joined by a veth whose host
//! end is named like the port's tap and enslaved to the bridge.

use dataplane::link::Netns;
use dataplane::netns;
use dataplane::plan::{EtherType, FilterRule, PortFilter, VmPort};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{Sandbox, skip};

const NET: &str = "0e7f4c2a-0000-4000-8000-000000000001";
const PORT_A: &str = "a5a5a5a5-1111-4000-8000-00000000000a";
const PORT_B: &str = "b6b6b6b6-2222-4000-8000-00000000000b";
const MAC_A: &str = "fa:16:3e:00:00:05";
const MAC_B: &str = "fa:16:3e:00:00:06";
const IP_A: &str = "10.0.0.5";
const IP_B: &str = "10.0.0.6";

struct Topo {
    sb: Sandbox,
    host: String,
    a: String,
    b: String,
}

async fn topo() -> Topo {
    let mut sb = Sandbox::new();
    let host = sb.ns("host").await;
    let a = sb.ns("a").await;
    let b = sb.ns("b").await;
    let h = Netns::named(&host);
    let br = dataplane::bridge_name(NET);
    h.ensure_bridge(&br).await.expect("bridge");
    h.set_up(&br).await.expect("bridge up");
    for (guest, port, mac, ip) in [(&a, PORT_A, MAC_A, IP_A), (&b, PORT_B, MAC_B, IP_B)] {
        let tap = dataplane::tap_name(port);
        let g = Netns::named(guest);
        h.ensure_veth(&tap, "eth0", Some(&g)).await.expect("veth");
        h.set_master(&tap, &br).await.expect("enslave");
        h.set_up(&tap).await.expect("tap up");
        g.set_mac("eth0", mac).await.expect("mac");
        g.ensure_address("eth0", &format!("{ip}/24"))
            .await
            .expect("address");
        g.set_up("eth0").await.expect("up");
        g.set_up("lo").await.expect("lo up");
    }
    Topo { sb, host, a, b }
}

fn rule(protocol: Option<u8>, ports: Option<(u16, u16)>, remote: &[&str]) -> FilterRule {
    FilterRule {
        ethertype: EtherType::V4,
        protocol,
        port_min: ports.map(|p| p.0),
        port_max: ports.map(|p| p.1),
        remote: remote.iter().map(|r| r.to_string()).collect(),
    }
}

/// Neutron's default group: ingress only from the group's members, egress anywhere.
fn default_group(mac: &str, ip: &str, other_ip: &str) -> PortFilter {
    PortFilter {
        allowed_sources: vec![(mac.into(), ip.into())],
        ingress: vec![rule(None, None, &[other_ip])],
        egress: vec![rule(None, None, &[])],
    }
}

fn port(id: &str, mac: &str, filter: Option<PortFilter>) -> VmPort {
    VmPort {
        id: id.into(),
        network_id: NET.into(),
        mac: mac.into(),
        mtu: 1500,
        admin_up: true,
        filter,
    }
}

fn ping(ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ip(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Echo servers on `ports` at `addr` inside `ns`, until the returned sender is dropped.
async fn echo_servers(
    ns: &str,
    addr: &'static str,
    ports: &[u16],
) -> tokio::sync::oneshot::Sender<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let ports = ports.to_vec();
    tokio::spawn(netns::run_in_namespace(ns, move || async move {
        let mut listeners = Vec::new();
        for p in ports {
            listeners.push(
                tokio::net::TcpListener::bind((addr, p))
                    .await
                    .expect("bind"),
            );
        }
        let _ = ready_tx.send(());
        for l in listeners {
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
        let _ = stop_rx.await;
    }));
    ready_rx.await.expect("listeners up");
    stop_tx
}

/// A TCP connection from inside `ns` (the socket keeps that namespace), or `None` if it is not
/// established within 1.5 s.
async fn connect(ns: &str, addr: &str, port: u16) -> Option<std::net::TcpStream> {
    let target: std::net::SocketAddr = format!("{addr}:{port}").parse().expect("addr");
    netns::run_in_namespace(ns, move || async move {
        std::net::TcpStream::connect_timeout(&target, Duration::from_millis(1500)).ok()
    })
    .await
    .expect("namespace thread")
}

/// Whether a byte sent on `s` comes back (from the echo server) within 1 s.
fn echoes(s: &mut std::net::TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    if s.write_all(b"x").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1))
}

async fn tcp_works(ns: &str, addr: &str, port: u16) -> bool {
    match connect(ns, addr, port).await {
        Some(mut s) => echoes(&mut s),
        None => false,
    }
}

async fn apply(t: &Topo, ports: &[VmPort]) {
    dataplane::filter::apply(&t.host, ports)
        .await
        .expect("apply filter");
}

#[tokio::test]
async fn default_group_lets_the_ports_talk() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    let _servers_a = echo_servers(&t.a, "10.0.0.5", &[22]).await;
    let _servers_b = echo_servers(&t.b, "10.0.0.6", &[80]).await;
    apply(
        &t,
        &[
            port(PORT_A, MAC_A, Some(default_group(MAC_A, IP_A, IP_B))),
            port(PORT_B, MAC_B, Some(default_group(MAC_B, IP_B, IP_A))),
        ],
    )
    .await;
    assert!(ping(&t.a, IP_B), "a cannot ping b");
    assert!(ping(&t.b, IP_A), "b cannot ping a");
    assert!(tcp_works(&t.b, IP_A, 22).await, "b cannot reach a:22");
    assert!(tcp_works(&t.a, IP_B, 80).await, "a cannot reach b:80");
    drop(t.sb);
}

#[tokio::test]
async fn ingress_tcp22_only_is_stateful() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    let _servers = echo_servers(&t.a, "10.0.0.5", &[22, 23]).await;
    let a_filter = PortFilter {
        allowed_sources: vec![(MAC_A.into(), IP_A.into())],
        ingress: vec![rule(Some(6), Some((22, 22)), &[])],
        egress: vec![rule(None, None, &[])],
    };
    apply(
        &t,
        &[
            port(PORT_A, MAC_A, Some(a_filter)),
            port(PORT_B, MAC_B, Some(default_group(MAC_B, IP_B, IP_A))),
        ],
    )
    .await;
    assert!(!ping(&t.b, IP_A), "ICMP to a must be dropped");
    assert!(ping(&t.a, IP_B), "a's own ping must get its replies");
    assert!(tcp_works(&t.b, IP_A, 22).await, "TCP 22 to a is allowed");
    assert!(
        connect(&t.b, IP_A, 23).await.is_none(),
        "TCP 23 to a must be dropped"
    );
    drop(t.sb);
}

#[tokio::test]
async fn spoofed_ip_and_mac_are_dropped() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    let filtered = [
        port(PORT_A, MAC_A, Some(default_group(MAC_A, IP_A, IP_B))),
        // b accepts anything from anywhere: what stops a is a's anti-spoofing.
        port(
            PORT_B,
            MAC_B,
            Some(PortFilter {
                allowed_sources: vec![(MAC_B.into(), IP_B.into())],
                ingress: vec![rule(None, None, &[])],
                egress: vec![rule(None, None, &[])],
            }),
        ),
    ];
    apply(&t, &filtered).await;
    assert!(ping(&t.a, IP_B), "a can ping b with its own address");

    // a takes another address: dropped (static neighbours, so this is not just ARP failing).
    ip(&t.a, &["addr", "flush", "dev", "eth0"]);
    ip(&t.a, &["addr", "add", "10.0.0.99/24", "dev", "eth0"]);
    ip(
        &t.a,
        &["neigh", "replace", IP_B, "lladdr", MAC_B, "dev", "eth0"],
    );
    ip(
        &t.b,
        &[
            "neigh",
            "replace",
            "10.0.0.99",
            "lladdr",
            MAC_A,
            "dev",
            "eth0",
        ],
    );
    assert!(!ping(&t.a, IP_B), "spoofed source IP must be dropped");
    // The same without port security on a goes through: it was the filter.
    let mut open = filtered.clone();
    open[0].filter = None;
    apply(&t, &open).await;
    assert!(ping(&t.a, IP_B), "unfiltered a with another IP");

    // Back to its address, but another MAC: dropped.
    apply(&t, &filtered).await;
    ip(&t.a, &["addr", "flush", "dev", "eth0"]);
    ip(&t.a, &["addr", "add", "10.0.0.5/24", "dev", "eth0"]);
    ip(
        &t.a,
        &["link", "set", "dev", "eth0", "address", "fa:16:3e:00:00:99"],
    );
    ip(
        &t.a,
        &["neigh", "replace", IP_B, "lladdr", MAC_B, "dev", "eth0"],
    );
    ip(
        &t.b,
        &[
            "neigh",
            "replace",
            IP_A,
            "lladdr",
            "fa:16:3e:00:00:99",
            "dev",
            "eth0",
        ],
    );
    assert!(!ping(&t.a, IP_B), "spoofed source MAC must be dropped");
    apply(&t, &open).await;
    assert!(ping(&t.a, IP_B), "unfiltered a with another MAC");
    drop(t.sb);
}

#[tokio::test]
async fn port_security_off_passes_everything() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    let _servers = echo_servers(&t.a, "10.0.0.5", &[23]).await;
    // a unfiltered; b filtered but its egress allows all, and a's side has no ingress rules.
    apply(
        &t,
        &[
            port(PORT_A, MAC_A, None),
            port(
                PORT_B,
                MAC_B,
                Some(PortFilter {
                    allowed_sources: vec![(MAC_B.into(), IP_B.into())],
                    ingress: vec![],
                    egress: vec![rule(None, None, &[])],
                }),
            ),
        ],
    )
    .await;
    assert!(ping(&t.b, IP_A), "b → unfiltered a");
    assert!(tcp_works(&t.b, IP_A, 23).await, "b → unfiltered a:23");
    assert!(!ping(&t.a, IP_B), "b's own ingress (none) still applies");
    // Both unfiltered: all passes.
    apply(&t, &[port(PORT_A, MAC_A, None), port(PORT_B, MAC_B, None)]).await;
    assert!(ping(&t.a, IP_B));
    assert!(ping(&t.b, IP_A));
    drop(t.sb);
}

#[tokio::test]
async fn removing_a_rule_blocks_new_and_established_connections() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    let _servers = echo_servers(&t.a, "10.0.0.5", &[22]).await;
    let with22 = PortFilter {
        allowed_sources: vec![(MAC_A.into(), IP_A.into())],
        ingress: vec![rule(Some(6), Some((22, 22)), &[])],
        egress: vec![rule(None, None, &[])],
    };
    let without = PortFilter {
        ingress: vec![],
        ..with22.clone()
    };
    let b = port(PORT_B, MAC_B, Some(default_group(MAC_B, IP_B, IP_A)));
    apply(&t, &[port(PORT_A, MAC_A, Some(with22.clone())), b.clone()]).await;
    let mut held = connect(&t.b, IP_A, 22)
        .await
        .expect("connect with the rule");
    assert!(echoes(&mut held));

    apply(&t, &[port(PORT_A, MAC_A, Some(without)), b.clone()]).await;
    let started = std::time::Instant::now();
    assert!(
        connect(&t.b, IP_A, 22).await.is_none(),
        "new connection after the rule's removal"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        !echoes(&mut held),
        "an established connection of a removed rule must stop too"
    );

    apply(&t, &[port(PORT_A, MAC_A, Some(with22)), b]).await;
    assert!(tcp_works(&t.b, IP_A, 22).await, "re-added rule restores");
    drop(t.sb);
}

fn count_tables(ns: &str) -> (usize, usize, usize) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-j", "list", "ruleset"])
        .output()
        .expect("nft list");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    let tables = |family: &str, name: &str| {
        items
            .iter()
            .filter(|o| o["table"]["family"] == family && o["table"]["name"] == name)
            .count()
    };
    let rules = items.iter().filter(|o| o.get("rule").is_some()).count();
    (
        tables("bridge", dataplane::filter::PORTS_TABLE),
        tables("inet", dataplane::filter::SG_TABLE),
        rules,
    )
}

#[tokio::test]
async fn applying_twice_keeps_one_copy_and_remove_clears() {
    if skip(&["ip", "nft"]) {
        return;
    }
    let t = topo().await;
    let ports = [
        port(PORT_A, MAC_A, Some(default_group(MAC_A, IP_A, IP_B))),
        port(PORT_B, MAC_B, Some(default_group(MAC_B, IP_B, IP_A))),
    ];
    // br_netfilter off in the host namespace: apply turns it back on.
    let sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let host = t.host.clone();
    netns::set_net_sysctl(&host, "bridge/bridge-nf-call-iptables", "0")
        .await
        .expect("sysctl");
    apply(&t, &ports).await;
    let value = netns::run_in_namespace(&host, move || async move {
        std::fs::read_to_string(sysctl).expect("read sysctl")
    })
    .await
    .expect("namespace thread");
    assert_eq!(value.trim(), "1");
    let once = count_tables(&t.host);
    assert_eq!((once.0, once.1), (1, 1));
    apply(&t, &ports).await;
    assert_eq!(
        count_tables(&t.host),
        once,
        "second apply duplicated something"
    );
    dataplane::filter::remove(&t.host).await.expect("remove");
    dataplane::filter::remove(&t.host)
        .await
        .expect("remove twice");
    assert_eq!(count_tables(&t.host), (0, 0, 0));
    drop(t.sb);
}

#[tokio::test]
async fn ipv6_rules_neighbour_discovery_and_spoofing() {
    if skip(&["ip", "nft", "ping"]) {
        return;
    }
    let t = topo().await;
    for (ns, addr) in [(&t.a, "fd00::5/64"), (&t.b, "fd00::6/64")] {
        ip(ns, &["addr", "add", addr, "dev", "eth0", "nodad"]);
    }
    let v6 = |remote: &[&str]| FilterRule {
        ethertype: EtherType::V6,
        ..rule(None, None, remote)
    };
    let filter = |mac: &str, v4: &str, me: &str, other: &str| PortFilter {
        allowed_sources: vec![(mac.into(), v4.into()), (mac.into(), me.into())],
        ingress: vec![v6(&[other])],
        egress: vec![v6(&[])],
    };
    let ports = [
        port(
            PORT_A,
            MAC_A,
            Some(filter(MAC_A, IP_A, "fd00::5", "fd00::6")),
        ),
        port(
            PORT_B,
            MAC_B,
            Some(filter(MAC_B, IP_B, "fd00::6", "fd00::5")),
        ),
    ];
    apply(&t, &ports).await;
    // Neighbour discovery goes through (no static entries), then the rules.
    assert!(ping(&t.a, "fd00::6"), "a cannot ping6 b");
    assert!(ping(&t.b, "fd00::5"), "b cannot ping6 a");
    assert!(!ping(&t.a, IP_B), "IPv6-only rules: IPv4 is dropped");
    // a takes an address outside its pairs.
    ip(
        &t.a,
        &["addr", "add", "fd00::99/64", "dev", "eth0", "nodad"],
    );
    let spoofed = Command::new("ip")
        .args([
            "netns", "exec", &t.a, "ping", "-c1", "-W1", "-I", "fd00::99", "fd00::6",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(!spoofed, "spoofed IPv6 source must be dropped");
    drop(t.sb);
}
