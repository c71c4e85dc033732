//! The metadata service wired to this cloud: the network service says which port holds an
//! address, compute says what the instance behind it is, and the listeners live in the DHCP
//! namespaces the network agent builds (answering, or proxying to the metadata role of
//! another process).

use async_trait::async_trait;
use metadata::listeners::{ListenerSet, Wanted};
use metadata::proxy::{Owner, PortLocator};
use metadata::{Directory, DirectoryError, InstanceFacts, PasswordOutcome};
use std::net::IpAddr;
use std::sync::Arc;

pub struct CloudDirectory {
    pub compute: Arc<compute::ComputeService>,
    pub network: Arc<network::NetworkService>,
}

fn failed(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(e.to_string())
}

#[async_trait]
impl Directory for CloudDirectory {
    async fn instance_at(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<Option<InstanceFacts>, DirectoryError> {
        let Some(owner) = self
            .network
            .owner_of_address(network_id, &address.to_string())
            .await
            .map_err(failed)?
        else {
            return Ok(None);
        };
        let port = &owner.port;
        if !port.device_owner.starts_with("compute:") || port.device_id.is_empty() {
            return Ok(None);
        }
        let Some(instance) = self
            .compute
            .get_instance(&port.device_id)
            .await
            .map_err(failed)?
            .filter(|i| !i.deleted)
        else {
            return Ok(None);
        };
        Ok(Some(compute::guest_metadata::facts_of(
            &instance,
            owner.floating_ips,
        )))
    }

    async fn instance_by_id(
        &self,
        instance_id: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<InstanceFacts>, DirectoryError> {
        let Some(instance) = self
            .compute
            .get_instance(instance_id)
            .await
            .map_err(failed)?
            .filter(|i| !i.deleted)
        else {
            return Ok(None);
        };
        // The floating IPs of the port the request came from, as a namespace listener shows
        // them: the VIF that holds the forwarded address names its network.
        let mut floating_ips = Vec::new();
        if let Some(address) = address {
            let address = address.to_string();
            let network_id = instance
                .network_info
                .as_array()
                .into_iter()
                .flatten()
                .find(|vif| {
                    vif["network"]["subnets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|s| s["ips"].as_array().into_iter().flatten())
                        .any(|ip| ip["address"].as_str() == Some(address.as_str()))
                })
                .and_then(|vif| vif["network"]["id"].as_str())
                .map(str::to_string);
            if let Some(network_id) = network_id
                && let Some(owner) = self
                    .network
                    .owner_of_address(&network_id, &address)
                    .await
                    .map_err(failed)?
                && owner.port.device_id == instance.uuid
            {
                floating_ips = owner.floating_ips;
            }
        }
        Ok(Some(compute::guest_metadata::facts_of(
            &instance,
            floating_ips,
        )))
    }

    async fn set_password(
        &self,
        instance: &str,
        password: &str,
    ) -> Result<PasswordOutcome, DirectoryError> {
        self.compute
            .set_guest_password(instance, password)
            .await
            .map_err(failed)
    }
}

/// The proxy's lookup: the instance port that holds an address, from the network database.
pub struct NetworkPorts(pub Arc<network::NetworkService>);

#[async_trait]
impl PortLocator for NetworkPorts {
    async fn owner_at(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<Option<Owner>, DirectoryError> {
        let Some(owner) = self
            .0
            .owner_of_address(network_id, &address.to_string())
            .await
            .map_err(failed)?
        else {
            return Ok(None);
        };
        let port = owner.port;
        if !port.device_owner.starts_with("compute:") || port.device_id.is_empty() {
            return Ok(None);
        }
        Ok(Some(Owner {
            instance_id: port.device_id,
            tenant_id: port.project_id,
        }))
    }
}

/// The agent's hook: keep one listener per DHCP namespace that carries the metadata address.
pub struct NamespaceListeners(pub ListenerSet);

#[async_trait]
impl network::agent::MetadataHost for NamespaceListeners {
    async fn serve(&self, networks: Vec<(String, String)>) {
        let wanted: Vec<Wanted> = networks
            .into_iter()
            .map(|(network_id, namespace)| Wanted {
                network_id,
                namespace,
            })
            .collect();
        self.0.sync(&wanted).await;
    }
}
