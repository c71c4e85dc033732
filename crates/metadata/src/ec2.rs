//! The EC2-compatible tree (`/<version>/meta-data/…`, `/<version>/user-data`) as Nova
//! renders it, including its listing quirks (`public-keys/` lists `0=<keyname>`).

use std::collections::BTreeMap;

use crate::facts::InstanceFacts;
use crate::tree::{Answer, Settings, hostname};

pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

/// A node of the tree. A directory may carry the name its parent lists it under
/// (`0=keyname`), as Nova's `_name`.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir(BTreeMap<String, Node>, Option<String>),
    List(Vec<String>),
    Leaf(Vec<u8>),
}

fn leaf(s: impl Into<String>) -> Node {
    Node::Leaf(s.into().into_bytes())
}

fn at_least(required: &str, version: &str) -> bool {
    let idx = |v: &str| VERSIONS.iter().position(|x| *x == v);
    matches!((idx(version), idx(required)), (Some(a), Some(b)) if a >= b)
}

/// `ami-…`/`i-…` style ids from kumo's UUIDs (Nova keeps a mapping table; these are stable
/// without one).
fn ec2_id(prefix: &str, uuid: &str) -> String {
    let hex: String = uuid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect();
    format!("{prefix}-{hex:0>8}")
}

/// The tree of one version (`None`: not a version).
pub fn data(facts: &InstanceFacts, s: &Settings, version: &str) -> Option<BTreeMap<String, Node>> {
    let version = if version == "latest" {
        VERSIONS[VERSIONS.len() - 1]
    } else {
        VERSIONS.iter().copied().find(|v| *v == version)?
    };
    let host = hostname(facts, s);
    let fixed = facts.fixed_ipv4().into_iter().next().unwrap_or_default();
    let floating = facts.floating_ips.first().cloned().unwrap_or_default();
    let mut md: BTreeMap<String, Node> = BTreeMap::new();
    md.insert("ami-id".into(), leaf(ec2_id("ami", &facts.image_id)));
    md.insert(
        "ami-launch-index".into(),
        leaf(facts.launch_index.to_string()),
    );
    md.insert("ami-manifest-path".into(), leaf("FIXME"));
    md.insert("instance-id".into(), leaf(ec2_id("i", &facts.uuid)));
    md.insert("hostname".into(), leaf(host.clone()));
    md.insert("local-ipv4".into(), leaf(fixed));
    md.insert("reservation-id".into(), leaf(facts.reservation_id.clone()));
    md.insert(
        "security-groups".into(),
        Node::List(facts.security_groups.clone()),
    );
    if let Some(k) = &facts.key {
        let key0 = Node::Dir(
            BTreeMap::from([("openssh-key".to_string(), leaf(k.data.clone()))]),
            Some(format!("0={}", k.name)),
        );
        md.insert(
            "public-keys".into(),
            Node::Dir(BTreeMap::from([("0".to_string(), key0)]), None),
        );
    }
    if at_least("2007-01-19", version) {
        md.insert("local-hostname".into(), leaf(host.clone()));
        md.insert("public-hostname".into(), leaf(host));
        md.insert("public-ipv4".into(), leaf(floating));
    }
    if at_least("2007-08-29", version) {
        md.insert("instance-type".into(), leaf(facts.flavor_name.clone()));
    }
    if at_least("2007-12-15", version) {
        md.insert(
            "block-device-mapping".into(),
            Node::Dir(
                BTreeMap::from([
                    ("ami".to_string(), leaf("vda")),
                    ("root".to_string(), leaf("/dev/vda")),
                ]),
                None,
            ),
        );
    }
    if at_least("2008-02-01", version) {
        let az = facts.availability_zone.clone().unwrap_or_default();
        md.insert(
            "placement".into(),
            Node::Dir(
                BTreeMap::from([("availability-zone".to_string(), leaf(az))]),
                None,
            ),
        );
    }
    if at_least("2008-09-01", version) {
        md.insert("instance-action".into(), leaf("none"));
    }
    let mut top = BTreeMap::from([("meta-data".to_string(), Node::Dir(md, None))]);
    if let Some(u) = &facts.user_data {
        top.insert("user-data".into(), Node::Leaf(u.clone()));
    }
    Some(top)
}

/// How Nova prints a node.
pub fn print(node: &Node) -> Answer {
    match node {
        Node::Dir(children, _) => Answer::Listing(
            children
                .iter()
                .map(|(k, v)| match v {
                    Node::Dir(_, Some(name)) => name.clone(),
                    Node::Dir(_, None) => format!("{k}/"),
                    _ => k.clone(),
                })
                .collect(),
        ),
        Node::List(items) => Answer::Listing(items.clone()),
        Node::Leaf(b) => Answer::Text(b.clone()),
    }
}

/// `toks` = [version, path…] below the EC2 root.
pub fn item(facts: &InstanceFacts, s: &Settings, toks: &[&str]) -> Option<Answer> {
    let top = data(facts, s, toks[0])?;
    let mut node = Node::Dir(top, None);
    for t in &toks[1..] {
        node = match node {
            Node::Dir(mut children, _) => children.remove(*t)?,
            _ => return None,
        };
    }
    Some(print(&node))
}

/// The tree of one version as the config drive stores it: `meta-data.json` (the meta-data
/// object as JSON) and `user-data`.
pub fn config_drive_files(
    facts: &InstanceFacts,
    s: &Settings,
    version: &str,
) -> Vec<(String, Vec<u8>)> {
    let Some(mut top) = data(facts, s, version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(Node::Leaf(u)) = top.remove("user-data") {
        out.push((format!("ec2/{version}/user-data"), u));
    }
    if let Some(md) = top.remove("meta-data") {
        let json = serde_json::to_vec(&to_json(&md)).unwrap_or_default();
        out.push((format!("ec2/{version}/meta-data.json"), json));
    }
    out
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Dir(children, _) => Value::Object(
            children
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Node::List(items) => serde_json::json!(items),
        Node::Leaf(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{lookup, tests::facts};

    fn get(path: &str) -> Option<String> {
        lookup(&facts(), &Settings::default(), path, "2026-12-06")
            .map(|a| String::from_utf8_lossy(&a.into_bytes()).into_owned())
    }

    #[test]
    fn root_lists_versions_and_a_version_lists_its_parts() {
        let root = get("/").unwrap_or_default();
        assert!(root.starts_with("1.0\n2007-01-19\n") && root.ends_with("2009-04-04\nlatest"));
        assert_eq!(get("/latest").as_deref(), Some("meta-data/\nuser-data"));
    }

    #[test]
    fn meta_data_leaves() {
        assert_eq!(
            get("/latest/meta-data/hostname").as_deref(),
            Some("web-1.novalocal")
        );
        assert_eq!(
            get("/latest/meta-data/local-ipv4").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            get("/latest/meta-data/public-ipv4").as_deref(),
            Some("172.24.4.10")
        );
        assert_eq!(
            get("/2009-04-04/meta-data/instance-type").as_deref(),
            Some("m1.tiny")
        );
        assert_eq!(
            get("/latest/meta-data/instance-id").as_deref(),
            Some("i-8d5b5a3c")
        );
        assert_eq!(
            get("/latest/meta-data/placement/availability-zone").as_deref(),
            Some("nova")
        );
        assert_eq!(
            get("/latest/meta-data/security-groups").as_deref(),
            Some("default")
        );
        assert_eq!(
            get("/latest/user-data").as_deref(),
            Some("#!/bin/sh\necho hi\n")
        );
        assert_eq!(get("/1.0/meta-data/public-ipv4"), None);
        assert_eq!(get("/latest/meta-data/nothing"), None);
        assert_eq!(get("/2010-01-01/meta-data/"), None);
    }

    #[test]
    fn public_keys_list_as_nova_does() {
        assert_eq!(
            get("/latest/meta-data/public-keys/").as_deref(),
            Some("0=k")
        );
        assert_eq!(
            get("/latest/meta-data/public-keys/0").as_deref(),
            Some("openssh-key")
        );
        assert_eq!(
            get("/latest/meta-data/public-keys/0/openssh-key").as_deref(),
            Some("ssh-ed25519 AAAA k")
        );
        let listing = get("/latest/meta-data/").unwrap_or_default();
        assert!(listing.contains("\npublic-keys/\n") && listing.contains("\nplacement/\n"));
    }
}
