//! `GET /`: the version document, unauthenticated.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use common::microversion::Version;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use serde_json::json;

use super::{MICROVERSIONS, Mv, cache_headers};

pub async fn home(req: Request) -> Response {
    let mv = req
        .extensions()
        .get::<Mv>()
        .map_or(MICROVERSIONS.min, |m| m.0);
    let body = json!({"versions": [{
        "id": format!("v{}", MICROVERSIONS.min),
        "max_version": MICROVERSIONS.max.to_string(),
        "min_version": MICROVERSIONS.min.to_string(),
        "status": "CURRENT",
        // Relative on purpose, as upstream: "this same URL".
        "links": [{"rel": "self", "href": ""}],
    }]});
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if mv >= Version::new(1, 15) {
        cache_headers(&mut resp, None);
    }
    resp
}
