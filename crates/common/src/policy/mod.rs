//! oslo.policy-compatible rule engine.
//!
//! Each service registers its defaults (name, check string, scope types,
//! description), usually from a YAML document kept next to its code, and an
//! operator may override any of them in `policy.yaml`. Everything is parsed and
//! validated when the [`Enforcer`] is built (parse errors with a position,
//! undefined `rule:` references, cycles), so enforcement itself never fails
//! except by denying.
//!
//! The rule language is oslo's: `@`, `!`, `""` (always), `rule:NAME`, `role:NAME`
//! (case-insensitive), `KEY:MATCH` generic checks whose MATCH may use
//! `%(dotted.key)s` substitutions from the target and whose KEY may be a Python
//! literal (`'member'`, `True`, `None`, integers); `not` > `and` > `or`,
//! parentheses. Deliberate differences from oslo:
//! - malformed rules and undefined `rule:` references are load errors (oslo logs
//!   and denies at request time);
//! - `http:`/`https:` checks are never made; they evaluate false with a warning;
//! - (same as oslo) an unscoped token counts as project-scoped for scope_types.
//!
//! ```
//! use common::policy::{Credentials, Enforcer, RuleDefault, ScopeType};
//! use serde_json::json;
//!
//! let enforcer = Enforcer::builder()
//!     .defaults([
//!         RuleDefault::new("admin_required", "role:admin"),
//!         RuleDefault::new("svc:get_thing", "rule:admin_required or project_id:%(target.thing.project_id)s")
//!             .scope_types(&[ScopeType::Project]),
//!     ])
//!     .build()?;
//! let creds = Credentials {
//!     project_id: Some("p1".into()),
//!     roles: vec!["reader".into()],
//!     ..Default::default()
//! };
//! let target = json!({"target": {"thing": {"project_id": "p1"}}});
//! assert!(enforcer.authorize("svc:get_thing", &target, &creds).is_ok());
//! # Ok::<(), common::policy::PolicyLoadError>(())
//! ```

mod check;
mod credentials;
mod enforcer;
mod parser;

#[cfg(test)]
mod tests;

pub use credentials::{Credentials, ScopeType};
pub use enforcer::{
    DEFAULT_RULE, Enforcer, EnforcerBuilder, RuleDefault, load_defaults, load_overrides,
};
pub use parser::ParseError;

use thiserror::Error;

/// Why a request was refused. Both variants are 403s; they differ in message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("policy does not allow {action} to be performed")]
    Denied { action: String },
    #[error(
        "{action} requires a token scoped to {}; the request's token is {}",
        scope_list(.required),
        scope_name(.actual)
    )]
    InvalidScope {
        action: String,
        required: Vec<ScopeType>,
        /// `None` for an unscoped token.
        actual: Option<ScopeType>,
    },
}

impl PolicyError {
    pub fn action(&self) -> &str {
        match self {
            PolicyError::Denied { action } | PolicyError::InvalidScope { action, .. } => action,
        }
    }
}

fn scope_list(scopes: &[ScopeType]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.join(" or ")
}

fn scope_name(scope: &Option<ScopeType>) -> String {
    scope.map_or_else(|| "unscoped".into(), |s| format!("{s}-scoped"))
}

/// A policy that cannot be loaded. Each variant names the offending rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyLoadError {
    #[error("rule {rule:?}: {source}")]
    Parse { rule: String, source: ParseError },
    #[error("rule {rule:?} refers to undefined rule:{reference}")]
    UnknownRule { rule: String, reference: String },
    #[error("rule {rule:?} is in a reference cycle: {}", .cycle.join(" -> "))]
    Cycle { rule: String, cycle: Vec<String> },
    #[error("rule {rule:?} is registered twice")]
    DuplicateDefault { rule: String },
    #[error("rule {rule:?}: {message}")]
    InvalidEntry { rule: String, message: String },
    #[error("invalid policy document: {0}")]
    Document(String),
}
