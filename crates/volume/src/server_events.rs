//! What the volume service tells compute about servers' volumes (Cinder's `nova` notifier:
//! `os-server-external-events`). kumo wires it to the compute service of its process.

use async_trait::async_trait;

/// Who caused an event: the user and project of the volume request.
#[derive(Debug, Clone)]
pub struct Sender {
    pub user_id: String,
    pub project_id: String,
    pub request_id: String,
}

#[async_trait]
pub trait ServerEvents: Send + Sync {
    /// `volume-extended`: attached volume `volume_id` of server `server` grew, so the guest's
    /// disk should grow to the volume's new size.
    async fn volume_extended(&self, server: &str, volume_id: &str, by: &Sender);
}

/// Nobody listens (the volume service alone).
pub struct NoServerEvents;

#[async_trait]
impl ServerEvents for NoServerEvents {
    async fn volume_extended(&self, _server: &str, _volume_id: &str, _by: &Sender) {}
}
