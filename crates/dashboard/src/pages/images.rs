//! The images the project can see (Glance's list: own, public, shared, community).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::render;
use crate::views::{self, ImageView, Layout};
use crate::{DashError, Dashboard};

#[derive(Template)]
#[template(path = "images.html")]
pub struct ImagesPage {
    pub layout: Layout,
    pub images: Vec<ImageView>,
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
        images: views::images(&list),
    })
}
