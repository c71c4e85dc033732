//! The image service core: Glance's domain rules over the store and the database, no HTTP.
//!
//! [`ImageService`] is the one object the API layer talks to. Every metadata change runs in
//! the database's serialised write transaction (read, check, write), so two requests never
//! lose each other's changes; long transfers (upload, import) claim the image with a status
//! compare-and-set first (`queued -> saving`), stream without any lock, and finish with a
//! second compare-and-set, which fails if the image was deleted meanwhile.

mod data;
mod images;

pub use data::{Download, ImportRequest};
pub(crate) use images::py_list;
pub use images::{Change, ChangeOp, CreateRequest, ListParams, ListResult, SortKey};

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::config::ImageConfig;
use crate::error::{ImageError, Result};
use crate::filestore::FileStore;
use crate::model::*;
use crate::store;

/// Policy defaults Glance registers (secure RBAC), as data.
pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

/// Properties the service maintains itself; users may neither set nor see some of them.
pub const RESERVED_NAMESPACE: &str = "os_glance";
pub const IMPORT_LOCK: &str = "os_glance_import_task";

pub struct ImageService {
    pub cfg: ImageConfig,
    pub(crate) db: Database,
    pub(crate) store: FileStore,
    pub(crate) policy: Enforcer,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("db", &self.db.url())
            .field("store", &self.store.dir())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the image database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("image store {path}: {source}")]
    Store {
        path: String,
        source: std::io::Error,
    },
    #[error("policy: {0}")]
    Policy(String),
}

impl ImageService {
    /// Open the service: database (migrated), store directory, policy; then put back in order
    /// what a crash or `kill -9` left unfinished (see [`ImageService::recover`]).
    pub async fn open(cfg: ImageConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        let fstore = FileStore::open(&cfg.datadir).map_err(|source| OpenError::Store {
            path: cfg.datadir.display().to_string(),
            source,
        })?;
        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        let svc = Arc::new(Self {
            cfg,
            db,
            store: fstore,
            policy,
        });
        svc.recover().await.map_err(|e| match e {
            ImageError::Db(d) => OpenError::Migrate(d),
            other => OpenError::Store {
                path: svc.store.dir().display().to_string(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        Ok(svc)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn store(&self) -> &FileStore {
        &self.store
    }

    /// After a crash: no partial data anywhere, no image stuck in a transfer status.
    /// `saving` goes back to `queued` (Glance's restore after a failed upload); `importing`
    /// goes back to `uploading` when its staged data is complete, else `queued`; unfinished
    /// tasks fail; data files no live image owns are removed.
    pub async fn recover(&self) -> Result<()> {
        let removed = self.store.remove_partials();
        let now = chrono::Utc::now();
        let w = self.db.write().await?;
        for mut t in store::unfinished_tasks(&*w).await? {
            t.status = TaskStatus::Failure;
            t.message = "The image service stopped while this task was running.".into();
            t.updated_at = now;
            t.expires_at = Some(now + self.task_ttl());
            store::update_task(&*w, &t).await?;
        }
        let stuck =
            store::images_in(&*w, &[Status::Saving, Status::Importing, Status::Uploading]).await?;
        for mut img in stuck {
            let was = img.status;
            img.status = if img.status != Status::Saving && self.store.has_staged(&img.id) {
                Status::Uploading
            } else {
                Status::Queued
            };
            if img.status == Status::Queued {
                img.size = None;
                img.virtual_size = None;
            }
            img.properties.remove(IMPORT_LOCK);
            img.properties.remove("os_glance_importing_to_stores");
            img.updated_at = now;
            store::save_image_if(&*w, &img, was).await?;
            tracing::warn!(image = %img.id, from = was.as_str(), to = img.status.as_str(),
                "image left in a transfer by the previous run reset");
        }
        w.commit().await?;
        // Data files without a live image that owns data: a crash between the rename into the
        // store and the status change, or a delete whose file removal was interrupted.
        let conn = self.db.conn();
        for id in self.store.data_ids() {
            let keep = store::get_image(conn, &id)
                .await?
                .is_some_and(|r| !r.deleted && r.image.status.has_data());
            if !keep {
                self.store.remove_data(&id);
                tracing::warn!(image = %id, "removed data no image owns");
            }
        }
        for id in self.store.staged_ids() {
            let keep = store::get_image(conn, &id)
                .await?
                .is_some_and(|r| !r.deleted && r.image.status == Status::Uploading);
            if !keep {
                self.store.remove_staged(&id);
            }
        }
        if removed > 0 {
            tracing::warn!(
                count = removed,
                "removed partial uploads of the previous run"
            );
        }
        Ok(())
    }

    pub(crate) fn task_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(self.cfg.task_time_to_live_hours)
    }

    // ------------------------------------------------------------ policy

    pub fn credentials(ctx: &AuthContext) -> Credentials {
        Credentials::from_auth(ctx)
    }

    /// Glance's `context.is_admin`: the `context_is_admin` rule.
    pub fn is_admin(&self, ctx: &AuthContext) -> bool {
        self.policy
            .check("context_is_admin", &json!({}), &Self::credentials(ctx))
    }

    pub fn allowed(&self, ctx: &AuthContext, action: &str, target: &Value) -> bool {
        self.policy.check(action, target, &Self::credentials(ctx))
    }

    pub fn authorize(&self, ctx: &AuthContext, action: &str, target: &Value) -> Result<()> {
        self.policy
            .authorize(action, target, &Self::credentials(ctx))
            .map_err(|e| {
                tracing::info!(%action, reason = %e, "image policy denied");
                ImageError::from(e)
            })
    }

    /// The policy target of an existing image (Glance's ImageTarget): owner as project_id,
    /// and the caller's project as member_id when it sees a shared image it does not own.
    pub fn target(ctx: &AuthContext, img: &Image) -> Value {
        let member = (img.visibility == Visibility::Shared
            && ctx.project_id() != img.owner.as_deref())
        .then(|| ctx.project_id().map(str::to_string))
        .flatten();
        let mut t = serde_json::Map::new();
        for (k, v) in &img.properties {
            t.insert(k.clone(), v.clone());
        }
        t.insert("id".into(), json!(img.id));
        t.insert("project_id".into(), json!(img.owner));
        t.insert("owner".into(), json!(img.owner));
        t.insert("visibility".into(), json!(img.visibility.as_str()));
        t.insert("member_id".into(), json!(member));
        t.insert("status".into(), json!(img.status.as_str()));
        t.insert("protected".into(), json!(img.protected));
        Value::Object(t)
    }

    /// Enforce `action` on an image the caller can see. Like Glance, a denial becomes 404 when
    /// the caller may not even read the image, so its existence is not revealed.
    pub fn enforce_on(&self, ctx: &AuthContext, img: &Image, action: &str) -> Result<()> {
        let target = Self::target(ctx, img);
        match self.authorize(ctx, action, &target) {
            Ok(()) => Ok(()),
            Err(e) => {
                if action == "get_image" || !self.allowed(ctx, "get_image", &target) {
                    Err(ImageError::image_not_found(&img.id))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Glance's database-level visibility: admin, unowned, public/community, own, or a
    /// member of the shared image (any membership status).
    pub(crate) async fn visible<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        img: &Image,
    ) -> Result<bool> {
        if self.is_admin(ctx) || img.owner.is_none() {
            return Ok(true);
        }
        if matches!(img.visibility, Visibility::Public | Visibility::Community) {
            return Ok(true);
        }
        let Some(p) = ctx.project_id() else {
            return Ok(false);
        };
        if img.owner.as_deref() == Some(p) {
            return Ok(true);
        }
        if img.visibility == Visibility::Shared {
            return Ok(store::get_member(c, &img.id, p).await?.is_some());
        }
        Ok(false)
    }

    /// The live image `id` as the caller may see it, else Glance's 404.
    pub(crate) async fn lookup<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Image> {
        match store::get_image(c, id).await? {
            Some(r) if !r.deleted && self.visible(c, ctx, &r.image).await? => Ok(r.image),
            _ => Err(ImageError::image_not_found(id)),
        }
    }

    /// Show an image.
    pub async fn get(&self, ctx: &AuthContext, id: &str) -> Result<Image> {
        let img = self.lookup(self.db.conn(), ctx, id).await?;
        self.enforce_on(ctx, &img, "get_image")?;
        Ok(img)
    }
}

fn load_policy(cfg: &ImageConfig) -> std::result::Result<Enforcer, String> {
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
        tracing::info!(file = %cfg.policy_file.display(), "image policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}
