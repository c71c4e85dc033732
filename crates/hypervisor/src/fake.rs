//! The fake driver: guests are records in memory (and in a small JSON file, so that, like QEMU
//! guests, they outlive a restart of kumo). Nova's `fake.FakeDriver` is the model: every
//! operation succeeds at once and moves the power state as a real guest would.
//!
//! Knobs for tests, all in `[fake]`: `spawn_delay_ms` (a boot that takes time, to observe the
//! BUILD steps and to kill kumo mid-boot) and `fail_spawn` (this host's spawns fail, to
//! exercise rescheduling).

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::{
    Driver, DriverError, HostResources, IncomingMigration, InstanceInfo, InstanceSpec, PowerState,
    RebootKind, Result, SnapshotData,
};

/// Resources and behaviour of one fake host.
#[derive(Debug, Clone)]
pub struct FakeHost {
    pub hostname: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub local_gb: u64,
    pub spawn_delay: Duration,
    pub fail_spawn: bool,
    /// Where the guests are remembered across restarts; None: memory only.
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Guest {
    power: PowerState,
    vcpus: u32,
    memory_mb: u64,
    #[serde(default)]
    volumes: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    /// The flavor before a resize, until confirm/revert.
    #[serde(default)]
    old_size: Option<(u32, u64)>,
    #[serde(default)]
    console: Vec<String>,
}

pub struct FakeDriver {
    host: FakeHost,
    guests: Mutex<BTreeMap<String, Guest>>,
}

impl FakeDriver {
    pub fn new(host: FakeHost) -> Self {
        let guests = host
            .state_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            host,
            guests: Mutex::new(guests),
        }
    }

    fn persist(&self, guests: &BTreeMap<String, Guest>) {
        let Some(path) = &self.host.state_file else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(guests) else {
            return;
        };
        // temp + rename: a crash never leaves half a file.
        let tmp = path.with_extension("tmp");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    fn with_guest<T>(&self, uuid: &str, f: impl FnOnce(&mut Guest) -> Result<T>) -> Result<T> {
        let mut guests = self.guests.lock();
        let g = guests
            .get_mut(uuid)
            .ok_or_else(|| DriverError::InstanceNotFound(uuid.to_string()))?;
        let out = f(g)?;
        self.persist(&guests);
        Ok(out)
    }

    fn set_power(&self, uuid: &str, from: &[PowerState], to: PowerState) -> Result<()> {
        self.with_guest(uuid, |g| {
            if from.is_empty() || from.contains(&g.power) {
                g.power = to;
                g.console.push(format!("fake: power state -> {to:?}"));
            }
            Ok(())
        })
    }

    /// The volumes a guest has (volume id -> device name), for tests.
    pub fn volumes(&self, uuid: &str) -> BTreeMap<String, String> {
        self.guests
            .lock()
            .get(uuid)
            .map(|g| g.volumes.clone())
            .unwrap_or_default()
    }

    fn install(&self, spec: &InstanceSpec) {
        let mut guests = self.guests.lock();
        let console = vec![
            format!("fake: booting {} ({})", spec.name, spec.uuid),
            format!("fake: {} login:", spec.hostname),
        ];
        guests.remove(&spec.uuid);
        guests.insert(
            spec.uuid.clone(),
            Guest {
                power: PowerState::Running,
                vcpus: spec.vcpus,
                memory_mb: spec.memory_mb,
                // The volumes a guest boots with are its block device info's, as QEMU's.
                volumes: spec
                    .block_device_info
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["connection_info"].is_object())
                    .filter_map(|e| {
                        Some((
                            e["volume_id"].as_str()?.to_string(),
                            e["device_name"].as_str().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
                // The NICs a guest boots with are its network info's, as QEMU's.
                ports: spec
                    .network_info
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|vif| vif["id"].as_str().map(str::to_string))
                    .collect(),
                old_size: None,
                console,
            },
        );
        self.persist(&guests);
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn init_host(&self, _host: &str) -> Result<()> {
        Ok(())
    }

    async fn host_resources(&self) -> Result<HostResources> {
        Ok(HostResources {
            hypervisor_hostname: self.host.hostname.clone(),
            hypervisor_type: "fake".into(),
            hypervisor_version: 1000,
            vcpus: self.host.vcpus,
            memory_mb: self.host.memory_mb,
            local_gb: self.host.local_gb,
            cpu_info: serde_json::json!({"arch": "x86_64", "model": "fake", "vendor": "kumo",
                "topology": {"sockets": 1, "cores": self.host.vcpus, "threads": 1}, "features": []}),
            host_ip: "127.0.0.1".into(),
        })
    }

    async fn list_instances(&self) -> Result<Vec<String>> {
        Ok(self.guests.lock().keys().cloned().collect())
    }

    async fn spawn(&self, spec: &InstanceSpec) -> Result<()> {
        if !self.host.spawn_delay.is_zero() {
            tokio::time::sleep(self.host.spawn_delay).await;
        }
        if self.host.fail_spawn {
            return Err(DriverError::Failed {
                step: "spawn",
                reason: format!(
                    "the fake host {} is configured to fail every spawn ([fake] fail_spawn)",
                    self.host.hostname
                ),
            });
        }
        self.install(spec);
        Ok(())
    }

    async fn destroy(&self, uuid: &str) -> Result<()> {
        let mut guests = self.guests.lock();
        if guests.remove(uuid).is_some() {
            self.persist(&guests);
        }
        Ok(())
    }

    async fn reboot(&self, uuid: &str, kind: RebootKind) -> Result<()> {
        self.with_guest(uuid, |g| {
            g.power = PowerState::Running;
            g.console.push(format!("fake: reboot ({kind:?})"));
            Ok(())
        })
    }

    async fn power_off(&self, uuid: &str, _timeout: Duration) -> Result<()> {
        self.set_power(uuid, &[], PowerState::Shutdown)
    }

    async fn power_on(&self, uuid: &str) -> Result<()> {
        self.set_power(uuid, &[], PowerState::Running)
    }

    async fn pause(&self, uuid: &str) -> Result<()> {
        self.set_power(uuid, &[PowerState::Running], PowerState::Paused)
    }

    async fn unpause(&self, uuid: &str) -> Result<()> {
        self.set_power(uuid, &[PowerState::Paused], PowerState::Running)
    }

    async fn suspend(&self, uuid: &str) -> Result<()> {
        self.set_power(uuid, &[PowerState::Running], PowerState::Suspended)
    }

    async fn resume(&self, uuid: &str) -> Result<()> {
        self.set_power(uuid, &[PowerState::Suspended], PowerState::Running)
    }

    async fn rebuild(&self, spec: &InstanceSpec) -> Result<()> {
        self.install(spec);
        Ok(())
    }

    async fn resize(&self, spec: &InstanceSpec) -> Result<()> {
        self.with_guest(&spec.uuid, |g| {
            g.old_size = Some((g.vcpus, g.memory_mb));
            g.vcpus = spec.vcpus;
            g.memory_mb = spec.memory_mb;
            g.power = PowerState::Running;
            Ok(())
        })
    }

    async fn confirm_resize(&self, uuid: &str) -> Result<()> {
        self.with_guest(uuid, |g| {
            g.old_size = None;
            Ok(())
        })
    }

    async fn revert_resize(&self, spec: &InstanceSpec) -> Result<()> {
        self.with_guest(&spec.uuid, |g| {
            if let Some((vcpus, mem)) = g.old_size.take() {
                g.vcpus = vcpus;
                g.memory_mb = mem;
            }
            g.power = PowerState::Running;
            Ok(())
        })
    }

    async fn snapshot(&self, uuid: &str) -> Result<SnapshotData> {
        self.with_guest(uuid, |_| Ok(()))?;
        // A recognisable, tiny raw disk: what the fake guest "had".
        let mut data = format!("kumo fake snapshot of {uuid}\n").into_bytes();
        data.resize(64 * 1024, 0);
        Ok(SnapshotData {
            disk_format: "raw".into(),
            container_format: "bare".into(),
            data,
        })
    }

    async fn attach_volume(&self, uuid: &str, entry: &Value) -> Result<()> {
        let disk = crate::volume::VolumeDisk::from_entry(entry)?;
        let device = entry["device_name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.with_guest(uuid, |g| {
            if g.volumes
                .insert(disk.volume_id.clone(), device.clone())
                .is_none()
            {
                g.console.push(format!(
                    "fake: volume {} attached at {device}",
                    disk.volume_id
                ));
            }
            Ok(())
        })
    }

    /// A paused guest cannot release a device (as QEMU's): the detach fails.
    async fn detach_volume(&self, uuid: &str, volume_id: &str) -> Result<()> {
        self.with_guest(uuid, |g| {
            if g.volumes.contains_key(volume_id) && g.power == PowerState::Paused {
                return Err(DriverError::Failed {
                    step: "detaching the volume",
                    reason: format!(
                        "the guest did not release volume {volume_id} (a paused guest cannot until it runs again)"
                    ),
                });
            }
            if g.volumes.remove(volume_id).is_some() {
                g.console.push(format!("fake: volume {volume_id} detached"));
            }
            Ok(())
        })
    }

    async fn extend_volume(&self, uuid: &str, volume_id: &str, new_size: u64) -> Result<()> {
        self.with_guest(uuid, |g| {
            if !g.volumes.contains_key(volume_id) {
                return Err(DriverError::Failed {
                    step: "extending the volume",
                    reason: format!("volume {volume_id} is not attached to instance {uuid}"),
                });
            }
            g.console.push(format!(
                "fake: volume {volume_id} extended to {new_size} bytes"
            ));
            Ok(())
        })
    }

    async fn attach_interface(&self, uuid: &str, vif: &Value) -> Result<()> {
        let port = vif
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.with_guest(uuid, |g| {
            if !g.ports.contains(&port) {
                g.console.push(format!(
                    "fake: interface {port} ({}) attached",
                    vif["address"]
                ));
                g.ports.push(port);
            }
            Ok(())
        })
    }

    async fn detach_interface(&self, uuid: &str, port_id: &str) -> Result<()> {
        self.with_guest(uuid, |g| {
            if g.ports.iter().any(|p| p == port_id) {
                g.ports.retain(|p| p != port_id);
                g.console
                    .push(format!("fake: interface {port_id} detached"));
            }
            Ok(())
        })
    }

    async fn console_output(&self, uuid: &str, length: Option<usize>) -> Result<String> {
        self.with_guest(uuid, |g| {
            let skip = length.map_or(0, |n| g.console.len().saturating_sub(n));
            Ok(g.console[skip..].join("\n") + "\n")
        })
    }

    async fn vnc_target(&self, _uuid: &str) -> Result<String> {
        Err(DriverError::Unsupported("a VNC console"))
    }

    /// The guest arrives paused (NoState until finished), as QEMU's waits for its stream.
    async fn prepare_incoming(
        &self,
        spec: &InstanceSpec,
        listen: &str,
    ) -> Result<IncomingMigration> {
        self.install(spec);
        self.set_power(&spec.uuid, &[], PowerState::NoState)?;
        Ok(IncomingMigration {
            uri: format!("fake:{listen}"),
            disks: Vec::new(),
        })
    }

    async fn live_migrate(&self, uuid: &str, to: &IncomingMigration, _: Duration) -> Result<()> {
        self.with_guest(uuid, |g| {
            g.console.push(format!("fake: migrated to {}", to.uri));
            Ok(())
        })?;
        self.set_power(uuid, &[], PowerState::Paused)
    }

    async fn finish_incoming(&self, uuid: &str, run: bool) -> Result<()> {
        let to = if run {
            PowerState::Running
        } else {
            PowerState::Paused
        };
        self.set_power(uuid, &[], to)
    }

    async fn cold_migrate(&self, uuid: &str, to: &IncomingMigration, _: Duration) -> Result<()> {
        self.with_guest(uuid, |g| {
            g.console.push(format!("fake: disks copied to {}", to.uri));
            Ok(())
        })?;
        self.set_power(uuid, &[], PowerState::Shutdown)
    }

    async fn finish_cold_incoming(&self, uuid: &str, run: bool) -> Result<()> {
        let to = if run {
            PowerState::Running
        } else {
            PowerState::Shutdown
        };
        self.set_power(uuid, &[], to)
    }

    async fn instance_info(&self, uuid: &str) -> Result<InstanceInfo> {
        let guests = self.guests.lock();
        let g = guests
            .get(uuid)
            .ok_or_else(|| DriverError::InstanceNotFound(uuid.to_string()))?;
        Ok(InstanceInfo {
            power_state: g.power,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(uuid: &str) -> InstanceSpec {
        InstanceSpec {
            uuid: uuid.into(),
            name: "vm".into(),
            hostname: "vm".into(),
            vcpus: 1,
            memory_mb: 64,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image_id: None,
            image_meta: Value::Null,
            user_data: None,
            key_data: None,
            metadata: Value::Null,
            config_drive: false,
            config_drive_files: vec![],
            config_drive_format: String::new(),
            network_info: Value::Array(vec![]),
            block_device_info: Value::Array(vec![]),
        }
    }

    fn host(state_file: Option<PathBuf>) -> FakeHost {
        FakeHost {
            hostname: "h1".into(),
            vcpus: 8,
            memory_mb: 8192,
            local_gb: 100,
            spawn_delay: Duration::ZERO,
            fail_spawn: false,
            state_file,
        }
    }

    #[tokio::test]
    async fn power_states_follow_the_operations() {
        let d = FakeDriver::new(host(None));
        d.spawn(&spec("a")).await.unwrap();
        let ps = |d: &FakeDriver| d.guests.lock()["a"].power;
        assert_eq!(ps(&d), PowerState::Running);
        d.pause("a").await.unwrap();
        assert_eq!(ps(&d), PowerState::Paused);
        d.unpause("a").await.unwrap();
        d.suspend("a").await.unwrap();
        assert_eq!(ps(&d), PowerState::Suspended);
        d.resume("a").await.unwrap();
        d.power_off("a", Duration::ZERO).await.unwrap();
        assert_eq!(ps(&d), PowerState::Shutdown);
        d.power_on("a").await.unwrap();
        assert_eq!(ps(&d), PowerState::Running);
        assert!(
            d.console_output("a", Some(1))
                .await
                .unwrap()
                .contains("Running")
        );
        d.destroy("a").await.unwrap();
        d.destroy("a").await.unwrap();
        assert!(matches!(
            d.instance_info("a").await,
            Err(DriverError::InstanceNotFound(_))
        ));
    }

    #[tokio::test]
    async fn guests_outlive_the_driver_with_a_state_file() {
        let dir = std::env::temp_dir().join(format!("kumo-fake-test-{}", std::process::id()));
        let file = dir.join("h1.json");
        {
            let d = FakeDriver::new(host(Some(file.clone())));
            d.spawn(&spec("b")).await.unwrap();
            d.power_off("b", Duration::ZERO).await.unwrap();
        }
        let d = FakeDriver::new(host(Some(file)));
        assert_eq!(d.list_instances().await.unwrap(), vec!["b".to_string()]);
        assert_eq!(
            d.instance_info("b").await.unwrap().power_state,
            PowerState::Shutdown
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn interfaces_follow_attach_and_detach_and_a_respawn_takes_the_network_info() {
        let d = FakeDriver::new(host(None));
        let mut s = spec("n");
        s.network_info = serde_json::json!([{"id": "p1"}]);
        d.spawn(&s).await.unwrap();
        let ports = |d: &FakeDriver| d.guests.lock()["n"].ports.clone();
        assert_eq!(ports(&d), vec!["p1".to_string()]);
        let vif = serde_json::json!({"id": "p2", "address": "fa:16:3e:00:00:02"});
        d.attach_interface("n", &vif).await.unwrap();
        d.attach_interface("n", &vif).await.unwrap();
        assert_eq!(ports(&d), vec!["p1".to_string(), "p2".into()]);
        d.detach_interface("n", "p1").await.unwrap();
        d.detach_interface("n", "p1").await.unwrap();
        assert_eq!(ports(&d), vec!["p2".to_string()]);
        assert!(d.console_output("n", None).await.unwrap().contains("p2"));
        assert!(matches!(
            d.attach_interface("nope", &vif).await,
            Err(DriverError::InstanceNotFound(_))
        ));
        // A rebuild boots with what the network info says.
        d.rebuild(&s).await.unwrap();
        assert_eq!(ports(&d), vec!["p1".to_string()]);
    }

    #[tokio::test]
    async fn volumes_follow_attach_and_detach_and_a_paused_guest_keeps_its_volume() {
        let d = FakeDriver::new(host(None));
        d.spawn(&spec("v")).await.unwrap();
        let entry = serde_json::json!({"volume_id": "vol1", "device_name": "/dev/vdb",
            "connection_info": {"driver_volume_type": "local", "data": {"device_path": "/v/1"}}});
        d.attach_volume("v", &entry).await.unwrap();
        d.attach_volume("v", &entry).await.unwrap();
        assert_eq!(d.volumes("v").len(), 1);
        let bad = serde_json::json!({"volume_id": "vol2",
            "connection_info": {"driver_volume_type": "rbd", "data": {}}});
        assert!(d.attach_volume("v", &bad).await.is_err());
        d.pause("v").await.unwrap();
        assert!(d.detach_volume("v", "vol1").await.is_err());
        assert_eq!(
            d.volumes("v").len(),
            1,
            "still attached after a failed detach"
        );
        d.unpause("v").await.unwrap();
        d.detach_volume("v", "vol1").await.unwrap();
        d.detach_volume("v", "vol1").await.unwrap();
        assert!(d.volumes("v").is_empty());
        // A spawn gives the guest its spec's volumes.
        let mut s = spec("w");
        s.block_device_info = serde_json::json!([entry]);
        d.spawn(&s).await.unwrap();
        assert_eq!(
            d.volumes("w").get("vol1").map(String::as_str),
            Some("/dev/vdb")
        );
    }

    #[tokio::test]
    async fn a_failing_host_fails_spawns() {
        let mut h = host(None);
        h.fail_spawn = true;
        let d = FakeDriver::new(h);
        let e = d.spawn(&spec("c")).await.unwrap_err();
        assert!(e.to_string().contains("fail_spawn"));
    }
}
