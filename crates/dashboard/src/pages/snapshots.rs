//! Volume snapshots, shown in a section of the volumes page: create one of a volume (force for
//! an in-use volume), rows polled while a snapshot is busy, delete, and a new volume made from
//! a snapshot. All through the volume API with the user's token.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use super::{flash_outcome, is_htmx, refusal, render, see_other, seg};
use crate::{Ctx, DashError, Dashboard, FormData};

const VOLUMES: &str = "/dashboard/project/volumes";

/// Cinder snapshot statuses a snapshot leaves by itself.
const BUSY: &[&str] = &[
    "creating",
    "deleting",
    "restoring",
    "backing-up",
    "unmanaging",
];

#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub status: String,
    pub volume_id: String,
    pub volume: String,
    pub created: String,
}

impl SnapshotRow {
    pub fn from_json(s: &Value, volume_names: &HashMap<String, String>) -> Self {
        let volume_id = s["volume_id"].as_str().unwrap_or_default().to_string();
        SnapshotRow {
            id: s["id"].as_str().unwrap_or_default().into(),
            name: s["name"].as_str().unwrap_or_default().into(),
            size: s["size"].as_i64().unwrap_or(0),
            status: s["status"].as_str().unwrap_or_default().into(),
            volume: volume_names
                .get(&volume_id)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| volume_id.clone()),
            volume_id,
            created: s["created_at"].as_str().unwrap_or_default().into(),
        }
    }

    pub fn polled(&self) -> bool {
        BUSY.contains(&self.status.as_str())
    }

    pub fn badge(&self) -> &'static str {
        match self.status.as_str() {
            "available" => "ok",
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

/// `GET /snapshots/detail` as rows, newest first.
pub fn rows(list: &Value, volume_names: &HashMap<String, String>) -> Vec<SnapshotRow> {
    let mut out: Vec<SnapshotRow> = list["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| SnapshotRow::from_json(s, volume_names))
        .collect();
    out.sort_by(|a, b| b.created.cmp(&a.created));
    out
}

/// `POST /snapshots`'s body: `force` only when asked for (an in-use volume).
pub fn create_body(volume_id: &str, name: &str, force: bool) -> Value {
    let mut s = json!({"volume_id": volume_id, "name": name});
    if force {
        s["force"] = json!(true);
    }
    json!({ "snapshot": s })
}

#[derive(Template)]
#[template(path = "snapshot_row.html")]
pub struct SnapshotRowFragment {
    pub csrf: String,
    pub can_write: bool,
    pub s: SnapshotRow,
    pub row_error: String,
}

pub async fn create(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let name = form.text("name");
    let body = create_body(&form.text("volume_id"), &name, form.get("force").is_some());
    let r = d
        .call(&ctx, "volume", Method::POST, "/snapshots", Some(&body))
        .await;
    flash_outcome(&d, &ctx, r, format!("Creating snapshot {name}."))?;
    Ok(see_other(&format!("{VOLUMES}#snapshots")))
}

async fn row_fragment(
    d: &Dashboard,
    ctx: &Ctx,
    id: &str,
    row_error: String,
) -> Result<Response, DashError> {
    let s = match d
        .get(ctx, "volume", &format!("/snapshots/{}", seg(id)))
        .await
    {
        Ok(v) => v,
        // deleted: the row goes away
        Err(DashError::Api(e)) if e.status() == Some(404) => {
            return Ok(Html(String::new()).into_response());
        }
        Err(e) => return Err(e),
    };
    let mut row = SnapshotRow::from_json(&s["snapshot"], &HashMap::new());
    // the volume's name, one call (a row alone has no list to take it from)
    if let Ok(v) = d
        .get(ctx, "volume", &format!("/volumes/{}", seg(&row.volume_id)))
        .await
        && let Some(n) = v["volume"]["name"].as_str().filter(|n| !n.is_empty())
    {
        row.volume = n.to_string();
    }
    render(&SnapshotRowFragment {
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        s: row,
        row_error,
    })
}

/// One row (what htmx polls while the snapshot is busy).
pub async fn row(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    row_fragment(&d, &ctx, &id, String::new()).await
}

/// delete (the row then polls until it is gone), create_volume (a new volume from it).
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    match form.text("action").as_str() {
        "delete" => {
            let path = format!("/snapshots/{}", seg(&id));
            let r = d.call(&ctx, "volume", Method::DELETE, &path, None).await;
            if is_htmx(&headers) {
                let problem = refusal(r)?;
                return row_fragment(&d, &ctx, &id, problem).await;
            }
            flash_outcome(&d, &ctx, r, "Deleting the snapshot.")?;
            Ok(see_other(&format!("{VOLUMES}#snapshots")))
        }
        "create_volume" => {
            let name = form.text("name");
            let mut v = json!({"snapshot_id": id, "name": name});
            // no size: the snapshot's
            if let Ok(size) = form.text("size").parse::<i64>() {
                v["size"] = json!(size);
            }
            let r = d
                .call(
                    &ctx,
                    "volume",
                    Method::POST,
                    "/volumes",
                    Some(&json!({ "volume": v })),
                )
                .await;
            flash_outcome(
                &d,
                &ctx,
                r,
                format!("Creating volume {name} from the snapshot."),
            )?;
            Ok(see_other(VOLUMES))
        }
        other => Err(DashError::NotFound(format!(
            "There is no snapshot action called {other:?}."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_rows() {
        let names = HashMap::from([("v1".to_string(), "data".to_string())]);
        let list = json!({"snapshots": [
            {"id": "a", "name": "old", "size": 1, "status": "available", "volume_id": "v1",
             "created_at": "2026-01-01T00:00:00.000000"},
            {"id": "b", "name": "", "size": 2, "status": "creating", "volume_id": "gone",
             "created_at": "2026-01-02T00:00:00.000000"}]});
        let r = rows(&list, &names);
        assert_eq!(r[0].display_name(), "b");
        assert!(r[0].polled() && r[0].badge() == "busy");
        assert_eq!(r[0].volume, "gone");
        assert_eq!((r[1].volume.as_str(), r[1].badge()), ("data", "ok"));
        assert!(!r[1].polled());
        let e = SnapshotRow::from_json(&json!({"status": "error_deleting"}), &names);
        assert_eq!(e.badge(), "bad");
    }

    #[test]
    fn create_bodies() {
        assert_eq!(
            create_body("v", "s", false),
            json!({"snapshot": {"volume_id": "v", "name": "s"}})
        );
        assert_eq!(create_body("v", "s", true)["snapshot"]["force"], true);
    }
}
