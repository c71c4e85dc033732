//! Security groups and their rules: the project's groups with every rule, create and delete a
//! group, add a rule (direction, protocol, ports, remote CIDR or group), delete a rule. Through
//! the network API with the user's token; a refusal is the API's message as the flash.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{flash_outcome, render, see_other, seg};
use crate::views::Layout;
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/security-groups";

pub struct RuleView {
    pub id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: String,
    pub ports: String,
    pub remote: String,
}

pub struct GroupView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: Vec<RuleView>,
}

#[derive(Template)]
#[template(path = "security_groups.html")]
pub struct SecurityGroupsPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub groups: Vec<GroupView>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// How a rule's ports read: any, one port, a range, or ICMP type/code.
pub fn ports(r: &Value) -> String {
    let proto = r["protocol"].as_str().unwrap_or_default();
    let (min, max) = (r["port_range_min"].as_i64(), r["port_range_max"].as_i64());
    match (proto, min, max) {
        ("icmp" | "ipv6-icmp" | "icmpv6", Some(t), Some(c)) => format!("type {t} code {c}"),
        ("icmp" | "ipv6-icmp" | "icmpv6", Some(t), None) => format!("type {t}"),
        (_, Some(a), Some(b)) if a == b => a.to_string(),
        (_, Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "any".into(),
    }
}

pub fn groups(sgs: &Value) -> Vec<GroupView> {
    let names: HashMap<String, String> = sgs["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (text(&g["id"]), text(&g["name"])))
        .collect();
    let mut out: Vec<GroupView> = sgs["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let mut rules: Vec<RuleView> = g["security_group_rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let remote = match (
                        r["remote_ip_prefix"].as_str(),
                        r["remote_group_id"].as_str(),
                    ) {
                        (Some(cidr), _) => cidr.to_string(),
                        (None, Some(gid)) => {
                            format!(
                                "group {}",
                                names.get(gid).cloned().unwrap_or(gid.to_string())
                            )
                        }
                        _ => "any".into(),
                    };
                    RuleView {
                        id: text(&r["id"]),
                        direction: text(&r["direction"]),
                        ethertype: text(&r["ethertype"]),
                        protocol: r["protocol"].as_str().unwrap_or("any").to_string(),
                        ports: ports(r),
                        remote,
                    }
                })
                .collect();
            rules.sort_by(|a, b| {
                (&a.direction, &a.ethertype, &a.protocol, &a.ports).cmp(&(
                    &b.direction,
                    &b.ethertype,
                    &b.protocol,
                    &b.ports,
                ))
            });
            GroupView {
                id: text(&g["id"]),
                name: text(&g["name"]),
                description: text(&g["description"]),
                rules,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The rule body the form asks for; `Err` says what is wrong with the form itself.
pub fn rule_body(group: &str, form: &FormData) -> Result<Value, String> {
    let mut r = Map::new();
    r.insert("security_group_id".into(), json!(group));
    let direction = form.text("direction");
    if direction != "ingress" && direction != "egress" {
        return Err("The direction must be ingress or egress.".into());
    }
    r.insert("direction".into(), json!(direction));
    r.insert(
        "ethertype".into(),
        json!(if form.text("remote").contains(':') {
            "IPv6"
        } else {
            "IPv4"
        }),
    );
    let protocol = form.text("protocol");
    if !protocol.is_empty() && protocol != "any" {
        r.insert("protocol".into(), json!(protocol));
    }
    for (field, key) in [
        ("port_min", "port_range_min"),
        ("port_max", "port_range_max"),
    ] {
        let v = form.text(field);
        if v.is_empty() {
            continue;
        }
        let n: i64 = v
            .parse()
            .map_err(|_| format!("The port {v:?} is not a number."))?;
        r.insert(key.into(), json!(n));
    }
    // one port given: the range is that port (as `openstack security group rule create --dst-port 22`)
    if r.contains_key("port_range_min") && !r.contains_key("port_range_max") && protocol != "icmp" {
        r.insert("port_range_max".into(), r["port_range_min"].clone());
    }
    let remote = form.text("remote");
    if let Some(gid) = remote.strip_prefix("group:") {
        r.insert("remote_group_id".into(), json!(gid));
    } else if !remote.is_empty() {
        r.insert("remote_ip_prefix".into(), json!(remote));
    }
    Ok(json!({ "security_group_rule": r }))
}

async fn page(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let project = &ctx.auth.project.id;
    let sgs = d
        .get(
            ctx,
            "network",
            &format!("/security-groups?project_id={}", seg(project)),
        )
        .await?;
    render(&SecurityGroupsPage {
        layout: d.layout(ctx, "security-groups"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        groups: groups(&sgs),
    })
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    page(&d, &ctx).await
}

/// Create a group (name, description).
pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let body = json!({"security_group": {"name": name, "description": form.text("description")}});
    let r = d
        .call(
            &ctx,
            "network",
            Method::POST,
            "/security-groups",
            Some(&body),
        )
        .await;
    flash_outcome(&d, &ctx, r, format!("Created security group {name}."))?;
    Ok(see_other(PAGE))
}

/// A group's actions: `add_rule` (the rule form), `delete_rule` (`rule_id`), `delete`.
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let (r, ok) = match form.text("action").as_str() {
        "add_rule" => match rule_body(&id, &form) {
            Ok(body) => (
                d.call(
                    &ctx,
                    "network",
                    Method::POST,
                    "/security-group-rules",
                    Some(&body),
                )
                .await,
                "Rule added.",
            ),
            Err(problem) => {
                d.sessions.flash(&ctx.sid, "error", problem);
                return Ok(see_other(PAGE));
            }
        },
        "delete_rule" => (
            d.call(
                &ctx,
                "network",
                Method::DELETE,
                &format!("/security-group-rules/{}", seg(&form.text("rule_id"))),
                None,
            )
            .await,
            "Rule deleted.",
        ),
        "delete" => (
            d.call(
                &ctx,
                "network",
                Method::DELETE,
                &format!("/security-groups/{}", seg(&id)),
                None,
            )
            .await,
            "Security group deleted.",
        ),
        other => {
            return Err(DashError::NotFound(format!(
                "There is no security group action called {other:?}."
            )));
        }
    };
    flash_outcome(&d, &ctx, r, ok)?;
    Ok(see_other(PAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn rules_read_like_the_cli() {
        let sgs = json!({"security_groups": [{"id": "g1", "name": "default", "security_group_rules": [
            {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
            {"id": "r2", "direction": "ingress", "ethertype": "IPv4", "protocol": null,
             "remote_group_id": "g1"},
            {"id": "r3", "direction": "ingress", "ethertype": "IPv4", "protocol": "icmp",
             "port_range_min": 8, "port_range_max": 0}]}]});
        let g = &groups(&sgs)[0];
        let by_id: HashMap<&str, &RuleView> = g.rules.iter().map(|r| (r.id.as_str(), r)).collect();
        assert_eq!(by_id["r1"].ports, "22");
        assert_eq!(by_id["r2"].remote, "group default");
        assert_eq!(by_id["r2"].protocol, "any");
        assert_eq!(by_id["r3"].ports, "type 8 code 0");
    }

    #[test]
    fn the_rule_form_becomes_neutron_s_body() {
        let b = rule_body(
            "g",
            &form(&[
                ("direction", "ingress"),
                ("protocol", "tcp"),
                ("port_min", "80"),
                ("port_max", ""),
                ("remote", "10.0.0.0/8"),
            ]),
        )
        .expect("valid");
        let r = &b["security_group_rule"];
        assert_eq!(
            (r["port_range_min"].as_i64(), r["port_range_max"].as_i64()),
            (Some(80), Some(80))
        );
        assert_eq!(r["ethertype"], "IPv4");
        assert_eq!(r["remote_ip_prefix"], "10.0.0.0/8");
        let b = rule_body(
            "g",
            &form(&[
                ("direction", "egress"),
                ("protocol", "any"),
                ("remote", "group:g2"),
            ]),
        )
        .expect("valid");
        assert!(b["security_group_rule"].get("protocol").is_none());
        assert_eq!(b["security_group_rule"]["remote_group_id"], "g2");
        assert!(rule_body("g", &form(&[("direction", "sideways")])).is_err());
        assert!(rule_body("g", &form(&[("direction", "ingress"), ("port_min", "x")])).is_err());
    }
}
