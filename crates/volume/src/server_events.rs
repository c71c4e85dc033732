//! What the volume service tells compute about servers' volumes (Cinder's `nova` notifier:
//! `os-server-external-events`). kumo wires it to the compute service of its process.

use async_trait::async_trait;

/// Who caused an event: the user and project of the volume request.
#[derive(Debug, Clone)]
pub struct Sender {
    pub user_id: String,
    pub project_id: String,
    pub request_id: String,
}

#[async_trait]
pub trait ServerEvents: Send + Sync {
    /// `volume-extended`: attached volume `volume_id` of server `server` grew, so the guest's
    /// disk should grow to the volume's new size.
    async fn volume_extended(&self, server: &str, volume_id: &str, by: &Sender);
}

/// Nobody listens (the volume service alone).
pub struct NoServerEvents;

#[async_trait]
impl ServerEvents for NoServerEvents {
    async fn volume_extended(&self, _server: &str, _volume_id: &str, _by: &Sender) {}
}

/// Cinder's nova notifier over HTTP, for a volume service without compute in its process:
/// `POST {compute}/os-server-external-events` as the volume service's own user (compute's
/// policy lets a user with the `service` or `admin` role send events), the compute endpoint
/// read from that user's catalog.
pub struct ComputeApiEvents {
    http: reqwest::Client,
    creds: crate::glance::ServiceCredentials,
    /// The service user's token and the compute endpoint of its catalog.
    session: tokio::sync::Mutex<Option<(String, String)>>,
}

/// The microversion that knows `volume-extended` (Nova's 2.51).
const VOLUME_EXTENDED_MICROVERSION: &str = "compute 2.51";

impl ComputeApiEvents {
    pub fn new(creds: crate::glance::ServiceCredentials) -> Self {
        ComputeApiEvents {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            creds,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Log in as the service user: its token and the public compute endpoint of its region.
    async fn login(&self) -> Result<(String, String), String> {
        let (token, endpoint) = self.creds.login(&self.http, "compute").await?;
        let token = token.ok_or("the login answer has no X-Subject-Token")?;
        Ok((token, endpoint))
    }

    async fn send(&self, body: &serde_json::Value, request_id: &str) -> Result<u16, String> {
        let mut session = self.session.lock().await;
        // One fresh login when compute refuses a kept token (it expired).
        for fresh in [false, true] {
            if fresh || session.is_none() {
                *session = Some(self.login().await?);
            }
            let Some((token, endpoint)) = session.clone() else {
                continue;
            };
            let url = format!("{endpoint}/os-server-external-events");
            let resp = self
                .http
                .post(&url)
                .header("x-auth-token", token)
                .header("openstack-api-version", VOLUME_EXTENDED_MICROVERSION)
                .header("x-openstack-request-id", request_id)
                .json(body)
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            let status = resp.status().as_u16();
            if status == 401 && !fresh {
                continue;
            }
            return Ok(status);
        }
        Err("compute refused the service user's fresh token".into())
    }
}

#[async_trait]
impl ServerEvents for ComputeApiEvents {
    async fn volume_extended(&self, server: &str, volume_id: &str, by: &Sender) {
        let body = serde_json::json!({"events": [{
            "name": "volume-extended",
            "server_uuid": server,
            "tag": volume_id,
        }]});
        match self.send(&body, &by.request_id).await {
            // 207: some events (here the one) could not be delivered, e.g. the server has no host.
            Ok(200) => {
                tracing::info!(%server, volume = %volume_id, "volume-extended sent to compute")
            }
            Ok(status) => {
                tracing::warn!(%server, volume = %volume_id, status, "compute did not take volume-extended")
            }
            Err(e) => {
                tracing::warn!(%server, volume = %volume_id, error = %e, "could not send volume-extended to compute")
            }
        }
    }
}
