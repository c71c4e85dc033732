//! Nova's image proxy API (2.1-2.35; 404 from 2.36): `GET /images`, `/images/detail`,
//! `/images/{id}`, `DELETE /images/{id}`, with Nova's image view (`minRam`, `minDisk`,
//! `metadata`, upper-case status, progress, the server a snapshot came from).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::keypairs::{last, query_uint};
use super::{Api, Ctx, St, no_content, query_pairs, render};
use crate::error::Result;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/images", get(index))
        .route("/images/detail", get(detail))
        .route("/images/{id}", get(show).delete(remove))
}

/// Nova's status of an image-service status.
fn status(s: &str) -> &'static str {
    match s {
        "active" => "ACTIVE",
        "queued" | "saving" => "SAVING",
        "deleted" | "pending_delete" => "DELETED",
        "killed" => "ERROR",
        _ => "UNKNOWN",
    }
}

fn progress(s: &str) -> u32 {
    match s {
        "queued" => 25,
        "saving" => 50,
        "active" => 100,
        _ => 0,
    }
}

/// `2011-01-01T01:02:03Z` of an image-service timestamp.
fn date(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| json!(render::iso(&t.with_timezone(&chrono::Utc))))
            .unwrap_or_else(|_| json!(s)),
        None => Value::Null,
    }
}

/// An integer of an image attribute (`int(x or 0)`).
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(0)
}

fn links(ctx: &Ctx, glance: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/images/{id}", ctx.base)},
        {"rel": "bookmark", "href": format!("{}/images/{id}", ctx.bookmark)},
        {"rel": "alternate", "type": "application/vnd.openstack.image",
         "href": format!("{}/images/{id}", glance.trim_end_matches('/'))},
    ])
}

/// Nova's image view of an image in Nova's internal form.
fn view(ctx: &Ctx, glance: &str, image: &Value) -> Value {
    let id = image["id"].as_str().unwrap_or_default();
    let st = image["status"].as_str().unwrap_or_default();
    let metadata = image["properties"].clone();
    let mut v = json!({
        "id": id,
        "name": image["name"],
        "minRam": int(&image["min_ram"]),
        "minDisk": int(&image["min_disk"]),
        "metadata": metadata,
        "created": date(&image["created_at"]),
        "updated": date(&image["updated_at"]),
        "status": status(st),
        "progress": progress(st),
        "OS-EXT-IMG-SIZE:size": image["size"],
        "links": links(ctx, glance, id),
    });
    if let Some(server) = metadata["instance_uuid"].as_str() {
        v["server"] = json!({"id": server, "links": render::links(ctx, "servers", server)});
    }
    let auto = match &metadata["auto_disk_config"] {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(
            s.to_lowercase().as_str(),
            "1" | "t" | "true" | "on" | "y" | "yes"
        )),
        _ => None,
    };
    if let Some(a) = auto {
        v["OS-DCF:diskConfig"] = json!(if a { "AUTO" } else { "MANUAL" });
    }
    v
}

fn brief(ctx: &Ctx, glance: &str, image: &Value) -> Value {
    let id = image["id"].as_str().unwrap_or_default();
    json!({"id": id, "name": image["name"], "links": links(ctx, glance, id)})
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.proxy_api()?;
    let image = api
        .svc
        .proxy_image(&ctx.token, &ctx.request_id, &id)
        .await?;
    let glance = api.svc.image_endpoint().await?;
    Ok(Json(json!({"image": view(&ctx, &glance, &image)})).into_response())
}

async fn remove(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.proxy_api()?;
    api.svc
        .proxy_image_delete(&ctx.token, &ctx.request_id, &id)
        .await?;
    Ok(no_content())
}

async fn index(state: St, ctx: Ctx, q: RawQuery) -> Result<Response> {
    list(state, ctx, q, false).await
}

async fn detail(state: St, ctx: Ctx, q: RawQuery) -> Result<Response> {
    list(state, ctx, q, true).await
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery, detail: bool) -> Result<Response> {
    ctx.proxy_api()?;
    let pairs = query_pairs(q.as_deref());
    let limit = last(&pairs, "limit")
        .map(|l| query_uint("limit", l))
        .transpose()?;
    let images = api
        .svc
        .proxy_images(&ctx.token, &ctx.request_id, &pairs, limit)
        .await?;
    let glance = api.svc.image_endpoint().await?;
    let items: Vec<Value> = images
        .iter()
        .map(|i| {
            if detail {
                view(&ctx, &glance, i)
            } else {
                brief(&ctx, &glance, i)
            }
        })
        .collect();
    let mut body = json!({"images": items});
    if let Some(l) = limit
        && l > 0
        && images.len() == l
        && let Some(lastid) = images.last().and_then(|i| i["id"].as_str())
    {
        let mut qs: Vec<(String, String)> =
            pairs.into_iter().filter(|(n, _)| n != "marker").collect();
        qs.push(("marker".into(), lastid.to_string()));
        let enc = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(qs)
            .finish();
        let coll = if detail { "images/detail" } else { "images" };
        body["images_links"] =
            json!([{"rel": "next", "href": format!("{}/{coll}?{enc}", ctx.base)}]);
    }
    Ok(Json(body).into_response())
}
