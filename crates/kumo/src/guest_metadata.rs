//! The metadata service wired to this cloud: the network service says which port holds an
//! address, compute says what the instance behind it is, and the listeners live in the DHCP
//! namespaces the network agent builds.

use async_trait::async_trait;
use metadata::listeners::{ListenerSet, Wanted};
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
