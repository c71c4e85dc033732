//! Resource providers: create, show, list with filters, update (rename, re-parent), delete.

use std::collections::BTreeSet;

use super::view::{Changes, Prov, View};
use super::{Placement, unique_or};
use crate::error::{PlacementError, Result};
use crate::model::{ProviderFilter, ResourceProvider};
use crate::store;

/// What `PUT /resource_providers/{uuid}` asks of the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentChange {
    Keep,
    Set(Option<String>),
}

impl View {
    /// A provider as the API shows it.
    pub fn provider_model(&self, p: &Prov) -> ResourceProvider {
        ResourceProvider {
            id: p.id,
            uuid: p.uuid.clone(),
            name: p.name.clone(),
            generation: p.generation,
            parent_provider_uuid: p.parent.map(|id| self.uuid(id).to_string()),
            root_provider_uuid: self.uuid(p.root).to_string(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }

    /// Trait ids of `names`; the first unknown name (in order) is an error.
    pub fn trait_ids(&self, names: &BTreeSet<String>) -> Result<BTreeSet<i32>> {
        names
            .iter()
            .map(|n| {
                self.traits
                    .id(n)
                    .ok_or_else(|| PlacementError::TraitNotFound(n.clone()))
            })
            .collect()
    }

    /// Providers that are members of all the OR-groups of `member_of` (unknown aggregate
    /// uuids match nothing).
    pub fn providers_in_aggregates(&self, member_of: &[BTreeSet<String>]) -> BTreeSet<i32> {
        let groups: Vec<Vec<i32>> = member_of
            .iter()
            .map(|g| g.iter().filter_map(|u| self.aggregates.id(u)).collect())
            .collect();
        if groups.iter().any(Vec::is_empty) {
            return BTreeSet::new();
        }
        let mut out: Option<BTreeSet<i32>> = None;
        for g in &groups {
            let members: BTreeSet<i32> = g
                .iter()
                .filter_map(|a| self.agg_members.get(a))
                .flatten()
                .copied()
                .collect();
            out = Some(match out {
                None => members,
                Some(prev) => prev.intersection(&members).copied().collect(),
            });
        }
        out.unwrap_or_default()
    }

    /// Providers that are in any of `aggs`.
    pub fn providers_in_any(&self, aggs: &BTreeSet<String>) -> BTreeSet<i32> {
        aggs.iter()
            .filter_map(|u| self.aggregates.id(u))
            .filter_map(|a| self.agg_members.get(&a))
            .flatten()
            .copied()
            .collect()
    }

    /// `GET /resource_providers` filtering.
    pub fn filter_providers(&self, f: &ProviderFilter) -> Result<Vec<ResourceProvider>> {
        let tree_root = match &f.in_tree {
            Some(u) => match self.by_uuid(u) {
                Some(p) => Some(p.root),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let mut resources = Vec::new();
        for (rc, amount) in &f.resources {
            let id = self
                .rcs
                .id(rc)
                .ok_or_else(|| PlacementError::ResourceClassNotFound(rc.clone()))?;
            resources.push((id, *amount));
        }
        let required: Vec<BTreeSet<i32>> = f
            .required_traits
            .iter()
            .map(|any| self.trait_ids(any))
            .collect::<Result<_>>()?;
        let forbidden = self.trait_ids(&f.forbidden_traits)?;
        let in_aggs = (!f.member_of.is_empty()).then(|| self.providers_in_aggregates(&f.member_of));
        let bad_aggs = self.providers_in_any(&f.forbidden_aggs);

        let mut out = Vec::new();
        for id in &self.order {
            let Some(p) = self.get(*id) else { continue };
            if f.name.as_deref().is_some_and(|n| n != p.name)
                || f.uuid.as_deref().is_some_and(|u| u != p.uuid)
                || tree_root.is_some_and(|r| r != p.root)
                || in_aggs.as_ref().is_some_and(|s| !s.contains(&p.id))
                || bad_aggs.contains(&p.id)
                || !required
                    .iter()
                    .all(|any| any.iter().any(|t| p.has_trait(*t)))
                || forbidden.iter().any(|t| p.has_trait(*t))
                || !resources
                    .iter()
                    .all(|(rc, amount)| p.inventory(*rc).is_some_and(|i| i.fits(*amount)))
            {
                continue;
            }
            out.push(self.provider_model(p));
        }
        Ok(out)
    }
}

fn reason(action: &'static str, reason: &str) -> PlacementError {
    PlacementError::ObjectAction {
        action,
        reason: reason.to_string(),
    }
}

impl Placement {
    pub async fn provider(&self, uuid: &str) -> Result<ResourceProvider> {
        let view = self.view().await?;
        view.by_uuid(uuid)
            .map(|p| view.provider_model(p))
            .ok_or_else(|| {
                PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
            })
    }

    pub async fn list_providers(&self, filter: &ProviderFilter) -> Result<Vec<ResourceProvider>> {
        self.view().await?.filter_providers(filter)
    }

    pub async fn create_provider(
        &self,
        uuid: &str,
        name: &str,
        parent_uuid: Option<&str>,
    ) -> Result<ResourceProvider> {
        if parent_uuid == Some(uuid) {
            return Err(reason(
                "create",
                "parent provider UUID cannot be same as UUID. Please set parent provider UUID to None if there is no parent.",
            ));
        }
        let w = self.begin().await?;
        let mut dups = Vec::new();
        if store::provider_by_uuid(&*w, uuid).await?.is_some() {
            dups.push(format!("uuid: {uuid}"));
        }
        if store::provider_by_name(&*w, name).await?.is_some() {
            dups.push(format!("name: {name}"));
        }
        if !dups.is_empty() {
            return Err(PlacementError::Duplicate(format!(
                "Conflicting resource provider {} already exists.",
                dups.join(", ")
            )));
        }
        let (parent, root) = match parent_uuid {
            None => (None, None),
            Some(pu) => {
                let parent = store::provider_by_uuid(&*w, pu)
                    .await?
                    .ok_or_else(|| reason("create", "parent provider UUID does not exist."))?;
                let root = parent.root_provider_id.unwrap_or(parent.id);
                (Some(parent), Some(root))
            }
        };
        let row = store::insert_provider(&*w, uuid, name, parent.as_ref().map(|p| p.id), root)
            .await
            .map_err(unique_or(|| {
                PlacementError::Duplicate(format!(
                    "Conflicting resource provider name: {name} already exists."
                ))
            }))?;
        let root_id = match root {
            Some(r) => r,
            None => {
                store::set_root(&*w, &BTreeSet::from([row.id]), Some(row.id)).await?;
                row.id
            }
        };
        let root_uuid = if root_id == row.id {
            row.uuid.clone()
        } else {
            store::provider_by_id(&*w, root_id)
                .await?
                .map(|r| r.uuid)
                .unwrap_or_default()
        };
        let model = ResourceProvider {
            id: row.id,
            uuid: row.uuid.clone(),
            name: row.name.clone(),
            generation: i64::from(row.generation),
            parent_provider_uuid: parent.map(|p| p.uuid),
            root_provider_uuid: root_uuid,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        self.commit(w, Changes::provider(row.id)).await?;
        Ok(model)
    }

    pub async fn update_provider(
        &self,
        uuid: &str,
        name: &str,
        parent: ParentChange,
        allow_reparenting: bool,
    ) -> Result<ResourceProvider> {
        let w = self.begin().await?;
        let me = store::provider_by_uuid(&*w, uuid).await?.ok_or_else(|| {
            PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
        })?;
        let my_root = me.root_provider_id.unwrap_or(me.id);
        let mut new_parent = me.parent_provider_id;
        let mut new_root = my_root;
        let mut moved = BTreeSet::new();
        if let ParentChange::Set(p) = parent {
            let tree = store::providers_in_tree(&*w, my_root).await?;
            let subtree = descendants(&tree, me.id);
            match p {
                Some(pu) => {
                    let parent = store::provider_by_uuid(&*w, &pu)
                        .await?
                        .ok_or_else(|| reason("create", "parent provider UUID does not exist."))?;
                    if me.parent_provider_id.is_some_and(|cur| cur != parent.id)
                        && !allow_reparenting
                    {
                        return Err(reason(
                            "update",
                            "re-parenting a provider is not currently allowed.",
                        ));
                    }
                    if subtree.contains(&parent.id) {
                        return Err(reason(
                            "update",
                            "creating loop in the provider tree is not allowed.",
                        ));
                    }
                    new_parent = Some(parent.id);
                    new_root = parent.root_provider_id.unwrap_or(parent.id);
                }
                None => {
                    if me.parent_provider_id.is_some() {
                        if !allow_reparenting {
                            return Err(reason(
                                "update",
                                "un-parenting a provider is not currently allowed.",
                            ));
                        }
                        new_parent = None;
                        new_root = me.id;
                    }
                }
            }
            if new_root != my_root {
                moved = subtree;
            }
        }
        store::update_provider(&*w, me.id, name, new_parent, new_root)
            .await
            .map_err(unique_or(|| {
                PlacementError::Duplicate(format!(
                    "Conflicting resource provider {name} already exists."
                ))
            }))?;
        if !moved.is_empty() {
            store::set_root(&*w, &moved, Some(new_root)).await?;
        }
        let parent_uuid = match new_parent {
            Some(id) => store::provider_by_id(&*w, id).await?.map(|r| r.uuid),
            None => None,
        };
        let root_uuid = store::provider_by_id(&*w, new_root)
            .await?
            .map(|r| r.uuid)
            .unwrap_or_default();
        let row = store::provider_by_id(&*w, me.id).await?.ok_or_else(|| {
            PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
        })?;
        let mut changes = Changes::provider(me.id);
        changes.providers.extend(moved);
        self.commit(w, changes).await?;
        Ok(ResourceProvider {
            id: row.id,
            uuid: row.uuid,
            name: row.name,
            generation: i64::from(row.generation),
            parent_provider_uuid: parent_uuid,
            root_provider_uuid: root_uuid,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    pub async fn delete_provider(&self, uuid: &str) -> Result<()> {
        let w = self.begin().await?;
        let me = store::provider_by_uuid(&*w, uuid).await?.ok_or_else(|| {
            PlacementError::NotFound(format!(
                "No resource provider with uuid {uuid} found for delete"
            ))
        })?;
        if store::has_children(&*w, me.id).await? {
            return Err(PlacementError::CannotDeleteParent);
        }
        if store::provider_has_allocations(&*w, me.id).await? {
            return Err(PlacementError::ProviderInUse);
        }
        store::delete_provider(&*w, me.id).await?;
        self.commit(w, Changes::provider(me.id)).await
    }
}

/// `id` and every provider below it, from the rows of its tree.
fn descendants(tree: &[store::ProviderRow], id: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::from([id]);
    loop {
        let before = out.len();
        for r in tree {
            if r.parent_provider_id.is_some_and(|p| out.contains(&p)) {
                out.insert(r.id);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}
