//! Image data (upload, stage, download), import, tasks and the info calls.

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use common::auth::Authenticated;
use common::request_id::RequestId;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::{Api, JsonBody, json_ok, no_content, render};
use crate::core::ImportRequest;
use crate::error::{ImageError, Result};
use crate::model::*;

pub fn routes() -> Router<Api> {
    // Image data is streamed: no body limit on these two (the size cap applies instead).
    let data = Router::new()
        .route("/images/{id}/file", put(upload).get(download))
        .route("/images/{id}/stage", put(stage))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(data)
        .route("/images/{id}/import", post(import))
        .route("/images/{id}/tasks", get(image_tasks))
        .route("/tasks", get(list_tasks))
        .route("/tasks/{id}", get(show_task))
        .route("/info/import", get(info_import))
        .route("/info/stores", get(info_stores))
}

/// The body must be declared as `application/octet-stream` (415 otherwise, as Glance).
fn check_octet_stream(headers: &HeaderMap) -> Result<()> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some("application/octet-stream") => Ok(()),
        other => {
            let shown = other.unwrap_or("None");
            Err(ImageError::UnsupportedMediaType(format!(
                "The request media type {shown} is not supported by this server. Invalid \
                 content type {shown}"
            )))
        }
    }
}

/// `x-openstack-image-size`, else Content-Length.
fn declared_size(headers: &HeaderMap) -> Result<Option<u64>> {
    for h in ["x-openstack-image-size", "content-length"] {
        if let Some(v) = headers.get(h) {
            return v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    ImageError::bad("Invalid or missing image size in request headers.")
                });
        }
    }
    Ok(None)
}

async fn upload(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_octet_stream(&headers)?;
    let size = declared_size(&headers)?;
    api.svc
        .upload(&ctx, &id, size, body.into_data_stream())
        .await?;
    Ok(no_content())
}

async fn stage(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    check_octet_stream(&headers)?;
    let size = declared_size(&headers)?;
    api.svc
        .stage(&ctx, &id, size, body.into_data_stream())
        .await?;
    Ok(no_content())
}

/// A single `Range: bytes=...` against `size`: Ok(None) for no/ignored range,
/// Err(()) when unsatisfiable.
fn parse_range(headers: &HeaderMap, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn download(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let dl = api.svc.download(&ctx, &id).await?;
    let Some(size) = dl.size else {
        return Ok(no_content());
    };
    let range = match parse_range(&headers, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = common::Fault::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested range not satisfiable",
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(http::header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let (offset, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let stream = api
        .svc
        .store()
        .read(&id, offset, Some(len))
        .await
        .map_err(|e| ImageError::Internal(format!("reading image {id}: {e}")))?;
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(c) = &dl.image.checksum
        && let Ok(v) = HeaderValue::from_str(c)
    {
        h.insert("content-md5", v);
    }
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}"))
    {
        h.insert(http::header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

fn parse_import(api: &Api, body: &Value) -> Result<ImportRequest> {
    let Some(method) = body.get("method") else {
        return Err(ImageError::bad("Import request requires a 'method' field."));
    };
    let Some(name) = method.get("name").and_then(Value::as_str) else {
        return Err(ImageError::bad("Import request requires a 'name' field."));
    };
    if !api.svc.import_enabled(name) {
        return Err(ImageError::bad(format!(
            "Unknown import method name '{name}'."
        )));
    }
    for k in ["all_stores_must_succeed", "all_stores"] {
        if let Some(v) = body.get(k)
            && !v.is_boolean()
            && !v.is_null()
        {
            return Err(ImageError::bad(format!("'{k}' must be boolean value only")));
        }
    }
    if let Some(Value::Array(stores)) = body.get("stores") {
        for s in stores {
            if s.as_str() != Some(api.svc.cfg.store_id.as_str()) {
                return Err(ImageError::conflict(format!(
                    "Store for identifier {} not found",
                    s.as_str().unwrap_or("")
                )));
            }
        }
    }
    let method = match name {
        "glance-direct" => ImportMethod::GlanceDirect,
        "web-download" => ImportMethod::WebDownload {
            uri: method
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or("None")
                .to_string(),
        },
        other => {
            return Err(ImageError::bad(format!(
                "Unknown import method name '{other}'."
            )));
        }
    };
    Ok(ImportRequest {
        method,
        body: body.clone(),
    })
}

async fn import(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    rid: Option<Extension<RequestId>>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let req = parse_import(&api, &body)?;
    api.svc
        .import(&ctx, &id, req, rid.map(|Extension(r)| r.0))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn image_tasks(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let tasks = api.svc.image_tasks(&ctx, &id).await.map_err(|e| match e {
        ImageError::Forbidden(_) => ImageError::not_found("The resource could not be found."),
        other => other,
    })?;
    Ok(json_ok(json!({
        "tasks": tasks.iter().map(render::image_task).collect::<Vec<_>>()
    })))
}

async fn list_tasks(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let mut status = None;
    let mut task_type = None;
    let mut asc = false;
    let mut limit = api.svc.cfg.limit_param_default;
    let mut marker = None;
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "status" => {
                status = Some(TaskStatus::parse(v).ok_or_else(|| {
                    ImageError::bad(format!(
                        "Invalid status value: {v}. It must be one of the following: pending, processing, success, failure."
                    ))
                })?)
            }
            "type" => task_type = Some(v.to_string()),
            "sort_dir" => {
                asc = match v {
                    "asc" => true,
                    "desc" => false,
                    _ => return Err(ImageError::bad(format!("Invalid sort direction: {v}"))),
                }
            }
            "sort_key" if v != "created_at" => {
                return Err(ImageError::bad(format!("Invalid sort key: {v}.")));
            }
            "limit" => {
                limit = v
                    .parse::<u64>()
                    .map_err(|_| ImageError::bad("limit param must be an integer"))?
                    .min(api.svc.cfg.api_limit_max)
            }
            "marker" => marker = Some(v.to_string()),
            _ => {}
        }
    }
    let tasks = api
        .svc
        .list_tasks(&ctx, status, task_type.as_deref(), asc)
        .await?;
    let start = match &marker {
        Some(m) => {
            tasks.iter().position(|t| &t.id == m).ok_or_else(|| {
                ImageError::bad(format!("Invalid marker. Task {m} could not be found."))
            })? + 1
        }
        None => 0,
    };
    let page: Vec<&Task> = tasks.iter().skip(start).take(limit as usize).collect();
    let mut body = json!({
        "tasks": page.iter().map(|t| render::task_stub(t)).collect::<Vec<_>>(),
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    });
    if page.len() as u64 == limit
        && start + page.len() < tasks.len()
        && let (Some(last), Some(o)) = (page.last(), body.as_object_mut())
    {
        o.insert(
            "next".into(),
            json!(format!("/v2/tasks?marker={}", last.id)),
        );
    }
    Ok(json_ok(body))
}

async fn show_task(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let t = api.svc.get_task(&ctx, &id).await?;
    Ok(json_ok(render::task(&t)))
}

async fn info_import(State(api): State<Api>, Authenticated(_ctx): Authenticated) -> Response {
    json_ok(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": api.svc.cfg.enabled_import_methods,
        }
    }))
}

async fn info_stores(State(api): State<Api>, Authenticated(_ctx): Authenticated) -> Response {
    json_ok(json!({
        "stores": [{
            "id": api.svc.cfg.store_id,
            "description": "Local filesystem store",
            "default": "true",
        }]
    }))
}
