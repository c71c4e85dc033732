//! Remote consoles: Nova's `compute.api.get_vnc_console` (state checks, the agent's answer)
//! and the console auth tokens that `nova-novncproxy` checks.

use bus::{BusExt, Target};
use chrono::Utc;
use std::time::Duration;

use super::ComputeService;
use crate::console::{self, ConsoleAuth, ConsoleTarget, TokenError};
use crate::error::{ComputeError, Result};
use crate::model::{Instance, task_state, vm_state};
use crate::{rpc, store};

/// How long the API waits for the agent's answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Nova's ConsoleTypeUnavailable.
fn unavailable(console_type: &str) -> ComputeError {
    ComputeError::bad(format!("Unavailable console type {console_type}."))
}

/// Check that `protocol`/`console_type` is a console kumo serves: only VNC through noVNC.
/// Nova's compute manager answers ConsoleTypeUnavailable for a protocol that is disabled
/// (SPICE, RDP, serial and MKS are never enabled here) and ConsoleTypeInvalid for a type the
/// protocol does not have.
pub fn check_console_type(vnc_enabled: bool, protocol: &str, console_type: &str) -> Result<()> {
    match protocol {
        "vnc" if !vnc_enabled => Err(unavailable(console_type)),
        "vnc" if console_type == "novnc" => Ok(()),
        "vnc" => Err(ComputeError::bad(format!(
            "Invalid console type {console_type}"
        ))),
        _ => Err(unavailable(console_type)),
    }
}

impl ComputeService {
    /// A console URL for `i` (`protocol` and `console_type` already schema-checked), as
    /// Nova's `get_<protocol>_console`: the instance must have a host (409 "is not ready"),
    /// be ACTIVE and not being deleted or migrated (409), and the console type must be one
    /// kumo serves (400); then the agent names the target, a token is stored and the noVNC
    /// URL returned. `public_base` is kumo's root URL as the caller reached it.
    pub async fn get_console_url(
        &self,
        i: &Instance,
        protocol: &str,
        console_type: &str,
        request_id: &str,
        public_base: &str,
    ) -> Result<String> {
        let action = format!("get_{protocol}_console");
        let Some(host) = i.host.clone() else {
            return Err(ComputeError::conflict(format!(
                "Instance {} is not ready",
                i.uuid
            )));
        };
        // A guest that does not run has no VNC server to reach; Nova's libvirt driver fails
        // later and less clearly, kumo answers with the state as the other actions do.
        if i.vm_state != vm_state::ACTIVE {
            return Err(ComputeError::invalid_state(
                &action,
                &i.uuid,
                "vm_state",
                &i.vm_state,
            ));
        }
        if let Some(t) = i.task_state.as_deref()
            && (t == task_state::DELETING || t == "migrating")
        {
            return Err(ComputeError::invalid_state(
                &action,
                &i.uuid,
                "task_state",
                t,
            ));
        }
        check_console_type(self.cfg.vnc_enabled, protocol, console_type)?;

        let msg = rpc::GetVncConsole {
            instance_uuid: i.uuid.clone(),
        };
        let target = self
            .bus()?
            .call_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &host),
                request_id,
                &msg,
                AGENT_TIMEOUT,
            )
            .await
            .map_err(|e| match e {
                bus::BusError::Remote { kind, .. } if kind == "NotImplementedError" => {
                    ComputeError::NotImplemented(
                        "Unable to get vnc console, functionality not implemented".into(),
                    )
                }
                bus::BusError::Remote { kind, .. } if kind == "InstanceNotFound" => {
                    ComputeError::instance_not_found(&i.uuid)
                }
                other => other.into(),
            })?;
        // Refuse here what the proxy could not connect to, instead of a token that fails later.
        ConsoleTarget::parse(&target).map_err(ComputeError::Internal)?;

        let token = self
            .issue_console_token(
                &i.uuid,
                console_type,
                &host,
                &target,
                self.cfg.console_token_ttl,
            )
            .await?;
        let page = match &self.cfg.novncproxy_base_url {
            Some(u) => u.clone(),
            None => format!("{}/novnc/vnc_lite.html", public_base.trim_end_matches('/')),
        };
        tracing::info!(instance = %i.uuid, host = %host, console_type, "console token issued");
        Ok(console::access_url(&page, &token))
    }

    /// Store a new one-time token granting `target` for `ttl`; returns the token (only its
    /// hash is stored). Expired tokens are purged on the way.
    pub async fn issue_console_token(
        &self,
        instance_uuid: &str,
        console_type: &str,
        host: &str,
        target: &str,
        ttl: Duration,
    ) -> Result<String> {
        let token = console::new_token();
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| ComputeError::Internal(format!("[consoleauth] token_ttl: {e}")))?;
        let auth = ConsoleAuth {
            instance_uuid: instance_uuid.to_string(),
            console_type: console_type.to_string(),
            host: host.to_string(),
            target: target.to_string(),
            created_at: now,
            expires_at: now + ttl,
        };
        let txn = self.db.write().await?;
        store::console_tokens::purge_expired(&*txn, now).await?;
        store::console_tokens::insert(&*txn, &console::token_hash(&token), &auth).await?;
        txn.commit().await?;
        Ok(token)
    }

    /// Use a token: the first call gets its grant and removes it, every later call (or a
    /// token never issued, or one past its expiry) gets a [`TokenError`].
    pub async fn consume_console_token(
        &self,
        token: &str,
    ) -> Result<std::result::Result<ConsoleAuth, TokenError>> {
        let now = Utc::now();
        let txn = self.db.write().await?;
        let taken = store::console_tokens::take(&*txn, &console::token_hash(token)).await?;
        store::console_tokens::purge_expired(&*txn, now).await?;
        txn.commit().await?;
        Ok(match taken {
            None => Err(TokenError::Invalid),
            Some(a) if a.expires_at <= now => Err(TokenError::Expired),
            Some(a) => Ok(a),
        })
    }

    /// The grant of an unexpired, unused token, leaving it usable (the admin's
    /// `os-console-auth-tokens`).
    pub async fn show_console_token(&self, token: &str) -> Result<Option<ConsoleAuth>> {
        let a = store::console_tokens::get(self.db.conn(), &console::token_hash(token)).await?;
        Ok(a.filter(|a| a.expires_at > Utc::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComputeConfig;
    use std::sync::Arc;

    async fn svc(dir: &std::path::Path) -> Arc<ComputeService> {
        let mut c = common::config::Config::new(dir);
        c.declare(crate::config::OPTS);
        c.declare(metadata::config::OPTS);
        let url = format!("sqlite://{}/compute.sqlite?mode=rwc", dir.display());
        let cfg = ComputeConfig::from_config(&c, &url).expect("config");
        ComputeService::open(cfg).await.expect("open")
    }

    const TARGET: &str = "unix:/tmp/vnc.sock";
    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_token_opens_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = svc(dir.path()).await;
        let t = s
            .issue_console_token("u1", "novnc", "h1", TARGET, HOUR)
            .await
            .expect("issue");
        let shown = s.show_console_token(&t).await.expect("show");
        assert_eq!(shown.map(|a| a.target), Some(TARGET.to_string()));
        let a = s
            .consume_console_token(&t)
            .await
            .expect("db")
            .expect("valid");
        assert_eq!(
            (
                a.instance_uuid.as_str(),
                a.console_type.as_str(),
                a.host.as_str()
            ),
            ("u1", "novnc", "h1")
        );
        assert_eq!(
            s.consume_console_token(&t).await.expect("db"),
            Err(TokenError::Invalid),
            "reused"
        );
        assert_eq!(s.show_console_token(&t).await.expect("show"), None);
    }

    #[tokio::test]
    async fn unknown_and_expired_tokens_open_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = svc(dir.path()).await;
        assert_eq!(
            s.consume_console_token("nope").await.expect("db"),
            Err(TokenError::Invalid)
        );
        let t = s
            .issue_console_token("u1", "novnc", "h1", TARGET, Duration::ZERO)
            .await
            .expect("issue");
        assert_eq!(s.show_console_token(&t).await.expect("show"), None);
        assert_eq!(
            s.consume_console_token(&t).await.expect("db"),
            Err(TokenError::Expired)
        );
    }

    #[tokio::test]
    async fn only_hashes_are_stored_and_expired_rows_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = svc(dir.path()).await;
        let old = s
            .issue_console_token("u1", "novnc", "h1", TARGET, Duration::ZERO)
            .await
            .expect("issue");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = s
            .issue_console_token("u2", "novnc", "h1", TARGET, HOUR)
            .await
            .expect("issue");
        assert!(
            store::console_tokens::get(s.db.conn(), &t)
                .await
                .expect("get")
                .is_none(),
            "the plain token is not a key"
        );
        assert!(
            store::console_tokens::get(s.db.conn(), &console::token_hash(&old))
                .await
                .expect("get")
                .is_none(),
            "the expired token was purged when the next was issued"
        );
    }

    #[tokio::test]
    async fn deleting_an_instance_removes_its_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = svc(dir.path()).await;
        let t = s
            .issue_console_token("u1", "novnc", "h1", TARGET, HOUR)
            .await
            .expect("issue");
        let n = store::console_tokens::delete_for_instance(s.db.conn(), "u1")
            .await
            .expect("delete");
        assert_eq!(n, 1);
        assert_eq!(
            s.consume_console_token(&t).await.expect("db"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn console_types_as_nova_words_them() {
        assert!(check_console_type(true, "vnc", "novnc").is_ok());
        let msg = |p, t| {
            check_console_type(true, p, t)
                .err()
                .map(|e| (e.status().as_u16(), e.to_string()))
        };
        assert_eq!(
            msg("vnc", "xvpvnc"),
            Some((400, "Invalid console type xvpvnc".into()))
        );
        assert_eq!(
            msg("spice", "spice-html5"),
            Some((400, "Unavailable console type spice-html5.".into()))
        );
        assert_eq!(
            msg("serial", "serial"),
            Some((400, "Unavailable console type serial.".into()))
        );
        assert_eq!(
            msg("mks", "webmks"),
            Some((400, "Unavailable console type webmks.".into()))
        );
        assert_eq!(
            msg("rdp", "rdp-html5"),
            Some((400, "Unavailable console type rdp-html5.".into()))
        );
        assert!(check_console_type(false, "vnc", "novnc").is_err());
    }
}
