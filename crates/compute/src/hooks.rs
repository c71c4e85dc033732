//! The steps of a build that belong to other services: networking (ports from the network
//! service: [`crate::neutron::NeutronNetwork`], or [`NoNetwork`] without one) and block
//! devices (volumes from the volume service; nothing until that service exists).

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::core::ComputeService;
use crate::core::events::EventWaiter;
use crate::error::Result;
use crate::model::Instance;

/// What a create request asks of the network (for the API's checks).
pub struct NetworkRequest<'a> {
    pub project_id: &'a str,
    /// `"none"`, `"auto"`, null (not given, before 2.37) or the list.
    pub requested: &'a Value,
    pub max_count: u32,
    pub security_groups: &'a [String],
}

/// The ports of a build: its network_info, and the waits for the ports that are not yet
/// plugged (port id, registered wait for `network-vif-plugged`).
#[derive(Default)]
pub struct Allocation {
    pub network_info: Value,
    pub waiters: Vec<(String, EventWaiter)>,
}

#[async_trait]
pub trait NetworkHook: Send + Sync {
    /// Check a create request's networks with the caller's token before anything is
    /// recorded (Nova's validate_networks).
    async fn validate(
        &self,
        _svc: &ComputeService,
        _req: &NetworkRequest<'_>,
        _user_token: &str,
        _request_id: &str,
    ) -> Result<()> {
        Ok(())
    }
    /// Allocate the requested networks for `instance` on its host (Nova's
    /// allocate_for_instance): its network_info and the plug events to wait for.
    async fn allocate(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        user_token: &str,
        request_id: &str,
    ) -> Result<Allocation>;
    /// Release whatever `allocate` made (idempotent).
    async fn deallocate(
        &self,
        svc: &ComputeService,
        instance: &Instance,
        request_id: &str,
    ) -> Result<()>;
}

/// The network hook `[compute] network_hook` names.
pub fn network_hook(name: &str) -> std::sync::Arc<dyn NetworkHook> {
    match name {
        "none" => std::sync::Arc::new(NoNetwork),
        _ => std::sync::Arc::new(crate::neutron::NeutronNetwork),
    }
}

#[async_trait]
pub trait VolumeHook: Send + Sync {
    /// Prepare the block device mappings of `instance` and return the block device info.
    async fn prepare(&self, instance: &Instance, user_token: &str) -> Result<Value>;
    /// Detach and, where asked (`delete_on_termination`), delete the volumes (idempotent).
    async fn release(&self, instance: &Instance) -> Result<()>;
}

/// No network service: no ports, an empty network_info.
pub struct NoNetwork;

#[async_trait]
impl NetworkHook for NoNetwork {
    async fn allocate(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        _user_token: &str,
        _request_id: &str,
    ) -> Result<Allocation> {
        if instance.requested_networks.is_array()
            && !instance
                .requested_networks
                .as_array()
                .is_some_and(Vec::is_empty)
        {
            tracing::info!(instance = %instance.uuid, "[compute] network_hook = none: requested networks not wired");
        }
        Ok(Allocation {
            network_info: json!([]),
            waiters: vec![],
        })
    }
    async fn deallocate(
        &self,
        _svc: &ComputeService,
        _instance: &Instance,
        _request_id: &str,
    ) -> Result<()> {
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
