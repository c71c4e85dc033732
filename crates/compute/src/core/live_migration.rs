//! Live migration (admin): move a running server to another host while it runs. Nova's shape:
//! the API checks and records a `live-migration` action and a migration of that type, and
//! casts to the conductor; the conductor asks the scheduler for a host (never the source),
//! which moves the instance's source allocation to the migration and claims the destination
//! for the instance; the source's agent then has the destination prepare (ports wired ahead,
//! disks, a QEMU waiting), copies disks and memory, and has the destination take over. The
//! agent's side is in `manager::live_migration`.
//!
//! Cold migration (`migrate`, admin) has the same shape and machinery: the source stops the
//! guest and copies its disks the same way, the destination boots it from them, and the server
//! waits in VERIFY_RESIZE for `confirmResize` (the source's copy goes) or `revertResize` (it
//! runs on the source again).

use bus::{BusExt, Target};
use chrono::Utc;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{self, LiveMigrateInstance};
use crate::store;
use common::auth::AuthContext;

pub const MIGRATION_TYPE: &str = "live-migration";
/// Nova's type of a cold migration's record (a resize is `resize`).
pub const COLD_MIGRATION_TYPE: &str = "migration";
pub const EVENT_CONDUCTOR: &str = "conductor_live_migrate_instance";
pub const EVENT_CONDUCTOR_COLD: &str = "conductor_migrate_server";

/// What `POST /servers/{id}/action {"os-migrateLive": ...}` asks for.
#[derive(Debug, Clone, Default)]
pub struct LiveMigrateRequest {
    pub host: Option<String>,
    /// `false`: the caller says the disks are on shared storage (kumo has none); `true` or
    /// `auto` (None): the disks are copied.
    pub block_migration: Option<bool>,
}

/// What one kind of move (live or cold migration) checks and records at the API.
struct MoveKind {
    /// The action's name in errors (`os-migrateLive`, `migrate`).
    name: &'static str,
    policy: &'static str,
    host_policy: &'static str,
    vm_states: &'static [&'static str],
    task: &'static str,
    action: &'static str,
    migration_type: &'static str,
}

const LIVE: MoveKind = MoveKind {
    name: "os-migrateLive",
    policy: "os_compute_api:os-migrate-server:migrate_live",
    host_policy: "os_compute_api:os-migrate-server:migrate_live:host",
    vm_states: &[vm_state::ACTIVE, vm_state::PAUSED],
    task: task_state::MIGRATING,
    action: action::LIVE_MIGRATION,
    migration_type: MIGRATION_TYPE,
};

const COLD: MoveKind = MoveKind {
    name: "migrate",
    policy: "os_compute_api:os-migrate-server:migrate",
    host_policy: "os_compute_api:os-migrate-server:migrate:host",
    vm_states: &[vm_state::ACTIVE, vm_state::STOPPED],
    task: task_state::RESIZE_PREP,
    action: action::MIGRATE,
    migration_type: COLD_MIGRATION_TYPE,
};

impl ComputeService {
    /// The checks of a move and its records: the task, the action, the migration
    /// (`accepted`). `shared_storage_asked`: live migration's `block_migration: false`.
    async fn begin_move(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        kind: &MoveKind,
        host: Option<&str>,
        shared_storage_asked: bool,
        request_id: &str,
    ) -> Result<Migration> {
        let i = self.instance_for(ctx, uuid, kind.policy).await?;
        if host.is_some() {
            let target = serde_json::json!({"project_id": i.project_id, "user_id": i.user_id});
            self.authorize(ctx, kind.host_policy, &target)?;
        }
        super::servers::check_state(&i, kind.name, kind.vm_states, &[None])?;
        let source = i
            .host
            .clone()
            .ok_or_else(|| ComputeError::conflict(format!("Instance {uuid} is not on a host.")))?;
        if let Some(h) = host {
            if h == source {
                return Err(ComputeError::bad(format!(
                    "Unable to migrate instance ({uuid}) to current host ({source})."
                )));
            }
            if self.compute_service_up(h).await?.is_none() {
                return Err(ComputeError::bad(format!(
                    "Compute host {h} could not be found."
                )));
            }
        }
        if self.compute_service_up(&source).await? != Some(true) {
            return Err(ComputeError::bad(format!(
                "Compute service of {source} is unavailable at this time."
            )));
        }
        let boots_from_volume = i.volume_attachments.iter().any(|a| a.boot_index == Some(0));
        if shared_storage_asked && !boots_from_volume {
            return Err(ComputeError::bad(format!(
                "{source} is not on shared storage: Shared storage live-migration requires either shared storage or boot-from-volume."
            )));
        }
        if !i.volume_attachments.is_empty() {
            // Their connections would have to be made on the destination first.
            return Err(ComputeError::bad(format!(
                "Migration pre-check error: kumo does not migrate servers with volumes attached yet (instance {uuid}); detach them first."
            )));
        }
        let i = self
            .update_instance(uuid, Some(&[None]), |x| {
                super::servers::check_state(x, kind.name, kind.vm_states, &[None])?;
                x.task_state = Some(kind.task.into());
                Ok(())
            })
            .await
            .map_err(|e| match e {
                ComputeError::Conflict(_) => {
                    ComputeError::invalid_state(kind.name, uuid, "task_state", kind.task)
                }
                other => other,
            })?;
        self.record_action(ctx, &i, kind.action, request_id).await?;
        self.insert_migration(&i, kind.migration_type, &source, host)
            .await
    }

    /// Hand a move to the conductor; a message that cannot be sent ends it.
    async fn cast_move<M: bus::Message>(
        &self,
        m: &Migration,
        msg: &M,
        request_id: &str,
    ) -> Result<()> {
        if let Err(e) = self
            .bus()?
            .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), request_id, msg)
            .await
        {
            self.migration_failed(m, request_id, &e.to_string()).await?;
            return Err(e.into());
        }
        tracing::info!(instance = %m.instance_uuid, source = ?m.source_compute, target = ?m.dest_compute, migration = m.id, kind = %m.migration_type, "migration accepted");
        Ok(())
    }

    /// Check and start a live migration; the rest runs in the conductor and the agents.
    pub async fn live_migrate_server(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        req: &LiveMigrateRequest,
        request_id: &str,
    ) -> Result<Migration> {
        let host = req.host.as_deref();
        let shared = req.block_migration == Some(false);
        let m = self
            .begin_move(ctx, uuid, &LIVE, host, shared, request_id)
            .await?;
        let msg = LiveMigrateInstance {
            instance_uuid: uuid.to_string(),
            migration_id: m.id,
            requested_host: req.host.clone(),
            user_token: String::new(),
        };
        self.cast_move(&m, &msg, request_id).await?;
        Ok(m)
    }

    /// Check and start a cold migration (`migrate`); it ends in VERIFY_RESIZE on the new host.
    pub async fn cold_migrate_server(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        host: Option<&str>,
        request_id: &str,
    ) -> Result<Migration> {
        let m = self
            .begin_move(ctx, uuid, &COLD, host, false, request_id)
            .await?;
        let msg = rpc::MigrateInstance {
            instance_uuid: uuid.to_string(),
            migration_id: m.id,
            requested_host: host.map(str::to_string),
        };
        self.cast_move(&m, &msg, request_id).await?;
        Ok(m)
    }

    /// A migration that did not start (or was rolled back): the server is where it was,
    /// without a task; the migration is `error`, the action's event says why.
    pub async fn migration_failed(&self, m: &Migration, request_id: &str, why: &str) -> Result<()> {
        tracing::warn!(instance = %m.instance_uuid, migration = m.id, kind = %m.migration_type, reason = %why, "migration failed");
        self.migration_status(m.id, "error", None).await?;
        self.update_instance(&m.instance_uuid, None, |x| {
            if matches!(
                x.task_state.as_deref(),
                Some(
                    task_state::MIGRATING | task_state::RESIZE_PREP | task_state::RESIZE_MIGRATING
                )
            ) {
                x.task_state = None;
            }
            Ok(())
        })
        .await?;
        self.action_finish(&m.instance_uuid, request_id).await
    }

    /// A migration record of `kind` from the instance's host, `accepted`.
    pub(crate) async fn insert_migration(
        &self,
        i: &Instance,
        kind: &str,
        source: &str,
        requested: Option<&str>,
    ) -> Result<Migration> {
        let now = Utc::now();
        let txn = self.db.write().await?;
        let m = store::migrations::insert(
            &*txn,
            &Migration {
                id: 0,
                uuid: uuid::Uuid::new_v4().to_string(),
                instance_uuid: i.uuid.clone(),
                migration_type: kind.into(),
                status: "accepted".into(),
                source_compute: Some(source.to_string()),
                source_node: i.node.clone(),
                dest_compute: requested.map(str::to_string),
                dest_node: None,
                project_id: i.project_id.clone(),
                user_id: i.user_id.clone(),
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
        txn.commit().await?;
        Ok(m)
    }

    /// The scheduler's host for a migration (never the source), which holds the source's
    /// allocation under the migration and claims the destination; Err: why there is none.
    pub(crate) async fn select_for_migration(
        &self,
        m: &Migration,
        source: &str,
        requested_host: Option<&str>,
        request_id: &str,
    ) -> Result<std::result::Result<rpc::Destination, String>> {
        let select = rpc::SelectDestination {
            instance_uuid: m.instance_uuid.clone(),
            exclude_hosts: vec![source.to_string()],
            requested_host: requested_host.map(str::to_string),
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
        Ok(r.map_err(|e| match &e {
            bus::BusError::Remote { kind, message } if kind == "NoValidHost" => {
                format!("No valid host was found. {message}")
            }
            other => format!("Migration failed: {other}"),
        }))
    }

    pub async fn migration(&self, id: i32) -> Result<Migration> {
        store::migrations::get(self.db.conn(), id)
            .await?
            .ok_or_else(|| ComputeError::NotFound(format!("Migration {id} could not be found.")))
    }

    /// The conductor's part of a live migration: a destination, then the source's agent.
    pub async fn live_migrate(&self, msg: &LiveMigrateInstance, request_id: &str) -> Result<()> {
        self.schedule_move(
            msg.migration_id,
            msg.requested_host.as_deref(),
            EVENT_CONDUCTOR,
            request_id,
            |m, d| rpc::LiveMigration {
                instance_uuid: m.instance_uuid.clone(),
                migration_id: m.id,
                dest_host: d.host.clone(),
                dest_node: d.node.clone(),
            },
        )
        .await
    }

    /// The conductor's part of a cold migration, the same shape.
    pub async fn cold_migrate(&self, msg: &rpc::MigrateInstance, request_id: &str) -> Result<()> {
        self.schedule_move(
            msg.migration_id,
            msg.requested_host.as_deref(),
            EVENT_CONDUCTOR_COLD,
            request_id,
            |m, d| rpc::ColdMigration {
                instance_uuid: m.instance_uuid.clone(),
                migration_id: m.id,
                dest_host: d.host.clone(),
                dest_node: d.node.clone(),
            },
        )
        .await
    }

    /// A destination from the scheduler (which holds the source's allocation under the
    /// migration and claims the destination), then `cast` to the source's agent.
    async fn schedule_move<M: bus::Message>(
        &self,
        migration_id: i32,
        requested_host: Option<&str>,
        event: &str,
        request_id: &str,
        cast: impl FnOnce(&Migration, &rpc::Destination) -> M,
    ) -> Result<()> {
        let m = self.migration(migration_id).await?;
        let uuid = &m.instance_uuid;
        let ev = self.event_start(uuid, request_id, event, None).await?;
        let i = self
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let source = i.host.clone().unwrap_or_default();
        let dest = match self
            .select_for_migration(&m, &source, requested_host, request_id)
            .await?
        {
            Ok(d) => d,
            Err(message) => {
                self.event_finish(ev, Some(&message)).await?;
                return self.migration_failed(&m, request_id, &message).await;
            }
        };
        self.event_finish(ev, None).await?;
        self.migration_status(m.id, "queued", Some((&dest.host, &dest.node)))
            .await?;
        let msg = cast(&m, &dest);
        if let Err(e) = self
            .bus()?
            .cast_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &source),
                request_id,
                &msg,
            )
            .await
        {
            let _ = self
                .clients()?
                .revert_to_source(uuid, &m.uuid, &i.project_id, &i.user_id, request_id)
                .await;
            return self
                .migration_failed(&m, request_id, &format!("{source} did not take it: {e}"))
                .await;
        }
        tracing::info!(instance = %uuid, %source, dest = %dest.host, migration = m.id, kind = %m.migration_type, "migration scheduled");
        Ok(())
    }
}
