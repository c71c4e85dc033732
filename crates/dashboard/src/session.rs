//! Sessions in memory, keyed by a random id in a cookie; each holds its CSRF token and, once
//! logged in, the user's token. Nothing here is written to disk: a restart logs everyone out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use parking_lot::Mutex;
use rand::RngCore;

use crate::api::{Auth, ProjectRef};

pub const COOKIE: &str = "kumo_dashboard_session";
/// The form field every POST carries.
pub const CSRF_FIELD: &str = "csrf_token";
/// A session nobody used for this long is forgotten (its token stays valid until it expires).
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Anonymous sessions (a login page shown) kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    /// "ok" or "error"
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    pub auth: Option<Auth>,
    pub projects: Vec<ProjectRef>,
    pub flashes: Vec<Flash>,
    /// every token issued to this session (revoked at logout)
    pub tokens: Vec<String>,
    /// a key pair's private key waiting for its one download: (name, PEM)
    pub pending_key: Option<(String, String)>,
    /// image id -> name, from the last image list (the polled rows show names without a call)
    pub image_names: std::collections::HashMap<String, String>,
    last_seen: Instant,
}

impl Session {
    fn new() -> Self {
        Session {
            csrf: random_hex(32),
            auth: None,
            projects: Vec::new(),
            flashes: Vec::new(),
            tokens: Vec::new(),
            pending_key: None,
            image_names: Default::default(),
            last_seen: Instant::now(),
        }
    }

    /// True when `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        match given {
            Some(g) => constant_time_eq(g.as_bytes(), self.csrf.as_bytes()),
            None => false,
        }
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id from the request's cookies, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The Set-Cookie value for a session id (HttpOnly, SameSite=Strict, only under /dashboard).
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/dashboard")
}

/// The Set-Cookie value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0")
}

#[derive(Default)]
pub struct SessionStore {
    inner: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    /// A new anonymous session; returns its id.
    pub fn create(&self) -> String {
        let id = random_hex(32);
        let mut map = self.inner.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
        if map.len() >= MAX_SESSIONS {
            // drop the oldest anonymous sessions first
            let mut anon: Vec<(String, Instant)> = map
                .iter()
                .filter(|(_, s)| s.auth.is_none())
                .map(|(k, s)| (k.clone(), s.last_seen))
                .collect();
            anon.sort_by_key(|(_, t)| *t);
            for (k, _) in anon.into_iter().take(map.len() + 1 - MAX_SESSIONS) {
                map.remove(&k);
            }
        }
        map.insert(id.clone(), Session::new());
        id
    }

    /// A copy of the session (and it counts as used).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock();
        let s = map.get_mut(id)?;
        if s.last_seen.elapsed() >= IDLE {
            map.remove(id);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// Change the session in place; false when it is gone.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Session)) -> bool {
        match self.inner.lock().get_mut(id) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        }
    }

    pub fn remove(&self, id: &str) -> Option<Session> {
        self.inner.lock().remove(id)
    }

    /// Flash messages are shown once.
    pub fn take_flashes(&self, id: &str) -> Vec<Flash> {
        self.inner
            .lock()
            .get_mut(id)
            .map(|s| std::mem::take(&mut s.flashes))
            .unwrap_or_default()
    }

    pub fn flash(&self, id: &str, kind: &'static str, text: impl Into<String>) {
        let text = text.into();
        self.update(id, |s| s.flashes.push(Flash { kind, text }));
    }

    /// A logged-in session gets a new id (no session fixation); the old id is forgotten.
    pub fn rotate(&self, old: &str) -> Option<String> {
        let mut map = self.inner.lock();
        let mut s = map.remove(old)?;
        s.csrf = random_hex(32);
        let id = random_hex(32);
        map.insert(id.clone(), s);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn csrf_is_per_session_and_checked_exactly() {
        let store = SessionStore::default();
        let a = store.create();
        let b = store.create();
        let sa = store.get(&a).unwrap();
        let sb = store.get(&b).unwrap();
        assert_ne!(sa.csrf, sb.csrf);
        assert_eq!(sa.csrf.len(), 64);
        assert!(sa.csrf_ok(Some(&sa.csrf)));
        assert!(!sa.csrf_ok(None));
        assert!(!sa.csrf_ok(Some("")));
        assert!(!sa.csrf_ok(Some(&sb.csrf)));
        let mut almost = sa.csrf.clone();
        almost.pop();
        assert!(!sa.csrf_ok(Some(&almost)));
        almost.push('x');
        assert!(!sa.csrf_ok(Some(&almost)));
    }

    #[test]
    fn cookie_parsing() {
        let id = random_hex(32);
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}; x=y")).unwrap(),
        );
        assert_eq!(session_id(&h), Some(id.clone()));
        let mut bad = HeaderMap::new();
        bad.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_static("kumo_dashboard_session=../../etc"),
        );
        assert_eq!(session_id(&bad), None);
        assert_eq!(session_id(&HeaderMap::new()), None);
        let c = set_cookie(&id);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(c.contains("Path=/dashboard"));
    }

    #[test]
    fn rotate_gives_new_id_and_csrf_and_forgets_old() {
        let store = SessionStore::default();
        let old = store.create();
        let before = store.get(&old).unwrap().csrf;
        store.flash(&old, "ok", "hello");
        let new = store.rotate(&old).unwrap();
        assert_ne!(new, old);
        assert!(store.get(&old).is_none());
        let s = store.get(&new).unwrap();
        assert_ne!(s.csrf, before);
        assert_eq!(store.take_flashes(&new).len(), 1);
        assert!(store.take_flashes(&new).is_empty());
        assert!(store.remove(&new).is_some());
        assert!(store.is_empty());
    }
}
