//! Security groups and their rules (Neutron's `security-group` extension, with
//! `stateful-security-group`, `security-groups-normalized-cidr` and
//! `security-groups-rules-belongs-to-default-sg`).
//!
//! Every project has one default group, `default`, made on first need (listing groups or rules,
//! creating a group, a port without groups) inside the caller's write transaction, with Neutron's
//! four template rules; any other new group gets the two egress rules.

use common::auth::AuthContext;
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::attrs::*;
use super::{NetworkService, SECURITY_GROUP, SECURITY_GROUP_RULE};
use crate::error::{NetError, Result};
use crate::model::{IP_PROTOCOLS, SecurityGroup, SecurityGroupRule, now, protocol_number};
use crate::store;

pub const SECURITY_GROUP_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "stateful",
    "shared",
    "security_group_rules",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const SECURITY_GROUP_POST: &[&str] =
    &["name", "description", "tenant_id", "project_id", "stateful"];
const SECURITY_GROUP_PUT: &[&str] = &["name", "description", "stateful"];

pub const SECURITY_GROUP_RULE_KEYS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "normalized_cidr",
    "remote_group_id",
    "belongs_to_default_sg",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
/// Attributes a rule body may name: the rendered ones and `remote_address_group_id` (address
/// groups are not implemented: only `null` is accepted).
const SECURITY_GROUP_RULE_KNOWN: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "normalized_cidr",
    "remote_group_id",
    "remote_address_group_id",
    "belongs_to_default_sg",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const SECURITY_GROUP_RULE_POST: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "tenant_id",
    "project_id",
];

pub const DEFAULT_SG_NAME: &str = "default";
pub const DEFAULT_SG_DESCRIPTION: &str = "Default security group";

/// Protocols that take a port range (Neutron's SG_PORT_PROTO_NUMS: dccp, sctp, tcp, udp,
/// udplite).
const PORT_PROTOCOLS: &[u8] = &[33, 132, 6, 17, 136];
/// Protocols that exist only for IPv6 (names and numbers as strings).
const IPV6_ONLY_PROTOCOLS: &[&str] = &[
    "ipv6-encap",
    "ipv6-frag",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
    "41",
    "44",
    "58",
    "59",
    "60",
    "43",
];

fn in_use(kind: &'static str, msg: String) -> NetError {
    NetError::conflict(kind, msg)
}

/// Neutron's sg_supported_protocols as Python prints the tuple.
fn supported_protocols() -> String {
    let mut s = String::from("(None, 'any'");
    for (n, _) in IP_PROTOCOLS {
        s.push_str(&format!(", '{n}'"));
    }
    s.push(')');
    s
}

fn invalid_protocol(v: &Value) -> NetError {
    NetError::invalid(
        "SecurityGroupRuleInvalidProtocol",
        format!(
            "Security group rule protocol {} not supported. Only protocol values {} and integer representations [0 to 255] are supported.",
            py(v),
            supported_protocols()
        ),
    )
}

/// Neutron's convert_protocol: `None`/`any` is any protocol; a number 0-255 (kept as given);
/// a name of the table, lower-cased.
pub fn convert_protocol(v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) if (0..=255).contains(&i) => Ok(Some(i.to_string())),
            _ => Err(invalid_protocol(v)),
        },
        Value::String(s) => {
            if let Ok(i) = s.trim().parse::<i64>() {
                return if (0..=255).contains(&i) {
                    Ok(Some(s.clone()))
                } else {
                    Err(invalid_protocol(v))
                };
            }
            let l = s.to_lowercase();
            if l == "any" {
                Ok(None)
            } else if IP_PROTOCOLS.iter().any(|(n, _)| *n == l) {
                Ok(Some(l))
            } else {
                Err(invalid_protocol(v))
            }
        }
        _ => Err(invalid_protocol(v)),
    }
}

/// Neutron's convert_ethertype_to_case_insensitive.
pub fn convert_ethertype(v: &Value) -> Result<String> {
    if let Value::String(s) = v {
        for e in ["IPv4", "IPv6"] {
            if e.eq_ignore_ascii_case(s) {
                return Ok(e.to_string());
            }
        }
    }
    Err(NetError::invalid(
        "SecurityGroupRuleInvalidEtherType",
        format!(
            "Security group rule for ethertype '{}' not supported. Allowed values are ['IPv4', 'IPv6'].",
            py(v)
        ),
    ))
}

/// Neutron's convert_validate_port_value: 0-65535, numbers or numeric strings.
pub fn convert_port(v: &Value) -> Result<Option<u32>> {
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (0..=65535).contains(&n) => Ok(Some(n as u32)),
        _ => Err(NetError::invalid(
            "SecurityGroupInvalidPortValue",
            format!("Invalid value for port {}", py(v)),
        )),
    }
}

/// Neutron's convert_ip_prefix_to_cidr: an address or a CIDR (host bits kept), `None` if empty.
pub fn convert_ip_prefix(v: &Value) -> Result<Option<String>> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.trim(),
        other => {
            return Err(NetError::invalid(
                "InvalidCIDR",
                format!("Invalid CIDR {} given as IP prefix.", py(other)),
            ));
        }
    };
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(Some(n.to_string()));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(Some(ipnet::IpNet::from(a).to_string()));
    }
    Err(NetError::invalid(
        "InvalidCIDR",
        format!("Invalid CIDR {s} given as IP prefix."),
    ))
}

/// Neutron's checks of a rule's attributes together (`_validate_base_security_group_rule_
/// attributes`), after making IPv6 ICMP and the full port range canonical.
pub fn validate_rule(r: &mut SecurityGroupRule) -> Result<()> {
    if r.ethertype == "IPv6" {
        match r.protocol.as_deref() {
            Some("icmp") | Some("icmpv6") => r.protocol = Some("ipv6-icmp".into()),
            Some("1") => r.protocol = Some("58".into()),
            _ => {}
        }
    }
    if r.port_range_min == Some(1) && r.port_range_max == Some(65535) {
        r.port_range_min = None;
        r.port_range_max = None;
    }
    // Port range.
    if r.port_range_min.is_some() || r.port_range_max.is_some() {
        let Some(proto) = r.protocol.as_deref() else {
            return Err(NetError::invalid(
                "SecurityGroupProtocolRequiredWithPorts",
                "Must also specify protocol if port range is given.",
            ));
        };
        let num = protocol_number(proto).unwrap_or_default();
        if PORT_PROTOCOLS.contains(&num) {
            if r.port_range_min == Some(0) || r.port_range_max == Some(0) {
                return Err(NetError::invalid(
                    "SecurityGroupInvalidPortValue",
                    "Invalid value for port 0",
                ));
            }
            match (r.port_range_min, r.port_range_max) {
                (Some(a), Some(b)) if a <= b => {}
                _ => {
                    return Err(NetError::invalid(
                        "SecurityGroupInvalidPortRange",
                        "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                    ));
                }
            }
        } else if num == 1 || num == 58 {
            for (attr, field, v) in [
                ("port_range_min", "type", r.port_range_min),
                ("port_range_max", "code", r.port_range_max),
            ] {
                if let Some(v) = v
                    && v > 255
                {
                    return Err(NetError::invalid(
                        "SecurityGroupInvalidIcmpValue",
                        format!(
                            "Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."
                        ),
                    ));
                }
            }
            if let (None, Some(code)) = (r.port_range_min, r.port_range_max) {
                return Err(NetError::invalid(
                    "SecurityGroupMissingIcmpType",
                    format!(
                        "ICMP code (port-range-max) {code} is provided but ICMP type (port-range-min) is missing."
                    ),
                ));
            }
        } else {
            return Err(NetError::invalid(
                "SecurityGroupInvalidProtocolForPort",
                format!(
                    "Ports cannot be specified for protocol {num}. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE."
                ),
            ));
        }
    }
    // Prefix and ethertype.
    if let Some(p) = &r.remote_ip_prefix
        && let Ok(n) = p.parse::<ipnet::IpNet>()
    {
        let v = if n.addr().is_ipv4() { "IPv4" } else { "IPv6" };
        if v != r.ethertype {
            return Err(NetError::invalid(
                "SecurityGroupRuleParameterConflict",
                format!("Conflicting value ethertype {} for CIDR {p}", r.ethertype),
            ));
        }
    }
    if r.ethertype == "IPv4"
        && let Some(p) = r.protocol.as_deref()
        && IPV6_ONLY_PROTOCOLS.contains(&p)
    {
        return Err(NetError::invalid(
            "SecurityGroupEthertypeConflictWithProtocol",
            format!("Invalid ethertype IPv4 for protocol {p}."),
        ));
    }
    if r.remote_ip_prefix.is_some() && r.remote_group_id.is_some() {
        return Err(NetError::invalid(
            "SecurityGroupMultipleRemoteEntites",
            "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
        ));
    }
    Ok(())
}

/// What makes two rules the same (Neutron's `_rule_to_key`): the any-address prefixes equal no
/// prefix, protocols compare by number (names that share a number by name).
fn rule_key(r: &SecurityGroupRule) -> String {
    let proto = r.protocol.as_deref().map(|p| {
        let num = protocol_number(p);
        match p {
            "hopopt" => "hopopt".to_string(),
            _ => num.map(|n| n.to_string()).unwrap_or_else(|| p.to_string()),
        }
    });
    let prefix = r
        .remote_ip_prefix
        .as_deref()
        .filter(|p| *p != "0.0.0.0/0" && *p != "::/0");
    let o = |v: Option<String>| v.unwrap_or_else(|| "+".into());
    [
        r.direction.clone(),
        r.ethertype.clone(),
        o(r.port_range_max.map(|v| v.to_string())),
        o(r.port_range_min.map(|v| v.to_string())),
        o(proto),
        o(r.remote_group_id.clone()),
        o(prefix.map(str::to_string)),
        r.security_group_id.clone(),
    ]
    .join("_")
}

impl NetworkService {
    // ------------------------------------------------------------ security groups

    pub(crate) fn sg_target(g: &SecurityGroup) -> Value {
        json!({
            "id": g.id, "project_id": g.project_id, "tenant_id": g.project_id,
            "name": g.name, "shared": "False",
        })
    }

    pub(crate) fn sg_rule_target(r: &SecurityGroupRule, g: &SecurityGroup) -> Value {
        json!({
            "id": r.id, "project_id": r.project_id, "tenant_id": r.project_id,
            "security_group_id": r.security_group_id,
            "security_group:project_id": g.project_id,
            "security_group:tenant_id": g.project_id,
            "belongs_to_default_sg": if g.is_default() { "True" } else { "False" },
        })
    }

    /// Neutron's query scoping of groups: admin sees all, others their project's.
    fn sg_visible(&self, ctx: &AuthContext, g: &SecurityGroup) -> bool {
        self.is_admin(ctx) || ctx.project_id() == Some(&g.project_id)
    }

    fn sg_readable(&self, ctx: &AuthContext, g: &SecurityGroup) -> bool {
        self.sg_visible(ctx, g) && self.allowed(ctx, "get_security_group", &Self::sg_target(g))
    }

    /// A rule is seen through its group's owner (`get_security_group_rule`: admin, or a reader
    /// of the group's project).
    fn sg_rule_readable(
        &self,
        ctx: &AuthContext,
        r: &SecurityGroupRule,
        g: &SecurityGroup,
    ) -> bool {
        (self.is_admin(ctx) || ctx.project_id() == Some(&g.project_id))
            && self.allowed(ctx, "get_security_group_rule", &Self::sg_rule_target(r, g))
    }

    pub(crate) async fn load_security_group<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<SecurityGroup>> {
        super::read(c, SECURITY_GROUP, id).await
    }

    async fn lookup_security_group<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<SecurityGroup> {
        match self.load_security_group(c, id).await? {
            Some(g) if self.sg_readable(ctx, &g) => Ok(g),
            _ => Err(NetError::security_group_not_found(id)),
        }
    }

    async fn group_rules<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        group: &str,
    ) -> Result<Vec<SecurityGroupRule>> {
        super::read_children(c, SECURITY_GROUP_RULE, group).await
    }

    async fn all_groups<C: sea_orm::ConnectionTrait>(&self, c: &C) -> Result<Vec<SecurityGroup>> {
        super::read_all(c, SECURITY_GROUP).await
    }

    async fn all_rules<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
    ) -> Result<Vec<SecurityGroupRule>> {
        super::read_all(c, SECURITY_GROUP_RULE).await
    }

    /// The id of `project`'s default group, if it has one.
    async fn default_group_id<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .all_groups(c)
            .await?
            .into_iter()
            .find(|g| g.project_id == project && g.is_default())
            .map(|g| g.id))
    }

    /// Neutron's template rules of a new group: egress IPv4 and IPv6 to anywhere; for the
    /// default group also ingress IPv4 and IPv6 from the group itself.
    fn template_rules(g: &SecurityGroup) -> Vec<SecurityGroupRule> {
        let mut shapes = vec![("egress", "IPv4", None), ("egress", "IPv6", None)];
        if g.is_default() {
            shapes.push(("ingress", "IPv4", Some(g.id.clone())));
            shapes.push(("ingress", "IPv6", Some(g.id.clone())));
        }
        shapes
            .into_iter()
            .map(|(direction, ethertype, remote)| SecurityGroupRule {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: g.project_id.clone(),
                security_group_id: g.id.clone(),
                direction: direction.into(),
                ethertype: ethertype.into(),
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote_ip_prefix: None,
                remote_group_id: remote,
                description: String::new(),
                created_at: g.created_at.clone(),
                updated_at: g.created_at.clone(),
                revision_number: 0,
            })
            .collect()
    }

    async fn insert_group<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        g: &SecurityGroup,
        rules: &[SecurityGroupRule],
    ) -> Result<()> {
        store::insert(
            c,
            store::NewRow {
                kind: SECURITY_GROUP,
                id: &g.id,
                project_id: &g.project_id,
                parent_id: None,
                created_at: &g.created_at,
                body: serde_json::to_string(g)?,
            },
        )
        .await?;
        for r in rules {
            self.insert_rule(c, r).await?;
        }
        Ok(())
    }

    async fn insert_rule<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        r: &SecurityGroupRule,
    ) -> Result<()> {
        store::insert(
            c,
            store::NewRow {
                kind: SECURITY_GROUP_RULE,
                id: &r.id,
                project_id: &r.project_id,
                parent_id: Some(&r.security_group_id),
                created_at: &r.created_at,
                body: serde_json::to_string(r)?,
            },
        )
        .await?;
        Ok(())
    }

    /// The default group of `project_id`, made if missing (for kumo's own setup: the demo
    /// project's rules).
    pub async fn default_security_group_id(&self, project_id: &str) -> Result<String> {
        let w = self.write().await?;
        let id = self.ensure_default_security_group(&*w, project_id).await?;
        w.commit().await?;
        self.changed();
        Ok(id)
    }

    /// The id of `project_id`'s default security group, made (with its four rules) if the
    /// project has none. `c` must be the caller's write transaction: the check and the insert
    /// cannot interleave with another request's. The rules count against the project's
    /// `security_group_rule` quota (409 OverQuota), the group itself does not (as Neutron).
    pub(crate) async fn ensure_default_security_group<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project_id: &str,
    ) -> Result<String> {
        if let Some(id) = self.default_group_id(c, project_id).await? {
            return Ok(id);
        }
        let ts = now();
        let g = SecurityGroup {
            id: uuid::Uuid::new_v4().to_string(),
            name: DEFAULT_SG_NAME.into(),
            description: DEFAULT_SG_DESCRIPTION.into(),
            project_id: project_id.into(),
            stateful: true,
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        };
        let rules = Self::template_rules(&g);
        self.check_quota(c, project_id, SECURITY_GROUP_RULE, rules.len() as i64)
            .await?;
        self.insert_group(c, &g, &rules).await?;
        tracing::info!(project = %project_id, id = %g.id, "default security group created");
        Ok(g.id)
    }

    /// Make the caller's project's default group if it has none (listing groups or rules does,
    /// as in Neutron). A read first: the write transaction only when something is missing.
    async fn ensure_caller_default(&self, ctx: &AuthContext) -> Result<()> {
        let Some(project) = ctx.project_id() else {
            return Ok(());
        };
        if self
            .default_group_id(self.db.conn(), project)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let w = self.write().await?;
        self.ensure_default_security_group(&*w, project).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// Each of `ids` must be a group `ctx` may use (admin: any; others: their project's), else
    /// 404 SecurityGroupNotFound naming the missing ones (as Neutron, joined by ", ").
    // For ports (another change): until they call it, only the tests do.
    pub(crate) async fn check_security_groups<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        ids: &[String],
    ) -> Result<()> {
        let mut missing: Vec<&str> = Vec::new();
        for id in ids {
            let ok = match self.load_security_group(c, id).await? {
                Some(g) => self.sg_visible(ctx, &g),
                None => false,
            };
            if !ok && !missing.contains(&id.as_str()) {
                missing.push(id);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NetError::security_group_not_found(&missing.join(", ")))
        }
    }

    /// Every group and every rule (for the data plane).
    pub async fn security_groups_snapshot(
        &self,
    ) -> Result<(Vec<SecurityGroup>, Vec<SecurityGroupRule>)> {
        let c = self.db.conn();
        Ok((self.all_groups(c).await?, self.all_rules(c).await?))
    }

    /// The ids of the ports that use group `id` (ports are rows of kind `port` whose body has
    /// `"security_groups": [ids]`).
    async fn ports_using<C: sea_orm::ConnectionTrait>(&self, c: &C, id: &str) -> Result<bool> {
        for b in store::list(c, "port").await? {
            let v: Value = serde_json::from_str(&b)?;
            if let Some(list) = v.get("security_groups").and_then(Value::as_array)
                && list.iter().any(|x| x.as_str() == Some(id))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn parse_sg_name(v: &Value) -> Result<String> {
        let name = to_string("name", v, 255)?;
        if name.to_lowercase() == DEFAULT_SG_NAME {
            return Err(in_use(
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists.".into(),
            ));
        }
        Ok(name)
    }

    fn parse_new_security_group(
        &self,
        ctx: &AuthContext,
        body: &Map<String, Value>,
    ) -> Result<SecurityGroup> {
        check_keys(body, SECURITY_GROUP_KEYS, SECURITY_GROUP_POST, false)?;
        let name = match body.get("name") {
            Some(v) => Self::parse_sg_name(v)?,
            None => String::new(),
        };
        let description = body
            .get("description")
            .map(|v| to_string("description", v, 255))
            .transpose()?
            .unwrap_or_default();
        let stateful = body
            .get("stateful")
            .map(|v| to_bool("stateful", v))
            .transpose()?
            .unwrap_or(true);
        let ts = now();
        Ok(SecurityGroup {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            description,
            project_id: owner(ctx, body)?,
            stateful,
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        })
    }

    /// Create security groups (one, or a bulk request: all or nothing), each with its two egress
    /// rules; the project's default group is made first if it has none.
    pub async fn create_security_groups(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let mut groups = Vec::new();
        for body in bodies {
            let g = self.parse_new_security_group(ctx, body)?;
            self.authorize(ctx, "create_security_group", &[], &Self::sg_target(&g))?;
            groups.push(g);
        }
        let w = self.write().await?;
        let mut per_project: HashMap<String, i64> = HashMap::new();
        for g in &groups {
            *per_project.entry(g.project_id.clone()).or_default() += 1;
        }
        // Neutron: the API checks the group quota, then the plugin makes the default group and
        // checks the template rules against the rule quota.
        for (p, k) in &per_project {
            self.check_quota(&*w, p, SECURITY_GROUP, *k).await?;
        }
        let admin = self.is_admin(ctx);
        for p in per_project.keys() {
            if admin || ctx.project_id() == Some(p.as_str()) {
                self.ensure_default_security_group(&*w, p).await?;
            }
        }
        let mut out = Vec::new();
        let mut rules_per_project: HashMap<String, i64> = HashMap::new();
        let made: Vec<(SecurityGroup, Vec<SecurityGroupRule>)> = groups
            .into_iter()
            .map(|g| {
                let r = Self::template_rules(&g);
                *rules_per_project.entry(g.project_id.clone()).or_default() += r.len() as i64;
                (g, r)
            })
            .collect();
        for (p, k) in &rules_per_project {
            self.check_quota(&*w, p, SECURITY_GROUP_RULE, *k).await?;
        }
        for (g, rules) in &made {
            self.insert_group(&*w, g, rules).await?;
            out.push(g.render(rules));
        }
        w.commit().await?;
        self.changed();
        Ok(out)
    }

    /// Every group the caller may see, with its rules (the caller's default group is made first
    /// if missing, as Neutron's list does).
    pub async fn list_security_groups(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        self.ensure_caller_default(ctx).await?;
        let c = self.db.conn();
        let mut rules: HashMap<String, Vec<SecurityGroupRule>> = HashMap::new();
        for r in self.all_rules(c).await? {
            rules
                .entry(r.security_group_id.clone())
                .or_default()
                .push(r);
        }
        let mut out = Vec::new();
        for g in self.all_groups(c).await? {
            if self.sg_readable(ctx, &g) {
                out.push(g.render(rules.get(&g.id).map(Vec::as_slice).unwrap_or_default()));
            }
        }
        Ok(out)
    }

    pub async fn get_security_group(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let c = self.db.conn();
        let g = self.lookup_security_group(c, ctx, id).await?;
        Ok(g.render(&self.group_rules(c, id).await?))
    }

    pub async fn update_security_group(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, SECURITY_GROUP_KEYS, SECURITY_GROUP_PUT, true)?;
        let name = body.get("name").map(Self::parse_sg_name).transpose()?;
        let description = body
            .get("description")
            .map(|v| to_string("description", v, 255))
            .transpose()?;
        let stateful = body
            .get("stateful")
            .map(|v| to_bool("stateful", v))
            .transpose()?;
        let w = self.write().await?;
        let mut g = self.lookup_security_group(&*w, ctx, id).await?;
        check_revision(if_match, g.revision_number)?;
        self.authorize(ctx, "update_security_group", &[], &Self::sg_target(&g))?;
        if let Some(s) = stateful
            && s != g.stateful
            && self.ports_using(&*w, id).await?
        {
            return Err(in_use(
                "SecurityGroupInUse",
                format!("Security Group {id} in use."),
            ));
        }
        if g.is_default() && name.is_some() {
            return Err(in_use(
                "SecurityGroupCannotUpdateDefault",
                "Updating default security group not allowed.".into(),
            ));
        }
        if let Some(n) = name {
            g.name = n;
        }
        if let Some(d) = description {
            g.description = d;
        }
        if let Some(s) = stateful {
            g.stateful = s;
        }
        g.updated_at = now();
        g.revision_number += 1;
        store::update(&*w, &g.id, serde_json::to_string(&g)?).await?;
        let rules = self.group_rules(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(g.render(&rules))
    }

    /// Delete a group and its rules, and the rules of other groups that name it as their remote
    /// group (Neutron's foreign key cascades). 409 SecurityGroupInUse while a port uses it;
    /// the default group only by an admin (409 SecurityGroupCannotRemoveDefault).
    pub async fn delete_security_group(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let g = self.lookup_security_group(&*w, ctx, id).await?;
        check_revision(if_match, g.revision_number)?;
        self.authorize(ctx, "delete_security_group", &[], &Self::sg_target(&g))?;
        // Neutron's order: the default group's owner is told it cannot, before "in use".
        if g.is_default() && !self.is_admin(ctx) {
            return Err(in_use(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.".into(),
            ));
        }
        if self.ports_using(&*w, id).await? {
            return Err(in_use(
                "SecurityGroupInUse",
                format!("Security Group {id} in use."),
            ));
        }
        let mut touched: HashSet<String> = HashSet::new();
        for r in self.all_rules(&*w).await? {
            if r.remote_group_id.as_deref() == Some(id) && r.security_group_id != id {
                store::delete(&*w, &r.id).await?;
                touched.insert(r.security_group_id);
            }
        }
        for other in touched {
            self.bump_group(&*w, &other).await?;
        }
        store::delete_children(&*w, id).await?;
        store::delete(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// A rule change revises its group (Neutron: rules `revises_on_change` their group).
    async fn bump_group<C: sea_orm::ConnectionTrait>(&self, c: &C, id: &str) -> Result<()> {
        if let Some(mut g) = self.load_security_group(c, id).await? {
            g.revision_number += 1;
            g.updated_at = now();
            store::update(c, &g.id, serde_json::to_string(&g)?).await?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ security group rules

    /// A rule as the request gives it: attribute conversion and validation (neutron-lib's),
    /// then Neutron's checks of the attributes together.
    pub(crate) fn parse_new_security_group_rule(
        &self,
        ctx: &AuthContext,
        body: &Map<String, Value>,
    ) -> Result<SecurityGroupRule> {
        check_keys(
            body,
            SECURITY_GROUP_RULE_KNOWN,
            SECURITY_GROUP_RULE_POST,
            false,
        )?;
        if let Some(v) = body.get("remote_address_group_id")
            && !v.is_null()
        {
            return Err(NetError::bad(
                "Unrecognized attribute(s) 'remote_address_group_id'",
            ));
        }
        for k in ["security_group_id", "direction"] {
            if !body.contains_key(k) {
                return Err(NetError::bad(format!(
                    "Failed to parse request. Required attribute '{k}' not specified"
                )));
            }
        }
        let remote_group_id = match body.get("remote_group_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(py(v)),
        };
        let protocol = match body.get("protocol") {
            Some(v) => convert_protocol(v)?,
            None => None,
        };
        let port_range_min = match body.get("port_range_min") {
            Some(v) => convert_port(v)?,
            None => None,
        };
        let port_range_max = match body.get("port_range_max") {
            Some(v) => convert_port(v)?,
            None => None,
        };
        let ethertype = match body.get("ethertype") {
            Some(v) => convert_ethertype(v)?,
            None => "IPv4".to_string(),
        };
        let remote_ip_prefix = match body.get("remote_ip_prefix") {
            Some(v) => convert_ip_prefix(v)?,
            None => None,
        };
        let security_group_id = to_string("security_group_id", &body["security_group_id"], 36)?;
        let direction = match &body["direction"] {
            Value::String(s) if s == "ingress" || s == "egress" => s.clone(),
            other => {
                return Err(NetError::invalid_attr(
                    "direction",
                    format!("{} is not in ['ingress', 'egress']", py(other)),
                ));
            }
        };
        let description = body
            .get("description")
            .map(|v| to_string("description", v, 255))
            .transpose()?
            .unwrap_or_default();
        let ts = now();
        let mut r = SecurityGroupRule {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: owner(ctx, body)?,
            security_group_id,
            direction,
            ethertype,
            protocol,
            port_range_min,
            port_range_max,
            remote_ip_prefix,
            remote_group_id,
            description,
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 0,
        };
        validate_rule(&mut r)?;
        Ok(r)
    }

    /// A group a rule of `project` may name (its own group or its remote group): admin any,
    /// others their project's (Neutron's `_check_security_group` with the rule's project).
    async fn rule_group<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        project: &str,
        id: &str,
    ) -> Result<SecurityGroup> {
        match self.load_security_group(c, id).await? {
            Some(g) if self.is_admin(ctx) || g.project_id == project => Ok(g),
            _ => Err(NetError::security_group_not_found(id)),
        }
    }

    /// Create rules (one, or a bulk request: one group and one project, all or nothing).
    pub async fn create_security_group_rules(
        &self,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        let mut rules = Vec::new();
        for body in bodies {
            rules.push(self.parse_new_security_group_rule(ctx, body)?);
        }
        if rules.len() > 1 {
            if rules
                .iter()
                .any(|r| r.security_group_id != rules[0].security_group_id)
            {
                return Err(NetError::invalid(
                    "SecurityGroupNotSingleGroupRules",
                    "Only allowed to update rules for one security profile at a time",
                ));
            }
            if rules.iter().any(|r| r.project_id != rules[0].project_id) {
                return Err(NetError::invalid(
                    "SecurityGroupRulesNotSingleProject",
                    "Multiple project_ids in bulk security group rule create not allowed",
                ));
            }
        }
        let w = self.write().await?;
        let mut groups: HashMap<String, SecurityGroup> = HashMap::new();
        for r in &rules {
            if let Some(remote) = &r.remote_group_id {
                self.rule_group(&*w, ctx, &r.project_id, remote).await?;
            }
            let g = self
                .rule_group(&*w, ctx, &r.project_id, &r.security_group_id)
                .await?;
            self.authorize(
                ctx,
                "create_security_group_rule",
                &[],
                &Self::sg_rule_target(r, &g),
            )?;
            groups.insert(g.id.clone(), g);
        }
        let mut per_project: HashMap<&str, i64> = HashMap::new();
        for r in &rules {
            *per_project.entry(&r.project_id).or_default() += 1;
        }
        for (p, k) in &per_project {
            self.check_quota(&*w, p, SECURITY_GROUP_RULE, *k).await?;
        }
        let mut seen: HashSet<String> = HashSet::new();
        for r in &rules {
            if !seen.insert(rule_key(r)) {
                return Err(in_use(
                    "DuplicateSecurityGroupRuleInPost",
                    "Duplicate Security Group Rule in POST.".into(),
                ));
            }
        }
        for gid in groups.keys() {
            for existing in self.group_rules(&*w, gid).await? {
                if seen.contains(&rule_key(&existing)) {
                    return Err(in_use(
                        "SecurityGroupRuleExists",
                        format!(
                            "Security group rule already exists. Rule id is {}.",
                            existing.id
                        ),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for r in &rules {
            self.insert_rule(&*w, r).await?;
            out.push(r.render(groups[&r.security_group_id].is_default()));
        }
        for gid in groups.keys() {
            self.bump_group(&*w, gid).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(out)
    }

    pub async fn list_security_group_rules(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        self.ensure_caller_default(ctx).await?;
        let c = self.db.conn();
        let groups: HashMap<String, SecurityGroup> = self
            .all_groups(c)
            .await?
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        let mut out = Vec::new();
        for r in self.all_rules(c).await? {
            if let Some(g) = groups.get(&r.security_group_id)
                && self.sg_rule_readable(ctx, &r, g)
            {
                out.push(r.render(g.is_default()));
            }
        }
        Ok(out)
    }

    async fn lookup_security_group_rule<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<(SecurityGroupRule, SecurityGroup)> {
        if let Some(b) = store::get(c, SECURITY_GROUP_RULE, id).await? {
            let r: SecurityGroupRule = serde_json::from_str(&b)?;
            if let Some(g) = self.load_security_group(c, &r.security_group_id).await?
                && self.sg_rule_readable(ctx, &r, &g)
            {
                return Ok((r, g));
            }
        }
        Err(NetError::security_group_rule_not_found(id))
    }

    pub async fn get_security_group_rule(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let (r, g) = self
            .lookup_security_group_rule(self.db.conn(), ctx, id)
            .await?;
        Ok(r.render(g.is_default()))
    }

    /// Rules cannot be changed: Neutron has no update for them.
    pub fn update_security_group_rule(&self) -> Result<Value> {
        Err(NetError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "HTTPMethodNotAllowed",
            "The method PUT is not allowed for this resource.",
        ))
    }

    pub async fn delete_security_group_rule(
        &self,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let (r, g) = self.lookup_security_group_rule(&*w, ctx, id).await?;
        check_revision(if_match, r.revision_number)?;
        self.authorize(
            ctx,
            "delete_security_group_rule",
            &[],
            &Self::sg_rule_target(&r, &g),
        )?;
        store::delete(&*w, id).await?;
        self.bump_group(&*w, &g.id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{ctx, obj, svc};

    fn kind(r: Result<impl std::fmt::Debug>) -> (&'static str, String) {
        let e = r.unwrap_err();
        (e.kind, e.message)
    }

    fn rule_body(sg: &str, extra: Value) -> Map<String, Value> {
        let mut m = obj(json!({"security_group_id": sg, "direction": "ingress"}));
        m.extend(obj(extra));
        m
    }

    #[test]
    fn conversions() {
        assert_eq!(
            convert_protocol(&json!("TCP")).unwrap().as_deref(),
            Some("tcp")
        );
        assert_eq!(convert_protocol(&json!(6)).unwrap().as_deref(), Some("6"));
        assert_eq!(convert_protocol(&json!("any")).unwrap(), None);
        let (k, m) = kind(convert_protocol(&json!(256)));
        assert_eq!(k, "SecurityGroupRuleInvalidProtocol");
        assert!(m.starts_with("Security group rule protocol 256 not supported. Only protocol values (None, 'any', 'ah', 'dccp'"), "{m}");
        assert!(m.ends_with("'vrrp') and integer representations [0 to 255] are supported."));
        assert_eq!(
            kind(convert_protocol(&json!("foo"))).0,
            "SecurityGroupRuleInvalidProtocol"
        );
        assert_eq!(convert_ethertype(&json!("ipv6")).unwrap(), "IPv6");
        assert_eq!(
            kind(convert_ethertype(&json!("IPv5"))).1,
            "Security group rule for ethertype 'IPv5' not supported. Allowed values are ['IPv4', 'IPv6']."
        );
        assert_eq!(convert_port(&json!("22")).unwrap(), Some(22));
        assert_eq!(
            kind(convert_port(&json!(65536))).1,
            "Invalid value for port 65536"
        );
        assert_eq!(
            convert_ip_prefix(&json!("10.0.0.5")).unwrap().as_deref(),
            Some("10.0.0.5/32")
        );
        assert_eq!(
            convert_ip_prefix(&json!("10.0.0.5/24")).unwrap().as_deref(),
            Some("10.0.0.5/24")
        );
        assert_eq!(convert_ip_prefix(&json!("")).unwrap(), None);
        assert_eq!(
            kind(convert_ip_prefix(&json!("10.0.0.0/33"))),
            (
                "InvalidCIDR",
                "Invalid CIDR 10.0.0.0/33 given as IP prefix.".into()
            )
        );
        assert_eq!(protocol_number("icmpv6"), Some(58));
        assert_eq!(protocol_number("132"), Some(132));
        assert_eq!(protocol_number("bogus"), None);
    }

    #[tokio::test]
    async fn rule_validation() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let a = ctx("pa", &["member", "reader"]);
        let p = |extra: Value| s.parse_new_security_group_rule(&a, &rule_body("g", extra));
        let cases: &[(Value, &str, &str)] = &[
            (
                json!({"port_range_min": 22}),
                "SecurityGroupProtocolRequiredWithPorts",
                "Must also specify protocol if port range is given.",
            ),
            (
                json!({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}),
                "SecurityGroupInvalidPortRange",
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            ),
            (
                json!({"protocol": "tcp", "port_range_min": 22}),
                "SecurityGroupInvalidPortRange",
                "",
            ),
            (
                json!({"protocol": "udp", "port_range_min": 0, "port_range_max": 5}),
                "SecurityGroupInvalidPortValue",
                "Invalid value for port 0",
            ),
            (
                json!({"protocol": "icmp", "port_range_min": 256}),
                "SecurityGroupInvalidIcmpValue",
                "Invalid value for ICMP type (port_range_min) 256. It must be 0 to 255.",
            ),
            (
                json!({"protocol": "icmp", "port_range_max": 3}),
                "SecurityGroupMissingIcmpType",
                "ICMP code (port-range-max) 3 is provided but ICMP type (port-range-min) is missing.",
            ),
            (
                json!({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}),
                "SecurityGroupInvalidProtocolForPort",
                "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.",
            ),
            (
                json!({"remote_ip_prefix": "2001:db8::/64"}),
                "SecurityGroupRuleParameterConflict",
                "Conflicting value ethertype IPv4 for CIDR 2001:db8::/64",
            ),
            (
                json!({"protocol": "ipv6-icmp"}),
                "SecurityGroupEthertypeConflictWithProtocol",
                "Invalid ethertype IPv4 for protocol ipv6-icmp.",
            ),
            (
                json!({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "x"}),
                "SecurityGroupMultipleRemoteEntites",
                "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
            ),
            (
                json!({"direction": "sideways"}),
                "HTTPBadRequest",
                "Invalid input for direction. Reason: sideways is not in ['ingress', 'egress'].",
            ),
            (
                json!({"bogus": 1}),
                "HTTPBadRequest",
                "Unrecognized attribute(s) 'bogus'",
            ),
        ];
        for (extra, k, m) in cases {
            let (gk, gm) = kind(p(extra.clone()));
            assert_eq!(gk, *k, "{extra}");
            if !m.is_empty() {
                assert_eq!(gm, *m, "{extra}");
            }
        }
        let e = s
            .parse_new_security_group_rule(&a, &obj(json!({"security_group_id": "g"})))
            .unwrap_err();
        assert_eq!(
            e.message,
            "Failed to parse request. Required attribute 'direction' not specified"
        );
        // canonical forms
        let r =
            p(json!({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535})).unwrap();
        assert_eq!((r.port_range_min, r.port_range_max), (None, None));
        let r = p(json!({"ethertype": "IPv6", "protocol": "icmp"})).unwrap();
        assert_eq!(r.protocol.as_deref(), Some("ipv6-icmp"));
        assert_eq!(r.protocol_number(), Some(58));
        let r = p(json!({"remote_ip_prefix": "10.1.2.3/16"})).unwrap();
        assert_eq!(r.normalized_cidr().as_deref(), Some("10.1.0.0/16"));
    }

    #[tokio::test]
    async fn default_group_and_lifecycle() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let a = ctx("pa", &["member", "reader"]);
        let b = ctx("pb", &["member", "reader"]);
        // listing makes the default group, once, with its four rules
        let l = s.list_security_groups(&a).await.unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["name"], "default");
        assert_eq!(l[0]["description"], "Default security group");
        let rules = l[0]["security_group_rules"].as_array().unwrap();
        assert_eq!(rules.len(), 4);
        let def = l[0]["id"].as_str().unwrap().to_string();
        assert_eq!(
            rules
                .iter()
                .filter(|r| r["direction"] == "ingress" && r["remote_group_id"] == json!(def))
                .count(),
            2
        );
        assert!(rules.iter().all(|r| r["belongs_to_default_sg"] == true));
        assert_eq!(s.list_security_groups(&a).await.unwrap().len(), 1);
        {
            let w = s.db.write().await.unwrap();
            assert_eq!(
                s.ensure_default_security_group(&*w, "pa").await.unwrap(),
                def
            );
        }
        // a new group: two egress rules; "default" is reserved
        let g = s
            .create_security_groups(&a, &[&obj(json!({"name": "web", "description": "w"}))])
            .await
            .unwrap();
        let gid = g[0]["id"].as_str().unwrap().to_string();
        assert_eq!(g[0]["security_group_rules"].as_array().unwrap().len(), 2);
        assert_eq!(g[0]["stateful"], true);
        let (k, _) = kind(
            s.create_security_groups(&a, &[&obj(json!({"name": "Default"}))])
                .await,
        );
        assert_eq!(k, "SecurityGroupDefaultAlreadyExists");
        let (k, m) = kind(
            s.update_security_group(&a, &def, &obj(json!({"name": "x"})), None)
                .await,
        );
        assert_eq!(
            (k, m.as_str()),
            (
                "SecurityGroupCannotUpdateDefault",
                "Updating default security group not allowed."
            )
        );
        let (k, _) = kind(s.delete_security_group(&a, &def, None).await);
        assert_eq!(k, "SecurityGroupCannotRemoveDefault");
        // rules: create, duplicate, remote group, other project
        let r = s
            .create_security_group_rules(
                &a,
                &[&rule_body(
                    &gid,
                    json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}),
                )],
            )
            .await
            .unwrap();
        let rid = r[0]["id"].as_str().unwrap().to_string();
        assert_eq!(r[0]["belongs_to_default_sg"], false);
        let (k, m) = kind(
            s.create_security_group_rules(
                &a,
                &[&rule_body(&gid, json!({"protocol": "6", "port_range_min": 22, "port_range_max": "22", "remote_ip_prefix": "0.0.0.0/0"}))],
            )
            .await,
        );
        assert_eq!(k, "SecurityGroupRuleExists");
        assert_eq!(
            m,
            format!("Security group rule already exists. Rule id is {rid}.")
        );
        let (k, _) = kind(
            s.create_security_group_rules(
                &a,
                &[
                    &rule_body(&gid, json!({"protocol": "udp"})),
                    &rule_body(&gid, json!({"protocol": "17"})),
                ],
            )
            .await,
        );
        assert_eq!(k, "DuplicateSecurityGroupRuleInPost");
        s.create_security_group_rules(&a, &[&rule_body(&gid, json!({"remote_group_id": def}))])
            .await
            .unwrap();
        let (k, m) = kind(
            s.create_security_group_rules(
                &a,
                &[&rule_body(&gid, json!({"remote_group_id": "nope"}))],
            )
            .await,
        );
        assert_eq!(
            (k, m.as_str()),
            (
                "SecurityGroupNotFound",
                "Security group nope does not exist"
            )
        );
        let (k, _) = kind(
            s.create_security_group_rules(&b, &[&rule_body(&gid, json!({}))])
                .await,
        );
        assert_eq!(k, "SecurityGroupNotFound");
        assert_eq!(
            kind(s.get_security_group(&b, &gid).await).0,
            "SecurityGroupNotFound"
        );
        assert_eq!(
            kind(s.get_security_group_rule(&b, &rid).await).0,
            "SecurityGroupRuleNotFound"
        );
        // b's list made b's own default group and shows only b's rules
        let bl = s.list_security_group_rules(&b).await.unwrap();
        assert_eq!(bl.len(), 4);
        assert!(bl.iter().all(|r| r["project_id"] == "pb"));
        // revision of the group follows its rules
        let shown = s.get_security_group(&a, &gid).await.unwrap();
        assert_eq!(shown["revision_number"], 2);
        assert_eq!(shown["security_group_rules"].as_array().unwrap().len(), 4);
        s.delete_security_group_rule(&a, &rid, None).await.unwrap();
        assert_eq!(
            kind(s.delete_security_group_rule(&a, &rid, None).await).0,
            "SecurityGroupRuleNotFound"
        );
        // in use by a port
        {
            let w = s.db.write().await.unwrap();
            store::insert(
                &*w,
                store::NewRow {
                    kind: "port",
                    id: "p1",
                    project_id: "pa",
                    parent_id: None,
                    created_at: "x",
                    body: json!({"id": "p1", "security_groups": [gid]}).to_string(),
                },
            )
            .await
            .unwrap();
            w.commit().await.unwrap();
        }
        let (k, m) = kind(s.delete_security_group(&a, &gid, None).await);
        assert_eq!(k, "SecurityGroupInUse");
        assert_eq!(m, format!("Security Group {gid} in use."));
        {
            let w = s.db.write().await.unwrap();
            store::delete(&*w, "p1").await.unwrap();
            w.commit().await.unwrap();
        }
        // deleting the default group (admin) cascades to the rules naming it as remote group
        s.delete_security_group(&admin, &def, None).await.unwrap();
        let shown = s.get_security_group(&a, &gid).await.unwrap();
        assert_eq!(shown["security_group_rules"].as_array().unwrap().len(), 2);
        s.delete_security_group(&a, &gid, None).await.unwrap();
        // internal API
        let w = s.db.write().await.unwrap();
        let (e, _) = kind(
            s.check_security_groups(&*w, &a, &["x".to_string(), "y".to_string()])
                .await,
        );
        assert_eq!(e, "SecurityGroupNotFound");
        let bdef = s.ensure_default_security_group(&*w, "pb").await.unwrap();
        s.check_security_groups(&*w, &b, std::slice::from_ref(&bdef))
            .await
            .unwrap();
        assert!(s.check_security_groups(&*w, &a, &[bdef]).await.is_err());
        w.commit().await.unwrap();
        let (groups, rules) = s.security_groups_snapshot().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(rules.len(), 4);
    }

    #[tokio::test]
    async fn quotas_count_default_group_rules() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let a = ctx("pa", &["member", "reader"]);
        s.update_quota(
            &admin,
            "pa",
            &obj(json!({"security_group_rule": 7, "security_group": 2})),
        )
        .await
        .unwrap();
        // default (4 rules) + one group (2 rules) = 6
        let g = s
            .create_security_groups(&a, &[&obj(json!({"name": "g"}))])
            .await
            .unwrap();
        let gid = g[0]["id"].as_str().unwrap();
        s.create_security_group_rules(&a, &[&rule_body(gid, json!({"protocol": "icmp"}))])
            .await
            .unwrap();
        let e = s
            .create_security_group_rules(&a, &[&rule_body(gid, json!({"protocol": "udp"}))])
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "Quota exceeded for resources: ['security_group_rule']."
        );
        let e = s
            .create_security_groups(&a, &[&obj(json!({"name": "h"}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "OverQuota");
        let q = s.get_quota_details(&admin, "pa").await.unwrap();
        assert_eq!(q["security_group"]["used"], 2);
        assert_eq!(q["security_group_rule"]["used"], 7);
    }
}
