//! Traits (standard os-traits names and `CUSTOM_*`), the traits of a provider, and a
//! provider's aggregates.

use std::collections::BTreeSet;

use super::Placement;
use super::view::Changes;
use crate::error::{PlacementError, Result};
use crate::model::{CUSTOM_PREFIX, Trait, TraitFilter};
use crate::store;

fn model(r: store::TraitRow) -> Trait {
    Trait {
        id: r.id,
        name: r.name,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn not_found(uuid: &str) -> PlacementError {
    PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
}

const GENERATION_CHANGED: &str =
    "Resource provider's generation already changed. Please update the generation and try again.";

/// A provider's traits or aggregates, with its generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    pub generation: i64,
    pub names: Vec<String>,
}

impl Placement {
    pub async fn traits(&self, filter: &TraitFilter) -> Result<Vec<Trait>> {
        Ok(store::list_traits(self.db.conn(), filter)
            .await?
            .into_iter()
            .map(model)
            .collect())
    }

    pub async fn trait_(&self, name: &str) -> Result<Trait> {
        store::trait_by_name(self.db.conn(), name)
            .await?
            .map(model)
            .ok_or_else(|| PlacementError::TraitNotFound(name.to_string()))
    }

    /// Create a custom trait unless it exists; true when created.
    pub async fn ensure_trait(&self, name: &str) -> Result<(Trait, bool)> {
        let w = self.begin().await?;
        if let Some(t) = store::trait_by_name(&*w, name).await? {
            self.commit(w, Changes::default()).await?;
            return Ok((model(t), false));
        }
        let row = store::insert_trait(&*w, name).await?;
        self.commit(w, Changes::names()).await?;
        Ok((model(row), true))
    }

    pub async fn delete_trait(&self, name: &str) -> Result<()> {
        let w = self.begin().await?;
        let t = store::trait_by_name(&*w, name)
            .await?
            .ok_or_else(|| PlacementError::TraitNotFound(name.to_string()))?;
        if !name.starts_with(CUSTOM_PREFIX) {
            return Err(PlacementError::TraitCannotDeleteStandard(name.to_string()));
        }
        if store::trait_in_use(&*w, t.id).await? {
            return Err(PlacementError::TraitInUse(name.to_string()));
        }
        store::delete_trait(&*w, t.id).await?;
        self.commit(w, Changes::names()).await
    }

    pub async fn provider_traits(&self, uuid: &str) -> Result<Tagged> {
        let view = self.view().await?;
        let p = view.by_uuid(uuid).ok_or_else(|| not_found(uuid))?;
        let mut names: Vec<String> = p
            .traits
            .iter()
            .map(|t| view.traits.name(*t).to_string())
            .collect();
        names.sort();
        Ok(Tagged {
            generation: p.generation,
            names,
        })
    }

    /// Replace a provider's traits. The generation moves only if the set changed.
    pub async fn set_provider_traits(
        &self,
        uuid: &str,
        generation: Option<i64>,
        names: &BTreeSet<String>,
    ) -> Result<Tagged> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        if generation.is_some_and(|g| g != current) {
            return Err(PlacementError::GenerationConflict(
                GENERATION_CHANGED.into(),
            ));
        }
        let found = store::traits_by_names(&*w, names).await?;
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !found.iter().any(|t| &t.name == *n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(PlacementError::BadRequest(format!(
                "No such trait {}",
                missing.join(", ")
            )));
        }
        let want: BTreeSet<i32> = found.iter().map(|t| t.id).collect();
        let have = store::provider_trait_ids(&*w, rp.id).await?;
        let add: BTreeSet<i32> = want.difference(&have).copied().collect();
        let remove: BTreeSet<i32> = have.difference(&want).copied().collect();
        let mut new_generation = current;
        let mut changes = Changes::default();
        if !add.is_empty() || !remove.is_empty() {
            store::remove_provider_traits(&*w, rp.id, &remove).await?;
            store::add_provider_traits(&*w, rp.id, &add).await?;
            if !store::bump_provider_generation(&*w, rp.id, current).await? {
                return Err(PlacementError::ProviderConcurrentUpdate);
            }
            new_generation += 1;
            changes = Changes::provider(rp.id);
        }
        self.commit(w, changes).await?;
        Ok(Tagged {
            generation: new_generation,
            names: found.into_iter().map(|t| t.name).collect(),
        })
    }

    pub async fn provider_aggregates(&self, uuid: &str) -> Result<Tagged> {
        let view = self.view().await?;
        let p = view.by_uuid(uuid).ok_or_else(|| not_found(uuid))?;
        Ok(Tagged {
            generation: p.generation,
            names: p
                .aggregates
                .iter()
                .map(|a| view.aggregates.name(*a).to_string())
                .collect(),
        })
    }

    /// Replace a provider's aggregates (created when first seen). From 1.19 the writer's
    /// generation is checked and the provider's generation moves.
    pub async fn set_provider_aggregates(
        &self,
        uuid: &str,
        generation: Option<i64>,
        aggregates: &[String],
    ) -> Result<Tagged> {
        let w = self.begin().await?;
        let rp = store::provider_by_uuid(&*w, uuid)
            .await?
            .ok_or_else(|| not_found(uuid))?;
        let current = i64::from(rp.generation);
        if generation.is_some_and(|g| g != current) {
            return Err(PlacementError::GenerationConflict(
                GENERATION_CHANGED.into(),
            ));
        }
        let mut want = BTreeSet::new();
        for a in aggregates {
            want.insert(store::ensure_aggregate(&*w, a).await?);
        }
        let have: BTreeSet<i32> = store::provider_aggregates(&*w, rp.id)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let add: BTreeSet<i32> = want.difference(&have).copied().collect();
        let remove: BTreeSet<i32> = have.difference(&want).copied().collect();
        store::remove_provider_aggregates(&*w, rp.id, &remove).await?;
        store::add_provider_aggregates(&*w, rp.id, &add).await?;
        let mut new_generation = current;
        if generation.is_some() {
            if !store::bump_provider_generation(&*w, rp.id, current).await? {
                return Err(PlacementError::ProviderConcurrentUpdate);
            }
            new_generation += 1;
        }
        let mut changes = Changes::provider(rp.id);
        changes.aggregates = true;
        self.commit(w, changes).await?;
        Ok(Tagged {
            generation: new_generation,
            names: aggregates.to_vec(),
        })
    }
}
