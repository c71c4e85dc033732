//! A service that runs away from identity registers its own endpoints at start, through
//! identity's public API as its service user (which has `admin` in the `service` project), as
//! a deployment tool would with `openstack service create` / `endpoint create`: the service
//! is created when no service of its type exists, each of its public, internal and admin
//! endpoints in this region is created or moved to the given URL. The api process's
//! bootstrap leaves alone the services it does not run (crates/identity/src/bootstrap.rs
//! only touches the services it is given).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use identity::bootstrap::CatalogService;
use serde_json::{Value, json};

const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

/// Who registers: the identity endpoint (without `/v3`) and the service user.
pub struct Registrar {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub region: String,
}

struct Session {
    http: reqwest::Client,
    v3: String,
    token: String,
}

impl Session {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.v3);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("x-auth-token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{method} {url}: {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Registrar {
    async fn login(&self) -> Result<Session> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let v3 = format!("{}/v3", self.auth_url.trim_end_matches('/'));
        let resp = http
            .post(format!("{v3}/auth/tokens"))
            .json(&common::auth::service_login_body(
                &self.username,
                &self.password,
                &self.project_name,
            ))
            .send()
            .await
            .with_context(|| format!("logging in at {v3}/auth/tokens: is identity up there?"))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!(
                "the service user {:?} could not log in at {v3}: {} (is [service_user] password the one of the process that runs identity?)",
                self.username,
                resp.status()
            );
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .context("the login answer has no X-Subject-Token")?;
        Ok(Session { http, v3, token })
    }

    /// Make the catalog hold `services` at their URLs; returns what changed, for the log.
    pub async fn register(&self, services: &[CatalogService]) -> Result<Vec<String>> {
        let s = self.login().await?;
        let mut changed = Vec::new();
        for svc in services {
            let found = s
                .call(
                    reqwest::Method::GET,
                    &format!("/services?type={}", svc.service_type),
                    None,
                )
                .await?;
            let service_id = match found["services"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|x| x["id"].as_str())
            {
                Some(id) => id.to_string(),
                None => {
                    let made = s
                        .call(
                            reqwest::Method::POST,
                            "/services",
                            Some(json!({"service": {
                                "type": svc.service_type,
                                "name": svc.name,
                                "description": svc.description,
                                "enabled": true,
                            }})),
                        )
                        .await?;
                    changed.push(format!("service {} ({})", svc.name, svc.service_type));
                    made["service"]["id"]
                        .as_str()
                        .context("the created service has no id")?
                        .to_string()
                }
            };
            let endpoints = s
                .call(
                    reqwest::Method::GET,
                    &format!("/endpoints?service_id={service_id}"),
                    None,
                )
                .await?;
            let endpoints = endpoints["endpoints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for iface in INTERFACES {
                let here = endpoints.iter().find(|e| {
                    e["interface"] == iface
                        && (e["region_id"].as_str() == Some(&self.region)
                            || e["region"].as_str() == Some(&self.region))
                });
                match here {
                    Some(e) if e["url"].as_str() == Some(svc.url.as_str()) => {}
                    Some(e) => {
                        let id = e["id"].as_str().context("an endpoint without id")?;
                        s.call(
                            reqwest::Method::PATCH,
                            &format!("/endpoints/{id}"),
                            Some(json!({"endpoint": {"url": svc.url}})),
                        )
                        .await?;
                        changed.push(format!(
                            "{} {iface} endpoint moved to {}",
                            svc.service_type, svc.url
                        ));
                    }
                    None => {
                        s.call(
                            reqwest::Method::POST,
                            "/endpoints",
                            Some(json!({"endpoint": {
                                "service_id": service_id,
                                "interface": iface,
                                "url": svc.url,
                                "region_id": self.region,
                            }})),
                        )
                        .await?;
                        changed.push(format!("{} {iface} endpoint {}", svc.service_type, svc.url));
                    }
                }
            }
        }
        Ok(changed)
    }
}
