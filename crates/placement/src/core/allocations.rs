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
use super::known::Learned;
use super::view::{Allocated, Changes};
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

/// Who a written consumer belongs to (internal ids).
struct Owner {
    project: i32,
    user: i32,
    consumer_type: Option<i32>,
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
        let mut learned = Learned::default();
        let allocated = self
            .replace_allocations(&*w, writes, rules, &mut learned)
            .await?;
        self.commit(
            w,
            Changes {
                allocated,
                ..Changes::default()
            },
        )
        .await?;
        self.known.remember(learned);
        Ok(())
    }

    /// The allocation write inside a transaction; returns what it committed on every
    /// provider whose allocations changed.
    ///
    /// Statements, for a claim by a new consumer: one read of the consumers, one of the
    /// providers, their inventories and their usage; the consumer's and the allocations'
    /// inserts and one generation bump per provider. Projects, users, consumer types and
    /// standard classes come from [`super::known`].
    pub(crate) async fn replace_allocations<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        writes: &[ConsumerWrite],
        rules: WriteRules,
        learned: &mut Learned,
    ) -> Result<BTreeMap<i32, Allocated>> {
        // Consumers: check the writer's view of their generation.
        let consumer_uuids: BTreeSet<String> =
            writes.iter().map(|cw| cw.consumer_uuid.clone()).collect();
        let existing: HashMap<String, store::ConsumerRow> =
            store::consumers_by_uuids(txn, &consumer_uuids)
                .await?
                .into_iter()
                .map(|c| (c.uuid.clone(), c))
                .collect();
        let mut owners: Vec<Owner> = Vec::with_capacity(writes.len());
        for cw in writes {
            let (project, user) = match &cw.project_id {
                Some(p) => (p.clone(), cw.user_id.clone().unwrap_or_default()),
                None => (
                    self.cfg.incomplete_consumer_project_id.clone(),
                    self.cfg.incomplete_consumer_user_id.clone(),
                ),
            };
            let project = self.known.project(txn, &project, learned).await?;
            let user = self.known.user(txn, &user, learned).await?;
            let consumer_type = match (&cw.consumer_type, rules.set_consumer_type) {
                (Some(t), true) => Some(self.known.consumer_type(txn, t, learned).await?),
                _ => None,
            };
            match existing.get(&cw.consumer_uuid) {
                Some(c) => {
                    let current = i64::from(c.generation);
                    if rules.check_consumer_generation && cw.consumer_generation != Some(current) {
                        return Err(PlacementError::GenerationConflict(format!(
                            "consumer generation conflict - expected {current} but got {}",
                            py_opt(cw.consumer_generation)
                        )));
                    }
                    owners.push(Owner {
                        project,
                        user,
                        consumer_type: consumer_type.or(c.consumer_type_id),
                    });
                }
                None => {
                    if rules.check_consumer_generation
                        && let Some(g) = cw.consumer_generation
                    {
                        return Err(PlacementError::GenerationConflict(format!(
                            "consumer generation conflict - expected null but got {g}"
                        )));
                    }
                    owners.push(Owner {
                        project,
                        user,
                        consumer_type,
                    });
                }
            }
        }

        // Providers and classes named by the writer.
        let rp_uuids: BTreeSet<String> = writes
            .iter()
            .flat_map(|cw| cw.allocations.keys().cloned())
            .collect();
        let mut rps: HashMap<i32, store::ProviderRow> = HashMap::new();
        let mut rp_by_uuid: HashMap<String, i32> = HashMap::new();
        for r in store::providers_by_uuids(txn, &rp_uuids).await? {
            rp_by_uuid.insert(r.uuid.clone(), r.id);
            rps.insert(r.id, r);
        }
        for cw in writes {
            for u in cw.allocations.keys() {
                if !rp_by_uuid.contains_key(u) {
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
        let rc_ids = self.class_ids(txn, &rc_names).await?;

        // What the consumers hold now. A consumer row exists while it has allocations, so
        // a consumer without one holds nothing.
        let existing_uuids: BTreeSet<String> = existing.keys().cloned().collect();
        let old = store::allocations_of_consumers(txn, &existing_uuids).await?;

        // The allocation list: the new ones, and the old ones of consumers being emptied.
        let emptied: BTreeSet<&str> = writes
            .iter()
            .filter(|cw| cw.allocations.is_empty())
            .map(|cw| cw.consumer_uuid.as_str())
            .collect();
        let mut allocs: Vec<Alloc> = Vec::new();
        for o in old
            .iter()
            .filter(|o| emptied.contains(o.consumer_id.as_str()))
        {
            allocs.push(Alloc {
                rp: o.resource_provider_id,
                rc: o.resource_class_id,
                consumer: o.consumer_id.clone(),
                used: 0,
            });
        }
        for cw in writes {
            for (u, resources) in &cw.allocations {
                for (rc, amount) in resources {
                    allocs.push(Alloc {
                        rp: rp_by_uuid[u],
                        rc: rc_ids[rc],
                        consumer: cw.consumer_uuid.clone(),
                        used: *amount,
                    });
                }
            }
        }
        // Providers whose generation the write bumps (upstream's: those of the new
        // allocations and of the emptied consumers), and every provider whose usage changes.
        let bumped: BTreeSet<i32> = allocs.iter().map(|a| a.rp).collect();
        let mut touched = bumped.clone();
        touched.extend(old.iter().map(|o| o.resource_provider_id));
        let unnamed: BTreeSet<i32> = bumped
            .iter()
            .filter(|id| !rps.contains_key(id))
            .copied()
            .collect();
        if !unnamed.is_empty() {
            for r in store::providers(txn, Some(&unnamed)).await? {
                rps.insert(r.id, r);
            }
        }

        // Usage now, and without the written consumers' allocations.
        let usage_before = usage_map(txn, &touched).await?;
        let mut usage_others = usage_before.clone();
        for o in &old {
            *usage_others
                .entry((o.resource_provider_id, o.resource_class_id))
                .or_default() -= i64::from(o.used);
        }
        let alloc_rcs: BTreeSet<i32> = allocs.iter().map(|a| a.rc).collect();
        let inventories: HashMap<(i32, i32), store::InventoryRow> =
            store::inventories(txn, Some(&bumped))
                .await?
                .into_iter()
                .filter(|i| alloc_rcs.contains(&i.resource_class_id))
                .map(|i| ((i.resource_provider_id, i.resource_class_id), i))
                .collect();
        let mut rc_name_of: HashMap<i32, String> =
            rc_ids.iter().map(|(n, id)| (*id, n.clone())).collect();
        let unnamed_rcs: BTreeSet<i32> = alloc_rcs
            .iter()
            .filter(|id| !rc_name_of.contains_key(id))
            .copied()
            .collect();
        if !unnamed_rcs.is_empty() {
            rc_name_of.extend(store::resource_class_names(txn, &unnamed_rcs).await?);
        }
        check_capacity(
            &allocs,
            &bumped,
            &inventories,
            &usage_others,
            &usage_before,
            &|id| rc_name_of.get(&id).cloned().unwrap_or_default(),
            &|id| rps.get(&id).map(|r| r.uuid.clone()).unwrap_or_default(),
        )?;

        // Writes: old allocations out, consumers, new allocations, generations.
        if !old.is_empty() {
            store::delete_allocations_of_consumers(txn, &existing_uuids).await?;
        }
        let rows: Vec<(i32, String, i32, i64)> = allocs
            .iter()
            .filter(|a| a.used > 0)
            .map(|a| (a.rp, a.consumer.clone(), a.rc, a.used))
            .collect();
        let holding: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        for (cw, owner) in writes.iter().zip(&owners) {
            let holds = holding.contains(cw.consumer_uuid.as_str());
            match existing.get(&cw.consumer_uuid) {
                Some(c) => {
                    let seen = i64::from(c.generation);
                    let written = if holds {
                        store::write_consumer(
                            txn,
                            c.id,
                            seen,
                            owner.project,
                            owner.user,
                            owner.consumer_type,
                        )
                        .await?
                    } else {
                        // Nothing left: the consumer goes, as upstream.
                        store::delete_consumer_at_generation(txn, c.id, seen).await?
                    };
                    if !written {
                        return Err(PlacementError::ConcurrentUpdate);
                    }
                }
                // A new consumer starts at the generation its first write ends with; one
                // left without allocations is never created.
                None if holds => {
                    store::insert_consumer_with_generation(
                        txn,
                        &cw.consumer_uuid,
                        owner.project,
                        owner.user,
                        owner.consumer_type,
                        1,
                    )
                    .await?;
                }
                None => {}
            }
        }
        store::insert_allocations(txn, &rows).await?;

        let at = store::now_stored(txn.get_database_backend());
        let mut allocated: BTreeMap<i32, Allocated> = touched
            .iter()
            .map(|id| (*id, Allocated::default()))
            .collect();
        for id in &bumped {
            let Some(r) = rps.get(id) else { continue };
            let seen = i64::from(r.generation);
            if !store::bump_provider_generation_at(txn, *id, seen, at).await? {
                return Err(PlacementError::ProviderConcurrentUpdate);
            }
            if let Some(a) = allocated.get_mut(id) {
                a.generation = Some((seen + 1, at));
            }
        }
        for ((rp, rc), used) in &usage_others {
            if let Some(a) = allocated.get_mut(rp) {
                a.used.insert(*rc, *used);
            }
        }
        for (rp, _, rc, used) in &rows {
            if let Some(a) = allocated.get_mut(rp) {
                *a.used.entry(*rc).or_default() += used;
            }
        }
        Ok(allocated)
    }

    /// Ids of the named classes: the standard ones from memory, the others read.
    async fn class_ids<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, i32>> {
        let mut ids = BTreeMap::new();
        let mut custom = BTreeSet::new();
        for n in names {
            match self.known.standard_class(n) {
                Some(id) => {
                    ids.insert(n.clone(), id);
                }
                None => {
                    custom.insert(n.clone());
                }
            }
        }
        if !custom.is_empty() {
            ids.extend(store::resource_class_ids(c, &custom).await?);
        }
        if let Some(missing) = names.iter().find(|n| !ids.contains_key(*n)) {
            return Err(PlacementError::ResourceClassNotFound(missing.clone()));
        }
        Ok(ids)
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
        store::delete_consumer(&*w, consumer_uuid).await?;
        let providers: BTreeSet<i32> = rows.iter().map(|r| r.resource_provider_id).collect();
        let mut allocated: BTreeMap<i32, Allocated> = providers
            .iter()
            .map(|id| (*id, Allocated::default()))
            .collect();
        for ((rp, rc), used) in usage_map(&*w, &providers).await? {
            if let Some(a) = allocated.get_mut(&rp) {
                a.used.insert(rc, used);
            }
        }
        self.commit(
            w,
            Changes {
                allocated,
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

/// Upstream's capacity rules, checked against the usage of everyone but the written
/// consumers (`used`): each allocation must respect min_unit/max_unit/step_size, and the
/// provider's usage must stay within capacity, unless the write only reduces an existing
/// overage (`prev_usage`, the usage before the write).
fn check_capacity(
    allocs: &[Alloc],
    rp_ids: &BTreeSet<i32>,
    inventories: &HashMap<(i32, i32), store::InventoryRow>,
    used: &HashMap<(i32, i32), i64>,
    prev_usage: &HashMap<(i32, i32), i64>,
    rc_name: &dyn Fn(i32) -> String,
    rp_uuid: &dyn Fn(i32) -> String,
) -> Result<()> {
    let rc_ids: BTreeSet<i32> = allocs.iter().map(|a| a.rc).collect();
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
