//! Volumes: the list (rows polled while a volume is busy), create, attach to an instance and
//! detach (through compute's os-volume_attachments, as Nova's users do), extend, delete.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use super::snapshots::{self, SnapshotRow};
use super::{is_htmx, refusal, render, see_other, seg};
use crate::views::{Layout, Named};
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/volumes";

/// Cinder statuses a volume leaves by itself.
const BUSY: &[&str] = &[
    "creating",
    "attaching",
    "detaching",
    "extending",
    "deleting",
    "downloading",
    "uploading",
    "reserved",
    "backing-up",
    "restoring-backup",
    "retyping",
    "maintenance",
];

#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub status: String,
    /// (server id, server name, device)
    pub attached: Vec<(String, String, String)>,
    pub bootable: bool,
    /// after an action that the API only queued (attach, detach): the status awaited, and how
    /// many more polls to wait for it
    pub until: String,
    pub left: u32,
}

impl VolumeRow {
    pub fn from_json(v: &Value, servers: &HashMap<String, String>) -> Self {
        VolumeRow {
            id: v["id"].as_str().unwrap_or_default().into(),
            name: v["name"].as_str().unwrap_or_default().into(),
            size: v["size"].as_i64().unwrap_or(0),
            status: v["status"].as_str().unwrap_or_default().into(),
            attached: v["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let sid = a["server_id"].as_str().unwrap_or_default().to_string();
                    let name = servers.get(&sid).cloned().unwrap_or_else(|| sid.clone());
                    (sid, name, a["device"].as_str().unwrap_or_default().into())
                })
                .collect(),
            bootable: v["bootable"] == "true" || v["bootable"] == true,
            until: String::new(),
            left: 0,
        }
    }

    pub fn transitional(&self) -> bool {
        BUSY.contains(&self.status.as_str())
    }

    /// Polled while busy, or while an awaited status has not come yet (for a while).
    pub fn polled(&self) -> bool {
        self.transitional()
            || (!self.until.is_empty() && self.status != self.until && self.left > 0)
    }

    /// The URL the next poll asks.
    pub fn poll_url(&self) -> String {
        if self.until.is_empty() || self.status == self.until {
            format!("/dashboard/project/volumes/{}/row", self.id)
        } else {
            format!(
                "/dashboard/project/volumes/{}/row?until={}&left={}",
                self.id,
                self.until,
                self.left.saturating_sub(1)
            )
        }
    }

    pub fn badge(&self) -> &'static str {
        match self.status.as_str() {
            "available" => "ok",
            "in-use" => "ok",
            s if s.starts_with("error") => "bad",
            _ => "busy",
        }
    }

    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

#[derive(Template)]
#[template(path = "volumes.html")]
pub struct VolumesPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub volumes: Vec<VolumeRow>,
    pub servers: Vec<Named>,
    pub row_error: String,
    pub error_field: String,
    pub error: String,
    pub form_name: String,
    pub form_size: String,
    pub snapshots: Vec<SnapshotRow>,
}

#[derive(Template)]
#[template(path = "volume_row.html")]
pub struct VolumeRowFragment {
    pub csrf: String,
    pub can_write: bool,
    pub v: VolumeRow,
    pub servers: Vec<Named>,
    pub row_error: String,
}

async fn servers(d: &Dashboard, ctx: &Ctx) -> Result<Vec<Named>, DashError> {
    let list = d.get(ctx, "compute", "/servers").await?;
    let mut out: Vec<Named> = list["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Named {
            id: s["id"].as_str().unwrap_or_default().into(),
            name: s["name"].as_str().unwrap_or_default().into(),
            extra: String::new(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn names(servers: &[Named]) -> HashMap<String, String> {
    servers
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect()
}

async fn page(
    d: &Dashboard,
    ctx: &Ctx,
    error: Option<(String, String)>,
    form: Option<&FormData>,
) -> Result<Response, DashError> {
    let (vols, srv, snaps) = tokio::join!(
        d.get(ctx, "volume", "/volumes/detail"),
        servers(d, ctx),
        d.get(ctx, "volume", "/snapshots/detail")
    );
    let vols = vols?;
    let srv = srv?;
    let by_id = names(&srv);
    let volumes: Vec<VolumeRow> = vols["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| VolumeRow::from_json(v, &by_id))
        .collect();
    let volume_names = volumes
        .iter()
        .map(|v| (v.id.clone(), v.name.clone()))
        .collect();
    let snapshots = snapshots::rows(&snaps?, &volume_names);
    let (error_field, error) = error.unwrap_or_default();
    render(&VolumesPage {
        layout: d.layout(ctx, "volumes"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        volumes,
        servers: srv,
        row_error: String::new(),
        error_field,
        error,
        form_name: form.map(|f| f.text("name")).unwrap_or_default(),
        form_size: form.map(|f| f.text("size")).unwrap_or_else(|| "1".into()),
        snapshots,
    })
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    page(&d, &ctx, None, None).await
}

pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let Ok(size) = form.text("size").parse::<i64>() else {
        let e = (
            "size".into(),
            "The size must be a whole number of GiB.".into(),
        );
        return page(&d, &ctx, Some(e), Some(&form)).await;
    };
    let body = json!({"volume": {"name": name, "size": size}});
    match d
        .call(&ctx, "volume", Method::POST, "/volumes", Some(&body))
        .await
    {
        Ok(_) => {
            d.sessions
                .flash(&ctx.sid, "ok", format!("Creating volume {name}."));
            Ok(see_other(PAGE))
        }
        Err(DashError::Api(e)) if e.status().is_some_and(|s| s < 500 && s != 403) => {
            let m = e.to_string().to_ascii_lowercase();
            let field = if m.contains("size") || m.contains("gigabytes") || m.contains("quota") {
                "size"
            } else if m.contains("name") {
                "name"
            } else {
                ""
            };
            let msg = crate::error::api_message(&e);
            page(&d, &ctx, Some((field.into(), msg)), Some(&form)).await
        }
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize, Default)]
pub struct Awaited {
    until: Option<String>,
    left: Option<u32>,
}

/// Statuses a row may wait for.
const AWAITABLE: &[&str] = &["available", "in-use"];

async fn row_fragment(
    d: &Dashboard,
    ctx: &Ctx,
    id: &str,
    row_error: String,
    awaited: Awaited,
) -> Result<Response, DashError> {
    let path = format!("/volumes/{}", seg(id));
    let (v, srv) = tokio::join!(d.get(ctx, "volume", &path), servers(d, ctx));
    let v = match v {
        Ok(v) => v,
        Err(DashError::Api(e)) if e.status() == Some(404) => {
            return Ok(Html(String::new()).into_response());
        }
        Err(e) => return Err(e),
    };
    let srv = srv?;
    let mut v = VolumeRow::from_json(&v["volume"], &names(&srv));
    if let Some(until) = awaited.until.filter(|u| AWAITABLE.contains(&u.as_str())) {
        v.until = until;
        v.left = awaited.left.unwrap_or(0).min(60);
    }
    render(&VolumeRowFragment {
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        v,
        servers: srv,
        row_error,
    })
}

/// One row (what htmx polls while the volume is busy).
pub async fn row(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(awaited): Query<Awaited>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    row_fragment(&d, &ctx, &id, String::new(), awaited).await
}

pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let action = form.text("action");
    let vp = format!("/volumes/{}", seg(&id));
    let r = match action.as_str() {
        "delete" => d.call(&ctx, "volume", Method::DELETE, &vp, None).await,
        "extend" => match form.text("new_size").parse::<i64>() {
            Ok(n) => {
                let body = json!({"os-extend": {"new_size": n}});
                d.call(
                    &ctx,
                    "volume",
                    Method::POST,
                    &format!("{vp}/action"),
                    Some(&body),
                )
                .await
            }
            Err(_) => Err(DashError::Api(crate::api::ApiError::Status {
                service: "dashboard".into(),
                status: 400,
                message: "The new size must be a whole number of GiB.".into(),
            })),
        },
        "attach" => {
            let server = form.text("server_id");
            let body = json!({"volumeAttachment": {"volumeId": id}});
            d.call(
                &ctx,
                "compute",
                Method::POST,
                &format!("/servers/{}/os-volume_attachments", seg(&server)),
                Some(&body),
            )
            .await
        }
        "detach" => {
            let server = form.text("server_id");
            d.call(
                &ctx,
                "compute",
                Method::DELETE,
                &format!(
                    "/servers/{}/os-volume_attachments/{}",
                    seg(&server),
                    seg(&id)
                ),
                None,
            )
            .await
        }
        other => {
            return Err(DashError::NotFound(format!(
                "There is no volume action called {other:?}."
            )));
        }
    };
    let problem = refusal(r)?;
    if is_htmx(&headers) {
        // attach and detach are queued by compute: the row waits for their outcome
        let until = match action.as_str() {
            "attach" if problem.is_empty() => Some("in-use".to_string()),
            "detach" | "extend" if problem.is_empty() => Some("available".to_string()),
            _ => None,
        };
        let awaited = Awaited {
            until,
            left: Some(30),
        };
        return row_fragment(&d, &ctx, &id, problem, awaited).await;
    }
    if problem.is_empty() {
        d.sessions.flash(
            &ctx.sid,
            "ok",
            format!("Requested {action} of volume {id}."),
        );
    } else {
        d.sessions.flash(&ctx.sid, "error", problem);
    }
    Ok(see_other(PAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_rows() {
        let servers = HashMap::from([("s1".to_string(), "web".to_string())]);
        let v = VolumeRow::from_json(
            &json!({"id": "v", "name": "", "size": 2, "status": "in-use", "bootable": "false",
                "attachments": [{"server_id": "s1", "device": "/dev/vdb"}]}),
            &servers,
        );
        assert_eq!(v.display_name(), "v");
        assert_eq!(v.attached[0].1, "web");
        assert!(!v.transitional() && !v.bootable);
        let c = VolumeRow::from_json(&json!({"status": "creating"}), &servers);
        assert!(c.transitional());
        assert_eq!(c.badge(), "busy");
        assert_eq!(
            VolumeRow::from_json(&json!({"status": "error_extending"}), &servers).badge(),
            "bad"
        );
    }
}
