//! Key pairs (`os-keypairs`): generation and import of ssh and x509 keys with Nova's
//! fingerprints, per user, under the `key_pairs` quota.

use chrono::Utc;
use common::auth::AuthContext;
use md5::{Digest, Md5};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use std::str::FromStr;
use x509_cert::der::{Decode, Encode, EncodePem};

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::Keypair;
use crate::store::flavors as fs;

pub const SSH: &str = "ssh";
pub const X509: &str = "x509";

/// The comment Nova puts on the public keys it generates.
const GENERATED_COMMENT: &str = "Generated-by-Nova";

fn invalid(reason: impl AsRef<str>) -> ComputeError {
    ComputeError::bad(format!("Keypair data is invalid: {}", reason.as_ref()))
}

/// `aa:bb:...` of a digest, as Nova joins its hex digests.
fn colon_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Nova's ssh fingerprint: the key must parse as an OpenSSH public key; the fingerprint is
/// the md5 of the base64 blob (the second space-separated field), colon-separated hex.
pub fn ssh_fingerprint(public_key: &str) -> Result<String> {
    let fail = || invalid("failed to generate fingerprint");
    let blob = public_key.split(' ').nth(1).ok_or_else(fail)?;
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob.trim())
        .map_err(|_| fail())?;
    if ssh_key::PublicKey::from_openssh(public_key.trim()).is_err()
        && !is_ecdsa_key(public_key, &raw)
    {
        return Err(fail());
    }
    Ok(colon_hex(&Md5::digest(&raw)))
}

/// An OpenSSH ECDSA public key (`ecdsa-sha2-nistp256/384/521`, what Tempest imports by
/// default): the blob is the algorithm, the curve and an uncompressed point of the curve's
/// size, nothing more. ssh-key, built without its `ecdsa` feature, parses RSA and Ed25519
/// keys only.
fn is_ecdsa_key(public_key: &str, blob: &[u8]) -> bool {
    let Some(algorithm) = public_key.split(' ').next() else {
        return false;
    };
    let Some(curve) = algorithm.strip_prefix("ecdsa-sha2-") else {
        return false;
    };
    let coordinate = match curve {
        "nistp256" => 32,
        "nistp384" => 48,
        "nistp521" => 66,
        _ => return false,
    };
    let mut rest = blob;
    let mut next = || -> Option<&[u8]> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let field = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(field)
    };
    let (Some(a), Some(c), Some(point)) = (next(), next(), next()) else {
        return false;
    };
    a == algorithm.as_bytes()
        && c == curve.as_bytes()
        && point.len() == 1 + 2 * coordinate
        && point.first() == Some(&4)
        && rest.is_empty()
}

/// The DER of a PEM certificate, checked to be an X.509 certificate.
fn certificate_der(pem: &str) -> std::result::Result<Vec<u8>, String> {
    let (label, der) =
        x509_cert::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| e.to_string())?;
    if label != "CERTIFICATE" {
        return Err(format!("unexpected PEM label {label}"));
    }
    x509_cert::Certificate::from_der(&der).map_err(|e| e.to_string())?;
    Ok(der)
}

/// Nova's x509 fingerprint: sha1 of the certificate's DER, colon-separated hex.
pub fn x509_fingerprint(pem: &str) -> Result<String> {
    let der = certificate_der(pem).map_err(|e| {
        invalid(format!(
            "failed to generate X509 fingerprint. Error message: {e}"
        ))
    })?;
    Ok(colon_hex(&sha1::Sha1::digest(&der)))
}

/// A new RSA 2048 ssh key pair: (private key PEM (PKCS#1), OpenSSH public key, fingerprint).
pub fn generate_ssh() -> Result<(String, String, String)> {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| ComputeError::Internal(format!("RSA key generation: {e}")))?;
    let private = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| ComputeError::Internal(format!("RSA key encoding: {e}")))?
        .to_string();
    let public = ssh_rsa_public(&key)?;
    let fingerprint = ssh_fingerprint(&public)?;
    Ok((private, public, fingerprint))
}

/// `ssh-rsa BASE64 Generated-by-Nova` of an RSA key.
fn ssh_rsa_public(key: &rsa::RsaPrivateKey) -> Result<String> {
    let enc = |e: ssh_key::Error| ComputeError::Internal(format!("ssh key encoding: {e}"));
    let data = ssh_key::public::RsaPublicKey {
        e: ssh_key::Mpint::from_positive_bytes(&key.e().to_bytes_be()).map_err(enc)?,
        n: ssh_key::Mpint::from_positive_bytes(&key.n().to_bytes_be()).map_err(enc)?,
    };
    ssh_key::PublicKey::new(ssh_key::public::KeyData::Rsa(data), GENERATED_COMMENT)
        .to_openssh()
        .map_err(enc)
}

/// A new self-signed client certificate for `user_id` as Nova makes them for WinRM
/// (CN=user_id, extendedKeyUsage clientAuth, UPN user_id@localhost, ten years), RSA 2048:
/// (private key PEM (PKCS#8; Nova gives a base64 PKCS#12), certificate PEM, fingerprint).
pub fn generate_x509(user_id: &str) -> Result<(String, String, String)> {
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::asn1::{Any, ObjectIdentifier, Utf8StringRef};
    use x509_cert::ext::pkix::name::{GeneralName, OtherName};
    use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    let int = |e: &dyn std::fmt::Display| ComputeError::Internal(format!("x509: {e}"));
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| int(&e))?;
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).map_err(|e| int(&e))?;
    // A CN made of the user id only: escape what RFC 4514 reserves.
    let cn: String = user_id
        .chars()
        .flat_map(|c| {
            let esc = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#');
            esc.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect();
    let subject = Name::from_str(&format!("CN={cn}")).map_err(|e| int(&e))?;
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut serial[..]);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| int(&e))?;
    let validity =
        Validity::from_now(std::time::Duration::from_secs(3650 * 86400)).map_err(|e| int(&e))?;
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: true,
    };
    let mut b = CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
        .map_err(|e| int(&e))?;
    // clientAuth
    let client_auth = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
    b.add_extension(&ExtendedKeyUsage(vec![client_auth]))
        .map_err(|e| int(&e))?;
    // Microsoft's user principal name
    let upn_oid = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3");
    let upn = format!("{user_id}@localhost");
    let value =
        Any::encode_from(&Utf8StringRef::new(&upn).map_err(|e| int(&e))?).map_err(|e| int(&e))?;
    b.add_extension(&SubjectAltName(vec![GeneralName::OtherName(OtherName {
        type_id: upn_oid,
        value,
    })]))
    .map_err(|e| int(&e))?;
    let cert = b.build::<rsa::pkcs1v15::Signature>().map_err(|e| int(&e))?;
    let pem = cert.to_pem(LineEnding::LF).map_err(|e| int(&e))?;
    let fingerprint = colon_hex(&sha1::Sha1::digest(cert.to_der().map_err(|e| int(&e))?));
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| int(&e))?
        .to_string();
    Ok((private, pem, fingerprint))
}

/// What `POST /os-keypairs` asks for, after schema validation.
pub struct CreateKeypair {
    pub name: String,
    pub key_type: String,
    pub public_key: Option<String>,
    /// The owner (2.10+, admin); the caller when None.
    pub user_id: Option<String>,
}

impl ComputeService {
    fn keypair_owner<'a>(ctx: &'a AuthContext, user_id: Option<&'a str>) -> &'a str {
        user_id.unwrap_or(&ctx.user_id)
    }

    /// Create (generate or import) a key pair; returns it with the private key of a generated
    /// one.
    pub async fn create_keypair(
        &self,
        ctx: &AuthContext,
        req: CreateKeypair,
    ) -> Result<(Keypair, Option<String>)> {
        let owner = Self::keypair_owner(ctx, req.user_id.as_deref()).to_string();
        self.authorize(
            ctx,
            "os_compute_api:os-keypairs:create",
            &serde_json::json!({"user_id": owner}),
        )?;
        let project_id = ctx.project_id().unwrap_or_default().to_string();
        self.check_keypair_quota(&project_id, &owner, 1).await?;
        let (public_key, fingerprint, private) = match req.public_key {
            Some(pk) => {
                let fp = if req.key_type == X509 {
                    x509_fingerprint(&pk)?
                } else {
                    ssh_fingerprint(&pk)?
                };
                (pk, fp, None)
            }
            None => {
                let kind = req.key_type.clone();
                let owner2 = owner.clone();
                // RSA generation takes a few hundred ms of CPU: off the async workers.
                let (private, public, fp) = tokio::task::spawn_blocking(move || {
                    if kind == X509 {
                        generate_x509(&owner2)
                    } else {
                        generate_ssh()
                    }
                })
                .await
                .map_err(|e| ComputeError::Internal(e.to_string()))??;
                (public, fp, Some(private))
            }
        };
        let txn = self.db.write().await?;
        if fs::get_keypair(&*txn, &owner, &req.name).await?.is_some() {
            return Err(ComputeError::conflict(format!(
                "Key pair '{}' already exists.",
                req.name
            )));
        }
        let made = fs::insert_keypair(
            &*txn,
            &Keypair {
                id: 0,
                user_id: owner.clone(),
                name: req.name,
                fingerprint,
                public_key,
                key_type: req.key_type,
                created_at: Utc::now(),
            },
        )
        .await?;
        txn.commit().await?;
        Ok((made, private))
    }

    /// 403 when `delta` more key pairs would exceed the owner's `key_pairs` limit.
    async fn check_keypair_quota(&self, project_id: &str, owner: &str, delta: i64) -> Result<()> {
        let limit = self.quota_limit(project_id, "key_pairs").await?;
        if limit < 0 {
            return Ok(());
        }
        let used = fs::list_keypairs(self.db.conn(), owner).await?.len() as i64;
        if used + delta > limit {
            return Err(ComputeError::QuotaExceeded(
                "Quota exceeded, too many key pairs.".into(),
            ));
        }
        Ok(())
    }

    pub async fn keypair(
        &self,
        ctx: &AuthContext,
        name: &str,
        user_id: Option<&str>,
    ) -> Result<Keypair> {
        let owner = Self::keypair_owner(ctx, user_id);
        self.authorize(
            ctx,
            "os_compute_api:os-keypairs:show",
            &serde_json::json!({"user_id": owner}),
        )?;
        fs::get_keypair(self.db.conn(), owner, name)
            .await?
            .ok_or_else(|| keypair_not_found(name, owner))
    }

    /// A user's key pairs by name, after `marker` (a name), at most `limit`.
    pub async fn keypairs(
        &self,
        ctx: &AuthContext,
        user_id: Option<&str>,
        limit: Option<usize>,
        marker: Option<&str>,
    ) -> Result<Vec<Keypair>> {
        let owner = Self::keypair_owner(ctx, user_id);
        self.authorize(
            ctx,
            "os_compute_api:os-keypairs:index",
            &serde_json::json!({"user_id": owner}),
        )?;
        let mut all = fs::list_keypairs(self.db.conn(), owner).await?;
        if let Some(m) = marker {
            let pos = all
                .iter()
                .position(|k| k.name == m)
                .ok_or_else(|| ComputeError::bad(format!("Marker {m} could not be found.")))?;
            all.drain(..=pos);
        }
        if let Some(l) = limit {
            all.truncate(l);
        }
        Ok(all)
    }

    pub async fn delete_keypair(
        &self,
        ctx: &AuthContext,
        name: &str,
        user_id: Option<&str>,
    ) -> Result<()> {
        let owner = Self::keypair_owner(ctx, user_id);
        self.authorize(
            ctx,
            "os_compute_api:os-keypairs:delete",
            &serde_json::json!({"user_id": owner}),
        )?;
        let txn = self.db.write().await?;
        if !fs::delete_keypair(&*txn, owner, name).await? {
            return Err(keypair_not_found(name, owner));
        }
        txn.commit().await?;
        Ok(())
    }
}

pub fn keypair_not_found(name: &str, user_id: &str) -> ComputeError {
    ComputeError::NotFound(format!("Keypair {name} not found for user {user_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A fixed key (from Nova's API samples) and its fingerprint as Nova computes it.
    const SAMPLE: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC1HTrHCbb9NawNLSV8N6tSa8i637+EC2dA+lsdHHfQlT54t+N0nHhJPlKWDLhc579j87vp6RDFriFJ/smsTnDnf64O12z0kBaJpJPH2zXrBkZFK6q2rmxydURzX/z0yLSCP77SFJ0fdXWH2hMsAusflGyryHGX20n+mZK6mDrxVzGxEz228dwQ5G7Az5OoZDWygH2pqPvKjkifRw0jwUKf3BbkP0QvANACOk26cv16mNFpFJfI1N3OC5lUsZQtKGR01ptJoWijYKccqhkAKuo902tg/qup58J5kflNm7I61sy1mJon6SGqNUSfoQagqtBH6vd/tU1jnlwZ03uUroAL Generated-by-Nova\n";

    #[test]
    fn ssh_fingerprint_is_md5_of_the_blob() {
        assert_eq!(
            ssh_fingerprint(SAMPLE).expect("valid key"),
            "44:fe:29:6e:23:14:b9:53:5b:65:82:58:1c:fe:5a:c3"
        );
    }

    #[test]
    fn ecdsa_keys_import() {
        // ssh-keygen -t ecdsa -b 384 (Tempest imports such a key when it creates a key pair)
        let p384 = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBKEIDwE8h7LCLg1WbH/gVsFVTTLT4CIFEu+CqVbaECdyee65j7INotBj4tVXIJ7A3hMktRnYgX1idCK9d7PZBSyH42//JPXNLcq8eaD2kp6I2pA74xj6L3tVhK4albD2Lw== root@vm";
        // ssh-keygen -l -E md5 says the same
        assert_eq!(
            ssh_fingerprint(p384).expect("a P-384 key"),
            "7f:66:8a:e4:02:80:f4:88:18:c9:73:26:19:2d:87:ae"
        );
        // the same blob under another algorithm name, or cut short, is not a key
        let renamed = p384.replacen("nistp384", "nistp256", 1);
        assert!(ssh_fingerprint(&renamed).is_err());
        let short = p384.replacen("Lw==", "", 1);
        assert!(ssh_fingerprint(&short).is_err());
    }

    #[test]
    fn garbage_is_invalid_keypair_data() {
        for bad in [
            "",
            "ssh-rsa",
            "ssh-rsa AAAA",
            "hello world",
            "ssh-rsa !!!! x",
        ] {
            let e = ssh_fingerprint(bad).expect_err(bad);
            assert_eq!(
                e.to_string(),
                "Keypair data is invalid: failed to generate fingerprint"
            );
        }
        let e = x509_fingerprint("not a cert").expect_err("garbage");
        assert!(
            e.to_string()
                .starts_with("Keypair data is invalid: failed to generate X509 fingerprint."),
            "{e}"
        );
    }

    #[test]
    fn generated_ssh_key_round_trips() {
        let (private, public, fp) = generate_ssh().expect("generate");
        assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(public.starts_with("ssh-rsa AAAA") && public.ends_with(" Generated-by-Nova"));
        assert_eq!(ssh_fingerprint(&public).expect("parse"), fp);
        assert_eq!(fp.len(), 47);
    }

    #[test]
    fn generated_certificate_has_a_sha1_fingerprint() {
        let (private, cert, fp) = generate_x509("user-1").expect("generate");
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(x509_fingerprint(&cert).expect("parse"), fp);
        assert_eq!(fp.len(), 59);
    }
}
