//! The reshaper (1.30): move inventory and the allocations against it between providers of
//! a tree in one transaction, as a virt driver does when it splits a compute node's
//! inventory into child providers.

use std::collections::{BTreeMap, BTreeSet};

use super::Placement;
use super::inventories::{class_ids, replace_inventories};
use super::known::Learned;
use super::view::Changes;
use crate::error::{PlacementError, Result};
use crate::model::{ConsumerWrite, Inventory, WriteRules};
use crate::store;

/// The new inventories of one provider, with the generation the writer saw.
#[derive(Debug, Clone)]
pub struct ReshapeInventories {
    pub generation: i64,
    pub inventories: Vec<Inventory>,
}

/// Why a reshape was refused before anything was written, for the handler's wording.
#[derive(Debug, thiserror::Error)]
pub enum ReshapeError {
    #[error("Resource provider {0} in inventories not found")]
    ProviderNotFound(String),
    #[error(
        "resource provider generation conflict for provider {provider}: actual: {actual}, given: {given}"
    )]
    Generation {
        provider: String,
        actual: i64,
        given: i64,
    },
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

impl From<sea_orm::DbErr> for ReshapeError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Placement(PlacementError::Db(e))
    }
}

impl Placement {
    pub async fn reshape(
        &self,
        inventories: &BTreeMap<String, ReshapeInventories>,
        allocations: &[ConsumerWrite],
        rules: WriteRules,
    ) -> std::result::Result<(), ReshapeError> {
        let w = self.begin().await?;
        let txn = &*w;
        let mut learned = Learned::default();
        let mut rps = Vec::new();
        for (uuid, inv) in inventories {
            let rp = store::provider_by_uuid(txn, uuid)
                .await?
                .ok_or_else(|| ReshapeError::ProviderNotFound(uuid.clone()))?;
            if i64::from(rp.generation) != inv.generation {
                return Err(ReshapeError::Generation {
                    provider: uuid.clone(),
                    actual: i64::from(rp.generation),
                    given: inv.generation,
                });
            }
            rps.push((rp, inv));
        }
        let names: BTreeSet<String> = inventories
            .values()
            .flat_map(|i| i.inventories.iter().map(|x| x.resource_class.clone()))
            .collect();
        let ids = class_ids(txn, &names).await?;
        let mut changes = Changes::default();

        // Interim: the union of old and new inventory, so allocations can move over.
        for (rp, inv) in &rps {
            changes.providers.insert(rp.id);
            if inv.inventories.is_empty() {
                continue;
            }
            let mut merged: BTreeMap<String, Inventory> = BTreeMap::new();
            let existing = store::inventories_of(txn, rp.id).await?;
            let existing_ids: BTreeSet<i32> =
                existing.iter().map(|i| i.resource_class_id).collect();
            let existing_names = store::resource_class_names(txn, &existing_ids).await?;
            let mut all_ids = ids.clone();
            for row in existing {
                let Some(name) = existing_names.get(&row.resource_class_id) else {
                    continue;
                };
                all_ids.insert(name.clone(), row.resource_class_id);
                merged.insert(
                    name.clone(),
                    Inventory {
                        resource_class: name.clone(),
                        total: i64::from(row.total),
                        reserved: i64::from(row.reserved),
                        min_unit: i64::from(row.min_unit),
                        max_unit: i64::from(row.max_unit),
                        step_size: i64::from(row.step_size),
                        allocation_ratio: row.allocation_ratio,
                        created_at: None,
                        updated_at: None,
                    },
                );
            }
            for i in &inv.inventories {
                merged.insert(i.resource_class.clone(), i.clone());
            }
            let merged: Vec<Inventory> = merged.into_values().collect();
            replace_inventories(txn, rp, &merged, &all_ids).await?;
            bump(txn, rp.id).await?;
        }

        let touched = self
            .replace_allocations(txn, allocations, rules, &mut learned)
            .await?;
        // Inventories change too: read every touched provider back.
        changes.providers.extend(touched.into_keys());

        // Final: exactly the new inventories.
        for (rp, inv) in &rps {
            replace_inventories(txn, rp, &inv.inventories, &ids).await?;
            bump(txn, rp.id).await?;
        }
        self.commit(w, changes).await?;
        self.known.remember(learned);
        Ok(())
    }
}

/// Bump a provider's generation from whatever it is now inside the transaction.
async fn bump<C: sea_orm::ConnectionTrait>(txn: &C, id: i32) -> Result<()> {
    let current = store::provider_by_id(txn, id)
        .await?
        .map(|r| i64::from(r.generation))
        .ok_or(PlacementError::ProviderConcurrentUpdate)?;
    if !store::bump_provider_generation(txn, id, current).await? {
        return Err(PlacementError::ProviderConcurrentUpdate);
    }
    Ok(())
}
