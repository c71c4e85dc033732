//! Login (domain, user, password), logout (the token revoked), the project switcher.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{render, see_other};
use crate::api::{ApiError, Login};
use crate::session::{self, Flash};
use crate::{DashError, Dashboard, FormData};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub domain: String,
    pub user: String,
    pub message: Option<Flash>,
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    expired: Option<String>,
    logged_out: Option<String>,
}

/// `/dashboard/`: the overview when logged in, else the login page.
pub async fn home(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    match d.ctx(&headers) {
        Ok(_) => see_other("/dashboard/project/overview"),
        Err(e) => e.into_response(),
    }
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The session of this browser, made if it has none (the login form needs its CSRF token).
fn anonymous_session(d: &Dashboard, headers: &HeaderMap) -> (String, String, bool) {
    if let Some(sid) = session::session_id(headers)
        && let Some(s) = d.sessions.get(&sid)
    {
        return (sid, s.csrf, false);
    }
    let sid = d.sessions.create();
    let csrf = d.sessions.get(&sid).map(|s| s.csrf).unwrap_or_default();
    (sid, csrf, true)
}

pub async fn login_page(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, DashError> {
    if d.ctx(&headers).is_ok() {
        return Ok(see_other("/dashboard/project/overview"));
    }
    let (sid, csrf, new) = anonymous_session(&d, &headers);
    let mut message = d.sessions.take_flashes(&sid).into_iter().next();
    if q.expired.is_some() {
        message = Some(Flash {
            kind: "error",
            text: "Your session has expired. Please log in again.".into(),
        });
    } else if q.logged_out.is_some() {
        message = Some(Flash {
            kind: "ok",
            text: "You have logged out.".into(),
        });
    }
    let resp = render(&LoginPage {
        csrf,
        domain: "Default".into(),
        user: String::new(),
        message,
    })?;
    Ok(if new {
        with_cookie(resp, &session::set_cookie(&sid))
    } else {
        resp
    })
}

pub async fn login(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let (sid, s) = d.csrf_session(&headers, &form)?;
    let domain = form.text("domain");
    let user = form.text("username");
    let password = form.get("password").unwrap_or_default().to_string();
    let again = |text: String| {
        render(&LoginPage {
            csrf: s.csrf.clone(),
            domain: domain.clone(),
            user: user.clone(),
            message: Some(Flash {
                kind: "error",
                text,
            }),
        })
    };
    if domain.is_empty() || user.is_empty() || password.is_empty() {
        return again("Domain, user name and password are all needed.".into());
    }
    let login = match d.api.password_login(&domain, &user, &password).await {
        Ok(l) => l,
        Err(ApiError::Status { status: 401, .. }) => {
            return again(
                "The domain, user name or password is not correct (or the account is disabled)."
                    .into(),
            );
        }
        Err(e) => return again(crate::error::api_message(&e)),
    };
    let mut tokens = Vec::new();
    let auth = match login {
        Login::Scoped(a) => *a,
        Login::Unscoped { token } => {
            tokens.push(token.clone());
            let projects = d.api.projects(&token).await.map_err(DashError::Api)?;
            let Some(first) = projects.first() else {
                let _ = d.api.revoke(&token).await;
                return again(
                    "You have no role on any project, so there is nothing to show.".into(),
                );
            };
            d.api
                .rescope(&token, &first.id)
                .await
                .map_err(DashError::Api)?
        }
    };
    tokens.push(auth.token.clone());
    let projects = d
        .api
        .projects(&auth.token)
        .await
        .unwrap_or_else(|_| vec![auth.project.clone()]);
    let Some(new_sid) = d.sessions.rotate(&sid) else {
        return Err(DashError::Csrf);
    };
    d.sessions.update(&new_sid, |s| {
        s.auth = Some(auth);
        s.projects = projects;
        s.tokens.extend(tokens);
    });
    tracing::info!(user = %user, domain = %domain, "dashboard login");
    Ok(with_cookie(
        see_other("/dashboard/project/overview"),
        &session::set_cookie(&new_sid),
    ))
}

pub async fn logout(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let (sid, s) = d.csrf_session(&headers, &form)?;
    let s = d.sessions.remove(&sid).unwrap_or(s);
    for token in s.tokens.iter().rev() {
        if let Err(e) = d.api.revoke(token).await {
            tracing::warn!(error = %e, "logout: could not revoke a token");
        }
    }
    Ok(with_cookie(
        see_other("/dashboard/login?logged_out=1"),
        &session::clear_cookie(),
    ))
}

pub async fn switch_project(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let project_id = form.text("project_id");
    if project_id == ctx.auth.project.id {
        return Ok(see_other("/dashboard/project/overview"));
    }
    match d.api.rescope(&ctx.auth.token, &project_id).await {
        Ok(auth) => {
            let name = auth.project.name.clone();
            d.sessions.update(&ctx.sid, |s| {
                s.tokens.push(auth.token.clone());
                s.auth = Some(auth);
                s.flashes.push(Flash {
                    kind: "ok",
                    text: format!("Now working in project {name}."),
                });
            });
        }
        Err(e) if e.status() == Some(401) => {
            d.expire(&ctx.sid);
            return Err(DashError::SessionExpired);
        }
        Err(e) => d
            .sessions
            .flash(&ctx.sid, "error", crate::error::api_message(&e)),
    }
    Ok(see_other("/dashboard/project/overview"))
}
