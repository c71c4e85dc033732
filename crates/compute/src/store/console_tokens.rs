//! Console tokens (Nova's `console_auth_tokens`), keyed by the token's SHA-256.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entities::console_auth_token as t;
use crate::console::ConsoleAuth;
use crate::error::Result;

fn auth_from(m: t::Model) -> ConsoleAuth {
    ConsoleAuth {
        instance_uuid: m.instance_uuid,
        console_type: m.console_type,
        host: m.host,
        target: m.target,
        created_at: m.created_at,
        expires_at: m.expires_at,
    }
}

pub async fn insert(c: &impl ConnectionTrait, token_hash: &str, a: &ConsoleAuth) -> Result<()> {
    t::Entity::insert(t::ActiveModel {
        token_hash: Set(token_hash.to_string()),
        instance_uuid: Set(a.instance_uuid.clone()),
        console_type: Set(a.console_type.clone()),
        host: Set(a.host.clone()),
        target: Set(a.target.clone()),
        created_at: Set(a.created_at),
        expires_at: Set(a.expires_at),
        ..Default::default()
    })
    .exec(c)
    .await?;
    Ok(())
}

/// The grant of a token hash, expired or not.
pub async fn get(c: &impl ConnectionTrait, token_hash: &str) -> Result<Option<ConsoleAuth>> {
    Ok(t::Entity::find()
        .filter(t::Column::TokenHash.eq(token_hash))
        .one(c)
        .await?
        .map(auth_from))
}

/// Remove a token and return what it granted, or None when another connection took it first:
/// the DELETE's row count decides, so two processes on one database cannot both use it.
pub async fn take(c: &impl ConnectionTrait, token_hash: &str) -> Result<Option<ConsoleAuth>> {
    let Some(row) = t::Entity::find()
        .filter(t::Column::TokenHash.eq(token_hash))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let gone = t::Entity::delete_many()
        .filter(t::Column::Id.eq(row.id))
        .exec(c)
        .await?;
    Ok((gone.rows_affected == 1).then(|| auth_from(row)))
}

/// Remove the tokens that expired before `now`; returns how many.
pub async fn purge_expired(c: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64> {
    Ok(t::Entity::delete_many()
        .filter(t::Column::ExpiresAt.lt(now))
        .exec(c)
        .await?
        .rows_affected)
}

/// Remove every token of an instance (it is being deleted).
pub async fn delete_for_instance(c: &impl ConnectionTrait, instance_uuid: &str) -> Result<u64> {
    Ok(t::Entity::delete_many()
        .filter(t::Column::InstanceUuid.eq(instance_uuid))
        .exec(c)
        .await?
        .rows_affected)
}
