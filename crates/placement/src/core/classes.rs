//! Resource classes: the standard ones (ids from os-resource-classes) and `CUSTOM_*` ones
//! (ids from 10000), which may be created, renamed (before 1.7) and deleted when unused.

use super::view::Changes;
use super::{Placement, unique_or};
use crate::error::{PlacementError, Result};
use crate::model::{MIN_CUSTOM_RESOURCE_CLASS_ID, ResourceClass};
use crate::standard;
use crate::store;

fn model(r: store::ResourceClassRow) -> ResourceClass {
    ResourceClass {
        id: r.id,
        name: r.name,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

impl Placement {
    pub async fn resource_classes(&self) -> Result<Vec<ResourceClass>> {
        Ok(store::all_resource_classes(self.db.conn())
            .await?
            .into_iter()
            .map(model)
            .collect())
    }

    pub async fn resource_class(&self, name: &str) -> Result<ResourceClass> {
        store::resource_class_by_name(self.db.conn(), name)
            .await?
            .map(model)
            .ok_or_else(|| PlacementError::ResourceClassNotFound(name.to_string()))
    }

    /// Create a custom class; it must not exist.
    pub async fn create_resource_class(&self, name: &str) -> Result<ResourceClass> {
        match self.ensure_resource_class(name).await? {
            (rc, true) => Ok(rc),
            (_, false) => Err(PlacementError::ResourceClassExists(name.to_string())),
        }
    }

    /// Create a custom class unless it exists; true when created (`PUT`, 1.7+).
    pub async fn ensure_resource_class(&self, name: &str) -> Result<(ResourceClass, bool)> {
        if standard::RESOURCE_CLASSES.contains(&name) {
            return Err(PlacementError::ResourceClassExists(name.to_string()));
        }
        let w = self.begin().await?;
        if let Some(r) = store::resource_class_by_name(&*w, name).await? {
            self.commit(w, Changes::default()).await?;
            return Ok((model(r), false));
        }
        let next = store::max_resource_class_id(&*w)
            .await?
            .map_or(MIN_CUSTOM_RESOURCE_CLASS_ID, |m| {
                (m + 1).max(MIN_CUSTOM_RESOURCE_CLASS_ID)
            });
        let row = store::insert_resource_class(&*w, next, name)
            .await
            .map_err(unique_or(|| {
                PlacementError::ResourceClassExists(name.to_string())
            }))?;
        self.commit(w, Changes::names()).await?;
        Ok((model(row), true))
    }

    /// Rename a custom class (`PUT`, 1.2 to 1.6).
    pub async fn rename_resource_class(&self, name: &str, new_name: &str) -> Result<ResourceClass> {
        let w = self.begin().await?;
        let rc = store::resource_class_by_name(&*w, name)
            .await?
            .ok_or_else(|| PlacementError::ResourceClassNotFound(name.to_string()))?;
        if rc.id < MIN_CUSTOM_RESOURCE_CLASS_ID {
            return Err(PlacementError::ResourceClassCannotUpdateStandard(
                name.to_string(),
            ));
        }
        store::rename_resource_class(&*w, rc.id, new_name)
            .await
            .map_err(unique_or(|| {
                PlacementError::ResourceClassExists(new_name.to_string())
            }))?;
        let row = store::resource_class_by_name(&*w, new_name)
            .await?
            .ok_or_else(|| PlacementError::ResourceClassNotFound(new_name.to_string()))?;
        self.commit(w, Changes::names()).await?;
        Ok(model(row))
    }

    pub async fn delete_resource_class(&self, name: &str) -> Result<()> {
        let w = self.begin().await?;
        let rc = store::resource_class_by_name(&*w, name)
            .await?
            .ok_or_else(|| PlacementError::ResourceClassNotFound(name.to_string()))?;
        if rc.id < MIN_CUSTOM_RESOURCE_CLASS_ID {
            return Err(PlacementError::ResourceClassCannotDeleteStandard(
                name.to_string(),
            ));
        }
        if store::resource_class_in_inventory(&*w, rc.id).await? {
            return Err(PlacementError::ResourceClassInUse(name.to_string()));
        }
        store::delete_resource_class(&*w, rc.id).await?;
        self.commit(w, Changes::names()).await
    }
}
