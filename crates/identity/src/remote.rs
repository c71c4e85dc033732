//! Token validation against a remote identity service, with a cache (keystonemiddleware's
//! auth_token, for an API host that does not run identity itself).
//!
//! [`RemoteValidator`] asks `GET {auth_url}/v3/auth/tokens` with its own service token in
//! `X-Auth-Token` and the caller's in `X-Subject-Token`, and turns Keystone's token body into an
//! [`AuthContext`]. Answers are cached by a SHA-256 of the token (the token itself is never
//! kept as a key nor logged) until the token expires or `cache_time` passes, whichever is
//! first; a refused token is remembered for a few seconds. Concurrent misses for one token
//! share one request. [`RemoteValidator::clear`] drops everything when identity says it
//! changed (kumo wires identity's revision to a bus fanout); a validation that was in flight
//! across a clear does not leave its answer in the cache.

use chrono::{DateTime, Utc};
use common::auth::{AppCredRef, AuthContext, AuthFailure, RoleRef, Scope, TokenValidator};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a refused token is remembered (keystonemiddleware caches invalid tokens too;
/// short, so a token that was refused for a transient reason is asked about again soon).
pub const NEGATIVE_CACHE_TIME: Duration = Duration::from_secs(3);

/// Where the identity service is and who this process is there.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The identity endpoint without `/v3`, e.g. `http://controller:5000/identity`.
    pub auth_url: String,
    /// The service user (in the default domain) whose token validates the callers'.
    pub username: String,
    pub password: String,
    pub project_name: String,
    /// `[keystone_authtoken] token_cache_time`: the longest a validation is trusted.
    pub cache_time: Duration,
    /// Entries kept at most; above it the soonest to expire are dropped.
    pub cache_size: usize,
    /// Every request to identity (connect and answer) ends within this.
    pub request_timeout: Duration,
}

impl RemoteConfig {
    fn base(&self) -> &str {
        self.auth_url.trim_end_matches('/')
    }
}

/// What identity said about one token.
#[derive(Debug, Clone)]
enum Outcome {
    Valid(Arc<AuthContext>),
    Invalid,
    /// Not cached: the next request asks again.
    Unavailable(String),
}

/// One token's cache entry. Created before identity is asked, so concurrent misses find it
/// and wait for the same answer.
struct Slot {
    /// The cache generation it was made in; a clear bumps the generation, so a slot of an
    /// earlier one is never served again even if it is still referenced.
    generation: u64,
    answer: tokio::sync::OnceCell<(Outcome, Instant)>,
}

impl Slot {
    /// Whether this slot may answer now: of the current generation, and pending or fresh.
    fn usable(&self, generation: u64, now: Instant) -> bool {
        self.generation == generation
            && match self.answer.get() {
                None => true,
                Some((Outcome::Unavailable(_), _)) => false,
                Some((_, until)) => *until > now,
            }
    }

    /// Until when it is kept; pending slots are kept (someone waits on them).
    fn until(&self) -> Option<Instant> {
        self.answer.get().map(|(_, until)| *until)
    }
}

type Key = [u8; 32];

struct Cache {
    generation: u64,
    slots: HashMap<Key, Arc<Slot>>,
}

struct ServiceToken {
    token: String,
    /// Logged in again from then on (a while before it expires).
    renew_at: Instant,
}

/// Counters, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// `GET /v3/auth/tokens` requests sent.
    pub validations: u64,
    /// Service-token logins sent.
    pub logins: u64,
}

/// The remote [`TokenValidator`].
pub struct RemoteValidator {
    cfg: RemoteConfig,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    service: RwLock<Option<Arc<ServiceToken>>>,
    login: tokio::sync::Mutex<()>,
    stats: Mutex<Stats>,
}

impl std::fmt::Debug for RemoteValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteValidator")
            .field("auth_url", &self.cfg.auth_url)
            .field("username", &self.cfg.username)
            .finish_non_exhaustive()
    }
}

/// The cache key of a token, and a short form of it for logs.
fn key_of(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

fn short(key: &Key) -> String {
    hex::encode(&key[..6])
}

impl RemoteValidator {
    pub fn new(cfg: RemoteConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            .pool_max_idle_per_host(16)
            .build()
            .unwrap_or_default();
        Self {
            cfg,
            http,
            cache: Mutex::new(Cache {
                generation: 0,
                slots: HashMap::new(),
            }),
            service: RwLock::new(None),
            login: tokio::sync::Mutex::new(()),
            stats: Mutex::new(Stats::default()),
        }
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock()
    }

    /// Tokens cached now (answered or pending).
    pub fn cached(&self) -> usize {
        self.cache.lock().slots.len()
    }

    /// Forget every validation: identity changed (a token revoked, a user disabled, a role
    /// removed...). Validations in flight finish for their callers but are not kept.
    pub fn clear(&self) {
        let mut c = self.cache.lock();
        c.generation += 1;
        let dropped = c.slots.len();
        c.slots.clear();
        tracing::debug!(dropped, generation = c.generation, "token cache cleared");
    }

    /// The slot to wait on for `key`: a usable one, or a new one in the current generation.
    fn slot(&self, key: Key) -> Arc<Slot> {
        let now = Instant::now();
        let mut c = self.cache.lock();
        let generation = c.generation;
        if let Some(s) = c.slots.get(&key)
            && s.usable(generation, now)
        {
            return s.clone();
        }
        if c.slots.len() >= self.cfg.cache_size.max(1) {
            evict(&mut c.slots, now, self.cfg.cache_size.max(1));
        }
        let s = Arc::new(Slot {
            generation,
            answer: tokio::sync::OnceCell::new(),
        });
        c.slots.insert(key, s.clone());
        s
    }

    /// Drop `slot` from the cache if it is still the one for `key` (an unavailable answer).
    fn forget(&self, key: &Key, slot: &Arc<Slot>) {
        let mut c = self.cache.lock();
        if c.slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            c.slots.remove(key);
        }
    }

    /// This process's own token at identity, logged in again when `stale` is the one held
    /// (it was refused) or it is about to expire. One login at a time.
    async fn service_token(&self, stale: Option<&str>) -> Result<Arc<ServiceToken>, AuthFailure> {
        let usable = |t: &Arc<ServiceToken>| {
            t.renew_at > Instant::now() && stale.is_none_or(|s| s != t.token)
        };
        if let Some(t) = self.service.read().clone()
            && usable(&t)
        {
            return Ok(t);
        }
        let _one = self.login.lock().await;
        if let Some(t) = self.service.read().clone()
            && usable(&t)
        {
            return Ok(t);
        }
        self.stats.lock().logins += 1;
        let body = common::auth::service_login_body(
            &self.cfg.username,
            &self.cfg.password,
            &self.cfg.project_name,
        );
        let url = format!("{}/v3/auth/tokens?nocatalog", self.cfg.base());
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let status = resp.status();
        if status != reqwest::StatusCode::CREATED {
            let msg = format!(
                "the service user {} could not log in at {url}: {status} (check [service_user] username, password and project_name)",
                self.cfg.username
            );
            tracing::error!("{msg}");
            return Err(AuthFailure::Unavailable(msg));
        }
        let token = resp
            .headers()
            .get(common::auth::SUBJECT_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let doc: Value = resp.json().await.map_err(|e| unreachable(&url, &e))?;
        let lifetime = doc["token"]["expires_at"]
            .as_str()
            .and_then(parse_time)
            .map(|t| (t - Utc::now()).num_seconds())
            .unwrap_or(3600);
        // Renew well before it expires, as keystoneauth does; never sooner than in 30 s.
        let renew_in = Duration::from_secs((lifetime - 120).max(30) as u64);
        let t = Arc::new(ServiceToken {
            token,
            renew_at: Instant::now() + renew_in,
        });
        *self.service.write() = Some(t.clone());
        tracing::info!(user = %self.cfg.username, auth_url = %self.cfg.auth_url, "logged in to identity to validate tokens");
        Ok(t)
    }

    /// Ask identity about `token` (once more with a new service token if ours was refused).
    async fn ask(&self, token: &str, key: &Key) -> Outcome {
        let mut stale: Option<String> = None;
        for attempt in 0..2 {
            let service = match self.service_token(stale.as_deref()).await {
                Ok(t) => t,
                Err(AuthFailure::Unavailable(m)) => return Outcome::Unavailable(m),
                Err(AuthFailure::Invalid) => return Outcome::Invalid,
            };
            self.stats.lock().validations += 1;
            let url = format!("{}/v3/auth/tokens?nocatalog", self.cfg.base());
            let resp = match self
                .http
                .get(&url)
                .header(common::auth::AUTH_TOKEN_HEADER, &service.token)
                .header(common::auth::SUBJECT_TOKEN_HEADER, token)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Outcome::Unavailable(unreachable(&url, &e).to_string()),
            };
            let status = resp.status();
            match status.as_u16() {
                200 => {
                    let doc: Value = match resp.json().await {
                        Ok(d) => d,
                        Err(e) => return Outcome::Unavailable(unreachable(&url, &e).to_string()),
                    };
                    return match parse_token_body(&doc) {
                        Ok(ctx) => Outcome::Valid(Arc::new(ctx)),
                        Err(e) => {
                            tracing::error!(token = %short(key), error = %e, "identity's token body does not parse");
                            Outcome::Unavailable(format!("identity's token body: {e}"))
                        }
                    };
                }
                404 => return Outcome::Invalid,
                // Our own token was refused (expired, revoked): log in again, once.
                401 if attempt == 0 => stale = Some(service.token.clone()),
                401 => return Outcome::Invalid,
                403 => {
                    let msg = format!(
                        "the service user {} may not validate tokens at {url} (identity:validate_token): give it the service or admin role in project {}",
                        self.cfg.username, self.cfg.project_name
                    );
                    tracing::error!("{msg}");
                    return Outcome::Unavailable(msg);
                }
                _ => {
                    return Outcome::Unavailable(format!(
                        "identity answered {status} to GET {url}"
                    ));
                }
            }
        }
        Outcome::Invalid
    }

    async fn validate_token(&self, token: &str) -> Result<Arc<AuthContext>, AuthFailure> {
        let key = key_of(token);
        let slot = self.slot(key);
        let (outcome, _) = slot
            .answer
            .get_or_init(|| async {
                let outcome = self.ask(token, &key).await;
                let now = Instant::now();
                let until = match &outcome {
                    Outcome::Valid(ctx) => {
                        let left = (ctx.expires_at - Utc::now())
                            .to_std()
                            .unwrap_or(Duration::ZERO);
                        now + left.min(self.cfg.cache_time)
                    }
                    Outcome::Invalid => now + NEGATIVE_CACHE_TIME.min(self.cfg.cache_time),
                    Outcome::Unavailable(_) => now,
                };
                tracing::debug!(token = %short(&key), valid = matches!(outcome, Outcome::Valid(_)), "token validated at identity");
                (outcome, until)
            })
            .await;
        match outcome {
            Outcome::Valid(ctx) if ctx.expires_at > Utc::now() => Ok(ctx.clone()),
            Outcome::Valid(_) | Outcome::Invalid => Err(AuthFailure::Invalid),
            Outcome::Unavailable(m) => {
                self.forget(&key, &slot);
                Err(AuthFailure::Unavailable(m.clone()))
            }
        }
    }
}

/// Make room: drop what expired, then (still full) the half that expires soonest.
fn evict(slots: &mut HashMap<Key, Arc<Slot>>, now: Instant, max: usize) {
    slots.retain(|_, s| s.until().is_none_or(|u| u > now));
    if slots.len() < max {
        return;
    }
    let mut untils: Vec<Instant> = slots.values().filter_map(|s| s.until()).collect();
    if untils.is_empty() {
        return;
    }
    let mid = untils.len() / 2;
    let (_, cut, _) = untils.select_nth_unstable(mid);
    let cut = *cut;
    slots.retain(|_, s| s.until().is_none_or(|u| u > cut));
    tracing::info!(
        kept = slots.len(),
        max,
        "token cache full: dropped the entries that expire soonest"
    );
}

fn unreachable(url: &str, e: &reqwest::Error) -> AuthFailure {
    let why = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    AuthFailure::Unavailable(format!("identity at {url}: {why} ({e})"))
}

#[async_trait::async_trait]
impl TokenValidator for RemoteValidator {
    async fn validate(&self, token: &str) -> Result<Arc<AuthContext>, AuthFailure> {
        self.validate_token(token).await
    }
}

/// Why a token body was not understood.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn text(v: &Value, path: &str) -> Result<String, BodyError> {
    v.pointer(path)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| BodyError(format!("token{path} is missing or not a string")))
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Keystone's `{"token": {...}}` (what `GET /v3/auth/tokens` answers) as an [`AuthContext`].
pub fn parse_token_body(doc: &Value) -> Result<AuthContext, BodyError> {
    let t = doc
        .get("token")
        .filter(|t| t.is_object())
        .ok_or_else(|| BodyError("no token object".into()))?;
    let time = |key: &str| {
        t.get(key)
            .and_then(Value::as_str)
            .and_then(parse_time)
            .ok_or_else(|| BodyError(format!("token/{key} is missing or not a time")))
    };
    let scope = if let Some(p) = t.get("project").filter(|p| p.is_object()) {
        Scope::Project {
            id: text(p, "/id")?,
            name: text(p, "/name")?,
            domain_id: text(p, "/domain/id")?,
            domain_name: text(p, "/domain/name")?,
        }
    } else if let Some(d) = t.get("domain").filter(|d| d.is_object()) {
        Scope::Domain {
            id: text(d, "/id")?,
            name: text(d, "/name")?,
        }
    } else if t.pointer("/system/all").and_then(Value::as_bool) == Some(true) {
        Scope::System
    } else {
        Scope::Unscoped
    };
    let roles = t
        .get("roles")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    Ok(RoleRef {
                        id: text(r, "/id")?,
                        name: text(r, "/name")?,
                    })
                })
                .collect::<Result<Vec<_>, BodyError>>()
        })
        .transpose()?
        .unwrap_or_default();
    let app_cred = match t.get("application_credential").filter(|a| a.is_object()) {
        Some(a) => Some(AppCredRef {
            id: text(a, "/id")?,
            name: a
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            // Keystone treats a credential as restricted unless it says otherwise.
            restricted: a.get("restricted").and_then(Value::as_bool).unwrap_or(true),
        }),
        None => None,
    };
    Ok(AuthContext {
        user_id: text(t, "/user/id")?,
        user_name: text(t, "/user/name")?,
        user_domain_id: text(t, "/user/domain/id")?,
        user_domain_name: text(t, "/user/domain/name")?,
        // Absent means no admin project is configured: every project is one (keystoneauth's
        // and oslo.context's default).
        is_admin_project: matches!(scope, Scope::Project { .. })
            && t.get("is_admin_project")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        scope,
        roles,
        methods: strings(t, "methods"),
        audit_ids: strings(t, "audit_ids"),
        issued_at: time("issued_at")?,
        expires_at: time("expires_at")?,
        app_cred,
    })
}
