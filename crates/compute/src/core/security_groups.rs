//! Nova's security-group proxy (`os-security-groups`, `os-security-group-rules`, a server's
//! groups, `addSecurityGroup`/`removeSecurityGroup`): every call goes to the network
//! service's API with the caller's token, as Nova's `nova/network/security_group_api.py`
//! does, and the answers are turned into Nova's shapes (ingress rules only, `from_port` /
//! `to_port` / `ip_protocol`, `ip_range` or `group`). No HTTP here: the handlers render.

use common::auth::AuthContext;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::IpAddr;

use super::ComputeService;
use crate::clients::Answer;
use crate::error::{ComputeError, Result};
use crate::model::Instance;

/// Who asks, for the calls made on their behalf.
pub struct Caller<'a> {
    pub auth: &'a AuthContext,
    pub token: &'a str,
    pub request_id: &'a str,
}

/// A rule as the `os-security-group-rules` create body gives it (values unchecked: Nova
/// checks them itself, not in its schema).
#[derive(Debug, Clone, Default)]
pub struct RuleRequest {
    pub parent_group_id: String,
    pub group_id: Option<String>,
    pub ip_protocol: Option<Value>,
    pub from_port: Option<Value>,
    pub to_port: Option<Value>,
    pub cidr: Option<Value>,
}

/// The network service's message in a refusal.
fn said(a: &Answer) -> String {
    crate::neutron::said(a)
}

fn upstream(what: &str, a: &Answer) -> ComputeError {
    ComputeError::Upstream {
        service: "network",
        message: format!("{what}: {} {}", a.status, said(a)),
    }
}

/// Nova's `validate_id`.
pub fn validate_id(id: &str) -> Result<()> {
    if crate::api::validate::is_uuid(id) {
        Ok(())
    } else {
        Err(ComputeError::bad("Security group id should be uuid"))
    }
}

/// Nova's `parse_cidr`: nothing means everything (`0.0.0.0/0`); else a valid network
/// (URL-decoded first).
pub fn parse_cidr(cidr: Option<&str>) -> Result<String> {
    let Some(raw) = cidr.filter(|c| !c.is_empty()) else {
        return Ok("0.0.0.0/0".into());
    };
    let decoded: String =
        form_urlencoded::parse(format!("c={}", raw.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| raw.to_string());
    if is_valid_cidr(&decoded) {
        Ok(decoded)
    } else {
        Err(ComputeError::bad(format!(
            "{decoded} is not a valid IP network."
        )))
    }
}

/// oslo's `is_valid_cidr`: an address and a prefix length within its family.
fn is_valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    len <= if addr.is_ipv4() { 32 } else { 128 }
}

/// Python's `str()` of a JSON value, for Nova's messages.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Python's truth of a JSON value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

/// Python's `int()` of a port value.
fn py_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Nova's `_new_ingress_rule`: the rule's values (`group_id` or `cidr`, and `protocol`,
/// `from_port`, `to_port` when given), None when a cidr rule lacks protocol and ports.
pub fn new_ingress_rule(
    ip_protocol: Option<&Value>,
    from_port: Option<&Value>,
    to_port: Option<&Value>,
    group_id: Option<&str>,
    cidr: Option<&str>,
) -> Result<Option<Map<String, Value>>> {
    let mut values = Map::new();
    let mut from = from_port.filter(|v| !v.is_null()).cloned();
    let mut to = to_port.filter(|v| !v.is_null()).cloned();
    let proto_upper = ip_protocol
        .filter(|p| truthy(Some(p)))
        .map(|p| py_str(p).to_uppercase())
        .unwrap_or_default();
    if let Some(g) = group_id.filter(|g| !g.is_empty()) {
        values.insert("group_id".into(), json!(g));
        // Everything open when a source group is given without ports.
        if from.is_none() && to.is_none() {
            if proto_upper == "ICMP" {
                from = Some(json!(-1));
                to = Some(json!(-1));
            } else if proto_upper == "TCP" || proto_upper == "UDP" {
                from = Some(json!(1));
                to = Some(json!(65535));
            }
        }
    } else if let Some(c) = cidr.filter(|c| !c.is_empty()) {
        values.insert("cidr".into(), json!(c));
    }
    match (truthy(ip_protocol), &from, &to) {
        (true, Some(f), Some(t)) => {
            let protocol = ip_protocol.map(py_str).unwrap_or_default();
            let (Some(f), Some(t)) = (py_int(f), py_int(t)) else {
                return Err(ComputeError::bad(if proto_upper == "ICMP" {
                    "Invalid input received: Type and Code must be integers for ICMP protocol type"
                } else {
                    "Invalid input received: To and From ports must be integers"
                }));
            };
            let range = |msg: &str| ComputeError::bad(format!("Invalid port range {f}:{t}. {msg}"));
            match proto_upper.as_str() {
                "TCP" | "UDP" => {
                    if f > t {
                        return Err(range("Former value cannot be greater than the later"));
                    }
                    if f < 1 || t > 65535 {
                        return Err(range(&format!(
                            "Valid {proto_upper} ports should be between 1-65535"
                        )));
                    }
                }
                "ICMP" => {
                    if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) {
                        return Err(range("For ICMP, the type:code must be valid"));
                    }
                }
                _ => {
                    return Err(ComputeError::bad(format!(
                        "Invalid IP protocol {protocol}."
                    )));
                }
            }
            values.insert("protocol".into(), json!(protocol));
            values.insert("from_port".into(), json!(f));
            values.insert("to_port".into(), json!(t));
        }
        _ if values.contains_key("cidr") => return Ok(None),
        _ => {}
    }
    Ok(Some(values))
}

/// A network-service rule in Nova's internal form (`_convert_to_nova_security_group_rule_format`).
pub fn nova_rule(rule: &Value) -> Value {
    let protocol = rule["protocol"].clone();
    let (from, to) = match protocol.as_str() {
        Some(p)
            if !p.is_empty()
                && rule["port_range_min"].is_null()
                && rule["port_range_max"].is_null() =>
        {
            if matches!(p.to_uppercase().as_str(), "TCP" | "UDP") {
                (json!(1), json!(65535))
            } else {
                (json!(-1), json!(-1))
            }
        }
        _ => (
            rule["port_range_min"].clone(),
            rule["port_range_max"].clone(),
        ),
    };
    let cidr = parse_cidr(rule["remote_ip_prefix"].as_str()).unwrap_or_else(|_| {
        rule["remote_ip_prefix"]
            .as_str()
            .unwrap_or("0.0.0.0/0")
            .to_string()
    });
    json!({
        "id": rule["id"],
        "parent_group_id": rule["security_group_id"],
        "protocol": protocol,
        "from_port": from,
        "to_port": to,
        "group_id": rule["remote_group_id"],
        "cidr": cidr,
    })
}

/// A rule as the API shows it: `group` (name, tenant_id) for a rule whose source is a
/// group, else `ip_range` (cidr).
pub fn format_rule(rule: &Value, group: Option<&Value>) -> Value {
    let mut out = json!({
        "id": rule["id"],
        "parent_group_id": rule["parent_group_id"],
        "ip_protocol": rule["protocol"],
        "from_port": rule["from_port"],
        "to_port": rule["to_port"],
        "group": {},
        "ip_range": {},
    });
    match group {
        Some(g) => out["group"] = g.clone(),
        None => out["ip_range"] = json!({"cidr": rule["cidr"]}),
    }
    out
}

/// `{name, tenant_id}` of a group, as a rule's `group`.
fn group_ref(g: &Value) -> Value {
    json!({"name": g["name"], "tenant_id": g["project_id"].as_str().or(g["tenant_id"].as_str())})
}

/// The network service's security group, its API's rule bodies in Nova's shape (ingress
/// only). `groups` resolves a rule's source group (None: that group is gone: the rule is
/// left out, as Nova does).
pub fn format_group(g: &Value, groups: &HashMap<String, Option<Value>>) -> Value {
    let rules: Vec<Value> = g["security_group_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["direction"] == "ingress")
        .filter_map(|r| {
            let rule = nova_rule(r);
            match rule["group_id"].as_str() {
                Some(src) => groups
                    .get(src)
                    .cloned()
                    .flatten()
                    .map(|sg| format_rule(&rule, Some(&group_ref(&sg)))),
                None => Some(format_rule(&rule, None)),
            }
        })
        .collect();
    json!({
        "id": g["id"],
        "description": g["description"],
        "name": g["name"],
        "tenant_id": g["project_id"].as_str().or(g["tenant_id"].as_str()),
        "rules": rules,
    })
}

/// Nova's order of group lists: by tenant, then name.
fn sort_groups(groups: &mut [Value]) {
    groups.sort_by(|a, b| {
        let key = |g: &Value| {
            (
                g["tenant_id"].as_str().unwrap_or_default().to_string(),
                g["name"].as_str().unwrap_or_default().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// The network body of a Nova rule (`_make_neutron_security_group_rules_list`).
fn neutron_rule_body(parent: &str, rule: &Map<String, Value>) -> Value {
    let cidr = rule.get("cidr").and_then(Value::as_str);
    let ethertype = match cidr.and_then(|c| c.split('/').next()?.parse::<IpAddr>().ok()) {
        Some(IpAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    };
    let mut r = json!({
        "direction": "ingress",
        "protocol": rule.get("protocol").cloned().unwrap_or(Value::Null),
        "ethertype": ethertype,
        "remote_ip_prefix": cidr,
        "security_group_id": parent,
        "remote_group_id": rule.get("group_id").cloned().unwrap_or(Value::Null),
    });
    if let Some(f) = rule.get("from_port").filter(|f| **f != json!(-1)) {
        r["port_range_min"] = f.clone();
    }
    if let Some(t) = rule.get("to_port").filter(|t| **t != json!(-1)) {
        r["port_range_max"] = t.clone();
    }
    // unset rather than null
    if let Some(o) = r.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    json!({"security_group_rule": r})
}

/// Whether `group` (Nova's internal form) already has this rule (`_rule_exists`).
fn rule_exists(existing: &[Value], new: &Map<String, Value>) -> bool {
    existing.iter().any(|r| {
        ["group_id", "cidr", "from_port", "to_port", "protocol"]
            .iter()
            .all(|k| r.get(*k).unwrap_or(&Value::Null) == new.get(*k).unwrap_or(&Value::Null))
    })
}

/// Whether a port can take security groups (`_has_security_group_requirements`).
fn port_takes_groups(port: &Value) -> bool {
    let has_ip = port["fixed_ips"].as_array().is_some_and(|a| !a.is_empty());
    let deferred = port["ip_allocation"] == "deferred";
    (has_ip || deferred) && port["port_security_enabled"] != json!(false)
}

impl ComputeService {
    fn authorize_sg(&self, c: &Caller<'_>, action: &str, project: Option<&str>) -> Result<()> {
        let project = project.or(c.auth.project_id()).unwrap_or_default();
        self.authorize(
            c.auth,
            &format!("os_compute_api:os-security-groups:{action}"),
            &json!({"project_id": project}),
        )
    }

    async fn net(
        &self,
        c: &Caller<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        self.clients()?
            .network(method, path, body, Some(c.token), c.request_id)
            .await
    }

    /// The network service's group `id`, 404 with its message when it has none.
    async fn neutron_group(&self, c: &Caller<'_>, id: &str) -> Result<Value> {
        let a = self
            .net(c, Method::GET, &format!("/security-groups/{id}"), None)
            .await?;
        match a.status {
            s if s.is_success() => Ok(a.body["security_group"].clone()),
            StatusCode::NOT_FOUND => Err(ComputeError::NotFound(said(&a))),
            _ => Err(upstream(&format!("GET security group {id}"), &a)),
        }
    }

    /// The source groups the rules of `groups` name: the listed ones, then each other one
    /// looked up once (None when it is gone).
    async fn rule_sources(
        &self,
        c: &Caller<'_>,
        groups: &[Value],
    ) -> Result<HashMap<String, Option<Value>>> {
        let mut known: HashMap<String, Option<Value>> = groups
            .iter()
            .filter_map(|g| Some((g["id"].as_str()?.to_string(), Some(g.clone()))))
            .collect();
        let wanted: Vec<String> = groups
            .iter()
            .flat_map(|g| g["security_group_rules"].as_array().into_iter().flatten())
            .filter(|r| r["direction"] == "ingress")
            .filter_map(|r| r["remote_group_id"].as_str().map(str::to_string))
            .collect();
        for id in wanted {
            if known.contains_key(&id) {
                continue;
            }
            let found = match self.neutron_group(c, &id).await {
                Ok(g) => Some(g),
                Err(ComputeError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            known.insert(id, found);
        }
        Ok(known)
    }

    async fn format_groups(&self, c: &Caller<'_>, groups: &[Value]) -> Result<Vec<Value>> {
        let sources = self.rule_sources(c, groups).await?;
        Ok(groups.iter().map(|g| format_group(g, &sources)).collect())
    }

    async fn format_one(&self, c: &Caller<'_>, group: Value) -> Result<Value> {
        self.format_groups(c, std::slice::from_ref(&group))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ComputeError::Internal("a security group went missing".into()))
    }

    /// `GET /os-security-groups`: the caller's project's groups (every project's for an
    /// admin who says `all_tenants`), `offset`/`limit` applied, by tenant and name.
    pub async fn sg_list(
        &self,
        c: &Caller<'_>,
        all_tenants: bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Value>> {
        self.authorize_sg(c, "get", None)?;
        let path = if all_tenants && c.auth.has_role("admin") {
            "/security-groups".to_string()
        } else {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("tenant_id", c.auth.project_id().unwrap_or_default())
                .finish();
            format!("/security-groups?{q}")
        };
        let a = self.net(c, Method::GET, &path, None).await?;
        if !a.status.is_success() {
            return Err(upstream("listing security groups", &a));
        }
        let all = a.body["security_groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let page: Vec<Value> = all
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        let mut out = self.format_groups(c, &page).await?;
        sort_groups(&mut out);
        Ok(out)
    }

    /// `GET /os-security-groups/{id}`.
    pub async fn sg_show(&self, c: &Caller<'_>, id: &str) -> Result<Value> {
        self.authorize_sg(c, "show", None)?;
        validate_id(id)?;
        let g = self.neutron_group(c, id).await?;
        self.format_one(c, g).await
    }

    /// `POST /os-security-groups`: 400 for what the network service refuses, 403 over quota.
    pub async fn sg_create(&self, c: &Caller<'_>, name: &str, description: &str) -> Result<Value> {
        self.authorize_sg(c, "create", None)?;
        let body = json!({"security_group": {"name": name, "description": description}});
        let a = self
            .net(c, Method::POST, "/security-groups", Some(&body))
            .await?;
        match a.status {
            s if s.is_success() => self.format_one(c, a.body["security_group"].clone()).await,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Err(ComputeError::bad(said(&a))),
            StatusCode::CONFLICT => Err(ComputeError::Forbidden(said(&a))),
            _ => Err(upstream("creating a security group", &a)),
        }
    }

    /// `PUT /os-security-groups/{id}`: name and description.
    pub async fn sg_update(
        &self,
        c: &Caller<'_>,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<Value> {
        self.authorize_sg(c, "update", None)?;
        validate_id(id)?;
        self.neutron_group(c, id).await?;
        let body = json!({"security_group": {"name": name, "description": description}});
        let a = self
            .net(
                c,
                Method::PUT,
                &format!("/security-groups/{id}"),
                Some(&body),
            )
            .await?;
        match a.status {
            s if s.is_success() => self.format_one(c, a.body["security_group"].clone()).await,
            StatusCode::NOT_FOUND => Err(ComputeError::NotFound(said(&a))),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => Err(ComputeError::bad(said(&a))),
            _ => Err(upstream(&format!("updating security group {id}"), &a)),
        }
    }

    /// `DELETE /os-security-groups/{id}`: a group in use (or the default group) is a 400
    /// with the network service's message.
    pub async fn sg_delete(&self, c: &Caller<'_>, id: &str) -> Result<()> {
        self.authorize_sg(c, "delete", None)?;
        validate_id(id)?;
        self.neutron_group(c, id).await?;
        let a = self
            .net(c, Method::DELETE, &format!("/security-groups/{id}"), None)
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(ComputeError::NotFound(said(&a))),
            StatusCode::CONFLICT => Err(ComputeError::bad(said(&a))),
            _ => Err(upstream(&format!("deleting security group {id}"), &a)),
        }
    }

    /// `POST /os-security-group-rules`: one ingress rule from a cidr or a source group.
    pub async fn sg_rule_create(&self, c: &Caller<'_>, req: &RuleRequest) -> Result<Value> {
        self.authorize_sg(c, "rule:create", None)?;
        let parent = self.neutron_group(c, &req.parent_group_id).await?;
        let source = match req.group_id.as_deref() {
            Some(g) => Some(self.neutron_group(c, g).await?),
            None => None,
        };
        let cidr = match req.group_id {
            Some(_) => None,
            None => Some(parse_cidr(
                req.cidr
                    .as_ref()
                    .filter(|v| truthy(Some(v)))
                    .map(py_str)
                    .as_deref(),
            )?),
        };
        let Some(mut rule) = new_ingress_rule(
            req.ip_protocol.as_ref(),
            req.from_port.as_ref(),
            req.to_port.as_ref(),
            req.group_id.as_deref(),
            cidr.as_deref(),
        )?
        else {
            return Err(ComputeError::bad(
                "Not enough parameters to build a valid rule.",
            ));
        };
        let parent_id = parent["id"].as_str().unwrap_or_default().to_string();
        rule.insert("parent_group_id".into(), json!(parent_id));
        if let Some(c) = rule.get("cidr").and_then(Value::as_str)
            && let Some((net, len)) = c.split_once('/')
            && len == "0"
            && net != "0.0.0.0"
            && net != "::"
        {
            return Err(ComputeError::bad(format!(
                "Bad prefix for network in cidr {c}"
            )));
        }
        let existing: Vec<Value> = parent["security_group_rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["direction"] == "ingress")
            .map(nova_rule)
            .collect();
        if rule_exists(&existing, &rule) {
            return Err(ComputeError::bad(format!(
                "This rule already exists in group {parent_id}"
            )));
        }
        let body = neutron_rule_body(&parent_id, &rule);
        let a = self
            .net(c, Method::POST, "/security-group-rules", Some(&body))
            .await?;
        let made = match a.status {
            s if s.is_success() => nova_rule(&a.body["security_group_rule"]),
            StatusCode::NOT_FOUND => return Err(ComputeError::NotFound(said(&a))),
            StatusCode::CONFLICT => return Err(ComputeError::Forbidden(said(&a))),
            StatusCode::BAD_REQUEST => return Err(ComputeError::bad(said(&a))),
            _ => return Err(upstream("creating a security group rule", &a)),
        };
        let group = source.as_ref().map(group_ref);
        Ok(format_rule(&made, group.as_ref()))
    }

    /// `DELETE /os-security-group-rules/{id}`.
    pub async fn sg_rule_delete(&self, c: &Caller<'_>, id: &str) -> Result<()> {
        self.authorize_sg(c, "rule:delete", None)?;
        validate_id(id)?;
        let a = self
            .net(c, Method::GET, &format!("/security-group-rules/{id}"), None)
            .await?;
        let rule = match a.status {
            s if s.is_success() => a.body["security_group_rule"].clone(),
            StatusCode::NOT_FOUND => return Err(ComputeError::NotFound(said(&a))),
            _ => return Err(upstream(&format!("GET security group rule {id}"), &a)),
        };
        if let Some(parent) = rule["security_group_id"].as_str() {
            self.neutron_group(c, parent).await?;
        }
        let a = self
            .net(
                c,
                Method::DELETE,
                &format!("/security-group-rules/{id}"),
                None,
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(ComputeError::NotFound(said(&a))),
            _ => Err(upstream(&format!("deleting security group rule {id}"), &a)),
        }
    }

    /// The ports of an instance, as the caller sees them.
    async fn instance_ports(&self, c: &Caller<'_>, uuid: &str) -> Result<Vec<Value>> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("device_id", uuid)
            .finish();
        let a = self
            .net(c, Method::GET, &format!("/ports?{q}"), None)
            .await?;
        if !a.status.is_success() {
            return Err(upstream(&format!("listing the ports of {uuid}"), &a));
        }
        Ok(a.body["ports"].as_array().cloned().unwrap_or_default())
    }

    /// `GET /servers/{id}/os-security-groups`: the groups of the server's ports.
    pub async fn server_security_groups(&self, c: &Caller<'_>, uuid: &str) -> Result<Vec<Value>> {
        let i = self.visible_instance(c.auth, uuid).await?;
        self.authorize_sg(c, "list", Some(&i.project_id))?;
        let ports = self.instance_ports(c, uuid).await?;
        let mut groups = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for port in &ports {
            for id in port["security_groups"].as_array().into_iter().flatten() {
                let Some(id) = id.as_str() else { continue };
                if !seen.insert(id.to_string()) {
                    continue;
                }
                match self.neutron_group(c, id).await {
                    Ok(g) => groups.push(g),
                    // a group the caller cannot see is left out
                    Err(ComputeError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Nova lists a group once per port that has it.
        let mut out = Vec::new();
        let formatted = self.format_groups(c, &groups).await?;
        for port in &ports {
            for id in port["security_groups"].as_array().into_iter().flatten() {
                if let Some(g) = formatted.iter().find(|g| g["id"] == *id) {
                    out.push(g.clone());
                }
            }
        }
        sort_groups(&mut out);
        Ok(out)
    }

    /// The instance `uuid` when the caller may see it (404 otherwise).
    async fn visible_instance(&self, auth: &AuthContext, uuid: &str) -> Result<Instance> {
        let i = self
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        if auth.project_id() != Some(i.project_id.as_str()) && !auth.has_role("admin") {
            return Err(ComputeError::instance_not_found(uuid));
        }
        Ok(i)
    }

    /// A group named (or with the id) `name` in the caller's project
    /// (`find_resourceid_by_name_or_id`): 404 when none, 409 when several.
    async fn group_id_by_name(&self, c: &Caller<'_>, name: &str) -> Result<String> {
        let project = c.auth.project_id().unwrap_or_default();
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .append_pair("tenant_id", project)
            .finish();
        let a = self
            .net(c, Method::GET, &format!("/security-groups?{q}"), None)
            .await?;
        if !a.status.is_success() {
            return Err(upstream("listing security groups", &a));
        }
        let found: Vec<&Value> = a.body["security_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"].as_str() == Some(name))
            .collect();
        match found.as_slice() {
            [g] => return Ok(g["id"].as_str().unwrap_or_default().to_string()),
            [] => {}
            _ => {
                return Err(ComputeError::conflict(format!(
                    "Multiple security_group matches found for name '{name}', use an ID to be more specific."
                )));
            }
        }
        if crate::api::validate::is_uuid(name)
            && let Ok(g) = self.neutron_group(c, name).await
        {
            return Ok(g["id"].as_str().unwrap_or(name).to_string());
        }
        Err(ComputeError::NotFound(format!(
            "Security group {name} is not found for project {project}"
        )))
    }

    /// `addSecurityGroup` / `removeSecurityGroup`: the group on (off) every port of the
    /// server, and in the server's list of group names.
    pub async fn change_server_security_group(
        &self,
        c: &Caller<'_>,
        uuid: &str,
        name: &str,
        add: bool,
    ) -> Result<()> {
        let i = self.visible_instance(c.auth, uuid).await?;
        self.authorize_sg(c, if add { "add" } else { "remove" }, Some(&i.project_id))?;
        if name.trim().is_empty() {
            return Err(ComputeError::bad("Security group name cannot be empty"));
        }
        let gid = self.group_id_by_name(c, name).await?;
        let ports = self.instance_ports(c, uuid).await?;
        if ports.is_empty() {
            return Err(ComputeError::NotFound(format!(
                "instance_id {uuid} could not be found as device id on any ports"
            )));
        }
        let mut changed = false;
        for port in &ports {
            let pid = port["id"].as_str().unwrap_or_default();
            let mut groups: Vec<Value> = port["security_groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if add {
                if !port_takes_groups(port) {
                    return Err(ComputeError::bad(
                        "Network requires port_security_enabled and subnet associated in order to apply security groups.",
                    ));
                }
                groups.push(json!(gid));
            } else {
                let Some(at) = groups.iter().position(|g| *g == json!(gid)) else {
                    continue;
                };
                groups.remove(at);
            }
            let body = json!({"port": {"security_groups": groups}});
            let a = self
                .net(c, Method::PUT, &format!("/ports/{pid}"), Some(&body))
                .await?;
            match a.status {
                s if s.is_success() => changed = true,
                StatusCode::BAD_REQUEST if add => return Err(ComputeError::bad(said(&a))),
                StatusCode::CONFLICT if add => return Err(ComputeError::conflict(said(&a))),
                _ => return Err(upstream(&format!("updating port {pid}"), &a)),
            }
        }
        if !add && !changed {
            return Err(ComputeError::NotFound(format!(
                "Security group {name} not associated with the instance {uuid}"
            )));
        }
        self.update_instance(uuid, None, |x| {
            if add {
                if !x.security_groups.iter().any(|g| g == name) {
                    x.security_groups.push(name.to_string());
                }
            } else {
                x.security_groups.retain(|g| g != name);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_as_nova_parses_them() {
        assert_eq!(parse_cidr(None).expect("none"), "0.0.0.0/0");
        assert_eq!(parse_cidr(Some("")).expect("empty"), "0.0.0.0/0");
        assert_eq!(parse_cidr(Some("10.0.0.0/8")).expect("v4"), "10.0.0.0/8");
        assert_eq!(
            parse_cidr(Some("10.0.0.0%2F8")).expect("quoted"),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr(Some("2001:db8::/32")).expect("v6"),
            "2001:db8::/32"
        );
        let e = parse_cidr(Some("10.0.0.0/33")).expect_err("too long");
        assert_eq!(e.to_string(), "10.0.0.0/33 is not a valid IP network.");
        assert!(parse_cidr(Some("10.0.0.1")).is_err());
    }

    #[test]
    fn ingress_rules_as_nova_checks_them() {
        let tcp = json!("tcp");
        let r = new_ingress_rule(
            Some(&tcp),
            Some(&json!(22)),
            Some(&json!("22")),
            None,
            Some("0.0.0.0/0"),
        )
        .expect("ok")
        .expect("a rule");
        assert_eq!(r["from_port"], json!(22));
        assert_eq!(r["to_port"], json!(22));
        assert_eq!(r["protocol"], json!("tcp"));
        // a cidr rule needs protocol and ports
        assert!(
            new_ingress_rule(None, None, None, None, Some("0.0.0.0/0"))
                .expect("ok")
                .is_none()
        );
        // a group rule opens everything
        let g = new_ingress_rule(Some(&tcp), None, None, Some("g"), None)
            .expect("ok")
            .expect("rule");
        assert_eq!(
            (g["from_port"].clone(), g["to_port"].clone()),
            (json!(1), json!(65535))
        );
        let e = |p: &str, f: Value, t: Value| {
            new_ingress_rule(Some(&json!(p)), Some(&f), Some(&t), None, Some("0.0.0.0/0"))
                .expect_err(p)
                .to_string()
        };
        assert_eq!(
            e("tcp", json!(30), json!(20)),
            "Invalid port range 30:20. Former value cannot be greater than the later"
        );
        assert_eq!(
            e("udp", json!(0), json!(20)),
            "Invalid port range 0:20. Valid UDP ports should be between 1-65535"
        );
        assert_eq!(
            e("icmp", json!(-2), json!(0)),
            "Invalid port range -2:0. For ICMP, the type:code must be valid"
        );
        assert_eq!(e("gre", json!(1), json!(2)), "Invalid IP protocol gre.");
        assert_eq!(
            e("tcp", json!("x"), json!(2)),
            "Invalid input received: To and From ports must be integers"
        );
    }

    #[test]
    fn groups_in_novas_shape() {
        let g = json!({
            "id": "g1", "name": "web", "description": "d", "project_id": "p",
            "security_group_rules": [
                {"id": "r1", "direction": "ingress", "protocol": "tcp", "port_range_min": null,
                 "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": null,
                 "security_group_id": "g1"},
                {"id": "r2", "direction": "ingress", "protocol": null, "port_range_min": null,
                 "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": "g1",
                 "security_group_id": "g1"},
                {"id": "r3", "direction": "egress", "protocol": null, "port_range_min": null,
                 "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": null,
                 "security_group_id": "g1"},
                {"id": "r4", "direction": "ingress", "protocol": "icmp", "port_range_min": null,
                 "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": "gone",
                 "security_group_id": "g1"}
            ]
        });
        let mut known = HashMap::new();
        known.insert("g1".to_string(), Some(g.clone()));
        known.insert("gone".to_string(), None);
        let out = format_group(&g, &known);
        assert_eq!(out["tenant_id"], "p");
        let rules = out["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 2, "{out}");
        assert_eq!(rules[0]["from_port"], 1);
        assert_eq!(rules[0]["to_port"], 65535);
        assert_eq!(rules[0]["ip_range"], json!({"cidr": "0.0.0.0/0"}));
        assert_eq!(rules[0]["group"], json!({}));
        assert_eq!(rules[1]["group"], json!({"name": "web", "tenant_id": "p"}));
        assert_eq!(rules[1]["ip_range"], json!({}));
        assert_eq!(rules[1]["ip_protocol"], Value::Null);
    }
}
