//! Images: the list the project can see (Glance's: own, public, shared, community), upload
//! (the file streamed on to Glance as it arrives, with a progress bar in the browser), an
//! image's page with its edit form (a JSON patch of what changed) and delete, and "Launch"
//! (the instance launch form with the image chosen).

use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use reqwest::Method;
use serde_json::{Value, json};

use super::{flash_outcome, refusal, render, see_other, seg};
use crate::api::ChannelBody;
use crate::multipart::{self, MultipartReader};
use crate::views::{self, ImageView, Layout};
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/images";

/// Glance's disk and container formats (its defaults), for the upload form.
pub const DISK_FORMATS: &[&str] = &[
    "qcow2", "raw", "vmdk", "vdi", "iso", "vhd", "vhdx", "ploop", "ami", "ari", "aki",
];
pub const CONTAINER_FORMATS: &[&str] = &["bare", "ovf", "ova", "docker", "ami", "ari", "aki"];
pub const VISIBILITIES: &[&str] = &["private", "shared", "community", "public"];

/// The upload form has 7 text fields; more is not a form of the dashboard's.
const MAX_FIELDS: usize = 32;

/// The media type Glance wants for a PATCH.
const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

#[derive(Template)]
#[template(path = "images.html")]
pub struct ImagesPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub images: Vec<ImageView>,
    pub disk_formats: &'static [&'static str],
    pub container_formats: &'static [&'static str],
    pub visibilities: &'static [&'static str],
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let list = d
        .get(&ctx, "image", "/images?limit=200&sort=name:asc")
        .await?;
    render(&ImagesPage {
        layout: d.layout(&ctx, "images"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        images: views::images(&list),
        disk_formats: DISK_FORMATS,
        container_formats: CONTAINER_FORMATS,
        visibilities: VISIBILITIES,
    })
}

/// `POST /images`'s body from the upload form's fields (min_disk and min_ram when numbers).
pub fn create_body(form: &FormData) -> Value {
    let mut b = json!({
        "name": form.text("name"),
        "disk_format": form.text("disk_format"),
        "container_format": form.text("container_format"),
        "visibility": form.text("visibility"),
    });
    for key in ["min_disk", "min_ram"] {
        if let Ok(n) = form.text(key).parse::<u64>() {
            b[key] = json!(n);
        }
    }
    b
}

/// Reads the upload's text fields: every part up to the file's (the form puts the file last).
/// True when a file part follows.
async fn read_fields<S, E>(
    reader: &mut MultipartReader<S>,
    fields: &mut Vec<(String, String)>,
) -> Result<bool, multipart::MultipartError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(head) = reader.next_part().await? {
        if head.filename.is_some() {
            return Ok(true);
        }
        // read before the CSRF check: a bounded number of bounded fields
        if fields.len() >= MAX_FIELDS {
            return Err(multipart::MultipartError::Malformed);
        }
        fields.push((head.name, reader.text().await?));
    }
    Ok(false)
}

/// Upload: the image is created in Glance from the form's fields, then the file part is
/// passed on to `PUT /images/{id}/file` chunk by chunk as the browser sends it. A failed
/// transfer deletes the image again (no image left queued forever).
pub async fn upload(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DashError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = multipart::boundary(content_type) else {
        return Err(DashError::BadRequest(
            "An image upload is a multipart/form-data form.".into(),
        ));
    };
    let mut reader = MultipartReader::new(body.into_data_stream(), &boundary);
    let mut fields = Vec::new();
    let read = read_fields(&mut reader, &mut fields).await;
    let form = FormData(fields);
    // the CSRF token is the form's first field: checked before anything else is done
    let ctx = d.post_ctx(&headers, &form)?;
    match read {
        Ok(true) => {}
        Ok(false) => {
            d.sessions
                .flash(&ctx.sid, "error", "Choose a file to upload.");
            return Ok(see_other(PAGE));
        }
        Err(e) => return Err(DashError::BadRequest(e.to_string())),
    }
    let name = form.text("name");
    let image = match d
        .call(
            &ctx,
            "image",
            Method::POST,
            "/images",
            Some(&create_body(&form)),
        )
        .await
    {
        Ok(v) => v,
        r => {
            // the browser is still sending the file: it sees the answer only once it is done
            // (an answer before that is a reset connection to it)
            while let Ok(Some(_)) = reader.chunk().await {}
            flash_outcome(&d, &ctx, r, "")?;
            return Ok(see_other(PAGE));
        }
    };
    let id = image["id"].as_str().unwrap_or_default().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let pump = async move {
        // false once the PUT has stopped (Glance refused: its error is the one to show); the
        // rest of the upload is then read and dropped, so the browser gets the answer
        let mut passing = true;
        loop {
            match reader.chunk().await {
                Ok(Some(c)) => {
                    if passing && tx.send(Ok(c)).await.is_err() {
                        passing = false;
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            }
        }
    };
    let file_path = format!("/images/{}/file", seg(&id));
    let put = d.call_body(
        &ctx,
        "image",
        Method::PUT,
        &file_path,
        "application/octet-stream",
        reqwest::Body::wrap(ChannelBody(rx)),
    );
    let (pumped, put) = tokio::join!(pump, put);
    let mut problem = refusal(put)?;
    if problem.is_empty()
        && let Err(e) = pumped
    {
        problem = e.to_string();
    }
    if problem.is_empty() {
        d.sessions
            .flash(&ctx.sid, "ok", format!("Uploaded image {name}."));
    } else {
        let path = format!("/images/{}", seg(&id));
        let undone = refusal(d.call(&ctx, "image", Method::DELETE, &path, None).await)?;
        if !undone.is_empty() {
            problem = format!("{problem} The image {name} could not be deleted again: {undone}");
        }
        d.sessions.flash(&ctx.sid, "error", problem);
    }
    Ok(see_other(PAGE))
}

/// The JSON patch of what the edit form changes (only what differs from `current`), or the
/// field whose value is not a number.
pub fn image_patch(current: &Value, form: &FormData) -> Result<Vec<Value>, String> {
    let mut ops = Vec::new();
    for key in ["name", "visibility"] {
        let new = form.text(key);
        if current[key].as_str().unwrap_or_default() != new {
            ops.push(json!({"op": "replace", "path": format!("/{key}"), "value": new}));
        }
    }
    for key in ["min_disk", "min_ram"] {
        let text = form.text(key);
        let new = if text.is_empty() {
            0
        } else {
            text.parse::<u64>().map_err(|_| key.to_string())?
        };
        if current[key].as_u64().unwrap_or(0) != new {
            ops.push(json!({"op": "replace", "path": format!("/{key}"), "value": new}));
        }
    }
    Ok(ops)
}

pub struct ImageDetail {
    pub id: String,
    pub name: String,
    pub status: String,
    pub visibility: String,
    pub owner: String,
    pub disk_format: String,
    pub container_format: String,
    pub size: String,
    pub min_disk: u64,
    pub min_ram: u64,
    pub checksum: String,
    pub created: String,
}

impl ImageDetail {
    pub fn from_json(i: &Value) -> Self {
        let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
        ImageDetail {
            id: s("id"),
            name: s("name"),
            status: s("status"),
            visibility: s("visibility"),
            owner: s("owner"),
            disk_format: s("disk_format"),
            container_format: s("container_format"),
            size: i["size"]
                .as_i64()
                .map(views::human_size)
                .unwrap_or_default(),
            min_disk: i["min_disk"].as_u64().unwrap_or(0),
            min_ram: i["min_ram"].as_u64().unwrap_or(0),
            checksum: s("checksum"),
            created: s("created_at"),
        }
    }
}

#[derive(Template)]
#[template(path = "image_detail.html")]
pub struct ImageDetailPage {
    pub layout: Layout,
    pub csrf: String,
    /// the user may write and the image is the project's
    pub can_edit: bool,
    pub i: ImageDetail,
    pub visibilities: &'static [&'static str],
}

async fn image(d: &Dashboard, ctx: &Ctx, id: &str) -> Result<Value, DashError> {
    d.get(ctx, "image", &format!("/images/{}", seg(id))).await
}

pub async fn detail(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let i = ImageDetail::from_json(&image(&d, &ctx, &id).await?);
    render(&ImageDetailPage {
        layout: d.layout(&ctx, "images"),
        csrf: ctx.session.csrf.clone(),
        can_edit: ctx.auth.can_write() && i.owner == ctx.auth.project.id,
        i,
        visibilities: VISIBILITIES,
    })
}

/// edit (a PATCH of what changed), delete.
pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let path = format!("/images/{}", seg(&id));
    let here = format!("{PAGE}/{}", seg(&id));
    match form.text("action").as_str() {
        "edit" => {
            let current = image(&d, &ctx, &id).await?;
            let ops = match image_patch(&current, &form) {
                Ok(ops) => ops,
                Err(field) => {
                    d.sessions.flash(
                        &ctx.sid,
                        "error",
                        format!("{field} must be a whole number."),
                    );
                    return Ok(see_other(&here));
                }
            };
            if ops.is_empty() {
                d.sessions.flash(&ctx.sid, "info", "Nothing was changed.");
                return Ok(see_other(&here));
            }
            let body = serde_json::to_vec(&ops).unwrap_or_default();
            let r = d
                .call_body(&ctx, "image", Method::PATCH, &path, JSON_PATCH, body.into())
                .await;
            flash_outcome(&d, &ctx, r, "Image updated.")?;
            Ok(see_other(&here))
        }
        "delete" => {
            let r = d.call(&ctx, "image", Method::DELETE, &path, None).await;
            let deleted = flash_outcome(&d, &ctx, r, "Image deleted.")?;
            Ok(see_other(if deleted { PAGE } else { &here }))
        }
        other => Err(DashError::NotFound(format!(
            "There is no image action called {other:?}."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn fields_before_the_file_are_bounded() {
        let mut raw = String::new();
        for i in 0..MAX_FIELDS + 1 {
            raw.push_str(&format!(
                "--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n"
            ));
        }
        raw.push_str("--B--\r\n");
        let chunks = vec![Ok::<_, std::convert::Infallible>(Bytes::from(raw))];
        let mut reader = MultipartReader::new(futures::stream::iter(chunks), "B");
        let mut fields = Vec::new();
        let r = read_fields(&mut reader, &mut fields).await;
        assert_eq!(r, Err(multipart::MultipartError::Malformed));
        assert_eq!(fields.len(), MAX_FIELDS);
    }

    #[test]
    fn create_bodies() {
        let b = create_body(&form(&[
            ("name", "cirros"),
            ("disk_format", "qcow2"),
            ("container_format", "bare"),
            ("visibility", "private"),
            ("min_disk", "1"),
            ("min_ram", ""),
        ]));
        assert_eq!(
            b,
            json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
                "visibility": "private", "min_disk": 1})
        );
    }

    #[test]
    fn patches_carry_only_what_changed() {
        let current = json!({"name": "a", "visibility": "private", "min_disk": 0, "min_ram": 64});
        let ops = image_patch(
            &current,
            &form(&[
                ("name", "b"),
                ("visibility", "private"),
                ("min_disk", "2"),
                ("min_ram", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/name", "value": "b"}),
                json!({"op": "replace", "path": "/min_disk", "value": 2}),
            ]
        );
        let same = form(&[
            ("name", "a"),
            ("visibility", "private"),
            ("min_disk", ""),
            ("min_ram", "64"),
        ]);
        assert!(image_patch(&current, &same).unwrap().is_empty());
        let bad = form(&[
            ("name", "a"),
            ("visibility", "private"),
            ("min_ram", "lots"),
        ]);
        assert_eq!(image_patch(&current, &bad).unwrap_err(), "min_ram");
    }
}
