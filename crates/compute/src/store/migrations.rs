//! Migration records (Nova's `migrations` table): one per evacuation, from `accepted` to
//! `done` (the destination rebuilt it) to `completed` (the source host cleaned up).

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entities::migration as m;
use crate::error::Result;
use crate::model::Migration;

fn from_model(r: m::Model) -> Migration {
    Migration {
        id: r.id,
        uuid: r.uuid,
        instance_uuid: r.instance_uuid,
        migration_type: r.migration_type,
        status: r.status,
        source_compute: r.source_compute,
        source_node: r.source_node,
        dest_compute: r.dest_compute,
        dest_node: r.dest_node,
        project_id: r.project_id,
        user_id: r.user_id,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Record a new migration; returns it with its id.
pub async fn insert(c: &impl ConnectionTrait, x: &Migration) -> Result<Migration> {
    let r = m::Entity::insert(m::ActiveModel {
        uuid: Set(x.uuid.clone()),
        instance_uuid: Set(x.instance_uuid.clone()),
        migration_type: Set(x.migration_type.clone()),
        status: Set(x.status.clone()),
        source_compute: Set(x.source_compute.clone()),
        source_node: Set(x.source_node.clone()),
        dest_compute: Set(x.dest_compute.clone()),
        dest_node: Set(x.dest_node.clone()),
        project_id: Set(x.project_id.clone()),
        user_id: Set(x.user_id.clone()),
        created_at: Set(x.created_at),
        updated_at: Set(x.updated_at),
        ..Default::default()
    })
    .exec(c)
    .await?;
    Ok(Migration {
        id: r.last_insert_id,
        ..x.clone()
    })
}

pub async fn get(c: &impl ConnectionTrait, id: i32) -> Result<Option<Migration>> {
    Ok(m::Entity::find_by_id(id).one(c).await?.map(from_model))
}

/// Every migration, newest first.
pub async fn list(c: &impl ConnectionTrait) -> Result<Vec<Migration>> {
    Ok(m::Entity::find()
        .order_by_desc(m::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect())
}

/// Migrations away from `source` of `kind` in one of `statuses`.
pub async fn from_source(
    c: &impl ConnectionTrait,
    source: &str,
    kind: &str,
    statuses: &[&str],
) -> Result<Vec<Migration>> {
    Ok(m::Entity::find()
        .filter(m::Column::SourceCompute.eq(source))
        .filter(m::Column::MigrationType.eq(kind))
        .filter(m::Column::Status.is_in(statuses.iter().copied()))
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect())
}

/// Set a migration's status (and its destination when known).
pub async fn update(
    c: &impl ConnectionTrait,
    id: i32,
    status: &str,
    dest: Option<(&str, &str)>,
) -> Result<()> {
    let mut am = m::ActiveModel {
        id: Set(id),
        status: Set(status.to_string()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    if let Some((host, node)) = dest {
        am.dest_compute = Set(Some(host.to_string()));
        am.dest_node = Set(Some(node.to_string()));
    }
    m::Entity::update(am).exec(c).await?;
    Ok(())
}
