//! Messages between compute's roles over the bus (Nova's RPC shape: api -> conductor ->
//! scheduler -> compute). Every message carries the request id of the API call that caused it
//! in its envelope, so the instance action events of a call are found by (instance, request).

use bus::{Message, Version};
use serde::{Deserialize, Serialize};

pub const CONDUCTOR_TOPIC: &str = "conductor";
pub const SCHEDULER_TOPIC: &str = "scheduler";
pub const COMPUTE_TOPIC: &str = "compute";

/// conductor: schedule these new instances and have them built (also: reschedule one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleAndBuild {
    pub instance_uuids: Vec<String>,
    /// The caller's token, for the image service (as Nova's request context carries it).
    pub user_token: String,
}
impl Message for ScheduleAndBuild {
    const METHOD: &'static str = "schedule_and_build_instances";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// conductor: find a host for a shelved-offloaded instance and unshelve it there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnshelveInstance {
    pub instance_uuid: String,
    pub user_token: String,
}
impl Message for UnshelveInstance {
    const METHOD: &'static str = "unshelve_instance";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// conductor: rebuild an instance of a failed host on another one (Nova's rebuild_instance
/// with a migration of type evacuation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvacuateInstance {
    pub instance_uuid: String,
    pub migration_id: i32,
    /// The failed host the instance leaves.
    pub source_host: String,
    /// The host the caller asked for (checked by the filters unless forced), if any.
    pub requested_host: Option<String>,
    pub user_token: String,
}
impl Message for EvacuateInstance {
    const METHOD: &'static str = "rebuild_instance";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// conductor: live-migrate an instance (Nova's `migrate_server` with `live`): a destination,
/// then the source's compute drives the move.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveMigrateInstance {
    pub instance_uuid: String,
    pub migration_id: i32,
    /// The host the caller asked for (still filtered), if any.
    pub requested_host: Option<String>,
    pub user_token: String,
}
impl Message for LiveMigrateInstance {
    const METHOD: &'static str = "live_migrate_instance";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<source>: move a running guest to `dest_host` (Nova's `live_migration`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveMigration {
    pub instance_uuid: String,
    pub migration_id: i32,
    pub dest_host: String,
    pub dest_node: String,
}
impl Message for LiveMigration {
    const METHOD: &'static str = "live_migration";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<dest>: get ready for a guest migrating in (ports wired ahead, disks made, QEMU
/// waiting); the reply says where the source sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreLiveMigration {
    pub instance_uuid: String,
    pub migration_id: i32,
}
impl Message for PreLiveMigration {
    const METHOD: &'static str = "pre_live_migration";
    const VERSION: Version = Version::new(1, 0);
    type Reply = hypervisor::IncomingMigration;
}

/// compute.<dest>: the guest has arrived: run it (unless it was paused), bind its ports here
/// and take the instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostLiveMigrationAtDestination {
    pub instance_uuid: String,
    pub migration_id: i32,
}
impl Message for PostLiveMigrationAtDestination {
    const METHOD: &'static str = "post_live_migration_at_destination";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<dest>: the migration failed: remove what `pre_live_migration` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackLiveMigrationAtDestination {
    pub instance_uuid: String,
}
impl Message for RollbackLiveMigrationAtDestination {
    const METHOD: &'static str = "rollback_live_migration_at_destination";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// conductor: cold-migrate an instance (Nova's `migrate_server` without `live`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateInstance {
    pub instance_uuid: String,
    pub migration_id: i32,
    pub requested_host: Option<String>,
}
impl Message for MigrateInstance {
    const METHOD: &'static str = "migrate_server";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<source>: stop the guest and move its disks to `dest_host` (Nova's
/// `resize_instance` of a migration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdMigration {
    pub instance_uuid: String,
    pub migration_id: i32,
    pub dest_host: String,
    pub dest_node: String,
}
impl Message for ColdMigration {
    const METHOD: &'static str = "resize_instance";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<dest>: the disks are here: boot the guest (`run`) or leave it stopped, bind the
/// ports here and take the instance, which waits for confirm or revert (Nova's `finish_resize`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishColdMigration {
    pub instance_uuid: String,
    pub migration_id: i32,
    pub run: bool,
}
impl Message for FinishColdMigration {
    const METHOD: &'static str = "finish_resize";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<source>: a cold migration was confirmed: the copy left here goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfirmMigrationAtSource {
    pub instance_uuid: String,
}
impl Message for ConfirmMigrationAtSource {
    const METHOD: &'static str = "confirm_resize";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<source>: a cold migration was reverted: the instance is here again; its ports
/// are bound here and the guest runs again (`run`) from the disks it left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevertMigrationAtSource {
    pub instance_uuid: String,
    pub run: bool,
}
impl Message for RevertMigrationAtSource {
    const METHOD: &'static str = "finish_revert_resize";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// scheduler: pick a host for one instance and claim its resources there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelectDestination {
    pub instance_uuid: String,
    /// Hosts not to use (already tried; an evacuation's source).
    pub exclude_hosts: Vec<String>,
    /// Only this host (an evacuation to a named host).
    #[serde(default)]
    pub requested_host: Option<String>,
    /// The instance already holds an allocation (on a failed host): the claim replaces it.
    #[serde(default)]
    pub move_allocation: bool,
    /// A live migration (Nova's way): the source's allocation moves to this migration's uuid
    /// as consumer until the guest has left, the instance's is claimed on the destination, and
    /// the instance keeps its host until then.
    #[serde(default)]
    pub migration_uuid: Option<String>,
}
/// Where the instance goes; its allocation is claimed against `rp_uuid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Destination {
    pub host: String,
    pub node: String,
    pub rp_uuid: String,
}
impl Message for SelectDestination {
    const METHOD: &'static str = "select_destinations";
    const VERSION: Version = Version::new(1, 0);
    type Reply = Destination;
}

/// compute.<host>: build and run a scheduled instance.
///
/// With the `rpc-next` feature (the rolling-upgrade test's build N+1) this is 1.1 and carries
/// the node the scheduler chose (`node`, Nova's `build_and_run_instance(node=...)`); written
/// for a 1.0 receiver it goes without it, and a 1.0 sender's message arrives with none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildAndRun {
    pub instance_uuid: String,
    pub user_token: String,
    /// 1.1: the scheduler's node for the instance; `None` from a 1.0 sender.
    #[cfg(feature = "rpc-next")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
impl Message for BuildAndRun {
    const METHOD: &'static str = "build_and_run_instance";
    #[cfg(not(feature = "rpc-next"))]
    const VERSION: Version = Version::new(1, 0);
    #[cfg(feature = "rpc-next")]
    const VERSION: Version = Version::new(1, 1);
    type Reply = ();

    #[cfg(feature = "rpc-next")]
    fn payload_at(&self, version: Version) -> Result<serde_json::Value, bus::BusError> {
        if !Self::VERSION.can_serve(version) {
            return Err(bus::BusError::VersionCap {
                method: Self::METHOD.into(),
                speaks: Self::VERSION,
                cap: version,
            });
        }
        let mut payload = bus::encode(self)?;
        if version.minor < 1
            && let Some(fields) = payload.as_object_mut()
        {
            fields.remove("node");
        }
        Ok(payload)
    }
}

/// This build's service version (Nova's `SERVICE_VERSION`): every service record carries the
/// version of the code that runs it, written at registration and every heartbeat. It grows by
/// one with every change to compute's messages; [`COMPUTE_RPC_HISTORY`] says what each serves.
#[cfg(not(feature = "rpc-next"))]
pub const SERVICE_VERSION: i32 = 1;
/// This build's service version: `rpc-next` (BuildAndRun 1.1) is one more.
#[cfg(feature = "rpc-next")]
pub const SERVICE_VERSION: i32 = 2;

/// The compute message version each service version serves, oldest first (Nova's
/// `SERVICE_VERSION_HISTORY` with its `compute_rpc`); the last entry is this build's. A sender
/// caps compute messages at the entry of the oldest nova-compute in the database.
pub const COMPUTE_RPC_HISTORY: &[(i32, Version)] = &[
    (1, Version::new(1, 0)),
    #[cfg(feature = "rpc-next")]
    (2, Version::new(1, 1)),
];

/// compute.<host>: remove an instance (delete, force delete).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Terminate {
    pub instance_uuid: String,
    /// The caller's token, for the volume service (detach, delete_on_termination); empty:
    /// compute's own.
    #[serde(default)]
    pub user_token: String,
}
impl Message for Terminate {
    const METHOD: &'static str = "terminate_instance";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// What a server action asks the compute agent to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Stop,
    Start,
    Reboot {
        hard: bool,
    },
    Pause,
    Unpause,
    Suspend,
    Resume,
    Rebuild,
    Resize,
    ConfirmResize,
    RevertResize,
    Snapshot {
        image_id: String,
    },
    Shelve {
        image_id: Option<String>,
        offload: bool,
    },
    ShelveOffload,
    Unshelve,
    /// Connect, plug and complete a volume the API reserved and recorded.
    AttachVolume {
        volume_id: String,
    },
    DetachVolume {
        volume_id: String,
    },
    /// Unplug a port and release it (the caller's unbound, compute's deleted).
    DetachInterface {
        port_id: String,
    },
    /// multinic `addFixedIp`: one more address from the network on the server's port there.
    AddFixedIp {
        network_id: String,
    },
    /// multinic `removeFixedIp`.
    RemoveFixedIp {
        address: String,
    },
    /// Rebuild here an instance evacuated from a failed host (the scheduler already moved
    /// its host and allocation here).
    Evacuate {
        migration_id: i32,
    },
}

/// compute.<host>: run a server action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOperation {
    pub instance_uuid: String,
    pub operation: Operation,
    pub user_token: String,
}
impl Message for RunOperation {
    const METHOD: &'static str = "run_operation";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}

/// compute.<host>: attach an interface (`POST /servers/{id}/os-interface`, a call as in Nova):
/// the caller's port, or a new one on a network (the project's one network when neither is
/// given), bound and plugged. The reply is the new VIF. Remote fault kinds are the HTTP
/// answers the API gives for them: `BadRequest`, `NotFound`, `Conflict`, `Forbidden`, else
/// `InterfaceAttachFailed` (500).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachInterface {
    pub instance_uuid: String,
    pub network_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip: Option<String>,
    pub tag: Option<String>,
    pub user_token: String,
}
impl Message for AttachInterface {
    const METHOD: &'static str = "attach_interface";
    const VERSION: Version = Version::new(1, 0);
    type Reply = serde_json::Value;
}

/// compute.<host>: the serial console's tail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleOutput {
    pub instance_uuid: String,
    pub length: Option<usize>,
}
impl Message for ConsoleOutput {
    const METHOD: &'static str = "get_console_output";
    const VERSION: Version = Version::new(1, 0);
    type Reply = String;
}

/// compute.<host>: where the guest's VNC server listens (the driver's `vnc_target`:
/// `unix:/path` or `tcp:HOST:PORT`). Remote fault kinds: `NotImplementedError` (the driver
/// has no VNC), `InstanceNotFound`, `ConsoleNotAvailable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetVncConsole {
    pub instance_uuid: String,
}
impl Message for GetVncConsole {
    const METHOD: &'static str = "get_vnc_console";
    const VERSION: Version = Version::new(1, 0);
    type Reply = String;
}

/// An event another service reported about an instance (os-server-external-events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalEvent {
    pub instance_uuid: String,
    /// network-changed, network-vif-plugged, network-vif-unplugged, network-vif-deleted,
    /// volume-extended.
    pub name: String,
    /// completed, failed or in-progress.
    pub status: String,
    /// The port id of a vif event, the volume id of volume-extended.
    pub tag: Option<String>,
}

/// compute.<host>: external events for instances on this host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalInstanceEvents {
    pub events: Vec<ExternalEvent>,
}
impl Message for ExternalInstanceEvents {
    const METHOD: &'static str = "external_instance_event";
    const VERSION: Version = Version::new(1, 0);
    type Reply = ();
}
