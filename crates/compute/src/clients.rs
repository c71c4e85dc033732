//! Compute's calls to the other services, over their public REST APIs as Nova makes them:
//! placement with compute's own service user, the image service with the caller's token
//! (a user boots and snapshots only what the image service lets that user see or own).
//!
//! All-in-one these are loopback calls to the same process; scale-out the same calls reach
//! other hosts. One code path, its cost measured by the compute bench.

use parking_lot::RwLock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ComputeError, Result};

/// How compute authenticates as itself (nova.conf's `[placement]` auth options).
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    /// Identity endpoint, e.g. `http://127.0.0.1:5000/identity`.
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub region: String,
}

struct CachedToken {
    token: String,
    expires: Instant,
    /// service type -> public URL in our region.
    endpoints: Vec<(String, String)>,
}

/// REST clients of placement and the image service.
pub struct ServiceClients {
    http: reqwest::Client,
    creds: ServiceCredentials,
    cached: RwLock<Option<Arc<CachedToken>>>,
    login: tokio::sync::Mutex<()>,
}

/// An answer from another service: status and JSON body (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// A claim's answer from placement: made, someone took the capacity first (409: try
    /// another host), or an error saying `what` was tried.
    fn claimed(&self, what: impl std::fmt::Display) -> Result<bool> {
        if self.ok() {
            return Ok(true);
        }
        if self.status == StatusCode::CONFLICT {
            return Ok(false);
        }
        Err(upstream(
            "placement",
            format!("{what}: {} {}", self.status, self.body),
        ))
    }
}

/// The volume API's base for a project: the catalog's URL with its project part (a
/// `$(project_id)s` template, or the project the service token's catalog was made for) set to
/// `project_id`; a URL that ends at `/v3` stays project-less (Cinder 3.67's form).
pub fn volume_base(endpoint: &str, project_id: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    for t in [
        "$(project_id)s",
        "%(project_id)s",
        "$(tenant_id)s",
        "%(tenant_id)s",
        "{project_id}",
    ] {
        if e.contains(t) {
            return e.replace(t, project_id);
        }
    }
    match e.rfind("/v3/") {
        Some(at) if !e[at + 4..].contains('/') && !project_id.is_empty() => {
            format!("{}/v3/{project_id}", &e[..at])
        }
        _ => e.to_string(),
    }
}

fn upstream(service: &'static str, message: impl Into<String>) -> ComputeError {
    ComputeError::Upstream {
        service,
        message: message.into(),
    }
}

impl ServiceClients {
    pub fn new(creds: ServiceCredentials) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build()
            .unwrap_or_default();
        Self {
            http,
            creds,
            cached: RwLock::new(None),
            login: tokio::sync::Mutex::new(()),
        }
    }

    /// compute's own token (cached until 5 minutes before it expires).
    async fn service_token(&self, force: bool) -> Result<Arc<CachedToken>> {
        if !force
            && let Some(t) = self.cached.read().clone()
            && t.expires > Instant::now()
        {
            return Ok(t);
        }
        let _one_login = self.login.lock().await;
        if !force
            && let Some(t) = self.cached.read().clone()
            && t.expires > Instant::now()
        {
            return Ok(t);
        }
        let body = common::auth::service_login_body(
            &self.creds.username,
            &self.creds.password,
            &self.creds.project_name,
        );
        let url = format!("{}/v3/auth/tokens", self.creds.auth_url);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| upstream("identity", format!("POST {url}: {e}")))?;
        if resp.status() != StatusCode::CREATED {
            return Err(upstream(
                "identity",
                format!(
                    "compute's service user {} could not log in: {}",
                    self.creds.username,
                    resp.status()
                ),
            ));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let doc: Value = resp
            .json()
            .await
            .map_err(|e| upstream("identity", e.to_string()))?;
        let mut endpoints = Vec::new();
        for svc in doc["token"]["catalog"].as_array().into_iter().flatten() {
            for ep in svc["endpoints"].as_array().into_iter().flatten() {
                let region_ok = ep["region_id"].as_str() == Some(&self.creds.region)
                    || ep["region"].as_str() == Some(&self.creds.region);
                if ep["interface"] == "public" && region_ok {
                    endpoints.push((
                        svc["type"].as_str().unwrap_or_default().to_string(),
                        ep["url"]
                            .as_str()
                            .unwrap_or_default()
                            .trim_end_matches('/')
                            .to_string(),
                    ));
                }
            }
        }
        let lifetime = doc["token"]["expires_at"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds())
            .unwrap_or(3600);
        let t = Arc::new(CachedToken {
            token,
            expires: Instant::now() + Duration::from_secs((lifetime - 300).max(30) as u64),
            endpoints,
        });
        *self.cached.write() = Some(t.clone());
        Ok(t)
    }

    async fn endpoint(&self, service_type: &str) -> Result<String> {
        let t = self.service_token(false).await?;
        t.endpoints
            .iter()
            .find(|(ty, _)| ty == service_type)
            .map(|(_, url)| url.clone())
            .ok_or_else(|| {
                upstream(
                    "identity",
                    format!("the catalog has no {service_type} endpoint"),
                )
            })
    }

    /// One JSON call. `user_token` None: as compute's service user (re-login once on 401).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        service: &'static str,
        service_type: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        user_token: Option<&str>,
        request_id: &str,
    ) -> Result<Answer> {
        let base = self.endpoint(service_type).await?;
        self.call_at(
            service, &base, method, path, body, headers, user_token, request_id,
        )
        .await
    }

    /// One JSON call to `base` + `path` (an endpoint already looked up).
    #[allow(clippy::too_many_arguments)]
    async fn call_at(
        &self,
        service: &'static str,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        user_token: Option<&str>,
        request_id: &str,
    ) -> Result<Answer> {
        let url = format!("{base}{path}");
        let mut force = false;
        loop {
            let token = match user_token {
                Some(t) => t.to_string(),
                None => self.service_token(force).await?.token.clone(),
            };
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("x-auth-token", token)
                .header("x-openstack-request-id", request_id)
                .header("accept", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| upstream(service, format!("{method} {url}: {e}")))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && user_token.is_none() && !force {
                force = true;
                continue;
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| upstream(service, e.to_string()))?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            return Ok(Answer { status, body });
        }
    }

    // ------------------------------------------------------------------ placement

    async fn placement(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        request_id: &str,
    ) -> Result<Answer> {
        self.call(
            "placement",
            "placement",
            method,
            path,
            body,
            &[("openstack-api-version", "placement 1.39")],
            None,
            request_id,
        )
        .await
    }

    /// Make sure the compute node's resource provider exists with this inventory.
    pub async fn report_inventory(
        &self,
        rp_uuid: &str,
        name: &str,
        inventories: &Value,
        traits: &[&str],
        request_id: &str,
    ) -> Result<()> {
        let got = self
            .placement(
                Method::GET,
                &format!("/resource_providers/{rp_uuid}"),
                None,
                request_id,
            )
            .await?;
        if got.status == StatusCode::NOT_FOUND {
            let created = self
                .placement(
                    Method::POST,
                    "/resource_providers",
                    Some(&json!({"uuid": rp_uuid, "name": name})),
                    request_id,
                )
                .await?;
            if !created.ok() && created.status != StatusCode::CONFLICT {
                return Err(upstream(
                    "placement",
                    format!("creating provider {name}: {}", created.body),
                ));
            }
        }
        for _ in 0..5 {
            let cur = self
                .placement(
                    Method::GET,
                    &format!("/resource_providers/{rp_uuid}/inventories"),
                    None,
                    request_id,
                )
                .await?;
            let generation = cur.body["resource_provider_generation"].clone();
            if cur.body["inventories"] == *inventories {
                break;
            }
            let put = self
                .placement(
                    Method::PUT,
                    &format!("/resource_providers/{rp_uuid}/inventories"),
                    Some(&json!({"resource_provider_generation": generation,
                        "inventories": inventories})),
                    request_id,
                )
                .await?;
            if put.ok() {
                break;
            }
            if put.status != StatusCode::CONFLICT {
                return Err(upstream(
                    "placement",
                    format!("setting inventory of {name}: {}", put.body),
                ));
            }
        }
        if !traits.is_empty() {
            let cur = self
                .placement(
                    Method::GET,
                    &format!("/resource_providers/{rp_uuid}/traits"),
                    None,
                    request_id,
                )
                .await?;
            let have: Vec<&str> = cur.body["traits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if traits.iter().any(|t| !have.contains(t)) {
                let mut all: Vec<&str> = have.clone();
                all.extend(traits.iter().filter(|t| !have.contains(t)));
                let _ = self
                    .placement(
                        Method::PUT,
                        &format!("/resource_providers/{rp_uuid}/traits"),
                        Some(&json!({"resource_provider_generation":
                            cur.body["resource_provider_generation"], "traits": all})),
                        request_id,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// `GET /allocation_candidates` for these resources (and `required` traits).
    pub async fn allocation_candidates(
        &self,
        resources: &[(&str, i64)],
        required: &[String],
        member_of: Option<&str>,
        limit: u32,
        request_id: &str,
    ) -> Result<Value> {
        let res = resources
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(rc, n)| format!("{rc}:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("resources", &res);
            q.append_pair("limit", &limit.to_string());
            if !required.is_empty() {
                q.append_pair("required", &required.join(","));
            }
            if let Some(m) = member_of {
                q.append_pair("member_of", m);
            }
            q.finish()
        };
        let a = self
            .placement(
                Method::GET,
                &format!("/allocation_candidates?{query}"),
                None,
                request_id,
            )
            .await?;
        if !a.ok() {
            return Err(upstream(
                "placement",
                format!("allocation candidates: {} {}", a.status, a.body),
            ));
        }
        Ok(a.body)
    }

    /// Claim `allocations` (provider uuid -> resources) for `consumer`. Ok(false): someone
    /// took the capacity first (placement's 409), try another host.
    pub async fn claim(
        &self,
        consumer: &str,
        allocations: &Value,
        project_id: &str,
        user_id: &str,
        request_id: &str,
    ) -> Result<bool> {
        let body = json!({"allocations": allocations, "project_id": project_id,
            "user_id": user_id, "consumer_generation": null, "consumer_type": "INSTANCE"});
        let a = self
            .placement(
                Method::PUT,
                &format!("/allocations/{consumer}"),
                Some(&body),
                request_id,
            )
            .await?;
        a.claimed(format_args!("claiming for {consumer}"))
    }

    /// Replace a consumer's allocations (resize), whatever they were.
    pub async fn replace_allocations(
        &self,
        consumer: &str,
        allocations: &Value,
        project_id: &str,
        user_id: &str,
        request_id: &str,
    ) -> Result<bool> {
        let cur = self
            .placement(
                Method::GET,
                &format!("/allocations/{consumer}"),
                None,
                request_id,
            )
            .await?;
        let body = json!({"allocations": allocations, "project_id": project_id,
            "user_id": user_id, "consumer_generation": cur.body.get("consumer_generation").cloned().unwrap_or(Value::Null), "consumer_type": "INSTANCE"});
        let a = self
            .placement(
                Method::PUT,
                &format!("/allocations/{consumer}"),
                Some(&body),
                request_id,
            )
            .await?;
        Ok(a.ok())
    }

    /// A consumer's allocations as a write takes them (provider -> `{"resources": ...}`),
    /// and its generation.
    async fn allocations_of(&self, consumer: &str, request_id: &str) -> Result<(Value, Value)> {
        let a = self
            .placement(
                Method::GET,
                &format!("/allocations/{consumer}"),
                None,
                request_id,
            )
            .await?;
        if !a.ok() {
            return Err(upstream(
                "placement",
                format!("allocations of {consumer}: {} {}", a.status, a.body),
            ));
        }
        let allocations: serde_json::Map<String, Value> = a.body["allocations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(rp, x)| (rp.clone(), json!({"resources": x["resources"]})))
            .collect();
        let generation = a
            .body
            .get("consumer_generation")
            .cloned()
            .unwrap_or(Value::Null);
        Ok((Value::Object(allocations), generation))
    }

    /// Live migration (Nova's way, one atomic write): what the instance holds on its source
    /// moves to the migration as consumer, and the instance claims `allocations` on the
    /// destination. Ok(false): the destination has no room (placement's 409).
    pub async fn move_to_migration(
        &self,
        instance: &str,
        migration: &str,
        allocations: &Value,
        project_id: &str,
        user_id: &str,
        request_id: &str,
    ) -> Result<bool> {
        let (source, generation) = self.allocations_of(instance, request_id).await?;
        let body = json!({
            instance: {"allocations": allocations, "project_id": project_id, "user_id": user_id,
                "consumer_generation": generation, "consumer_type": "INSTANCE"},
            migration: {"allocations": source, "project_id": project_id, "user_id": user_id,
                "consumer_generation": null, "consumer_type": "MIGRATION"},
        });
        let a = self
            .placement(Method::POST, "/allocations", Some(&body), request_id)
            .await?;
        a.claimed(format_args!("moving {instance}'s allocation"))
    }

    /// A live migration that did not happen: the instance takes back what the migration held
    /// on the source, and the destination's claim goes.
    pub async fn revert_to_source(
        &self,
        instance: &str,
        migration: &str,
        project_id: &str,
        user_id: &str,
        request_id: &str,
    ) -> Result<()> {
        let (source, migration_generation) = self.allocations_of(migration, request_id).await?;
        if source.as_object().is_none_or(|o| o.is_empty()) {
            return Ok(());
        }
        let (_, generation) = self.allocations_of(instance, request_id).await?;
        let body = json!({
            instance: {"allocations": source, "project_id": project_id, "user_id": user_id,
                "consumer_generation": generation, "consumer_type": "INSTANCE"},
            migration: {"allocations": {}, "project_id": project_id, "user_id": user_id,
                "consumer_generation": migration_generation, "consumer_type": "MIGRATION"},
        });
        let a = self
            .placement(Method::POST, "/allocations", Some(&body), request_id)
            .await?;
        if a.ok() {
            Ok(())
        } else {
            Err(upstream(
                "placement",
                format!(
                    "giving {instance} its source allocation back: {} {}",
                    a.status, a.body
                ),
            ))
        }
    }

    /// Release everything `consumer` holds (idempotent).
    pub async fn release(&self, consumer: &str, request_id: &str) -> Result<()> {
        let a = self
            .placement(
                Method::DELETE,
                &format!("/allocations/{consumer}"),
                None,
                request_id,
            )
            .await?;
        if a.ok() || a.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(upstream(
                "placement",
                format!("releasing {consumer}: {} {}", a.status, a.body),
            ))
        }
    }

    /// Usages of a provider (resource class -> used).
    pub async fn provider_usages(&self, rp_uuid: &str, request_id: &str) -> Result<Value> {
        let a = self
            .placement(
                Method::GET,
                &format!("/resource_providers/{rp_uuid}/usages"),
                None,
                request_id,
            )
            .await?;
        Ok(a.body["usages"].clone())
    }

    /// Add (`add` true) or remove a placement aggregate on a provider, as Nova's report
    /// client mirrors host aggregate membership: read the provider's aggregates with its
    /// generation, write the new set, and retry when another writer got there first.
    pub async fn provider_aggregate(
        &self,
        rp_uuid: &str,
        aggregate_uuid: &str,
        add: bool,
        request_id: &str,
    ) -> Result<()> {
        let path = format!("/resource_providers/{rp_uuid}/aggregates");
        for _ in 0..5 {
            let cur = self.placement(Method::GET, &path, None, request_id).await?;
            if !cur.ok() {
                return Err(upstream(
                    "placement",
                    format!(
                        "aggregates of provider {rp_uuid}: {} {}",
                        cur.status, cur.body
                    ),
                ));
            }
            let mut aggs: Vec<String> = cur.body["aggregates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            let present = aggs.iter().any(|a| a == aggregate_uuid);
            match (add, present) {
                (true, true) | (false, false) => return Ok(()),
                (true, false) => aggs.push(aggregate_uuid.to_string()),
                (false, true) => aggs.retain(|a| a != aggregate_uuid),
            }
            let body = json!({"aggregates": aggs,
                "resource_provider_generation": cur.body["resource_provider_generation"]});
            let put = self
                .placement(Method::PUT, &path, Some(&body), request_id)
                .await?;
            if put.ok() {
                return Ok(());
            }
            if put.status != StatusCode::CONFLICT {
                return Err(upstream(
                    "placement",
                    format!(
                        "setting aggregates of {rp_uuid}: {} {}",
                        put.status, put.body
                    ),
                ));
            }
        }
        Err(upstream(
            "placement",
            format!("aggregates of provider {rp_uuid} kept changing"),
        ))
    }

    // ------------------------------------------------------------------ network

    /// One call to the network service's API (`<catalog network endpoint>/v2.0<path>`), with
    /// the user's token or (None) compute's own, as Nova's neutron client.
    pub async fn network(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        user_token: Option<&str>,
        request_id: &str,
    ) -> Result<Answer> {
        self.call(
            "network",
            "network",
            method,
            &format!("/v2.0{path}"),
            body,
            &[],
            user_token,
            request_id,
        )
        .await
    }

    // ------------------------------------------------------------------ volume

    /// One call to the volume service's v3 API (catalog type `block-storage`, else
    /// `volumev3`) at microversion 3.44 (attachments), for `project_id`'s resources, with
    /// the user's token or (None) compute's own.
    #[allow(clippy::too_many_arguments)]
    pub async fn volume(
        &self,
        method: Method,
        project_id: &str,
        path: &str,
        body: Option<&Value>,
        user_token: Option<&str>,
        request_id: &str,
    ) -> Result<Answer> {
        let endpoint = match self.endpoint("block-storage").await {
            Ok(e) => e,
            Err(_) => self.endpoint("volumev3").await.map_err(|_| {
                upstream(
                    "volume",
                    "the catalog has no block-storage (or volumev3) endpoint: is the volume service running?",
                )
            })?,
        };
        let base = volume_base(&endpoint, project_id);
        self.call_at(
            "volume",
            &base,
            method,
            path,
            body,
            &[("openstack-api-version", "volume 3.44")],
            user_token,
            request_id,
        )
        .await
    }

    // ------------------------------------------------------------------ image

    /// The image service's public URL in the catalog.
    pub async fn image_endpoint(&self) -> Result<String> {
        self.endpoint("image").await
    }

    /// One call to the image service's API (`<catalog image endpoint><path>`) with the
    /// user's token (the image proxy).
    pub async fn image(
        &self,
        method: Method,
        path: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<Answer> {
        self.call(
            "image",
            "image",
            method,
            path,
            None,
            &[],
            Some(user_token),
            request_id,
        )
        .await
    }

    /// The image as the caller sees it; None when it does not exist (or is not visible).
    pub async fn image_get(
        &self,
        user_token: &str,
        image_id: &str,
        request_id: &str,
    ) -> Result<Option<Value>> {
        let a = self
            .call(
                "image",
                "image",
                Method::GET,
                &format!("/v2/images/{image_id}"),
                None,
                &[],
                Some(user_token),
                request_id,
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(Some(a.body)),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(None),
            s => Err(upstream("image", format!("GET image {image_id}: {s}"))),
        }
    }

    /// Create an image record as the caller (createImage, shelve).
    pub async fn image_create(
        &self,
        user_token: &str,
        body: &Value,
        request_id: &str,
    ) -> Result<Value> {
        let a = self
            .call(
                "image",
                "image",
                Method::POST,
                "/v2/images",
                Some(body),
                &[],
                Some(user_token),
                request_id,
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(a.body),
            StatusCode::FORBIDDEN | StatusCode::PAYLOAD_TOO_LARGE => Err(ComputeError::Forbidden(
                a.body["message"]
                    .as_str()
                    .unwrap_or("the image service refused the image")
                    .to_string(),
            )),
            StatusCode::BAD_REQUEST => Err(ComputeError::bad(
                a.body["message"]
                    .as_str()
                    .unwrap_or("the image service refused the image")
                    .to_string(),
            )),
            s => Err(upstream(
                "image",
                format!("creating an image: {s} {}", a.body),
            )),
        }
    }

    /// Make a queued image's formats those of the data about to be uploaded.
    pub async fn image_set_formats(
        &self,
        user_token: &str,
        image_id: &str,
        disk_format: &str,
        container_format: &str,
        request_id: &str,
    ) -> Result<()> {
        let Some(current) = self.image_get(user_token, image_id, request_id).await? else {
            return Err(ComputeError::NotFound(format!(
                "Image {image_id} could not be found."
            )));
        };
        if current["disk_format"] == disk_format && current["container_format"] == container_format
        {
            return Ok(());
        }
        let patch = json!([
            {"op": "replace", "path": "/disk_format", "value": disk_format},
            {"op": "replace", "path": "/container_format", "value": container_format},
        ]);
        let a = self
            .call(
                "image",
                "image",
                Method::PATCH,
                &format!("/v2/images/{image_id}"),
                Some(&patch),
                &[(
                    "content-type",
                    "application/openstack-images-v2.1-json-patch",
                )],
                Some(user_token),
                request_id,
            )
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(upstream(
                "image",
                format!(
                    "setting image {image_id}'s formats: {} {}",
                    a.status, a.body
                ),
            ))
        }
    }

    /// Upload image data.
    pub async fn image_upload(
        &self,
        user_token: &str,
        image_id: &str,
        data: Vec<u8>,
        request_id: &str,
    ) -> Result<()> {
        let base = self.endpoint("image").await?;
        let url = format!("{base}/v2/images/{image_id}/file");
        let resp = self
            .http
            .put(&url)
            .header("x-auth-token", user_token)
            .header("x-openstack-request-id", request_id)
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| upstream("image", format!("PUT {url}: {e}")))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(upstream(
                "image",
                format!("uploading image {image_id}: {}", resp.status()),
            ))
        }
    }

    /// Delete an image (a failed snapshot's record).
    pub async fn image_delete(&self, user_token: &str, image_id: &str, request_id: &str) {
        let _ = self
            .call(
                "image",
                "image",
                Method::DELETE,
                &format!("/v2/images/{image_id}"),
                None,
                &[],
                Some(user_token),
                request_id,
            )
            .await;
    }
}

/// The QEMU driver's image source: the image service, as compute's service user (an admin, so
/// private and shared images of any project can be booted as Nova's service user can).
pub struct ServiceImages(pub Arc<ServiceClients>);

#[async_trait::async_trait]
impl hypervisor::ImageSource for ServiceImages {
    async fn download(
        &self,
        image_id: &str,
        dest: &std::path::Path,
    ) -> hypervisor::Result<hypervisor::ImageRecord> {
        use tokio::io::AsyncWriteExt;
        let fail = |reason: String| hypervisor::DriverError::Failed {
            step: "fetching the image",
            reason,
        };
        let rid = bus::new_request_id();
        let rec = self
            .0
            .call(
                "image",
                "image",
                Method::GET,
                &format!("/v2/images/{image_id}"),
                None,
                &[],
                None,
                &rid,
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !rec.status.is_success() {
            return Err(fail(format!("image {image_id}: {}", rec.status)));
        }
        let b = &rec.body;
        if b["status"] != "active" {
            return Err(hypervisor::DriverError::ImageUnacceptable {
                image_id: image_id.to_string(),
                reason: format!("its status is {}, not active", b["status"]),
            });
        }
        let record = hypervisor::ImageRecord {
            id: image_id.to_string(),
            disk_format: b["disk_format"].as_str().unwrap_or_default().to_string(),
            checksum: b["checksum"].as_str().map(str::to_string),
            os_hash_algo: b["os_hash_algo"].as_str().map(str::to_string),
            os_hash_value: b["os_hash_value"].as_str().map(str::to_string),
            size: b["size"].as_u64(),
        };
        let base = self
            .0
            .endpoint("image")
            .await
            .map_err(|e| fail(e.to_string()))?;
        let token = self
            .0
            .service_token(false)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let url = format!("{base}/v2/images/{image_id}/file");
        let mut resp = self
            .0
            .http
            .get(&url)
            .header("x-auth-token", &token.token)
            .header("x-openstack-request-id", &rid)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(|e| fail(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(fail(format!("GET {url}: {}", resp.status())));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| fail(format!("{}: {e}", dest.display())))?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fail(format!("GET {url}: {e}")))?
        {
            bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("{}: {e}", dest.display())))?;
        }
        file.sync_all()
            .await
            .map_err(|e| fail(format!("{}: {e}", dest.display())))?;
        if let Some(size) = record.size
            && size != bytes
        {
            return Err(fail(format!(
                "image {image_id}: {bytes} bytes received, {size} expected"
            )));
        }
        Ok(record)
    }
}
