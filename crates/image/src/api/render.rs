//! JSON views, as Glance's response serializers write them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::model::*;

/// Glance's `isotime`: seconds, `Z`.
pub fn isotime(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// oslo's `to_primitive` of a datetime (the image tasks call shows raw rows).
fn primitive_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Properties users never see (Glance's serializer hides the worker hosts).
const HIDDEN: &[&str] = &["os_glance_stage_host", "os_glance_hash_op_host"];

pub fn image(i: &Image, store_id: &str) -> Value {
    let mut m = Map::new();
    for (k, v) in &i.properties {
        if !HIDDEN.contains(&k.as_str()) {
            m.insert(k.clone(), v.clone());
        }
    }
    let fields = [
        ("name", json!(i.name)),
        ("disk_format", json!(i.disk_format)),
        ("container_format", json!(i.container_format)),
        ("visibility", json!(i.visibility.as_str())),
        ("size", json!(i.size)),
        ("virtual_size", json!(i.virtual_size)),
        ("status", json!(i.status.as_str())),
        ("checksum", json!(i.checksum)),
        ("protected", json!(i.protected)),
        ("min_ram", json!(i.min_ram)),
        ("min_disk", json!(i.min_disk)),
        ("owner", json!(i.owner)),
        ("os_hidden", json!(i.os_hidden)),
        ("os_hash_algo", json!(i.os_hash_algo)),
        ("os_hash_value", json!(i.os_hash_value)),
        ("id", json!(i.id)),
        ("created_at", json!(isotime(&i.created_at))),
        ("updated_at", json!(isotime(&i.updated_at))),
        ("tags", json!(i.tags.iter().collect::<Vec<_>>())),
        ("self", json!(format!("/v2/images/{}", i.id))),
        ("file", json!(format!("/v2/images/{}/file", i.id))),
        ("schema", json!("/v2/schemas/image")),
    ];
    for (k, v) in fields {
        m.insert(k.into(), v);
    }
    if i.status.has_data() {
        m.insert("stores".into(), json!(store_id));
    }
    Value::Object(m)
}

pub fn member(m: &Member) -> Value {
    json!({
        "member_id": m.member_id,
        "image_id": m.image_id,
        "status": m.status.as_str(),
        "created_at": isotime(&m.created_at),
        "updated_at": isotime(&m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

/// A task in full (`GET /v2/tasks/{id}`).
pub fn task(t: &Task) -> Value {
    let mut v = task_stub(t);
    if let Some(o) = v.as_object_mut() {
        o.insert("input".into(), t.input.clone());
        o.insert("result".into(), t.result.clone().unwrap_or(Value::Null));
        o.insert("message".into(), json!(t.message));
        if let Some(i) = &t.image_id {
            o.insert("image_id".into(), json!(i));
        }
        if let Some(r) = &t.request_id {
            o.insert("request_id".into(), json!(r));
        }
        if let Some(u) = &t.user_id {
            o.insert("user_id".into(), json!(u));
        }
    }
    v
}

/// A task in a list (`GET /v2/tasks`): without input, result and message.
pub fn task_stub(t: &Task) -> Value {
    let mut v = json!({
        "id": t.id,
        "type": t.task_type,
        "status": t.status.as_str(),
        "owner": t.owner,
        "created_at": isotime(&t.created_at),
        "updated_at": isotime(&t.updated_at),
        "self": format!("/v2/tasks/{}", t.id),
        "schema": "/v2/schemas/task",
    });
    if let (Some(e), Some(o)) = (t.expires_at, v.as_object_mut()) {
        o.insert("expires_at".into(), json!(isotime(&e)));
    }
    v
}

/// A task as `GET /v2/images/{id}/tasks` shows it (the database row, as Glance does).
pub fn image_task(t: &Task) -> Value {
    json!({
        "id": t.id,
        "type": t.task_type,
        "status": t.status.as_str(),
        "owner": t.owner,
        "expires_at": t.expires_at.as_ref().map(primitive_time),
        "created_at": primitive_time(&t.created_at),
        "updated_at": primitive_time(&t.updated_at),
        "deleted_at": null,
        "deleted": false,
        "image_id": t.image_id,
        "request_id": t.request_id,
        "user_id": t.user_id,
        "input": t.input,
        "result": t.result,
        "message": t.message,
    })
}
