//! A guest with one port against a real QEMU: the tap is made as the network agent makes it
//! (persistent, vnet_hdr, in a namespace of its own), and QEMU must run inside that namespace
//! and hold the tap (carrier up). Needs root, ip and QEMU; skipped, with a message, without.
//! The namespace is deleted at the end whatever happens.

use async_trait::async_trait;
use hypervisor::qemu::{AccelChoice, QemuConfig, QemuDriver};
use hypervisor::{Driver, DriverError, ImageRecord, ImageSource, InstanceSpec};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

/// Any small bootable qcow2 will do: QEMU only has to start (kumo-tiny when it is built).
fn image(dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("KUMO_TINY_IMAGE") {
        return PathBuf::from(p);
    }
    let p = dir.join("blank.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&p)
        .arg("16M")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "qemu-img create");
    p
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

/// Deletes the namespace and kills the guest by its pid, also when the test fails.
struct Guard {
    ns: String,
    pidfile: PathBuf,
}
impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile)
            && let Ok(pid) = pid.trim().parse::<u32>()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu"))
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = ip(&["netns", "delete", &self.ns]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_runs_in_the_taps_namespace_and_holds_the_tap() {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0)
        || which("ip").is_none()
        || which("qemu-system-x86_64").is_none()
        || which("qemu-img").is_none()
    {
        eprintln!("SKIPPED: needs root, ip, qemu-system-x86_64 and qemu-img");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kumo-qn-")
        .tempdir()
        .expect("tempdir");
    let hex: String = format!("{:06x}", std::process::id() & 0xff_ffff);
    let ns = format!("kt{hex}-host");
    let tap = format!("tapkt{hex}");
    let uuid = "0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0b01";
    let _guard = Guard {
        ns: ns.clone(),
        pidfile: tmp.path().join("instances").join(uuid).join("qemu.pid"),
    };
    let _ = ip(&["netns", "delete", &ns]);
    assert!(ip(&["netns", "add", &ns]).status.success());
    let made = ip(&[
        "-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap", "vnet_hdr",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(ip(&["-n", &ns, "link", "set", &tap, "up"]).status.success());

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
        Arc::new(Files(image(tmp.path()))),
    ));
    d.init_host("test-host").await.expect("init_host");
    let vif = |devname: &str| {
        json!([{"id": "p1", "address": "fa:16:3e:12:34:56", "type": "bridge",
            "devname": devname, "details": {"namespace": ns, "bridge_name": "brqx"},
            "network": {"id": "n1", "label": "private", "meta": {"mtu": 1450}, "subnets": []}}])
    };
    let spec = |uuid: &str, devname: &str| InstanceSpec {
        uuid: uuid.into(),
        name: "nic".into(),
        hostname: "nic".into(),
        vcpus: 1,
        memory_mb: 128,
        root_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        image_id: Some("img".into()),
        image_meta: json!({}),
        user_data: None,
        key_data: None,
        metadata: json!({}),
        config_drive: false,
        config_drive_files: vec![],
        config_drive_format: String::new(),
        network_info: vif(devname),
        block_device_info: json!([]),
    };

    // A tap that is not there: a clear error naming it and the namespace.
    match d
        .spawn(&spec("0e4b1c2a-7d7e-4c55-9a33-3b9d8c1f0b02", "tapmissing0"))
        .await
    {
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("tapmissing0") && m.contains(&ns), "{m}");
        }
        Ok(()) => panic!("a guest started without its tap"),
    }

    d.spawn(&spec(uuid, &tap)).await.expect("spawn");
    let pid: u32 = std::fs::read_to_string(&_guard.pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    let ns_ino = std::fs::metadata(Path::new("/run/netns").join(&ns))
        .expect("netns")
        .ino();
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns link");
    assert_eq!(
        link.to_string_lossy(),
        format!("net:[{ns_ino}]"),
        "QEMU is not in the namespace of its tap"
    );
    let own = std::fs::read_link("/proc/self/ns/net").expect("own ns");
    assert_ne!(own, link, "the test itself stayed in its namespace");
    // QEMU holds the tap: carrier up.
    let mut carrier = false;
    for _ in 0..50 {
        let out = ip(&["-n", &ns, "-j", "link", "show", &tap]);
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let flags = shown[0]["flags"].as_array().cloned().unwrap_or_default();
        if !flags.iter().any(|f| f == "NO-CARRIER") && flags.iter().any(|f| f == "LOWER_UP") {
            carrier = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(carrier, "the tap has no carrier: QEMU does not hold it");
    d.destroy(uuid).await.expect("destroy");
}
