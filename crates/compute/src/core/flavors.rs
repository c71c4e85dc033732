//! Flavor changes after create: description (2.55), extra specs, and the projects a private
//! flavor is open to.

use common::auth::AuthContext;
use serde_json::json;
use std::collections::BTreeMap;

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::Flavor;
use crate::store::flavors as fs;

pub fn extra_spec_not_found(flavorid: &str, key: &str) -> ComputeError {
    ComputeError::NotFound(format!(
        "Flavor {flavorid} has no extra specs with key {key}."
    ))
}

impl ComputeService {
    /// A flavor by API id whatever its visibility (Nova's `common.get_flavor`).
    pub async fn flavor(&self, flavorid: &str) -> Result<Flavor> {
        fs::get_flavor(self.db.conn(), flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))
    }

    /// `PUT /flavors/{id}`: the description is all that changes.
    pub async fn update_flavor_description(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
        description: Option<String>,
    ) -> Result<Flavor> {
        self.authorize(ctx, "os_compute_api:os-flavor-manage:update", &json!({}))?;
        let txn = self.db.write().await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        fs::update_flavor_description(&*txn, f.id, description).await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        txn.commit().await?;
        Ok(f)
    }

    /// Whether the caller sees extra specs in flavor bodies (2.61+).
    pub fn sees_extra_specs(&self, ctx: &AuthContext) -> bool {
        self.allowed(
            ctx,
            "os_compute_api:os-flavor-extra-specs:index",
            &Self::own_target(ctx),
        )
    }

    pub async fn extra_specs(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
    ) -> Result<BTreeMap<String, String>> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-extra-specs:index",
            &json!({"project_id": ctx.project_id()}),
        )?;
        Ok(self.flavor(flavorid).await?.extra_specs)
    }

    pub async fn extra_spec(&self, ctx: &AuthContext, flavorid: &str, key: &str) -> Result<String> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-extra-specs:show",
            &json!({"project_id": ctx.project_id()}),
        )?;
        self.flavor(flavorid)
            .await?
            .extra_specs
            .remove(key)
            .ok_or_else(|| extra_spec_not_found(flavorid, key))
    }

    /// Add or change extra specs (`create` for the POST of many, `update` for the PUT of one).
    pub async fn set_extra_specs(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
        specs: &BTreeMap<String, String>,
        update: bool,
    ) -> Result<()> {
        let rule = if update {
            "os_compute_api:os-flavor-extra-specs:update"
        } else {
            "os_compute_api:os-flavor-extra-specs:create"
        };
        self.authorize(ctx, rule, &json!({}))?;
        let txn = self.db.write().await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        for (k, v) in specs {
            fs::set_extra_spec(&*txn, f.id, k, v).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    pub async fn delete_extra_spec(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
        key: &str,
    ) -> Result<()> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-extra-specs:delete",
            &json!({}),
        )?;
        let txn = self.db.write().await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        if !fs::delete_extra_spec(&*txn, f.id, key).await? {
            return Err(extra_spec_not_found(flavorid, key));
        }
        txn.commit().await?;
        Ok(())
    }

    /// The projects of a private flavor (404 for a public one, as Nova).
    pub async fn flavor_access(&self, ctx: &AuthContext, flavorid: &str) -> Result<Vec<String>> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-access",
            &Self::own_target(ctx),
        )?;
        let f = self.flavor(flavorid).await?;
        if f.is_public {
            return Err(ComputeError::NotFound(
                "Access list not available for public flavors.".into(),
            ));
        }
        fs::flavor_projects(self.db.conn(), f.id).await
    }

    /// `addTenantAccess`; returns the flavor's projects after it.
    pub async fn add_flavor_access(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
        project_id: &str,
        refuse_public: bool,
    ) -> Result<Vec<String>> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-access:add_tenant_access",
            &json!({}),
        )?;
        let txn = self.db.write().await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        if refuse_public && f.is_public {
            return Err(ComputeError::conflict(
                "Can not add access to a public flavor.",
            ));
        }
        let projects = fs::flavor_projects(&*txn, f.id).await?;
        if projects.iter().any(|p| p == project_id) {
            // Nova names the flavor by its row id here.
            return Err(ComputeError::conflict(format!(
                "Flavor access already exists for flavor {} and project {project_id} combination.",
                f.id
            )));
        }
        fs::add_flavor_project(&*txn, f.id, project_id).await?;
        let projects = fs::flavor_projects(&*txn, f.id).await?;
        txn.commit().await?;
        Ok(projects)
    }

    /// `removeTenantAccess`; returns the flavor's projects after it.
    pub async fn remove_flavor_access(
        &self,
        ctx: &AuthContext,
        flavorid: &str,
        project_id: &str,
    ) -> Result<Vec<String>> {
        self.authorize(
            ctx,
            "os_compute_api:os-flavor-access:remove_tenant_access",
            &json!({}),
        )?;
        let txn = self.db.write().await?;
        let f = fs::get_flavor(&*txn, flavorid)
            .await?
            .ok_or_else(|| ComputeError::flavor_not_found(flavorid))?;
        if !fs::remove_flavor_project(&*txn, f.id, project_id).await? {
            return Err(ComputeError::NotFound(format!(
                "Flavor access not found for {} / {project_id} combination.",
                f.id
            )));
        }
        let projects = fs::flavor_projects(&*txn, f.id).await?;
        txn.commit().await?;
        Ok(projects)
    }
}
