//! The compute schema as versioned migrations (sea-query's portable builder: SQLite,
//! PostgreSQL and MySQL get the same schema). Instances keep their searchable fields as
//! columns and the rest as one JSON document, so a page of servers is one query.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002ConsoleAuthTokens),
            Box::new(M0003Migrations),
            Box::new(M0004ServiceVersion),
            Box::new(M0005InlineInstanceDoc),
        ]
    }
}

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_compute_initial"
    }
}

fn index(table: &'static str, cols: &[&'static str], unique: bool) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(format!("ix_{table}_{}", cols.join("_")))
        .table(table);
    if unique {
        idx.unique();
    }
    for c in cols {
        idx.col(*c);
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("instances")
                .col(string_len("uuid", 36).primary_key())
                .col(string_len("project_id", 255))
                .col(string_len("user_id", 255))
                .col(string_len("display_name", 255))
                .col(string_len_null("host", 255))
                .col(string_len("vm_state", 32))
                .col(string_len_null("task_state", 64))
                .col(integer("vcpus"))
                .col(big_integer("memory_mb"))
                .col(boolean("deleted"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("deleted_at"))
                .col(json("doc"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("instances", &["project_id", "deleted"], false))
            .await?;
        m.create_index(index("instances", &["host", "deleted"], false))
            .await?;
        m.create_index(index("instances", &["updated_at"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("instance_actions")
                .col(pk_auto("id"))
                .col(string_len("instance_uuid", 36))
                .col(string_len("action", 64))
                .col(string_len("request_id", 255))
                .col(string_len_null("user_id", 255))
                .col(string_len_null("project_id", 255))
                .col(timestamp_with_time_zone("start_time"))
                .col(timestamp_with_time_zone_null("finish_time"))
                .col(string_len_null("message", 255))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "instance_actions",
            &["instance_uuid", "request_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("instance_action_events")
                .col(pk_auto("id"))
                .col(integer("action_id"))
                .col(string_len("event", 255))
                .col(timestamp_with_time_zone("start_time"))
                .col(timestamp_with_time_zone_null("finish_time"))
                .col(string_len_null("result", 255))
                .col(text_null("traceback"))
                .col(string_len_null("host", 255))
                .col(text_null("details"))
                .foreign_key(
                    ForeignKey::create()
                        .from("instance_action_events", "action_id")
                        .to("instance_actions", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("instance_action_events", &["action_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("flavors")
                .col(pk_auto("id"))
                .col(string_len("flavorid", 255))
                .col(string_len("name", 255))
                .col(integer("memory_mb"))
                .col(integer("vcpus"))
                .col(integer("root_gb"))
                .col(integer("ephemeral_gb"))
                .col(integer("swap"))
                .col(double("rxtx_factor"))
                .col(boolean("is_public"))
                .col(boolean("disabled"))
                .col(text_null("description"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("flavors", &["flavorid"], true))
            .await?;
        m.create_index(index("flavors", &["name"], true)).await?;
        m.create_table(
            Table::create()
                .table("flavor_extra_specs")
                .col(integer("flavor_id"))
                .col(string_len("key", 255))
                .col(string_len("value", 255))
                .primary_key(Index::create().col("flavor_id").col("key"))
                .foreign_key(
                    ForeignKey::create()
                        .from("flavor_extra_specs", "flavor_id")
                        .to("flavors", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("flavor_projects")
                .col(integer("flavor_id"))
                .col(string_len("project_id", 255))
                .primary_key(Index::create().col("flavor_id").col("project_id"))
                .foreign_key(
                    ForeignKey::create()
                        .from("flavor_projects", "flavor_id")
                        .to("flavors", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("key_pairs")
                .col(pk_auto("id"))
                .col(string_len("user_id", 255))
                .col(string_len("name", 255))
                .col(string_len("fingerprint", 255))
                .col(text("public_key"))
                .col(string_len("type", 10))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("key_pairs", &["user_id", "name"], true))
            .await?;

        m.create_table(
            Table::create()
                .table("server_groups")
                .col(string_len("uuid", 36).primary_key())
                .col(string_len("name", 255))
                .col(string_len("project_id", 255))
                .col(string_len("user_id", 255))
                .col(string_len("policy", 32))
                .col(json("rules"))
                .col(json("members"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("server_groups", &["project_id"], false))
            .await?;

        m.create_table(
            Table::create()
                .table("quotas")
                .col(string_len("project_id", 255))
                .col(string_len("user_id", 255))
                .col(string_len("resource", 255))
                .col(big_integer("hard_limit"))
                .primary_key(
                    Index::create()
                        .col("project_id")
                        .col("user_id")
                        .col("resource"),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("quota_classes")
                .col(string_len("class_name", 255))
                .col(string_len("resource", 255))
                .col(big_integer("hard_limit"))
                .primary_key(Index::create().col("class_name").col("resource"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("services")
                .col(pk_auto("id"))
                .col(string_len("uuid", 36))
                .col(string_len("host", 255))
                .col(string_len("binary", 255))
                .col(string_len("topic", 255))
                .col(boolean("disabled"))
                .col(string_len_null("disabled_reason", 255))
                .col(boolean("forced_down"))
                .col(big_integer("report_count"))
                .col(timestamp_with_time_zone_null("last_seen_up"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("services", &["host", "binary"], true))
            .await?;

        m.create_table(
            Table::create()
                .table("compute_nodes")
                .col(pk_auto("id"))
                .col(string_len("uuid", 36))
                .col(string_len("host", 255))
                .col(string_len("hypervisor_hostname", 255))
                .col(json("resources"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "compute_nodes",
            &["host", "hypervisor_hostname"],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("aggregates")
                .col(pk_auto("id"))
                .col(string_len("uuid", 36))
                .col(string_len("name", 255))
                .col(string_len_null("availability_zone", 255))
                .col(json("hosts"))
                .col(json("metadata"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("aggregates", &["name"], true)).await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the compute schema cannot be migrated down".into(),
        ))
    }
}

/// Nova's `console_auth_tokens`: one row per console URL handed out. Only the token's SHA-256
/// is stored, so a copy of the database opens no console.
struct M0002ConsoleAuthTokens;

impl MigrationName for M0002ConsoleAuthTokens {
    fn name(&self) -> &str {
        "m0002_console_auth_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002ConsoleAuthTokens {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("console_auth_tokens")
                .col(pk_auto("id"))
                .col(string_len("token_hash", 64))
                .col(string_len("instance_uuid", 36))
                .col(string_len("console_type", 32))
                .col(string_len("host", 255))
                .col(string_len("target", 1024))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("console_auth_tokens", &["token_hash"], true))
            .await?;
        m.create_index(index("console_auth_tokens", &["instance_uuid"], false))
            .await?;
        m.create_index(index("console_auth_tokens", &["expires_at"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the compute schema cannot be migrated down".into(),
        ))
    }
}

/// Nova's `migrations` records (evacuations so far): what moved where, and how far it got.
struct M0003Migrations;

impl MigrationName for M0003Migrations {
    fn name(&self) -> &str {
        "m0003_migrations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003Migrations {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("migrations")
                .col(pk_auto("id"))
                .col(string_len("uuid", 36))
                .col(string_len("instance_uuid", 36))
                .col(string_len("migration_type", 32))
                .col(string_len("status", 32))
                .col(string_len_null("source_compute", 255))
                .col(string_len_null("source_node", 255))
                .col(string_len_null("dest_compute", 255))
                .col(string_len_null("dest_node", 255))
                .col(string_len("project_id", 255))
                .col(string_len("user_id", 255))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("migrations", &["instance_uuid"], false))
            .await?;
        m.create_index(index("migrations", &["source_compute", "status"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the compute schema cannot be migrated down".into(),
        ))
    }
}

/// Nova's `services.version`: the service version of the code that runs each service, for the
/// version caps of a rolling upgrade. Records of older builds read 0 until their next beat.
struct M0004ServiceVersion;

impl MigrationName for M0004ServiceVersion {
    fn name(&self) -> &str {
        "m0004_service_version"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004ServiceVersion {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("services")
                .add_column(integer("version").default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the compute schema cannot be migrated down".into(),
        ))
    }
}

/// PostgreSQL compresses (pglz) any row over ~2 KB and moves it out of line; an instance's row
/// is ~3.5 KB and every build step rewrites and rereads it, so each step paid a compression
/// and a decompression. Rows up to a page's worth now stay inline and uncompressed; a larger
/// one is compressed with lz4 where the server has it. (SQLite and MySQL store it as it is.)
struct M0005InlineInstanceDoc;

impl MigrationName for M0005InlineInstanceDoc {
    fn name(&self) -> &str {
        "m0005_inline_instance_doc"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005InlineInstanceDoc {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        db.execute_unprepared("ALTER TABLE instances SET (toast_tuple_target = 8160)")
            .await?;
        // A server built without lz4 does not list it (a failed ALTER would abort the
        // migration's transaction): pglz stays for the rare large row then.
        let lz4 = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
            ))
            .await?
            .is_some();
        if lz4 {
            db.execute_unprepared("ALTER TABLE instances ALTER COLUMN doc SET COMPRESSION lz4")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the compute schema cannot be migrated down".into(),
        ))
    }
}
