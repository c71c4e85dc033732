//! Attachments (the 3.27+ API) and the legacy attach actions Nova used before it
//! (os-reserve, os-initialize_connection, os-attach, os-begin_detaching, os-detach, ...).
//! A volume's status follows its attachments: reserved -> attaching -> in-use, and back to
//! available when the last one goes.

use common::auth::AuthContext;
use serde_json::Value;

use super::*;
use crate::model::{Action, status, status_from_attachments};

#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub volume_id: String,
    pub instance_uuid: Option<String>,
    pub connector: Option<Value>,
    pub mode: Option<String>,
}

impl VolumeService {
    async fn load_attachment<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Attachment> {
        let a: Attachment = match store::get(c, KIND_ATTACHMENT, id).await? {
            Some(b) => from_body(&b)?,
            None => return Err(VolumeError::attachment_not_found(id)),
        };
        if !self.sees(ctx, &a.project_id) {
            return Err(VolumeError::attachment_not_found(id));
        }
        Ok(a)
    }

    async fn save_attachment<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        a: &Attachment,
    ) -> Result<()> {
        store::update(c, &a.id, to_body(a)?).await?;
        Ok(())
    }

    /// Apply a connector and the connection info made for it ([`VolumeService::connection_for`]):
    /// host, mountpoint; `attaching`.
    fn connect(a: &mut Attachment, connector: Value, info: Value) {
        a.host_name = connector["host"].as_str().map(str::to_string);
        if let Some(m) = connector["mountpoint"].as_str() {
            a.mountpoint = Some(m.to_string());
        }
        a.connection_info = Some(info);
        a.connector = Some(connector);
        a.attach_status = "attaching".into();
        a.updated_at = Some(now());
    }

    /// After a connect: its export is stopped if the connect failed (or connected locally)
    /// and no other attachment needs it.
    async fn after_connect<T>(&self, volume_id: &str, r: Result<T>) -> Result<T> {
        self.release_export(volume_id).await;
        r
    }

    pub async fn attachment_create(
        &self,
        ctx: &AuthContext,
        req: AttachRequest,
    ) -> Result<(Attachment, Volume)> {
        let volume_id = req.volume_id.clone();
        let r = self.attachment_create_in(ctx, req).await;
        self.after_connect(&volume_id, r).await
    }

    async fn attachment_create_in(
        &self,
        ctx: &AuthContext,
        req: AttachRequest,
    ) -> Result<(Attachment, Volume)> {
        let w = self.db.write().await?;
        let mut v = self
            .load_volume(&*w, ctx, &req.volume_id)
            .await
            .map_err(|e| match e {
                VolumeError::NotFound(_) => VolumeError::volume_not_found(&req.volume_id),
                o => o,
            })?;
        self.authorize(ctx, "volume:attachment_create", &v.project_id)?;
        let mode = req.mode.clone().unwrap_or_else(|| "rw".into());
        if mode != "rw" && mode != "ro" {
            return Err(VolumeError::invalid_input(format!(
                "Invalid attach mode {mode}: must be rw or ro."
            )));
        }
        if mode == "rw" && v.readonly {
            return Err(VolumeError::invalid_input(
                "Invalid attaching mode 'rw' for volume: the volume is read-only.",
            ));
        }
        let atts = self.attachments_of(&*w, &v.id).await?;
        if Action::AttachmentCreate.check(&v.status).is_err()
            || (!atts.is_empty() && atts.iter().any(|a| a.instance_uuid != req.instance_uuid))
        {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume {} status must be available or downloading (current status: {}).",
                v.id, v.status
            )));
        }
        let t = now();
        let mut a = Attachment {
            id: uuid::Uuid::new_v4().to_string(),
            volume_id: v.id.clone(),
            project_id: v.project_id.clone(),
            instance_uuid: req.instance_uuid.clone(),
            attach_status: "reserved".into(),
            attach_mode: mode,
            connector: None,
            connection_info: None,
            host_name: None,
            mountpoint: None,
            attached_at: None,
            detached_at: None,
            created_at: t,
            updated_at: None,
        };
        if let Some(c) = req.connector.filter(|c| c.is_object()) {
            let info = self.connection_for(&v, &a.attach_mode, &c).await?;
            Self::connect(&mut a, c, info);
        }
        store::insert(
            &*w,
            store::NewRow {
                kind: KIND_ATTACHMENT,
                id: &a.id,
                project_id: &a.project_id,
                parent_id: Some(&v.id),
                created_at: &t.to_rfc3339(),
                body: to_body(&a)?,
            },
        )
        .await?;
        let mut all = atts;
        all.push(a.clone());
        if v.status != status::IN_USE {
            v.status = status_from_attachments(&all).into();
        }
        v.updated_at = Some(t);
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok((a, v))
    }

    pub async fn attachment_get(&self, ctx: &AuthContext, id: &str) -> Result<Attachment> {
        let a = self.load_attachment(self.db.conn(), ctx, id).await?;
        self.authorize(ctx, "volume:attachment_get", &a.project_id)?;
        Ok(a)
    }

    pub async fn attachment_list(
        &self,
        ctx: &AuthContext,
        all_tenants: bool,
        volume_id: Option<&str>,
        instance_id: Option<&str>,
    ) -> Result<Vec<Attachment>> {
        let project = Self::caller_project(ctx)?;
        self.authorize(ctx, "volume:attachment_get", &project)?;
        let everyone = all_tenants && self.is_admin(ctx);
        let mut atts: Vec<Attachment> = self.all(self.db.conn(), KIND_ATTACHMENT).await?;
        atts.retain(|a| {
            (everyone || a.project_id == project)
                && volume_id.is_none_or(|v| a.volume_id == v)
                && instance_id.is_none_or(|i| a.instance_uuid.as_deref() == Some(i))
        });
        Ok(atts)
    }

    pub async fn attachment_update(
        &self,
        ctx: &AuthContext,
        id: &str,
        connector: Value,
    ) -> Result<Attachment> {
        if !connector.is_object() {
            return Err(VolumeError::invalid_input("connector must be an object."));
        }
        let w = self.db.write().await?;
        let a = self.load_attachment(&*w, ctx, id).await?;
        let volume_id = a.volume_id.clone();
        // The transaction ends inside (committed or dropped) before the export is looked at.
        let r = self.update_loaded(w, ctx, a, connector).await;
        self.after_connect(&volume_id, r).await
    }

    async fn update_loaded(
        &self,
        w: common::db::WriteTxn<'_>,
        ctx: &AuthContext,
        mut a: Attachment,
        connector: Value,
    ) -> Result<Attachment> {
        self.authorize(ctx, "volume:attachment_update", &a.project_id)?;
        let mut v = self.load_volume(&*w, ctx, &a.volume_id).await?;
        if v.status == status::MAINTENANCE || v.status == status::ERROR {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume {} status must not be {}.",
                v.id, v.status
            )));
        }
        let info = self.connection_for(&v, &a.attach_mode, &connector).await?;
        Self::connect(&mut a, connector, info);
        self.save_attachment(&*w, &a).await?;
        if v.status != status::IN_USE {
            v.status = status::ATTACHING.into();
            v.updated_at = Some(now());
            self.save_volume(&*w, &v).await?;
        }
        w.commit().await?;
        Ok(a)
    }

    pub async fn attachment_complete(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        let w = self.db.write().await?;
        let mut a = self.load_attachment(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:attachment_complete", &a.project_id)?;
        let mut v = self.load_volume(&*w, ctx, &a.volume_id).await?;
        if a.connection_info.is_none() {
            return Err(VolumeError::bad(format!(
                "Invalid volume: attachment {id} has no connector yet; update it with a connector first."
            )));
        }
        let t = now();
        a.attach_status = "attached".into();
        a.attached_at = Some(t);
        a.updated_at = Some(t);
        self.save_attachment(&*w, &a).await?;
        v.status = status::IN_USE.into();
        v.updated_at = Some(t);
        self.save_volume(&*w, &v).await?;
        w.commit().await?;
        Ok(())
    }

    /// Delete an attachment; the remaining ones of its volume.
    pub async fn attachment_delete(&self, ctx: &AuthContext, id: &str) -> Result<Vec<Attachment>> {
        let w = self.db.write().await?;
        let a = self.load_attachment(&*w, ctx, id).await?;
        self.authorize(ctx, "volume:attachment_delete", &a.project_id)?;
        store::delete(&*w, id).await?;
        let rest = self.attachments_of(&*w, &a.volume_id).await?;
        if let Some(b) = store::get(&*w, KIND_VOLUME, &a.volume_id).await? {
            let mut v: Volume = from_body(&b)?;
            if [
                status::RESERVED,
                status::ATTACHING,
                status::IN_USE,
                status::DETACHING,
            ]
            .contains(&v.status.as_str())
            {
                v.status = status_from_attachments(&rest).into();
            }
            v.updated_at = Some(now());
            self.save_volume(&*w, &v).await?;
        }
        w.commit().await?;
        self.release_export(&a.volume_id).await;
        if rest.is_empty() {
            self.finish_pending_extend(&a.volume_id).await;
        }
        Ok(rest)
    }

    /// A volume extended while a guest held its file: the guest's QEMU grew the disk it had
    /// open, or could not. Once no guest holds it, the file gets the volume's size for sure
    /// (growing a file to the size it has is harmless).
    pub(crate) async fn finish_pending_extend(&self, volume_id: &str) {
        let r: Result<()> = async {
            let v: Volume = match store::get(self.db.conn(), KIND_VOLUME, volume_id).await? {
                Some(b) => from_body(&b)?,
                None => return Ok(()),
            };
            let Some(size) = v.pending_extend else {
                return Ok(());
            };
            self.backend(&v.backend)?.extend(&v.id, size).await?;
            let w = self.db.write().await?;
            if let Some(b) = store::get(&*w, KIND_VOLUME, volume_id).await? {
                let mut v: Volume = from_body(&b)?;
                v.pending_extend = None;
                self.save_volume(&*w, &v).await?;
            }
            w.commit().await?;
            tracing::info!(volume = %volume_id, size_gb = size, "volume file grown after its detach");
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(volume = %volume_id, error = %e, "pending extend not finished (retried at the next detach)");
        }
    }

    // ------------------------------------------------------------ legacy actions

    async fn legacy<F>(&self, ctx: &AuthContext, id: &str, policy: &str, f: F) -> Result<Value>
    where
        F: FnOnce(&Self, &mut Volume, &mut Vec<Attachment>) -> Result<Value>,
    {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(ctx, policy, &v.project_id)?;
        let before = self.attachments_of(&*w, id).await?;
        let mut atts = before.clone();
        let out = f(self, &mut v, &mut atts)?;
        self.legacy_save(w, &mut v, &before, &atts).await?;
        Ok(out)
    }

    /// Write what a legacy action changed: the attachments removed, changed and added, and
    /// the volume; commit.
    async fn legacy_save(
        &self,
        w: common::db::WriteTxn<'_>,
        v: &mut Volume,
        before: &[Attachment],
        atts: &[Attachment],
    ) -> Result<()> {
        for a in before {
            if !atts.iter().any(|x| x.id == a.id) {
                store::delete(&*w, &a.id).await?;
            }
        }
        for a in atts {
            match before.iter().find(|x| x.id == a.id) {
                Some(old) if old == a => {}
                Some(_) => self.save_attachment(&*w, a).await?,
                None => {
                    store::insert(
                        &*w,
                        store::NewRow {
                            kind: KIND_ATTACHMENT,
                            id: &a.id,
                            project_id: &a.project_id,
                            parent_id: Some(&a.volume_id),
                            created_at: &a.created_at.to_rfc3339(),
                            body: to_body(a)?,
                        },
                    )
                    .await?
                }
            }
        }
        v.updated_at = Some(now());
        self.save_volume(&*w, v).await?;
        w.commit().await?;
        Ok(())
    }

    fn new_attachment(v: &Volume, st: &str) -> Attachment {
        Attachment {
            id: uuid::Uuid::new_v4().to_string(),
            volume_id: v.id.clone(),
            project_id: v.project_id.clone(),
            instance_uuid: None,
            attach_status: st.into(),
            attach_mode: "rw".into(),
            connector: None,
            connection_info: None,
            host_name: None,
            mountpoint: None,
            attached_at: None,
            detached_at: None,
            created_at: now(),
            updated_at: None,
        }
    }

    pub async fn os_reserve(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:attach",
            |_, v, atts| {
                Action::Reserve
                    .check(&v.status)
                    .map_err(VolumeError::BadRequest)?;
                atts.push(Self::new_attachment(v, "reserved"));
                if v.status != status::IN_USE {
                    v.status = status::RESERVED.into();
                }
                Ok(Value::Null)
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn os_unreserve(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:attach",
            |_, v, atts| {
                if v.status != status::RESERVED
                    && v.status != status::ATTACHING
                    && v.status != status::IN_USE
                {
                    return Err(VolumeError::BadRequest(
                        Action::Unreserve.check(&v.status).err().unwrap_or_default(),
                    ));
                }
                atts.retain(|a| a.attach_status == "attached");
                v.status = status_from_attachments(atts).into();
                Ok(Value::Null)
            },
        )
        .await?;
        self.release_export(id).await;
        Ok(())
    }

    pub async fn os_initialize_connection(
        &self,
        ctx: &AuthContext,
        id: &str,
        connector: Value,
    ) -> Result<Value> {
        if !connector.is_object() {
            return Err(VolumeError::invalid_input("Must specify 'connector'"));
        }
        let r = self.initialize_connection_in(ctx, id, connector).await;
        self.after_connect(id, r).await
    }

    async fn initialize_connection_in(
        &self,
        ctx: &AuthContext,
        id: &str,
        connector: Value,
    ) -> Result<Value> {
        let w = self.db.write().await?;
        let mut v = self.load_volume(&*w, ctx, id).await?;
        self.authorize(ctx, "volume_extension:volume_actions:attach", &v.project_id)?;
        if ![
            status::RESERVED,
            status::ATTACHING,
            status::IN_USE,
            status::AVAILABLE,
            status::DETACHING,
        ]
        .contains(&v.status.as_str())
        {
            return Err(VolumeError::bad(format!(
                "Invalid volume: Volume {} status must be reserved or in-use (current status: {}).",
                v.id, v.status
            )));
        }
        let before = self.attachments_of(&*w, id).await?;
        let mut atts = before.clone();
        let idx = match atts.iter().position(|a| a.attach_status != "attached") {
            Some(i) => i,
            None => {
                atts.push(Self::new_attachment(&v, "reserved"));
                atts.len() - 1
            }
        };
        let a = &mut atts[idx];
        let info = self.connection_for(&v, &a.attach_mode, &connector).await?;
        Self::connect(a, connector, info.clone());
        if v.status != status::IN_USE {
            v.status = status::ATTACHING.into();
        }
        self.legacy_save(w, &mut v, &before, &atts).await?;
        Ok(info)
    }

    pub async fn os_attach(
        &self,
        ctx: &AuthContext,
        id: &str,
        instance_uuid: Option<String>,
        host_name: Option<String>,
        mountpoint: Option<String>,
        mode: Option<String>,
    ) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:attach",
            |_, v, atts| {
                Action::Attach
                    .check(&v.status)
                    .map_err(VolumeError::BadRequest)?;
                let mode = mode.unwrap_or_else(|| "rw".into());
                if mode == "rw" && v.readonly {
                    return Err(VolumeError::invalid_input(
                        "Invalid attaching mode 'rw' for volume: the volume is read-only.",
                    ));
                }
                let idx = match atts.iter().position(|a| a.attach_status != "attached") {
                    Some(i) => i,
                    None => {
                        atts.push(Self::new_attachment(v, "attaching"));
                        atts.len() - 1
                    }
                };
                let t = now();
                let a = &mut atts[idx];
                a.instance_uuid = instance_uuid;
                a.host_name = host_name.or(a.host_name.take());
                a.mountpoint = mountpoint;
                a.attach_mode = mode;
                a.attach_status = "attached".into();
                a.attached_at = Some(t);
                a.updated_at = Some(t);
                v.status = status::IN_USE.into();
                Ok(Value::Null)
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn os_begin_detaching(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:detach",
            |_, v, _| {
                Action::BeginDetaching
                    .check(&v.status)
                    .map_err(VolumeError::BadRequest)?;
                v.status = status::DETACHING.into();
                Ok(Value::Null)
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn os_roll_detaching(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:detach",
            |_, v, atts| {
                if v.status == status::DETACHING {
                    v.status = status_from_attachments(atts).into();
                }
                Ok(Value::Null)
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn os_terminate_connection(&self, ctx: &AuthContext, id: &str) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:detach",
            |_, _, _| Ok(Value::Null),
        )
        .await
        .map(|_| ())
    }

    pub async fn os_detach(
        &self,
        ctx: &AuthContext,
        id: &str,
        attachment_id: Option<String>,
    ) -> Result<()> {
        self.legacy(
            ctx,
            id,
            "volume_extension:volume_actions:detach",
            |_, v, atts| {
                if atts.is_empty() || Action::Detach.check(&v.status).is_err() {
                    return Err(VolumeError::bad(format!(
                        "Invalid volume: Volume {} is not attached (status: {}).",
                        v.id, v.status
                    )));
                }
                match &attachment_id {
                    Some(aid) => {
                        if !atts.iter().any(|a| &a.id == aid) {
                            return Err(VolumeError::attachment_not_found(aid));
                        }
                        atts.retain(|a| &a.id != aid);
                    }
                    None => atts.clear(),
                }
                v.status = status_from_attachments(atts).into();
                Ok(Value::Null)
            },
        )
        .await?;
        self.release_export(id).await;
        self.finish_pending_extend(id).await;
        Ok(())
    }
}
