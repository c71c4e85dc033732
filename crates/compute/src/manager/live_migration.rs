//! The compute agents' part of a live migration (Nova's names): the source drives it
//! (`live_migration`); the destination gets ready (`pre_live_migration`: the ports wired ahead,
//! the disks made, QEMU waiting for the stream), then takes over
//! (`post_live_migration_at_destination`: the guest runs, the ports are bound there, the
//! instance is its) or removes what it made (`rollback_live_migration_at_destination`).

use bus::{BusExt, Target};
use hypervisor::IncomingMigration;
use std::time::Duration;

use super::*;
use crate::rpc::{
    LiveMigration, PostLiveMigrationAtDestination, PreLiveMigration,
    RollbackLiveMigrationAtDestination,
};

pub const EVENT_LIVE_MIGRATION: &str = "compute_live_migration";
pub const EVENT_PRE: &str = "compute_pre_live_migration";
pub const EVENT_POST: &str = "compute_post_live_migration_at_destination";
/// How long the destination may take to get ready (an image to fetch, taps to wait for) and
/// to take over.
const DESTINATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a live migration failed, and whether the guest still runs on the source.
enum Failure {
    /// Nothing moved: the guest runs on the source; the rest is rolled back.
    Before(ComputeError),
    /// The memory moved but the destination did not take over: the instance needs an admin.
    After(ComputeError),
}

impl ComputeAgent {
    /// Source: the whole migration, and its end whatever happens.
    pub async fn live_migration(&self, msg: &LiveMigration, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let m = svc.migration(msg.migration_id).await?;
        let ev = svc
            .event_start(uuid, rid, EVENT_LIVE_MIGRATION, Some(&self.host))
            .await?;
        let r = self.migrate_out(msg, &m, rid).await;
        let why = match &r {
            Ok(()) => None,
            Err(Failure::Before(e) | Failure::After(e)) => Some(e.to_string()),
        };
        svc.event_finish(ev, why.as_deref()).await?;
        match r {
            Ok(()) => svc.action_finish(uuid, rid).await,
            Err(Failure::Before(e)) => {
                if let Ok(i) = svc_instance(svc, uuid).await {
                    if let Err(x) = svc.network.abort_migration(svc, &i, rid).await {
                        tracing::warn!(instance = %uuid, error = %x, "ports still marked as migrating");
                    }
                    svc.clients()?
                        .revert_to_source(uuid, &m.uuid, &i.project_id, &i.user_id, rid)
                        .await?;
                }
                svc.live_migration_failed(&m, rid, &e.to_string()).await
            }
            Err(Failure::After(e)) => {
                svc.migration_status(m.id, "error", None).await?;
                svc.set_error(
                    uuid,
                    500,
                    &format!(
                        "Live migration to {} failed at the switch-over: {e}",
                        msg.dest_host
                    ),
                    "live migration: post_live_migration_at_destination",
                )
                .await?;
                svc.action_finish(uuid, rid).await
            }
        }
    }

    async fn migrate_out(
        &self,
        msg: &LiveMigration,
        m: &Migration,
        rid: &str,
    ) -> std::result::Result<(), Failure> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let before = Failure::Before;
        let i = svc_instance(svc, uuid).await.map_err(before)?;
        svc.migration_status(m.id, "preparing", None)
            .await
            .map_err(before)?;
        let dest = Target::server(rpc::COMPUTE_TOPIC, &msg.dest_host);
        let pre = PreLiveMigration {
            instance_uuid: uuid.clone(),
            migration_id: m.id,
        };
        let bus = svc.bus().map_err(before)?;
        let to: IncomingMigration = bus
            .call_typed(&dest, rid, &pre, DESTINATION_TIMEOUT)
            .await
            .map_err(|e| {
                before(ComputeError::Internal(format!(
                    "{} could not get ready: {e}",
                    msg.dest_host
                )))
            })?;
        svc.migration_status(m.id, "running", None)
            .await
            .map_err(before)?;
        // `[qemu] live_migration_completion_timeout` per GiB of memory and local disk.
        let f = &i.flavor;
        let gib = (f.memory_mb.max(0) as u64).div_ceil(1024)
            + f.root_gb.max(0) as u64
            + f.ephemeral_gb.max(0) as u64;
        let timeout = Duration::from_secs(svc.cfg.live_migration_completion_timeout * gib.max(1));
        if let Err(e) = self.driver.live_migrate(uuid, &to, timeout).await {
            let rollback = RollbackLiveMigrationAtDestination {
                instance_uuid: uuid.clone(),
            };
            if let Err(x) = bus
                .call_typed(&dest, rid, &rollback, DESTINATION_TIMEOUT)
                .await
            {
                tracing::warn!(instance = %uuid, dest = %msg.dest_host, error = %x, "the destination did not remove its copy");
            }
            return Err(before(e.into()));
        }
        // The guest is stopped here and whole there: the destination runs it and takes the
        // instance.
        let post = PostLiveMigrationAtDestination {
            instance_uuid: uuid.clone(),
            migration_id: m.id,
        };
        bus.call_typed(&dest, rid, &post, DESTINATION_TIMEOUT)
            .await
            .map_err(|e| Failure::After(ComputeError::Internal(e.to_string())))?;
        if let Err(e) = self.driver.destroy(uuid).await {
            tracing::warn!(instance = %uuid, error = %e, "the migrated guest's copy here was not removed");
        }
        let after = Failure::After;
        svc.clients()
            .map_err(after)?
            .release(&m.uuid, rid)
            .await
            .map_err(after)?;
        svc.migration_status(m.id, "completed", None)
            .await
            .map_err(after)?;
        tracing::info!(instance = %uuid, source = %self.host, dest = %msg.dest_host, migration = m.id, "live migration completed");
        Ok(())
    }

    /// Destination: the ports wired here ahead, the guest's disks made, QEMU waiting.
    pub async fn pre_live_migration(
        &self,
        msg: &PreLiveMigration,
        rid: &str,
    ) -> Result<IncomingMigration> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let ev = svc
            .event_start(uuid, rid, EVENT_PRE, Some(&self.host))
            .await?;
        let r = async {
            let i = svc_instance(svc, uuid).await?;
            let network_info = svc
                .network
                .prepare_migration(svc, &i, &self.host, rid)
                .await?;
            let mut spec = self.spec(&i);
            spec.network_info = network_info;
            let to = self
                .driver
                .prepare_incoming(&spec, &svc.cfg.live_migration_inbound_addr)
                .await;
            if to.is_err() {
                let _ = svc.network.abort_migration(svc, &i, rid).await;
            }
            Ok::<_, ComputeError>(to?)
        }
        .await;
        svc.event_finish(ev, r.as_ref().err().map(|e| e.to_string()).as_deref())
            .await?;
        r
    }

    /// Destination: the guest runs here (unless it was paused), its ports are bound here (the
    /// agent wired them ahead, so nothing waits for them), and the instance is this host's.
    pub async fn post_live_migration_at_destination(
        &self,
        msg: &PostLiveMigrationAtDestination,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let ev = svc
            .event_start(uuid, rid, EVENT_POST, Some(&self.host))
            .await?;
        let r = async {
            let i = svc_instance(svc, uuid).await?;
            let m = svc.migration(msg.migration_id).await?;
            let run = i.vm_state == vm_state::ACTIVE;
            self.driver.finish_incoming(uuid, run).await?;
            let host = self.host.clone();
            let node = m.dest_node.clone();
            let zone = svc.host_zone(&host).await.ok();
            let i = svc
                .update_instance(uuid, None, move |x| {
                    x.host = Some(host);
                    x.node = node;
                    if zone.is_some() {
                        x.host_availability_zone = zone;
                    }
                    Ok(())
                })
                .await?;
            let network_info = if i.network_info.as_array().is_some_and(|v| !v.is_empty()) {
                svc.network.bind_on_host(svc, &i, rid).await?.network_info
            } else {
                i.network_info.clone()
            };
            let power = if run {
                PowerState::Running
            } else {
                PowerState::Paused
            };
            svc.update_instance(uuid, None, move |x| {
                x.network_info = network_info;
                x.task_state = None;
                x.power_state = power.code();
                Ok(())
            })
            .await?;
            Ok::<_, ComputeError>(())
        }
        .await;
        svc.event_finish(ev, r.as_ref().err().map(|e| e.to_string()).as_deref())
            .await?;
        r
    }

    /// Destination: the migration failed; the waiting guest and its disks go.
    pub async fn rollback_live_migration_at_destination(
        &self,
        msg: &RollbackLiveMigrationAtDestination,
    ) -> Result<()> {
        let i = svc_instance(&self.svc, &msg.instance_uuid).await;
        if i.is_ok_and(|i| i.host.as_deref() == Some(self.host.as_str())) {
            // Never this host's own guest.
            return Ok(());
        }
        self.driver.destroy(&msg.instance_uuid).await?;
        tracing::info!(instance = %msg.instance_uuid, host = %self.host, "incoming guest of a failed live migration removed");
        Ok(())
    }
}
