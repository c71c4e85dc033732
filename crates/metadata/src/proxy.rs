//! The network side of a split metadata service (Neutron's metadata proxy): a namespace
//! listener that does not answer itself but finds the port behind the guest's address,
//! signs its instance id and forwards the request to the metadata API of another process
//! ([`crate::signed`]), passing the answer back.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::service::{DirectoryError, method_allowed, not_found, plain, source};
use crate::signed;

/// The instance and project that own an address on a network (a port's device_id and
/// project), as the proxy tells the metadata API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub instance_id: String,
    pub tenant_id: String,
}

/// Where the proxy finds the port behind an address.
#[async_trait]
pub trait PortLocator: Send + Sync {
    async fn owner_at(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<Option<Owner>, DirectoryError>;
}

/// The metadata API the proxies forward to (`[metadata] nova_metadata_host`/`_port`) and the
/// secret they sign with.
pub struct Upstream {
    base: String,
    secret: String,
    http: reqwest::Client,
}

/// The largest body forwarded either way (a posted password is 256 bytes, user_data 64 KiB).
const MAX_BODY: usize = 1 << 20;

impl Upstream {
    pub fn new(host: &str, port: u16, secret: &str) -> Self {
        // An IPv6 literal needs its brackets in a URL.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Upstream {
            base: format!("http://{host}:{port}"),
            secret: secret.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

#[derive(Clone)]
struct Proxied {
    network_id: String,
    locator: Arc<dyn PortLocator>,
    upstream: Arc<Upstream>,
}

/// The router of one network's proxying listener; serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(network_id: &str, locator: Arc<dyn PortLocator>, upstream: Arc<Upstream>) -> Router {
    Router::new().fallback(forward).with_state(Proxied {
        network_id: network_id.to_string(),
        locator,
        upstream,
    })
}

fn unavailable(status: StatusCode, why: &str) -> Response {
    plain(
        status,
        &format!(
            "{} {}\n\n{why}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
    )
}

async fn forward(
    State(p): State<Proxied>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let address = source(peer);
    let method = req.method().clone();
    if !method_allowed(&method) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let owner = match p.locator.owner_at(&p.network_id, address).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            tracing::info!(network = %p.network_id, %address, path = %path_and_query, "metadata request from an address no instance holds: 404");
            return not_found();
        }
        Err(e) => {
            tracing::error!(network = %p.network_id, %address, error = %e, "metadata proxy: port lookup failed");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n\nThe metadata proxy could not look up this address; see kumo's log.\n",
            );
        }
    };
    let accept = req.headers().get(header::ACCEPT).cloned();
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "400 Bad Request\n\nRequest is too large.\n",
            );
        }
    };
    let url = format!("{}{path_and_query}", p.upstream.base);
    let mut out = p
        .upstream
        .http
        .request(method.clone(), &url)
        .header(signed::FORWARDED_FOR, address.to_string())
        .header(signed::INSTANCE_ID, &owner.instance_id)
        .header(signed::TENANT_ID, &owner.tenant_id)
        .header(
            signed::SIGNATURE,
            signed::sign(&p.upstream.secret, &owner.instance_id),
        );
    if let Some(a) = accept {
        out = out.header(header::ACCEPT, a);
    }
    if let Some(c) = content_type {
        out = out.header(header::CONTENT_TYPE, c);
    }
    if !body.is_empty() {
        out = out.body(body);
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            let (status, why) = if e.is_timeout() {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "The metadata service did not answer in time.",
                )
            } else {
                (
                    StatusCode::BAD_GATEWAY,
                    "The metadata service is unreachable.",
                )
            };
            tracing::error!(network = %p.network_id, %address, instance = %owner.instance_id, upstream = %p.upstream.base, error = %e, "metadata proxy: {why}");
            return unavailable(status, why);
        }
    };
    let status = resp.status();
    if status == StatusCode::FORBIDDEN {
        tracing::warn!(upstream = %p.upstream.base, "the metadata service refused the proxy's signature: is [neutron] metadata_proxy_shared_secret the same in both processes' configs?");
    }
    let ctype = resp.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(upstream = %p.upstream.base, error = %e, "metadata proxy: the answer broke off");
            return unavailable(
                StatusCode::BAD_GATEWAY,
                "The metadata service's answer broke off.",
            );
        }
    };
    tracing::debug!(instance = %owner.instance_id, path = %path_and_query, status = status.as_u16(), "metadata proxied");
    let mut r = (status, bytes).into_response();
    if let Some(c) = ctype {
        r.headers_mut().insert(header::CONTENT_TYPE, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::OneInstance;
    use std::sync::Mutex;

    struct OnePort;

    #[async_trait]
    impl PortLocator for OnePort {
        async fn owner_at(
            &self,
            network_id: &str,
            address: IpAddr,
        ) -> Result<Option<Owner>, DirectoryError> {
            let f = crate::tree::tests::facts();
            Ok(
                (network_id == "n1" && address.to_string() == "127.0.0.1").then_some(Owner {
                    instance_id: f.uuid,
                    tenant_id: f.project_id,
                }),
            )
        }
    }

    async fn serve(app: Router) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        addr
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ct, r.text().await.unwrap_or_default())
    }

    /// A proxy in front of a real metadata API over loopback: the signed answer comes back;
    /// a wrong secret is refused upstream (403 passed back); no upstream: 502.
    #[tokio::test]
    async fn the_proxy_signs_forwards_and_passes_the_answer_back() {
        let api = serve(crate::signed::router(
            Arc::new(OneInstance {
                password: Mutex::new(String::new()),
            }),
            crate::tree::Settings::default(),
            "shared",
        ))
        .await;
        let port = api.port();
        let proxy = |secret: &str, port: u16| {
            router(
                "n1",
                Arc::new(OnePort),
                Arc::new(Upstream::new("127.0.0.1", port, secret)),
            )
        };
        let good = serve(proxy("shared", port)).await;
        let (s, ct, body) = get(good, "/openstack/latest/meta_data.json").await;
        assert_eq!((s, ct.as_str()), (200, "application/json"), "{body}");
        assert!(body.contains("web-1.novalocal"), "{body}");
        let (s, _, body) = get(good, "/latest/meta-data/local-ipv4").await;
        assert_eq!((s, body.as_str()), (200, "10.0.0.5"));
        let wrong = serve(proxy("guessed", port)).await;
        assert_eq!(get(wrong, "/openstack").await.0, 403);
        let other_net = serve(router(
            "n2",
            Arc::new(OnePort),
            Arc::new(Upstream::new("127.0.0.1", port, "shared")),
        ))
        .await;
        assert_eq!(get(other_net, "/openstack").await.0, 404);
        // a port nobody listens on (bound, then closed)
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let down = serve(proxy("shared", closed)).await;
        let (s, _, body) = get(down, "/openstack").await;
        assert_eq!(s, 502, "{body}");
        assert!(body.contains("unreachable"), "{body}");
    }
}
