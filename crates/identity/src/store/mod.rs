//! Persistence of the identity domain. Free functions over any sea-orm connection or
//! transaction, so the core composes several of them into one transaction when a change
//! spans tables (deleting a domain, replacing a project's tags).

pub mod entities;
pub mod migration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;

use crate::model::*;
use entities as e;

/// Create or upgrade the schema.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}

fn to_json(map: &Extra) -> Value {
    Value::Object(map.clone())
}

fn from_json(v: Value) -> Extra {
    match v {
        Value::Object(m) => m,
        _ => Extra::new(),
    }
}

// ---------------------------------------------------------------- domains

impl From<e::domain::Model> for Domain {
    fn from(m: e::domain::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            enabled: m.enabled,
            extra: from_json(m.extra),
            options: from_json(m.options),
        }
    }
}

fn domain_am(d: &Domain) -> e::domain::ActiveModel {
    e::domain::ActiveModel {
        id: Set(d.id.clone()),
        name: Set(d.name.clone()),
        enabled: Set(d.enabled),
        description: Set(d.description.clone()),
        extra: Set(to_json(&d.extra)),
        options: Set(to_json(&d.options)),
    }
}

pub async fn insert_domain<C: ConnectionTrait>(c: &C, d: &Domain) -> Result<(), DbErr> {
    e::domain::Entity::insert(domain_am(d))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_domain<C: ConnectionTrait>(c: &C, d: &Domain) -> Result<(), DbErr> {
    domain_am(d).update(c).await.map(|_| ())
}

pub async fn get_domain<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Domain>, DbErr> {
    Ok(e::domain::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn find_domain_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<Domain>, DbErr> {
    Ok(e::domain::Entity::find()
        .filter(e::domain::Column::Name.eq(name))
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_domains<C: ConnectionTrait>(
    c: &C,
    name: Option<&str>,
    enabled: Option<bool>,
) -> Result<Vec<Domain>, DbErr> {
    let mut q = e::domain::Entity::find().order_by_asc(e::domain::Column::Name);
    if let Some(n) = name {
        q = q.filter(e::domain::Column::Name.eq(n));
    }
    if let Some(en) = enabled {
        q = q.filter(e::domain::Column::Enabled.eq(en));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_domain<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::domain::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

// ---------------------------------------------------------------- projects

fn project_from(m: e::project::Model, tags: Vec<String>) -> Project {
    Project {
        id: m.id,
        name: m.name,
        domain_id: m.domain_id,
        parent_id: m.parent_id,
        description: m.description,
        enabled: m.enabled,
        extra: from_json(m.extra),
        options: from_json(m.options),
        tags,
    }
}

fn project_am(p: &Project) -> e::project::ActiveModel {
    e::project::ActiveModel {
        id: Set(p.id.clone()),
        name: Set(p.name.clone()),
        domain_id: Set(p.domain_id.clone()),
        parent_id: Set(p.parent_id.clone()),
        enabled: Set(p.enabled),
        description: Set(p.description.clone()),
        extra: Set(to_json(&p.extra)),
        options: Set(to_json(&p.options)),
    }
}

async fn tags_of<C: ConnectionTrait>(
    c: &C,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<String>>, DbErr> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    for chunk in ids.chunks(500) {
        let rows = e::project_tag::Entity::find()
            .filter(e::project_tag::Column::ProjectId.is_in(chunk.iter().cloned()))
            .order_by_asc(e::project_tag::Column::Name)
            .all(c)
            .await?;
        for r in rows {
            out.entry(r.project_id).or_default().push(r.name);
        }
    }
    Ok(out)
}

async fn with_tags<C: ConnectionTrait>(
    c: &C,
    rows: Vec<e::project::Model>,
) -> Result<Vec<Project>, DbErr> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut tags = tags_of(c, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            project_from(r, t)
        })
        .collect())
}

pub async fn insert_project<C: ConnectionTrait>(c: &C, p: &Project) -> Result<(), DbErr> {
    e::project::Entity::insert(project_am(p))
        .exec_without_returning(c)
        .await?;
    set_project_tags(c, &p.id, &p.tags).await
}

pub async fn update_project<C: ConnectionTrait>(c: &C, p: &Project) -> Result<(), DbErr> {
    project_am(p).update(c).await?;
    set_project_tags(c, &p.id, &p.tags).await
}

pub async fn set_project_tags<C: ConnectionTrait>(
    c: &C,
    project_id: &str,
    tags: &[String],
) -> Result<(), DbErr> {
    e::project_tag::Entity::delete_many()
        .filter(e::project_tag::Column::ProjectId.eq(project_id))
        .exec(c)
        .await?;
    if tags.is_empty() {
        return Ok(());
    }
    let rows = tags.iter().map(|t| e::project_tag::ActiveModel {
        project_id: Set(project_id.to_string()),
        name: Set(t.clone()),
    });
    e::project_tag::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([
                e::project_tag::Column::ProjectId,
                e::project_tag::Column::Name,
            ])
            // `do_nothing_on`: MySQL has no ON CONFLICT DO NOTHING; sea-query writes it as an
            // update of that column to itself there.
            .do_nothing_on([e::project_tag::Column::ProjectId])
            .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

pub async fn get_project<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Project>, DbErr> {
    match e::project::Entity::find_by_id(id).one(c).await? {
        Some(m) => Ok(with_tags(c, vec![m]).await?.pop()),
        None => Ok(None),
    }
}

pub async fn find_project_by_name<C: ConnectionTrait>(
    c: &C,
    domain_id: &str,
    name: &str,
) -> Result<Option<Project>, DbErr> {
    match e::project::Entity::find()
        .filter(e::project::Column::DomainId.eq(domain_id))
        .filter(e::project::Column::Name.eq(name))
        .one(c)
        .await?
    {
        Some(m) => Ok(with_tags(c, vec![m]).await?.pop()),
        None => Ok(None),
    }
}

/// Filters of `GET /v3/projects`.
#[derive(Debug, Default, Clone)]
pub struct ProjectFilter {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    /// `Some(None)` = top-level projects of their domain.
    pub parent_id: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub ids: Option<Vec<String>>,
}

pub async fn list_projects<C: ConnectionTrait>(
    c: &C,
    f: &ProjectFilter,
) -> Result<Vec<Project>, DbErr> {
    use e::project::Column as P;
    let mut q = e::project::Entity::find()
        .order_by_asc(P::Name)
        .order_by_asc(P::Id);
    if let Some(n) = &f.name {
        q = q.filter(P::Name.eq(n.as_str()));
    }
    if let Some(d) = &f.domain_id {
        q = q.filter(P::DomainId.eq(d.as_str()));
    }
    match &f.parent_id {
        Some(Some(p)) => q = q.filter(P::ParentId.eq(p.as_str())),
        Some(None) => q = q.filter(P::ParentId.is_null()),
        None => {}
    }
    if let Some(en) = f.enabled {
        q = q.filter(P::Enabled.eq(en));
    }
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        q = q.filter(P::Id.is_in(ids.iter().cloned()));
    }
    let rows = q.all(c).await?;
    with_tags(c, rows).await
}

pub async fn delete_project<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::project::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

// ---------------------------------------------------------------- users

fn user_from(m: e::user::Model, password_expires_at: Option<DateTime<Utc>>) -> User {
    User {
        id: m.id,
        name: m.name,
        domain_id: m.domain_id,
        enabled: m.enabled,
        default_project_id: m.default_project_id,
        extra: from_json(m.extra),
        options: from_json(m.options),
        created_at: m.created_at,
        last_active_at: m.last_active_at,
        failed_auth_count: m.failed_auth_count,
        failed_auth_at: m.failed_auth_at,
        password_expires_at,
    }
}

fn user_am(u: &User) -> e::user::ActiveModel {
    e::user::ActiveModel {
        id: Set(u.id.clone()),
        name: Set(u.name.clone()),
        domain_id: Set(u.domain_id.clone()),
        enabled: Set(u.enabled),
        default_project_id: Set(u.default_project_id.clone()),
        extra: Set(to_json(&u.extra)),
        options: Set(to_json(&u.options)),
        created_at: Set(u.created_at),
        last_active_at: Set(u.last_active_at),
        failed_auth_count: Set(u.failed_auth_count),
        failed_auth_at: Set(u.failed_auth_at),
    }
}

async fn with_password_expiry<C: ConnectionTrait>(
    c: &C,
    rows: Vec<e::user::Model>,
) -> Result<Vec<User>, DbErr> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let exp = current_password(c, &r.id).await?.and_then(|p| p.expires_at);
        out.push(user_from(r, exp));
    }
    Ok(out)
}

pub async fn insert_user<C: ConnectionTrait>(c: &C, u: &User) -> Result<(), DbErr> {
    e::user::Entity::insert(user_am(u))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_user<C: ConnectionTrait>(c: &C, u: &User) -> Result<(), DbErr> {
    user_am(u).update(c).await.map(|_| ())
}

pub async fn get_user<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<User>, DbErr> {
    match e::user::Entity::find_by_id(id).one(c).await? {
        Some(m) => Ok(with_password_expiry(c, vec![m]).await?.pop()),
        None => Ok(None),
    }
}

pub async fn find_user_by_name<C: ConnectionTrait>(
    c: &C,
    domain_id: &str,
    name: &str,
) -> Result<Option<User>, DbErr> {
    match e::user::Entity::find()
        .filter(e::user::Column::DomainId.eq(domain_id))
        .filter(e::user::Column::Name.eq(name))
        .one(c)
        .await?
    {
        Some(m) => Ok(with_password_expiry(c, vec![m]).await?.pop()),
        None => Ok(None),
    }
}

#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
    pub ids: Option<Vec<String>>,
}

pub async fn list_users<C: ConnectionTrait>(c: &C, f: &UserFilter) -> Result<Vec<User>, DbErr> {
    use e::user::Column as U;
    let mut q = e::user::Entity::find()
        .order_by_asc(U::Name)
        .order_by_asc(U::Id);
    if let Some(n) = &f.name {
        q = q.filter(U::Name.eq(n.as_str()));
    }
    if let Some(d) = &f.domain_id {
        q = q.filter(U::DomainId.eq(d.as_str()));
    }
    if let Some(en) = f.enabled {
        q = q.filter(U::Enabled.eq(en));
    }
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        q = q.filter(U::Id.is_in(ids.iter().cloned()));
    }
    let rows = q.all(c).await?;
    with_password_expiry(c, rows).await
}

pub async fn delete_user<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::user::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

fn password_from(m: e::password::Model) -> PasswordRecord {
    PasswordRecord {
        hash: m.password_hash,
        created_at: m.created_at,
        expires_at: m.expires_at,
        self_service: m.self_service,
    }
}

pub async fn current_password<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<Option<PasswordRecord>, DbErr> {
    Ok(recent_passwords(c, user_id, 1).await?.pop())
}

/// The user's last `n` passwords, newest first.
pub async fn recent_passwords<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    n: u64,
) -> Result<Vec<PasswordRecord>, DbErr> {
    Ok(e::password::Entity::find()
        .filter(e::password::Column::UserId.eq(user_id))
        .order_by_desc(e::password::Column::Id)
        .limit(n)
        .all(c)
        .await?
        .into_iter()
        .map(password_from)
        .collect())
}

pub async fn add_password<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    p: &PasswordRecord,
) -> Result<(), DbErr> {
    e::password::Entity::insert(e::password::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        user_id: Set(user_id.to_string()),
        password_hash: Set(p.hash.clone()),
        created_at: Set(p.created_at),
        expires_at: Set(p.expires_at),
        self_service: Set(p.self_service),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Keep only the newest `keep` passwords of a user (history beyond that is not needed).
pub async fn trim_passwords<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    keep: u64,
) -> Result<(), DbErr> {
    let keep_ids: Vec<i64> = e::password::Entity::find()
        .filter(e::password::Column::UserId.eq(user_id))
        .order_by_desc(e::password::Column::Id)
        .limit(std::cmp::max(keep, 1))
        .all(c)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    e::password::Entity::delete_many()
        .filter(e::password::Column::UserId.eq(user_id))
        .filter(e::password::Column::Id.is_not_in(keep_ids))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn set_failed_auth<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    count: i32,
    at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    e::user::Entity::update_many()
        .col_expr(e::user::Column::FailedAuthCount, Expr::value(count))
        .col_expr(e::user::Column::FailedAuthAt, Expr::value(at))
        .filter(e::user::Column::Id.eq(user_id))
        .exec(c)
        .await?;
    Ok(())
}

pub async fn set_last_active<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    e::user::Entity::update_many()
        .col_expr(e::user::Column::LastActiveAt, Expr::value(Some(at)))
        .filter(e::user::Column::Id.eq(user_id))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- groups

impl From<e::group::Model> for Group {
    fn from(m: e::group::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            domain_id: m.domain_id,
            description: m.description,
            extra: from_json(m.extra),
        }
    }
}

fn group_am(g: &Group) -> e::group::ActiveModel {
    e::group::ActiveModel {
        id: Set(g.id.clone()),
        name: Set(g.name.clone()),
        domain_id: Set(g.domain_id.clone()),
        description: Set(g.description.clone()),
        extra: Set(to_json(&g.extra)),
    }
}

pub async fn insert_group<C: ConnectionTrait>(c: &C, g: &Group) -> Result<(), DbErr> {
    e::group::Entity::insert(group_am(g))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_group<C: ConnectionTrait>(c: &C, g: &Group) -> Result<(), DbErr> {
    group_am(g).update(c).await.map(|_| ())
}

pub async fn get_group<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Group>, DbErr> {
    Ok(e::group::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn find_group_by_name<C: ConnectionTrait>(
    c: &C,
    domain_id: &str,
    name: &str,
) -> Result<Option<Group>, DbErr> {
    Ok(e::group::Entity::find()
        .filter(e::group::Column::DomainId.eq(domain_id))
        .filter(e::group::Column::Name.eq(name))
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_groups<C: ConnectionTrait>(
    c: &C,
    name: Option<&str>,
    domain_id: Option<&str>,
    ids: Option<&[String]>,
) -> Result<Vec<Group>, DbErr> {
    use e::group::Column as G;
    let mut q = e::group::Entity::find()
        .order_by_asc(G::Name)
        .order_by_asc(G::Id);
    if let Some(n) = name {
        q = q.filter(G::Name.eq(n));
    }
    if let Some(d) = domain_id {
        q = q.filter(G::DomainId.eq(d));
    }
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        q = q.filter(G::Id.is_in(ids.iter().cloned()));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_group<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::group::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn add_membership<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    group_id: &str,
) -> Result<(), DbErr> {
    e::user_group::Entity::insert(e::user_group::ActiveModel {
        user_id: Set(user_id.to_string()),
        group_id: Set(group_id.to_string()),
    })
    .on_conflict(
        OnConflict::columns([
            e::user_group::Column::UserId,
            e::user_group::Column::GroupId,
        ])
        .do_nothing_on([e::user_group::Column::UserId])
        .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

pub async fn remove_membership<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    group_id: &str,
) -> Result<u64, DbErr> {
    Ok(
        e::user_group::Entity::delete_by_id((user_id.to_string(), group_id.to_string()))
            .exec(c)
            .await?
            .rows_affected,
    )
}

pub async fn is_member<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    group_id: &str,
) -> Result<bool, DbErr> {
    Ok(
        e::user_group::Entity::find_by_id((user_id.to_string(), group_id.to_string()))
            .one(c)
            .await?
            .is_some(),
    )
}

pub async fn group_member_ids<C: ConnectionTrait>(
    c: &C,
    group_id: &str,
) -> Result<Vec<String>, DbErr> {
    Ok(e::user_group::Entity::find()
        .filter(e::user_group::Column::GroupId.eq(group_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect())
}

pub async fn user_group_ids<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<Vec<String>, DbErr> {
    Ok(e::user_group::Entity::find()
        .filter(e::user_group::Column::UserId.eq(user_id))
        .all(c)
        .await?
        .into_iter()
        .map(|m| m.group_id)
        .collect())
}

// ---------------------------------------------------------------- roles

impl From<e::role::Model> for Role {
    fn from(m: e::role::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            domain_id: if m.domain_id.is_empty() {
                None
            } else {
                Some(m.domain_id)
            },
            description: m.description,
            extra: from_json(m.extra),
            options: from_json(m.options),
        }
    }
}

fn role_am(r: &Role) -> e::role::ActiveModel {
    e::role::ActiveModel {
        id: Set(r.id.clone()),
        name: Set(r.name.clone()),
        domain_id: Set(r.domain_id.clone().unwrap_or_default()),
        description: Set(r.description.clone()),
        extra: Set(to_json(&r.extra)),
        options: Set(to_json(&r.options)),
    }
}

pub async fn insert_role<C: ConnectionTrait>(c: &C, r: &Role) -> Result<(), DbErr> {
    e::role::Entity::insert(role_am(r))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_role<C: ConnectionTrait>(c: &C, r: &Role) -> Result<(), DbErr> {
    role_am(r).update(c).await.map(|_| ())
}

pub async fn get_role<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Role>, DbErr> {
    Ok(e::role::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn find_role_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
    domain_id: Option<&str>,
) -> Result<Option<Role>, DbErr> {
    Ok(e::role::Entity::find()
        .filter(e::role::Column::Name.eq(name))
        .filter(e::role::Column::DomainId.eq(domain_id.unwrap_or("")))
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_roles<C: ConnectionTrait>(
    c: &C,
    name: Option<&str>,
    domain_id: Option<Option<&str>>,
) -> Result<Vec<Role>, DbErr> {
    let mut q = e::role::Entity::find().order_by_asc(e::role::Column::Name);
    if let Some(n) = name {
        q = q.filter(e::role::Column::Name.eq(n));
    }
    if let Some(d) = domain_id {
        q = q.filter(e::role::Column::DomainId.eq(d.unwrap_or("")));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_role<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::role::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn add_implied_role<C: ConnectionTrait>(
    c: &C,
    prior: &str,
    implied: &str,
) -> Result<(), DbErr> {
    e::implied_role::Entity::insert(e::implied_role::ActiveModel {
        prior_role_id: Set(prior.to_string()),
        implied_role_id: Set(implied.to_string()),
    })
    .on_conflict(
        OnConflict::columns([
            e::implied_role::Column::PriorRoleId,
            e::implied_role::Column::ImpliedRoleId,
        ])
        .do_nothing_on([e::implied_role::Column::PriorRoleId])
        .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

pub async fn remove_implied_role<C: ConnectionTrait>(
    c: &C,
    prior: &str,
    implied: &str,
) -> Result<u64, DbErr> {
    Ok(
        e::implied_role::Entity::delete_by_id((prior.to_string(), implied.to_string()))
            .exec(c)
            .await?
            .rows_affected,
    )
}

/// Every (prior, implied) pair.
pub async fn list_implied_roles<C: ConnectionTrait>(c: &C) -> Result<Vec<(String, String)>, DbErr> {
    Ok(e::implied_role::Entity::find()
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.prior_role_id, m.implied_role_id))
        .collect())
}

// ---------------------------------------------------------------- assignments

fn kind_of(a: &Assignment) -> &'static str {
    match (&a.actor, &a.target) {
        (Actor::User(_), Target::Project(_)) => "UserProject",
        (Actor::Group(_), Target::Project(_)) => "GroupProject",
        (Actor::User(_), Target::Domain(_)) => "UserDomain",
        (Actor::Group(_), Target::Domain(_)) => "GroupDomain",
        (Actor::User(_), Target::System) => "UserSystem",
        (Actor::Group(_), Target::System) => "GroupSystem",
    }
}

fn assignment_from(m: e::assignment::Model) -> Option<Assignment> {
    let actor = if m.kind.starts_with("User") {
        Actor::User(m.actor_id)
    } else {
        Actor::Group(m.actor_id)
    };
    let target = if m.kind.ends_with("Project") {
        Target::Project(m.target_id)
    } else if m.kind.ends_with("Domain") {
        Target::Domain(m.target_id)
    } else if m.kind.ends_with("System") {
        Target::System
    } else {
        return None;
    };
    Some(Assignment {
        actor,
        target,
        role_id: m.role_id,
        inherited: m.inherited,
    })
}

fn assignment_key(a: &Assignment) -> (String, String, String, String, bool) {
    (
        kind_of(a).to_string(),
        a.actor.id().to_string(),
        a.target.id().to_string(),
        a.role_id.clone(),
        a.inherited,
    )
}

pub async fn add_assignment<C: ConnectionTrait>(c: &C, a: &Assignment) -> Result<(), DbErr> {
    let (kind, actor_id, target_id, role_id, inherited) = assignment_key(a);
    e::assignment::Entity::insert(e::assignment::ActiveModel {
        kind: Set(kind),
        actor_id: Set(actor_id),
        target_id: Set(target_id),
        role_id: Set(role_id),
        inherited: Set(inherited),
    })
    .on_conflict(
        OnConflict::columns([
            e::assignment::Column::Kind,
            e::assignment::Column::ActorId,
            e::assignment::Column::TargetId,
            e::assignment::Column::RoleId,
            e::assignment::Column::Inherited,
        ])
        .do_nothing_on([e::assignment::Column::Kind])
        .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

pub async fn remove_assignment<C: ConnectionTrait>(c: &C, a: &Assignment) -> Result<u64, DbErr> {
    Ok(e::assignment::Entity::delete_by_id(assignment_key(a))
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn assignment_exists<C: ConnectionTrait>(c: &C, a: &Assignment) -> Result<bool, DbErr> {
    Ok(e::assignment::Entity::find_by_id(assignment_key(a))
        .one(c)
        .await?
        .is_some())
}

/// Stored (not effective) assignments matching every given field.
#[derive(Debug, Default, Clone)]
pub struct AssignmentFilter {
    pub actor_ids: Option<Vec<String>>,
    pub target_ids: Option<Vec<String>>,
    pub role_id: Option<String>,
    pub inherited: Option<bool>,
}

pub async fn list_assignments<C: ConnectionTrait>(
    c: &C,
    f: &AssignmentFilter,
) -> Result<Vec<Assignment>, DbErr> {
    use e::assignment::Column as A;
    let mut q = e::assignment::Entity::find();
    if let Some(ids) = &f.actor_ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        q = q.filter(A::ActorId.is_in(ids.iter().cloned()));
    }
    if let Some(ids) = &f.target_ids {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        q = q.filter(A::TargetId.is_in(ids.iter().cloned()));
    }
    if let Some(r) = &f.role_id {
        q = q.filter(A::RoleId.eq(r.as_str()));
    }
    if let Some(i) = f.inherited {
        q = q.filter(A::Inherited.eq(i));
    }
    Ok(q.all(c)
        .await?
        .into_iter()
        .filter_map(assignment_from)
        .collect())
}

/// Remove every assignment of an actor or on a target (when it is deleted).
pub async fn delete_assignments_of<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    use e::assignment::Column as A;
    e::assignment::Entity::delete_many()
        .filter(A::ActorId.eq(id).or(A::TargetId.eq(id)))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- catalog

impl From<e::region::Model> for Region {
    fn from(m: e::region::Model) -> Self {
        Self {
            id: m.id,
            description: m.description,
            parent_region_id: m.parent_region_id,
            extra: from_json(m.extra),
        }
    }
}

fn region_am(r: &Region) -> e::region::ActiveModel {
    e::region::ActiveModel {
        id: Set(r.id.clone()),
        description: Set(r.description.clone()),
        parent_region_id: Set(r.parent_region_id.clone()),
        extra: Set(to_json(&r.extra)),
    }
}

pub async fn insert_region<C: ConnectionTrait>(c: &C, r: &Region) -> Result<(), DbErr> {
    e::region::Entity::insert(region_am(r))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_region<C: ConnectionTrait>(c: &C, r: &Region) -> Result<(), DbErr> {
    region_am(r).update(c).await.map(|_| ())
}

pub async fn get_region<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Region>, DbErr> {
    Ok(e::region::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_regions<C: ConnectionTrait>(
    c: &C,
    parent_region_id: Option<&str>,
) -> Result<Vec<Region>, DbErr> {
    let mut q = e::region::Entity::find().order_by_asc(e::region::Column::Id);
    if let Some(p) = parent_region_id {
        q = q.filter(e::region::Column::ParentRegionId.eq(p));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_region<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::region::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

impl From<e::service::Model> for Service {
    fn from(m: e::service::Model) -> Self {
        Self {
            id: m.id,
            service_type: m.service_type,
            name: m.name,
            description: m.description,
            enabled: m.enabled,
            extra: from_json(m.extra),
        }
    }
}

fn service_am(s: &Service) -> e::service::ActiveModel {
    e::service::ActiveModel {
        id: Set(s.id.clone()),
        service_type: Set(s.service_type.clone()),
        name: Set(s.name.clone()),
        description: Set(s.description.clone()),
        enabled: Set(s.enabled),
        extra: Set(to_json(&s.extra)),
    }
}

pub async fn insert_service<C: ConnectionTrait>(c: &C, s: &Service) -> Result<(), DbErr> {
    e::service::Entity::insert(service_am(s))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_service<C: ConnectionTrait>(c: &C, s: &Service) -> Result<(), DbErr> {
    service_am(s).update(c).await.map(|_| ())
}

pub async fn get_service<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Service>, DbErr> {
    Ok(e::service::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_services<C: ConnectionTrait>(
    c: &C,
    service_type: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Service>, DbErr> {
    let mut q = e::service::Entity::find().order_by_asc(e::service::Column::ServiceType);
    if let Some(t) = service_type {
        q = q.filter(e::service::Column::ServiceType.eq(t));
    }
    if let Some(n) = name {
        q = q.filter(e::service::Column::Name.eq(n));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_service<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::service::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

impl From<e::endpoint::Model> for Endpoint {
    fn from(m: e::endpoint::Model) -> Self {
        Self {
            id: m.id,
            interface: m.interface,
            service_id: m.service_id,
            url: m.url,
            region_id: m.region_id,
            enabled: m.enabled,
            extra: from_json(m.extra),
        }
    }
}

fn endpoint_am(x: &Endpoint) -> e::endpoint::ActiveModel {
    e::endpoint::ActiveModel {
        id: Set(x.id.clone()),
        interface: Set(x.interface.clone()),
        service_id: Set(x.service_id.clone()),
        url: Set(x.url.clone()),
        region_id: Set(x.region_id.clone()),
        enabled: Set(x.enabled),
        extra: Set(to_json(&x.extra)),
    }
}

pub async fn insert_endpoint<C: ConnectionTrait>(c: &C, x: &Endpoint) -> Result<(), DbErr> {
    e::endpoint::Entity::insert(endpoint_am(x))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_endpoint<C: ConnectionTrait>(c: &C, x: &Endpoint) -> Result<(), DbErr> {
    endpoint_am(x).update(c).await.map(|_| ())
}

pub async fn get_endpoint<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Endpoint>, DbErr> {
    Ok(e::endpoint::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

#[derive(Debug, Default, Clone)]
pub struct EndpointFilter {
    pub interface: Option<String>,
    pub service_id: Option<String>,
    pub region_id: Option<String>,
}

pub async fn list_endpoints<C: ConnectionTrait>(
    c: &C,
    f: &EndpointFilter,
) -> Result<Vec<Endpoint>, DbErr> {
    use e::endpoint::Column as E;
    let mut q = e::endpoint::Entity::find()
        .order_by_asc(E::ServiceId)
        .order_by_asc(E::Interface);
    if let Some(i) = &f.interface {
        q = q.filter(E::Interface.eq(i.as_str()));
    }
    if let Some(s) = &f.service_id {
        q = q.filter(E::ServiceId.eq(s.as_str()));
    }
    if let Some(r) = &f.region_id {
        q = q.filter(E::RegionId.eq(r.as_str()));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_endpoint<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::endpoint::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

// ---------------------------------------------------------------- application credentials

fn role_refs_from(v: Value) -> Vec<RoleRef> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some(RoleRef {
                        id: r.get("id")?.as_str()?.to_string(),
                        name: r.get("name")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn access_rules_from(v: Value) -> Vec<AccessRule> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some(AccessRule {
                        id: r.get("id")?.as_str()?.to_string(),
                        service: r.get("service")?.as_str()?.to_string(),
                        path: r.get("path")?.as_str()?.to_string(),
                        method: r.get("method")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl From<e::application_credential::Model> for AppCred {
    fn from(m: e::application_credential::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            secret_hash: m.secret_hash,
            description: m.description,
            user_id: m.user_id,
            project_id: m.project_id,
            system: m.system,
            expires_at: m.expires_at,
            unrestricted: m.unrestricted,
            created_at: m.created_at,
            roles: role_refs_from(m.roles),
            access_rules: access_rules_from(m.access_rules),
        }
    }
}

pub async fn insert_app_cred<C: ConnectionTrait>(c: &C, a: &AppCred) -> Result<(), DbErr> {
    let roles: Vec<Value> = a
        .roles
        .iter()
        .map(|r| serde_json::json!({"id": r.id, "name": r.name}))
        .collect();
    let rules: Vec<Value> = a
        .access_rules
        .iter()
        .map(|r| serde_json::json!({"id": r.id, "service": r.service, "path": r.path, "method": r.method}))
        .collect();
    e::application_credential::Entity::insert(e::application_credential::ActiveModel {
        id: Set(a.id.clone()),
        name: Set(a.name.clone()),
        secret_hash: Set(a.secret_hash.clone()),
        description: Set(a.description.clone()),
        user_id: Set(a.user_id.clone()),
        project_id: Set(a.project_id.clone()),
        system: Set(a.system.clone()),
        expires_at: Set(a.expires_at),
        unrestricted: Set(a.unrestricted),
        created_at: Set(a.created_at),
        roles: Set(Value::Array(roles)),
        access_rules: Set(Value::Array(rules)),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

pub async fn get_app_cred<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<AppCred>, DbErr> {
    Ok(e::application_credential::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_app_creds<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    name: Option<&str>,
) -> Result<Vec<AppCred>, DbErr> {
    use e::application_credential::Column as A;
    let mut q = e::application_credential::Entity::find()
        .filter(A::UserId.eq(user_id))
        .order_by_asc(A::Name);
    if let Some(n) = name {
        q = q.filter(A::Name.eq(n));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_app_cred<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::application_credential::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

// ---------------------------------------------------------------- credentials

/// A stored credential; the blob is still encrypted.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    pub id: String,
    pub user_id: String,
    pub project_id: Option<String>,
    pub credential_type: String,
    pub encrypted_blob: String,
    pub key_hash: String,
    pub extra: Extra,
}

impl From<e::credential::Model> for StoredCredential {
    fn from(m: e::credential::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            project_id: m.project_id,
            credential_type: m.credential_type,
            encrypted_blob: m.encrypted_blob,
            key_hash: m.key_hash,
            extra: from_json(m.extra),
        }
    }
}

fn credential_am(x: &StoredCredential) -> e::credential::ActiveModel {
    e::credential::ActiveModel {
        id: Set(x.id.clone()),
        user_id: Set(x.user_id.clone()),
        project_id: Set(x.project_id.clone()),
        credential_type: Set(x.credential_type.clone()),
        encrypted_blob: Set(x.encrypted_blob.clone()),
        key_hash: Set(x.key_hash.clone()),
        extra: Set(to_json(&x.extra)),
    }
}

pub async fn insert_credential<C: ConnectionTrait>(
    c: &C,
    x: &StoredCredential,
) -> Result<(), DbErr> {
    e::credential::Entity::insert(credential_am(x))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_credential<C: ConnectionTrait>(
    c: &C,
    x: &StoredCredential,
) -> Result<(), DbErr> {
    credential_am(x).update(c).await.map(|_| ())
}

pub async fn get_credential<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<StoredCredential>, DbErr> {
    Ok(e::credential::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_credentials<C: ConnectionTrait>(
    c: &C,
    user_id: Option<&str>,
    credential_type: Option<&str>,
) -> Result<Vec<StoredCredential>, DbErr> {
    use e::credential::Column as K;
    let mut q = e::credential::Entity::find().order_by_asc(K::Id);
    if let Some(u) = user_id {
        q = q.filter(K::UserId.eq(u));
    }
    if let Some(t) = credential_type {
        q = q.filter(K::CredentialType.eq(t));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_credential<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::credential::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}

pub async fn delete_credentials_of_user<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<(), DbErr> {
    e::credential::Entity::delete_many()
        .filter(e::credential::Column::UserId.eq(user_id))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- revocation events

pub async fn insert_revocation<C: ConnectionTrait>(
    c: &C,
    r: &RevocationEvent,
) -> Result<(), DbErr> {
    e::revocation_event::Entity::insert(e::revocation_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        user_id: Set(r.user_id.clone()),
        project_id: Set(r.project_id.clone()),
        domain_id: Set(r.domain_id.clone()),
        audit_id: Set(r.audit_id.clone()),
        issued_before: Set(r.issued_before),
        revoked_at: Set(r.revoked_at),
        expires_at: Set(r.expires_at),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Events still able to match a valid token; older ones are deleted on the way.
pub async fn load_revocations<C: ConnectionTrait>(
    c: &C,
    now: DateTime<Utc>,
) -> Result<Vec<RevocationEvent>, DbErr> {
    use e::revocation_event::Column as R;
    e::revocation_event::Entity::delete_many()
        .filter(R::ExpiresAt.is_not_null().and(R::ExpiresAt.lt(now)))
        .exec(c)
        .await?;
    Ok(e::revocation_event::Entity::find()
        .order_by_asc(R::Id)
        .all(c)
        .await?
        .into_iter()
        .map(|m| RevocationEvent {
            user_id: m.user_id,
            project_id: m.project_id,
            domain_id: m.domain_id,
            audit_id: m.audit_id,
            issued_before: m.issued_before,
            revoked_at: m.revoked_at,
            expires_at: m.expires_at,
        })
        .collect())
}

// ---------------------------------------------------------------- policies (blobs)

impl From<e::policy::Model> for Policy {
    fn from(m: e::policy::Model) -> Self {
        Self {
            id: m.id,
            policy_type: m.policy_type,
            blob: m.blob,
            extra: from_json(m.extra),
        }
    }
}

fn policy_am(p: &Policy) -> e::policy::ActiveModel {
    e::policy::ActiveModel {
        id: Set(p.id.clone()),
        policy_type: Set(p.policy_type.clone()),
        blob: Set(p.blob.clone()),
        extra: Set(to_json(&p.extra)),
    }
}

pub async fn insert_policy<C: ConnectionTrait>(c: &C, p: &Policy) -> Result<(), DbErr> {
    e::policy::Entity::insert(policy_am(p))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_policy<C: ConnectionTrait>(c: &C, p: &Policy) -> Result<(), DbErr> {
    policy_am(p).update(c).await.map(|_| ())
}

pub async fn get_policy<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Policy>, DbErr> {
    Ok(e::policy::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(Into::into))
}

pub async fn list_policies<C: ConnectionTrait>(
    c: &C,
    policy_type: Option<&str>,
) -> Result<Vec<Policy>, DbErr> {
    let mut q = e::policy::Entity::find().order_by_asc(e::policy::Column::Id);
    if let Some(t) = policy_type {
        q = q.filter(e::policy::Column::PolicyType.eq(t));
    }
    Ok(q.all(c).await?.into_iter().map(Into::into).collect())
}

pub async fn delete_policy<C: ConnectionTrait>(c: &C, id: &str) -> Result<u64, DbErr> {
    Ok(e::policy::Entity::delete_by_id(id)
        .exec(c)
        .await?
        .rows_affected)
}
