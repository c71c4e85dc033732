//! Snapshots: independent copies of a volume's data at one time.

use common::auth::AuthContext;
use std::sync::Arc;

use super::volumes::page;
use super::*;
use crate::model::{Action, Metadata};

#[derive(Debug, Clone, Default)]
pub struct SnapshotListParams {
    pub all_tenants: bool,
    pub name: Option<String>,
    pub status: Option<String>,
    pub volume_id: Option<String>,
    pub sort: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub offset: usize,
}

impl VolumeService {
    pub async fn create_snapshot(
        self: &Arc<Self>,
        ctx: &AuthContext,
        volume_id: &str,
        name: Option<String>,
        description: Option<String>,
        metadata: Metadata,
        force: bool,
    ) -> Result<Snapshot> {
        let w = self.db.write().await?;
        let v = self.load_volume(&*w, ctx, volume_id).await?;
        self.authorize(ctx, "volume:create_snapshot", &v.project_id)?;
        let action = if force {
            Action::SnapshotForce
        } else {
            Action::Snapshot
        };
        if action.check(&v.status).is_err() {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume {volume_id} status must be available, but current status is: {}.",
                v.status
            )));
        }
        self.check_quota(&*w, &v.project_id, &v.volume_type_name, 0, v.size, 1)
            .await?;
        let t = now();
        let s = Snapshot {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: v.project_id.clone(),
            user_id: ctx.user_id.clone(),
            volume_id: v.id.clone(),
            name,
            description,
            size: v.size,
            status: "creating".into(),
            metadata,
            backend: v.backend.clone(),
            volume_type_id: v.volume_type_id.clone(),
            created_at: t,
            updated_at: None,
        };
        store::insert(
            &*w,
            store::NewRow {
                kind: KIND_SNAPSHOT,
                id: &s.id,
                project_id: &s.project_id,
                parent_id: Some(&s.volume_id),
                created_at: &t.to_rfc3339(),
                body: to_body(&s)?,
            },
        )
        .await?;
        w.commit().await?;
        let svc = self.clone();
        let snap = s.clone();
        tokio::spawn(async move {
            let r = match svc.backend(&snap.backend) {
                Ok(b) => b
                    .create_snapshot(&snap.id, &snap.volume_id)
                    .await
                    .map_err(VolumeError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = &r {
                tracing::error!(snapshot = %snap.id, error = %e, "snapshot failed");
            }
            let res = svc
                .update_snapshot_with(&snap.id, |s| {
                    if s.status == "creating" {
                        s.status = if r.is_ok() { "available" } else { "error" }.into();
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "could not record the snapshot's status");
            }
        });
        Ok(s)
    }

    async fn update_snapshot_with(&self, id: &str, f: impl FnOnce(&mut Snapshot)) -> Result<()> {
        let w = self.db.write().await?;
        let Some(b) = store::get(&*w, KIND_SNAPSHOT, id).await? else {
            return Ok(());
        };
        let mut s: Snapshot = from_body(&b)?;
        f(&mut s);
        s.updated_at = Some(now());
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn get_snapshot(&self, ctx: &AuthContext, id: &str) -> Result<Snapshot> {
        let s = self.load_snapshot(self.db.conn(), ctx, id).await?;
        self.authorize(ctx, "volume:get_snapshot", &s.project_id)?;
        Ok(s)
    }

    pub async fn list_snapshots(
        &self,
        ctx: &AuthContext,
        p: &SnapshotListParams,
    ) -> Result<(Vec<Snapshot>, bool)> {
        let project = Self::caller_project(ctx)?;
        self.authorize(ctx, "volume:get_all_snapshots", &project)?;
        let everyone = p.all_tenants && self.allowed(ctx, "volume:get_all_tenants", &project);
        let mut snaps: Vec<Snapshot> = self.all(self.db.conn(), KIND_SNAPSHOT).await?;
        snaps.retain(|s| {
            (everyone || s.project_id == project)
                && p.name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n))
                && p.status.as_ref().is_none_or(|st| &s.status == st)
                && p.volume_id.as_ref().is_none_or(|v| &s.volume_id == v)
        });
        let keys = if p.sort.is_empty() {
            vec![("created_at".to_string(), false), ("id".to_string(), false)]
        } else {
            p.sort.clone()
        };
        snaps.sort_by(|a, b| {
            for (k, asc) in &keys {
                let o = match k.as_str() {
                    "name" => a.name.cmp(&b.name),
                    "size" => a.size.cmp(&b.size),
                    "status" => a.status.cmp(&b.status),
                    "created_at" => a.created_at.cmp(&b.created_at),
                    _ => a.id.cmp(&b.id),
                };
                let o = if *asc { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        page(
            snaps,
            p.marker.as_deref(),
            p.offset,
            p.limit,
            self.cfg.max_limit,
            |s| &s.id,
        )
        .map_err(|m| VolumeError::bad(format!("Invalid marker: {m}")))
    }

    pub async fn update_snapshot(
        &self,
        ctx: &AuthContext,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
    ) -> Result<Snapshot> {
        let w = self.db.write().await?;
        let mut s = self.load_snapshot(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:update_snapshot", &s.project_id)?;
        if let Some(n) = name {
            s.name = n;
        }
        if let Some(d) = description {
            s.description = d;
        }
        s.updated_at = Some(now());
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        Ok(s)
    }

    pub async fn set_snapshot_metadata(
        &self,
        ctx: &AuthContext,
        id: &str,
        meta: Metadata,
        replace: bool,
    ) -> Result<Metadata> {
        let w = self.db.write().await?;
        let mut s = self.load_snapshot(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:snapshot_metadata", &s.project_id)?;
        if replace {
            s.metadata = meta;
        } else {
            s.metadata.extend(meta);
        }
        s.updated_at = Some(now());
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        Ok(s.metadata)
    }

    pub async fn delete_snapshot_metadata(
        &self,
        ctx: &AuthContext,
        id: &str,
        key: &str,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut s = self.load_snapshot(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:snapshot_metadata", &s.project_id)?;
        if s.metadata.remove(key).is_none() {
            return Err(VolumeError::NotFound(
                "Metadata item was not found".to_string(),
            ));
        }
        s.updated_at = Some(now());
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        Ok(())
    }

    pub async fn delete_snapshot(
        self: &Arc<Self>,
        ctx: &AuthContext,
        id: &str,
        force: bool,
    ) -> Result<()> {
        let w = self.db.write().await?;
        let mut s = self.load_snapshot(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:delete_snapshot", &s.project_id)?;
        if !force && s.status != "available" && s.status != "error" {
            return Err(VolumeError::bad(format!(
                "Invalid snapshot: Snapshot status must be available or error and must not be part of a group, but current status is: {}.",
                s.status
            )));
        }
        s.status = "deleting".into();
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        let svc = self.clone();
        tokio::spawn(async move {
            let r = async {
                svc.backend(&s.backend)?.delete_snapshot(&s.id).await?;
                let w = svc.db.write().await?;
                store::delete(&*w, &s.id).await?;
                w.commit().await?;
                Ok::<(), VolumeError>(())
            }
            .await;
            if let Err(e) = r {
                tracing::error!(snapshot = %s.id, error = %e, "snapshot deletion failed");
                let _ = svc
                    .update_snapshot_with(&s.id, |s| s.status = "error_deleting".into())
                    .await;
            }
        });
        Ok(())
    }

    pub async fn reset_snapshot_status(&self, ctx: &AuthContext, id: &str, st: &str) -> Result<()> {
        let w = self.db.write().await?;
        let mut s = self.load_snapshot(&*w, ctx, id).await?;
        self.authorize(
            ctx,
            "volume_extension:volume_admin_actions:reset_status",
            &s.project_id,
        )?;
        if ![
            "available",
            "error",
            "creating",
            "deleting",
            "error_deleting",
        ]
        .contains(&st)
        {
            return Err(VolumeError::invalid_input(format!(
                "Must specify a valid status (got {st})."
            )));
        }
        s.status = st.to_string();
        store::update(&*w, id, to_body(&s)?).await?;
        w.commit().await?;
        Ok(())
    }
}
