//! Volume types, attachments, quotas, limits, services, availability zones, extensions.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;
use crate::core::AttachRequest;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/types", get(types_list).post(type_create))
        .route(
            "/types/{id}",
            get(type_show).put(type_update).delete(type_delete),
        )
        .route("/types/{id}/extra_specs", get(specs_list).post(specs_set))
        .route(
            "/types/{id}/extra_specs/{key}",
            get(spec_show).put(spec_put).delete(spec_delete),
        )
        .route("/attachments", get(att_list).post(att_create))
        .route("/attachments/detail", get(att_list_detail))
        .route(
            "/attachments/{id}",
            get(att_show).put(att_update).delete(att_delete),
        )
        .route("/attachments/{id}/action", post(att_action))
        .route(
            "/os-quota-sets/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/os-quota-sets/{project}/defaults", get(quota_defaults))
        .route("/limits", get(limits))
        .route("/os-services", get(services))
        .route("/os-availability-zone", get(azs))
        .route("/extensions", get(extensions))
}

// ---------------------------------------------------------------- types

async fn types_list(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(async {
        let is_public = p.get("is_public").and_then(parse_bool_str);
        let admin = api.svc.is_admin(&ctx.auth);
        let ts = api.svc.list_types(&ctx.auth, is_public).await?;
        Ok(ok(json!({"volume_types": ts.iter().map(|t| render::volume_type(t, admin)).collect::<Vec<_>>()})))
    }
    .await)
}

async fn type_show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let t = api.svc.get_type(&ctx.auth, &id).await?;
            Ok(ok(
                json!({"volume_type": render::volume_type(&t, api.svc.is_admin(&ctx.auth))}),
            ))
        }
        .await,
    )
}

async fn type_create(State(api): St, ctx: Ctx, JsonBody(b): JsonBody) -> Response {
    respond(async {
        let Some(o) = b.get("volume_type").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute volume_type. Value: None. 'volume_type' is a required property",
            ));
        };
        let name = match o.get("name").and_then(Value::as_str).map(str::trim) {
            Some(n) if !n.is_empty() && n.len() <= 255 => n.to_string(),
            _ => {
                return Err(VolumeError::invalid_input(
                    "Volume type name can not be empty.",
                ));
            }
        };
        let description = o.get("description").and_then(Value::as_str).map(str::to_string);
        let is_public = o
            .get("os-volume-type-access:is_public")
            .or(o.get("is_public"))
            .map(|v| {
                parse_bool(v).ok_or_else(|| {
                    VolumeError::invalid_input(format!("Invalid value '{v}' for is_public."))
                })
            })
            .transpose()?
            .unwrap_or(true);
        let specs = match o.get("extra_specs") {
            None | Some(Value::Null) => Default::default(),
            Some(m) => metadata_of(m, "extra_specs")?,
        };
        let t = api
            .svc
            .create_type(&ctx.auth, name, description, is_public, specs)
            .await?;
        Ok(ok(json!({"volume_type": render::volume_type(&t, true)})))
    }
    .await)
}

async fn type_update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let Some(o) = b.get("volume_type").filter(|v| v.is_object()) else {
                return Err(VolumeError::bad("Malformed request body"));
            };
            let name = o.get("name").and_then(Value::as_str).map(str::to_string);
            let description = o.get("description").map(|v| v.as_str().map(str::to_string));
            let is_public = o.get("is_public").and_then(parse_bool);
            if name.is_none() && description.is_none() && is_public.is_none() {
                return Err(VolumeError::invalid_input(
                    "Specify volume type name, description, is_public or a combination thereof.",
                ));
            }
            let t = api
                .svc
                .update_type(&ctx.auth, &id, name, description, is_public)
                .await?;
            Ok(ok(json!({"volume_type": render::volume_type(&t, true)})))
        }
        .await,
    )
}

async fn type_delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            api.svc.delete_type(&ctx.auth, &id).await?;
            Ok(accepted_empty())
        }
        .await,
    )
}

async fn specs_list(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let t = api.svc.get_type(&ctx.auth, &id).await?;
            Ok(ok(json!({"extra_specs": t.extra_specs})))
        }
        .await,
    )
}

async fn specs_set(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let Some(m) = b.get("extra_specs") else {
                return Err(VolumeError::bad("Malformed request body"));
            };
            let m = metadata_of(m, "extra_specs")?;
            api.svc
                .set_extra_specs(&ctx.auth, &id, m.clone(), None)
                .await?;
            Ok(ok(json!({"extra_specs": m})))
        }
        .await,
    )
}

async fn spec_show(State(api): St, ctx: Ctx, Path((id, key)): Path<(String, String)>) -> Response {
    respond(
        async {
            let t = api.svc.get_type(&ctx.auth, &id).await?;
            match t.extra_specs.get(&key) {
                Some(v) => Ok(ok(json!({key: v}))),
                None => Err(VolumeError::NotFound(format!(
                    "Volume Type {id} has no extra specs with key {key}."
                ))),
            }
        }
        .await,
    )
}

async fn spec_put(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = metadata_of(&b, "extra_specs")?;
            if m.len() != 1 || !m.contains_key(&key) {
                return Err(VolumeError::bad("Request body and URI mismatch"));
            }
            api.svc
                .set_extra_specs(&ctx.auth, &id, m.clone(), None)
                .await?;
            Ok(ok(json!(m)))
        }
        .await,
    )
}

async fn spec_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            api.svc
                .set_extra_specs(&ctx.auth, &id, Default::default(), Some(&key))
                .await?;
            Ok(accepted_empty())
        }
        .await,
    )
}

// ---------------------------------------------------------------- attachments (3.27+)

fn need(ctx: &Ctx, minor: u16) -> Result<()> {
    if ctx.mv.at_least(minor) {
        Ok(())
    } else {
        Err(VolumeError::NotFound(
            "The resource could not be found.".into(),
        ))
    }
}

async fn att_create(State(api): St, ctx: Ctx, JsonBody(b): JsonBody) -> Response {
    respond(async {
        need(&ctx, 27)?;
        let Some(o) = b.get("attachment").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute attachment. Value: None. 'attachment' is a required property",
            ));
        };
        let Some(volume_id) = o.get("volume_uuid").and_then(Value::as_str) else {
            return Err(VolumeError::bad(format!(
                "Invalid input for field/attribute attachment. Value: {o}. 'volume_uuid' is a required property"
            )));
        };
        let mode = o.get("mode").and_then(Value::as_str).map(str::to_string);
        if mode.is_some() && !ctx.mv.at_least(54) {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute attachment. Additional properties are not allowed ('mode' was unexpected)",
            ));
        }
        let req = AttachRequest {
            volume_id: volume_id.to_string(),
            instance_uuid: o.get("instance_uuid").and_then(Value::as_str).map(str::to_string),
            connector: o.get("connector").cloned().filter(|c| !c.is_null()),
            mode,
        };
        let (a, _) = api.svc.attachment_create(&ctx.auth, req).await?;
        Ok(ok(json!({"attachment": render::attachment(&a, true)})))
    }
    .await)
}

async fn att_list_any(api: Api, ctx: Ctx, p: Params, detail: bool) -> Result<Response> {
    need(&ctx, 27)?;
    let atts = api
        .svc
        .attachment_list(
            &ctx.auth,
            all_tenants(&p),
            p.get("volume_id"),
            p.get("instance_id"),
        )
        .await?;
    Ok(ok(
        json!({"attachments": atts.iter().map(|a| render::attachment(a, detail)).collect::<Vec<_>>()}),
    ))
}

async fn att_list(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(att_list_any(api, ctx, p, false).await)
}

async fn att_list_detail(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(att_list_any(api, ctx, p, true).await)
}

async fn att_show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            need(&ctx, 27)?;
            let a = api.svc.attachment_get(&ctx.auth, &id).await?;
            Ok(ok(json!({"attachment": render::attachment(&a, true)})))
        }
        .await,
    )
}

async fn att_update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(async {
        need(&ctx, 27)?;
        let Some(c) = b.get("attachment").and_then(|a| a.get("connector")) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute attachment. 'connector' is a required property",
            ));
        };
        let a = api.svc.attachment_update(&ctx.auth, &id, c.clone()).await?;
        Ok(ok(json!({"attachment": render::attachment(&a, true)})))
    }
    .await)
}

async fn att_delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(async {
        need(&ctx, 27)?;
        let rest = api.svc.attachment_delete(&ctx.auth, &id).await?;
        Ok(ok(json!({"attachments": rest.iter().map(|a| render::attachment(a, false)).collect::<Vec<_>>()})))
    }
    .await)
}

async fn att_action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            need(&ctx, 44)?;
            if b.get("os-complete").is_none() {
                return Err(VolumeError::bad("There is no such action"));
            }
            api.svc.attachment_complete(&ctx.auth, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

// ---------------------------------------------------------------- quotas, limits, ...

fn quota_json(
    project: Option<&str>,
    q: &crate::core::QuotaSet,
    usage: Option<&crate::core::Usage>,
) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(p) = project {
        o.insert("id".into(), json!(p));
    }
    for (k, limit) in q {
        let v = match usage {
            Some(u) => json!({"limit": limit, "in_use": u.get(k).copied().unwrap_or(0),
                "reserved": 0, "allocated": 0}),
            None => json!(limit),
        };
        o.insert(k.clone(), v);
    }
    json!({"quota_set": o})
}

async fn quota_show(State(api): St, ctx: Ctx, Path(project): Path<String>, p: Params) -> Response {
    respond(
        async {
            let (q, u) = api.svc.quota_show(&ctx.auth, &project).await?;
            let usage = p.get("usage").and_then(parse_bool_str).unwrap_or(false);
            Ok(ok(quota_json(Some(&project), &q, usage.then_some(&u))))
        }
        .await,
    )
}

async fn quota_defaults(State(api): St, ctx: Ctx, Path(project): Path<String>) -> Response {
    respond(
        async {
            api.svc.quota_show(&ctx.auth, &project).await?;
            let q = api.svc.default_quotas().await?;
            Ok(ok(quota_json(Some(&project), &q, None)))
        }
        .await,
    )
}

async fn quota_update(
    State(api): St,
    ctx: Ctx,
    Path(project): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let Some(o) = b.get("quota_set").and_then(Value::as_object) else {
                return Err(VolumeError::bad(
                    "Missing required element 'quota_set' in request body.",
                ));
            };
            let mut set = crate::core::QuotaSet::new();
            for (k, v) in o {
                if k == "id" || k == "tenant_id" {
                    continue;
                }
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    VolumeError::invalid_input(format!("Quota '{k}' must be an integer, got {v}."))
                })?;
                set.insert(k.clone(), n);
            }
            let q = api.svc.quota_update(&ctx.auth, &project, &set).await?;
            Ok(ok(quota_json(None, &q, None)))
        }
        .await,
    )
}

async fn quota_delete(State(api): St, ctx: Ctx, Path(project): Path<String>) -> Response {
    respond(
        async {
            api.svc.quota_delete(&ctx.auth, &project).await?;
            Ok(StatusCode::OK.into_response())
        }
        .await,
    )
}

async fn limits(State(api): St, ctx: Ctx) -> Response {
    respond(
        async {
            let project = ctx.project().to_string();
            let (q, u) = api.svc.quota_show(&ctx.auth, &project).await?;
            let l = |k: &str| q.get(k).copied().unwrap_or(-1);
            let used = |k: &str| u.get(k).copied().unwrap_or(0);
            Ok(ok(json!({"limits": {"rate": [], "absolute": {
                "maxTotalVolumes": l("volumes"),
                "maxTotalSnapshots": l("snapshots"),
                "maxTotalVolumeGigabytes": l("gigabytes"),
                "maxTotalBackups": l("backups"),
                "maxTotalBackupGigabytes": l("backup_gigabytes"),
                "totalVolumesUsed": used("volumes"),
                "totalSnapshotsUsed": used("snapshots"),
                "totalGigabytesUsed": used("gigabytes"),
                "totalBackupsUsed": 0,
                "totalBackupGigabytesUsed": 0,
            }}})))
        }
        .await,
    )
}

async fn services(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(
        async {
            api.svc
                .authorize(&ctx.auth, "volume_extension:services:index", ctx.project())?;
            let host = &api.svc.cfg.host;
            let zone = &api.svc.cfg.availability_zone;
            let updated = render::ts(&chrono::Utc::now());
            let mut out = vec![
                json!({"binary": "cinder-scheduler", "host": host, "zone": zone,
            "status": "enabled", "state": "up", "updated_at": updated, "disabled_reason": null}),
            ];
            for b in api.svc.backends() {
                out.push(
                    json!({"binary": "cinder-volume", "host": format!("{host}@{}", b.name()),
                "zone": zone, "status": "enabled", "state": "up", "updated_at": updated,
                "disabled_reason": null, "replication_status": "disabled",
                "active_backend_id": null, "frozen": false}),
                );
            }
            out.retain(|s| {
                p.get("binary").is_none_or(|b| s["binary"] == b)
                    && p.get("host").is_none_or(|h| s["host"] == h)
            });
            Ok(ok(json!({"services": out})))
        }
        .await,
    )
}

async fn azs(State(api): St, _ctx: Ctx) -> Response {
    ok(
        json!({"availabilityZoneInfo": [{"zoneName": api.svc.cfg.availability_zone,
        "zoneState": {"available": true}}]}),
    )
}

async fn extensions(_ctx: Ctx) -> Response {
    let ext = |alias: &str, name: &str, desc: &str| {
        json!({"alias": alias, "name": name, "description": desc, "links": [],
            "updated": "2023-08-31T00:00:00+00:00"})
    };
    ok(json!({"extensions": [
        ext("os-admin-actions", "AdminActions", "Enable admin actions."),
        ext("os-hosts", "Hosts", "Admin-only host administration."),
        ext("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
        ext("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes", "Extended SnapshotAttributes support."),
        ext("os-quota-sets", "Quotas", "Quota management support."),
        ext("os-services", "Services", "Services support."),
        ext("os-types-manage", "TypesManage", "Types manage support."),
        ext("os-types-extra-specs", "TypesExtraSpecs", "Type extra specs support."),
        ext("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
        ext("os-vol-tenant-attr", "VolumeTenantAttribute", "Expose the internal project_id as an attribute of a volume."),
        ext("os-vol-image-meta", "VolumeImageMetadata", "Show image metadata associated with the volume."),
        ext("os-volume-actions", "VolumeActions", "Enable volume actions."),
        ext("os-extend-attached-volume", "ExtendAttachedVolume", "Extend an in-use volume (3.42)."),
    ]}))
}
