//! The metadata HTTP service of one network. A request is answered for the instance that owns
//! the request's source address on this network, or 404: an address of another network, or
//! one no instance holds, learns nothing.

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::facts::InstanceFacts;
use crate::tree::{self, Settings};

/// Where the service finds the instance behind an address.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The instance whose port on `network_id` holds `address`.
    async fn instance_at(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<Option<InstanceFacts>, DirectoryError>;
    /// Instance `instance_id`, for a request a metadata proxy forwarded from `address` (the
    /// guest's fixed address, which says which port's floating IPs it sees).
    async fn instance_by_id(
        &self,
        instance_id: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<InstanceFacts>, DirectoryError>;
    /// Keeps the (encrypted) password a guest posts; only the first one is kept.
    async fn set_password(
        &self,
        instance: &str,
        password: &str,
    ) -> Result<PasswordOutcome, DirectoryError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    Set,
    AlreadySet,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(pub String);

/// Nova's limit on a posted password.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// What one network's listener serves.
#[derive(Clone)]
pub struct Served {
    pub network_id: String,
    pub directory: Arc<dyn Directory>,
    pub settings: Arc<Settings>,
}

/// The router of one network's listener; serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(served: Served) -> Router {
    Router::new().fallback(answer).with_state(served)
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        text.to_string(),
    )
        .into_response()
}

pub(crate) fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "404 Not Found\n\nThe resource could not be found.\n\n",
    )
}

/// The source address as the guest sent it (an IPv4-mapped IPv6 peer is its IPv4 address).
pub(crate) fn source(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// GET and HEAD read the trees, POST posts the password; nothing else is served.
pub(crate) fn method_allowed(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m == Method::POST
}

fn is_password_path(path: &str) -> bool {
    let t = tree::tokens(path);
    t.len() == 3 && t[0] == "openstack" && t[2] == tree::PASSWORD
}

async fn answer(
    State(served): State<Served>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let address = source(peer);
    if !method_allowed(&method) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    let facts = match served
        .directory
        .instance_at(&served.network_id, address)
        .await
    {
        Ok(Some(f)) => f,
        Ok(None) => {
            tracing::info!(network = %served.network_id, %address, %path, "metadata request from an address no instance holds: 404");
            return not_found();
        }
        Err(e) => {
            tracing::error!(network = %served.network_id, %address, error = %e, "metadata lookup failed");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n\nThe metadata service could not look up this instance; see kumo's log.\n",
            );
        }
    };
    reply(
        served.directory.as_ref(),
        &served.settings,
        &facts,
        &path,
        req,
    )
    .await
}

/// The answer to `req` (a GET, HEAD or POST of `path`) for the instance `facts` describe:
/// its metadata, or the password it posts.
pub(crate) async fn reply(
    directory: &dyn Directory,
    settings: &Settings,
    facts: &InstanceFacts,
    path: &str,
    req: Request,
) -> Response {
    if req.method() == Method::POST {
        return post_password(directory, facts, path, req).await;
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    match tree::lookup(facts, settings, path, &today) {
        Some(a) => {
            tracing::debug!(instance = %facts.uuid, %path, "metadata served");
            let ctype = a.content_type();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, ctype)],
                a.into_bytes(),
            )
                .into_response()
        }
        None => not_found(),
    }
}

async fn post_password(
    directory: &dyn Directory,
    facts: &InstanceFacts,
    path: &str,
    req: Request,
) -> Response {
    if !is_password_path(path) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    if !facts.password.is_empty() {
        return plain(
            StatusCode::CONFLICT,
            "409 Conflict\n\nA password is already set for this instance.\n",
        );
    }
    let too_large = || {
        plain(
            StatusCode::BAD_REQUEST,
            "400 Bad Request\n\nRequest is too large.\n",
        )
    };
    let body: Body = req.into_body();
    let bytes = match axum::body::to_bytes(body, MAX_PASSWORD_BYTES).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let password = String::from_utf8_lossy(&bytes).into_owned();
    match directory.set_password(&facts.uuid, &password).await {
        Ok(PasswordOutcome::Set) => {
            tracing::info!(instance = %facts.uuid, "guest posted its password");
            StatusCode::OK.into_response()
        }
        Ok(PasswordOutcome::AlreadySet) => plain(
            StatusCode::CONFLICT,
            "409 Conflict\n\nA password is already set for this instance.\n",
        ),
        Err(e) => {
            tracing::error!(instance = %facts.uuid, error = %e, "could not keep the guest's password");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n",
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Mutex;
    use tower::ServiceExt;

    pub(crate) struct OneInstance {
        pub(crate) password: Mutex<String>,
    }

    #[async_trait]
    impl Directory for OneInstance {
        async fn instance_at(
            &self,
            network_id: &str,
            address: IpAddr,
        ) -> Result<Option<InstanceFacts>, DirectoryError> {
            if network_id != "n1" || address.to_string() != "10.0.0.5" {
                return Ok(None);
            }
            let mut f = crate::tree::tests::facts();
            f.password = self.password.lock().map(|p| p.clone()).unwrap_or_default();
            Ok(Some(f))
        }
        async fn instance_by_id(
            &self,
            instance_id: &str,
            _address: Option<IpAddr>,
        ) -> Result<Option<InstanceFacts>, DirectoryError> {
            let mut f = crate::tree::tests::facts();
            if instance_id != f.uuid {
                return Ok(None);
            }
            f.password = self.password.lock().map(|p| p.clone()).unwrap_or_default();
            Ok(Some(f))
        }
        async fn set_password(
            &self,
            _instance: &str,
            password: &str,
        ) -> Result<PasswordOutcome, DirectoryError> {
            let mut p = self
                .password
                .lock()
                .map_err(|_| DirectoryError("poisoned".into()))?;
            *p = password.to_string();
            Ok(PasswordOutcome::Set)
        }
    }

    async fn call(
        network: &str,
        from: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let app = router(Served {
            network_id: network.into(),
            directory: Arc::new(OneInstance {
                password: Mutex::new(String::new()),
            }),
            settings: Arc::new(Settings::default()),
        });
        call_app(app, from, method, path, body).await
    }

    async fn call_app(
        app: Router,
        from: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let peer: SocketAddr = format!("{from}:40000")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_owner_reads_its_metadata() {
        let (s, body) = call(
            "n1",
            "10.0.0.5",
            "GET",
            "/openstack/latest/meta_data.json",
            "",
        )
        .await;
        assert_eq!(s, 200);
        assert!(body.contains("\"hostname\":\"web-1.novalocal\""));
        let (s, body) = call("n1", "10.0.0.5", "GET", "/latest/meta-data/local-ipv4", "").await;
        assert_eq!((s, body.as_str()), (200, "10.0.0.5"));
    }

    #[tokio::test]
    async fn other_addresses_and_networks_get_404() {
        assert_eq!(call("n1", "10.0.0.6", "GET", "/openstack", "").await.0, 404);
        assert_eq!(call("n2", "10.0.0.5", "GET", "/openstack", "").await.0, 404);
        assert_eq!(
            call("n1", "10.0.0.5", "GET", "/openstack/latest/x", "")
                .await
                .0,
            404
        );
    }

    #[tokio::test]
    async fn password_is_posted_once_and_bounded() {
        let app = router(Served {
            network_id: "n1".into(),
            directory: Arc::new(OneInstance {
                password: Mutex::new(String::new()),
            }),
            settings: Arc::new(Settings::default()),
        });
        let p = "/openstack/latest/password";
        let big = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(
            call_app(app.clone(), "10.0.0.5", "POST", p, &big).await.0,
            400
        );
        assert_eq!(
            call_app(app.clone(), "10.0.0.5", "POST", p, "secret")
                .await
                .0,
            200
        );
        assert_eq!(
            call_app(app.clone(), "10.0.0.5", "GET", p, "").await,
            (200, "secret".to_string())
        );
        assert_eq!(
            call_app(app.clone(), "10.0.0.5", "POST", p, "other")
                .await
                .0,
            409
        );
        assert_eq!(
            call_app(
                app,
                "10.0.0.5",
                "POST",
                "/openstack/latest/meta_data.json",
                "x"
            )
            .await
            .0,
            405
        );
    }
}
