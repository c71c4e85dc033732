//! The identity service's options (Keystone's names, so operators find them).

use common::config::{Config, ConfigError, Opt};
use std::path::PathBuf;

pub static OPTS: &[Opt] = &[
    Opt {
        section: "DEFAULT",
        name: "public_endpoint",
        default: "",
        help: "Base URL of the identity API as clients reach it (e.g. http://cloud:5000/identity). Empty: derived from each request's Host header.",
    },
    Opt {
        section: "DEFAULT",
        name: "max_request_body_size",
        default: "114688",
        help: "Largest request body the identity API accepts, in bytes (413 above).",
    },
    Opt {
        section: "DEFAULT",
        name: "list_limit",
        default: "",
        help: "Most entities a list call returns; the response then says `truncated: true`. Empty: no limit.",
    },
    Opt {
        section: "DEFAULT",
        name: "insecure_debug",
        default: "false",
        help: "Put details of authentication failures in error messages. Never in production.",
    },
    Opt {
        section: "identity",
        name: "connection",
        default: "",
        help: "Database URL of the identity service. Empty: [database] connection with $service = identity.",
    },
    Opt {
        section: "identity",
        name: "password_hash_algorithm",
        default: "bcrypt",
        help: "Hash for new passwords and application credential secrets (bcrypt).",
    },
    Opt {
        section: "identity",
        name: "password_hash_rounds",
        default: "12",
        help: "bcrypt cost for new passwords. devstack uses 4 to keep CI fast.",
    },
    Opt {
        section: "identity",
        name: "max_password_length",
        default: "4096",
        help: "Longest password accepted.",
    },
    Opt {
        section: "identity",
        name: "list_limit",
        default: "",
        help: "Overrides [DEFAULT] list_limit for users and groups.",
    },
    Opt {
        section: "token",
        name: "expiration",
        default: "3600",
        help: "Lifetime of a token, in seconds.",
    },
    Opt {
        section: "token",
        name: "cache_size",
        default: "20000",
        help: "Validated tokens kept in memory (each entry is dropped when anything in identity changes).",
    },
    Opt {
        section: "fernet_tokens",
        name: "key_repository",
        default: "$state_dir/fernet-keys",
        help: "Directory of the Fernet keys that sign tokens (keystone-manage layout).",
    },
    Opt {
        section: "fernet_tokens",
        name: "max_active_keys",
        default: "3",
        help: "Keys kept by `kumo fernet rotate`: the staged key, the primary and the newest secondaries.",
    },
    Opt {
        section: "credential",
        name: "key_repository",
        default: "$state_dir/credential-keys",
        help: "Directory of the Fernet keys that encrypt stored credentials.",
    },
    Opt {
        section: "auth",
        name: "methods",
        default: "external,password,token,oauth1,mapped,application_credential,ec2credential",
        help: "Authentication methods, in Keystone's order (their positions are encoded in tokens).",
    },
    Opt {
        section: "security_compliance",
        name: "lockout_failure_attempts",
        default: "0",
        help: "Failed password logins before the account is locked. 0: never lock.",
    },
    Opt {
        section: "security_compliance",
        name: "lockout_duration",
        default: "1800",
        help: "Seconds an account stays locked.",
    },
    Opt {
        section: "security_compliance",
        name: "unique_last_password_count",
        default: "0",
        help: "A new password must differ from this many previous ones (0 or 1: no history).",
    },
    Opt {
        section: "security_compliance",
        name: "minimum_password_age",
        default: "0",
        help: "Days a password must be kept before its owner may change it again.",
    },
    Opt {
        section: "security_compliance",
        name: "password_expires_days",
        default: "0",
        help: "Days after which a password expires. 0: never.",
    },
    Opt {
        section: "security_compliance",
        name: "password_regex",
        default: "",
        help: "Regular expression new passwords must match.",
    },
    Opt {
        section: "security_compliance",
        name: "password_regex_description",
        default: "",
        help: "What password_regex demands, in words, for error messages.",
    },
    Opt {
        section: "security_compliance",
        name: "change_password_upon_first_use",
        default: "false",
        help: "Users must change a password an administrator set before using it.",
    },
    Opt {
        section: "application_credential",
        name: "user_limit",
        default: "-1",
        help: "Application credentials a user may have. -1: unlimited.",
    },
    Opt {
        section: "resource",
        name: "admin_project_name",
        default: "admin",
        help: "Project whose admins are cloud admins (oslo is_admin_project).",
    },
    Opt {
        section: "resource",
        name: "admin_project_domain_name",
        default: "Default",
        help: "Domain of admin_project_name.",
    },
    Opt {
        section: "oslo_policy",
        name: "policy_file",
        default: "$state_dir/policy.yaml",
        help: "Operator overrides of the policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "oslo_policy",
        name: "enforce_scope",
        default: "true",
        help: "Deny calls made with a token whose scope the policy does not list.",
    },
];

/// Typed view of the options above.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub public_endpoint: Option<String>,
    pub max_request_body_size: usize,
    pub list_limit: Option<usize>,
    pub insecure_debug: bool,
    pub database_url: String,
    pub password_hash_rounds: u32,
    pub max_password_length: usize,
    pub token_expiration: i64,
    pub token_cache_size: usize,
    pub fernet_key_repository: PathBuf,
    pub fernet_max_active_keys: usize,
    pub credential_key_repository: PathBuf,
    pub auth_methods: Vec<String>,
    pub lockout_failure_attempts: i32,
    pub lockout_duration: i64,
    pub unique_last_password_count: u64,
    pub minimum_password_age_days: i64,
    pub password_expires_days: i64,
    pub password_regex: Option<String>,
    pub password_regex_description: Option<String>,
    pub change_password_upon_first_use: bool,
    pub app_cred_user_limit: i64,
    pub admin_project_name: String,
    pub admin_project_domain_name: String,
    pub policy_file: PathBuf,
    pub enforce_scope: bool,
}

impl IdentityConfig {
    /// Read the identity options; `database_template` is `[database] connection`.
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let opt_str = |s: &str, n: &str| -> Result<Option<String>, ConfigError> {
            c.get::<Option<String>>(s, n)
        };
        let list_limit = match c.get::<Option<usize>>("identity", "list_limit")? {
            Some(l) => Some(l),
            None => c.get::<Option<usize>>("DEFAULT", "list_limit")?,
        };
        let database_url = match opt_str("identity", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "identity"),
        };
        Ok(Self {
            public_endpoint: opt_str("DEFAULT", "public_endpoint")?
                .map(|s| s.trim_end_matches('/').to_string()),
            max_request_body_size: c.get("DEFAULT", "max_request_body_size")?,
            list_limit,
            insecure_debug: c.get("DEFAULT", "insecure_debug")?,
            database_url,
            password_hash_rounds: c.get("identity", "password_hash_rounds")?,
            max_password_length: c.get("identity", "max_password_length")?,
            token_expiration: c.get("token", "expiration")?,
            token_cache_size: c.get("token", "cache_size")?,
            fernet_key_repository: c.get_str("fernet_tokens", "key_repository")?.into(),
            fernet_max_active_keys: c.get("fernet_tokens", "max_active_keys")?,
            credential_key_repository: c.get_str("credential", "key_repository")?.into(),
            auth_methods: c.get("auth", "methods")?,
            lockout_failure_attempts: c.get("security_compliance", "lockout_failure_attempts")?,
            lockout_duration: c.get("security_compliance", "lockout_duration")?,
            unique_last_password_count: c
                .get("security_compliance", "unique_last_password_count")?,
            minimum_password_age_days: c.get("security_compliance", "minimum_password_age")?,
            password_expires_days: c.get("security_compliance", "password_expires_days")?,
            password_regex: opt_str("security_compliance", "password_regex")?,
            password_regex_description: opt_str(
                "security_compliance",
                "password_regex_description",
            )?,
            change_password_upon_first_use: c
                .get("security_compliance", "change_password_upon_first_use")?,
            app_cred_user_limit: c.get("application_credential", "user_limit")?,
            admin_project_name: c.get("resource", "admin_project_name")?,
            admin_project_domain_name: c.get("resource", "admin_project_domain_name")?,
            policy_file: c.get_str("oslo_policy", "policy_file")?.into(),
            enforce_scope: c.get("oslo_policy", "enforce_scope")?,
        })
    }

    /// Defaults, rooted at `state_dir` (tests and tools).
    pub fn defaults(state_dir: &std::path::Path) -> Self {
        let mut c = Config::new(state_dir);
        c.declare(OPTS);
        let template = format!("sqlite://{}/db/$service.sqlite", state_dir.display());
        // Every default above parses; a failure here is a bug caught by the unit test.
        match Self::from_config(&c, &template) {
            Ok(cfg) => cfg,
            Err(e) => panic!("identity option defaults do not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_parse() {
        let d = tempfile::tempdir().unwrap();
        let c = super::IdentityConfig::defaults(d.path());
        assert_eq!(c.password_hash_rounds, 12);
        assert!(c.database_url.ends_with("/db/identity.sqlite"));
        assert_eq!(c.auth_methods.len(), 7);
    }
}
