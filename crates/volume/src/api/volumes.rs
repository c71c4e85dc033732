//! `/v3/volumes`: CRUD, metadata, actions.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;
use crate::core::{CreateVolume, ListParams, TimeFilter, UploadRequest};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/volumes", get(list).post(create))
        .route("/volumes/detail", get(list_detail))
        .route("/volumes/{id}", get(show).put(update).delete(delete))
        .route("/volumes/{id}/action", post(action))
        .route(
            "/volumes/{id}/metadata",
            get(meta_show).post(meta_merge).put(meta_replace),
        )
        .route(
            "/volumes/{id}/metadata/{key}",
            get(meta_item).put(meta_item_put).delete(meta_item_delete),
        )
}

fn string_field(o: &Value, k: &str, max: usize) -> Result<Option<Option<String>>> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(Some(s.clone()))),
        Some(Value::String(s)) => Err(VolumeError::bad(format!(
            "Invalid input for field/attribute {k}. Value: {s}. '{s}' is too long"
        ))),
        Some(other) => Err(VolumeError::bad(format!(
            "Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

fn size_field(o: &Value) -> Result<Option<i64>> {
    let bad = |v: &Value, why: String| {
        VolumeError::bad(format!(
            "Invalid input for field/attribute size. Value: {}. {why}",
            match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        ))
    };
    match o.get("size") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(i) if i >= 1 => Ok(Some(i)),
            Some(i) => Err(bad(v, format!("{i} is less than the minimum of 1"))),
            None => Err(bad(v, format!("{n} is not of type 'integer', 'string'"))),
        },
        Some(v @ Value::String(s)) => match s.parse::<i64>() {
            Ok(i) if i >= 1 && s.chars().all(|c| c.is_ascii_digit()) => Ok(Some(i)),
            _ => Err(bad(v, format!("'{s}' does not match '^[0-9]+$'"))),
        },
        Some(v) => Err(bad(v, format!("{v} is not of type 'integer', 'string'"))),
    }
}

fn id_field(o: &Value, k: &str) -> Result<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(VolumeError::bad(format!(
            "Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Response {
    respond(async {
        let Some(o) = body.get("volume").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute volume. Value: None. 'volume' is a required property",
            ));
        };
        let name = string_field(o, "name", 255)?
            .or(string_field(o, "display_name", 255)?)
            .flatten();
        let description = string_field(o, "description", 255)?
            .or(string_field(o, "display_description", 255)?)
            .flatten();
        let metadata = match o.get("metadata") {
            None | Some(Value::Null) => Default::default(),
            Some(m) => metadata_of(m, "metadata")?,
        };
        let req = CreateVolume {
            size: size_field(o)?,
            name,
            description,
            metadata,
            availability_zone: id_field(o, "availability_zone")?,
            volume_type: id_field(o, "volume_type")?,
            snapshot_id: id_field(o, "snapshot_id")?,
            source_volid: id_field(o, "source_volid")?,
            image_ref: id_field(o, "imageRef")?.or(id_field(o, "image_id")?),
        };
        let v = api.svc.create_volume(&ctx.auth, &ctx.token, req).await?;
        Ok(accepted(json!({"volume": render::volume(&api.svc, &ctx, &v, &[], false)})))
    }
    .await)
}

fn list_params(p: &Params, mv: Mv) -> Result<ListParams> {
    let mut time_filters = Vec::new();
    if mv.at_least(60) {
        for field in ["created_at", "updated_at"] {
            if let Some(v) = p.get(field) {
                time_filters.push(TimeFilter::parse(field, v).map_err(VolumeError::invalid_input)?);
            }
        }
    }
    let metadata = match p.get("metadata") {
        None => None,
        Some(s) => {
            let v: Value = serde_json::from_str(s)
                .or_else(|_| serde_json::from_str(&s.replace('\'', "\"")))
                .map_err(|_| VolumeError::invalid_input(format!("Invalid metadata filter {s}")))?;
            Some(metadata_of(&v, "metadata")?)
        }
    };
    Ok(ListParams {
        all_tenants: all_tenants(p),
        project_id: p.get("project_id").map(str::to_string),
        name: p.get("name").or(p.get("display_name")).map(str::to_string),
        status: p.get("status").map(str::to_string),
        availability_zone: p.get("availability_zone").map(str::to_string),
        bootable: match p.get("bootable") {
            None => None,
            Some(b) => Some(parse_bool_str(b).ok_or_else(|| {
                VolumeError::invalid_input(format!("Invalid value '{b}' for bootable"))
            })?),
        },
        metadata,
        time_filters,
        sort: sort_of(
            p,
            &[
                "id",
                "name",
                "size",
                "status",
                "created_at",
                "updated_at",
                "availability_zone",
                "bootable",
                "display_name",
            ],
        )?
        .into_iter()
        .map(|(k, d)| {
            (
                if k == "display_name" {
                    "name".into()
                } else {
                    k
                },
                d,
            )
        })
        .collect(),
        limit: usize_param(p, "limit")?,
        marker: p.get("marker").map(str::to_string),
        offset: usize_param(p, "offset")?.unwrap_or(0),
    })
}

async fn list_any(api: Api, ctx: Ctx, p: Params, detail: bool) -> Result<Response> {
    let params = list_params(&p, ctx.mv)?;
    let r = api.svc.list_volumes(&ctx.auth, &params).await?;
    let atts = if detail {
        api.svc.attachments_by_volume().await?
    } else {
        Default::default()
    };
    let items: Vec<Value> = r
        .volumes
        .iter()
        .map(|v| {
            if detail {
                render::volume(
                    &api.svc,
                    &ctx,
                    v,
                    atts.get(&v.id).map(Vec::as_slice).unwrap_or(&[]),
                    true,
                )
            } else {
                render::volume_summary(&ctx, v)
            }
        })
        .collect();
    let mut out = json!({"volumes": items});
    if r.more
        && let Some(last) = r.volumes.last()
    {
        out["volumes_links"] = render::next_links(
            &ctx,
            "volumes",
            if detail { "volumes/detail" } else { "volumes" },
            &p.0,
            &last.id,
        );
    }
    if ctx.mv.at_least(45) && p.get("with_count").and_then(parse_bool_str) == Some(true) {
        let mut all = params.clone();
        all.limit = None;
        all.marker = None;
        all.offset = 0;
        out["count"] = json!(api.svc.list_volumes(&ctx.auth, &all).await?.volumes.len());
    }
    Ok(ok(out))
}

async fn list(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(list_any(api, ctx, p, false).await)
}

async fn list_detail(State(api): St, ctx: Ctx, p: Params) -> Response {
    respond(list_any(api, ctx, p, true).await)
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let v = api.svc.get_volume(&ctx.auth, &id).await?;
            let atts = api.svc.attachments_by_volume().await?;
            Ok(ok(json!({"volume": render::volume(
                &api.svc,
                &ctx,
                &v,
                atts.get(&v.id).map(Vec::as_slice).unwrap_or(&[]),
            true
            )})))
        }
        .await,
    )
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    respond(async {
        let Some(o) = body.get("volume").filter(|v| v.is_object()) else {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute volume. Value: None. 'volume' is a required property",
            ));
        };
        let name = string_field(o, "name", 255)?.or(string_field(o, "display_name", 255)?);
        let description =
            string_field(o, "description", 255)?.or(string_field(o, "display_description", 255)?);
        let metadata = match o.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => Some(metadata_of(m, "metadata")?),
        };
        if name.is_none() && description.is_none() && metadata.is_none() {
            return Err(VolumeError::bad(
                "Invalid input for field/attribute volume. Value: {}. {} does not have enough properties",
            ));
        }
        let v = api
            .svc
            .update_volume(&ctx.auth, &id, name, description, metadata)
            .await?;
        let atts = api.svc.attachments_by_volume().await?;
        Ok(ok(json!({"volume": render::volume(
            &api.svc,
            &ctx,
            &v,
            atts.get(&v.id).map(Vec::as_slice).unwrap_or(&[]),
            false
        )})))
    }
    .await)
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>, p: Params) -> Response {
    respond(
        async {
            let flag = |k: &str| -> Result<bool> {
                match p.get(k) {
                    None => Ok(false),
                    Some(v) => parse_bool_str(v).ok_or_else(|| {
                        VolumeError::invalid_input(format!("Invalid value '{v}' for {k}"))
                    }),
                }
            };
            let cascade = flag("cascade")?;
            let force = flag("force")?;
            api.svc
                .delete_volume(&ctx.auth, &id, cascade, force)
                .await?;
            Ok(accepted_empty())
        }
        .await,
    )
}

// ---------------------------------------------------------------- metadata

fn meta_body(body: &Value, key: &str) -> Result<crate::model::Metadata> {
    match body.get(key) {
        Some(m) => metadata_of(m, key),
        None => Err(VolumeError::bad("Malformed request body")),
    }
}

async fn meta_show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Response {
    respond(
        async {
            let v = api.svc.get_volume(&ctx.auth, &id).await?;
            Ok(ok(json!({"metadata": v.metadata})))
        }
        .await,
    )
}

async fn meta_merge(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "metadata")?;
            let all = api
                .svc
                .set_volume_metadata(&ctx.auth, &id, m, false)
                .await?;
            Ok(ok(json!({"metadata": all})))
        }
        .await,
    )
}

async fn meta_replace(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "metadata")?;
            let all = api.svc.set_volume_metadata(&ctx.auth, &id, m, true).await?;
            Ok(ok(json!({"metadata": all})))
        }
        .await,
    )
}

async fn meta_item(State(api): St, ctx: Ctx, Path((id, key)): Path<(String, String)>) -> Response {
    respond(
        async {
            let v = api.svc.get_volume(&ctx.auth, &id).await?;
            match v.metadata.get(&key) {
                Some(val) => Ok(ok(json!({"meta": {key: val}}))),
                None => Err(VolumeError::NotFound("Metadata item was not found".into())),
            }
        }
        .await,
    )
}

async fn meta_item_put(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> Response {
    respond(
        async {
            let m = meta_body(&b, "meta")?;
            if m.len() != 1 {
                return Err(VolumeError::bad("Request body contains too many items"));
            }
            if !m.contains_key(&key) {
                return Err(VolumeError::bad("Request body and URI mismatch"));
            }
            api.svc
                .set_volume_metadata(&ctx.auth, &id, m.clone(), false)
                .await?;
            Ok(ok(json!({"meta": m})))
        }
        .await,
    )
}

async fn meta_item_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            api.svc.delete_volume_metadata(&ctx.auth, &id, &key).await?;
            Ok(StatusCode::OK.into_response())
        }
        .await,
    )
}

// ---------------------------------------------------------------- actions

async fn action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    respond(do_action(&api, &ctx, &id, body).await)
}

fn bool_arg(args: &Value, k: &str) -> Result<bool> {
    match args.get(k) {
        Some(v) => parse_bool(v)
            .ok_or_else(|| VolumeError::invalid_input(format!("{k} must be a boolean, got {v}"))),
        None => Err(VolumeError::invalid_input(format!("Must specify '{k}'"))),
    }
}

fn str_arg(args: &Value, k: &str) -> Option<String> {
    args.get(k).and_then(Value::as_str).map(str::to_string)
}

async fn do_action(api: &Api, ctx: &Ctx, id: &str, body: Value) -> Result<Response> {
    let Some((name, args)) = body.as_object().and_then(|o| o.iter().next()) else {
        return Err(VolumeError::bad("Malformed request body"));
    };
    let svc = &api.svc;
    let a = &ctx.auth;
    match name.as_str() {
        "os-extend" => {
            let n = match args.get("new_size") {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                VolumeError::bad(format!(
                    "Invalid input for field/attribute new_size. Value: {}. must be an integer >= 1",
                    args.get("new_size").cloned().unwrap_or(Value::Null)
                ))
            })?;
            svc.extend_volume(a, id, n, ctx.mv.at_least(42), &ctx.request_id)
                .await?;
            Ok(accepted_empty())
        }
        "os-reset_status" => {
            let st = str_arg(args, "status");
            let att = str_arg(args, "attach_status");
            if st.is_none() && att.is_none() && args.get("migration_status").is_none() {
                return Err(VolumeError::invalid_input(
                    "Must specify 'status', 'attach_status' or 'migration_status' for update.",
                ));
            }
            svc.reset_status(a, id, st.as_deref(), att.as_deref())
                .await?;
            Ok(accepted_empty())
        }
        "os-set_bootable" => {
            let b = bool_arg(args, "bootable")
                .map_err(|_| VolumeError::invalid_input("Invalid value for 'bootable'"))?;
            svc.set_flag(a, id, Some(b), None).await?;
            Ok(StatusCode::OK.into_response())
        }
        "os-update_readonly_flag" => {
            let b = bool_arg(args, "readonly")
                .map_err(|_| VolumeError::invalid_input("Invalid value for 'readonly'"))?;
            svc.set_flag(a, id, None, Some(b)).await?;
            Ok(accepted_empty())
        }
        "os-volume_upload_image" => {
            let Some(image_name) = str_arg(args, "image_name") else {
                return Err(VolumeError::bad(
                    "Invalid input for field/attribute image_name. Value: None. 'image_name' is a required property",
                ));
            };
            let disk_format = str_arg(args, "disk_format").unwrap_or_else(|| "raw".into());
            if !["raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx"].contains(&disk_format.as_str()) {
                return Err(VolumeError::invalid_input(format!(
                    "Invalid disk-format '{disk_format}' is specified. Allowed disk-formats are raw, qcow2, vmdk, vdi, vhd, vhdx."
                )));
            }
            let req = UploadRequest {
                image_name,
                force: args.get("force").and_then(parse_bool).unwrap_or(false),
                disk_format,
                container_format: str_arg(args, "container_format")
                    .unwrap_or_else(|| "bare".into()),
                visibility: str_arg(args, "visibility"),
                protected: args.get("protected").and_then(parse_bool).unwrap_or(false),
            };
            let (v, image) = svc.upload_to_image(a, &ctx.token, id, req.clone()).await?;
            Ok(accepted(json!({"os-volume_upload_image": {
                "id": v.id,
                "updated_at": render::ts_opt(&v.updated_at),
                "status": v.status,
                "display_description": v.description,
                "size": v.size,
                "volume_type": {"name": v.volume_type_name, "id": v.volume_type_id},
                "image_id": image["id"],
                "container_format": req.container_format,
                "disk_format": req.disk_format,
                "image_name": req.image_name,
                "visibility": image["visibility"],
                "protected": image["protected"],
            }})))
        }
        "os-reserve" => {
            svc.os_reserve(a, id).await?;
            Ok(accepted_empty())
        }
        "os-unreserve" => {
            svc.os_unreserve(a, id).await?;
            Ok(accepted_empty())
        }
        "os-begin_detaching" => {
            svc.os_begin_detaching(a, id).await?;
            Ok(accepted_empty())
        }
        "os-roll_detaching" => {
            svc.os_roll_detaching(a, id).await?;
            Ok(accepted_empty())
        }
        "os-initialize_connection" => {
            let connector = args.get("connector").cloned().unwrap_or(Value::Null);
            let info = svc.os_initialize_connection(a, id, connector).await?;
            Ok(ok(json!({"connection_info": info})))
        }
        "os-terminate_connection" => {
            svc.os_terminate_connection(a, id).await?;
            Ok(accepted_empty())
        }
        "os-attach" => {
            let instance = str_arg(args, "instance_uuid");
            let host = str_arg(args, "host_name");
            if instance.is_none() && host.is_none() {
                return Err(VolumeError::invalid_input(
                    "Invalid request to attach volume to an invalid target",
                ));
            }
            let Some(mountpoint) = str_arg(args, "mountpoint") else {
                return Err(VolumeError::bad(
                    "Invalid input for field/attribute mountpoint. Value: None. 'mountpoint' is a required property",
                ));
            };
            let mode = str_arg(args, "mode");
            if let Some(m) = &mode
                && m != "rw"
                && m != "ro"
            {
                return Err(VolumeError::invalid_input(
                    "Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'",
                ));
            }
            svc.os_attach(a, id, instance, host, Some(mountpoint), mode)
                .await?;
            Ok(accepted_empty())
        }
        "os-detach" => {
            svc.os_detach(a, id, str_arg(args, "attachment_id")).await?;
            Ok(accepted_empty())
        }
        "os-force_delete" => {
            svc.delete_volume(a, id, false, true).await?;
            Ok(accepted_empty())
        }
        other => Err(VolumeError::bad(format!(
            "There is no such action: {other}"
        ))),
    }
}
