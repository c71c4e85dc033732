//! `kumo bootstrap`: the identity state a fresh cloud needs, created idempotently
//! (as `keystone-manage bootstrap`): the default domain, the admin/manager/member/reader/
//! service roles with their implications, the admin user and project with the admin role
//! on the project and on the system, the `service` project, a region, and a catalog
//! entry for every enabled service.

use chrono::Utc;

use crate::core::Identity;
use crate::error::Result;
use crate::model::*;
use crate::password;
use crate::store;

/// One service in the catalog.
#[derive(Debug, Clone)]
pub struct CatalogService {
    pub service_type: String,
    pub name: String,
    pub description: String,
    /// The same URL for public, internal and admin (one listener all-in-one).
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct BootstrapSpec {
    pub admin_password: String,
    pub region_id: String,
    pub services: Vec<CatalogService>,
    /// Create the `demo` project and user (member), with this password.
    pub demo_password: Option<String>,
    /// The services' own users (`nova` ...), in the `service` project with the `admin` and
    /// `service` roles there, as devstack makes them: services call each other with them.
    pub service_users: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct BootstrapReport {
    pub admin_user_id: String,
    pub admin_project_id: String,
    pub demo_user_id: Option<String>,
    pub demo_project_id: Option<String>,
    pub created: Vec<String>,
}

/// Keystone's bootstrap roles and the chain admin → manager → member → reader.
const ROLE_CHAIN: &[&str] = &["admin", "manager", "member", "reader"];

async fn ensure_role(id: &Identity, name: &str, report: &mut BootstrapReport) -> Result<Role> {
    if let Ok(r) = id.find_role_by_name(name, None).await {
        return Ok(r);
    }
    report.created.push(format!("role {name}"));
    id.create_role(Role {
        id: new_id(),
        name: name.into(),
        domain_id: None,
        description: None,
        extra: Extra::new(),
        options: Extra::new(),
    })
    .await
}

async fn ensure_project(
    id: &Identity,
    name: &str,
    description: &str,
    report: &mut BootstrapReport,
) -> Result<Project> {
    if let Ok(p) = id.find_project_by_name(DEFAULT_DOMAIN_ID, name).await {
        return Ok(p);
    }
    report.created.push(format!("project {name}"));
    id.create_project(Project {
        id: new_id(),
        name: name.into(),
        domain_id: DEFAULT_DOMAIN_ID.into(),
        parent_id: None,
        description: Some(description.into()),
        enabled: true,
        extra: Extra::new(),
        options: Extra::new(),
        tags: vec![],
    })
    .await
}

/// Create the user, or make sure its password is `password` (bootstrap owns it).
async fn ensure_user(
    id: &Identity,
    name: &str,
    password: &str,
    report: &mut BootstrapReport,
) -> Result<User> {
    if let Ok(u) = id.find_user_by_name(DEFAULT_DOMAIN_ID, name).await {
        let current = store::current_password(id.database().conn(), &u.id).await?;
        let same = match current {
            Some(c) => password::verify(password, &c.hash).await,
            None => false,
        };
        if !same || !u.enabled {
            report
                .created
                .push(format!("password of user {name} reset"));
            let mut fixed = u.clone();
            fixed.enabled = true;
            return id.update_user(fixed, Some(password.into())).await;
        }
        return Ok(u);
    }
    report.created.push(format!("user {name}"));
    id.create_user(
        User {
            id: new_id(),
            name: name.into(),
            domain_id: DEFAULT_DOMAIN_ID.into(),
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
}

async fn ensure_grant(id: &Identity, a: Assignment) -> Result<()> {
    if id.check_grant(&a).await.is_err() {
        id.create_grant(&a).await?;
    }
    Ok(())
}

pub async fn bootstrap(id: &Identity, spec: &BootstrapSpec) -> Result<BootstrapReport> {
    let mut report = BootstrapReport::default();
    if id.get_domain(DEFAULT_DOMAIN_ID).await.is_err() {
        report.created.push("domain Default".into());
        id.create_domain(Domain {
            id: DEFAULT_DOMAIN_ID.into(),
            name: "Default".into(),
            description: Some("The default domain".into()),
            enabled: true,
            extra: Extra::new(),
            options: Extra::new(),
        })
        .await?;
    }
    let mut chain = Vec::new();
    for name in ROLE_CHAIN {
        chain.push(ensure_role(id, name, &mut report).await?);
    }
    for pair in chain.windows(2) {
        if id.get_implied_role(&pair[0].id, &pair[1].id).await.is_err() {
            id.create_implied_role(&pair[0].id, &pair[1].id).await?;
        }
    }
    let admin_role = chain[0].clone();
    let member_role = chain[2].clone();
    let service_role = ensure_role(id, "service", &mut report).await?;

    let admin_project = ensure_project(
        id,
        "admin",
        "Bootstrap project for initializing the cloud.",
        &mut report,
    )
    .await?;
    let service_project = ensure_project(
        id,
        "service",
        "Project of the services' own users.",
        &mut report,
    )
    .await?;
    for (name, password) in &spec.service_users {
        let user = ensure_user(id, name, password, &mut report).await?;
        for role in [&admin_role, &service_role] {
            ensure_grant(
                id,
                Assignment {
                    actor: Actor::User(user.id.clone()),
                    target: Target::Project(service_project.id.clone()),
                    role_id: role.id.clone(),
                    inherited: false,
                },
            )
            .await?;
        }
    }
    let admin = ensure_user(id, "admin", &spec.admin_password, &mut report).await?;
    ensure_grant(
        id,
        Assignment {
            actor: Actor::User(admin.id.clone()),
            target: Target::Project(admin_project.id.clone()),
            role_id: admin_role.id.clone(),
            inherited: false,
        },
    )
    .await?;
    ensure_grant(
        id,
        Assignment {
            actor: Actor::User(admin.id.clone()),
            target: Target::System,
            role_id: admin_role.id.clone(),
            inherited: false,
        },
    )
    .await?;
    report.admin_user_id = admin.id.clone();
    report.admin_project_id = admin_project.id.clone();

    if id.get_region(&spec.region_id).await.is_err() {
        report.created.push(format!("region {}", spec.region_id));
        id.create_region(Region {
            id: spec.region_id.clone(),
            description: String::new(),
            parent_region_id: None,
            extra: Extra::new(),
        })
        .await?;
    }
    for svc in &spec.services {
        ensure_catalog_entry(id, spec, svc, &mut report).await?;
    }

    if let Some(pw) = &spec.demo_password {
        let demo_project = ensure_project(id, "demo", "Demo project.", &mut report).await?;
        let demo = ensure_user(id, "demo", pw, &mut report).await?;
        ensure_grant(
            id,
            Assignment {
                actor: Actor::User(demo.id.clone()),
                target: Target::Project(demo_project.id.clone()),
                role_id: member_role.id.clone(),
                inherited: false,
            },
        )
        .await?;
        report.demo_user_id = Some(demo.id);
        report.demo_project_id = Some(demo_project.id);
    }
    Ok(report)
}

/// The service (by type) with its three endpoints at `svc.url`; URLs are updated when
/// the listener moved.
async fn ensure_catalog_entry(
    id: &Identity,
    spec: &BootstrapSpec,
    svc: &CatalogService,
    report: &mut BootstrapReport,
) -> Result<()> {
    let service = match id
        .list_services(Some(&svc.service_type), None)
        .await?
        .into_iter()
        .next()
    {
        Some(s) => s,
        None => {
            report
                .created
                .push(format!("service {} ({})", svc.name, svc.service_type));
            id.create_service(Service {
                id: new_id(),
                service_type: svc.service_type.clone(),
                name: Some(svc.name.clone()),
                description: Some(svc.description.clone()),
                enabled: true,
                extra: Extra::new(),
            })
            .await?
        }
    };
    let existing = id
        .list_endpoints(&store::EndpointFilter {
            service_id: Some(service.id.clone()),
            ..Default::default()
        })
        .await?;
    for iface in crate::core::catalog_interfaces() {
        match existing.iter().find(|e| {
            e.interface == *iface && e.region_id.as_deref() == Some(spec.region_id.as_str())
        }) {
            Some(e) if e.url == svc.url => {}
            Some(e) => {
                report.created.push(format!(
                    "{} {iface} endpoint moved to {}",
                    svc.service_type, svc.url
                ));
                id.update_endpoint(Endpoint {
                    url: svc.url.clone(),
                    ..e.clone()
                })
                .await?;
            }
            None => {
                id.create_endpoint(Endpoint {
                    id: new_id(),
                    interface: (*iface).into(),
                    service_id: service.id.clone(),
                    url: svc.url.clone(),
                    region_id: Some(spec.region_id.clone()),
                    enabled: true,
                    extra: Extra::new(),
                })
                .await?;
            }
        }
    }
    Ok(())
}
