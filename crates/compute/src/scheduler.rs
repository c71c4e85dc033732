//! The scheduler role: placement's allocation candidates, then filters and weighers over the
//! hosts behind them, then a claim (`PUT /allocations/{instance}`) on the best host that
//! still has room. Decisions run side by side (placement's claims keep a host from being
//! overfilled: a claim that lost the race moves on to the next host), except for the members of
//! one server group, which are decided one at a time so that each sees where the others went.

use bus::{Dispatcher, RequestMeta};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use crate::core::ComputeService;
use crate::core::aggregates::extra_specs_pass;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{Destination, SelectDestination};
use crate::store;

/// One host that placement says has room, with what the filters and weighers look at.
#[derive(Debug, Clone)]
pub struct HostState {
    pub host: String,
    pub node: String,
    pub rp_uuid: String,
    pub zone: String,
    pub service_up: bool,
    pub service_enabled: bool,
    pub hypervisor_type: String,
    pub free_ram_mb: f64,
    pub free_vcpus: f64,
    pub free_disk_gb: f64,
    /// Instances of the request's server group on this host.
    pub group_members_here: usize,
    /// The union of the metadata of the host's aggregates (key -> values).
    pub aggregate_metadata: BTreeMap<String, BTreeSet<String>>,
    /// The candidate's allocation request body.
    pub allocation: Value,
}

/// What the filters check against.
pub struct RequestSpec<'a> {
    pub instance: &'a Instance,
    pub group: Option<&'a ServerGroup>,
    /// Hosts the group's other members are on.
    pub group_hosts: Vec<String>,
    pub same_host: Vec<String>,
    pub different_host: Vec<String>,
}

pub type Filter = fn(&HostState, &RequestSpec) -> bool;

/// A filter by its nova.conf name.
pub fn filter_by_name(name: &str) -> Option<Filter> {
    Some(match name {
        "ComputeFilter" => |h, _| h.service_up && h.service_enabled,
        "AvailabilityZoneFilter" => |h, s| {
            s.instance
                .availability_zone
                .as_deref()
                .is_none_or(|z| z == h.zone)
        },
        "ImagePropertiesFilter" => |h, s| {
            let props = &s.instance.image_meta;
            let arch_ok = props["hw_architecture"]
                .as_str()
                .or(props["architecture"].as_str())
                .is_none_or(|a| a == "x86_64" || a == "i686");
            let hv_ok = props["img_hv_type"]
                .as_str()
                .or(props["hypervisor_type"].as_str())
                .is_none_or(|t| t.eq_ignore_ascii_case(&h.hypervisor_type));
            arch_ok && hv_ok
        },
        "ServerGroupAntiAffinityFilter" => |h, s| match s.group {
            Some(g) if g.policy == "anti-affinity" => {
                let max = g
                    .rules
                    .get("max_server_per_host")
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as usize;
                s.group_hosts.iter().filter(|x| **x == h.host).count() < max
            }
            _ => true,
        },
        "ServerGroupAffinityFilter" => |h, s| match s.group {
            Some(g) if g.policy == "affinity" => {
                s.group_hosts.is_empty() || s.group_hosts.contains(&h.host)
            }
            _ => true,
        },
        "SameHostFilter" => |h, s| s.same_host.is_empty() || s.same_host.contains(&h.host),
        "DifferentHostFilter" => |h, s| !s.different_host.contains(&h.host),
        "AggregateInstanceExtraSpecsFilter" => {
            |h, s| extra_specs_pass(&s.instance.flavor.extra_specs, &h.aggregate_metadata)
        }
        _ => return None,
    })
}

fn normalize(values: &[f64]) -> Vec<f64> {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    values
        .iter()
        .map(|v| {
            if max > min {
                (v - min) / (max - min)
            } else {
                0.0
            }
        })
        .collect()
}

impl ComputeService {
    /// Weigh hosts (Nova's weighers: RAM, CPU, disk, soft (anti-)affinity), best first.
    pub fn weigh(&self, hosts: &mut Vec<HostState>, spec: &RequestSpec) {
        let cfg = &self.cfg;
        let ram = normalize(&hosts.iter().map(|h| h.free_ram_mb).collect::<Vec<_>>());
        let cpu = normalize(&hosts.iter().map(|h| h.free_vcpus).collect::<Vec<_>>());
        let disk = normalize(&hosts.iter().map(|h| h.free_disk_gb).collect::<Vec<_>>());
        let members = normalize(
            &hosts
                .iter()
                .map(|h| h.group_members_here as f64)
                .collect::<Vec<_>>(),
        );
        let policy = spec.group.map(|g| g.policy.as_str()).unwrap_or("");
        let mut weighted: Vec<(f64, HostState)> = hosts
            .drain(..)
            .enumerate()
            .map(|(i, h)| {
                let mut w = cfg.ram_weight_multiplier * ram[i]
                    + cfg.cpu_weight_multiplier * cpu[i]
                    + cfg.disk_weight_multiplier * disk[i];
                match policy {
                    "soft-affinity" => w += cfg.soft_affinity_weight_multiplier * members[i],
                    "soft-anti-affinity" => {
                        w -= cfg.soft_anti_affinity_weight_multiplier * members[i]
                    }
                    _ => {}
                }
                (w, h)
            })
            .collect();
        weighted.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.host.cmp(&b.1.host)));
        hosts.extend(weighted.into_iter().map(|(_, h)| h));
    }

    /// Resources an instance asks placement for (flavor, with `resources:*` extra specs
    /// overriding), and the traits it requires.
    pub fn resource_request(i: &Instance) -> (Vec<(String, i64)>, Vec<String>) {
        let f = &i.flavor;
        let boots_from_volume = i.image_ref.is_empty();
        let disk =
            if boots_from_volume { 0 } else { f.root_gb } + f.ephemeral_gb + (f.swap + 1023) / 1024;
        let mut res: BTreeMap<String, i64> = BTreeMap::new();
        res.insert("VCPU".into(), f.vcpus);
        res.insert("MEMORY_MB".into(), f.memory_mb);
        res.insert("DISK_GB".into(), disk);
        let mut traits = Vec::new();
        for (k, v) in &f.extra_specs {
            if let Some(rc) = k.strip_prefix("resources:") {
                if let Ok(n) = v.parse::<i64>() {
                    res.insert(rc.to_string(), n);
                }
            } else if let Some(t) = k.strip_prefix("trait:") {
                match v.as_str() {
                    "required" => traits.push(t.to_string()),
                    "forbidden" => traits.push(format!("!{t}")),
                    _ => {}
                }
            }
        }
        (res.into_iter().filter(|(_, n)| *n > 0).collect(), traits)
    }

    /// Pick a host for instance `i` and claim its resources there; the host's zone with it.
    pub async fn select_destination(
        &self,
        msg: &SelectDestination,
        i: &Instance,
        request_id: &str,
    ) -> Result<(Destination, String)> {
        let clients = self.clients()?;
        let (resources, traits) = Self::resource_request(i);
        let res_refs: Vec<(&str, i64)> = resources.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let candidates = clients
            .allocation_candidates(
                &res_refs,
                &traits,
                None,
                self.cfg.max_placement_results,
                request_id,
            )
            .await?;
        let no_room = || ComputeError::NoValidHost("There are not enough hosts available.".into());
        let summaries = &candidates["provider_summaries"];
        let nodes: HashMap<String, ComputeNode> = store::list_nodes(self.db.conn())
            .await?
            .into_iter()
            .map(|n| (n.uuid.clone(), n))
            .collect();
        let services: HashMap<String, Service> = store::list_services(self.db.conn())
            .await?
            .into_iter()
            .filter(|s| s.binary == "nova-compute")
            .map(|s| (s.host.clone(), s))
            .collect();
        let group = match &i.server_group {
            Some(g) => store::get_group(self.db.conn(), g).await?,
            None => None,
        };
        let hinted = |key: &str| -> Vec<String> {
            match &i.scheduler_hints[key] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => vec![],
            }
        };
        // Only the instances the filters look at: the group's members and the hinted ones.
        let mut wanted: Vec<String> = group
            .as_ref()
            .map(|g| g.members.clone())
            .unwrap_or_default();
        wanted.extend(hinted("same_host"));
        wanted.extend(hinted("different_host"));
        wanted.retain(|u| *u != i.uuid);
        let related = if wanted.is_empty() {
            Vec::new()
        } else {
            store::list_instances(
                self.db.conn(),
                &store::InstanceQuery {
                    uuids: Some(wanted),
                    ..Default::default()
                },
            )
            .await?
        };
        let group_hosts: Vec<String> = group
            .as_ref()
            .map(|g| {
                related
                    .iter()
                    .filter(|x| g.members.contains(&x.uuid))
                    .filter_map(|x| x.host.clone())
                    .collect()
            })
            .unwrap_or_default();
        let hosts_of = |key: &str| -> Vec<String> {
            let ids = hinted(key);
            related
                .iter()
                .filter(|x| ids.contains(&x.uuid))
                .filter_map(|x| x.host.clone())
                .collect()
        };
        let spec = RequestSpec {
            instance: i,
            group: group.as_ref(),
            group_hosts,
            same_host: hosts_of("same_host"),
            different_host: hosts_of("different_host"),
        };
        // One load of the aggregates for every host's zone and metadata.
        let aggs = self.host_aggregates().await?;
        let now = chrono::Utc::now();
        let mut hosts = Vec::new();
        for areq in candidates["allocation_requests"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(allocs) = areq["allocations"].as_object() else {
                continue;
            };
            // The compute node among the providers of this candidate.
            let Some((rp, node)) = allocs
                .keys()
                .find_map(|rp| nodes.get(rp).map(|n| (rp.clone(), n)))
            else {
                continue;
            };
            if msg.exclude_hosts.contains(&node.host)
                || msg.requested_host.as_ref().is_some_and(|h| *h != node.host)
            {
                continue;
            }
            let Some(svc) = services.get(&node.host) else {
                continue;
            };
            let free = |rc: &str| -> f64 {
                let r = &summaries[&rp]["resources"][rc];
                r["capacity"].as_f64().unwrap_or(0.0) - r["used"].as_f64().unwrap_or(0.0)
            };
            let members_here = spec.group_hosts.iter().filter(|h| **h == node.host).count();
            hosts.push(HostState {
                host: node.host.clone(),
                node: node.hypervisor_hostname.clone(),
                rp_uuid: rp.clone(),
                zone: aggs.zone(&node.host),
                // `[DEFAULT] service_down_time`: a host whose agent stopped beating is skipped.
                service_up: crate::core::services::service_is_up(
                    svc,
                    now,
                    self.cfg.service_down_time,
                ),
                service_enabled: !svc.disabled,
                hypervisor_type: node.resources.hypervisor_type.clone(),
                free_ram_mb: free("MEMORY_MB"),
                free_vcpus: free("VCPU"),
                free_disk_gb: free("DISK_GB"),
                group_members_here: members_here,
                aggregate_metadata: aggs.metadata(&node.host),
                allocation: areq["allocations"].clone(),
            });
        }
        for name in &self.cfg.enabled_filters {
            let Some(f) = filter_by_name(name) else {
                continue;
            };
            let before = hosts.len();
            hosts.retain(|h| f(h, &spec));
            if hosts.len() < before {
                tracing::debug!(filter = %name, before, after = hosts.len(), instance = %i.uuid, "filter");
            }
            if hosts.is_empty() {
                tracing::info!(filter = %name, instance = %i.uuid, "no host passed the filter");
                return Err(no_room());
            }
        }
        if hosts.is_empty() {
            return Err(no_room());
        }
        self.weigh(&mut hosts, &spec);
        for h in hosts {
            // An evacuation moves the allocation the instance holds on its failed host.
            let claimed = if let Some(migration) = &msg.migration_uuid {
                clients
                    .move_to_migration(
                        &i.uuid,
                        migration,
                        &h.allocation,
                        &i.project_id,
                        &i.user_id,
                        request_id,
                    )
                    .await?
            } else if msg.move_allocation {
                clients
                    .replace_allocations(
                        &i.uuid,
                        &h.allocation,
                        &i.project_id,
                        &i.user_id,
                        request_id,
                    )
                    .await?
            } else {
                clients
                    .claim(
                        &i.uuid,
                        &h.allocation,
                        &i.project_id,
                        &i.user_id,
                        request_id,
                    )
                    .await?
            };
            if claimed {
                let dest = Destination {
                    host: h.host,
                    node: h.node,
                    rp_uuid: h.rp_uuid,
                };
                return Ok((dest, h.zone));
            }
        }
        Err(no_room())
    }
}

/// One lock per server group with a decision in flight: its members are decided one at a
/// time (each must see the hosts the others took); a group's entry goes with its last holder.
#[derive(Default)]
struct GroupLocks(std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl GroupLocks {
    fn of(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = locks.get(group).and_then(Weak::upgrade) {
            return l;
        }
        locks.retain(|_, l| l.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(group.to_string(), Arc::downgrade(&l));
        l
    }
}

/// The scheduler's bus handler.
pub fn dispatcher(svc: Arc<ComputeService>) -> Dispatcher {
    let groups = Arc::new(GroupLocks::default());
    Dispatcher::new().on(move |meta: RequestMeta, msg: SelectDestination| {
        let svc = svc.clone();
        let groups = groups.clone();
        async move {
            let i = match svc.get_instance(&msg.instance_uuid).await {
                Ok(Some(i)) if !i.deleted => i,
                Ok(_) => {
                    let e = ComputeError::instance_not_found(&msg.instance_uuid);
                    return Err(bus::Fault::remote("InstanceNotFound", e.to_string()));
                }
                Err(e) => return Err(bus::Fault::remote("SchedulerError", e.to_string())),
            };
            let group_lock = i.server_group.as_deref().map(|g| groups.of(g));
            let _group_turn = match &group_lock {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            let r = svc.select_destination(&msg, &i, &meta.request_id).await;
            match r {
                // A live migration's instance stays on its host until the guest has moved.
                Ok((d, _)) if msg.migration_uuid.is_some() => Ok(d),
                Ok((d, zone)) => {
                    // Record the host before the group's next decision, so it counts there. An
                    // instance deleted meanwhile gives its claim back. A build is scheduling;
                    // an unshelve of an offloaded server is unshelving.
                    let d2 = d.clone();
                    let recorded = svc
                        .update_instance(
                            &msg.instance_uuid,
                            Some(&[
                                Some(crate::model::task_state::SCHEDULING),
                                Some(crate::model::task_state::UNSHELVING),
                                // An evacuation: the instance moves to its new host.
                                Some(crate::model::task_state::REBUILDING),
                            ]),
                            move |i| {
                                i.host = Some(d2.host.clone());
                                i.node = Some(d2.node.clone());
                                i.host_availability_zone = Some(zone);
                                Ok(())
                            },
                        )
                        .await;
                    if let Err(e) = recorded {
                        if let Ok(c) = svc.clients() {
                            let _ = c.release(&msg.instance_uuid, &meta.request_id).await;
                        }
                        return Err(bus::Fault::remote("InstanceNotFound", e.to_string()));
                    }
                    Ok(d)
                }
                Err(ComputeError::NoValidHost(m)) => Err(bus::Fault::remote("NoValidHost", m)),
                Err(e) => Err(bus::Fault::remote("SchedulerError", e.to_string())),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(name: &str) -> HostState {
        HostState {
            host: name.into(),
            node: name.into(),
            rp_uuid: format!("rp-{name}"),
            zone: "nova".into(),
            service_up: true,
            service_enabled: true,
            hypervisor_type: "fake".into(),
            free_ram_mb: 1000.0,
            free_vcpus: 10.0,
            free_disk_gb: 100.0,
            group_members_here: 0,
            aggregate_metadata: BTreeMap::new(),
            allocation: json!({}),
        }
    }

    fn instance() -> Instance {
        serde_json::from_value(json!({
            "uuid": "u1", "project_id": "p", "user_id": "u", "display_name": "vm",
            "hostname": "vm", "vm_state": "building",
            "flavor": {"flavorid": "1", "name": "f", "memory_mb": 64, "vcpus": 1, "root_gb": 1,
                       "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0, "is_public": true},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    fn group(policy: &str, max: Option<u64>) -> ServerGroup {
        let mut rules = BTreeMap::new();
        if let Some(m) = max {
            rules.insert("max_server_per_host".to_string(), json!(m));
        }
        ServerGroup {
            uuid: "g".into(),
            name: "g".into(),
            project_id: "p".into(),
            user_id: "u".into(),
            policy: policy.into(),
            rules,
            members: vec![],
            created_at: chrono::Utc::now(),
        }
    }

    fn spec<'a>(
        i: &'a Instance,
        g: Option<&'a ServerGroup>,
        group_hosts: &[&str],
    ) -> RequestSpec<'a> {
        RequestSpec {
            instance: i,
            group: g,
            group_hosts: group_hosts.iter().map(|s| s.to_string()).collect(),
            same_host: vec![],
            different_host: vec![],
        }
    }

    #[test]
    fn anti_affinity_keeps_members_apart_up_to_the_rule() {
        let i = instance();
        let f = filter_by_name("ServerGroupAntiAffinityFilter").unwrap();
        let g = group("anti-affinity", None);
        assert!(!f(&host("a"), &spec(&i, Some(&g), &["a"])));
        assert!(f(&host("b"), &spec(&i, Some(&g), &["a"])));
        let g2 = group("anti-affinity", Some(2));
        assert!(f(&host("a"), &spec(&i, Some(&g2), &["a"])));
        assert!(!f(&host("a"), &spec(&i, Some(&g2), &["a", "a"])));
    }

    #[test]
    fn affinity_follows_the_first_member() {
        let i = instance();
        let f = filter_by_name("ServerGroupAffinityFilter").unwrap();
        let g = group("affinity", None);
        assert!(f(&host("a"), &spec(&i, Some(&g), &[])));
        assert!(f(&host("a"), &spec(&i, Some(&g), &["a"])));
        assert!(!f(&host("b"), &spec(&i, Some(&g), &["a"])));
    }

    #[test]
    fn compute_and_zone_filters() {
        let mut i = instance();
        let down = HostState {
            service_up: false,
            ..host("a")
        };
        assert!(!filter_by_name("ComputeFilter").unwrap()(
            &down,
            &spec(&i, None, &[])
        ));
        i.availability_zone = Some("other".into());
        assert!(!filter_by_name("AvailabilityZoneFilter").unwrap()(
            &host("a"),
            &spec(&i, None, &[])
        ));
    }

    #[test]
    fn flavor_resources_and_traits() {
        let mut i = instance();
        i.flavor
            .extra_specs
            .insert("resources:CUSTOM_GPU".into(), "1".into());
        i.flavor
            .extra_specs
            .insert("trait:HW_CPU_X86_AVX2".into(), "required".into());
        let (res, traits) = ComputeService::resource_request(&i);
        assert!(res.contains(&("CUSTOM_GPU".to_string(), 1)));
        assert!(res.contains(&("VCPU".to_string(), 1)));
        assert_eq!(traits, vec!["HW_CPU_X86_AVX2".to_string()]);
    }
}
