//! sea-orm entities of the identity database. One module per table; the schema itself is
//! created by `store::migration`, which is the authority on column types and indexes.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod domain {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "domain")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub enabled: bool,
        pub description: Option<String>,
        pub extra: Json,
        pub options: Json,
    }
    no_relations!();
}

pub mod project {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub domain_id: String,
        pub parent_id: Option<String>,
        pub enabled: bool,
        pub description: Option<String>,
        pub extra: Json,
        pub options: Json,
    }
    no_relations!();
}

pub mod project_tag {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_tag")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
    }
    no_relations!();
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub domain_id: String,
        pub enabled: bool,
        pub default_project_id: Option<String>,
        pub extra: Json,
        pub options: Json,
        pub created_at: DateTimeUtc,
        pub last_active_at: Option<DateTimeUtc>,
        pub failed_auth_count: i32,
        pub failed_auth_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod password {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "password")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: String,
        pub password_hash: String,
        pub created_at: DateTimeUtc,
        pub expires_at: Option<DateTimeUtc>,
        pub self_service: bool,
    }
    no_relations!();
}

pub mod group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "group")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub domain_id: String,
        pub description: Option<String>,
        pub extra: Json,
    }
    no_relations!();
}

pub mod user_group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_group_membership")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: String,
    }
    no_relations!();
}

pub mod role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "role")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        /// Empty for global roles: a NULL would defeat the (name, domain_id) uniqueness.
        pub domain_id: String,
        pub description: Option<String>,
        pub extra: Json,
        pub options: Json,
    }
    no_relations!();
}

pub mod implied_role {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "implied_role")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub prior_role_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub implied_role_id: String,
    }
    no_relations!();
}

pub mod assignment {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "assignment")]
    pub struct Model {
        /// UserProject, GroupProject, UserDomain, GroupDomain, UserSystem, GroupSystem.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub actor_id: String,
        /// Project or domain id; `system` for system assignments.
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub role_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub inherited: bool,
    }
    no_relations!();
}

pub mod region {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "region")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub description: String,
        pub parent_region_id: Option<String>,
        pub extra: Json,
    }
    no_relations!();
}

pub mod service {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "service")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub service_type: String,
        pub name: Option<String>,
        pub description: Option<String>,
        pub enabled: bool,
        pub extra: Json,
    }
    no_relations!();
}

pub mod endpoint {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "endpoint")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub interface: String,
        pub service_id: String,
        pub url: String,
        pub region_id: Option<String>,
        pub enabled: bool,
        pub extra: Json,
    }
    no_relations!();
}

pub mod application_credential {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "application_credential")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub secret_hash: String,
        pub description: Option<String>,
        pub user_id: String,
        pub project_id: Option<String>,
        pub system: Option<String>,
        pub expires_at: Option<DateTimeUtc>,
        pub unrestricted: bool,
        pub created_at: DateTimeUtc,
        /// Role references `[{"id", "name"}]` the credential delegates.
        pub roles: Json,
        /// Access rules `[{"id", "service", "path", "method"}]`; empty = unrestricted.
        pub access_rules: Json,
    }
    no_relations!();
}

pub mod credential {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub project_id: Option<String>,
        #[sea_orm(column_name = "type")]
        pub credential_type: String,
        /// Fernet-encrypted with the credential key repository.
        pub encrypted_blob: String,
        pub key_hash: String,
        pub extra: Json,
    }
    no_relations!();
}

pub mod revocation_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "revocation_event")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: Option<String>,
        pub project_id: Option<String>,
        pub domain_id: Option<String>,
        pub audit_id: Option<String>,
        pub issued_before: DateTimeUtc,
        pub revoked_at: DateTimeUtc,
        /// After this, no token the event could match is still valid; the event can go.
        pub expires_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod policy {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "policy")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub policy_type: String,
        pub blob: String,
        pub extra: Json,
    }
    no_relations!();
}
