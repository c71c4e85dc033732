//! Compute's domain types, named as Nova names them (vm_state, task_state, power_state).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub type Timestamp = DateTime<Utc>;

/// `vm_state` values (nova.compute.vm_states).
pub mod vm_state {
    pub const ACTIVE: &str = "active";
    pub const BUILDING: &str = "building";
    pub const PAUSED: &str = "paused";
    pub const SUSPENDED: &str = "suspended";
    pub const STOPPED: &str = "stopped";
    pub const RESCUED: &str = "rescued";
    pub const RESIZED: &str = "resized";
    pub const SOFT_DELETED: &str = "soft-delete";
    pub const DELETED: &str = "deleted";
    pub const ERROR: &str = "error";
    pub const SHELVED: &str = "shelved";
    pub const SHELVED_OFFLOADED: &str = "shelved_offloaded";
}

/// `task_state` values (nova.compute.task_states) kumo's state machine uses.
pub mod task_state {
    pub const SCHEDULING: &str = "scheduling";
    pub const BLOCK_DEVICE_MAPPING: &str = "block_device_mapping";
    pub const NETWORKING: &str = "networking";
    pub const SPAWNING: &str = "spawning";
    pub const IMAGE_SNAPSHOT: &str = "image_snapshot";
    pub const IMAGE_PENDING_UPLOAD: &str = "image_pending_upload";
    pub const IMAGE_UPLOADING: &str = "image_uploading";
    pub const RESIZE_PREP: &str = "resize_prep";
    pub const RESIZE_MIGRATING: &str = "resize_migrating";
    pub const RESIZE_FINISH: &str = "resize_finish";
    pub const RESIZE_REVERTING: &str = "resize_reverting";
    pub const RESIZE_CONFIRMING: &str = "resize_confirming";
    pub const REBOOTING: &str = "rebooting";
    pub const REBOOTING_HARD: &str = "rebooting_hard";
    pub const PAUSING: &str = "pausing";
    pub const UNPAUSING: &str = "unpausing";
    pub const SUSPENDING: &str = "suspending";
    pub const RESUMING: &str = "resuming";
    pub const POWERING_OFF: &str = "powering-off";
    pub const POWERING_ON: &str = "powering-on";
    pub const REBUILDING: &str = "rebuilding";
    pub const DELETING: &str = "deleting";
    pub const SHELVING: &str = "shelving";
    pub const SHELVING_OFFLOADING: &str = "shelving_offloading";
    pub const UNSHELVING: &str = "unshelving";
    pub const MIGRATING: &str = "migrating";
}

/// The API's `status` of a server, from its vm_state and task_state (Nova's `_STATE_MAP`).
pub fn server_status(vm: &str, task: Option<&str>) -> &'static str {
    let t = task.unwrap_or("");
    let resizing = matches!(
        t,
        "resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish"
    );
    let rebuilding = matches!(
        t,
        "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning"
    );
    match vm {
        "active" => match t {
            "rebooting" | "reboot_pending" | "reboot_started" => "REBOOT",
            "rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard" => "HARD_REBOOT",
            "updating_password" => "PASSWORD",
            "migrating" => "MIGRATING",
            _ if rebuilding => "REBUILD",
            _ if resizing => "RESIZE",
            _ => "ACTIVE",
        },
        "building" => "BUILD",
        "stopped" if resizing => "RESIZE",
        "stopped" if rebuilding => "REBUILD",
        "stopped" => "SHUTOFF",
        "resized" if t == "resize_reverting" => "REVERT_RESIZE",
        "resized" => "VERIFY_RESIZE",
        "paused" if t == "migrating" => "MIGRATING",
        "paused" => "PAUSED",
        "suspended" => "SUSPENDED",
        "rescued" => "RESCUE",
        "error" if rebuilding => "REBUILD",
        "error" => "ERROR",
        "deleted" => "DELETED",
        "soft-delete" => "SOFT_DELETED",
        "shelved" => "SHELVED",
        "shelved_offloaded" => "SHELVED_OFFLOADED",
        _ => "UNKNOWN",
    }
}

/// The vm_states a `status` filter means (the inverse of [`server_status`], for listing).
pub fn vm_states_for_status(
    status: &str,
) -> Option<(&'static [&'static str], Option<&'static str>)> {
    // (vm_states, task_state that must be set); None for an unknown status.
    Some(match status.to_ascii_uppercase().as_str() {
        "ACTIVE" => (&["active"], None),
        "BUILD" => (&["building"], None),
        "SHUTOFF" => (&["stopped"], None),
        "VERIFY_RESIZE" => (&["resized"], None),
        "REVERT_RESIZE" => (&["resized"], Some("resize_reverting")),
        "PAUSED" => (&["paused"], None),
        "SUSPENDED" => (&["suspended"], None),
        "RESCUE" => (&["rescued"], None),
        "ERROR" => (&["error"], None),
        "DELETED" => (&["deleted"], None),
        "SOFT_DELETED" => (&["soft-delete"], None),
        "SHELVED" => (&["shelved"], None),
        "SHELVED_OFFLOADED" => (&["shelved_offloaded"], None),
        "REBOOT" => (&["active"], Some("rebooting")),
        "HARD_REBOOT" => (&["active"], Some("rebooting_hard")),
        "REBUILD" => (&["active", "stopped", "error"], Some("rebuilding")),
        "RESIZE" => (&["active", "stopped"], Some("resize_prep")),
        "MIGRATING" => (&["active", "paused"], Some("migrating")),
        "PASSWORD" => (&["active"], Some("updating_password")),
        _ => return None,
    })
}

/// A flavor as defined (the `flavors` table) or as embedded in an instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flavor {
    /// Internal row id (0 when embedded).
    #[serde(default)]
    pub id: i32,
    pub flavorid: String,
    pub name: String,
    pub memory_mb: i64,
    pub vcpus: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

/// A key pair, per user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Keypair {
    pub id: i32,
    pub user_id: String,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    /// `ssh` or `x509`.
    pub key_type: String,
    pub created_at: Timestamp,
}

/// The fault recorded on an instance that went to ERROR.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceFault {
    pub code: u16,
    pub message: String,
    pub details: String,
    pub created: Timestamp,
}

/// A server. Searchable fields are also columns of the `instances` table; the rest is stored
/// as this document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub uuid: String,
    pub project_id: String,
    pub user_id: String,
    pub display_name: String,
    #[serde(default)]
    pub display_description: Option<String>,
    pub hostname: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    pub vm_state: String,
    #[serde(default)]
    pub task_state: Option<String>,
    #[serde(default)]
    pub power_state: i32,
    pub flavor: Flavor,
    #[serde(default)]
    pub old_flavor: Option<Flavor>,
    #[serde(default)]
    pub new_flavor: Option<Flavor>,
    /// Image id; empty for a server booted from a volume.
    #[serde(default)]
    pub image_ref: String,
    #[serde(default)]
    pub image_meta: Value,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
    /// Base64, as given.
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The zone the user asked for (or `default_schedule_zone`): the scheduler keeps the
    /// instance in it.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// The zone of the host the scheduler chose (what `OS-EXT-AZ:availability_zone` shows);
    /// it does not pin later moves, as Nova's request spec does not.
    #[serde(default)]
    pub host_availability_zone: Option<String>,
    #[serde(default)]
    pub config_drive: bool,
    /// The encrypted password the guest posted to the metadata service (Nova keeps it in
    /// system_metadata); empty when none.
    #[serde(default)]
    pub guest_password: String,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub locked_by: Option<String>,
    #[serde(default)]
    pub locked_reason: Option<String>,
    #[serde(default)]
    pub access_ip_v4: Option<String>,
    #[serde(default)]
    pub access_ip_v6: Option<String>,
    #[serde(default)]
    pub launched_at: Option<Timestamp>,
    #[serde(default)]
    pub terminated_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub progress: i32,
    #[serde(default)]
    pub fault: Option<InstanceFault>,
    /// What the create request asked for: `"none"`, `"auto"` or a list.
    #[serde(default)]
    pub requested_networks: Value,
    /// Nova's network_info as the network hook returned it (`addresses` is derived from it).
    #[serde(default)]
    pub network_info: Value,
    /// block_device_mapping_v2 as requested, and the volume hook's answer.
    #[serde(default)]
    pub block_device_mapping: Value,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub reservation_id: String,
    #[serde(default)]
    pub launch_index: i32,
    #[serde(default)]
    pub server_group: Option<String>,
    #[serde(default)]
    pub scheduler_hints: Value,
    /// Hosts already tried by this boot (reschedules).
    #[serde(default)]
    pub attempted_hosts: Vec<String>,
    #[serde(default)]
    pub shelved_image_id: Option<String>,
    /// Volumes attached after boot (os-volume_attachments).
    #[serde(default)]
    pub volume_attachments: Vec<VolumeAttachment>,
    /// The latest external events its host received (os-server-external-events), newest
    /// last, at most [`MAX_RECORDED_EVENTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_events: Vec<RecordedEvent>,
}

/// How many external events an instance keeps.
pub const MAX_RECORDED_EVENTS: usize = 50;

/// An external event as the compute agent recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedEvent {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub tag: Option<String>,
    pub host: String,
    pub received_at: Timestamp,
}

/// One volume of an instance (Nova's volume block device mapping): boot volumes and attached
/// ones. Written with the volume service's attachment id before the host connects it, and
/// updated with the connection once the host has it, so no attachment is ever lost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeAttachment {
    /// The mapping's own id (Nova's `bdm_uuid`).
    pub id: String,
    pub volume_id: String,
    pub device: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub delete_on_termination: bool,
    /// The volume service's attachment (None: not reserved yet).
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// What the volume service answered for this host's connector (null: not connected).
    #[serde(default)]
    pub connection_info: Value,
    /// 0 for the boot volume; None for a volume attached after boot or an extra disk.
    #[serde(default)]
    pub boot_index: Option<i64>,
    /// `attaching` (reserved, not yet in the guest), `attached`, or `detaching`.
    #[serde(default)]
    pub state: String,
}

impl VolumeAttachment {
    /// The driver's block_device_info entry (see `hypervisor::volume`).
    pub fn driver_entry(&self) -> Value {
        serde_json::json!({"volume_id": self.volume_id, "attachment_id": self.attachment_id,
            "device_name": self.device, "boot_index": self.boot_index,
            "connection_info": self.connection_info})
    }
}

impl Instance {
    pub fn status(&self) -> &'static str {
        server_status(&self.vm_state, self.task_state.as_deref())
    }
}

/// One user-visible operation on a server (`os-instance-actions`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceAction {
    pub id: i32,
    pub instance_uuid: String,
    pub action: String,
    pub request_id: String,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    pub message: Option<String>,
    pub updated_at: Timestamp,
}

/// A step of an action (`compute__do_build_and_run_instance`, `conductor_schedule_and_build_instances`...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionEvent {
    pub id: i32,
    pub action_id: i32,
    pub event: String,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    pub result: Option<String>,
    pub traceback: Option<String>,
    pub host: Option<String>,
    pub details: Option<String>,
}

/// Nova's instance action names.
pub mod action {
    pub const CREATE: &str = "create";
    pub const DELETE: &str = "delete";
    pub const STOP: &str = "stop";
    pub const START: &str = "start";
    pub const REBOOT: &str = "reboot";
    pub const PAUSE: &str = "pause";
    pub const UNPAUSE: &str = "unpause";
    pub const SUSPEND: &str = "suspend";
    pub const RESUME: &str = "resume";
    pub const LOCK: &str = "lock";
    pub const UNLOCK: &str = "unlock";
    pub const SHELVE: &str = "shelve";
    pub const SHELVE_OFFLOAD: &str = "shelveOffload";
    pub const UNSHELVE: &str = "unshelve";
    pub const REBUILD: &str = "rebuild";
    pub const RESIZE: &str = "resize";
    pub const CONFIRM_RESIZE: &str = "confirmResize";
    pub const REVERT_RESIZE: &str = "revertResize";
    pub const CREATE_IMAGE: &str = "createImage";
    pub const RESET_STATE: &str = "resetState";
    pub const ATTACH_VOLUME: &str = "attach_volume";
    pub const DETACH_VOLUME: &str = "detach_volume";
    pub const ATTACH_INTERFACE: &str = "attach_interface";
    pub const DETACH_INTERFACE: &str = "detach_interface";
    pub const LIVE_MIGRATION: &str = "live-migration";
    pub const MIGRATE: &str = "migrate";
}

/// A server group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerGroup {
    pub uuid: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    /// affinity, anti-affinity, soft-affinity, soft-anti-affinity.
    pub policy: String,
    pub rules: BTreeMap<String, Value>,
    pub members: Vec<String>,
    pub created_at: Timestamp,
}

/// A migration record (Nova's `migrations`; `os-migrations` lists them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    pub id: i32,
    pub uuid: String,
    pub instance_uuid: String,
    /// `evacuation` (the only kind kumo records so far).
    pub migration_type: String,
    /// accepted -> done (rebuilt on the destination) -> completed (the source cleaned up);
    /// failed / error when it did not happen.
    pub status: String,
    pub source_compute: Option<String>,
    pub source_node: Option<String>,
    pub dest_compute: Option<String>,
    pub dest_node: Option<String>,
    pub project_id: String,
    pub user_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A compute service record (`os-services`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub id: i32,
    pub uuid: String,
    pub host: String,
    pub binary: String,
    pub topic: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub forced_down: bool,
    pub report_count: i64,
    pub last_seen_up: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
    /// The service version of the code that last registered or beat for it
    /// (`rpc::SERVICE_VERSION`; 0: a build from before versions were recorded).
    pub version: i32,
}

/// A hypervisor (`os-hypervisors`): what a compute host offers and uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComputeNode {
    pub id: i32,
    pub uuid: String,
    pub host: String,
    pub hypervisor_hostname: String,
    pub resources: hypervisor::HostResources,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// A host aggregate (also how availability zones are made).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    pub id: i32,
    pub uuid: String,
    pub name: String,
    pub availability_zone: Option<String>,
    pub hosts: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_novas_state_map() {
        assert_eq!(server_status("building", Some("scheduling")), "BUILD");
        assert_eq!(server_status("active", None), "ACTIVE");
        assert_eq!(server_status("active", Some("rebooting")), "REBOOT");
        assert_eq!(
            server_status("active", Some("rebooting_hard")),
            "HARD_REBOOT"
        );
        assert_eq!(server_status("active", Some("resize_prep")), "RESIZE");
        assert_eq!(server_status("active", Some("rebuilding")), "REBUILD");
        assert_eq!(server_status("active", Some("powering-off")), "ACTIVE");
        assert_eq!(server_status("stopped", None), "SHUTOFF");
        assert_eq!(server_status("resized", None), "VERIFY_RESIZE");
        assert_eq!(
            server_status("resized", Some("resize_reverting")),
            "REVERT_RESIZE"
        );
        assert_eq!(
            server_status("shelved_offloaded", None),
            "SHELVED_OFFLOADED"
        );
        assert_eq!(server_status("error", None), "ERROR");
        assert_eq!(server_status("error", Some("rebuilding")), "REBUILD");
    }

    #[test]
    fn status_filter_inverts_the_map() {
        for s in [
            "ACTIVE",
            "BUILD",
            "SHUTOFF",
            "PAUSED",
            "SUSPENDED",
            "ERROR",
            "SHELVED_OFFLOADED",
        ] {
            let (vms, task) = vm_states_for_status(s).unwrap();
            assert_eq!(server_status(vms[0], task), s);
        }
        assert!(vm_states_for_status("NOPE").is_none());
    }
}
