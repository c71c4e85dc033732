//! The QEMU driver: one detached `qemu-system-x86_64` per instance, driven over QMP.
//!
//! Per instance, `instances/<uuid>/` holds `spec.json` (what the guest was built from, to
//! start it again), `disk` (qcow2 overlay on `_base/`), `console.log` (+ `console.log.0` after
//! rotation), `qemu.pid`, the QMP and VNC sockets, and `suspended` while suspended. A stopped
//! guest has no QEMU process; starting it launches one from `spec.json`. QEMU daemonizes, so
//! neither a restart nor a `kill -9` of kumo stops a guest; `init_host` finds them again by pid.

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::broadcast;

use super::cmdline::{self, Launch, Paths};
use super::disk::{self, BaseCache};
use super::host::{self, Accel, AccelChoice};
use super::qmp::{QmpClient, QmpError};
use super::tap;
use crate::volume::VolumeDisk;

mod migration;
use crate::{
    Driver, DriverError, HostResources, ImageSource, InstanceInfo, InstanceSpec, PowerState,
    RebootKind, Result, SnapshotData,
};

/// The driver's settings (`[qemu]` and a few `[DEFAULT]` options of compute).
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub hostname: String,
    pub host_ip: String,
    /// `<state_dir>/instances`.
    pub instances_dir: PathBuf,
    pub qemu_binary: PathBuf,
    pub qemu_img: PathBuf,
    pub accel: AccelChoice,
    /// How long a soft reboot waits for the guest to power off before it is reset hard.
    pub shutdown_timeout: Duration,
    /// console.log is rotated (to console.log.0) above this size.
    pub console_log_max_bytes: u64,
    /// PCIe root ports created at launch (boot disks use the first ones, hot-plug the rest).
    pub root_ports: u32,
    /// How long a volume detach waits for the guest to release the disk (`DEVICE_DELETED`).
    pub volume_detach_timeout: Duration,
    /// A base image no instance used for this long is deleted (checked every `cache_interval`).
    pub unused_base_min_age: Duration,
    pub cache_interval: Duration,
    pub kumo_version: String,
    /// Ports a guest migrating in listens on (its memory stream, its disks' NBD exports).
    pub migration_ports: std::ops::RangeInclusive<u16>,
}

const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU's daemonizing parent may take to set the guest up.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
const SPEC_FILE: &str = "spec.json";
const SUSPENDED_FILE: &str = "suspended";
const RESIZE_SPEC: &str = "spec.resize.json";
const RESIZE_DISK: &str = "disk.resize";

/// Where `ip netns` keeps the network namespaces by name.
const NETNS_DIR: &str = "/run/netns";

/// How long a detach waits for the guest to let go of a NIC: a PCIe unplug goes through the
/// guest (Linux's pciehp waits 5 s after the attention button before it removes the device),
/// and TCG is slow.
const DETACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether process `pid` runs in the network namespace `ns` (same nsfs inode).
fn runs_in_namespace(pid: i32, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"));
    let named = std::fs::metadata(Path::new(NETNS_DIR).join(ns));
    match (theirs, named) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether the tap `devname` exists in the network namespace `ns` (looked up from a thread
/// of its own that enters the namespace; no other thread changes namespace).
fn tap_exists_in(ns: &str, devname: &str) -> Result<bool> {
    use nix::sched::{CloneFlags, setns};
    let path = Path::new(NETNS_DIR).join(ns);
    let f = std::fs::File::open(&path).map_err(|e| {
        failed(
            "attaching the interface",
            format!("network namespace {ns} ({}): {e}", path.display()),
        )
    })?;
    let name = devname.to_string();
    std::thread::spawn(move || -> Result<bool> {
        setns(&f, CloneFlags::CLONE_NEWNET)
            .map_err(|e| failed("attaching the interface", format!("cannot enter it: {e}")))?;
        Ok(nix::net::if_::if_nametoindex(name.as_str()).is_ok())
    })
    .join()
    .map_err(|_| failed("attaching the interface", "the namespace check panicked"))?
}

/// Where QEMU keeps the devices made with an `id` (`-device` and `device_add`).
const PERIPHERALS: &str = "/machine/peripheral";

/// The ids of the guest's devices (`qom-list /machine/peripheral`); a device being unplugged
/// stays listed until the guest has let go of it. Read from QOM, not `query-pci`: the PCI
/// view of a root port lists its devices only once the firmware has numbered the buses.
async fn device_ids(c: &QmpClient) -> std::result::Result<Vec<String>, QmpError> {
    Ok(c.qom_list(PERIPHERALS)
        .await?
        .into_iter()
        .filter(|(_, ty)| ty.starts_with("child<"))
        .map(|(name, _)| name)
        .collect())
}

/// The first of kumo's root ports (`rp1`..`rpN`) whose bus has no device on it.
async fn free_root_port(
    c: &QmpClient,
    ids: &[String],
) -> std::result::Result<Option<String>, QmpError> {
    let mut ports: Vec<u32> = ids
        .iter()
        .filter_map(|id| id.strip_prefix("rp")?.parse().ok())
        .collect();
    ports.sort_unstable();
    for n in ports {
        // The root port's bus is its child of the same name; devices on it are `child[i]`.
        let bus = c.qom_list(&format!("{PERIPHERALS}/rp{n}/rp{n}")).await?;
        if !bus.iter().any(|(name, _)| name.starts_with("child[")) {
            return Ok(Some(format!("rp{n}")));
        }
    }
    Ok(None)
}

/// The NIC of port `port_id` in a spec's network info, and its position among the NICs.
fn spec_nic(spec: &InstanceSpec, port_id: &str) -> Option<(usize, cmdline::Nic)> {
    cmdline::nics(spec)
        .into_iter()
        .enumerate()
        .find(|(_, n)| n.port_id == port_id)
}

/// Start `cmd` inside the network namespace of the guest's NICs: a thread of its own enters
/// the namespace, checks that the taps exist there (the network agent makes them when a port
/// is bound) and forks QEMU, which inherits the thread's namespace and finds its taps by
/// name. The thread ends with its namespace; no other thread changes namespace.
fn spawn_in_namespace(
    ns: &str,
    nics: &[cmdline::Nic],
    mut cmd: Command,
) -> Result<tokio::process::Child> {
    use nix::sched::{CloneFlags, setns};
    let path = Path::new(NETNS_DIR).join(ns);
    let f = std::fs::File::open(&path).map_err(|e| {
        failed(
            "starting QEMU",
            format!(
                "network namespace {ns} of the guest's ports ({}): {e}",
                path.display()
            ),
        )
    })?;
    let names: Vec<String> = nics.iter().map(|n| n.devname.clone()).collect();
    let handle = tokio::runtime::Handle::current();
    let ns_name = ns.to_string();
    std::thread::spawn(move || -> Result<tokio::process::Child> {
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| {
            failed(
                "starting QEMU",
                format!("cannot enter network namespace {ns_name}: {e}"),
            )
        })?;
        let missing: Vec<String> = names
            .into_iter()
            .filter(|n| nix::net::if_::if_nametoindex(n.as_str()).is_err())
            .collect();
        if !missing.is_empty() {
            return Err(failed(
                "starting QEMU",
                format!(
                    "tap {} does not exist in network namespace {ns_name} (the network agent creates it when the port is bound to this host)",
                    missing.join(", ")
                ),
            ));
        }
        let _rt = handle.enter();
        cmd.spawn().map_err(|e| failed("starting QEMU", e))
    })
    .join()
    .map_err(|_| failed("starting QEMU", "the thread starting QEMU panicked"))?
}

fn failed(step: &'static str, reason: impl std::fmt::Display) -> DriverError {
    DriverError::Failed {
        step,
        reason: reason.to_string(),
    }
}

fn qmp_failed(step: &'static str) -> impl Fn(QmpError) -> DriverError {
    move |e| failed(step, e)
}

pub struct QemuDriver {
    cfg: QemuConfig,
    accel: Accel,
    images: Arc<dyn ImageSource>,
    bases: BaseCache,
    /// One QMP connection per running guest (QEMU takes one client per socket).
    qmp: Mutex<HashMap<String, QmpClient>>,
    /// Serialises launches and stops of one guest against each other.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    lifecycle: broadcast::Sender<String>,
    qemu_version: Mutex<u64>,
}

impl QemuDriver {
    pub fn new(cfg: QemuConfig, images: Arc<dyn ImageSource>) -> Self {
        let (accel, why) = host::pick_accel(cfg.accel);
        tracing::info!(accel = accel.as_str(), reason = %why, "QEMU accelerator chosen");
        let bases = BaseCache::new(cfg.instances_dir.join("_base"), cfg.qemu_img.clone());
        let (lifecycle, _) = broadcast::channel(256);
        Self {
            cfg,
            accel,
            images,
            bases,
            qmp: Default::default(),
            locks: Default::default(),
            lifecycle,
            qemu_version: Mutex::new(0),
        }
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    fn paths(&self, uuid: &str) -> Paths {
        Paths::new(&self.cfg.instances_dir, uuid)
    }

    fn lock(&self, uuid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .entry(uuid.to_string())
            .or_default()
            .clone()
    }

    fn exists(&self, uuid: &str) -> Result<Paths> {
        let paths = self.paths(uuid);
        if paths.dir.join(SPEC_FILE).exists() {
            Ok(paths)
        } else {
            Err(DriverError::InstanceNotFound(uuid.to_string()))
        }
    }

    fn read_spec(&self, paths: &Paths) -> Result<InstanceSpec> {
        let bytes = std::fs::read(paths.dir.join(SPEC_FILE))
            .map_err(|e| failed("reading the instance", e))?;
        serde_json::from_slice(&bytes).map_err(|e| failed("reading the instance", e))
    }

    fn write_spec(&self, paths: &Paths, spec: &InstanceSpec) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(spec).map_err(|e| failed("saving the instance", e))?;
        let tmp = paths.dir.join("spec.json.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| failed("saving the instance", e))?;
        std::fs::rename(&tmp, paths.dir.join(SPEC_FILE))
            .map_err(|e| failed("saving the instance", e))
    }

    /// The pid of this instance's QEMU, if it runs (a zombie or a reused pid does not count).
    fn running_pid(&self, paths: &Paths, uuid: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&paths.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        process_is_guest(pid, uuid).then_some(pid)
    }

    /// The QMP connection of a running guest (made again when the old one closed).
    async fn qmp(&self, uuid: &str, paths: &Paths) -> Result<QmpClient> {
        if let Some(c) = self.qmp.lock().get(uuid)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        if self.running_pid(paths, uuid).is_none() {
            return Err(failed("connecting to QEMU", "the guest is not running"));
        }
        let c = QmpClient::connect(&paths.qmp, QMP_TIMEOUT)
            .await
            .map_err(qmp_failed("connecting to QEMU"))?;
        self.watch(uuid, &c);
        self.qmp.lock().insert(uuid.to_string(), c.clone());
        Ok(c)
    }

    /// Tell the agent when a guest stops, pauses or resumes on its own, or QEMU goes away.
    fn watch(&self, uuid: &str, c: &QmpClient) {
        let mut events = c.subscribe_events();
        let tx = self.lifecycle.clone();
        let uuid = uuid.to_string();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if matches!(
                            ev.event.as_str(),
                            "SHUTDOWN" | "STOP" | "RESUME" | "RESET" | "GUEST_PANICKED"
                        ) {
                            tracing::debug!(instance = %uuid, event = %ev.event, "QEMU lifecycle event");
                            let _ = tx.send(uuid.clone());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::info!(instance = %uuid, "QEMU closed its monitor (the guest stopped)");
                        let _ = tx.send(uuid.clone());
                        break;
                    }
                }
            }
        });
    }

    /// Start QEMU for the instance as it is on disk, paused; connect QMP; run it.
    async fn launch(&self, spec: &InstanceSpec, paths: &Paths) -> Result<()> {
        let started = Instant::now();
        let c = self.start_paused(spec, paths, false).await?;
        c.cont().await.map_err(qmp_failed("starting the guest"))?;
        let _ = std::fs::remove_file(paths.dir.join(SUSPENDED_FILE));
        tracing::info!(instance = %spec.uuid, ms = started.elapsed().as_millis() as u64,
            pid = ?self.running_pid(paths, &spec.uuid), accel = self.accel.as_str(), "guest started");
        Ok(())
    }

    /// Start QEMU for the instance as it is on disk, paused (`incoming`: waiting for a
    /// migration stream, `-incoming defer`), and connect QMP.
    pub(super) async fn start_paused(
        &self,
        spec: &InstanceSpec,
        paths: &Paths,
        incoming: bool,
    ) -> Result<QmpClient> {
        if let Some(dir) = paths.qmp.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed("starting QEMU", e))?;
        }
        let _ = std::fs::remove_file(&paths.qmp);
        let _ = std::fs::remove_file(&paths.vnc);
        let _ = std::fs::remove_file(&paths.pidfile);
        cmdline::write_psks(spec, paths)
            .map_err(|e| failed("starting QEMU", format!("writing a volume's TLS key: {e}")))?;
        let args = cmdline::build(
            spec,
            paths,
            &Launch {
                accel: self.accel,
                root_ports: self.cfg.root_ports,
                kumo_version: &self.cfg.kumo_version,
            },
        );
        let mut args = args;
        if incoming {
            args.extend(["-incoming".to_string(), "defer".to_string()]);
        }
        let nics = cmdline::nics(spec);
        let netns = cmdline::nic_namespace(&nics).map_err(|e| failed("starting QEMU", e))?;
        tracing::debug!(instance = %spec.uuid, args = ?args, netns = ?netns, "starting QEMU");
        let mut cmd = Command::new(&self.cfg.qemu_binary);
        cmd.args(&args)
            .current_dir(&paths.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = match &netns {
            // QEMU runs in the namespace of its taps: it opens them by name.
            Some(ns) => spawn_in_namespace(ns, &nics, cmd)?,
            None => cmd.spawn().map_err(|e| {
                failed(
                    "starting QEMU",
                    format!(
                        "cannot run {}: {e} (install Debian's qemu-system-x86)",
                        self.cfg.qemu_binary.display()
                    ),
                )
            })?,
        };
        // With -daemonize the process we started exits once the guest is set up; its error
        // output is QEMU's reason when it cannot start.
        let out = tokio::time::timeout(LAUNCH_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| failed("starting QEMU", "QEMU did not finish starting in 60 s"))?
            .map_err(|e| failed("starting QEMU", e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(failed(
                "starting QEMU",
                format!("QEMU exited with {}: {err}", out.status),
            ));
        }
        self.qmp(&spec.uuid, paths).await
    }

    /// Stop QEMU: ACPI power button and up to `grace` for the guest to power off, then `quit`,
    /// then SIGKILL. Returns whether the guest powered off by itself.
    async fn stop_process(&self, uuid: &str, paths: &Paths, grace: Duration) -> Result<bool> {
        let Some(pid) = self.running_pid(paths, uuid) else {
            self.qmp.lock().remove(uuid);
            return Ok(true);
        };
        let mut clean = false;
        if !grace.is_zero()
            && let Ok(c) = self.qmp(uuid, paths).await
            && c.system_powerdown().await.is_ok()
        {
            clean = wait_exit(pid, uuid, grace).await;
        }
        if !clean {
            if let Ok(c) = self.qmp(uuid, paths).await {
                let _ = c.quit().await;
            }
            if !wait_exit(pid, uuid, Duration::from_secs(5)).await {
                tracing::warn!(instance = %uuid, pid, "QEMU ignored quit: killing it");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                if !wait_exit(pid, uuid, Duration::from_secs(10)).await {
                    return Err(failed("stopping QEMU", format!("pid {pid} does not die")));
                }
            }
        }
        self.qmp.lock().remove(uuid);
        let _ = std::fs::remove_file(&paths.qmp);
        let _ = std::fs::remove_file(&paths.vnc);
        Ok(clean)
    }

    /// Plug the NIC of `vif` into a running guest: a tap backend, and a virtio-net device on a
    /// free root port. QEMU opens the tap by name when it runs in the tap's network namespace
    /// (it was started with ports there); otherwise (a guest started without ports runs in the
    /// root namespace) kumo opens the tap in its namespace and passes the descriptor over QMP.
    /// Idempotent: a NIC already there is left alone.
    async fn hotplug_nic(
        &self,
        uuid: &str,
        paths: &Paths,
        pid: i32,
        nic: &cmdline::Nic,
        index: usize,
    ) -> Result<()> {
        const STEP: &str = "attaching the interface";
        let by_name = runs_in_namespace(pid, &nic.namespace);
        if by_name && !tap_exists_in(&nic.namespace, &nic.devname)? {
            return Err(failed(
                STEP,
                format!(
                    "tap {} does not exist in network namespace {} (the network agent creates it when the port is bound to this host)",
                    nic.devname, nic.namespace
                ),
            ));
        }
        let c = self.qmp(uuid, paths).await?;
        let (netdev, id) = cmdline::nic_ids(&nic.port_id, index);
        let ids = device_ids(&c).await.map_err(qmp_failed(STEP))?;
        if ids.contains(&id) {
            return Ok(());
        }
        let bus = free_root_port(&c, &ids)
            .await
            .map_err(qmp_failed(STEP))?
            .ok_or_else(|| {
            failed(
                STEP,
                format!(
                    "no free PCIe root port for hot-plug: all {} ([qemu] pcie_root_ports) are in use",
                    self.cfg.root_ports
                ),
            )
        })?;
        let backend = if by_name {
            json!({"type": "tap", "id": netdev, "ifname": nic.devname,
                "script": "no", "downscript": "no", "vnet_hdr": true})
        } else {
            let fd = tap::open_in(&Path::new(NETNS_DIR).join(&nic.namespace), &nic.devname)
                .map_err(|e| {
                    failed(
                        STEP,
                        format!(
                            "tap {} of network namespace {}: {e}",
                            nic.devname, nic.namespace
                        ),
                    )
                })?;
            let fdname = format!("fd-{netdev}");
            c.getfd(&fdname, fd).await.map_err(qmp_failed(STEP))?;
            // QEMU takes vnet_hdr from the descriptor (opened with IFF_VNET_HDR).
            json!({"type": "tap", "id": netdev, "fd": fdname})
        };
        match c.netdev_add(backend).await {
            Ok(()) => {}
            // Left by an attach that failed after it: reuse it.
            Err(QmpError::Command { desc, .. }) if desc.contains("Duplicate") => {}
            Err(e) => return Err(failed(STEP, e)),
        }
        let mut device = json!({"driver": "virtio-net-pci", "id": id, "netdev": netdev,
            "mac": nic.mac, "bus": bus});
        if let Some(mtu) = nic.mtu {
            device["host_mtu"] = json!(mtu);
        }
        if let Err(e) = c.device_add(device).await {
            let _ = c.netdev_del(&netdev).await;
            return Err(failed(STEP, e));
        }
        tracing::info!(instance = %uuid, port = %nic.port_id, tap = %nic.devname, %bus, "NIC hot-plugged");
        Ok(())
    }

    /// `device_del`, then wait up to `timeout` for the guest to release the device
    /// (`DEVICE_DELETED` naming it). A device already gone is fine; one whose unplug an earlier
    /// request started is waited for again.
    async fn unplug_device(
        &self,
        c: &QmpClient,
        step: &'static str,
        id: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<()> {
        // Subscribed before the request: the event may come before device_del's reply.
        let mut events = c.subscribe_events();
        match c.device_del(id).await {
            Ok(()) => {}
            // Gone already (an earlier detach the guest finished late).
            Err(e) if e.is_not_found() => return Ok(()),
            Err(QmpError::Command { desc, .. }) if desc.contains("in the process of unplug") => {}
            Err(e) => return Err(failed(step, e)),
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) => {
                    if ev.event == "DEVICE_DELETED" && ev.data["device"] == id {
                        return Ok(());
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    let ids = device_ids(c).await.map_err(qmp_failed(step))?;
                    if !ids.iter().any(|d| d == id) {
                        return Ok(());
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(failed(step, "QEMU went away during the unplug"));
                }
                Err(_) => {
                    return Err(failed(
                        step,
                        format!(
                            "the guest did not release {what} within {} s (a paused guest cannot until it runs again)",
                            timeout.as_secs()
                        ),
                    ));
                }
            }
        }
    }

    /// Unplug a NIC from a running guest: `device_del`, then wait for the guest to release
    /// it (`DEVICE_DELETED` naming the device), then remove its tap backend.
    async fn unplug_nic(&self, uuid: &str, paths: &Paths, netdev: &str, id: &str) -> Result<()> {
        const STEP: &str = "detaching the interface";
        let c = self.qmp(uuid, paths).await?;
        self.unplug_device(&c, STEP, id, &format!("NIC {id}"), DETACH_TIMEOUT)
            .await?;
        match c.netdev_del(netdev).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(failed(STEP, e)),
        }
        tracing::info!(instance = %uuid, device = %id, "NIC unplugged");
        Ok(())
    }

    /// Plug a volume into a running guest: its file (or host_device) node and format node
    /// (`blockdev-add`), then a virtio-blk device on a free root port. Idempotent: a guest
    /// that has the device already (a retried attach, a kumo restarted under a running QEMU)
    /// is left alone, and nodes left by a failed attempt are reused.
    async fn hotplug_volume(&self, uuid: &str, paths: &Paths, v: &VolumeDisk) -> Result<()> {
        const STEP: &str = "attaching the volume";
        let c = self.qmp(uuid, paths).await?;
        let id = v.device_id();
        let ids = device_ids(&c).await.map_err(qmp_failed(STEP))?;
        if ids.contains(&id) {
            tracing::info!(instance = %uuid, volume = %v.volume_id, "volume already plugged");
            return Ok(());
        }
        let bus = free_root_port(&c, &ids)
            .await
            .map_err(qmp_failed(STEP))?
            .ok_or_else(|| {
                failed(
                    STEP,
                    format!(
                        "no free PCIe root port for hot-plug: all {} ([qemu] pcie_root_ports) are in use",
                        self.cfg.root_ports
                    ),
                )
            })?;
        let (node, file) = v.node_names();
        if let Some(obj) = cmdline::volume_tls_object(v, &file, paths) {
            // The key file first: QEMU reads it when the object is made.
            cmdline::write_psk(v, &file, paths).map_err(|e| failed(STEP, e))?;
            match c.execute("object-add", Some(obj)).await {
                Ok(_) => {}
                Err(QmpError::Command { desc, .. }) if desc.contains("already exists") => {}
                Err(e) => {
                    return Err(failed(
                        STEP,
                        format!("TLS credentials of {}: {e}", v.source),
                    ));
                }
            }
        }
        let (file_node, fmt_node) = cmdline::volume_nodes(v, &node, &file);
        for n in [file_node, fmt_node] {
            match c.blockdev_add(n).await {
                Ok(()) => {}
                Err(QmpError::Command { desc, .. }) if desc.contains("Duplicate") => {}
                Err(e) => {
                    let _ = c.blockdev_del(&node).await;
                    let _ = c.blockdev_del(&file).await;
                    return Err(failed(STEP, format!("{}: {e}", v.source)));
                }
            }
        }
        let device = json!({"driver": "virtio-blk-pci", "id": id, "drive": node, "bus": bus,
            "serial": v.serial()});
        if let Err(e) = c.device_add(device).await {
            let _ = c.blockdev_del(&node).await;
            let _ = c.blockdev_del(&file).await;
            return Err(failed(STEP, e));
        }
        tracing::info!(instance = %uuid, volume = %v.volume_id, %bus, source = %v.source, "volume hot-plugged");
        Ok(())
    }

    /// Unplug a volume from a running guest: `device_del` and the wait for the guest, then
    /// `blockdev-del` of its nodes.
    async fn unplug_volume(&self, uuid: &str, paths: &Paths, v: &VolumeDisk) -> Result<()> {
        const STEP: &str = "detaching the volume";
        let c = self.qmp(uuid, paths).await?;
        let id = v.device_id();
        self.unplug_device(
            &c,
            STEP,
            &id,
            &format!("volume {}", v.volume_id),
            self.cfg.volume_detach_timeout,
        )
        .await?;
        let (node, file) = v.node_names();
        for n in [node, file.clone()] {
            match c.blockdev_del(&n).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.to_string().contains("not found") => {}
                Err(e) => return Err(failed(STEP, e)),
            }
        }
        if cmdline::volume_tls_object(v, &file, paths).is_some() {
            let id = cmdline::tls_creds_id(&file);
            match c.execute("object-del", Some(json!({"id": id}))).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.to_string().contains("not found") => {}
                Err(e) => return Err(failed(STEP, e)),
            }
            let _ = std::fs::remove_dir_all(cmdline::psk_dir(paths, &file));
        }
        tracing::info!(instance = %uuid, volume = %v.volume_id, "volume unplugged");
        Ok(())
    }

    /// Disks for a spec: base, overlay, ephemeral, swap (the instance directory must exist).
    async fn make_disks(&self, spec: &InstanceSpec, paths: &Paths) -> Result<()> {
        let volumes = VolumeDisk::all(&spec.block_device_info)?;
        if volumes.iter().any(|v| v.boot) {
            // Boot from volume: the volume is the root disk; no image copy.
            let _ = std::fs::remove_file(&paths.disk);
        } else {
            let image_id = spec.image_id.as_deref().ok_or_else(|| {
                failed(
                    "creating the root disk",
                    "booting without an image needs a boot volume (boot_index 0)",
                )
            })?;
            let base = self.bases.ensure(self.images.as_ref(), image_id).await?;
            let _ = std::fs::remove_file(&paths.disk);
            disk::create_overlay(
                &self.cfg.qemu_img,
                &base,
                &paths.disk,
                spec.root_gb,
                image_id,
            )
            .await?;
        }
        if spec.ephemeral_gb > 0 {
            disk::create_formatted(&paths.ephemeral, spec.ephemeral_gb << 30, "ext4").await?;
        }
        if spec.swap_mb > 0 {
            disk::create_formatted(&paths.swap, spec.swap_mb << 20, "swap").await?;
        }
        if spec.config_drive {
            let t0 = std::time::Instant::now();
            let format = spec
                .config_drive_format
                .parse()
                .unwrap_or(metadata::config_drive::Format::Iso9660);
            metadata::config_drive::write_image(
                &spec.config_drive_files,
                format,
                &paths.config_drive,
            )
            .await
            .map_err(|e| failed("building the config drive", e))?;
            tracing::info!(instance = %spec.uuid, files = spec.config_drive_files.len(), elapsed_ms = t0.elapsed().as_millis() as u64, "config drive built");
        }
        Ok(())
    }

    /// Create the instance directory, disks and spec, then launch.
    async fn build(&self, spec: &InstanceSpec) -> Result<()> {
        let paths = self.paths(&spec.uuid);
        std::fs::create_dir_all(&paths.dir).map_err(|e| failed("creating the instance", e))?;
        set_private(&paths.dir);
        self.make_disks(spec, &paths).await?;
        self.write_spec(&paths, spec)?;
        self.launch(spec, &paths).await
    }

    /// console.log -> console.log.0 when it grew past the limit. QEMU appends (O_APPEND), so
    /// truncating the file under it is safe: its next write lands at the new end.
    fn rotate_console(&self, paths: &Paths) {
        let Ok(meta) = std::fs::metadata(&paths.console_log) else {
            return;
        };
        if meta.len() <= self.cfg.console_log_max_bytes {
            return;
        }
        let old = paths.dir.join("console.log.0");
        if std::fs::copy(&paths.console_log, &old).is_ok()
            && let Ok(f) = std::fs::OpenOptions::new()
                .write(true)
                .open(&paths.console_log)
        {
            let _ = f.set_len(0);
        }
    }

    /// Rotate every guest's console log now and then; clean the base image cache.
    pub fn spawn_housekeeping(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            let mut last_cache_check = Instant::now();
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                for uuid in me.scan() {
                    me.rotate_console(&me.paths(&uuid));
                }
                if last_cache_check.elapsed() >= me.cfg.cache_interval {
                    last_cache_check = Instant::now();
                    let d = me.clone();
                    let _ = tokio::task::spawn_blocking(move || match d.bases_in_use() {
                        Some(used) => d.bases.remove_unused(&used, d.cfg.unused_base_min_age),
                        None => tracing::warn!(
                            "an instance spec is unreadable: base image cache not cleaned"
                        ),
                    })
                    .await;
                }
            }
        });
    }

    /// Instance directories (those with a spec).
    fn scan(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.cfg.instances_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().join(SPEC_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    async fn power_state(&self, uuid: &str, paths: &Paths) -> PowerState {
        if self.running_pid(paths, uuid).is_none() {
            return PowerState::Shutdown;
        }
        let status = match self.qmp(uuid, paths).await {
            Ok(c) => c.query_status().await,
            Err(_) => return PowerState::NoState,
        };
        match status {
            Ok(s) => match s.status.as_str() {
                "running" => PowerState::Running,
                "paused" | "suspended" if paths.dir.join(SUSPENDED_FILE).exists() => {
                    PowerState::Suspended
                }
                "paused" | "suspended" | "prelaunch" | "inmigrate" | "postmigrate" => {
                    PowerState::Paused
                }
                "guest-panicked" | "internal-error" | "io-error" => PowerState::Crashed,
                "shutdown" => PowerState::Shutdown,
                _ => PowerState::NoState,
            },
            Err(QmpError::Closed) => PowerState::Shutdown,
            Err(_) => PowerState::NoState,
        }
    }

    /// The bases the instances' disks (and resize backups) stand on, from their specs (a disk is
    /// always made from `spec.image_id`'s base). None when a spec cannot be read: then nothing
    /// is known to be unused.
    fn bases_in_use(&self) -> Option<Vec<PathBuf>> {
        let mut used = Vec::new();
        for uuid in self.scan() {
            let paths = self.paths(&uuid);
            let mut specs = vec![self.read_spec(&paths).ok()?];
            if let Ok(b) = std::fs::read(paths.dir.join(RESIZE_SPEC)) {
                specs.push(serde_json::from_slice(&b).ok()?);
            }
            used.extend(
                specs
                    .iter()
                    .filter_map(|s: &InstanceSpec| s.image_id.as_deref())
                    .map(|id| self.bases.base_path(id)),
            );
        }
        Some(used)
    }
}

/// Owner-only: the directory holds user data and keys.
fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// Whether `pid` is a live (not zombie) QEMU of this instance.
fn process_is_guest(pid: i32, uuid: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    std::fs::read(proc.join("cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == uuid.as_bytes()))
        .unwrap_or(false)
}

async fn wait_exit(pid: i32, uuid: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !process_is_guest(pid, uuid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last `length` lines of `text` (all with None).
fn tail_lines(text: &str, length: Option<usize>) -> String {
    match length {
        None => text.to_string(),
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            let mut out = lines[from..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
    }
}

#[async_trait]
impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    /// Find the guests that outlived kumo and reconnect to them.
    async fn init_host(&self, _host: &str) -> Result<()> {
        std::fs::create_dir_all(&self.cfg.instances_dir)
            .map_err(|e| failed("preparing the instances directory", e))?;
        if let Ok(out) = Command::new(&self.cfg.qemu_binary)
            .arg("--version")
            .output()
            .await
        {
            *self.qemu_version.lock() =
                host::parse_qemu_version(&String::from_utf8_lossy(&out.stdout));
        } else {
            tracing::warn!(binary = %self.cfg.qemu_binary.display(),
                "QEMU is not installed: guests cannot start (install Debian's qemu-system-x86 and qemu-utils)");
        }
        let mut running = 0;
        let mut stopped = 0;
        for uuid in self.scan() {
            let paths = self.paths(&uuid);
            if self.running_pid(&paths, &uuid).is_some() {
                match self.qmp(&uuid, &paths).await {
                    Ok(_) => running += 1,
                    Err(e) => {
                        tracing::warn!(instance = %uuid, error = %e, "a running guest's QMP socket does not answer")
                    }
                }
            } else {
                stopped += 1;
            }
        }
        tracing::info!(
            running,
            stopped,
            accel = self.accel.as_str(),
            "QEMU guests found at start"
        );
        Ok(())
    }

    async fn host_resources(&self) -> Result<HostResources> {
        Ok(HostResources {
            hypervisor_hostname: self.cfg.hostname.clone(),
            hypervisor_type: "QEMU".into(),
            hypervisor_version: *self.qemu_version.lock(),
            vcpus: host::cpus(),
            memory_mb: host::memory_mb(),
            local_gb: host::disk_gb(&self.cfg.instances_dir),
            cpu_info: host::cpu_info(self.accel),
            host_ip: self.cfg.host_ip.clone(),
        })
    }

    async fn list_instances(&self) -> Result<Vec<String>> {
        Ok(self.scan())
    }

    async fn spawn(&self, spec: &InstanceSpec) -> Result<()> {
        let lock = self.lock(&spec.uuid);
        let _g = lock.lock().await;
        let r = self.build(spec).await;
        if r.is_err() {
            // Nothing of a failed build stays (the agent may reschedule it elsewhere).
            let paths = self.paths(&spec.uuid);
            let _ = self.stop_process(&spec.uuid, &paths, Duration::ZERO).await;
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        r
    }

    async fn destroy(&self, uuid: &str) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.paths(uuid);
        self.stop_process(uuid, &paths, Duration::ZERO).await?;
        if paths.dir.exists() {
            std::fs::remove_dir_all(&paths.dir).map_err(|e| failed("removing the instance", e))?;
        }
        if let Some(sock_dir) = paths.qmp.parent()
            && sock_dir != paths.dir
        {
            let _ = std::fs::remove_dir_all(sock_dir);
        }
        self.locks.lock().remove(uuid);
        tracing::info!(instance = %uuid, "guest destroyed");
        Ok(())
    }

    async fn reboot(&self, uuid: &str, kind: RebootKind) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let spec = self.read_spec(&paths)?;
        let grace = match kind {
            // Nova's soft reboot: a clean shutdown, then a new start; hard if the guest ignores it.
            RebootKind::Soft => self.cfg.shutdown_timeout,
            RebootKind::Hard => Duration::ZERO,
        };
        let clean = self.stop_process(uuid, &paths, grace).await?;
        if kind == RebootKind::Soft && !clean {
            tracing::warn!(instance = %uuid, "the guest ignored the power button: rebooted hard");
        }
        self.launch(&spec, &paths).await
    }

    async fn power_off(&self, uuid: &str, timeout: Duration) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let clean = self.stop_process(uuid, &paths, timeout).await?;
        tracing::info!(instance = %uuid, clean, "guest powered off");
        let _ = std::fs::remove_file(paths.dir.join(SUSPENDED_FILE));
        Ok(())
    }

    async fn power_on(&self, uuid: &str) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        if self.running_pid(&paths, uuid).is_some() {
            let c = self.qmp(uuid, &paths).await?;
            return c.cont().await.map_err(qmp_failed("starting the guest"));
        }
        let spec = self.read_spec(&paths)?;
        self.launch(&spec, &paths).await
    }

    async fn pause(&self, uuid: &str) -> Result<()> {
        let paths = self.exists(uuid)?;
        let c = self.qmp(uuid, &paths).await?;
        c.stop().await.map_err(qmp_failed("pausing the guest"))
    }

    async fn unpause(&self, uuid: &str) -> Result<()> {
        let paths = self.exists(uuid)?;
        let c = self.qmp(uuid, &paths).await?;
        c.cont().await.map_err(qmp_failed("unpausing the guest"))
    }

    /// Suspend keeps the guest's memory in the paused QEMU (no savevm): the state file marks it
    /// suspended, which is what the API and the power state show.
    async fn suspend(&self, uuid: &str) -> Result<()> {
        let paths = self.exists(uuid)?;
        let c = self.qmp(uuid, &paths).await?;
        c.stop().await.map_err(qmp_failed("suspending the guest"))?;
        std::fs::write(paths.dir.join(SUSPENDED_FILE), b"")
            .map_err(|e| failed("suspending the guest", e))
    }

    async fn resume(&self, uuid: &str) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        if self.running_pid(&paths, uuid).is_none() {
            let spec = self.read_spec(&paths)?;
            return self.launch(&spec, &paths).await;
        }
        let c = self.qmp(uuid, &paths).await?;
        c.cont().await.map_err(qmp_failed("resuming the guest"))?;
        let _ = std::fs::remove_file(paths.dir.join(SUSPENDED_FILE));
        Ok(())
    }

    async fn rebuild(&self, spec: &InstanceSpec) -> Result<()> {
        let lock = self.lock(&spec.uuid);
        let _g = lock.lock().await;
        let paths = self.paths(&spec.uuid);
        self.stop_process(&spec.uuid, &paths, Duration::ZERO)
            .await?;
        let _ = std::fs::remove_file(&paths.console_log);
        self.build(spec).await
    }

    /// Same-host resize: the old spec and disk are kept until confirm (deleted) or revert
    /// (put back). The guest restarts with the new flavor's CPUs and memory; the disk grows.
    async fn resize(&self, spec: &InstanceSpec) -> Result<()> {
        let lock = self.lock(&spec.uuid);
        let _g = lock.lock().await;
        let paths = self.exists(&spec.uuid)?;
        let old = self.read_spec(&paths)?;
        self.stop_process(&spec.uuid, &paths, self.cfg.shutdown_timeout)
            .await?;
        std::fs::copy(&paths.disk, paths.dir.join(RESIZE_DISK))
            .map_err(|e| failed("resizing", e))?;
        let old_json = serde_json::to_vec(&old).map_err(|e| failed("resizing", e))?;
        std::fs::write(paths.dir.join(RESIZE_SPEC), old_json).map_err(|e| failed("resizing", e))?;
        disk::grow(&self.cfg.qemu_img, &paths.disk, spec.root_gb).await?;
        if spec.ephemeral_gb > 0 && old.ephemeral_gb != spec.ephemeral_gb {
            disk::create_formatted(&paths.ephemeral, spec.ephemeral_gb << 30, "ext4").await?;
        }
        if spec.swap_mb > 0 && old.swap_mb != spec.swap_mb {
            disk::create_formatted(&paths.swap, spec.swap_mb << 20, "swap").await?;
        }
        self.write_spec(&paths, spec)?;
        self.launch(spec, &paths).await
    }

    async fn confirm_resize(&self, uuid: &str) -> Result<()> {
        let paths = self.exists(uuid)?;
        let _ = std::fs::remove_file(paths.dir.join(RESIZE_DISK));
        let _ = std::fs::remove_file(paths.dir.join(RESIZE_SPEC));
        Ok(())
    }

    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<()> {
        let lock = self.lock(&spec.uuid);
        let _g = lock.lock().await;
        let paths = self.exists(&spec.uuid)?;
        self.stop_process(&spec.uuid, &paths, self.cfg.shutdown_timeout)
            .await?;
        let backup = paths.dir.join(RESIZE_DISK);
        if backup.exists() {
            std::fs::rename(&backup, &paths.disk).map_err(|e| failed("reverting the resize", e))?;
        }
        let old = match std::fs::read(paths.dir.join(RESIZE_SPEC)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| failed("reverting the resize", e))?,
            Err(_) => spec.clone(),
        };
        let _ = std::fs::remove_file(paths.dir.join(RESIZE_SPEC));
        self.write_spec(&paths, &old)?;
        self.launch(&old, &paths).await
    }

    /// The root disk flattened into one qcow2. A running guest is paused while it is copied, so
    /// the copy is consistent, and resumed after.
    async fn snapshot(&self, uuid: &str) -> Result<SnapshotData> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let was_running = self.power_state(uuid, &paths).await == PowerState::Running;
        if was_running {
            let c = self.qmp(uuid, &paths).await?;
            c.stop()
                .await
                .map_err(qmp_failed("pausing for the snapshot"))?;
        }
        let out = paths.dir.join("snapshot.qcow2");
        let started = Instant::now();
        let r = disk::qemu_img(
            &self.cfg.qemu_img,
            &[
                "convert",
                "-U",
                "-O",
                "qcow2",
                &paths.disk.to_string_lossy(),
                &out.to_string_lossy(),
            ],
        )
        .await;
        if was_running && let Ok(c) = self.qmp(uuid, &paths).await {
            let _ = c.cont().await;
        }
        r.map_err(|e| failed("snapshotting the disk", e))?;
        let data = tokio::fs::read(&out)
            .await
            .map_err(|e| failed("snapshotting the disk", e))?;
        let _ = tokio::fs::remove_file(&out).await;
        tracing::info!(instance = %uuid, bytes = data.len(), ms = started.elapsed().as_millis() as u64, "disk snapshot taken");
        Ok(SnapshotData {
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            data,
        })
    }

    /// Hot-plug into a running guest, and record the volume in `spec.json` in any power
    /// state, so a start, a hard reboot or a resize launches QEMU with it.
    async fn attach_volume(&self, uuid: &str, entry: &Value) -> Result<()> {
        let v = VolumeDisk::from_entry(entry)?;
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let mut spec = self.read_spec(&paths)?;
        if self.running_pid(&paths, uuid).is_some() {
            self.hotplug_volume(uuid, &paths, &v).await?;
        }
        let mut entries: Vec<Value> = spec
            .block_device_info
            .as_array()
            .cloned()
            .unwrap_or_default();
        entries.retain(|e| e["volume_id"].as_str() != Some(v.volume_id.as_str()));
        entries.push(entry.clone());
        spec.block_device_info = Value::Array(entries);
        self.write_spec(&paths, &spec)
    }

    /// Unplug from a running guest (waiting for it to let go), then drop the volume from
    /// `spec.json`. On a timeout the volume stays in both.
    async fn detach_volume(&self, uuid: &str, volume_id: &str) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let mut spec = self.read_spec(&paths)?;
        let entry = spec
            .block_device_info
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["volume_id"].as_str() == Some(volume_id))
            .cloned();
        let Some(entry) = entry else {
            return Ok(());
        };
        let v = VolumeDisk::from_entry(&entry)?;
        if v.boot {
            return Err(failed(
                "detaching the volume",
                format!("volume {volume_id} is the guest's root disk"),
            ));
        }
        if self.running_pid(&paths, uuid).is_some() {
            self.unplug_volume(uuid, &paths, &v).await?;
        }
        if let Some(entries) = spec.block_device_info.as_array_mut() {
            entries.retain(|e| e["volume_id"].as_str() != Some(volume_id));
        }
        self.write_spec(&paths, &spec)
    }

    /// Grow a running guest's volume through QMP (its format node, so a qcow2 header grows
    /// with it). The file itself is locked by QEMU while the guest runs, which is why the
    /// volume service cannot grow it then.
    async fn extend_volume(&self, uuid: &str, volume_id: &str, new_size: u64) -> Result<()> {
        const STEP: &str = "extending the volume";
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let spec = self.read_spec(&paths)?;
        let entry = spec
            .block_device_info
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["volume_id"].as_str() == Some(volume_id))
            .cloned()
            .ok_or_else(|| {
                failed(
                    STEP,
                    format!("volume {volume_id} is not attached to instance {uuid}"),
                )
            })?;
        let v = VolumeDisk::from_entry(&entry)?;
        if self.running_pid(&paths, uuid).is_none() {
            tracing::info!(instance = %uuid, volume = %volume_id, "guest not running: it opens the grown volume at its next launch");
            return Ok(());
        }
        let c = self.qmp(uuid, &paths).await?;
        let (node, _) = v.node_names();
        c.block_resize(&node, new_size)
            .await
            .map_err(|e| failed(STEP, format!("{}: {e}", v.source)))?;
        tracing::info!(instance = %uuid, volume = %volume_id, bytes = new_size, "volume grown in the guest");
        Ok(())
    }

    /// Hot-plug into a running guest, and record the VIF in `spec.json` in any power state,
    /// so a start, a hard reboot or a resize launches QEMU with the NIC.
    async fn attach_interface(&self, uuid: &str, vif: &Value) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let mut spec = self.read_spec(&paths)?;
        let port_id = vif["id"].as_str().unwrap_or_default().to_string();
        let mut vifs: Vec<Value> = spec.network_info.as_array().cloned().unwrap_or_default();
        vifs.retain(|v| v["id"].as_str() != Some(port_id.as_str()));
        vifs.push(vif.clone());
        spec.network_info = Value::Array(vifs);
        if let Some(pid) = self.running_pid(&paths, uuid)
            && let Some((index, nic)) = spec_nic(&spec, &port_id)
        {
            self.hotplug_nic(uuid, &paths, pid, &nic, index).await?;
        }
        self.write_spec(&paths, &spec)
    }

    /// Unplug from a running guest, and drop the VIF from `spec.json`.
    async fn detach_interface(&self, uuid: &str, port_id: &str) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let mut spec = self.read_spec(&paths)?;
        if self.running_pid(&paths, uuid).is_some()
            && let Some((index, nic)) = spec_nic(&spec, port_id)
        {
            let (mut netdev, mut id) = cmdline::nic_ids(&nic.port_id, index);
            // A guest launched before NIC ids came from ports has `net<index>`.
            let c = self.qmp(uuid, &paths).await?;
            let ids = device_ids(&c)
                .await
                .map_err(qmp_failed("detaching the interface"))?;
            let legacy = (format!("hostnet{index}"), format!("net{index}"));
            if !ids.contains(&id) && ids.contains(&legacy.1) {
                (netdev, id) = legacy;
            }
            self.unplug_nic(uuid, &paths, &netdev, &id).await?;
        }
        if let Some(vifs) = spec.network_info.as_array_mut() {
            vifs.retain(|v| v["id"].as_str() != Some(port_id));
        }
        self.write_spec(&paths, &spec)
    }

    async fn console_output(&self, uuid: &str, length: Option<usize>) -> Result<String> {
        let paths = self.exists(uuid)?;
        self.rotate_console(&paths);
        let mut bytes = std::fs::read(paths.dir.join("console.log.0")).unwrap_or_default();
        bytes.extend(std::fs::read(&paths.console_log).unwrap_or_default());
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        Ok(tail_lines(&text, length))
    }

    async fn vnc_target(&self, uuid: &str) -> Result<String> {
        let paths = self.exists(uuid)?;
        if self.running_pid(&paths, uuid).is_none() {
            return Err(failed("opening the console", "the guest is not running"));
        }
        Ok(format!("unix:{}", paths.vnc.display()))
    }

    async fn prepare_incoming(
        &self,
        spec: &InstanceSpec,
        listen: &str,
    ) -> Result<crate::IncomingMigration> {
        self.prepare_incoming_guest(spec, listen).await
    }

    async fn live_migrate(
        &self,
        uuid: &str,
        to: &crate::IncomingMigration,
        timeout: Duration,
    ) -> Result<()> {
        self.migrate_guest_out(uuid, to, timeout).await
    }

    async fn finish_incoming(&self, uuid: &str, run: bool) -> Result<()> {
        self.finish_incoming_guest(uuid, run).await
    }

    async fn cold_migrate(
        &self,
        uuid: &str,
        to: &crate::IncomingMigration,
        timeout: Duration,
    ) -> Result<()> {
        self.migrate_stopped_guest_out(uuid, to, timeout).await
    }

    async fn finish_cold_incoming(&self, uuid: &str, run: bool) -> Result<()> {
        self.finish_cold_incoming_guest(uuid, run).await
    }

    async fn instance_info(&self, uuid: &str) -> Result<InstanceInfo> {
        let paths = self.exists(uuid)?;
        Ok(InstanceInfo {
            power_state: self.power_state(uuid, &paths).await,
        })
    }

    fn lifecycle_events(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.lifecycle.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tail() {
        assert_eq!(tail_lines("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc\n", None), "a\nb\nc\n");
        assert_eq!(tail_lines("", Some(3)), "");
    }

    struct NoImages;
    #[async_trait]
    impl ImageSource for NoImages {
        async fn download(&self, id: &str, _: &Path) -> Result<crate::ImageRecord> {
            Err(DriverError::InstanceNotFound(id.into()))
        }
    }

    #[tokio::test]
    async fn console_log_rotates_above_the_limit_and_reads_across_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = QemuDriver::new(
            QemuConfig {
                hostname: "h".into(),
                host_ip: "127.0.0.1".into(),
                instances_dir: tmp.path().to_path_buf(),
                qemu_binary: "qemu-system-x86_64".into(),
                qemu_img: "qemu-img".into(),
                accel: AccelChoice::Tcg,
                shutdown_timeout: Duration::from_secs(1),
                console_log_max_bytes: 100,
                root_ports: 2,
                volume_detach_timeout: std::time::Duration::from_secs(20),
                unused_base_min_age: Duration::from_secs(86400),
                cache_interval: Duration::from_secs(2400),
                kumo_version: "t".into(),
                migration_ports: 49152..=49215,
            },
            Arc::new(NoImages),
        );
        let dir = tmp.path().join("u1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SPEC_FILE), b"{}").unwrap();
        let old: String = (0..20).map(|n| format!("line {n}\n")).collect();
        std::fs::write(dir.join("console.log"), &old).unwrap();
        let all = d.console_output("u1", None).await.unwrap();
        assert_eq!(all, old);
        assert_eq!(
            std::fs::read_to_string(dir.join("console.log.0")).unwrap(),
            old
        );
        assert_eq!(std::fs::metadata(dir.join("console.log")).unwrap().len(), 0);
        std::fs::write(dir.join("console.log"), "new\n").unwrap();
        assert_eq!(
            d.console_output("u1", Some(2)).await.unwrap(),
            "line 19\nnew\n"
        );
        assert!(matches!(
            d.console_output("nope", None).await,
            Err(DriverError::InstanceNotFound(_))
        ));
    }

    #[test]
    fn our_own_process_is_not_a_guest() {
        let me = std::process::id() as i32;
        assert!(!process_is_guest(
            me,
            "11111111-2222-3333-4444-555555555555"
        ));
        assert!(!process_is_guest(i32::MAX, "x"));
    }
}
