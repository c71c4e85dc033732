//! Remote consoles, the domain side (no HTTP, no SQL): where a guest's VNC server listens,
//! the one-time tokens that open it (Nova's console_auth_tokens), and the URL a user opens.
//!
//! Flow: the API asks the instance's compute agent for the driver's VNC target, stores a
//! token for it ([`crate::store::console_tokens`], hashed), and answers a noVNC URL carrying
//! the token; the proxy ([`crate::api::novnc`]) consumes the token on the websocket upgrade
//! and pumps bytes between the browser and the target.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where the proxy connects: the `vnc_target` contract of [`hypervisor::Driver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleTarget {
    /// A unix socket (QEMU's `-vnc unix:PATH`).
    Unix(PathBuf),
    /// `host:port`, as `TcpStream::connect` takes it (IPv6 hosts in brackets).
    Tcp(String),
}

impl ConsoleTarget {
    /// Parse `unix:/abs/path` or `tcp:HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!(
                    "console target {s:?}: the socket path is not absolute"
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("console target {s:?}: expected tcp:HOST:PORT"));
            }
            return Ok(Self::Tcp(addr.to_string()));
        }
        Err(format!(
            "console target {s:?}: expected unix:/path or tcp:HOST:PORT"
        ))
    }

    /// Host and port as `os-console-auth-tokens` shows them (a unix socket: its path, no port).
    pub fn host_port(&self) -> (String, Option<u16>) {
        match self {
            Self::Unix(p) => (p.display().to_string(), None),
            Self::Tcp(a) => match a.rsplit_once(':') {
                Some((h, p)) => (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p.parse().ok(),
                ),
                None => (a.clone(), None),
            },
        }
    }
}

/// A console grant as stored (the token itself is not: only its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleAuth {
    pub instance_uuid: String,
    /// `novnc`.
    pub console_type: String,
    /// The compute host the guest runs on.
    pub host: String,
    /// [`ConsoleTarget`] as the driver spelled it.
    pub target: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why a token opens nothing. The proxy answers 401 for both without saying which, as
/// nova-novncproxy does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Never issued, already used, or its instance was deleted.
    #[error("The token is invalid or has expired")]
    Invalid,
    #[error("The token is invalid or has expired")]
    Expired,
}

/// Bytes of randomness per token (Nova uses a uuid4, 122 bits; 256 here).
const TOKEN_BYTES: usize = 32;

/// A fresh token: URL-safe base64 of 32 random bytes (43 characters, no padding, nothing
/// that needs escaping in a query string).
pub fn new_token() -> String {
    let mut raw = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// What the database keeps of a token: its SHA-256, hex. A plain hash is enough (no salt,
/// no slow KDF): tokens are 256 random bits, not guessable passwords.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The URL a user opens: noVNC's page with `path` telling it where the websocket is.
///
/// noVNC's `vnc_lite.html` (1.3, Debian bookworm) connects to
/// `ws(s)://<page's host>:<page's port>/<path>` with `path` URI-decoded from the query, so
/// `path` is the proxy's location relative to the host root: the page's directory plus
/// `websockify?token=...`, percent-encoded as Nova's `access_url` does.
/// `page` is `[vnc] novncproxy_base_url` or kumo's own `<base>/novnc/vnc_lite.html`.
pub fn access_url(page: &str, token: &str) -> String {
    let path_part = page
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
        .unwrap_or(page);
    let path_part = path_part.split(['?', '#']).next().unwrap_or_default();
    let dir = path_part
        .rsplit_once('/')
        .map_or("", |(d, _)| d)
        .trim_start_matches('/');
    let ws_path = if dir.is_empty() {
        format!("websockify?token={token}")
    } else {
        format!("{dir}/websockify?token={token}")
    };
    let encoded: String = form_urlencoded::byte_serialize(ws_path.as_bytes()).collect();
    let sep = if page.contains('?') { '&' } else { '?' };
    format!("{page}{sep}path={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_the_driver_contract_says() {
        assert_eq!(
            ConsoleTarget::parse("unix:/var/lib/kumo/instances/x/vnc.sock"),
            Ok(ConsoleTarget::Unix(
                "/var/lib/kumo/instances/x/vnc.sock".into()
            ))
        );
        assert_eq!(
            ConsoleTarget::parse("tcp:127.0.0.1:5900"),
            Ok(ConsoleTarget::Tcp("127.0.0.1:5900".into()))
        );
        assert_eq!(
            ConsoleTarget::parse("tcp:[::1]:5901"),
            Ok(ConsoleTarget::Tcp("[::1]:5901".into()))
        );
        assert_eq!(
            ConsoleTarget::parse("tcp:[::1]:5901").map(|t| t.host_port()),
            Ok(("::1".to_string(), Some(5901)))
        );
        for bad in [
            "unix:relative.sock",
            "tcp:host",
            "tcp::5900",
            "tcp:h:99999",
            "vnc.sock",
        ] {
            assert!(ConsoleTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn access_url_points_novnc_at_the_proxy() {
        assert_eq!(
            access_url("http://10.0.0.5:5000/novnc/vnc_lite.html", "abc-_1"),
            "http://10.0.0.5:5000/novnc/vnc_lite.html?path=novnc%2Fwebsockify%3Ftoken%3Dabc-_1"
        );
        // Nova's default novncproxy_base_url: the page at the root.
        assert_eq!(
            access_url("http://127.0.0.1:6080/vnc_lite.html", "t"),
            "http://127.0.0.1:6080/vnc_lite.html?path=websockify%3Ftoken%3Dt"
        );
        // Behind a reverse proxy with a prefix.
        assert_eq!(
            access_url(
                "https://cloud.example/kumo/novnc/vnc_lite.html?scale=true",
                "t"
            ),
            "https://cloud.example/kumo/novnc/vnc_lite.html?scale=true&path=kumo%2Fnovnc%2Fwebsockify%3Ftoken%3Dt"
        );
    }
}
