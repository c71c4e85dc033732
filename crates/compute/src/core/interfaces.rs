//! A server's port interfaces as the API asks for them (Nova's `attach_interfaces` controller
//! and `compute.API.attach_interface/detach_interface`), and the multinic actions.
//!
//! List and show read the network service with the caller's token. Attach is a call to the
//! server's compute agent (as Nova's RPC `call`), which answers once the port is bound,
//! plugged and in the network info; detach is a cast (202). Both are refused while the server
//! is locked (409) or outside ACTIVE, PAUSED and STOPPED with no task (Nova's
//! `check_instance_state`), and record an instance action.

use bus::{BusExt, Target};
use common::auth::AuthContext;
use serde_json::{Value, json};
use std::time::Duration;

use super::ComputeService;
use super::servers::check_state;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::neutron::Requested;
use crate::rpc::{self, Operation};

pub const POLICY_LIST: &str = "os_compute_api:os-attach-interfaces:list";
pub const POLICY_SHOW: &str = "os_compute_api:os-attach-interfaces:show";
pub const POLICY_CREATE: &str = "os_compute_api:os-attach-interfaces:create";
pub const POLICY_DELETE: &str = "os_compute_api:os-attach-interfaces:delete";
pub const POLICY_ADD_FIXED_IP: &str = "os_compute_api:os-multinic:add";
pub const POLICY_REMOVE_FIXED_IP: &str = "os_compute_api:os-multinic:remove";

/// The vm_states an interface may be attached or detached in (Nova's).
const INTERFACE_VM_STATES: &[&str] = &[vm_state::ACTIVE, vm_state::PAUSED, vm_state::STOPPED];
const NO_TASK: &[Option<&str>] = &[None];

/// How long the API waits for an attach beyond the plug wait: the port's creation and
/// binding, and the driver's hot-plug.
const ATTACH_MARGIN: Duration = Duration::from_secs(120);

/// The VIF of `port_id` in an instance's network info.
pub fn vif_of_port<'a>(i: &'a Instance, port_id: &str) -> Option<&'a Value> {
    i.network_info
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["id"].as_str() == Some(port_id))
}

/// The device tag an attach or the boot request gave a port (`tag` from 2.70).
pub fn tag_of(i: &Instance, port_id: &str) -> Option<String> {
    vif_of_port(i, port_id).and_then(|v| v["tag"].as_str().map(str::to_string))
}

/// Whether the instance's network info has the fixed address `address`.
fn has_address(i: &Instance, address: &str) -> bool {
    i.network_info
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["network"]["subnets"].as_array().into_iter().flatten())
        .flat_map(|s| s["ips"].as_array().into_iter().flatten())
        .any(|ip| ip["address"].as_str() == Some(address))
}

/// Whether the instance has a port on network `network_id`.
fn has_network(i: &Instance, network_id: &str) -> bool {
    i.network_info
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["network"]["id"].as_str() == Some(network_id))
}

impl ComputeService {
    /// The ports bound to a server, as the caller sees them.
    pub async fn interfaces(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<(Instance, Vec<Value>)> {
        let i = self.instance_for(ctx, uuid, POLICY_LIST).await?;
        let ports = self
            .network
            .list_ports(self, &i, user_token, request_id)
            .await?;
        Ok((i, ports))
    }

    /// One port of a server (404 when it is not the server's, as Nova).
    pub async fn interface(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        port_id: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<(Instance, Value)> {
        let i = self.instance_for(ctx, uuid, POLICY_SHOW).await?;
        let port = self
            .server_port(&i, port_id, user_token, request_id)
            .await?;
        Ok((i, port))
    }

    async fn server_port(
        &self,
        i: &Instance,
        port_id: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<Value> {
        let port = self
            .network
            .show_port(self, port_id, user_token, request_id)
            .await?
            .ok_or_else(|| {
                ComputeError::NotFound(format!("Port id {port_id} could not be found."))
            })?;
        if port["device_id"].as_str() != Some(i.uuid.as_str()) {
            return Err(ComputeError::NotFound(format!(
                "Instance {} does not have a port with id {port_id}",
                i.uuid
            )));
        }
        Ok(port)
    }

    /// The checks Nova's `compute.API` makes before it hands an interface operation to the
    /// host: lock, then vm_state/task_state.
    fn interface_checks(&self, ctx: &AuthContext, i: &Instance, action_name: &str) -> Result<()> {
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(&i.uuid));
        }
        check_state(i, action_name, INTERFACE_VM_STATES, NO_TASK)
    }

    /// `POST /servers/{id}/os-interface`: attach the caller's port or a new port on a network
    /// (the project's one network when neither is named); the port once it is plugged.
    pub async fn attach_interface(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        req: Requested,
        user_token: &str,
        request_id: &str,
    ) -> Result<(Instance, Value)> {
        let i = self.instance_for(ctx, uuid, POLICY_CREATE).await?;
        if req.network_id.is_some() && req.port_id.is_some() {
            return Err(ComputeError::bad(
                "Must not input both network_id and port_id",
            ));
        }
        if req.fixed_ip.is_some() && req.network_id.is_none() {
            return Err(ComputeError::bad(
                "Must input network_id when request IP address",
            ));
        }
        self.interface_checks(ctx, &i, action::ATTACH_INTERFACE)?;
        let host = i
            .host
            .clone()
            .ok_or_else(|| ComputeError::conflict(format!("Instance {uuid} is not ready")))?;
        self.record_action(ctx, &i, action::ATTACH_INTERFACE, request_id)
            .await?;
        let msg = rpc::AttachInterface {
            instance_uuid: uuid.to_string(),
            network_id: req.network_id,
            port_id: req.port_id,
            fixed_ip: req.fixed_ip,
            tag: req.tag,
            user_token: user_token.to_string(),
        };
        let timeout = self.cfg.vif_plugging_timeout.unwrap_or_default() + ATTACH_MARGIN;
        let vif = self
            .bus()?
            .call_typed(
                &Target::server(rpc::COMPUTE_TOPIC, &host),
                request_id,
                &msg,
                timeout,
            )
            .await
            .map_err(|e| match e {
                bus::BusError::Remote { kind, message } => match kind.as_str() {
                    "BadRequest" => ComputeError::BadRequest(message),
                    "NotFound" => ComputeError::NotFound(message),
                    "Conflict" => ComputeError::Conflict(message),
                    "Forbidden" => ComputeError::Forbidden(message),
                    _ => ComputeError::Failed(message),
                },
                bus::BusError::NoServer { .. } => ComputeError::conflict(format!(
                    "Compute service of {host} is unavailable at this time."
                )),
                other => other.into(),
            })?;
        let port_id = vif["id"].as_str().unwrap_or_default();
        let i = self
            .get_instance(uuid)
            .await?
            .ok_or_else(|| ComputeError::instance_not_found(uuid))?;
        let port = self
            .server_port(&i, port_id, user_token, request_id)
            .await?;
        Ok((i, port))
    }

    /// `DELETE /servers/{id}/os-interface/{port_id}`: the agent unplugs the port and releases
    /// it. A port not in the server's network info is 404 here (Nova finds that out on the
    /// host, after its 202).
    pub async fn detach_interface(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        port_id: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<()> {
        let i = self.instance_for(ctx, uuid, POLICY_DELETE).await?;
        self.interface_checks(ctx, &i, action::DETACH_INTERFACE)?;
        if vif_of_port(&i, port_id).is_none() {
            return Err(ComputeError::NotFound(format!(
                "Port {port_id} is not attached"
            )));
        }
        self.record_action(ctx, &i, action::DETACH_INTERFACE, request_id)
            .await?;
        self.cast_operation(
            &i,
            Operation::DetachInterface {
                port_id: port_id.to_string(),
            },
            request_id,
            user_token,
        )
        .await
    }

    /// The multinic `addFixedIp` action (until 2.43): a cast, as Nova's. A network the server
    /// has no port on is 400 here (Nova's NetworkNotFoundForInstance, which it raises on the
    /// host after its 202).
    pub async fn add_fixed_ip(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        network_id: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<()> {
        let i = self.instance_for(ctx, uuid, POLICY_ADD_FIXED_IP).await?;
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(uuid));
        }
        if !has_network(&i, network_id) {
            return Err(ComputeError::bad(crate::hooks::no_network_for(uuid)));
        }
        let op = Operation::AddFixedIp {
            network_id: network_id.to_string(),
        };
        self.cast_operation(&i, op, request_id, user_token).await
    }

    /// The multinic `removeFixedIp` action (until 2.43): a cast; an address the server does
    /// not have is 400 (Nova's FixedIpNotFoundForInstance).
    pub async fn remove_fixed_ip(
        &self,
        ctx: &AuthContext,
        uuid: &str,
        address: &str,
        user_token: &str,
        request_id: &str,
    ) -> Result<()> {
        let i = self.instance_for(ctx, uuid, POLICY_REMOVE_FIXED_IP).await?;
        if i.locked && !ctx.has_role("admin") {
            return Err(ComputeError::locked(uuid));
        }
        if !has_address(&i, address) {
            return Err(ComputeError::bad(crate::hooks::no_fixed_ip(uuid, address)));
        }
        let op = Operation::RemoveFixedIp {
            address: address.to_string(),
        };
        self.cast_operation(&i, op, request_id, user_token).await
    }
}

/// `interfaceAttachment` as Nova renders it: the port's network, id, MAC, status and fixed
/// IPs; `tag` (from 2.70) from the server's network info.
pub fn attachment_view(port: &Value, tag: Option<Option<String>>) -> Value {
    let mut v = json!({
        "net_id": port["network_id"],
        "port_id": port["id"],
        "mac_addr": port["mac_address"],
        "port_state": port["status"],
        "fixed_ips": port.get("fixed_ips").cloned().unwrap_or(Value::Null),
    });
    if let Some(t) = tag {
        v["tag"] = json!(t);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_novas() {
        let port = json!({"id": "p", "network_id": "n", "mac_address": "fa:16:3e:00:00:01",
            "status": "ACTIVE", "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}],
            "device_id": "i"});
        assert_eq!(
            attachment_view(&port, None),
            json!({"net_id": "n", "port_id": "p", "mac_addr": "fa:16:3e:00:00:01",
                "port_state": "ACTIVE",
                "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}]})
        );
        assert_eq!(attachment_view(&port, Some(None))["tag"], Value::Null);
        assert_eq!(
            attachment_view(&port, Some(Some("nic1".into())))["tag"],
            "nic1"
        );
    }
}
