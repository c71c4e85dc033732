//! NIC hot-plug against a real QEMU and the kumo-tiny guest: a guest booted with one port gets
//! a second one plugged while it runs (QEMU holds its tap: carrier; the guest's mdev hook
//! brings the new interface up), loses the first (DEVICE_DELETED: the tap has no carrier any
//! more), keeps exactly the remaining NIC through a hard reboot, and a port attached while it
//! is stopped is there at the next start; a guest started without ports (QEMU outside the
//! taps' namespace) gets its tap as a descriptor over QMP. The taps are made as the network agent makes them
//! (persistent, vnet_hdr) in a namespace of the test's own, deleted at the end whatever
//! happens. Needs root, ip and QEMU; skipped, with a message, without.

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

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("run ip")
}

/// Kills the guest by its pid and deletes the namespace, also when the test fails.
struct Guard {
    ns: String,
    pidfile: PathBuf,
}
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = qemu_pid(&self.pidfile) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = ip(&["netns", "delete", &self.ns]);
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

/// Whether QEMU holds the tap (LOWER_UP, no NO-CARRIER), polled until `want` or 10 s.
async fn wait_carrier(ns: &str, tap: &str, want: bool) -> bool {
    for _ in 0..100 {
        let out = ip(&["-n", ns, "-j", "link", "show", tap]);
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let flags = shown[0]["flags"].as_array().cloned().unwrap_or_default();
        let up = !flags.iter().any(|f| f == "NO-CARRIER") && flags.iter().any(|f| f == "LOWER_UP");
        if up == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn spec_ports(dir: &Path) -> Vec<String> {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("spec.json")).expect("spec.json"))
            .expect("spec json");
    spec["network_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nics_are_hot_plugged_and_unplugged_and_survive_a_hard_reboot() {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0)
        || which("ip").is_none()
        || which("qemu-system-x86_64").is_none()
        || which("qemu-img").is_none()
    {
        eprintln!("SKIPPED: needs root, ip, qemu-system-x86_64 and qemu-img");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kumo-qh-")
        .tempdir()
        .expect("tempdir");
    let hex: String = format!("{:06x}", std::process::id() & 0xff_ffff);
    let ns = format!("kt{hex}-hp");
    let taps = [format!("tapkh{hex}a"), format!("tapkh{hex}b")];
    let uuid = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0c01";
    let dir = tmp.path().join("instances").join(uuid);
    let pidfile = dir.join("qemu.pid");
    let _guard = Guard {
        ns: ns.clone(),
        pidfile: pidfile.clone(),
    };
    let _ = ip(&["netns", "delete", &ns]);
    assert!(ip(&["netns", "add", &ns]).status.success());
    for tap in &taps {
        let made = ip(&[
            "-n", &ns, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr",
        ]);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        assert!(ip(&["-n", &ns, "link", "set", tap, "up"]).status.success());
    }

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
            volume_detach_timeout: std::time::Duration::from_secs(20),
            unused_base_min_age: Duration::from_secs(86400),
            cache_interval: Duration::from_secs(2400),
            kumo_version: "test".into(),
            migration_ports: 49152..=49215,
        },
        Arc::new(Files(kumo_tiny())),
    ));
    d.init_host("test-host").await.expect("init_host");
    let port = |n: usize| format!("0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e{n}");
    let vif = |n: usize| {
        json!({"id": port(n), "address": format!("fa:16:3e:12:34:5{n}"), "type": "bridge",
            "devname": taps[n], "details": {"namespace": ns, "bridge_name": "brqx"},
            "network": {"id": "n1", "label": "private", "meta": {"mtu": 1450}, "subnets": []}})
    };
    let spec = InstanceSpec {
        uuid: uuid.into(),
        name: "hotplug".into(),
        hostname: "hotplug".into(),
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
        network_info: json!([vif(0)]),
        block_device_info: json!([]),
    };
    d.spawn(&spec).await.expect("spawn");
    assert!(wait_carrier(&ns, &taps[0], true).await, "boot NIC");
    assert!(wait_carrier(&ns, &taps[1], false).await);
    let t0 = Instant::now();
    while !d
        .console_output(uuid, None)
        .await
        .unwrap_or_default()
        .contains("kumo-tiny: ready")
    {
        assert!(t0.elapsed() < Duration::from_secs(90), "no ready marker");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Plug the second port: QEMU opens its tap, the guest sees a new interface.
    d.attach_interface(uuid, &vif(1)).await.expect("attach");
    assert!(wait_carrier(&ns, &taps[1], true).await, "hot-plugged NIC");
    assert_eq!(spec_ports(&dir), vec![port(0), port(1)]);
    // Again: nothing changes (the agent may retry).
    d.attach_interface(uuid, &vif(1))
        .await
        .expect("attach again");
    assert_eq!(spec_ports(&dir), vec![port(0), port(1)]);
    let t0 = Instant::now();
    while !d
        .console_output(uuid, None)
        .await
        .unwrap_or_default()
        .contains("kumo-tiny: eth1")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the guest said nothing of eth1: {}",
            d.console_output(uuid, Some(20)).await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Unplug the boot NIC: the guest lets go, QEMU closes its tap.
    let t0 = Instant::now();
    d.detach_interface(uuid, &port(0)).await.expect("detach");
    eprintln!("detach took {:?}", t0.elapsed());
    assert!(wait_carrier(&ns, &taps[0], false).await, "unplugged NIC");
    assert!(wait_carrier(&ns, &taps[1], true).await);
    assert_eq!(spec_ports(&dir), vec![port(1)]);
    d.detach_interface(uuid, &port(0))
        .await
        .expect("detach again");

    // A hard reboot launches QEMU with exactly the NICs the guest has now.
    d.reboot(uuid, RebootKind::Hard).await.expect("reboot");
    let line = qemu_cmdline(&pidfile);
    assert!(line.contains(&format!("ifname={}", taps[1])), "{line}");
    assert!(!line.contains(&format!("ifname={}", taps[0])), "{line}");
    assert!(line.contains(&format!("id=net-{}", port(1))), "{line}");
    assert!(wait_carrier(&ns, &taps[1], true).await);

    // Attached while stopped: recorded, plugged at the next start.
    d.power_off(uuid, Duration::ZERO).await.expect("stop");
    d.attach_interface(uuid, &vif(0))
        .await
        .expect("attach stopped");
    assert_eq!(spec_ports(&dir), vec![port(1), port(0)]);
    d.power_on(uuid).await.expect("start");
    let line = qemu_cmdline(&pidfile);
    assert!(
        line.contains(&format!("ifname={}", taps[0]))
            && line.contains(&format!("ifname={}", taps[1])),
        "{line}"
    );
    d.destroy(uuid).await.expect("destroy");
    assert!(wait_carrier(&ns, &taps[0], false).await);

    // A guest started without ports runs in kumo's namespace, not the taps': the tap is opened
    // in its namespace and handed to QEMU (getfd), and unplugs as any other.
    let bare = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0c02";
    let _bare_guard = Guard {
        ns: ns.clone(),
        pidfile: tmp.path().join("instances").join(bare).join("qemu.pid"),
    };
    let mut no_ports = spec.clone();
    no_ports.uuid = bare.into();
    no_ports.network_info = json!([]);
    d.spawn(&no_ports).await.expect("spawn without ports");
    let bare_pidfile = tmp.path().join("instances").join(bare).join("qemu.pid");
    let pid = qemu_pid(&bare_pidfile).expect("QEMU runs");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns"),
        std::fs::read_link("/proc/self/ns/net").expect("own ns"),
        "a guest without ports stays in kumo's namespace"
    );
    d.attach_interface(bare, &vif(1))
        .await
        .expect("attach by fd");
    assert!(
        wait_carrier(&ns, &taps[1], true).await,
        "the tap passed by fd"
    );
    let t0 = Instant::now();
    while !d
        .console_output(bare, None)
        .await
        .unwrap_or_default()
        .contains("kumo-tiny: ready")
    {
        assert!(t0.elapsed() < Duration::from_secs(90), "no ready marker");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.detach_interface(bare, &port(1)).await.expect("detach");
    assert!(wait_carrier(&ns, &taps[1], false).await, "unplugged");
    d.destroy(bare).await.expect("destroy");
}
