//! How long the data plane's nftables transactions take (run by bench/network-dataplane.sh).
//!
//!   dataplane_bench [PREFIX]      (root; PREFIX `kt<6 hex>`, made up when absent)
//!
//! In its own `PREFIX-rtr` and `PREFIX-host` namespaces (removed at the end, also on a panic):
//! (1) `nft::apply_table` of a router NAT table with 100 floating IPs, 3 SNAT rules and the
//! metadata redirect, 30 times; (2) `filter::apply` of 50 ports with 5 rules each, 20 times.
//! Prints p50/p90 as a markdown table. Nothing is sent on any network.

use dataplane::netns;
use dataplane::nft::{NatRule, NatTable};
use dataplane::plan::{EtherType, FilterRule, PortFilter, VmPort};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::remove_namespace_blocking(ns);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn nat_table() -> NatTable {
    let mut rules = Vec::new();
    for i in 0..100u32 {
        rules.push(NatRule::FloatingIp {
            floating: Ipv4Addr::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)) + 10 + i),
            fixed: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 10 + i),
        });
    }
    for n in 0..3u8 {
        rules.push(NatRule::Snat {
            cidr: (Ipv4Addr::new(10, n, 0, 0), 24),
            out_iface: "qg-bench".into(),
            gateway: Ipv4Addr::new(203, 0, 113, 2),
        });
    }
    rules.push(NatRule::MetadataRedirect { port: 9697 });
    NatTable {
        name: "kumo_bench_nat".into(),
        rules,
    }
}

fn ports() -> Vec<VmPort> {
    let members: Vec<String> = (0..50).map(|i| format!("10.0.0.{}", 10 + i)).collect();
    (0..50u32)
        .map(|i| {
            let mac = format!("fa:16:3e:00:{:02x}:{:02x}", i / 256, i % 256);
            let ip = format!("10.0.0.{}", 10 + i);
            let r = |protocol, ports: Option<(u16, u16)>, remote: Vec<String>| FilterRule {
                ethertype: EtherType::V4,
                protocol,
                port_min: ports.map(|p| p.0),
                port_max: ports.map(|p| p.1),
                remote,
            };
            VmPort {
                id: format!("{i:08x}-bench-port"),
                network_id: format!("{:08x}-bench-net", i % 5),
                mac: mac.clone(),
                mtu: 1450,
                admin_up: true,
                filter: Some(PortFilter {
                    allowed_sources: vec![(mac, ip)],
                    ingress: vec![
                        r(None, None, members.clone()),
                        r(Some(6), Some((22, 22)), vec![]),
                        r(Some(6), Some((8000, 8100)), vec!["192.0.2.0/24".into()]),
                        r(Some(1), Some((8, 0)), vec![]),
                    ],
                    egress: vec![r(None, None, vec![])],
                }),
            }
        })
        .collect()
}

#[tokio::main]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("dataplane_bench: needs root (network namespaces)");
        std::process::exit(2);
    }
    let prefix = std::env::args().nth(1).unwrap_or_else(|| {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("kt{:06x}", (n ^ std::process::id()) & 0xff_ffff)
    });
    assert!(
        prefix.starts_with("kt") && prefix.len() == 8,
        "prefix must be kt<6 hex>"
    );
    let (rtr, host) = (format!("{prefix}-rtr"), format!("{prefix}-host"));
    let _guard = Namespaces(vec![rtr.clone(), host.clone()]);
    for ns in [&rtr, &host] {
        netns::ensure_namespace(ns).await.expect("namespace");
    }

    let table = nat_table();
    let mut nat = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        dataplane::nft::apply_table(Some(&rtr), &table)
            .await
            .expect("apply NAT table");
        nat.push(t.elapsed());
    }
    let ports = ports();
    let mut sg = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        dataplane::filter::apply(&host, &ports)
            .await
            .expect("apply filter");
        sg.push(t.elapsed());
    }
    let rules = dataplane::filter::ruleset(&ports).expect("ruleset")["nftables"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    let nat_rules = table.to_json().expect("valid")["nftables"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["add"].get("rule").is_some()).count())
        .unwrap_or(0);
    nat.sort();
    sg.sort();
    println!("| what | runs | p50 ms | p90 ms | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| nft::apply_table, router NAT: 100 floating IPs + 3 SNAT + metadata ({} nft rules) | {} | {} | {} | p50 < 100 ms: {} |",
        nat_rules,
        nat.len(),
        ms(percentile(&nat, 0.5)),
        ms(percentile(&nat, 0.9)),
        if percentile(&nat, 0.5) < Duration::from_millis(100) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "| filter::apply, 50 ports x 5 rules ({rules} nft commands) | {} | {} | {} | - |",
        sg.len(),
        ms(percentile(&sg, 0.5)),
        ms(percentile(&sg, 0.9)),
    );
}
