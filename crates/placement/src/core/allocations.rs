//! Allocations, consumers and usages.
//!
//! Writing allocations replaces every allocation of the consumers named, in one transaction:
//! consumer generations are compared with what the writer saw (1.28), capacity is checked
//! against usage computed inside the transaction, and every provider and consumer involved
//! gets its generation bumped with a compare-and-set. Two writers racing for the last unit
//! of a provider are therefore serialised by the database, and the second one sees the
//! first one's usage: exactly one wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Placement;
use super::view::Changes;
use crate::error::{PlacementError, Result};
use crate::model::{
    Consumer, ConsumerAllocation, ConsumerAllocations, ConsumerTypeFilter, ConsumerWrite,
    ProviderAllocation, ProviderAllocations, UNKNOWN_CONSUMER_TYPE, Usage, WriteRules,
};
use crate::store;

/// One allocation to check and insert (`used` 0: an allocation being removed, which still
/// counts its provider as touched).
struct Alloc {
    rp: i32,
    rc: i32,
    consumer: String,
    used: i64,
}

fn py_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "None".to_string(), |g| g.to_string())
}

impl Placement {
    /// Replace the allocations of every consumer in `writes`.
    pub async fn write_allocations(
        &self,
        writes: &[ConsumerWrite],
        rules: WriteRules,
    ) -> Result<()> {
        let mut attempts = self.cfg.allocation_conflict_retry_count.max(1);
        loop {
            attempts -= 1;
            match self.try_write_allocations(writes, rules).await {
                Err(PlacementError::ProviderConcurrentUpdate) if attempts > 0 => {
                    tracing::debug!("retrying allocations write on a provider generation conflict");
                }
                other => return other,
            }
        }
    }

    async fn try_write_allocations(
        &self,
        writes: &[ConsumerWrite],
        rules: WriteRules,
    ) -> Result<()> {
        let w = self.begin().await?;
        let providers = self.replace_allocations(&*w, writes, rules).await?;
        self.commit(
            w,
            Changes {
                providers,
                ..Changes::default()
            },
        )
        .await
    }

    /// The allocation write inside a transaction; returns the providers touched.
    pub(crate) async fn replace_allocations<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        writes: &[ConsumerWrite],
        rules: WriteRules,
    ) -> Result<BTreeSet<i32>> {
        // Consumers: create them, check the writer's view of their generation.
        let mut prepared: Vec<store::ConsumerRow> = Vec::new();
        for cw in writes {
            let (project, user) = match &cw.project_id {
                Some(p) => (p.clone(), cw.user_id.clone().unwrap_or_default()),
                None => (
                    self.cfg.incomplete_consumer_project_id.clone(),
                    self.cfg.incomplete_consumer_user_id.clone(),
                ),
            };
            let pid = store::ensure_project(txn, &project).await?;
            let uid = store::ensure_user(txn, &user).await?;
            let type_id = match (&cw.consumer_type, rules.set_consumer_type) {
                (Some(t), true) => Some(store::ensure_consumer_type(txn, t).await?),
                _ => None,
            };
            let row = match store::consumer_by_uuid(txn, &cw.consumer_uuid).await? {
                Some(c) => {
                    let current = i64::from(c.generation);
                    if rules.check_consumer_generation && cw.consumer_generation != Some(current) {
                        return Err(PlacementError::GenerationConflict(format!(
                            "consumer generation conflict - expected {current} but got {}",
                            py_opt(cw.consumer_generation)
                        )));
                    }
                    let new_type = type_id.or(c.consumer_type_id);
                    if c.project_id != pid || c.user_id != uid || c.consumer_type_id != new_type {
                        store::update_consumer(txn, c.id, pid, uid, new_type).await?;
                    }
                    c
                }
                None => {
                    if rules.check_consumer_generation
                        && let Some(g) = cw.consumer_generation
                    {
                        return Err(PlacementError::GenerationConflict(format!(
                            "consumer generation conflict - expected null but got {g}"
                        )));
                    }
                    store::insert_consumer(txn, &cw.consumer_uuid, pid, uid, type_id).await?
                }
            };
            prepared.push(row);
        }

        // Providers and classes named by the writer.
        let rp_uuids: BTreeSet<String> = writes
            .iter()
            .flat_map(|cw| cw.allocations.keys().cloned())
            .collect();
        let rps: HashMap<String, store::ProviderRow> = store::providers_by_uuids(txn, &rp_uuids)
            .await?
            .into_iter()
            .map(|r| (r.uuid.clone(), r))
            .collect();
        for cw in writes {
            for u in cw.allocations.keys() {
                if !rps.contains_key(u) {
                    return Err(PlacementError::BadRequest(format!(
                        "Allocation for resource provider '{u}' that does not exist."
                    )));
                }
            }
        }
        let rc_names: BTreeSet<String> = writes
            .iter()
            .flat_map(|cw| cw.allocations.values().flat_map(|r| r.keys().cloned()))
            .collect();
        let rc_ids = super::inventories::class_ids(txn, &rc_names).await?;

        // The allocation list: the new ones, and the old ones of consumers being emptied.
        let consumer_uuids: BTreeSet<String> =
            writes.iter().map(|cw| cw.consumer_uuid.clone()).collect();
        let emptied: BTreeSet<String> = writes
            .iter()
            .filter(|cw| cw.allocations.is_empty())
            .map(|cw| cw.consumer_uuid.clone())
            .collect();
        let mut allocs: Vec<Alloc> = Vec::new();
        for old in store::allocations_of_consumers(txn, &emptied).await? {
            allocs.push(Alloc {
                rp: old.resource_provider_id,
                rc: old.resource_class_id,
                consumer: old.consumer_id,
                used: 0,
            });
        }
        for cw in writes {
            for (u, resources) in &cw.allocations {
                for (rc, amount) in resources {
                    allocs.push(Alloc {
                        rp: rps[u].id,
                        rc: rc_ids[rc],
                        consumer: cw.consumer_uuid.clone(),
                        used: *amount,
                    });
                }
            }
        }
        let rp_ids: BTreeSet<i32> = allocs.iter().map(|a| a.rp).collect();

        let prev_usage = usage_map(txn, &rp_ids).await?;
        store::delete_allocations_of_consumers(txn, &consumer_uuids).await?;
        check_capacity(txn, &allocs, &rp_ids, &prev_usage).await?;

        let rows: Vec<(i32, String, i32, i64)> = allocs
            .iter()
            .filter(|a| a.used > 0)
            .map(|a| (a.rp, a.consumer.clone(), a.rc, a.used))
            .collect();
        store::insert_allocations(txn, &rows).await?;

        // Generations: every provider involved, every consumer written.
        let generations: HashMap<i32, i64> = store::providers(txn, Some(&rp_ids))
            .await?
            .into_iter()
            .map(|r| (r.id, i64::from(r.generation)))
            .collect();
        for (id, g) in &generations {
            if !store::bump_provider_generation(txn, *id, *g).await? {
                return Err(PlacementError::ProviderConcurrentUpdate);
            }
        }
        for c in &prepared {
            if !store::bump_consumer_generation(txn, c.id, i64::from(c.generation)).await? {
                return Err(PlacementError::ConcurrentUpdate);
            }
        }
        store::delete_consumers_without_allocations(txn, &consumer_uuids).await?;
        Ok(rp_ids)
    }

    pub async fn consumer_allocations(&self, consumer_uuid: &str) -> Result<ConsumerAllocations> {
        let c = self.db.conn();
        let rows = store::allocations_of_consumers(c, &BTreeSet::from([consumer_uuid.to_string()]))
            .await?;
        if rows.is_empty() {
            return Ok(ConsumerAllocations {
                consumer: None,
                allocations: Vec::new(),
            });
        }
        let consumer = match store::consumer_by_uuid(c, consumer_uuid).await? {
            Some(row) => {
                let names = store::consumer_names(c, std::slice::from_ref(&row)).await?;
                Some(consumer_model(&row, &names))
            }
            None => None,
        };
        let rp_ids: BTreeSet<i32> = rows.iter().map(|r| r.resource_provider_id).collect();
        let rps: HashMap<i32, store::ProviderRow> = store::providers(c, Some(&rp_ids))
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let rc_ids: BTreeSet<i32> = rows.iter().map(|r| r.resource_class_id).collect();
        let rc_names = store::resource_class_names(c, &rc_ids).await?;
        let allocations = rows
            .into_iter()
            .filter_map(|r| {
                let rp = rps.get(&r.resource_provider_id)?;
                Some(ConsumerAllocation {
                    provider_uuid: rp.uuid.clone(),
                    provider_generation: i64::from(rp.generation),
                    resource_class: rc_names.get(&r.resource_class_id)?.clone(),
                    used: i64::from(r.used),
                    last_modified: r.updated_at.unwrap_or(r.created_at),
                })
            })
            .collect();
        Ok(ConsumerAllocations {
            consumer,
            allocations,
        })
    }

    pub async fn provider_allocations(&self, uuid: &str) -> Result<ProviderAllocations> {
        let c = self.db.conn();
        let rp = store::provider_by_uuid(c, uuid).await?.ok_or_else(|| {
            PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
        })?;
        let rows = store::allocations_of_provider(c, rp.id).await?;
        let uuids: BTreeSet<String> = rows.iter().map(|r| r.consumer_id.clone()).collect();
        let generations: HashMap<String, i64> = store::consumers_by_uuids(c, &uuids)
            .await?
            .into_iter()
            .map(|m| (m.uuid, i64::from(m.generation)))
            .collect();
        let rc_ids: BTreeSet<i32> = rows.iter().map(|r| r.resource_class_id).collect();
        let rc_names = store::resource_class_names(c, &rc_ids).await?;
        Ok(ProviderAllocations {
            provider_generation: i64::from(rp.generation),
            allocations: rows
                .into_iter()
                .filter_map(|r| {
                    Some(ProviderAllocation {
                        consumer_generation: generations.get(&r.consumer_id).copied().unwrap_or(0),
                        consumer_uuid: r.consumer_id,
                        resource_class: rc_names.get(&r.resource_class_id)?.clone(),
                        used: i64::from(r.used),
                        last_modified: r.updated_at.unwrap_or(r.created_at),
                    })
                })
                .collect(),
        })
    }

    /// `DELETE /allocations/{consumer}`: no generation check or bump, as upstream (the
    /// unsafe way; `PUT` with empty allocations is the safe one).
    pub async fn delete_consumer_allocations(&self, consumer_uuid: &str) -> Result<()> {
        let w = self.begin().await?;
        let uuids = BTreeSet::from([consumer_uuid.to_string()]);
        let rows = store::allocations_of_consumers(&*w, &uuids).await?;
        if rows.is_empty() {
            return Err(PlacementError::NotFound(format!(
                "No allocations for consumer '{consumer_uuid}'"
            )));
        }
        store::delete_allocations_of_consumers(&*w, &uuids).await?;
        store::delete_consumers_without_allocations(&*w, &uuids).await?;
        let providers = rows.iter().map(|r| r.resource_provider_id).collect();
        self.commit(
            w,
            Changes {
                providers,
                ..Changes::default()
            },
        )
        .await
    }

    /// `GET /usages`: what a project (and user) consumes, optionally per consumer type.
    pub async fn usages(
        &self,
        project_id: &str,
        user_id: Option<&str>,
        filter: &ConsumerTypeFilter,
    ) -> Result<Vec<Usage>> {
        let c = self.db.conn();
        let (consumers, allocs) = store::project_allocations(c, project_id, user_id).await?;
        let names = store::consumer_names(c, &consumers).await?;
        let type_of: HashMap<&str, Option<&str>> = consumers
            .iter()
            .map(|m| {
                (
                    m.uuid.as_str(),
                    m.consumer_type_id
                        .and_then(|t| names.types.get(&t).map(String::as_str)),
                )
            })
            .collect();
        let rc_ids: BTreeSet<i32> = allocs.iter().map(|r| r.resource_class_id).collect();
        let rc_names = store::resource_class_names(c, &rc_ids).await?;

        // group -> class -> usage, group -> consumers
        let mut sums: BTreeMap<Option<String>, BTreeMap<String, i64>> = BTreeMap::new();
        let mut counts: BTreeMap<Option<String>, BTreeSet<&str>> = BTreeMap::new();
        for a in &allocs {
            let ctype = type_of.get(a.consumer_id.as_str()).copied().flatten();
            let group = match filter {
                ConsumerTypeFilter::None => None,
                ConsumerTypeFilter::PerType => {
                    Some(ctype.unwrap_or(UNKNOWN_CONSUMER_TYPE).to_string())
                }
                ConsumerTypeFilter::All => Some("all".to_string()),
                ConsumerTypeFilter::Unknown => {
                    if ctype.is_some() {
                        continue;
                    }
                    Some(UNKNOWN_CONSUMER_TYPE.to_string())
                }
                ConsumerTypeFilter::Named(t) => {
                    if ctype != Some(t.as_str()) {
                        continue;
                    }
                    Some(t.clone())
                }
            };
            let Some(rc) = rc_names.get(&a.resource_class_id) else {
                continue;
            };
            *sums
                .entry(group.clone())
                .or_default()
                .entry(rc.clone())
                .or_default() += i64::from(a.used);
            counts
                .entry(group)
                .or_default()
                .insert(a.consumer_id.as_str());
        }
        let mut out = Vec::new();
        for (group, classes) in sums {
            let count = counts.get(&group).map_or(0, |s| s.len() as i64);
            for (rc, usage) in classes {
                out.push(Usage {
                    resource_class: rc,
                    usage,
                    consumer_type: group.clone(),
                    consumer_count: count,
                });
            }
        }
        Ok(out)
    }
}

fn consumer_model(row: &store::ConsumerRow, names: &store::ConsumerNames) -> Consumer {
    Consumer {
        uuid: row.uuid.clone(),
        project_id: names
            .projects
            .get(&row.project_id)
            .cloned()
            .unwrap_or_default(),
        user_id: names.users.get(&row.user_id).cloned().unwrap_or_default(),
        generation: i64::from(row.generation),
        consumer_type: row
            .consumer_type_id
            .and_then(|t| names.types.get(&t).cloned()),
    }
}

async fn usage_map<C: sea_orm::ConnectionTrait>(
    c: &C,
    rp_ids: &BTreeSet<i32>,
) -> Result<HashMap<(i32, i32), i64>> {
    Ok(store::usage(c, Some(rp_ids))
        .await?
        .into_iter()
        .map(|(p, r, u)| ((p, r), u))
        .collect())
}

/// Upstream's capacity rules, checked against usage after the consumers' old allocations
/// are gone: each allocation must respect min_unit/max_unit/step_size, and the provider's
/// usage must stay within capacity, unless the write only reduces an existing overage.
async fn check_capacity<C: sea_orm::ConnectionTrait>(
    c: &C,
    allocs: &[Alloc],
    rp_ids: &BTreeSet<i32>,
    prev_usage: &HashMap<(i32, i32), i64>,
) -> Result<()> {
    let rc_ids: BTreeSet<i32> = allocs.iter().map(|a| a.rc).collect();
    let used = usage_map(c, rp_ids).await?;
    let mut inventories: HashMap<(i32, i32), store::InventoryRow> = HashMap::new();
    for rp in rp_ids {
        for inv in store::inventories_of(c, *rp).await? {
            if rc_ids.contains(&inv.resource_class_id) {
                inventories.insert((*rp, inv.resource_class_id), inv);
            }
        }
    }
    let rps: HashMap<i32, String> = store::providers(c, Some(rp_ids))
        .await?
        .into_iter()
        .map(|r| (r.id, r.uuid))
        .collect();
    let rc_names = store::resource_class_names(c, &rc_ids).await?;
    let rc_name = |id: i32| rc_names.get(&id).cloned().unwrap_or_default();
    let rp_uuid = |id: i32| rps.get(&id).cloned().unwrap_or_default();

    let with_inventory: BTreeSet<i32> = inventories.keys().map(|(rp, _)| *rp).collect();
    let missing: Vec<String> = rp_ids
        .iter()
        .filter(|rp| !with_inventory.contains(rp))
        .map(|rp| rp_uuid(*rp))
        .collect();
    if !missing.is_empty() {
        let classes: Vec<String> = rc_ids.iter().map(|id| rc_name(*id)).collect();
        return Err(PlacementError::InvalidInventory {
            resource_class: classes.join(", "),
            provider: missing.join(", "),
        });
    }

    let mut needed: HashMap<(i32, i32), i64> = HashMap::new();
    for a in allocs {
        let key = (a.rp, a.rc);
        let needed_all = {
            let n = needed.entry(key).or_default();
            *n += a.used;
            *n
        };
        if a.used == 0 {
            continue;
        }
        let inv = inventories
            .get(&key)
            .ok_or_else(|| PlacementError::InvalidInventory {
                resource_class: rc_name(a.rc),
                provider: rp_uuid(a.rp),
            })?;
        let (min_unit, max_unit, step) = (
            i64::from(inv.min_unit),
            i64::from(inv.max_unit),
            i64::from(inv.step_size),
        );
        if a.used < min_unit || a.used > max_unit || step <= 0 || a.used % step != 0 {
            tracing::warn!(resource = %rc_name(a.rc), provider = %rp_uuid(a.rp), requested = a.used, min_unit, max_unit, step_size = step, "allocation violates min_unit, max_unit, or step_size");
            return Err(PlacementError::ConstraintsViolated {
                resource_class: rc_name(a.rc),
                provider: rp_uuid(a.rp),
            });
        }
        let current = used.get(&key).copied().unwrap_or(0);
        let capacity =
            (i64::from(inv.total) - i64::from(inv.reserved)) as f64 * inv.allocation_ratio;
        if capacity < (current + a.used) as f64 || capacity < (current + needed_all) as f64 {
            let prev = prev_usage.get(&key).copied();
            if prev.is_some_and(|p| current + needed_all <= p) {
                tracing::warn!(resource = %rc_name(a.rc), provider = %rp_uuid(a.rp), needed = a.used, previous = prev, now = current + needed_all, "over capacity, but the allocation reduces the existing overage");
            } else {
                tracing::warn!(resource = %rc_name(a.rc), provider = %rp_uuid(a.rp), needed = a.used, used = current, capacity, "over capacity");
                return Err(PlacementError::CapacityExceeded {
                    resource_class: rc_name(a.rc),
                    provider: rp_uuid(a.rp),
                });
            }
        }
    }
    Ok(())
}
