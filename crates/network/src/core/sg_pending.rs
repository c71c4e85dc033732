//! Until security groups land (branch net-sg): no group exists, so a port names none and
//! gets none by default. Replaced by core/security_groups.rs at that merge.

use common::auth::AuthContext;

use super::NetworkService;
use crate::error::{NetError, Result};

impl NetworkService {
    pub(crate) async fn check_security_groups<C: sea_orm::ConnectionTrait>(
        &self,
        _c: &C,
        _ctx: &AuthContext,
        ids: &[String],
    ) -> Result<()> {
        match ids.first() {
            Some(id) => Err(NetError::new(
                http::StatusCode::NOT_FOUND,
                "SecurityGroupNotFound",
                format!("Security group {id} does not exist"),
            )),
            None => Ok(()),
        }
    }

    pub(crate) async fn default_group_for_port<C: sea_orm::ConnectionTrait>(
        &self,
        _c: &C,
        _project_id: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}
