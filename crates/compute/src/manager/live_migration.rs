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
    ColdMigration, ConfirmMigrationAtSource, FinishColdMigration, LiveMigration,
    PostLiveMigrationAtDestination, PreLiveMigration, RevertMigrationAtSource,
    RollbackLiveMigrationAtDestination,
};

pub const EVENT_LIVE_MIGRATION: &str = "compute_live_migration";
pub const EVENT_PRE: &str = "compute_pre_live_migration";
pub const EVENT_POST: &str = "compute_post_live_migration_at_destination";
pub const EVENT_RESIZE: &str = "compute_resize_instance";
pub const EVENT_FINISH: &str = "compute_finish_resize";
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
        self.end_move(&m, &msg.dest_host, ev, r, rid).await
    }

    /// The end of a move on its source: its event finished, then the action, or what a
    /// failure leaves (a cold migration's guest runs again here if it ran before).
    async fn end_move(
        &self,
        m: &Migration,
        dest: &str,
        ev: Option<crate::store::EventRef>,
        r: std::result::Result<(), Failure>,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let uuid = &m.instance_uuid;
        let why = match &r {
            Ok(()) => None,
            Err(Failure::Before(e) | Failure::After(e)) => Some(e.to_string()),
        };
        svc.event_finish(ev, why.as_deref()).await?;
        let Err(f) = r else {
            return svc.action_finish(uuid, rid).await;
        };
        if m.migration_type == crate::core::live_migration::COLD_MIGRATION_TYPE
            && matches!(f, Failure::Before(_))
            && svc_instance(svc, uuid)
                .await
                .is_ok_and(|i| i.vm_state == vm_state::ACTIVE)
            && let Err(e) = self.driver.power_on(uuid).await
        {
            tracing::warn!(instance = %uuid, error = %e, "guest not started again after a failed migration");
        }
        self.moved_nothing_or_error(m, dest, f, rid).await
    }

    /// The end of a failed move: before the switch-over everything goes back (the ports lose
    /// their mark, the server its destination claim); after it the server needs an admin.
    async fn moved_nothing_or_error(
        &self,
        m: &Migration,
        dest: &str,
        f: Failure,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let uuid = &m.instance_uuid;
        match f {
            Failure::Before(e) => {
                if let Ok(i) = svc_instance(svc, uuid).await {
                    if let Err(x) = svc.network.abort_migration(svc, &i, rid).await {
                        tracing::warn!(instance = %uuid, error = %x, "ports still marked as migrating");
                    }
                    svc.clients()?
                        .revert_to_source(uuid, &m.uuid, &i.project_id, &i.user_id, rid)
                        .await?;
                }
                svc.migration_failed(m, rid, &e.to_string()).await
            }
            Failure::After(e) => {
                svc.migration_status(m.id, "error", None).await?;
                svc.set_error(
                    uuid,
                    500,
                    &format!("Migration to {dest} failed at the switch-over: {e}"),
                    "migration: the destination did not take over",
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
        self.copy_to_destination(&i, m, &msg.dest_host, true, rid)
            .await?;
        let dest = Target::server(rpc::COMPUTE_TOPIC, &msg.dest_host);
        let bus = svc.bus().map_err(Failure::After)?;
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

    /// Source of a cold migration: the guest stops, its disks go to the destination (which
    /// boots it from them); the copy here stays, stopped, until confirm or revert.
    pub async fn cold_migration(&self, msg: &ColdMigration, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let m = svc.migration(msg.migration_id).await?;
        let ev = svc
            .event_start(uuid, rid, EVENT_RESIZE, Some(&self.host))
            .await?;
        let r = self.cold_migrate_out(msg, &m, rid).await;
        self.end_move(&m, &msg.dest_host, ev, r, rid).await
    }

    async fn cold_migrate_out(
        &self,
        msg: &ColdMigration,
        m: &Migration,
        rid: &str,
    ) -> std::result::Result<(), Failure> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let before = Failure::Before;
        let i = svc
            .update_instance(uuid, None, |x| {
                x.task_state = Some(task_state::RESIZE_MIGRATING.into());
                Ok(())
            })
            .await
            .map_err(before)?;
        let run = i.vm_state == vm_state::ACTIVE;
        svc.migration_status(m.id, "migrating", None)
            .await
            .map_err(before)?;
        self.driver
            .power_off(uuid, svc.cfg.shutdown_timeout)
            .await
            .map_err(|e| before(e.into()))?;
        self.copy_to_destination(&i, m, &msg.dest_host, false, rid)
            .await?;
        let dest = Target::server(rpc::COMPUTE_TOPIC, &msg.dest_host);
        let bus = svc.bus().map_err(Failure::After)?;
        svc.migration_status(m.id, "post-migrating", None)
            .await
            .map_err(Failure::After)?;
        let finish = FinishColdMigration {
            instance_uuid: uuid.clone(),
            migration_id: m.id,
            run,
        };
        bus.call_typed(&dest, rid, &finish, DESTINATION_TIMEOUT)
            .await
            .map_err(|e| Failure::After(ComputeError::Internal(e.to_string())))?;
        svc.migration_status(m.id, "finished", None)
            .await
            .map_err(Failure::After)?;
        tracing::info!(instance = %uuid, source = %self.host, dest = %msg.dest_host, migration = m.id, "cold migration finished: waiting for confirm or revert");
        Ok(())
    }

    /// Have the destination get ready, then copy the guest there (`live`: while it runs;
    /// else its disks, stopped); a failed copy has the destination remove what it made.
    async fn copy_to_destination(
        &self,
        i: &Instance,
        m: &Migration,
        dest_host: &str,
        live: bool,
        rid: &str,
    ) -> std::result::Result<(), Failure> {
        let svc = &self.svc;
        let uuid = &i.uuid;
        let before = Failure::Before;
        let dest = Target::server(rpc::COMPUTE_TOPIC, dest_host);
        let bus = svc.bus().map_err(before)?;
        let pre = PreLiveMigration {
            instance_uuid: uuid.clone(),
            migration_id: m.id,
        };
        let to: IncomingMigration = bus
            .call_typed(&dest, rid, &pre, DESTINATION_TIMEOUT)
            .await
            .map_err(|e| {
                before(ComputeError::Internal(format!(
                    "{dest_host} could not get ready: {e}"
                )))
            })?;
        let timeout = self.copy_timeout(i);
        let copied = if live {
            svc.migration_status(m.id, "running", None)
                .await
                .map_err(before)?;
            self.driver.live_migrate(uuid, &to, timeout).await
        } else {
            self.driver.cold_migrate(uuid, &to, timeout).await
        };
        if let Err(e) = copied {
            let rollback = RollbackLiveMigrationAtDestination {
                instance_uuid: uuid.clone(),
            };
            if let Err(x) = bus
                .call_typed(&dest, rid, &rollback, DESTINATION_TIMEOUT)
                .await
            {
                tracing::warn!(instance = %uuid, dest = %dest_host, error = %x, "the destination did not remove its copy");
            }
            return Err(before(e.into()));
        }
        Ok(())
    }

    /// `[qemu] live_migration_completion_timeout` per GiB of memory and local disk.
    fn copy_timeout(&self, i: &Instance) -> Duration {
        let f = &i.flavor;
        let gib = (f.memory_mb.max(0) as u64).div_ceil(1024)
            + f.root_gb.max(0) as u64
            + f.ephemeral_gb.max(0) as u64;
        Duration::from_secs(self.svc.cfg.live_migration_completion_timeout * gib.max(1))
    }

    /// Destination of a cold migration: the guest boots here from the disks that arrived (or
    /// stays stopped), its ports are bound here, and the instance is this host's, RESIZED.
    pub async fn finish_cold_migration(&self, msg: &FinishColdMigration, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let ev = svc
            .event_start(uuid, rid, EVENT_FINISH, Some(&self.host))
            .await?;
        let r = async {
            self.driver.finish_cold_incoming(uuid, msg.run).await?;
            let m = svc.migration(msg.migration_id).await?;
            let network_info = self.take_instance(uuid, m.dest_node.clone(), rid).await?;
            let power = if msg.run {
                PowerState::Running
            } else {
                PowerState::Shutdown
            };
            svc.update_instance(uuid, None, move |x| {
                x.network_info = network_info;
                x.vm_state = vm_state::RESIZED.into();
                x.task_state = None;
                x.power_state = power.code();
                x.old_flavor = Some(x.flavor.clone());
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

    /// The instance becomes this host's (host, node, zone) and its ports are bound here;
    /// the network info they give.
    async fn take_instance(&self, uuid: &str, node: Option<String>, rid: &str) -> Result<Value> {
        let svc = &self.svc;
        let host = self.host.clone();
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
        if i.network_info.as_array().is_some_and(|v| !v.is_empty()) {
            Ok(svc.network.bind_on_host(svc, &i, rid).await?.network_info)
        } else {
            Ok(i.network_info)
        }
    }

    /// The cold migration this instance waits on (VERIFY_RESIZE after `migrate`), if any.
    pub(super) async fn pending_cold_migration(&self, i: &Instance) -> Result<Option<Migration>> {
        Ok(self.svc.migrations().await?.into_iter().find(|m| {
            m.instance_uuid == i.uuid
                && m.migration_type == crate::core::live_migration::COLD_MIGRATION_TYPE
                && m.status == "finished"
        }))
    }

    /// `confirmResize` of a cold migration (on the destination): the source's copy goes, and
    /// what it held in placement.
    pub(super) async fn confirm_cold_migration(
        &self,
        i: &Instance,
        m: &Migration,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let source = m.source_compute.clone().unwrap_or_default();
        svc.migration_status(m.id, "confirming", None).await?;
        let confirm = ConfirmMigrationAtSource {
            instance_uuid: i.uuid.clone(),
        };
        svc.bus()?
            .call_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &source),
                rid,
                &confirm,
                DESTINATION_TIMEOUT,
            )
            .await
            .map_err(|e| {
                ComputeError::Internal(format!("{source} did not remove its copy: {e}"))
            })?;
        svc.clients()?.release(&m.uuid, rid).await?;
        svc.migration_status(m.id, "confirmed", None).await?;
        let stopped = i.power_state != PowerState::Running.code();
        svc.update_instance(&i.uuid, None, move |x| {
            x.vm_state = if stopped {
                vm_state::STOPPED
            } else {
                vm_state::ACTIVE
            }
            .into();
            x.task_state = None;
            x.old_flavor = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// `revertResize` of a cold migration (on the destination): the copy here goes, the
    /// instance is the source's again, which binds its ports and runs the guest from the
    /// disks it kept; the source's allocation is the server's again.
    pub(super) async fn revert_cold_migration(
        &self,
        i: &Instance,
        m: &Migration,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let source = m.source_compute.clone().unwrap_or_default();
        svc.migration_status(m.id, "reverting", None).await?;
        let run = i.power_state == PowerState::Running.code();
        self.driver.destroy(&i.uuid).await?;
        let (host, node) = (source.clone(), m.source_node.clone());
        let zone = svc.host_zone(&host).await.ok();
        svc.update_instance(&i.uuid, None, move |x| {
            x.host = Some(host);
            x.node = node;
            if zone.is_some() {
                x.host_availability_zone = zone;
            }
            Ok(())
        })
        .await?;
        let revert = RevertMigrationAtSource {
            instance_uuid: i.uuid.clone(),
            run,
        };
        svc.bus()?
            .call_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &source),
                rid,
                &revert,
                DESTINATION_TIMEOUT,
            )
            .await
            .map_err(|e| ComputeError::Internal(format!("{source} did not take it back: {e}")))?;
        svc.clients()?
            .revert_to_source(&i.uuid, &m.uuid, &i.project_id, &i.user_id, rid)
            .await?;
        svc.migration_status(m.id, "reverted", None).await?;
        svc.update_instance(&i.uuid, None, move |x| {
            x.vm_state = if run {
                vm_state::ACTIVE
            } else {
                vm_state::STOPPED
            }
            .into();
            x.task_state = None;
            x.old_flavor = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Source, at confirm: the stopped copy left by a cold migration goes.
    pub async fn confirm_migration_at_source(&self, msg: &ConfirmMigrationAtSource) -> Result<()> {
        let i = svc_instance(&self.svc, &msg.instance_uuid).await?;
        if i.host.as_deref() == Some(self.host.as_str()) {
            // Never the guest of an instance that is (again) this host's.
            return Ok(());
        }
        self.driver.destroy(&msg.instance_uuid).await?;
        tracing::info!(instance = %msg.instance_uuid, host = %self.host, "copy of a confirmed cold migration removed");
        Ok(())
    }

    /// Source, at revert: the instance is here again: its ports bound here (waited for),
    /// the guest started from the disks it kept when it ran before.
    pub async fn revert_migration_at_source(
        &self,
        msg: &RevertMigrationAtSource,
        rid: &str,
    ) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let i = svc_instance(svc, uuid).await?;
        let mut power = PowerState::Shutdown;
        self.bind_ports_here(&i, rid).await?;
        if msg.run {
            self.driver.power_on(uuid).await?;
            power = PowerState::Running;
        }
        svc.update_instance(uuid, None, move |x| {
            x.power_state = power.code();
            Ok(())
        })
        .await?;
        tracing::info!(instance = %uuid, host = %self.host, run = msg.run, "cold migration reverted: the instance is here again");
        Ok(())
    }

    /// At start: the migrations from this host that a stop of kumo cut short end in `error`
    /// (the guest is what the driver has; an admin sees the record), the ports lose their
    /// mark and the server gets its source allocation back. Cold migrations waiting for
    /// confirm or revert (`finished`) are left to them.
    pub(super) async fn fail_interrupted_migrations(&self, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let kinds = [
            (
                crate::core::live_migration::MIGRATION_TYPE,
                &["accepted", "queued", "preparing", "running"][..],
            ),
            (
                crate::core::live_migration::COLD_MIGRATION_TYPE,
                &["accepted", "queued", "migrating", "post-migrating"][..],
            ),
        ];
        for (kind, statuses) in kinds {
            for m in
                store::migrations::from_source(svc.db.conn(), &self.host, kind, statuses).await?
            {
                tracing::warn!(instance = %m.instance_uuid, migration = m.id, %kind, status = %m.status, "a migration cut short by a restart ends in error");
                let why = format!("kumo on {} stopped during the migration", self.host);
                self.moved_nothing_or_error(
                    &m,
                    "",
                    Failure::Before(ComputeError::Internal(why)),
                    rid,
                )
                .await?;
            }
        }
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
            let network_info = self.take_instance(uuid, m.dest_node.clone(), rid).await?;
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
