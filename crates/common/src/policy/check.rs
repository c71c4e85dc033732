//! The check tree a rule string compiles to, and its evaluation.

use super::credentials::{CredKey, Credentials};
use serde_json::{Map, Value};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Always,
    Never,
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `rule:NAME`; `slot` indexes the enforcer's rule table once resolved.
    Rule {
        name: Box<str>,
        slot: usize,
    },
    /// `role:NAME`, compared case-insensitively.
    Role(Template),
    /// `KEY:MATCH`.
    Generic {
        left: Left,
        right: Template,
    },
    /// `http:`/`https:` remote checks, which kumo does not make.
    Remote(Box<str>),
}

/// Left side of a generic check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Left {
    /// A Python literal, already in its `str()` form.
    Literal(Box<str>),
    Cred(CredKey),
}

/// Right side of a check: text with `%(dotted.key)s` substitutions from the target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Template {
    Literal(Box<str>),
    /// The whole match is one substitution: the common case, compared without
    /// allocating when the target value is a string.
    Var(Box<str>),
    Mixed(Box<[Segment]>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Text(Box<str>),
    Var(Box<str>),
}

impl Template {
    /// Parse the `%(name)s` / `%%` subset of Python %-formatting. Anything else that
    /// starts with `%` would make oslo raise at enforcement time, so refuse it here.
    pub(crate) fn parse(s: &str) -> Result<Self, (usize, String)> {
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while let Some(rel) = s.get(i..).and_then(|r| r.find('%')) {
            let at = i + rel;
            text.push_str(s.get(i..at).unwrap_or_default());
            match s.as_bytes().get(at + 1) {
                Some(b'%') => {
                    text.push('%');
                    i = at + 2;
                }
                Some(b'(') => {
                    let name_start = at + 2;
                    let close = s
                        .get(name_start..)
                        .and_then(|r| r.find(')'))
                        .ok_or_else(|| (at, "unclosed '%(' substitution".to_string()))?;
                    let name = s.get(name_start..name_start + close).unwrap_or_default();
                    let after = name_start + close + 1;
                    if s.as_bytes().get(after) != Some(&b's') {
                        return Err((at, "only '%(name)s' substitutions are supported".into()));
                    }
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text).into()));
                    }
                    segments.push(Segment::Var(name.into()));
                    i = after + 1;
                }
                _ => return Err((at, "a literal '%' must be written '%%'".into())),
            }
        }
        text.push_str(s.get(i..).unwrap_or_default());
        if !text.is_empty() {
            segments.push(Segment::Text(text.into()));
        }
        Ok(match segments.len() {
            0 => Template::Literal("".into()),
            1 => match segments.pop() {
                Some(Segment::Var(v)) => Template::Var(v),
                Some(Segment::Text(t)) => Template::Literal(t),
                None => Template::Literal("".into()),
            },
            _ => Template::Mixed(segments.into()),
        })
    }

    /// `match % target`: `None` where oslo would hit a KeyError (the check fails).
    fn resolve<'a>(&'a self, target: &'a Value) -> Option<Cow<'a, str>> {
        match self {
            Template::Literal(s) => Some(Cow::Borrowed(s)),
            Template::Var(path) => lookup(target, path).map(py_str),
            Template::Mixed(segments) => {
                let mut out = String::new();
                for seg in segments {
                    match seg {
                        Segment::Text(t) => out.push_str(t),
                        Segment::Var(path) => out.push_str(&py_str(lookup(target, path)?)),
                    }
                }
                Some(Cow::Owned(out))
            }
        }
    }
}

pub(crate) struct Env<'a> {
    pub target: &'a Value,
    pub creds: &'a Credentials,
    pub rules: &'a [Node],
}

impl Node {
    pub(crate) fn eval(&self, env: &Env<'_>) -> bool {
        match self {
            Node::Always => true,
            Node::Never => false,
            Node::And(items) => items.iter().all(|n| n.eval(env)),
            Node::Or(items) => items.iter().any(|n| n.eval(env)),
            Node::Not(inner) => !inner.eval(env),
            // Slots are resolved and acyclic after load, so recursion terminates.
            Node::Rule { slot, .. } => env.rules.get(*slot).is_some_and(|n| n.eval(env)),
            Node::Role(t) => t
                .resolve(env.target)
                .is_some_and(|m| env.creds.roles.iter().any(|r| eq_ignore_case(r, &m))),
            Node::Generic { left, right } => {
                let Some(m) = right.resolve(env.target) else {
                    return false;
                };
                match left {
                    Left::Literal(l) => **l == *m,
                    Left::Cred(key) => env.creds.matches(key, &m),
                }
            }
            Node::Remote(check) => {
                tracing::warn!(check = %check, "http/https policy checks are not supported; treating as false");
                false
            }
        }
    }

    /// Every `rule:` reference, for load-time validation.
    pub(crate) fn for_each_rule_mut(&mut self, f: &mut impl FnMut(&str, &mut usize)) {
        match self {
            Node::And(items) | Node::Or(items) => {
                for n in items.iter_mut() {
                    n.for_each_rule_mut(f);
                }
            }
            Node::Not(inner) => inner.for_each_rule_mut(f),
            Node::Rule { name, slot } => f(name, slot),
            _ => {}
        }
    }
}

/// Python's `str.lower()` comparison, without allocating for ASCII names.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Find a dotted key in the target. Keystone hands oslo a flattened dict
/// (`"target.project.id"` as one key); services here may pass nested JSON instead,
/// so both spellings (and mixes) resolve.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    for (i, _) in path.match_indices('.') {
        let (Some(head), Some(rest)) = (path.get(..i), path.get(i + 1..)) else {
            continue;
        };
        if let Some(found) = map.get(head).and_then(|child| lookup(child, rest)) {
            return Some(found);
        }
    }
    None
}

/// oslo's `_find_in_dict` over service-specific credential values: walk the dotted
/// path, fanning out over lists, and compare the leaf's `str()` with `m`.
pub(crate) fn find_in_map(map: &Map<String, Value>, path: &str, m: &str) -> bool {
    if map.get(path).is_some_and(|v| descend(v, "", m)) {
        return true;
    }
    path.match_indices('.')
        .any(|(i, _)| match (path.get(..i), path.get(i + 1..)) {
            (Some(head), Some(rest)) => map.get(head).is_some_and(|v| descend(v, rest, m)),
            _ => false,
        })
}

fn descend(v: &Value, rest: &str, m: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|item| leaf_or_map(item, rest, m)),
        _ => leaf_or_map(v, rest, m),
    }
}

fn leaf_or_map(v: &Value, rest: &str, m: &str) -> bool {
    if rest.is_empty() {
        py_str(v) == m
    } else {
        v.as_object().is_some_and(|o| find_in_map(o, rest, m))
    }
}

/// Python's `str()` of a JSON value, since oslo compares `str(value)` with the match
/// (so `null` is `"None"` and `true` is `"True"`, which default rules rely on).
pub(crate) fn py_str(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => {
            let mut out = String::new();
            py_repr(other, &mut out);
            Cow::Owned(out)
        }
    }
}

fn py_repr(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&py_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => py_str_repr(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_str_repr(k, out);
                out.push_str(": ");
                py_repr(item, out);
            }
            out.push('}');
        }
    }
}

fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_forms() {
        assert_eq!(
            Template::parse("abc").ok(),
            Some(Template::Literal("abc".into()))
        );
        assert_eq!(
            Template::parse("%(a.b)s").ok(),
            Some(Template::Var("a.b".into()))
        );
        assert_eq!(
            Template::parse("x-%(a)s-100%%").ok(),
            Some(Template::Mixed(
                vec![
                    Segment::Text("x-".into()),
                    Segment::Var("a".into()),
                    Segment::Text("-100%".into()),
                ]
                .into()
            ))
        );
        assert!(Template::parse("%(a)d").is_err());
        assert!(Template::parse("%(a").is_err());
        assert_eq!(Template::parse("ab%").err().map(|e| e.0), Some(2));
    }

    #[test]
    fn lookup_flat_nested_and_mixed() {
        let flat = json!({"target.project.id": "p1"});
        let nested = json!({"target": {"project": {"id": "p1"}}});
        let mixed = json!({"target.project": {"id": "p1"}});
        for t in [&flat, &nested, &mixed] {
            assert_eq!(lookup(t, "target.project.id"), Some(&json!("p1")));
            assert_eq!(lookup(t, "target.project.name"), None);
        }
        assert_eq!(lookup(&json!({"a": "x"}), "a.b"), None);
    }

    #[test]
    fn python_str_rendering() {
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(3)), "3");
        assert_eq!(py_str(&json!(1.0)), "1.0");
        assert_eq!(py_str(&json!(2.5)), "2.5");
        assert_eq!(py_str(&json!(["a", 1])), "['a', 1]");
        assert_eq!(py_str(&json!({"k": "it's"})), "{'k': \"it's\"}");
    }

    #[test]
    fn find_in_map_fans_out_over_lists() {
        let creds = json!({"token": {"roles": [{"name": "a"}, {"name": "b"}]}, "tags": ["x", "y"]});
        let map = creds.as_object().cloned().unwrap_or_default();
        assert!(find_in_map(&map, "token.roles.name", "b"));
        assert!(!find_in_map(&map, "token.roles.name", "c"));
        assert!(find_in_map(&map, "tags", "y"));
        assert!(!find_in_map(&map, "missing", "y"));
    }
}
