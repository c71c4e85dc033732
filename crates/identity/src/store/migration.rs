//! The identity schema, as versioned migrations. Written with sea-query's portable builder
//! so the same migrations create the schema on SQLite, PostgreSQL and MySQL.

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
        "m0001_initial"
    }
}

fn id(name: &'static str) -> ColumnDef {
    string_len(name, 64).primary_key().to_owned()
}

fn fk(
    from_table: &'static str,
    from_col: &'static str,
    to_table: &'static str,
    to_col: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}"))
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(on_delete)
        .to_owned()
}

fn unique(table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(format!("ux_{table}_{}", cols.join("_")))
        .table(table)
        .unique();
    for c in cols {
        idx.col(*c);
    }
    idx.to_owned()
}

fn index(table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(format!("ix_{table}_{}", cols.join("_")))
        .table(table);
    for c in cols {
        idx.col(*c);
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, Restrict};
        m.create_table(
            Table::create()
                .table("domain")
                .col(id("id"))
                .col(string_len("name", 64))
                .col(boolean("enabled"))
                .col(text_null("description"))
                .col(json("extra"))
                .col(json("options"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("domain", &["name"])).await?;

        m.create_table(
            Table::create()
                .table("project")
                .col(id("id"))
                .col(string_len("name", 64))
                .col(string_len("domain_id", 64))
                .col(string_len_null("parent_id", 64))
                .col(boolean("enabled"))
                .col(text_null("description"))
                .col(json("extra"))
                .col(json("options"))
                .foreign_key(&mut fk("project", "domain_id", "domain", "id", Restrict))
                .foreign_key(&mut fk("project", "parent_id", "project", "id", Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("project", &["domain_id", "name"]))
            .await?;
        m.create_index(index("project", &["parent_id"])).await?;

        m.create_table(
            Table::create()
                .table("project_tag")
                .col(string_len("project_id", 64))
                .col(string_len("name", 255))
                .primary_key(Index::create().col("project_id").col("name"))
                .foreign_key(&mut fk(
                    "project_tag",
                    "project_id",
                    "project",
                    "id",
                    Cascade,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("user")
                .col(id("id"))
                .col(string_len("name", 255))
                .col(string_len("domain_id", 64))
                .col(boolean("enabled"))
                .col(string_len_null("default_project_id", 64))
                .col(json("extra"))
                .col(json("options"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("last_active_at"))
                .col(integer("failed_auth_count"))
                .col(timestamp_with_time_zone_null("failed_auth_at"))
                .foreign_key(&mut fk("user", "domain_id", "domain", "id", Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("user", &["domain_id", "name"]))
            .await?;

        m.create_table(
            Table::create()
                .table("password")
                .col(big_integer("id").auto_increment().primary_key())
                .col(string_len("user_id", 64))
                .col(string_len("password_hash", 255))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(boolean("self_service"))
                .foreign_key(&mut fk("password", "user_id", "user", "id", Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("password", &["user_id"])).await?;

        m.create_table(
            Table::create()
                .table("group")
                .col(id("id"))
                .col(string_len("name", 64))
                .col(string_len("domain_id", 64))
                .col(text_null("description"))
                .col(json("extra"))
                .foreign_key(&mut fk("group", "domain_id", "domain", "id", Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("group", &["domain_id", "name"]))
            .await?;

        m.create_table(
            Table::create()
                .table("user_group_membership")
                .col(string_len("user_id", 64))
                .col(string_len("group_id", 64))
                .primary_key(Index::create().col("user_id").col("group_id"))
                .foreign_key(&mut fk(
                    "user_group_membership",
                    "user_id",
                    "user",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "user_group_membership",
                    "group_id",
                    "group",
                    "id",
                    Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("user_group_membership", &["group_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("role")
                .col(id("id"))
                .col(string_len("name", 255))
                .col(string_len("domain_id", 64))
                .col(text_null("description"))
                .col(json("extra"))
                .col(json("options"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("role", &["name", "domain_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("implied_role")
                .col(string_len("prior_role_id", 64))
                .col(string_len("implied_role_id", 64))
                .primary_key(Index::create().col("prior_role_id").col("implied_role_id"))
                .foreign_key(&mut fk(
                    "implied_role",
                    "prior_role_id",
                    "role",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "implied_role",
                    "implied_role_id",
                    "role",
                    "id",
                    Cascade,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("assignment")
                .col(string_len("kind", 16))
                .col(string_len("actor_id", 64))
                .col(string_len("target_id", 64))
                .col(string_len("role_id", 64))
                .col(boolean("inherited"))
                .primary_key(
                    Index::create()
                        .col("kind")
                        .col("actor_id")
                        .col("target_id")
                        .col("role_id")
                        .col("inherited"),
                )
                .foreign_key(&mut fk("assignment", "role_id", "role", "id", Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("assignment", &["actor_id"])).await?;
        m.create_index(index("assignment", &["target_id"])).await?;
        m.create_index(index("assignment", &["role_id"])).await?;

        m.create_table(
            Table::create()
                .table("region")
                .col(id("id"))
                .col(text("description"))
                .col(string_len_null("parent_region_id", 255))
                .col(json("extra"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("service")
                .col(id("id"))
                .col(string_len("type", 255))
                .col(string_len_null("name", 255))
                .col(text_null("description"))
                .col(boolean("enabled"))
                .col(json("extra"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("endpoint")
                .col(id("id"))
                .col(string_len("interface", 8))
                .col(string_len("service_id", 64))
                .col(text("url"))
                .col(string_len_null("region_id", 255))
                .col(boolean("enabled"))
                .col(json("extra"))
                .foreign_key(&mut fk("endpoint", "service_id", "service", "id", Cascade))
                .foreign_key(&mut fk("endpoint", "region_id", "region", "id", Restrict))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("application_credential")
                .col(id("id"))
                .col(string_len("name", 255))
                .col(string_len("secret_hash", 255))
                .col(text_null("description"))
                .col(string_len("user_id", 64))
                .col(string_len_null("project_id", 64))
                .col(string_len_null("system", 64))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(boolean("unrestricted"))
                .col(timestamp_with_time_zone("created_at"))
                .col(json("roles"))
                .col(json("access_rules"))
                .foreign_key(&mut fk(
                    "application_credential",
                    "user_id",
                    "user",
                    "id",
                    Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("application_credential", &["user_id", "name"]))
            .await?;

        m.create_table(
            Table::create()
                .table("credential")
                .col(id("id"))
                .col(string_len("user_id", 64))
                .col(string_len_null("project_id", 64))
                .col(string_len("type", 255))
                .col(text("encrypted_blob"))
                .col(string_len("key_hash", 64))
                .col(json("extra"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("credential", &["user_id"])).await?;

        m.create_table(
            Table::create()
                .table("revocation_event")
                .col(big_integer("id").auto_increment().primary_key())
                .col(string_len_null("user_id", 64))
                .col(string_len_null("project_id", 64))
                .col(string_len_null("domain_id", 64))
                .col(string_len_null("audit_id", 32))
                .col(timestamp_with_time_zone("issued_before"))
                .col(timestamp_with_time_zone("revoked_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("policy")
                .col(id("id"))
                .col(string_len("type", 255))
                .col(text("blob"))
                .col(json("extra"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
