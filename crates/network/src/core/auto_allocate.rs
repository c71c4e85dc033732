//! Auto-allocated topology (`auto-allocated-topology`, Neutron's `services/auto_allocate`): on
//! a project's first `GET /auto-allocated-topology/{project}`, a network with a subnet from
//! each default subnet pool behind a router whose gateway is the default external network
//! (`is_default`); later calls return the same network. Nova asks for it when a server is
//! booted with `networks: auto` and the project has no network.
//!
//! The pieces are made through the ordinary create calls (each its own write transaction, with
//! the caller's policy and quotas, as Neutron makes them with the caller's context); one
//! process-wide lock around the check and the build makes concurrent first calls build once.

use common::auth::AuthContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::NetworkService;
use crate::error::{NetError, Result};
use crate::model::now;
use crate::store;

const TOPOLOGY: &str = "auto_allocated_topology";
/// The `fields` value of a dry run (Neutron's CHECK_REQUIREMENTS).
pub const DRY_RUN: &str = "dry-run";

/// What was built for a project (Neutron's `auto_allocated_topologies` row); its row id is the
/// project's id, so a project has at most one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Topology {
    project_id: String,
    network_id: String,
    router_id: String,
    created_at: String,
}

fn failure(reason: &str) -> NetError {
    NetError::conflict(
        "AutoAllocationFailure",
        format!("Deployment error: {reason}."),
    )
}

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn first_id(made: &[Value]) -> Result<String> {
    made.first()
        .and_then(|v| v["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| NetError::internal("a create returned nothing"))
}

fn response(id: &str, project: &str) -> Value {
    json!({"id": id, "tenant_id": project, "project_id": project})
}

/// Neutron treats a failed step's NotFound, BadRequest or allocation error as the deployment's
/// fault (AutoAllocationFailure); anything else (quota, policy) is the caller's answer.
fn deployment_fault(e: &NetError) -> bool {
    e.status == http::StatusCode::BAD_REQUEST
        || e.status == http::StatusCode::NOT_FOUND
        || e.kind == "SubnetAllocationError"
}

impl NetworkService {
    /// The project the request is about: `None` means the caller's; others need an admin.
    fn topology_project(&self, ctx: &AuthContext, project: &str) -> Result<String> {
        let p = if project == "None" {
            ctx.project_id().unwrap_or_default().to_string()
        } else {
            project.to_string()
        };
        if !self.is_admin(ctx) && ctx.project_id() != Some(p.as_str()) {
            return Err(NetError::new(
                http::StatusCode::FORBIDDEN,
                "NotAuthorized",
                "Not authorized.",
            ));
        }
        Ok(p)
    }

    /// `GET /auto-allocated-topology/{project}` (`fields` = the `fields=` of the query).
    pub async fn get_auto_allocated_topology(
        &self,
        ctx: &AuthContext,
        project: &str,
        fields: &[String],
    ) -> Result<Value> {
        let p = self.topology_project(ctx, project)?;
        self.authorize(
            ctx,
            "get_auto_allocated_topology",
            &[],
            &json!({"project_id": p, "tenant_id": p}),
        )?;
        if fields.iter().any(|f| f == DRY_RUN) {
            self.auto_allocation_requirements(ctx).await?;
            return Ok(response("dry-run=pass", &p));
        }
        if !fields.is_empty() {
            return Err(NetError::bad_request("auto_allocate", "Unrecognized field"));
        }
        let _one_builder = self.auto_allocate_lock.lock().await;
        if let Some(t) = self.stored_topology(&p).await? {
            return Ok(response(&t.network_id, &p));
        }
        let (ext, pools) = self.auto_allocation_requirements(ctx).await?;
        let t = self.build_topology(ctx, &p, &ext, &pools).await?;
        let w = self.write().await?;
        store::insert(
            &*w,
            store::NewRow {
                kind: TOPOLOGY,
                id: &p,
                project_id: &p,
                parent_id: Some(&t.network_id),
                created_at: &t.created_at,
                body: serde_json::to_string(&t)?,
            },
        )
        .await?;
        w.commit().await?;
        Ok(response(&t.network_id, &p))
    }

    /// `DELETE /auto-allocated-topology/{project}`: the router (interfaces, gateway) and the
    /// network go; nothing to delete is fine.
    pub async fn delete_auto_allocated_topology(
        &self,
        ctx: &AuthContext,
        project: &str,
    ) -> Result<()> {
        let p = self.topology_project(ctx, project)?;
        self.authorize(
            ctx,
            "delete_auto_allocated_topology",
            &[],
            &json!({"project_id": p, "tenant_id": p}),
        )?;
        let _one_builder = self.auto_allocate_lock.lock().await;
        let Some(t) = self.stored_topology(&p).await? else {
            return Ok(());
        };
        self.cleanup_topology(ctx, Some(&t.network_id), Some(&t.router_id))
            .await?;
        // The record went with the network (its parent); a network that stayed keeps it.
        Ok(())
    }

    /// The project's topology if its network still exists (a row left by a network the
    /// project deleted itself is dropped, as Neutron's foreign key cascades).
    async fn stored_topology(&self, project: &str) -> Result<Option<Topology>> {
        let c = self.db.conn();
        let Some(t) = super::read::<Topology, _>(c, TOPOLOGY, project).await? else {
            return Ok(None);
        };
        if self.load_network(c, &t.network_id).await?.is_some() {
            return Ok(Some(t));
        }
        let w = self.write().await?;
        store::delete(&*w, project).await?;
        w.commit().await?;
        Ok(None)
    }

    /// The default external network and the default subnet pools (Neutron's
    /// `_check_requirements`), or 409 AutoAllocationFailure.
    async fn auto_allocation_requirements(
        &self,
        ctx: &AuthContext,
    ) -> Result<(String, Vec<(String, u8)>)> {
        let c = self.db.conn();
        let Some(ext) = self.default_external_network(c).await? else {
            return Err(failure("No default router:external network"));
        };
        let mut pools = Vec::new();
        for v in [4, 6] {
            if let Some(p) = self.default_subnetpool(c, ctx, v).await? {
                pools.push((p.id, v));
            }
        }
        if pools.is_empty() {
            return Err(failure("No default subnetpools defined"));
        }
        Ok((ext.id, pools))
    }

    async fn build_topology(
        &self,
        ctx: &AuthContext,
        project: &str,
        ext: &str,
        pools: &[(String, u8)],
    ) -> Result<Topology> {
        let net = self
            .create_networks(
                ctx,
                &[&body(json!({
                    "name": "auto_allocated_network", "project_id": project, "shared": false,
                }))],
            )
            .await?;
        let network_id = first_id(&net)?;
        let mut subnets = Vec::new();
        for (pool, v) in pools {
            let made = self
                .create_subnets(
                    ctx,
                    &[&body(json!({
                        "name": format!("auto_allocated_subnet_v{v}"), "network_id": network_id,
                        "project_id": project, "ip_version": v, "subnetpool_id": pool,
                    }))],
                )
                .await;
            match made {
                Ok(s) => subnets.push(first_id(&s)?),
                Err(e) => {
                    self.cleanup_topology(ctx, Some(&network_id), None).await?;
                    tracing::warn!(%project, error = %e, "auto-allocation: no private network");
                    return Err(if deployment_fault(&e) {
                        failure("Unable to provide project private network")
                    } else {
                        e
                    });
                }
            }
        }
        let router = self
            .create_routers(
                ctx,
                &[&body(json!({
                    "name": "auto_allocated_router", "project_id": project,
                    "admin_state_up": true, "external_gateway_info": {"network_id": ext},
                }))],
            )
            .await;
        let router_id = match router.and_then(|r| first_id(&r)) {
            Ok(id) => id,
            Err(e) => {
                self.cleanup_topology(ctx, Some(&network_id), None).await?;
                return Err(if deployment_fault(&e) {
                    failure("Unable to provide external connectivity")
                } else {
                    e
                });
            }
        };
        for s in &subnets {
            let added = self
                .add_router_interface(ctx, &router_id, &body(json!({"subnet_id": s})))
                .await;
            if let Err(e) = added {
                self.cleanup_topology(ctx, Some(&network_id), Some(&router_id))
                    .await?;
                return Err(if deployment_fault(&e) {
                    failure("Unable to provide external connectivity")
                } else {
                    e
                });
            }
        }
        Ok(Topology {
            project_id: project.to_string(),
            network_id,
            router_id,
            created_at: now(),
        })
    }

    /// Remove what a topology has: the router's interfaces, the router, the network. What is
    /// already gone is skipped (concurrent deletes, a user who removed a piece).
    async fn cleanup_topology(
        &self,
        ctx: &AuthContext,
        network: Option<&str>,
        router: Option<&str>,
    ) -> Result<()> {
        let gone = |r: Result<()>| match r {
            Err(e) if e.status == http::StatusCode::NOT_FOUND => Ok(()),
            other => other,
        };
        if let Some(router) = router {
            if let Some(network) = network {
                for s in self.subnet_ids(self.db.conn(), network).await? {
                    let removed = self
                        .remove_router_interface(ctx, router, &body(json!({"subnet_id": s})))
                        .await
                        .map(|_| ());
                    gone(removed)?;
                }
            }
            gone(self.delete_router(ctx, router, None).await)?;
        }
        if let Some(network) = network {
            gone(self.delete_network(ctx, network, None).await)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ctx, obj, svc};
    use serde_json::json;

    #[tokio::test]
    async fn topology_once_then_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = svc(d.path()).await;
        let admin = ctx("adm", &["admin", "member", "reader"]);
        let alice = ctx("pa", &["member", "reader"]);
        let dry_run = vec![super::DRY_RUN.to_string()];
        let e = s
            .get_auto_allocated_topology(&alice, "pa", &dry_run)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                "AutoAllocationFailure",
                "Deployment error: No default router:external network."
            )
        );
        let ext = s
            .create_networks(
                &admin,
                &[&obj(json!({"router:external": true, "is_default": true}))],
            )
            .await
            .unwrap();
        let ext_id = ext[0]["id"].as_str().unwrap();
        assert_eq!(ext[0]["is_default"], true);
        let e = s
            .create_networks(
                &admin,
                &[&obj(json!({"router:external": true, "is_default": true}))],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "DefaultExternalNetworkExists");
        s.create_subnets(
            &admin,
            &[&obj(
                json!({"network_id": ext_id, "ip_version": 4, "cidr": "172.24.9.0/24"}),
            )],
        )
        .await
        .unwrap();
        let e = s
            .get_auto_allocated_topology(&alice, "pa", &dry_run)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "Deployment error: No default subnetpools defined."
        );
        s.create_subnetpools(
            &admin,
            &[&obj(
                json!({"prefixes": ["10.60.0.0/16"], "default_prefixlen": 26,
                "shared": true, "is_default": true}),
            )],
        )
        .await
        .unwrap();
        assert_eq!(
            s.get_auto_allocated_topology(&alice, "pa", &dry_run)
                .await
                .unwrap()["id"],
            "dry-run=pass"
        );
        let bob = ctx("pb", &["member", "reader"]);
        assert_eq!(
            s.get_auto_allocated_topology(&bob, "pb", &dry_run)
                .await
                .unwrap()["project_id"],
            "pb"
        );
        let e = s
            .get_auto_allocated_topology(&bob, "pa", &[])
            .await
            .unwrap_err();
        assert_eq!(e.status, http::StatusCode::FORBIDDEN);
        let t = s
            .get_auto_allocated_topology(&alice, "pa", &[])
            .await
            .unwrap();
        let again = s
            .get_auto_allocated_topology(&alice, "None", &[])
            .await
            .unwrap();
        assert_eq!(t, again);
        let net_id = t["id"].as_str().unwrap();
        let net = s.get_network(&alice, net_id).await.unwrap();
        assert_eq!(net["name"], "auto_allocated_network");
        assert_eq!(net["is_default"], serde_json::Value::Null);
        let subnets = s.list_subnets(&alice).await.unwrap();
        let mine: Vec<_> = subnets
            .iter()
            .filter(|x| x["network_id"] == net_id)
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0]["cidr"], "10.60.0.0/26");
        let routers = s.list_routers(&alice).await.unwrap();
        assert_eq!(routers.len(), 1);
        assert_eq!(routers[0]["external_gateway_info"]["network_id"], ext_id);
        s.delete_auto_allocated_topology(&alice, "pa")
            .await
            .unwrap();
        assert!(s.list_routers(&alice).await.unwrap().is_empty());
        assert!(s.get_network(&alice, net_id).await.is_err());
        // Nothing left to delete is fine; the next GET builds anew.
        s.delete_auto_allocated_topology(&alice, "pa")
            .await
            .unwrap();
        let t2 = s
            .get_auto_allocated_topology(&alice, "pa", &[])
            .await
            .unwrap();
        assert_ne!(t2["id"], t["id"]);
    }
}
