//! Provider segments (the `provider` extension): what ML2's type drivers for `local`, `flat`,
//! `vlan` and `vxlan` decide, as pure rules: the `[network]` options that describe the physical
//! networks, the validation of an admin's provider attributes (with ML2's messages) and the
//! choice of a free VLAN id or VNI. The database keeps one segment per network; the key
//! [`Segment::allocation`] is unique there, so two networks never share a VLAN, VNI or flat
//! physical network.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::error::{NetError, Result};

pub const LOCAL: &str = "local";
pub const FLAT: &str = "flat";
pub const VLAN: &str = "vlan";
pub const VXLAN: &str = "vxlan";
/// ML2's type drivers in kumo, in the order ML2 lists them.
pub const TYPES: &[&str] = &[LOCAL, FLAT, VLAN, VXLAN];
const MAX_VLAN: u32 = 4094;
const MAX_VNI: u32 = (1 << 24) - 1;

/// A network's segment as the provider attributes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub network_type: String,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<u32>,
}

impl Segment {
    pub fn local() -> Self {
        Self {
            network_type: LOCAL.into(),
            physical_network: None,
            segmentation_id: None,
        }
    }

    /// The network's MTU on physical networks of `physnet_mtu` (ML2's type drivers): VXLAN
    /// loses its encapsulation (UDP, VXLAN header and outer IPv4: 50 bytes), the others none.
    pub fn mtu(&self, physnet_mtu: u32) -> u32 {
        const VXLAN_OVERHEAD_V4: u32 = 50;
        match self.network_type.as_str() {
            VXLAN => physnet_mtu.saturating_sub(VXLAN_OVERHEAD_V4),
            _ => physnet_mtu,
        }
    }

    /// What no two networks may share; `None` for local networks.
    pub fn allocation(&self) -> Option<String> {
        let phys = self.physical_network.as_deref().unwrap_or_default();
        let id = self.segmentation_id.unwrap_or_default();
        match self.network_type.as_str() {
            FLAT => Some(format!("flat:{phys}")),
            VLAN => Some(format!("vlan:{phys}:{id}")),
            VXLAN => Some(format!("vxlan:{id}")),
            _ => None,
        }
    }
}

/// A physical network for VLANs and the ids tenant networks take on it (none: admins' only).
pub type VlanRange = (String, Option<(u32, u32)>);

/// The physical networks, tenant segments and this host's uplinks (`[network]` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// The type of a network made without provider attributes: local, vlan or vxlan.
    pub tenant_network_type: String,
    /// VNIs tenant networks take (ML2's `[ml2_type_vxlan] vni_ranges`).
    pub vni_ranges: Vec<(u32, u32)>,
    /// Physical networks for VLANs, each with the ids tenant networks take (ML2's
    /// `[ml2_type_vlan] network_vlan_ranges`; a physnet without a range takes provider VLANs only).
    pub vlan_ranges: Vec<VlanRange>,
    /// Physical networks for flat networks; `None` = any (`*`), empty = flat networks disabled.
    pub flat_networks: Option<Vec<String>>,
    /// physnet → this host's interface (linuxbridge's `physical_interface_mappings`).
    pub physical_interface_mappings: HashMap<String, String>,
    /// This host's VXLAN endpoint: its address and the interface that holds it.
    pub vtep: Option<(IpAddr, String)>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            tenant_network_type: VXLAN.into(),
            vni_ranges: vec![(1, 1000)],
            vlan_ranges: vec![],
            flat_networks: None,
            physical_interface_mappings: HashMap::new(),
            vtep: None,
        }
    }
}

fn items(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

fn range(lo: &str, hi: &str, max: u32) -> Option<(u32, u32)> {
    let (lo, hi) = (
        lo.trim().parse::<u32>().ok()?,
        hi.trim().parse::<u32>().ok()?,
    );
    (1 <= lo && lo <= hi && hi <= max).then_some((lo, hi))
}

/// `1:1000,2000:2100`.
pub fn parse_vni_ranges(s: &str) -> Option<Vec<(u32, u32)>> {
    items(s)
        .map(|r| r.split_once(':').and_then(|(a, b)| range(a, b, MAX_VNI)))
        .collect()
}

/// `physnet1:100:199,physnet2`.
pub fn parse_vlan_ranges(s: &str) -> Option<Vec<VlanRange>> {
    items(s)
        .map(|r| {
            let parts: Vec<&str> = r.split(':').map(str::trim).collect();
            match parts.as_slice() {
                [p] if !p.is_empty() => Some((p.to_string(), None)),
                [p, a, b] if !p.is_empty() => Some((p.to_string(), Some(range(a, b, MAX_VLAN)?))),
                _ => None,
            }
        })
        .collect()
}

/// `*` (any), empty (none) or `physnet1,physnet2`.
pub fn parse_flat_networks(s: &str) -> Option<Vec<String>> {
    if s.trim() == "*" {
        return None;
    }
    Some(items(s).map(str::to_string).collect())
}

/// `physnet1:eth1,physnet2:eth2`.
pub fn parse_mappings(s: &str) -> Option<HashMap<String, String>> {
    items(s)
        .map(|m| {
            let (p, i) = m.split_once(':')?;
            let (p, i) = (p.trim(), i.trim());
            (!p.is_empty() && !i.is_empty()).then(|| (p.to_string(), i.to_string()))
        })
        .collect()
}

/// Provider attributes as a request gives them (null = not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    pub network_type: Option<String>,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<i64>,
}

impl Requested {
    pub fn is_empty(&self) -> bool {
        self.network_type.is_none()
            && self.physical_network.is_none()
            && self.segmentation_id.is_none()
    }
}

fn invalid(msg: impl std::fmt::Display) -> NetError {
    NetError::invalid_input(msg)
}

fn prohibited(key: &str, network_type: &str) -> NetError {
    invalid(format!(
        "{key} prohibited for {network_type} provider network"
    ))
}

/// ML2's `validate_provider_segment`: the segment an admin asked for, its id possibly still to
/// be chosen (a partial vlan or vxlan segment).
pub fn validate(req: &Requested, cfg: &SegmentConfig) -> Result<Segment> {
    let Some(network_type) = req.network_type.clone() else {
        return Err(invalid("network_type required"));
    };
    let phys = req.physical_network.clone().filter(|p| !p.is_empty());
    let id = req.segmentation_id;
    let seg = |segmentation_id: Option<u32>| Segment {
        network_type: network_type.clone(),
        physical_network: phys.clone(),
        segmentation_id,
    };
    match network_type.as_str() {
        LOCAL => {
            if phys.is_some() {
                return Err(prohibited("physical_network", LOCAL));
            }
            if id.is_some() {
                return Err(prohibited("segmentation_id", LOCAL));
            }
            Ok(seg(None))
        }
        FLAT => {
            let Some(p) = &phys else {
                return Err(invalid(
                    "physical_network required for flat provider network",
                ));
            };
            match &cfg.flat_networks {
                Some(list) if list.is_empty() => {
                    return Err(invalid("Flat provider networks are disabled"));
                }
                Some(list) if !list.contains(p) => {
                    return Err(invalid(format!(
                        "physical_network '{p}' unknown for flat provider network"
                    )));
                }
                _ => {}
            }
            if id.is_some() {
                return Err(prohibited("segmentation_id", FLAT));
            }
            Ok(seg(None))
        }
        VLAN => {
            match &phys {
                Some(p) if !cfg.vlan_ranges.iter().any(|(n, _)| n == p) => {
                    return Err(invalid(format!(
                        "physical_network '{p}' unknown for VLAN provider network"
                    )));
                }
                Some(_) => {}
                None if id.is_some() => {
                    return Err(invalid(
                        "segmentation_id requires physical_network for VLAN provider network",
                    ));
                }
                None => {}
            }
            match id {
                Some(i) if !(1..=i64::from(MAX_VLAN)).contains(&i) => Err(invalid(format!(
                    "segmentation_id out of range (1 through {MAX_VLAN})"
                ))),
                i => Ok(seg(i.map(|i| i as u32))),
            }
        }
        VXLAN => {
            if phys.is_some() {
                return Err(invalid(format!(
                    "provider:physical_network specified for {VXLAN} network"
                )));
            }
            match id {
                Some(i) if !(1..=i64::from(MAX_VNI)).contains(&i) => Err(invalid(format!(
                    "segmentation_id out of range (1 through {MAX_VNI})"
                ))),
                i => Ok(seg(i.map(|i| i as u32))),
            }
        }
        other => Err(invalid(format!(
            "network_type value '{other}' not supported"
        ))),
    }
}

fn no_network_available() -> NetError {
    NetError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NoNetworkAvailable",
        "Unable to create the network. No project network is available for allocation.",
    )
}

/// The first id of `ranges` whose segment is not `taken`.
fn first_free(
    ranges: &[(u32, u32)],
    taken: &HashSet<String>,
    make: impl Fn(u32) -> Segment,
) -> Option<Segment> {
    ranges
        .iter()
        .flat_map(|(lo, hi)| *lo..=*hi)
        .map(make)
        .find(|s| s.allocation().is_none_or(|a| !taken.contains(&a)))
}

/// Reserve `seg` given the `taken` allocations: a full segment must be free (Neutron's
/// VlanIdInUse / TunnelIdInUse / FlatNetworkInUse); a partial one gets the first free id of the
/// ranges (503 NoNetworkAvailable when there is none).
pub fn reserve(seg: Segment, cfg: &SegmentConfig, taken: &HashSet<String>) -> Result<Segment> {
    let partial =
        matches!(seg.network_type.as_str(), VLAN | VXLAN) && seg.segmentation_id.is_none();
    if partial {
        let found = if seg.network_type == VXLAN {
            first_free(&cfg.vni_ranges, taken, |vni| Segment {
                segmentation_id: Some(vni),
                ..seg.clone()
            })
        } else {
            cfg.vlan_ranges
                .iter()
                .filter(|(p, _)| seg.physical_network.as_ref().is_none_or(|want| want == p))
                .find_map(|(p, r)| {
                    first_free(r.as_slice(), taken, |id| Segment {
                        network_type: VLAN.into(),
                        physical_network: Some(p.clone()),
                        segmentation_id: Some(id),
                    })
                })
        };
        return found.ok_or_else(no_network_available);
    }
    if let Some(a) = seg.allocation()
        && taken.contains(&a)
    {
        let phys = seg.physical_network.clone().unwrap_or_default();
        let id = seg.segmentation_id.unwrap_or_default();
        return Err(match seg.network_type.as_str() {
            VLAN => NetError::conflict(
                "VlanIdInUse",
                format!(
                    "Unable to create the network. The VLAN {id} on physical network {phys} is in use."
                ),
            ),
            FLAT => NetError::conflict(
                "FlatNetworkInUse",
                format!("Unable to create the flat network. Physical network {phys} is in use."),
            ),
            _ => NetError::conflict(
                "TunnelIdInUse",
                format!("Unable to create the network. The tunnel ID {id} is in use."),
            ),
        });
    }
    Ok(seg)
}

/// The segment of a network made without provider attributes (`tenant_network_type`).
pub fn tenant_segment(cfg: &SegmentConfig, taken: &HashSet<String>) -> Result<Segment> {
    let seg = Segment {
        network_type: cfg.tenant_network_type.clone(),
        physical_network: None,
        segmentation_id: None,
    };
    if seg.network_type == LOCAL {
        return Ok(seg);
    }
    reserve(seg, cfg, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SegmentConfig {
        SegmentConfig {
            vni_ranges: parse_vni_ranges("1:3").unwrap(),
            vlan_ranges: parse_vlan_ranges("physnet1:100:101,physnet2").unwrap(),
            flat_networks: parse_flat_networks("*"),
            ..SegmentConfig::default()
        }
    }

    fn req(t: &str, p: Option<&str>, id: Option<i64>) -> Requested {
        Requested {
            network_type: Some(t.into()),
            physical_network: p.map(str::to_string),
            segmentation_id: id,
        }
    }

    #[test]
    fn options_parse() {
        assert_eq!(parse_vni_ranges("1:1000"), Some(vec![(1, 1000)]));
        assert_eq!(parse_vni_ranges("5:1"), None);
        assert_eq!(parse_vni_ranges("0:16777216"), None);
        assert_eq!(parse_vlan_ranges(""), Some(vec![]));
        assert_eq!(parse_vlan_ranges("p:1:4095"), None);
        assert_eq!(parse_flat_networks("*"), None);
        assert_eq!(parse_flat_networks(""), Some(vec![]));
        assert_eq!(
            parse_mappings("physnet1:eth1").unwrap()["physnet1"],
            "eth1".to_string()
        );
        assert_eq!(parse_mappings("physnet1"), None);
    }

    #[test]
    fn validation_as_ml2() {
        let c = cfg();
        let msg = |r: Requested| validate(&r, &c).unwrap_err().message;
        assert_eq!(
            msg(Requested {
                physical_network: Some("x".into()),
                ..Default::default()
            }),
            "Invalid input for operation: network_type required."
        );
        assert_eq!(
            msg(req("gre", None, None)),
            "Invalid input for operation: network_type value 'gre' not supported."
        );
        assert_eq!(
            msg(req("flat", None, None)),
            "Invalid input for operation: physical_network required for flat provider network."
        );
        assert_eq!(
            msg(req("vlan", None, Some(5))),
            "Invalid input for operation: segmentation_id requires physical_network for VLAN provider network."
        );
        assert_eq!(
            msg(req("vlan", Some("physnet1"), Some(4095))),
            "Invalid input for operation: segmentation_id out of range (1 through 4094)."
        );
        assert_eq!(
            msg(req("vlan", Some("nope"), Some(5))),
            "Invalid input for operation: physical_network 'nope' unknown for VLAN provider network."
        );
        assert_eq!(
            msg(req("vxlan", Some("physnet1"), None)),
            "Invalid input for operation: provider:physical_network specified for vxlan network."
        );
        assert_eq!(
            msg(req("vxlan", None, Some(1 << 24))),
            "Invalid input for operation: segmentation_id out of range (1 through 16777215)."
        );
        assert_eq!(
            msg(req("local", None, Some(3))),
            "Invalid input for operation: segmentation_id prohibited for local provider network."
        );
        let no_flat = SegmentConfig {
            flat_networks: Some(vec![]),
            ..cfg()
        };
        assert_eq!(
            validate(&req("flat", Some("p"), None), &no_flat)
                .unwrap_err()
                .message,
            "Invalid input for operation: Flat provider networks are disabled."
        );
        assert!(validate(&req("vlan", Some("physnet2"), Some(7)), &c).is_ok());
    }

    #[test]
    fn reservation_and_tenant_segments() {
        let c = cfg();
        let mut taken = HashSet::new();
        let a = tenant_segment(&c, &taken).unwrap();
        assert_eq!(a.segmentation_id, Some(1));
        taken.insert(a.allocation().unwrap());
        taken.insert("vxlan:2".to_string());
        assert_eq!(tenant_segment(&c, &taken).unwrap().segmentation_id, Some(3));
        taken.insert("vxlan:3".to_string());
        assert_eq!(
            tenant_segment(&c, &taken).unwrap_err().kind,
            "NoNetworkAvailable"
        );
        // An admin's VNI outside the ranges is fine once.
        let v = validate(&req("vxlan", None, Some(5000)), &c).unwrap();
        let v = reserve(v, &c, &taken).unwrap();
        taken.insert(v.allocation().unwrap());
        let e = reserve(v, &c, &taken).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                "TunnelIdInUse",
                "Unable to create the network. The tunnel ID 5000 is in use."
            )
        );
        // VLANs: partial ones take the physnet's range; physnet2 has none.
        let p = validate(&req("vlan", None, None), &c).unwrap();
        let got = reserve(p, &c, &taken).unwrap();
        assert_eq!(
            (got.physical_network.as_deref(), got.segmentation_id),
            (Some("physnet1"), Some(100))
        );
        taken.insert(got.allocation().unwrap());
        let e = reserve(got, &c, &taken).unwrap_err();
        assert_eq!(
            e.message,
            "Unable to create the network. The VLAN 100 on physical network physnet1 is in use."
        );
        let p2 = validate(&req("vlan", Some("physnet2"), None), &c).unwrap();
        assert_eq!(
            reserve(p2, &c, &taken).unwrap_err().kind,
            "NoNetworkAvailable"
        );
        let f = validate(&req("flat", Some("physnet9"), None), &c).unwrap();
        taken.insert(f.allocation().unwrap());
        assert_eq!(reserve(f, &c, &taken).unwrap_err().kind, "FlatNetworkInUse");
        let local = SegmentConfig {
            tenant_network_type: LOCAL.into(),
            ..cfg()
        };
        assert_eq!(tenant_segment(&local, &taken).unwrap(), Segment::local());
    }
}
