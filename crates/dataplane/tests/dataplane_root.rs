//! Integration tests against the real kernel, `ip`, `nft` and `dnsmasq`. They need root and
//! skip (with a SKIPPED line) otherwise. Safety: everything a test makes is a namespace named
//! `kt<6 hex>-...` (links only ever inside those namespaces), nothing is created in the root
//! namespace, and a Drop guard kills the processes in those namespaces and deletes them, also
//! when the test fails.

use dataplane::dnsmasq::{DhcpConfig, DhcpHost, DhcpSubnet, Dnsmasq};
use dataplane::link::Netns;
use dataplane::netns;
use dataplane::nft::{NatRule, NatTable};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{Sandbox, skip};

fn ping(ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A veth between two namespaces with an address on each end, both up.
async fn wire(
    a: &str,
    a_if: &str,
    a_cidr: Option<&str>,
    b: &str,
    b_if: &str,
    b_cidr: Option<&str>,
) {
    let (na, nb) = (Netns::named(a), Netns::named(b));
    na.ensure_veth(a_if, b_if, Some(&nb)).await.expect("veth");
    for (n, ifn, cidr) in [(&na, a_if, a_cidr), (&nb, b_if, b_cidr)] {
        if let Some(cidr) = cidr {
            n.ensure_address(ifn, cidr).await.expect("address");
        }
        n.set_up(ifn).await.expect("up");
        n.set_up("lo").await.expect("lo up");
    }
}

#[tokio::test]
async fn bridge_joins_two_namespaces_and_everything_is_idempotent() {
    if skip(&["ip", "ping"]) {
        return;
    }
    let mut sb = Sandbox::new();
    let host = sb.ns("host").await;
    netns::ensure_namespace(&host).await.expect("ensure twice");
    let a = sb.ns("a").await;
    let b = sb.ns("b").await;
    let h = Netns::named(&host);
    let br = sb.ifname("br");
    h.ensure_bridge(&br).await.expect("bridge");
    h.ensure_bridge(&br).await.expect("bridge twice");
    h.set_up(&br).await.expect("bridge up");
    let (ta, tb) = (sb.ifname("ta"), sb.ifname("tb"));
    wire(&a, "eth0", Some("10.99.0.1/24"), &host, &ta, None).await;
    wire(&b, "eth0", Some("10.99.0.2/24"), &host, &tb, None).await;
    // Second time: all no-ops.
    wire(&a, "eth0", Some("10.99.0.1/24"), &host, &ta, None).await;
    for t in [&ta, &tb] {
        h.set_master(t, &br).await.expect("enslave");
        h.set_master(t, &br).await.expect("enslave twice");
    }
    let na = Netns::named(&a);
    na.set_mtu("eth0", 1450).await.expect("mtu");
    na.set_mac("eth0", "fa:16:3e:00:00:0a").await.expect("mac");
    na.ensure_address("eth0", "fd00:99::1/64")
        .await
        .expect("v6");
    na.ensure_default_route("10.99.0.254".parse().expect("ip"), "eth0")
        .await
        .expect("default route");
    na.ensure_default_route("10.99.0.254".parse().expect("ip"), "eth0")
        .await
        .expect("default route twice");
    let eth0 = na.link("eth0").await.expect("link").expect("exists");
    assert_eq!(eth0.mtu, 1450);
    assert_eq!(eth0.address.as_deref(), Some("fa:16:3e:00:00:0a"));
    let links = h.links().await.expect("links");
    assert!(
        links
            .iter()
            .any(|l| l.ifname == ta && l.master.as_deref() == Some(br.as_str()))
    );
    assert!(ping(&a, "10.99.0.2"), "a cannot ping b through the bridge");
    assert!(ping(&b, "10.99.0.1"), "b cannot ping a through the bridge");

    // Removal, twice each.
    na.remove_address("eth0", "fd00:99::1/64")
        .await
        .expect("del v6");
    na.remove_address("eth0", "fd00:99::1/64")
        .await
        .expect("del v6 twice");
    na.remove_default_route(true).await.expect("del route");
    na.remove_default_route(true)
        .await
        .expect("del route twice");
    h.remove_link(&ta).await.expect("del veth");
    h.remove_link(&ta).await.expect("del veth twice");
    assert!(
        na.link("eth0").await.expect("link").is_none(),
        "peer went with it"
    );
    assert!(!ping(&b, "10.99.0.1"));
    h.remove_link(&br).await.expect("del bridge");
    netns::remove_namespace(&a).await.expect("del ns");
    netns::remove_namespace(&a).await.expect("del ns twice");
    assert!(!netns::namespace_exists(&a).expect("check"));
    // Visible to `ip netns` like its own namespaces.
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&host));
    drop(sb);
}

#[tokio::test]
async fn floating_ip_dnat_snat_through_a_router_namespace() {
    if skip(&["ip", "nft"]) {
        return;
    }
    let mut sb = Sandbox::new();
    let outside = sb.ns("out").await;
    let router = sb.ns("rtr").await;
    let server = sb.ns("srv").await;
    let qg = sb.ifname("qg");
    let qr = sb.ifname("qr");
    wire(
        &outside,
        "eth0",
        Some("203.0.113.1/24"),
        &router,
        &qg,
        Some("203.0.113.254/24"),
    )
    .await;
    wire(
        &router,
        &qr,
        Some("10.98.0.1/24"),
        &server,
        "eth0",
        Some("10.98.0.5/24"),
    )
    .await;
    let r = Netns::named(&router);
    // The floating IP answers ARP on the gateway port, as Neutron puts it on qg-.
    r.ensure_address(&qg, "203.0.113.10/32").await.expect("fip");
    Netns::named(&server)
        .ensure_default_route("10.98.0.1".parse().expect("ip"), "eth0")
        .await
        .expect("route");
    netns::set_net_sysctl(&router, "ipv4/ip_forward", "1")
        .await
        .expect("forwarding");
    let table = NatTable {
        name: format!("{}-nat", sb.prefix),
        rules: vec![
            NatRule::FloatingIp {
                floating: Ipv4Addr::new(203, 0, 113, 10),
                fixed: Ipv4Addr::new(10, 98, 0, 5),
            },
            NatRule::Snat {
                cidr: (Ipv4Addr::new(10, 98, 0, 0), 24),
                out_iface: qg.clone(),
                gateway: Ipv4Addr::new(203, 0, 113, 254),
            },
            NatRule::MetadataRedirect { port: 9697 },
        ],
    };
    dataplane::nft::apply_table(Some(&router), &table)
        .await
        .expect("apply");
    dataplane::nft::apply_table(Some(&router), &table)
        .await
        .expect("apply twice (replace)");
    let listed = dataplane::nft::list_table(Some(&router), &table.name)
        .await
        .expect("list")
        .expect("table present");
    let rules = listed["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count();
    assert_eq!(rules, 5, "replace must not duplicate rules: {listed}");

    // Listener inside the server namespace (a socket keeps the namespace it was made in).
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(netns::run_in_namespace(&server, move || async move {
        let l = tokio::net::TcpListener::bind("10.98.0.5:8080")
            .await
            .expect("bind");
        let _ = ready_tx.send(());
        let (mut s, peer) = l.accept().await.expect("accept");
        s.write_all(b"hello from the fixed ip")
            .await
            .expect("write");
        peer
    }));
    ready_rx.await.expect("listener up");
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        netns::run_in_namespace(&outside, || async {
            let mut s = tokio::net::TcpStream::connect("203.0.113.10:8080")
                .await
                .expect("connect to floating ip");
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.expect("read");
            buf
        }),
    )
    .await
    .expect("connect in time")
    .expect("namespace thread");
    assert_eq!(reply, "hello from the fixed ip");
    let peer = listener.await.expect("join").expect("namespace thread");
    assert_eq!(
        peer.ip().to_string(),
        "203.0.113.1",
        "DNAT keeps the client's address"
    );

    // SNAT: the instance's own connection leaves as its floating IP.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let outside_listener = tokio::spawn(netns::run_in_namespace(&outside, move || async move {
        let l = tokio::net::TcpListener::bind("203.0.113.1:8081")
            .await
            .expect("bind");
        let _ = ready_tx.send(());
        let (_s, peer) = l.accept().await.expect("accept");
        peer
    }));
    ready_rx.await.expect("listener up");
    netns::run_in_namespace(&server, || async {
        tokio::net::TcpStream::connect("203.0.113.1:8081")
            .await
            .expect("connect out");
    })
    .await
    .expect("namespace thread");
    let seen = tokio::time::timeout(Duration::from_secs(10), outside_listener)
        .await
        .expect("in time")
        .expect("join")
        .expect("namespace thread");
    assert_eq!(
        seen.ip().to_string(),
        "203.0.113.10",
        "SNAT to the floating IP"
    );

    dataplane::nft::remove_table(Some(&router), &table.name)
        .await
        .expect("remove");
    dataplane::nft::remove_table(Some(&router), &table.name)
        .await
        .expect("remove twice");
    assert!(
        dataplane::nft::list_table(Some(&router), &table.name)
            .await
            .expect("list")
            .is_none()
    );
    drop(sb);
}

#[tokio::test]
async fn dnsmasq_serves_the_fixed_address() {
    if skip(&["ip", "dnsmasq"]) {
        return;
    }
    let mut sb = Sandbox::new();
    let dhcp = sb.ns("dhcp").await;
    let client = sb.ns("cli").await;
    let tap = sb.ifname("tap");
    wire(&dhcp, &tap, Some("10.97.0.2/24"), &client, "eth0", None).await;
    let mac = "fa:16:3e:12:34:56";
    Netns::named(&client)
        .set_mac("eth0", mac)
        .await
        .expect("mac");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = DhcpConfig {
        namespace: dhcp.clone(),
        interface: tap.clone(),
        dir: dir.path().join("net"),
        subnets: vec![DhcpSubnet {
            mtu: None,
            tag: "subnet-1".into(),
            network: "10.97.0.0".parse().expect("ip"),
            prefix_len: 24,
            gateway: Some("10.97.0.1".parse().expect("ip")),
            dns_servers: vec![],
            lease_seconds: 600,
            classless_routes: vec![],
        }],
    };
    let d = Dnsmasq::new(config.clone());
    let host = |ip: &str| DhcpHost {
        mac: mac.into(),
        hostname: "vm1".into(),
        ip: ip.parse().expect("ip"),
    };
    let pid = d.ensure(&[host("10.97.0.7")]).await.expect("start dnsmasq");
    assert_eq!(
        d.ensure(&[host("10.97.0.7")]).await.expect("ensure twice"),
        pid
    );
    assert_eq!(
        netns::namespace_pids(&dhcp).expect("pids"),
        vec![pid],
        "runs in the qdhcp ns"
    );

    let udhcpc = |_expect: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &client,
                "busybox",
                "udhcpc",
                "-i",
                "eth0",
                "-n",
                "-q",
                "-f",
                "-t",
                "4",
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
    };
    let have_udhcpc = Command::new("busybox")
        .args(["udhcpc", "--help"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stderr).contains("applet not found"))
        .unwrap_or(false);
    if have_udhcpc {
        let out = udhcpc("10.97.0.7");
        assert!(
            out.contains("lease of 10.97.0.7 obtained"),
            "udhcpc said: {out}"
        );
    } else {
        eprintln!("NOTE: busybox udhcpc missing; checking dnsmasq without a DHCP client");
    }

    // A hosts change: files rewritten, SIGHUP, same process.
    let pid2 = d.ensure(&[host("10.97.0.8")]).await.expect("reload");
    assert_eq!(pid2, pid);
    let hosts = std::fs::read_to_string(d.hosts_path()).expect("hosts");
    assert_eq!(hosts, format!("{mac},vm1,10.97.0.8\n"));
    if have_udhcpc {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let out = udhcpc("10.97.0.8");
        assert!(
            out.contains("lease of 10.97.0.8 obtained"),
            "after SIGHUP udhcpc said: {out}"
        );
    }

    // After a "restart" of kumo: a fresh manager finds the running dnsmasq by its pid file.
    let again = Dnsmasq::new(config);
    assert_eq!(again.pid(), Some(pid));
    again.stop().await.expect("stop");
    again.stop().await.expect("stop twice");
    assert!(
        !dataplane::dnsmasq::process_alive(pid),
        "dnsmasq still running"
    );
    assert!(d.pid().is_none());
    again.remove_files().await.expect("remove files");
    drop(sb);
}
