//! Keystone's policy defaults (crates/identity/src/policy_defaults.yaml) through the
//! engine: the file loads, its references resolve, and decisions match Keystone's.

use common::policy::{
    Credentials, Enforcer, PolicyError, RuleDefault, ScopeType, load_defaults, load_overrides,
};
use serde_json::{Value, json};
use std::time::Instant;

const DEFAULTS: &str = include_str!("../../identity/src/policy_defaults.yaml");

fn enforcer() -> Enforcer {
    match Enforcer::builder()
        .defaults_yaml(DEFAULTS)
        .and_then(|b| b.build())
    {
        Ok(e) => e,
        Err(e) => panic!("keystone defaults failed to load: {e}"),
    }
}

fn project(user: &str, project: &str, roles: &[&str]) -> Credentials {
    Credentials {
        user_id: Some(user.into()),
        user_domain_id: Some("default".into()),
        project_id: Some(project.into()),
        project_domain_id: Some("default".into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

fn system(roles: &[&str]) -> Credentials {
    Credentials {
        user_id: Some("sys-user".into()),
        user_domain_id: Some("default".into()),
        system_scope: Some("all".into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

/// Domain-scoped, with the rendered token Keystone exposes to `token.*` checks.
fn domain(domain_id: &str, roles: &[&str]) -> Credentials {
    let mut c = Credentials {
        user_id: Some("dom-user".into()),
        user_domain_id: Some(domain_id.into()),
        domain_id: Some(domain_id.into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    c.extra
        .insert("token".into(), json!({"domain": {"id": domain_id}}));
    c
}

#[test]
fn defaults_parse_and_cover_keystone() -> Result<(), Box<dyn std::error::Error>> {
    let defaults: Vec<RuleDefault> = load_defaults(DEFAULTS)?;
    let actions = defaults
        .iter()
        .filter(|d| d.name.starts_with("identity:"))
        .count();
    assert_eq!(actions, 194, "every identity:* action upstream registers");
    assert_eq!(defaults.len(), 203, "plus the nine base rules");
    // Building validates every rule: reference and checks for cycles.
    let e = Enforcer::builder().defaults(defaults.clone()).build()?;
    for d in &defaults {
        assert!(e.is_registered(&d.name), "{}", d.name);
        if d.name.starts_with("identity:") {
            assert!(!d.description.is_empty(), "{} has no description", d.name);
        }
    }
    for name in [
        "admin_required",
        "service_role",
        "service_or_admin",
        "owner",
        "admin_or_owner",
        "token_subject",
        "admin_or_token_subject",
        "service_admin_or_token_subject",
        "domain_managed_target_role",
        "identity:get_project",
        "identity:create_grant",
        "identity:validate_token",
        "identity:list_role_assignments",
        "identity:ec2tokens_validate",
    ] {
        assert!(e.is_registered(name), "{name}");
    }
    let scopes = |name: &str| {
        defaults
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.scope_types.clone())
    };
    assert_eq!(
        scopes("identity:get_project"),
        Some(vec![
            ScopeType::System,
            ScopeType::Domain,
            ScopeType::Project
        ])
    );
    assert_eq!(
        scopes("identity:create_trust"),
        Some(vec![ScopeType::Project])
    );
    assert_eq!(scopes("identity:get_auth_projects"), Some(vec![]));
    Ok(())
}

#[test]
fn project_scoped_decisions() {
    let e = enforcer();
    let admin = project("u-admin", "A", &["admin", "member", "reader"]);
    let reader = project("u-reader", "A", &["reader"]);
    let member = project("u-member", "A", &["member", "reader"]);
    let new_project = json!({"target": {"project": {"name": "x", "domain_id": "default"}}});

    assert_eq!(
        e.authorize("identity:create_project", &new_project, &admin),
        Ok(())
    );
    assert_eq!(
        e.authorize("identity:create_project", &new_project, &reader),
        Err(PolicyError::Denied {
            action: "identity:create_project".into()
        })
    );
    let own = json!({"target": {"project": {"id": "A", "domain_id": "default"}}});
    let other = json!({"target": {"project": {"id": "B", "domain_id": "default"}}});
    assert!(e.check("identity:get_project", &own, &reader));
    assert!(!e.check("identity:get_project", &other, &reader));
    // Keystone passes no target for a project-scoped listing of assignments.
    assert!(!e.check("identity:list_role_assignments", &json!({}), &member));
    assert!(e.check("identity:list_role_assignments", &json!({}), &admin));
    // Own user record via rule:owner-style checks, someone else's not.
    let me = json!({"target": {"user": {"id": "u-member", "domain_id": "default"}}});
    let them = json!({"target": {"user": {"id": "u-other", "domain_id": "default"}}});
    assert!(e.check("identity:get_user", &me, &member));
    assert!(!e.check("identity:get_user", &them, &member));
    // Application credentials read the {user_id} URL segment at the top level.
    assert!(e.check(
        "identity:create_application_credential",
        &json!({"user_id": "u-member"}),
        &member
    ));
    assert!(!e.check(
        "identity:create_application_credential",
        &json!({"user_id": "u-other"}),
        &member
    ));
    // Tokens: the subject token's owner may validate it; a service user may too.
    let subject = json!({"target": {"token": {"user_id": "u-member"}}});
    assert!(e.check("identity:validate_token", &subject, &member));
    assert!(!e.check("identity:revoke_token", &subject, &reader));
    assert!(e.check(
        "identity:validate_token",
        &subject,
        &project("nova", "service", &["service"])
    ));
    // Project-scoped managers see no role list: `not domain_id:None` fails.
    assert!(!e.check(
        "identity:list_roles",
        &json!({}),
        &project("m", "A", &["manager", "member", "reader"])
    ));
    // Empty checks: anyone authenticated.
    assert!(e.check("identity:get_auth_catalog", &json!({}), &reader));
}

#[test]
fn system_scoped_decisions() {
    let e = enforcer();
    let sys_reader = system(&["reader"]);
    let sys_admin = system(&["admin", "member", "reader"]);
    assert!(e.check("identity:list_users", &json!({}), &sys_reader));
    assert_eq!(
        e.authorize(
            "identity:create_user",
            &json!({"target": {"user": {"name": "n", "domain_id": "default"}}}),
            &sys_reader
        ),
        Err(PolicyError::Denied {
            action: "identity:create_user".into()
        })
    );
    assert!(e.check(
        "identity:create_user",
        &json!({"target": {"user": {"name": "n", "domain_id": "default"}}}),
        &sys_admin
    ));
    assert!(e.check("identity:list_services", &json!({}), &sys_reader));
    assert!(!e.check("identity:create_service", &json!({}), &sys_reader));
    // Trusts are project-only: a system token is out of scope, not merely denied.
    assert_eq!(
        e.authorize(
            "identity:create_trust",
            &json!({"target": {"trust": {"trustor_user_id": "sys-user"}}}),
            &sys_admin
        ),
        Err(PolicyError::InvalidScope {
            action: "identity:create_trust".into(),
            required: vec![ScopeType::Project],
            actual: Some(ScopeType::System),
        })
    );
}

#[test]
fn domain_scoped_decisions() {
    let e = enforcer();
    let manager = domain("d1", &["manager", "member", "reader"]);
    let reader = domain("d1", &["reader"]);
    let user_in = |d: &str| json!({"target": {"user": {"name": "n", "domain_id": d}}});
    // create_user compares the token's domain (credentials extra) with the target's.
    assert!(e.check("identity:create_user", &user_in("d1"), &manager));
    assert!(!e.check("identity:create_user", &user_in("d2"), &manager));
    assert!(!e.check("identity:create_user", &user_in("d1"), &reader));
    // Keystone hands domain-scoped listings target.domain_id = token domain.
    assert!(e.check(
        "identity:list_users",
        &json!({"target": {"domain_id": "d1"}}),
        &reader
    ));
    assert!(e.check("identity:list_roles", &json!({}), &manager));
    // Projects in the domain; a domain_id of None is guarded by `not None:`.
    let proj = |d: Value| json!({"target": {"project": {"id": "p", "domain_id": d}}});
    assert!(e.check("identity:get_project", &proj(json!("d1")), &reader));
    assert!(!e.check("identity:get_project", &proj(json!("d2")), &reader));
    let mut no_domain = reader.clone();
    no_domain.domain_id = None;
    no_domain.system_scope = None;
    no_domain.project_id = Some("q".into());
    assert!(!e.check("identity:get_project", &proj(Value::Null), &no_domain));
    // Domain managers may hand out manager/member/reader inside their domain, not admin.
    let grant = |role: &str| {
        json!({"target": {
            "role": {"id": "r", "name": role, "domain_id": null},
            "user": {"id": "u", "domain_id": "d1"},
            "project": {"id": "p", "domain_id": "d1"},
        }})
    };
    assert!(e.check("identity:create_grant", &grant("member"), &manager));
    assert!(!e.check("identity:create_grant", &grant("admin"), &manager));
    assert!(!e.check("identity:create_grant", &grant("member"), &reader));
    // Keystone's flattened target shape works the same.
    let flat = json!({
        "target.role.name": "reader", "target.role.domain_id": null,
        "target.user.domain_id": "d1", "target.project.domain_id": "d1",
    });
    assert!(e.check("identity:create_grant", &flat, &manager));
}

#[test]
fn unknown_and_unscoped() {
    let e = enforcer();
    let unscoped = Credentials {
        user_id: Some("u".into()),
        ..Default::default()
    };
    // Keystone registers no `default` rule, so unknown actions are denied.
    assert!(matches!(
        e.authorize("identity:no_such_action", &json!({}), &unscoped),
        Err(PolicyError::Denied { .. })
    ));
    assert!(e.check("identity:get_auth_projects", &json!({}), &unscoped));
    // An unscoped token counts as project-scoped (oslo), and has no roles: denied by the rule.
    assert!(matches!(
        e.authorize("identity:list_projects", &json!({}), &unscoped),
        Err(PolicyError::Denied { .. })
    ));
    // ... but a user may still read itself with one, as in Keystone.
    assert!(e.check(
        "identity:get_user",
        &json!({"target": {"user": {"id": "u", "domain_id": "default"}}}),
        &unscoped
    ));
}

#[test]
fn overrides_and_sample_rendering() -> Result<(), Box<dyn std::error::Error>> {
    let e = Enforcer::builder()
        .defaults_yaml(DEFAULTS)?
        .overrides_file("\"identity:list_users\": \"rule:admin_required\"\n")?
        .build()?;
    assert!(!e.check("identity:list_users", &json!({}), &system(&["reader"])));
    let sample = e.render_yaml();
    assert!(sample.contains("\"identity:list_users\": \"rule:admin_required\""));
    assert_eq!(load_overrides(&sample)?.len(), 203);
    Ok(())
}

#[test]
fn enforce_timing() {
    let e = enforcer();
    let reader = project("u-reader", "A", &["reader", "member"]);
    let own = json!({"target": {"project": {"id": "A", "domain_id": "default"}}});
    let n = 100_000u32;
    // identity:get_project passes only on its last alternative for a project
    // reader, so every branch of the rule is evaluated.
    let start = Instant::now();
    let mut allowed = 0u32;
    for _ in 0..n {
        allowed += u32::from(e.check("identity:get_project", &own, &reader));
    }
    let per = start.elapsed() / n;
    assert_eq!(allowed, n);
    let start = Instant::now();
    let mut denied = 0u32;
    for _ in 0..n {
        denied += u32::from(!e.check("identity:create_grant", &own, &reader));
    }
    let per_denied = start.elapsed() / n;
    assert_eq!(denied, n);
    println!(
        "policy enforce: identity:get_project (allow) {per:?}/call, \
         identity:create_grant (deny) {per_denied:?}/call over {n} calls"
    );
}
