//! `converge` against the real kernel, `ip`, `nft` and `dnsmasq` (root only; SKIPPED
//! otherwise). Safety as in `dataplane_root.rs`: every namespace has the prefix `kt<6 hex>-`
//! (the plan's `Names::prefix`), nothing is made in the root namespace, and a Drop guard runs
//! `converge::teardown`, kills what still runs in namespaces with the prefix and removes them,
//! also when a test fails.
//!
//! Guests: converge creates the guest ports' real taps (persistent, `vnet_hdr`, on the bridge),
//! and the tests check them; but a tap has no carrier until QEMU opens it, so the traffic
//! assertions use a stand-in guest per port: a namespace `kt…-gN` whose `eth0` (with the
//! port's MAC) is a veth whose other end `vgN` the test plugs into the same bridge. Everything
//! else on the path (bridge, DHCP port and dnsmasq, router ports, routes, NAT, the
//! outside-world veth) is converge's. `vgN` also shows that converge leaves links it does not
//! own alone.

use dataplane::converge::{self, NAT_TABLE, Report};
use dataplane::dnsmasq::{DhcpHost, DhcpSubnet};
use dataplane::link::{LinkState, Netns};
use dataplane::netns;
use dataplane::plan::{
    DhcpPlan, HostPlan, Names, NetworkPlan, RouterGateway, RouterPlan, RouterPort, Segment, VmPort,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{skip, unique_prefix};

/// A unique prefix, a state directory, and cleanup of everything under the prefix on drop.
struct Sandbox {
    names: Names,
    state: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            names: Names::new(format!("{}-", unique_prefix())),
            state: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.state.path().to_owned()
    }

    fn with_prefix(&self) -> Vec<String> {
        netns::list_namespaces()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(&self.names.prefix))
            .collect()
    }

    /// A stand-in guest: namespace `kt…-gN`, `eth0` with `mac`, its veth peer `vgN` on
    /// `bridge` in the host namespace.
    async fn guest(&self, n: u8, mac: &str, bridge: &str) -> String {
        let ns = format!("{}g{n}", self.names.prefix);
        netns::ensure_namespace(&ns).await.expect("guest namespace");
        let host = Netns::named(&self.names.host_namespace());
        let outer = format!("vg{n}");
        host.ensure_veth(&outer, "eth0", Some(&Netns::named(&ns)))
            .await
            .expect("guest veth");
        host.set_master(&outer, bridge)
            .await
            .expect("on the bridge");
        host.set_up(&outer).await.expect("up");
        let g = Netns::named(&ns);
        g.set_mac("eth0", mac).await.expect("mac");
        g.set_up("eth0").await.expect("up");
        g.set_up("lo").await.expect("lo up");
        ns
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let names = self.names.clone();
        let state = self.state_dir();
        // Drop may run inside the test's runtime: tear down from a thread with its own.
        let torn = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(converge::teardown(&names, &state)))
        })
        .join();
        if !matches!(torn, Ok(Ok(Ok(_)))) {
            eprintln!("teardown failed: {torn:?}");
        }
        for ns in self.with_prefix() {
            let _ = netns::kill_namespace_processes(&ns);
            let _ = netns::remove_namespace_blocking(&ns);
        }
        let left = self.with_prefix();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("namespaces left behind: {left:?}");
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const EXT: &str = "e0e0e0e0-0000-4000-8000-000000000001";
const PRIV: &str = "a0a0a0a0-0000-4000-8000-000000000002";
const ROUTER: &str = "90909090-0000-4000-8000-000000000003";
const DHCP_PORT: &str = "d0d0d0d0-0000-4000-8000-000000000004";
const GUEST1: &str = "11111111-0000-4000-8000-000000000005";
const GUEST2: &str = "22222222-0000-4000-8000-000000000006";
const RIF: &str = "33333333-0000-4000-8000-000000000007";
const RGW: &str = "44444444-0000-4000-8000-000000000008";
const MAC1: &str = "fa:16:3e:00:00:05";
const MAC2: &str = "fa:16:3e:00:00:06";

fn vm_port(id: &str, net: &str, mac: &str) -> VmPort {
    VmPort {
        id: id.into(),
        network_id: net.into(),
        mac: mac.into(),
        mtu: 1450,
        admin_up: true,
        filter: None,
    }
}

fn private_net(id: &str, dhcp_port: &str, third: u8, hosts: Vec<DhcpHost>) -> NetworkPlan {
    NetworkPlan {
        id: id.into(),
        mtu: 1450,
        segment: Segment::Local,
        external: None,
        dhcp: Some(DhcpPlan {
            port_id: dhcp_port.into(),
            mac: format!("fa:16:3e:00:{third:02x}:02"),
            addresses: vec![format!("10.0.{third}.2/24")],
            subnets: vec![DhcpSubnet {
                mtu: None,
                tag: format!("subnet-{third}"),
                network: ip(&format!("10.0.{third}.0")),
                prefix_len: 24,
                gateway: Some(ip(&format!("10.0.{third}.1"))),
                dns_servers: vec![],
                lease_seconds: 600,
                classless_routes: vec![],
            }],
            hosts,
        }),
    }
}

fn external_net(id: &str) -> NetworkPlan {
    NetworkPlan {
        id: id.into(),
        mtu: 1500,
        segment: Segment::Local,
        external: Some(vec!["172.24.4.1/24".into()]),
        dhcp: None,
    }
}

/// The all-in-one cloud: external 172.24.4.0/24 (outside world 172.24.4.1), private
/// 10.0.0.0/24 with DHCP on 10.0.0.2 and two guests (.5 and .6), a router 10.0.0.1 with
/// gateway 172.24.4.10, SNAT, default route 172.24.4.1 and floating IP 172.24.4.50 → 10.0.0.5.
fn all_in_one(names: &Names) -> HostPlan {
    let host = |mac: &str, ip4: &str| DhcpHost {
        mac: mac.into(),
        hostname: format!("host-{}", ip4.replace('.', "-")),
        ip: ip(ip4),
    };
    HostPlan {
        names: names.clone(),
        external_access: Default::default(),
        networks: vec![
            external_net(EXT),
            private_net(
                PRIV,
                DHCP_PORT,
                0,
                vec![host(MAC1, "10.0.0.5"), host(MAC2, "10.0.0.6")],
            ),
        ],
        vm_ports: vec![vm_port(GUEST1, PRIV, MAC1), vm_port(GUEST2, PRIV, MAC2)],
        routers: vec![RouterPlan {
            id: ROUTER.into(),
            interfaces: vec![RouterPort {
                port_id: RIF.into(),
                network_id: PRIV.into(),
                mac: "fa:16:3e:00:00:01".into(),
                mtu: 1450,
                addresses: vec!["10.0.0.1/24".into()],
                ra: None,
            }],
            gateway: Some(RouterGateway {
                port: RouterPort {
                    port_id: RGW.into(),
                    network_id: EXT.into(),
                    mac: "fa:16:3e:00:04:0a".into(),
                    mtu: 1500,
                    addresses: vec!["172.24.4.10/24".into()],
                    ra: None,
                },
                default_route: Some(ip("172.24.4.1")),
                snat: true,
            }),
            routes: vec![],
            floating_ips: vec![(Ipv4Addr::new(172, 24, 4, 50), Ipv4Addr::new(10, 0, 0, 5))],
            metadata_port: None,
        }],
    }
}

async fn links(ns: &str) -> Vec<LinkState> {
    Netns::named(ns).snapshot().await.expect("snapshot")
}

fn find<'a>(links: &'a [LinkState], name: &str) -> Option<&'a LinkState> {
    links.iter().find(|l| l.ifname == name)
}

fn ping(ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W2", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn have_udhcpc() -> bool {
    Command::new("busybox")
        .args(["udhcpc", "--help"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stderr).contains("applet not found"))
        .unwrap_or(false)
}

/// busybox udhcpc in `ns` on eth0, without configuring anything; its output.
fn udhcpc(ns: &str) -> String {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// A TCP listener at `addr` inside `ns` that accepts one connection and returns the peer.
async fn listen_once(
    ns: &str,
    addr: &'static str,
) -> tokio::task::JoinHandle<dataplane::Result<std::net::SocketAddr>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(netns::run_in_namespace(ns, move || async move {
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let _ = ready_tx.send(());
        let (mut s, peer) = l.accept().await.expect("accept");
        let _ = s.write_all(b"hi").await;
        peer
    }));
    ready_rx.await.expect("listener up");
    task
}

/// Connects from `ns` to `addr` and reads the greeting.
async fn connect_from(ns: &str, addr: &'static str) -> String {
    tokio::time::timeout(
        Duration::from_secs(10),
        netns::run_in_namespace(ns, move || async move {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.expect("read");
            buf
        }),
    )
    .await
    .expect("connect in time")
    .expect("namespace thread")
}

async fn peer_seen(ns_from: &str, ns_listen: &str, addr: &'static str) -> IpAddr {
    let listener = listen_once(ns_listen, addr).await;
    assert_eq!(connect_from(ns_from, addr).await, "hi");
    tokio::time::timeout(Duration::from_secs(10), listener)
        .await
        .expect("accepted in time")
        .expect("join")
        .expect("namespace thread")
        .ip()
}

fn nat_rules(listed: &serde_json::Value) -> usize {
    listed["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count()
}

#[tokio::test]
async fn converge_builds_an_all_in_one_cloud_and_is_idempotent() {
    if skip(&["ip", "nft", "dnsmasq", "ping"]) {
        return;
    }
    let sb = Sandbox::new();
    let names = sb.names.clone();
    let state = sb.state_dir();
    let mut plan = all_in_one(&names);

    let first = converge::converge(&plan, &state).await.expect("converge");
    eprintln!("first converge: {first}");
    assert!(!first.is_noop());

    let host = names.host_namespace();
    let ext = names.external_namespace();
    let dhcp = names.dhcp_namespace(PRIV);
    let router = names.router_namespace(ROUTER);
    for ns in [&host, &ext, &dhcp, &router] {
        assert!(netns::namespace_exists(ns).expect("check"), "{ns} missing");
    }
    let br = dataplane::bridge_name(PRIV);
    let ext_br = dataplane::bridge_name(EXT);
    let hl = links(&host).await;
    let bridge = find(&hl, &br).expect("bridge");
    assert!(bridge.is_up());
    assert_eq!(bridge.mtu, 1450);
    for (port, mac) in [(GUEST1, MAC1), (GUEST2, MAC2)] {
        let tap = find(&hl, &dataplane::tap_name(port)).expect("tap");
        assert_eq!(tap.kind(), Some("tun"));
        assert_eq!(tap.info("type").and_then(|v| v.as_str()), Some("tap"));
        assert_eq!(tap.info("vnet_hdr").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(tap.info("persist").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(tap.master.as_deref(), Some(br.as_str()));
        assert_eq!(tap.mtu, 1450);
        assert!(tap.is_up());
        assert_ne!(tap.address.as_deref(), Some(mac), "the guest has the MAC");
    }
    for (name, master) in [
        (dataplane::tap_name(DHCP_PORT), &br),
        (dataplane::tap_name(RIF), &br),
        (dataplane::tap_name(RGW), &ext_br),
        (dataplane::external_name(EXT), &ext_br),
    ] {
        let l = find(&hl, &name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(l.kind(), Some("veth"), "{name}");
        assert_eq!(l.master.as_deref(), Some(master.as_str()), "{name}");
        assert!(l.is_up(), "{name}");
    }
    let rl = links(&router).await;
    let qg = dataplane::router_gateway_name(RGW);
    let qr = dataplane::router_interface_name(RIF);
    assert_eq!(find(&rl, &qr).expect("qr").cidrs(), vec!["10.0.0.1/24"]);
    assert_eq!(
        find(&rl, &qg).expect("qg").cidrs(),
        vec!["172.24.4.10/24", "172.24.4.50/32"]
    );
    assert_eq!(
        find(&rl, &qr).expect("qr").address.as_deref(),
        Some("fa:16:3e:00:00:01")
    );
    let dl = links(&dhcp).await;
    let ns_port = find(&dl, &dataplane::dhcp_ns_name(DHCP_PORT)).expect("ns- port");
    assert_eq!(ns_port.cidrs(), vec!["10.0.0.2/24"]);
    assert_eq!(ns_port.mtu, 1450);
    let el = links(&ext).await;
    assert_eq!(
        find(&el, &dataplane::external_name(EXT))
            .expect("ext end")
            .cidrs(),
        vec!["172.24.4.1/24"]
    );

    // Stand-in guests on the private bridge (see the module docs).
    let g1 = sb.guest(1, MAC1, &br).await;
    let g2 = sb.guest(2, MAC2, &br).await;
    if have_udhcpc() {
        let out = udhcpc(&g1);
        assert!(out.contains("lease of 10.0.0.5 obtained"), "udhcpc: {out}");
        let out = udhcpc(&g2);
        assert!(out.contains("lease of 10.0.0.6 obtained"), "udhcpc: {out}");
    } else {
        eprintln!("NOTE: busybox udhcpc missing; DHCP checked only by dnsmasq's hosts file");
    }
    let hosts = std::fs::read_to_string(state.join("dhcp").join(PRIV).join("host")).expect("hosts");
    assert!(hosts.contains(&format!("{MAC1},host-10-0-0-5,10.0.0.5")));
    // Configure what DHCP handed out (udhcpc ran with a no-op script).
    for (g, addr) in [(&g1, "10.0.0.5/24"), (&g2, "10.0.0.6/24")] {
        let n = Netns::named(g);
        n.ensure_address("eth0", addr).await.expect("address");
        n.ensure_default_route(ip("10.0.0.1"), "eth0")
            .await
            .expect("default route");
    }
    assert!(ping(&g1, "10.0.0.2"), "guest → DHCP port");
    assert!(
        ping(&g1, "172.24.4.1"),
        "guest → outside world through the router"
    );
    assert!(ping(&ext, "172.24.4.50"), "outside world → floating IP");

    // SNAT as the outside world sees it.
    assert_eq!(
        peer_seen(&g1, &ext, "172.24.4.1:8081").await,
        ip("172.24.4.50"),
        "the FIP guest leaves as its floating IP"
    );
    assert_eq!(
        peer_seen(&g2, &ext, "172.24.4.1:8082").await,
        ip("172.24.4.10"),
        "the other guest leaves as the router's gateway IP"
    );
    // DNAT: the outside reaches the guest by its floating IP and keeps its own address.
    let inbound = listen_once(&g1, "10.0.0.5:8080").await;
    assert_eq!(connect_from(&ext, "172.24.4.50:8080").await, "hi");
    let peer = inbound.await.expect("join").expect("thread");
    assert_eq!(peer.ip(), ip("172.24.4.1"));

    // Twice: nothing changes, nothing is duplicated, nothing restarts.
    let dnsmasq_pids = netns::namespace_pids(&dhcp).expect("pids");
    assert_eq!(dnsmasq_pids.len(), 1, "one dnsmasq");
    let tap1 = dataplane::tap_name(GUEST1);
    let tap2 = dataplane::tap_name(GUEST2);
    let ifindex = |links: &[LinkState], n: &str| find(links, n).expect("link").ifindex;
    let (idx1, idx2) = (ifindex(&hl, &tap1), ifindex(&hl, &tap2));
    let started = Instant::now();
    let second = converge::converge(&plan, &state)
        .await
        .expect("converge twice");
    let took = started.elapsed();
    eprintln!("second converge (no-op) took {took:?}: {second}");
    assert_eq!(
        second,
        Report::default(),
        "second converge changed something"
    );
    assert_eq!(netns::namespace_pids(&dhcp).expect("pids"), dnsmasq_pids);
    let hl2 = links(&host).await;
    assert_eq!(ifindex(&hl2, &tap1), idx1);
    assert_eq!(ifindex(&hl2, &tap2), idx2);
    let rl = links(&router).await;
    assert_eq!(find(&rl, &qg).expect("qg").cidrs().len(), 2);
    let listed = dataplane::nft::list_table(Some(&router), NAT_TABLE)
        .await
        .expect("list")
        .expect("nat table");
    // FIP: DNAT prerouting + output, SNAT; one subnet SNAT.
    assert_eq!(nat_rules(&listed), 4, "{listed}");
    let tables = Command::new("ip")
        .args(["netns", "exec", &router, "nft", "list", "tables"])
        .output()
        .expect("nft list tables");
    assert_eq!(String::from_utf8_lossy(&tables.stdout).lines().count(), 1);

    // Drift is repaired: a foreign address, a lost default route, a stray kumo-named tap.
    let r = Netns::named(&router);
    r.add_address(&qr, "10.9.9.9/24")
        .await
        .expect("stray address");
    r.remove_default_route(true).await.expect("drop default");
    Netns::named(&host)
        .ensure_tap("tapdeadbeef-00")
        .await
        .expect("stray tap");
    let fixed = converge::converge(&plan, &state).await.expect("repair");
    eprintln!("repair: {fixed}");
    assert_eq!(fixed.changed.len(), 2, "{fixed}");
    assert_eq!(fixed.removed.len(), 1, "{fixed}");
    assert!(ping(&g1, "172.24.4.1"), "repaired");

    // admin_up false: the tap goes down in place.
    plan.vm_ports[1].admin_up = false;
    let down = converge::converge(&plan, &state).await.expect("admin down");
    assert_eq!(down.changed.len(), 1, "{down}");
    let hl3 = links(&host).await;
    let t2 = find(&hl3, &tap2).expect("tap2");
    assert!(!t2.is_up());
    assert_eq!(t2.ifindex, idx2);

    // A host change: SIGHUP, same dnsmasq.
    if let Some(d) = plan.networks[1].dhcp.as_mut() {
        d.hosts.push(DhcpHost {
            mac: "fa:16:3e:00:00:07".into(),
            hostname: "host-10-0-0-7".into(),
            ip: ip("10.0.0.7"),
        });
    }
    let hup = converge::converge(&plan, &state).await.expect("new host");
    assert_eq!(hup.changed.len(), 1, "{hup}");
    assert_eq!(netns::namespace_pids(&dhcp).expect("pids"), dnsmasq_pids);

    // The router and the private network leave the plan: their namespaces and links go.
    plan.routers.clear();
    plan.networks.retain(|n| n.id != PRIV);
    plan.vm_ports.clear();
    let shrink = converge::converge(&plan, &state).await.expect("shrink");
    eprintln!("shrink: {shrink}");
    assert!(!netns::namespace_exists(&router).expect("check"));
    assert!(!netns::namespace_exists(&dhcp).expect("check"));
    assert!(
        dnsmasq_pids
            .iter()
            .all(|p| !dataplane::dnsmasq::process_alive(*p)),
        "dnsmasq stopped"
    );
    let hl4 = links(&host).await;
    for gone in [
        br.clone(),
        tap1.clone(),
        tap2.clone(),
        dataplane::tap_name(DHCP_PORT),
        dataplane::tap_name(RIF),
        dataplane::tap_name(RGW),
    ] {
        assert!(find(&hl4, &gone).is_none(), "{gone} left behind");
    }
    assert!(find(&hl4, &ext_br).is_some(), "the external network stays");
    assert!(find(&hl4, "vg1").is_some(), "links kumo does not own stay");
    assert!(
        !state.join("dhcp").join(PRIV).exists(),
        "dnsmasq files removed"
    );
    assert!(
        converge::converge(&plan, &state)
            .await
            .expect("again")
            .is_noop()
    );

    // No external network left: the outside world goes too; teardown removes the rest.
    plan.networks.clear();
    converge::converge(&plan, &state).await.expect("empty plan");
    assert!(!netns::namespace_exists(&ext).expect("check"));
    let removed = converge::teardown(&names, &state).await.expect("teardown");
    assert_eq!(removed, vec![host.clone()]);
    let left: Vec<String> = sb
        .with_prefix()
        .into_iter()
        .filter(|n| *n != g1 && *n != g2)
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
    drop(sb);
}

/// 3 networks, 10 guest ports, 2 routers: the no-op converge's time.
#[tokio::test]
async fn idempotent_converge_is_fast() {
    if skip(&["ip", "nft", "dnsmasq"]) {
        return;
    }
    let sb = Sandbox::new();
    let state = sb.state_dir();
    let mut plan = all_in_one(&sb.names);
    let second = "b0b0b0b0-0000-4000-8000-000000000009";
    plan.networks.push(private_net(
        second,
        "d1d1d1d1-0000-4000-8000-00000000000a",
        1,
        vec![],
    ));
    plan.vm_ports.clear();
    for i in 0..10u8 {
        let net = if i % 2 == 0 { PRIV } else { second };
        plan.vm_ports.push(vm_port(
            &format!("{i:02x}{i:02x}{i:02x}{i:02x}-vm00-4000-8000-0000000000{i:02x}"),
            net,
            &format!("fa:16:3e:01:00:{i:02x}"),
        ));
    }
    let mut r2 = plan.routers[0].clone();
    r2.id = "91919191-0000-4000-8000-00000000000b".into();
    r2.interfaces[0] = RouterPort {
        port_id: "55555555-0000-4000-8000-00000000000c".into(),
        network_id: second.into(),
        mac: "fa:16:3e:00:01:01".into(),
        mtu: 1450,
        addresses: vec!["10.0.1.1/24".into()],
        ra: None,
    };
    if let Some(g) = r2.gateway.as_mut() {
        g.port.port_id = "66666666-0000-4000-8000-00000000000d".into();
        g.port.mac = "fa:16:3e:00:04:0b".into();
        g.port.addresses = vec!["172.24.4.11/24".into()];
    }
    r2.floating_ips = vec![(Ipv4Addr::new(172, 24, 4, 51), Ipv4Addr::new(10, 0, 1, 5))];
    r2.metadata_port = Some(9697);
    r2.routes = vec![("192.168.50.0/24".into(), ip("10.0.1.254"))];
    plan.routers.push(r2);

    let started = Instant::now();
    let first = converge::converge(&plan, &state).await.expect("converge");
    eprintln!(
        "first converge took {:?}: {} created",
        started.elapsed(),
        first.created.len()
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let again = converge::converge(&plan, &state).await.expect("again");
        times.push(started.elapsed());
        assert!(again.is_noop(), "{again}");
    }
    times.sort();
    eprintln!(
        "TIMING no-op converge (3 networks, 10 ports, 2 routers): min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    assert!(times[2] < Duration::from_millis(500), "{times:?}");
    drop(sb);
}

/// VLAN and VXLAN segments: links with the right attributes on the bridge, flood entries per
/// peer (no traffic). The "physical" device is a veth in the host namespace.
#[tokio::test]
async fn vlan_and_vxlan_segments() {
    if skip(&["ip", "bridge", "dnsmasq", "nft"]) {
        return;
    }
    let sb = Sandbox::new();
    let state = sb.state_dir();
    let host = sb.names.host_namespace();
    netns::ensure_namespace(&host).await.expect("host ns");
    let h = Netns::named(&host);
    h.ensure_veth("phys0", "phys0peer", None)
        .await
        .expect("physdev");
    h.ensure_address("phys0", "192.0.2.1/24")
        .await
        .expect("vtep address");
    // Some kernels are built without 802.1Q: then only VXLAN is checked.
    let vlan_ok = h.add_vlan("phys0.9", "phys0", 9).await.is_ok();
    if vlan_ok {
        h.remove_link("phys0.9").await.expect("remove probe");
    } else {
        eprintln!("NOTE: this kernel has no VLAN support; VLAN segment not checked");
    }
    let vx_net = "c0c0c0c0-0000-4000-8000-00000000000e";
    let vl_net = "c1c1c1c1-0000-4000-8000-00000000000f";
    let mut plan = HostPlan {
        names: sb.names.clone(),
        external_access: Default::default(),
        networks: vec![NetworkPlan {
            id: vx_net.into(),
            mtu: 1450,
            segment: Segment::Vxlan {
                vni: 4242,
                local: ip("192.0.2.1"),
                dev: "phys0".into(),
                peers: vec![ip("192.0.2.2"), ip("192.0.2.3")],
            },
            external: None,
            dhcp: None,
        }],
        vm_ports: vec![],
        routers: vec![],
    };
    if vlan_ok {
        plan.networks.push(NetworkPlan {
            id: vl_net.into(),
            mtu: 1500,
            segment: Segment::Vlan {
                physdev: "phys0".into(),
                id: 100,
            },
            external: None,
            dhcp: None,
        });
    }
    // A flat network: the physical interface itself on the bridge.
    h.ensure_veth("phys1", "phys1peer", None)
        .await
        .expect("flat physdev");
    let flat_net = "c2c2c2c2-0000-4000-8000-000000000010";
    plan.networks.push(NetworkPlan {
        id: flat_net.into(),
        mtu: 1500,
        segment: Segment::Flat {
            physdev: "phys1".into(),
        },
        external: None,
        dhcp: None,
    });
    converge::converge(&plan, &state).await.expect("converge");
    let hl = links(&host).await;
    let flat = find(&hl, "phys1").expect("flat physdev");
    assert_eq!(
        flat.master.as_deref(),
        Some(dataplane::bridge_name(flat_net).as_str())
    );
    assert!(flat.is_up());
    let vx = find(&hl, "vxlan-4242").expect("vxlan link");
    assert_eq!(vx.kind(), Some("vxlan"));
    assert_eq!(vx.info("id").and_then(|v| v.as_u64()), Some(4242));
    assert_eq!(vx.info("local").and_then(|v| v.as_str()), Some("192.0.2.1"));
    assert_eq!(vx.info("link").and_then(|v| v.as_str()), Some("phys0"));
    assert_eq!(vx.info("port").and_then(|v| v.as_u64()), Some(4789));
    assert_eq!(vx.info("learning").and_then(|v| v.as_bool()), Some(false));
    assert_eq!(
        vx.master.as_deref(),
        Some(dataplane::bridge_name(vx_net).as_str())
    );
    assert_eq!(vx.mtu, 1450);
    let mut peers = h.fdb_peers("vxlan-4242").await.expect("fdb");
    peers.sort();
    assert_eq!(peers, vec!["192.0.2.2", "192.0.2.3"]);
    if vlan_ok {
        let vl = find(&hl, "phys0.100").expect("vlan link");
        assert_eq!(vl.kind(), Some("vlan"));
        assert_eq!(vl.info("id").and_then(|v| v.as_u64()), Some(100));
        assert_eq!(vl.link.as_deref(), Some("phys0"));
        assert_eq!(
            vl.master.as_deref(),
            Some(dataplane::bridge_name(vl_net).as_str())
        );
    }
    assert!(
        converge::converge(&plan, &state)
            .await
            .expect("again")
            .is_noop()
    );

    // A peer leaves, another comes: only the flood entries change, the link stays.
    if let Segment::Vxlan { peers, .. } = &mut plan.networks[0].segment {
        *peers = vec![ip("192.0.2.3"), ip("192.0.2.4")];
    }
    let changed = converge::converge(&plan, &state).await.expect("peers");
    assert_eq!(changed.changed.len(), 2, "{changed}");
    let mut peers = h.fdb_peers("vxlan-4242").await.expect("fdb");
    peers.sort();
    assert_eq!(peers, vec!["192.0.2.3", "192.0.2.4"]);
    assert_eq!(
        find(&links(&host).await, "vxlan-4242")
            .expect("vxlan")
            .ifindex,
        vx.ifindex
    );
    // The segment goes: its link goes, the physical device stays.
    plan.networks.clear();
    converge::converge(&plan, &state).await.expect("empty");
    let hl = links(&host).await;
    assert!(find(&hl, "vxlan-4242").is_none());
    assert!(find(&hl, "phys0.100").is_none());
    assert!(find(&hl, "phys0").is_some());
    // the flat network's bridge went; its interface stays, on no bridge
    let phys1 = find(&hl, "phys1").expect("flat physdev stays");
    assert_eq!(phys1.master, None);
    drop(sb);
}
