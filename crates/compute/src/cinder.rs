//! The volume service as compute calls it: Cinder's v3 REST API at microversion 3.44 (the
//! attachments flow Nova's `nova/volume/cinder.py` uses), found in the catalog as
//! `block-storage` (or `volumev3`), with the caller's token where Nova uses the request
//! context and compute's service token where there is none (a delete cast to the host).
//!
//! Also the pieces of Nova's block-device handling the API and the agent share: the host's
//! connector, the next free `/dev/vdX`, and the checks a volume passes before an attach.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::clients::Answer;
use crate::error::{ComputeError, Result};
use crate::hooks::{VolumeCall, VolumeHook};
use crate::model::Instance;

pub struct CinderVolumes;

/// The message of a Cinder fault body (`{"itemNotFound": {"message": ...}}`).
fn fault_message(a: &Answer) -> String {
    a.body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {}", a.status))
}

/// A refusal of the volume service as the compute API answers it.
fn refused(what: &str, a: &Answer) -> ComputeError {
    let m = fault_message(a);
    match a.status.as_u16() {
        400 => ComputeError::BadRequest(format!("Invalid volume: {m}")),
        403 => ComputeError::Forbidden(m),
        404 => ComputeError::NotFound(m),
        409 => ComputeError::Conflict(m),
        413 => ComputeError::QuotaExceeded(m),
        _ => ComputeError::Upstream {
            service: "volume",
            message: format!("{what}: HTTP {}: {m}", a.status),
        },
    }
}

impl CinderVolumes {
    async fn call(
        &self,
        c: &VolumeCall<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        c.svc
            .clients()?
            .volume(method, c.project_id, path, body, c.token, c.request_id)
            .await
    }
}

#[async_trait]
impl VolumeHook for CinderVolumes {
    async fn get(&self, c: &VolumeCall<'_>, volume_id: &str) -> Result<Option<Value>> {
        let a = self
            .call(c, Method::GET, &format!("/volumes/{volume_id}"), None)
            .await?;
        match a.status.as_u16() {
            200 => Ok(Some(a.body["volume"].clone())),
            404 => Ok(None),
            _ => Err(refused("showing the volume", &a)),
        }
    }

    async fn create(&self, c: &VolumeCall<'_>, volume: Value) -> Result<Value> {
        let body = json!({ "volume": volume });
        let a = self.call(c, Method::POST, "/volumes", Some(&body)).await?;
        if a.status.is_success() {
            Ok(a.body["volume"].clone())
        } else {
            Err(refused("creating a volume", &a))
        }
    }

    async fn delete(&self, c: &VolumeCall<'_>, volume_id: &str) -> Result<()> {
        let a = self
            .call(c, Method::DELETE, &format!("/volumes/{volume_id}"), None)
            .await?;
        match a.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(refused("deleting the volume", &a)),
        }
    }

    async fn attachment_create(
        &self,
        c: &VolumeCall<'_>,
        volume_id: &str,
        instance_uuid: &str,
    ) -> Result<String> {
        let body =
            json!({"attachment": {"volume_uuid": volume_id, "instance_uuid": instance_uuid}});
        let a = self
            .call(c, Method::POST, "/attachments", Some(&body))
            .await?;
        if !a.status.is_success() {
            return Err(refused("reserving the volume", &a));
        }
        a.body["attachment"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ComputeError::Upstream {
                service: "volume",
                message: "the attachment created has no id".into(),
            })
    }

    async fn attachment_update(
        &self,
        c: &VolumeCall<'_>,
        attachment_id: &str,
        connector: Value,
    ) -> Result<Value> {
        let body = json!({"attachment": {"connector": connector}});
        let a = self
            .call(
                c,
                Method::PUT,
                &format!("/attachments/{attachment_id}"),
                Some(&body),
            )
            .await?;
        if !a.status.is_success() {
            return Err(refused("connecting the volume", &a));
        }
        let att = &a.body["attachment"];
        // 3.44 answers `connection_info`; some deployments put it under `connector` too.
        let ci = if att["connection_info"].is_object() {
            att["connection_info"].clone()
        } else {
            Value::Null
        };
        if !ci.is_object() {
            return Err(ComputeError::Upstream {
                service: "volume",
                message: format!("attachment {attachment_id} has no connection_info"),
            });
        }
        Ok(ci)
    }

    async fn attachment_complete(&self, c: &VolumeCall<'_>, attachment_id: &str) -> Result<()> {
        let body = json!({"os-complete": null});
        let a = self
            .call(
                c,
                Method::POST,
                &format!("/attachments/{attachment_id}/action"),
                Some(&body),
            )
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(refused("completing the attachment", &a))
        }
    }

    async fn attachment_delete(&self, c: &VolumeCall<'_>, attachment_id: &str) -> Result<()> {
        let a = self
            .call(
                c,
                Method::DELETE,
                &format!("/attachments/{attachment_id}"),
                None,
            )
            .await?;
        match a.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(refused("deleting the attachment", &a)),
        }
    }
}

/// This host's connector (os-brick's `get_connector_properties` for a local attach), with
/// the guest device the volume gets.
pub fn connector(host: &str, ip: &str, mountpoint: &str) -> Value {
    json!({"host": host, "ip": ip, "platform": std::env::consts::ARCH, "os_type": "linux",
        "multipath": false, "do_local_attach": false, "mountpoint": mountpoint, "mode": "rw"})
}

/// The guest devices an instance's disks take: `vda` (root, or the boot volume), then the
/// ephemeral disk, swap and config drive in that order (as the QEMU driver adds them), then
/// its volumes.
fn used_devices(i: &Instance) -> Vec<String> {
    let mut used = vec!["/dev/vda".to_string()];
    let mut next = b'b';
    for has in [i.flavor.ephemeral_gb > 0, i.flavor.swap > 0, i.config_drive] {
        if has {
            used.push(format!("/dev/vd{}", next as char));
            next += 1;
        }
    }
    used.extend(i.volume_attachments.iter().map(|a| a.device.clone()));
    used
}

/// The next free `/dev/vdX` (Nova's libvirt driver picks the name itself; a requested one is
/// only a hint).
pub fn next_device(i: &Instance) -> Result<String> {
    let used = used_devices(i);
    (b'b'..=b'z')
        .map(|c| format!("/dev/vd{}", c as char))
        .find(|d| !used.contains(d))
        .ok_or_else(|| ComputeError::bad("No free disk device names for prefix 'vd'"))
}

/// Nova's checks of a volume for an attach: `available`, and not multiattach (kumo does not
/// attach a volume to several servers).
pub fn check_attachable(volume: &Value) -> Result<()> {
    let id = volume["id"].as_str().unwrap_or_default();
    let status = volume["status"].as_str().unwrap_or_default();
    if status != "available" {
        return Err(ComputeError::bad(format!(
            "Invalid volume: volume '{id}' status must be 'available'. Currently in '{status}'"
        )));
    }
    if volume["multiattach"] == json!(true) {
        return Err(ComputeError::bad(format!(
            "Invalid volume: volume {id} is a multiattach volume; attaching one to several servers is not supported here."
        )));
    }
    Ok(())
}

/// In-memory volume service for tests: volumes with Cinder's status changes.
#[cfg(test)]
pub mod fake {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeVolumes {
        pub volumes: Mutex<BTreeMap<String, Value>>,
        /// attachment id -> (volume id, connected)
        pub attachments: Mutex<BTreeMap<String, (String, bool)>>,
    }

    impl FakeVolumes {
        pub fn add(&self, id: &str, status: &str) {
            self.volumes
                .lock()
                .insert(id.into(), json!({"id": id, "status": status, "size": 1}));
        }
        pub fn status(&self, id: &str) -> Option<String> {
            self.volumes
                .lock()
                .get(id)
                .and_then(|v| v["status"].as_str().map(str::to_string))
        }
        fn set(&self, id: &str, status: &str) {
            if let Some(v) = self.volumes.lock().get_mut(id) {
                v["status"] = json!(status);
            }
        }
    }

    #[async_trait]
    impl VolumeHook for FakeVolumes {
        async fn get(&self, _c: &VolumeCall<'_>, id: &str) -> Result<Option<Value>> {
            Ok(self.volumes.lock().get(id).cloned())
        }
        async fn create(&self, _c: &VolumeCall<'_>, v: Value) -> Result<Value> {
            let id = uuid::Uuid::new_v4().to_string();
            self.add(&id, "available");
            let _ = v;
            Ok(json!({"id": id, "status": "creating"}))
        }
        async fn delete(&self, _c: &VolumeCall<'_>, id: &str) -> Result<()> {
            self.volumes.lock().remove(id);
            Ok(())
        }
        async fn attachment_create(
            &self,
            _c: &VolumeCall<'_>,
            volume_id: &str,
            _instance: &str,
        ) -> Result<String> {
            let aid = uuid::Uuid::new_v4().to_string();
            self.attachments
                .lock()
                .insert(aid.clone(), (volume_id.into(), false));
            self.set(volume_id, "reserved");
            Ok(aid)
        }
        async fn attachment_update(
            &self,
            _c: &VolumeCall<'_>,
            aid: &str,
            _connector: Value,
        ) -> Result<Value> {
            let mut a = self.attachments.lock();
            let (vid, connected) = a
                .get_mut(aid)
                .ok_or_else(|| ComputeError::NotFound(format!("attachment {aid}")))?;
            *connected = true;
            Ok(json!({"driver_volume_type": "local",
                "data": {"device_path": format!("/fake/{vid}"), "format": "raw",
                    "access_mode": "rw", "volume_id": vid}}))
        }
        async fn attachment_complete(&self, _c: &VolumeCall<'_>, aid: &str) -> Result<()> {
            let vid = self.attachments.lock().get(aid).map(|(v, _)| v.clone());
            if let Some(v) = vid {
                self.set(&v, "in-use");
            }
            Ok(())
        }
        async fn attachment_delete(&self, _c: &VolumeCall<'_>, aid: &str) -> Result<()> {
            if let Some((v, _)) = self.attachments.lock().remove(aid) {
                self.set(&v, "available");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::volume_base;

    #[test]
    fn volume_urls_take_the_instances_project() {
        let p = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            volume_base("http://h/volume/v3/$(project_id)s", p),
            format!("http://h/volume/v3/{p}")
        );
        assert_eq!(
            volume_base("http://h/volume/v3/aaaabbbbccccddddeeeeffff00001111/", p),
            format!("http://h/volume/v3/{p}")
        );
        assert_eq!(volume_base("http://h/volume/v3", p), "http://h/volume/v3");
    }

    #[test]
    fn attachable_volumes() {
        assert!(check_attachable(&json!({"id": "v", "status": "available"})).is_ok());
        let e = check_attachable(&json!({"id": "v", "status": "in-use"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("status must be 'available'. Currently in 'in-use'"),
            "{e}"
        );
        assert!(
            check_attachable(&json!({"id": "v", "status": "available", "multiattach": true}))
                .is_err()
        );
    }
}
