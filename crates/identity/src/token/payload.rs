//! Keystone's msgpack token payloads, byte for byte.
//!
//! A payload is a msgpack array `[version, field...]`; the fields per version
//! are those of keystone's `token_formatters` payload classes:
//!
//! | v | scope               | fields after the version                                   |
//! |---|---------------------|------------------------------------------------------------|
//! | 0 | unscoped            | user, methods, expires, audit_ids                          |
//! | 1 | domain              | user, methods, domain, expires, audit_ids                  |
//! | 2 | project             | user, methods, project, expires, audit_ids                 |
//! | 3 | trust               | user, methods, project, expires, audit_ids, trust          |
//! | 8 | system              | user, methods, system, expires, audit_ids                  |
//! | 9 | application cred.   | user, methods, project, expires, audit_ids, app_cred       |
//!
//! `user`, `project` and `app_cred` are `[is_uuid, value]` pairs: a 32-hex-digit
//! id is packed as its 16 raw bytes (`bin`), anything else as a `str`. `domain`
//! is a bare `bin` (UUID) or `str` (the non-UUID default domain id); `trust`
//! is always a bare 16-byte `bin`. `methods` is a bitmask over the configured
//! `[auth] methods` list, `expires` a float64 of Unix seconds and each audit id
//! the 16 bytes behind its urlsafe-base64 text.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use rmpv::Value;

use super::{TokenError, TokenPayload, TokenScope};

/// Keystone's default `[auth] methods`, in order: the order defines the bits.
/// Keystone 30.0.0 appended `ec2credential` (the marker on tokens minted by
/// `/v3/ec2tokens`); earlier releases stop at `application_credential`, and
/// since the new method only adds the top bit, tokens without it are the same
/// under both lists.
pub const DEFAULT_AUTH_METHODS: [&str; 7] = [
    "external",
    "password",
    "token",
    "oauth1",
    "mapped",
    "application_credential",
    "ec2credential",
];

pub(crate) const VERSION_UNSCOPED: u64 = 0;
pub(crate) const VERSION_DOMAIN: u64 = 1;
pub(crate) const VERSION_PROJECT: u64 = 2;
pub(crate) const VERSION_TRUST: u64 = 3;
pub(crate) const VERSION_SYSTEM: u64 = 8;
pub(crate) const VERSION_APP_CRED: u64 = 9;

/// Accepts audit ids with or without padding and with stray low bits, as
/// Python's lenient `urlsafe_b64decode(s + '==')` does.
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The configured `[auth] methods` list and the bitmask it defines: the n-th
/// method (0-based) is bit `1 << n`. Every node must use the same list, or
/// methods decode as the wrong names, exactly as in keystone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMethods {
    /// (bit, name) in configuration order.
    map: Vec<(u64, String)>,
}

impl Default for AuthMethods {
    fn default() -> Self {
        Self::new(DEFAULT_AUTH_METHODS)
    }
}

impl AuthMethods {
    /// Methods beyond the 64th get no bit (keystone's would overflow into a
    /// bignum that no deployment uses).
    pub fn new<I, S>(methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let map = methods
            .into_iter()
            .zip(0u32..64)
            .map(|(name, bit)| (1u64 << bit, name.into()))
            .collect();
        Self { map }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.iter().map(|(_, name)| name.as_str())
    }

    /// Sum of the bits of every listed method; unknown names count nothing and
    /// a repeated name counts twice, both as keystone does.
    pub fn to_bitmask<S: AsRef<str>>(&self, methods: &[S]) -> u64 {
        methods
            .iter()
            .flat_map(|m| {
                self.map
                    .iter()
                    .filter(move |(_, name)| name == m.as_ref())
                    .map(|(bit, _)| *bit)
            })
            .fold(0u64, u64::wrapping_add)
    }

    /// The methods in a bitmask, highest bit first (keystone's order).
    /// Mirrors keystone's quotient test so that odd values (bits above the
    /// configured ones) decode to the same list keystone would give.
    pub fn from_bitmask(&self, mut mask: u64) -> Vec<String> {
        let mut methods = Vec::new();
        if mask == 0 {
            return methods;
        }
        for (bit, name) in self.map.iter().rev() {
            if mask / bit == 1 {
                methods.push(name.clone());
                mask -= bit;
            }
        }
        methods
    }
}

/// Serialises `payload` as keystone would for the matching payload class.
pub(crate) fn pack(payload: &TokenPayload, methods: &AuthMethods) -> Result<Vec<u8>, TokenError> {
    let version = payload.scope.version();
    let user = id_pair(&payload.user_id);
    let mask = Value::from(methods.to_bitmask(&payload.methods));
    let expires = Value::F64(expires_to_float(payload.expires_at));
    let audit_ids = Value::Array(
        payload
            .audit_ids
            .iter()
            .map(|a| audit_id_bytes(a).map(Value::Binary))
            .collect::<Result<_, _>>()?,
    );
    let mut fields = vec![Value::from(version), user, mask];
    match &payload.scope {
        TokenScope::Unscoped => fields.extend([expires, audit_ids]),
        TokenScope::Domain { domain_id } => {
            fields.extend([bare_id(domain_id), expires, audit_ids]);
        }
        TokenScope::Project { project_id } => {
            fields.extend([id_pair(project_id), expires, audit_ids]);
        }
        TokenScope::Trust {
            project_id,
            trust_id,
        } => {
            let Some(trust) = uuid_bytes(trust_id) else {
                return Err(TokenError::Encode(format!(
                    "trust id {trust_id:?} is not a 32-hex-digit UUID"
                )));
            };
            fields.extend([
                id_pair(project_id),
                expires,
                audit_ids,
                Value::Binary(trust.to_vec()),
            ]);
        }
        TokenScope::System { scope } => {
            fields.extend([Value::from(scope.as_str()), expires, audit_ids]);
        }
        TokenScope::ApplicationCredential {
            project_id,
            app_cred_id,
        } => {
            fields.extend([
                id_pair(project_id),
                expires,
                audit_ids,
                id_pair(app_cred_id),
            ]);
        }
    }
    let mut out = Vec::with_capacity(96);
    rmpv::encode::write_value(&mut out, &Value::Array(fields))
        .map_err(|e| TokenError::Encode(format!("msgpack: {e}")))?;
    Ok(out)
}

/// Parses a decrypted payload. Field types are accepted as keystone accepts
/// them, including `str` where `bin` is expected: tokens packed by
/// msgpack < 1.0 (keystone's `raw=True` fallback) carry bytes as `str`.
pub(crate) fn unpack(bytes: &[u8], methods: &AuthMethods) -> Result<TokenPayload, TokenError> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value(&mut rd)
        .map_err(|_| TokenError::Malformed("payload is not msgpack"))?;
    if !rd.is_empty() {
        return Err(TokenError::Malformed("trailing bytes after payload"));
    }
    let Value::Array(fields) = value else {
        return Err(TokenError::Malformed("payload is not an array"));
    };
    let (version, f) = match fields.split_first() {
        Some((v, rest)) => (
            v.as_u64().ok_or(TokenError::Malformed("bad version"))?,
            rest,
        ),
        None => return Err(TokenError::Malformed("empty payload")),
    };
    // Like keystone, reject an unknown version before looking at its fields.
    if ![
        VERSION_UNSCOPED,
        VERSION_DOMAIN,
        VERSION_PROJECT,
        VERSION_TRUST,
        VERSION_SYSTEM,
        VERSION_APP_CRED,
    ]
    .contains(&version)
    {
        return Err(TokenError::UnsupportedVersion(version));
    }
    let need = |n: usize| {
        if f.len() < n {
            Err(TokenError::Malformed("too few payload fields"))
        } else {
            Ok(())
        }
    };
    need(2)?;
    let user_id = unpack_id_pair(&f[0])?;
    let mask = f[1]
        .as_u64()
        .ok_or(TokenError::Malformed("methods is not an unsigned integer"))?;
    // Index of the expiry field: the rest of each layout hangs off it.
    let (scope, exp) = match version {
        VERSION_UNSCOPED => (TokenScope::Unscoped, 2),
        VERSION_DOMAIN => {
            need(5)?;
            let domain_id = unpack_bare_id(&f[2])?;
            (TokenScope::Domain { domain_id }, 3)
        }
        VERSION_PROJECT => {
            need(5)?;
            let project_id = unpack_id_pair(&f[2])?;
            (TokenScope::Project { project_id }, 3)
        }
        VERSION_TRUST => {
            need(6)?;
            let project_id = unpack_id_pair(&f[2])?;
            let trust_id = bytes_of(&f[5])
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(hex::encode)
                .ok_or(TokenError::Malformed("trust id is not 16 bytes"))?;
            (
                TokenScope::Trust {
                    project_id,
                    trust_id,
                },
                3,
            )
        }
        VERSION_SYSTEM => {
            need(5)?;
            let scope = text_of(&f[2])?;
            (TokenScope::System { scope }, 3)
        }
        VERSION_APP_CRED => {
            need(6)?;
            let project_id = unpack_id_pair(&f[2])?;
            let app_cred_id = unpack_id_pair(&f[5])?;
            (
                TokenScope::ApplicationCredential {
                    project_id,
                    app_cred_id,
                },
                3,
            )
        }
        other => return Err(TokenError::UnsupportedVersion(other)),
    };
    need(exp + 2)?;
    let expires_at = float_to_expires(&f[exp])?;
    let Value::Array(audits) = &f[exp + 1] else {
        return Err(TokenError::Malformed("audit ids are not an array"));
    };
    let audit_ids = audits
        .iter()
        .map(|a| {
            bytes_of(a)
                .map(|b| URL_SAFE_NO_PAD.encode(b))
                .ok_or(TokenError::Malformed("audit id is not bytes"))
        })
        .collect::<Result<_, _>>()?;
    Ok(TokenPayload {
        user_id,
        methods: methods.from_bitmask(mask),
        scope,
        expires_at,
        audit_ids,
    })
}

/// The 16 bytes of an id in the form keystone generates (`uuid4().hex`).
///
/// Keystone also compresses other spellings Python's `uuid.UUID` accepts
/// (dashes, braces, upper case), but then hands back a different string on
/// validation. Only the canonical form is packed as bytes here, so every id
/// comes back exactly as given; for canonical ids, which is all kumo and
/// keystone create, the bytes are identical to keystone's.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(id, &mut out).ok()?;
    Some(out)
}

fn id_pair(id: &str) -> Value {
    match uuid_bytes(id) {
        Some(b) => Value::Array(vec![Value::Boolean(true), Value::Binary(b.to_vec())]),
        None => Value::Array(vec![Value::Boolean(false), Value::from(id)]),
    }
}

/// The domain id has no flag: keystone packs UUIDs as bytes and the default
/// domain id (normally `default`) as text. Keystone refuses to pack any other
/// non-UUID domain id; kumo packs it as text so its own tokens round-trip.
fn bare_id(id: &str) -> Value {
    match uuid_bytes(id) {
        Some(b) => Value::Binary(b.to_vec()),
        None => Value::from(id),
    }
}

/// Bytes of a `bin` or a `str` (valid UTF-8 or not).
fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Binary(b) => Some(b),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text_of(v: &Value) -> Result<String, TokenError> {
    let bytes = bytes_of(v).ok_or(TokenError::Malformed("expected a string"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| TokenError::Malformed("string is not UTF-8"))
}

fn unpack_id_pair(v: &Value) -> Result<String, TokenError> {
    let pair = match v {
        Value::Array(pair) if pair.len() == 2 => pair,
        _ => return Err(TokenError::Malformed("id is not an [is_uuid, value] pair")),
    };
    match &pair[0] {
        Value::Boolean(true) => bytes_of(&pair[1])
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(hex::encode)
            .ok_or(TokenError::Malformed("uuid id is not 16 bytes")),
        Value::Boolean(false) => text_of(&pair[1]),
        _ => Err(TokenError::Malformed("id flag is not a boolean")),
    }
}

fn unpack_bare_id(v: &Value) -> Result<String, TokenError> {
    match v {
        Value::Binary(b) => <[u8; 16]>::try_from(b.as_slice())
            .map(hex::encode)
            .map_err(|_| TokenError::Malformed("domain id is not 16 bytes")),
        // A legacy (`raw`) payload carries the UUID bytes as a `str`, which is
        // then usually not UTF-8; a real text id always is.
        Value::String(s) => match (s.as_str(), <[u8; 16]>::try_from(s.as_bytes())) {
            (Some(text), _) => Ok(text.to_owned()),
            (None, Ok(b)) => Ok(hex::encode(b)),
            (None, Err(_)) => Err(TokenError::Malformed("domain id is not UTF-8")),
        },
        _ => Err(TokenError::Malformed("domain id is not bytes or string")),
    }
}

fn audit_id_bytes(audit_id: &str) -> Result<Vec<u8>, TokenError> {
    LENIENT_URL_SAFE
        .decode(audit_id)
        .map_err(|_| TokenError::Encode(format!("audit id {audit_id:?} is not urlsafe base64")))
}

/// Unix seconds as keystone computes them: whole microseconds divided by 10^6,
/// which rounds the same way as Python's `timedelta.total_seconds()`.
pub(crate) fn expires_to_float(at: DateTime<Utc>) -> f64 {
    // Exact: |micros| < 2^53 for any date within ±285 years of 1970.
    at.timestamp_micros() as f64 / 1e6
}

/// Python's `datetime.fromtimestamp`: split off the fraction and round it to
/// microseconds half-to-even, carrying into the seconds.
pub(crate) fn float_to_expires(v: &Value) -> Result<DateTime<Utc>, TokenError> {
    let t = match v {
        Value::F64(f) => *f,
        Value::F32(f) => f64::from(*f),
        Value::Integer(i) => i
            .as_i64()
            .map(|i| i as f64)
            .ok_or(TokenError::Malformed("expiry out of range"))?,
        _ => return Err(TokenError::Malformed("expiry is not a number")),
    };
    if !t.is_finite() {
        return Err(TokenError::Malformed("expiry is not finite"));
    }
    let whole = t.trunc();
    let mut secs = whole as i64;
    let mut micros = ((t - whole) * 1e6).round_ties_even() as i64;
    if micros >= 1_000_000 {
        secs += 1;
        micros -= 1_000_000;
    } else if micros < 0 {
        secs -= 1;
        micros += 1_000_000;
    }
    // micros is in 0..1_000_000 here, so the nanosecond value fits in u32.
    DateTime::from_timestamp(secs, (micros * 1000) as u32)
        .ok_or(TokenError::Malformed("expiry out of range"))
}
