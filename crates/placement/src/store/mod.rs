//! Persistence of placement: free functions over any sea-orm connection or transaction, so
//! the core composes them into one transaction per request. Queries are built with sea-orm's
//! portable builders; nothing here knows about HTTP or microversions.

pub mod entities;
pub mod migration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use sea_orm_migration::MigratorTrait;
use std::collections::{BTreeSet, HashMap};

use crate::model::{Inventory, Timestamp, TraitFilter};
use entities as e;

pub use entities::allocation::Model as AllocationRow;
pub use entities::consumer::Model as ConsumerRow;
pub use entities::inventory::Model as InventoryRow;
pub use entities::resource_class::Model as ResourceClassRow;
pub use entities::resource_provider::Model as ProviderRow;
pub use entities::trait_::Model as TraitRow;

/// Create or upgrade the schema, and the revision row.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await?;
    if e::state::Entity::find_by_id(1).one(db).await?.is_none() {
        e::state::ActiveModel {
            id: Set(1),
            revision: Set(1),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

pub fn now() -> Timestamp {
    Utc::now()
}

/// Now, as the database stores it (microseconds; whole seconds in MySQL's `TIMESTAMP`, which
/// would round the fraction), so a value kept in memory equals the one read back.
pub fn now_stored(backend: DbBackend) -> Timestamp {
    use chrono::SubsecRound;
    let digits = if backend == DbBackend::MySql { 0 } else { 6 };
    Utc::now().trunc_subsecs(digits)
}

// ---------------------------------------------------------------- revision

/// The revision of the placement data: every committed write has bumped it.
pub async fn revision<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    Ok(e::state::Entity::find_by_id(1)
        .one(c)
        .await?
        .map(|m| m.revision)
        .unwrap_or(0))
}

/// Bump the revision inside a write transaction; returns the new value. One statement where
/// the engine has `RETURNING` (PostgreSQL, SQLite), an update and a read on MySQL.
pub async fn bump_revision<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    let backend = c.get_database_backend();
    if backend != DbBackend::MySql {
        let row = c
            .query_one_raw(Statement::from_string(
                backend,
                "UPDATE placement_state SET revision = revision + 1 WHERE id = 1 RETURNING revision",
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("placement_state".into()))?;
        return row.try_get_by_index::<i64>(0);
    }
    e::state::Entity::update_many()
        .col_expr(
            e::state::Column::Revision,
            Expr::col(e::state::Column::Revision).add(1),
        )
        .filter(e::state::Column::Id.eq(1))
        .exec(c)
        .await?;
    revision(c).await
}

// ---------------------------------------------------------------- resource classes

pub async fn all_resource_classes<C: ConnectionTrait>(
    c: &C,
) -> Result<Vec<ResourceClassRow>, DbErr> {
    e::resource_class::Entity::find()
        .order_by_asc(e::resource_class::Column::Id)
        .all(c)
        .await
}

pub async fn resource_class_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<ResourceClassRow>, DbErr> {
    e::resource_class::Entity::find()
        .filter(e::resource_class::Column::Name.eq(name))
        .one(c)
        .await
}

/// Ids of the named classes that exist.
pub async fn resource_class_ids<C: ConnectionTrait>(
    c: &C,
    names: &BTreeSet<String>,
) -> Result<HashMap<String, i32>, DbErr> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(e::resource_class::Entity::find()
        .filter(e::resource_class::Column::Name.is_in(names.iter().cloned()))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect())
}

pub async fn resource_class_names<C: ConnectionTrait>(
    c: &C,
    ids: &BTreeSet<i32>,
) -> Result<HashMap<i32, String>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(e::resource_class::Entity::find()
        .filter(e::resource_class::Column::Id.is_in(ids.iter().copied()))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.id, m.name))
        .collect())
}

pub async fn max_resource_class_id<C: ConnectionTrait>(c: &C) -> Result<Option<i32>, DbErr> {
    Ok(e::resource_class::Entity::find()
        .select_only()
        .column_as(e::resource_class::Column::Id.max(), "max_id")
        .into_tuple::<Option<i32>>()
        .one(c)
        .await?
        .flatten())
}

pub async fn insert_resource_class<C: ConnectionTrait>(
    c: &C,
    id: i32,
    name: &str,
) -> Result<ResourceClassRow, DbErr> {
    e::resource_class::ActiveModel {
        id: Set(id),
        name: Set(name.to_string()),
        created_at: Set(now()),
        updated_at: Set(None),
    }
    .insert(c)
    .await
}

pub async fn rename_resource_class<C: ConnectionTrait>(
    c: &C,
    id: i32,
    name: &str,
) -> Result<u64, DbErr> {
    Ok(e::resource_class::Entity::update_many()
        .col_expr(e::resource_class::Column::Name, Expr::value(name))
        .col_expr(e::resource_class::Column::UpdatedAt, Expr::value(now()))
        .filter(e::resource_class::Column::Id.eq(id))
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn delete_resource_class<C: ConnectionTrait>(c: &C, id: i32) -> Result<u64, DbErr> {
    Ok(e::resource_class::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn resource_class_in_inventory<C: ConnectionTrait>(
    c: &C,
    id: i32,
) -> Result<bool, DbErr> {
    Ok(e::inventory::Entity::find()
        .filter(e::inventory::Column::ResourceClassId.eq(id))
        .one(c)
        .await?
        .is_some())
}

// ---------------------------------------------------------------- traits

pub async fn list_traits<C: ConnectionTrait>(
    c: &C,
    f: &TraitFilter,
) -> Result<Vec<TraitRow>, DbErr> {
    let mut q = e::trait_::Entity::find().order_by_asc(e::trait_::Column::Name);
    if let Some(names) = &f.name_in {
        q = q.filter(e::trait_::Column::Name.is_in(names.iter().cloned()));
    }
    if let Some(prefix) = &f.prefix {
        q = q.filter(e::trait_::Column::Name.starts_with(prefix.as_str()));
    }
    let mut rows = q.all(c).await?;
    if let Some(associated) = f.associated {
        let used: BTreeSet<i32> = e::provider_trait::Entity::find()
            .select_only()
            .column(e::provider_trait::Column::TraitId)
            .distinct()
            .into_tuple::<i32>()
            .all(c)
            .await?
            .into_iter()
            .collect();
        rows.retain(|t| used.contains(&t.id) == associated);
    }
    Ok(rows)
}

pub async fn all_trait_names<C: ConnectionTrait>(c: &C) -> Result<Vec<(i32, String)>, DbErr> {
    e::trait_::Entity::find()
        .select_only()
        .column(e::trait_::Column::Id)
        .column(e::trait_::Column::Name)
        .into_tuple::<(i32, String)>()
        .all(c)
        .await
}

pub async fn trait_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<TraitRow>, DbErr> {
    e::trait_::Entity::find()
        .filter(e::trait_::Column::Name.eq(name))
        .one(c)
        .await
}

pub async fn traits_by_names<C: ConnectionTrait>(
    c: &C,
    names: &BTreeSet<String>,
) -> Result<Vec<TraitRow>, DbErr> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    e::trait_::Entity::find()
        .filter(e::trait_::Column::Name.is_in(names.iter().cloned()))
        .order_by_asc(e::trait_::Column::Name)
        .all(c)
        .await
}

pub async fn insert_trait<C: ConnectionTrait>(c: &C, name: &str) -> Result<TraitRow, DbErr> {
    e::trait_::ActiveModel {
        name: Set(name.to_string()),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    }
    .insert(c)
    .await
}

/// Insert the standard traits missing from the database (at start).
pub async fn insert_traits<C: ConnectionTrait>(c: &C, names: &[&str]) -> Result<(), DbErr> {
    let now = now();
    for chunk in names.chunks(200) {
        let models = chunk.iter().map(|n| e::trait_::ActiveModel {
            name: Set((*n).to_string()),
            created_at: Set(now),
            updated_at: Set(None),
            ..Default::default()
        });
        e::trait_::Entity::insert_many(models)
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

pub async fn delete_trait<C: ConnectionTrait>(c: &C, id: i32) -> Result<u64, DbErr> {
    Ok(e::trait_::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn trait_in_use<C: ConnectionTrait>(c: &C, id: i32) -> Result<bool, DbErr> {
    Ok(e::provider_trait::Entity::find()
        .filter(e::provider_trait::Column::TraitId.eq(id))
        .one(c)
        .await?
        .is_some())
}

pub async fn provider_trait_ids<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
) -> Result<BTreeSet<i32>, DbErr> {
    Ok(e::provider_trait::Entity::find()
        .filter(e::provider_trait::Column::ResourceProviderId.eq(rp_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.trait_id)
        .collect())
}

pub async fn add_provider_traits<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    ids: &BTreeSet<i32>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let models = ids.iter().map(|t| e::provider_trait::ActiveModel {
        trait_id: Set(*t),
        resource_provider_id: Set(rp_id),
    });
    e::provider_trait::Entity::insert_many(models)
        .exec_without_returning(c)
        .await?;
    Ok(())
}

pub async fn remove_provider_traits<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    ids: &BTreeSet<i32>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    e::provider_trait::Entity::delete_many()
        .filter(e::provider_trait::Column::ResourceProviderId.eq(rp_id))
        .filter(e::provider_trait::Column::TraitId.is_in(ids.iter().copied()))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- providers

pub async fn provider_by_uuid<C: ConnectionTrait>(
    c: &C,
    uuid: &str,
) -> Result<Option<ProviderRow>, DbErr> {
    e::resource_provider::Entity::find()
        .filter(e::resource_provider::Column::Uuid.eq(uuid))
        .one(c)
        .await
}

pub async fn provider_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<ProviderRow>, DbErr> {
    e::resource_provider::Entity::find()
        .filter(e::resource_provider::Column::Name.eq(name))
        .one(c)
        .await
}

pub async fn provider_by_id<C: ConnectionTrait>(
    c: &C,
    id: i32,
) -> Result<Option<ProviderRow>, DbErr> {
    e::resource_provider::Entity::find_by_id(id).one(c).await
}

pub async fn providers_by_uuids<C: ConnectionTrait>(
    c: &C,
    uuids: &BTreeSet<String>,
) -> Result<Vec<ProviderRow>, DbErr> {
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    e::resource_provider::Entity::find()
        .filter(e::resource_provider::Column::Uuid.is_in(uuids.iter().cloned()))
        .all(c)
        .await
}

pub async fn providers_in_tree<C: ConnectionTrait>(
    c: &C,
    root_id: i32,
) -> Result<Vec<ProviderRow>, DbErr> {
    e::resource_provider::Entity::find()
        .filter(e::resource_provider::Column::RootProviderId.eq(root_id))
        .order_by_asc(e::resource_provider::Column::Id)
        .all(c)
        .await
}

pub async fn insert_provider<C: ConnectionTrait>(
    c: &C,
    uuid: &str,
    name: &str,
    parent_id: Option<i32>,
    root_id: Option<i32>,
) -> Result<ProviderRow, DbErr> {
    e::resource_provider::ActiveModel {
        uuid: Set(uuid.to_string()),
        name: Set(name.to_string()),
        generation: Set(0),
        root_provider_id: Set(root_id),
        parent_provider_id: Set(parent_id),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    }
    .insert(c)
    .await
}

/// Name, parent and root of one provider (no generation change, as upstream).
pub async fn update_provider<C: ConnectionTrait>(
    c: &C,
    id: i32,
    name: &str,
    parent_id: Option<i32>,
    root_id: i32,
) -> Result<u64, DbErr> {
    Ok(e::resource_provider::Entity::update_many()
        .col_expr(e::resource_provider::Column::Name, Expr::value(name))
        .col_expr(
            e::resource_provider::Column::ParentProviderId,
            Expr::value(parent_id),
        )
        .col_expr(
            e::resource_provider::Column::RootProviderId,
            Expr::value(root_id),
        )
        .col_expr(e::resource_provider::Column::UpdatedAt, Expr::value(now()))
        .filter(e::resource_provider::Column::Id.eq(id))
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn set_root<C: ConnectionTrait>(
    c: &C,
    ids: &BTreeSet<i32>,
    root_id: Option<i32>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    e::resource_provider::Entity::update_many()
        .col_expr(
            e::resource_provider::Column::RootProviderId,
            Expr::value(root_id),
        )
        .filter(e::resource_provider::Column::Id.is_in(ids.iter().copied()))
        .exec(c)
        .await?;
    Ok(())
}

/// Compare-and-set of a provider's generation: false when it is no longer `expected`.
pub async fn bump_provider_generation<C: ConnectionTrait>(
    c: &C,
    id: i32,
    expected: i64,
) -> Result<bool, DbErr> {
    bump_provider_generation_at(c, id, expected, now()).await
}

/// [`bump_provider_generation`] with the `updated_at` to record.
pub async fn bump_provider_generation_at<C: ConnectionTrait>(
    c: &C,
    id: i32,
    expected: i64,
    at: Timestamp,
) -> Result<bool, DbErr> {
    let res = e::resource_provider::Entity::update_many()
        .col_expr(
            e::resource_provider::Column::Generation,
            Expr::value(expected + 1),
        )
        .col_expr(e::resource_provider::Column::UpdatedAt, Expr::value(at))
        .filter(e::resource_provider::Column::Id.eq(id))
        .filter(e::resource_provider::Column::Generation.eq(expected))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn has_children<C: ConnectionTrait>(c: &C, id: i32) -> Result<bool, DbErr> {
    Ok(e::resource_provider::Entity::find()
        .filter(e::resource_provider::Column::ParentProviderId.eq(id))
        .one(c)
        .await?
        .is_some())
}

pub async fn provider_has_allocations<C: ConnectionTrait>(c: &C, id: i32) -> Result<bool, DbErr> {
    Ok(e::allocation::Entity::find()
        .filter(e::allocation::Column::ResourceProviderId.eq(id))
        .one(c)
        .await?
        .is_some())
}

/// Delete a provider with its inventories, aggregate and trait associations. The foreign
/// keys refuse it if children or allocations remain.
pub async fn delete_provider<C: ConnectionTrait>(c: &C, id: i32) -> Result<u64, DbErr> {
    e::inventory::Entity::delete_many()
        .filter(e::inventory::Column::ResourceProviderId.eq(id))
        .exec(c)
        .await?;
    e::provider_aggregate::Entity::delete_many()
        .filter(e::provider_aggregate::Column::ResourceProviderId.eq(id))
        .exec(c)
        .await?;
    e::provider_trait::Entity::delete_many()
        .filter(e::provider_trait::Column::ResourceProviderId.eq(id))
        .exec(c)
        .await?;
    // A root points at itself; unhook it so the row can go.
    e::resource_provider::Entity::update_many()
        .col_expr(
            e::resource_provider::Column::RootProviderId,
            Expr::value(Option::<i32>::None),
        )
        .filter(e::resource_provider::Column::Id.eq(id))
        .filter(e::resource_provider::Column::RootProviderId.eq(id))
        .exec(c)
        .await?;
    Ok(e::resource_provider::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

// ---------------------------------------------------------------- inventories

pub async fn inventories_of<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
) -> Result<Vec<InventoryRow>, DbErr> {
    e::inventory::Entity::find()
        .filter(e::inventory::Column::ResourceProviderId.eq(rp_id))
        .order_by_asc(e::inventory::Column::ResourceClassId)
        .all(c)
        .await
}

pub async fn insert_inventory<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    rc_id: i32,
    inv: &Inventory,
) -> Result<(), DbErr> {
    e::inventory::ActiveModel {
        resource_provider_id: Set(rp_id),
        resource_class_id: Set(rc_id),
        total: Set(inv.total as i32),
        reserved: Set(inv.reserved as i32),
        min_unit: Set(inv.min_unit as i32),
        max_unit: Set(inv.max_unit as i32),
        step_size: Set(inv.step_size as i32),
        allocation_ratio: Set(inv.allocation_ratio),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    }
    .insert(c)
    .await?;
    Ok(())
}

pub async fn update_inventory<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    rc_id: i32,
    inv: &Inventory,
) -> Result<u64, DbErr> {
    use e::inventory::Column as Col;
    Ok(e::inventory::Entity::update_many()
        .col_expr(Col::Total, Expr::value(inv.total as i32))
        .col_expr(Col::Reserved, Expr::value(inv.reserved as i32))
        .col_expr(Col::MinUnit, Expr::value(inv.min_unit as i32))
        .col_expr(Col::MaxUnit, Expr::value(inv.max_unit as i32))
        .col_expr(Col::StepSize, Expr::value(inv.step_size as i32))
        .col_expr(Col::AllocationRatio, Expr::value(inv.allocation_ratio))
        .col_expr(Col::UpdatedAt, Expr::value(now()))
        .filter(Col::ResourceProviderId.eq(rp_id))
        .filter(Col::ResourceClassId.eq(rc_id))
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn delete_inventories<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    rc_ids: &BTreeSet<i32>,
) -> Result<u64, DbErr> {
    if rc_ids.is_empty() {
        return Ok(0);
    }
    Ok(e::inventory::Entity::delete_many()
        .filter(e::inventory::Column::ResourceProviderId.eq(rp_id))
        .filter(e::inventory::Column::ResourceClassId.is_in(rc_ids.iter().copied()))
        .exec(c)
        .await?
        .rows_affected)
}

/// Summed allocations per (provider, class), for the given providers (all when None).
pub async fn usage<C: ConnectionTrait>(
    c: &C,
    rp_ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<(i32, i32, i64)>, DbErr> {
    use e::allocation::Column as Col;
    // SUM is DECIMAL on MySQL (and NUMERIC on PostgreSQL for a BIGINT): cast back to an integer.
    let int = match c.get_database_backend() {
        sea_orm::DbBackend::MySql => "SIGNED",
        sea_orm::DbBackend::Postgres => "BIGINT",
        _ => "INTEGER",
    };
    let mut q = e::allocation::Entity::find()
        .select_only()
        .column(Col::ResourceProviderId)
        .column(Col::ResourceClassId)
        .column_as(
            sea_orm::sea_query::Expr::cust(format!("CAST(SUM(used) AS {int})")),
            "used",
        )
        .group_by(Col::ResourceProviderId)
        .group_by(Col::ResourceClassId);
    if let Some(ids) = rp_ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        q = q.filter(Col::ResourceProviderId.is_in(ids.iter().copied()));
    }
    q.into_tuple::<(i32, i32, i64)>().all(c).await
}

/// Classes among `rc_ids` that have allocations on the provider.
pub async fn classes_in_use<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    rc_ids: &BTreeSet<i32>,
) -> Result<BTreeSet<i32>, DbErr> {
    if rc_ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    use e::allocation::Column as Col;
    Ok(e::allocation::Entity::find()
        .select_only()
        .column(Col::ResourceClassId)
        .distinct()
        .filter(Col::ResourceProviderId.eq(rp_id))
        .filter(Col::ResourceClassId.is_in(rc_ids.iter().copied()))
        .into_tuple::<i32>()
        .all(c)
        .await?
        .into_iter()
        .collect())
}

// ---------------------------------------------------------------- aggregates

pub async fn provider_aggregates<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
) -> Result<Vec<(i32, String)>, DbErr> {
    let ids: Vec<i32> = e::provider_aggregate::Entity::find()
        .filter(e::provider_aggregate::Column::ResourceProviderId.eq(rp_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.aggregate_id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(e::aggregate::Entity::find()
        .filter(e::aggregate::Column::Id.is_in(ids))
        .order_by_asc(e::aggregate::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.id, m.uuid))
        .collect())
}

/// The aggregate's id, creating the aggregate if it was never seen.
pub async fn ensure_aggregate<C: ConnectionTrait>(c: &C, uuid: &str) -> Result<i32, DbErr> {
    if let Some(m) = e::aggregate::Entity::find()
        .filter(e::aggregate::Column::Uuid.eq(uuid))
        .one(c)
        .await?
    {
        return Ok(m.id);
    }
    Ok(e::aggregate::ActiveModel {
        uuid: Set(uuid.to_string()),
        ..Default::default()
    }
    .insert(c)
    .await?
    .id)
}

pub async fn add_provider_aggregates<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    ids: &BTreeSet<i32>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let models = ids.iter().map(|a| e::provider_aggregate::ActiveModel {
        resource_provider_id: Set(rp_id),
        aggregate_id: Set(*a),
    });
    e::provider_aggregate::Entity::insert_many(models)
        .exec_without_returning(c)
        .await?;
    Ok(())
}

pub async fn remove_provider_aggregates<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
    ids: &BTreeSet<i32>,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    e::provider_aggregate::Entity::delete_many()
        .filter(e::provider_aggregate::Column::ResourceProviderId.eq(rp_id))
        .filter(e::provider_aggregate::Column::AggregateId.is_in(ids.iter().copied()))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- projects, users, types

pub async fn project_id_of<C: ConnectionTrait>(c: &C, ext: &str) -> Result<Option<i32>, DbErr> {
    Ok(e::project::Entity::find()
        .filter(e::project::Column::ExternalId.eq(ext))
        .one(c)
        .await?
        .map(|m| m.id))
}

/// The project's id, inserting the project if it was never seen (one statement either way
/// after the read: the insert returns the id on every engine).
pub async fn ensure_project<C: ConnectionTrait>(c: &C, ext: &str) -> Result<i32, DbErr> {
    if let Some(id) = project_id_of(c, ext).await? {
        return Ok(id);
    }
    Ok(e::project::Entity::insert(e::project::ActiveModel {
        external_id: Set(ext.to_string()),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?
    .last_insert_id)
}

pub async fn user_id_of<C: ConnectionTrait>(c: &C, ext: &str) -> Result<Option<i32>, DbErr> {
    Ok(e::user::Entity::find()
        .filter(e::user::Column::ExternalId.eq(ext))
        .one(c)
        .await?
        .map(|m| m.id))
}

pub async fn ensure_user<C: ConnectionTrait>(c: &C, ext: &str) -> Result<i32, DbErr> {
    if let Some(id) = user_id_of(c, ext).await? {
        return Ok(id);
    }
    Ok(e::user::Entity::insert(e::user::ActiveModel {
        external_id: Set(ext.to_string()),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?
    .last_insert_id)
}

pub async fn ensure_consumer_type<C: ConnectionTrait>(c: &C, name: &str) -> Result<i32, DbErr> {
    if let Some(m) = e::consumer_type::Entity::find()
        .filter(e::consumer_type::Column::Name.eq(name))
        .one(c)
        .await?
    {
        return Ok(m.id);
    }
    Ok(
        e::consumer_type::Entity::insert(e::consumer_type::ActiveModel {
            name: Set(name.to_string()),
            created_at: Set(now()),
            updated_at: Set(None),
            ..Default::default()
        })
        .exec(c)
        .await?
        .last_insert_id,
    )
}

/// External ids of projects, users and names of consumer types, by internal id.
pub struct ConsumerNames {
    pub projects: HashMap<i32, String>,
    pub users: HashMap<i32, String>,
    pub types: HashMap<i32, String>,
}

pub async fn consumer_names<C: ConnectionTrait>(
    c: &C,
    consumers: &[ConsumerRow],
) -> Result<ConsumerNames, DbErr> {
    let pids: BTreeSet<i32> = consumers.iter().map(|m| m.project_id).collect();
    let uids: BTreeSet<i32> = consumers.iter().map(|m| m.user_id).collect();
    let tids: BTreeSet<i32> = consumers
        .iter()
        .filter_map(|m| m.consumer_type_id)
        .collect();
    let projects = if pids.is_empty() {
        HashMap::new()
    } else {
        e::project::Entity::find()
            .filter(e::project::Column::Id.is_in(pids))
            .all(c)
            .await?
            .into_iter()
            .map(|m| (m.id, m.external_id))
            .collect()
    };
    let users = if uids.is_empty() {
        HashMap::new()
    } else {
        e::user::Entity::find()
            .filter(e::user::Column::Id.is_in(uids))
            .all(c)
            .await?
            .into_iter()
            .map(|m| (m.id, m.external_id))
            .collect()
    };
    let types = if tids.is_empty() {
        HashMap::new()
    } else {
        e::consumer_type::Entity::find()
            .filter(e::consumer_type::Column::Id.is_in(tids))
            .all(c)
            .await?
            .into_iter()
            .map(|m| (m.id, m.name))
            .collect()
    };
    Ok(ConsumerNames {
        projects,
        users,
        types,
    })
}

// ---------------------------------------------------------------- consumers, allocations

pub async fn consumer_by_uuid<C: ConnectionTrait>(
    c: &C,
    uuid: &str,
) -> Result<Option<ConsumerRow>, DbErr> {
    e::consumer::Entity::find()
        .filter(e::consumer::Column::Uuid.eq(uuid))
        .one(c)
        .await
}

pub async fn consumers_by_uuids<C: ConnectionTrait>(
    c: &C,
    uuids: &BTreeSet<String>,
) -> Result<Vec<ConsumerRow>, DbErr> {
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    e::consumer::Entity::find()
        .filter(e::consumer::Column::Uuid.is_in(uuids.iter().cloned()))
        .all(c)
        .await
}

/// Insert a consumer with the generation it ends its first write with (no read back).
pub async fn insert_consumer_with_generation<C: ConnectionTrait>(
    c: &C,
    uuid: &str,
    project_id: i32,
    user_id: i32,
    consumer_type_id: Option<i32>,
    generation: i32,
) -> Result<(), DbErr> {
    e::consumer::Entity::insert(e::consumer::ActiveModel {
        uuid: Set(uuid.to_string()),
        project_id: Set(project_id),
        user_id: Set(user_id),
        generation: Set(generation),
        consumer_type_id: Set(consumer_type_id),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Compare-and-set of a consumer's generation that also records its project, user and type
/// (one statement instead of an update and a bump): false when the generation moved.
pub async fn write_consumer<C: ConnectionTrait>(
    c: &C,
    id: i32,
    expected: i64,
    project_id: i32,
    user_id: i32,
    consumer_type_id: Option<i32>,
) -> Result<bool, DbErr> {
    use e::consumer::Column as Col;
    let res = e::consumer::Entity::update_many()
        .col_expr(Col::Generation, Expr::value((expected + 1) as i32))
        .col_expr(Col::ProjectId, Expr::value(project_id))
        .col_expr(Col::UserId, Expr::value(user_id))
        .col_expr(Col::ConsumerTypeId, Expr::value(consumer_type_id))
        .col_expr(Col::UpdatedAt, Expr::value(now()))
        .filter(Col::Id.eq(id))
        .filter(Col::Generation.eq(expected as i32))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Delete a consumer if its generation is still `expected` (false when it moved).
pub async fn delete_consumer_at_generation<C: ConnectionTrait>(
    c: &C,
    id: i32,
    expected: i64,
) -> Result<bool, DbErr> {
    use e::consumer::Column as Col;
    let res = e::consumer::Entity::delete_many()
        .filter(Col::Id.eq(id))
        .filter(Col::Generation.eq(expected as i32))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Delete a consumer by uuid, whatever its generation.
pub async fn delete_consumer<C: ConnectionTrait>(c: &C, uuid: &str) -> Result<(), DbErr> {
    e::consumer::Entity::delete_many()
        .filter(e::consumer::Column::Uuid.eq(uuid))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn allocations_of_consumers<C: ConnectionTrait>(
    c: &C,
    uuids: &BTreeSet<String>,
) -> Result<Vec<AllocationRow>, DbErr> {
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    e::allocation::Entity::find()
        .filter(e::allocation::Column::ConsumerId.is_in(uuids.iter().cloned()))
        .order_by_asc(e::allocation::Column::Id)
        .all(c)
        .await
}

pub async fn allocations_of_provider<C: ConnectionTrait>(
    c: &C,
    rp_id: i32,
) -> Result<Vec<AllocationRow>, DbErr> {
    e::allocation::Entity::find()
        .filter(e::allocation::Column::ResourceProviderId.eq(rp_id))
        .order_by_asc(e::allocation::Column::Id)
        .all(c)
        .await
}

pub async fn delete_allocations_of_consumers<C: ConnectionTrait>(
    c: &C,
    uuids: &BTreeSet<String>,
) -> Result<(), DbErr> {
    if uuids.is_empty() {
        return Ok(());
    }
    e::allocation::Entity::delete_many()
        .filter(e::allocation::Column::ConsumerId.is_in(uuids.iter().cloned()))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn insert_allocations<C: ConnectionTrait>(
    c: &C,
    rows: &[(i32, String, i32, i64)],
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = now();
    let models = rows
        .iter()
        .map(|(rp, consumer, rc, used)| e::allocation::ActiveModel {
            resource_provider_id: Set(*rp),
            consumer_id: Set(consumer.clone()),
            resource_class_id: Set(*rc),
            used: Set(*used as i32),
            created_at: Set(now),
            updated_at: Set(None),
            ..Default::default()
        });
    e::allocation::Entity::insert_many(models)
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// Allocations of the consumers of one project (and user), with the consumers.
pub async fn project_allocations<C: ConnectionTrait>(
    c: &C,
    project: &str,
    user: Option<&str>,
) -> Result<(Vec<ConsumerRow>, Vec<AllocationRow>), DbErr> {
    let Some(pid) = project_id_of(c, project).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut q = e::consumer::Entity::find().filter(e::consumer::Column::ProjectId.eq(pid));
    if let Some(u) = user {
        let Some(uid) = user_id_of(c, u).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        q = q.filter(e::consumer::Column::UserId.eq(uid));
    }
    let consumers = q.all(c).await?;
    let uuids: BTreeSet<String> = consumers.iter().map(|m| m.uuid.clone()).collect();
    let allocs = allocations_of_consumers(c, &uuids).await?;
    Ok((consumers, allocs))
}

// ---------------------------------------------------------------- bulk reads (the view)

pub async fn providers<C: ConnectionTrait>(
    c: &C,
    ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<ProviderRow>, DbErr> {
    let mut q = e::resource_provider::Entity::find().order_by_asc(e::resource_provider::Column::Id);
    if let Some(ids) = ids {
        q = q.filter(e::resource_provider::Column::Id.is_in(ids.iter().copied()));
    }
    q.all(c).await
}

pub async fn inventories<C: ConnectionTrait>(
    c: &C,
    rp_ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<InventoryRow>, DbErr> {
    let mut q = e::inventory::Entity::find().order_by_asc(e::inventory::Column::ResourceClassId);
    if let Some(ids) = rp_ids {
        q = q.filter(e::inventory::Column::ResourceProviderId.is_in(ids.iter().copied()));
    }
    q.all(c).await
}

pub async fn provider_traits<C: ConnectionTrait>(
    c: &C,
    rp_ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<(i32, i32)>, DbErr> {
    let mut q = e::provider_trait::Entity::find();
    if let Some(ids) = rp_ids {
        q = q.filter(e::provider_trait::Column::ResourceProviderId.is_in(ids.iter().copied()));
    }
    Ok(q.all(c)
        .await?
        .into_iter()
        .map(|m| (m.resource_provider_id, m.trait_id))
        .collect())
}

pub async fn provider_aggregate_links<C: ConnectionTrait>(
    c: &C,
    rp_ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<(i32, i32)>, DbErr> {
    let mut q = e::provider_aggregate::Entity::find();
    if let Some(ids) = rp_ids {
        q = q.filter(e::provider_aggregate::Column::ResourceProviderId.is_in(ids.iter().copied()));
    }
    Ok(q.all(c)
        .await?
        .into_iter()
        .map(|m| (m.resource_provider_id, m.aggregate_id))
        .collect())
}

pub async fn aggregates<C: ConnectionTrait>(c: &C) -> Result<Vec<(i32, String)>, DbErr> {
    Ok(e::aggregate::Entity::find()
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.id, m.uuid))
        .collect())
}
