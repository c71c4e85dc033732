//! Version discovery at `/` and `/v3`, unauthenticated.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::Base;

fn v3_doc(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// `GET /`: the versions list, with 300 Multiple Choices as Keystone answers.
pub async fn root(Base(base): Base) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": {"values": [v3_doc(&base)]}})),
    )
        .into_response()
}

/// `GET /v3`.
pub async fn v3(Base(base): Base) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"version": v3_doc(&base)})),
    )
        .into_response()
}
