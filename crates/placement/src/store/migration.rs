//! The placement schema, as versioned migrations written with sea-query's portable builder
//! (SQLite now, PostgreSQL/MySQL with scale-out). Tables and columns follow upstream
//! placement's, plus foreign keys that make the database itself refuse what must never
//! happen (deleting a parent provider, a provider with allocations, a trait in use) and
//! `placement_state`, the revision counter every write bumps.

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

fn fk(
    from_table: &'static str,
    from_col: &'static str,
    to_table: &'static str,
    to_col: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}"))
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
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

fn timestamps(t: &mut TableCreateStatement) -> &mut TableCreateStatement {
    t.col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone_null("updated_at"))
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Standard classes keep upstream's ids (their index in os-resource-classes);
        // custom ones start at 10000. So ids are assigned by the code, not the database.
        m.create_table(
            timestamps(
                Table::create()
                    .table("resource_classes")
                    .col(integer("id").primary_key())
                    .col(string_len("name", 255)),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique("resource_classes", &["name"]))
            .await?;

        m.create_table(
            timestamps(
                Table::create()
                    .table("resource_providers")
                    .col(pk_auto("id"))
                    .col(string_len("uuid", 36))
                    .col(string_len("name", 200))
                    .col(integer("generation"))
                    // NULL only between the insert and the update that points a new root
                    // at itself.
                    .col(integer_null("root_provider_id"))
                    .col(integer_null("parent_provider_id"))
                    .foreign_key(&mut fk(
                        "resource_providers",
                        "parent_provider_id",
                        "resource_providers",
                        "id",
                    ))
                    .foreign_key(&mut fk(
                        "resource_providers",
                        "root_provider_id",
                        "resource_providers",
                        "id",
                    )),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique("resource_providers", &["uuid"]))
            .await?;
        m.create_index(unique("resource_providers", &["name"]))
            .await?;
        m.create_index(index("resource_providers", &["root_provider_id"]))
            .await?;
        m.create_index(index("resource_providers", &["parent_provider_id"]))
            .await?;

        m.create_table(
            timestamps(
                Table::create()
                    .table("inventories")
                    .col(pk_auto("id"))
                    .col(integer("resource_provider_id"))
                    .col(integer("resource_class_id"))
                    .col(integer("total"))
                    .col(integer("reserved"))
                    .col(integer("min_unit"))
                    .col(integer("max_unit"))
                    .col(integer("step_size"))
                    .col(double("allocation_ratio"))
                    .foreign_key(&mut fk(
                        "inventories",
                        "resource_provider_id",
                        "resource_providers",
                        "id",
                    ))
                    .foreign_key(&mut fk(
                        "inventories",
                        "resource_class_id",
                        "resource_classes",
                        "id",
                    )),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "inventories",
            &["resource_provider_id", "resource_class_id"],
        ))
        .await?;
        m.create_index(index("inventories", &["resource_class_id"]))
            .await?;

        m.create_table(
            timestamps(
                Table::create()
                    .table("allocations")
                    .col(pk_auto("id"))
                    .col(integer("resource_provider_id"))
                    .col(string_len("consumer_id", 36))
                    .col(integer("resource_class_id"))
                    .col(integer("used"))
                    .foreign_key(&mut fk(
                        "allocations",
                        "resource_provider_id",
                        "resource_providers",
                        "id",
                    )),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(index(
            "allocations",
            &["resource_provider_id", "resource_class_id", "used"],
        ))
        .await?;
        m.create_index(index("allocations", &["resource_class_id"]))
            .await?;
        m.create_index(index("allocations", &["consumer_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("placement_aggregates")
                .col(pk_auto("id"))
                .col(string_len("uuid", 36))
                .to_owned(),
        )
        .await?;
        m.create_index(unique("placement_aggregates", &["uuid"]))
            .await?;

        m.create_table(
            Table::create()
                .table("resource_provider_aggregates")
                .col(integer("resource_provider_id"))
                .col(integer("aggregate_id"))
                .primary_key(
                    Index::create()
                        .col("resource_provider_id")
                        .col("aggregate_id"),
                )
                .foreign_key(&mut fk(
                    "resource_provider_aggregates",
                    "resource_provider_id",
                    "resource_providers",
                    "id",
                ))
                .foreign_key(&mut fk(
                    "resource_provider_aggregates",
                    "aggregate_id",
                    "placement_aggregates",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("resource_provider_aggregates", &["aggregate_id"]))
            .await?;

        m.create_table(
            timestamps(
                Table::create()
                    .table("traits")
                    .col(pk_auto("id"))
                    .col(string_len("name", 255)),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique("traits", &["name"])).await?;

        m.create_table(
            Table::create()
                .table("resource_provider_traits")
                .col(integer("trait_id"))
                .col(integer("resource_provider_id"))
                .primary_key(Index::create().col("trait_id").col("resource_provider_id"))
                .foreign_key(&mut fk(
                    "resource_provider_traits",
                    "trait_id",
                    "traits",
                    "id",
                ))
                .foreign_key(&mut fk(
                    "resource_provider_traits",
                    "resource_provider_id",
                    "resource_providers",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "resource_provider_traits",
            &["resource_provider_id", "trait_id"],
        ))
        .await?;

        for t in ["projects", "users"] {
            m.create_table(
                timestamps(
                    Table::create()
                        .table(t)
                        .col(pk_auto("id"))
                        .col(string_len("external_id", 255)),
                )
                .to_owned(),
            )
            .await?;
            m.create_index(unique(t, &["external_id"])).await?;
        }

        m.create_table(
            timestamps(
                Table::create()
                    .table("consumer_types")
                    .col(pk_auto("id"))
                    .col(string_len("name", 255)),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique("consumer_types", &["name"])).await?;

        m.create_table(
            timestamps(
                Table::create()
                    .table("consumers")
                    .col(pk_auto("id"))
                    .col(string_len("uuid", 36))
                    .col(integer("project_id"))
                    .col(integer("user_id"))
                    .col(integer("generation"))
                    .col(integer_null("consumer_type_id"))
                    .foreign_key(&mut fk("consumers", "project_id", "projects", "id"))
                    .foreign_key(&mut fk("consumers", "user_id", "users", "id"))
                    .foreign_key(&mut fk(
                        "consumers",
                        "consumer_type_id",
                        "consumer_types",
                        "id",
                    )),
            )
            .to_owned(),
        )
        .await?;
        m.create_index(unique("consumers", &["uuid"])).await?;
        m.create_index(index("consumers", &["project_id", "user_id", "uuid"]))
            .await?;
        m.create_index(index("consumers", &["consumer_type_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("placement_state")
                .col(integer("id").primary_key())
                .col(big_integer("revision"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the placement schema cannot be migrated down".into(),
        ))
    }
}
