//! Volume hot-plug against a real QEMU and the kumo-tiny guest: a qcow2 volume (a "local"
//! connection) is plugged into a running guest (blockdev-add + virtio-blk on a free root port),
//! plugged again without a second device, refused an unplug while the guest is paused (the
//! detach times out, the volume stays in spec.json), unplugged once the guest runs (the guest
//! let go: DEVICE_DELETED), plugged again after, on QEMU's command line after a hard reboot, and
//! a second guest boots from a volume holding the kumo-tiny image. Needs root and QEMU;
//! skipped, with a message, without.

use async_trait::async_trait;
use hypervisor::qemu::{AccelChoice, QemuConfig, QemuDriver};
use hypervisor::{Driver, DriverError, ImageRecord, ImageSource, InstanceSpec, RebootKind};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

fn kumo_tiny() -> PathBuf {
    if let Some(p) = std::env::var_os("KUMO_TINY_IMAGE") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/guest-image/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tools/guest-image/build.sh");
    assert!(
        out.status.success(),
        "building kumo-tiny failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("image path").trim())
}

struct Files(PathBuf);

#[async_trait]
impl ImageSource for Files {
    async fn download(&self, image_id: &str, dest: &Path) -> hypervisor::Result<ImageRecord> {
        std::fs::copy(&self.0, dest).map_err(|e| DriverError::Failed {
            step: "fetching the image",
            reason: e.to_string(),
        })?;
        Ok(ImageRecord {
            id: image_id.into(),
            disk_format: "qcow2".into(),
            ..Default::default()
        })
    }
}

/// Kills the guests by their pids, also when the test fails.
struct Guard(Vec<PathBuf>);
impl Drop for Guard {
    fn drop(&mut self) {
        for pidfile in &self.0 {
            if let Some(pid) = qemu_pid(pidfile) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn qemu_pid(pidfile: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu"))
        .then_some(pid)
}

fn qemu_cmdline(pidfile: &Path) -> String {
    let pid = qemu_pid(pidfile).expect("QEMU runs");
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"))
        .replace('\0', " ")
}

fn spec_volumes(dir: &Path) -> Vec<String> {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("spec.json")).expect("spec.json"))
            .expect("spec json");
    spec["block_device_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["volume_id"].as_str().map(str::to_string))
        .collect()
}

fn entry(volume_id: &str, path: &Path, boot: bool) -> Value {
    json!({"volume_id": volume_id, "attachment_id": "a1", "device_name": "/dev/vdb",
        "boot_index": if boot { json!(0) } else { Value::Null },
        "connection_info": {"driver_volume_type": "local",
            "data": {"device_path": path, "format": "qcow2", "access_mode": "rw",
                "volume_id": volume_id, "discard": true}}})
}

async fn wait_ready(d: &QemuDriver, uuid: &str) {
    let t0 = Instant::now();
    while !d
        .console_output(uuid, None)
        .await
        .unwrap_or_default()
        .contains("kumo-tiny: ready")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no ready marker: {}",
            d.console_output(uuid, Some(20)).await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_hot_plugged_refused_while_paused_and_boot_a_guest() {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0)
        || which("qemu-system-x86_64").is_none()
        || which("qemu-img").is_none()
    {
        eprintln!("SKIPPED: needs root, qemu-system-x86_64 and qemu-img");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kumo-qv-")
        .tempdir()
        .expect("tempdir");
    let uuid = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0d01";
    let bfv = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0d02";
    let dir = tmp.path().join("instances").join(uuid);
    let pidfile = dir.join("qemu.pid");
    let _guard = Guard(vec![
        pidfile.clone(),
        tmp.path().join("instances").join(bfv).join("qemu.pid"),
    ]);
    let image = kumo_tiny();
    let d = Arc::new(QemuDriver::new(
        QemuConfig {
            hostname: "test-host".into(),
            host_ip: "127.0.0.1".into(),
            instances_dir: tmp.path().join("instances"),
            qemu_binary: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            accel: AccelChoice::Auto,
            shutdown_timeout: Duration::from_secs(5),
            console_log_max_bytes: 1 << 20,
            root_ports: 4,
            volume_detach_timeout: Duration::from_secs(3),
            unused_base_min_age: Duration::from_secs(86400),
            cache_interval: Duration::from_secs(2400),
            kumo_version: "test".into(),
            migration_ports: 49152..=49215,
        },
        Arc::new(Files(image.clone())),
    ));
    d.init_host("test-host").await.expect("init_host");
    let vol_path = tmp.path().join("volume-1.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&vol_path)
        .arg("64M")
        .status()
        .expect("qemu-img");
    assert!(made.success());
    let vid = "5a1e0c3b-0d3c-4f7e-9a11-0c0ffee00001";
    let spec = InstanceSpec {
        uuid: uuid.into(),
        name: "volumes".into(),
        hostname: "volumes".into(),
        vcpus: 1,
        memory_mb: 192,
        root_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        image_id: Some("tiny".into()),
        image_meta: json!({}),
        user_data: None,
        key_data: None,
        metadata: json!({}),
        config_drive: false,
        config_drive_files: vec![],
        config_drive_format: String::new(),
        network_info: json!([]),
        block_device_info: json!([]),
    };
    d.spawn(&spec).await.expect("spawn");
    wait_ready(&d, uuid).await;

    let t0 = Instant::now();
    d.attach_volume(uuid, &entry(vid, &vol_path, false))
        .await
        .expect("attach");
    eprintln!("attach took {:?}", t0.elapsed());
    assert_eq!(spec_volumes(&dir), vec![vid.to_string()]);
    // Again (a retried attach, a restarted agent): no second device (device_add would refuse
    // the duplicate id).
    d.attach_volume(uuid, &entry(vid, &vol_path, false))
        .await
        .expect("attach again");

    // Paused: the guest cannot release the disk; the detach fails after the timeout and the
    // volume stays.
    d.pause(uuid).await.expect("pause");
    let t0 = Instant::now();
    let err = d
        .detach_volume(uuid, vid)
        .await
        .expect_err("a paused guest keeps its disk")
        .to_string();
    assert!(t0.elapsed() >= Duration::from_secs(3), "waited the timeout");
    assert!(err.contains("did not release"), "{err}");
    assert_eq!(spec_volumes(&dir), vec![vid.to_string()]);
    d.unpause(uuid).await.expect("unpause");

    // Running: the guest lets go (the pending unplug finishes; the retry finds it gone or
    // waits for it), the nodes are deleted, and the same volume plugs again.
    let t0 = Instant::now();
    d.detach_volume(uuid, vid).await.expect("detach");
    eprintln!("detach took {:?}", t0.elapsed());
    assert!(spec_volumes(&dir).is_empty());
    d.attach_volume(uuid, &entry(vid, &vol_path, false))
        .await
        .expect("attach after detach");
    let t0 = Instant::now();
    d.detach_volume(uuid, vid).await.expect("detach running");
    eprintln!("detach of a running guest took {:?}", t0.elapsed());
    d.attach_volume(uuid, &entry(vid, &vol_path, false))
        .await
        .expect("attach a third time");

    // A hard reboot launches QEMU with the volume on its command line.
    d.reboot(uuid, RebootKind::Hard).await.expect("reboot");
    let line = qemu_cmdline(&pidfile);
    assert!(line.contains(&format!("id=volume-{vid}")), "{line}");
    assert!(line.contains(&vol_path.display().to_string()), "{line}");
    wait_ready(&d, uuid).await;
    // Stopped: the detach only drops it from the spec; the next start has no such disk.
    d.power_off(uuid, Duration::ZERO).await.expect("stop");
    d.detach_volume(uuid, vid).await.expect("detach stopped");
    d.power_on(uuid).await.expect("start");
    assert!(!qemu_cmdline(&pidfile).contains(&format!("id=volume-{vid}")));
    d.destroy(uuid).await.expect("destroy");

    // Boot from a volume holding the image: no image copy, the volume is the root disk.
    let boot_path = tmp.path().join("volume-boot.qcow2");
    let conv = Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(&image)
        .arg(&boot_path)
        .status()
        .expect("qemu-img convert");
    assert!(conv.success());
    let mut boot = spec.clone();
    boot.uuid = bfv.into();
    boot.image_id = None;
    boot.block_device_info = json!([entry("boot-volume", &boot_path, true)]);
    d.spawn(&boot).await.expect("boot from volume");
    let bfv_pid = tmp.path().join("instances").join(bfv).join("qemu.pid");
    assert!(qemu_cmdline(&bfv_pid).contains(&boot_path.display().to_string()));
    wait_ready(&d, bfv).await;
    assert!(
        !tmp.path().join("instances").join(bfv).join("disk").exists(),
        "no image copy"
    );
    d.destroy(bfv).await.expect("destroy");
}
