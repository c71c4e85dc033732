//! Servers as the API asks for them: create (validate, quota, record, hand to the conductor),
//! delete, and the actions (state checks with Nova's messages, then a cast to the host).

use bus::{BusExt, Target};
use chrono::Utc;
use common::auth::AuthContext;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{self, Operation};
use crate::store;

/// What `POST /servers` asks for, after schema validation.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub description: Option<String>,
    pub image_ref: Option<String>,
    pub flavor_ref: String,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    pub min_count: u32,
    pub max_count: u32,
    pub networks: Value,
    pub block_device_mapping: Value,
    pub config_drive: bool,
    pub tags: Vec<String>,
    pub scheduler_hints: Value,
    pub security_groups: Vec<String>,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
}

/// Nova's hostname from a display name (`sanitize_hostname`).
pub fn sanitize_hostname(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c);
        } else if c == ' ' || c == '_' {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') || out.ends_with('.') {
        out.pop();
    }
    if out.is_empty() {
        "server".to_string()
    } else {
        out
    }
}

/// `http://.../images/<id>` or `<id>` -> the id.
fn image_id_from_href(href: &str) -> Result<String> {
    let id = href.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if uuid::Uuid::parse_str(id).is_ok() {
        Ok(id.to_string())
    } else {
        Err(ComputeError::bad("Invalid imageRef provided."))
    }
}

fn quota_message(overs: &[&str], req: &[i64], used: &[i64], allowed: &[i64]) -> String {
    let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let overs = overs.join(", ");
    format!(
        "Quota exceeded for {overs}: Requested {}, but already used {} of {} {overs}",
        join(req),
        join(used),
        join(allowed)
    )
}

impl ComputeService {
    /// The limit of `resource` for a project (project override, else the `default` class,
    /// else the configured default).
    pub async fn quota_limit(&self, project_id: &str, resource: &str) -> Result<i64> {
        let limits = self.quota_limits_of(project_id, &[resource]).await?;
        Ok(limits.first().copied().unwrap_or(-1))
    }

    /// [`Self::quota_limit`] of several resources, each table read once.
    pub async fn quota_limits_of(&self, project_id: &str, resources: &[&str]) -> Result<Vec<i64>> {
        let c = self.db.conn();
        let project = store::quota_limits(c, project_id, None).await?;
        let mut class = None;
        let mut out = Vec::with_capacity(resources.len());
        for resource in resources {
            if let Some((_, l)) = project.iter().find(|(r, _)| r == resource) {
                out.push(*l);
                continue;
            }
            if class.is_none() {
                class = Some(store::quota_class_limits(c, "default").await?);
            }
            if let Some((_, l)) = class.iter().flatten().find(|(r, _)| r == resource) {
                out.push(*l);
                continue;
            }
            out.push(
                self.cfg
                    .quota_defaults
                    .iter()
                    .find(|(r, _)| r == resource)
                    .map_or(-1, |(_, l)| *l),
            );
        }
        Ok(out)
    }

    /// How many of `count` servers of `flavor` fit the project's quota and, where the user has
    /// limits of their own (`os-quota-sets?user_id=`), the user's: Err when not even `min` fit,
    /// with Nova's message.
    async fn check_instance_quota(
        &self,
        project_id: &str,
        user_id: &str,
        flavor: &Flavor,
        min: u32,
        max: u32,
    ) -> Result<u32> {
        let c = self.db.conn();
        let usage = store::project_usage(c, project_id, None).await?;
        let limits = match self
            .quota_limits_of(project_id, &["instances", "cores", "ram"])
            .await?[..]
        {
            [instances, cores, ram] => [instances, cores, ram],
            _ => return Err(ComputeError::Internal("quota limits".into())),
        };
        let count = fit_quota(usage, limits, flavor, min, max)?;
        let own = store::quota_limits(c, project_id, Some(user_id)).await?;
        let own_limit = |r: &str| own.iter().find(|(k, _)| k == r).map(|(_, l)| *l);
        if ["instances", "cores", "ram"]
            .iter()
            .all(|r| own_limit(r).is_none())
        {
            return Ok(count);
        }
        let user_usage = store::project_usage(c, project_id, Some(user_id)).await?;
        // A user's missing limit is the project's.
        let user_limits = [
            own_limit("instances").unwrap_or(limits[0]),
            own_limit("cores").unwrap_or(limits[1]),
            own_limit("ram").unwrap_or(limits[2]),
        ];
        fit_quota(user_usage, user_limits, flavor, min, count)
    }

    /// A flavor the caller may use: public, or private with access for the project.
    pub async fn usable_flavor(&self, ctx: &AuthContext, flavorid: &str) -> Result<Option<Flavor>> {
        let Some(f) = store::flavors::get_flavor(self.db.conn(), flavorid).await? else {
            return Ok(None);
        };
        if f.is_public || ctx.has_role("admin") {
            return Ok(Some(f));
        }
        let projects = store::flavors::flavor_projects(self.db.conn(), f.id).await?;
        Ok(ctx
            .project_id()
            .is_some_and(|p| projects.iter().any(|x| x == p))
            .then_some(f))
    }

    /// `POST /servers`: validate, check quota, record the instances in BUILD/scheduling and
    /// hand them to the conductor. Returns the instances made.
    pub async fn create_servers(
        &self,
        ctx: &AuthContext,
        req: CreateRequest,
        request_id: &str,
        user_token: &str,
    ) -> Result<Vec<Instance>> {
        let project_id = ctx
            .project_id()
            .ok_or_else(|| ComputeError::forbidden("A project-scoped token is required."))?
            .to_string();
        self.authorize(
            ctx,
            "os_compute_api:servers:create",
            &json!({"project_id": project_id, "user_id": ctx.user_id,
                "availability_zone": req.availability_zone}),
        )?;
        if req
            .block_device_mapping
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            self.authorize(
                ctx,
                "os_compute_api:servers:create:attach_volume",
                &json!({"project_id": project_id, "user_id": ctx.user_id}),
            )?;
        }
        if req.networks.is_array() {
            self.authorize(
                ctx,
                "os_compute_api:servers:create:attach_network",
                &json!({"project_id": project_id, "user_id": ctx.user_id}),
            )?;
        }
        let flavor = self
            .usable_flavor(ctx, &req.flavor_ref)
            .await?
            .ok_or_else(|| {
                ComputeError::bad(format!("Flavor {} could not be found.", req.flavor_ref))
            })?;
        if flavor.disabled {
            return Err(ComputeError::bad(format!(
                "Flavor {} could not be found.",
                req.flavor_ref
            )));
        }

        // The image, as the caller sees it.
        let boots_from_volume = req
            .block_device_mapping
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| {
                (b["boot_index"].as_i64() == Some(0) || b["boot_index"].as_str() == Some("0"))
                    // OSC sends the image itself as a boot_index 0 mapping to a local disk.
                    && (b["destination_type"].as_str() == Some("volume")
                        || (b["destination_type"].is_null()
                            && b["source_type"].as_str() == Some("volume")))
            });
        let (image_ref, image_meta) = match req.image_ref.as_deref().filter(|s| !s.is_empty()) {
            Some(href) => {
                let id = image_id_from_href(href)?;
                let image = self
                    .clients()?
                    .image_get(user_token, &id, request_id)
                    .await?
                    .ok_or_else(|| ComputeError::bad("Can not find requested image"))?;
                if image["status"] != "active" {
                    return Err(ComputeError::bad(format!("Image {id} is not active.")));
                }
                let min_ram = image["min_ram"].as_i64().unwrap_or(0);
                if min_ram > flavor.memory_mb {
                    return Err(ComputeError::bad(
                        "Flavor's memory is too small for requested image.",
                    ));
                }
                let min_disk = image["min_disk"].as_i64().unwrap_or(0);
                let size = image["size"].as_i64().unwrap_or(0);
                if flavor.root_gb > 0
                    && !boots_from_volume
                    && (min_disk > flavor.root_gb || size > flavor.root_gb * (1 << 30))
                {
                    return Err(ComputeError::bad(
                        "Flavor's disk is too small for requested image.",
                    ));
                }
                (id, image)
            }
            None if boots_from_volume => (String::new(), json!({})),
            None => return Err(ComputeError::bad("Missing imageRef attribute")),
        };
        // A volume-backed server shows no image (Nova's `image: ""`); the image, if any, is in
        // its boot volume.
        let image_ref = if boots_from_volume {
            String::new()
        } else {
            image_ref
        };
        // The volumes a create names, as the caller sees them (Nova's _validate_bdm).
        for b in req.block_device_mapping.as_array().into_iter().flatten() {
            if b["source_type"].as_str() != Some("volume") {
                continue;
            }
            let vid = b["uuid"].as_str().unwrap_or_default();
            let call = crate::hooks::VolumeCall {
                svc: self,
                project_id: &project_id,
                token: Some(user_token),
                request_id,
            };
            let v = self.volume.get(&call, vid).await?.ok_or_else(|| {
                ComputeError::bad(format!(
                    "Block Device Mapping is Invalid: failed to get volume {vid}."
                ))
            })?;
            crate::cinder::check_attachable(&v)?;
        }

        // The networks and ports, as the caller sees them (Nova's validate_networks).
        self.network
            .validate(
                self,
                &crate::hooks::NetworkRequest {
                    project_id: &project_id,
                    requested: &req.networks,
                    max_count: req.max_count,
                    security_groups: &req.security_groups,
                },
                user_token,
                request_id,
            )
            .await?;

        let key = match &req.key_name {
            Some(name) => Some(
                store::flavors::get_keypair(self.db.conn(), &ctx.user_id, name)
                    .await?
                    .ok_or_else(|| ComputeError::bad("Invalid key_name provided."))?,
            ),
            None => None,
        };
        let md_limit = self.quota_limit(&project_id, "metadata_items").await?;
        if md_limit >= 0 && req.metadata.len() as i64 > md_limit {
            return Err(ComputeError::QuotaExceeded(format!(
                "Quota exceeded for metadata_items: Requested {}, but already used 0 of {md_limit} metadata_items",
                req.metadata.len()
            )));
        }
        if let Some(az) = &req.availability_zone {
            let zones = self.availability_zones().await?;
            let zone = az.split(':').next().unwrap_or(az);
            if !zone.is_empty() && !zones.iter().any(|(z, _)| z == zone) {
                return Err(ComputeError::bad(
                    "The requested availability zone is not available".to_string(),
                ));
            }
        }
        let group = match req.scheduler_hints.get("group").and_then(Value::as_str) {
            Some(g) => Some(
                store::get_group(self.db.conn(), g)
                    .await?
                    .filter(|grp| grp.project_id == project_id || ctx.has_role("admin"))
                    .ok_or_else(|| {
                        ComputeError::bad(format!("Instance group {g} could not be found."))
                    })?,
            ),
            None => None,
        };

        let count = self
            .check_instance_quota(
                &project_id,
                &ctx.user_id,
                &flavor,
                req.min_count,
                req.max_count,
            )
            .await?;
        if let Some(g) = &group {
            let lim = self
                .quota_limit(&project_id, "server_group_members")
                .await?;
            if lim >= 0 && g.members.len() as i64 + count as i64 > lim {
                return Err(ComputeError::QuotaExceeded(
                    "Quota exceeded, too many servers in group".into(),
                ));
            }
        }

        let now = Utc::now();
        let reservation_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut made = Vec::new();
        let txn = self.db.write().await?;
        for idx in 0..count {
            let uuid = uuid::Uuid::new_v4().to_string();
            let display_name = if count > 1 {
                format!("{}-{}", req.name, idx + 1)
            } else {
                req.name.clone()
            };
            let mut flavor_snapshot = flavor.clone();
            flavor_snapshot.id = 0;
            let inst = Instance {
                uuid: uuid.clone(),
                project_id: project_id.clone(),
                user_id: ctx.user_id.clone(),
                hostname: sanitize_hostname(&display_name),
                display_name,
                display_description: req.description.clone(),
                host: None,
                node: None,
                vm_state: vm_state::BUILDING.into(),
                task_state: Some(task_state::SCHEDULING.into()),
                power_state: 0,
                flavor: flavor_snapshot,
                old_flavor: None,
                new_flavor: None,
                image_ref: image_ref.clone(),
                image_meta: image_meta.clone(),
                key_name: key.as_ref().map(|k| k.name.clone()),
                key_data: key.as_ref().map(|k| k.public_key.clone()),
                user_data: req.user_data.clone(),
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
                availability_zone: req
                    .availability_zone
                    .clone()
                    .filter(|z| !z.is_empty())
                    .map(|z| z.split(':').next().unwrap_or(&z).to_string())
                    .or_else(|| self.cfg.default_schedule_zone.clone()),
                host_availability_zone: None,
                config_drive: req.config_drive || self.cfg.force_config_drive,
                guest_password: String::new(),
                locked: false,
                locked_by: None,
                locked_reason: None,
                access_ip_v4: req.access_ip_v4.clone(),
                access_ip_v6: req.access_ip_v6.clone(),
                launched_at: None,
                terminated_at: None,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                deleted: false,
                progress: 0,
                fault: None,
                requested_networks: req.networks.clone(),
                network_info: json!([]),
                block_device_mapping: req.block_device_mapping.clone(),
                security_groups: if req.security_groups.is_empty() {
                    vec!["default".into()]
                } else {
                    req.security_groups.clone()
                },
                reservation_id: reservation_id.clone(),
                launch_index: idx as i32,
                server_group: group.as_ref().map(|g| g.uuid.clone()),
                scheduler_hints: req.scheduler_hints.clone(),
                attempted_hosts: Vec::new(),
                shelved_image_id: None,
                volume_attachments: Vec::new(),
                external_events: Vec::new(),
            };
            store::insert_instance(&*txn, &inst).await?;
            store::insert_action(
                &*txn,
                &uuid,
                action::CREATE,
                request_id,
                &ctx.user_id,
                &project_id,
            )
            .await?;
            made.push(inst);
        }
        if let Some(mut g) = group {
            // Re-read inside the transaction: concurrent boots into one group.
            if let Some(cur) = store::get_group(&*txn, &g.uuid).await? {
                g = cur;
            }
            g.members.extend(made.iter().map(|i| i.uuid.clone()));
            store::save_group(&*txn, &g).await?;
        }
        txn.commit().await?;

        let msg = rpc::ScheduleAndBuild {
            instance_uuids: made.iter().map(|i| i.uuid.clone()).collect(),
            user_token: user_token.to_string(),
        };
        let cast = self
            .bus()?
            .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), request_id, &msg)
            .await;
        if let Err(e) = cast {
            // The records exist: put them in ERROR (deletable, counted) rather than leave them
            // building forever, and tell the caller the cloud could not take the request.
            tracing::error!(error = %e, instances = made.len(), "the build could not be handed to the conductor");
            for i in &made {
                self.set_error(
                    &i.uuid,
                    500,
                    "Build of instance could not start: the message bus was unreachable.",
                    &e.to_string(),
                )
                .await?;
            }
            return Err(e.into());
        }
        Ok(made)
    }

    /// The availability zones with their hosts (zone -> hosts), from the compute services and
    /// aggregates; every host without a zone is in `default_availability_zone`.
    pub async fn availability_zones(&self) -> Result<Vec<(String, Vec<String>)>> {
        let services = store::list_services(self.db.conn()).await?;
        let aggs = self.host_aggregates().await?;
        let mut zones: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in services.iter().filter(|s| s.binary == "nova-compute") {
            zones
                .entry(aggs.zone(&s.host))
                .or_default()
                .push(s.host.clone());
        }
        Ok(zones.into_iter().collect())
    }

    /// The zone of a host: the `availability_zone` of an aggregate it is in, else the
    /// default zone. For many hosts, load [`Self::host_aggregates`] once instead.
    pub async fn host_zone(&self, host: &str) -> Result<String> {
        Ok(self.host_aggregates().await?.zone(host))
    }

    /// A live instance the caller may see, or 404 (Nova answers 404 for other projects').
    pub async fn instance_for(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        policy: &str,
    ) -> Result<Instance> {
        let i = self
            .get_instance(uuid)
            .await?
            .filter(|i| !i.deleted)
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let target = json!({"project_id": i.project_id, "user_id": i.user_id});
        if let Err(e) = self.authorize(ctx, policy, &target) {
            // Other projects' servers do not exist for the caller.
            if ctx.project_id() != Some(i.project_id.as_str()) && !ctx.has_role("admin") {
                return Err(ComputeError::instance_not_found(uuid));
            }
            return Err(e);
        }
        Ok(i)
    }

    fn check_lock(&self, ctx: &AuthContext, i: &Instance) -> Result<()> {
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(&i.uuid));
        }
        Ok(())
    }

    /// Record a user-visible action on an instance.
    pub async fn record_action(
        &self,
        ctx: &AuthContext,
        i: &Instance,
        action: &str,
        request_id: &str,
    ) -> Result<()> {
        let txn = self.db.write().await?;
        store::insert_action(
            &*txn,
            &i.uuid,
            action,
            request_id,
            &ctx.user_id,
            ctx.project_id().unwrap_or(&i.project_id),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// `DELETE /servers/{id}`: from any state. An instance on no host goes at once; one on a
    /// host is handed to that host's agent, which destroys the guest and releases what it held.
    pub async fn delete_server(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        request_id: &str,
        user_token: &str,
    ) -> Result<()> {
        let i = self
            .instance_for(ctx, uuid, "os_compute_api:servers:delete")
            .await?;
        self.check_lock(ctx, &i)?;
        self.record_action(ctx, &i, action::DELETE, request_id)
            .await?;
        let i = self
            .update_instance(uuid, None, |i| {
                i.task_state = Some(task_state::DELETING.into());
                Ok(())
            })
            .await?;
        if let Some(host) = i.host.clone() {
            let msg = rpc::Terminate {
                instance_uuid: uuid.to_string(),
                user_token: user_token.to_string(),
            };
            match self
                .bus()?
                .cast_typed(&Target::server(rpc::COMPUTE_TOPIC, &host), request_id, &msg)
                .await
            {
                Ok(()) => return Ok(()),
                Err(bus::BusError::NoServer { .. }) => {
                    tracing::warn!(instance = %uuid, %host, "compute host is down: deleting locally");
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.local_delete(&i, request_id).await
    }

    /// Delete an instance no agent holds: release its claims and mark it deleted.
    pub async fn local_delete(&self, i: &Instance, request_id: &str) -> Result<()> {
        self.network.deallocate(self, i, request_id).await?;
        self.release_volumes(i, None, request_id).await?;
        self.clients()?.release(&i.uuid, request_id).await?;
        self.finish_delete(&i.uuid).await?;
        self.action_finish(&i.uuid, request_id).await
    }

    /// The last step of every delete: the row is kept as deleted (404 from now on), its
    /// group membership dropped.
    pub async fn finish_delete(&self, uuid: &str) -> Result<()> {
        let txn = self.db.write().await?;
        let Some(mut i) = store::get_instance(&*txn, uuid).await? else {
            return Ok(());
        };
        if i.deleted {
            return Ok(());
        }
        let now = Utc::now();
        i.deleted = true;
        i.deleted_at = Some(now);
        i.terminated_at = Some(now);
        i.vm_state = vm_state::DELETED.into();
        i.task_state = None;
        i.power_state = 0;
        i.updated_at = now;
        store::save_instance(&*txn, &i).await?;
        if let Some(g) = &i.server_group
            && let Some(mut grp) = store::get_group(&*txn, g).await?
        {
            grp.members.retain(|m| m != uuid);
            store::save_group(&*txn, &grp).await?;
        }
        // Console URLs handed out for it open nothing any more (Nova's
        // clean_console_auths_for_instance).
        store::console_tokens::delete_for_instance(&*txn, uuid).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Check the states of an action (Nova's `check_instance_state`), set its task state,
    /// record it and cast it to the instance's host.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_action(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        action_name: &str,
        policy: &str,
        vm_states: &[&str],
        task_states: &[Option<&str>],
        new_task_state: Option<&str>,
        operation: Operation,
        request_id: &str,
        user_token: &str,
    ) -> Result<Instance> {
        let i = self.instance_for(ctx, uuid, policy).await?;
        self.check_lock(ctx, &i)?;
        check_state(&i, action_name, vm_states, task_states)?;
        let i = self
            .update_instance(uuid, Some(task_states), |i| {
                check_state(i, action_name, vm_states, task_states)?;
                i.task_state = new_task_state.map(str::to_string);
                Ok(())
            })
            .await
            .map_err(|e| match e {
                ComputeError::Conflict(_) => ComputeError::invalid_state(
                    action_name,
                    uuid,
                    "task_state",
                    i.task_state.as_deref().unwrap_or("None"),
                ),
                other => other,
            })?;
        self.record_action(ctx, &i, action_name, request_id).await?;
        self.cast_operation(&i, operation, request_id, user_token)
            .await?;
        Ok(i)
    }

    pub async fn cast_operation(
        &self,
        i: &Instance,
        operation: Operation,
        request_id: &str,
        user_token: &str,
    ) -> Result<()> {
        let Some(host) = i.host.clone() else {
            return Err(ComputeError::conflict(format!(
                "Instance {} is not on a host.",
                i.uuid
            )));
        };
        let msg = rpc::RunOperation {
            instance_uuid: i.uuid.clone(),
            operation,
            user_token: user_token.to_string(),
        };
        match self
            .bus()?
            .cast_typed(&Target::server(rpc::COMPUTE_TOPIC, &host), request_id, &msg)
            .await
        {
            Ok(()) => Ok(()),
            Err(bus::BusError::NoServer { .. }) => {
                // Undo the task state: nothing will run it.
                let _ = self
                    .update_instance(&i.uuid, None, |x| {
                        x.task_state = None;
                        Ok(())
                    })
                    .await;
                Err(ComputeError::conflict(format!(
                    "Compute service of {host} is unavailable at this time."
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// How many of `max` servers of `flavor` fit `limits` (instances, cores, ram; -1 unlimited)
/// over `usage` (same order): at least `min`, else Nova's "Quota exceeded for ..." error.
fn fit_quota(
    usage: (i64, i64, i64),
    limits: [i64; 3],
    flavor: &Flavor,
    min: u32,
    max: u32,
) -> Result<u32> {
    let (n, cores, ram) = usage;
    let [lim_n, lim_c, lim_r] = limits;
    let fits = |k: i64| {
        (lim_n < 0 || n + k <= lim_n)
            && (lim_c < 0 || cores + k * flavor.vcpus <= lim_c)
            && (lim_r < 0 || ram + k * flavor.memory_mb <= lim_r)
    };
    let mut count = max as i64;
    while count >= min as i64 && !fits(count) {
        count -= 1;
    }
    if count >= min as i64 && count > 0 {
        return Ok(count as u32);
    }
    let k = min as i64;
    let mut overs = Vec::new();
    let mut req = Vec::new();
    let mut used = Vec::new();
    let mut allowed = Vec::new();
    if lim_c >= 0 && cores + k * flavor.vcpus > lim_c {
        overs.push("cores");
        req.push(k * flavor.vcpus);
        used.push(cores);
        allowed.push(lim_c);
    }
    if lim_n >= 0 && n + k > lim_n {
        overs.push("instances");
        req.push(k);
        used.push(n);
        allowed.push(lim_n);
    }
    if lim_r >= 0 && ram + k * flavor.memory_mb > lim_r {
        overs.push("ram");
        req.push(k * flavor.memory_mb);
        used.push(ram);
        allowed.push(lim_r);
    }
    Err(ComputeError::QuotaExceeded(quota_message(
        &overs, &req, &used, &allowed,
    )))
}

/// Nova's `check_instance_state`: the vm_state first, then the task_state.
pub fn check_state(
    i: &Instance,
    action_name: &str,
    vm_states: &[&str],
    task_states: &[Option<&str>],
) -> Result<()> {
    if !vm_states.is_empty() && !vm_states.contains(&i.vm_state.as_str()) {
        return Err(ComputeError::invalid_state(
            action_name,
            &i.uuid,
            "vm_state",
            &i.vm_state,
        ));
    }
    if !task_states.is_empty() && !task_states.contains(&i.task_state.as_deref()) {
        return Err(ComputeError::invalid_state(
            action_name,
            &i.uuid,
            "task_state",
            i.task_state.as_deref().unwrap_or("None"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_as_nova_makes_them() {
        assert_eq!(sanitize_hostname("My Server_1"), "my-server-1");
        assert_eq!(sanitize_hostname("--a.b--"), "a.b");
        assert_eq!(sanitize_hostname("日本"), "server");
    }

    #[test]
    fn quota_message_is_novas() {
        assert_eq!(
            quota_message(&["instances"], &[1], &[10], &[10]),
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
        );
    }
}
