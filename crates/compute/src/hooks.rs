//! The steps of a build that belong to other services: networking (ports from the network
//! service: [`crate::neutron::NeutronNetwork`], or [`NoNetwork`] without one) and block
//! devices (volumes from the volume service; nothing until that service exists).

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::core::ComputeService;
use crate::core::events::EventWaiter;
use crate::error::{ComputeError, Result};
use crate::model::Instance;
use crate::neutron::Requested;

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

    /// Shelve offload (Nova's `unbind_ports(detach=False)`): the instance's ports lose their
    /// host binding and stay the instance's (`device_id` kept).
    async fn unbind_for_offload(
        &self,
        _svc: &ComputeService,
        _instance: &Instance,
        _request_id: &str,
    ) -> Result<()> {
        Ok(())
    }
    /// Unshelve of an offloaded instance (Nova's `setup_instance_network_on_host`): its ports
    /// bound to its new host, the waits for their `network-vif-plugged`, and the network info
    /// from what the binding answered.
    async fn bind_on_host(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        _request_id: &str,
    ) -> Result<Allocation> {
        Ok(Allocation {
            network_info: instance.network_info.clone(),
            waiters: vec![],
        })
    }

    // Interface attach and detach (`os-interface`) and the multinic actions. The defaults are
    // a cloud without a network service: nothing there exists.

    /// One port for an interface attach on the instance's host (Nova's
    /// allocate_for_instance with one request): the caller's `port_id`, or a new port on
    /// `network_id` (on the one network the project may use when neither is given), bound.
    /// Returns its VIF and, when it is not plugged yet, the registered wait for
    /// `network-vif-plugged`.
    async fn allocate_port(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        req: &Requested,
        _user_token: &str,
        _request_id: &str,
    ) -> Result<(Value, Option<EventWaiter>)> {
        Err(match (&req.port_id, &req.network_id) {
            (Some(p), _) => ComputeError::NotFound(format!("Port id {p} could not be found.")),
            (None, Some(n)) => ComputeError::NotFound(format!("Network {n} could not be found.")),
            (None, None) => ComputeError::bad(format!(
                "No specific network was requested and none are available for project '{}'.",
                instance.project_id
            )),
        })
    }
    /// Release the port of an interface detach (Nova's deallocate_port_for_instance): the
    /// caller's own (`preserve`) is unbound and kept, one compute made is deleted.
    async fn deallocate_port(
        &self,
        _svc: &ComputeService,
        _instance: &Instance,
        _port_id: &str,
        _preserve: bool,
        _request_id: &str,
    ) -> Result<()> {
        Ok(())
    }
    /// The ports bound to the instance, as the caller sees them (`os-interface` list).
    async fn list_ports(
        &self,
        _svc: &ComputeService,
        _instance: &Instance,
        _user_token: &str,
        _request_id: &str,
    ) -> Result<Vec<Value>> {
        Ok(vec![])
    }
    /// One port as the caller sees it; None when it does not exist for them.
    async fn show_port(
        &self,
        _svc: &ComputeService,
        _port_id: &str,
        _user_token: &str,
        _request_id: &str,
    ) -> Result<Option<Value>> {
        Ok(None)
    }
    /// `addFixedIp`: one more address from `network_id` on the instance's port there; the
    /// port's refreshed VIF.
    async fn add_fixed_ip(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        _network_id: &str,
        _request_id: &str,
    ) -> Result<Value> {
        Err(ComputeError::bad(no_network_for(&instance.uuid)))
    }
    /// `removeFixedIp`: the address off the instance's port that has it; that port's refreshed
    /// VIF.
    async fn remove_fixed_ip(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        address: &str,
        _request_id: &str,
    ) -> Result<Value> {
        Err(ComputeError::bad(no_fixed_ip(&instance.uuid, address)))
    }
}

/// Nova's NetworkNotFoundForInstance.
pub fn no_network_for(instance_uuid: &str) -> String {
    format!("Network could not be found for instance {instance_uuid}.")
}

/// Nova's FixedIpNotFoundForInstance.
pub fn no_fixed_ip(instance_uuid: &str, address: &str) -> String {
    format!("Instance {instance_uuid} does not have fixed IP '{address}'.")
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
