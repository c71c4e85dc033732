//! The placement service's options. Names follow upstream placement's `[placement]` and
//! `[placement_database]` sections so operators find them; the policy options live in
//! `[placement]` because kumo's one config file already has identity's `[oslo_policy]`.

use common::config::{Config, ConfigError, Opt};
use std::path::PathBuf;

pub static OPTS: &[Opt] = &[
    Opt {
        section: "placement_database",
        name: "connection",
        default: "",
        help: "Database URL of the placement service. Empty: [database] connection with $service = placement.",
    },
    Opt {
        section: "placement",
        name: "incomplete_consumer_project_id",
        default: "00000000-0000-0000-0000-000000000000",
        help: "Project recorded for allocations written with a microversion before 1.8 (which sends no project).",
    },
    Opt {
        section: "placement",
        name: "incomplete_consumer_user_id",
        default: "00000000-0000-0000-0000-000000000000",
        help: "User recorded for allocations written with a microversion before 1.8 (which sends no user).",
    },
    Opt {
        section: "placement",
        name: "allocation_conflict_retry_count",
        default: "10",
        help: "Times an allocation write is retried when a provider's generation moved underneath it.",
    },
    Opt {
        section: "placement",
        name: "max_allocation_candidates",
        default: "-1",
        help: "Most allocation candidates computed before `limit` applies. -1: no cap.",
    },
    Opt {
        section: "placement",
        name: "allocation_candidates_generation_strategy",
        default: "depth-first",
        help: "Order candidates are generated in across provider trees when max_allocation_candidates caps them: depth-first or breadth-first.",
    },
    Opt {
        section: "placement",
        name: "randomize_allocation_candidates",
        default: "false",
        help: "Shuffle allocation candidates (and pick `limit` of them at random) instead of returning them in provider order.",
    },
    Opt {
        section: "placement",
        name: "max_request_body_size",
        default: "8388608",
        help: "Largest request body the placement API accepts, in bytes (413 above).",
    },
    Opt {
        section: "placement",
        name: "policy_file",
        default: "$state_dir/placement-policy.yaml",
        help: "Operator overrides of placement's policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "placement",
        name: "enforce_scope",
        default: "true",
        help: "Deny placement calls made with a token whose scope the policy does not list.",
    },
];

/// How candidates are generated across anchor trees (upstream's option of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationStrategy {
    DepthFirst,
    BreadthFirst,
}

/// Typed view of the options above.
#[derive(Debug, Clone)]
pub struct PlacementConfig {
    pub database_url: String,
    pub incomplete_consumer_project_id: String,
    pub incomplete_consumer_user_id: String,
    pub allocation_conflict_retry_count: u32,
    pub max_allocation_candidates: i64,
    pub generation_strategy: GenerationStrategy,
    pub randomize_allocation_candidates: bool,
    pub max_request_body_size: usize,
    pub policy_file: PathBuf,
    pub enforce_scope: bool,
}

impl PlacementConfig {
    /// Read the placement options; `database_template` is `[database] connection`.
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let database_url = match c.get::<Option<String>>("placement_database", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "placement"),
        };
        let strategy: String = c.get("placement", "allocation_candidates_generation_strategy")?;
        let generation_strategy = match strategy.as_str() {
            "depth-first" => GenerationStrategy::DepthFirst,
            "breadth-first" => GenerationStrategy::BreadthFirst,
            other => {
                return Err(ConfigError::Invalid {
                    section: "placement".into(),
                    name: "allocation_candidates_generation_strategy".into(),
                    value: other.into(),
                    expected: "depth-first or breadth-first",
                });
            }
        };
        Ok(Self {
            database_url,
            incomplete_consumer_project_id: c.get("placement", "incomplete_consumer_project_id")?,
            incomplete_consumer_user_id: c.get("placement", "incomplete_consumer_user_id")?,
            allocation_conflict_retry_count: c
                .get("placement", "allocation_conflict_retry_count")?,
            max_allocation_candidates: c.get("placement", "max_allocation_candidates")?,
            generation_strategy,
            randomize_allocation_candidates: c
                .get("placement", "randomize_allocation_candidates")?,
            max_request_body_size: c.get("placement", "max_request_body_size")?,
            policy_file: c.get_str("placement", "policy_file")?.into(),
            enforce_scope: c.get("placement", "enforce_scope")?,
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
            Err(e) => panic!("placement option defaults do not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_parse() {
        let d = tempfile::tempdir().unwrap();
        let c = super::PlacementConfig::defaults(d.path());
        assert!(c.database_url.ends_with("/db/placement.sqlite"));
        assert_eq!(c.allocation_conflict_retry_count, 10);
        assert_eq!(c.max_allocation_candidates, -1);
        assert_eq!(c.generation_strategy, super::GenerationStrategy::DepthFirst);
    }
}
