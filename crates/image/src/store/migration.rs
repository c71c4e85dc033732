//! The image schema as versioned migrations (sea-query's portable builder: SQLite,
//! PostgreSQL and MySQL get the same schema).

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
        "m0001_image_initial"
    }
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
        m.create_table(
            Table::create()
                .table("image")
                .col(string_len("id", 36).primary_key())
                .col(string_len_null("name", 255))
                .col(string_len("status", 30))
                .col(string_len("visibility", 20))
                .col(string_len_null("owner", 255))
                .col(string_len_null("disk_format", 20))
                .col(string_len_null("container_format", 20))
                .col(big_integer_null("size"))
                .col(big_integer_null("virtual_size"))
                .col(string_len_null("checksum", 32))
                .col(string_len_null("os_hash_algo", 64))
                .col(string_len_null("os_hash_value", 128))
                .col(big_integer("min_disk"))
                .col(big_integer("min_ram"))
                .col(boolean("protected"))
                .col(boolean("os_hidden"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(boolean("deleted"))
                .col(timestamp_with_time_zone_null("deleted_at"))
                .col(json("properties"))
                .col(json("tags"))
                .to_owned(),
        )
        .await?;
        // The default list order (created_at desc, id desc) among live images.
        m.create_index(index("image", &["deleted", "created_at", "id"]))
            .await?;
        m.create_index(index("image", &["owner"])).await?;
        m.create_index(index("image", &["status"])).await?;

        m.create_table(
            Table::create()
                .table("image_member")
                .col(string_len("image_id", 36))
                .col(string_len("member", 255))
                .col(string_len("status", 20))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(Index::create().col("image_id").col("member"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("image_member", &["member", "status"]))
            .await?;

        m.create_table(
            Table::create()
                .table("task")
                .col(string_len("id", 36).primary_key())
                .col(string_len("task_type", 30))
                .col(string_len("status", 30))
                .col(string_len_null("owner", 255))
                .col(string_len_null("image_id", 36))
                .col(string_len_null("request_id", 64))
                .col(string_len_null("user_id", 64))
                .col(json("input"))
                .col(json_null("result"))
                .col(text("message"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("task", &["image_id"])).await?;
        m.create_index(index("task", &["status"])).await?;
        Ok(())
    }
}
