//! The volume service core: Cinder's rules over the store and the backends, no HTTP.
//!
//! Every change runs in the database's serialised write transaction (read, check, write).
//! Long operations (copies, image downloads and uploads, deletes) run in spawned tasks after
//! the row is written in its transient status (`creating`, `deleting`, ...); the task moves
//! the status on. A restart puts back in order what a crash left transient ([`VolumeService::recover`]).

mod attachments;
mod quotas;
mod snapshots;
mod types;
mod volumes;

pub use attachments::AttachRequest;
pub use quotas::{QuotaSet, Usage};
pub use snapshots::SnapshotListParams;
pub use volumes::{CreateVolume, ListParams, ListResult, TimeFilter, UploadRequest};

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer};
use parking_lot::RwLock;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::backend::{self, Backend};
use crate::config::VolumeConfig;
use crate::error::{Result, VolumeError};
use crate::glance::ImageClient;
use crate::model::*;
use crate::server_events::{NoServerEvents, ServerEvents};
use crate::store;
use crate::target::{ExportSource, NbdTargets, Reuse};

/// Policy defaults of the volume API (Cinder's names, secure RBAC), as data.
pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

pub const KIND_VOLUME: &str = "volume";
pub const KIND_SNAPSHOT: &str = "snapshot";
pub const KIND_TYPE: &str = "volume_type";
pub const KIND_ATTACHMENT: &str = "attachment";

pub struct VolumeService {
    pub cfg: VolumeConfig,
    pub(crate) db: Database,
    pub(crate) policy: Enforcer,
    pub(crate) backends: Vec<Box<dyn Backend>>,
    /// NBD exports for attachments of other hosts.
    pub targets: NbdTargets,
    image: RwLock<Option<Arc<ImageClient>>>,
    server_events: RwLock<Arc<dyn ServerEvents>>,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for VolumeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeService")
            .field("db", &self.db.url())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the volume database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("volume backend: {0}")]
    Backend(std::io::Error),
    #[error("policy: {0}")]
    Policy(String),
    #[error("recovery: {0}")]
    Recover(String),
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn to_body<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| VolumeError::internal(e.to_string()))
}

fn from_body<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| VolumeError::internal(format!("stored row: {e}")))
}

impl VolumeService {
    pub async fn open(cfg: VolumeConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        let mut backends = Vec::new();
        for b in &cfg.backends {
            backends.push(backend::open(b, &cfg.qemu_img).map_err(OpenError::Backend)?);
        }
        if backends.is_empty() {
            return Err(OpenError::Backend(std::io::Error::other(
                "[volume] enabled_backends names no backend",
            )));
        }
        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        let targets = NbdTargets::new(cfg.target.clone());
        let svc = Arc::new(Self {
            cfg,
            db,
            policy,
            backends,
            targets,
            image: RwLock::new(None),
            server_events: RwLock::new(Arc::new(NoServerEvents)),
            started_at: now(),
        });
        svc.ensure_default_type()
            .await
            .map_err(|e| OpenError::Recover(e.to_string()))?;
        svc.recover()
            .await
            .map_err(|e| OpenError::Recover(e.to_string()))?;
        Ok(svc)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The image service client (set once the catalog is known).
    pub fn set_image_client(&self, c: Arc<ImageClient>) {
        *self.image.write() = Some(c);
    }

    /// Who hears of servers' volume changes (compute's external events).
    pub fn set_server_events(&self, e: Arc<dyn ServerEvents>) {
        *self.server_events.write() = e;
    }

    pub(crate) fn server_events(&self) -> Arc<dyn ServerEvents> {
        self.server_events.read().clone()
    }

    pub(crate) fn image_client(&self) -> Result<Arc<ImageClient>> {
        self.image
            .read()
            .clone()
            .ok_or_else(|| VolumeError::internal("no image service configured"))
    }

    pub fn backends(&self) -> impl Iterator<Item = &dyn Backend> {
        self.backends.iter().map(|b| b.as_ref())
    }

    pub(crate) fn backend(&self, name: &str) -> Result<&dyn Backend> {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .map(|b| b.as_ref())
            .ok_or_else(|| VolumeError::internal(format!("no backend named {name}")))
    }

    /// After a crash or `kill -9`: no volume stuck in a transient status, none in-use (or
    /// reserved) without a completed attachment, no partial files.
    pub async fn recover(&self) -> Result<()> {
        let w = self.db.write().await?;
        let mut atts: Vec<Attachment> = Vec::new();
        for b in store::list(&*w, KIND_ATTACHMENT).await? {
            atts.push(from_body(&b)?);
        }
        // Incomplete attachments do not survive a restart.
        for a in &atts {
            if a.attach_status != "attached" {
                store::delete(&*w, &a.id).await?;
            }
        }
        for b in store::list(&*w, KIND_VOLUME).await? {
            let mut v: Volume = from_body(&b)?;
            let has_data = self
                .backend(&v.backend)
                .map(|be| be.has_volume(&v.id))
                .unwrap_or(false);
            let attached = atts
                .iter()
                .any(|a| a.volume_id == v.id && a.attach_status == "attached");
            // A delete the backend had finished: finish it here too.
            if v.status == crate::model::status::DELETING && !has_data {
                tracing::warn!(volume = %v.id, "delete finished after restart");
                store::delete(&*w, &v.id).await?;
                continue;
            }
            if let Some(to) = recovered_status(&v.status, has_data, attached) {
                tracing::warn!(volume = %v.id, from = %v.status, to, "volume status recovered after restart");
                v.status = to.to_string();
                v.updated_at = Some(now());
                store::update(&*w, &v.id, to_body(&v)?).await?;
            }
        }
        for b in store::list(&*w, KIND_SNAPSHOT).await? {
            let mut s: Snapshot = from_body(&b)?;
            if s.status == "creating" || s.status == "deleting" {
                s.status = "error".into();
                s.updated_at = Some(now());
                store::update(&*w, &s.id, to_body(&s)?).await?;
            }
        }
        w.commit().await?;
        for b in &self.backends {
            if let Ok(rd) = std::fs::read_dir(b.scratch_dir()) {
                for e in rd.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.reconcile_exports().await
    }

    /// After a restart: every volume attached over NBD is exported again on the port its
    /// attachments were told (a daemon that survived is kept as it is), and the daemons of
    /// exports no attachment needs any more (a detach that a crash cut short) are stopped.
    /// A volume that cannot be exported is logged, not fatal: the other volumes still serve.
    async fn reconcile_exports(&self) -> Result<()> {
        let w = self.db.write().await?;
        let atts: Vec<Attachment> = self.all(&*w, KIND_ATTACHMENT).await?;
        let mut wanted: std::collections::BTreeMap<String, Option<Reuse>> = Default::default();
        for a in atts.iter().filter(|a| a.attach_status == "attached") {
            if let Some(reuse) = nbd_reuse(a) {
                wanted.insert(a.volume_id.clone(), reuse);
            }
        }
        for rec in self.targets.recorded() {
            if !wanted.contains_key(&rec.volume_id) {
                tracing::warn!(volume = %rec.volume_id, "NBD export without attachment stopped");
                if let Err(e) = self.targets.stop(&rec.volume_id).await {
                    tracing::error!(volume = %rec.volume_id, error = %e, "stopping an NBD export failed");
                }
            }
        }
        for (volume_id, reuse) in wanted {
            let r = async {
                let v: Volume = match store::get(&*w, KIND_VOLUME, &volume_id).await? {
                    Some(b) => from_body(&b)?,
                    None => return Ok(()),
                };
                self.export(&v, reuse).await.map(|_| ())
            }
            .await;
            if let Err(e) = r {
                tracing::error!(volume = %volume_id, error = %e, "re-exporting a volume attached over NBD failed");
            }
        }
        drop(w);
        Ok(())
    }

    // ------------------------------------------------------------ policy

    pub fn is_admin(&self, ctx: &AuthContext) -> bool {
        self.policy
            .check("context_is_admin", &json!({}), &Credentials::from_auth(ctx))
    }

    pub fn allowed(&self, ctx: &AuthContext, action: &str, project_id: &str) -> bool {
        self.policy.check(
            action,
            &json!({"project_id": project_id}),
            &Credentials::from_auth(ctx),
        )
    }

    pub fn authorize(&self, ctx: &AuthContext, action: &str, project_id: &str) -> Result<()> {
        self.policy
            .authorize(
                action,
                &json!({"project_id": project_id}),
                &Credentials::from_auth(ctx),
            )
            .map_err(|e| {
                tracing::info!(%action, reason = %e, "volume policy denied");
                VolumeError::from(e)
            })
    }

    pub(crate) fn caller_project(ctx: &AuthContext) -> Result<String> {
        ctx.project_id()
            .map(str::to_string)
            .ok_or_else(|| VolumeError::Forbidden("A project-scoped token is required.".into()))
    }

    /// The caller may see resources of `project`.
    pub(crate) fn sees(&self, ctx: &AuthContext, project: &str) -> bool {
        ctx.project_id() == Some(project) || self.is_admin(ctx)
    }

    // ------------------------------------------------------------ loading

    pub(crate) async fn load_volume<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Volume> {
        let v: Volume = match store::get(c, KIND_VOLUME, id).await? {
            Some(b) => from_body(&b)?,
            None => return Err(VolumeError::volume_not_found(id)),
        };
        if !self.sees(ctx, &v.project_id) {
            return Err(VolumeError::volume_not_found(id));
        }
        Ok(v)
    }

    pub(crate) async fn load_snapshot<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Snapshot> {
        let s: Snapshot = match store::get(c, KIND_SNAPSHOT, id).await? {
            Some(b) => from_body(&b)?,
            None => return Err(VolumeError::snapshot_not_found(id)),
        };
        if !self.sees(ctx, &s.project_id) {
            return Err(VolumeError::snapshot_not_found(id));
        }
        Ok(s)
    }

    pub(crate) async fn all<T: serde::de::DeserializeOwned, C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        kind: &str,
    ) -> Result<Vec<T>> {
        store::list(c, kind)
            .await?
            .iter()
            .map(|b| from_body(b))
            .collect()
    }

    pub(crate) async fn attachments_of<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        volume_id: &str,
    ) -> Result<Vec<Attachment>> {
        store::children(c, KIND_ATTACHMENT, volume_id)
            .await?
            .iter()
            .map(|b| from_body(b))
            .collect()
    }

    /// Every attachment, by volume (for list views).
    pub async fn attachments_by_volume(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<Attachment>>> {
        let mut m: std::collections::HashMap<String, Vec<Attachment>> = Default::default();
        for a in self
            .all::<Attachment, _>(self.db.conn(), KIND_ATTACHMENT)
            .await?
        {
            m.entry(a.volume_id.clone()).or_default().push(a);
        }
        Ok(m)
    }

    pub(crate) async fn save_volume<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        v: &Volume,
    ) -> Result<()> {
        store::update(c, &v.id, to_body(v)?).await?;
        Ok(())
    }

    /// Move a volume's status from a background task (no caller context).
    pub(crate) async fn set_volume_status(
        &self,
        id: &str,
        f: impl FnOnce(&mut Volume),
    ) -> Result<Option<Volume>> {
        let w = self.db.write().await?;
        let Some(b) = store::get(&*w, KIND_VOLUME, id).await? else {
            return Ok(None);
        };
        let mut v: Volume = from_body(&b)?;
        f(&mut v);
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(Some(v))
    }

    /// Start (or find running) the volume's NBD export.
    async fn export(&self, v: &Volume, reuse: Option<Reuse>) -> Result<crate::target::NbdExport> {
        let b = self.backend(&v.backend)?;
        let path = b.volume_path(&v.id);
        let src = ExportSource {
            volume_id: &v.id,
            path: &path,
            format: b.format(),
            writable: !v.readonly,
        };
        self.targets
            .ensure(&src, reuse)
            .await
            .map_err(|e| VolumeError::internal(e.to_string()))
    }

    /// The connection info for `connector`: the volume's file for a connector on this host,
    /// else an NBD export (started here if it is not running yet).
    pub(crate) async fn connection_for(
        &self,
        v: &Volume,
        mode: &str,
        connector: &Value,
    ) -> Result<Value> {
        if !self.targets.wants_nbd(connector) {
            return Ok(self.connection_info(v, mode));
        }
        let e = self.export(v, None).await?;
        let mut data = json!({
            "host": e.address,
            "port": e.port,
            "name": e.name,
            // The export serves the volume's contents: the qcow2 is parsed on this host.
            "format": "raw",
            "access_mode": access_mode(v, mode),
            "volume_id": v.id,
            "discard": true,
        });
        if let Some(key) = e.psk {
            // As Cinder's iSCSI connections carry their CHAP secret: the TLS pre-shared key
            // the export requires, its identity the export name.
            data["auth_method"] = "tls-psk".into();
            data["auth_username"] = e.name.into();
            data["auth_password"] = key.into();
        }
        Ok(json!({"driver_volume_type": "nbd", "data": data}))
    }

    /// Stop the volume's NBD export unless an attachment still holds NBD connection info.
    /// Under the write lock, so an attach exporting the volume at the same time cannot lose
    /// its export.
    pub(crate) async fn release_export(&self, volume_id: &str) {
        if !self.targets.is_recorded(volume_id) {
            return;
        }
        let r: Result<()> = async {
            let w = self.db.write().await?;
            let atts = self.attachments_of(&*w, volume_id).await?;
            if !atts.iter().any(|a| nbd_reuse(a).is_some()) {
                self.targets
                    .stop(volume_id)
                    .await
                    .map_err(|e| VolumeError::internal(e.to_string()))?;
            }
            drop(w);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::error!(volume = %volume_id, error = %e, "stopping the NBD export failed (retried at the next start)");
        }
    }

    /// The connection info of a volume: the contract compute attaches with.
    pub fn connection_info(&self, v: &Volume, mode: &str) -> Value {
        let (path, format) = match self.backend(&v.backend) {
            Ok(b) => (b.volume_path(&v.id), b.format()),
            Err(_) => (std::path::PathBuf::new(), "raw"),
        };
        let access = access_mode(v, mode);
        json!({
            "driver_volume_type": "local",
            "data": {
                "device_path": path.to_string_lossy(),
                "format": format,
                "access_mode": access,
                "volume_id": v.id,
                "discard": true,
            }
        })
    }
}

fn access_mode(v: &Volume, mode: &str) -> &'static str {
    if v.readonly || mode == "ro" {
        "ro"
    } else {
        "rw"
    }
}

/// `Some` for an attachment connected over NBD, with what a re-export must keep: the port
/// and TLS key its connection info announced (`None` inside when it has no port: a re-export
/// picks one).
fn nbd_reuse(a: &Attachment) -> Option<Option<Reuse>> {
    let ci = a.connection_info.as_ref()?;
    (ci["driver_volume_type"] == "nbd").then(|| {
        let data = &ci["data"];
        let port = data["port"].as_u64().and_then(|p| u16::try_from(p).ok())?;
        let psk = (data["auth_method"] == "tls-psk")
            .then(|| data["auth_password"].as_str().map(str::to_string))
            .flatten();
        Some(Reuse { port, psk })
    })
}

fn load_policy(cfg: &VolumeConfig) -> std::result::Result<Enforcer, String> {
    let mut b = Enforcer::builder()
        .defaults_yaml(POLICY_DEFAULTS)
        .map_err(|e| e.to_string())?
        .enforce_scope(true);
    if cfg.policy_file.exists() {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("cannot read {}: {e}", cfg.policy_file.display()))?;
        b = b
            .overrides_file(&text)
            .map_err(|e| format!("{}: {e}", cfg.policy_file.display()))?;
    }
    b.build().map_err(|e| e.to_string())
}
