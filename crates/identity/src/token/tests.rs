//! Unit tests for the token module, including vectors made by keystone 30.0.0.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeZone, Utc};
use fernet::Fernet;
use serde_json::Value as Json;

use super::payload::{self, AuthMethods};
use super::*;

const VECTORS: &str = include_str!("testdata/keystone_vectors.json");

const UUID_A: &str = "1e8a4f1ec1e84e6eb1b9ad5a9e0cde4b";
const UUID_B: &str = "0c2e3b9bfb1f4b1fa6f2a8e4d3c2b1a0";
const UUID_C: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";

fn vectors() -> Json {
    serde_json::from_str(VECTORS).expect("vectors are JSON")
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn vector_codec(data: &Json) -> TokenCodec {
    let methods = AuthMethods::new(strings(&data["methods"]));
    TokenCodec::from_keys(&strings(&data["keys"]), methods).expect("codec")
}

/// Keystone's `isotime(subsecond=True)`: microseconds always printed as zero.
fn keystone_isotime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string()
}

fn expected_scope(v: &Json) -> TokenScope {
    let s = |k: &str| v[k].as_str().expect(k).to_owned();
    match v["version"].as_u64().expect("version") {
        0 => TokenScope::Unscoped,
        1 => TokenScope::Domain {
            domain_id: s("domain_id"),
        },
        2 => TokenScope::Project {
            project_id: s("project_id"),
        },
        3 => TokenScope::Trust {
            project_id: s("project_id"),
            trust_id: s("trust_id"),
        },
        8 => TokenScope::System { scope: s("system") },
        9 => TokenScope::ApplicationCredential {
            project_id: s("project_id"),
            app_cred_id: s("app_cred_id"),
        },
        other => panic!("no vector kind {other}"),
    }
}

fn payload(scope: TokenScope) -> TokenPayload {
    TokenPayload {
        user_id: UUID_A.to_owned(),
        methods: vec!["password".to_owned()],
        scope,
        expires_at: Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap(),
        audit_ids: vec![new_audit_id()],
    }
}

fn all_scopes() -> Vec<TokenScope> {
    vec![
        TokenScope::Unscoped,
        TokenScope::Domain {
            domain_id: UUID_B.to_owned(),
        },
        TokenScope::Domain {
            domain_id: "default".to_owned(),
        },
        TokenScope::Project {
            project_id: UUID_B.to_owned(),
        },
        TokenScope::Project {
            project_id: "demo".to_owned(),
        },
        TokenScope::Trust {
            project_id: UUID_B.to_owned(),
            trust_id: UUID_C.to_owned(),
        },
        TokenScope::Trust {
            project_id: "demo".to_owned(),
            trust_id: UUID_C.to_owned(),
        },
        TokenScope::System {
            scope: "all".to_owned(),
        },
        TokenScope::ApplicationCredential {
            project_id: UUID_B.to_owned(),
            app_cred_id: UUID_C.to_owned(),
        },
        TokenScope::ApplicationCredential {
            project_id: "service".to_owned(),
            app_cred_id: "my-cred".to_owned(),
        },
    ]
}

fn fixed_codec() -> TokenCodec {
    TokenCodec::from_keys(&[Fernet::generate_key()], AuthMethods::default()).unwrap()
}

fn index_set(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- keystone-made vectors -------------------------------------------------

#[test]
fn keystone_vectors_decode_to_keystones_fields() {
    let data = vectors();
    let codec = vector_codec(&data);
    let mut versions = BTreeSet::new();
    for v in data["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let got = codec
            .decode(token)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = &got.payload;
        assert_eq!(p.scope, expected_scope(v), "{name}");
        assert_eq!(p.scope.version(), v["version"].as_u64().unwrap(), "{name}");
        assert_eq!(p.user_id, v["user_id"].as_str().unwrap(), "{name}");
        assert_eq!(p.methods, strings(&v["methods"]), "{name}");
        assert_eq!(p.audit_ids, strings(&v["audit_ids"]), "{name}");
        assert_eq!(
            keystone_isotime(got.issued_at),
            v["issued_at"].as_str().unwrap()
        );
        assert_eq!(
            keystone_isotime(p.expires_at),
            v["expires_at"].as_str().unwrap()
        );
        // Bit-exact float: microseconds survive the round trip.
        let float = v["expires_at_float"].as_f64().unwrap();
        assert_eq!(
            payload::expires_to_float(p.expires_at).to_bits(),
            float.to_bits(),
            "{name}"
        );
        assert_eq!(token_issued_at(token).unwrap(), got.issued_at);
        versions.insert(p.scope.version());
    }
    assert_eq!(versions, BTreeSet::from([0, 1, 2, 3, 8, 9]));
}

#[test]
fn keystone_vectors_repack_to_identical_bytes() {
    let data = vectors();
    let codec = vector_codec(&data);
    for v in data["vectors"].as_array().unwrap() {
        let got = codec.decode(v["token"].as_str().unwrap()).unwrap();
        let packed = payload::pack(&got.payload, codec.methods()).unwrap();
        assert_eq!(
            hex::encode(packed),
            v["payload_hex"].as_str().unwrap(),
            "{}",
            v["name"]
        );
    }
}

#[test]
fn keystone_vectors_accepted_with_padding_restored() {
    let data = vectors();
    let codec = vector_codec(&data);
    for v in data["vectors"].as_array().unwrap() {
        let mut token = v["token"].as_str().unwrap().to_owned();
        assert!(!token.contains('='));
        while !token.len().is_multiple_of(4) {
            token.push('=');
        }
        codec.decode(&token).unwrap();
    }
}

#[test]
fn keystone_vectors_need_the_right_key() {
    let data = vectors();
    // The first vector was made with the secondary key only.
    let keys = strings(&data["keys"]);
    let methods = AuthMethods::new(strings(&data["methods"]));
    let primary_only = TokenCodec::from_keys(&keys[..1], methods).unwrap();
    let first = data["vectors"][0]["token"].as_str().unwrap();
    assert!(matches!(
        primary_only.decode(first),
        Err(TokenError::Invalid)
    ));
    assert!(matches!(
        fixed_codec().decode(first),
        Err(TokenError::Invalid)
    ));
}

/// Writes kumo-made tokens for the same cases as the keystone vectors, to be
/// decoded by keystone's formatter (`xcheck.py check FILE`). Runs only when
/// `KUMO_FERNET_EXPORT` names the output file.
#[test]
fn export_kumo_tokens_for_keystone() {
    let Ok(out) = std::env::var("KUMO_FERNET_EXPORT") else {
        return;
    };
    let data = vectors();
    let codec = vector_codec(&data);
    let mut exported = Vec::new();
    for v in data["vectors"].as_array().unwrap() {
        let decoded = codec.decode(v["token"].as_str().unwrap()).unwrap();
        let token = codec.encode(&decoded.payload).unwrap();
        let mut e = v.clone();
        e["token"] = Json::from(token.clone());
        e["issued_at"] = Json::from(keystone_isotime(token_issued_at(&token).unwrap()));
        e["payload_hex"] = Json::from(hex::encode(
            payload::pack(&decoded.payload, codec.methods()).unwrap(),
        ));
        exported.push(e);
    }
    // A repository made by kumo, for keystone's load_keys to read.
    let dir = Path::new(&out).with_extension("keys");
    let _ = fs::remove_dir_all(&dir);
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    repo.setup().unwrap();
    for _ in 0..4 {
        repo.rotate().unwrap();
    }
    let load_order: Vec<String> = repo.load().unwrap().into_iter().map(|k| k.key).collect();
    let doc = serde_json::json!({
        "generator": "kumo",
        "keys": data["keys"],
        "methods": data["methods"],
        "vectors": exported,
        "repository": { "path": dir, "load_order": load_order },
    });
    fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn keystone_made_repository_loads_in_keystones_order() {
    let data = vectors();
    let r = &data["repository"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fernet-keys");
    fs::create_dir(&dir).unwrap();
    for (name, key) in r["files"].as_object().unwrap() {
        fs::write(dir.join(name), key.as_str().unwrap()).unwrap();
    }
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    let keys: Vec<String> = repo.load().unwrap().into_iter().map(|k| k.key).collect();
    assert_eq!(keys, strings(&r["load_order"]));
}

#[test]
fn setup_and_rotate_produce_keystones_indexes() {
    let data = vectors();
    let r = &data["repository"];
    let expected: Vec<Vec<u64>> = r["indexes_after_setup_then_each_rotation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap())
                .collect()
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fernet-keys");
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    repo.setup().unwrap();
    repo.setup().unwrap();
    let mut got = vec![index_set(&dir)];
    for _ in 1..expected.len() {
        repo.rotate().unwrap();
        got.push(index_set(&dir));
    }
    assert_eq!(got, expected);
    assert_eq!(
        format!("{:#o}", mode(&dir)),
        r["dir_mode"].as_str().unwrap()
    );
}

// ---- payload round trips ---------------------------------------------------

#[test]
fn every_version_round_trips() {
    let codec = fixed_codec();
    for scope in all_scopes() {
        let mut p = payload(scope);
        p.audit_ids.push(new_audit_id());
        let token = codec.encode(&p).unwrap();
        let got = codec.decode(&token).unwrap();
        assert_eq!(got.payload, p);
    }
}

#[test]
fn uuid_ids_are_packed_as_bytes_others_as_text() {
    let methods = AuthMethods::default();
    let uuid = payload::pack(&payload(TokenScope::Unscoped), &methods).unwrap();
    let mut named = payload(TokenScope::Unscoped);
    named.user_id = "admin".to_owned();
    let text = payload::pack(&named, &methods).unwrap();
    // [true, bin8(16) ...] vs [false, fixstr "admin"]
    assert_eq!(&uuid[2..5], &[0x92, 0xc3, 0xc4]);
    assert_eq!(&text[2..5], &[0x92, 0xc2, 0xa5]);
    // Non-canonical spellings keep their exact text instead of coming back
    // as keystone's lowercase hex.
    for id in [
        "1E8A4F1EC1E84E6EB1B9AD5A9E0CDE4B",
        "1e8a4f1e-c1e8-4e6e-b1b9-ad5a9e0cde4b",
        "1e8a4f1ec1e84e6eb1b9ad5a9e0cde4",
        "1e8a4f1ec1e84e6eb1b9ad5a9e0cde4g",
        "",
        "ユーザー",
    ] {
        let codec = fixed_codec();
        let mut p = payload(TokenScope::Project {
            project_id: id.to_owned(),
        });
        p.user_id = id.to_owned();
        let got = codec.decode(&codec.encode(&p).unwrap()).unwrap();
        assert_eq!(got.payload, p, "{id:?}");
    }
}

#[test]
fn trust_id_must_be_a_uuid() {
    let p = payload(TokenScope::Trust {
        project_id: UUID_B.to_owned(),
        trust_id: "not-a-uuid".to_owned(),
    });
    assert!(matches!(
        fixed_codec().encode(&p),
        Err(TokenError::Encode(_))
    ));
}

#[test]
fn audit_ids_must_be_urlsafe_base64() {
    let mut p = payload(TokenScope::Unscoped);
    p.audit_ids = vec!["not base64!".to_owned()];
    assert!(matches!(
        fixed_codec().encode(&p),
        Err(TokenError::Encode(_))
    ));
    // Padded and unpadded spellings are the same audit id.
    let codec = fixed_codec();
    p.audit_ids = vec!["kS2cYV3lQXaCW2zNkEb1ag==".to_owned()];
    let got = codec.decode(&codec.encode(&p).unwrap()).unwrap();
    assert_eq!(got.payload.audit_ids, ["kS2cYV3lQXaCW2zNkEb1ag"]);
}

#[test]
fn new_audit_ids_are_16_random_bytes() {
    let a = new_audit_id();
    assert_eq!(a.len(), 22);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    assert_ne!(a, new_audit_id());
}

#[test]
fn methods_bitmask_matches_keystone() {
    let m = AuthMethods::default();
    assert_eq!(m.to_bitmask(&["external"]), 1);
    assert_eq!(m.to_bitmask(&["password", "token"]), 6);
    assert_eq!(m.to_bitmask(&["application_credential"]), 32);
    assert_eq!(
        m.to_bitmask(&["totp", "password"]),
        2,
        "unknown names count nothing"
    );
    assert_eq!(m.to_bitmask::<&str>(&[]), 0);
    assert_eq!(
        m.from_bitmask(6),
        ["token", "password"],
        "highest bit first"
    );
    assert_eq!(m.from_bitmask(0), Vec::<String>::new());
    // keystone's quotient test: a bit above the list hides everything.
    let six = AuthMethods::new(DEFAULT_AUTH_METHODS[..6].iter().copied());
    assert_eq!(six.from_bitmask(64 + 2), Vec::<String>::new());
    let custom = AuthMethods::new(["password", "totp"]);
    assert_eq!(custom.to_bitmask(&["totp"]), 2);
    assert_eq!(custom.from_bitmask(3), ["totp", "password"]);
    assert_eq!(custom.names().collect::<Vec<_>>(), ["password", "totp"]);
}

#[test]
fn expiry_keeps_microseconds_and_rounds_like_python() {
    let at = Utc.timestamp_opt(1_935_817_689, 123_456_000).unwrap();
    let f = payload::expires_to_float(at);
    assert_eq!(f, 1_935_817_689.123456);
    assert_eq!(payload::float_to_expires(&rmpv::Value::F64(f)).unwrap(), at);
    // Sub-microsecond precision is dropped, as keystone's datetime has none.
    let nanos = Utc.timestamp_opt(1_935_817_689, 123_456_789).unwrap();
    assert_eq!(payload::expires_to_float(nanos), f);
    // Rounding to the nearest microsecond carries into the seconds.
    let carry = payload::float_to_expires(&rmpv::Value::F64(9.999_999_9)).unwrap();
    assert_eq!(carry, Utc.timestamp_opt(10, 0).unwrap());
    let before_epoch = payload::float_to_expires(&rmpv::Value::F64(-1.5)).unwrap();
    assert_eq!(before_epoch, Utc.timestamp_opt(-2, 500_000_000).unwrap());
    let int = payload::float_to_expires(&rmpv::Value::from(7u64)).unwrap();
    assert_eq!(int, Utc.timestamp_opt(7, 0).unwrap());
    for bad in [f64::NAN, f64::INFINITY, 1e300] {
        assert!(payload::float_to_expires(&rmpv::Value::F64(bad)).is_err());
    }
}

#[test]
fn issued_at_is_the_fernet_timestamp_and_future_ones_are_accepted() {
    let codec = fixed_codec();
    let p = payload(TokenScope::Unscoped);
    // An hour ahead: keystone applies no clock-skew limit without a TTL.
    let future = Utc::now().timestamp() as u64 + 3600;
    let token = codec.encode_at(&p, future).unwrap();
    let got = codec.decode(&token).unwrap();
    assert_eq!(got.issued_at.timestamp() as u64, future);
    assert_eq!(token_issued_at(&token).unwrap(), got.issued_at);
    let now = codec.encode(&p).unwrap();
    let age = Utc::now() - codec.decode(&now).unwrap().issued_at;
    assert!(age.num_seconds().abs() <= 2);
}

#[test]
fn expiry_is_reported_not_enforced() {
    let codec = fixed_codec();
    let mut p = payload(TokenScope::Unscoped);
    p.expires_at = Utc.timestamp_opt(1_000_000_000, 0).unwrap();
    let got = codec.decode(&codec.encode(&p).unwrap()).unwrap();
    assert!(got.is_expired(Utc::now()));
    assert!(got.is_expired(p.expires_at));
    assert!(!got.is_expired(p.expires_at - chrono::Duration::seconds(1)));
}

// ---- padding and garbage ---------------------------------------------------

#[test]
fn tokens_are_unpadded_and_padding_is_optional_on_input() {
    let codec = fixed_codec();
    let mut seen_padded_lengths = BTreeSet::new();
    // Ciphertext grows in 16-byte blocks; ids of 1..48 characters span
    // three block counts and with them every base64 remainder.
    for n in 0..48 {
        let mut p = payload(TokenScope::Unscoped);
        p.user_id = "u".repeat(n + 1);
        let token = codec.encode(&p).unwrap();
        assert!(!token.contains('='));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let mut padded = token.clone();
        while !padded.len().is_multiple_of(4) {
            padded.push('=');
        }
        seen_padded_lengths.insert(padded.len() - token.len());
        assert_eq!(codec.decode(&padded).unwrap().payload, p);
        assert_eq!(codec.decode(&token).unwrap().payload, p);
    }
    assert_eq!(seen_padded_lengths, BTreeSet::from([0, 1, 2]));
}

#[test]
fn garbage_is_invalid_and_never_panics() {
    let codec = fixed_codec();
    let token = codec.encode(&payload(TokenScope::Unscoped)).unwrap();
    let forged_header = URL_SAFE.encode([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let long = "A".repeat(100_000);
    let cases = [
        "",
        "abc",
        "gAAAAA",
        "not a token at all, not a token at all, not a token at all",
        "ユーザーユーザーユーザーユーザー",
        "gAAAAABrBqqG5Zi5NbhtY1A8vfq_tldEUcyVGb0F3s_hZOt33OCvWkyV2OSzu4UlMnneWji8tTjfYZwdpltT8",
        forged_header.as_str(),
        long.as_str(),
    ];
    for bad in cases {
        assert!(
            matches!(codec.decode(bad), Err(TokenError::Invalid)),
            "{bad:?}"
        );
    }
    for len in 0..token.len() {
        assert!(codec.decode(&token[..len]).is_err(), "prefix {len}");
    }
    // Flip every character in turn.
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(codec.decode(&flipped).is_err(), "flipped {i}");
    }
    // Random bytes behind a valid-looking header.
    for _ in 0..200 {
        let mut raw = vec![0x80];
        raw.extend((0..rand::random::<u8>()).map(|_| rand::random::<u8>()));
        assert!(codec.decode(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
    }
    assert!(token_issued_at("").is_err());
    assert!(token_issued_at(&forged_header).is_err());
}

/// Encrypts raw payload bytes with the codec's only key.
fn raw_token(key: &str, plain: &[u8]) -> String {
    Fernet::new(key).unwrap().encrypt(plain)
}

#[test]
fn fixed_keys_must_be_fernet_keys() {
    let none: [&str; 0] = [];
    for keys in [&none[..], &["c2hvcnQ="], &["not base64 at all"]] {
        assert!(matches!(
            TokenCodec::from_keys(keys, AuthMethods::default()),
            Err(TokenError::KeyMaterial(_))
        ));
    }
    // Keys as files hold them: padded, maybe with a newline.
    let key = format!("{}\n", Fernet::generate_key());
    TokenCodec::from_keys(&[key], AuthMethods::default()).unwrap();
}

#[test]
fn authentic_but_odd_payloads_are_typed_errors() {
    let key = Fernet::generate_key();
    let codec = TokenCodec::from_keys(&[&key], AuthMethods::default()).unwrap();
    // Federated unscoped (version 4): authentic but not implemented.
    let mut v4 = Vec::new();
    let fields = rmpv::Value::Array(vec![4u64.into(), rmpv::Value::Nil]);
    rmpv::encode::write_value(&mut v4, &fields).unwrap();
    assert!(matches!(
        codec.decode(&raw_token(&key, &v4)),
        Err(TokenError::UnsupportedVersion(4))
    ));
    for plain in [
        &b""[..],
        b"\xc1",
        b"\x01",
        b"\x90",
        b"\x92\x00\x01",
        b"\x95\x00\xc0\x02\xcb",
    ] {
        assert!(
            matches!(
                codec.decode(&raw_token(&key, plain)),
                Err(TokenError::Malformed(_))
            ),
            "{plain:?}"
        );
    }
}

#[test]
fn legacy_raw_msgpack_payloads_decode() {
    // msgpack < 1.0 without bin types: the uuid and audit bytes travel as
    // `str` (keystone's `raw=True` fallback).
    let uuid = hex::decode(UUID_A).unwrap();
    let audit = [7u8; 16];
    let mut plain = vec![0x95, 0x00, 0x92, 0xc3, 0xb0];
    plain.extend(&uuid);
    plain.push(0x02);
    plain.push(0xcb);
    plain.extend(1_935_817_689f64.to_be_bytes());
    plain.extend([0x91, 0xb0]);
    plain.extend(audit);
    let key = Fernet::generate_key();
    let codec = TokenCodec::from_keys(&[&key], AuthMethods::default()).unwrap();
    let got = codec.decode(&raw_token(&key, &plain)).unwrap();
    assert_eq!(got.payload.user_id, UUID_A);
    assert_eq!(got.payload.methods, ["password"]);
    assert_eq!(got.payload.audit_ids, [URL_SAFE_NO_PAD.encode(audit)]);
}

// ---- key repository --------------------------------------------------------

#[test]
fn setup_is_idempotent_with_private_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state").join("fernet-keys");
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    assert_eq!(repo.setup().unwrap(), SetupOutcome::Created);
    let first = repo.load().unwrap();
    assert_eq!(first.iter().map(|k| k.index).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(repo.setup().unwrap(), SetupOutcome::AlreadyInitialized);
    assert_eq!(repo.load().unwrap(), first);
    assert_eq!(mode(&dir), 0o700);
    for k in &first {
        assert_eq!(mode(&dir.join(k.index.to_string())), 0o600);
        assert_eq!(URL_SAFE.decode(&k.key).unwrap().len(), 32);
        assert_eq!(k.key.len(), 44, "padded base64, as keystone writes");
    }
    repo.rotate().unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(mode(&entry.path()), 0o600, "{:?}", entry.file_name());
        let name = entry.file_name().into_string().unwrap();
        assert!(
            name == ".lock" || name.parse::<u64>().is_ok(),
            "stray file {name}"
        );
    }
    assert!(
        !format!("{first:?}").contains(&first[0].key),
        "Debug hides keys"
    );
}

#[test]
fn rotation_keeps_old_tokens_until_their_key_is_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = KeyRepository::new(tmp.path().join("k"), KeyPurpose::Tokens);
    repo.setup().unwrap();
    let codec = TokenCodec::from_repository(repo.clone(), AuthMethods::default()).unwrap();
    let p = payload(TokenScope::Unscoped);
    let t1 = codec.encode(&p).unwrap();

    let r = repo.rotate().unwrap();
    assert_eq!(
        r,
        RotateOutcome {
            new_primary: 2,
            purged: vec![]
        }
    );
    codec.reload().unwrap();
    let t2 = codec.encode(&p).unwrap();
    assert!(codec.decode(&t1).is_ok(), "key 1 is now a secondary");

    let r = repo.rotate().unwrap();
    assert_eq!(
        r,
        RotateOutcome {
            new_primary: 3,
            purged: vec![1]
        }
    );
    codec.reload().unwrap();
    assert!(
        matches!(codec.decode(&t1), Err(TokenError::Invalid)),
        "key 1 purged"
    );
    assert!(codec.decode(&t2).is_ok());
    assert_eq!(
        repo.load()
            .unwrap()
            .iter()
            .map(|k| k.index)
            .collect::<Vec<_>>(),
        [3, 2, 0]
    );
}

#[test]
fn max_active_keys_controls_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let repo = KeyRepository::new(&dir, KeyPurpose::Credentials)
        .with_max_active_keys(5)
        .unwrap();
    repo.setup().unwrap();
    for _ in 0..6 {
        repo.rotate().unwrap();
    }
    assert_eq!(index_set(&dir), [7, 6, 5, 4, 0]);
    let one = KeyRepository::new(&dir, KeyPurpose::Tokens)
        .with_max_active_keys(1)
        .unwrap();
    let r = one.rotate().unwrap();
    // keystone's arithmetic with max_active_keys = 1 keeps only the staged key.
    assert_eq!(r.purged, [8, 7, 6, 5, 4]);
    assert_eq!(index_set(&dir), [0]);
    assert!(matches!(
        KeyRepository::new(&dir, KeyPurpose::Tokens).with_max_active_keys(0),
        Err(KeyError::InvalidMaxActiveKeys(0))
    ));
}

#[test]
fn load_ignores_non_key_files_and_explains_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);

    let err = repo.load().unwrap_err();
    assert!(matches!(err, KeyError::NotInitialized { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("kumo fernet setup"),
        "{msg}"
    );
    assert!(matches!(
        repo.rotate(),
        Err(KeyError::NotInitialized { .. })
    ));
    let err = TokenCodec::from_repository(repo.clone(), AuthMethods::default()).unwrap_err();
    assert!(err.to_string().contains("kumo fernet setup"), "{err}");

    fs::create_dir(&dir).unwrap();
    assert!(matches!(repo.load(), Err(KeyError::NotInitialized { .. })));
    let cred = KeyRepository::new(&dir, KeyPurpose::Credentials);
    assert!(
        cred.load()
            .unwrap_err()
            .to_string()
            .contains("kumo credential setup")
    );

    let key = Fernet::generate_key();
    fs::write(dir.join("3"), format!("{key}\n")).unwrap();
    fs::write(dir.join("12"), "").unwrap();
    fs::write(dir.join("0.tmp"), Fernet::generate_key()).unwrap();
    fs::write(dir.join("README"), "x").unwrap();
    fs::write(dir.join("-1"), Fernet::generate_key()).unwrap();
    fs::create_dir(dir.join("7")).unwrap();
    let keys = repo.load().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].index, keys[0].key.as_str()), (3, key.trim()));
    assert!(matches!(repo.rotate(), Err(KeyError::NoStagedKey { .. })));

    fs::write(dir.join("5"), "c2hvcnQ=").unwrap();
    let err = repo.load().unwrap_err();
    assert!(matches!(err, KeyError::BadKey { .. }));
    assert!(
        err.to_string()
            .contains(&dir.join("5").display().to_string()),
        "{err}"
    );
}

#[test]
fn codec_picks_up_rotation_by_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    repo.setup().unwrap();
    let server = TokenCodec::from_repository(repo.clone(), AuthMethods::default()).unwrap();
    let p = payload(TokenScope::Unscoped);

    // Two rotations elsewhere: the new primary was never seen by `server`.
    let other = KeyRepository::new(&dir, KeyPurpose::Tokens);
    other.rotate().unwrap();
    other.rotate().unwrap();
    let new_primary = other.load().unwrap().remove(0);
    let peer = TokenCodec::from_repository(other, AuthMethods::default()).unwrap();
    let fresh = peer.encode(&p).unwrap();
    // Failed decode forces a re-read of the keys.
    assert_eq!(server.decode(&fresh).unwrap().payload, p);

    // Directory change noticed within a second: encode uses the new primary.
    repo.rotate().unwrap();
    let newest = repo.load().unwrap().remove(0);
    assert_ne!(newest, new_primary);
    let only_newest = TokenCodec::from_keys(&[&newest.key], AuthMethods::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = server.encode(&p).unwrap();
        if only_newest.decode(&t).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "rotation not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn broken_repository_keeps_serving_old_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let repo = KeyRepository::new(&dir, KeyPurpose::Tokens);
    repo.setup().unwrap();
    let codec = TokenCodec::from_repository(repo.clone(), AuthMethods::default()).unwrap();
    let token = codec.encode(&payload(TokenScope::Unscoped)).unwrap();
    fs::write(dir.join("9"), "garbage").unwrap();
    assert!(codec.reload().is_err());
    assert!(codec.decode(&token).is_ok());
    assert!(codec.decode("garbage").is_err());
}

#[test]
fn codec_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<TokenCodec>();
    let codec = fixed_codec();
    let p = payload(TokenScope::Unscoped);
    let token = codec.encode(&p).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (codec, token, p) = (codec.clone(), token.clone(), p.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    assert_eq!(codec.decode(&token).unwrap().payload, p);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Prints the per-token cost; run with `--release --nocapture` for real
/// numbers. The identity service needs ~20k validations/s.
#[test]
fn encode_decode_cost() {
    const N: u32 = 100_000;
    let keys: Vec<String> = (0..3).map(|_| Fernet::generate_key()).collect();
    let codec = TokenCodec::from_keys(&keys, AuthMethods::default()).unwrap();
    let p = payload(TokenScope::Project {
        project_id: UUID_B.to_owned(),
    });
    let start = Instant::now();
    let mut token = String::new();
    for _ in 0..N {
        token = codec.encode(&p).unwrap();
    }
    let encode = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        std::hint::black_box(codec.decode(std::hint::black_box(&token)).unwrap());
    }
    let decode = start.elapsed() / N;
    // Worst case for MultiFernet: the token was made with the last key.
    let oldest = TokenCodec::from_keys(&keys[2..], AuthMethods::default()).unwrap();
    let old_token = oldest.encode(&p).unwrap();
    let start = Instant::now();
    for _ in 0..N {
        std::hint::black_box(codec.decode(std::hint::black_box(&old_token)).unwrap());
    }
    let decode_last = start.elapsed() / N;
    println!(
        "fernet token ({} chars): encode {encode:?}/token, decode {decode:?}/token \
         (primary key), {decode_last:?}/token (third key)",
        token.len()
    );
}
