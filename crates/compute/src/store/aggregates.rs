//! Host aggregates: one row each, hosts and metadata as JSON. The `availability_zone` column
//! mirrors the `availability_zone` metadata key (Nova keeps the zone only as metadata).

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
};

use super::entities as e;
use crate::error::{ComputeError, Result};
use crate::model::Aggregate;

fn aggregate_from(m: e::aggregate::Model) -> Result<Aggregate> {
    let unreadable = |err: serde_json::Error| {
        ComputeError::Internal(format!("aggregate {} unreadable: {err}", m.id))
    };
    Ok(Aggregate {
        id: m.id,
        uuid: m.uuid.clone(),
        name: m.name.clone(),
        availability_zone: m.availability_zone.clone(),
        hosts: serde_json::from_value(m.hosts.clone()).map_err(unreadable)?,
        metadata: serde_json::from_value(m.metadata.clone()).map_err(unreadable)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn json_of<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ComputeError::Internal(e.to_string()))
}

/// Every aggregate, by id.
pub async fn list_aggregates(c: &impl ConnectionTrait) -> Result<Vec<Aggregate>> {
    e::aggregate::Entity::find()
        .order_by(e::aggregate::Column::Id, Order::Asc)
        .all(c)
        .await?
        .into_iter()
        .map(aggregate_from)
        .collect()
}

pub async fn get_aggregate(c: &impl ConnectionTrait, id: i32) -> Result<Option<Aggregate>> {
    e::aggregate::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(aggregate_from)
        .transpose()
}

pub async fn find_aggregate_by_name(
    c: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<Aggregate>> {
    e::aggregate::Entity::find()
        .filter(e::aggregate::Column::Name.eq(name))
        .one(c)
        .await?
        .map(aggregate_from)
        .transpose()
}

/// Insert a new aggregate; returns it with its id.
pub async fn insert_aggregate(c: &impl ConnectionTrait, a: &Aggregate) -> Result<Aggregate> {
    let r = e::aggregate::Entity::insert(e::aggregate::ActiveModel {
        uuid: Set(a.uuid.clone()),
        name: Set(a.name.clone()),
        availability_zone: Set(a.metadata.get("availability_zone").cloned()),
        hosts: Set(json_of(&a.hosts)?),
        metadata: Set(json_of(&a.metadata)?),
        created_at: Set(a.created_at),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?;
    get_aggregate(c, r.last_insert_id)
        .await?
        .ok_or_else(|| ComputeError::Internal("aggregate row vanished".into()))
}

/// Save name, hosts and metadata; stamps `updated_at`.
pub async fn save_aggregate(c: &impl ConnectionTrait, a: &mut Aggregate) -> Result<()> {
    a.availability_zone = a.metadata.get("availability_zone").cloned();
    a.updated_at = Some(Utc::now());
    e::aggregate::Entity::update(e::aggregate::ActiveModel {
        id: Set(a.id),
        uuid: Set(a.uuid.clone()),
        name: Set(a.name.clone()),
        availability_zone: Set(a.availability_zone.clone()),
        hosts: Set(json_of(&a.hosts)?),
        metadata: Set(json_of(&a.metadata)?),
        created_at: Set(a.created_at),
        updated_at: Set(a.updated_at),
    })
    .exec(c)
    .await?;
    Ok(())
}

pub async fn delete_aggregate(c: &impl ConnectionTrait, id: i32) -> Result<()> {
    e::aggregate::Entity::delete_by_id(id).exec(c).await?;
    Ok(())
}
