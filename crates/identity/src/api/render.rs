//! JSON views of identity entities, as Keystone renders them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::core::{CatalogEntry, EffectiveAssignment, ValidatedToken};
use crate::model::*;

/// Keystone's timestamps: microseconds, `Z`.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Python's `isoformat()` of a naive UTC datetime (no zone; microseconds only when set),
/// which is how Keystone echoes application credential expiries.
pub fn iso_naive(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

pub fn opt_time(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref()
        .map(|t| Value::String(time(t)))
        .unwrap_or(Value::Null)
}

fn with_extra(extra: &Extra, known: Value) -> Value {
    let mut m: Map<String, Value> = extra.clone();
    if let Value::Object(k) = known {
        m.extend(k);
    }
    Value::Object(m)
}

fn link(base: &str, path: &str, id: &str) -> Value {
    json!({"self": format!("{base}/v3/{path}/{id}")})
}

pub fn domain(base: &str, d: &Domain) -> Value {
    with_extra(
        &d.extra,
        json!({
            "id": d.id, "name": d.name, "description": d.description.clone().unwrap_or_default(),
            "enabled": d.enabled, "tags": [], "options": d.options,
            "links": link(base, "domains", &d.id),
        }),
    )
}

pub fn project(base: &str, p: &Project) -> Value {
    with_extra(
        &p.extra,
        json!({
            "id": p.id, "name": p.name, "domain_id": p.domain_id,
            "description": p.description.clone().unwrap_or_default(), "enabled": p.enabled,
            "parent_id": p.parent_id.clone().unwrap_or_else(|| p.domain_id.clone()),
            "is_domain": false, "tags": p.tags, "options": p.options,
            "links": link(base, "projects", &p.id),
        }),
    )
}

/// A domain shown through the projects API (`is_domain: true`), as Keystone can.
pub fn domain_as_project(base: &str, d: &Domain) -> Value {
    json!({
        "id": d.id, "name": d.name, "domain_id": null, "description": d.description.clone().unwrap_or_default(),
        "enabled": d.enabled, "parent_id": null, "is_domain": true, "tags": [], "options": d.options,
        "links": link(base, "projects", &d.id),
    })
}

pub fn user(base: &str, u: &User) -> Value {
    let mut v = with_extra(
        &u.extra,
        json!({
            "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
            "password_expires_at": opt_time(&u.password_expires_at), "options": u.options,
            "links": link(base, "users", &u.id),
        }),
    );
    if let (Some(dp), Value::Object(m)) = (&u.default_project_id, &mut v) {
        m.insert("default_project_id".into(), Value::String(dp.clone()));
    }
    v
}

pub fn group(base: &str, g: &Group) -> Value {
    with_extra(
        &g.extra,
        json!({
            "id": g.id, "name": g.name, "domain_id": g.domain_id,
            "description": g.description.clone().unwrap_or_default(),
            "links": link(base, "groups", &g.id),
        }),
    )
}

pub fn role(base: &str, r: &Role) -> Value {
    let mut v = with_extra(
        &r.extra,
        json!({
            "id": r.id, "name": r.name, "domain_id": r.domain_id, "options": r.options,
            "links": link(base, "roles", &r.id),
        }),
    );
    if let (Some(d), Value::Object(m)) = (&r.description, &mut v) {
        m.insert("description".into(), Value::String(d.clone()));
    }
    v
}

/// A role as it appears inside an implication (`prior_role`, `implies`).
pub fn role_ref(base: &str, r: &Role) -> Value {
    let mut v = json!({"id": r.id, "name": r.name, "links": link(base, "roles", &r.id)});
    if let (Some(d), Value::Object(m)) = (&r.description, &mut v) {
        m.insert("description".into(), Value::String(d.clone()));
    }
    v
}

pub fn region(base: &str, r: &Region) -> Value {
    with_extra(
        &r.extra,
        json!({
            "id": r.id, "description": r.description, "parent_region_id": r.parent_region_id,
            "links": link(base, "regions", &r.id),
        }),
    )
}

pub fn service(base: &str, s: &Service) -> Value {
    let mut v = with_extra(
        &s.extra,
        json!({
            "id": s.id, "type": s.service_type, "enabled": s.enabled,
            "links": link(base, "services", &s.id),
        }),
    );
    if let Value::Object(m) = &mut v {
        if let Some(n) = &s.name {
            m.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(d) = &s.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
    }
    v
}

pub fn endpoint(base: &str, e: &Endpoint) -> Value {
    with_extra(
        &e.extra,
        json!({
            "id": e.id, "interface": e.interface, "service_id": e.service_id, "url": e.url,
            "region_id": e.region_id, "region": e.region_id, "enabled": e.enabled,
            "links": link(base, "endpoints", &e.id),
        }),
    )
}

pub fn catalog(entries: &[CatalogEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|c| {
                let mut s = json!({
                    "id": c.service.id, "type": c.service.service_type,
                    "endpoints": c.endpoints.iter().map(|e| json!({
                        "id": e.id, "interface": e.interface, "region_id": e.region_id,
                        "region": e.region_id, "url": e.url,
                    })).collect::<Vec<_>>(),
                });
                if let (Some(n), Value::Object(m)) = (&c.service.name, &mut s) {
                    m.insert("name".into(), Value::String(n.clone()));
                }
                s
            })
            .collect(),
    )
}

pub fn access_rule(base: &str, user_id: &str, r: &AccessRule) -> Value {
    json!({
        "id": r.id, "service": r.service, "path": r.path, "method": r.method,
        "links": {"self": format!("{base}/v3/users/{user_id}/access_rules/{}", r.id)},
    })
}

pub fn app_cred(base: &str, c: &AppCred, roles: &[Role]) -> Value {
    let roles: Vec<Value> = c
        .roles
        .iter()
        .map(|r| {
            let domain_id = roles
                .iter()
                .find(|x| x.id == r.id)
                .and_then(|x| x.domain_id.clone());
            json!({"id": r.id, "name": r.name, "domain_id": domain_id})
        })
        .collect();
    json!({
        "id": c.id, "name": c.name, "description": c.description, "user_id": c.user_id,
        "project_id": c.project_id, "system": c.system,
        "expires_at": c.expires_at.as_ref().map(iso_naive),
        "unrestricted": c.unrestricted, "roles": roles,
        "access_rules": c.access_rules.iter().map(|r| json!({"id": r.id, "service": r.service, "path": r.path, "method": r.method})).collect::<Vec<_>>(),
        "links": {"self": format!("{base}/v3/users/{}/application_credentials/{}", c.user_id, c.id)},
    })
}

pub fn credential(base: &str, c: &Credential) -> Value {
    with_extra(
        &c.extra,
        json!({
            "id": c.id, "user_id": c.user_id, "project_id": c.project_id,
            "type": c.credential_type, "blob": c.blob,
            "links": link(base, "credentials", &c.id),
        }),
    )
}

pub fn policy(base: &str, p: &Policy) -> Value {
    with_extra(
        &p.extra,
        json!({"id": p.id, "type": p.policy_type, "blob": p.blob, "links": link(base, "policies", &p.id)}),
    )
}

/// The `token` object of token responses; `catalog` when asked for and scoped.
pub fn token(v: &ValidatedToken, catalog_entries: Option<&[CatalogEntry]>) -> Value {
    let ctx = &v.ctx;
    let mut t = json!({
        "methods": ctx.methods,
        "user": {
            "domain": {"id": v.user_domain.id, "name": v.user_domain.name},
            "id": v.user.id, "name": v.user.name,
            "password_expires_at": opt_time(&v.user.password_expires_at),
        },
        "audit_ids": ctx.audit_ids,
        "expires_at": time(&ctx.expires_at),
        "issued_at": time(&ctx.issued_at),
    });
    let Value::Object(m) = &mut t else { return t };
    let roles: Vec<Value> = v
        .roles
        .iter()
        .map(|r| json!({"id": r.id, "name": r.name}))
        .collect();
    if v.system {
        m.insert("roles".into(), Value::Array(roles));
        m.insert("system".into(), json!({"all": true}));
    } else if let Some(d) = &v.domain {
        m.insert("domain".into(), json!({"id": d.id, "name": d.name}));
        m.insert("roles".into(), Value::Array(roles));
    } else if let Some((p, pd)) = &v.project {
        m.insert(
            "project".into(),
            json!({"domain": {"id": pd.id, "name": pd.name}, "id": p.id, "name": p.name}),
        );
        m.insert("is_domain".into(), Value::Bool(false));
        m.insert("roles".into(), Value::Array(roles));
        m.insert("is_admin_project".into(), Value::Bool(ctx.is_admin_project));
    }
    if let Some(entries) = catalog_entries {
        m.insert("catalog".into(), catalog(entries));
    }
    if let Some(c) = &v.app_cred {
        let mut ac = json!({"id": c.id, "name": c.name, "restricted": !c.unrestricted});
        if !c.access_rules.is_empty()
            && let Value::Object(acm) = &mut ac
        {
            acm.insert(
                "access_rules".into(),
                Value::Array(
                    c.access_rules
                        .iter()
                        .map(|r| json!({"id": r.id, "service": r.service, "path": r.path, "method": r.method}))
                        .collect(),
                ),
            );
        }
        m.insert("application_credential".into(), ac);
    }
    t
}

/// Names to add to role assignments with `include_names`.
#[derive(Default)]
pub struct Names {
    pub users: std::collections::HashMap<String, (String, String, String)>,
    pub groups: std::collections::HashMap<String, (String, String, String)>,
    pub projects: std::collections::HashMap<String, (String, String, String)>,
    pub domains: std::collections::HashMap<String, String>,
    pub roles: std::collections::HashMap<String, (String, Option<(String, String)>)>,
}

fn named(id: &str, names: Option<&(String, String, String)>) -> Value {
    match names {
        Some((name, did, dname)) => {
            json!({"id": id, "name": name, "domain": {"id": did, "name": dname}})
        }
        None => json!({"id": id}),
    }
}

pub fn assignment(base: &str, e: &EffectiveAssignment, names: Option<&Names>) -> Value {
    let a = &e.assignment;
    let mut m = Map::new();
    let (actor_key, actor_path) = match &a.actor {
        Actor::User(id) => {
            m.insert(
                "user".into(),
                named(id, names.and_then(|n| n.users.get(id))),
            );
            ("users", id)
        }
        Actor::Group(id) => {
            m.insert(
                "group".into(),
                named(id, names.and_then(|n| n.groups.get(id))),
            );
            ("groups", id)
        }
    };
    let role = match names.and_then(|n| n.roles.get(&a.role_id)) {
        Some((name, Some((did, dname)))) => {
            json!({"id": a.role_id, "name": name, "domain": {"id": did, "name": dname}})
        }
        Some((name, None)) => json!({"id": a.role_id, "name": name}),
        None => json!({"id": a.role_id}),
    };
    m.insert("role".into(), role);
    let (scope, scope_path) = match &a.target {
        Target::Project(id) => (
            json!({"project": named(id, names.and_then(|n| n.projects.get(id)))}),
            format!("projects/{id}"),
        ),
        Target::Domain(id) => {
            let d = match names.and_then(|n| n.domains.get(id)) {
                Some(name) => json!({"id": id, "name": name}),
                None => json!({"id": id}),
            };
            (json!({"domain": d}), format!("domains/{id}"))
        }
        Target::System => (json!({"system": {"all": true}}), "system".to_string()),
    };
    let mut scope = scope;
    if a.inherited
        && let Value::Object(s) = &mut scope
    {
        s.insert(
            "OS-INHERIT:inherited_to".into(),
            Value::String("projects".into()),
        );
    }
    m.insert("scope".into(), scope);
    let assignment_link = if a.inherited {
        format!(
            "{base}/v3/OS-INHERIT/{scope_path}/{actor_key}/{actor_path}/roles/{}/inherited_to_projects",
            a.role_id
        )
    } else {
        format!(
            "{base}/v3/{scope_path}/{actor_key}/{actor_path}/roles/{}",
            a.role_id
        )
    };
    let mut links = Map::new();
    match (&e.inherited_from, &e.via_group) {
        (Some(from), via) => {
            let actor = match via {
                Some(g) => format!("groups/{g}"),
                None => format!("{actor_key}/{actor_path}"),
            };
            let sp = match from {
                Target::Project(id) => format!("projects/{id}"),
                Target::Domain(id) => format!("domains/{id}"),
                Target::System => "system".into(),
            };
            links.insert(
                "assignment".into(),
                Value::String(format!(
                    "{base}/v3/OS-INHERIT/{sp}/{actor}/roles/{}/inherited_to_projects",
                    e.prior_role.as_deref().unwrap_or(&a.role_id)
                )),
            );
        }
        (None, Some(g)) => {
            links.insert(
                "assignment".into(),
                Value::String(format!(
                    "{base}/v3/{scope_path}/groups/{g}/roles/{}",
                    e.prior_role.as_deref().unwrap_or(&a.role_id)
                )),
            );
            links.insert(
                "membership".into(),
                Value::String(format!("{base}/v3/groups/{g}/users/{actor_path}")),
            );
        }
        (None, None) => {
            links.insert("assignment".into(), Value::String(assignment_link));
        }
    }
    if let Some(p) = &e.prior_role {
        links.insert(
            "prior_role".into(),
            Value::String(format!("{base}/v3/roles/{p}")),
        );
    }
    m.insert("links".into(), Value::Object(links));
    Value::Object(m)
}
