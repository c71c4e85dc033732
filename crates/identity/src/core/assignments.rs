//! Roles, implied roles, role assignments (grants) and their effective expansion.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::Identity;
use super::resource::subtree_of;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::store::{self, AssignmentFilter, ProjectFilter};

/// Keystone's `[assignment] prohibited_implied_role` default.
const PROHIBITED_IMPLIED_ROLES: &[&str] = &["admin"];

/// Roles and implication rules, cached per identity revision.
#[derive(Debug, Default)]
pub(crate) struct RoleGraph {
    pub roles: HashMap<String, Role>,
    pub implies: HashMap<String, Vec<String>>,
}

impl RoleGraph {
    /// Every role implied by `role_id`, transitively, with the prior role that implies it.
    pub fn implied_by(&self, role_id: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::from([role_id.to_string()]);
        let mut stack = vec![role_id.to_string()];
        while let Some(prior) = stack.pop() {
            for implied in self.implies.get(&prior).into_iter().flatten() {
                if seen.insert(implied.clone()) {
                    out.push((implied.clone(), prior.clone()));
                    stack.push(implied.clone());
                }
            }
        }
        out
    }

    /// The role set a token gets from directly assigned roles: implied roles added,
    /// domain-specific roles removed (they only carry implications).
    pub fn expand(&self, direct: impl IntoIterator<Item = String>) -> Vec<Role> {
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for r in direct {
            for (implied, _) in self.implied_by(&r) {
                ids.insert(implied);
            }
            ids.insert(r);
        }
        let mut roles: Vec<Role> = ids
            .iter()
            .filter_map(|id| self.roles.get(id))
            .filter(|r| r.domain_id.is_none())
            .cloned()
            .collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        roles
    }
}

/// Filters of `GET /v3/role_assignments`.
#[derive(Debug, Default, Clone)]
pub struct AssignmentQuery {
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub role_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub system: bool,
    /// `scope.OS-INHERIT:inherited_to=projects`.
    pub inherited: Option<bool>,
    pub effective: bool,
    pub include_subtree: bool,
}

/// One row of `GET /v3/role_assignments`, with how an effective row came to be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EffectiveAssignment {
    pub assignment: Assignment,
    /// The group an effective user row comes from.
    pub via_group: Option<String>,
    /// The inherited assignment's own target, for rows expanded from it.
    pub inherited_from: Option<Target>,
    /// The assigned role an implied row comes from.
    pub prior_role: Option<String>,
}

impl Identity {
    pub(crate) async fn role_graph(&self) -> Result<Arc<RoleGraph>> {
        let rev = self.revision();
        if let Some((r, g)) = self.role_graph.read().as_ref()
            && *r == rev
        {
            return Ok(g.clone());
        }
        let roles = store::list_roles(self.db.conn(), None, None).await?;
        let mut implies: HashMap<String, Vec<String>> = HashMap::new();
        for (p, i) in store::list_implied_roles(self.db.conn()).await? {
            implies.entry(p).or_default().push(i);
        }
        let g = Arc::new(RoleGraph {
            roles: roles.into_iter().map(|r| (r.id.clone(), r)).collect(),
            implies,
        });
        *self.role_graph.write() = Some((rev, g.clone()));
        Ok(g)
    }

    // ------------------------------------------------------------ roles

    pub async fn get_role(&self, id: &str) -> Result<Role> {
        store::get_role(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("role", id))
    }

    pub async fn find_role_by_name(&self, name: &str, domain_id: Option<&str>) -> Result<Role> {
        store::find_role_by_name(self.db.conn(), name, domain_id)
            .await?
            .ok_or_else(|| IdentityError::not_found("role", name))
    }

    pub async fn list_roles(
        &self,
        name: Option<&str>,
        domain_id: Option<Option<&str>>,
    ) -> Result<Vec<Role>> {
        Ok(store::list_roles(self.db.conn(), name, domain_id).await?)
    }

    fn role_conflict(r: &Role) -> IdentityError {
        IdentityError::Conflict {
            kind: "role",
            details: format!("Duplicate entry found with name {}", r.name),
        }
    }

    pub async fn create_role(&self, r: Role) -> Result<Role> {
        if let Some(d) = &r.domain_id {
            self.get_domain(d).await?;
        }
        let w = self.db.write().await?;
        if store::find_role_by_name(&*w, &r.name, r.domain_id.as_deref())
            .await?
            .is_some()
            || store::get_role(&*w, &r.id).await?.is_some()
        {
            return Err(Self::role_conflict(&r));
        }
        store::insert_role(&*w, &r)
            .await
            .map_err(super::conflict_or("role", r.name.clone()))?;
        w.commit().await?;
        self.changed();
        Ok(r)
    }

    pub async fn update_role(&self, r: Role) -> Result<Role> {
        let w = self.db.write().await?;
        if let Some(other) = store::find_role_by_name(&*w, &r.name, r.domain_id.as_deref()).await?
            && other.id != r.id
        {
            return Err(Self::role_conflict(&r));
        }
        store::update_role(&*w, &r).await?;
        w.commit().await?;
        self.changed();
        Ok(r)
    }

    pub async fn delete_role(&self, id: &str) -> Result<()> {
        self.get_role(id).await?;
        let w = self.db.write().await?;
        store::delete_role(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ implied roles

    pub async fn create_implied_role(&self, prior: &str, implied: &str) -> Result<(Role, Role)> {
        let p = self.get_role(prior).await?;
        let i = self.get_role(implied).await?;
        if PROHIBITED_IMPLIED_ROLES.contains(&i.name.as_str()) {
            return Err(IdentityError::Forbidden(format!(
                "{implied} cannot be an implied roles."
            )));
        }
        if i.domain_id.is_some() {
            return Err(IdentityError::Forbidden(format!(
                "{implied} cannot be an implied roles."
            )));
        }
        let graph = self.role_graph().await?;
        if prior == implied || graph.implied_by(implied).iter().any(|(r, _)| r == prior) {
            return Err(IdentityError::validation(format!(
                "Role {prior} implying {implied} would create a cycle of implied roles."
            )));
        }
        let w = self.db.write().await?;
        store::add_implied_role(&*w, prior, implied).await?;
        w.commit().await?;
        self.changed();
        Ok((p, i))
    }

    pub async fn get_implied_role(&self, prior: &str, implied: &str) -> Result<(Role, Role)> {
        let p = self.get_role(prior).await?;
        let i = self.get_role(implied).await?;
        let graph = self.role_graph().await?;
        if !graph
            .implies
            .get(prior)
            .is_some_and(|v| v.iter().any(|x| x == implied))
        {
            return Err(IdentityError::NotFound {
                kind: "implied role",
                id: format!("{prior} does not imply {implied}"),
            });
        }
        Ok((p, i))
    }

    pub async fn delete_implied_role(&self, prior: &str, implied: &str) -> Result<()> {
        self.get_implied_role(prior, implied).await?;
        let w = self.db.write().await?;
        store::remove_implied_role(&*w, prior, implied).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// Direct implications: (prior, [implied]) for one prior role or for all.
    pub async fn role_inferences(&self, prior: Option<&str>) -> Result<Vec<(Role, Vec<Role>)>> {
        if let Some(p) = prior {
            self.get_role(p).await?;
        }
        let g = self.role_graph().await?;
        let mut out = Vec::new();
        let mut priors: Vec<&String> = g.implies.keys().collect();
        priors.sort();
        for p in priors {
            if prior.is_some_and(|x| x != p) {
                continue;
            }
            let Some(pr) = g.roles.get(p) else { continue };
            let implied: Vec<Role> = g.implies[p]
                .iter()
                .filter_map(|i| g.roles.get(i))
                .cloned()
                .collect();
            out.push((pr.clone(), implied));
        }
        if out.is_empty()
            && let Some(p) = prior
            && let Some(pr) = g.roles.get(p)
        {
            out.push((pr.clone(), vec![]));
        }
        Ok(out)
    }

    // ------------------------------------------------------------ grants

    async fn check_grant_parts(&self, a: &Assignment) -> Result<()> {
        match &a.actor {
            Actor::User(id) => drop(self.get_user(id).await?),
            Actor::Group(id) => drop(self.get_group(id).await?),
        }
        let role = self.get_role(&a.role_id).await?;
        let target_domain = match &a.target {
            Target::Project(id) => Some(self.get_project(id).await?.domain_id),
            Target::Domain(id) => Some(self.get_domain(id).await?.id),
            Target::System => None,
        };
        if let Some(rd) = &role.domain_id
            && target_domain.as_deref() != Some(rd.as_str())
        {
            return Err(IdentityError::Forbidden(format!(
                "Project {} must be in the same domain as the role {} being assigned.",
                a.target.id(),
                role.id
            )));
        }
        Ok(())
    }

    pub async fn create_grant(&self, a: &Assignment) -> Result<()> {
        self.check_grant_parts(a).await?;
        let w = self.db.write().await?;
        store::add_assignment(&*w, a).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    fn grant_not_found(a: &Assignment) -> IdentityError {
        IdentityError::NotFound {
            kind: "role assignment with role",
            id: format!(
                "{}, user or group: {}, project, domain, or system: {}",
                a.role_id,
                a.actor.id(),
                a.target.id()
            ),
        }
    }

    pub async fn check_grant(&self, a: &Assignment) -> Result<()> {
        self.check_grant_parts(a).await?;
        if store::assignment_exists(self.db.conn(), a).await? {
            Ok(())
        } else {
            Err(Self::grant_not_found(a))
        }
    }

    pub async fn delete_grant(&self, a: &Assignment) -> Result<()> {
        self.check_grant_parts(a).await?;
        let w = self.db.write().await?;
        if store::remove_assignment(&*w, a).await? == 0 {
            return Err(Self::grant_not_found(a));
        }
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// Roles an actor holds directly on a target (`GET .../users/{u}/roles`).
    pub async fn list_grants(
        &self,
        actor: &Actor,
        target: &Target,
        inherited: bool,
    ) -> Result<Vec<Role>> {
        match actor {
            Actor::User(id) => drop(self.get_user(id).await?),
            Actor::Group(id) => drop(self.get_group(id).await?),
        }
        match target {
            Target::Project(id) => drop(self.get_project(id).await?),
            Target::Domain(id) => drop(self.get_domain(id).await?),
            Target::System => {}
        }
        let rows = store::list_assignments(
            self.db.conn(),
            &AssignmentFilter {
                actor_ids: Some(vec![actor.id().to_string()]),
                target_ids: Some(vec![target.id().to_string()]),
                inherited: Some(inherited),
                ..Default::default()
            },
        )
        .await?;
        let g = self.role_graph().await?;
        Ok(rows
            .into_iter()
            .filter(|a| &a.actor == actor && &a.target == target)
            .filter_map(|a| g.roles.get(&a.role_id).cloned())
            .collect())
    }

    // ------------------------------------------------------------ effective roles

    /// The roles a user has on a target, as a token scoped to it carries them.
    pub async fn effective_roles(&self, user_id: &str, target: &Target) -> Result<Vec<Role>> {
        let mut actors = store::user_group_ids(self.db.conn(), user_id).await?;
        actors.push(user_id.to_string());
        let direct = store::list_assignments(
            self.db.conn(),
            &AssignmentFilter {
                actor_ids: Some(actors.clone()),
                ..Default::default()
            },
        )
        .await?;
        let mut role_ids: Vec<String> = Vec::new();
        match target {
            Target::Project(pid) => {
                let project = self.get_project(pid).await?;
                let mut inherit_from: HashSet<String> = self
                    .project_parents(&project)
                    .await?
                    .into_iter()
                    .map(|p| p.id)
                    .collect();
                inherit_from.insert(project.domain_id.clone());
                for a in &direct {
                    match &a.target {
                        Target::Project(t) if t == pid && !a.inherited => {
                            role_ids.push(a.role_id.clone())
                        }
                        Target::Project(t) | Target::Domain(t)
                            if a.inherited && inherit_from.contains(t) =>
                        {
                            role_ids.push(a.role_id.clone())
                        }
                        _ => {}
                    }
                }
            }
            Target::Domain(did) => {
                for a in &direct {
                    if matches!(&a.target, Target::Domain(t) if t == did) && !a.inherited {
                        role_ids.push(a.role_id.clone());
                    }
                }
            }
            Target::System => {
                for a in &direct {
                    if a.target == Target::System {
                        role_ids.push(a.role_id.clone());
                    }
                }
            }
        }
        Ok(self.role_graph().await?.expand(role_ids))
    }

    /// Targets where a user has at least one effective role.
    async fn targets_of_user(&self, user_id: &str) -> Result<Vec<Target>> {
        let rows = self
            .role_assignments(&AssignmentQuery {
                user_id: Some(user_id.to_string()),
                effective: true,
                ..Default::default()
            })
            .await?;
        let set: BTreeSet<Target> = rows.into_iter().map(|r| r.assignment.target).collect();
        Ok(set.into_iter().collect())
    }

    /// Projects where a user has at least one effective role (`/v3/auth/projects`,
    /// `/v3/users/{id}/projects`).
    pub async fn projects_of_user(&self, user_id: &str) -> Result<Vec<Project>> {
        let ids = self
            .targets_of_user(user_id)
            .await?
            .into_iter()
            .filter_map(|t| match t {
                Target::Project(id) => Some(id),
                _ => None,
            })
            .collect();
        self.list_projects(&ProjectFilter {
            ids: Some(ids),
            ..Default::default()
        })
        .await
    }

    /// Domains where a user has a role (`/v3/auth/domains`).
    pub async fn domains_of_user(&self, user_id: &str) -> Result<Vec<Domain>> {
        let mut out = Vec::new();
        for t in self.targets_of_user(user_id).await? {
            if let Target::Domain(id) = t
                && let Some(d) = store::get_domain(self.db.conn(), &id).await?
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// `GET /v3/role_assignments`.
    pub async fn role_assignments(&self, q: &AssignmentQuery) -> Result<Vec<EffectiveAssignment>> {
        let all = store::list_assignments(self.db.conn(), &AssignmentFilter::default()).await?;
        let mut rows: Vec<EffectiveAssignment> = Vec::new();
        if !q.effective {
            rows = all
                .into_iter()
                .map(|a| EffectiveAssignment {
                    assignment: a,
                    via_group: None,
                    inherited_from: None,
                    prior_role: None,
                })
                .collect();
        } else {
            let graph = self.role_graph().await?;
            let mut members: HashMap<String, Vec<String>> = HashMap::new();
            let mut projects: Option<Vec<Project>> = None;
            for a in all {
                let actors: Vec<(String, Option<String>)> = match &a.actor {
                    Actor::User(u) => vec![(u.clone(), None)],
                    Actor::Group(g) => {
                        if !members.contains_key(g) {
                            members.insert(
                                g.clone(),
                                store::group_member_ids(self.db.conn(), g).await?,
                            );
                        }
                        members[g]
                            .iter()
                            .map(|u| (u.clone(), Some(g.clone())))
                            .collect()
                    }
                };
                let targets: Vec<(Target, Option<Target>)> = if a.inherited {
                    if projects.is_none() {
                        projects = Some(self.list_projects(&ProjectFilter::default()).await?);
                    }
                    let all_p = projects.as_deref().unwrap_or_default();
                    match &a.target {
                        Target::Domain(d) => all_p
                            .iter()
                            .filter(|p| &p.domain_id == d)
                            .map(|p| (Target::Project(p.id.clone()), Some(a.target.clone())))
                            .collect(),
                        Target::Project(p) => subtree_of(all_p, p)
                            .into_iter()
                            .map(|c| (Target::Project(c.id), Some(a.target.clone())))
                            .collect(),
                        Target::System => vec![(Target::System, None)],
                    }
                } else {
                    vec![(a.target.clone(), None)]
                };
                let mut roles = vec![(a.role_id.clone(), None)];
                roles.extend(
                    graph
                        .implied_by(&a.role_id)
                        .into_iter()
                        .map(|(r, p)| (r, Some(p))),
                );
                for (user, via) in &actors {
                    for (target, from) in &targets {
                        for (role, prior) in &roles {
                            rows.push(EffectiveAssignment {
                                assignment: Assignment {
                                    actor: Actor::User(user.clone()),
                                    target: target.clone(),
                                    role_id: role.clone(),
                                    inherited: false,
                                },
                                via_group: via.clone(),
                                inherited_from: from.clone(),
                                prior_role: prior.clone(),
                            });
                        }
                    }
                }
            }
        }

        // Filters apply to the (expanded) rows.
        let mut project_scope: Option<HashSet<String>> = None;
        if let Some(pid) = &q.project_id {
            let mut set = HashSet::from([pid.clone()]);
            if q.include_subtree {
                let p = self.get_project(pid).await?;
                set.extend(self.project_subtree(&p).await?.into_iter().map(|p| p.id));
            }
            project_scope = Some(set);
        }
        let group_of_user: Option<HashSet<String>> = None;
        let _ = group_of_user;
        rows.retain(|r| {
            let a = &r.assignment;
            if let Some(u) = &q.user_id
                && a.actor != Actor::User(u.clone())
            {
                return false;
            }
            if let Some(g) = &q.group_id
                && a.actor != Actor::Group(g.clone())
            {
                return false;
            }
            if let Some(role) = &q.role_id
                && &a.role_id != role
            {
                return false;
            }
            if let Some(set) = &project_scope
                && !matches!(&a.target, Target::Project(p) if set.contains(p))
            {
                return false;
            }
            if let Some(d) = &q.domain_id
                && a.target != Target::Domain(d.clone())
            {
                return false;
            }
            if q.system && a.target != Target::System {
                return false;
            }
            if let Some(i) = q.inherited
                && a.inherited != i
            {
                return false;
            }
            true
        });
        rows.sort();
        rows.dedup();
        Ok(rows)
    }
}
