//! Identity's changes on the bus, for API hosts that validate tokens remotely and cache them
//! ("cached until expiry or revocation", DESIGN §2).
//!
//! The process that runs identity fans out one `identity_changed` on topic
//! [`TOPIC`] (exchange `keystone`) after each burst of committed writes (a token revoked, a
//! user or project disabled, a role assignment removed, a password changed, an application
//! credential deleted...); every [`identity::remote::RemoteValidator`] subscribed to it drops
//! its cache. A lost event (broker down) leaves `[keystone_authtoken] token_cache_time` as the
//! bound on how long a revoked token is still accepted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bus::{Bus, Envelope, Target, Version, handler_fn};
use serde_json::json;

/// The fanout topic of identity's changes.
pub const TOPIC: &str = "identity-events";
const CHANGED: &str = "identity_changed";
const VERSION: Version = Version::new(1, 0);

/// How long to wait after a change for the rest of its burst (a user update that also revokes
/// its tokens is several commits): one event for them.
const COALESCE: Duration = Duration::from_millis(10);

/// The bus of identity's events: RabbitMQ's `keystone` exchange at `transport_url`.
pub async fn open_bus(cfg: &common::config::Config) -> Result<Arc<dyn Bus>> {
    crate::server::open_rabbit(cfg, "keystone").await
}

/// Fan out identity's changes for as long as the process runs.
pub fn forward_changes(identity: &identity::Identity, bus: Arc<dyn Bus>, origin: String) {
    let mut changes = identity.watch_revision();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            tokio::time::sleep(COALESCE).await;
            let revision = *changes.borrow_and_update();
            let env = Envelope::new(
                CHANGED,
                VERSION,
                json!({"origin": origin, "revision": revision}),
            );
            match bus.fanout(TOPIC, env).await {
                Ok(()) => tracing::debug!(revision, "identity change fanned out"),
                Err(e) => tracing::warn!(
                    error = %e,
                    revision,
                    "could not tell the other API hosts that identity changed; their cached validations end with [keystone_authtoken] token_cache_time"
                ),
            }
        }
    });
}

/// Clear `validator`'s cache on every identity change fanned out. Keep the subscription for as
/// long as the process runs.
pub async fn clear_on_changes(
    bus: &Arc<dyn Bus>,
    origin: String,
    validator: Arc<identity::remote::RemoteValidator>,
) -> Result<bus::Subscription> {
    let handler = handler_fn(move |env: Envelope| {
        let v = validator.clone();
        async move {
            if env.method == CHANGED {
                tracing::debug!(revision = %env.payload["revision"], from = %env.payload["origin"], "identity changed: token cache cleared");
                v.clear();
            }
            Ok(json!(null))
        }
    });
    bus.serve(Target::server(TOPIC, origin), Arc::new(handler))
        .await
        .context("subscribing to identity's change events")
}
