//! Evacuate (admin): rebuild a server of a failed compute host on another host. Nova's
//! shape: the API checks that the source host's compute service is down (or forced down),
//! records an `evacuate` action and a migration of type `evacuation`, and asks the conductor;
//! the conductor asks the scheduler for a host (never the source), which moves the
//! allocation there; the destination's agent rebuilds the guest; when the source host's agent
//! starts again it destroys its copy and completes the migration.

use bus::{BusExt, Target};
use chrono::Utc;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{self, EvacuateInstance};
use crate::store;
use common::auth::AuthContext;

pub const MIGRATION_TYPE: &str = "evacuation";
pub const EVENT_CONDUCTOR: &str = "conductor_rebuild_server";

/// What `POST /servers/{id}/action {"evacuate": ...}` asks for.
#[derive(Debug, Clone, Default)]
pub struct EvacuateRequest {
    pub host: Option<String>,
}

impl ComputeService {
    /// Check and start an evacuation; the rest runs in the conductor and the destination.
    pub async fn evacuate_server(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        req: &EvacuateRequest,
        request_id: &str,
        user_token: &str,
    ) -> Result<Migration> {
        let i = self
            .instance_for(ctx, uuid, "os_compute_api:os-evacuate")
            .await?;
        const NAME: &str = "evacuate";
        let vm_states = [vm_state::ACTIVE, vm_state::STOPPED, vm_state::ERROR];
        super::servers::check_state(&i, NAME, &vm_states, &[None])?;
        let source = i
            .host
            .clone()
            .ok_or_else(|| ComputeError::conflict(format!("Instance {uuid} is not on a host.")))?;
        if let Some(h) = &req.host {
            if *h == source {
                return Err(ComputeError::bad("The target host can't be the same one."));
            }
            if self.compute_service_up(h).await?.is_none() {
                return Err(ComputeError::NotFound(format!(
                    "Compute host {h} could not be found."
                )));
            }
        }
        // Nova's check: a host whose compute service still beats may still run the guest.
        if self.compute_service_up(&source).await? == Some(true) {
            return Err(ComputeError::conflict(format!(
                "Compute service of {source} is still in use."
            )));
        }
        if !i.volume_attachments.is_empty() {
            // The volume connections would have to move too; not done yet.
            return Err(ComputeError::conflict(format!(
                "Cannot 'evacuate' instance {uuid}: kumo does not evacuate servers with volumes yet."
            )));
        }
        let i = self
            .update_instance(uuid, Some(&[None]), |x| {
                super::servers::check_state(x, NAME, &vm_states, &[None])?;
                x.task_state = Some(task_state::REBUILDING.into());
                Ok(())
            })
            .await
            .map_err(|e| match e {
                ComputeError::Conflict(_) => {
                    ComputeError::invalid_state(NAME, uuid, "task_state", "rebuilding")
                }
                other => other,
            })?;
        self.record_action(ctx, &i, NAME, request_id).await?;
        let now = Utc::now();
        let migration = {
            let txn = self.db.write().await?;
            let m = store::migrations::insert(
                &*txn,
                &Migration {
                    id: 0,
                    uuid: uuid::Uuid::new_v4().to_string(),
                    instance_uuid: uuid.to_string(),
                    migration_type: MIGRATION_TYPE.into(),
                    status: "accepted".into(),
                    source_compute: Some(source.clone()),
                    source_node: i.node.clone(),
                    dest_compute: req.host.clone(),
                    dest_node: None,
                    project_id: i.project_id.clone(),
                    user_id: i.user_id.clone(),
                    created_at: now,
                    updated_at: now,
                },
            )
            .await?;
            txn.commit().await?;
            m
        };
        let msg = EvacuateInstance {
            instance_uuid: uuid.to_string(),
            migration_id: migration.id,
            source_host: source.clone(),
            requested_host: req.host.clone(),
            user_token: user_token.to_string(),
        };
        self.bus()?
            .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), request_id, &msg)
            .await?;
        tracing::info!(instance = %uuid, source = %source, target = ?req.host, migration = migration.id, "evacuation accepted");
        Ok(migration)
    }

    /// Every migration record, newest first.
    pub async fn migrations(&self) -> Result<Vec<Migration>> {
        store::migrations::list(self.db.conn()).await
    }

    /// Set a migration's status.
    pub async fn migration_status(
        &self,
        id: i32,
        status: &str,
        dest: Option<(&str, &str)>,
    ) -> Result<()> {
        let txn = self.db.write().await?;
        store::migrations::update(&*txn, id, status, dest).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The conductor's part: a destination from the scheduler (which moves the host and the
    /// allocation), then the rebuild cast to it. No host: the server goes to ERROR and the
    /// migration to `error`, as Nova's.
    pub async fn evacuate(&self, msg: &EvacuateInstance, request_id: &str) -> Result<()> {
        let uuid = &msg.instance_uuid;
        let ev = self
            .event_start(uuid, request_id, EVENT_CONDUCTOR, None)
            .await?;
        let select = rpc::SelectDestination {
            instance_uuid: uuid.clone(),
            exclude_hosts: vec![msg.source_host.clone()],
            requested_host: msg.requested_host.clone(),
            move_allocation: true,
            migration_uuid: None,
        };
        let r = self
            .bus()?
            .call_typed(
                &Target::topic(rpc::SCHEDULER_TOPIC),
                request_id,
                &select,
                bus::DEFAULT_CALL_TIMEOUT,
            )
            .await;
        let dest = match r {
            Ok(d) => d,
            Err(e) => {
                let message = match &e {
                    bus::BusError::Remote { kind, message } if kind == "NoValidHost" => {
                        format!("No valid host was found. {message}")
                    }
                    other => format!("Evacuation failed: {other}"),
                };
                self.event_finish(ev, Some(&message)).await?;
                self.migration_status(msg.migration_id, "error", None)
                    .await?;
                self.set_error(uuid, 500, &message, "evacuate: scheduling")
                    .await?;
                return self.action_finish(uuid, request_id).await;
            }
        };
        self.event_finish(ev, None).await?;
        self.migration_status(
            msg.migration_id,
            "pre-migrating",
            Some((&dest.host, &dest.node)),
        )
        .await?;
        let i = self
            .get_instance(uuid)
            .await?
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        self.cast_operation(
            &i,
            rpc::Operation::Evacuate {
                migration_id: msg.migration_id,
            },
            request_id,
            &msg.user_token,
        )
        .await
    }
}
