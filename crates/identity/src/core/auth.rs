//! Authentication, token issue, validation and revocation.

use chrono::{DateTime, Duration, Utc};
use common::auth::{AppCredRef, AuthContext, RoleRef as CtxRole, Scope};
use std::sync::Arc;

use super::Identity;
use super::users::PasswordCheck;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::password;
use crate::store;
use crate::token::{self, TokenPayload, TokenScope};

/// A user named in an auth request.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Debug, Clone, PartialEq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScopeRequest {
    /// No scope in the request: the user's default project if usable, else unscoped.
    Default,
    /// `"scope": "unscoped"`: explicitly unscoped.
    Unscoped,
    ProjectId(String),
    ProjectName {
        name: String,
        domain: DomainRef,
    },
    Domain(DomainRef),
    System,
}

/// What `POST /v3/auth/tokens` asks for, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRequest {
    pub methods: Vec<String>,
    pub password: Option<(UserRef, String)>,
    pub token: Option<String>,
    pub app_cred: Option<AppCredAuth>,
    pub scope: ScopeRequest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppCredAuth {
    pub id: Option<String>,
    pub name: Option<String>,
    pub user: Option<UserRef>,
    pub secret: String,
}

/// A valid token's meaning, resolved against the current identity state.
#[derive(Debug, Clone)]
pub struct ValidatedToken {
    pub ctx: Arc<AuthContext>,
    pub user: User,
    pub user_domain: Domain,
    pub project: Option<(Project, Domain)>,
    pub domain: Option<Domain>,
    pub system: bool,
    pub roles: Vec<Role>,
    pub app_cred: Option<AppCred>,
}

impl ValidatedToken {
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.ctx.expires_at
    }
}

pub struct IssuedToken {
    pub token: String,
    pub validated: Arc<ValidatedToken>,
}

impl std::fmt::Debug for IssuedToken {
    // The token is a bearer secret: never in logs or panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("user", &self.validated.user.id)
            .finish_non_exhaustive()
    }
}

/// Keystone's message for a token that decodes but is no longer valid.
const FAILED_TO_VALIDATE: &str = "Failed to validate token";

fn auth_failed(detail: impl Into<String>) -> IdentityError {
    IdentityError::unauthorized(detail)
}

impl Identity {
    async fn resolve_domain_ref(&self, d: &DomainRef) -> Result<Domain> {
        let found = match d {
            DomainRef::Id(id) => store::get_domain(self.db.conn(), id).await?,
            DomainRef::Name(n) => store::find_domain_by_name(self.db.conn(), n).await?,
        };
        found.ok_or_else(|| auth_failed("Could not find domain for auth"))
    }

    async fn resolve_user_ref(&self, u: &UserRef) -> Result<User> {
        let found = match u {
            UserRef::Id(id) => store::get_user(self.db.conn(), id).await?,
            UserRef::Name { name, domain } => {
                let d = self.resolve_domain_ref(domain).await?;
                store::find_user_by_name(self.db.conn(), &d.id, name).await?
            }
        };
        found.ok_or_else(|| auth_failed("Invalid user / password"))
    }

    /// `POST /v3/auth/tokens`.
    pub async fn issue_token(&self, req: &AuthRequest) -> Result<IssuedToken> {
        if req.methods.is_empty() {
            return Err(IdentityError::validation("'methods' must not be empty"));
        }
        let now = Utc::now();
        let mut expires_at = now + Duration::seconds(self.cfg.token_expiration);
        let mut audit_ids = vec![token::new_audit_id()];
        let mut methods: Vec<String> = Vec::new();
        let mut user: Option<User> = None;
        let mut app_cred: Option<AppCred> = None;
        let mut parent_scope: Option<TokenScope> = None;

        for m in &req.methods {
            let authenticated = match m.as_str() {
                "password" => {
                    let (uref, pw) = req
                        .password
                        .as_ref()
                        .ok_or_else(|| IdentityError::expecting("password", "identity"))?;
                    let u = self.resolve_user_ref(uref).await?;
                    let domain = self
                        .get_domain(&u.domain_id)
                        .await
                        .map_err(|_| auth_failed("user domain gone"))?;
                    if !domain.enabled {
                        return Err(auth_failed(format!("Domain is disabled: {}", domain.id)));
                    }
                    match self.check_user_password(&u, pw).await {
                        Ok(()) => {}
                        Err(PasswordCheck::Wrong) => {
                            return Err(auth_failed("Invalid user / password"));
                        }
                        Err(PasswordCheck::Locked) => {
                            return Err(IdentityError::UnauthorizedShown(format!(
                                "The account is locked for user: {}.",
                                u.id
                            )));
                        }
                        Err(PasswordCheck::Disabled) => {
                            return Err(IdentityError::UnauthorizedShown(format!(
                                "The account is disabled for user: {}.",
                                u.id
                            )));
                        }
                        Err(PasswordCheck::Expired) => {
                            return Err(IdentityError::UnauthorizedShown(format!(
                                "The password is expired and needs to be changed for user: {}.",
                                u.id
                            )));
                        }
                        Err(PasswordCheck::Error(e)) => return Err(e),
                    }
                    u
                }
                "token" => {
                    let t = req
                        .token
                        .as_deref()
                        .ok_or_else(|| IdentityError::expecting("token", "identity"))?;
                    // A revoked or expired token is a 404 here too, as in Keystone.
                    let v = self.validate_token(t).await?;
                    if v.app_cred.is_some() {
                        return Err(IdentityError::Forbidden(
                            "Cannot rescope a token created with an application credential.".into(),
                        ));
                    }
                    expires_at = expires_at.min(v.ctx.expires_at);
                    if let Some(first) = v.ctx.audit_ids.first() {
                        audit_ids.truncate(1);
                        audit_ids.push(v.ctx.audit_ids.get(1).unwrap_or(first).clone());
                    }
                    for pm in &v.ctx.methods {
                        if !methods.contains(pm) {
                            methods.push(pm.clone());
                        }
                    }
                    parent_scope = Some(match &v.ctx.scope {
                        Scope::Unscoped => TokenScope::Unscoped,
                        Scope::Project { id, .. } => TokenScope::Project {
                            project_id: id.clone(),
                        },
                        Scope::Domain { id, .. } => TokenScope::Domain {
                            domain_id: id.clone(),
                        },
                        Scope::System => TokenScope::System {
                            scope: "all".into(),
                        },
                    });
                    v.user.clone()
                }
                "application_credential" => {
                    let a = req.app_cred.as_ref().ok_or_else(|| {
                        IdentityError::expecting("application_credential", "identity")
                    })?;
                    let (u, cred) = self.authenticate_app_cred(a).await?;
                    if let Some(exp) = cred.expires_at {
                        expires_at = expires_at.min(exp);
                    }
                    app_cred = Some(cred);
                    u
                }
                other => {
                    return Err(auth_failed(format!(
                        "Attempted to authenticate with an unsupported method: {other}"
                    )));
                }
            };
            if let Some(prev) = &user
                && prev.id != authenticated.id
            {
                return Err(auth_failed("methods authenticated different users"));
            }
            if !methods.contains(m) {
                methods.insert(0, m.clone());
            }
            user = Some(authenticated);
        }
        let user = user.ok_or_else(|| auth_failed("no method authenticated a user"))?;
        if !user.enabled {
            return Err(IdentityError::UnauthorizedShown(format!(
                "The account is disabled for user: {}.",
                user.id
            )));
        }

        let scope = if let Some(cred) = &app_cred {
            if !matches!(req.scope, ScopeRequest::Default) {
                return Err(IdentityError::validation(
                    "Application credentials cannot request a scope.",
                ));
            }
            let project_id = cred
                .project_id
                .clone()
                .ok_or_else(|| auth_failed("application credential has no project"))?;
            TokenScope::ApplicationCredential {
                project_id,
                app_cred_id: cred.id.clone(),
            }
        } else {
            match &req.scope {
                ScopeRequest::Default => match (&parent_scope, &user.default_project_id) {
                    (Some(s), _) => s.clone(),
                    (None, Some(p)) if self.usable_default_project(&user, p).await => {
                        TokenScope::Project {
                            project_id: p.clone(),
                        }
                    }
                    _ => TokenScope::Unscoped,
                },
                ScopeRequest::Unscoped => TokenScope::Unscoped,
                ScopeRequest::ProjectId(id) => TokenScope::Project {
                    project_id: id.clone(),
                },
                ScopeRequest::ProjectName { name, domain } => {
                    let d = self.resolve_domain_ref(domain).await?;
                    let p = store::find_project_by_name(self.db.conn(), &d.id, name)
                        .await?
                        .ok_or_else(|| auth_failed(format!("Could not find project {name}")))?;
                    TokenScope::Project { project_id: p.id }
                }
                ScopeRequest::Domain(d) => TokenScope::Domain {
                    domain_id: self.resolve_domain_ref(d).await?.id,
                },
                ScopeRequest::System => TokenScope::System {
                    scope: "all".into(),
                },
            }
        };

        // A token minted in the same second as a revocation event of its user would be
        // revoked by it (Fernet timestamps have one-second resolution): stamp it with the
        // next second instead, as Fernet's clock-skew allowance permits.
        let mut issued_secs = now.timestamp();
        if let Some(last) = self.last_user_revocation(&user.id) {
            issued_secs = issued_secs.max(last.timestamp() + 1);
        }
        let issued_at = DateTime::from_timestamp(issued_secs, 0).unwrap_or(now);
        let payload = TokenPayload {
            user_id: user.id.clone(),
            methods: methods.clone(),
            scope: scope.clone(),
            expires_at,
            audit_ids: audit_ids.clone(),
        };
        let validated = self
            .resolve_token(&payload, issued_at)
            .await
            .map_err(|e| match e {
                IdentityError::TokenNotFound(_) => auth_failed("no access to the requested scope"),
                other => other,
            })?;
        let token = self
            .tokens
            .encode_at(&payload, issued_secs.max(0) as u64)
            .map_err(|e| IdentityError::Internal(format!("token encode: {e}")))?;
        if self.cfg.lockout_failure_attempts > 0 || self.cfg.password_expires_days > 0 {
            // Keep last_active_at for inactivity rules; cheap and only when they matter.
            let w = self.db.write().await?;
            store::set_last_active(&*w, &user.id, now).await?;
            w.commit().await?;
        }
        let validated = Arc::new(validated);
        self.cache_token(&token, validated.clone());
        Ok(IssuedToken { token, validated })
    }

    async fn usable_default_project(&self, user: &User, project_id: &str) -> bool {
        match store::get_project(self.db.conn(), project_id).await {
            Ok(Some(p)) if p.enabled => self
                .effective_roles(&user.id, &Target::Project(p.id))
                .await
                .map(|r| !r.is_empty())
                .unwrap_or(false),
            _ => false,
        }
    }

    async fn authenticate_app_cred(&self, a: &AppCredAuth) -> Result<(User, AppCred)> {
        let cred = match (&a.id, &a.name, &a.user) {
            (Some(id), _, _) => store::get_app_cred(self.db.conn(), id).await?,
            (None, Some(name), Some(uref)) => {
                let u = self.resolve_user_ref(uref).await?;
                store::list_app_creds(self.db.conn(), &u.id, Some(name))
                    .await?
                    .pop()
            }
            _ => {
                return Err(IdentityError::validation(
                    "Could not find application credential: either an id, or a name and a user, \
                     is required.",
                ));
            }
        };
        let cred = cred.ok_or_else(|| match &a.id {
            Some(id) => IdentityError::not_found("Application Credential", id),
            None => auth_failed("application credential not found"),
        })?;
        if !password::verify(&a.secret, &cred.secret_hash).await {
            return Err(auth_failed("Invalid application credential secret"));
        }
        if cred.expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(auth_failed("Application credential has expired"));
        }
        let user = self
            .get_user(&cred.user_id)
            .await
            .map_err(|_| auth_failed("user gone"))?;
        let domain = self
            .get_domain(&user.domain_id)
            .await
            .map_err(|_| auth_failed("domain gone"))?;
        if !user.enabled || !domain.enabled {
            return Err(auth_failed("user or domain disabled"));
        }
        Ok((user, cred))
    }

    /// Resolve a token payload against the current state. Any problem (user gone or
    /// disabled, no roles left on the scope, ...) is `NotFound(token)`.
    async fn resolve_token(
        &self,
        p: &TokenPayload,
        issued_at: DateTime<Utc>,
    ) -> Result<ValidatedToken> {
        let gone = || IdentityError::TokenNotFound(FAILED_TO_VALIDATE.into());
        let user = store::get_user(self.db.conn(), &p.user_id)
            .await?
            .ok_or_else(gone)?;
        let user_domain = store::get_domain(self.db.conn(), &user.domain_id)
            .await?
            .ok_or_else(gone)?;
        if !user.enabled || !user_domain.enabled {
            return Err(gone());
        }
        let mut project = None;
        let mut domain = None;
        let mut system = false;
        let mut app_cred = None;
        let roles: Vec<Role> = match &p.scope {
            TokenScope::Unscoped => vec![],
            TokenScope::Project { project_id } | TokenScope::Trust { project_id, .. } => {
                let (proj, pd) = self.enabled_project(project_id).await.ok_or_else(gone)?;
                let roles = self
                    .effective_roles(&user.id, &Target::Project(proj.id.clone()))
                    .await?;
                project = Some((proj, pd));
                roles
            }
            TokenScope::ApplicationCredential {
                project_id,
                app_cred_id,
            } => {
                let cred = store::get_app_cred(self.db.conn(), app_cred_id)
                    .await?
                    .ok_or_else(gone)?;
                if cred.expires_at.is_some_and(|e| e <= Utc::now()) || cred.user_id != user.id {
                    return Err(gone());
                }
                let (proj, pd) = self.enabled_project(project_id).await.ok_or_else(gone)?;
                let current = self
                    .effective_roles(&user.id, &Target::Project(proj.id.clone()))
                    .await?;
                let roles: Vec<Role> = current
                    .into_iter()
                    .filter(|r| cred.roles.iter().any(|c| c.id == r.id))
                    .collect();
                project = Some((proj, pd));
                app_cred = Some(cred);
                roles
            }
            TokenScope::Domain { domain_id } => {
                let d = store::get_domain(self.db.conn(), domain_id)
                    .await?
                    .ok_or_else(gone)?;
                if !d.enabled {
                    return Err(gone());
                }
                let roles = self
                    .effective_roles(&user.id, &Target::Domain(d.id.clone()))
                    .await?;
                domain = Some(d);
                roles
            }
            TokenScope::System { .. } => {
                system = true;
                self.effective_roles(&user.id, &Target::System).await?
            }
        };
        if !matches!(p.scope, TokenScope::Unscoped) && roles.is_empty() {
            return Err(gone());
        }
        let scope = if let Some((pr, pd)) = &project {
            Scope::Project {
                id: pr.id.clone(),
                name: pr.name.clone(),
                domain_id: pd.id.clone(),
                domain_name: pd.name.clone(),
            }
        } else if let Some(d) = &domain {
            Scope::Domain {
                id: d.id.clone(),
                name: d.name.clone(),
            }
        } else if system {
            Scope::System
        } else {
            Scope::Unscoped
        };
        let is_admin_project = project.as_ref().is_some_and(|(pr, pd)| {
            pr.name == self.cfg.admin_project_name && pd.name == self.cfg.admin_project_domain_name
        });
        let ctx = AuthContext {
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            user_domain_id: user_domain.id.clone(),
            user_domain_name: user_domain.name.clone(),
            scope,
            roles: roles
                .iter()
                .map(|r| CtxRole {
                    id: r.id.clone(),
                    name: r.name.clone(),
                })
                .collect(),
            methods: p.methods.clone(),
            audit_ids: p.audit_ids.clone(),
            issued_at,
            expires_at: p.expires_at,
            app_cred: app_cred.as_ref().map(|c| AppCredRef {
                id: c.id.clone(),
                name: c.name.clone(),
                restricted: !c.unrestricted,
            }),
            is_admin_project,
        };
        Ok(ValidatedToken {
            ctx: Arc::new(ctx),
            user,
            user_domain,
            project,
            domain,
            system,
            roles,
            app_cred,
        })
    }

    async fn enabled_project(&self, id: &str) -> Option<(Project, Domain)> {
        let p = store::get_project(self.db.conn(), id).await.ok()??;
        let d = store::get_domain(self.db.conn(), &p.domain_id)
            .await
            .ok()??;
        if !p.enabled || !d.enabled {
            return None;
        }
        // A disabled ancestor disables the subtree.
        let parents = self.project_parents(&p).await.ok()?;
        if parents.iter().any(|x| !x.enabled) {
            return None;
        }
        Some((p, d))
    }

    fn cache_token(&self, token: &str, v: Arc<ValidatedToken>) {
        let rev = self.revision();
        let mut cache = self.token_cache.write();
        if cache.len() >= self.cfg.token_cache_size {
            cache.clear();
        }
        cache.insert(token.to_string(), (rev, v));
    }

    /// Validate a token: decode, check expiry and revocations, resolve against the
    /// current state. Cached until anything in identity changes.
    pub async fn validate_token(&self, token: &str) -> Result<Arc<ValidatedToken>> {
        let not_found = || IdentityError::TokenNotFound(FAILED_TO_VALIDATE.into());
        let now = Utc::now();
        let rev = self.revision();
        if let Some((r, v)) = self.token_cache.read().get(token)
            && *r == rev
        {
            if v.ctx.expires_at <= now {
                return Err(not_found());
            }
            return Ok(v.clone());
        }
        let decoded = self.tokens.decode(token).map_err(|e| {
            tracing::debug!(error = %e, "token does not decode");
            IdentityError::TokenNotFound("Could not recognize Fernet token".into())
        })?;
        if decoded.is_expired(now) {
            return Err(not_found());
        }
        if self.is_revoked(&decoded.payload, decoded.issued_at) {
            return Err(not_found());
        }
        let v = Arc::new(
            self.resolve_token(&decoded.payload, decoded.issued_at)
                .await
                .map_err(|e| match e {
                    IdentityError::NotFound { .. } => not_found(),
                    other => other,
                })?,
        );
        self.cache_token(token, v.clone());
        Ok(v)
    }

    fn is_revoked(&self, p: &TokenPayload, issued_at: DateTime<Utc>) -> bool {
        let (project_id, domain_id) = match &p.scope {
            TokenScope::Project { project_id } | TokenScope::Trust { project_id, .. } => {
                (Some(project_id.as_str()), None)
            }
            TokenScope::ApplicationCredential { project_id, .. } => {
                (Some(project_id.as_str()), None)
            }
            TokenScope::Domain { domain_id } => (None, Some(domain_id.as_str())),
            _ => (None, None),
        };
        let audit_id = p.audit_ids.first().map(String::as_str);
        self.revocations.read().iter().any(|e| {
            e.issued_before >= issued_at
                && e.user_id.as_deref().is_none_or(|u| u == p.user_id)
                && e.project_id
                    .as_deref()
                    .is_none_or(|x| Some(x) == project_id)
                && e.domain_id.as_deref().is_none_or(|x| Some(x) == domain_id)
                && e.audit_id.as_deref().is_none_or(|x| Some(x) == audit_id)
        })
    }

    fn last_user_revocation(&self, user_id: &str) -> Option<DateTime<Utc>> {
        self.revocations
            .read()
            .iter()
            .filter(|e| e.user_id.as_deref() == Some(user_id) && e.audit_id.is_none())
            .map(|e| e.issued_before)
            .max()
    }

    async fn add_revocation<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        mut e: RevocationEvent,
    ) -> Result<()> {
        e.expires_at = Some(e.issued_before + Duration::seconds(self.cfg.token_expiration));
        store::insert_revocation(c, &e).await?;
        self.revocations.write().push(e);
        Ok(())
    }

    /// Revoke every token of a user issued until now (inside the caller's transaction).
    ///
    /// Fernet timestamps have one-second resolution, so the event covers whole seconds:
    /// it revokes tokens stamped up to `E = max(ceil(now), previous event + 1 s)`, and
    /// tokens minted afterwards are stamped `E + 1` or later (see `issue_token`). No token
    /// minted before the event escapes it, and none minted after is caught by it.
    pub(crate) async fn revoke_user_tokens_in<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
    ) -> Result<()> {
        let now = Utc::now();
        let mut secs = now.timestamp();
        if now.timestamp_subsec_nanos() > 0 {
            secs += 1;
        }
        if let Some(last) = self.last_user_revocation(user_id) {
            secs = secs.max(last.timestamp() + 1);
        }
        let issued_before = DateTime::from_timestamp(secs, 0).unwrap_or(now);
        self.add_revocation(
            c,
            RevocationEvent {
                user_id: Some(user_id.to_string()),
                project_id: None,
                domain_id: None,
                audit_id: None,
                issued_before,
                revoked_at: now,
                expires_at: None,
            },
        )
        .await
    }

    /// `DELETE /v3/auth/tokens`: revoke one token (by its audit id).
    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        let v = self.validate_token(token).await?;
        let audit_id = v.ctx.audit_ids.first().cloned();
        let now = Utc::now();
        let w = self.db.write().await?;
        self.add_revocation(
            &*w,
            RevocationEvent {
                user_id: None,
                project_id: None,
                domain_id: None,
                audit_id,
                issued_before: now,
                revoked_at: now,
                expires_at: None,
            },
        )
        .await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }
}

/// The in-process [`common::auth::TokenValidator`]: other services in this process
/// validate tokens without an HTTP round trip.
pub struct LocalValidator(pub Arc<Identity>);

#[async_trait::async_trait]
impl common::auth::TokenValidator for LocalValidator {
    async fn validate(
        &self,
        token: &str,
    ) -> std::result::Result<Arc<AuthContext>, common::auth::AuthFailure> {
        match self.0.validate_token(token).await {
            Ok(v) => Ok(v.ctx.clone()),
            Err(IdentityError::TokenNotFound(_)) => Err(common::auth::AuthFailure::Invalid),
            Err(e) => Err(common::auth::AuthFailure::Unavailable(e.to_string())),
        }
    }
}
