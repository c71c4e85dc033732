//! Registered defaults + operator overrides -> a validated, compiled rule table.

use super::check::{Env, Node};
use super::credentials::{Credentials, ScopeType};
use super::parser::parse;
use super::{PolicyError, PolicyLoadError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Name of the rule unregistered actions fall back to (oslo's `policy_default_rule`).
pub const DEFAULT_RULE: &str = "default";

/// A rule a service registers: its name, default check string and intended scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDefault {
    pub name: String,
    pub check: String,
    /// Empty: any scope (including unscoped) may reach the check.
    pub scope_types: Vec<ScopeType>,
    pub description: String,
}

impl RuleDefault {
    pub fn new(name: impl Into<String>, check: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            check: check.into(),
            scope_types: Vec::new(),
            description: String::new(),
        }
    }

    pub fn scope_types(mut self, scopes: &[ScopeType]) -> Self {
        self.scope_types = scopes.to_vec();
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsDocument {
    rules: serde_yaml::Mapping,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DefaultEntry {
    Check(String),
    Full(FullEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullEntry {
    check: String,
    #[serde(default)]
    scope_types: Vec<ScopeType>,
    #[serde(default)]
    description: String,
}

/// Parse a service's defaults document: `rules: {NAME: {check, scope_types,
/// description}}` (or `NAME: "check"`), keeping the document's order.
pub fn load_defaults(yaml: &str) -> Result<Vec<RuleDefault>, PolicyLoadError> {
    let doc: DefaultsDocument =
        serde_yaml::from_str(yaml).map_err(|e| PolicyLoadError::Document(e.to_string()))?;
    doc.rules
        .into_iter()
        .map(|(k, v)| {
            let name = k
                .as_str()
                .ok_or_else(|| {
                    PolicyLoadError::Document(format!("rule name {k:?} is not a string"))
                })?
                .to_string();
            let entry: DefaultEntry =
                serde_yaml::from_value(v).map_err(|e| PolicyLoadError::InvalidEntry {
                    rule: name.clone(),
                    message: e.to_string(),
                })?;
            Ok(match entry {
                DefaultEntry::Check(check) => RuleDefault::new(name, check),
                DefaultEntry::Full(f) => RuleDefault {
                    name,
                    check: f.check,
                    scope_types: f.scope_types,
                    description: f.description,
                },
            })
        })
        .collect()
}

/// Parse an operator's `policy.yaml` (or `policy.json`): rule name -> check string.
/// Like oslo, an empty value means "always", and the old list-of-lists syntax
/// (outer list OR, inner list AND) is accepted.
pub fn load_overrides(text: &str) -> Result<Vec<(String, String)>, PolicyLoadError> {
    let doc: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| PolicyLoadError::Document(e.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(|e| PolicyLoadError::Document(e.to_string()))?
    };
    let map = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        _ => {
            return Err(PolicyLoadError::Document(
                "a policy file must be a mapping of rule names to check strings".into(),
            ));
        }
    };
    map.into_iter()
        .map(|(name, v)| {
            let check = match v {
                Value::Null => String::new(),
                Value::String(s) => s,
                Value::Array(items) => list_rule_to_text(&name, &items)?,
                other => {
                    return Err(PolicyLoadError::InvalidEntry {
                        rule: name,
                        message: format!("expected a check string, got {other}"),
                    });
                }
            };
            Ok((name, check))
        })
        .collect()
}

/// Rewrite the deprecated list syntax as an equivalent check string.
fn list_rule_to_text(name: &str, items: &[Value]) -> Result<String, PolicyLoadError> {
    if items.is_empty() {
        return Ok("@".into());
    }
    let bad = || PolicyLoadError::InvalidEntry {
        rule: name.to_string(),
        message: "list rules must hold strings or lists of strings".into(),
    };
    let mut alternatives = Vec::new();
    for item in items {
        let checks: Vec<&str> = match item {
            Value::String(s) => vec![s.as_str()],
            Value::Array(inner) => inner
                .iter()
                .map(|c| c.as_str().ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        };
        if !checks.is_empty() {
            alternatives.push(format!("({})", checks.join(" and ")));
        }
    }
    Ok(if alternatives.is_empty() {
        "!".into()
    } else {
        alternatives.join(" or ")
    })
}

/// Builds an [`Enforcer`]; see [`Enforcer::builder`].
#[derive(Debug, Clone)]
pub struct EnforcerBuilder {
    defaults: Vec<RuleDefault>,
    overrides: Vec<(String, String)>,
    enforce_scope: bool,
}

impl EnforcerBuilder {
    pub fn defaults(mut self, defaults: impl IntoIterator<Item = RuleDefault>) -> Self {
        self.defaults.extend(defaults);
        self
    }

    /// Add the defaults from a YAML document (see [`load_defaults`]).
    pub fn defaults_yaml(self, yaml: &str) -> Result<Self, PolicyLoadError> {
        Ok(self.defaults(load_defaults(yaml)?))
    }

    /// Operator overrides; later entries win. Names that are not registered
    /// defaults become extra rules (usable through `rule:NAME`), as in oslo.
    pub fn overrides(mut self, overrides: impl IntoIterator<Item = (String, String)>) -> Self {
        self.overrides.extend(overrides);
        self
    }

    /// Add overrides from the text of a `policy.yaml`/`policy.json`.
    pub fn overrides_file(self, text: &str) -> Result<Self, PolicyLoadError> {
        Ok(self.overrides(load_overrides(text)?))
    }

    /// Deny actions whose scope_types exclude the token's scope (default: on).
    pub fn enforce_scope(mut self, on: bool) -> Self {
        self.enforce_scope = on;
        self
    }

    pub fn build(self) -> Result<Enforcer, PolicyLoadError> {
        let mut index: HashMap<Box<str>, usize> = HashMap::new();
        let mut meta: Vec<RuleMeta> = Vec::new();
        for d in self.defaults {
            if index.contains_key(d.name.as_str()) {
                return Err(PolicyLoadError::DuplicateDefault { rule: d.name });
            }
            index.insert(d.name.as_str().into(), meta.len());
            meta.push(RuleMeta {
                name: d.name,
                check: d.check.clone(),
                default: Some(RegisteredDefault {
                    check: d.check,
                    scope_types: d.scope_types,
                    description: d.description,
                }),
            });
        }
        for (name, check) in self.overrides {
            match index.get(name.as_str()) {
                Some(&i) => {
                    if let Some(m) = meta.get_mut(i) {
                        m.check = check;
                    }
                }
                None => {
                    index.insert(name.as_str().into(), meta.len());
                    meta.push(RuleMeta {
                        name,
                        check,
                        default: None,
                    });
                }
            }
        }

        let mut nodes = meta
            .iter()
            .map(|m| {
                parse(&m.check).map_err(|source| PolicyLoadError::Parse {
                    rule: m.name.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<Node>, _>>()?;

        // Resolve `rule:` references to slots; any unknown name is a load error.
        let mut edges: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
        for (node, m) in nodes.iter_mut().zip(&meta) {
            let mut out = Vec::new();
            let mut missing = None;
            node.for_each_rule_mut(&mut |name, slot| match index.get(name) {
                Some(&i) => {
                    *slot = i;
                    out.push(i);
                }
                None => {
                    missing.get_or_insert_with(|| name.to_string());
                }
            });
            if let Some(reference) = missing {
                return Err(PolicyLoadError::UnknownRule {
                    rule: m.name.clone(),
                    reference,
                });
            }
            edges.push(out);
        }
        if let Some(cycle) = find_cycle(&edges) {
            let names: Vec<String> = cycle
                .iter()
                .filter_map(|&i| meta.get(i).map(|m| m.name.clone()))
                .collect();
            return Err(PolicyLoadError::Cycle {
                rule: names.first().cloned().unwrap_or_default(),
                cycle: names,
            });
        }

        let default_slot = index.get(DEFAULT_RULE).copied();
        Ok(Enforcer {
            nodes,
            meta,
            index,
            default_slot,
            enforce_scope: self.enforce_scope,
        })
    }
}

/// Depth-first search; returns the rules on the first cycle found, closed
/// (first == last), in a deterministic order.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[n] = Mark::OnPath;
        path.push(n);
        for &next in edges.get(n).map(Vec::as_slice).unwrap_or_default() {
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|&p| p == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, edges, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut path = Vec::new();
    (0..edges.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, edges, &mut marks, &mut path)
        } else {
            None
        }
    })
}

#[derive(Debug, Clone)]
struct RegisteredDefault {
    check: String,
    scope_types: Vec<ScopeType>,
    description: String,
}

#[derive(Debug, Clone)]
struct RuleMeta {
    name: String,
    /// Effective check string (the override if there is one).
    check: String,
    default: Option<RegisteredDefault>,
}

/// A service's compiled policy. Immutable and cheap to share (`Arc<Enforcer>`);
/// reloading means building a new one.
#[derive(Debug, Clone)]
pub struct Enforcer {
    /// Compiled checks, indexed by slot; parallel to `meta`.
    nodes: Vec<Node>,
    meta: Vec<RuleMeta>,
    index: HashMap<Box<str>, usize>,
    default_slot: Option<usize>,
    enforce_scope: bool,
}

impl Enforcer {
    pub fn builder() -> EnforcerBuilder {
        EnforcerBuilder {
            defaults: Vec::new(),
            overrides: Vec::new(),
            enforce_scope: true,
        }
    }

    /// Decide whether `creds` may perform `action` on `target`.
    ///
    /// `target` is what the rule's `%(...)s` substitutions read, nested JSON or
    /// keystone's flattened dotted keys. Unregistered actions use the `default`
    /// rule, or are denied when there is none.
    pub fn authorize(
        &self,
        action: &str,
        target: &Value,
        creds: &Credentials,
    ) -> Result<(), PolicyError> {
        let (slot, registered) = match self.index.get(action) {
            Some(&slot) => (slot, true),
            None => match self.default_slot {
                Some(slot) => (slot, false),
                None => {
                    return Err(PolicyError::Denied {
                        action: action.into(),
                    });
                }
            },
        };
        if self.enforce_scope && registered {
            let required = self
                .meta
                .get(slot)
                .and_then(|m| m.default.as_ref())
                .map(|d| d.scope_types.as_slice())
                .unwrap_or_default();
            let actual = creds.scope();
            // oslo.policy counts a token with no scope as project-scoped.
            let effective = actual.unwrap_or(ScopeType::Project);
            if !required.is_empty() && !required.contains(&effective) {
                return Err(PolicyError::InvalidScope {
                    action: action.into(),
                    required: required.to_vec(),
                    actual,
                });
            }
        }
        let env = Env {
            target,
            creds,
            rules: &self.nodes,
        };
        if self.nodes.get(slot).is_some_and(|n| n.eval(&env)) {
            Ok(())
        } else {
            tracing::debug!(action, "policy denied");
            Err(PolicyError::Denied {
                action: action.into(),
            })
        }
    }

    /// [`authorize`](Self::authorize) as a bool, for filtering lists.
    pub fn check(&self, action: &str, target: &Value, creds: &Credentials) -> bool {
        self.authorize(action, target, creds).is_ok()
    }

    /// Whether `action` is a registered default (services reject unknown actions as
    /// programming errors, as keystone does).
    pub fn is_registered(&self, action: &str) -> bool {
        self.index
            .get(action)
            .and_then(|&i| self.meta.get(i))
            .is_some_and(|m| m.default.is_some())
    }

    /// The effective policy (defaults merged with overrides) as a YAML document an
    /// operator can copy into `policy.yaml`: registered rules in registration order,
    /// then operator-only rules.
    pub fn render_yaml(&self) -> String {
        let mut out = String::from(
            "# Effective policy: registered defaults merged with operator overrides.\n",
        );
        for m in &self.meta {
            out.push('\n');
            match &m.default {
                Some(d) => {
                    for line in d.description.lines().filter(|l| !l.trim().is_empty()) {
                        out.push_str("# ");
                        out.push_str(line.trim_end());
                        out.push('\n');
                    }
                    if !d.scope_types.is_empty() {
                        let scopes: Vec<&str> = d.scope_types.iter().map(|s| s.as_str()).collect();
                        out.push_str("# Intended scope(s): ");
                        out.push_str(&scopes.join(", "));
                        out.push('\n');
                    }
                    if d.check != m.check {
                        out.push_str("# Overridden; default: ");
                        out.push_str(&yaml_quote(&d.check));
                        out.push('\n');
                    }
                }
                None => out.push_str("# Operator-defined rule (no registered default).\n"),
            }
            out.push_str(&yaml_quote(&m.name));
            out.push_str(": ");
            out.push_str(&yaml_quote(&m.check));
            out.push('\n');
        }
        out
    }
}

/// A JSON string literal is a valid YAML double-quoted scalar.
fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}
