//! Regions, services, endpoints, and the catalog tokens carry.

use std::sync::Arc;

use super::Identity;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::{self, EndpointFilter};

/// A service with its enabled endpoints, as the token catalog lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub service: Service,
    pub endpoints: Vec<Endpoint>,
}

pub const INTERFACES: &[&str] = &["public", "internal", "admin"];

/// Fill `$(project_id)s`-style placeholders; `None` when a placeholder has no value
/// (Keystone leaves such endpoints out of the catalog).
pub fn format_endpoint_url(
    url: &str,
    project_id: Option<&str>,
    user_id: Option<&str>,
) -> Option<String> {
    if !url.contains("$(") && !url.contains("%(") {
        return Some(url.to_string());
    }
    let mut out = url.replace("$(", "%(");
    for (key, value) in [
        ("tenant_id", project_id),
        ("project_id", project_id),
        ("user_id", user_id),
    ] {
        let pat = format!("%({key})s");
        if out.contains(&pat) {
            out = out.replace(&pat, value?);
        }
    }
    if out.contains("%(") { None } else { Some(out) }
}

fn valid_url(url: &str) -> bool {
    let probe = url.replace("$(", "").replace("%(", "").replace(")s", "");
    (probe.starts_with("http://") || probe.starts_with("https://"))
        && probe.len() > "http://".len()
        && !probe.chars().any(char::is_whitespace)
}

impl Identity {
    // ------------------------------------------------------------ regions

    pub async fn get_region(&self, id: &str) -> Result<Region> {
        store::get_region(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("region", id))
    }

    pub async fn list_regions(&self, parent: Option<&str>) -> Result<Vec<Region>> {
        Ok(store::list_regions(self.db.conn(), parent).await?)
    }

    async fn check_region_parent(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let mut next = parent.map(str::to_string);
        let mut hops = 0;
        while let Some(p) = next {
            if p == id || hops > 64 {
                return Err(IdentityError::validation(format!(
                    "The specified parent region {} would create a circular region hierarchy.",
                    parent.unwrap_or_default()
                )));
            }
            next = self.get_region(&p).await?.parent_region_id;
            hops += 1;
        }
        Ok(())
    }

    pub async fn create_region(&self, r: Region) -> Result<Region> {
        self.check_region_parent(&r.id, r.parent_region_id.as_deref())
            .await?;
        let w = self.db.write().await?;
        if store::get_region(&*w, &r.id).await?.is_some() {
            return Err(IdentityError::Conflict {
                kind: "region",
                details: format!("Duplicate ID, {}", r.id),
            });
        }
        store::insert_region(&*w, &r).await?;
        w.commit().await?;
        self.changed();
        Ok(r)
    }

    pub async fn update_region(&self, r: Region) -> Result<Region> {
        self.check_region_parent(&r.id, r.parent_region_id.as_deref())
            .await?;
        let w = self.db.write().await?;
        store::update_region(&*w, &r).await?;
        w.commit().await?;
        self.changed();
        Ok(r)
    }

    /// Delete a region and its child regions, unless one of them has endpoints.
    pub async fn delete_region(&self, id: &str) -> Result<()> {
        self.get_region(id).await?;
        let all = self.list_regions(None).await?;
        let mut doomed = vec![id.to_string()];
        let mut i = 0;
        while i < doomed.len() {
            let cur = doomed[i].clone();
            doomed.extend(
                all.iter()
                    .filter(|r| r.parent_region_id.as_deref() == Some(cur.as_str()))
                    .map(|r| r.id.clone()),
            );
            i += 1;
        }
        for r in &doomed {
            let eps = store::list_endpoints(
                self.db.conn(),
                &EndpointFilter {
                    region_id: Some(r.clone()),
                    ..Default::default()
                },
            )
            .await?;
            if !eps.is_empty() {
                return Err(IdentityError::Forbidden(format!(
                    "Unable to delete region {id} because it or its child regions have associated endpoints."
                )));
            }
        }
        let w = self.db.write().await?;
        for r in doomed.iter().rev() {
            store::delete_region(&*w, r).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ services

    pub async fn get_service(&self, id: &str) -> Result<Service> {
        store::get_service(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("service", id))
    }

    pub async fn list_services(
        &self,
        service_type: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<Service>> {
        Ok(store::list_services(self.db.conn(), service_type, name).await?)
    }

    pub async fn create_service(&self, s: Service) -> Result<Service> {
        let w = self.db.write().await?;
        store::insert_service(&*w, &s).await?;
        w.commit().await?;
        self.changed();
        Ok(s)
    }

    pub async fn update_service(&self, s: Service) -> Result<Service> {
        let w = self.db.write().await?;
        store::update_service(&*w, &s).await?;
        w.commit().await?;
        self.changed();
        Ok(s)
    }

    pub async fn delete_service(&self, id: &str) -> Result<()> {
        self.get_service(id).await?;
        let w = self.db.write().await?;
        store::delete_service(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ endpoints

    pub async fn get_endpoint(&self, id: &str) -> Result<Endpoint> {
        store::get_endpoint(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("endpoint", id))
    }

    pub async fn list_endpoints(&self, f: &EndpointFilter) -> Result<Vec<Endpoint>> {
        Ok(store::list_endpoints(self.db.conn(), f).await?)
    }

    async fn check_endpoint(&self, e: &Endpoint) -> Result<()> {
        if !INTERFACES.contains(&e.interface.as_str()) {
            return Err(IdentityError::validation(format!(
                "Invalid input for field 'interface': '{}' is not one of ['admin', 'internal', 'public']",
                e.interface
            )));
        }
        if !valid_url(&e.url) {
            return Err(IdentityError::validation(format!(
                "Cannot create an endpoint with an invalid URL: {}.",
                e.url
            )));
        }
        self.get_service(&e.service_id).await?;
        if let Some(r) = &e.region_id {
            self.get_region(r).await?;
        }
        Ok(())
    }

    pub async fn create_endpoint(&self, e: Endpoint) -> Result<Endpoint> {
        self.check_endpoint(&e).await?;
        let w = self.db.write().await?;
        store::insert_endpoint(&*w, &e).await?;
        w.commit().await?;
        self.changed();
        Ok(e)
    }

    pub async fn update_endpoint(&self, e: Endpoint) -> Result<Endpoint> {
        self.check_endpoint(&e).await?;
        let w = self.db.write().await?;
        store::update_endpoint(&*w, &e).await?;
        w.commit().await?;
        self.changed();
        Ok(e)
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<()> {
        self.get_endpoint(id).await?;
        let w = self.db.write().await?;
        store::delete_endpoint(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ catalog

    /// Enabled services with their enabled endpoints, placeholders unresolved; cached.
    pub async fn catalog_template(&self) -> Result<Arc<Vec<CatalogEntry>>> {
        let rev = self.revision();
        if let Some((r, c)) = self.catalog.read().as_ref()
            && *r == rev
        {
            return Ok(c.clone());
        }
        let services = store::list_services(self.db.conn(), None, None).await?;
        let endpoints = store::list_endpoints(self.db.conn(), &EndpointFilter::default()).await?;
        let entries: Vec<CatalogEntry> = services
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| {
                let eps = endpoints
                    .iter()
                    .filter(|e| e.service_id == s.id && e.enabled)
                    .cloned()
                    .collect();
                CatalogEntry {
                    service: s,
                    endpoints: eps,
                }
            })
            .collect();
        let c = Arc::new(entries);
        *self.catalog.write() = Some((rev, c.clone()));
        Ok(c)
    }

    /// The catalog for a token of `user_id` scoped to `project_id`.
    pub async fn catalog_for(
        &self,
        user_id: &str,
        project_id: Option<&str>,
    ) -> Result<Vec<CatalogEntry>> {
        let t = self.catalog_template().await?;
        Ok(t.iter()
            .map(|entry| CatalogEntry {
                service: entry.service.clone(),
                endpoints: entry
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        let url = format_endpoint_url(&e.url, project_id, Some(user_id))?;
                        Some(Endpoint { url, ..e.clone() })
                    })
                    .collect(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_placeholders() {
        assert_eq!(
            format_endpoint_url("http://h/v2.1", None, None).as_deref(),
            Some("http://h/v2.1")
        );
        assert_eq!(
            format_endpoint_url("http://h/v3/$(project_id)s", Some("p1"), None).as_deref(),
            Some("http://h/v3/p1")
        );
        assert_eq!(
            format_endpoint_url("http://h/v1/AUTH_%(tenant_id)s", Some("p1"), None).as_deref(),
            Some("http://h/v1/AUTH_p1")
        );
        assert_eq!(
            format_endpoint_url("http://h/v3/$(project_id)s", None, None),
            None
        );
        assert!(valid_url("http://127.0.0.1:5000/identity"));
        assert!(valid_url("http://h/v3/$(project_id)s"));
        assert!(!valid_url("not a url"));
    }
}
