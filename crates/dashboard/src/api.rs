//! The dashboard's only way to the cloud: the public REST APIs over HTTP, with the user's token,
//! endpoints from the token's catalog. No database, no privileges of its own.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

/// The compute microversion the pages are written against (kumo's maximum).
pub const COMPUTE_VERSION: &str = "2.72";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status; `message` is the one from its fault body.
    #[error("{message}")]
    Status {
        service: String,
        status: u16,
        message: String,
    },
    #[error("the {0} service is not in this token's catalog")]
    NoEndpoint(String),
    #[error("could not reach the {service} service: {detail}")]
    Transport { service: String, detail: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A project the user may scope to.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRef {
    pub id: String,
    pub name: String,
}

/// A project-scoped token and what the identity service said about it.
#[derive(Debug, Clone)]
pub struct Auth {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user_id: String,
    pub user_name: String,
    pub domain_name: String,
    pub project: ProjectRef,
    pub roles: Vec<String>,
    /// service type -> public endpoint URL (no trailing slash)
    pub endpoints: HashMap<String, String>,
}

impl Auth {
    /// Whether the token's roles allow changes (the APIs decide; this only hides buttons).
    pub fn can_write(&self) -> bool {
        self.roles.iter().any(|r| r == "member" || r == "admin")
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// What a password authentication gave: a project-scoped token or an unscoped one.
pub enum Login {
    Scoped(Box<Auth>),
    Unscoped { token: String },
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// `http://host:port/identity/v3`
    identity_url: String,
}

/// The message of an OpenStack fault body, whichever service's format it is in.
pub fn fault_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let pick = |o: &Value| {
        o.get("message")
            .or_else(|| o.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // Keystone {"error": {...}}, Neutron {"NeutronError": {...}}, Nova/Cinder {"itemNotFound": {...}}
    if let Some(obj) = v.as_object() {
        if let Some(errors) = obj.get("errors").and_then(Value::as_array) {
            return errors.first().and_then(pick);
        }
        if let Some(m) = obj.get("message").and_then(Value::as_str) {
            return Some(m.to_string());
        }
        if obj.len() == 1
            && let Some(inner) = obj.values().next()
        {
            return pick(inner);
        }
    }
    None
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Turn a token body (`{"token": {...}}`) into an `Auth`, if it is project-scoped.
pub fn auth_from_body(token: String, body: &Value) -> Option<Auth> {
    let t = body.get("token")?;
    let project = t.get("project")?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut endpoints = HashMap::new();
    for svc in t
        .get("catalog")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ty = s(svc.get("type"));
        for ep in svc
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if ep.get("interface").and_then(Value::as_str) == Some("public") {
                endpoints.insert(
                    ty.clone(),
                    s(ep.get("url")).trim_end_matches('/').to_string(),
                );
            }
        }
    }
    Some(Auth {
        token,
        expires_at: t
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .unwrap_or_else(Utc::now),
        user_id: s(t.pointer("/user/id")),
        user_name: s(t.pointer("/user/name")),
        domain_name: s(t.pointer("/user/domain/name")),
        project: ProjectRef {
            id: s(project.get("id")),
            name: s(project.get("name")),
        },
        roles: t
            .get("roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_string))
            .collect(),
        endpoints,
    })
}

impl ApiClient {
    pub fn new(identity_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ApiClient {
            http,
            identity_url: identity_url.trim_end_matches('/').to_string(),
        }
    }

    async fn send(
        &self,
        service: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), ApiError> {
        let resp = req.send().await.map_err(|e| ApiError::Transport {
            service: service.to_string(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| ApiError::Transport {
            service: service.to_string(),
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            let message = fault_message(&text).unwrap_or_else(|| {
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("error")
                )
            });
            return Err(ApiError::Status {
                service: service.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((headers, body))
    }

    async fn token_request(&self, body: Value) -> Result<(String, Value), ApiError> {
        let req = self
            .http
            .post(format!("{}/auth/tokens", self.identity_url))
            .json(&body);
        let (headers, body) = self.send("identity", req).await?;
        let token = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Transport {
                service: "identity".into(),
                detail: "no X-Subject-Token in the answer".into(),
            })?
            .to_string();
        Ok((token, body))
    }

    /// Password authentication, with the user's default scope (Keystone scopes to the user's
    /// default project when the request names none).
    pub async fn password_login(
        &self,
        domain: &str,
        user: &str,
        password: &str,
    ) -> Result<Login, ApiError> {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": user, "domain": {"name": domain}, "password": password}}}}});
        let (token, body) = self.token_request(body).await?;
        Ok(match auth_from_body(token.clone(), &body) {
            Some(a) => Login::Scoped(Box::new(a)),
            None => Login::Unscoped { token },
        })
    }

    /// A token for `project_id` from an existing token (the token method).
    pub async fn rescope(&self, token: &str, project_id: &str) -> Result<Auth, ApiError> {
        let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
            "scope": {"project": {"id": project_id}}}});
        let (token, body) = self.token_request(body).await?;
        auth_from_body(token, &body).ok_or_else(|| ApiError::Transport {
            service: "identity".into(),
            detail: "the token answered is not project-scoped".into(),
        })
    }

    /// `GET /v3/auth/projects`: the projects this token's user may scope to.
    pub async fn projects(&self, token: &str) -> Result<Vec<ProjectRef>, ApiError> {
        let req = self
            .http
            .get(format!("{}/auth/projects", self.identity_url))
            .header("X-Auth-Token", token);
        let (_, body) = self.send("identity", req).await?;
        let mut out: Vec<ProjectRef> = body
            .get("projects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("enabled").and_then(Value::as_bool) != Some(false))
            .map(|p| ProjectRef {
                id: p["id"].as_str().unwrap_or_default().to_string(),
                name: p["name"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `DELETE /v3/auth/tokens`: the token is revoked (a token already gone is fine).
    pub async fn revoke(&self, token: &str) -> Result<(), ApiError> {
        let req = self
            .http
            .delete(format!("{}/auth/tokens", self.identity_url))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token);
        match self.send("identity", req).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(401 | 404)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The URL of `path` at `service` (compute, network, image, volume) from the catalog.
    pub fn url(&self, auth: &Auth, service: &str, path: &str) -> Result<String, ApiError> {
        // the identity API is the one the user logged in at (kumo gives it)
        if service == "identity" {
            return Ok(format!("{}{path}", self.identity_url));
        }
        let (types, suffix): (Vec<&str>, &str) = match service {
            "network" => (vec!["network"], "/v2.0"),
            "image" => (vec!["image"], "/v2"),
            "volume" => (vec!["block-storage", "volumev3"], ""),
            other => (vec![other], ""),
        };
        let base = types
            .iter()
            .find_map(|t| auth.endpoints.get(*t))
            .ok_or_else(|| ApiError::NoEndpoint(service.to_string()))?;
        Ok(format!("{base}{suffix}{path}"))
    }

    /// One call to a service with the user's token; the JSON answer (Null when empty).
    pub async fn call(
        &self,
        auth: &Auth,
        service: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(auth, service, path)?;
        let mut req = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &auth.token)
            .header("Accept", "application/json");
        if service == "compute" {
            req = req
                .header(
                    "OpenStack-API-Version",
                    format!("compute {COMPUTE_VERSION}"),
                )
                .header("X-OpenStack-Nova-API-Version", COMPUTE_VERSION);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(service, req).await.map(|(_, v)| v)
    }

    pub async fn get(&self, auth: &Auth, service: &str, path: &str) -> Result<Value, ApiError> {
        self.call(auth, service, Method::GET, path, None).await
    }

    /// One call whose body is not JSON (an image's data, a JSON patch with its own media
    /// type); the JSON answer (Null when empty).
    pub async fn call_body(
        &self,
        auth: &Auth,
        service: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<Value, ApiError> {
        let url = self.url(auth, service, path)?;
        let mut req = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &auth.token)
            .header("Accept", "application/json")
            .header("Content-Type", content_type)
            .body(body);
        // an image of gigabytes takes longer than an API call: no overall timeout, the
        // stream's own pace decides
        req = req.timeout(Duration::from_secs(24 * 3600));
        self.send(service, req).await.map(|(_, v)| v)
    }
}

/// A request body fed through a channel, chunk by chunk, as the upload arrives: what lets the
/// dashboard pass an image on to Glance without holding it (reqwest wants a `Sync` body, which
/// axum's request body is not). An `Err` sent ends the body with that error.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_messages_of_every_family() {
        let cases = [
            (
                r#"{"error": {"code": 401, "title": "Unauthorized", "message": "bad password"}}"#,
                "bad password",
            ),
            (
                r#"{"forbidden": {"code": 403, "message": "Policy doesn't allow x"}}"#,
                "Policy doesn't allow x",
            ),
            (
                r#"{"NeutronError": {"type": "X", "message": "quota", "detail": ""}}"#,
                "quota",
            ),
            (
                r#"{"errors": [{"status": 409, "detail": "placement says no"}]}"#,
                "placement says no",
            ),
            (
                r#"{"code": "404 Not Found", "title": "Not Found", "message": "no image"}"#,
                "no image",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(fault_message(body).as_deref(), Some(want), "{body}");
        }
        assert_eq!(fault_message("<html>oops</html>"), None);
    }

    #[test]
    fn scoped_token_body() {
        let body = json!({"token": {
            "expires_at": "2030-01-01T00:00:00.000000Z",
            "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p1", "name": "demo", "domain": {"id": "default"}},
            "roles": [{"id": "r", "name": "reader"}],
            "catalog": [{"type": "compute", "endpoints": [
                {"interface": "internal", "url": "http://internal/"},
                {"interface": "public", "url": "http://h/compute/v2.1/"}]}]
        }});
        let a = auth_from_body("tok".into(), &body).expect("scoped");
        assert_eq!(a.project.name, "demo");
        assert_eq!(a.endpoints["compute"], "http://h/compute/v2.1");
        assert!(!a.can_write());
        assert_eq!(a.expires_at.to_rfc3339(), "2030-01-01T00:00:00+00:00");
        let client = ApiClient::new("http://h/identity/v3");
        assert_eq!(
            client.url(&a, "compute", "/servers").ok().as_deref(),
            Some("http://h/compute/v2.1/servers")
        );
        assert!(matches!(
            client.url(&a, "network", "/networks"),
            Err(ApiError::NoEndpoint(_))
        ));
        let unscoped = json!({"token": {"user": {"id": "u"}}});
        assert!(auth_from_body("t".into(), &unscoped).is_none());
    }
}
