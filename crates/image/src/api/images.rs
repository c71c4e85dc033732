//! Images, tags, members, (de)activation: parsing and validation of requests as Glance's
//! deserializers do it, then one core call each.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use common::auth::Authenticated;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

use super::{Api, Base, JsonBody, json_ok, no_content, render};
use crate::core::{Change, ChangeOp, CreateRequest, ListParams, SortKey};
use crate::error::{ImageError, Result};
use crate::model::*;
use crate::store::{CmpOp, ColFilter, ImageCol};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/images", get(list).post(create))
        .route("/images/{id}", get(show).patch(update).delete(delete))
        .route("/images/{id}/actions/deactivate", post(deactivate))
        .route("/images/{id}/actions/reactivate", post(reactivate))
        .route("/images/{id}/tags/{tag}", put(add_tag).delete(delete_tag))
        .route("/images/{id}/members", get(list_members).post(add_member))
        .route(
            "/images/{id}/members/{member}",
            get(show_member).put(update_member).delete(delete_member),
        )
}

// ---------------------------------------------------------------- validation

/// Python's `repr` of a JSON value, for Glance-worded schema errors.
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn schema_error(reason: String) -> ImageError {
    ImageError::bad(format!(
        "Provided object does not match schema 'image': {reason}"
    ))
}

fn not_type(v: &Value, ty: &str) -> ImageError {
    schema_error(format!("{} is not of type '{ty}'", py_repr(v)))
}

const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
    "stores",
];

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The image schema's rules for one attribute's value.
fn validate_value(api: &Api, name: &str, v: &Value) -> Result<()> {
    let cfg = &api.svc.cfg;
    let enum_err = |list: &[String]| {
        schema_error(format!(
            "{} is not one of {}",
            py_repr(v),
            crate::core::py_list(list)
        ))
    };
    let str_max = |max: usize, nullable: bool| -> Result<()> {
        match v {
            Value::Null if nullable => Ok(()),
            Value::String(s) if s.chars().count() <= max => Ok(()),
            Value::String(_) => Err(schema_error(format!("{} is too long", py_repr(v)))),
            _ => Err(not_type(v, "string")),
        }
    };
    match name {
        "id" => match v.as_str() {
            Some(s) if uuid_like(s) => Ok(()),
            Some(_) => Err(schema_error(format!(
                "{} does not match the UUID pattern",
                py_repr(v)
            ))),
            None => Err(not_type(v, "string")),
        },
        "name" | "owner" => str_max(255, true),
        "visibility" => match v.as_str() {
            Some(s) if Visibility::parse(s).is_some() => Ok(()),
            Some(_) => Err(enum_err(&[
                "community".into(),
                "public".into(),
                "private".into(),
                "shared".into(),
            ])),
            None => Err(not_type(v, "string")),
        },
        "protected" | "os_hidden" => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(not_type(v, "boolean")),
        },
        "min_ram" | "min_disk" => match v {
            Value::Number(n) if n.is_i64() => Ok(()),
            _ => Err(not_type(v, "integer")),
        },
        "disk_format" | "container_format" => {
            let list = if name == "disk_format" {
                &cfg.disk_formats
            } else {
                &cfg.container_formats
            };
            match v {
                Value::Null => Ok(()),
                Value::String(s) if list.iter().any(|f| f == s) => Ok(()),
                Value::String(_) => Err(enum_err(list)),
                _ => Err(not_type(v, "string")),
            }
        }
        "tags" => match v {
            Value::Array(a) => {
                for t in a {
                    match t {
                        Value::String(s) if s.chars().count() <= 255 => {}
                        Value::String(_) => {
                            return Err(schema_error(format!("{} is too long", py_repr(t))));
                        }
                        _ => return Err(not_type(t, "string")),
                    }
                }
                Ok(())
            }
            _ => Err(not_type(v, "array")),
        },
        "checksum" | "os_hash_algo" | "os_hash_value" => str_max(128, true),
        "size" | "virtual_size" => match v {
            Value::Null => Ok(()),
            Value::Number(n) if n.is_i64() => Ok(()),
            _ => Err(not_type(v, "integer")),
        },
        "created_at" | "updated_at" | "direct_url" | "self" | "file" | "schema" | "stores" => {
            match v {
                Value::String(_) => Ok(()),
                _ => Err(not_type(v, "string")),
            }
        }
        "locations" => match v {
            Value::Array(_) => Ok(()),
            _ => Err(not_type(v, "array")),
        },
        "status" => match v {
            Value::String(s) if Status::parse(s).is_some() => Ok(()),
            Value::String(_) => Err(schema_error(format!(
                "{} is not a valid status",
                py_repr(v)
            ))),
            _ => Err(not_type(v, "string")),
        },
        // Additional properties: strings only (Glance's permissive schema).
        _ => match v {
            Value::String(_) => Ok(()),
            _ => Err(not_type(v, "string")),
        },
    }
}

fn reserved(key: &str) -> bool {
    matches!(key, "location" | "deleted" | "deleted_at") || key.starts_with("os_glance")
}

fn parse_create(api: &Api, body: Value) -> Result<CreateRequest> {
    let Value::Object(mut o) = body else {
        return Err(not_type(&body, "object"));
    };
    for k in ["direct_url", "self", "file", "schema", "stores"] {
        if o.contains_key(k) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{k}' is read-only."
            )));
        }
    }
    for (k, v) in &o {
        validate_value(api, k, v)?;
    }
    for k in [
        "created_at",
        "updated_at",
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
    ] {
        if o.contains_key(k) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{k}' is read-only."
            )));
        }
    }
    if o.contains_key("locations") {
        return Err(ImageError::forbidden("Attribute 'locations' is reserved."));
    }
    let take_str = |o: &mut Map<String, Value>, k: &str| {
        o.remove(k).and_then(|v| v.as_str().map(str::to_string))
    };
    let mut req = CreateRequest {
        id: take_str(&mut o, "id"),
        name: take_str(&mut o, "name"),
        visibility: take_str(&mut o, "visibility")
            .as_deref()
            .and_then(Visibility::parse),
        owner: o.remove("owner").map(|v| v.as_str().map(str::to_string)),
        disk_format: take_str(&mut o, "disk_format"),
        container_format: take_str(&mut o, "container_format"),
        min_disk: o.remove("min_disk").and_then(|v| v.as_i64()),
        min_ram: o.remove("min_ram").and_then(|v| v.as_i64()),
        protected: o.remove("protected").and_then(|v| v.as_bool()),
        os_hidden: o.remove("os_hidden").and_then(|v| v.as_bool()),
        tags: o
            .remove("tags")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        properties: Properties::new(),
    };
    for (k, _) in o.iter() {
        if k.chars().count() > 255 {
            return Err(ImageError::bad(
                "Custom property should not be greater than 255 characters.",
            ));
        }
        if reserved(k) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{k}' is reserved."
            )));
        }
    }
    req.properties = o;
    Ok(req)
}

/// RFC 6901 pointer as Glance accepts it: `/name`, with `~0`/`~1` escapes.
fn decode_pointer(p: &str) -> Result<Vec<String>> {
    if !p.starts_with('/') {
        return Err(ImageError::bad(format!(
            "Pointer `{p}` does not start with \"/\"."
        )));
    }
    let rest = &p[1..];
    if rest.split('/').skip(1).any(|s| s.trim().is_empty()) && rest.contains('/') {
        return Err(ImageError::bad(format!(
            "Pointer `{p}` contains adjacent \"/\"."
        )));
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(ImageError::bad(format!("Pointer `{p}` end with \"/\".")));
    }
    let bad_tilde = p
        .char_indices()
        .any(|(i, c)| c == '~' && !matches!(p[i + 1..].chars().next(), Some('0' | '1')));
    if bad_tilde {
        return Err(ImageError::bad(format!(
            "Pointer `{p}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect())
}

const PATCH_TYPES: &str =
    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

fn parse_patch(api: &Api, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Change>> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let draft4 = match ct.as_str() {
        "application/openstack-images-v2.1-json-patch" => false,
        "application/openstack-images-v2.0-json-patch" => true,
        _ => {
            return Err(ImageError::UnsupportedMediaType(format!(
                "The request media type {} is not supported by this server. Image PATCH \
                 expects Content-Type one of: {PATCH_TYPES}",
                if ct.is_empty() { "None" } else { &ct }
            )));
        }
    };
    if body.is_empty() {
        return Err(ImageError::bad("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ImageError::bad("Malformed JSON in request body."))?;
    let Value::Array(ops) = v else {
        return Err(ImageError::bad(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let mut changes = Vec::with_capacity(ops.len());
    for raw in ops {
        let Value::Object(raw) = raw else {
            return Err(ImageError::bad("Operations must be JSON objects."));
        };
        let (op_name, path) = if draft4 {
            let present: Vec<&str> = ["add", "remove", "replace"]
                .into_iter()
                .filter(|k| raw.contains_key(*k))
                .collect();
            if present.len() != 1 {
                return Err(ImageError::bad(
                    "Operation objects must contain exactly one member named \"add\", \
                     \"remove\", or \"replace\".",
                ));
            }
            let p = raw[present[0]].as_str().unwrap_or_default().to_string();
            (present[0].to_string(), p)
        } else {
            let op = match raw.get("op").and_then(Value::as_str) {
                Some(o) => o.to_string(),
                None => {
                    return Err(ImageError::bad(
                        "Unable to find `op` in JSON Schema change. It must be one of the \
                         following: add, remove, replace.",
                    ));
                }
            };
            if !matches!(op.as_str(), "add" | "remove" | "replace") {
                return Err(ImageError::bad(format!(
                    "Invalid operation: `{op}`. It must be one of the following: add, remove, \
                     replace."
                )));
            }
            let Some(p) = raw.get("path").and_then(Value::as_str) else {
                return Err(ImageError::bad(
                    "Unable to find 'path' in JSON Schema change",
                ));
            };
            (op, p.to_string())
        };
        let segments = decode_pointer(&path)?;
        let op = match op_name.as_str() {
            "add" => ChangeOp::Add,
            "replace" => ChangeOp::Replace,
            _ => ChangeOp::Remove,
        };
        let root = segments[0].clone();
        let depth = if root == "locations" {
            match op {
                ChangeOp::Replace => 1,
                _ => 2,
            }
        } else {
            1
        };
        if segments.len() != depth {
            return Err(ImageError::bad(format!(
                "Invalid JSON pointer for this resource: '/{}'",
                segments.join("/")
            )));
        }
        let value = if op == ChangeOp::Remove {
            Value::Null
        } else {
            match raw.get("value") {
                Some(v) => v.clone(),
                None => {
                    return Err(ImageError::bad(format!(
                        "Operation \"{op_name}\" requires a member named \"value\"."
                    )));
                }
            }
        };
        if READ_ONLY.contains(&root.as_str()) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{root}' is read-only."
            )));
        }
        if reserved(&root) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{root}' is reserved."
            )));
        }
        if op != ChangeOp::Remove && root != "locations" {
            validate_value(api, &root, &value)?;
        }
        changes.push(Change {
            op,
            path: root,
            value,
            draft4,
        });
    }
    Ok(changes)
}

/// Query pairs in order (`tag` and `sort_key` may repeat).
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(url_decode_pairs).unwrap_or_default()
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// Glance's `op:value` filter syntax (a bare ISO 8601 time has no operator).
fn split_op(expr: &str) -> (String, String) {
    match expr.split_once(':') {
        Some((l, r)) if chrono::DateTime::parse_from_rfc3339(expr).is_err() => {
            (l.to_string(), r.to_string())
        }
        _ => ("eq".into(), expr.to_string()),
    }
}

fn cmp_op(op: &str) -> Result<CmpOp> {
    Ok(match op {
        "eq" => CmpOp::Eq,
        "neq" => CmpOp::Neq,
        "gt" => CmpOp::Gt,
        "gte" => CmpOp::Gte,
        "lt" => CmpOp::Lt,
        "lte" => CmpOp::Lte,
        _ => return Err(ImageError::bad("Unable to filter on a unknown operator.")),
    })
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Values of an `in:` filter: comma-separated, double quotes protect commas.
fn split_in(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_list(pairs: Vec<(String, String)>) -> Result<ListParams> {
    let mut p = ListParams {
        member_status: Some(MemberStatus::Accepted),
        ..Default::default()
    };
    let mut sort_keys = Vec::new();
    let mut sort_dirs = Vec::new();
    let mut new_sort = None;
    let mut os_hidden = false;
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ImageError::bad("limit param must be an integer"))?;
                if n < 0 {
                    return Err(ImageError::bad("limit param must be positive"));
                }
                p.limit = Some(n as u64);
            }
            "marker" => p.marker = Some(v),
            "member_status" => {
                p.member_status = match v.as_str() {
                    "all" => None,
                    s => Some(
                        MemberStatus::parse(s)
                            .ok_or_else(|| ImageError::bad(format!("Invalid status: {s}")))?,
                    ),
                }
            }
            "tag" => p.tags.push(v.trim().to_string()),
            "visibility" => {
                p.visibility = match v.as_str() {
                    "all" => Some(None),
                    s => Some(Some(Visibility::parse(s).ok_or_else(|| {
                        ImageError::bad(format!("Invalid visibility value: {s}"))
                    })?)),
                }
            }
            "changes-since" => {
                return Err(ImageError::bad(
                    "The \"changes-since\" filter is no longer available on v2.",
                ));
            }
            "sort" => new_sort = Some(v),
            "sort_key" => sort_keys.push(v.trim().to_string()),
            "sort_dir" => sort_dirs.push(v.trim().to_string()),
            "os_hidden" => {
                os_hidden = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ImageError::bad(format!(
                            "Invalid value '{v}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                }
            }
            "protected" => {
                let b = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ImageError::bad(format!(
                            "Invalid value '{v}' for 'protected' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                };
                p.filters.push(ColFilter::Bool(ImageCol::Protected, b));
            }
            "name" | "id" | "status" | "container_format" | "disk_format" => {
                let col = match k.as_str() {
                    "name" => ImageCol::Name,
                    "id" => ImageCol::Id,
                    "status" => ImageCol::Status,
                    "container_format" => ImageCol::ContainerFormat,
                    _ => ImageCol::DiskFormat,
                };
                let (op, val) = split_op(&v);
                match op.as_str() {
                    "in" => p.filters.push(ColFilter::TextIn(col, split_in(&val))),
                    "eq" => p.filters.push(ColFilter::Text(col, val)),
                    other => {
                        return Err(ImageError::bad(format!(
                            "Unable to filter by unknown operator '{other}'."
                        )));
                    }
                }
            }
            "created_at" | "updated_at" => {
                let col = if k == "created_at" {
                    ImageCol::CreatedAt
                } else {
                    ImageCol::UpdatedAt
                };
                let (op, val) = split_op(&v);
                let t = parse_time(&val).ok_or_else(|| {
                    ImageError::bad(format!(
                        "Bad \"{k}\" query filter format. Use ISO 8601 DateTime notation."
                    ))
                })?;
                p.filters.push(ColFilter::Time(col, cmp_op(&op)?, t));
            }
            "owner" | "checksum" | "os_hash_value" => {
                let col = match k.as_str() {
                    "owner" => ImageCol::Owner,
                    "checksum" => ImageCol::Checksum,
                    _ => ImageCol::OsHashValue,
                };
                p.filters.push(ColFilter::Text(col, v));
            }
            "size" | "virtual_size" | "min_ram" | "min_disk" | "size_min" | "size_max"
            | "virtual_size_min" | "virtual_size_max" | "min_ram_min" | "min_ram_max"
            | "min_disk_min" | "min_disk_max" => {
                let (base, op) = if let Some(b) = k.strip_suffix("_min") {
                    (b, CmpOp::Gte)
                } else if let Some(b) = k.strip_suffix("_max") {
                    (b, CmpOp::Lte)
                } else {
                    (k.as_str(), CmpOp::Eq)
                };
                let n: i64 = v.parse().map_err(|_| {
                    ImageError::bad(if op == CmpOp::Eq {
                        format!("Invalid value '{v}' for '{k}' filter.")
                    } else {
                        "Unable to filter on a range with a non-numeric value.".to_string()
                    })
                })?;
                let col = match base {
                    "size" => ImageCol::Size,
                    "virtual_size" => ImageCol::VirtualSize,
                    "min_ram" => ImageCol::MinRam,
                    _ => ImageCol::MinDisk,
                };
                p.filters.push(ColFilter::Int(col, op, n));
            }
            _ => p.properties.push((k, v)),
        }
    }
    p.filters
        .push(ColFilter::Bool(ImageCol::OsHidden, os_hidden));
    if let Some(s) = new_sort {
        if !sort_keys.is_empty() || !sort_dirs.is_empty() {
            return Err(ImageError::bad(
                "Old and new sorting syntax cannot be combined",
            ));
        }
        for part in s.trim().split(',') {
            let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
            let dir = if dir.trim().is_empty() {
                "desc"
            } else {
                dir.trim()
            };
            p.sort.push((sort_key(key.trim())?, sort_dir(dir)?));
        }
    } else {
        if sort_dirs.len() > 1 && sort_dirs.len() != sort_keys.len() {
            return Err(ImageError::bad(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
        let dirs: Vec<bool> = sort_dirs
            .iter()
            .map(|d| sort_dir(d))
            .collect::<Result<_>>()?;
        for (i, k) in sort_keys.iter().enumerate() {
            let asc = dirs.get(i).or(dirs.first()).copied().unwrap_or(false);
            p.sort.push((sort_key(k)?, asc));
        }
        if p.sort.is_empty() {
            p.sort
                .push((SortKey::CreatedAt, dirs.first().copied().unwrap_or(false)));
        }
    }
    Ok(p)
}

fn sort_key(k: &str) -> Result<SortKey> {
    SortKey::parse(k).ok_or_else(|| {
        ImageError::bad(format!(
            "Invalid sort key: {k}. It must be one of the following: {}.",
            SortKey::NAMES
        ))
    })
}

fn sort_dir(d: &str) -> Result<bool> {
    match d {
        "asc" => Ok(true),
        "desc" => Ok(false),
        other => Err(ImageError::bad(format!("Invalid sort direction: {other}"))),
    }
}

// ---------------------------------------------------------------- handlers

async fn create(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let req = parse_create(&api, body)?;
    let img = api.svc.create(&ctx, req).await?;
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(render::image(&img, &api.svc.cfg.store_id)),
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v2/images/{}", img.id)) {
        h.insert(http::header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&api.svc.cfg.enabled_import_methods.join(",")) {
        h.insert("openstack-image-import-methods", v);
    }
    if let Ok(v) = HeaderValue::from_str(&api.svc.cfg.store_id) {
        h.insert("openstack-image-store-ids", v);
    }
    Ok(resp)
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn list(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(raw.as_deref());
    let params = parse_list(pairs.clone())?;
    let res = api.svc.list(&ctx, params).await?;
    let kept: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "marker").collect();
    let qs = |extra: Option<&str>| {
        let mut parts: Vec<String> = kept
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if let Some(m) = extra {
            parts.push(format!("marker={}", encode(m)));
        }
        parts.join("&")
    };
    let mut body = json!({
        "images": res.images.iter().map(|i| render::image(i, &api.svc.cfg.store_id)).collect::<Vec<_>>(),
        "first": if kept.is_empty() { "/v2/images".to_string() } else { format!("/v2/images?{}", qs(None)) },
        "schema": "/v2/schemas/images",
    });
    if let (Some(m), Some(o)) = (res.next_marker, body.as_object_mut()) {
        o.insert("next".into(), json!(format!("/v2/images?{}", qs(Some(&m)))));
    }
    Ok(json_ok(body))
}

async fn show(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let img = api.svc.get(&ctx, &id).await?;
    Ok(json_ok(render::image(&img, &api.svc.cfg.store_id)))
}

async fn update(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let res = async {
        let changes = parse_patch(&api, &headers, &body)?;
        let img = api.svc.update(&ctx, &id, changes).await?;
        Ok::<_, ImageError>(json_ok(render::image(&img, &api.svc.cfg.store_id)))
    }
    .await;
    match res {
        Ok(r) => r,
        Err(e @ ImageError::UnsupportedMediaType(_)) => {
            let mut r = e.into_response();
            r.headers_mut()
                .insert("accept-patch", HeaderValue::from_static(PATCH_TYPES));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn delete(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.svc.delete(&ctx, &id).await?;
    Ok(no_content())
}

async fn deactivate(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.svc.set_active(&ctx, &id, false).await?;
    Ok(no_content())
}

async fn reactivate(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.svc.set_active(&ctx, &id, true).await?;
    Ok(no_content())
}

async fn add_tag(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    if tag.chars().count() > 255 {
        return Err(schema_error(format!("'{tag}' is too long")));
    }
    api.svc.set_tag(&ctx, &id, &tag, true).await?;
    Ok(no_content())
}

async fn delete_tag(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    api.svc.set_tag(&ctx, &id, &tag, false).await?;
    Ok(no_content())
}

async fn list_members(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let members = api.svc.list_members(&ctx, &id).await?;
    Ok(json_ok(json!({
        "members": members.iter().map(render::member).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    })))
}

async fn add_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let member = match body.get("member") {
        Some(Value::String(m)) if !m.is_empty() && m.chars().count() <= 255 => m.clone(),
        Some(Value::String(_)) => {
            return Err(ImageError::bad(
                "Member ID must be 1 to 255 characters long.",
            ));
        }
        Some(_) => return Err(ImageError::bad("Member ID must be a string.")),
        None => return Err(ImageError::bad("Member to be added not specified")),
    };
    let m = api.svc.add_member(&ctx, &id, &member).await?;
    Ok(json_ok(render::member(&m)))
}

async fn show_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response> {
    let m = api.svc.get_member(&ctx, &id, &member).await?;
    Ok(json_ok(render::member(&m)))
}

async fn update_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, member)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let status = match body.get("status") {
        None => return Err(ImageError::bad("Status not specified")),
        Some(v) => v.as_str().and_then(MemberStatus::parse).ok_or_else(|| {
            ImageError::bad(
                "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".",
            )
        })?,
    };
    let m = api.svc.update_member(&ctx, &id, &member, status).await?;
    Ok(json_ok(render::member(&m)))
}

async fn delete_member(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response> {
    api.svc.delete_member(&ctx, &id, &member).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_filters() {
        assert_eq!(decode_pointer("/name").unwrap(), vec!["name"]);
        assert_eq!(decode_pointer("/a~1b").unwrap(), vec!["a/b"]);
        assert!(decode_pointer("name").is_err());
        assert!(decode_pointer("/a~2").is_err());
        assert!(decode_pointer("/a/").is_err());
        assert_eq!(split_op("in:a,b"), ("in".into(), "a,b".into()));
        assert_eq!(
            split_op("2026-01-01T00:00:00Z"),
            ("eq".into(), "2026-01-01T00:00:00Z".into())
        );
        assert_eq!(split_in(r#"a,"b,c",d"#), vec!["a", "b,c", "d"]);
        assert_eq!(url_decode("a%20b+c%3A"), "a b c:");
        assert_eq!(py_repr(&json!(["x", 1, null])), "['x', 1, None]");
    }

    #[test]
    fn list_params() {
        let p = parse_list(url_decode_pairs(
            "sort=size:asc,name&limit=2&tag=a&tag=b&foo=bar",
        ))
        .unwrap();
        assert_eq!(p.sort, vec![(SortKey::Size, true), (SortKey::Name, false)]);
        assert_eq!(p.limit, Some(2));
        assert_eq!(p.tags, vec!["a", "b"]);
        assert_eq!(p.properties, vec![("foo".to_string(), "bar".to_string())]);
        assert!(parse_list(url_decode_pairs("sort_key=bogus")).is_err());
        assert!(parse_list(url_decode_pairs("visibility=bogus")).is_err());
        assert!(parse_list(url_decode_pairs("limit=-1")).is_err());
        assert!(parse_list(url_decode_pairs("sort=name&sort_key=size")).is_err());
    }
}
