//! sea-orm entities of the image database; `store::migration` is the authority on the schema.

pub mod image {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "image")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: Option<String>,
        pub status: String,
        pub visibility: String,
        pub owner: Option<String>,
        pub disk_format: Option<String>,
        pub container_format: Option<String>,
        pub size: Option<i64>,
        pub virtual_size: Option<i64>,
        pub checksum: Option<String>,
        pub os_hash_algo: Option<String>,
        pub os_hash_value: Option<String>,
        pub min_disk: i64,
        pub min_ram: i64,
        pub protected: bool,
        pub os_hidden: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub deleted: bool,
        pub deleted_at: Option<DateTimeUtc>,
        pub properties: Json,
        pub tags: Json,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod image_member {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "image_member")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub image_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub member: String,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod task {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "task")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub task_type: String,
        pub status: String,
        pub owner: Option<String>,
        pub image_id: Option<String>,
        pub request_id: Option<String>,
        pub user_id: Option<String>,
        pub input: Json,
        pub result: Option<Json>,
        pub message: String,
        pub expires_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}
