//! The identity core driven directly (no HTTP): a fresh SQLite database in a temp dir,
//! bootstrap, then the stories whose rules are easy to get subtly wrong.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::Utc;
use identity::Identity;
use identity::bootstrap::{BootstrapSpec, CatalogService, bootstrap};
use identity::config::IdentityConfig;
use identity::core::{AuthRequest, DomainRef, ScopeRequest, UserRef};
use identity::error::IdentityError;
use identity::model::*;

async fn open() -> (tempfile::TempDir, Arc<Identity>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = IdentityConfig::defaults(dir.path());
    cfg.password_hash_rounds = 4;
    let id = Identity::open(cfg).await.unwrap();
    bootstrap(
        &id,
        &BootstrapSpec {
            admin_password: "secret".into(),
            region_id: "RegionOne".into(),
            services: vec![CatalogService {
                service_type: "identity".into(),
                name: "keystone".into(),
                description: "Identity".into(),
                url: "http://127.0.0.1:5000/identity".into(),
            }],
            demo_password: Some("secret".into()),
            service_users: Vec::new(),
        },
    )
    .await
    .unwrap();
    (dir, id)
}

fn password_auth(user: &str, password: &str, project: Option<&str>) -> AuthRequest {
    AuthRequest {
        methods: vec!["password".into()],
        password: Some((
            UserRef::Name {
                name: user.into(),
                domain: DomainRef::Id("default".into()),
            },
            password.into(),
        )),
        token: None,
        app_cred: None,
        scope: match project {
            Some(p) => ScopeRequest::ProjectName {
                name: p.into(),
                domain: DomainRef::Id("default".into()),
            },
            None => ScopeRequest::Unscoped,
        },
    }
}

async fn new_user(id: &Identity, name: &str, password: &str) -> User {
    id.create_user(
        User {
            id: new_id(),
            name: name.into(),
            domain_id: "default".into(),
            enabled: true,
            default_project_id: None,
            extra: Extra::new(),
            options: Extra::new(),
            created_at: Utc::now(),
            last_active_at: None,
            failed_auth_count: 0,
            failed_auth_at: None,
            password_expires_at: None,
        },
        Some(password.into()),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_admin_gets_implied_roles() {
    let (_d, id) = open().await;
    let issued = id
        .issue_token(&password_auth("admin", "secret", Some("admin")))
        .await
        .unwrap();
    let mut roles: Vec<String> = issued
        .validated
        .roles
        .iter()
        .map(|r| r.name.clone())
        .collect();
    roles.sort();
    assert_eq!(roles, vec!["admin", "manager", "member", "reader"]);
    let again = bootstrap(
        &id,
        &BootstrapSpec {
            admin_password: "secret".into(),
            region_id: "RegionOne".into(),
            services: vec![],
            demo_password: Some("secret".into()),
            service_users: Vec::new(),
        },
    )
    .await
    .unwrap();
    assert!(again.created.is_empty(), "{:?}", again.created);
}

#[tokio::test]
async fn password_change_revokes_old_tokens_and_not_new_ones() {
    let (_d, id) = open().await;
    let u = new_user(&id, "alice", "one").await;
    let old = id
        .issue_token(&password_auth("alice", "one", None))
        .await
        .unwrap();
    assert!(id.validate_token(&old.token).await.is_ok());
    id.change_own_password(&u.id, "one", "two").await.unwrap();
    // Within the same second as the change, as a client would do right away.
    let new = id
        .issue_token(&password_auth("alice", "two", None))
        .await
        .unwrap();
    assert!(matches!(
        id.validate_token(&old.token).await,
        Err(IdentityError::TokenNotFound(_))
    ));
    assert!(id.validate_token(&new.token).await.is_ok());
    // A second change right away still catches the token minted after the first.
    id.change_own_password(&u.id, "two", "three").await.unwrap();
    assert!(id.validate_token(&new.token).await.is_err());
    let newest = id
        .issue_token(&password_auth("alice", "three", None))
        .await
        .unwrap();
    assert!(id.validate_token(&newest.token).await.is_ok());
    assert!(matches!(
        id.issue_token(&password_auth("alice", "two", None)).await,
        Err(IdentityError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn effective_roles_through_groups_inheritance_and_implications() {
    let (_d, id) = open().await;
    let u = new_user(&id, "bob", "pw").await;
    let parent = id.find_project_by_name("default", "demo").await.unwrap();
    let child = id
        .create_project(Project {
            id: new_id(),
            name: "child".into(),
            domain_id: "default".into(),
            parent_id: Some(parent.id.clone()),
            description: None,
            enabled: true,
            extra: Extra::new(),
            options: Extra::new(),
            tags: vec![],
        })
        .await
        .unwrap();
    let g = id
        .create_group(Group {
            id: new_id(),
            name: "ops".into(),
            domain_id: "default".into(),
            description: None,
            extra: Extra::new(),
        })
        .await
        .unwrap();
    id.add_user_to_group(&u.id, &g.id).await.unwrap();
    let member = id.find_role_by_name("member", None).await.unwrap();
    // The group gets member on the parent, inherited to its subtree only.
    id.create_grant(&Assignment {
        actor: Actor::Group(g.id.clone()),
        target: Target::Project(parent.id.clone()),
        role_id: member.id.clone(),
        inherited: true,
    })
    .await
    .unwrap();
    let names = |rs: Vec<Role>| {
        let mut v: Vec<String> = rs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    };
    assert!(
        id.effective_roles(&u.id, &Target::Project(parent.id.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        names(
            id.effective_roles(&u.id, &Target::Project(child.id.clone()))
                .await
                .unwrap()
        ),
        vec!["member", "reader"]
    );
    // Leaving the group takes the roles away, and tokens scoped with them stop validating.
    let tok = id
        .issue_token(&password_auth("bob", "pw", Some("child")))
        .await
        .unwrap();
    id.remove_user_from_group(&u.id, &g.id).await.unwrap();
    assert!(id.validate_token(&tok.token).await.is_err());
}

#[tokio::test]
async fn lockout_after_failures_and_same_message_for_unknown_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = IdentityConfig::defaults(dir.path());
    cfg.password_hash_rounds = 4;
    cfg.lockout_failure_attempts = 2;
    cfg.lockout_duration = 60;
    let id = Identity::open(cfg).await.unwrap();
    bootstrap(
        &id,
        &BootstrapSpec {
            admin_password: "secret".into(),
            region_id: "RegionOne".into(),
            services: vec![],
            demo_password: None,
            service_users: Vec::new(),
        },
    )
    .await
    .unwrap();
    new_user(&id, "carol", "right").await;
    let wrong = id
        .issue_token(&password_auth("carol", "wrong", None))
        .await
        .unwrap_err();
    let unknown = id
        .issue_token(&password_auth("nobody", "wrong", None))
        .await
        .unwrap_err();
    assert_eq!(wrong.to_fault(false), unknown.to_fault(false));
    id.issue_token(&password_auth("carol", "wrong", None))
        .await
        .unwrap_err();
    let locked = id
        .issue_token(&password_auth("carol", "right", None))
        .await
        .unwrap_err();
    assert!(locked.to_string().contains("locked"), "{locked}");
}
