//! The conductor role: takes new instances from the API, asks the scheduler for a host for
//! each, and hands them to that host's compute agent; takes failed builds back for another
//! host until `max_attempts`; at start, re-drives instances a crash left unscheduled.

use bus::{BusError, BusExt, Dispatcher, RequestMeta, Target};
use std::sync::Arc;

use crate::core::ComputeService;
use crate::error::Result;
use crate::model::*;
use crate::rpc::{
    self, BuildAndRun, EvacuateInstance, LiveMigrateInstance, ScheduleAndBuild, SelectDestination,
    UnshelveInstance,
};

pub const EVENT_SCHEDULE: &str = "conductor_schedule_and_build_instances";
pub const EVENT_UNSHELVE: &str = "conductor_unshelve_instance";
pub const EVENT_SELECT: &str = "scheduler_select_destinations";

impl ComputeService {
    /// Schedule one instance: a host, the instance's `host`, a cast to that host.
    async fn schedule_one(&self, uuid: &str, user_token: &str, request_id: &str) -> Result<()> {
        let Some(i) = self.get_instance(uuid).await?.filter(|i| !i.deleted) else {
            return Ok(());
        };
        if i.task_state.as_deref() != Some(task_state::SCHEDULING) {
            // Deleted (task_state deleting) or already elsewhere: nothing to do.
            return Ok(());
        }
        let max = self.cfg.max_attempts as usize;
        let exhausted = i.attempted_hosts.len() >= max;
        // The select event starts with the schedule event (one write) unless there is
        // nothing left to select from.
        let events: &[&str] = if exhausted {
            &[EVENT_SCHEDULE]
        } else {
            &[EVENT_SCHEDULE, EVENT_SELECT]
        };
        let started = self.events_start(uuid, request_id, events, None).await?;
        let ev = started.first().copied().flatten();
        let sel = started.get(1).copied().flatten();
        if exhausted {
            let msg = format!(
                "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {uuid}."
            );
            self.event_finish(ev, Some(&msg)).await?;
            // The details name the hosts and the last failure with its step, e.g. "Build of
            // instance X failed at step spawning on fake-3: ...".
            let mut details = format!("tried: {}", i.attempted_hosts.join(", "));
            if let Some(a) = crate::store::find_action(self.db.conn(), uuid, request_id).await? {
                // newest first
                let last = crate::store::list_events(self.db.conn(), a.id)
                    .await?
                    .into_iter()
                    .filter(|e| e.result.as_deref() == Some("Error"))
                    .find_map(|e| e.traceback.filter(|t| t.starts_with("Build of instance")));
                if let Some(t) = last {
                    details = format!("{details}; last failure: {t}");
                }
            }
            self.set_error(uuid, 500, &msg, &details).await?;
            return self.action_finish(uuid, request_id).await;
        }
        let msg = SelectDestination {
            instance_uuid: uuid.to_string(),
            exclude_hosts: i.attempted_hosts.clone(),
            requested_host: None,
            move_allocation: false,
            migration_uuid: None,
        };
        let r = self
            .bus()?
            .call_typed(
                &Target::topic(rpc::SCHEDULER_TOPIC),
                request_id,
                &msg,
                bus::DEFAULT_CALL_TIMEOUT,
            )
            .await;
        let dest = match r {
            Ok(d) => d,
            Err(e) => {
                let (message, details) = match &e {
                    BusError::Remote { kind, message } if kind == "NoValidHost" => (
                        format!("No valid host was found. {message}"),
                        "scheduling (steps 3-12): no host passed the filters with room in placement".to_string(),
                    ),
                    other => (
                        format!("Scheduling failed: {other}"),
                        "scheduling (steps 3-12)".to_string(),
                    ),
                };
                self.events_finish(&[sel, ev], Some(&message)).await?;
                // Nova's NoValidHost fault carries code 500.
                self.set_error(uuid, 500, &message, &details).await?;
                return self.action_finish(uuid, request_id).await;
            }
        };
        self.events_finish(&[sel, ev], None).await?;
        let cast = BuildAndRun {
            instance_uuid: uuid.to_string(),
            user_token: user_token.to_string(),
            #[cfg(feature = "rpc-next")]
            node: Some(dest.node.clone()),
        };
        // Under the version cap: an agent still at an older build gets what it serves.
        if let Err(e) = self.cast_compute(&dest.host, request_id, &cast).await {
            let message = format!(
                "The compute service of {} did not take the build: {e}",
                dest.host
            );
            self.clients()?.release(uuid, request_id).await?;
            self.set_error(uuid, 500, &message, "scheduling").await?;
            return self.action_finish(uuid, request_id).await;
        }
        Ok(())
    }

    async fn unshelve(&self, uuid: &str, user_token: &str, request_id: &str) -> Result<()> {
        let ev = self
            .event_start(uuid, request_id, EVENT_UNSHELVE, None)
            .await?;
        let msg = SelectDestination {
            instance_uuid: uuid.to_string(),
            exclude_hosts: vec![],
            requested_host: None,
            move_allocation: false,
            migration_uuid: None,
        };
        let r = self
            .bus()?
            .call_typed(
                &Target::topic(rpc::SCHEDULER_TOPIC),
                request_id,
                &msg,
                bus::DEFAULT_CALL_TIMEOUT,
            )
            .await;
        match r {
            Ok(dest) => {
                self.event_finish(ev, None).await?;
                let i = self
                    .get_instance(uuid)
                    .await?
                    .ok_or_else(|| crate::error::ComputeError::instance_not_found(uuid))?;
                let _ = dest;
                self.cast_operation(&i, rpc::Operation::Unshelve, request_id, user_token)
                    .await
            }
            Err(e) => {
                let message = match &e {
                    BusError::Remote { kind, message } if kind == "NoValidHost" => {
                        format!("No valid host was found. {message}")
                    }
                    other => other.to_string(),
                };
                self.event_finish(ev, Some(&message)).await?;
                // Nova leaves the server shelved-offloaded when no host has room.
                let _ = self
                    .update_instance(uuid, None, |i| {
                        i.task_state = None;
                        Ok(())
                    })
                    .await;
                self.action_finish(uuid, request_id).await
            }
        }
    }

    /// At start: instances that were waiting for a host when kumo stopped are scheduled
    /// again (their claim, if one was made, is released first). A build that has a host which
    /// runs here is its compute agent's to resume (`reconcile`), even while it is still in
    /// `scheduling`; a build on a host that no longer runs here is scheduled again.
    pub async fn recover_unscheduled(&self, live_hosts: &[String]) -> Result<()> {
        // Deletes of instances on no host that a stop interrupted.
        for i in crate::store::list_instances(self.db.conn(), &Default::default()).await? {
            if i.host.is_none() && i.task_state.as_deref() == Some(task_state::DELETING) {
                let request_id = crate::store::list_actions(self.db.conn(), &i.uuid)
                    .await?
                    .into_iter()
                    .find(|a| a.action == action::DELETE)
                    .map(|a| a.request_id)
                    .unwrap_or_else(bus::new_request_id);
                tracing::info!(instance = %i.uuid, "finishing a delete interrupted by a restart");
                self.local_delete(&i, &request_id).await?;
            }
        }
        let q = crate::store::InstanceQuery {
            vm_states: Some(vec![vm_state::BUILDING.into()]),
            ..Default::default()
        };
        let waiting: Vec<Instance> = crate::store::list_instances(self.db.conn(), &q)
            .await?
            .into_iter()
            .filter(|i| {
                i.task_state.as_deref() != Some(task_state::DELETING)
                    && i.host.as_ref().is_none_or(|h| !live_hosts.contains(h))
            })
            .collect();
        for i in waiting {
            let request_id = bus::new_request_id();
            tracing::info!(instance = %i.uuid, "re-scheduling an instance left waiting for a host by a restart");
            self.clients()?.release(&i.uuid, &request_id).await?;
            let i = self
                .update_instance(&i.uuid, None, |x| {
                    x.host = None;
                    x.node = None;
                    x.task_state = Some(task_state::SCHEDULING.into());
                    Ok(())
                })
                .await?;
            // The action of the original request gets the new events.
            let req = crate::store::list_actions(self.db.conn(), &i.uuid)
                .await?
                .into_iter()
                .find(|a| a.action == action::CREATE)
                .map(|a| a.request_id)
                .unwrap_or(request_id);
            // The user's token may be gone: building does not need it unless the image must
            // be fetched, and the image was checked at create.
            if let Err(e) = self.schedule_one(&i.uuid, "", &req).await {
                tracing::error!(instance = %i.uuid, error = %e, "re-scheduling failed");
                self.set_error(
                    &i.uuid,
                    500,
                    &format!("Re-scheduling after a restart failed: {e}"),
                    "scheduling",
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The conductor's bus handler.
pub fn dispatcher(svc: Arc<ComputeService>) -> Dispatcher {
    let s1 = svc.clone();
    let s2 = svc.clone();
    let s3 = svc.clone();
    let s4 = svc.clone();
    Dispatcher::new()
        .on(move |meta: RequestMeta, msg: rpc::MigrateInstance| {
            let svc = s4.clone();
            async move {
                if let Err(e) = svc.cold_migrate(&msg, &meta.request_id).await {
                    let why = format!("Migration failed: {e}");
                    if let Ok(m) = svc.migration(msg.migration_id).await {
                        let _ = svc.migration_failed(&m, &meta.request_id, &why).await;
                    }
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: LiveMigrateInstance| {
            let svc = s3.clone();
            async move {
                if let Err(e) = svc.live_migrate(&msg, &meta.request_id).await {
                    let why = format!("Live migration failed: {e}");
                    if let Ok(m) = svc.migration(msg.migration_id).await {
                        let _ = svc.migration_failed(&m, &meta.request_id, &why).await;
                    }
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: EvacuateInstance| {
            let svc = s2.clone();
            async move {
                if let Err(e) = svc.evacuate(&msg, &meta.request_id).await {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "evacuation failed");
                    let _ = svc.migration_status(msg.migration_id, "error", None).await;
                    let _ = svc
                        .set_error(
                            &msg.instance_uuid,
                            500,
                            &format!("Evacuation failed: {e}"),
                            "evacuate",
                        )
                        .await;
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: ScheduleAndBuild| {
            let svc = s1.clone();
            async move {
                for uuid in &msg.instance_uuids {
                    if let Err(e) = svc
                        .schedule_one(uuid, &msg.user_token, &meta.request_id)
                        .await
                    {
                        tracing::error!(instance = %uuid, error = %e, "scheduling failed");
                        let _ = svc
                            .set_error(uuid, 500, &format!("Scheduling failed: {e}"), "scheduling")
                            .await;
                    }
                }
                Ok(())
            }
        })
        .on(move |meta: RequestMeta, msg: UnshelveInstance| {
            let svc = svc.clone();
            async move {
                if let Err(e) = svc
                    .unshelve(&msg.instance_uuid, &msg.user_token, &meta.request_id)
                    .await
                {
                    tracing::error!(instance = %msg.instance_uuid, error = %e, "unshelve failed");
                }
                Ok(())
            }
        })
}
