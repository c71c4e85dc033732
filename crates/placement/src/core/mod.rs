//! The placement service core: domain logic over the store, no HTTP.
//!
//! [`Placement`] is the one object the API layer talks to. Every write runs in one
//! serialised database transaction that checks provider and consumer generations with a
//! compare-and-set, bumps the data revision, and names the providers it touched so the
//! in-memory provider [`view`] follows. Reads of provider data come from that view after a
//! revision check; reads of consumers and allocations come from the database.

pub mod allocations;
pub mod candidates;
pub mod classes;
pub mod inventories;
pub mod known;
pub mod providers;
pub mod reshaper;
pub mod traits;
pub mod view;

use common::auth::AuthContext;
use common::db::{Database, WriteTxn};
use common::policy::{Credentials, Enforcer, PolicyError};
use std::sync::Arc;

use crate::config::PlacementConfig;
use crate::error::{PlacementError, Result};
use crate::standard;
use crate::store;
use known::KnownIds;
use view::{Changes, View, ViewCache};

/// Policy defaults upstream placement registers (secure RBAC), as data.
pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

pub struct Placement {
    pub cfg: PlacementConfig,
    db: Database,
    policy: Enforcer,
    view: ViewCache,
    known: KnownIds,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("db", &self.db.url())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the placement database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("policy: {0}")]
    Policy(String),
}

/// Why the policy refused (both are Placement's 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Policy does not allow {action} to be performed.")]
pub struct Denied {
    pub action: String,
}

impl Placement {
    /// Open the service: database (migrated, standard classes and traits present), policy
    /// (defaults + the operator's file if present), provider view (loaded).
    pub async fn open(cfg: PlacementConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        standard::sync(&db).await.map_err(OpenError::Migrate)?;
        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        let known = KnownIds::load(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        let p = Arc::new(Self {
            cfg,
            db,
            policy,
            view: ViewCache::default(),
            known,
        });
        p.view
            .fresh(p.db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        Ok(p)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Check the policy for `action`; the target is upstream's default, the caller's own
    /// project and user, unless `project_id` names another project (`GET /usages`).
    pub fn authorize(
        &self,
        ctx: &AuthContext,
        action: &str,
        project_id: Option<&str>,
    ) -> std::result::Result<(), Denied> {
        let creds = Credentials::from_auth(ctx);
        let target = serde_json::json!({
            "project_id": project_id.map(str::to_string).or_else(|| ctx.project_id().map(str::to_string)),
            "user_id": ctx.user_id,
        });
        match self.policy.authorize(action, &target, &creds) {
            Ok(()) => Ok(()),
            Err(e @ PolicyError::InvalidScope { .. }) => {
                tracing::info!(%action, reason = %e, "denied by scope");
                Err(Denied {
                    action: action.into(),
                })
            }
            Err(PolicyError::Denied { .. }) => Err(Denied {
                action: action.into(),
            }),
        }
    }

    /// The provider view, at least as new as the last committed write.
    pub async fn view(&self) -> Result<Arc<View>> {
        Ok(self.view.fresh(self.db.conn()).await?)
    }

    /// Begin a write transaction (serialised per database). Its first statement bumps the
    /// revision: a write as first statement makes SQLite wait (busy timeout) for the write
    /// lock, which a previous writer's dropped transaction may still hold until its queued
    /// ROLLBACK has run; a read first would instead fail with "database is locked" when the
    /// transaction later upgrades to writing.
    async fn begin(&self) -> Result<Tx<'_>> {
        let w = self.db.write().await?;
        let revision = store::bump_revision(&*w).await?;
        Ok(Tx { w, revision })
    }

    /// Commit `tx` and let the view follow (reloading what `changes` touched) before the
    /// next writer commits.
    async fn commit(&self, tx: Tx<'_>, changes: Changes) -> Result<()> {
        let guard = self.view.lock().await;
        tx.w.commit().await?;
        self.view
            .apply(&guard, self.db.conn(), tx.revision, &changes)
            .await;
        Ok(())
    }
}

/// A write transaction with the revision it will commit.
pub(crate) struct Tx<'a> {
    w: WriteTxn<'a>,
    revision: i64,
}

impl std::ops::Deref for Tx<'_> {
    type Target = sea_orm::DatabaseTransaction;
    fn deref(&self) -> &sea_orm::DatabaseTransaction {
        &self.w
    }
}

fn load_policy(cfg: &PlacementConfig) -> std::result::Result<Enforcer, String> {
    let mut b = Enforcer::builder()
        .defaults_yaml(POLICY_DEFAULTS)
        .map_err(|e| e.to_string())?
        .enforce_scope(cfg.enforce_scope);
    if cfg.policy_file.exists() {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("cannot read {}: {e}", cfg.policy_file.display()))?;
        b = b
            .overrides_file(&text)
            .map_err(|e| format!("{}: {e}", cfg.policy_file.display()))?;
        tracing::info!(file = %cfg.policy_file.display(), "placement policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}

/// Map a uniqueness violation to `on_dup`, anything else to a database error.
fn unique_or(
    on_dup: impl FnOnce() -> PlacementError,
) -> impl FnOnce(sea_orm::DbErr) -> PlacementError {
    move |e| {
        if common::db::is_unique_violation(&e) {
            on_dup()
        } else {
            PlacementError::Db(e)
        }
    }
}
