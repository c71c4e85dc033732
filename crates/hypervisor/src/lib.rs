//! The compute agent's view of a hypervisor: the [`Driver`] trait (nova.virt.driver's
//! ComputeDriver, reduced to what kumo's agent calls) and its implementations.
//!
//! - [`fake`]: keeps instances in memory, as Nova's fake driver does; tests and benches run the
//!   whole control plane on it, with several fake hosts in one process.
//! - [`qemu`]: real guests, one detached `qemu-system-x86_64` per instance driven over QMP
//!   ([`qemu::qmp`]), disks as qcow2 overlays on cached base images.
//!
//! The agent owns the state machine (vm_state/task_state); a driver only does the work and
//! reports power states.

pub mod fake;
pub mod qemu;
pub mod volume;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Nova's power states, with Nova's numbers (what `OS-EXT-STS:power_state` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    NoState,
    Running,
    Paused,
    Shutdown,
    Crashed,
    Suspended,
}

impl PowerState {
    pub fn code(self) -> i32 {
        match self {
            PowerState::NoState => 0,
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutdown => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }

    pub fn from_code(code: i32) -> Self {
        match code {
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => PowerState::NoState,
        }
    }
}

/// What the driver needs to build a guest. Sizes as in the flavor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub uuid: String,
    pub name: String,
    pub hostname: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    /// The image to boot from (id, and its properties as the image service returned them).
    pub image_id: Option<String>,
    pub image_meta: Value,
    /// Decoded user data.
    pub user_data: Option<Vec<u8>>,
    pub key_data: Option<String>,
    pub metadata: Value,
    pub config_drive: bool,
    /// The config drive's files (path in the drive, content) and its format (`iso9660` or
    /// `vfat`), when `config_drive` is set.
    #[serde(default)]
    pub config_drive_files: Vec<(String, Vec<u8>)>,
    #[serde(default)]
    pub config_drive_format: String,
    /// The network hook's answer (Nova's network_info); `[]` without networks.
    pub network_info: Value,
    /// The volume hook's answer (block device info); `[]` without volumes.
    pub block_device_info: Value,
}

/// An image's record as the image service returned it, for checking the downloaded data.
#[derive(Debug, Clone, Default)]
pub struct ImageRecord {
    pub id: String,
    pub disk_format: String,
    /// Glance's md5 `checksum`.
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub size: Option<u64>,
}

/// Where a driver gets image data: the image service, as compute's service user.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Write the data of image `image_id` to `dest` and return its record.
    async fn download(&self, image_id: &str, dest: &Path) -> Result<ImageRecord>;
}

/// A snapshot the driver made, ready to upload.
#[derive(Debug, Clone)]
pub struct SnapshotData {
    pub disk_format: String,
    pub container_format: String,
    pub data: Vec<u8>,
}

/// What a host offers, reported to placement and `os-hypervisors`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostResources {
    pub hypervisor_hostname: String,
    pub hypervisor_type: String,
    pub hypervisor_version: u64,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub local_gb: u64,
    pub cpu_info: Value,
    pub host_ip: String,
}

/// One instance as the driver sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    pub power_state: PowerState,
}

/// Where a guest migrating in is awaited: the destination's answer to pre-live-migration,
/// which the source's driver streams the guest to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IncomingMigration {
    /// The migration stream's address (`tcp:HOST:PORT`).
    pub uri: String,
    /// The guest's local disks (no shared storage): each is copied to its export on the
    /// destination while the guest runs.
    pub disks: Vec<DiskTarget>,
}

/// One local disk of a migrating guest and the NBD export on the destination that takes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskTarget {
    /// The block node on both sides (`root`, `eph0`, `swap`).
    pub node: String,
    pub host: String,
    pub port: u16,
    pub export: String,
    /// `top`: only what the guest wrote over its base image (the destination has the same
    /// base); `full`: everything.
    pub sync: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("instance {0} could not be found on this host")]
    InstanceNotFound(String),
    /// The image's data cannot boot here (Nova's ImageUnacceptable): another host would not do
    /// better, so the build is not rescheduled.
    #[error("Image {image_id} is unacceptable: {reason}")]
    ImageUnacceptable { image_id: String, reason: String },
    #[error("{step} failed: {reason}")]
    Failed { step: &'static str, reason: String },
    #[error("{0} is not supported by this driver")]
    Unsupported(&'static str),
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Reboot kinds, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebootKind {
    Soft,
    Hard,
}

/// The operations the compute agent needs from a hypervisor. Every method is idempotent where
/// Nova's is (destroy of a missing guest succeeds, power_on of a running one too).
#[async_trait]
pub trait Driver: Send + Sync {
    /// Driver name as `[DEFAULT] compute_driver` spells it.
    fn name(&self) -> &'static str;
    /// Called once when the agent starts: reconnect to guests that outlived a restart.
    async fn init_host(&self, host: &str) -> Result<()>;
    /// The host's resources.
    async fn host_resources(&self) -> Result<HostResources>;
    /// Instances the driver knows about on this host (uuids), for the restart sync.
    async fn list_instances(&self) -> Result<Vec<String>>;
    async fn spawn(&self, spec: &InstanceSpec) -> Result<()>;
    async fn destroy(&self, uuid: &str) -> Result<()>;
    async fn reboot(&self, uuid: &str, kind: RebootKind) -> Result<()>;
    /// Stop the guest: ACPI powerdown for up to `timeout`, then hard (zero: hard at once).
    async fn power_off(&self, uuid: &str, timeout: Duration) -> Result<()>;
    async fn power_on(&self, uuid: &str) -> Result<()>;
    async fn pause(&self, uuid: &str) -> Result<()>;
    async fn unpause(&self, uuid: &str) -> Result<()>;
    async fn suspend(&self, uuid: &str) -> Result<()>;
    async fn resume(&self, uuid: &str) -> Result<()>;
    /// Rebuild on a new image: destroy and spawn, keeping the uuid.
    async fn rebuild(&self, spec: &InstanceSpec) -> Result<()>;
    /// Grow to a new flavor (same host). The old state is kept until confirm/revert.
    async fn resize(&self, spec: &InstanceSpec) -> Result<()>;
    async fn confirm_resize(&self, uuid: &str) -> Result<()>;
    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<()>;
    async fn snapshot(&self, uuid: &str) -> Result<SnapshotData>;
    /// Give the guest a volume: `entry` is one block_device_info entry ([`volume`]). A running
    /// guest gets it hot-plugged; in any power state it is remembered so the next launch has
    /// it. Idempotent: a volume the guest already has is not plugged twice.
    async fn attach_volume(&self, uuid: &str, entry: &Value) -> Result<()>;
    /// Take a volume away: a running guest must release it (unplug, waited for up to the
    /// driver's detach timeout); on timeout the volume stays attached and this fails.
    async fn detach_volume(&self, uuid: &str, volume_id: &str) -> Result<()>;
    /// The volume grew to `new_size` bytes (Nova's `extend_volume`, after the volume
    /// service's `volume-extended` event): a running guest's disk is resized in place and
    /// the guest told of its new capacity. A guest that is not running opens the grown file
    /// at its next launch, so there is nothing to do then.
    async fn extend_volume(&self, uuid: &str, volume_id: &str, new_size: u64) -> Result<()>;
    async fn attach_interface(&self, uuid: &str, vif: &Value) -> Result<()>;
    async fn detach_interface(&self, uuid: &str, port_id: &str) -> Result<()>;
    /// The tail of the serial console log (`length` lines; None: all of it).
    async fn console_output(&self, uuid: &str, length: Option<usize>) -> Result<String>;
    /// Where the console proxy connects to reach the guest's VNC server (RFB spoken directly,
    /// no TLS, no VNC password: the proxy's one-time token is the authentication).
    ///
    /// Contract: `unix:/abs/path/vnc.sock` (QEMU's `-vnc unix:PATH`; the path is absolute) or
    /// `tcp:HOST:PORT` (an IPv6 host in brackets, `tcp:[::1]:5900`). A driver without VNC
    /// answers [`DriverError::Unsupported`] (the API then answers 501, as Nova does for
    /// `NotImplementedError`); a guest this host does not know, [`DriverError::InstanceNotFound`].
    async fn vnc_target(&self, uuid: &str) -> Result<String>;
    async fn instance_info(&self, uuid: &str) -> Result<InstanceInfo>;
    /// Live migration, destination side: make the guest's disks, start it waiting for the
    /// incoming stream on `listen` (an address of this host the source reaches), and say where
    /// the source sends its memory and disks. The guest does not run until
    /// [`Driver::finish_incoming`].
    async fn prepare_incoming(
        &self,
        _spec: &InstanceSpec,
        _listen: &str,
    ) -> Result<IncomingMigration> {
        Err(DriverError::Unsupported("live migration"))
    }
    /// Live migration, source side: copy the disks and memory of a running (or paused) guest
    /// to `to` while it runs, and stop it here once the destination has it all. On failure the
    /// guest keeps running here. `timeout` bounds the whole copy.
    async fn live_migrate(
        &self,
        _uuid: &str,
        _to: &IncomingMigration,
        _timeout: Duration,
    ) -> Result<()> {
        Err(DriverError::Unsupported("live migration"))
    }
    /// Live migration, destination side, once the source is done: run the guest here (`run`
    /// false: it stays paused, as it was).
    async fn finish_incoming(&self, _uuid: &str, _run: bool) -> Result<()> {
        Err(DriverError::Unsupported("live migration"))
    }
    /// Cold migration, source side: copy the disks of the stopped guest to `to` (prepared by
    /// [`Driver::prepare_incoming`]), the way a live migration does, without the guest
    /// running. Its copy here stays (stopped) until the migration is confirmed or reverted.
    async fn cold_migrate(
        &self,
        _uuid: &str,
        _to: &IncomingMigration,
        _timeout: Duration,
    ) -> Result<()> {
        Err(DriverError::Unsupported("cold migration"))
    }
    /// Cold migration, destination side: the disks have arrived; boot the guest from them
    /// (`run`) or leave it stopped.
    async fn finish_cold_incoming(&self, _uuid: &str, _run: bool) -> Result<()> {
        Err(DriverError::Unsupported("cold migration"))
    }
    /// Uuids of guests whose power state changed on their own (a guest that powered off, a
    /// QEMU that died), so the agent syncs them at once instead of at the next periodic sync.
    fn lifecycle_events(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
