//! What compute tells the metadata service and the config drive about an instance (Nova's
//! `InstanceMetadata` inputs), and the password a guest posts back.

use base64::Engine as _;

use crate::core::ComputeService;
use crate::error::Result;
use crate::model::Instance;
use metadata::{InstanceFacts, PasswordOutcome, PublicKey};

/// Nova's key pair type, from the key's text (kumo keeps the public key with the instance).
fn key_kind(data: &str) -> &'static str {
    if data.trim_start().starts_with("-----BEGIN CERTIFICATE") {
        "x509"
    } else {
        "ssh"
    }
}

/// The facts the metadata trees are rendered from; `floating_ips` come from the network
/// service.
pub fn facts_of(i: &Instance, floating_ips: Vec<String>) -> InstanceFacts {
    let key = match (&i.key_name, &i.key_data) {
        (Some(name), Some(data)) => Some(PublicKey {
            name: name.clone(),
            kind: key_kind(data).into(),
            data: data.clone(),
        }),
        _ => None,
    };
    InstanceFacts {
        uuid: i.uuid.clone(),
        name: i.display_name.clone(),
        hostname: i.hostname.clone(),
        project_id: i.project_id.clone(),
        availability_zone: i
            .host_availability_zone
            .clone()
            .or_else(|| i.availability_zone.clone()),
        launch_index: i.launch_index,
        reservation_id: i.reservation_id.clone(),
        flavor_name: i.flavor.name.clone(),
        image_id: i.image_ref.clone(),
        key,
        meta: i.metadata.clone(),
        user_data: i
            .user_data
            .as_ref()
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok()),
        network_info: i.network_info.clone(),
        security_groups: i.security_groups.clone(),
        floating_ips,
        password: i.guest_password.clone(),
    }
}

impl ComputeService {
    /// Keeps the first password a guest posts (Nova answers 409 to a second one).
    pub async fn set_guest_password(&self, uuid: &str, password: &str) -> Result<PasswordOutcome> {
        let mut outcome = PasswordOutcome::Set;
        self.update_instance(uuid, None, |i| {
            if i.guest_password.is_empty() {
                i.guest_password = password.to_string();
            } else {
                outcome = PasswordOutcome::AlreadySet;
            }
            Ok(())
        })
        .await?;
        Ok(outcome)
    }
}
