//! Domains and projects (Keystone's "resource" backend).

use super::Identity;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::{self, ProjectFilter};

/// Keystone's `[resource] max_project_tree_depth`.
const MAX_PROJECT_TREE_DEPTH: usize = 5;

impl Identity {
    // ------------------------------------------------------------ domains

    pub async fn get_domain(&self, id: &str) -> Result<Domain> {
        store::get_domain(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("domain", id))
    }

    pub async fn find_domain_by_name(&self, name: &str) -> Result<Domain> {
        store::find_domain_by_name(self.db.conn(), name)
            .await?
            .ok_or_else(|| IdentityError::not_found("domain", name))
    }

    pub async fn list_domains(
        &self,
        name: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<Vec<Domain>> {
        Ok(store::list_domains(self.db.conn(), name, enabled).await?)
    }

    pub async fn create_domain(&self, d: Domain) -> Result<Domain> {
        let conflict = || domain_conflict(&d.name);
        let w = self.db.write().await?;
        if store::find_domain_by_name(&*w, &d.name).await?.is_some()
            || store::get_domain(&*w, &d.id).await?.is_some()
        {
            return Err(conflict());
        }
        store::insert_domain(&*w, &d)
            .await
            .map_err(super::conflict_or(
                "domain",
                format!("Duplicate entry found with name {}", d.name),
            ))?;
        w.commit().await?;
        self.changed();
        Ok(d)
    }

    pub async fn update_domain(&self, d: Domain) -> Result<Domain> {
        let w = self.db.write().await?;
        if let Some(other) = store::find_domain_by_name(&*w, &d.name).await?
            && other.id != d.id
        {
            return Err(domain_conflict(&d.name));
        }
        store::update_domain(&*w, &d).await?;
        w.commit().await?;
        self.changed();
        Ok(d)
    }

    /// Delete a disabled domain and everything in it.
    pub async fn delete_domain(&self, id: &str) -> Result<()> {
        let d = self.get_domain(id).await?;
        if d.enabled {
            return Err(IdentityError::Forbidden(
                "Cannot delete a domain that is enabled, please disable it first.".into(),
            ));
        }
        let w = self.db.write().await?;
        // Projects leaf-first (parents are referenced by children).
        let mut projects = store::list_projects(
            &*w,
            &ProjectFilter {
                domain_id: Some(id.to_string()),
                ..Default::default()
            },
        )
        .await?;
        while !projects.is_empty() {
            let parents: std::collections::HashSet<String> = projects
                .iter()
                .filter_map(|p| p.parent_id.clone())
                .collect();
            let (leaves, rest): (Vec<Project>, Vec<Project>) =
                projects.into_iter().partition(|p| !parents.contains(&p.id));
            if leaves.is_empty() {
                return Err(IdentityError::Internal(format!(
                    "project cycle in domain {id}"
                )));
            }
            for p in &leaves {
                store::delete_assignments_of(&*w, &p.id).await?;
                store::delete_project(&*w, &p.id).await?;
            }
            projects = rest;
        }
        for u in store::list_users(
            &*w,
            &store::UserFilter {
                domain_id: Some(id.into()),
                ..Default::default()
            },
        )
        .await?
        {
            store::delete_assignments_of(&*w, &u.id).await?;
            store::delete_credentials_of_user(&*w, &u.id).await?;
            store::delete_user(&*w, &u.id).await?;
        }
        for g in store::list_groups(&*w, None, Some(id), None).await? {
            store::delete_assignments_of(&*w, &g.id).await?;
            store::delete_group(&*w, &g.id).await?;
        }
        for r in store::list_roles(&*w, None, Some(Some(id))).await? {
            store::delete_role(&*w, &r.id).await?;
        }
        store::delete_assignments_of(&*w, id).await?;
        store::delete_domain(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ projects

    pub async fn get_project(&self, id: &str) -> Result<Project> {
        store::get_project(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("project", id))
    }

    pub async fn find_project_by_name(&self, domain_id: &str, name: &str) -> Result<Project> {
        store::find_project_by_name(self.db.conn(), domain_id, name)
            .await?
            .ok_or_else(|| IdentityError::not_found("project", name))
    }

    pub async fn list_projects(&self, f: &ProjectFilter) -> Result<Vec<Project>> {
        Ok(store::list_projects(self.db.conn(), f).await?)
    }

    /// Ancestors of a project, nearest first.
    pub async fn project_parents(&self, p: &Project) -> Result<Vec<Project>> {
        let mut out = Vec::new();
        let mut next = p.parent_id.clone();
        while let Some(pid) = next {
            if out.len() > 64 {
                return Err(IdentityError::Internal(format!(
                    "project {} parent loop",
                    p.id
                )));
            }
            let parent = self.get_project(&pid).await?;
            next = parent.parent_id.clone();
            out.push(parent);
        }
        Ok(out)
    }

    /// Every project below `p` (breadth first).
    pub async fn project_subtree(&self, p: &Project) -> Result<Vec<Project>> {
        let all = self
            .list_projects(&ProjectFilter {
                domain_id: Some(p.domain_id.clone()),
                ..Default::default()
            })
            .await?;
        Ok(subtree_of(&all, &p.id))
    }

    fn project_conflict(p: &Project) -> IdentityError {
        IdentityError::Conflict {
            kind: "project",
            details: format!(
                "it is not permitted to have two projects with either the same name or same id \
                 in the same domain: name is {}, project id {}",
                p.name, p.id
            ),
        }
    }

    pub async fn create_project(&self, mut p: Project) -> Result<Project> {
        p.name = p.name.trim().to_string();
        // Keystone answers 400 (not 404) for a project in an unknown domain.
        let domain = self.get_domain(&p.domain_id).await.map_err(|e| match e {
            IdentityError::NotFound { .. } => {
                IdentityError::validation(format!("Could not find domain: {}.", p.domain_id))
            }
            other => other,
        })?;
        if let Some(parent_id) = p.parent_id.clone() {
            if parent_id == domain.id {
                p.parent_id = None;
            } else {
                let parent = self.get_project(&parent_id).await?;
                if parent.domain_id != domain.id {
                    return Err(IdentityError::validation(format!(
                        "Cannot create project, since it specifies its domain_id {}, but \
                         specifies a parent in a different domain ({}).",
                        domain.id, parent.domain_id
                    )));
                }
                let mut chain = self.project_parents(&parent).await?;
                chain.insert(0, parent);
                if let Some(disabled) = chain.iter().find(|x| !x.enabled) {
                    return Err(IdentityError::validation(format!(
                        "cannot create a project in a branch containing a disabled project: {}",
                        disabled.id
                    )));
                }
                if chain.len() + 1 > MAX_PROJECT_TREE_DEPTH {
                    return Err(IdentityError::Forbidden(format!(
                        "Max hierarchy depth reached for {parent_id} branch."
                    )));
                }
            }
        }
        let w = self.db.write().await?;
        if store::find_project_by_name(&*w, &p.domain_id, &p.name)
            .await?
            .is_some()
            || store::get_project(&*w, &p.id).await?.is_some()
        {
            return Err(Self::project_conflict(&p));
        }
        store::insert_project(&*w, &p)
            .await
            .map_err(super::conflict_or("project", format!("name is {}", p.name)))?;
        w.commit().await?;
        self.changed();
        Ok(p)
    }

    pub async fn update_project(&self, p: Project) -> Result<Project> {
        let w = self.db.write().await?;
        if let Some(other) = store::find_project_by_name(&*w, &p.domain_id, &p.name).await?
            && other.id != p.id
        {
            return Err(Self::project_conflict(&p));
        }
        store::update_project(&*w, &p).await?;
        w.commit().await?;
        self.changed();
        Ok(p)
    }

    /// Delete a project. With `cascade`, its whole subtree goes too; without, a project
    /// with children is refused, as Keystone does.
    pub async fn delete_project(&self, id: &str, cascade: bool) -> Result<()> {
        let p = self.get_project(id).await?;
        let subtree = self.project_subtree(&p).await?;
        if !subtree.is_empty() && !cascade {
            return Err(IdentityError::Forbidden(format!(
                "Cannot delete the project {id} since it is not a leaf in the hierarchy. Use the \
                 cascade option if you want to delete a whole subtree."
            )));
        }
        let w = self.db.write().await?;
        for q in subtree.iter().rev().chain(std::iter::once(&p)) {
            store::delete_assignments_of(&*w, &q.id).await?;
            store::delete_project(&*w, &q.id).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(())
    }
}

fn domain_conflict(name: &str) -> IdentityError {
    IdentityError::Conflict {
        kind: "project",
        details: format!(
            "it is not permitted to have two projects acting as domains with the same name: {name}"
        ),
    }
}

/// Descendants of `root` among `all`, breadth first.
pub(crate) fn subtree_of(all: &[Project], root: &str) -> Vec<Project> {
    let mut out: Vec<Project> = Vec::new();
    let mut frontier = vec![root.to_string()];
    while let Some(id) = frontier.pop() {
        for c in all
            .iter()
            .filter(|p| p.parent_id.as_deref() == Some(id.as_str()))
        {
            if out.iter().any(|o| o.id == c.id) {
                continue;
            }
            frontier.push(c.id.clone());
            out.push(c.clone());
        }
    }
    out
}
