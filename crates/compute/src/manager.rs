//! The compute agent role, one per compute host: builds instances through the seed's steps
//! (networking -> block_device_mapping -> spawning), runs server actions through the
//! hypervisor driver, reports the host to placement, and keeps the database's power states
//! true to the driver's (at start and periodically).

use bus::{BusExt, Dispatcher, RequestMeta, Target};
use chrono::Utc;
use hypervisor::{Driver, DriverError, InstanceSpec, PowerState, RebootKind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use crate::core::{ComputeService, StepEvents};
use crate::error::{ComputeError, Result};
use crate::hooks::VolumeCall;
use crate::model::*;
use crate::rpc::{
    self, AttachInterface, BuildAndRun, ConsoleOutput, ExternalInstanceEvents, GetVncConsole,
    Operation, RunOperation, Terminate,
};
use crate::store::{self, EventRef};

mod live_migration;

/// The instance as it is now (NotFound once deleted).
async fn svc_instance(svc: &ComputeService, uuid: &str) -> Result<Instance> {
    svc.get_instance(uuid)
        .await?
        .filter(|i| !i.deleted)
        .ok_or_else(|| ComputeError::instance_not_found(uuid))
}

pub const EVENT_BUILD: &str = "compute__do_build_and_run_instance";
pub const EVENT_NETWORKING: &str = "compute_build_networking";
pub const EVENT_BDM: &str = "compute_build_block_device_mapping";
pub const EVENT_SPAWNING: &str = "compute_build_spawning";
pub const EVENT_TERMINATE: &str = "compute_terminate_instance";
pub const EVENT_ATTACH_INTERFACE: &str = "compute_attach_interface";
pub const EVENT_EXTEND_VOLUME: &str = "compute_extend_volume";

/// The host memory kept from guests on a node of `memory_mb` (placement's reserved MEMORY_MB):
/// `reserved_host_memory_mb`, at most half the node's.
pub fn reserved_host_memory_mb(configured: u64, memory_mb: u64) -> u64 {
    configured.min(memory_mb / 2)
}

/// One compute host: a name, a driver, its node's provider.
pub struct ComputeAgent {
    pub svc: Arc<ComputeService>,
    pub host: String,
    pub driver: Arc<dyn Driver>,
}

/// What the driver gets for an instance.
pub fn spec_of(i: &Instance) -> InstanceSpec {
    use base64::Engine;
    InstanceSpec {
        uuid: i.uuid.clone(),
        name: i.display_name.clone(),
        hostname: i.hostname.clone(),
        vcpus: i.flavor.vcpus.max(0) as u32,
        memory_mb: i.flavor.memory_mb.max(0) as u64,
        root_gb: i.flavor.root_gb.max(0) as u64,
        ephemeral_gb: i.flavor.ephemeral_gb.max(0) as u64,
        swap_mb: i.flavor.swap.max(0) as u64,
        image_id: (!i.image_ref.is_empty()).then(|| i.image_ref.clone()),
        image_meta: i.image_meta.clone(),
        user_data: i
            .user_data
            .as_ref()
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok()),
        key_data: i.key_data.clone(),
        metadata: serde_json::to_value(&i.metadata).unwrap_or(Value::Null),
        config_drive: i.config_drive,
        config_drive_files: Vec::new(),
        config_drive_format: String::new(),
        network_info: i.network_info.clone(),
        // The volumes the host has connected (boot volume, extra disks, attached ones).
        block_device_info: Value::Array(
            i.volume_attachments
                .iter()
                .filter(|a| a.connection_info.is_object())
                .map(VolumeAttachment::driver_entry)
                .collect(),
        ),
    }
}

fn driver_failed(step: &'static str, e: DriverError) -> ComputeError {
    ComputeError::Internal(format!("{step}: {e}"))
}

impl ComputeAgent {
    /// The driver's spec with the config drive's files when the instance has one (Nova's
    /// `InstanceMetadata` rendered at spawn).
    fn spec(&self, i: &Instance) -> InstanceSpec {
        let mut spec = spec_of(i);
        if i.config_drive {
            let facts = crate::guest_metadata::facts_of(i, Vec::new());
            spec.config_drive_files = metadata::config_drive::files(&facts, &self.svc.cfg.metadata);
            spec.config_drive_format = match self.svc.cfg.config_drive_format {
                metadata::config_drive::Format::Iso9660 => "iso9660".into(),
                metadata::config_drive::Format::Vfat => "vfat".into(),
            };
        }
        spec
    }

    fn rid(meta: &RequestMeta) -> &str {
        &meta.request_id
    }

    /// Register the service, report the node to placement, reconcile the instances.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        let svc = &self.svc;
        self.driver.init_host(&self.host).await?;
        {
            let txn = svc.db.write().await?;
            store::heartbeat_service(&*txn, &self.host, "nova-compute", "compute").await?;
            txn.commit().await?;
        }
        self.report().await?;
        self.reconcile().await?;
        Ok(())
    }

    /// The node's resources to the database and placement.
    pub async fn report(&self) -> Result<String> {
        let res = self.driver.host_resources().await?;
        let node = {
            let txn = self.svc.db.write().await?;
            let n = store::upsert_node(&*txn, &self.host, &res).await?;
            txn.commit().await?;
            n
        };
        let cfg = &self.svc.cfg;
        let reserved_disk_gb = cfg.reserved_host_disk_mb.div_ceil(1024).min(res.local_gb);
        let inventories = json!({
            "VCPU": {"total": res.vcpus, "reserved": cfg.reserved_host_cpus.min(res.vcpus),
                     "min_unit": 1, "max_unit": res.vcpus,
                     "step_size": 1, "allocation_ratio": cfg.cpu_allocation_ratio},
            "MEMORY_MB": {"total": res.memory_mb,
                     "reserved": reserved_host_memory_mb(cfg.reserved_host_memory_mb, res.memory_mb),
                     "min_unit": 1, "max_unit": res.memory_mb, "step_size": 1,
                     "allocation_ratio": cfg.ram_allocation_ratio},
            "DISK_GB": {"total": res.local_gb, "reserved": reserved_disk_gb, "min_unit": 1,
                     "max_unit": res.local_gb, "step_size": 1,
                     "allocation_ratio": cfg.disk_allocation_ratio},
        });
        self.svc
            .clients()?
            .report_inventory(
                &node.uuid,
                &res.hypervisor_hostname,
                &inventories,
                &["COMPUTE_NODE"],
                &bus::new_request_id(),
            )
            .await?;
        Ok(node.uuid)
    }

    /// At start: finish what a restart interrupted, sync power states, remove leftovers.
    pub async fn reconcile(&self) -> Result<()> {
        let svc = &self.svc;
        self.destroy_evacuated().await?;
        self.fail_interrupted_migrations(&bus::new_request_id())
            .await?;
        let on_host = store::instances_on_host(svc.db.conn(), &self.host).await?;
        let known = self.driver.list_instances().await?;
        for i in &on_host {
            let rid = bus::new_request_id();
            match (i.vm_state.as_str(), i.task_state.as_deref()) {
                (_, Some(task_state::DELETING)) => {
                    tracing::info!(instance = %i.uuid, "finishing a delete interrupted by a restart");
                    self.terminate(&i.uuid, &rid, None).await?;
                    continue;
                }
                (vm_state::BUILDING, _) => {
                    // A build a restart cut short: nothing of it is visible to the user yet, so
                    // it starts again on this host with the claim it holds (Nova would leave
                    // the server in ERROR). That includes a build still in `scheduling` whose
                    // host the scheduler had recorded: the conductor leaves those to the host
                    // (before, the arm below cleared its task and the server stayed in BUILD).
                    tracing::info!(instance = %i.uuid, task_state = ?i.task_state, "resuming a build interrupted by a restart");
                    let _ = self.driver.destroy(&i.uuid).await;
                    if let Err(e) = svc.network.deallocate(svc, i, &rid).await {
                        // The build's allocate starts over and cleans up what it makes.
                        tracing::warn!(instance = %i.uuid, error = %e, "ports of an interrupted build not released");
                    }
                    svc.release_volumes(i, None, &rid).await?;
                    svc.update_instance(&i.uuid, None, |x| {
                        x.task_state = Some(task_state::SCHEDULING.into());
                        Ok(())
                    })
                    .await?;
                    let request_id = store::list_actions(svc.db.conn(), &i.uuid)
                        .await?
                        .into_iter()
                        .find(|a| a.action == action::CREATE)
                        .map(|a| a.request_id)
                        .unwrap_or(rid);
                    let msg = BuildAndRun {
                        instance_uuid: i.uuid.clone(),
                        user_token: String::new(),
                        #[cfg(feature = "rpc-next")]
                        node: i.node.clone(),
                    };
                    svc.bus()?
                        .cast_typed(
                            &Target::server(rpc::COMPUTE_TOPIC, &self.host),
                            &request_id,
                            &msg,
                        )
                        .await?;
                    continue;
                }
                (_, Some(_)) => {
                    // An action in flight when kumo stopped: the guest is what the driver says.
                    svc.update_instance(&i.uuid, None, |x| {
                        x.task_state = None;
                        Ok(())
                    })
                    .await?;
                }
                _ => {}
            }
            if let Err(e) = self.finish_volume_steps(i, &rid).await {
                tracing::warn!(instance = %i.uuid, error = %e, "volume operations a restart interrupted not finished");
            }
        }
        self.sync_power_states().await?;
        let live: Vec<&str> = on_host.iter().map(|i| i.uuid.as_str()).collect();
        for uuid in known {
            if !live.contains(&uuid.as_str()) {
                tracing::info!(instance = %uuid, host = %self.host, "removing a guest no live instance owns");
                self.driver.destroy(&uuid).await?;
            }
        }
        Ok(())
    }

    /// Nova's `_sync_power_states`: the database follows the hypervisor; a guest that stopped
    /// on its own makes its server SHUTOFF.
    pub async fn sync_power_states(&self) -> Result<()> {
        for i in store::instances_on_host(self.svc.db.conn(), &self.host).await? {
            self.sync_power_state(&i).await;
        }
        Ok(())
    }

    /// One instance's power state from the driver (skipped while an action runs on it).
    async fn sync_power_state(&self, i: &Instance) {
        if i.task_state.is_some() || i.vm_state == vm_state::BUILDING || i.deleted {
            return;
        }
        let power = match self.driver.instance_info(&i.uuid).await {
            Ok(info) => info.power_state,
            Err(DriverError::InstanceNotFound(_)) => PowerState::NoState,
            Err(e) => {
                tracing::warn!(instance = %i.uuid, error = %e, "power state unknown: not synced");
                return;
            }
        };
        let stopped_on_its_own = i.vm_state == vm_state::ACTIVE
            && matches!(
                power,
                PowerState::Shutdown | PowerState::NoState | PowerState::Crashed
            );
        if power.code() != i.power_state || stopped_on_its_own {
            tracing::info!(instance = %i.uuid, db = i.power_state, hypervisor = power.code(), "power state sync");
            self.svc
                .update_instance(&i.uuid, Some(&[None]), |x| {
                    x.power_state = power.code();
                    if stopped_on_its_own {
                        x.vm_state = vm_state::STOPPED.into();
                    }
                    Ok(())
                })
                .await
                .ok();
        }
    }

    /// Guests that changed on their own (powered off inside, QEMU died) are synced at once,
    /// as Nova's lifecycle events do, a moment later so an action in flight sets its task first.
    fn spawn_lifecycle_sync(self: &Arc<Self>) {
        let Some(mut events) = self.driver.lifecycle_events() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let uuid = match events.recv().await {
                    Ok(u) => u,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(Some(i)) = me.svc.get_instance(&uuid).await
                    && i.host.as_deref() == Some(me.host.as_str())
                {
                    me.sync_power_state(&i).await;
                }
            }
        });
    }

    /// Heartbeat and power sync, until the process ends.
    pub fn spawn_periodic(self: &Arc<Self>) {
        self.spawn_lifecycle_sync();
        let me = self.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(me.svc.cfg.report_interval);
            let sync_every = me.svc.cfg.sync_power_state_interval;
            let mut last_sync = tokio::time::Instant::now();
            loop {
                beat.tick().await;
                if let Ok(txn) = me.svc.db.write().await
                    && store::heartbeat_service(&*txn, &me.host, "nova-compute", "compute")
                        .await
                        .is_ok()
                {
                    let _ = txn.commit().await;
                }
                if let Some(every) = sync_every
                    && last_sync.elapsed() >= every
                {
                    last_sync = tokio::time::Instant::now();
                    if let Err(e) = me.sync_power_states().await {
                        tracing::warn!(host = %me.host, error = %e, "power state sync failed");
                    }
                }
            }
        });
    }

    // ------------------------------------------------------------ build

    pub async fn build(&self, msg: &BuildAndRun, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let host = Some(self.host.as_str());
        let ev = svc.event_start(uuid, rid, EVENT_BUILD, host).await?;
        let r = self.build_steps(msg, ev, rid).await;
        match r {
            // The last step's write finished the build's event and action.
            Ok(()) => {}
            Err((step, e)) => {
                let gone = matches!(e, ComputeError::NotFound(_) | ComputeError::Conflict(_));
                let _ = self.driver.destroy(uuid).await;
                if let Some(i) = svc.get_instance(uuid).await? {
                    let _ = svc.network.deallocate(svc, &i, rid).await;
                    let token = Some(msg.user_token.as_str()).filter(|t| !t.is_empty());
                    if let Err(e) = svc.release_volumes(&i, token, rid).await {
                        tracing::warn!(instance = %uuid, error = %e, "volumes of a failed build not released");
                    }
                }
                if gone {
                    // Deleted during the build: the delete's terminate finishes the rest.
                    svc.event_finish(ev, Some("The instance was deleted during the build."))
                        .await?;
                    return Ok(());
                }
                svc.clients()?.release(uuid, rid).await?;
                let reason = format!(
                    "Build of instance {uuid} failed at step {step} on {}: {e}",
                    self.host
                );
                svc.event_finish(ev, Some(&reason)).await?;
                let image_unusable = matches!(
                    e,
                    ComputeError::Driver(DriverError::ImageUnacceptable { .. })
                );
                if step == "spawning" && !image_unusable {
                    // A hypervisor failure: another host may do better (Nova's reschedule).
                    let host = self.host.clone();
                    let r = svc
                        .update_instance(uuid, Some(&[Some(task_state::SPAWNING)]), move |i| {
                            i.attempted_hosts.push(host);
                            i.host = None;
                            i.node = None;
                            i.task_state = Some(task_state::SCHEDULING.into());
                            Ok(())
                        })
                        .await;
                    if r.is_ok() {
                        tracing::warn!(instance = %uuid, host = %self.host, error = %e, "build failed: rescheduling");
                        let back = rpc::ScheduleAndBuild {
                            instance_uuids: vec![uuid.clone()],
                            user_token: msg.user_token.clone(),
                        };
                        svc.bus()?
                            .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), rid, &back)
                            .await?;
                    }
                    return Ok(());
                }
                svc.set_error(
                    uuid,
                    500,
                    &format!("Build of instance {uuid} aborted at step {step}: {e}"),
                    &reason,
                )
                .await?;
                let _ = svc
                    .update_instance(uuid, None, |i| {
                        i.host = None;
                        i.node = None;
                        Ok(())
                    })
                    .await;
                svc.action_finish(uuid, rid).await?;
            }
        }
        Ok(())
    }

    async fn build_steps(
        &self,
        msg: &BuildAndRun,
        build_event: Option<EventRef>,
        rid: &str,
    ) -> std::result::Result<(), (&'static str, ComputeError)> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let host = Some(self.host.as_str());
        let at = |step: &'static str| move |e: ComputeError| (step, e);

        // Steps 22-24: networking.
        let (i, ev) = svc
            .step_instance(
                uuid,
                &[Some(task_state::SCHEDULING)],
                StepEvents {
                    start: Some((rid, EVENT_NETWORKING, host)),
                    ..Default::default()
                },
                |x| {
                    x.task_state = Some(task_state::NETWORKING.into());
                    Ok(())
                },
            )
            .await
            .map_err(at("networking"))?;
        let alloc = match svc.network.allocate(svc, &i, &msg.user_token, rid).await {
            Ok(a) => a,
            Err(e) => {
                // The network service's refusals (409s among them) fail the build; they do
                // not mean the instance went away.
                let e = ComputeError::Internal(e.to_string());
                let _ = svc.event_finish(ev, Some(&e.to_string())).await;
                return Err(("networking", e));
            }
        };
        // The ports are recorded before the wait: a build that fails from here on (or a
        // delete) finds them in network_info.
        // With nothing to wait for, they go in the next step's write.
        let mut unrecorded = Some(alloc.network_info);
        if !alloc.waiters.is_empty() {
            let nw = unrecorded.take();
            let recorded = svc
                .update_instance(uuid, Some(&[Some(task_state::NETWORKING)]), |x| {
                    x.network_info = nw.unwrap_or_default();
                    Ok(())
                })
                .await;
            if let Err(e) = recorded {
                let _ = svc.event_finish(ev, Some(&e.to_string())).await;
                return Err(("networking", e));
            }
            if let Err(e) = self.wait_for_vifs(uuid, alloc.waiters).await {
                let _ = svc.event_finish(ev, Some(&e.to_string())).await;
                return Err(("networking", e));
            }
        }

        // Steps 25-27: block devices.
        let (i, ev) = svc
            .step_instance(
                uuid,
                &[Some(task_state::NETWORKING)],
                StepEvents {
                    finish: &[ev],
                    start: Some((rid, EVENT_BDM, host)),
                    ..Default::default()
                },
                |x| {
                    if let Some(nw) = unrecorded {
                        x.network_info = nw;
                    }
                    x.task_state = Some(task_state::BLOCK_DEVICE_MAPPING.into());
                    Ok(())
                },
            )
            .await
            .map_err(at("block_device_mapping"))?;
        if let Err(e) = self.prepare_volumes(&i, &msg.user_token, rid).await {
            let _ = svc.event_finish(ev, Some(&e.to_string())).await;
            return Err(("block_device_mapping", e));
        }

        // Step 28: spawning.
        let (i, ev) = svc
            .step_instance(
                uuid,
                &[Some(task_state::BLOCK_DEVICE_MAPPING)],
                StepEvents {
                    finish: &[ev],
                    start: Some((rid, EVENT_SPAWNING, host)),
                    ..Default::default()
                },
                |x| {
                    x.task_state = Some(task_state::SPAWNING.into());
                    Ok(())
                },
            )
            .await
            .map_err(at("spawning"))?;
        if let Err(e) = self.driver.spawn(&self.spec(&i)).await {
            let e = match e {
                // Kept as the driver's error: the build is not rescheduled for it.
                e @ DriverError::ImageUnacceptable { .. } => ComputeError::Driver(e),
                e => driver_failed("spawn", e),
            };
            let _ = svc.event_finish(ev, Some(&e.to_string())).await;
            return Err(("spawning", e));
        }

        // Active / Running: the build's events and its action end with this write.
        svc.step_instance(
            uuid,
            &[Some(task_state::SPAWNING)],
            StepEvents {
                finish: &[ev, build_event],
                finish_action: true,
                ..Default::default()
            },
            |x| {
                x.vm_state = vm_state::ACTIVE.into();
                x.task_state = None;
                x.power_state = PowerState::Running.code();
                x.launched_at = Some(Utc::now());
                Ok(())
            },
        )
        .await
        .map_err(at("spawning"))?;
        Ok(())
    }

    /// Wait for the network service's `network-vif-plugged` of each port not yet plugged, as
    /// Nova's `wait_for_instance_event` with `vif_plugging_timeout` (one deadline for all)
    /// and `vif_plugging_is_fatal`.
    async fn wait_for_vifs(
        &self,
        uuid: &str,
        waiters: Vec<(String, crate::core::events::EventWaiter)>,
    ) -> Result<()> {
        let cfg = &self.svc.cfg;
        let Some(timeout) = cfg.vif_plugging_timeout else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for (port, w) in waiters {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failure = match w.wait(left).await {
                Ok(ev) if ev.status == "completed" => {
                    tracing::info!(instance = %uuid, %port, "port plugged");
                    continue;
                }
                Ok(ev) => format!("the network service reported {} for port {port}", ev.status),
                Err(_) => format!(
                    "port {port} was not plugged: no network-vif-plugged event within {} s",
                    timeout.as_secs()
                ),
            };
            if cfg.vif_plugging_is_fatal {
                tracing::warn!(instance = %uuid, %port, "{failure}");
                return Err(ComputeError::Internal(format!(
                    "Virtual Interface creation failed: {failure}"
                )));
            }
            tracing::warn!(instance = %uuid, %port, "{failure}; vif_plugging_is_fatal is false: going on");
        }
        Ok(())
    }

    // ------------------------------------------------------------ delete

    pub async fn terminate(&self, uuid: &str, rid: &str, user_token: Option<&str>) -> Result<()> {
        let svc = &self.svc;
        let ev = svc
            .event_start(uuid, rid, EVENT_TERMINATE, Some(&self.host))
            .await?;
        let r: Result<()> = async {
            let Some(i) = svc.get_instance(uuid).await? else {
                return Ok(());
            };
            self.driver.destroy(uuid).await?;
            svc.network.deallocate(svc, &i, rid).await?;
            svc.release_volumes(&i, user_token, rid).await?;
            svc.clients()?.release(uuid, rid).await?;
            if let Some(img) = &i.shelved_image_id {
                let _ = img;
            }
            svc.finish_delete(uuid).await
        }
        .await;
        svc.event_finish(ev, r.as_ref().err().map(|e| e.to_string()).as_deref())
            .await?;
        svc.action_finish(uuid, rid).await?;
        if let Err(e) = &r {
            svc.set_error(uuid, 500, &format!("Delete failed: {e}"), "terminate")
                .await?;
        }
        r
    }

    // ------------------------------------------------------------ actions

    fn event_name(op: &Operation) -> &'static str {
        match op {
            Operation::Stop => "compute_stop_instance",
            Operation::Start => "compute_start_instance",
            Operation::Reboot { .. } => "compute_reboot_instance",
            Operation::Pause => "compute_pause_instance",
            Operation::Unpause => "compute_unpause_instance",
            Operation::Suspend => "compute_suspend_instance",
            Operation::Resume => "compute_resume_instance",
            Operation::Rebuild => "compute_rebuild_instance",
            Operation::Resize => "compute_resize_instance",
            Operation::ConfirmResize => "compute_confirm_resize",
            Operation::RevertResize => "compute_revert_resize",
            Operation::Snapshot { .. } => "compute_snapshot_instance",
            Operation::Shelve { .. } => "compute_shelve_instance",
            Operation::ShelveOffload => "compute_shelve_offload_instance",
            Operation::Unshelve => "compute_unshelve_instance",
            Operation::AttachVolume { .. } => "compute_attach_volume",
            Operation::DetachVolume { .. } => "compute_detach_volume",
            Operation::DetachInterface { .. } => "compute_detach_interface",
            Operation::AddFixedIp { .. } => "compute_add_fixed_ip_to_instance",
            Operation::RemoveFixedIp { .. } => "compute_remove_fixed_ip_from_instance",
            // Nova records an evacuation's destination work under the rebuild's name.
            Operation::Evacuate { .. } => "compute_rebuild_instance",
        }
    }

    pub async fn run(&self, msg: &RunOperation, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let ev = svc
            .event_start(
                uuid,
                rid,
                Self::event_name(&msg.operation),
                Some(&self.host),
            )
            .await?;
        let r = self.operate(msg, rid).await;
        svc.event_finish(ev, r.as_ref().err().map(|e| e.to_string()).as_deref())
            .await?;
        svc.action_finish(uuid, rid).await?;
        if let Err(e) = &r {
            tracing::warn!(instance = %uuid, error = %e, op = Self::event_name(&msg.operation), "server action failed");
            if !matches!(e, ComputeError::NotFound(_)) {
                // The action is over: the server shows what the hypervisor has, with a fault.
                let power = self
                    .driver
                    .instance_info(uuid)
                    .await
                    .map(|i| i.power_state.code())
                    .unwrap_or(0);
                let msg_text = e.to_string();
                let _ = svc
                    .update_instance(uuid, None, move |i| {
                        i.task_state = None;
                        i.power_state = power;
                        i.fault = Some(InstanceFault {
                            code: 500,
                            message: msg_text.clone(),
                            details: msg_text,
                            created: Utc::now(),
                        });
                        Ok(())
                    })
                    .await;
            }
        }
        Ok(())
    }

    /// Set the end state of an action.
    async fn done(&self, uuid: &str, vm: &str, power: PowerState) -> Result<Instance> {
        let vm = vm.to_string();
        self.svc
            .update_instance(uuid, None, move |i| {
                i.vm_state = vm;
                i.task_state = None;
                i.power_state = power.code();
                Ok(())
            })
            .await
    }

    async fn operate(&self, msg: &RunOperation, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = msg.instance_uuid.as_str();
        let d = &self.driver;
        let i = svc
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let was_stopped = i.power_state == PowerState::Shutdown.code();
        match &msg.operation {
            Operation::Stop => {
                d.power_off(uuid, svc.cfg.shutdown_timeout).await?;
                self.done(uuid, vm_state::STOPPED, PowerState::Shutdown)
                    .await?;
            }
            Operation::Start => {
                d.power_on(uuid).await?;
                self.done(uuid, vm_state::ACTIVE, PowerState::Running)
                    .await?;
            }
            Operation::Reboot { hard } => {
                let kind = if *hard {
                    RebootKind::Hard
                } else {
                    RebootKind::Soft
                };
                d.reboot(uuid, kind).await?;
                self.done(uuid, vm_state::ACTIVE, PowerState::Running)
                    .await?;
            }
            Operation::Pause => {
                d.pause(uuid).await?;
                self.done(uuid, vm_state::PAUSED, PowerState::Paused)
                    .await?;
            }
            Operation::Unpause => {
                d.unpause(uuid).await?;
                self.done(uuid, vm_state::ACTIVE, PowerState::Running)
                    .await?;
            }
            Operation::Suspend => {
                d.suspend(uuid).await?;
                self.done(uuid, vm_state::SUSPENDED, PowerState::Suspended)
                    .await?;
            }
            Operation::Resume => {
                d.resume(uuid).await?;
                self.done(uuid, vm_state::ACTIVE, PowerState::Running)
                    .await?;
            }
            Operation::Rebuild => {
                d.rebuild(&self.spec(&i)).await?;
                if was_stopped {
                    d.power_off(uuid, Duration::ZERO).await?;
                    self.done(uuid, vm_state::STOPPED, PowerState::Shutdown)
                        .await?;
                } else {
                    self.done(uuid, vm_state::ACTIVE, PowerState::Running)
                        .await?;
                }
                svc.update_instance(uuid, None, |x| {
                    x.launched_at = Some(Utc::now());
                    Ok(())
                })
                .await?;
            }
            Operation::Resize => {
                let new = i
                    .new_flavor
                    .clone()
                    .ok_or_else(|| ComputeError::Internal("resize without a new flavor".into()))?;
                let mut resized = i.clone();
                resized.flavor = new.clone();
                self.reclaim(&resized, rid).await?;
                d.resize(&self.spec(&resized)).await?;
                let power = if was_stopped {
                    PowerState::Shutdown
                } else {
                    PowerState::Running
                };
                if was_stopped {
                    d.power_off(uuid, Duration::ZERO).await?;
                }
                svc.update_instance(uuid, None, move |x| {
                    x.old_flavor = Some(x.flavor.clone());
                    x.flavor = new;
                    x.new_flavor = None;
                    x.vm_state = vm_state::RESIZED.into();
                    x.task_state = None;
                    x.power_state = power.code();
                    Ok(())
                })
                .await?;
            }
            Operation::ConfirmResize => {
                if let Some(m) = self.pending_cold_migration(&i).await? {
                    return self.confirm_cold_migration(&i, &m, rid).await;
                }
                d.confirm_resize(uuid).await?;
                let vm = if was_stopped {
                    vm_state::STOPPED
                } else {
                    vm_state::ACTIVE
                };
                let power = if was_stopped {
                    PowerState::Shutdown
                } else {
                    PowerState::Running
                };
                svc.update_instance(uuid, None, move |x| {
                    x.old_flavor = None;
                    x.vm_state = vm.into();
                    x.task_state = None;
                    x.power_state = power.code();
                    Ok(())
                })
                .await?;
            }
            Operation::RevertResize => {
                if let Some(m) = self.pending_cold_migration(&i).await? {
                    return self.revert_cold_migration(&i, &m, rid).await;
                }
                let old = i
                    .old_flavor
                    .clone()
                    .ok_or_else(|| ComputeError::Internal("revert without an old flavor".into()))?;
                let mut back = i.clone();
                back.flavor = old.clone();
                self.reclaim(&back, rid).await?;
                d.revert_resize(&self.spec(&back)).await?;
                let vm = if was_stopped {
                    vm_state::STOPPED
                } else {
                    vm_state::ACTIVE
                };
                let power = if was_stopped {
                    PowerState::Shutdown
                } else {
                    PowerState::Running
                };
                if was_stopped {
                    d.power_off(uuid, Duration::ZERO).await?;
                }
                svc.update_instance(uuid, None, move |x| {
                    x.flavor = old;
                    x.old_flavor = None;
                    x.vm_state = vm.into();
                    x.task_state = None;
                    x.power_state = power.code();
                    Ok(())
                })
                .await?;
            }
            Operation::Snapshot { image_id } => {
                svc.update_instance(uuid, None, |x| {
                    x.task_state = Some(task_state::IMAGE_UPLOADING.into());
                    Ok(())
                })
                .await?;
                let r = self.snapshot_to(uuid, image_id, &msg.user_token, rid).await;
                svc.update_instance(uuid, None, |x| {
                    x.task_state = None;
                    Ok(())
                })
                .await?;
                r?;
            }
            Operation::Shelve { image_id, offload } => {
                d.power_off(uuid, svc.cfg.shutdown_timeout).await?;
                if let Some(img) = image_id {
                    self.snapshot_to(uuid, img, &msg.user_token, rid).await?;
                }
                let img = image_id.clone();
                svc.update_instance(uuid, None, move |x| {
                    x.vm_state = vm_state::SHELVED.into();
                    x.task_state = if *offload {
                        Some(task_state::SHELVING_OFFLOADING.into())
                    } else {
                        None
                    };
                    x.power_state = PowerState::Shutdown.code();
                    x.shelved_image_id = img;
                    Ok(())
                })
                .await?;
                if *offload {
                    self.offload(&i, rid).await?;
                }
            }
            Operation::ShelveOffload => self.offload(&i, rid).await?,
            Operation::Unshelve => {
                if i.vm_state == vm_state::SHELVED_OFFLOADED {
                    // The ports come back bound to this host, plugged before the spawn, as a
                    // build's.
                    let alloc = svc.network.bind_on_host(svc, &i, rid).await?;
                    let nw = alloc.network_info.clone();
                    svc.update_instance(uuid, None, move |x| {
                        x.network_info = nw;
                        Ok(())
                    })
                    .await?;
                    self.wait_for_vifs(uuid, alloc.waiters).await?;
                    let mut spec = self.spec(&i);
                    spec.network_info = alloc.network_info;
                    if let Some(img) = &i.shelved_image_id {
                        spec.image_id = Some(img.clone());
                    }
                    d.spawn(&spec).await?;
                } else {
                    d.power_on(uuid).await?;
                }
                let shelved = i.shelved_image_id.clone();
                svc.update_instance(uuid, None, |x| {
                    x.vm_state = vm_state::ACTIVE.into();
                    x.task_state = None;
                    x.power_state = PowerState::Running.code();
                    x.shelved_image_id = None;
                    x.launched_at = Some(Utc::now());
                    Ok(())
                })
                .await?;
                // Nova deletes the shelve snapshot once the server is back.
                if let Some(img) = shelved {
                    svc.clients()?
                        .image_delete(&msg.user_token, &img, rid)
                        .await;
                }
            }
            Operation::AttachVolume { volume_id } => {
                self.attach_volume(&i, volume_id, &msg.user_token, rid)
                    .await?;
            }
            Operation::DetachVolume { volume_id } => {
                self.detach_volume(&i, volume_id, &msg.user_token, rid)
                    .await?;
            }
            Operation::DetachInterface { port_id } => {
                self.detach_interface(&i, port_id, rid).await?;
            }
            Operation::AddFixedIp { network_id } => {
                let vif = svc.network.add_fixed_ip(svc, &i, network_id, rid).await?;
                self.record_vif(uuid, vif).await?;
            }
            Operation::RemoveFixedIp { address } => {
                let vif = svc.network.remove_fixed_ip(svc, &i, address, rid).await?;
                self.record_vif(uuid, vif).await?;
            }
            Operation::Evacuate { migration_id } => {
                let r = self.rebuild_evacuated(&i, rid).await;
                let status = if r.is_ok() { "done" } else { "failed" };
                svc.migration_status(*migration_id, status, None).await?;
                r?;
            }
        }
        Ok(())
    }

    /// The instance's ports bound to this host (whose agent wires them: waited for), its
    /// network info recorded; None for an instance without ports.
    async fn bind_ports_here(&self, i: &Instance, rid: &str) -> Result<Option<Value>> {
        let svc = &self.svc;
        if i.network_info.as_array().is_none_or(|v| v.is_empty()) {
            return Ok(None);
        }
        let alloc = svc.network.bind_on_host(svc, i, rid).await?;
        let nw = alloc.network_info.clone();
        svc.update_instance(&i.uuid, None, move |x| {
            x.network_info = nw;
            Ok(())
        })
        .await?;
        self.wait_for_vifs(&i.uuid, alloc.waiters).await?;
        Ok(Some(alloc.network_info))
    }

    /// Nova's rebuild on the destination of an evacuation: the ports bound here, the guest
    /// spawned from the instance's image (nothing of the failed host's disk is reachable), in
    /// the power state it had (a stopped server stays stopped).
    async fn rebuild_evacuated(&self, i: &Instance, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &i.uuid;
        let mut spec = self.spec(i);
        if let Some(network_info) = self.bind_ports_here(i, rid).await? {
            spec.network_info = network_info;
        }
        // A guest of an earlier attempt here goes first.
        let _ = self.driver.destroy(uuid).await;
        self.driver.spawn(&spec).await?;
        let stopped = i.vm_state == vm_state::STOPPED;
        if stopped {
            self.driver.power_off(uuid, Duration::ZERO).await?;
        }
        let host = self.host.clone();
        svc.update_instance(uuid, None, move |x| {
            x.vm_state = if stopped {
                vm_state::STOPPED
            } else {
                vm_state::ACTIVE
            }
            .into();
            x.task_state = None;
            x.power_state = if stopped {
                PowerState::Shutdown
            } else {
                PowerState::Running
            }
            .code();
            x.host = Some(host);
            x.fault = None;
            x.launched_at = Some(Utc::now());
            Ok(())
        })
        .await?;
        tracing::info!(instance = %uuid, host = %self.host, "evacuated instance rebuilt here");
        Ok(())
    }

    /// Nova's `_destroy_evacuated_instances`, at start: the guests of instances evacuated
    /// away from this host while it was down are destroyed, and their migrations completed.
    async fn destroy_evacuated(&self) -> Result<()> {
        let svc = &self.svc;
        let moved = store::migrations::from_source(
            svc.db.conn(),
            &self.host,
            crate::core::evacuate::MIGRATION_TYPE,
            &["accepted", "pre-migrating", "done"],
        )
        .await?;
        for m in moved {
            let here = svc
                .get_instance(&m.instance_uuid)
                .await?
                .is_some_and(|i| !i.deleted && i.host.as_deref() == Some(self.host.as_str()));
            if here {
                // Not rebuilt elsewhere (yet): the guest here is still the instance's.
                continue;
            }
            match self.driver.destroy(&m.instance_uuid).await {
                Ok(()) | Err(DriverError::InstanceNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            svc.migration_status(m.id, "completed", None).await?;
            tracing::info!(instance = %m.instance_uuid, host = %self.host, migration = m.id, "guest of an instance evacuated away destroyed");
        }
        Ok(())
    }

    // ------------------------------------------------------------ volumes

    /// The volume service call of an instance's volume operation.
    fn vcall<'a>(&'a self, i: &'a Instance, token: &'a str, rid: &'a str) -> VolumeCall<'a> {
        VolumeCall {
            svc: &self.svc,
            project_id: &i.project_id,
            token: Some(token).filter(|t| !t.is_empty()),
            request_id: rid,
        }
    }

    /// Change one mapping of the instance (by its id).
    async fn update_bdm(
        &self,
        uuid: &str,
        bdm_id: &str,
        f: impl FnOnce(&mut VolumeAttachment) + Send,
    ) -> Result<Instance> {
        let b = bdm_id.to_string();
        self.svc
            .update_instance(uuid, None, move |x| {
                if let Some(a) = x.volume_attachments.iter_mut().find(|a| a.id == b) {
                    f(a);
                }
                Ok(())
            })
            .await
    }

    async fn forget_bdm(&self, uuid: &str, bdm_id: &str) -> Result<()> {
        let b = bdm_id.to_string();
        self.svc
            .update_instance(uuid, None, move |x| {
                x.volume_attachments.retain(|a| a.id != b);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// This host's connector to the volume service (attachment_update); the connection
    /// recorded in the mapping before anything is plugged.
    async fn connect_volume(
        &self,
        i: &Instance,
        a: &VolumeAttachment,
        c: &VolumeCall<'_>,
    ) -> Result<VolumeAttachment> {
        let aid = a.attachment_id.clone().ok_or_else(|| {
            ComputeError::Internal(format!("volume {} has no attachment", a.volume_id))
        })?;
        let connector = crate::cinder::connector(&self.host, &self.svc.cfg.my_ip, &a.device);
        let ci = self
            .svc
            .volume
            .attachment_update(c, &aid, connector)
            .await?;
        let kind = ci["driver_volume_type"].as_str().unwrap_or_default();
        // A file of this host, or an NBD export of the volume's host (hypervisor::volume).
        if kind != "local" && kind != "nbd" {
            return Err(ComputeError::Failed(format!(
                "Volume {} has driver_volume_type {kind:?}: this host attaches \"local\" and \"nbd\" volumes only",
                a.volume_id
            )));
        }
        let ci2 = ci.clone();
        self.update_bdm(&i.uuid, &a.id, move |b| b.connection_info = ci2)
            .await?;
        let mut out = a.clone();
        out.connection_info = ci;
        Ok(out)
    }

    /// Nova's `attach_volume` on the host: connect (the connection recorded first), plug,
    /// complete. A failure deletes the attachment (the volume is available again) and the
    /// mapping.
    async fn attach_volume(
        &self,
        i: &Instance,
        volume_id: &str,
        token: &str,
        rid: &str,
    ) -> Result<()> {
        let uuid = &i.uuid;
        let a = i
            .volume_attachments
            .iter()
            .find(|a| a.volume_id == volume_id)
            .cloned()
            .ok_or_else(|| crate::core::volumes::not_attached(uuid, volume_id))?;
        let c = self.vcall(i, token, rid);
        let plugged: Result<VolumeAttachment> = async {
            let a = self.connect_volume(i, &a, &c).await?;
            self.driver
                .attach_volume(uuid, &a.driver_entry())
                .await
                .map_err(|e| {
                    ComputeError::Failed(format!(
                        "Failed to attach volume {volume_id} to instance {uuid}: {e}"
                    ))
                })?;
            Ok(a)
        }
        .await;
        let completed = match plugged {
            Ok(a) => match &a.attachment_id {
                Some(aid) => match self.svc.volume.attachment_complete(&c, aid).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = self.driver.detach_volume(uuid, volume_id).await;
                        Err(e)
                    }
                },
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = completed {
            if let Some(aid) = &a.attachment_id
                && let Err(undo) = self.svc.volume.attachment_delete(&c, aid).await
            {
                tracing::warn!(instance = %uuid, volume = %volume_id, error = %undo, "attachment of a failed attach not deleted");
            }
            self.forget_bdm(uuid, &a.id).await?;
            return Err(e);
        }
        self.update_bdm(uuid, &a.id, |b| b.state = "attached".into())
            .await?;
        tracing::info!(instance = %uuid, volume = %volume_id, device = %a.device, "volume attached");
        Ok(())
    }

    /// Nova's `detach_volume` on the host: the guest lets go (or the detach fails and the
    /// volume stays attached and recorded), then the attachment is deleted (the volume is
    /// available), then the mapping.
    async fn detach_volume(
        &self,
        i: &Instance,
        volume_id: &str,
        token: &str,
        rid: &str,
    ) -> Result<()> {
        let uuid = &i.uuid;
        let a = i
            .volume_attachments
            .iter()
            .find(|a| a.volume_id == volume_id)
            .cloned()
            .ok_or_else(|| crate::core::volumes::not_attached(uuid, volume_id))?;
        self.update_bdm(uuid, &a.id, |b| b.state = "detaching".into())
            .await?;
        if let Err(e) = self.driver.detach_volume(uuid, volume_id).await {
            self.update_bdm(uuid, &a.id, |b| b.state = "attached".into())
                .await?;
            return Err(ComputeError::Failed(format!(
                "Failed to detach volume {volume_id} from instance {uuid}: {e}"
            )));
        }
        if let Some(aid) = &a.attachment_id {
            let c = self.vcall(i, token, rid);
            self.svc.volume.attachment_delete(&c, aid).await?;
        }
        self.forget_bdm(uuid, &a.id).await?;
        tracing::info!(instance = %uuid, volume = %volume_id, "volume detached");
        Ok(())
    }

    /// The build's block_device_mapping step: every requested volume destination, made
    /// (image, blank or snapshot source: a new volume, waited for until `available`) or
    /// taken (a volume source, checked `available`), recorded, reserved, connected and
    /// completed. Each mapping is written before the volume service is asked the next thing,
    /// so a failed build (or a delete) finds and releases what was made.
    async fn prepare_volumes(&self, i: &Instance, token: &str, rid: &str) -> Result<()> {
        let uuid = &i.uuid;
        let c = self.vcall(i, token, rid);
        let requested: Vec<Value> = i
            .block_device_mapping
            .as_array()
            .cloned()
            .unwrap_or_default();
        for b in requested {
            let source = b["source_type"].as_str().unwrap_or("");
            let dest = b["destination_type"]
                .as_str()
                .unwrap_or(if source == "volume" {
                    "volume"
                } else {
                    "local"
                });
            if dest != "volume" {
                continue;
            }
            let boot_index = match &b["boot_index"] {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .filter(|n| *n >= 0);
            let delete_on_termination = b["delete_on_termination"] == json!(true)
                || b["delete_on_termination"].as_str().is_some_and(|s| {
                    matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
                });
            let tag = b["tag"].as_str().map(str::to_string);
            let bdm_id = uuid::Uuid::new_v4().to_string();
            let src_id = b["uuid"].as_str().unwrap_or_default().to_string();
            let cur = svc_instance(&self.svc, uuid).await?;
            let device = if boot_index == Some(0) {
                "/dev/vda".to_string()
            } else {
                crate::cinder::next_device(&cur)?
            };
            let record = |volume_id: String, state: &str| VolumeAttachment {
                id: bdm_id.clone(),
                volume_id,
                device: device.clone(),
                tag: tag.clone(),
                delete_on_termination,
                attachment_id: None,
                connection_info: Value::Null,
                boot_index,
                state: state.into(),
            };
            let volume_id = if source == "volume" {
                let v = self.svc.volume.get(&c, &src_id).await?.ok_or_else(|| {
                    ComputeError::bad(format!("Volume {src_id} could not be found."))
                })?;
                crate::cinder::check_attachable(&v)?;
                src_id.clone()
            } else {
                let size = b["volume_size"]
                    .as_i64()
                    .or_else(|| b["volume_size"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or_else(|| i.flavor.root_gb.max(1));
                let mut body = json!({"size": size, "name": format!("{uuid}-{}", if source == "image" { "image-vol" } else { "blank-vol" })});
                match source {
                    "image" => body["imageRef"] = json!(src_id),
                    "snapshot" => body["snapshot_id"] = json!(src_id),
                    _ => {}
                }
                if let Some(t) = b["volume_type"].as_str() {
                    body["volume_type"] = json!(t);
                }
                let v = self.svc.volume.create(&c, body).await?;
                let vid = v["id"].as_str().unwrap_or_default().to_string();
                let rec = record(vid.clone(), "creating");
                self.svc
                    .update_instance(uuid, None, move |x| {
                        x.volume_attachments.push(rec);
                        Ok(())
                    })
                    .await?;
                self.await_volume(&c, &vid).await?;
                vid
            };
            if source == "volume" {
                let rec = record(volume_id.clone(), "reserving");
                self.svc
                    .update_instance(uuid, None, move |x| {
                        x.volume_attachments.push(rec);
                        Ok(())
                    })
                    .await?;
            }
            let aid = self
                .svc
                .volume
                .attachment_create(&c, &volume_id, uuid)
                .await?;
            let aid2 = aid.clone();
            self.update_bdm(uuid, &bdm_id, move |x| {
                x.attachment_id = Some(aid2);
                x.state = "attaching".into();
            })
            .await?;
            let cur = svc_instance(&self.svc, uuid).await?;
            let a = cur
                .volume_attachments
                .iter()
                .find(|a| a.id == bdm_id)
                .cloned()
                .ok_or_else(|| ComputeError::Internal("a volume mapping vanished".into()))?;
            self.connect_volume(&cur, &a, &c).await?;
            self.svc.volume.attachment_complete(&c, &aid).await?;
            self.update_bdm(uuid, &bdm_id, |x| x.state = "attached".into())
                .await?;
            tracing::info!(instance = %uuid, volume = %volume_id, %device, ?boot_index, "volume ready for the build");
        }
        Ok(())
    }

    /// At start: the volume operations a restart (or `kill -9`) cut short, from the record.
    /// An attach that had not reached the volume service is forgotten; one with its
    /// connection is plugged again (the driver does not plug a disk the guest already has) and
    /// completed, or undone; an interrupted detach leaves the volume attached (the user
    /// detaches again). Builds are not touched (they start over). Compute's own token.
    async fn finish_volume_steps(&self, i: &Instance, rid: &str) -> Result<()> {
        if i.vm_state == vm_state::BUILDING || i.task_state.as_deref() == Some(task_state::DELETING)
        {
            return Ok(());
        }
        let c = self.vcall(i, "", rid);
        for a in &i.volume_attachments {
            match a.state.as_str() {
                "reserving" => {
                    tracing::info!(instance = %i.uuid, volume = %a.volume_id, "forgetting an attach that never reserved its volume");
                    self.forget_bdm(&i.uuid, &a.id).await?;
                }
                "attaching" => {
                    let redo: Result<()> = async {
                        let a = if a.connection_info.is_object() {
                            a.clone()
                        } else {
                            self.connect_volume(i, a, &c).await?
                        };
                        self.driver
                            .attach_volume(&i.uuid, &a.driver_entry())
                            .await?;
                        if let Some(aid) = &a.attachment_id {
                            self.svc.volume.attachment_complete(&c, aid).await?;
                        }
                        Ok(())
                    }
                    .await;
                    match redo {
                        Ok(()) => {
                            tracing::info!(instance = %i.uuid, volume = %a.volume_id, "finished an attach a restart interrupted");
                            self.update_bdm(&i.uuid, &a.id, |b| b.state = "attached".into())
                                .await?;
                        }
                        Err(e) => {
                            tracing::warn!(instance = %i.uuid, volume = %a.volume_id, error = %e, "undoing an attach a restart interrupted");
                            let _ = self.driver.detach_volume(&i.uuid, &a.volume_id).await;
                            if let Some(aid) = &a.attachment_id {
                                self.svc.volume.attachment_delete(&c, aid).await?;
                            }
                            self.forget_bdm(&i.uuid, &a.id).await?;
                        }
                    }
                }
                "detaching" => {
                    self.update_bdm(&i.uuid, &a.id, |b| b.state = "attached".into())
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Poll a volume the build created until it is `available` (Nova's
    /// `_await_block_device_map_created`, `block_device_allocate_retries` times).
    async fn await_volume(&self, c: &VolumeCall<'_>, volume_id: &str) -> Result<()> {
        let cfg = &self.svc.cfg;
        let started = std::time::Instant::now();
        let mut status = String::new();
        for attempt in 1..=cfg.block_device_allocate_retries {
            if let Some(v) = self.svc.volume.get(c, volume_id).await? {
                status = v["status"].as_str().unwrap_or_default().to_string();
                match status.as_str() {
                    "available" => return Ok(()),
                    "error" | "error_restoring" | "error_extending" => break,
                    _ => {}
                }
            }
            if attempt < cfg.block_device_allocate_retries {
                // Quick first looks: a small image converts in well under a second.
                let wait = if attempt <= 10 {
                    Duration::from_millis(200).min(cfg.block_device_allocate_retries_interval)
                } else {
                    cfg.block_device_allocate_retries_interval
                };
                tokio::time::sleep(wait).await;
            }
        }
        Err(ComputeError::Failed(format!(
            "Volume {volume_id} did not finish being created even after we waited {} seconds or {} attempts. And its status is {status}.",
            started.elapsed().as_secs(),
            cfg.block_device_allocate_retries
        )))
    }

    // ------------------------------------------------------------ interfaces

    /// Nova's `attach_interface`: the network hook makes (or takes) the port and binds it to
    /// this host, with the wait for its `network-vif-plugged` registered first, as a build
    /// does; once it is plugged the driver hot-plugs it; then it joins the network info. A
    /// failure after the binding releases the port again. An event of the request's
    /// `attach_interface` action records it.
    pub async fn attach_interface(&self, msg: &AttachInterface, rid: &str) -> Result<Value> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let ev = svc
            .event_start(uuid, rid, EVENT_ATTACH_INTERFACE, Some(&self.host))
            .await?;
        let r = self.attach_steps(msg, rid).await;
        if let Err(e) = &r {
            tracing::warn!(instance = %uuid, error = %e, "interface attach failed");
        }
        svc.event_finish(ev, r.as_ref().err().map(|e| e.to_string()).as_deref())
            .await?;
        svc.action_finish(uuid, rid).await?;
        r
    }

    async fn attach_steps(&self, msg: &AttachInterface, rid: &str) -> Result<Value> {
        let svc = &self.svc;
        let uuid = &msg.instance_uuid;
        let i = svc
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let req = crate::neutron::Requested {
            network_id: msg.network_id.clone(),
            port_id: msg.port_id.clone(),
            fixed_ip: msg.fixed_ip.clone(),
            tag: msg.tag.clone(),
        };
        let (vif, waiter) = svc
            .network
            .allocate_port(svc, &i, &req, &msg.user_token, rid)
            .await?;
        let port_id = vif["id"].as_str().unwrap_or_default().to_string();
        let preserve = vif["preserve_on_delete"] == json!(true);
        let plugged = match waiter {
            Some(w) => self.wait_for_vifs(uuid, vec![(port_id.clone(), w)]).await,
            None => Ok(()),
        };
        let attached = match plugged {
            Ok(()) => self.driver.attach_interface(uuid, &vif).await.map_err(|e| {
                ComputeError::Failed(format!(
                    "Failed to attach network adapter device to {uuid}: {e}"
                ))
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = attached {
            if let Err(undo) = svc
                .network
                .deallocate_port(svc, &i, &port_id, preserve, rid)
                .await
            {
                tracing::warn!(instance = %uuid, port = %port_id, error = %undo, "port of a failed attach not released");
            }
            return Err(e);
        }
        self.record_vif(uuid, vif.clone()).await?;
        tracing::info!(instance = %uuid, port = %port_id, "interface attached");
        Ok(vif)
    }

    /// Nova's `detach_interface`: the driver unplugs the port, then the network hook releases
    /// it (the caller's unbound and kept, one compute made deleted), then it leaves the network
    /// info.
    async fn detach_interface(&self, i: &Instance, port_id: &str, rid: &str) -> Result<()> {
        let svc = &self.svc;
        let uuid = &i.uuid;
        let Some(vif) = i
            .network_info
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["id"].as_str() == Some(port_id))
        else {
            return Err(ComputeError::NotFound(format!(
                "Port {port_id} is not attached"
            )));
        };
        let preserve = vif["preserve_on_delete"] == json!(true)
            || crate::neutron::preserved_ports(i)
                .iter()
                .any(|p| p == port_id);
        self.driver
            .detach_interface(uuid, port_id)
            .await
            .map_err(|e| {
                ComputeError::Failed(format!(
                    "Failed to detach network adapter device from {uuid}: {e}"
                ))
            })?;
        svc.network
            .deallocate_port(svc, i, port_id, preserve, rid)
            .await?;
        let port = port_id.to_string();
        svc.update_instance(uuid, None, move |x| {
            if let Some(vifs) = x.network_info.as_array_mut() {
                vifs.retain(|v| v["id"].as_str() != Some(port.as_str()));
            }
            Ok(())
        })
        .await?;
        tracing::info!(instance = %uuid, port = %port_id, preserved = preserve, "interface detached");
        Ok(())
    }

    /// Put a port's VIF into the instance's network info (in place of the old one).
    async fn record_vif(&self, uuid: &str, vif: Value) -> Result<()> {
        self.svc
            .update_instance(uuid, None, move |x| {
                let mut vifs = x.network_info.as_array().cloned().unwrap_or_default();
                match vifs.iter_mut().find(|v| v["id"] == vif["id"]) {
                    Some(old) => *old = vif,
                    None => vifs.push(vif),
                }
                x.network_info = Value::Array(vifs);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Claim the resources of `i`'s (new) flavor on this host instead of what it holds.
    async fn reclaim(&self, i: &Instance, rid: &str) -> Result<()> {
        let node = store::list_nodes(self.svc.db.conn())
            .await?
            .into_iter()
            .find(|n| n.host == self.host)
            .ok_or_else(|| ComputeError::Internal(format!("no compute node for {}", self.host)))?;
        let (res, _) = ComputeService::resource_request(i);
        let resources: serde_json::Map<String, Value> =
            res.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let allocs = json!({ node.uuid: {"resources": resources} });
        if !self
            .svc
            .clients()?
            .replace_allocations(&i.uuid, &allocs, &i.project_id, &i.user_id, rid)
            .await?
        {
            return Err(ComputeError::NoValidHost(format!(
                "No valid host was found. {} has no room for flavor {}",
                self.host, i.flavor.name
            )));
        }
        Ok(())
    }

    async fn snapshot_to(&self, uuid: &str, image_id: &str, token: &str, rid: &str) -> Result<()> {
        let data = self.driver.snapshot(uuid).await?;
        let clients = self.svc.clients()?;
        if let Err(e) = clients
            .image_set_formats(
                token,
                image_id,
                &data.disk_format,
                &data.container_format,
                rid,
            )
            .await
        {
            clients.image_delete(token, image_id, rid).await;
            return Err(e);
        }
        if let Err(e) = clients.image_upload(token, image_id, data.data, rid).await {
            clients.image_delete(token, image_id, rid).await;
            return Err(e);
        }
        Ok(())
    }

    async fn offload(&self, i: &Instance, rid: &str) -> Result<()> {
        self.driver.destroy(&i.uuid).await?;
        // After the guest let go of its taps: the ports wait unbound for the next host.
        self.svc
            .network
            .unbind_for_offload(&self.svc, i, rid)
            .await?;
        self.svc.clients()?.release(&i.uuid, rid).await?;
        self.svc
            .update_instance(&i.uuid, None, |x| {
                x.vm_state = vm_state::SHELVED_OFFLOADED.into();
                x.task_state = None;
                x.host = None;
                x.node = None;
                x.power_state = PowerState::Shutdown.code();
                Ok(())
            })
            .await?;
        Ok(())
    }
}

impl ComputeAgent {
    /// External events for instances on this host (Nova's `external_instance_event`): each is
    /// recorded on its instance, a deleted port's vif leaves the network info, then whoever
    /// waits for the event (a build waiting for `network-vif-plugged`) gets it.
    pub async fn external_events(&self, msg: &ExternalInstanceEvents, rid: &str) -> Result<()> {
        for ev in &msg.events {
            let e = ev.clone();
            let host = self.host.clone();
            let r = self
                .svc
                .update_instance(&ev.instance_uuid, None, move |i| {
                    if e.name == "network-vif-deleted"
                        && let Some(port) = &e.tag
                        && let Some(vifs) = i.network_info.as_array_mut()
                    {
                        vifs.retain(|vif| vif["id"].as_str() != Some(port.as_str()));
                    }
                    i.external_events.push(RecordedEvent {
                        name: e.name,
                        status: e.status,
                        tag: e.tag,
                        host,
                        received_at: Utc::now(),
                    });
                    let n = i.external_events.len();
                    if n > MAX_RECORDED_EVENTS {
                        i.external_events.drain(..n - MAX_RECORDED_EVENTS);
                    }
                    Ok(())
                })
                .await;
            match r {
                Ok(_) | Err(ComputeError::NotFound(_)) => {}
                Err(err) => {
                    tracing::warn!(instance = %ev.instance_uuid, event = %ev.name, error = %err, "external event not recorded");
                }
            }
            tracing::info!(instance = %ev.instance_uuid, event = %ev.name, tag = ?ev.tag, status = %ev.status, host = %self.host, "external event received");
            self.svc.events.deliver(ev);
            if ev.name == "volume-extended"
                && let Some(volume_id) = &ev.tag
            {
                self.extend_volume(&ev.instance_uuid, volume_id, rid).await;
            }
        }
        Ok(())
    }

    /// Nova's `extend_volume`: the volume service grew an attached volume, so the guest's
    /// disk grows to the volume's new size. The outcome is the action's
    /// `compute_extend_volume` event; a failure leaves the guest at the old size (the volume
    /// keeps its new one, and the guest sees it at its next launch).
    async fn extend_volume(&self, uuid: &str, volume_id: &str, rid: &str) {
        let svc = &self.svc;
        let ev = match svc
            .event_start(uuid, rid, EVENT_EXTEND_VOLUME, Some(&self.host))
            .await
        {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(instance = %uuid, error = %e, "extend_volume event not recorded");
                None
            }
        };
        let r: Result<u64> = async {
            let i = svc_instance(svc, uuid).await?;
            if !i
                .volume_attachments
                .iter()
                .any(|a| a.volume_id == volume_id)
            {
                return Err(crate::core::volumes::not_attached(uuid, volume_id));
            }
            // The service's own token: the event carries no user's.
            let c = VolumeCall {
                svc,
                project_id: &i.project_id,
                token: None,
                request_id: rid,
            };
            let v = svc.volume.get(&c, volume_id).await?.ok_or_else(|| {
                ComputeError::Failed(format!("volume {volume_id} no longer exists"))
            })?;
            let gb = v["size"]
                .as_u64()
                .ok_or_else(|| ComputeError::Failed(format!("volume {volume_id} has no size")))?;
            let bytes = gb << 30;
            self.driver
                .extend_volume(uuid, volume_id, bytes)
                .await
                .map_err(|e| {
                    ComputeError::Failed(format!(
                        "Failed to extend volume {volume_id} of instance {uuid}: {e}"
                    ))
                })?;
            Ok(bytes)
        }
        .await;
        let error = match &r {
            Ok(bytes) => {
                tracing::info!(instance = %uuid, volume = %volume_id, bytes, "volume extended in the guest");
                None
            }
            Err(e) => {
                tracing::error!(instance = %uuid, volume = %volume_id, error = %e, "volume not extended in the guest");
                Some(e.to_string())
            }
        };
        if let Err(e) = svc.event_finish(ev, error.as_deref()).await {
            tracing::warn!(instance = %uuid, error = %e, "extend_volume event not finished");
        }
        let _ = svc.action_finish(uuid, rid).await;
    }
}

/// How an attach failure travels back to the API, which answers with the status the kind
/// names (`crate::rpc::AttachInterface`).
/// Failures inside kumo (database, bus, the network service) reach the caller as Nova's
/// InterfaceAttachFailed; the detail is in the log and the action's event.
fn attach_fault(uuid: &str, e: &ComputeError) -> bus::Fault {
    let kind = match e {
        ComputeError::BadRequest(_) => "BadRequest",
        ComputeError::NotFound(_) => "NotFound",
        ComputeError::Conflict(_) => "Conflict",
        ComputeError::Forbidden(_) | ComputeError::QuotaExceeded(_) => "Forbidden",
        ComputeError::Failed(m) => return bus::Fault::remote("InterfaceAttachFailed", m.clone()),
        _ => {
            return bus::Fault::remote(
                "InterfaceAttachFailed",
                format!("Failed to attach network adapter device to {uuid}"),
            );
        }
    };
    bus::Fault::remote(kind, e.to_string())
}

/// The agent's bus handler.
pub fn dispatcher(agent: Arc<ComputeAgent>) -> Dispatcher {
    let a1 = agent.clone();
    let a2 = agent.clone();
    let a3 = agent.clone();
    let a4 = agent.clone();
    let a5 = agent.clone();
    let a6 = agent.clone();
    let (a7, a8, a9, a10) = (agent.clone(), agent.clone(), agent.clone(), agent.clone());
    let (a11, a12, a13, a14) = (agent.clone(), agent.clone(), agent.clone(), agent.clone());
    Dispatcher::new()
        .on(move |meta: RequestMeta, msg: rpc::ColdMigration| {
            let a = a11.clone();
            async move {
                if let Err(e) = a.cold_migration(&msg, ComputeAgent::rid(&meta)).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "cold migration failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: rpc::FinishColdMigration| {
            let a = a12.clone();
            async move {
                a.finish_cold_migration(&msg, ComputeAgent::rid(&meta))
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationError", e.to_string()))
            }
        })
        .on(move |_meta: RequestMeta, msg: rpc::ConfirmMigrationAtSource| {
            let a = a13.clone();
            async move {
                a.confirm_migration_at_source(&msg)
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationError", e.to_string()))
            }
        })
        .on(move |meta: RequestMeta, msg: rpc::RevertMigrationAtSource| {
            let a = a14.clone();
            async move {
                a.revert_migration_at_source(&msg, ComputeAgent::rid(&meta))
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationError", e.to_string()))
            }
        })
        .on(move |meta: RequestMeta, msg: rpc::LiveMigration| {
            let a = a7.clone();
            async move {
                if let Err(e) = a.live_migration(&msg, ComputeAgent::rid(&meta)).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "live migration failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: rpc::PreLiveMigration| {
            let a = a8.clone();
            async move {
                a.pre_live_migration(&msg, ComputeAgent::rid(&meta))
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationPreCheckError", e.to_string()))
            }
        })
        .on(move |meta: RequestMeta, msg: rpc::PostLiveMigrationAtDestination| {
            let a = a9.clone();
            async move {
                a.post_live_migration_at_destination(&msg, ComputeAgent::rid(&meta))
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationError", e.to_string()))
            }
        })
        .on(move |_meta: RequestMeta, msg: rpc::RollbackLiveMigrationAtDestination| {
            let a = a10.clone();
            async move {
                a.rollback_live_migration_at_destination(&msg)
                    .await
                    .map_err(|e| bus::Fault::remote("MigrationError", e.to_string()))
            }
        })
        .on(move |meta: RequestMeta, msg: BuildAndRun| {
            let a = a1.clone();
            async move {
                tracing::info!("{}", crate::upgrade::build_served(meta.version, &a.host, &msg));
                if let Err(e) = a.build(&msg, ComputeAgent::rid(&meta)).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "build failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: Terminate| {
            let a = a2.clone();
            async move {
                let token = Some(msg.user_token.as_str()).filter(|t| !t.is_empty());
                if let Err(e) = a.terminate(&msg.instance_uuid, ComputeAgent::rid(&meta), token).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "delete failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: RunOperation| {
            let a = a3.clone();
            async move {
                if let Err(e) = a.run(&msg, ComputeAgent::rid(&meta)).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "server action failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: ExternalInstanceEvents| {
            let a = a4.clone();
            async move {
                if let Err(e) = a.external_events(&msg, ComputeAgent::rid(&meta)).await {
                    tracing::error!(error = %e, "external events failed");
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: AttachInterface| {
            let a = a6.clone();
            async move {
                a.attach_interface(&msg, ComputeAgent::rid(&meta))
                    .await
                    .map_err(|e| attach_fault(&msg.instance_uuid, &e))
            }
        })
        .on(move |_meta: RequestMeta, msg: ConsoleOutput| {
            let a = agent.clone();
            async move {
                a.driver
                    .console_output(&msg.instance_uuid, msg.length)
                    .await
                    .map_err(|e| bus::Fault::remote("ConsoleNotAvailable", e.to_string()))
            }
        })
        .on(move |_meta: RequestMeta, msg: GetVncConsole| {
            let a = a5.clone();
            async move {
                a.driver.vnc_target(&msg.instance_uuid).await.map_err(|e| {
                    // The kinds the API words as Nova does (501, 404); the rest is a 500.
                    let kind = match e {
                        DriverError::Unsupported(_) => "NotImplementedError",
                        DriverError::InstanceNotFound(_) => "InstanceNotFound",
                        DriverError::Failed { .. } | DriverError::ImageUnacceptable { .. } => {
                            "ConsoleNotAvailable"
                        }
                    };
                    bus::Fault::remote(kind, e.to_string())
                })
            }
        })
}
