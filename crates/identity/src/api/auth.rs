//! `/v3/auth/*`: token issue, validate, check, revoke; the caller's catalog and scopes.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::Authenticated;
use common::auth::{AuthContext, SUBJECT_TOKEN_HEADER};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::{Api, Base, Body, QueryMap, flag, list_response, ok, render};
use crate::core::{AppCredAuth, AuthRequest, DomainRef, ScopeRequest, UserRef, ValidatedToken};
use crate::error::{IdentityError, Result};
use crate::model::Target;

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/auth/tokens",
            get(validate).head(check).delete(revoke).post(issue),
        )
        .route("/auth/catalog", get(catalog))
        .route("/auth/projects", get(projects))
        .route("/auth/domains", get(domains))
        .route("/auth/system", get(system))
}

fn str_field<'a>(v: &'a Value, key: &str, target: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| IdentityError::expecting(key, target))
}

fn domain_ref(v: &Value) -> Result<DomainRef> {
    if let Some(id) = v.get("id").and_then(Value::as_str) {
        Ok(DomainRef::Id(id.to_string()))
    } else if let Some(n) = v.get("name").and_then(Value::as_str) {
        Ok(DomainRef::Name(n.to_string()))
    } else {
        Err(IdentityError::expecting("domain id or name", "domain"))
    }
}

fn user_ref(v: &Value) -> Result<UserRef> {
    if let Some(id) = v.get("id").and_then(Value::as_str) {
        return Ok(UserRef::Id(id.to_string()));
    }
    let name = str_field(v, "name", "user")?;
    let domain = v
        .get("domain")
        .ok_or_else(|| IdentityError::expecting("domain", "user"))?;
    Ok(UserRef::Name {
        name: name.to_string(),
        domain: domain_ref(domain)?,
    })
}

/// Parse Keystone's auth request body.
fn parse_auth(body: &Value) -> Result<AuthRequest> {
    let auth = body
        .get("auth")
        .filter(|a| a.is_object())
        .ok_or_else(|| IdentityError::validation("'auth' is a required property"))?;
    let identity = auth
        .get("identity")
        .filter(|a| a.is_object())
        .ok_or_else(|| IdentityError::validation("'identity' is a required property"))?;
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| IdentityError::validation("'methods' is a required property"))?
        .iter()
        .map(|m| {
            m.as_str().map(str::to_string).ok_or_else(|| {
                IdentityError::validation(
                    "Invalid input for field 'identity/methods': not a string",
                )
            })
        })
        .collect::<Result<_>>()?;
    let mut req = AuthRequest {
        methods,
        password: None,
        token: None,
        app_cred: None,
        scope: ScopeRequest::Default,
    };
    if req.methods.iter().any(|m| m == "password") {
        let pw = identity
            .get("password")
            .ok_or_else(|| IdentityError::expecting("password", "identity"))?;
        let user = pw
            .get("user")
            .ok_or_else(|| IdentityError::expecting("user", "password"))?;
        let secret = str_field(user, "password", "user")?;
        req.password = Some((user_ref(user)?, secret.to_string()));
    }
    if req.methods.iter().any(|m| m == "token") {
        let t = identity
            .get("token")
            .ok_or_else(|| IdentityError::expecting("token", "identity"))?;
        req.token = Some(str_field(t, "id", "token")?.to_string());
    }
    if req.methods.iter().any(|m| m == "application_credential") {
        let a = identity
            .get("application_credential")
            .ok_or_else(|| IdentityError::expecting("application_credential", "identity"))?;
        req.app_cred = Some(AppCredAuth {
            id: a.get("id").and_then(Value::as_str).map(str::to_string),
            name: a.get("name").and_then(Value::as_str).map(str::to_string),
            user: a.get("user").map(user_ref).transpose()?,
            secret: str_field(a, "secret", "application_credential")?.to_string(),
        });
    }
    req.scope = match auth.get("scope") {
        None | Some(Value::Null) => ScopeRequest::Default,
        Some(Value::String(s)) if s == "unscoped" => ScopeRequest::Unscoped,
        Some(s) if s.is_object() => {
            if let Some(p) = s.get("project") {
                if let Some(id) = p.get("id").and_then(Value::as_str) {
                    ScopeRequest::ProjectId(id.to_string())
                } else {
                    let name = str_field(p, "name", "project")?;
                    let d = p
                        .get("domain")
                        .ok_or_else(|| IdentityError::expecting("domain", "project"))?;
                    ScopeRequest::ProjectName {
                        name: name.to_string(),
                        domain: domain_ref(d)?,
                    }
                }
            } else if let Some(d) = s.get("domain") {
                ScopeRequest::Domain(domain_ref(d)?)
            } else if let Some(sys) = s.get("system") {
                if sys.get("all").and_then(Value::as_bool) == Some(true) {
                    ScopeRequest::System
                } else {
                    return Err(IdentityError::validation(
                        "Invalid input for field 'scope/system': only {\"all\": true} is supported",
                    ));
                }
            } else if s.get("OS-TRUST:trust").is_some() {
                return Err(IdentityError::Forbidden(
                    "Trusts are not supported by this cloud.".into(),
                ));
            } else {
                return Err(IdentityError::validation(
                    "Invalid input for field 'scope': expected project, domain or system",
                ));
            }
        }
        Some(_) => return Err(IdentityError::validation("Invalid input for field 'scope'")),
    };
    Ok(req)
}

async fn render_token(api: &Api, v: &ValidatedToken, with_catalog: bool) -> Result<Value> {
    let catalog = if with_catalog && !matches!(v.ctx.scope, common::auth::Scope::Unscoped) {
        Some(api.id.catalog_for(&v.user.id, v.ctx.project_id()).await?)
    } else {
        None
    };
    Ok(json!({"token": render::token(v, catalog.as_deref())}))
}

fn with_subject(status: StatusCode, token: &str, body: Option<Value>) -> Response {
    let mut resp = match body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(token) {
        resp.headers_mut().insert(SUBJECT_TOKEN_HEADER, v);
    }
    resp
}

/// `POST /v3/auth/tokens`.
async fn issue(State(api): State<Api>, q: QueryMap, Body(body): Body) -> Result<Response> {
    let req = parse_auth(&body)?;
    let issued = api.id.issue_token(&req).await?;
    let body = render_token(&api, &issued.validated, !flag(&q, "nocatalog")).await?;
    Ok(with_subject(StatusCode::CREATED, &issued.token, Some(body)))
}

fn subject(headers: &HeaderMap) -> Result<String> {
    headers
        .get(SUBJECT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IdentityError::expecting("X-Subject-Token", "request"))
}

async fn subject_checked(
    api: &Api,
    ctx: &AuthContext,
    headers: &HeaderMap,
    action: &str,
) -> Result<(String, std::sync::Arc<ValidatedToken>)> {
    let token = subject(headers)?;
    let v = api.id.validate_token(&token).await?;
    api.id.authorize(
        ctx,
        action,
        &json!({"target": {"token": {"user_id": v.user.id}}}),
    )?;
    Ok((token, v))
}

/// `GET /v3/auth/tokens`.
async fn validate(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, v) = subject_checked(&api, &ctx, &headers, "identity:validate_token").await?;
    let body = render_token(&api, &v, !flag(&q, "nocatalog")).await?;
    Ok(with_subject(StatusCode::OK, &token, Some(body)))
}

/// `HEAD /v3/auth/tokens`.
async fn check(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, _) = subject_checked(&api, &ctx, &headers, "identity:check_token").await?;
    Ok(with_subject(StatusCode::OK, &token, None))
}

/// `DELETE /v3/auth/tokens`.
async fn revoke(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, _) = subject_checked(&api, &ctx, &headers, "identity:revoke_token").await?;
    api.id.revoke_token(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v3/auth/catalog`.
async fn catalog(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
) -> Result<Response> {
    if matches!(ctx.scope, common::auth::Scope::Unscoped) {
        return Err(IdentityError::Forbidden(
            "A scoped token is required to list the catalog.".into(),
        ));
    }
    let c = api.id.catalog_for(&ctx.user_id, ctx.project_id()).await?;
    Ok(ok(
        json!({"catalog": render::catalog(&c), "links": {"self": format!("{base}/v3/auth/catalog"), "previous": null, "next": null}}),
    ))
}

/// `GET /v3/auth/projects`: projects the caller may scope to.
async fn projects(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
) -> Result<Response> {
    let mut out = Vec::new();
    for p in api.id.projects_of_user(&ctx.user_id).await? {
        if !p.enabled {
            continue;
        }
        if api
            .id
            .get_domain(&p.domain_id)
            .await
            .is_ok_and(|d| d.enabled)
        {
            out.push(render::project(&base, &p));
        }
    }
    Ok(list_response(&base, "projects", "auth/projects", out, None))
}

/// `GET /v3/auth/domains`.
async fn domains(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
) -> Result<Response> {
    let out: Vec<Value> = api
        .id
        .domains_of_user(&ctx.user_id)
        .await?
        .iter()
        .filter(|d| d.enabled)
        .map(|d| render::domain(&base, d))
        .collect();
    Ok(list_response(&base, "domains", "auth/domains", out, None))
}

/// `GET /v3/auth/system`.
async fn system(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
) -> Result<Response> {
    let roles = api
        .id
        .effective_roles(&ctx.user_id, &Target::System)
        .await?;
    let system = if roles.is_empty() {
        json!([])
    } else {
        json!([{"all": true}])
    };
    Ok(ok(
        json!({"system": system, "links": {"self": format!("{base}/v3/auth/system"), "previous": null, "next": null}}),
    ))
}
