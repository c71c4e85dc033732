//! The compute service: what the API asks for (no HTTP here), and the roles that carry it
//! out over the bus (conductor, scheduler, compute agents).

pub mod aggregates;
pub mod consoles;
pub mod evacuate;
pub mod events;
pub mod flavors;
pub mod groups;
pub mod images;
pub mod interfaces;
pub mod keypairs;
pub mod live_migration;
pub mod quotas;
pub mod security_groups;
pub mod servers;
pub mod services;
pub mod usage;
pub mod volumes;

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer, PolicyError};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

use crate::clients::ServiceClients;
use crate::config::ComputeConfig;
use crate::error::{ComputeError, Result};
use crate::hooks::{NetworkHook, VolumeHook};
use crate::model::*;
use crate::store;
use crate::store::EventRef;

pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

/// The events a build step ends and begins in its instance write.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepEvents<'a> {
    /// Events that end with this step (innermost first), all of one action.
    pub finish: &'a [Option<EventRef>],
    /// Why they failed, if they did.
    pub error: Option<&'a str>,
    /// The next event: (request id of its action, event, host).
    pub start: Option<(&'a str, &'a str, Option<&'a str>)>,
    /// The step is the action's last: it finishes with the events.
    pub finish_action: bool,
}

pub struct ComputeService {
    pub cfg: ComputeConfig,
    pub db: Database,
    pub enforcer: Enforcer,
    pub network: Arc<dyn NetworkHook>,
    pub volume: Arc<dyn VolumeHook>,
    /// Waiters for external instance events delivered to this process's agents.
    pub events: events::EventWaiters,
    bus: OnceLock<Arc<dyn bus::Bus>>,
    clients: OnceLock<Arc<ServiceClients>>,
    /// `[upgrade_levels] compute = auto`'s last reading (`crate::upgrade`).
    pub(crate) compute_rpc_cap: crate::upgrade::CapCache,
    /// (instance, request id) -> action id, see [`Self::action_id`].
    action_ids: parking_lot::Mutex<std::collections::HashMap<(String, String), i32>>,
}

/// How many action ids [`ComputeService::action_id`] remembers before starting afresh.
const ACTION_IDS_KEPT: usize = 4096;

impl ComputeService {
    /// Open the database (migrated) and the policy. The roles start with [`crate::roles::start`].
    pub async fn open(cfg: ComputeConfig) -> anyhow_free::Result<Arc<Self>> {
        let db = Database::connect(&cfg.database_url)
            .await
            .map_err(|e| ComputeError::Internal(e.to_string()))?;
        store::migrate(db.conn()).await?;
        let enforcer = load_policy(&cfg).map_err(ComputeError::Internal)?;
        let network = crate::hooks::network_hook(&cfg.network_hook);
        Ok(Arc::new(Self {
            cfg,
            db,
            enforcer,
            network,
            volume: Arc::new(crate::cinder::CinderVolumes),
            events: events::EventWaiters::default(),
            bus: OnceLock::new(),
            clients: OnceLock::new(),
            compute_rpc_cap: Default::default(),
            action_ids: Default::default(),
        }))
    }

    pub fn bus(&self) -> Result<&Arc<dyn bus::Bus>> {
        self.bus
            .get()
            .ok_or_else(|| ComputeError::Internal("the compute roles are not started".into()))
    }

    pub fn clients(&self) -> Result<&Arc<ServiceClients>> {
        self.clients
            .get()
            .ok_or_else(|| ComputeError::Internal("the compute roles are not started".into()))
    }

    pub(crate) fn attach(&self, bus: Arc<dyn bus::Bus>, clients: Arc<ServiceClients>) {
        let _ = self.bus.set(bus);
        let _ = self.clients.set(clients);
    }

    /// Check `action` for `ctx` against `target` (Nova's policy names).
    pub fn authorize(&self, ctx: &AuthContext, action: &str, target: &Value) -> Result<()> {
        let creds = Credentials::from_auth(ctx);
        debug_assert!(
            self.enforcer.is_registered(action),
            "policy {action} is not registered"
        );
        match self.enforcer.authorize(action, target, &creds) {
            Ok(()) => Ok(()),
            Err(PolicyError::Denied { .. } | PolicyError::InvalidScope { .. }) => {
                Err(ComputeError::policy(action))
            }
        }
    }

    /// Whether `ctx` passes `action` (for optional fields and filters).
    pub fn allowed(&self, ctx: &AuthContext, action: &str, target: &Value) -> bool {
        self.authorize(ctx, action, target).is_ok()
    }

    /// The policy target of a caller's own project.
    pub fn own_target(ctx: &AuthContext) -> Value {
        json!({"project_id": ctx.project_id(), "user_id": ctx.user_id})
    }

    // ------------------------------------------------------------ instance state

    /// Read-modify-write an instance in one write transaction. `expected` lists the task
    /// states the change is valid from (Nova's expected_task_state); a deleted instance is
    /// NotFound.
    pub async fn update_instance(
        &self,
        uuid: &str,
        expected: Option<&[Option<&str>]>,
        f: impl FnOnce(&mut Instance) -> Result<()>,
    ) -> Result<Instance> {
        let txn = self.db.write().await?;
        let mut i = store::get_instance(&*txn, uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        if let Some(exp) = expected
            && !exp.contains(&i.task_state.as_deref())
        {
            return Err(ComputeError::Conflict(format!(
                "Unexpected task state: expecting {:?} but the actual state is {}",
                exp,
                i.task_state.as_deref().unwrap_or("None")
            )));
        }
        f(&mut i)?;
        i.updated_at = chrono::Utc::now();
        store::save_instance(&*txn, &i).await?;
        txn.commit().await?;
        Ok(i)
    }

    /// [`Self::update_instance`] that also finishes events and starts the next in the same
    /// transaction: a build step is one write, not three.
    pub async fn step_instance(
        &self,
        uuid: &str,
        expected: &[Option<&str>],
        events: StepEvents<'_>,
        f: impl FnOnce(&mut Instance) -> Result<()>,
    ) -> Result<(Instance, Option<EventRef>)> {
        let txn = self.db.write().await?;
        // The finished events' action is touched once, with the next event's start when that
        // is of the same action (a build's steps are), or finished.
        let finished: Vec<EventRef> = events.finish.iter().flatten().copied().collect();
        for ev in &finished {
            store::finish_event(&*txn, ev.id, events.error).await?;
        }
        let failed = events.error.is_some();
        let mut untouched = finished.first().map(|ev| ev.action_id);
        let mut i = store::get_instance(&*txn, uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        if !expected.contains(&i.task_state.as_deref()) {
            // Keep the finished events: they happened.
            if let Some(action) = untouched {
                store::touch_action(&*txn, action, failed).await?;
            }
            txn.commit().await?;
            return Err(ComputeError::Conflict(format!(
                "Unexpected task state: expecting {:?} but the actual state is {}",
                expected,
                i.task_state.as_deref().unwrap_or("None")
            )));
        }
        f(&mut i)?;
        i.updated_at = chrono::Utc::now();
        store::save_instance(&*txn, &i).await?;
        let mut started = None;
        if let Some((request_id, event, host)) = events.start
            && let Some(action) = self.action_id(&*txn, uuid, request_id).await?
        {
            let ev = store::insert_event(&*txn, action, event, host).await?;
            let same_action = untouched.take_if(|a| *a == action).is_some();
            store::touch_action(&*txn, action, failed && same_action).await?;
            started = Some(ev);
        }
        if let Some(action) = untouched {
            if events.finish_action {
                store::action_finish(&*txn, action).await?;
            } else {
                store::touch_action(&*txn, action, failed).await?;
            }
        }
        txn.commit().await?;
        Ok((i, started))
    }

    pub async fn get_instance(&self, uuid: &str) -> Result<Option<Instance>> {
        store::get_instance(self.db.conn(), uuid).await
    }

    /// Every instance that is not deleted (host tools such as `kumo ssh`; no policy).
    pub async fn live_instances(&self) -> Result<Vec<Instance>> {
        store::list_instances(self.db.conn(), &store::InstanceQuery::default()).await
    }

    /// Put an instance in ERROR with a fault naming the step, as Nova's
    /// `_set_instance_obj_error_state` + `add_instance_fault_from_exc`.
    pub async fn set_error(
        &self,
        uuid: &str,
        code: u16,
        message: &str,
        details: &str,
    ) -> Result<()> {
        let r = self
            .update_instance(uuid, None, |i| {
                if i.task_state.as_deref() == Some(task_state::DELETING) {
                    // Being deleted: the delete wins over the error.
                    return Ok(());
                }
                i.vm_state = vm_state::ERROR.into();
                i.task_state = None;
                i.fault = Some(InstanceFault {
                    code,
                    message: message.to_string(),
                    details: details.to_string(),
                    created: chrono::Utc::now(),
                });
                Ok(())
            })
            .await;
        match r {
            Ok(_) | Err(ComputeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------ actions and events

    /// Start an event of the action that `request_id` made on `uuid`.
    pub async fn event_start(
        &self,
        uuid: &str,
        request_id: &str,
        event: &str,
        host: Option<&str>,
    ) -> Result<Option<EventRef>> {
        let started = self.events_start(uuid, request_id, &[event], host).await?;
        Ok(started.into_iter().next().flatten())
    }

    pub async fn event_finish(&self, event: Option<EventRef>, error: Option<&str>) -> Result<()> {
        self.events_finish(&[event], error).await
    }

    /// The action `request_id` made on `uuid`, remembered: a build starts six events of one
    /// action, in this process or another, and an action's id never changes.
    async fn action_id(
        &self,
        c: &impl sea_orm::ConnectionTrait,
        uuid: &str,
        request_id: &str,
    ) -> Result<Option<i32>> {
        let key = (uuid.to_string(), request_id.to_string());
        if let Some(id) = self.action_ids.lock().get(&key) {
            return Ok(Some(*id));
        }
        let id = store::find_action_id(c, uuid, request_id).await?;
        if let Some(id) = id {
            let mut known = self.action_ids.lock();
            if known.len() >= ACTION_IDS_KEPT {
                known.clear();
            }
            known.insert(key, id);
        }
        Ok(id)
    }

    /// Start several events of one action in one write (the conductor's schedule and
    /// select-destinations), in order.
    pub async fn events_start(
        &self,
        uuid: &str,
        request_id: &str,
        events: &[&str],
        host: Option<&str>,
    ) -> Result<Vec<Option<EventRef>>> {
        let txn = self.db.write().await?;
        let Some(action) = self.action_id(&*txn, uuid, request_id).await? else {
            return Ok(vec![None; events.len()]);
        };
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(Some(store::insert_event(&*txn, action, event, host).await?));
        }
        store::touch_action(&*txn, action, false).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// Finish several events of one action in one write, innermost first.
    pub async fn events_finish(
        &self,
        events: &[Option<EventRef>],
        error: Option<&str>,
    ) -> Result<()> {
        let evs: Vec<EventRef> = events.iter().flatten().copied().collect();
        let Some(first) = evs.first() else {
            return Ok(());
        };
        let txn = self.db.write().await?;
        for ev in &evs {
            store::finish_event(&*txn, ev.id, error).await?;
        }
        store::touch_action(&*txn, first.action_id, error.is_some()).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Mark the action of `request_id` on `uuid` finished.
    pub async fn action_finish(&self, uuid: &str, request_id: &str) -> Result<()> {
        let txn = self.db.write().await?;
        if let Some(action) = self.action_id(&*txn, uuid, request_id).await? {
            store::action_finish(&*txn, action).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// The error type `open` returns (kept free of anyhow: this is a library).
pub mod anyhow_free {
    pub type Result<T> = std::result::Result<T, crate::error::ComputeError>;
}

fn load_policy(cfg: &ComputeConfig) -> std::result::Result<Enforcer, String> {
    let mut b = Enforcer::builder()
        .defaults_yaml(POLICY_DEFAULTS)
        .map_err(|e| e.to_string())?
        .enforce_scope(cfg.enforce_scope);
    if cfg.policy_file.exists() {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("cannot read {}: {e}", cfg.policy_file.display()))?;
        b = b
            .overrides_file(&text)
            .map_err(|e| format!("{}: {e}", cfg.policy_file.display()))?;
        tracing::info!(file = %cfg.policy_file.display(), "compute policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}

/// devstack's flavors, which `kumo up --demo` adds: (id, name, RAM MiB, disk GiB, vCPUs).
pub const DEMO_FLAVORS: &[(&str, &str, i64, i64, i64)] = &[
    ("42", "m1.nano", 192, 1, 1),
    ("84", "m1.micro", 256, 1, 1),
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 20, 1),
    ("3", "m1.medium", 4096, 40, 2),
    ("4", "m1.large", 8192, 80, 4),
];

impl ComputeService {
    /// Add the demo flavors that are missing (by id or by name); returns the names added.
    pub async fn ensure_demo_flavors(&self) -> Result<Vec<String>> {
        let txn = self.db.write().await?;
        let mut added = Vec::new();
        for (id, name, ram, disk, vcpus) in DEMO_FLAVORS {
            if store::flavors::get_flavor(&*txn, id).await?.is_some()
                || store::flavors::get_flavor_by_name(&*txn, name)
                    .await?
                    .is_some()
            {
                continue;
            }
            store::flavors::insert_flavor(
                &*txn,
                &Flavor {
                    id: 0,
                    flavorid: id.to_string(),
                    name: name.to_string(),
                    memory_mb: *ram,
                    vcpus: *vcpus,
                    root_gb: *disk,
                    ephemeral_gb: 0,
                    swap: 0,
                    rxtx_factor: 1.0,
                    is_public: true,
                    disabled: false,
                    description: None,
                    extra_specs: Default::default(),
                    created_at: None,
                    updated_at: None,
                },
            )
            .await?;
            added.push(name.to_string());
        }
        txn.commit().await?;
        Ok(added)
    }
}
