//! The steps of a build that belong to other services: networking (ports from the network
//! service) and block devices (volumes from the volume service). Until those services exist
//! the hooks do nothing and say so; they are the seams the real calls plug into, not stubs
//! to be rewritten.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::Result;
use crate::model::Instance;

#[async_trait]
pub trait NetworkHook: Send + Sync {
    /// Allocate the requested networks for `instance` (Nova's allocate_for_instance) and
    /// return its network_info.
    async fn allocate(&self, instance: &Instance, user_token: &str) -> Result<Value>;
    /// Release whatever `allocate` made (idempotent).
    async fn deallocate(&self, instance: &Instance) -> Result<()>;
}

#[async_trait]
pub trait VolumeHook: Send + Sync {
    /// Prepare the block device mappings of `instance` and return the block device info.
    async fn prepare(&self, instance: &Instance, user_token: &str) -> Result<Value>;
    /// Detach and, where asked (`delete_on_termination`), delete the volumes (idempotent).
    async fn release(&self, instance: &Instance) -> Result<()>;
}

/// No network service yet: no ports, an empty network_info.
pub struct NoNetwork;

#[async_trait]
impl NetworkHook for NoNetwork {
    async fn allocate(&self, instance: &Instance, _user_token: &str) -> Result<Value> {
        if instance.requested_networks.is_array()
            && !instance
                .requested_networks
                .as_array()
                .is_some_and(Vec::is_empty)
        {
            tracing::info!(instance = %instance.uuid, "no network service in this cloud yet: requested networks not wired");
        }
        Ok(json!([]))
    }
    async fn deallocate(&self, _instance: &Instance) -> Result<()> {
        Ok(())
    }
}

/// No volume service yet: no volumes.
pub struct NoVolumes;

#[async_trait]
impl VolumeHook for NoVolumes {
    async fn prepare(&self, _instance: &Instance, _user_token: &str) -> Result<Value> {
        Ok(json!([]))
    }
    async fn release(&self, _instance: &Instance) -> Result<()> {
        Ok(())
    }
}
