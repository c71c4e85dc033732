//! Users, passwords (history, minimum age, expiry, lockout) and groups.

use chrono::{Duration, Utc};

use super::Identity;
use crate::error::{IdentityError, Result};
use crate::model::*;
use crate::password;
use crate::store::{self, UserFilter};

/// User resource options Keystone defines (`options` in the API).
pub const USER_OPTIONS: &[&str] = &[
    "ignore_change_password_upon_first_use",
    "ignore_password_expiry",
    "ignore_lockout_failure_attempts",
    "lock_password",
    "ignore_user_inactivity",
    "multi_factor_auth_rules",
    "multi_factor_auth_enabled",
];

fn opt_true(u: &User, name: &str) -> bool {
    u.options
        .get(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

impl Identity {
    pub async fn get_user(&self, id: &str) -> Result<User> {
        store::get_user(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("user", id))
    }

    pub async fn find_user_by_name(&self, domain_id: &str, name: &str) -> Result<User> {
        store::find_user_by_name(self.db.conn(), domain_id, name)
            .await?
            .ok_or_else(|| IdentityError::not_found("user", name))
    }

    pub async fn list_users(&self, f: &UserFilter) -> Result<Vec<User>> {
        Ok(store::list_users(self.db.conn(), f).await?)
    }

    fn user_conflict(u: &User) -> IdentityError {
        IdentityError::Conflict {
            kind: "user",
            details: format!(
                "Duplicate entry found with name {} at domain ID {}",
                u.name, u.domain_id
            ),
        }
    }

    /// Check a new password against `[security_compliance] password_regex`.
    pub fn check_password_rules(&self, pw: &str) -> Result<()> {
        if pw.len() > self.cfg.max_password_length {
            return Err(IdentityError::Forbidden(format!(
                "The password length must be less than or equal to {}. The server could not \
                 comply with the request because the password is invalid.",
                self.cfg.max_password_length
            )));
        }
        if let Some(re) = &self.cfg.password_regex {
            let ok = regex::Regex::new(re).map(|r| r.is_match(pw)).map_err(|_| {
                IdentityError::validation(
                    "Password validation error: Unable to validate password due to invalid configuration.",
                )
            })?;
            if !ok {
                return Err(IdentityError::validation(format!(
                    "The password does not match the requirements: {}.",
                    self.cfg
                        .password_regex_description
                        .clone()
                        .unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    async fn new_password_record(
        &self,
        pw: &str,
        self_service: bool,
        expire_now: bool,
    ) -> Result<PasswordRecord> {
        let hash = password::hash(pw, self.cfg.password_hash_rounds)
            .await
            .map_err(IdentityError::Internal)?;
        let now = Utc::now();
        let expires_at = if expire_now {
            Some(now)
        } else if self.cfg.password_expires_days > 0 {
            Some(now + Duration::days(self.cfg.password_expires_days))
        } else {
            None
        };
        Ok(PasswordRecord {
            hash,
            created_at: now,
            expires_at,
            self_service,
        })
    }

    /// An administrator set this password: with change_password_upon_first_use the user
    /// must change it before using it.
    fn admin_password_expires_now(&self, u: &User) -> bool {
        self.cfg.change_password_upon_first_use
            && !opt_true(u, "ignore_change_password_upon_first_use")
    }

    pub async fn create_user(&self, mut u: User, pw: Option<String>) -> Result<User> {
        u.name = u.name.trim().to_string();
        self.get_domain(&u.domain_id).await?;
        let record = match &pw {
            Some(p) => {
                self.check_password_rules(p)?;
                Some(
                    self.new_password_record(p, false, self.admin_password_expires_now(&u))
                        .await?,
                )
            }
            None => None,
        };
        u.password_expires_at = record.as_ref().and_then(|r| r.expires_at);
        let w = self.db.write().await?;
        if store::find_user_by_name(&*w, &u.domain_id, &u.name)
            .await?
            .is_some()
            || store::get_user(&*w, &u.id).await?.is_some()
        {
            return Err(Self::user_conflict(&u));
        }
        store::insert_user(&*w, &u)
            .await
            .map_err(super::conflict_or("user", u.name.clone()))?;
        if let Some(r) = &record {
            store::add_password(&*w, &u.id, r).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(u)
    }

    /// Update a user (an administrator's change). A new password, or disabling the user,
    /// revokes the user's tokens.
    pub async fn update_user(&self, mut u: User, new_password: Option<String>) -> Result<User> {
        let old = self.get_user(&u.id).await?;
        u.name = u.name.trim().to_string();
        let record = match &new_password {
            Some(p) => {
                self.check_password_rules(p)?;
                Some(
                    self.new_password_record(p, false, self.admin_password_expires_now(&u))
                        .await?,
                )
            }
            None => None,
        };
        let w = self.db.write().await?;
        if let Some(other) = store::find_user_by_name(&*w, &u.domain_id, &u.name).await?
            && other.id != u.id
        {
            return Err(Self::user_conflict(&u));
        }
        store::update_user(&*w, &u).await?;
        if let Some(r) = &record {
            store::add_password(&*w, &u.id, r).await?;
            store::trim_passwords(&*w, &u.id, self.cfg.unique_last_password_count.max(1)).await?;
            u.password_expires_at = r.expires_at;
        }
        let revoke = record.is_some() || (old.enabled && !u.enabled);
        if revoke {
            self.revoke_user_tokens_in(&*w, &u.id).await?;
        }
        w.commit().await?;
        self.changed();
        Ok(u)
    }

    /// A user changes their own password (`POST /v3/users/{id}/password`).
    pub async fn change_own_password(
        &self,
        user_id: &str,
        original: &str,
        new: &str,
    ) -> Result<()> {
        let user = self.get_user(user_id).await?;
        // The original password must be right; an expired one may still be changed.
        match self.check_user_password(&user, original).await {
            Ok(()) | Err(PasswordCheck::Expired) => {}
            Err(PasswordCheck::Locked) => {
                return Err(IdentityError::UnauthorizedShown(format!(
                    "The account is locked for user: {user_id}."
                )));
            }
            Err(_) => return Err(IdentityError::unauthorized("Invalid user / password")),
        }
        if opt_true(&user, "lock_password") {
            return Err(IdentityError::validation(
                "You cannot change your password at this time due to password policy disallowing \
                 password changes. Please contact your administrator to reset your password.",
            ));
        }
        self.check_password_rules(new)?;
        let current = store::current_password(self.db.conn(), user_id).await?;
        if let Some(cur) = &current
            && cur.self_service
            && self.cfg.minimum_password_age_days > 0
        {
            let min_age = cur.created_at + Duration::days(self.cfg.minimum_password_age_days);
            let now = Utc::now();
            if now < min_age {
                return Err(IdentityError::validation(format!(
                    "You cannot change your password at this time due to the minimum password \
                     age. Once you change your password, it must be used for {} day(s) before it \
                     can be changed. Please try again in {} day(s) or contact your administrator \
                     to reset your password.",
                    self.cfg.minimum_password_age_days,
                    (min_age - now).num_days()
                )));
            }
        }
        let unique = self.cfg.unique_last_password_count;
        if unique > 0 {
            for old in store::recent_passwords(self.db.conn(), user_id, unique).await? {
                if password::verify(new, &old.hash).await {
                    return Err(IdentityError::validation(format!(
                        "Password validation error: The new password cannot be identical to a \
                         previous password. The total number which includes the new password \
                         must be unique is {unique}."
                    )));
                }
            }
        }
        let record = self.new_password_record(new, true, false).await?;
        let w = self.db.write().await?;
        store::add_password(&*w, user_id, &record).await?;
        store::trim_passwords(&*w, user_id, unique.max(1)).await?;
        self.revoke_user_tokens_in(&*w, user_id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    pub async fn delete_user(&self, id: &str) -> Result<()> {
        self.get_user(id).await?;
        let w = self.db.write().await?;
        store::delete_assignments_of(&*w, id).await?;
        store::delete_credentials_of_user(&*w, id).await?;
        store::delete_user(&*w, id).await?;
        self.revoke_user_tokens_in(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    /// Verify a user's password with lockout and expiry rules; records failures.
    pub(crate) async fn check_user_password(
        &self,
        u: &User,
        pw: &str,
    ) -> std::result::Result<(), PasswordCheck> {
        let now = Utc::now();
        let max = self.cfg.lockout_failure_attempts;
        let lockout_applies = max > 0 && !opt_true(u, "ignore_lockout_failure_attempts");
        if lockout_applies && u.failed_auth_count >= max {
            let still_locked = match (self.cfg.lockout_duration, u.failed_auth_at) {
                (0, _) => true,
                (d, Some(at)) => at + Duration::seconds(d) > now,
                (_, None) => false,
            };
            if still_locked {
                return Err(PasswordCheck::Locked);
            }
            self.reset_failed_auth(&u.id)
                .await
                .map_err(PasswordCheck::Error)?;
        }
        let current = store::current_password(self.db.conn(), &u.id)
            .await
            .map_err(|e| PasswordCheck::Error(e.into()))?;
        let Some(current) = current else {
            return Err(PasswordCheck::Wrong);
        };
        if !password::verify(pw, &current.hash).await {
            if lockout_applies {
                let w = self
                    .db
                    .write()
                    .await
                    .map_err(|e| PasswordCheck::Error(e.into()))?;
                // Re-read under the write lock so concurrent failures all count.
                let count = store::get_user(&*w, &u.id)
                    .await
                    .map_err(|e| PasswordCheck::Error(e.into()))?
                    .map(|x| x.failed_auth_count)
                    .unwrap_or(0);
                store::set_failed_auth(&*w, &u.id, count + 1, Some(now))
                    .await
                    .map_err(|e| PasswordCheck::Error(e.into()))?;
                w.commit()
                    .await
                    .map_err(|e| PasswordCheck::Error(e.into()))?;
            }
            return Err(PasswordCheck::Wrong);
        }
        if !u.enabled {
            return Err(PasswordCheck::Disabled);
        }
        if let Some(exp) = current.expires_at
            && exp <= now
            && !opt_true(u, "ignore_password_expiry")
        {
            return Err(PasswordCheck::Expired);
        }
        if u.failed_auth_count > 0 {
            self.reset_failed_auth(&u.id)
                .await
                .map_err(PasswordCheck::Error)?;
        }
        Ok(())
    }

    async fn reset_failed_auth(&self, user_id: &str) -> Result<()> {
        let w = self.db.write().await?;
        store::set_failed_auth(&*w, user_id, 0, None).await?;
        w.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ groups

    pub async fn get_group(&self, id: &str) -> Result<Group> {
        store::get_group(self.db.conn(), id)
            .await?
            .ok_or_else(|| IdentityError::not_found("group", id))
    }

    pub async fn find_group_by_name(&self, domain_id: &str, name: &str) -> Result<Group> {
        store::find_group_by_name(self.db.conn(), domain_id, name)
            .await?
            .ok_or_else(|| IdentityError::not_found("group", name))
    }

    pub async fn list_groups(
        &self,
        name: Option<&str>,
        domain_id: Option<&str>,
    ) -> Result<Vec<Group>> {
        Ok(store::list_groups(self.db.conn(), name, domain_id, None).await?)
    }

    fn group_conflict(g: &Group) -> IdentityError {
        IdentityError::Conflict {
            kind: "group",
            details: format!(
                "Duplicate entry found with name {} at domain ID {}",
                g.name, g.domain_id
            ),
        }
    }

    pub async fn create_group(&self, mut g: Group) -> Result<Group> {
        g.name = g.name.trim().to_string();
        self.get_domain(&g.domain_id).await?;
        let w = self.db.write().await?;
        if store::find_group_by_name(&*w, &g.domain_id, &g.name)
            .await?
            .is_some()
        {
            return Err(Self::group_conflict(&g));
        }
        store::insert_group(&*w, &g)
            .await
            .map_err(super::conflict_or("group", g.name.clone()))?;
        w.commit().await?;
        self.changed();
        Ok(g)
    }

    pub async fn update_group(&self, g: Group) -> Result<Group> {
        let w = self.db.write().await?;
        if let Some(other) = store::find_group_by_name(&*w, &g.domain_id, &g.name).await?
            && other.id != g.id
        {
            return Err(Self::group_conflict(&g));
        }
        store::update_group(&*w, &g).await?;
        w.commit().await?;
        self.changed();
        Ok(g)
    }

    pub async fn delete_group(&self, id: &str) -> Result<()> {
        self.get_group(id).await?;
        let w = self.db.write().await?;
        store::delete_assignments_of(&*w, id).await?;
        store::delete_group(&*w, id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    pub async fn add_user_to_group(&self, user_id: &str, group_id: &str) -> Result<()> {
        self.get_group(group_id).await?;
        self.get_user(user_id).await?;
        let w = self.db.write().await?;
        store::add_membership(&*w, user_id, group_id).await?;
        w.commit().await?;
        self.changed();
        Ok(())
    }

    pub async fn remove_user_from_group(&self, user_id: &str, group_id: &str) -> Result<()> {
        self.get_group(group_id).await?;
        self.get_user(user_id).await?;
        let w = self.db.write().await?;
        let n = store::remove_membership(&*w, user_id, group_id).await?;
        if n == 0 {
            return Err(IdentityError::NotFound {
                kind: "membership",
                id: format!("user {user_id} in group {group_id}"),
            });
        }
        w.commit().await?;
        self.changed();
        Ok(())
    }

    pub async fn is_user_in_group(&self, user_id: &str, group_id: &str) -> Result<bool> {
        self.get_group(group_id).await?;
        self.get_user(user_id).await?;
        Ok(store::is_member(self.db.conn(), user_id, group_id).await?)
    }

    pub async fn group_members(&self, group_id: &str) -> Result<Vec<User>> {
        self.get_group(group_id).await?;
        let ids = store::group_member_ids(self.db.conn(), group_id).await?;
        self.list_users(&UserFilter {
            ids: Some(ids),
            ..Default::default()
        })
        .await
    }

    pub async fn groups_of_user(&self, user_id: &str) -> Result<Vec<Group>> {
        self.get_user(user_id).await?;
        let ids = store::user_group_ids(self.db.conn(), user_id).await?;
        Ok(store::list_groups(self.db.conn(), None, None, Some(&ids)).await?)
    }
}

/// Outcome of a password check, before it becomes an API error.
#[derive(Debug)]
pub(crate) enum PasswordCheck {
    Wrong,
    Locked,
    Disabled,
    Expired,
    Error(IdentityError),
}
