//! Password and secret hashing in passlib's bcrypt format (`$2b$<cost>$...`), the format
//! Keystone stores, so a database moved between Keystone and kumo keeps its passwords.

/// bcrypt only reads the first 72 bytes; passlib truncates silently, and so do we.
const BCRYPT_MAX: usize = 72;

fn truncated(password: &str) -> &[u8] {
    let b = password.as_bytes();
    &b[..b.len().min(BCRYPT_MAX)]
}

/// Hash on a blocking thread: a cost-12 bcrypt takes ~250 ms of CPU.
pub async fn hash(password: &str, cost: u32) -> Result<String, String> {
    let pw = truncated(password).to_vec();
    tokio::task::spawn_blocking(move || bcrypt::hash(pw, cost).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// Verify on a blocking thread. An unknown or corrupt hash never matches.
pub async fn verify(password: &str, stored: &str) -> bool {
    let pw = truncated(password).to_vec();
    let stored = stored.to_string();
    tokio::task::spawn_blocking(move || verify_sync(&pw, &stored))
        .await
        .unwrap_or(false)
}

fn verify_sync(password: &[u8], stored: &str) -> bool {
    if stored.starts_with("$2") {
        bcrypt::verify(password, stored).unwrap_or(false)
    } else {
        tracing::warn!("password hash in an unsupported format; only bcrypt is supported");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_and_passlib_format() {
        let h = hash("secret", 4).await.unwrap();
        assert!(h.starts_with("$2b$04$"), "{h}");
        assert_eq!(h.len(), 60);
        assert!(verify("secret", &h).await);
        assert!(!verify("Secret", &h).await);
        assert!(!verify("secret", "garbage").await);
    }

    #[tokio::test]
    async fn verifies_a_passlib_hash() {
        // Made by passlib.hash.bcrypt.using(rounds=4).hash("password"), as Keystone stores it.
        let h = "$2b$04$EbK1b3ETOkYHKchRZC9swuCBRsDDEfhXdFZScwAomtenomF7B.r72";
        assert!(verify("password", h).await);
        assert!(!verify("nope", h).await);
    }

    #[tokio::test]
    async fn long_passwords_truncate_like_passlib() {
        let long = "x".repeat(100);
        let h = hash(&long, 4).await.unwrap();
        assert!(verify(&"x".repeat(72), &h).await);
    }
}
