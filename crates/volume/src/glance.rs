//! The volume service's calls to the image service, over its public REST API with the caller's
//! token (a user makes volumes only from images they may see, and uploads images they own).
//! The image endpoint comes from the catalog, read once with the volume service's own user.

use parking_lot::RwLock;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

use crate::error::{Result, VolumeError};

/// How the volume service authenticates as itself (cinder.conf's service user).
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub region: String,
}

impl ServiceCredentials {
    /// Log in as the volume service's user: its token (when identity sent one) and the public
    /// endpoint of `service_type` in its region, from the token's catalog.
    pub(crate) async fn login(
        &self,
        http: &reqwest::Client,
        service_type: &str,
    ) -> std::result::Result<(Option<String>, String), String> {
        let url = format!("{}/v3/auth/tokens", self.auth_url);
        let body =
            common::auth::service_login_body(&self.username, &self.password, &self.project_name);
        let resp = http
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if resp.status() != StatusCode::CREATED {
            return Err(format!(
                "the volume service user could not log in at {url}: {}",
                resp.status()
            ));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let doc: Value = resp.json().await.map_err(|e| e.to_string())?;
        let endpoint = doc["token"]["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == service_type)
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .find(|e| {
                e["interface"] == "public"
                    && (e["region_id"].as_str() == Some(&self.region)
                        || e["region"].as_str() == Some(&self.region))
            })
            .and_then(|e| e["url"].as_str())
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("the catalog has no {service_type} endpoint"))?;
        Ok((token, endpoint))
    }
}

pub struct ImageClient {
    http: reqwest::Client,
    creds: ServiceCredentials,
    endpoint: RwLock<Option<String>>,
}

fn upstream(msg: impl Into<String>) -> VolumeError {
    VolumeError::Internal(format!("image service: {}", msg.into()))
}

impl ImageClient {
    pub fn new(creds: ServiceCredentials) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3600))
                .build()
                .unwrap_or_default(),
            creds,
            endpoint: RwLock::new(None),
        }
    }

    /// The image endpoint of the catalog (service user login, once).
    async fn endpoint(&self) -> Result<String> {
        if let Some(e) = self.endpoint.read().clone() {
            return Ok(e);
        }
        let (_, u) = self
            .creds
            .login(&self.http, "image")
            .await
            .map_err(upstream)?;
        *self.endpoint.write() = Some(u.clone());
        Ok(u)
    }

    async fn json_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        content_type: Option<&str>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.endpoint().await?);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("x-auth-token", token)
            .header("accept", "application/json")
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req
                .header("content-type", content_type.unwrap_or("application/json"))
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| upstream(format!("{method} {url}: {e}")))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| upstream(e.to_string()))?;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// The image as the caller sees it; None when it does not exist for them.
    pub async fn get(&self, token: &str, id: &str) -> Result<Option<Value>> {
        let (s, v) = self
            .json_call(
                reqwest::Method::GET,
                &format!("/v2/images/{id}"),
                token,
                None,
                None,
            )
            .await?;
        match s {
            s if s.is_success() => Ok(Some(v)),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(None),
            s => Err(upstream(format!("GET image {id}: {s}"))),
        }
    }

    /// Stream the image's data into `dest`.
    pub async fn download(&self, token: &str, id: &str, dest: &Path) -> Result<()> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let url = format!("{}/v2/images/{id}/file", self.endpoint().await?);
        let resp = self
            .http
            .get(&url)
            .header("x-auth-token", token)
            .send()
            .await
            .map_err(|e| upstream(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(upstream(format!("GET {url}: {}", resp.status())));
        }
        let mut f = tokio::fs::File::create(dest).await?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| upstream(e.to_string()))?;
            f.write_all(&chunk).await?;
        }
        f.flush().await?;
        Ok(())
    }

    /// Create an image record as the caller.
    pub async fn create(&self, token: &str, body: &Value) -> Result<Value> {
        let (s, v) = self
            .json_call(reqwest::Method::POST, "/v2/images", token, Some(body), None)
            .await?;
        match s {
            s if s.is_success() => Ok(v),
            StatusCode::FORBIDDEN => Err(VolumeError::Forbidden(
                v["message"]
                    .as_str()
                    .unwrap_or("image create refused")
                    .to_string(),
            )),
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => Err(VolumeError::bad(
                v["message"]
                    .as_str()
                    .unwrap_or("image create refused")
                    .to_string(),
            )),
            StatusCode::PAYLOAD_TOO_LARGE => Err(VolumeError::OverLimit(
                v["message"]
                    .as_str()
                    .unwrap_or("image quota exceeded")
                    .to_string(),
            )),
            s => Err(upstream(format!("POST /v2/images: {s} {v}"))),
        }
    }

    /// Upload `src` as the image's data.
    pub async fn upload(&self, token: &str, id: &str, src: &Path) -> Result<()> {
        let url = format!("{}/v2/images/{id}/file", self.endpoint().await?);
        let f = tokio::fs::File::open(src).await?;
        let len = f.metadata().await?.len();
        let stream = tokio_util_stream(f);
        let resp = self
            .http
            .put(&url)
            .header("x-auth-token", token)
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| upstream(format!("PUT {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(upstream(format!("PUT {url}: {}", resp.status())))
        }
    }

    pub async fn delete(&self, token: &str, id: &str) {
        let _ = self
            .json_call(
                reqwest::Method::DELETE,
                &format!("/v2/images/{id}"),
                token,
                None,
                None,
            )
            .await;
    }
}

/// A file as a stream of 1 MiB chunks.
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
