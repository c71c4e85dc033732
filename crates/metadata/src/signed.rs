//! Nova's metadata API as its own service (nova-api-metadata, port 8775): requests a network's
//! metadata proxy forwards with the instance it found behind the guest's address, in headers
//! signed with the secret both share (`[neutron] metadata_proxy_shared_secret`):
//!
//! - `X-Instance-ID`: the instance (the port's device_id); missing: 400.
//! - `X-Tenant-ID`: its project; missing: 400; not the instance's: 404.
//! - `X-Instance-ID-Signature`: hex HMAC-SHA256 of the instance id keyed with the secret;
//!   missing or wrong: 403 (only a holder of the secret may ask for any instance's data).
//! - `X-Forwarded-For`: the guest's address (which port's floating IPs it sees).
//!
//! The answers are the trees of [`crate::service`], the same as a namespace listener gives.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::service::{Directory, method_allowed, not_found, plain, reply};
use crate::tree::Settings;

pub const INSTANCE_ID: &str = "x-instance-id";
pub const TENANT_ID: &str = "x-tenant-id";
pub const SIGNATURE: &str = "x-instance-id-signature";
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The signature of `instance_id`: hex HMAC-SHA256 keyed with the shared secret.
pub fn sign(secret: &str, instance_id: &str) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(instance_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` is the one of `instance_id` (compared in constant time).
pub fn verify(secret: &str, instance_id: &str, signature: &str) -> bool {
    let Ok(sig) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(instance_id.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

#[derive(Clone)]
struct Signed {
    directory: Arc<dyn Directory>,
    settings: Arc<Settings>,
    secret: Arc<str>,
}

/// The metadata API behind the proxies; `secret` must not be empty (the caller refuses to
/// start without one).
pub fn router(directory: Arc<dyn Directory>, settings: Settings, secret: &str) -> Router {
    Router::new().fallback(answer).with_state(Signed {
        directory,
        settings: Arc::new(settings),
        secret: secret.into(),
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn bad_request(what: &str) -> Response {
    plain(
        StatusCode::BAD_REQUEST,
        &format!("400 Bad Request\n\n{what} header is missing from request.\n"),
    )
}

async fn answer(State(s): State<Signed>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if !method_allowed(req.method()) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    let h = req.headers();
    // The guest's address is the first of the chain (a proxy appends its own hops).
    let address: Option<IpAddr> = header(h, FORWARDED_FOR)
        .and_then(|v| v.split(',').next())
        .and_then(|a| a.trim().parse().ok());
    let Some(instance_id) = header(h, INSTANCE_ID).map(str::to_string) else {
        return bad_request("X-Instance-ID");
    };
    let Some(tenant_id) = header(h, TENANT_ID).map(str::to_string) else {
        return bad_request("X-Tenant-ID");
    };
    let signature = header(h, SIGNATURE).unwrap_or_default();
    if !verify(&s.secret, &instance_id, signature) {
        tracing::warn!(instance = %instance_id, from = ?address, "metadata request with a missing or wrong X-Instance-ID-Signature: 403");
        return plain(
            StatusCode::FORBIDDEN,
            "403 Forbidden\n\nInvalid proxy request signature.\n",
        );
    }
    let facts = match s.directory.instance_by_id(&instance_id, address).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            tracing::info!(instance = %instance_id, %path, "metadata request for an unknown instance: 404");
            return not_found();
        }
        Err(e) => {
            tracing::error!(instance = %instance_id, error = %e, "metadata lookup failed");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n\nAn unknown error has occurred. Please try your request again.\n",
            );
        }
    };
    if facts.project_id != tenant_id {
        tracing::warn!(instance = %instance_id, tenant = %tenant_id, "X-Tenant-ID is not the instance's project: 404");
        return not_found();
    }
    reply(s.directory.as_ref(), &s.settings, &facts, &path, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::OneInstance;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::sync::Mutex;
    use tower::ServiceExt;

    const SECRET: &str = "s3cret";

    fn app() -> Router {
        router(
            Arc::new(OneInstance {
                password: Mutex::new(String::new()),
            }),
            Settings::default(),
            SECRET,
        )
    }

    async fn call(
        app: Router,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from("pw")).unwrap_or_else(|e| panic!("{e}"));
        let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_instance_id() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(
            "Jefe",
            "what do ya want for nothing?",
            &sign("Jefe", "what do ya want for nothing?")
        ));
        assert!(!verify(
            "other",
            "what do ya want for nothing?",
            &sign("Jefe", "what do ya want for nothing?")
        ));
        assert!(!verify("Jefe", "x", "not hex"));
    }

    #[tokio::test]
    async fn signed_requests_get_the_instances_metadata_others_not() {
        let f = crate::tree::tests::facts();
        let sig = sign(SECRET, &f.uuid);
        let good = [
            (INSTANCE_ID, f.uuid.as_str()),
            (TENANT_ID, f.project_id.as_str()),
            (SIGNATURE, sig.as_str()),
            (FORWARDED_FOR, "10.0.0.5"),
        ];
        let (s, body) = call(app(), "GET", "/openstack/latest/meta_data.json", &good).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"hostname\":\"web-1.novalocal\""), "{body}");
        let forged = sign("guess", &f.uuid);
        let mut bad = good;
        bad[2] = (SIGNATURE, forged.as_str());
        assert_eq!(call(app(), "GET", "/openstack", &bad).await.0, 403);
        assert_eq!(call(app(), "GET", "/openstack", &good[..2]).await.0, 403);
        assert_eq!(call(app(), "GET", "/openstack", &good[1..]).await.0, 400);
        let mut other_tenant = good;
        other_tenant[1] = (TENANT_ID, "someone-else");
        assert_eq!(call(app(), "GET", "/openstack", &other_tenant).await.0, 404);
        let unknown_sig = sign(SECRET, "no-such-instance");
        let unknown = [
            (INSTANCE_ID, "no-such-instance"),
            (TENANT_ID, f.project_id.as_str()),
            (SIGNATURE, unknown_sig.as_str()),
        ];
        assert_eq!(call(app(), "GET", "/openstack", &unknown).await.0, 404);
        assert_eq!(call(app(), "DELETE", "/openstack", &good).await.0, 405);
        let shared = app();
        assert_eq!(
            call(shared.clone(), "POST", "/openstack/latest/password", &good)
                .await
                .0,
            200
        );
        assert_eq!(
            call(shared, "GET", "/openstack/latest/password", &good).await,
            (200, "pw".into())
        );
    }
}
