//! Volumes: create (empty, from snapshot, from volume, from image), list, show, update,
//! delete, metadata, and the actions that are not about attachments.

use common::auth::AuthContext;
use serde_json::{Value, json};
use std::sync::Arc;

use super::*;
use crate::model::{Action, Metadata, status};
use crate::server_events::Sender;

const GIB: u64 = 1 << 30;

/// A create request, already shaped (the API checked types).
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    pub size: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub image_ref: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub all_tenants: bool,
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub availability_zone: Option<String>,
    pub bootable: Option<bool>,
    pub metadata: Option<Metadata>,
    /// 3.60: `created_at`/`updated_at` compared (`gt`, `gte`, `lt`, `lte`, `eq`, `neq`).
    pub time_filters: Vec<TimeFilter>,
    pub sort: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub struct TimeFilter {
    pub updated: bool,
    pub op: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl TimeFilter {
    /// `gte:2024-01-01T00:00:00Z` for `created_at` or `updated_at`.
    pub fn parse(field: &str, value: &str) -> std::result::Result<Self, String> {
        let (op, t) = value
            .split_once(':')
            .ok_or_else(|| format!("Invalid filter {field}={value}"))?;
        if !["gt", "gte", "lt", "lte", "eq", "neq"].contains(&op) {
            return Err(format!("Invalid filter operator {op} for {field}"));
        }
        let at = chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|n| n.and_utc())
            })
            .map_err(|_| format!("Invalid time {t} for {field}"))?;
        Ok(Self {
            updated: field == "updated_at",
            op: op.to_string(),
            at,
        })
    }

    fn matches(&self, v: &Volume) -> bool {
        let Some(t) = (if self.updated {
            v.updated_at
        } else {
            Some(v.created_at)
        }) else {
            return false;
        };
        match self.op.as_str() {
            "gt" => t > self.at,
            "gte" => t >= self.at,
            "lt" => t < self.at,
            "lte" => t <= self.at,
            "eq" => t == self.at,
            _ => t != self.at,
        }
    }
}

pub struct ListResult {
    pub volumes: Vec<Volume>,
    /// More after the last one (a next link is due).
    pub more: bool,
}

#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub image_name: String,
    pub force: bool,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: Option<String>,
    pub protected: bool,
}

enum Source {
    Empty,
    Snapshot(Snapshot),
    Volume(Volume),
    Image(Value),
}

impl VolumeService {
    fn find_type_sync(types: &[VolumeType], key: &str) -> Option<VolumeType> {
        types
            .iter()
            .find(|t| t.id == key)
            .or_else(|| types.iter().find(|t| t.name == key))
            .cloned()
    }

    pub async fn create_volume(
        self: &Arc<Self>,
        ctx: &AuthContext,
        token: &str,
        req: CreateVolume,
    ) -> Result<Volume> {
        let project = Self::caller_project(ctx)?;
        self.authorize(ctx, "volume:create", &project)?;
        let conn = self.db.conn();
        // The source, and the size it implies.
        let source = if let Some(sid) = &req.snapshot_id {
            let s = self.load_snapshot(conn, ctx, sid).await?;
            if s.status != "available" {
                return Err(VolumeError::bad(
                    "Invalid snapshot: Originating snapshot status must be one of 'available' values",
                ));
            }
            Source::Snapshot(s)
        } else if let Some(vid) = &req.source_volid {
            let v = self
                .load_volume(conn, ctx, vid)
                .await
                .map_err(|e| match e {
                    VolumeError::NotFound(_) => {
                        VolumeError::NotFound(format!("Volume {vid} could not be found."))
                    }
                    o => o,
                })?;
            Action::Clone
                .check(&v.status)
                .map_err(VolumeError::BadRequest)?;
            Source::Volume(v)
        } else if let Some(img) = &req.image_ref {
            self.authorize(ctx, "volume:create_from_image", &project)?;
            let client = self.image_client()?;
            let Some(i) = client.get(token, img).await? else {
                return Err(VolumeError::bad(
                    "Invalid image identifier or unable to access requested image.",
                ));
            };
            if i["status"] != "active" {
                return Err(VolumeError::bad(format!(
                    "Invalid image: Image {img} is not active."
                )));
            }
            Source::Image(i)
        } else {
            Source::Empty
        };
        let (min_size, what) = match &source {
            Source::Empty => (1, ""),
            Source::Snapshot(s) => (s.size, "snapshot"),
            Source::Volume(v) => (v.size, "source volume"),
            Source::Image(i) => {
                let bytes = i["size"]
                    .as_u64()
                    .unwrap_or(0)
                    .max(i["virtual_size"].as_u64().unwrap_or(0));
                let gb = bytes.div_ceil(GIB).max(1) as i64;
                (gb.max(i["min_disk"].as_i64().unwrap_or(0)), "image")
            }
        };
        let size = match (req.size, &source) {
            (Some(s), _) if s <= 0 => {
                return Err(VolumeError::invalid_input(format!(
                    "Volume size '{s}' must be an integer and greater than 0"
                )));
            }
            (Some(s), Source::Empty) => s,
            (Some(s), Source::Image(_)) if s < min_size => {
                return Err(VolumeError::invalid_input(format!(
                    "Size of specified image {min_size}GB is larger than volume size {s}GB."
                )));
            }
            (Some(s), _) if s < min_size => {
                return Err(VolumeError::invalid_input(format!(
                    "Volume size '{s}'GB cannot be smaller than the {what} size {min_size}GB. They must be >= original {what} size."
                )));
            }
            (Some(s), _) => s,
            (None, Source::Empty) => {
                return Err(VolumeError::invalid_input(
                    "Volume size 'None' must be an integer and greater than 0",
                ));
            }
            (None, _) => min_size,
        };
        if self.cfg.per_volume_size_limit >= 0 && size > self.cfg.per_volume_size_limit {
            return Err(VolumeError::OverLimit(format!(
                "Requested volume size {size}G is larger than maximum allowed limit {}G.",
                self.cfg.per_volume_size_limit
            )));
        }
        let az = req
            .availability_zone
            .clone()
            .unwrap_or_else(|| self.cfg.availability_zone.clone());
        if az != self.cfg.availability_zone {
            return Err(VolumeError::invalid_input(format!(
                "Availability zone '{az}' is invalid."
            )));
        }
        let types: Vec<VolumeType> = self.all(conn, KIND_TYPE).await?;
        let vtype =
            match (&req.volume_type, &source) {
                (Some(t), _) => Self::find_type_sync(&types, t).ok_or_else(|| {
                    VolumeError::NotFound(format!("Volume type with name {t} could not be found."))
                })?,
                (None, Source::Snapshot(s)) => types
                    .iter()
                    .find(|t| t.id == s.volume_type_id)
                    .cloned()
                    .ok_or_else(|| VolumeError::type_not_found(&s.volume_type_id))?,
                (None, Source::Volume(v)) => types
                    .iter()
                    .find(|t| t.id == v.volume_type_id)
                    .cloned()
                    .ok_or_else(|| VolumeError::type_not_found(&v.volume_type_id))?,
                (None, _) => self.default_type(&types)?,
            };
        let backend = match (&source, vtype.extra_specs.get("volume_backend_name")) {
            (Source::Snapshot(s), _) => s.backend.clone(),
            (Source::Volume(v), _) => v.backend.clone(),
            (_, Some(name)) => match self.backends().find(|b| b.name() == name) {
                Some(b) => b.name().to_string(),
                None => {
                    return Err(VolumeError::bad(format!(
                        "No valid backend was found. No backend has volume_backend_name {name}."
                    )));
                }
            },
            _ => self.backends[0].name().to_string(),
        };
        let (bootable, image_metadata) = match &source {
            Source::Volume(v) => (v.bootable, v.image_metadata.clone()),
            Source::Image(i) => (true, Some(image_metadata_of(i))),
            Source::Snapshot(s) => {
                let parent: Option<Volume> = store::get(conn, KIND_VOLUME, &s.volume_id)
                    .await?
                    .and_then(|b| serde_json::from_str(&b).ok());
                (
                    parent.as_ref().is_some_and(|p| p.bootable),
                    parent.and_then(|p| p.image_metadata),
                )
            }
            Source::Empty => (false, None),
        };
        let t = now();
        let v = Volume {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: project.clone(),
            user_id: ctx.user_id.clone(),
            name: req.name,
            description: req.description,
            size,
            status: status::CREATING.into(),
            availability_zone: az,
            volume_type_id: vtype.id.clone(),
            volume_type_name: vtype.name.clone(),
            bootable,
            readonly: false,
            metadata: req.metadata,
            image_metadata,
            snapshot_id: req.snapshot_id.clone(),
            source_volid: req.source_volid.clone(),
            backend,
            created_at: t,
            updated_at: None,
            pending_extend: None,
        };
        {
            let w = self.db.write().await?;
            self.check_quota(&*w, &project, &vtype.name, 1, size, 0)
                .await?;
            store::insert(
                &*w,
                store::NewRow {
                    kind: KIND_VOLUME,
                    id: &v.id,
                    project_id: &project,
                    parent_id: None,
                    created_at: &t.to_rfc3339(),
                    body: to_body(&v)?,
                },
            )
            .await?;
            w.commit().await?;
        }
        let svc = self.clone();
        let vol = v.clone();
        let token = token.to_string();
        tokio::spawn(async move {
            let id = vol.id.clone();
            let r = svc.build_volume(&vol, source, &token).await;
            let outcome = match &r {
                Ok(()) => status::AVAILABLE,
                Err(e) => {
                    tracing::error!(volume = %id, error = %e, "volume creation failed");
                    status::ERROR
                }
            };
            let res = svc
                .set_volume_status(&id, |v| {
                    if v.status == status::CREATING || v.status == status::DOWNLOADING {
                        v.status = outcome.into();
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(volume = %id, error = %e, "could not record the volume's status");
            }
        });
        Ok(v)
    }

    async fn build_volume(&self, v: &Volume, source: Source, token: &str) -> Result<()> {
        let b = self.backend(&v.backend)?;
        match source {
            Source::Empty => b.create(&v.id, v.size).await?,
            Source::Snapshot(s) => b.create_from_snapshot(&v.id, &s.id, v.size).await?,
            Source::Volume(src) => b.clone_volume(&v.id, &src.id, v.size).await?,
            Source::Image(img) => {
                let image_id = img["id"].as_str().unwrap_or_default().to_string();
                self.set_volume_status(&v.id, |v| {
                    if v.status == status::CREATING {
                        v.status = status::DOWNLOADING.into();
                    }
                })
                .await?;
                let tmp = b.scratch_dir().join(format!("image-{}", v.id));
                let client = self.image_client()?;
                let r = async {
                    client.download(token, &image_id, &tmp).await?;
                    let fmt = img["disk_format"]
                        .as_str()
                        .filter(|f| ["raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx"].contains(f));
                    let fmt = match fmt {
                        Some("vhd") => Some("vpc"),
                        other => other,
                    };
                    b.create_from_file(&v.id, &tmp, fmt, v.size).await?;
                    Ok::<(), VolumeError>(())
                }
                .await;
                let _ = std::fs::remove_file(&tmp);
                r?;
            }
        }
        Ok(())
    }

    pub(crate) fn default_type(&self, types: &[VolumeType]) -> Result<VolumeType> {
        Self::find_type_sync(types, &self.cfg.default_volume_type)
            .ok_or_else(|| VolumeError::type_not_found(&self.cfg.default_volume_type))
    }

    pub async fn get_volume(&self, ctx: &AuthContext, id: &str) -> Result<Volume> {
        let v = self.load_volume(self.db.conn(), ctx, id).await?;
        self.authorize(ctx, "volume:get", &v.project_id)?;
        Ok(v)
    }

    pub async fn list_volumes(&self, ctx: &AuthContext, p: &ListParams) -> Result<ListResult> {
        let project = Self::caller_project(ctx)?;
        self.authorize(ctx, "volume:get_all", &project)?;
        let everyone = (p.all_tenants || p.project_id.is_some())
            && self.allowed(ctx, "volume:get_all_tenants", &project);
        let mut vols: Vec<Volume> = self.all(self.db.conn(), KIND_VOLUME).await?;
        vols.retain(|v| {
            if everyone {
                p.project_id.as_ref().is_none_or(|pid| &v.project_id == pid)
            } else {
                v.project_id == project
            }
        });
        vols.retain(|v| volume_matches(v, p));
        sort_volumes(&mut vols, &p.sort);
        let (page, more) = page(
            vols,
            p.marker.as_deref(),
            p.offset,
            p.limit,
            self.cfg.max_limit,
            |v| &v.id,
        )
        .map_err(|m| VolumeError::bad(format!("Invalid marker: {m}")))?;
        Ok(ListResult {
            volumes: page,
            more,
        })
    }

    pub async fn update_volume(
        &self,
        ctx: &AuthContext,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        metadata: Option<Metadata>,
    ) -> Result<Volume> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:update", &v.project_id)?;
        if let Some(n) = name {
            v.name = n;
        }
        if let Some(d) = description {
            v.description = d;
        }
        if let Some(m) = metadata {
            v.metadata = m;
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(v)
    }

    /// Volume metadata: `replace` all (PUT) or merge (POST); returns the result.
    pub async fn set_volume_metadata(
        &self,
        ctx: &AuthContext,
        id: &str,
        meta: Metadata,
        replace: bool,
    ) -> Result<Metadata> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:update_volume_metadata", &v.project_id)?;
        if replace {
            v.metadata = meta;
        } else {
            v.metadata.extend(meta);
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(v.metadata)
    }

    pub async fn delete_volume_metadata(
        &self,
        ctx: &AuthContext,
        id: &str,
        key: &str,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:delete_volume_metadata", &v.project_id)?;
        if v.metadata.remove(key).is_none() {
            return Err(VolumeError::NotFound(format!(
                "Volume {id} has no metadata with key {key}."
            )));
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(())
    }

    /// Delete: `cascade` deletes its snapshots too; `force` (os-force_delete) skips the
    /// status check but not attachments.
    pub async fn delete_volume(
        self: &Arc<Self>,
        ctx: &AuthContext,
        id: &str,
        cascade: bool,
        force: bool,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        if force {
            self.authorize(ctx, "volume:force_delete", &v.project_id)?;
        } else {
            self.authorize(ctx, "volume:delete", &v.project_id)?;
        }
        let atts = self.attachments_of(&*w, id).await?;
        if !atts.is_empty() || (!force && Action::Delete.check(&v.status).is_err()) {
            return Err(VolumeError::bad(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.",
            ));
        }
        let snaps: Vec<Snapshot> = self
            .all::<Snapshot, _>(&*w, KIND_SNAPSHOT)
            .await?
            .into_iter()
            .filter(|s| s.volume_id == v.id)
            .collect();
        if !snaps.is_empty() && !cascade {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume still has {} dependent snapshots.",
                snaps.len()
            )));
        }
        for s in &snaps {
            if s.status != "available" && s.status != "error" {
                return Err(VolumeError::bad(format!(
                    "Invalid volume: Snapshot {} cannot be deleted while its status is {}.",
                    s.id, s.status
                )));
            }
        }
        v.status = status::DELETING.into();
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        for s in &snaps {
            let mut s = s.clone();
            s.status = "deleting".into();
            store::update(&*w, &s.id, to_body(&s)?).await?;
        }
        w.commit().await?;
        let svc = self.clone();
        tokio::spawn(async move {
            let r = async {
                let b = svc.backend(&v.backend)?;
                for s in &snaps {
                    b.delete_snapshot(&s.id).await?;
                }
                b.delete(&v.id).await?;
                let w = svc.db.write().await?;
                for s in &snaps {
                    store::delete(&*w, &s.id).await?;
                }
                store::delete(&*w, &v.id).await?;
                w.commit().await?;
                Ok::<(), VolumeError>(())
            }
            .await;
            if let Err(e) = r {
                tracing::error!(volume = %v.id, error = %e, "volume deletion failed");
                let _ = svc
                    .set_volume_status(&v.id, |v| v.status = status::ERROR_DELETING.into())
                    .await;
            }
        });
        Ok(())
    }

    pub async fn extend_volume(
        self: &Arc<Self>,
        ctx: &AuthContext,
        id: &str,
        new_size: i64,
        attached_ok: bool,
        request_id: &str,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        let in_use = v.status == status::IN_USE;
        self.authorize(
            ctx,
            if in_use {
                "volume:extend_attached_volume"
            } else {
                "volume:extend"
            },
            &v.project_id,
        )?;
        let action = if attached_ok {
            Action::ExtendInUse
        } else {
            Action::Extend
        };
        action.check(&v.status).map_err(VolumeError::BadRequest)?;
        if new_size <= v.size {
            return Err(VolumeError::invalid_input(format!(
                "New size for extend must be greater than current size. (current: {}, extended: {new_size}).",
                v.size
            )));
        }
        self.check_quota(
            &*w,
            &v.project_id,
            &v.volume_type_name,
            0,
            new_size - v.size,
            0,
        )
        .await?;
        let old = v.status.clone();
        v.status = status::EXTENDING.into();
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        let svc = self.clone();
        let by = Sender {
            user_id: ctx.user_id.clone(),
            project_id: ctx.project_id().unwrap_or(&v.project_id).to_string(),
            request_id: request_id.to_string(),
        };
        tokio::spawn(async move {
            let r = match svc.backend(&v.backend) {
                Ok(b) => b.extend(&v.id, new_size).await.map_err(VolumeError::from),
                Err(e) => Err(e),
            };
            let res = svc
                .set_volume_status(&v.id, |vol| match &r {
                    Ok(()) => {
                        vol.size = new_size;
                        vol.status = old.clone();
                    }
                    // An attached file is locked by its guest's QEMU: the size is the
                    // volume's now, and compute grows the disk it has open.
                    Err(_) if old == status::IN_USE => {
                        vol.size = new_size;
                        vol.pending_extend = Some(new_size);
                        vol.status = old.clone();
                    }
                    Err(e) => {
                        tracing::error!(volume = %vol.id, error = %e, "extend failed");
                        vol.status = status::ERROR_EXTENDING.into();
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "could not record the extend");
                return;
            }
            if old == status::IN_USE {
                svc.tell_servers_extended(&v.id, &by).await;
            }
        });
        Ok(())
    }

    /// Cinder's `extend_volume_completion` for an attached volume: each server it is
    /// attached to gets `volume-extended`, and its host grows the guest's disk.
    async fn tell_servers_extended(&self, volume_id: &str, by: &Sender) {
        let atts = self.attachments_of(self.db.conn(), volume_id).await;
        let servers: std::collections::BTreeSet<String> = match atts {
            Ok(atts) => atts.into_iter().filter_map(|a| a.instance_uuid).collect(),
            Err(e) => {
                tracing::error!(volume = %volume_id, error = %e, "attachments not read: no volume-extended sent");
                return;
            }
        };
        let events = self.server_events();
        for server in servers {
            tracing::info!(volume = %volume_id, %server, "volume-extended sent");
            events.volume_extended(&server, volume_id, by).await;
        }
    }

    pub async fn reset_status(
        &self,
        ctx: &AuthContext,
        id: &str,
        new_status: Option<&str>,
        attach_status: Option<&str>,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(
            ctx,
            "volume_extension:volume_admin_actions:reset_status",
            &v.project_id,
        )?;
        if let Some(s) = new_status {
            if !status::ALL.contains(&s) {
                return Err(VolumeError::bad(format!(
                    "Invalid input received: Must specify a valid status (got {s})."
                )));
            }
            v.status = s.to_string();
        }
        if let Some(a) = attach_status {
            if !["attached", "detached"].contains(&a) {
                return Err(VolumeError::invalid_input(format!(
                    "Must specify a valid attach status (got {a})."
                )));
            }
            if a == "detached" {
                for att in self.attachments_of(&*w, id).await? {
                    store::delete(&*w, &att.id).await?;
                }
            }
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn set_flag(
        &self,
        ctx: &AuthContext,
        id: &str,
        bootable: Option<bool>,
        readonly: Option<bool>,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        if let Some(b) = bootable {
            self.authorize(ctx, "volume:update", &v.project_id)?;
            v.bootable = b;
        }
        if let Some(r) = readonly {
            self.authorize(ctx, "volume:update_readonly_flag", &v.project_id)?;
            v.readonly = r;
            // Cinder shows the flag in the volume's metadata ("True"/"False").
            v.metadata
                .insert("readonly".into(), if r { "True" } else { "False" }.into());
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(())
    }

    /// os-volume_upload_image: the image record is made now (as the caller), the data goes
    /// up in the background; the volume is `uploading` meanwhile.
    pub async fn upload_to_image(
        self: &Arc<Self>,
        ctx: &AuthContext,
        token: &str,
        id: &str,
        req: UploadRequest,
    ) -> Result<(Volume, Value)> {
        let v = self.load_volume(self.db.conn(), ctx, id).await?;
        self.authorize(ctx, "volume:copy_volume_to_image", &v.project_id)?;
        if req.visibility.as_deref() == Some("public") {
            self.authorize(
                ctx,
                "volume_extension:volume_actions:upload_public",
                &v.project_id,
            )?;
        }
        if v.status == status::IN_USE && !req.force {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume {id} status must be available, but current status is: in-use."
            )));
        }
        Action::Upload
            .check(&v.status)
            .map_err(VolumeError::BadRequest)?;
        let mut body = json!({
            "name": req.image_name,
            "disk_format": req.disk_format,
            "container_format": req.container_format,
            "protected": req.protected,
        });
        if let Some(vis) = &req.visibility {
            body["visibility"] = json!(vis);
        }
        // The image inherits what the volume was made from.
        if let Some(meta) = &v.image_metadata {
            for (k, val) in meta {
                if ![
                    "image_id",
                    "image_name",
                    "checksum",
                    "container_format",
                    "disk_format",
                    "size",
                    "min_disk",
                    "min_ram",
                ]
                .contains(&k.as_str())
                {
                    body[k] = json!(val);
                }
            }
        }
        let client = self.image_client()?;
        let image = client.create(token, &body).await?;
        let image_id = image["id"].as_str().unwrap_or_default().to_string();
        let prev = v.status.clone();
        let v = {
            let w = self.db.write().await?;
            let mut cur = self.load_volume(&*w, ctx, id).await?;
            if cur.status != prev {
                client.delete(token, &image_id).await;
                return Err(VolumeError::bad(format!(
                    "Invalid volume: Volume {id} status changed to {} meanwhile.",
                    cur.status
                )));
            }
            cur.status = status::UPLOADING.into();
            cur.updated_at = Some(now());
            self.save_volume(&*w, &cur).await?;
            w.commit().await?;
            cur
        };
        let svc = self.clone();
        let token = token.to_string();
        let vol = v.clone();
        let fmt = req.disk_format.clone();
        tokio::spawn(async move {
            let r = async {
                let b = svc.backend(&vol.backend)?;
                let tmp = b.scratch_dir().join(format!("upload-{image_id}"));
                let qfmt = if fmt == "vhd" { "vpc" } else { fmt.as_str() };
                let r = async {
                    b.export(&vol.id, &tmp, qfmt).await?;
                    client.upload(&token, &image_id, &tmp).await
                }
                .await;
                let _ = std::fs::remove_file(&tmp);
                r
            }
            .await;
            if let Err(e) = &r {
                tracing::error!(volume = %vol.id, image = %image_id, error = %e, "upload to image failed");
                client.delete(&token, &image_id).await;
            }
            let _ = svc
                .set_volume_status(&vol.id, |v| {
                    if v.status == status::UPLOADING {
                        v.status = prev.clone();
                    }
                })
                .await;
        });
        Ok((v, image))
    }
}

fn image_metadata_of(i: &Value) -> Metadata {
    let mut m = Metadata::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    m.insert("image_id".into(), s(&i["id"]));
    m.insert("image_name".into(), s(&i["name"]));
    for k in [
        "checksum",
        "container_format",
        "disk_format",
        "min_disk",
        "min_ram",
        "size",
    ] {
        if !i[k].is_null() {
            m.insert(k.into(), s(&i[k]));
        }
    }
    const CORE: &[&str] = &[
        "id",
        "name",
        "status",
        "visibility",
        "owner",
        "protected",
        "os_hidden",
        "created_at",
        "updated_at",
        "tags",
        "self",
        "file",
        "schema",
        "virtual_size",
        "os_hash_algo",
        "os_hash_value",
        "locations",
        "direct_url",
        "stores",
    ];
    if let Some(o) = i.as_object() {
        for (k, v) in o {
            if !CORE.contains(&k.as_str()) && !m.contains_key(k) && !k.starts_with("os_glance") {
                m.insert(k.clone(), s(v));
            }
        }
    }
    m
}

pub(crate) fn volume_matches(v: &Volume, p: &ListParams) -> bool {
    if let Some(n) = &p.name
        && v.name.as_deref() != Some(n.as_str())
    {
        return false;
    }
    if let Some(s) = &p.status
        && &v.status != s
    {
        return false;
    }
    if let Some(az) = &p.availability_zone
        && &v.availability_zone != az
    {
        return false;
    }
    if let Some(b) = p.bootable
        && v.bootable != b
    {
        return false;
    }
    if let Some(m) = &p.metadata
        && !m.iter().all(|(k, val)| v.metadata.get(k) == Some(val))
    {
        return false;
    }
    p.time_filters.iter().all(|f| f.matches(v))
}

fn sort_volumes(vols: &mut [Volume], keys: &[(String, bool)]) {
    let keys: Vec<(String, bool)> = if keys.is_empty() {
        vec![("created_at".into(), false), ("id".into(), false)]
    } else {
        keys.to_vec()
    };
    vols.sort_by(|a, b| {
        for (k, asc) in &keys {
            let o = match k.as_str() {
                "name" => a.name.cmp(&b.name),
                "size" => a.size.cmp(&b.size),
                "status" => a.status.cmp(&b.status),
                "created_at" => a.created_at.cmp(&b.created_at),
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "availability_zone" => a.availability_zone.cmp(&b.availability_zone),
                "bootable" => a.bootable.cmp(&b.bootable),
                _ => a.id.cmp(&b.id),
            };
            let o = if *asc { o } else { o.reverse() };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

/// Marker, offset and limit over a sorted list: the page and whether more follow.
pub(crate) fn page<T>(
    items: Vec<T>,
    marker: Option<&str>,
    offset: usize,
    limit: Option<usize>,
    max: usize,
    id: impl Fn(&T) -> &String,
) -> std::result::Result<(Vec<T>, bool), String> {
    let start = match marker {
        Some(m) => match items.iter().position(|x| id(x) == m) {
            Some(i) => i + 1,
            None => return Err(format!("marker {m} could not be found.")),
        },
        None => 0,
    };
    let rest: Vec<T> = items.into_iter().skip(start + offset).collect();
    // As Cinder: a full page asked for with a limit gets a next link, even when nothing
    // follows it (the client finds an empty page there).
    let more = match limit {
        Some(l) => l > 0 && rest.len() >= l.min(max),
        None => rest.len() > max,
    };
    let limit = limit.unwrap_or(max).min(max);
    Ok((rest.into_iter().take(limit).collect(), more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: &str, name: &str, status: &str) -> Volume {
        Volume {
            id: id.into(),
            project_id: "p".into(),
            user_id: "u".into(),
            name: Some(name.into()),
            description: None,
            size: 1,
            status: status.into(),
            availability_zone: "nova".into(),
            volume_type_id: "t".into(),
            volume_type_name: "__DEFAULT__".into(),
            bootable: false,
            readonly: false,
            metadata: [("k".to_string(), "v".to_string())].into(),
            image_metadata: None,
            snapshot_id: None,
            source_volid: None,
            backend: "file".into(),
            created_at: chrono::Utc::now(),
            updated_at: None,
            pending_extend: None,
        }
    }

    #[test]
    fn filters() {
        let v = vol("1", "a", "available");
        let mut p = ListParams::default();
        assert!(volume_matches(&v, &p));
        p.status = Some("null".into());
        assert!(!volume_matches(&v, &p));
        p.status = Some("available".into());
        p.metadata = Some([("k".to_string(), "v".to_string())].into());
        assert!(volume_matches(&v, &p));
        p.metadata = Some([("k".to_string(), "w".to_string())].into());
        assert!(!volume_matches(&v, &p));
        p.metadata = None;
        p.name = Some("b".into());
        assert!(!volume_matches(&v, &p));
        p.name = None;
        p.bootable = Some(true);
        assert!(!volume_matches(&v, &p));
        p.bootable = None;
        let past = TimeFilter::parse("created_at", "gt:2000-01-01T00:00:00Z").unwrap();
        p.time_filters = vec![past];
        assert!(volume_matches(&v, &p));
        p.time_filters = vec![TimeFilter::parse("created_at", "lt:2000-01-01T00:00:00").unwrap()];
        assert!(!volume_matches(&v, &p));
        // never updated: no updated_at filter matches
        p.time_filters = vec![TimeFilter::parse("updated_at", "gt:2000-01-01T00:00:00Z").unwrap()];
        assert!(!volume_matches(&v, &p));
        assert!(TimeFilter::parse("created_at", "after:2000-01-01T00:00:00Z").is_err());
        assert!(TimeFilter::parse("created_at", "gt:yesterday").is_err());
    }

    #[test]
    fn paging() {
        let ids: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let (p, more) = page(ids.clone(), None, 0, Some(2), 1000, |x| x).unwrap();
        assert_eq!(p, vec!["0", "1"]);
        assert!(more);
        let (p, more) = page(ids.clone(), Some("1"), 0, Some(2), 1000, |x| x).unwrap();
        assert_eq!(p, vec!["2", "3"]);
        assert!(more);
        let (p, more) = page(ids.clone(), None, 3, None, 1000, |x| x).unwrap();
        assert_eq!(p, vec!["3", "4"]);
        assert!(!more);
        let (p, more) = page(ids.clone(), None, 0, Some(0), 1000, |x| x).unwrap();
        assert!(p.is_empty() && !more);
        // a full last page still links to the (empty) next one, as Cinder
        let (p, more) = page(ids.clone(), Some("2"), 0, Some(2), 1000, |x| x).unwrap();
        assert_eq!(p, vec!["3", "4"]);
        assert!(more);
        let (p, more) = page(ids.clone(), Some("4"), 0, Some(2), 1000, |x| x).unwrap();
        assert!(p.is_empty() && !more);
        assert!(page(ids, Some("x"), 0, None, 1000, |x| x).is_err());
    }

    #[test]
    fn sorting() {
        let mut v = vec![vol("1", "b", "available"), vol("2", "a", "available")];
        sort_volumes(&mut v, &[("name".into(), true)]);
        assert_eq!(v[0].id, "2");
        sort_volumes(&mut v, &[("name".into(), false)]);
        assert_eq!(v[0].id, "1");
    }
}
