//! Fernet tokens in Keystone's exact format.
//!
//! A token is `Fernet(primary key).encrypt(msgpack payload)` with the base64
//! `=` padding stripped, as keystone's `TokenFormatter` makes it; kumo and
//! keystone sharing a key repository accept each other's tokens.
//!
//! - [`keys`]: the key repository (`fernet-keys/`, `credential-keys/`).
//! - [`payload`]: the msgpack payload layouts and the auth-methods bitmask.
//! - [`TokenCodec`]: encode/decode with the repository's keys, picking up
//!   keys rotated by another process (`kumo fernet rotate`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use fernet::Fernet;
use parking_lot::{Mutex, RwLock};

pub mod keys;
pub mod payload;

pub use keys::{
    DEFAULT_MAX_ACTIVE_KEYS, FernetKey, KeyError, KeyPurpose, KeyRepository, RotateOutcome,
    SetupOutcome,
};
pub use payload::{AuthMethods, DEFAULT_AUTH_METHODS};

/// Tokens longer than this are rejected unread. Keystone's tokens are ~200
/// characters; the bound only caps the work a garbage header can cause.
const MAX_TOKEN_LEN: usize = 8192;

/// How often the key directory is checked for a rotation, and how often a
/// failed decode may force a re-read of the keys.
const RELOAD_INTERVAL_MS: u64 = 1000;

/// What a token is scoped to; each variant is one of keystone's payload
/// versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// Version 0.
    Unscoped,
    /// Version 1.
    Domain { domain_id: String },
    /// Version 2.
    Project { project_id: String },
    /// Version 3. `trust_id` must be a 32-hex-digit UUID.
    Trust {
        project_id: String,
        trust_id: String,
    },
    /// Version 8. `scope` is `"all"`, the only system scope keystone has.
    System { scope: String },
    /// Version 9.
    ApplicationCredential {
        project_id: String,
        app_cred_id: String,
    },
}

impl TokenScope {
    /// Keystone's payload version number for this scope.
    pub fn version(&self) -> u64 {
        match self {
            TokenScope::Unscoped => payload::VERSION_UNSCOPED,
            TokenScope::Domain { .. } => payload::VERSION_DOMAIN,
            TokenScope::Project { .. } => payload::VERSION_PROJECT,
            TokenScope::Trust { .. } => payload::VERSION_TRUST,
            TokenScope::System { .. } => payload::VERSION_SYSTEM,
            TokenScope::ApplicationCredential { .. } => payload::VERSION_APP_CRED,
        }
    }
}

/// Everything a token carries.
///
/// Round-trip caveats, all inherited from keystone's format: `methods` come
/// back in bitmask order (last configured method first) with unknown names
/// dropped; `expires_at` keeps microseconds (float64 seconds); audit ids come
/// back without `=` padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPayload {
    pub user_id: String,
    pub methods: Vec<String>,
    pub scope: TokenScope,
    pub expires_at: DateTime<Utc>,
    /// `[audit_id]` or `[audit_id, parent_audit_id]`, urlsafe base64 of 16 bytes.
    pub audit_ids: Vec<String>,
}

/// A validated token's contents. Expiry is not checked here; see
/// [`DecodedToken::is_expired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedToken {
    pub payload: TokenPayload,
    /// The Fernet timestamp: keystone's `issued_at` (whole seconds).
    pub issued_at: DateTime<Utc>,
}

impl DecodedToken {
    /// Keystone treats a token as expired from its `expires_at` on.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.payload.expires_at
    }
}

/// Token errors. For the API every decode error means "401/404, token not
/// valid"; the variants only help logging and tests.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Garbage, truncated, tampered or made with a key we do not have.
    #[error("could not recognize Fernet token")]
    Invalid,
    /// Authentic, but a payload version kumo does not implement
    /// (federation 4-6, OAuth1 7, OAuth2 10).
    #[error("not a recognized Fernet payload version: {0}")]
    UnsupportedVersion(u64),
    /// Authentic, but the payload does not have keystone's layout.
    #[error("malformed token payload: {0}")]
    Malformed(&'static str),
    /// The payload cannot be represented in keystone's format.
    #[error("cannot encode token: {0}")]
    Encode(String),
    /// Keys handed to [`TokenCodec::from_keys`] are missing or not Fernet keys.
    #[error("no usable Fernet keys: {0}")]
    KeyMaterial(&'static str),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// A new audit id: 16 random bytes, urlsafe base64 without padding (22
/// characters), like keystone's `random_urlsafe_str`.
pub fn new_audit_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Keystone's `creation_time`: the Fernet timestamp of a token, without
/// checking anything else. Use it for `issued_at` of a token just encoded.
pub fn token_issued_at(token: &str) -> Result<DateTime<Utc>, TokenError> {
    let secs = fernet_timestamp(token)?;
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or(TokenError::Invalid)
}

/// Version byte and timestamp: the first 9 bytes are the first 12 base64
/// characters, so only those are decoded.
fn fernet_timestamp(token: &str) -> Result<u64, TokenError> {
    let head = token.get(..12).ok_or(TokenError::Invalid)?;
    let mut buf = [0u8; 9];
    match URL_SAFE_NO_PAD.decode_slice(head, &mut buf) {
        Ok(9) if buf[0] == 0x80 => {}
        _ => return Err(TokenError::Invalid),
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&buf[1..]);
    Ok(u64::from_be_bytes(ts))
}

/// Loaded keys, primary first.
struct KeySet {
    keys: Vec<FernetKey>,
    fernets: Vec<Fernet>,
}

impl KeySet {
    fn new(keys: Vec<FernetKey>) -> Result<Self, TokenError> {
        let fernets = keys
            .iter()
            .map(|k| Fernet::new(&k.key))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::KeyMaterial(
                "a key is not urlsafe base64 of 32 bytes",
            ))?;
        if fernets.is_empty() {
            return Err(TokenError::KeyMaterial("no keys given"));
        }
        Ok(Self { keys, fernets })
    }

    /// MultiFernet semantics: the first key that authenticates the token wins.
    fn decrypt(&self, token: &str, timestamp: u64) -> Option<Vec<u8>> {
        // Passing the token's own timestamp as "now" disables the crate's
        // 60 s future-skew check, which keystone (no TTL given) does not have:
        // a node whose clock runs ahead must not break validation elsewhere.
        // The crate adds 60 to "now" before comparing: keep that from
        // overflowing on a forged far-future timestamp.
        let now = timestamp.min(u64::MAX - 60);
        self.fernets
            .iter()
            .find_map(|f| f.decrypt_at_time(token, None, now).ok())
    }
}

/// Watches a key repository for rotations made by another process.
struct Watch {
    repo: KeyRepository,
    epoch: Instant,
    /// Milliseconds since `epoch` before which the directory is not stat'ed.
    next_stat_ms: AtomicU64,
    /// Same for the forced re-read after a failed decode.
    next_forced_ms: AtomicU64,
    stamp: Mutex<Option<keys::DirStamp>>,
}

impl Watch {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// True for exactly one caller per interval, without taking a lock.
    fn claim(slot: &AtomicU64, now_ms: u64) -> bool {
        let due = slot.load(Ordering::Relaxed);
        now_ms >= due
            && slot
                .compare_exchange(
                    due,
                    now_ms + RELOAD_INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

struct Inner {
    methods: AuthMethods,
    keys: RwLock<Arc<KeySet>>,
    watch: Option<Watch>,
}

/// Encodes and decodes tokens. Cheap to clone; clones share keys.
#[derive(Clone)]
pub struct TokenCodec {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.inner.keys.read();
        f.debug_struct("TokenCodec")
            .field(
                "key_indexes",
                &keys.keys.iter().map(|k| k.index).collect::<Vec<_>>(),
            )
            .field("methods", &self.inner.methods)
            .field(
                "repository",
                &self.inner.watch.as_ref().map(|w| w.repo.path()),
            )
            .finish()
    }
}

impl TokenCodec {
    /// A codec over a key repository. Keys are re-read when the directory
    /// changes (checked at most once a second) and when a token fails to
    /// decode (at most once a second), so a rotation by another process is
    /// picked up without a restart.
    pub fn from_repository(repo: KeyRepository, methods: AuthMethods) -> Result<Self, TokenError> {
        let stamp = repo.stamp();
        let set = KeySet::new(repo.load()?)?;
        let epoch = Instant::now();
        Ok(Self {
            inner: Arc::new(Inner {
                methods,
                keys: RwLock::new(Arc::new(set)),
                watch: Some(Watch {
                    repo,
                    epoch,
                    next_stat_ms: AtomicU64::new(RELOAD_INTERVAL_MS),
                    next_forced_ms: AtomicU64::new(0),
                    stamp: Mutex::new(stamp.filter(|s| !s.is_recent())),
                }),
            }),
        })
    }

    /// A codec over fixed keys (urlsafe base64), primary first. Never reloads.
    pub fn from_keys<S: AsRef<str>>(keys: &[S], methods: AuthMethods) -> Result<Self, TokenError> {
        let keys = keys
            .iter()
            .zip((0..keys.len() as u64).rev())
            .map(|(k, index)| FernetKey {
                index,
                key: k.as_ref().trim().to_owned(),
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                methods,
                keys: RwLock::new(Arc::new(KeySet::new(keys)?)),
                watch: None,
            }),
        })
    }

    pub fn methods(&self) -> &AuthMethods {
        &self.inner.methods
    }

    /// Encrypts `payload` with the primary key, stamped with the current time.
    pub fn encode(&self, payload: &TokenPayload) -> Result<String, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.encode_at(payload, now)
    }

    /// As [`encode`](Self::encode) with an explicit Fernet timestamp (Unix
    /// seconds), which becomes the token's `issued_at`.
    pub fn encode_at(&self, payload: &TokenPayload, issued_at: u64) -> Result<String, TokenError> {
        self.refresh_if_changed();
        let bytes = payload::pack(payload, &self.inner.methods)?;
        let keys = self.current_keys();
        let mut token = keys.fernets[0].encrypt_at_time(&bytes, issued_at);
        // Keystone strips the padding: `=` is not URL-safe.
        let unpadded = token.trim_end_matches('=').len();
        token.truncate(unpadded);
        Ok(token)
    }

    /// Authenticates and parses a token made by kumo or keystone, with or
    /// without its `=` padding. Does not check expiry.
    pub fn decode(&self, token: &str) -> Result<DecodedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let timestamp = fernet_timestamp(token)?;
        self.refresh_if_changed();
        let keys = self.current_keys();
        let plain = match keys.decrypt(token, timestamp) {
            Some(plain) => plain,
            // Maybe the key was rotated in and the directory stamp did not
            // show it (e.g. a key file rewritten in place): re-read once.
            None => match self.force_reload_if_due() {
                Some(fresh) => fresh.decrypt(token, timestamp).ok_or(TokenError::Invalid)?,
                None => return Err(TokenError::Invalid),
            },
        };
        let payload = payload::unpack(&plain, &self.inner.methods)?;
        let issued_at = i64::try_from(timestamp)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(TokenError::Invalid)?;
        Ok(DecodedToken { payload, issued_at })
    }

    /// Re-reads the key repository now. A no-op for [`from_keys`](Self::from_keys) codecs.
    pub fn reload(&self) -> Result<(), TokenError> {
        let Some(watch) = &self.inner.watch else {
            return Ok(());
        };
        let mut stamp = watch.stamp.lock();
        // Stamp first: a change racing the read then shows up next check.
        let new_stamp = watch.repo.stamp();
        let set = KeySet::new(watch.repo.load()?)?;
        // A just-modified directory may change again within the same mtime
        // tick; forget the stamp so the next check reloads once more.
        *stamp = new_stamp.filter(|s| !s.is_recent());
        let changed = set.keys != self.inner.keys.read().keys;
        if changed {
            tracing::info!(
                path = %watch.repo.path().display(),
                keys = ?set.keys.iter().map(|k| k.index).collect::<Vec<_>>(),
                "loaded rotated Fernet keys"
            );
            *self.inner.keys.write() = Arc::new(set);
        }
        Ok(())
    }

    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.inner.keys.read())
    }

    /// Cheap on the hot path: one atomic load unless a second has passed.
    fn refresh_if_changed(&self) {
        let Some(watch) = &self.inner.watch else {
            return;
        };
        if !Watch::claim(&watch.next_stat_ms, watch.now_ms()) {
            return;
        }
        let current = watch.repo.stamp();
        if current.is_some() && current != *watch.stamp.lock() {
            self.reload_logged();
        }
    }

    /// After a failed decode: re-read the keys if allowed this second and
    /// return them if they changed.
    fn force_reload_if_due(&self) -> Option<Arc<KeySet>> {
        let watch = self.inner.watch.as_ref()?;
        if !Watch::claim(&watch.next_forced_ms, watch.now_ms()) {
            return None;
        }
        let before = self.current_keys();
        self.reload_logged();
        let after = self.current_keys();
        (!Arc::ptr_eq(&before, &after)).then_some(after)
    }

    /// Keeps serving with the old keys if the repository is mid-copy or
    /// broken; the operator sees the warning.
    fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "cannot reload Fernet keys; keeping the current ones");
        }
    }
}

#[cfg(test)]
mod tests;
