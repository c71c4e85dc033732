//! The project's overview: quota usage as bars (compute limits, network and volume quotas).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{render, seg};
use crate::views::{self, Layout, Usage};
use crate::{DashError, Dashboard};

/// One group of bars, or why it could not be read.
pub struct Section {
    pub title: &'static str,
    pub bars: Vec<Usage>,
    pub error: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub sections: Vec<Section>,
}

fn section(
    title: &'static str,
    r: Result<serde_json::Value, DashError>,
    f: fn(&serde_json::Value) -> Vec<Usage>,
) -> Result<Section, DashError> {
    Ok(match r {
        Ok(v) => Section {
            title,
            bars: f(&v),
            error: String::new(),
        },
        Err(DashError::Api(e)) => Section {
            title,
            bars: Vec::new(),
            error: crate::error::api_message(&e),
        },
        Err(e) => return Err(e),
    })
}

pub async fn page(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let pid = seg(&ctx.auth.project.id);
    let (net_path, vol_path) = (
        format!("/quotas/{pid}/details"),
        format!("/os-quota-sets/{pid}?usage=true"),
    );
    let (limits, net, vol) = tokio::join!(
        d.get(&ctx, "compute", "/limits"),
        d.get(&ctx, "network", &net_path),
        d.get(&ctx, "volume", &vol_path),
    );
    let sections = vec![
        section("Compute", limits, views::compute_usage)?,
        section("Network", net, views::network_usage)?,
        section("Volumes", vol, views::volume_usage)?,
    ];
    render(&OverviewPage {
        layout: d.layout(&ctx, "overview"),
        sections,
    })
}
