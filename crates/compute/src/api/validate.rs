//! Request validation with Nova's rules and wording: "Invalid input for field/attribute X.
//! Value: V. <reason>" (nova.api.validation), unknown keys refused where Nova's schemas set
//! `additionalProperties: false`.

use serde_json::{Map, Value};

use crate::error::{ComputeError, Result};

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn invalid(field: &str, value: &Value, reason: impl AsRef<str>) -> ComputeError {
    ComputeError::bad(format!(
        "Invalid input for field/attribute {field}. Value: {}. {}",
        show(value),
        reason.as_ref()
    ))
}

/// The object under `key` of a body (`{"server": {...}}`).
pub fn object<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(invalid(
            key,
            other,
            format!("{} is not of type 'object'", other),
        )),
        None => Err(ComputeError::bad(format!(
            "Invalid input for field/attribute {key}. Value: {}. '{key}' is a required property",
            body
        ))),
    }
}

/// Refuse keys outside `allowed` (jsonschema's message).
pub fn only(o: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    let extra: Vec<String> = o
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let verb = if extra.len() == 1 { "was" } else { "were" };
    Err(ComputeError::bad(format!(
        "Additional properties are not allowed ({} {verb} unexpected)",
        extra.join(", ")
    )))
}

/// Nova's `name` parameter: a string of 1-255 characters without leading or trailing
/// whitespace.
pub fn name(field: &str, v: &Value) -> Result<String> {
    let Some(s) = v.as_str() else {
        return Err(invalid(field, v, format!("{v} is not of type 'string'")));
    };
    if s.is_empty() {
        return Err(invalid(field, v, "'' is too short"));
    }
    if s.chars().count() > 255 {
        return Err(invalid(field, v, format!("'{s}' is too long")));
    }
    if s.trim() != s || s.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            v,
            format!(
                "'{s}' does not match the name pattern: no leading or trailing whitespace and no control characters"
            ),
        ));
    }
    Ok(s.to_string())
}

/// A string of at most `max` characters (None allowed when `nullable`).
pub fn string(field: &str, v: &Value, max: usize, nullable: bool) -> Result<Option<String>> {
    match v {
        Value::Null if nullable => Ok(None),
        Value::String(s) if s.chars().count() <= max => Ok(Some(s.clone())),
        Value::String(s) => Err(invalid(field, v, format!("'{s}' is too long"))),
        other => Err(invalid(
            field,
            other,
            format!("{other} is not of type 'string'"),
        )),
    }
}

/// Metadata: string keys 1-255 and string values up to 255.
pub fn metadata(field: &str, v: &Value) -> Result<std::collections::BTreeMap<String, String>> {
    let Some(o) = v.as_object() else {
        return Err(invalid(field, v, format!("{v} is not of type 'object'")));
    };
    let mut out = std::collections::BTreeMap::new();
    for (k, val) in o {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(invalid(
                field,
                v,
                format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        match val {
            Value::String(s) if s.chars().count() <= 255 => {
                out.insert(k.clone(), s.clone());
            }
            Value::String(s) => {
                return Err(invalid(
                    &format!("{field}/{k}"),
                    val,
                    format!("'{s}' is too long"),
                ));
            }
            other => {
                return Err(invalid(
                    &format!("{field}/{k}"),
                    other,
                    format!("{other} is not of type 'string'"),
                ));
            }
        }
    }
    Ok(out)
}

/// A positive integer given as a number or a numeric string (Nova accepts both).
pub fn positive_int(field: &str, v: &Value, min: i64) -> Result<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= min => Ok(n),
        Some(_) => Err(invalid(
            field,
            v,
            format!("{} is less than the minimum of {min}", show(v)),
        )),
        None => Err(invalid(
            field,
            v,
            format!("{v} is not of type 'integer', 'string'"),
        )),
    }
}

pub fn boolean(field: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
            "false" | "0" | "no" | "off" | "f" | "n" | "" => Ok(false),
            _ => Err(invalid(
                field,
                v,
                format!("{v} is not of type 'boolean', 'string'"),
            )),
        },
        other => Err(invalid(
            field,
            other,
            format!("{other} is not of type 'boolean', 'string'"),
        )),
    }
}

pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

pub fn ipv4(field: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::String(s) if s.is_empty() => Ok(None),
        // stored in the canonical form, as Nova's IP fields (netaddr) do
        Value::String(s) if s.parse::<std::net::Ipv4Addr>().is_ok() => {
            Ok(s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string()))
        }
        other => Err(invalid(
            field,
            other,
            format!("{} is not a 'ipv4'", show(other)),
        )),
    }
}

pub fn ipv6(field: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::String(s) if s.is_empty() => Ok(None),
        // stored in the canonical (RFC 5952) form, as Nova's IP fields (netaddr) do
        Value::String(s) if s.parse::<std::net::Ipv6Addr>().is_ok() => {
            Ok(s.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string()))
        }
        other => Err(invalid(
            field,
            other,
            format!("{} is not a 'ipv6'", show(other)),
        )),
    }
}

/// A server tag: 1-60 characters, no '/' or ','.
pub fn tag(field: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s)
            if !s.is_empty() && s.chars().count() <= 60 && !s.contains('/') && !s.contains(',') =>
        {
            Ok(s.clone())
        }
        other => Err(invalid(
            field,
            other,
            format!(
                "{} does not match '^[^,/]*$' or is not 1-60 characters",
                show(other)
            ),
        )),
    }
}

/// ISO 8601 timestamps as Nova's query parameters take them.
pub fn timestamp(field: &str, s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDateTime, TimeZone, Utc};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Utc.from_utc_datetime(&t));
    }
    Err(ComputeError::bad(format!(
        "Invalid input for query parameters {field}. Value: {s}. '{s}' is not a 'date-time'"
    )))
}

/// `block_device_mapping_v2` as Nova's schema takes it (keys, types and enums), then Nova's
/// semantic checks for what a boot needs.
pub fn block_device_mapping_v2(v: &Value, mv_minor: u16) -> Result<Value> {
    let Some(items) = v.as_array() else {
        return Err(invalid(
            "block_device_mapping_v2",
            v,
            format!("{v} is not of type 'array'"),
        ));
    };
    let mut allowed = vec![
        "source_type",
        "destination_type",
        "uuid",
        "boot_index",
        "volume_size",
        "delete_on_termination",
        "device_name",
        "disk_bus",
        "device_type",
        "guest_format",
        "no_device",
        "connection_info",
        "snapshot_id",
        "volume_id",
        "image_id",
    ];
    if mv_minor >= 42 || (32..=32).contains(&mv_minor) {
        allowed.push("tag");
    }
    if mv_minor >= 67 {
        allowed.push("volume_type");
    }
    for (k, b) in items.iter().enumerate() {
        let field = format!("block_device_mapping_v2/{k}");
        let Some(o) = b.as_object() else {
            return Err(invalid(&field, b, format!("{b} is not of type 'object'")));
        };
        only(o, &allowed)?;
        if let Some(s) = o.get("source_type")
            && !matches!(s.as_str(), Some("volume" | "image" | "snapshot" | "blank"))
        {
            return Err(invalid(
                &format!("{field}/source_type"),
                s,
                format!("{s} is not one of ['volume', 'image', 'snapshot', 'blank']"),
            ));
        }
        if let Some(d) = o.get("destination_type")
            && !matches!(d.as_str(), Some("local" | "volume"))
        {
            return Err(invalid(
                &format!("{field}/destination_type"),
                d,
                format!("{d} is not one of ['local', 'volume']"),
            ));
        }
        if let Some(u) = o.get("uuid")
            && !u.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 255)
        {
            return Err(invalid(&format!("{field}/uuid"), u, "is not a valid id"));
        }
        if let Some(bi) = o.get("boot_index")
            && !bi.is_null()
        {
            positive_int(&format!("{field}/boot_index"), bi, -1)?;
        }
        if let Some(vs) = o.get("volume_size")
            && !vs.is_null()
        {
            positive_int(&format!("{field}/volume_size"), vs, 1)?;
        }
        if let Some(d) = o.get("delete_on_termination") {
            boolean(&format!("{field}/delete_on_termination"), d)?;
        }
        for key in [
            "device_name",
            "disk_bus",
            "device_type",
            "guest_format",
            "tag",
        ] {
            if let Some(x) = o.get(key)
                && !x.is_null()
            {
                string(&format!("{field}/{key}"), x, 255, true)?;
            }
        }
        let source = o.get("source_type").and_then(Value::as_str).unwrap_or("");
        if matches!(source, "volume" | "image" | "snapshot") && o.get("uuid").is_none() {
            return Err(ComputeError::bad(format!(
                "Block Device Mapping is Invalid: Missing device UUID for source_type {source}."
            )));
        }
    }
    Ok(v.clone())
}
