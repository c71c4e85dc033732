//! IP address management: CIDR validation, the default gateway, allocation pools and their
//! checks, with Neutron's error types and wording. Pure functions, no I/O.

use crate::error::{NetError, Result};
use http::StatusCode;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One allocation pool, inclusive at both ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: String,
    pub end: String,
}

/// An address as a number (IPv4 in the low 32 bits), for range arithmetic.
pub fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

pub fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

/// Parse a subnet CIDR as neutron-lib's `validate_subnet`: a valid prefix whose host bits are
/// zero (else the canonical form is suggested).
pub fn parse_cidr(s: &str) -> Result<IpNet> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => {
            // A bare address is a /32 (/128) for netaddr; Neutron still wants the prefix.
            if let Ok(a) = s.parse::<IpAddr>() {
                let full = if a.is_ipv4() { 32 } else { 128 };
                return Err(NetError::invalid_attr(
                    "cidr",
                    format!("'{s}' isn't a recognized IP subnet cidr, '{a}/{full}' is recommended"),
                ));
            }
            return Err(NetError::invalid_attr(
                "cidr",
                format!("'{s}' is not a valid IP subnet"),
            ));
        }
    };
    let canon = net.trunc();
    if canon != net {
        return Err(NetError::invalid_attr(
            "cidr",
            format!("'{s}' isn't a recognized IP subnet cidr, '{canon}' is recommended"),
        ));
    }
    Ok(net)
}

pub fn parse_ip(attr: &str, s: &str) -> Result<IpAddr> {
    s.parse::<IpAddr>()
        .map_err(|_| NetError::invalid_attr(attr, format!("'{s}' is not a valid IP address")))
}

fn first_last(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The addresses of `net` a port may get: IPv4 without the network and broadcast addresses
/// (except /31 and /32), IPv6 without the subnet-router anycast address.
fn usable(net: &IpNet) -> Option<(u128, u128)> {
    let (first, last) = first_last(net);
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => Some((first, last)),
        IpNet::V4(_) => Some((first + 1, last - 1)),
        IpNet::V6(n) if n.prefix_len() == 128 => Some((first, last)),
        IpNet::V6(_) => Some((first + 1, last)),
    }
    .filter(|(a, b)| a <= b)
}

/// The default gateway: the first address after the network address.
pub fn default_gateway(net: &IpNet) -> Option<IpAddr> {
    let (first, last) = first_last(net);
    (first < last).then(|| from_u128(first + 1, net.addr().is_ipv6()))
}

/// Neutron's default pools: the usable range minus the gateway (which splits it in two).
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let v6 = net.addr().is_ipv6();
    let Some((lo, hi)) = usable(net) else {
        return vec![];
    };
    let mut ranges = vec![(lo, hi)];
    if let Some(g) = gateway.map(to_u128)
        && (lo..=hi).contains(&g)
    {
        ranges.clear();
        if g > lo {
            ranges.push((lo, g - 1));
        }
        if g < hi {
            ranges.push((g + 1, hi));
        }
    }
    ranges
        .into_iter()
        .map(|(a, b)| Pool {
            start: from_u128(a, v6).to_string(),
            end: from_u128(b, v6).to_string(),
        })
        .collect()
}

fn pool_str(p: &Pool) -> String {
    format!("{}-{}", p.start, p.end)
}

/// Check pools given by the user as Neutron's `_validate_allocation_pools`: addresses of the
/// subnet's version, start <= end, inside the cidr, no overlap, not containing the gateway.
pub fn validate_pools(net: &IpNet, pools: &[Pool], gateway: Option<IpAddr>) -> Result<()> {
    let v6 = net.addr().is_ipv6();
    let (first, last) = first_last(net);
    let mut ranges: Vec<(u128, u128, &Pool)> = Vec::new();
    for p in pools {
        let s = parse_ip("allocation_pools", &p.start)?;
        let e = parse_ip("allocation_pools", &p.end)?;
        if s.is_ipv6() != v6 || e.is_ipv6() != v6 || to_u128(s) > to_u128(e) {
            return Err(NetError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAllocationPool",
                format!("The allocation pool {} is not valid.", pool_str(p)),
            ));
        }
        let (a, b) = (to_u128(s), to_u128(e));
        if a < first || b > last {
            return Err(NetError::new(
                StatusCode::BAD_REQUEST,
                "OutOfBoundsAllocationPool",
                format!(
                    "The allocation pool {} spans beyond the subnet cidr {net}.",
                    pool_str(p)
                ),
            ));
        }
        ranges.push((a, b, p));
    }
    ranges.sort_by_key(|r| r.0);
    for w in ranges.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(NetError::conflict(
                "OverlappingAllocationPools",
                format!(
                    "Found overlapping allocation pools: {} and {} for subnet {net}.",
                    pool_str(w[0].2),
                    pool_str(w[1].2)
                ),
            ));
        }
    }
    if let Some(g) = gateway {
        let gv = to_u128(g);
        if let Some((_, _, p)) = ranges.iter().find(|(a, b, _)| (*a..=*b).contains(&gv)) {
            return Err(NetError::conflict(
                "GatewayConflictWithAllocationPools",
                format!(
                    "Gateway ip {g} conflicts with allocation pool {}.",
                    pool_str(p)
                ),
            ));
        }
    }
    Ok(())
}

/// Check a gateway as Neutron does: same version, and for IPv4 not the network or broadcast
/// address of the subnet (a gateway outside the cidr is allowed).
pub fn validate_gateway(net: &IpNet, gateway: IpAddr) -> Result<()> {
    if gateway.is_ipv6() != net.addr().is_ipv6() {
        return Err(NetError::invalid_input(format!(
            "gateway_ip {gateway} does not match the ip_version of the subnet {net}"
        )));
    }
    if let IpNet::V4(n) = net
        && n.prefix_len() < 31
        && (gateway == net.network() || gateway == net.broadcast())
    {
        return Err(NetError::bad(format!(
            "Invalid input for operation: Gateway is not valid on subnet {net}."
        )));
    }
    Ok(())
}

/// Whether two cidrs share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The free address space of a subnet pool as CIDR blocks, in the order Neutron's
/// `SubnetAllocator` tries them: smallest blocks first, then by address (so a small request
/// fills a hole before it cuts into a large free block).
pub fn free_blocks(prefixes: &[IpNet], taken: &[IpNet]) -> Vec<IpNet> {
    let Some(first) = prefixes.first() else {
        return vec![];
    };
    let v6 = first.addr().is_ipv6();
    let bits: u32 = if v6 { 128 } else { 32 };
    let range = |n: &IpNet| (to_u128(n.network()), to_u128(n.broadcast()));
    // Free ranges = union of the prefixes minus every taken cidr.
    let mut free: Vec<(u128, u128)> = prefixes.iter().map(range).collect();
    free.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (a, b) in free {
        match merged.last_mut() {
            Some((_, e)) if a <= e.saturating_add(1) => *e = (*e).max(b),
            _ => merged.push((a, b)),
        }
    }
    for t in taken.iter().filter(|t| t.addr().is_ipv6() == v6) {
        let (ta, tb) = range(t);
        let mut next = Vec::new();
        for (a, b) in merged {
            if tb < a || ta > b {
                next.push((a, b));
                continue;
            }
            if ta > a {
                next.push((a, ta - 1));
            }
            if tb < b {
                next.push((tb + 1, b));
            }
        }
        merged = next;
    }
    let mut blocks = Vec::new();
    for (mut a, b) in merged {
        loop {
            // The largest aligned block starting at `a` that ends by `b`.
            let span = |host: u32| {
                if host >= 128 {
                    u128::MAX
                } else {
                    (1u128 << host) - 1
                }
            };
            let mut host = a.trailing_zeros().min(bits);
            while host > 0 && a.checked_add(span(host)).is_none_or(|end| end > b) {
                host -= 1;
            }
            let len = (bits - host) as u8;
            let net =
                IpNet::new(from_u128(a, v6), len).expect("prefix length within the version's bits");
            blocks.push(net);
            let end = to_u128(net.broadcast());
            if end >= b {
                break;
            }
            a = end + 1;
        }
    }
    // Stable: blocks of one size stay in address order.
    blocks.sort_by_key(|n| std::cmp::Reverse(n.prefix_len()));
    blocks
}

/// The subnet an any-subnet request of `prefixlen` gets from the free `blocks`: the first
/// subnet of the first block large enough.
pub fn allocate_prefix(blocks: &[IpNet], prefixlen: u8) -> Option<IpNet> {
    blocks
        .iter()
        .find(|b| b.prefix_len() <= prefixlen)
        .and_then(|b| IpNet::new(b.network(), prefixlen).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_cidr(s).unwrap()
    }
    fn pool(a: &str, b: &str) -> Pool {
        Pool {
            start: a.into(),
            end: b.into(),
        }
    }

    #[test]
    fn cidr_validation() {
        assert!(parse_cidr("10.0.0.0/24").is_ok());
        assert!(parse_cidr("2001:db8::/64").is_ok());
        let e = parse_cidr("10.0.0.1/24").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "Invalid input for cidr. Reason: '10.0.0.1/24' isn't a recognized IP subnet cidr, '10.0.0.0/24' is recommended."
        );
        let e = parse_cidr("nonsense").unwrap_err();
        assert!(e.message.contains("'nonsense' is not a valid IP subnet"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0.5").is_err());
    }

    #[test]
    fn defaults_v4() {
        let n = net("10.0.0.0/24");
        let g = default_gateway(&n).unwrap();
        assert_eq!(g.to_string(), "10.0.0.1");
        assert_eq!(
            default_pools(&n, Some(g)),
            vec![pool("10.0.0.2", "10.0.0.254")]
        );
        assert_eq!(
            default_pools(&n, None),
            vec![pool("10.0.0.1", "10.0.0.254")]
        );
        // A gateway in the middle splits the range.
        let mid = "10.0.0.100".parse().unwrap();
        assert_eq!(
            default_pools(&n, Some(mid)),
            vec![
                pool("10.0.0.1", "10.0.0.99"),
                pool("10.0.0.101", "10.0.0.254")
            ]
        );
        // A gateway outside the cidr leaves the range whole.
        let out = "192.168.0.1".parse().unwrap();
        assert_eq!(
            default_pools(&n, Some(out)),
            vec![pool("10.0.0.1", "10.0.0.254")]
        );
        let n30 = net("10.0.0.0/30");
        let g30 = default_gateway(&n30);
        assert_eq!(default_pools(&n30, g30), vec![pool("10.0.0.2", "10.0.0.2")]);
    }

    #[test]
    fn defaults_v6() {
        let n = net("2001:db8::/64");
        let g = default_gateway(&n).unwrap();
        assert_eq!(g.to_string(), "2001:db8::1");
        assert_eq!(
            default_pools(&n, Some(g)),
            vec![pool("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")]
        );
    }

    #[test]
    fn pool_checks() {
        let n = net("10.0.0.0/24");
        let g = Some("10.0.0.1".parse().unwrap());
        assert!(validate_pools(&n, &[pool("10.0.0.10", "10.0.0.20")], g).is_ok());
        let e = validate_pools(&n, &[pool("10.0.0.20", "10.0.0.10")], g).unwrap_err();
        assert_eq!(e.kind, "InvalidAllocationPool");
        let e = validate_pools(&n, &[pool("10.0.0.10", "10.0.1.20")], g).unwrap_err();
        assert_eq!(e.kind, "OutOfBoundsAllocationPool");
        let e = validate_pools(
            &n,
            &[
                pool("10.0.0.10", "10.0.0.20"),
                pool("10.0.0.15", "10.0.0.30"),
            ],
            g,
        )
        .unwrap_err();
        assert_eq!(e.kind, "OverlappingAllocationPools");
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e = validate_pools(&n, &[pool("10.0.0.1", "10.0.0.20")], g).unwrap_err();
        assert_eq!(e.kind, "GatewayConflictWithAllocationPools");
        let e = validate_pools(&n, &[pool("2001:db8::1", "2001:db8::5")], g).unwrap_err();
        assert_eq!(e.kind, "InvalidAllocationPool");
        let e = validate_pools(&n, &[pool("x", "10.0.0.5")], g).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn gateway_and_overlap() {
        let n = net("10.0.0.0/24");
        assert!(validate_gateway(&n, "10.0.0.0".parse().unwrap()).is_err());
        assert!(validate_gateway(&n, "10.0.0.255".parse().unwrap()).is_err());
        assert!(validate_gateway(&n, "10.0.0.254".parse().unwrap()).is_ok());
        assert!(validate_gateway(&n, "2001:db8::1".parse().unwrap()).is_err());
        assert!(overlaps(&n, &net("10.0.0.128/25")));
        assert!(overlaps(&net("10.0.0.0/16"), &n));
        assert!(!overlaps(&n, &net("10.0.1.0/24")));
    }

    #[test]
    fn pool_blocks_and_allocation() {
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        let blocks = free_blocks(&[p("10.0.0.0/16")], &[]);
        assert_eq!(blocks, vec![p("10.0.0.0/16")]);
        assert_eq!(allocate_prefix(&blocks, 26), Some(p("10.0.0.0/26")));
        // A hole is filled before the large free block is cut.
        let taken = [p("10.0.0.0/26"), p("10.0.0.128/25")];
        let blocks = free_blocks(&[p("10.0.0.0/16")], &taken);
        assert_eq!(blocks[0], p("10.0.0.64/26"));
        assert_eq!(allocate_prefix(&blocks, 27), Some(p("10.0.0.64/27")));
        assert_eq!(allocate_prefix(&blocks, 24), Some(p("10.0.1.0/24")));
        assert_eq!(allocate_prefix(&blocks, 15), None);
        // Adjacent prefixes merge; a full pool has nothing.
        let blocks = free_blocks(&[p("10.1.0.0/25"), p("10.1.0.128/25")], &[]);
        assert_eq!(blocks, vec![p("10.1.0.0/24")]);
        assert!(free_blocks(&[p("10.1.0.0/24")], &[p("10.1.0.0/24")]).is_empty());
        // The whole IPv6 space, and an IPv4 one, without overflow.
        assert_eq!(free_blocks(&[p("::/0")], &[]), vec![p("::/0")]);
        assert_eq!(free_blocks(&[p("0.0.0.0/0")], &[]), vec![p("0.0.0.0/0")]);
        let blocks = free_blocks(&[p("2001:db8::/48")], &[p("2001:db8::/64")]);
        assert_eq!(allocate_prefix(&blocks, 64), Some(p("2001:db8:0:1::/64")));
    }
}
