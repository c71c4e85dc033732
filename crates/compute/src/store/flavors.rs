//! Flavors, their extra specs and their project access; key pairs.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
};
use std::collections::BTreeMap;

use super::entities as e;
use crate::error::Result;
use crate::model::{Flavor, Keypair};

fn flavor_from(m: e::flavor::Model, extra_specs: BTreeMap<String, String>) -> Flavor {
    Flavor {
        id: m.id,
        flavorid: m.flavorid,
        name: m.name,
        memory_mb: m.memory_mb as i64,
        vcpus: m.vcpus as i64,
        root_gb: m.root_gb as i64,
        ephemeral_gb: m.ephemeral_gb as i64,
        swap: m.swap as i64,
        rxtx_factor: m.rxtx_factor,
        is_public: m.is_public,
        disabled: m.disabled,
        description: m.description,
        extra_specs,
        created_at: Some(m.created_at),
        updated_at: m.updated_at,
    }
}

async fn specs_of(c: &impl ConnectionTrait, flavor_id: i32) -> Result<BTreeMap<String, String>> {
    Ok(e::flavor_extra_spec::Entity::find()
        .filter(e::flavor_extra_spec::Column::FlavorId.eq(flavor_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.key, m.value))
        .collect())
}

/// A flavor by its API id (`flavorid`), with its extra specs.
pub async fn get_flavor(c: &impl ConnectionTrait, flavorid: &str) -> Result<Option<Flavor>> {
    let Some(m) = e::flavor::Entity::find()
        .filter(e::flavor::Column::Flavorid.eq(flavorid))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let specs = specs_of(c, m.id).await?;
    Ok(Some(flavor_from(m, specs)))
}

pub async fn get_flavor_by_name(c: &impl ConnectionTrait, name: &str) -> Result<Option<Flavor>> {
    let Some(m) = e::flavor::Entity::find()
        .filter(e::flavor::Column::Name.eq(name))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let specs = specs_of(c, m.id).await?;
    Ok(Some(flavor_from(m, specs)))
}

/// Every flavor with its extra specs, ordered by `flavorid` (Nova's default sort key).
pub async fn list_flavors(c: &impl ConnectionTrait) -> Result<Vec<Flavor>> {
    let rows = e::flavor::Entity::find()
        .order_by(e::flavor::Column::Flavorid, Order::Asc)
        .all(c)
        .await?;
    let mut specs: BTreeMap<i32, BTreeMap<String, String>> = BTreeMap::new();
    for s in e::flavor_extra_spec::Entity::find().all(c).await? {
        specs.entry(s.flavor_id).or_default().insert(s.key, s.value);
    }
    Ok(rows
        .into_iter()
        .map(|m| {
            let sp = specs.remove(&m.id).unwrap_or_default();
            flavor_from(m, sp)
        })
        .collect())
}

/// Insert a flavor; returns it with its row id.
pub async fn insert_flavor(c: &impl ConnectionTrait, f: &Flavor) -> Result<Flavor> {
    let now = Utc::now();
    let r = e::flavor::Entity::insert(e::flavor::ActiveModel {
        flavorid: Set(f.flavorid.clone()),
        name: Set(f.name.clone()),
        memory_mb: Set(f.memory_mb as i32),
        vcpus: Set(f.vcpus as i32),
        root_gb: Set(f.root_gb as i32),
        ephemeral_gb: Set(f.ephemeral_gb as i32),
        swap: Set(f.swap as i32),
        rxtx_factor: Set(f.rxtx_factor),
        is_public: Set(f.is_public),
        disabled: Set(f.disabled),
        description: Set(f.description.clone()),
        created_at: Set(now),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?;
    for (k, v) in &f.extra_specs {
        set_extra_spec(c, r.last_insert_id, k, v).await?;
    }
    Ok(Flavor {
        id: r.last_insert_id,
        created_at: Some(now),
        ..f.clone()
    })
}

pub async fn update_flavor_description(
    c: &impl ConnectionTrait,
    id: i32,
    description: Option<String>,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    e::flavor::Entity::update_many()
        .col_expr(e::flavor::Column::Description, Expr::value(description))
        .col_expr(e::flavor::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(e::flavor::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn delete_flavor(c: &impl ConnectionTrait, id: i32) -> Result<()> {
    e::flavor_extra_spec::Entity::delete_many()
        .filter(e::flavor_extra_spec::Column::FlavorId.eq(id))
        .exec(c)
        .await?;
    e::flavor_project::Entity::delete_many()
        .filter(e::flavor_project::Column::FlavorId.eq(id))
        .exec(c)
        .await?;
    e::flavor::Entity::delete_by_id(id).exec(c).await?;
    Ok(())
}

pub async fn set_extra_spec(
    c: &impl ConnectionTrait,
    flavor_id: i32,
    key: &str,
    value: &str,
) -> Result<()> {
    e::flavor_extra_spec::Entity::delete_many()
        .filter(e::flavor_extra_spec::Column::FlavorId.eq(flavor_id))
        .filter(e::flavor_extra_spec::Column::Key.eq(key))
        .exec(c)
        .await?;
    e::flavor_extra_spec::Entity::insert(e::flavor_extra_spec::ActiveModel {
        flavor_id: Set(flavor_id),
        key: Set(key.to_string()),
        value: Set(value.to_string()),
    })
    .exec(c)
    .await?;
    Ok(())
}

pub async fn delete_extra_spec(
    c: &impl ConnectionTrait,
    flavor_id: i32,
    key: &str,
) -> Result<bool> {
    let r = e::flavor_extra_spec::Entity::delete_many()
        .filter(e::flavor_extra_spec::Column::FlavorId.eq(flavor_id))
        .filter(e::flavor_extra_spec::Column::Key.eq(key))
        .exec(c)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Projects allowed to use a private flavor.
pub async fn flavor_projects(c: &impl ConnectionTrait, flavor_id: i32) -> Result<Vec<String>> {
    Ok(e::flavor_project::Entity::find()
        .filter(e::flavor_project::Column::FlavorId.eq(flavor_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.project_id)
        .collect())
}

/// Private flavors `project_id` may use (row ids).
pub async fn flavors_of_project(c: &impl ConnectionTrait, project_id: &str) -> Result<Vec<i32>> {
    Ok(e::flavor_project::Entity::find()
        .filter(e::flavor_project::Column::ProjectId.eq(project_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.flavor_id)
        .collect())
}

pub async fn add_flavor_project(
    c: &impl ConnectionTrait,
    flavor_id: i32,
    project_id: &str,
) -> Result<()> {
    e::flavor_project::Entity::insert(e::flavor_project::ActiveModel {
        flavor_id: Set(flavor_id),
        project_id: Set(project_id.to_string()),
    })
    .exec(c)
    .await?;
    Ok(())
}

pub async fn remove_flavor_project(
    c: &impl ConnectionTrait,
    flavor_id: i32,
    project_id: &str,
) -> Result<bool> {
    let r = e::flavor_project::Entity::delete_many()
        .filter(e::flavor_project::Column::FlavorId.eq(flavor_id))
        .filter(e::flavor_project::Column::ProjectId.eq(project_id))
        .exec(c)
        .await?;
    Ok(r.rows_affected > 0)
}

// ---------------------------------------------------------------- key pairs

fn keypair_from(m: e::key_pair::Model) -> Keypair {
    Keypair {
        id: m.id,
        user_id: m.user_id,
        name: m.name,
        fingerprint: m.fingerprint,
        public_key: m.public_key,
        key_type: m.r#type,
        created_at: m.created_at,
    }
}

pub async fn get_keypair(
    c: &impl ConnectionTrait,
    user_id: &str,
    name: &str,
) -> Result<Option<Keypair>> {
    Ok(e::key_pair::Entity::find()
        .filter(e::key_pair::Column::UserId.eq(user_id))
        .filter(e::key_pair::Column::Name.eq(name))
        .one(c)
        .await?
        .map(keypair_from))
}

/// A user's key pairs ordered by name (Nova sorts them by name, then id).
pub async fn list_keypairs(c: &impl ConnectionTrait, user_id: &str) -> Result<Vec<Keypair>> {
    Ok(e::key_pair::Entity::find()
        .filter(e::key_pair::Column::UserId.eq(user_id))
        .order_by(e::key_pair::Column::Name, Order::Asc)
        .order_by(e::key_pair::Column::Id, Order::Asc)
        .all(c)
        .await?
        .into_iter()
        .map(keypair_from)
        .collect())
}

pub async fn insert_keypair(c: &impl ConnectionTrait, k: &Keypair) -> Result<Keypair> {
    let r = e::key_pair::Entity::insert(e::key_pair::ActiveModel {
        user_id: Set(k.user_id.clone()),
        name: Set(k.name.clone()),
        fingerprint: Set(k.fingerprint.clone()),
        public_key: Set(k.public_key.clone()),
        r#type: Set(k.key_type.clone()),
        created_at: Set(k.created_at),
        ..Default::default()
    })
    .exec(c)
    .await?;
    Ok(Keypair {
        id: r.last_insert_id,
        ..k.clone()
    })
}

pub async fn delete_keypair(c: &impl ConnectionTrait, user_id: &str, name: &str) -> Result<bool> {
    let r = e::key_pair::Entity::delete_many()
        .filter(e::key_pair::Column::UserId.eq(user_id))
        .filter(e::key_pair::Column::Name.eq(name))
        .exec(c)
        .await?;
    Ok(r.rows_affected > 0)
}
