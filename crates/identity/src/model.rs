//! The identity domain: plain data, no HTTP, no SQL.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Attributes a client set that Keystone has no column for; Keystone keeps and returns them.
pub type Extra = Map<String, Value>;

pub const DEFAULT_DOMAIN_ID: &str = "default";

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub extra: Extra,
    pub options: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    /// `None` for a top-level project (whose parent, as Keystone shows it, is its domain).
    pub parent_id: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub extra: Extra,
    pub options: Extra,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    pub extra: Extra,
    pub options: Extra,
    pub created_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub failed_auth_count: i32,
    pub failed_auth_at: Option<DateTime<Utc>>,
    /// Expiry of the current password, if any.
    pub password_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PasswordRecord {
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub self_service: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: Option<String>,
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub id: String,
    pub name: String,
    /// Set for domain-specific roles.
    pub domain_id: Option<String>,
    pub description: Option<String>,
    pub extra: Extra,
    pub options: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    User(String),
    Group(String),
}

impl Actor {
    pub fn id(&self) -> &str {
        match self {
            Actor::User(id) | Actor::Group(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Project(String),
    Domain(String),
    System,
}

impl Target {
    pub fn id(&self) -> &str {
        match self {
            Target::Project(id) | Target::Domain(id) => id,
            Target::System => SYSTEM_TARGET,
        }
    }
}

/// The target id Keystone stores for system assignments.
pub const SYSTEM_TARGET: &str = "system";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assignment {
    pub actor: Actor,
    pub target: Target,
    pub role_id: String,
    /// OS-INHERIT: applies to the target's subtree, not the target itself.
    pub inherited: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub id: String,
    pub description: String,
    pub parent_region_id: Option<String>,
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: String,
    pub service_type: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub interface: String,
    pub service_id: String,
    pub url: String,
    pub region_id: Option<String>,
    pub enabled: bool,
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessRule {
    pub id: String,
    pub service: String,
    pub path: String,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppCred {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub description: Option<String>,
    pub user_id: String,
    pub project_id: Option<String>,
    pub system: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub unrestricted: bool,
    pub created_at: DateTime<Utc>,
    pub roles: Vec<RoleRef>,
    pub access_rules: Vec<AccessRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub project_id: Option<String>,
    pub credential_type: String,
    /// The secret, decrypted.
    pub blob: String,
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: String,
    pub policy_type: String,
    pub blob: String,
    pub extra: Extra,
}

/// A token revocation: every token matching all the set fields and issued before
/// `issued_before` is invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationEvent {
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub audit_id: Option<String>,
    pub issued_before: DateTime<Utc>,
    pub revoked_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A fresh id in Keystone's form (uuid4 hex, no dashes).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
