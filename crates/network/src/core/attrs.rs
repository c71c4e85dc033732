//! neutron-lib's attribute validation and conversion, with its messages.

use common::auth::AuthContext;
use serde_json::{Map, Value};
use std::net::IpAddr;

use crate::error::{NetError, Result};
use crate::ipam::{self, Pool};
use crate::model::HostRoute;

// ------------------------------------------------------------ attribute parsing

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

pub fn py(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// neutron-lib's convert_to_boolean: booleans, "true"/"false" in any case, 0/1.
pub fn to_bool(attr: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        other => Err(NetError::invalid_attr(
            attr,
            format!("'{}' cannot be converted to boolean", py(other)),
        )),
    }
}

/// neutron-lib's validate_string with a maximum length.
pub fn to_string(attr: &str, v: &Value, max: usize) -> Result<String> {
    match v {
        Value::String(s) if s.chars().count() > max => Err(NetError::invalid_attr(
            attr,
            format!("'{s}' exceeds maximum length of {max}"),
        )),
        Value::String(s) => Ok(s.clone()),
        other => Err(NetError::invalid_attr(
            attr,
            format!("'{}' is not a valid string", py(other)),
        )),
    }
}

pub fn to_list<'a>(attr: &str, v: &'a Value) -> Result<&'a Vec<Value>> {
    v.as_array()
        .ok_or_else(|| NetError::invalid_attr(attr, format!("'{}' is not a list", py(v))))
}

/// Check a request body's keys as Neutron's attribute map does.
pub fn check_keys(
    body: &Map<String, Value>,
    known: &[&str],
    allowed: &[&str],
    update: bool,
) -> Result<()> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(NetError::bad(format!(
            "Unrecognized attribute(s) '{}'",
            unknown.join(", ")
        )));
    }
    for k in body.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(NetError::bad(if update {
                format!("Cannot update read-only attribute {k}")
            } else {
                format!("Attribute '{k}' not allowed in POST")
            }));
        }
    }
    Ok(())
}

pub const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

/// The project a new resource belongs to: `project_id`/`tenant_id` of the body (they must
/// agree) or the caller's.
pub fn owner(ctx: &AuthContext, body: &Map<String, Value>) -> Result<String> {
    let p = body
        .get("project_id")
        .map(|v| to_string("project_id", v, 255))
        .transpose()?;
    let t = body
        .get("tenant_id")
        .map(|v| to_string("tenant_id", v, 255))
        .transpose()?;
    match (p, t) {
        (Some(p), Some(t)) if p != t => Err(NetError::bad(
            "Invalid input for operation: 'project_id' and 'tenant_id' do not match.".to_string(),
        )),
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) => ctx.project_id().map(str::to_string).ok_or_else(|| {
            NetError::bad("Invalid input for operation: 'project_id' is required.".to_string())
        }),
    }
}

pub fn parse_pools(v: &Value) -> Result<Vec<Pool>> {
    let mut out = Vec::new();
    for p in to_list("allocation_pools", v)? {
        let o = p.as_object().ok_or_else(|| {
            NetError::invalid_attr(
                "allocation_pools",
                format!("'{}' is not a dictionary", py(p)),
            )
        })?;
        let get = |k: &str| -> Result<String> {
            match o.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(NetError::invalid_attr(
                    "allocation_pools",
                    format!(
                        "Validation of dictionary's keys failed. Expected keys: {{'end', 'start'}} Provided keys: {{{}}}",
                        o.keys()
                            .map(|k| format!("'{k}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        };
        out.push(Pool {
            start: get("start")?,
            end: get("end")?,
        });
    }
    Ok(out)
}

pub fn parse_nameservers(v: &Value, max: usize) -> Result<Vec<String>> {
    let list = to_list("dns_nameservers", v)?;
    let mut out: Vec<String> = Vec::new();
    for s in list {
        let s = to_string("dns_nameservers", s, 255)?;
        if s.parse::<IpAddr>().is_err() {
            return Err(NetError::invalid_attr(
                "dns_nameservers",
                format!("'{s}' is not a valid nameserver. '{s}' is not a valid IP address"),
            ));
        }
        if out.contains(&s) {
            return Err(NetError::invalid_attr(
                "dns_nameservers",
                format!("Duplicate nameserver '{s}'"),
            ));
        }
        out.push(s);
    }
    if out.len() > max {
        return Err(NetError::bad(format!(
            "Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit {max}."
        )));
    }
    Ok(out)
}

pub fn parse_routes(v: &Value, max: usize) -> Result<Vec<HostRoute>> {
    let mut out: Vec<HostRoute> = Vec::new();
    for r in to_list("host_routes", v)? {
        let (Some(d), Some(n)) = (
            r.get("destination").and_then(Value::as_str),
            r.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(NetError::invalid_attr(
                "host_routes",
                format!("Invalid data format for hostroute: '{}'", py(r)),
            ));
        };
        let dest: ipnet::IpNet = d.parse().map_err(|_| {
            NetError::invalid_attr("host_routes", format!("'{d}' is not a valid IP subnet"))
        })?;
        ipam::parse_ip("host_routes", n)?;
        let route = HostRoute {
            destination: dest.trunc().to_string(),
            nexthop: n.to_string(),
        };
        if out.contains(&route) {
            return Err(NetError::invalid_attr(
                "host_routes",
                format!("Duplicate hostroute '{}'", py(r)),
            ));
        }
        out.push(route);
    }
    if out.len() > max {
        return Err(NetError::bad(format!(
            "Unable to complete operation for subnet. The number of host routes exceeds the limit {max}."
        )));
    }
    Ok(out)
}

pub fn parse_mode(attr: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if IPV6_MODES.contains(&s.as_str()) => Ok(Some(s.clone())),
        other => Err(NetError::invalid_attr(
            attr,
            format!(
                "'{}' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac', None]",
                py(other)
            ),
        )),
    }
}

/// A subnet's `prefixlen` (neutron-lib's type:non_negative, converted to an int).
pub fn parse_prefixlen(v: &Value) -> Result<u8> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n < 0 => Err(NetError::invalid_attr(
            "prefixlen",
            format!("'{n}' should be non-negative"),
        )),
        Some(n) if n <= 128 => Ok(n as u8),
        _ => Err(NetError::invalid_attr(
            "prefixlen",
            format!("'{}' is not an integer", py(v)),
        )),
    }
}

pub fn parse_gateway(v: &Value) -> Result<Option<IpAddr>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(ipam::parse_ip("gateway_ip", s)?)),
        other => Err(NetError::invalid_attr(
            "gateway_ip",
            format!("'{}' is not a valid IP address", py(other)),
        )),
    }
}

/// The body under `key` of a request, as Neutron demands it.
pub fn resource_body<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(NetError::bad(format!(
            "Invalid input for {key}. Reason: '{}' is not a dictionary.",
            kind_of(other)
        ))),
        None => Err(NetError::bad(format!(
            "Unable to find '{key}' in request body"
        ))),
    }
}

/// Neutron's revision-if-match: the change applies only to that revision.
pub fn check_revision(expected: Option<u64>, current: u64) -> Result<()> {
    match expected {
        Some(e) if e != current => Err(NetError::new(
            http::StatusCode::PRECONDITION_FAILED,
            "RevisionNumberConstraintFailed",
            format!("Constrained to {e}, but current revision is {current}"),
        )),
        _ => Ok(()),
    }
}
