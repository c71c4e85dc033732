//! Who is making the request, as policy checks see it.

use super::check::find_in_map;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The scope a token is bound to, and the scopes a rule may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeType {
    System,
    Domain,
    Project,
}

impl ScopeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::System => "system",
            ScopeType::Domain => "domain",
            ScopeType::Project => "project",
        }
    }
}

impl std::fmt::Display for ScopeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request's credentials: the values keystonemiddleware puts in the oslo context
/// (`to_policy_values()`), plus service-specific extras.
///
/// Checks name their credential key when the rule is parsed, so enforcement reads
/// these fields directly instead of building a dict per request. Unset `Option`
/// fields behave like oslo's `None` values: present, with `str()` `"None"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub user_id: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_id: Option<String>,
    pub domain_id: Option<String>,
    /// `"all"` for a system-scoped token.
    pub system_scope: Option<String>,
    /// Role names, including implied ones.
    pub roles: Vec<String>,
    pub is_admin: bool,
    pub is_admin_project: bool,
    pub service_user_id: Option<String>,
    pub service_user_domain_id: Option<String>,
    pub service_project_id: Option<String>,
    pub service_project_domain_id: Option<String>,
    pub service_roles: Vec<String>,
    /// Any other key a service's rules read, e.g. keystone's rendered `token`
    /// (rules like `token.domain.id:%(target.domain.id)s` walk into it).
    pub extra: Map<String, Value>,
}

impl Credentials {
    /// The credentials of a validated caller, as keystonemiddleware + oslo.context build them:
    /// user, scope, effective role names, and the caller's rendered token under `extra["token"]`
    /// (some Keystone rules walk into `token.domain.id`).
    pub fn from_auth(ctx: &crate::auth::AuthContext) -> Self {
        use crate::auth::Scope;
        let mut c = Credentials {
            user_id: Some(ctx.user_id.clone()),
            user_domain_id: Some(ctx.user_domain_id.clone()),
            roles: ctx.roles.iter().map(|r| r.name.clone()).collect(),
            is_admin_project: ctx.is_admin_project,
            ..Default::default()
        };
        match &ctx.scope {
            Scope::Project { id, domain_id, .. } => {
                c.project_id = Some(id.clone());
                c.project_domain_id = Some(domain_id.clone());
            }
            Scope::Domain { id, .. } => c.domain_id = Some(id.clone()),
            Scope::System => c.system_scope = Some("all".into()),
            Scope::Unscoped => {}
        }
        let mut token = Map::new();
        token.insert(
            "user".into(),
            serde_json::json!({"domain": {"id": ctx.user_domain_id}}),
        );
        match &ctx.scope {
            Scope::Project { domain_id, .. } => {
                token.insert(
                    "project".into(),
                    serde_json::json!({"domain": {"id": domain_id}}),
                );
            }
            Scope::Domain { id, .. } => {
                token.insert("domain".into(), serde_json::json!({"id": id}));
            }
            _ => {}
        }
        c.extra.insert("token".into(), Value::Object(token));
        c
    }

    /// The token's scope; `None` for an unscoped token.
    pub fn scope(&self) -> Option<ScopeType> {
        fn set(v: &Option<String>) -> bool {
            v.as_deref().is_some_and(|s| !s.is_empty())
        }
        if set(&self.system_scope) {
            Some(ScopeType::System)
        } else if set(&self.domain_id) {
            Some(ScopeType::Domain)
        } else if set(&self.project_id) {
            Some(ScopeType::Project)
        } else {
            None
        }
    }

    /// The flat dict oslo.policy would see, for logging and `policy check` tooling.
    pub fn to_policy_values(&self) -> Map<String, Value> {
        let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let mut m = self.extra.clone();
        for (k, v) in [
            ("user_id", opt(&self.user_id)),
            ("user_domain_id", opt(&self.user_domain_id)),
            ("system_scope", opt(&self.system_scope)),
            ("domain_id", opt(&self.domain_id)),
            ("project_id", opt(&self.project_id)),
            ("project_domain_id", opt(&self.project_domain_id)),
            ("roles", list(&self.roles)),
            ("is_admin", Value::Bool(self.is_admin)),
            ("is_admin_project", Value::Bool(self.is_admin_project)),
            ("service_user_id", opt(&self.service_user_id)),
            ("service_user_domain_id", opt(&self.service_user_domain_id)),
            ("service_project_id", opt(&self.service_project_id)),
            (
                "service_project_domain_id",
                opt(&self.service_project_domain_id),
            ),
            ("service_roles", list(&self.service_roles)),
        ] {
            m.insert(k.to_string(), v);
        }
        if let Some(s) = self.system_scope.as_deref().filter(|s| !s.is_empty()) {
            m.insert("system".into(), Value::String(s.into()));
        }
        m
    }

    /// Does the credential value named by `key` equal `m` (as oslo compares: `str()`
    /// of the value, any element of a list)?
    pub(crate) fn matches(&self, key: &CredKey, m: &str) -> bool {
        let opt = |v: &Option<String>| v.as_deref().unwrap_or("None") == m;
        let py_bool = |b: bool| if b { "True" } else { "False" } == m;
        match key {
            CredKey::UserId => opt(&self.user_id),
            CredKey::UserDomainId => opt(&self.user_domain_id),
            CredKey::ProjectId => opt(&self.project_id),
            CredKey::ProjectDomainId => opt(&self.project_domain_id),
            CredKey::DomainId => opt(&self.domain_id),
            CredKey::SystemScope => opt(&self.system_scope),
            // oslo only adds `system` when `system_scope` is set.
            CredKey::System => self
                .system_scope
                .as_deref()
                .is_some_and(|s| !s.is_empty() && s == m),
            CredKey::Roles => self.roles.iter().any(|r| r == m),
            CredKey::IsAdmin => py_bool(self.is_admin),
            CredKey::IsAdminProject => py_bool(self.is_admin_project),
            CredKey::ServiceUserId => opt(&self.service_user_id),
            CredKey::ServiceUserDomainId => opt(&self.service_user_domain_id),
            CredKey::ServiceProjectId => opt(&self.service_project_id),
            CredKey::ServiceProjectDomainId => opt(&self.service_project_domain_id),
            CredKey::ServiceRoles => self.service_roles.iter().any(|r| r == m),
            CredKey::Extra(path) => find_in_map(&self.extra, path, m),
        }
    }
}

/// A credential key named on the left of a generic check, resolved at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredKey {
    UserId,
    UserDomainId,
    ProjectId,
    ProjectDomainId,
    DomainId,
    SystemScope,
    System,
    Roles,
    IsAdmin,
    IsAdminProject,
    ServiceUserId,
    ServiceUserDomainId,
    ServiceProjectId,
    ServiceProjectDomainId,
    ServiceRoles,
    Extra(Box<str>),
}

impl CredKey {
    pub(crate) fn parse(kind: &str) -> Self {
        match kind {
            "user_id" => CredKey::UserId,
            "user_domain_id" => CredKey::UserDomainId,
            "project_id" => CredKey::ProjectId,
            "project_domain_id" => CredKey::ProjectDomainId,
            "domain_id" => CredKey::DomainId,
            "system_scope" => CredKey::SystemScope,
            "system" => CredKey::System,
            "roles" => CredKey::Roles,
            "is_admin" => CredKey::IsAdmin,
            "is_admin_project" => CredKey::IsAdminProject,
            "service_user_id" => CredKey::ServiceUserId,
            "service_user_domain_id" => CredKey::ServiceUserDomainId,
            "service_project_id" => CredKey::ServiceProjectId,
            "service_project_domain_id" => CredKey::ServiceProjectDomainId,
            "service_roles" => CredKey::ServiceRoles,
            other => CredKey::Extra(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::check::py_str;
    use serde_json::json;

    #[test]
    fn scope_precedence() {
        let mut c = Credentials::default();
        assert_eq!(c.scope(), None);
        c.project_id = Some("p".into());
        assert_eq!(c.scope(), Some(ScopeType::Project));
        c.domain_id = Some("d".into());
        assert_eq!(c.scope(), Some(ScopeType::Domain));
        c.system_scope = Some("all".into());
        assert_eq!(c.scope(), Some(ScopeType::System));
        c.system_scope = Some(String::new());
        assert_eq!(c.scope(), Some(ScopeType::Domain));
    }

    #[test]
    fn unset_fields_read_as_python_none() {
        let c = Credentials::default();
        assert!(c.matches(&CredKey::DomainId, "None"));
        assert!(!c.matches(&CredKey::System, "None"));
        assert!(c.matches(&CredKey::IsAdmin, "False"));
        assert_eq!(py_str(&json!(null)), "None");
    }

    #[test]
    fn policy_values_have_oslo_keys() {
        let c = Credentials {
            system_scope: Some("all".into()),
            roles: vec!["reader".into()],
            ..Default::default()
        };
        let v = c.to_policy_values();
        assert_eq!(v.get("system"), Some(&json!("all")));
        assert_eq!(v.get("roles"), Some(&json!(["reader"])));
        assert_eq!(v.get("project_id"), Some(&json!(null)));
    }
}
