//! Live migration (admin): move a running server to another host while it runs. Nova's shape:
//! the API checks and records a `live-migration` action and a migration of that type, and
//! casts to the conductor; the conductor asks the scheduler for a host (never the source),
//! which moves the instance's source allocation to the migration and claims the destination
//! for the instance; the source's agent then has the destination prepare (ports wired ahead,
//! disks, a QEMU waiting), copies disks and memory, and has the destination take over. The
//! agent's side is in `manager::live_migration`.

use bus::{BusExt, Target};
use chrono::Utc;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{self, LiveMigrateInstance};
use crate::store;
use common::auth::AuthContext;

pub const MIGRATION_TYPE: &str = "live-migration";
pub const EVENT_CONDUCTOR: &str = "conductor_live_migrate_instance";

/// What `POST /servers/{id}/action {"os-migrateLive": ...}` asks for.
#[derive(Debug, Clone, Default)]
pub struct LiveMigrateRequest {
    pub host: Option<String>,
    /// `false`: the caller says the disks are on shared storage (kumo has none); `true` or
    /// `auto` (None): the disks are copied.
    pub block_migration: Option<bool>,
}

impl ComputeService {
    /// Check and start a live migration; the rest runs in the conductor and the agents.
    pub async fn live_migrate_server(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        req: &LiveMigrateRequest,
        request_id: &str,
    ) -> Result<Migration> {
        let i = self
            .instance_for(ctx, uuid, "os_compute_api:os-migrate-server:migrate_live")
            .await?;
        if req.host.is_some() {
            let target = serde_json::json!({"project_id": i.project_id, "user_id": i.user_id});
            self.authorize(
                ctx,
                "os_compute_api:os-migrate-server:migrate_live:host",
                &target,
            )?;
        }
        const NAME: &str = "os-migrateLive";
        let vm_states = [vm_state::ACTIVE, vm_state::PAUSED];
        super::servers::check_state(&i, NAME, &vm_states, &[None])?;
        let source = i
            .host
            .clone()
            .ok_or_else(|| ComputeError::conflict(format!("Instance {uuid} is not on a host.")))?;
        if let Some(h) = &req.host {
            if *h == source {
                return Err(ComputeError::bad(format!(
                    "Unable to migrate instance ({uuid}) to current host ({source})."
                )));
            }
            if store::find_service(self.db.conn(), h, "nova-compute")
                .await?
                .is_none()
            {
                return Err(ComputeError::bad(format!(
                    "Compute host {h} could not be found."
                )));
            }
        }
        let up = store::find_service(self.db.conn(), &source, "nova-compute")
            .await?
            .is_some_and(|s| self.is_up(&s));
        if !up {
            return Err(ComputeError::bad(format!(
                "Compute service of {source} is unavailable at this time."
            )));
        }
        let boots_from_volume = i.volume_attachments.iter().any(|a| a.boot_index == Some(0));
        if req.block_migration == Some(false) && !boots_from_volume {
            return Err(ComputeError::bad(format!(
                "{source} is not on shared storage: Shared storage live-migration requires either shared storage or boot-from-volume."
            )));
        }
        if !i.volume_attachments.is_empty() {
            // Their connections would have to be made on the destination first.
            return Err(ComputeError::bad(format!(
                "Migration pre-check error: kumo does not live-migrate servers with volumes attached yet (instance {uuid}); detach them first."
            )));
        }
        let i = self
            .update_instance(uuid, Some(&[None]), |x| {
                super::servers::check_state(x, NAME, &vm_states, &[None])?;
                x.task_state = Some(task_state::MIGRATING.into());
                Ok(())
            })
            .await
            .map_err(|e| match e {
                ComputeError::Conflict(_) => {
                    ComputeError::invalid_state(NAME, uuid, "task_state", "migrating")
                }
                other => other,
            })?;
        self.record_action(ctx, &i, action::LIVE_MIGRATION, request_id)
            .await?;
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
        let msg = LiveMigrateInstance {
            instance_uuid: uuid.to_string(),
            migration_id: migration.id,
            requested_host: req.host.clone(),
            user_token: String::new(),
        };
        if let Err(e) = self
            .bus()?
            .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), request_id, &msg)
            .await
        {
            self.live_migration_failed(&migration, request_id, &e.to_string())
                .await?;
            return Err(e.into());
        }
        tracing::info!(instance = %uuid, source = %source, target = ?req.host, migration = migration.id, "live migration accepted");
        Ok(migration)
    }

    /// A live migration that did not start (or was rolled back): the server is where it was,
    /// without a task; the migration is `error`, the action's event says why.
    pub async fn live_migration_failed(
        &self,
        m: &Migration,
        request_id: &str,
        why: &str,
    ) -> Result<()> {
        tracing::warn!(instance = %m.instance_uuid, migration = m.id, reason = %why, "live migration failed");
        self.migration_status(m.id, "error", None).await?;
        self.update_instance(&m.instance_uuid, None, |x| {
            if x.task_state.as_deref() == Some(task_state::MIGRATING) {
                x.task_state = None;
            }
            Ok(())
        })
        .await?;
        self.action_finish(&m.instance_uuid, request_id).await
    }

    pub async fn migration(&self, id: i32) -> Result<Migration> {
        store::migrations::get(self.db.conn(), id)
            .await?
            .ok_or_else(|| ComputeError::NotFound(format!("Migration {id} could not be found.")))
    }

    /// The conductor's part: a destination from the scheduler (which holds the source's
    /// allocation under the migration and claims the destination), then the cast to the
    /// source's agent.
    pub async fn live_migrate(&self, msg: &LiveMigrateInstance, request_id: &str) -> Result<()> {
        let uuid = &msg.instance_uuid;
        let m = self.migration(msg.migration_id).await?;
        let ev = self
            .event_start(uuid, request_id, EVENT_CONDUCTOR, None)
            .await?;
        let i = self
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let source = i.host.clone().unwrap_or_default();
        let select = rpc::SelectDestination {
            instance_uuid: uuid.clone(),
            exclude_hosts: vec![source.clone()],
            requested_host: msg.requested_host.clone(),
            move_allocation: false,
            migration_uuid: Some(m.uuid.clone()),
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
                    other => format!("Live migration failed: {other}"),
                };
                self.event_finish(ev, Some(&message)).await?;
                return self.live_migration_failed(&m, request_id, &message).await;
            }
        };
        self.event_finish(ev, None).await?;
        self.migration_status(m.id, "queued", Some((&dest.host, &dest.node)))
            .await?;
        let cast = rpc::LiveMigration {
            instance_uuid: uuid.clone(),
            migration_id: m.id,
            dest_host: dest.host.clone(),
            dest_node: dest.node.clone(),
        };
        if let Err(e) = self
            .bus()?
            .cast_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &source),
                request_id,
                &cast,
            )
            .await
        {
            let _ = self
                .clients()?
                .revert_to_source(uuid, &m.uuid, &i.project_id, &i.user_id, request_id)
                .await;
            return self
                .live_migration_failed(&m, request_id, &format!("{source} did not take it: {e}"))
                .await;
        }
        tracing::info!(instance = %uuid, %source, dest = %dest.host, migration = m.id, "live migration scheduled");
        Ok(())
    }
}
