//! The QEMU driver against a real QEMU (TCG) and the kumo-tiny image: spawn to the console
//! marker, pause, stop, start, hard reboot, reconnect from a second driver (as after a kumo
//! restart), snapshot, destroy. Skipped, with a message, when QEMU is not installed.
//! The image comes from KUMO_TINY_IMAGE, else tools/guest-image/build.sh (cached).

use async_trait::async_trait;
use hypervisor::qemu::{AccelChoice, QemuConfig, QemuDriver};
use hypervisor::{
    Driver, DriverError, ImageRecord, ImageSource, InstanceSpec, PowerState, RebootKind,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MARKER: &str = "kumo-tiny: ready";

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
    let out = std::process::Command::new("bash")
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

/// Images from local files: `id` -> (path, disk_format).
struct Files(Vec<(String, PathBuf, String)>);

#[async_trait]
impl ImageSource for Files {
    async fn download(&self, image_id: &str, dest: &Path) -> hypervisor::Result<ImageRecord> {
        let (_, path, fmt) = self
            .0
            .iter()
            .find(|(id, _, _)| id == image_id)
            .ok_or_else(|| DriverError::Failed {
                step: "fetching the image",
                reason: "no such image".into(),
            })?;
        std::fs::copy(path, dest).map_err(|e| DriverError::Failed {
            step: "fetching the image",
            reason: e.to_string(),
        })?;
        Ok(ImageRecord {
            id: image_id.into(),
            disk_format: fmt.clone(),
            ..Default::default()
        })
    }
}

fn spec(uuid: &str, image: &str) -> InstanceSpec {
    InstanceSpec {
        uuid: uuid.into(),
        name: "t1".into(),
        hostname: "t1".into(),
        vcpus: 1,
        memory_mb: 192,
        root_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        image_id: Some(image.into()),
        image_meta: json!({}),
        user_data: None,
        key_data: None,
        metadata: json!({}),
        config_drive: false,
        config_drive_files: vec![],
        config_drive_format: String::new(),
        network_info: json!([]),
        block_device_info: json!([]),
    }
}

fn driver(dir: &Path, images: Arc<dyn ImageSource>) -> Arc<QemuDriver> {
    Arc::new(QemuDriver::new(
        QemuConfig {
            hostname: "test-host".into(),
            host_ip: "127.0.0.1".into(),
            instances_dir: dir.join("instances"),
            qemu_binary: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            accel: AccelChoice::Auto,
            shutdown_timeout: Duration::from_secs(20),
            console_log_max_bytes: 1 << 20,
            root_ports: 6,
            volume_detach_timeout: std::time::Duration::from_secs(20),
            unused_base_min_age: Duration::from_secs(86400),
            cache_interval: Duration::from_secs(2400),
            kumo_version: "test".into(),
            migration_ports: 49152..=49215,
        },
        images,
    ))
}

async fn markers(d: &QemuDriver, uuid: &str) -> usize {
    d.console_output(uuid, None)
        .await
        .map(|t| t.matches(MARKER).count())
        .unwrap_or(0)
}

async fn wait_markers(d: &QemuDriver, uuid: &str, n: usize) -> Duration {
    let t0 = Instant::now();
    while markers(d, uuid).await < n {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no marker #{n} in 60 s; console:\n{}",
            d.console_output(uuid, Some(30)).await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

/// Kills the guest's QEMU by its pid whatever happened (the temp dir goes with its guard).
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("qemu.pid"))
            && let Ok(pid) = pid.trim().parse::<u32>()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu"))
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kumo_tiny_guest_lives_through_every_lifecycle_step() {
    if which("qemu-system-x86_64").is_none() || which("qemu-img").is_none() {
        eprintln!(
            "SKIPPED: qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)"
        );
        return;
    }
    let image = kumo_tiny();
    let tmp = tempfile::Builder::new()
        .prefix("kumo-qd-")
        .tempdir()
        .expect("tempdir");
    let garbage = tmp.path().join("garbage.raw");
    std::fs::write(&garbage, vec![7u8; 4096]).expect("write");
    let images: Arc<dyn ImageSource> = Arc::new(Files(vec![
        ("tiny".into(), image, "qcow2".into()),
        ("garbage".into(), garbage, "raw".into()),
    ]));
    let d = driver(tmp.path(), images.clone());
    d.init_host("test-host").await.expect("init_host");
    let uuid = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0a01";
    let _cleanup = Cleanup(tmp.path().join("instances").join(uuid));

    // A bad image is refused before QEMU runs, and leaves nothing behind.
    let bad = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0a02";
    match d.spawn(&spec(bad, "garbage")).await {
        Err(DriverError::ImageUnacceptable { reason, .. }) => {
            assert!(reason.contains("not a bootable disk"), "{reason}")
        }
        other => panic!("garbage image: {other:?}"),
    }
    assert!(!tmp.path().join("instances").join(bad).exists());

    let t0 = Instant::now();
    let mut with_disks = spec(uuid, "tiny");
    with_disks.ephemeral_gb = 1;
    with_disks.swap_mb = 32;
    d.spawn(&with_disks).await.expect("spawn");
    let dir = tmp.path().join("instances").join(uuid);
    assert!(dir.join("disk.eph0").exists() && dir.join("disk.swap").exists());
    let active = t0.elapsed();
    assert_eq!(
        d.instance_info(uuid).await.unwrap().power_state,
        PowerState::Running
    );
    let boot = wait_markers(&d, uuid, 1).await + active;
    eprintln!("spawn returned in {active:?}, marker after {boot:?}");
    let vnc = d.vnc_target(uuid).await.expect("vnc");
    assert!(
        vnc.starts_with("unix:") && Path::new(&vnc[5..]).exists(),
        "{vnc}"
    );

    d.pause(uuid).await.expect("pause");
    assert_eq!(
        d.instance_info(uuid).await.unwrap().power_state,
        PowerState::Paused
    );
    d.unpause(uuid).await.expect("unpause");
    assert_eq!(
        d.instance_info(uuid).await.unwrap().power_state,
        PowerState::Running
    );

    // Stop cleanly (ACPI power button: kumo-tiny's acpid powers off).
    let t = Instant::now();
    d.power_off(uuid, Duration::from_secs(20))
        .await
        .expect("power_off");
    eprintln!("clean power off in {:?}", t.elapsed());
    assert_eq!(
        d.instance_info(uuid).await.unwrap().power_state,
        PowerState::Shutdown
    );
    d.power_on(uuid).await.expect("power_on");
    wait_markers(&d, uuid, 2).await;
    d.reboot(uuid, RebootKind::Hard).await.expect("hard reboot");
    wait_markers(&d, uuid, 3).await;

    // A second driver on the same directory (kumo restarted) finds the guest running.
    let d2 = driver(tmp.path(), images.clone());
    drop(d);
    d2.init_host("test-host").await.expect("init_host again");
    assert_eq!(d2.list_instances().await.unwrap(), vec![uuid.to_string()]);
    assert_eq!(
        d2.instance_info(uuid).await.unwrap().power_state,
        PowerState::Running
    );

    let snap = d2.snapshot(uuid).await.expect("snapshot");
    assert_eq!(snap.disk_format, "qcow2");
    assert!(snap.data.starts_with(b"QFI\xfb"), "a qcow2 file");
    assert_eq!(
        d2.instance_info(uuid).await.unwrap().power_state,
        PowerState::Running
    );

    let pid: i32 =
        std::fs::read_to_string(tmp.path().join("instances").join(uuid).join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    d2.destroy(uuid).await.expect("destroy");
    assert!(!tmp.path().join("instances").join(uuid).exists());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    assert!(matches!(
        d2.instance_info(uuid).await,
        Err(DriverError::InstanceNotFound(_))
    ));
}
