//! sea-orm entities of the compute database; `store::migration` is the authority on the schema.

pub mod instance {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub uuid: String,
        pub project_id: String,
        pub user_id: String,
        pub display_name: String,
        pub host: Option<String>,
        pub vm_state: String,
        pub task_state: Option<String>,
        pub vcpus: i32,
        pub memory_mb: i64,
        pub deleted: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub deleted_at: Option<DateTimeUtc>,
        pub doc: Json,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance_action {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_actions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub instance_uuid: String,
        pub action: String,
        pub request_id: String,
        pub user_id: Option<String>,
        pub project_id: Option<String>,
        pub start_time: DateTimeUtc,
        pub finish_time: Option<DateTimeUtc>,
        pub message: Option<String>,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance_action_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_action_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub action_id: i32,
        pub event: String,
        pub start_time: DateTimeUtc,
        pub finish_time: Option<DateTimeUtc>,
        pub result: Option<String>,
        pub traceback: Option<String>,
        pub host: Option<String>,
        pub details: Option<String>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod flavor {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "flavors")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub flavorid: String,
        pub name: String,
        pub memory_mb: i32,
        pub vcpus: i32,
        pub root_gb: i32,
        pub ephemeral_gb: i32,
        pub swap: i32,
        pub rxtx_factor: f64,
        pub is_public: bool,
        pub disabled: bool,
        pub description: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod flavor_extra_spec {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "flavor_extra_specs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub flavor_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod flavor_project {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "flavor_projects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub flavor_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod key_pair {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_pairs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub user_id: String,
        pub name: String,
        pub fingerprint: String,
        pub public_key: String,
        #[sea_orm(column_name = "type")]
        pub r#type: String,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod server_group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "server_groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub uuid: String,
        pub name: String,
        pub project_id: String,
        pub user_id: String,
        pub policy: String,
        pub rules: Json,
        pub members: Json,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod quota {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "quotas")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource: String,
        pub hard_limit: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod quota_class {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "quota_classes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub class_name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource: String,
        pub hard_limit: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod service {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "services")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub host: String,
        pub binary: String,
        pub topic: String,
        pub disabled: bool,
        pub disabled_reason: Option<String>,
        pub forced_down: bool,
        pub report_count: i64,
        pub last_seen_up: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
        pub version: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod compute_node {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "compute_nodes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub host: String,
        pub hypervisor_hostname: String,
        pub resources: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod aggregate {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "aggregates")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub name: String,
        pub availability_zone: Option<String>,
        pub hosts: Json,
        pub metadata: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod console_auth_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "console_auth_tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub token_hash: String,
        pub instance_uuid: String,
        pub console_type: String,
        pub host: String,
        pub target: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod migration {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "migrations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub instance_uuid: String,
        pub migration_type: String,
        pub status: String,
        pub source_compute: Option<String>,
        pub source_node: Option<String>,
        pub dest_compute: Option<String>,
        pub dest_node: Option<String>,
        pub project_id: String,
        pub user_id: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}
