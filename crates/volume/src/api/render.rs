//! JSON views, per microversion, with only the fields Cinder shows at that version.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Ctx;
use crate::core::VolumeService;
use crate::model::*;

pub fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

pub fn ts_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map(|t| json!(ts(t))).unwrap_or(Value::Null)
}

pub fn links(ctx: &Ctx, project: &str, coll: &str, id: &str) -> Value {
    json!([
        {"href": format!("{}/v3/{project}/{coll}/{id}", ctx.base), "rel": "self"},
        {"href": format!("{}/{project}/{coll}/{id}", ctx.base), "rel": "bookmark"},
    ])
}

/// `<coll>_links` with a next link after `last`.
pub fn next_links(
    ctx: &Ctx,
    coll: &str,
    path: &str,
    query: &[(String, String)],
    last: &str,
) -> Value {
    let mut q: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "marker" && k != "offset")
        .cloned()
        .collect();
    q.push(("marker".into(), last.to_string()));
    let qs: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    let _ = coll;
    let project = ctx
        .url_project
        .as_ref()
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    json!([{"href": format!("{}/v3{project}/{path}?{qs}", ctx.base), "rel": "next"}])
}

pub fn volume_summary(ctx: &Ctx, v: &Volume) -> Value {
    json!({"id": v.id, "name": v.name, "links": links(ctx, &v.project_id, "volumes", &v.id)})
}

/// A volume; `extended`: the show/detail view, with the attributes Cinder's extensions add
/// (tenant, host, migration status, image metadata); create and update answer without them.
pub fn volume(
    svc: &VolumeService,
    ctx: &Ctx,
    v: &Volume,
    atts: &[Attachment],
    extended: bool,
) -> Value {
    let attachments: Vec<Value> = atts
        .iter()
        .filter(|a| a.attach_status == "attached")
        .map(|a| {
            json!({
                "server_id": a.instance_uuid,
                "attachment_id": a.id,
                "attached_at": ts_opt(&a.attached_at),
                "host_name": a.host_name,
                "volume_id": v.id,
                "device": a.mountpoint,
                "id": v.id,
            })
        })
        .collect();
    let mut o = json!({
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "status": v.status,
        "size": v.size,
        "availability_zone": v.availability_zone,
        "created_at": ts(&v.created_at),
        "updated_at": ts_opt(&v.updated_at),
        "attachments": attachments,
        "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": false,
        "links": links(ctx, &v.project_id, "volumes", &v.id),
        "metadata": v.metadata,
        "multiattach": false,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "volume_type": v.volume_type_name,
        "user_id": v.user_id,
        "replication_status": "disabled",
        "consistencygroup_id": null,
        "migration_status": null,
    });
    if !extended {
        return with_microversion_fields(o, ctx, v);
    }
    if let Some(m) = &v.image_metadata {
        o["volume_image_metadata"] = json!(m);
    }
    if svc.allowed(
        &ctx.auth,
        "volume_extension:volume_tenant_attribute",
        &v.project_id,
    ) {
        o["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
    }
    if svc.allowed(
        &ctx.auth,
        "volume_extension:volume_host_attribute",
        &v.project_id,
    ) {
        o["os-vol-host-attr:host"] = json!(v.host(&svc.cfg.host));
        o["os-vol-mig-status-attr:migstat"] = Value::Null;
        o["os-vol-mig-status-attr:name_id"] = Value::Null;
    }
    with_microversion_fields(o, ctx, v)
}

fn with_microversion_fields(mut o: Value, ctx: &Ctx, v: &Volume) -> Value {
    let mv = ctx.mv;
    if mv.at_least(13) {
        o["group_id"] = Value::Null;
    }
    if mv.at_least(21) {
        o["provider_id"] = Value::Null;
    }
    if mv.at_least(48) {
        o["service_uuid"] = Value::Null;
        o["shared_targets"] = json!(false);
    }
    if mv.at_least(61) {
        o["cluster_name"] = Value::Null;
    }
    if mv.at_least(63) {
        o["volume_type_id"] = json!(v.volume_type_id);
    }
    if mv.at_least(64) {
        o["encryption_key_id"] = Value::Null;
    }
    if mv.at_least(65) {
        o["consumes_quota"] = json!(true);
    }
    o
}

pub fn snapshot(ctx: &Ctx, s: &Snapshot, detail: bool) -> Value {
    let mut o = json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "status": s.status,
        "size": s.size,
        "volume_id": s.volume_id,
        "metadata": s.metadata,
        "created_at": ts(&s.created_at),
        "updated_at": ts_opt(&s.updated_at),
    });
    if detail {
        o["os-extended-snapshot-attributes:progress"] = json!(if s.status == "available" {
            "100%"
        } else {
            "0%"
        });
        o["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
    }
    if ctx.mv.at_least(14) {
        o["group_snapshot_id"] = Value::Null;
    }
    if ctx.mv.at_least(41) {
        o["user_id"] = json!(s.user_id);
    }
    if ctx.mv.at_least(65) {
        o["consumes_quota"] = json!(true);
    }
    o
}

pub fn volume_type(t: &VolumeType, show_specs: bool) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "os-volume-type-access:is_public": t.is_public,
        "extra_specs": if show_specs { json!(t.extra_specs) } else { json!({}) },
        "qos_specs_id": null,
    })
}

pub fn attachment(a: &Attachment, detail: bool) -> Value {
    let mut o = json!({
        "id": a.id,
        "status": a.attach_status,
        "instance": a.instance_uuid,
        "volume_id": a.volume_id,
    });
    if detail {
        o["attached_at"] = ts_opt(&a.attached_at);
        o["detached_at"] = ts_opt(&a.detached_at);
        o["attach_mode"] = json!(a.attach_mode);
        o["connection_info"] = a.connection_info.clone().unwrap_or(Value::Null);
        o["connector"] = a.connector.clone().unwrap_or(Value::Null);
    }
    o
}
