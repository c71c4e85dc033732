//! The steps of a build that belong to other services: networking (ports from the network
//! service: [`crate::neutron::NeutronNetwork`], or [`NoNetwork`] without one) and block
//! devices (volumes from the volume service: [`crate::cinder::CinderVolumes`], or
//! [`NoVolumes`] without one).

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

    /// Live migration, on the destination (Nova's `setup_networks_on_host`): the instance's
    /// ports are marked as migrating to `dest` (`binding:profile.migrating_to`), so that host's
    /// agent wires them ahead; the network info the guest has there.
    async fn prepare_migration(
        &self,
        _svc: &ComputeService,
        instance: &Instance,
        _dest: &str,
        _request_id: &str,
    ) -> Result<Value> {
        Ok(instance.network_info.clone())
    }
    /// A live migration that did not happen: the ports are the source's only again.
    async fn abort_migration(
        &self,
        _svc: &ComputeService,
        _instance: &Instance,
        _request_id: &str,
    ) -> Result<()> {
        Ok(())
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

/// Who a volume call is for: the instance's project, the caller's token (None: compute's
/// own service token) and the request id.
pub struct VolumeCall<'a> {
    pub svc: &'a ComputeService,
    pub project_id: &'a str,
    pub token: Option<&'a str>,
    pub request_id: &'a str,
}

/// The volume service as compute uses it (Nova's `nova.volume.cinder.API` with the 3.44
/// attachments flow): [`crate::cinder::CinderVolumes`], or [`NoVolumes`] without one.
#[async_trait]
pub trait VolumeHook: Send + Sync {
    /// The volume as the caller sees it; None when it does not exist for them.
    async fn get(&self, c: &VolumeCall<'_>, volume_id: &str) -> Result<Option<Value>>;
    /// `POST /volumes`: the new volume (creating).
    async fn create(&self, c: &VolumeCall<'_>, volume: Value) -> Result<Value>;
    async fn delete(&self, c: &VolumeCall<'_>, volume_id: &str) -> Result<()>;
    /// `POST /attachments` without a connector: the volume is reserved; the attachment's id.
    async fn attachment_create(
        &self,
        c: &VolumeCall<'_>,
        volume_id: &str,
        instance_uuid: &str,
    ) -> Result<String>;
    /// `PUT /attachments/{id}` with this host's connector: the connection_info.
    async fn attachment_update(
        &self,
        c: &VolumeCall<'_>,
        attachment_id: &str,
        connector: Value,
    ) -> Result<Value>;
    /// `os-complete`: the volume is in-use.
    async fn attachment_complete(&self, c: &VolumeCall<'_>, attachment_id: &str) -> Result<()>;
    /// `DELETE /attachments/{id}` (a gone attachment counts as deleted).
    async fn attachment_delete(&self, c: &VolumeCall<'_>, attachment_id: &str) -> Result<()>;
}

/// No volume service: no volume exists.
pub struct NoVolumes;

fn no_volume_service() -> ComputeError {
    ComputeError::bad("There is no volume service in this cloud.")
}

#[async_trait]
impl VolumeHook for NoVolumes {
    async fn get(&self, _c: &VolumeCall<'_>, _volume_id: &str) -> Result<Option<Value>> {
        Ok(None)
    }
    async fn create(&self, _c: &VolumeCall<'_>, _volume: Value) -> Result<Value> {
        Err(no_volume_service())
    }
    async fn delete(&self, _c: &VolumeCall<'_>, _volume_id: &str) -> Result<()> {
        Ok(())
    }
    async fn attachment_create(
        &self,
        _c: &VolumeCall<'_>,
        _volume_id: &str,
        _instance_uuid: &str,
    ) -> Result<String> {
        Err(no_volume_service())
    }
    async fn attachment_update(
        &self,
        _c: &VolumeCall<'_>,
        _attachment_id: &str,
        _connector: Value,
    ) -> Result<Value> {
        Err(no_volume_service())
    }
    async fn attachment_complete(&self, _c: &VolumeCall<'_>, _attachment_id: &str) -> Result<()> {
        Err(no_volume_service())
    }
    async fn attachment_delete(&self, _c: &VolumeCall<'_>, _attachment_id: &str) -> Result<()> {
        Ok(())
    }
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
