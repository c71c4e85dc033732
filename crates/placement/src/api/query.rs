//! Query strings: multi-valued parameters in order, and upstream's parsers for `resources`,
//! `required`, `member_of` and `in_tree`, with their messages.

use std::collections::{BTreeMap, BTreeSet};

use common::microversion::Version;
use serde_json::{Map, Value};

use super::schema::is_uuid_like;
use crate::error::ApiError;

/// A query string's parameters, in order, repeated keys kept.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` (webob's `req.GET[key]`).
    pub fn last(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The object upstream validates query strings as: each key's last value.
    pub fn as_object(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.0 {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }
}

fn v(minor: u16) -> Version {
    Version::new(1, minor)
}

/// `VCPU:2,MEMORY_MB:1024` -> amounts by class.
pub fn resources(qs: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    if qs.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: empty string.",
        ));
    }
    let mut out = BTreeMap::new();
    for rt in qs.split(',') {
        let parts: Vec<&str> = rt.split(':').collect();
        let [name, amount] = parts.as_slice() else {
            return Err(ApiError::bad_request(format!(
                "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {rt}."
            )));
        };
        let amount: i64 = python_int(amount).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Requested resource {name} expected positive integer amount. Got: {amount}."
            ))
        })?;
        if amount < 1 {
            return Err(ApiError::bad_request(format!(
                "Requested resource {name} requires amount >= 1. Got: {amount}."
            )));
        }
        out.insert((*name).to_string(), amount);
    }
    Ok(out)
}

/// Python's `int()` of a string: surrounding whitespace and a sign allowed.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim().replace('_', "");
    t.parse().ok()
}

/// One `required` value: AND of ORs of required traits, and forbidden traits.
pub type Traits = (Vec<BTreeSet<String>>, BTreeSet<String>);

pub fn traits_value(val: &str, allow_forbidden: bool, allow_any: bool) -> Result<Traits, ApiError> {
    if let Some(rest) = val.strip_prefix("in:") {
        if !allow_any {
            return Err(ApiError::bad_request(format!(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39. Got: {val}"
            )));
        }
        let any: BTreeSet<String> = rest.split(',').map(|s| s.trim().to_string()).collect();
        if any.iter().any(String::is_empty) {
            return Err(ApiError::bad_request(format!(
                "Invalid query string parameters: Expected 'required' parameter value of the form: in:HW_CPU_X86_VMX,CUSTOM_MAGIC. Got an empty trait in: {val}"
            )));
        }
        if any.iter().any(|t| t.starts_with('!')) {
            return Err(ApiError::bad_request(format!(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' does not support forbidden traits. Got: {val}"
            )));
        }
        return Ok((vec![any], BTreeSet::new()));
    }
    let all: Vec<String> = val.split(',').map(|s| s.trim().to_string()).collect();
    // Any number of leading '!' is one (upstream keeps this quirk).
    let forbidden: BTreeSet<String> = all
        .iter()
        .filter(|t| t.starts_with('!'))
        .map(|t| t.trim_start_matches('!').to_string())
        .collect();
    if all.iter().chain(forbidden.iter()).any(String::is_empty) {
        let form = if allow_forbidden {
            "HW_CPU_X86_VMX,!CUSTOM_MAGIC"
        } else {
            "HW_CPU_X86_VMX,CUSTOM_MAGIC"
        };
        return Err(ApiError::bad_request(format!(
            "Invalid query string parameters: Expected 'required' parameter value of the form: {form}. Got an empty trait in: {val}"
        )));
    }
    if !forbidden.is_empty() && !allow_forbidden {
        return Err(ApiError::bad_request(format!(
            "Invalid query string parameters: Expected 'required' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {val}"
        )));
    }
    let required = all
        .into_iter()
        .filter(|t| !t.starts_with('!'))
        .map(|t| BTreeSet::from([t]))
        .collect();
    Ok((required, forbidden))
}

/// All `required{suffix}` values (only the last before 1.39), combined.
pub fn traits_params(q: &Query, suffix: &str, mv: Version) -> Result<Traits, ApiError> {
    let allow_forbidden = mv >= v(22);
    let allow_any = mv >= v(39);
    let key = format!("required{suffix}");
    let mut values = q.all(&key);
    if !allow_any && values.len() > 1 {
        values = values.split_off(values.len() - 1);
    }
    let mut required = Vec::new();
    let mut forbidden = BTreeSet::new();
    for val in values {
        let (r, f) = traits_value(val, allow_forbidden, allow_any)?;
        required.extend(r);
        forbidden.extend(f);
    }
    Ok((required, forbidden))
}

/// One `member_of` value: required (any of) and forbidden aggregates.
pub fn member_of_value(value: &str) -> Result<(BTreeSet<String>, BTreeSet<String>), ApiError> {
    if value.contains(',') && !(value.starts_with("in:") || value.starts_with("!in:")) {
        return Err(ApiError::bad_request(format!(
            "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' keyword using the valid microversion. Got: {value}"
        )));
    }
    let split = |s: &str| s.split(',').map(str::to_string).collect::<BTreeSet<_>>();
    let (required, forbidden) = if let Some(r) = value.strip_prefix("!in:") {
        (BTreeSet::new(), split(r))
    } else if let Some(r) = value.strip_prefix('!') {
        (BTreeSet::new(), BTreeSet::from([r.to_string()]))
    } else if let Some(r) = value.strip_prefix("in:") {
        (split(r), BTreeSet::new())
    } else {
        (BTreeSet::from([value.to_string()]), BTreeSet::new())
    };
    for a in required.iter().chain(&forbidden) {
        if !is_uuid_like(a) {
            return Err(ApiError::bad_request(format!(
                "Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). Got: {a}"
            )));
        }
    }
    Ok((required, forbidden))
}

/// All `member_of{suffix}` values: AND of ORs, and the forbidden ones.
pub fn member_of_params(
    q: &Query,
    suffix: &str,
    mv: Version,
) -> Result<(Vec<BTreeSet<String>>, BTreeSet<String>), ApiError> {
    let key = format!("member_of{suffix}");
    let values = q.all(&key);
    if mv < v(24) && values.len() > 1 {
        return Err(ApiError::bad_request(format!(
            "Multiple member_of{suffix} parameters are not supported"
        )));
    }
    let mut required = Vec::new();
    let mut forbidden = BTreeSet::new();
    for value in values {
        let (r, f) = member_of_value(value)?;
        if !r.is_empty() {
            required.push(r);
        }
        if !f.is_empty() {
            if mv < v(32) {
                return Err(ApiError::bad_request(format!(
                    "Forbidden member_of{suffix} parameters are not supported in the specified microversion"
                )));
            }
            forbidden.extend(f);
        }
    }
    Ok((required, forbidden))
}

pub fn in_tree_value(value: &str) -> Result<String, ApiError> {
    let t = value.trim();
    if !is_uuid_like(t) {
        return Err(ApiError::bad_request(format!(
            "Invalid query string parameters: Expected 'in_tree' parameter to be a format of uuid. Got: {value}"
        )));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse() {
        let r = resources("VCPU:2,MEMORY_MB:1024").unwrap();
        assert_eq!(r["VCPU"], 2);
        assert!(resources("VCPU").is_err());
        assert!(
            resources("VCPU:0")
                .unwrap_err()
                .detail
                .contains("requires amount >= 1")
        );
        assert!(
            resources("VCPU:x")
                .unwrap_err()
                .detail
                .contains("expected positive integer")
        );
        assert!(resources(" ").is_err());
    }

    #[test]
    fn traits_parse() {
        let (req, forb) = traits_value("A,!B,!!C", true, false).unwrap();
        assert_eq!(req, vec![BTreeSet::from(["A".to_string()])]);
        assert_eq!(forb, BTreeSet::from(["B".to_string(), "C".to_string()]));
        assert!(traits_value("A,!B", false, false).is_err());
        assert!(traits_value("in:A,B", true, false).is_err());
        let (req, _) = traits_value("in:A,B", true, true).unwrap();
        assert_eq!(req[0].len(), 2);
        assert!(traits_value("A,,B", true, true).is_err());
        let q = Query::parse(Some("required=A&required=B"));
        let (req, _) = traits_params(&q, "", Version::new(1, 38)).unwrap();
        assert_eq!(req, vec![BTreeSet::from(["B".to_string()])]);
        let (req, _) = traits_params(&q, "", Version::new(1, 39)).unwrap();
        assert_eq!(req.len(), 2);
    }

    #[test]
    fn member_of_parse() {
        let a = "d04f0480-2f8e-4383-bbe5-692d21dc55a9";
        let b = "d7131c0c-c60a-4915-92ca-9978f9e62012";
        assert!(member_of_value(&format!("{a},{b}")).is_err());
        let (r, f) = member_of_value(&format!("in:{a},{b}")).unwrap();
        assert_eq!((r.len(), f.len()), (2, 0));
        let (r, f) = member_of_value(&format!("!{a}")).unwrap();
        assert_eq!((r.len(), f.len()), (0, 1));
        assert!(member_of_value("in:nope").is_err());
        let q = Query::parse(Some(&format!("member_of={a}&member_of=!{b}")));
        assert!(member_of_params(&q, "", Version::new(1, 31)).is_err());
        assert!(member_of_params(&q, "", Version::new(1, 32)).is_ok());
    }
}
