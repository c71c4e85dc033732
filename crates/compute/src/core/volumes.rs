//! A server's volumes as the API asks for them (Nova's `os-volume_attachments` controller and
//! `compute.API.attach_volume/detach_volume`, new-style attachments).
//!
//! Attach: the checks (lock, vm_state, task_state), the volume as the caller sees it
//! (`available`, not multiattach), a device name and the mapping recorded in one write, the
//! volume service's attachment (the volume is reserved) written into the mapping, then a cast
//! to the server's host, which connects, plugs and completes it. Detach is a cast; the host
//! unplugs first and only then deletes the attachment, so a guest that does not let go keeps
//! the volume attached and recorded.

use common::auth::AuthContext;
use serde_json::Value;

use super::ComputeService;
use super::servers::check_state;
use crate::error::{ComputeError, Result};
use crate::hooks::VolumeCall;
use crate::model::*;
use crate::rpc::Operation;

pub const POLICY_INDEX: &str = "os_compute_api:os-volumes-attachments:index";
pub const POLICY_SHOW: &str = "os_compute_api:os-volumes-attachments:show";
pub const POLICY_CREATE: &str = "os_compute_api:os-volumes-attachments:create";
pub const POLICY_UPDATE: &str = "os_compute_api:os-volumes-attachments:update";
pub const POLICY_SWAP: &str = "os_compute_api:os-volumes-attachments:swap";
pub const POLICY_DELETE: &str = "os_compute_api:os-volumes-attachments:delete";

/// The vm_states a volume may be attached or detached in (Nova's `check_instance_state` on
/// attach_volume/detach_volume, and SUSPENDED: the guest keeps its spec).
pub const VOLUME_VM_STATES: &[&str] = &[
    vm_state::ACTIVE,
    vm_state::PAUSED,
    vm_state::STOPPED,
    vm_state::RESIZED,
    vm_state::SUSPENDED,
    vm_state::SOFT_DELETED,
    vm_state::SHELVED,
    vm_state::SHELVED_OFFLOADED,
];
const NO_TASK: &[Option<&str>] = &[None];

/// What an attach asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttachRequest {
    pub volume_id: String,
    pub tag: Option<String>,
    pub delete_on_termination: bool,
}

/// Nova's "volume not attached" answer.
pub fn not_attached(uuid: &str, volume_id: &str) -> ComputeError {
    ComputeError::NotFound(format!(
        "Instance {uuid} is not attached to volume {volume_id}."
    ))
}

impl ComputeService {
    async fn forget_mapping(&self, uuid: &str, bdm_id: String) {
        let _ = self
            .update_instance(uuid, None, move |x| {
                x.volume_attachments.retain(|a| a.id != bdm_id);
                Ok(())
            })
            .await;
    }

    fn volume_checks(&self, ctx: &AuthContext, i: &Instance, action_name: &str) -> Result<()> {
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(&i.uuid));
        }
        check_state(i, action_name, VOLUME_VM_STATES, NO_TASK)
    }

    /// `GET /servers/{id}/os-volume_attachments`.
    pub async fn volume_attachments(
        &self,
        ctx: &AuthContext,
        uuid: &str,
    ) -> Result<(Instance, Vec<VolumeAttachment>)> {
        let i = self.instance_for(ctx, uuid, POLICY_INDEX).await?;
        let list = i.volume_attachments.clone();
        Ok((i, list))
    }

    /// `GET /servers/{id}/os-volume_attachments/{volume_id}`.
    pub async fn volume_attachment(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        volume_id: &str,
    ) -> Result<(Instance, VolumeAttachment)> {
        let i = self.instance_for(ctx, uuid, POLICY_SHOW).await?;
        let a = i
            .volume_attachments
            .iter()
            .find(|a| a.volume_id == volume_id)
            .cloned()
            .ok_or_else(|| ComputeError::NotFound(format!("volume_id not found: {volume_id}")))?;
        Ok((i, a))
    }

    /// `POST /servers/{id}/os-volume_attachments`: reserve and record, then let the host
    /// attach. The new mapping.
    pub async fn attach_volume(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        req: AttachRequest,
        user_token: &str,
        request_id: &str,
    ) -> Result<(Instance, VolumeAttachment)> {
        let i = self.instance_for(ctx, uuid, POLICY_CREATE).await?;
        self.volume_checks(ctx, &i, action::ATTACH_VOLUME)?;
        if i.host.is_none() && i.vm_state != vm_state::SHELVED_OFFLOADED {
            return Err(ComputeError::conflict(format!(
                "Instance {uuid} is not ready"
            )));
        }
        let vid = req.volume_id.clone();
        if i.volume_attachments.iter().any(|a| a.volume_id == vid) {
            return Err(ComputeError::bad(format!(
                "Invalid volume: volume {vid} already attached"
            )));
        }
        let call = VolumeCall {
            svc: self,
            project_id: &i.project_id,
            token: Some(user_token),
            request_id,
        };
        let volume =
            self.volume.get(&call, &vid).await?.ok_or_else(|| {
                ComputeError::NotFound(format!("Volume {vid} could not be found."))
            })?;
        crate::cinder::check_attachable(&volume)?;
        // The device and the mapping in one write (Nova's reserve_block_device_name).
        let bdm_id = uuid::Uuid::new_v4().to_string();
        let (b, r) = (bdm_id.clone(), req.clone());
        self.update_instance(uuid, Some(NO_TASK), move |x| {
            if x.volume_attachments
                .iter()
                .any(|a| a.volume_id == r.volume_id)
            {
                return Err(ComputeError::bad(format!(
                    "Invalid volume: volume {} already attached",
                    r.volume_id
                )));
            }
            let device = crate::cinder::next_device(x)?;
            x.volume_attachments.push(VolumeAttachment {
                id: b,
                volume_id: r.volume_id,
                device,
                tag: r.tag,
                delete_on_termination: r.delete_on_termination,
                attachment_id: None,
                connection_info: Value::Null,
                boot_index: None,
                state: "reserving".into(),
            });
            Ok(())
        })
        .await
        .map_err(|e| match e {
            ComputeError::Conflict(_) => {
                ComputeError::invalid_state(action::ATTACH_VOLUME, uuid, "task_state", "busy")
            }
            other => other,
        })?;
        let attachment_id = match self.volume.attachment_create(&call, &vid, uuid).await {
            Ok(a) => a,
            Err(e) => {
                self.forget_mapping(uuid, bdm_id).await;
                return Err(e);
            }
        };
        let (b, aid) = (bdm_id.clone(), attachment_id.clone());
        let recorded = self
            .update_instance(uuid, None, move |x| {
                if let Some(a) = x.volume_attachments.iter_mut().find(|a| a.id == b) {
                    a.attachment_id = Some(aid);
                    a.state = "attaching".into();
                }
                Ok(())
            })
            .await;
        let i = match recorded {
            Ok(i) => i,
            Err(e) => {
                let _ = self.volume.attachment_delete(&call, &attachment_id).await;
                return Err(e);
            }
        };
        self.record_action(ctx, &i, action::ATTACH_VOLUME, request_id)
            .await?;
        if i.vm_state == vm_state::SHELVED_OFFLOADED {
            // No host: the volume stays reserved for the server (no connector to complete
            // with; the volume service refuses os-complete without one).
            let b = bdm_id.clone();
            self.update_instance(uuid, None, move |x| {
                if let Some(a) = x.volume_attachments.iter_mut().find(|a| a.id == b) {
                    a.state = "attached".into();
                }
                Ok(())
            })
            .await?;
            self.action_finish(uuid, request_id).await?;
        } else if let Err(e) = self
            .cast_operation(
                &i,
                Operation::AttachVolume {
                    volume_id: vid.clone(),
                },
                request_id,
                user_token,
            )
            .await
        {
            let _ = self.volume.attachment_delete(&call, &attachment_id).await;
            self.forget_mapping(uuid, bdm_id).await;
            return Err(e);
        }
        let a = i
            .volume_attachments
            .iter()
            .find(|a| a.id == bdm_id)
            .cloned()
            .ok_or_else(|| ComputeError::Internal("the new mapping vanished".into()))?;
        Ok((i, a))
    }

    /// `PUT /servers/{id}/os-volume_attachments/{volume_id}` (2.85): `delete_on_termination`.
    /// A swap to another volume is refused.
    pub async fn update_volume_attachment(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        volume_id: &str,
        new_volume_id: &str,
        delete_on_termination: Option<bool>,
    ) -> Result<()> {
        if new_volume_id != volume_id {
            let i = self.instance_for(ctx, uuid, POLICY_SWAP).await?;
            let _ = i;
            return Err(ComputeError::bad(
                "Swapping a server's volume (volume migration) is not supported by this cloud.",
            ));
        }
        let i = self.instance_for(ctx, uuid, POLICY_UPDATE).await?;
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(&i.uuid));
        }
        check_state(&i, "update volume attachment", VOLUME_VM_STATES, NO_TASK)?;
        if !i
            .volume_attachments
            .iter()
            .any(|a| a.volume_id == volume_id)
        {
            return Err(not_attached(uuid, volume_id));
        }
        let Some(dot) = delete_on_termination else {
            return Ok(());
        };
        let v = volume_id.to_string();
        self.update_instance(uuid, None, move |x| {
            if let Some(a) = x.volume_attachments.iter_mut().find(|a| a.volume_id == v) {
                a.delete_on_termination = dot;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// `DELETE /servers/{id}/os-volume_attachments/{volume_id}`: the host detaches.
    pub async fn detach_volume(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        volume_id: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<()> {
        let i = self.instance_for(ctx, uuid, POLICY_DELETE).await?;
        self.volume_checks(ctx, &i, action::DETACH_VOLUME)?;
        let a = i
            .volume_attachments
            .iter()
            .find(|a| a.volume_id == volume_id)
            .cloned()
            .ok_or_else(|| not_attached(uuid, volume_id))?;
        if a.boot_index == Some(0) {
            return Err(ComputeError::bad("Cannot detach a root device volume"));
        }
        if a.state == "reserving" || a.state == "attaching" {
            return Err(ComputeError::bad(format!(
                "Invalid volume: volume {volume_id} is still being attached"
            )));
        }
        self.record_action(ctx, &i, action::DETACH_VOLUME, request_id)
            .await?;
        if i.vm_state == vm_state::SHELVED_OFFLOADED {
            let call = VolumeCall {
                svc: self,
                project_id: &i.project_id,
                token: Some(user_token),
                request_id,
            };
            if let Some(aid) = &a.attachment_id {
                self.volume.attachment_delete(&call, aid).await?;
            }
            let v = volume_id.to_string();
            self.update_instance(uuid, None, move |x| {
                x.volume_attachments.retain(|b| b.volume_id != v);
                Ok(())
            })
            .await?;
            return self.action_finish(uuid, request_id).await;
        }
        self.cast_operation(
            &i,
            Operation::DetachVolume {
                volume_id: volume_id.to_string(),
            },
            request_id,
            user_token,
        )
        .await
    }

    /// The volumes of an instance that is deleted (or whose build failed): each attachment
    /// deleted (the volume is available again), then each volume marked
    /// `delete_on_termination` deleted, each mapping forgotten once done. The guest is gone
    /// already. With the caller's token, or compute's own (None).
    pub async fn release_volumes(
        &self,
        i: &Instance,
        token: Option<&str>,
        request_id: &str,
    ) -> Result<()> {
        let call = VolumeCall {
            svc: self,
            project_id: &i.project_id,
            token,
            request_id,
        };
        let mut first_error = None;
        for a in &i.volume_attachments {
            let r: Result<()> = async {
                if let Some(aid) = &a.attachment_id {
                    self.volume.attachment_delete(&call, aid).await?;
                }
                if a.delete_on_termination {
                    self.volume.delete(&call, &a.volume_id).await?;
                }
                Ok(())
            }
            .await;
            match r {
                Ok(()) => {
                    let b = a.id.clone();
                    let _ = self
                        .update_instance(&i.uuid, None, move |x| {
                            x.volume_attachments.retain(|v| v.id != b);
                            Ok(())
                        })
                        .await;
                }
                Err(e) => {
                    tracing::warn!(instance = %i.uuid, volume = %a.volume_id, error = %e, "volume not released");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
