//! The network service core: Neutron's rules, no HTTP.
//!
//! Every change runs in the database's serialised write transaction (read, check, write):
//! quota counts, cidr overlap and address checks and the write cannot interleave with another
//! request's. One file per resource; [`attrs`] holds neutron-lib's attribute validation.

pub mod agents;
pub mod attrs;
mod auto_allocate;
mod dataplane_view;
mod floating_ips;
mod guest_lookup;
mod networks;
mod ports;
mod quotas;
mod routers;
mod security_groups;
mod subnet_pools;
mod subnets;

pub use attrs::resource_body;
pub use auto_allocate::DRY_RUN;
pub use floating_ips::FLOATINGIP_KEYS;
pub use guest_lookup::AddressOwner;
pub use networks::NETWORK_KEYS;
pub use ports::{PORT_KEYS, port_not_found};
pub use routers::ROUTER_KEYS;
pub use security_groups::{SECURITY_GROUP_KEYS, SECURITY_GROUP_RULE_KEYS};
pub use subnet_pools::{SUBNETPOOL_KEYS, subnetpool_not_found};
pub use subnets::SUBNET_KEYS;

use common::auth::AuthContext;
use common::db::Database;
use common::policy::{Credentials, Enforcer};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::config::NetworkConfig;
use crate::error::{NetError, Result};
use crate::model::{Network, Port, Subnet};
use crate::store;
/// Policy defaults Neutron registers (secure RBAC) for what kumo implements, as data.
pub const POLICY_DEFAULTS: &str = include_str!("../policy_defaults.yaml");

pub const NETWORK: &str = "network";
pub const SUBNET: &str = "subnet";
pub const PORT: &str = "port";
pub const SECURITY_GROUP: &str = "security_group";
pub const SECURITY_GROUP_RULE: &str = "security_group_rule";
pub const ROUTER: &str = "router";
pub const FLOATINGIP: &str = "floatingip";
pub const SUBNETPOOL: &str = "subnetpool";
/// Resources with a quota, in the order Neutron lists them.
pub const QUOTA_RESOURCES: &[&str] = &[
    NETWORK,
    SUBNET,
    PORT,
    ROUTER,
    FLOATINGIP,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
];

/// Whose data planes a batch of changes concerns. The agents that serve the networks (DHCP,
/// routers) care about every change; a compute host's agent about `all`, its own host in
/// `hosts`, and, when it filters packets, `members` (a security group's members changed,
/// which remote-group rules on any host name).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeScope {
    pub all: bool,
    pub hosts: std::collections::BTreeSet<String>,
    pub members: bool,
}

impl ChangeScope {
    /// Whether the agent of `host` (which `serves` the networks, and filters packets when
    /// `filters`) must look again.
    pub fn concerns(&self, host: &str, serves: bool, filters: bool) -> bool {
        serves || self.all || self.hosts.contains(host) || (filters && self.members)
    }
}

pub struct NetworkService {
    pub cfg: NetworkConfig,
    pub(crate) db: Database,
    pub(crate) policy: Enforcer,
    /// Bumped after every committed change the data plane may care about.
    changes: tokio::sync::watch::Sender<u64>,
    /// Whose data planes the changes since the last [`NetworkService::take_change_scope`]
    /// concern (for the agents of other processes).
    change_scope: std::sync::Mutex<ChangeScope>,
    /// Held while a project's auto-allocated topology is looked up and built, so concurrent
    /// first requests build one (kumo is one process).
    auto_allocate_lock: tokio::sync::Mutex<()>,
    /// The agent's last snapshot and the change counter it was read at
    /// (`dataplane_view::SnapshotCache`).
    pub(crate) snapshot_cache: tokio::sync::Mutex<Option<dataplane_view::SnapshotCache>>,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService")
            .field("db", &self.db.url())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Db(#[from] common::db::DbError),
    #[error("migrating the network database failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("policy: {0}")]
    Policy(String),
}

/// The row `id` of `kind`, parsed: the one place a stored body becomes a resource.
pub(crate) async fn read<T: serde::de::DeserializeOwned, C: sea_orm::ConnectionTrait>(
    c: &C,
    kind: &str,
    id: &str,
) -> Result<Option<T>> {
    match store::get(c, kind, id).await? {
        Some(b) => Ok(Some(serde_json::from_str(&b)?)),
        None => Ok(None),
    }
}

fn parse_rows<T: serde::de::DeserializeOwned>(rows: Vec<String>) -> Result<Vec<T>> {
    rows.iter()
        .map(|b| serde_json::from_str(b).map_err(NetError::from))
        .collect()
}

/// Every row of `kind`, parsed, oldest first.
pub(crate) async fn read_all<T: serde::de::DeserializeOwned, C: sea_orm::ConnectionTrait>(
    c: &C,
    kind: &str,
) -> Result<Vec<T>> {
    parse_rows(store::list(c, kind).await?)
}

/// The rows of `kind` under `parent`, parsed, oldest first.
pub(crate) async fn read_children<T: serde::de::DeserializeOwned, C: sea_orm::ConnectionTrait>(
    c: &C,
    kind: &str,
    parent: &str,
) -> Result<Vec<T>> {
    parse_rows(store::children(c, kind, parent).await?)
}

impl NetworkService {
    /// Open the service: database (migrated), policy.
    pub async fn open(cfg: NetworkConfig) -> std::result::Result<Arc<Self>, OpenError> {
        let db = Database::connect(&cfg.database_url).await?;
        store::migrate(db.conn())
            .await
            .map_err(OpenError::Migrate)?;
        let policy = load_policy(&cfg).map_err(OpenError::Policy)?;
        let (changes, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Self {
            cfg,
            db,
            policy,
            changes,
            change_scope: std::sync::Mutex::new(ChangeScope::default()),
            auto_allocate_lock: tokio::sync::Mutex::new(()),
            snapshot_cache: tokio::sync::Mutex::new(None),
        }))
    }

    /// Begin a write transaction: the change counter is bumped first, so the rows it writes
    /// carry a counter value the agents' snapshots can ask for ([`store::bump`]).
    pub(crate) async fn write(&self) -> Result<common::db::WriteTxn<'_>> {
        let w = self.db.write().await?;
        store::bump(&*w).await?;
        Ok(w)
    }

    /// A receiver that sees a new value after each committed change (for the data plane).
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Say that the desired data plane may have changed (call after commit), on any host.
    pub(crate) fn changed(&self) {
        if let Ok(mut s) = self.change_scope.lock() {
            s.all = true;
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ports changed (call after commit): the hosts they are (or were) bound to wire them;
    /// other hosts only care when their filters name the ports' groups (`members`).
    pub(crate) fn ports_changed<'a>(&self, ports: impl IntoIterator<Item = &'a Port>) {
        if let Ok(mut s) = self.change_scope.lock() {
            for p in ports {
                if !p.binding_host_id.is_empty() {
                    s.hosts.insert(p.binding_host_id.clone());
                }
                if let Some(h) = crate::hostplan::migrating_to(p) {
                    s.hosts.insert(h.to_string());
                }
                s.members |= !p.security_groups.is_empty();
            }
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// What the changes since the last call concern (and forget it).
    pub fn take_change_scope(&self) -> ChangeScope {
        self.change_scope
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or(ChangeScope {
                all: true,
                ..ChangeScope::default()
            })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    // ------------------------------------------------------------ policy

    pub(crate) fn creds(ctx: &AuthContext) -> Credentials {
        Credentials::from_auth(ctx)
    }

    pub fn is_admin(&self, ctx: &AuthContext) -> bool {
        self.policy
            .check("context_is_admin", &json!({}), &Self::creds(ctx))
    }

    pub fn allowed(&self, ctx: &AuthContext, action: &str, target: &Value) -> bool {
        self.policy.check(action, target, &Self::creds(ctx))
    }

    /// Enforce `action` and the `action:attr` rules of the attributes set, as Neutron's
    /// policy engine combines them: "(rule:a and rule:a:x) is disallowed by policy".
    pub fn authorize(
        &self,
        ctx: &AuthContext,
        action: &str,
        attrs: &[&str],
        target: &Value,
    ) -> Result<()> {
        let mut rules = vec![action.to_string()];
        rules.extend(attrs.iter().map(|a| format!("{action}:{a}")));
        let ok = rules.iter().all(|r| self.allowed(ctx, r, target));
        if ok {
            return Ok(());
        }
        tracing::info!(%action, "network policy denied");
        let text = if rules.len() == 1 {
            format!("rule:{action}")
        } else {
            format!(
                "({})",
                rules
                    .iter()
                    .map(|r| format!("rule:{r}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        };
        Err(NetError::policy(&text))
    }

    pub(crate) fn net_target(n: &Network) -> Value {
        json!({
            "id": n.id, "project_id": n.project_id, "tenant_id": n.project_id,
            "shared": if n.shared { "True" } else { "False" },
            "router:external": if n.external { "True" } else { "False" },
            "name": n.name,
        })
    }

    pub(crate) fn subnet_target(s: &Subnet, net: &Network) -> Value {
        json!({
            "id": s.id, "project_id": s.project_id, "tenant_id": s.project_id,
            "network_id": s.network_id,
            "network:project_id": net.project_id, "network:tenant_id": net.project_id,
            "shared": if net.shared { "True" } else { "False" },
            "router:external": if net.external { "True" } else { "False" },
        })
    }

    /// Neutron's query scoping: admin sees everything; others their project's, shared and
    /// external networks.
    pub(crate) fn net_visible(&self, ctx: &AuthContext, n: &Network) -> bool {
        self.is_admin(ctx) || ctx.project_id() == Some(&n.project_id) || n.shared || n.external
    }

    pub(crate) fn net_readable(&self, ctx: &AuthContext, n: &Network) -> bool {
        self.net_visible(ctx, n) && self.allowed(ctx, "get_network", &Self::net_target(n))
    }

    pub(crate) async fn load_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Network>> {
        read(c, NETWORK, id).await
    }

    pub(crate) async fn load_subnet<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<Subnet>> {
        read(c, SUBNET, id).await
    }

    /// The network `id` if the caller may see it, else NetworkNotFound.
    pub(crate) async fn lookup_network<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Network> {
        match self.load_network(c, id).await? {
            Some(n) if self.net_readable(ctx, &n) => Ok(n),
            _ => Err(NetError::network_not_found(id)),
        }
    }

    pub(crate) async fn subnet_ids<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        net: &str,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for b in store::children(c, SUBNET, net).await? {
            let s: Subnet = serde_json::from_str(&b)?;
            ids.push(s.id);
        }
        Ok(ids)
    }

    pub(crate) async fn check_quota<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        project: &str,
        resource: &str,
        adding: i64,
    ) -> Result<()> {
        let limit = self.quota_limits(c, project).await?[resource];
        if limit >= 0 && store::count(c, resource, project).await? + adding > limit {
            return Err(NetError::over_quota(resource));
        }
        Ok(())
    }
}

fn load_policy(cfg: &NetworkConfig) -> std::result::Result<Enforcer, String> {
    let mut b = Enforcer::builder()
        .defaults_yaml(POLICY_DEFAULTS)
        .map_err(|e| e.to_string())?
        .enforce_scope(cfg.enforce_scope);
    if cfg.policy_file.exists() {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("cannot read {}: {e}", cfg.policy_file.display()))?;
        b = b
            .overrides_file(&text)
            .map_err(|e| format!("{}: {e}", cfg.policy_file.display()))?;
        tracing::info!(file = %cfg.policy_file.display(), "network policy overrides loaded");
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use common::auth::{AuthContext, RoleRef, Scope};
    use serde_json::Map;

    pub(crate) fn ctx(project: &str, roles: &[&str]) -> AuthContext {
        AuthContext {
            user_id: format!("u-{project}"),
            user_name: project.into(),
            user_domain_id: "default".into(),
            user_domain_name: "Default".into(),
            scope: Scope::Project {
                id: project.into(),
                name: project.into(),
                domain_id: "default".into(),
                domain_name: "Default".into(),
            },
            roles: roles
                .iter()
                .map(|r| RoleRef {
                    id: (*r).into(),
                    name: (*r).into(),
                })
                .collect(),
            methods: vec!["password".into()],
            audit_ids: vec![],
            issued_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
            app_cred: None,
            is_admin_project: false,
        }
    }

    pub(crate) async fn svc(dir: &std::path::Path) -> Arc<NetworkService> {
        NetworkService::open(NetworkConfig::defaults(dir))
            .await
            .unwrap()
    }

    pub(crate) fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn networks_policy_and_visibility() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        let bob = ctx("pb", &["member", "reader"]);
        let e = s
            .create_networks(&alice, &[&obj(json!({"shared": true}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        assert_eq!(
            e.message,
            "(rule:create_network and rule:create_network:shared) is disallowed by policy"
        );
        let own = s
            .create_networks(&alice, &[&obj(json!({"name": "a"}))])
            .await
            .unwrap();
        let ext = s
            .create_networks(&admin, &[&obj(json!({"router:external": true}))])
            .await
            .unwrap();
        let id = own[0]["id"].as_str().unwrap();
        let ext_id = ext[0]["id"].as_str().unwrap();
        assert_eq!(s.list_networks(&alice).await.unwrap().len(), 2);
        assert_eq!(s.list_networks(&bob).await.unwrap().len(), 1);
        assert_eq!(
            s.get_network(&bob, id).await.unwrap_err().kind,
            "NetworkNotFound"
        );
        assert!(s.get_network(&bob, ext_id).await.is_ok());
        let e = s.delete_network(&bob, ext_id, None).await.unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        // subnets: defaults, overlap, cascade
        let sub = s
            .create_subnets(
                &alice,
                &[&obj(
                    json!({"network_id": id, "ip_version": 4, "cidr": "10.0.0.0/24"}),
                )],
            )
            .await
            .unwrap();
        assert_eq!(sub[0]["gateway_ip"], "10.0.0.1");
        assert_eq!(
            sub[0]["allocation_pools"],
            json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
        );
        let e = s
            .create_subnets(
                &alice,
                &[&obj(
                    json!({"network_id": id, "ip_version": 4, "cidr": "10.0.0.128/25"}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        let e = s
            .create_subnets(
                &bob,
                &[&obj(
                    json!({"network_id": ext_id, "ip_version": 4, "cidr": "10.9.0.0/24"}),
                )],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        assert_eq!(
            s.get_network(&alice, id).await.unwrap()["subnets"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        s.delete_network(&alice, id, None).await.unwrap();
        assert!(s.list_subnets(&admin).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn quotas() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        s.update_quota(&admin, "pa", &obj(json!({"network": 1})))
            .await
            .unwrap();
        s.create_networks(&alice, &[&obj(json!({}))]).await.unwrap();
        let e = s
            .create_networks(&alice, &[&obj(json!({}))])
            .await
            .unwrap_err();
        assert_eq!(e.message, "Quota exceeded for resources: ['network'].");
        assert_eq!(e.status, http::StatusCode::CONFLICT);
        assert!(
            s.update_quota(&alice, "pa", &obj(json!({"network": 9})))
                .await
                .is_err()
        );
        assert!(
            s.update_quota(&admin, "pa", &obj(json!({"bogus": 9})))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn provider_attributes() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = NetworkConfig::defaults(d.path());
        cfg.segments.vlan_ranges = crate::segments::parse_vlan_ranges("physnet1:100:199").unwrap();
        cfg.segments.vni_ranges = vec![(1, 2)];
        let s = NetworkService::open(cfg).await.unwrap();
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        // Tenant networks get the next free VNI; members see no provider attributes.
        let a = s.create_networks(&alice, &[&obj(json!({}))]).await.unwrap();
        assert!(a[0].get("provider:network_type").is_none());
        let id = a[0]["id"].as_str().unwrap().to_string();
        let shown = s.get_network(&admin, &id).await.unwrap();
        assert_eq!(shown["provider:network_type"], "vxlan");
        assert_eq!(shown["provider:segmentation_id"], 1);
        assert_eq!(shown["provider:physical_network"], Value::Null);
        let e = s
            .create_networks(&alice, &[&obj(json!({"provider:network_type": "vlan"}))])
            .await
            .unwrap_err();
        assert_eq!(e.kind, "PolicyNotAuthorized");
        let v = s
            .create_networks(
                &admin,
                &[&obj(json!({"provider:network_type": "vlan",
                    "provider:physical_network": "physnet1", "provider:segmentation_id": 150}))],
            )
            .await
            .unwrap();
        assert_eq!(v[0]["provider:segmentation_id"], 150);
        let e = s
            .create_networks(
                &admin,
                &[&obj(json!({"provider:network_type": "vlan",
                    "provider:physical_network": "physnet1", "provider:segmentation_id": "150"}))],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "VlanIdInUse");
        // The last VNI, then none: 503 NoNetworkAvailable; a deleted network frees its VNI.
        s.create_networks(&alice, &[&obj(json!({}))]).await.unwrap();
        let e = s
            .create_networks(&alice, &[&obj(json!({}))])
            .await
            .unwrap_err();
        assert_eq!(e.status, http::StatusCode::SERVICE_UNAVAILABLE);
        s.delete_network(&alice, &id, None).await.unwrap();
        let again = s.create_networks(&admin, &[&obj(json!({}))]).await.unwrap();
        assert_eq!(again[0]["provider:segmentation_id"], 1);
        // Updates: the type cannot change; the id can while no port is bound.
        let vid = v[0]["id"].as_str().unwrap();
        let e = s
            .update_network(
                &admin,
                vid,
                &obj(json!({"provider:network_type": "vxlan"})),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        let u = s
            .update_network(
                &admin,
                vid,
                &obj(json!({"provider:segmentation_id": 160})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(u["provider:segmentation_id"], 160);
        let e = s
            .update_network(
                &alice,
                again[0]["id"].as_str().unwrap(),
                &obj(json!({"provider:segmentation_id": 5})),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "NetworkNotFound");
    }
}
