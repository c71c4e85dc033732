//! Neutron's list semantics over rendered resources: filters on any attribute (a repeated
//! key means any of the values), `fields`, `sort_key`/`sort_dir`, and `limit`/`marker`/
//! `page_reverse` with `<collection>_links`.

use serde_json::{Map, Value, json};
use std::cmp::Ordering;

use crate::error::{NetError, Result};

const RESERVED: &[&str] = &[
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
];

/// A parsed query string.
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, key: &str) -> Option<&str> {
        self.all(key).last().copied()
    }

    /// The `fields=` requested (empty: all).
    pub fn fields(&self) -> Vec<String> {
        self.all("fields")
            .iter()
            .flat_map(|f| f.split(','))
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Keep only `fields` of a rendered resource (all when none are asked).
pub fn select(v: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return v;
    }
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .collect(),
        ),
        other => other,
    }
}

/// Whether the attribute value `v` matches the filter value `want` (a string from the URL).
fn matches(v: &Value, want: &str) -> bool {
    match v {
        Value::Bool(b) => match want.to_ascii_lowercase().as_str() {
            "true" | "1" => *b,
            "false" | "0" => !*b,
            _ => false,
        },
        Value::Number(n) => n.to_string() == want,
        Value::String(s) => s == want,
        Value::Null => want.is_empty() || want == "None",
        Value::Array(items) => items.iter().any(|i| matches(i, want)),
        // `fixed_ips=ip_address=10.0.0.5` / `fixed_ips=subnet_id=X` (Neutron's form).
        Value::Object(o) => want
            .split_once('=')
            .and_then(|(k, w)| o.get(k).map(|v| matches(v, w)))
            .unwrap_or(false),
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// One page of a list, with the links to its neighbours.
pub struct Page {
    pub items: Vec<Value>,
    pub links: Vec<Value>,
}

/// Filter, sort and page `items` (rendered resources) as Neutron's list does; `href` is the
/// collection's URL, `not_found` builds the 404 of a marker that does not exist.
pub fn apply(
    mut items: Vec<Value>,
    attrs: &[&str],
    q: &Query,
    href: &str,
    max_limit: i64,
    not_found: impl Fn(&str) -> NetError,
) -> Result<Page> {
    // Filters (empty values are dropped, as Neutron's get_filters does).
    let mut filters: Vec<(&str, Vec<&str>)> = Vec::new();
    for (k, _) in &q.pairs {
        if RESERVED.contains(&k.as_str()) || filters.iter().any(|(f, _)| f == k) {
            continue;
        }
        let wants: Vec<&str> = q.all(k).into_iter().filter(|v| !v.is_empty()).collect();
        if !wants.is_empty() {
            filters.push((k.as_str(), wants));
        }
    }
    items.retain(|it| {
        filters.iter().all(|(k, wants)| match it.get(*k) {
            Some(v) => wants.iter().any(|w| matches(v, w)),
            // An attribute the resource does not have: Neutron ignores the filter.
            None => true,
        })
    });

    // Sorting: as many sort_dir as sort_key, keys among the attributes.
    let keys: Vec<&str> = q
        .all("sort_key")
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    let dirs: Vec<&str> = q
        .all("sort_dir")
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    if dirs.len() != keys.len() {
        return Err(NetError::bad(
            "The number of sort_keys and sort_dirs must be same",
        ));
    }
    let pylist = |v: &[&str]| {
        format!(
            "[{}]",
            v.iter()
                .map(|x| format!("'{x}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let absent: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !attrs.contains(k))
        .collect();
    if !absent.is_empty() {
        return Err(NetError::bad(format!(
            "{} is invalid attribute for sort_keys",
            pylist(&absent)
        )));
    }
    let bad_dirs: Vec<&str> = dirs
        .iter()
        .copied()
        .filter(|d| *d != "asc" && *d != "desc")
        .collect();
    if !bad_dirs.is_empty() {
        return Err(NetError::bad(format!(
            "{} is invalid value for sort_dirs, valid value is 'asc' and 'desc'",
            pylist(&bad_dirs)
        )));
    }
    let mut sorts: Vec<(String, bool)> = keys
        .iter()
        .zip(&dirs)
        .map(|(k, d)| (k.to_string(), *d == "asc"))
        .collect();
    let limit: usize = match q.one("limit") {
        None => 0,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n >= 0 => n as usize,
            _ => {
                return Err(NetError::new(
                    http::StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "Bad limit request: Limit must be an integer 0 or greater and not '{l}'."
                    ),
                ));
            }
        },
    };
    // Neutron's get_limit_and_marker: the cap applies, 0 means no paging, and a marker
    // without a limit is ignored.
    let limit = if max_limit > 0 {
        match limit.min(max_limit as usize) {
            0 => max_limit as usize,
            l => l,
        }
    } else {
        limit
    };
    let limit = (limit > 0).then_some(limit);
    if !sorts.is_empty() || limit.is_some() {
        if !sorts.iter().any(|(k, _)| k == "id") {
            sorts.push(("id".into(), true));
        }
        items.sort_by(|a, b| {
            for (k, asc) in &sorts {
                let o = compare(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                let o = if *asc { o } else { o.reverse() };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }

    // Pagination.
    let Some(limit) = limit else {
        return Ok(Page {
            items,
            links: vec![],
        });
    };
    let reverse = q
        .one("page_reverse")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if let Some(m) = q.one("marker").filter(|m| !m.is_empty()) {
        let Some(pos) = items.iter().position(|i| i["id"] == json!(m)) else {
            return Err(not_found(m));
        };
        if reverse {
            items.truncate(pos);
        } else {
            items.drain(..=pos);
        }
    }
    if reverse {
        let start = items.len().saturating_sub(limit);
        items.drain(..start);
    } else {
        items.truncate(limit);
    }
    let keep: Vec<(String, String)> = q
        .pairs
        .iter()
        .filter(|(k, _)| k != "marker" && k != "page_reverse")
        .cloned()
        .collect();
    let link = |marker: Option<&Value>, rev: bool| -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &keep {
            s.append_pair(k, v);
        }
        if let Some(m) = marker.and_then(Value::as_str) {
            s.append_pair("marker", m);
        }
        if rev {
            s.append_pair("page_reverse", "True");
        }
        format!("{href}?{}", s.finish())
    };
    // Neutron's get_pagination_links: `next` unless a forward page came back short,
    // `previous` unless a reverse page came back short.
    let short = items.len() < limit;
    let mut links = Vec::new();
    if !short || reverse {
        links.push(json!({"rel": "next", "href": link(items.last().map(|i| &i["id"]), false)}));
    }
    if !short || !reverse {
        links.push(json!({"rel": "previous", "href": link(items.first().map(|i| &i["id"]), true)}));
    }
    Ok(Page { items, links })
}

/// `{"<collection>": [...], "<collection>_links": [...]}` (links only when there are some).
pub fn body(collection: &str, page: Page, fields: &[String]) -> Value {
    let mut m = Map::new();
    let items: Vec<Value> = page.items.into_iter().map(|v| select(v, fields)).collect();
    m.insert(collection.into(), Value::Array(items));
    if !page.links.is_empty() {
        m.insert(format!("{collection}_links"), Value::Array(page.links));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTRS: &[&str] = &["id", "name", "shared"];

    fn nets() -> Vec<Value> {
        (0..5)
            .map(|i| json!({"id": format!("id{i}"), "name": format!("n{}", 4 - i), "shared": i % 2 == 0}))
            .collect()
    }

    fn run(q: &str) -> Page {
        apply(
            nets(),
            ATTRS,
            &Query::parse(Some(q)),
            "http://x/v2.0/networks",
            -1,
            NetError::network_not_found,
        )
        .unwrap()
    }

    #[test]
    fn filters_sorting_paging() {
        assert_eq!(run("shared=true").items.len(), 3);
        assert_eq!(run("name=n1&name=n2").items.len(), 2);
        let p = run("sort_key=name&sort_dir=asc");
        assert_eq!(p.items[0]["name"], "n0");
        let p = run("limit=2");
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.links.len(), 2);
        assert_eq!(p.links[0]["rel"], "next");
        assert!(p.links[0]["href"].as_str().unwrap().contains("marker=id1"));
        // Neutron: as many sort_dir as sort_key, known keys only.
        for bad in [
            "sort_key=name",
            "sort_key=nope&sort_dir=asc",
            "sort_key=name&sort_dir=up",
        ] {
            assert!(
                apply(
                    nets(),
                    ATTRS,
                    &Query::parse(Some(bad)),
                    "h",
                    -1,
                    NetError::network_not_found
                )
                .is_err()
            );
        }
        let p = run("limit=2&marker=id1");
        assert_eq!(p.items[0]["id"], "id2");
        assert_eq!(p.links.len(), 2);
        let p = run("limit=2&marker=id3");
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.links.len(), 1);
        assert_eq!(p.links[0]["rel"], "previous");
        let p = run("limit=2&marker=id3&page_reverse=True");
        assert_eq!(p.items[0]["id"], "id1");
        assert_eq!(p.items[1]["id"], "id2");
        assert!(
            apply(
                nets(),
                ATTRS,
                &Query::parse(Some("limit=x")),
                "h",
                -1,
                NetError::network_not_found
            )
            .is_err()
        );
        let e = apply(
            nets(),
            ATTRS,
            &Query::parse(Some("limit=1&marker=nope")),
            "h",
            -1,
            NetError::network_not_found,
        )
        .err()
        .unwrap();
        assert_eq!(e.kind, "NetworkNotFound");
    }

    #[test]
    fn fields() {
        let q = Query::parse(Some("fields=id&fields=name"));
        let v = select(json!({"id": 1, "name": "a", "shared": false}), &q.fields());
        assert_eq!(v, json!({"id": 1, "name": "a"}));
    }
}
