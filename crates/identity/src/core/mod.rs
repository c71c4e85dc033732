//! The identity service core: domain logic over the store, no HTTP.
//!
//! [`Identity`] is the one object the API layer talks to. Writes go through the
//! database's serialised write transaction and then bump [`Identity::revision`]; every
//! in-memory cache (validated tokens, the catalog, the role graph) is tagged with the
//! revision it was built at and is rebuilt when it no longer matches, so a change is
//! visible to the very next request.

pub mod appcreds;
mod assignments;
mod auth;
mod catalog;
mod resource;
mod users;

pub use appcreds::{AppCredRequest, RoleSelector};
pub use assignments::{AssignmentQuery, EffectiveAssignment};
pub use auth::{
    AppCredAuth, AuthRequest, DomainRef, IssuedToken, LocalValidator, ScopeRequest, UserRef,
    ValidatedToken,
};
pub use catalog::CatalogEntry;

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer, PolicyError};
use parking_lot::RwLock;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::IdentityConfig;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store;
use crate::token::{AuthMethods, KeyPurpose, KeyRepository, TokenCodec};

/// Policy defaults Keystone registers (secure RBAC), as data.
pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

pub struct Identity {
    pub cfg: IdentityConfig,
    pub(crate) db: Database,
    pub(crate) tokens: TokenCodec,
    pub(crate) credential_keys: KeyRepository,
    pub(crate) policy: Enforcer,
    revision: AtomicU64,
    /// The revision for whoever must hear of changes (the API hosts that validate tokens
    /// remotely and cache them: kumo fans it out on the bus).
    revision_watch: tokio::sync::watch::Sender<u64>,
    token_cache: RwLock<HashMap<String, (u64, Arc<ValidatedToken>)>>,
    revocations: RwLock<Vec<RevocationEvent>>,
    role_graph: RwLock<Option<(u64, Arc<assignments::RoleGraph>)>>,
    catalog: RwLock<Option<(u64, Arc<Vec<CatalogEntry>>)>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("db", &self.db.url())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the identity database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("{0}")]
    Keys(String),
    #[error("policy: {0}")]
    Policy(String),
}

impl Identity {
    /// Open the service: database (migrated), key repositories (created if absent),
    /// policy (defaults + the operator's policy file if present).
    pub async fn open(cfg: IdentityConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;

        let fernet = KeyRepository::new(&cfg.fernet_key_repository, KeyPurpose::Tokens)
            .with_max_active_keys(cfg.fernet_max_active_keys)
            .map_err(|e| OpenError::Keys(e.to_string()))?;
        fernet.setup().map_err(|e| OpenError::Keys(e.to_string()))?;
        let tokens = TokenCodec::from_repository(fernet, AuthMethods::new(cfg.auth_methods.iter()))
            .map_err(|e| OpenError::Keys(e.to_string()))?;
        let credential_keys =
            KeyRepository::new(&cfg.credential_key_repository, KeyPurpose::Credentials);
        credential_keys
            .setup()
            .map_err(|e| OpenError::Keys(e.to_string()))?;

        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        crate::error::set_insecure_debug(cfg.insecure_debug);

        let now = chrono::Utc::now();
        let revocations = store::load_revocations(db.conn(), now)
            .await
            .map_err(OpenError::Migrate)?;
        Ok(Arc::new(Self {
            cfg,
            db,
            tokens,
            credential_keys,
            policy,
            revision: AtomicU64::new(1),
            revision_watch: tokio::sync::watch::Sender::new(1),
            token_cache: RwLock::new(HashMap::new()),
            revocations: RwLock::new(revocations),
            role_graph: RwLock::new(None),
            catalog: RwLock::new(None),
        }))
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Identity state version; changes whenever anything a token depends on changes.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Called after every committed write.
    pub(crate) fn changed(&self) {
        let rev = self.revision.fetch_add(1, Ordering::AcqRel) + 1;
        self.token_cache.write().clear();
        self.revision_watch.send_replace(rev);
    }

    /// Wakes on every committed change (the latest revision; bursts coalesce): what a
    /// cache of validations elsewhere must be dropped on.
    pub fn watch_revision(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision_watch.subscribe()
    }

    /// Check the policy for `action`; a denial is Keystone's 403.
    pub fn authorize(&self, ctx: &AuthContext, action: &str, target: &Value) -> Result<()> {
        let creds = credentials_of(ctx);
        match self.policy.authorize(action, target, &creds) {
            Ok(()) => Ok(()),
            Err(e @ PolicyError::InvalidScope { .. }) => {
                tracing::info!(%action, reason = %e, "denied by scope");
                Err(IdentityError::PolicyDenied {
                    action: action.to_string(),
                })
            }
            Err(PolicyError::Denied { .. }) => Err(IdentityError::PolicyDenied {
                action: action.to_string(),
            }),
        }
    }

    /// Like [`authorize`](Self::authorize), as a bool (list filtering).
    pub fn allowed(&self, ctx: &AuthContext, action: &str, target: &Value) -> bool {
        self.policy.check(action, target, &credentials_of(ctx))
    }

    /// Keystone's list cap (`truncated`).
    pub fn list_limit(&self) -> Option<usize> {
        self.cfg.list_limit
    }
}

fn load_policy(cfg: &IdentityConfig) -> std::result::Result<Enforcer, String> {
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
        tracing::info!(file = %cfg.policy_file.display(), "policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}

/// The oslo.policy credentials of a caller.
pub fn credentials_of(ctx: &AuthContext) -> Credentials {
    Credentials::from_auth(ctx)
}

/// Map a uniqueness violation from the database to Keystone's 409.
pub(crate) fn conflict_or(
    kind: &'static str,
    details: String,
) -> impl FnOnce(sea_orm::DbErr) -> IdentityError {
    move |e| {
        if common::db::is_unique_violation(&e) {
            IdentityError::Conflict { kind, details }
        } else {
            IdentityError::Db(e)
        }
    }
}

/// Resource options a user may carry.
pub fn users_options() -> &'static [&'static str] {
    users::USER_OPTIONS
}

/// The three endpoint interfaces, in catalog order.
pub fn catalog_interfaces() -> &'static [&'static str] {
    catalog::INTERFACES
}
