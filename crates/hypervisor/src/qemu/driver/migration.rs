//! Live migration of a QEMU guest without shared storage, the way libvirt does Nova's block
//! migration: the destination starts the guest paused with `-incoming defer` and exports its
//! fresh disks over NBD; the source mirrors its disks there (`blockdev-mirror`) and, once the
//! mirrors are in sync, streams memory (`migrate`); when the stream completes, the source's
//! guest is stopped, its mirrors finish, and the destination's guest runs.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use super::*;
use crate::{DiskTarget, IncomingMigration};

/// How often the progress of copies and of the memory stream is read.
const POLL: Duration = Duration::from_millis(50);
/// How long the destination waits for its network agent to make the arriving ports' taps.
const TAP_WAIT: Duration = Duration::from_secs(60);
/// The migration stream's bandwidth cap (QEMU's default, 128 MiB/s, would stretch the copy).
const MAX_BANDWIDTH: u64 = 4 << 30;
/// The longest pause of the guest QEMU aims for at the switch-over.
const DOWNTIME_LIMIT_MS: u64 = 300;

/// The guest's local disks a migration copies: block node and how (`top`: only what was
/// written over the base image, which the destination has too).
fn local_disks(spec: &InstanceSpec) -> Vec<(&'static str, &'static str)> {
    let boots_from_volume = VolumeDisk::all(&spec.block_device_info)
        .map(|v| v.iter().any(|v| v.boot))
        .unwrap_or(false);
    let mut out = Vec::new();
    if !boots_from_volume {
        out.push(("root", "top"));
    }
    if spec.ephemeral_gb > 0 {
        out.push(("eph0", "full"));
    }
    if spec.swap_mb > 0 {
        out.push(("swap", "full"));
    }
    out
}

/// `HOST` of a URI: an IPv6 address in brackets.
fn uri_host(addr: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    }
}

fn in_use(e: &QmpError) -> bool {
    e.to_string().contains("in use")
}

/// A block job of ours as `query-block-jobs` shows it.
struct Job {
    status: String,
    ready: bool,
    error: Option<String>,
}

async fn our_jobs(c: &QmpClient) -> std::result::Result<HashMap<String, Job>, QmpError> {
    let jobs = c.execute("query-block-jobs", None).await?;
    Ok(jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| {
            let id = j["device"].as_str()?;
            id.starts_with("mig-").then(|| {
                (
                    id.to_string(),
                    Job {
                        status: j["status"].as_str().unwrap_or_default().to_string(),
                        ready: j["ready"].as_bool().unwrap_or(false),
                        error: j["error"].as_str().map(str::to_string),
                    },
                )
            })
        })
        .collect())
}

impl QemuDriver {
    /// Wait until the network agent has made the taps of the guest's ports in their
    /// namespace (it wires a port whose binding says it migrates here).
    async fn wait_for_taps(&self, spec: &InstanceSpec) -> Result<()> {
        let deadline = Instant::now() + TAP_WAIT;
        for nic in cmdline::nics(spec) {
            loop {
                if tap_exists_in(&nic.namespace, &nic.devname)? {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(failed(
                        "preparing the incoming migration",
                        format!(
                            "tap {} did not appear in network namespace {} within {} s (this host's network agent wires a port whose binding:profile says migrating_to this host)",
                            nic.devname,
                            nic.namespace,
                            TAP_WAIT.as_secs()
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Run `listen(port)` on the ports of `[qemu] migration ports` until one is free.
    async fn on_free_port<F, Fut>(&self, what: &str, mut listen: F) -> Result<u16>
    where
        F: FnMut(u16) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Value, QmpError>>,
    {
        for port in self.cfg.migration_ports.clone() {
            match listen(port).await {
                Ok(_) => return Ok(port),
                Err(e) if in_use(&e) => continue,
                Err(e) => {
                    return Err(failed(
                        "preparing the incoming migration",
                        format!("{what}: {e}"),
                    ));
                }
            }
        }
        Err(failed(
            "preparing the incoming migration",
            format!(
                "{what}: every port of {:?} is in use",
                self.cfg.migration_ports
            ),
        ))
    }

    pub(super) async fn prepare_incoming_guest(
        &self,
        spec: &InstanceSpec,
        listen: &str,
    ) -> Result<IncomingMigration> {
        const STEP: &str = "preparing the incoming migration";
        let lock = self.lock(&spec.uuid);
        let _g = lock.lock().await;
        let paths = self.paths(&spec.uuid);
        if self.running_pid(&paths, &spec.uuid).is_some() {
            return Err(failed(STEP, "the guest already runs on this host"));
        }
        self.wait_for_taps(spec).await?;
        std::fs::create_dir_all(&paths.dir).map_err(|e| failed(STEP, e))?;
        set_private(&paths.dir);
        let r = async {
            self.make_disks(spec, &paths).await?;
            self.write_spec(&paths, spec)?;
            let c = self.start_paused(spec, &paths, true).await?;
            let nbd_port = self
                .on_free_port("the disks' NBD server", |port| {
                    c.execute(
                        "nbd-server-start",
                        Some(json!({"addr": {"type": "inet",
                            "data": {"host": listen, "port": port.to_string()}}})),
                    )
                })
                .await?;
            let mut disks = Vec::new();
            for (node, sync) in local_disks(spec) {
                // The export opens the disk for writing although the guest waits for its
                // stream (QEMU activates an exported node).
                c.execute(
                    "block-export-add",
                    Some(json!({"type": "nbd", "id": format!("mig-{node}"),
                        "node-name": node, "name": node, "writable": true})),
                )
                .await
                .map_err(|e| failed(STEP, format!("exporting disk {node}: {e}")))?;
                disks.push(DiskTarget {
                    node: node.to_string(),
                    host: listen.to_string(),
                    port: nbd_port,
                    export: node.to_string(),
                    sync: sync.to_string(),
                });
            }
            let host = uri_host(listen);
            let port = self
                .on_free_port("the migration stream", |port| {
                    c.execute(
                        "migrate-incoming",
                        Some(json!({"uri": format!("tcp:{host}:{port}")})),
                    )
                })
                .await?;
            Ok(IncomingMigration {
                uri: format!("tcp:{host}:{port}"),
                disks,
            })
        }
        .await;
        match &r {
            Ok(to) => {
                tracing::info!(instance = %spec.uuid, uri = %to.uri, disks = to.disks.len(), "waiting for the guest to migrate in")
            }
            Err(_) => {
                // Nothing of a failed preparation stays.
                let _ = self.stop_process(&spec.uuid, &paths, Duration::ZERO).await;
                let _ = std::fs::remove_dir_all(&paths.dir);
            }
        }
        r
    }

    pub(super) async fn migrate_guest_out(
        &self,
        uuid: &str,
        to: &IncomingMigration,
        timeout: Duration,
    ) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        let c = self.qmp(uuid, &paths).await?;
        let started = Instant::now();
        let r = copy_out(&c, to, started + timeout).await;
        if r.is_err() {
            // The guest keeps running here: stop what was started and drop the targets.
            let _ = c.execute("migrate_cancel", None).await;
            for d in &to.disks {
                let job = format!("mig-{}", d.node);
                let _ = c
                    .execute(
                        "block-job-cancel",
                        Some(json!({"device": job, "force": true})),
                    )
                    .await;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match our_jobs(&c).await {
                    Ok(jobs) if jobs.values().any(|j| j.status != "concluded") => {
                        tokio::time::sleep(POLL).await
                    }
                    _ => break,
                }
            }
            for d in &to.disks {
                let job = format!("mig-{}", d.node);
                let _ = c.execute("job-dismiss", Some(json!({"id": job}))).await;
                let _ = c.blockdev_del(&job).await;
            }
        } else {
            tracing::info!(instance = %uuid, ms = started.elapsed().as_millis() as u64, to = %to.uri, "guest migrated out");
        }
        r
    }

    /// Cold migration's source: the stopped guest's QEMU is started paused only to mirror
    /// its disks (its memory, never used, goes along), then quits; the disks here stay.
    pub(super) async fn migrate_stopped_guest_out(
        &self,
        uuid: &str,
        to: &IncomingMigration,
        timeout: Duration,
    ) -> Result<()> {
        let lock = self.lock(uuid);
        let _g = lock.lock().await;
        let paths = self.exists(uuid)?;
        if self.running_pid(&paths, uuid).is_some() {
            return Err(failed(
                "migrating the guest's disks",
                "the guest still runs (a cold migration stops it first)",
            ));
        }
        let spec = self.read_spec(&paths)?;
        let started = Instant::now();
        let c = self.start_paused(&spec, &paths, false).await?;
        let r = copy_out(&c, to, started + timeout).await;
        self.stop_process(uuid, &paths, Duration::ZERO).await?;
        if r.is_ok() {
            tracing::info!(instance = %uuid, ms = started.elapsed().as_millis() as u64, to = %to.uri, "stopped guest's disks copied out");
        }
        r
    }

    /// Cold migration's destination: the guest that arrived boots from its disks (a reset
    /// first: its memory never ran) or its QEMU quits, leaving it stopped here.
    pub(super) async fn finish_cold_incoming_guest(&self, uuid: &str, run: bool) -> Result<()> {
        const STEP: &str = "finishing the cold migration";
        self.finish_incoming_guest(uuid, false).await?;
        let paths = self.exists(uuid)?;
        if run {
            let c = self.qmp(uuid, &paths).await?;
            c.system_reset().await.map_err(qmp_failed(STEP))?;
            c.cont().await.map_err(qmp_failed(STEP))?;
        } else {
            self.stop_process(uuid, &paths, Duration::ZERO).await?;
        }
        Ok(())
    }

    pub(super) async fn finish_incoming_guest(&self, uuid: &str, run: bool) -> Result<()> {
        const STEP: &str = "finishing the incoming migration";
        let paths = self.exists(uuid)?;
        let c = self.qmp(uuid, &paths).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = c.query_status().await.map_err(qmp_failed(STEP))?;
            if st.status != "inmigrate" {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed(STEP, "the guest's memory has not arrived in 30 s"));
            }
            tokio::time::sleep(POLL).await;
        }
        if run {
            c.cont().await.map_err(qmp_failed(STEP))?;
        }
        if let Err(e) = c.execute("nbd-server-stop", None).await {
            tracing::warn!(instance = %uuid, error = %e, "the migration's NBD server did not stop");
        }
        tracing::info!(instance = %uuid, run, "guest migrated in");
        Ok(())
    }
}

/// The source's part: mirror the disks, then stream memory; on success the guest here is
/// stopped and the mirrors are finished (the destination has every write).
async fn copy_out(c: &QmpClient, to: &IncomingMigration, deadline: Instant) -> Result<()> {
    const STEP: &str = "migrating the guest";
    let late = |what: &str| failed(STEP, format!("{what} did not finish in time"));
    for d in &to.disks {
        let node = format!("mig-{}", d.node);
        c.blockdev_add(json!({"driver": "nbd", "node-name": node,
            "server": {"type": "inet", "host": d.host, "port": d.port.to_string()},
            "export": d.export}))
            .await
            .map_err(|e| {
                failed(
                    STEP,
                    format!(
                        "connecting to disk {} at {}:{}: {e}",
                        d.node, d.host, d.port
                    ),
                )
            })?;
        c.execute(
            "blockdev-mirror",
            Some(
                json!({"job-id": node, "device": d.node, "target": node, "sync": d.sync,
                "auto-dismiss": false}),
            ),
        )
        .await
        .map_err(|e| failed(STEP, format!("copying disk {}: {e}", d.node)))?;
    }
    // Every disk in sync (from then on each write goes to both sides).
    loop {
        let jobs = our_jobs(c).await.map_err(qmp_failed(STEP))?;
        if let Some((id, j)) = jobs.iter().find(|(_, j)| j.status == "concluded") {
            return Err(failed(
                STEP,
                format!(
                    "copy {id} stopped: {}",
                    j.error.as_deref().unwrap_or("no reason given")
                ),
            ));
        }
        if jobs.len() == to.disks.len() && jobs.values().all(|j| j.ready) {
            break;
        }
        if Instant::now() > deadline {
            return Err(late("copying the disks"));
        }
        tokio::time::sleep(POLL).await;
    }
    c.execute(
        "migrate-set-parameters",
        Some(json!({"max-bandwidth": MAX_BANDWIDTH, "downtime-limit": DOWNTIME_LIMIT_MS})),
    )
    .await
    .map_err(qmp_failed(STEP))?;
    c.execute("migrate", Some(json!({"uri": to.uri})))
        .await
        .map_err(qmp_failed(STEP))?;
    loop {
        let m = c
            .execute("query-migrate", None)
            .await
            .map_err(qmp_failed(STEP))?;
        match m["status"].as_str().unwrap_or_default() {
            "completed" => break,
            s @ ("failed" | "cancelled") => {
                return Err(failed(
                    STEP,
                    format!(
                        "the memory stream {s}: {}",
                        m["error-desc"].as_str().unwrap_or("no reason given")
                    ),
                ));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(late("streaming the memory"));
        }
        tokio::time::sleep(POLL).await;
    }
    // The guest is stopped here: a cancel of a mirror in sync completes it consistently.
    for d in &to.disks {
        c.execute(
            "block-job-cancel",
            Some(json!({"device": format!("mig-{}", d.node)})),
        )
        .await
        .map_err(qmp_failed(STEP))?;
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = our_jobs(c).await.map_err(qmp_failed(STEP))?;
        if let Some((id, j)) = jobs.iter().find(|(_, j)| j.error.is_some()) {
            return Err(failed(
                STEP,
                format!("copy {id} failed at the end: {:?}", j.error),
            ));
        }
        if jobs.values().all(|j| j.status == "concluded") {
            break;
        }
        if Instant::now() > end {
            return Err(late("finishing the disk copies"));
        }
        tokio::time::sleep(POLL).await;
    }
    for d in &to.disks {
        let job = format!("mig-{}", d.node);
        let _ = c.execute("job-dismiss", Some(json!({"id": job}))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ephemeral_gb: u64, swap_mb: u64, block_device_info: Value) -> InstanceSpec {
        InstanceSpec {
            uuid: "u".into(),
            name: "n".into(),
            hostname: "n".into(),
            vcpus: 1,
            memory_mb: 64,
            root_gb: 1,
            ephemeral_gb,
            swap_mb,
            image_id: None,
            image_meta: Value::Null,
            user_data: None,
            key_data: None,
            metadata: Value::Null,
            config_drive: false,
            config_drive_files: Vec::new(),
            config_drive_format: String::new(),
            network_info: json!([]),
            block_device_info,
        }
    }

    #[test]
    fn the_root_overlay_is_copied_over_its_base_and_other_disks_whole() {
        assert_eq!(
            local_disks(&spec(1, 0, json!([]))),
            vec![("root", "top"), ("eph0", "full")]
        );
        let boot_volume = json!([{"volume_id": "v", "boot_index": 0, "connection_info":
            {"driver_volume_type": "local", "data": {"device_path": "/dev/null"}}}]);
        assert_eq!(
            local_disks(&spec(0, 16, boot_volume)),
            vec![("swap", "full")]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_uris() {
        assert_eq!(uri_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(uri_host("fd00::1"), "[fd00::1]");
    }
}
