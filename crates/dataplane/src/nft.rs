//! One nftables table per namespace, applied atomically: a single `nft -j -f -` transaction
//! that adds, deletes and re-creates the table with all its chains and rules, so the router
//! never runs with half a ruleset. JSON built here (the `nftables` crate of DESIGN §4 is a thin
//! wrapper over the same `nft -j` JSON; the rule model below is what a router needs).

use crate::cmd::run;
use crate::{Error, Result};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// The router's NAT cases (Neutron's l3 agent: floating IPs, SNAT, metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatRule {
    /// A floating IP: DNAT `floating` → `fixed` (prerouting and output), and SNAT `fixed` →
    /// `floating` (postrouting) so the instance's own connections leave as its floating IP.
    FloatingIp { floating: Ipv4Addr, fixed: Ipv4Addr },
    /// Default SNAT: traffic from `cidr` leaving through `out_iface` takes the router's
    /// gateway address.
    Snat {
        cidr: (Ipv4Addr, u8),
        out_iface: String,
        gateway: Ipv4Addr,
    },
    /// `ip daddr 169.254.169.254 tcp dport 80 redirect to :port` (metadata proxy).
    MetadataRedirect { port: u16 },
}

/// A whole `ip` family NAT table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatTable {
    pub name: String,
    pub rules: Vec<NatRule>,
}

const METADATA: &str = "169.254.169.254";

fn chain(table: &str, name: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": "ip", "table": table, "name": name,
        "type": "nat", "hook": hook, "prio": prio, "policy": "accept"}}})
}

fn rule(table: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}})
}

fn ip_match(field: &str, right: Value) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": field}},
        "right": right}})
}

fn check_table_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            why: "nftables table names here are 1-64 of [A-Za-z0-9_-]",
        });
    }
    Ok(())
}

impl NatTable {
    /// The `nft -j` document: replace the table in one transaction.
    pub fn to_json(&self) -> Result<Value> {
        check_table_name(&self.name)?;
        let t = self.name.as_str();
        let table = json!({"table": {"family": "ip", "name": t}});
        let mut cmds = vec![
            json!({"add": table.clone()}),
            json!({"delete": table.clone()}),
            json!({"add": table}),
            chain(t, "prerouting", "prerouting", -100),
            chain(t, "output", "output", -100),
            chain(t, "postrouting", "postrouting", 100),
        ];
        // Floating-IP SNAT must win over the subnet SNAT: emit those first.
        let mut late = Vec::new();
        for r in &self.rules {
            match r {
                NatRule::FloatingIp { floating, fixed } => {
                    for c in ["prerouting", "output"] {
                        cmds.push(rule(
                            t,
                            c,
                            vec![
                                ip_match("daddr", json!(floating.to_string())),
                                json!({"dnat": {"addr": fixed.to_string()}}),
                            ],
                        ));
                    }
                    cmds.push(rule(
                        t,
                        "postrouting",
                        vec![
                            ip_match("saddr", json!(fixed.to_string())),
                            json!({"snat": {"addr": floating.to_string()}}),
                        ],
                    ));
                }
                NatRule::Snat {
                    cidr: (net, len),
                    out_iface,
                    gateway,
                } => {
                    if *len > 32 || out_iface.is_empty() || out_iface.len() > crate::IFNAME_MAX {
                        return Err(Error::Invalid(format!(
                            "SNAT rule {net}/{len} via `{out_iface}`"
                        )));
                    }
                    late.push(rule(
                        t,
                        "postrouting",
                        vec![
                            ip_match(
                                "saddr",
                                json!({"prefix": {"addr": net.to_string(), "len": len}}),
                            ),
                            json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                                "right": out_iface}}),
                            json!({"snat": {"addr": gateway.to_string()}}),
                        ],
                    ));
                }
                NatRule::MetadataRedirect { port } => cmds.push(rule(
                    t,
                    "prerouting",
                    vec![
                        ip_match("daddr", json!(METADATA)),
                        json!({"match": {"op": "==",
                            "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": 80}}),
                        json!({"redirect": {"port": port}}),
                    ],
                )),
            }
        }
        cmds.extend(late);
        Ok(json!({"nftables": cmds}))
    }
}

/// The table's chains and rules without handles: chains first, then the rules chain by chain
/// (as `nft list` orders them), each chain's rules in order. Two tables with equal objects are
/// the same ruleset.
fn objects(doc: &Value, listed: bool) -> Vec<Value> {
    let items = doc["nftables"].as_array().cloned().unwrap_or_default();
    let mut objects: Vec<Value> = items
        .into_iter()
        .filter_map(|item| {
            let item = if listed {
                item
            } else {
                item.get("add")?.clone()
            };
            let (kind, mut obj) = ["chain", "rule"]
                .iter()
                .find_map(|k| item.get(*k).map(|o| (*k, o.clone())))?;
            if let Some(map) = obj.as_object_mut() {
                map.remove("handle");
            }
            Some(json!({ kind: obj }))
        })
        .collect();
    let chains: Vec<Value> = objects
        .iter()
        .filter_map(|o| o.get("chain").map(|c| c["name"].clone()))
        .collect();
    objects.sort_by_key(|o| match o.get("rule") {
        None => 0,
        Some(r) => {
            1 + chains
                .iter()
                .position(|c| *c == r["chain"])
                .unwrap_or(chains.len())
        }
    });
    objects
}

impl NatTable {
    /// Whether `listed` (what [`list_table`] returned) is exactly this table's ruleset, so
    /// that applying it again would change nothing.
    pub fn matches(&self, listed: &Value) -> Result<bool> {
        Ok(objects(&self.to_json()?, false) == objects(listed, true))
    }
}

pub(crate) async fn nft(
    namespace: Option<&str>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<String> {
    match namespace {
        Some(ns) => {
            if !crate::netns::namespace_exists(ns)? {
                return Err(Error::NoNamespace(ns.to_owned()));
            }
            if !crate::tool_available("nft") {
                return Err(Error::MissingTool {
                    tool: "nft",
                    package: "nftables",
                });
            }
            let mut all = vec!["netns", "exec", ns, "nft"];
            all.extend_from_slice(args);
            run("ip", &all, stdin).await
        }
        None => run("nft", args, stdin).await,
    }
}

/// Replaces the table (creating it if needed) inside `namespace` in one transaction.
pub async fn apply_table(namespace: Option<&str>, table: &NatTable) -> Result<()> {
    let doc = table.to_json()?.to_string();
    nft(namespace, &["-j", "-f", "-"], Some(doc.as_bytes())).await?;
    Ok(())
}

/// Deletes the table from `namespace`; succeeds if it is not there.
pub async fn remove_table(namespace: Option<&str>, name: &str) -> Result<()> {
    check_table_name(name)?;
    let table = json!({"table": {"family": "ip", "name": name}});
    let doc = json!({"nftables": [{"add": table.clone()}, {"delete": table}]}).to_string();
    nft(namespace, &["-j", "-f", "-"], Some(doc.as_bytes())).await?;
    Ok(())
}

/// The table as `nft -j list table ip NAME` prints it, or `None` if absent.
pub async fn list_table(namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
    check_table_name(name)?;
    match nft(namespace, &["-j", "list", "table", "ip", name], None).await {
        Ok(out) => serde_json::from_str(&out)
            .map(Some)
            .map_err(|e| Error::Parse {
                command: "nft -j list table".to_owned(),
                detail: e.to_string(),
            }),
        Err(Error::Command { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_document_replaces_atomically() {
        let t = NatTable {
            name: "kumo".into(),
            rules: vec![
                NatRule::Snat {
                    cidr: (Ipv4Addr::new(10, 0, 0, 0), 24),
                    out_iface: "qg-1".into(),
                    gateway: Ipv4Addr::new(203, 0, 113, 2),
                },
                NatRule::FloatingIp {
                    floating: Ipv4Addr::new(203, 0, 113, 10),
                    fixed: Ipv4Addr::new(10, 0, 0, 5),
                },
                NatRule::MetadataRedirect { port: 9697 },
            ],
        };
        let doc = t.to_json().expect("valid");
        let cmds = doc["nftables"].as_array().expect("array");
        assert!(cmds[0]["add"]["table"].is_object());
        assert!(cmds[1]["delete"]["table"].is_object());
        let last = cmds.last().expect("rules");
        assert_eq!(
            last["add"]["rule"]["expr"][2]["snat"]["addr"],
            "203.0.113.2"
        );
        let text = doc.to_string();
        assert!(text.contains(r#""dnat":{"addr":"10.0.0.5"}"#));
        assert!(text.contains(r#""redirect":{"port":9697}"#));
        assert!(
            NatTable {
                name: "bad name".into(),
                rules: vec![]
            }
            .to_json()
            .is_err()
        );
    }
}
