//! Application credentials, stored credentials (encrypted blobs) and policy blobs.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::Digest;

use super::Identity;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::password;
use crate::store::{self, StoredCredential};

/// What a user asks for when creating an application credential.
#[derive(Debug, Clone, Default)]
pub struct AppCredRequest {
    pub name: String,
    pub description: Option<String>,
    pub secret: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Role ids or names; empty = every role of the creating token.
    pub roles: Vec<RoleSelector>,
    pub unrestricted: bool,
    pub access_rules: Vec<AccessRule>,
}

#[derive(Debug, Clone)]
pub enum RoleSelector {
    Id(String),
    Name(String),
}

/// A new secret: 64 random bytes, urlsafe base64 without padding, as Keystone makes it.
fn generate_secret() -> String {
    let bytes: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Identity {
    pub async fn get_app_cred(&self, user_id: &str, id: &str) -> Result<AppCred> {
        match store::get_app_cred(self.db.conn(), id).await? {
            Some(c) if c.user_id == user_id => Ok(c),
            _ => Err(IdentityError::not_found("Application Credential", id)),
        }
    }

    pub async fn list_app_creds(&self, user_id: &str, name: Option<&str>) -> Result<Vec<AppCred>> {
        self.get_user(user_id).await?;
        Ok(store::list_app_creds(self.db.conn(), user_id, name).await?)
    }

    /// Create an application credential delegating (some of) the roles the caller's
    /// project-scoped token carries. Returns the credential and its clear secret.
    pub async fn create_app_cred(
        &self,
        user_id: &str,
        project_id: &str,
        token_roles: &[Role],
        req: AppCredRequest,
    ) -> Result<(AppCred, String)> {
        if req.expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(IdentityError::validation(
                "The 'expires_at' must not be before now. The server could not comply with the \
                 request since it is either malformed or otherwise incorrect. The client is \
                 assumed to be in error.",
            ));
        }
        let roles: Vec<RoleRef> = if req.roles.is_empty() {
            token_roles
                .iter()
                .map(|r| RoleRef {
                    id: r.id.clone(),
                    name: r.name.clone(),
                })
                .collect()
        } else {
            let mut out = Vec::new();
            for sel in &req.roles {
                let found = token_roles.iter().find(|r| match sel {
                    RoleSelector::Id(id) => &r.id == id,
                    RoleSelector::Name(n) => &r.name == n,
                });
                match found {
                    Some(r) => out.push(RoleRef {
                        id: r.id.clone(),
                        name: r.name.clone(),
                    }),
                    None => {
                        let what = match sel {
                            RoleSelector::Id(x) | RoleSelector::Name(x) => x,
                        };
                        return Err(IdentityError::NotFound {
                            kind: "role assignment with role",
                            id: format!(
                                "{what}, user or group: {user_id}, project, domain, or system: {project_id}"
                            ),
                        });
                    }
                }
            }
            out
        };
        if self.cfg.app_cred_user_limit >= 0 {
            let n = store::list_app_creds(self.db.conn(), user_id, None)
                .await?
                .len() as i64;
            if n >= self.cfg.app_cred_user_limit {
                return Err(IdentityError::Forbidden(format!(
                    "Unable to create additional application credentials, maximum of {} already \
                     exceeded for user.",
                    self.cfg.app_cred_user_limit
                )));
            }
        }
        let secret = req.secret.clone().unwrap_or_else(generate_secret);
        let secret_hash = password::hash(&secret, self.cfg.password_hash_rounds)
            .await
            .map_err(IdentityError::Internal)?;
        let cred = AppCred {
            id: new_id(),
            name: req.name.clone(),
            secret_hash,
            description: req.description.clone(),
            user_id: user_id.to_string(),
            project_id: Some(project_id.to_string()),
            system: None,
            expires_at: req.expires_at,
            unrestricted: req.unrestricted,
            created_at: Utc::now(),
            roles,
            access_rules: req.access_rules.clone(),
        };
        let w = self.db.write().await?;
        if !store::list_app_creds(&*w, user_id, Some(&cred.name))
            .await?
            .is_empty()
        {
            return Err(IdentityError::Conflict {
                kind: "application_credential",
                details: "Duplicate entry".into(),
            });
        }
        store::insert_app_cred(&*w, &cred).await?;
        w.commit().await?;
        self.changed();
        Ok((cred, secret))
    }

    pub async fn delete_app_cred(&self, user_id: &str, id: &str) -> Result<()> {
        self.get_app_cred(user_id, id).await?;
        let w = self.db.write().await?;
        store::delete_app_cred(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// Access rules of a user's application credentials.
    pub async fn access_rules_of(&self, user_id: &str) -> Result<Vec<AccessRule>> {
        let mut out: Vec<AccessRule> = Vec::new();
        for c in self.list_app_creds(user_id, None).await? {
            for r in c.access_rules {
                if !out.iter().any(|x| x.id == r.id) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------ credentials

    fn credential_fernet(&self) -> Result<(fernet::MultiFernet, String)> {
        let keys = self
            .credential_keys
            .load()
            .map_err(|e| IdentityError::Internal(format!("credential keys: {e}")))?;
        let primary = keys
            .first()
            .ok_or_else(|| IdentityError::Internal("no credential keys".into()))?;
        let key_hash = hex::encode(sha2::Sha256::digest(primary.key.as_bytes()));
        let fernets: Vec<fernet::Fernet> = keys
            .iter()
            .filter_map(|k| fernet::Fernet::new(&k.key))
            .collect();
        if fernets.is_empty() {
            return Err(IdentityError::Internal(
                "credential keys are not valid Fernet keys".into(),
            ));
        }
        Ok((fernet::MultiFernet::new(fernets), key_hash))
    }

    fn open_credential(&self, s: StoredCredential) -> Result<Credential> {
        let (f, _) = self.credential_fernet()?;
        let blob = f
            .decrypt(&s.encrypted_blob)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                IdentityError::Internal(format!(
                    "credential {} cannot be decrypted with the current credential keys",
                    s.id
                ))
            })?;
        Ok(Credential {
            id: s.id,
            user_id: s.user_id,
            project_id: s.project_id,
            credential_type: s.credential_type,
            blob,
            extra: s.extra,
        })
    }

    fn seal_credential(&self, c: &Credential) -> Result<StoredCredential> {
        let (f, key_hash) = self.credential_fernet()?;
        Ok(StoredCredential {
            id: c.id.clone(),
            user_id: c.user_id.clone(),
            project_id: c.project_id.clone(),
            credential_type: c.credential_type.clone(),
            encrypted_blob: f.encrypt(c.blob.as_bytes()),
            key_hash,
            extra: c.extra.clone(),
        })
    }

    pub async fn get_credential(&self, id: &str) -> Result<Credential> {
        let s = store::get_credential(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("credential", id))?;
        self.open_credential(s)
    }

    pub async fn list_credentials(
        &self,
        user_id: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<Credential>> {
        store::list_credentials(self.db.conn(), user_id, kind)
            .await?
            .into_iter()
            .map(|s| self.open_credential(s))
            .collect()
    }

    pub async fn create_credential(&self, c: Credential) -> Result<Credential> {
        self.get_user(&c.user_id).await?;
        let sealed = self.seal_credential(&c)?;
        let w = self.db.write().await?;
        if store::get_credential(&*w, &c.id).await?.is_some() {
            return Err(IdentityError::Conflict {
                kind: "credential",
                details: format!("Duplicate ID, {}", c.id),
            });
        }
        store::insert_credential(&*w, &sealed).await?;
        w.commit().await?;
        self.changed();
        Ok(c)
    }

    pub async fn update_credential(&self, c: Credential) -> Result<Credential> {
        let sealed = self.seal_credential(&c)?;
        let w = self.db.write().await?;
        store::update_credential(&*w, &sealed).await?;
        w.commit().await?;
        self.changed();
        Ok(c)
    }

    pub async fn delete_credential(&self, id: &str) -> Result<()> {
        self.get_credential(id).await?;
        let w = self.db.write().await?;
        store::delete_credential(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ policy blobs

    pub async fn get_policy_blob(&self, id: &str) -> Result<Policy> {
        store::get_policy(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("policy", id))
    }

    pub async fn list_policy_blobs(&self, kind: Option<&str>) -> Result<Vec<Policy>> {
        Ok(store::list_policies(self.db.conn(), kind).await?)
    }

    pub async fn create_policy_blob(&self, p: Policy) -> Result<Policy> {
        let w = self.db.write().await?;
        store::insert_policy(&*w, &p).await?;
        w.commit().await?;
        Ok(p)
    }

    pub async fn update_policy_blob(&self, p: Policy) -> Result<Policy> {
        let w = self.db.write().await?;
        store::update_policy(&*w, &p).await?;
        w.commit().await?;
        Ok(p)
    }

    pub async fn delete_policy_blob(&self, id: &str) -> Result<()> {
        self.get_policy_blob(id).await?;
        let w = self.db.write().await?;
        store::delete_policy(&*w, id).await?;
        w.commit().await?;
        Ok(())
    }
}
