//! sea-orm entities of the placement database, one module per table. The schema itself is
//! created by `store::migration`, which is the authority on column types and indexes.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod resource_class {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource_classes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod resource_provider {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource_providers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub name: String,
        pub generation: i32,
        pub root_provider_id: Option<i32>,
        pub parent_provider_id: Option<i32>,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod inventory {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "inventories")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub resource_provider_id: i32,
        pub resource_class_id: i32,
        pub total: i32,
        pub reserved: i32,
        pub min_unit: i32,
        pub max_unit: i32,
        pub step_size: i32,
        pub allocation_ratio: f64,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod allocation {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "allocations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub resource_provider_id: i32,
        pub consumer_id: String,
        pub resource_class_id: i32,
        pub used: i32,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod aggregate {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "placement_aggregates")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
    }
    no_relations!();
}

pub mod provider_aggregate {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource_provider_aggregates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource_provider_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub aggregate_id: i32,
    }
    no_relations!();
}

pub mod trait_ {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "traits")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod provider_trait {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource_provider_traits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub trait_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource_provider_id: i32,
    }
    no_relations!();
}

pub mod project {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub external_id: String,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub external_id: String,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod consumer_type {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "consumer_types")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod consumer {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "consumers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: String,
        pub project_id: i32,
        pub user_id: i32,
        pub generation: i32,
        pub consumer_type_id: Option<i32>,
        pub created_at: DateTimeUtc,
        pub updated_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod state {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "placement_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub revision: i64,
    }
    no_relations!();
}
