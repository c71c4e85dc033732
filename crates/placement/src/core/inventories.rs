//! Inventories of a provider, and its usages. Every change bumps the provider's generation
//! with a compare-and-set, so a writer working from a stale view fails with a conflict.

use std::collections::{BTreeMap, BTreeSet};

use super::Placement;
use super::view::{Changes, Prov, View};
use crate::error::{PlacementError, Result};
use crate::model::{Inventory, ReservedRule, Timestamp};
use crate::store;

impl View {
    fn inventory_models(&self, p: &Prov) -> Vec<Inventory> {
        p.inventories
            .iter()
            .map(|i| Inventory {
                resource_class: self.rcs.name(i.rc).to_string(),
                total: i.total,
                reserved: i.reserved,
                min_unit: i.min_unit,
                max_unit: i.max_unit,
                step_size: i.step_size,
                allocation_ratio: i.ratio,
                created_at: Some(i.created_at),
                updated_at: i.updated_at,
            })
            .collect()
    }
}

/// Inventories of a provider with its generation.
#[derive(Debug, Clone)]
pub struct ProviderInventories {
    pub generation: i64,
    pub inventories: Vec<Inventory>,
}

/// Usage per class a provider has inventory of.
#[derive(Debug, Clone)]
pub struct ProviderUsages {
    pub generation: i64,
    pub usages: BTreeMap<String, i64>,
}

fn not_found(uuid: &str) -> PlacementError {
    PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
}

/// Reject an inventory whose capacity is not positive (or negative, from 1.26).
pub fn validate_capacity(inv: &Inventory, provider: &str, rule: ReservedRule) -> Result<()> {
    let cap = inv.capacity();
    match rule {
        ReservedRule::BelowTotal if cap <= 0 => Err(PlacementError::InvalidInventoryCapacity {
            resource_class: inv.resource_class.clone(),
            provider: provider.to_string(),
        }),
        ReservedRule::UpToTotal if cap < 0 => {
            Err(PlacementError::InvalidInventoryCapacityReservedCanBeTotal {
                resource_class: inv.resource_class.clone(),
                provider: provider.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Resource class ids of `names`, in a transaction; the first unknown one is an error.
pub(crate) async fn class_ids<C: sea_orm::ConnectionTrait>(
    c: &C,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, i32>> {
    let ids = store::resource_class_ids(c, names).await?;
    let mut out = BTreeMap::new();
    for n in names {
        let id = ids
            .get(n)
            .ok_or_else(|| PlacementError::ResourceClassNotFound(n.clone()))?;
        out.insert(n.clone(), *id);
    }
    Ok(out)
}

impl Placement {
    pub async fn inventories(&self, uuid: &str) -> Result<ProviderInventories> {
        let view = self.view().await?;
        let p = view.by_uuid(uuid).ok_or_else(|| not_found(uuid))?;
        Ok(ProviderInventories {
            generation: p.generation,
            inventories: view.inventory_models(p),
        })
    }

    pub async fn provider_usages(&self, uuid: &str) -> Result<ProviderUsages> {
        let view = self.view().await?;
        let p = view.by_uuid(uuid).ok_or_else(|| not_found(uuid))?;
        Ok(ProviderUsages {
            generation: p.generation,
            usages: p
                .inventories
                .iter()
                .map(|i| (view.rcs.name(i.rc).to_string(), i.used))
                .collect(),
        })
    }

    /// Replace all inventories of a provider (`PUT .../inventories`); `generation` is the
    /// one the writer saw.
    pub async fn set_inventories(
        &self,
        uuid: &str,
        generation: Option<i64>,
        inventories: Vec<Inventory>,
        rule: ReservedRule,
    ) -> Result<ProviderInventories> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        if generation.is_some_and(|g| g != current) {
            return Err(PlacementError::GenerationConflict(
                "resource provider generation conflict".into(),
            ));
        }
        for inv in &inventories {
            validate_capacity(inv, uuid, rule)?;
        }
        let names: BTreeSet<String> = inventories
            .iter()
            .map(|i| i.resource_class.clone())
            .collect();
        let ids = class_ids(&*w, &names).await?;
        replace_inventories(&*w, &rp, &inventories, &ids).await?;
        if !store::bump_provider_generation(&*w, rp.id, current).await? {
            return Err(PlacementError::ProviderConcurrentUpdate);
        }
        self.commit(w, Changes::provider(rp.id)).await?;
        Ok(ProviderInventories {
            generation: current + 1,
            inventories,
        })
    }

    /// Add one inventory the provider does not have yet (`POST .../inventories`).
    pub async fn add_inventory(
        &self,
        uuid: &str,
        inv: Inventory,
        rule: ReservedRule,
    ) -> Result<(i64, Inventory)> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        validate_capacity(&inv, uuid, rule)?;
        let ids = class_ids(&*w, &BTreeSet::from([inv.resource_class.clone()])).await?;
        let rc = ids[&inv.resource_class];
        if store::inventories_of(&*w, rp.id)
            .await?
            .iter()
            .any(|i| i.resource_class_id == rc)
        {
            return Err(PlacementError::Duplicate(format!(
                "Inventory of class {} already exists on resource provider {uuid}.",
                inv.resource_class
            )));
        }
        store::insert_inventory(&*w, rp.id, rc, &inv).await?;
        if !store::bump_provider_generation(&*w, rp.id, current).await? {
            return Err(PlacementError::ProviderConcurrentUpdate);
        }
        self.commit(w, Changes::provider(rp.id)).await?;
        Ok((current + 1, inv))
    }

    /// Update one inventory the provider has (`PUT .../inventories/{rc}`).
    pub async fn update_inventory(
        &self,
        uuid: &str,
        generation: i64,
        inv: Inventory,
        rule: ReservedRule,
    ) -> Result<(i64, Inventory)> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        if generation != current {
            return Err(PlacementError::GenerationConflict(
                "resource provider generation conflict".into(),
            ));
        }
        validate_capacity(&inv, uuid, rule)?;
        let ids = class_ids(&*w, &BTreeSet::from([inv.resource_class.clone()])).await?;
        let rc = ids[&inv.resource_class];
        warn_if_over_capacity(&*w, rp.id, uuid, &[(rc, &inv)]).await?;
        if store::update_inventory(&*w, rp.id, rc, &inv).await? == 0 {
            return Err(PlacementError::InventoryNotFound(inv.resource_class));
        }
        if !store::bump_provider_generation(&*w, rp.id, current).await? {
            return Err(PlacementError::ProviderConcurrentUpdate);
        }
        self.commit(w, Changes::provider(rp.id)).await?;
        Ok((current + 1, inv))
    }

    /// Delete one inventory (`DELETE .../inventories/{rc}`).
    pub async fn delete_inventory(&self, uuid: &str, resource_class: &str) -> Result<()> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        let ids = class_ids(&*w, &BTreeSet::from([resource_class.to_string()])).await?;
        let rc = BTreeSet::from([ids[resource_class]]);
        if !store::classes_in_use(&*w, rp.id, &rc).await?.is_empty() {
            return Err(PlacementError::InventoryInUse {
                resource_classes: resource_class.to_string(),
                provider: uuid.to_string(),
            });
        }
        if store::delete_inventories(&*w, rp.id, &rc).await? == 0 {
            return Err(PlacementError::NotFound(format!(
                "No inventory of class {resource_class} found for delete"
            )));
        }
        if !store::bump_provider_generation(&*w, rp.id, current).await? {
            return Err(PlacementError::ProviderConcurrentUpdate);
        }
        self.commit(w, Changes::provider(rp.id)).await
    }
}

/// Make the provider's inventories exactly `inventories`: delete (refused when allocated),
/// add and update. Used by `PUT .../inventories`, `DELETE .../inventories` and the reshaper.
pub(crate) async fn replace_inventories<C: sea_orm::ConnectionTrait>(
    c: &C,
    rp: &store::ProviderRow,
    inventories: &[Inventory],
    ids: &BTreeMap<String, i32>,
) -> Result<()> {
    let existing: BTreeSet<i32> = store::inventories_of(c, rp.id)
        .await?
        .iter()
        .map(|i| i.resource_class_id)
        .collect();
    let wanted: BTreeMap<i32, &Inventory> = inventories
        .iter()
        .filter_map(|i| ids.get(&i.resource_class).map(|id| (*id, i)))
        .collect();
    let to_delete: BTreeSet<i32> = existing
        .iter()
        .filter(|rc| !wanted.contains_key(rc))
        .copied()
        .collect();
    if !to_delete.is_empty() {
        let in_use = store::classes_in_use(c, rp.id, &to_delete).await?;
        if !in_use.is_empty() {
            let names = store::resource_class_names(c, &in_use).await?;
            let list: Vec<&str> = in_use
                .iter()
                .filter_map(|id| names.get(id).map(String::as_str))
                .collect();
            return Err(PlacementError::InventoryInUse {
                resource_classes: list.join(", "),
                provider: rp.uuid.clone(),
            });
        }
        store::delete_inventories(c, rp.id, &to_delete).await?;
    }
    let mut updates = Vec::new();
    for (rc, inv) in &wanted {
        if existing.contains(rc) {
            updates.push((*rc, *inv));
        } else {
            store::insert_inventory(c, rp.id, *rc, inv).await?;
        }
    }
    warn_if_over_capacity(c, rp.id, &rp.uuid, &updates).await?;
    for (rc, inv) in updates {
        if store::update_inventory(c, rp.id, rc, inv).await? == 0 {
            return Err(PlacementError::InventoryNotFound(
                inv.resource_class.clone(),
            ));
        }
    }
    Ok(())
}

/// Shrinking an inventory below what is allocated is allowed (the operator knows best),
/// but logged, as upstream does.
async fn warn_if_over_capacity<C: sea_orm::ConnectionTrait>(
    c: &C,
    rp_id: i32,
    uuid: &str,
    updates: &[(i32, &Inventory)],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let usage = store::usage(c, Some(&BTreeSet::from([rp_id]))).await?;
    for (rc, inv) in updates {
        if let Some((_, _, used)) = usage.iter().find(|(_, r, _)| r == rc)
            && *used > inv.capacity()
        {
            tracing::warn!(provider = %uuid, resource = %inv.resource_class, used, capacity = inv.capacity(), "resource provider is now over capacity");
        }
    }
    Ok(())
}

/// The newest modification time among inventories (for `Last-Modified`).
pub fn last_modified(invs: &[Inventory]) -> Option<Timestamp> {
    invs.iter().filter_map(Inventory::last_modified).max()
}
