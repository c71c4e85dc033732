//! Who holds an address: the metadata service identifies a guest by the network a request
//! arrived on and its source address, as Neutron's metadata agent does with its port lookup.

use crate::error::Result;
use crate::model::Port;
use crate::store;

use super::NetworkService;

/// The port behind an address, with the floating IPs that reach it.
#[derive(Debug, Clone)]
pub struct AddressOwner {
    pub port: Port,
    pub floating_ips: Vec<String>,
}

impl NetworkService {
    /// The port that holds `ip` on `network_id` (no policy: the caller is the service itself).
    pub async fn owner_of_address(
        &self,
        network_id: &str,
        ip: &str,
    ) -> Result<Option<AddressOwner>> {
        let c = self.db.conn();
        let Some(port_id) = store::ip_holder_on_network(c, network_id, ip).await? else {
            return Ok(None);
        };
        let Some(port) = self.load_port(c, &port_id).await? else {
            return Ok(None);
        };
        let floating_ips = self
            .all_floating_ips(c)
            .await?
            .into_iter()
            .filter(|f| f.port_id.as_deref() == Some(port.id.as_str()))
            .map(|f| f.floating_ip_address)
            .collect();
        Ok(Some(AddressOwner { port, floating_ips }))
    }
}
