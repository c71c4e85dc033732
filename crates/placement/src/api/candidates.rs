//! `GET /allocation_candidates` (1.10+): request groups parsed per microversion, the answer
//! serialised straight from the provider view.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use regex::Regex;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use super::query::{self, Query};
use super::schema::{self, GROUP_PAT, GROUP_PAT_1_33};
use super::{Api, Ctx, Qs, check_accept, json, validate_query};
use crate::core::candidates::{AllocationRequest, Candidates};
use crate::core::view::View;
use crate::error::{ApiError, PlacementError, codes};
use crate::model::{GroupPolicy, RequestGroup, RequestWide};

pub fn routes() -> Router<Api> {
    Router::new().route("/allocation_candidates", get(list))
}

static KEY: LazyLock<Regex> = LazyLock::new(|| key_pattern(GROUP_PAT));
static KEY_1_33: LazyLock<Regex> = LazyLock::new(|| key_pattern(GROUP_PAT_1_33));

fn key_pattern(group: &str) -> Regex {
    match Regex::new(&format!(
        "^(resources|required|member_of|in_tree)({group})?$"
    )) {
        Ok(r) => r,
        Err(e) => panic!("invalid built-in pattern: {e}"),
    }
}

/// Python's repr of a list of strings, as upstream's messages print them.
fn py_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let inner: Vec<String> = items.into_iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

fn schema_for(ctx: &Ctx) -> &'static jsonschema::Validator {
    for (minor, s) in [
        (36, &schema::CANDIDATES_1_36),
        (35, &schema::CANDIDATES_1_35),
        (33, &schema::CANDIDATES_1_33),
        (31, &schema::CANDIDATES_1_31),
        (25, &schema::CANDIDATES_1_25),
        (21, &schema::CANDIDATES_1_21),
        (17, &schema::CANDIDATES_1_17),
        (16, &schema::CANDIDATES_1_16),
    ] {
        if ctx.at(minor) {
            return s;
        }
    }
    &schema::CANDIDATES_1_10
}

fn request_wide(ctx: &Ctx, q: &Query) -> Result<RequestWide, ApiError> {
    let mut w = RequestWide {
        nested_aware: ctx.at(29),
        ..RequestWide::default()
    };
    if let Some(l) = q.all("limit").first() {
        w.limit = l.parse().ok();
    }
    w.group_policy = match q.all("group_policy").first().copied() {
        Some("isolate") => Some(GroupPolicy::Isolate),
        Some(_) => Some(GroupPolicy::None),
        None => None,
    };
    let root_required = q.all("root_required");
    if !root_required.is_empty() {
        if root_required.len() > 1 {
            return Err(ApiError::bad_request(
                "Query parameter 'root_required' may be specified only once.",
            )
            .with_code(codes::ILLEGAL_DUPLICATE_QUERYPARAM));
        }
        // root_required has no any-trait syntax: the pre-1.39 parser.
        let (required, forbidden) = query::traits_value(root_required[0], true, false)?;
        let required: BTreeSet<String> = required.into_iter().flatten().collect();
        let conflicts: Vec<&str> = forbidden
            .intersection(&required)
            .map(String::as_str)
            .collect();
        if !conflicts.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Conflicting required and forbidden traits found in root_required: {}",
                conflicts.join(", ")
            ))
            .with_code(codes::QUERYPARAM_BAD_VALUE));
        }
        w.root_required = required;
        w.root_forbidden = forbidden;
    }
    for val in q.all("same_subtree") {
        let suffixes: BTreeSet<String> = val.split(',').map(|s| s.trim().to_string()).collect();
        if suffixes.contains("") {
            return Err(ApiError::bad_request(
                "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
            )
            .with_code(codes::QUERYPARAM_BAD_VALUE));
        }
        w.same_subtrees.push(suffixes);
    }
    Ok(w)
}

/// Request groups by suffix, in the order the query string first names them.
fn request_groups(
    ctx: &Ctx,
    q: &Query,
    wide: &RequestWide,
) -> Result<Vec<(String, RequestGroup)>, ApiError> {
    let pattern: &Regex = if ctx.at(33) { &KEY_1_33 } else { &KEY };
    let mut groups: Vec<(String, RequestGroup)> = Vec::new();
    for (key, val) in &q.0 {
        let Some(caps) = pattern.captures(key) else {
            continue;
        };
        let prefix = caps.get(1).map_or("", |m| m.as_str());
        let suffix = caps.get(2).map_or("", |m| m.as_str()).to_string();
        let idx = match groups.iter().position(|(s, _)| *s == suffix) {
            Some(i) => i,
            None => {
                groups.push((
                    suffix.clone(),
                    RequestGroup {
                        use_same_provider: !suffix.is_empty(),
                        ..RequestGroup::default()
                    },
                ));
                groups.len() - 1
            }
        };
        let g = &mut groups[idx].1;
        match prefix {
            "resources" => g.resources = query::resources(val)?,
            "required" => {
                (g.required_traits, g.forbidden_traits) = query::traits_params(q, &suffix, ctx.mv)?;
            }
            "member_of" => {
                (g.member_of, g.forbidden_aggs) = query::member_of_params(q, &suffix, ctx.mv)?;
            }
            _ => g.in_tree = Some(query::in_tree_value(val)?),
        }
    }

    if ctx.at(36) {
        let resourceless: Vec<&str> = groups
            .iter()
            .filter(|(_, g)| g.resources.is_empty())
            .map(|(s, _)| s.as_str())
            .collect();
        let subtree: BTreeSet<&str> = wide
            .same_subtrees
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if resourceless.len() == groups.len() {
            return Err(ApiError::bad_request(
                "There must be at least one resources or resources[$S] parameter.",
            )
            .with_code(codes::QUERYPARAM_MISSING_VALUE));
        }
        let bad: Vec<&str> = resourceless
            .iter()
            .filter(|s| !subtree.contains(*s))
            .copied()
            .collect();
        if !bad.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Resourceless suffixed group request should be specified in `same_subtree` query param: bad group(s) - {}.",
                py_list(bad)
            ))
            .with_code(codes::QUERYPARAM_BAD_VALUE));
        }
        let bad: Vec<&str> = subtree
            .iter()
            .filter(|s| !groups.iter().any(|(g, _)| g == *s))
            .copied()
            .collect();
        if !bad.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Real suffixes should be specified in `same_subtree`: {} not found in {}.",
                py_list(bad),
                py_list(groups.iter().map(|(s, _)| s.as_str()))
            ))
            .with_code(codes::QUERYPARAM_BAD_VALUE));
        }
    } else {
        let orphans: Vec<String> = groups
            .iter()
            .filter(|(_, g)| !g.required_traits.is_empty() && g.resources.is_empty())
            .map(|(s, _)| format!("required{s}"))
            .collect();
        if !orphans.is_empty() {
            return Err(ApiError::bad_request(format!(
                "All traits parameters must be associated with resources.  Found the following orphaned traits keys: {}",
                orphans.join(", ")
            )));
        }
        let orphans: Vec<String> = groups
            .iter()
            .filter(|(_, g)| {
                g.resources.is_empty() && (!g.member_of.is_empty() || !g.forbidden_aggs.is_empty())
            })
            .map(|(s, _)| format!("member_of{s}"))
            .collect();
        if !orphans.is_empty() {
            return Err(ApiError::bad_request(format!(
                "All member_of parameters must be associated with resources. Found the following orphaned member_of keys: {}",
                orphans.join(", ")
            )));
        }
        if groups.iter().any(|(_, g)| g.resources.is_empty()) {
            return Err(ApiError::bad_request(
                "All request groups must specify resources.",
            ));
        }
        if groups.is_empty() {
            return Err(ApiError::bad_request(
                "At least one request group (`resources` or `resources{$S}`) is required.",
            ));
        }
    }

    if ctx.at(22) {
        let mut conflicts: Vec<String> = Vec::new();
        for (s, g) in &groups {
            for any in &g.required_traits {
                if any.iter().all(|t| g.forbidden_traits.contains(t)) {
                    let names: Vec<&str> = any.iter().map(String::as_str).collect();
                    conflicts.push(format!("required{s}: ({})", names.join(", ")));
                }
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort();
            return Err(ApiError::bad_request(format!(
                "Conflicting required and forbidden traits found in the following traits keys: {}",
                conflicts.join(", ")
            )));
        }
    }
    Ok(groups)
}

async fn list(
    State(api): State<Api>,
    ctx: Ctx,
    headers: HeaderMap,
    Qs(q): Qs,
) -> Result<Response, ApiError> {
    ctx.need(10)?;
    check_accept(&headers)?;
    ctx.authorize(&api, "placement:allocation_candidates:list")?;
    validate_query(&q, schema_for(&ctx))?;
    let wide = request_wide(&ctx, &q)?;
    let groups = request_groups(&ctx, &q, &wide)?;
    if wide.group_policy.is_none() && groups.iter().filter(|(_, g)| g.use_same_provider).count() > 1
    {
        return Err(ApiError::bad_request(
            "The \"group_policy\" parameter is required when specifying more than one \"resources{N}\" parameter.",
        ));
    }
    let (view, cands) = api
        .p
        .allocation_candidates(&groups, &wide)
        .await
        .map_err(|e| match e {
            PlacementError::ResourceClassNotFound(_) => ApiError::bad_request(format!(
                "Invalid resource class in resources parameter: {e}"
            )),
            PlacementError::TraitNotFound(_) => ApiError::bad_request(e.to_string()),
            other => other.into(),
        })?;
    let body = Body {
        view: &view,
        c: &cands,
        dict_format: ctx.at(12),
        mappings: ctx.at(34),
        traits: ctx.at(17),
        all_resources: ctx.at(27),
        nested: ctx.at(29),
    };
    Ok(json(StatusCode::OK, &body, &ctx, None))
}

/// The response, serialised from the view without an intermediate JSON tree.
struct Body<'a> {
    view: &'a View,
    c: &'a Candidates,
    dict_format: bool,
    mappings: bool,
    traits: bool,
    all_resources: bool,
    nested: bool,
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("allocation_requests", &Requests(self))?;
        m.serialize_entry("provider_summaries", &Summaries(self))?;
        m.end()
    }
}

struct Requests<'a>(&'a Body<'a>);

impl Serialize for Requests<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.c.requests.len()))?;
        for a in &self.0.c.requests {
            seq.serialize_element(&Request(self.0, a))?;
        }
        seq.end()
    }
}

struct Request<'a>(&'a Body<'a>, &'a AllocationRequest);

/// Providers of a request in first-use order, each with its (class, amount) pairs.
fn by_provider(a: &AllocationRequest) -> Vec<(i32, Vec<(i32, i64)>)> {
    let mut out: Vec<(i32, Vec<(i32, i64)>)> = Vec::new();
    for (rp, rc, amount) in &a.resources {
        match out.iter_mut().find(|(p, _)| p == rp) {
            Some((_, v)) => v.push((*rc, *amount)),
            None => out.push((*rp, vec![(*rc, *amount)])),
        }
    }
    out
}

struct Resources<'a>(&'a View, &'a [(i32, i64)]);

impl Serialize for Resources<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.1.len()))?;
        for (rc, amount) in self.1 {
            m.serialize_entry(self.0.rcs.name(*rc), amount)?;
        }
        m.end()
    }
}

struct ResourcesOnly<'a>(&'a View, &'a [(i32, i64)]);

impl Serialize for ResourcesOnly<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("resources", &Resources(self.0, self.1))?;
        m.end()
    }
}

struct ListEntry<'a>(&'a View, i32, &'a [(i32, i64)]);

impl Serialize for ListEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(
            "resource_provider",
            &BTreeMap::from([("uuid", self.0.uuid(self.1))]),
        )?;
        m.serialize_entry("resources", &Resources(self.0, self.2))?;
        m.end()
    }
}

struct Allocations<'a>(&'a View, &'a [(i32, Vec<(i32, i64)>)], bool);

impl Serialize for Allocations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.2 {
            let mut m = s.serialize_map(Some(self.1.len()))?;
            for (rp, res) in self.1 {
                m.serialize_entry(self.0.uuid(*rp), &ResourcesOnly(self.0, res))?;
            }
            m.end()
        } else {
            let mut seq = s.serialize_seq(Some(self.1.len()))?;
            for (rp, res) in self.1 {
                seq.serialize_element(&ListEntry(self.0, *rp, res))?;
            }
            seq.end()
        }
    }
}

struct Mappings<'a>(&'a View, &'a BTreeMap<String, BTreeSet<i32>>);

impl Serialize for Mappings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.1.len()))?;
        for (suffix, rps) in self.1 {
            let uuids: Vec<&str> = rps.iter().map(|id| self.0.uuid(*id)).collect();
            m.serialize_entry(suffix, &uuids)?;
        }
        m.end()
    }
}

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let body = self.0;
        let grouped = by_provider(self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            "allocations",
            &Allocations(body.view, &grouped, body.dict_format),
        )?;
        if body.dict_format && body.mappings {
            m.serialize_entry("mappings", &Mappings(body.view, &self.1.mappings))?;
        }
        m.end()
    }
}

struct Summaries<'a>(&'a Body<'a>);

impl Serialize for Summaries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut m = s.serialize_map(Some(b.c.summaries.len()))?;
        for id in &b.c.summaries {
            if let Some(p) = b.view.get(*id) {
                m.serialize_entry(&p.uuid, &Summary(b, p))?;
            }
        }
        m.end()
    }
}

struct Summary<'a>(&'a Body<'a>, &'a crate::core::view::Prov);

struct Capacity {
    capacity: i64,
    used: i64,
}

impl Serialize for Capacity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("capacity", &self.capacity)?;
        m.serialize_entry("used", &self.used)?;
        m.end()
    }
}

struct SummaryResources<'a>(&'a Body<'a>, &'a crate::core::view::Prov);

impl Serialize for SummaryResources<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (b, p) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        for inv in &p.inventories {
            if !b.all_resources && !b.c.requested_classes.contains(&inv.rc) {
                continue;
            }
            m.serialize_entry(
                b.view.rcs.name(inv.rc),
                &Capacity {
                    capacity: inv.capacity(),
                    used: inv.used,
                },
            )?;
        }
        m.end()
    }
}

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (b, p) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("resources", &SummaryResources(b, p))?;
        if b.traits {
            let mut names: Vec<&str> = p.traits.iter().map(|t| b.view.traits.name(*t)).collect();
            names.sort_unstable();
            m.serialize_entry("traits", &names)?;
        }
        if b.nested {
            m.serialize_entry("parent_provider_uuid", &p.parent.map(|id| b.view.uuid(id)))?;
            m.serialize_entry("root_provider_uuid", b.view.uuid(p.root))?;
        }
        m.end()
    }
}
