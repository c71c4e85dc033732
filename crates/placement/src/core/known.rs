//! Ids of rows that never change once they exist, kept in memory so an allocation write does
//! not read them again: projects and users by external id, consumer types by name (nothing
//! renames or deletes them), and the standard resource classes by name (the API refuses to
//! rename or delete them).
//!
//! A miss reads (and inserts if missing) inside the writer's transaction, as before. What a
//! transaction learned joins the cache only once it committed: a rolled-back insert's id
//! must not be remembered. Another process inserting the same external id cannot race the
//! read-then-insert: every placement write transaction starts by updating the one revision
//! row, so writers of all processes sharing the database run one after the other, and the
//! read sees whatever an earlier writer committed.

use parking_lot::RwLock;
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::HashMap;

use crate::standard;
use crate::store;

#[derive(Debug, Default)]
pub struct KnownIds {
    projects: RwLock<HashMap<String, i32>>,
    users: RwLock<HashMap<String, i32>>,
    consumer_types: RwLock<HashMap<String, i32>>,
    standard_classes: HashMap<String, i32>,
}

/// Ids one transaction read or inserted, remembered if it commits.
#[derive(Debug, Default)]
pub struct Learned {
    projects: Vec<(String, i32)>,
    users: Vec<(String, i32)>,
    consumer_types: Vec<(String, i32)>,
}

fn lookup(
    cache: &RwLock<HashMap<String, i32>>,
    pending: &[(String, i32)],
    key: &str,
) -> Option<i32> {
    if let Some(id) = cache.read().get(key) {
        return Some(*id);
    }
    pending.iter().find(|(k, _)| k == key).map(|(_, id)| *id)
}

impl KnownIds {
    /// The cache with the standard classes' ids as the database has them.
    pub async fn load<C: ConnectionTrait>(c: &C) -> Result<Self, DbErr> {
        let standard_classes = store::all_resource_classes(c)
            .await?
            .into_iter()
            .filter(|m| standard::RESOURCE_CLASSES.contains(&m.name.as_str()))
            .map(|m| (m.name, m.id))
            .collect();
        Ok(Self {
            standard_classes,
            ..Self::default()
        })
    }

    pub fn standard_class(&self, name: &str) -> Option<i32> {
        self.standard_classes.get(name).copied()
    }

    pub async fn project<C: ConnectionTrait>(
        &self,
        c: &C,
        ext: &str,
        learned: &mut Learned,
    ) -> Result<i32, DbErr> {
        if let Some(id) = lookup(&self.projects, &learned.projects, ext) {
            return Ok(id);
        }
        let id = store::ensure_project(c, ext).await?;
        learned.projects.push((ext.to_string(), id));
        Ok(id)
    }

    pub async fn user<C: ConnectionTrait>(
        &self,
        c: &C,
        ext: &str,
        learned: &mut Learned,
    ) -> Result<i32, DbErr> {
        if let Some(id) = lookup(&self.users, &learned.users, ext) {
            return Ok(id);
        }
        let id = store::ensure_user(c, ext).await?;
        learned.users.push((ext.to_string(), id));
        Ok(id)
    }

    pub async fn consumer_type<C: ConnectionTrait>(
        &self,
        c: &C,
        name: &str,
        learned: &mut Learned,
    ) -> Result<i32, DbErr> {
        if let Some(id) = lookup(&self.consumer_types, &learned.consumer_types, name) {
            return Ok(id);
        }
        let id = store::ensure_consumer_type(c, name).await?;
        learned.consumer_types.push((name.to_string(), id));
        Ok(id)
    }

    /// After the transaction that learned them committed.
    pub fn remember(&self, learned: Learned) {
        if !learned.projects.is_empty() {
            self.projects.write().extend(learned.projects);
        }
        if !learned.users.is_empty() {
            self.users.write().extend(learned.users);
        }
        if !learned.consumer_types.is_empty() {
            self.consumer_types.write().extend(learned.consumer_types);
        }
    }
}
