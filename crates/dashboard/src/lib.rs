//! kumo's dashboard (Horizon's job): server-rendered pages (askama) with htmx for partial
//! updates, mounted at `/dashboard`. It calls the public APIs over HTTP with the logged-in
//! user's token (endpoints from the token's catalog) and has no database and no privileges of
//! its own: what a user may do is what the APIs say.
//!
//! - `session.rs`: sessions in memory (random id cookie, CSRF token per session)
//! - `api.rs`: the HTTP client of the public APIs, fault bodies -> messages
//! - `pages/`: one file per area (login, overview, instances, key pairs, images)
//! - `views.rs`: what the templates show, built from API JSON (pure)
//! - `multipart.rs`: a streaming reader of the image upload form (the file passed on unheld)
//! - `templates/` (askama), `static/` (htmx, CSS; served from the binary)

pub mod api;
mod error;
pub mod multipart;
mod pages;
pub mod session;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;

pub use error::DashError;

use api::{ApiClient, Auth};
use session::{Session, SessionStore};

/// The dashboard's state: the API client and the sessions.
pub struct Dashboard {
    pub api: ApiClient,
    pub sessions: SessionStore,
}

/// A logged-in request: its session (a copy) and the user's token.
pub struct Ctx {
    pub sid: String,
    pub session: Session,
    pub auth: Auth,
}

/// The form fields of a POST (`application/x-www-form-urlencoded`), repeated names kept.
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        FormData(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed value, "" when absent.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_string()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Dashboard {
    pub fn new(identity_url: &str) -> Self {
        Dashboard {
            api: ApiClient::new(identity_url),
            sessions: SessionStore::default(),
        }
    }

    /// The logged-in context of a request: no session -> login; an expired token -> login
    /// with a message.
    pub fn ctx(&self, headers: &HeaderMap) -> Result<Ctx, DashError> {
        let sid = session::session_id(headers).ok_or(DashError::LoginRequired)?;
        let session = self.sessions.get(&sid).ok_or(DashError::LoginRequired)?;
        let auth = session.auth.clone().ok_or(DashError::LoginRequired)?;
        if auth.expires_at <= Utc::now() {
            self.expire(&sid);
            return Err(DashError::SessionExpired);
        }
        Ok(Ctx { sid, session, auth })
    }

    /// A POST's session (id and state), logged in or not: its CSRF token must be in the form,
    /// else 403.
    pub fn csrf_session(
        &self,
        headers: &HeaderMap,
        form: &FormData,
    ) -> Result<(String, session::Session), DashError> {
        let sid = session::session_id(headers).ok_or(DashError::Csrf)?;
        let session = self.sessions.get(&sid).ok_or(DashError::Csrf)?;
        if !session.csrf_ok(form.get(session::CSRF_FIELD)) {
            return Err(DashError::Csrf);
        }
        Ok((sid, session))
    }

    /// A POST of a logged-in page: the CSRF check, then as `ctx`.
    pub fn post_ctx(&self, headers: &HeaderMap, form: &FormData) -> Result<Ctx, DashError> {
        self.csrf_session(headers, form)?;
        self.ctx(headers)
    }

    /// The token is no longer good: the session stays (its CSRF token too), logged out.
    pub fn expire(&self, sid: &str) {
        self.sessions.update(sid, |s| {
            s.auth = None;
        });
    }

    /// One API call with the user's token; a 401 means the token is gone: back to login.
    pub async fn call(
        &self,
        ctx: &Ctx,
        service: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, DashError> {
        match self.api.call(&ctx.auth, service, method, path, body).await {
            Err(e) if e.status() == Some(401) => {
                self.expire(&ctx.sid);
                Err(DashError::SessionExpired)
            }
            r => r.map_err(DashError::Api),
        }
    }

    /// As `call`, with a body that is not JSON (`ApiClient::call_body`).
    pub async fn call_body(
        &self,
        ctx: &Ctx,
        service: &str,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<serde_json::Value, DashError> {
        match self
            .api
            .call_body(&ctx.auth, service, method, path, content_type, body)
            .await
        {
            Err(e) if e.status() == Some(401) => {
                self.expire(&ctx.sid);
                Err(DashError::SessionExpired)
            }
            r => r.map_err(DashError::Api),
        }
    }

    pub async fn get(
        &self,
        ctx: &Ctx,
        service: &str,
        path: &str,
    ) -> Result<serde_json::Value, DashError> {
        self.call(ctx, service, reqwest::Method::GET, path, None)
            .await
    }

    /// What every page's frame shows (takes the session's flash messages).
    pub fn layout(&self, ctx: &Ctx, active: &'static str) -> views::Layout {
        views::Layout {
            logged_in: true,
            user: ctx.auth.user_name.clone(),
            domain: ctx.auth.domain_name.clone(),
            roles: ctx.auth.roles.join(", "),
            project_id: ctx.auth.project.id.clone(),
            project_name: ctx.auth.project.name.clone(),
            projects: ctx.session.projects.clone(),
            csrf: ctx.session.csrf.clone(),
            can_write: ctx.auth.can_write(),
            is_admin: ctx.auth.is_admin(),
            active,
            flashes: self.sessions.take_flashes(&ctx.sid),
        }
    }
}

const HTMX: &[u8] = include_bytes!("../static/htmx.min.js");
const CSS: &[u8] = include_bytes!("../static/dashboard.css");

fn asset(body: &'static [u8], ctype: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes, to be nested at `/dashboard`. `identity_url` is the identity API
/// (`http://host:port/identity/v3`); every other endpoint comes from the token's catalog.
pub fn router(identity_url: &str) -> Router {
    let state = Arc::new(Dashboard::new(identity_url));
    router_with(state)
}

pub fn router_with(state: Arc<Dashboard>) -> Router {
    use pages::{
        access, admin, auth, floating_ips, images, instances, keypairs, networks, overview,
        routers, security_groups, snapshots, topology, volumes,
    };
    Router::new()
        .route("/", get(auth::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/switch-project", post(auth::switch_project))
        .route("/project/overview", get(overview::page))
        .route(
            "/project/instances",
            get(instances::list).post(instances::launch),
        )
        .route("/project/instances/{id}", get(instances::detail))
        .route("/project/instances/{id}/row", get(instances::row))
        .route("/project/instances/{id}/action", post(instances::action))
        .route(
            "/project/instances/{id}/console-log",
            get(instances::console_log),
        )
        .route(
            "/project/keypairs",
            get(keypairs::list).post(keypairs::create),
        )
        .route("/project/keypairs/import", post(keypairs::import))
        .route("/project/keypairs/download", get(keypairs::download))
        .route("/project/keypairs/{name}/delete", post(keypairs::delete))
        .route("/project/images", get(images::list).post(images::upload))
        .route("/project/images/{id}", get(images::detail))
        .route("/project/images/{id}/action", post(images::action))
        .route("/project/api-access", get(access::page))
        .route("/project/volumes", get(volumes::list).post(volumes::create))
        .route("/project/volumes/{id}/row", get(volumes::row))
        .route("/project/volumes/{id}/action", post(volumes::action))
        .route("/project/volume-snapshots", post(snapshots::create))
        .route("/project/volume-snapshots/{id}/row", get(snapshots::row))
        .route(
            "/project/volume-snapshots/{id}/action",
            post(snapshots::action),
        )
        .route(
            "/project/networks",
            get(networks::list).post(networks::create),
        )
        .route("/project/networks/{id}", get(networks::detail))
        .route("/project/networks/{id}/action", post(networks::action))
        .route("/project/routers", get(routers::list).post(routers::create))
        .route("/project/routers/{id}", get(routers::detail))
        .route("/project/routers/{id}/action", post(routers::action))
        .route("/project/topology", get(topology::page))
        .route(
            "/project/security-groups",
            get(security_groups::list).post(security_groups::create),
        )
        .route(
            "/project/security-groups/{id}/action",
            post(security_groups::action),
        )
        .route(
            "/project/floating-ips",
            get(floating_ips::list).post(floating_ips::allocate),
        )
        .route(
            "/project/floating-ips/{id}/action",
            post(floating_ips::action),
        )
        .route("/admin/{section}", get(admin::show).post(admin::act))
        .route(
            "/static/htmx.min.js",
            get(|| async { asset(HTMX, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/static/dashboard.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .fallback(|| async { DashError::NotFound("No such page.".into()).into_response() })
        .layer(axum::middleware::from_fn(htmx_redirects))
        // a bug is a page that says so, not a stack trace nor a JSON fault
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a dashboard handler panicked");
            error::error_page(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "This page could not be shown; the error is in kumo's log.",
            )
        }))
        .with_state(state)
}

/// htmx follows a redirect inside its request and would put the page it ends on (the login
/// page, say) into the fragment it replaces; it is told to go there instead (`HX-Redirect`).
async fn htmx_redirects(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let htmx = pages::is_htmx(req.headers());
    let resp = next.run(req).await;
    if !htmx || !resp.status().is_redirection() {
        return resp;
    }
    let Some(location) = resp.headers().get(header::LOCATION).cloned() else {
        return resp;
    };
    let mut out = axum::http::StatusCode::OK.into_response();
    for c in resp.headers().get_all(header::SET_COOKIE) {
        out.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    out.headers_mut().insert("hx-redirect", location);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn app() -> (Router, Arc<Dashboard>) {
        // nothing listens on port 9 (discard): API calls fail fast
        let d = Arc::new(Dashboard::new("http://127.0.0.1:9/identity/v3"));
        (router_with(d.clone()), d)
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn post(uri: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
        let mut b =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("{}={c}", session::COOKIE));
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn pages_need_a_login() {
        let (app, _) = app();
        let resp = app
            .oneshot(
                Request::get("/project/instances")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/dashboard/login");
    }

    #[tokio::test]
    async fn htmx_is_told_to_go_to_the_login_page() {
        let (app, _) = app();
        let resp = app
            .oneshot(
                Request::get("/project/instances/x/row")
                    .header("hx-request", "true")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["hx-redirect"], "/dashboard/login");
    }

    #[tokio::test]
    async fn login_page_sets_the_session_cookie_and_its_csrf_field() {
        let (app, d) = app();
        let resp = app
            .oneshot(Request::get("/login").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let cookie = resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let sid = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap();
        let csrf = d.sessions.get(&sid).unwrap().csrf;
        let html = body_text(resp).await;
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")));
    }

    #[tokio::test]
    async fn posts_without_the_sessions_csrf_token_are_403_and_not_acted_on() {
        let (app, d) = app();
        let sid = d.sessions.create();
        let csrf = d.sessions.get(&sid).unwrap().csrf;
        let other = d.sessions.create();
        let other_csrf = d.sessions.get(&other).unwrap().csrf;
        for (uri, body) in [
            ("/login", "domain=Default&username=u&password=p".to_string()),
            ("/logout", String::new()),
            ("/project/keypairs", "name=k".to_string()),
            (
                "/project/instances",
                format!("name=v&csrf_token={other_csrf}"),
            ),
            (
                "/project/instances/x/action",
                "action=delete&csrf_token=".to_string(),
            ),
            ("/project/networks", "name=n&cidr=10.0.0.0/24".to_string()),
            ("/project/networks/x/action", "action=delete".to_string()),
            ("/project/routers", "name=r".to_string()),
            ("/project/routers/x/action", "action=delete".to_string()),
            ("/project/volume-snapshots", "volume_id=v".to_string()),
            (
                "/project/volume-snapshots/x/action",
                "action=delete".to_string(),
            ),
            ("/project/images/x/action", "action=delete".to_string()),
        ] {
            let resp = app
                .clone()
                .oneshot(post(uri, Some(&sid), &body))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{uri}");
            assert!(body_text(resp).await.contains("security token"), "{uri}");
        }
        // no session at all: 403 too
        let resp = app
            .clone()
            .oneshot(post("/logout", None, ""))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        // logout with the token is acted on: the session is gone
        let resp = app
            .clone()
            .oneshot(post("/logout", Some(&sid), &format!("csrf_token={csrf}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert!(d.sessions.get(&sid).is_none());
    }

    #[tokio::test]
    async fn admin_pages_are_403_without_the_admin_role_and_offered_with_it() {
        let (app, d) = app();
        let sid = d.sessions.create();
        let auth = |roles: &[&str]| api::Auth {
            token: "t".into(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            user_id: "u".into(),
            user_name: "ann".into(),
            domain_name: "Default".into(),
            project: api::ProjectRef {
                id: "p".into(),
                name: "demo".into(),
            },
            roles: roles.iter().map(|r| r.to_string()).collect(),
            endpoints: Default::default(),
        };
        d.sessions
            .update(&sid, |s| s.auth = Some(auth(&["member", "reader"])));
        let get = |uri: &str| {
            Request::get(uri)
                .header(header::COOKIE, format!("{}={sid}", session::COOKIE))
                .body(Body::empty())
                .unwrap()
        };
        let resp = app
            .clone()
            .oneshot(get("/admin/hypervisors"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(body_text(resp).await.contains("admin role"));
        // the project pages do not link to them
        let resp = app.clone().oneshot(get("/project/images")).await.unwrap();
        assert!(!body_text(resp).await.contains("/dashboard/admin/"));
        // an admin token: the nav has them (the call itself fails here: no cloud at port 9)
        d.sessions.update(&sid, |s| s.auth = Some(auth(&["admin"])));
        let resp = app
            .clone()
            .oneshot(get("/admin/hypervisors"))
            .await
            .unwrap();
        assert_ne!(resp.status(), StatusCode::FORBIDDEN);
        let html = body_text(resp).await;
        assert!(html.contains("id=\"admin-nav\""), "{html}");
        assert!(
            html.contains("no such endpoint") || html.contains("catalog"),
            "{html}"
        );
    }

    #[tokio::test]
    async fn an_image_upload_without_the_csrf_token_is_403_and_a_non_multipart_one_400() {
        let (app, d) = app();
        let sid = d.sessions.create();
        let body = "--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nimg\r\n\
                    --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n\
                    data\r\n--B--\r\n";
        let req = Request::post("/project/images")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
            .header(header::COOKIE, format!("{}={sid}", session::COOKIE))
            .body(Body::from(body))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = app
            .oneshot(post("/project/images", Some(&sid), "name=img"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_unreachable_identity_service_is_a_message_not_a_crash() {
        let (app, d) = app();
        let sid = d.sessions.create();
        let csrf = d.sessions.get(&sid).unwrap().csrf;
        let resp = app
            .oneshot(post(
                "/login",
                Some(&sid),
                &format!("csrf_token={csrf}&domain=Default&username=u&password=p"),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let html = body_text(resp).await;
        assert!(
            html.contains("could not reach the identity service"),
            "{html}"
        );
    }
}
