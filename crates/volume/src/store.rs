//! Persistence: one table of resources (kind, id, project, parent, body as JSON) and one of
//! per-project quota limits, as the network service keeps them. Lists are filtered, sorted and
//! paged in the core, in memory: an all-in-one cloud holds hundreds of volumes, not millions.

use sea_orm::{ConnectionTrait, DbErr, Statement, Value as DbValue};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001Initial)]
    }
}

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_volume_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("resource")
                .col(string_len("id", 36).primary_key())
                .col(string_len("kind", 32))
                .col(string_len("project_id", 255))
                .col(string_len_null("parent_id", 36))
                .col(string_len("created_at", 40))
                .col(text("body"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_volres_kind_project")
                .table("resource")
                .col("kind")
                .col("project_id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_volres_parent")
                .table("resource")
                .col("parent_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("quota")
                .col(string_len("project_id", 255))
                .col(string_len("resource", 255))
                .col(big_integer("hard_limit"))
                .primary_key(Index::create().col("project_id").col("resource"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("quota").to_owned())
            .await?;
        m.drop_table(Table::drop().table("resource").to_owned())
            .await
    }
}

pub async fn migrate(conn: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(conn, None).await
}

fn stmt<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<DbValue>) -> Statement {
    let backend = c.get_database_backend();
    Statement::from_sql_and_values(backend, common::db::placeholders(backend, sql), values)
}

fn bodies(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<String>, DbErr> {
    rows.iter()
        .map(|r| r.try_get::<String>("", "body"))
        .collect()
}

/// Every body of `kind`, oldest first.
pub async fn list<C: ConnectionTrait>(c: &C, kind: &str) -> Result<Vec<String>, DbErr> {
    bodies(
        c.query_all_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 ORDER BY created_at, id",
            vec![kind.into()],
        ))
        .await?,
    )
}

/// The bodies of `kind` whose parent is `parent`, oldest first.
pub async fn children<C: ConnectionTrait>(
    c: &C,
    kind: &str,
    parent: &str,
) -> Result<Vec<String>, DbErr> {
    bodies(
        c.query_all_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 AND parent_id = $2 ORDER BY created_at, id",
            vec![kind.into(), parent.into()],
        ))
        .await?,
    )
}

pub async fn get<C: ConnectionTrait>(c: &C, kind: &str, id: &str) -> Result<Option<String>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 AND id = $2",
            vec![kind.into(), id.into()],
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "body")).transpose()
}

pub struct NewRow<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub project_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub created_at: &'a str,
    pub body: String,
}

pub async fn insert<C: ConnectionTrait>(c: &C, r: NewRow<'_>) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "INSERT INTO resource (id, kind, project_id, parent_id, created_at, body) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            r.id.into(),
            r.kind.into(),
            r.project_id.into(),
            r.parent_id.map(str::to_string).into(),
            r.created_at.into(),
            r.body.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(c: &C, id: &str, body: String) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "UPDATE resource SET body = $1 WHERE id = $2",
        vec![body.into(), id.into()],
    ))
    .await?;
    Ok(())
}

pub async fn delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM resource WHERE id = $1",
        vec![id.into()],
    ))
    .await?;
    Ok(())
}

/// (resource, limit) of every explicitly set quota of `project`.
pub async fn quotas<C: ConnectionTrait>(c: &C, project: &str) -> Result<Vec<(String, i64)>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT resource, hard_limit FROM quota WHERE project_id = $1 ORDER BY resource",
            vec![project.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "resource")?,
                r.try_get::<i64>("", "hard_limit")?,
            ))
        })
        .collect()
}

pub async fn set_quota<C: ConnectionTrait>(
    c: &C,
    project: &str,
    resource: &str,
    limit: i64,
) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM quota WHERE project_id = $1 AND resource = $2",
        vec![project.into(), resource.into()],
    ))
    .await?;
    c.execute_raw(stmt(
        c,
        "INSERT INTO quota (project_id, resource, hard_limit) VALUES ($1, $2, $3)",
        vec![project.into(), resource.into(), limit.into()],
    ))
    .await?;
    Ok(())
}

pub async fn delete_quotas<C: ConnectionTrait>(c: &C, project: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM quota WHERE project_id = $1",
        vec![project.into()],
    ))
    .await?;
    Ok(())
}
