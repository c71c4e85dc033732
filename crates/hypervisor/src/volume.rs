//! Volumes as a driver sees them: the entries of [`crate::InstanceSpec::block_device_info`]
//! (one per attached volume, written by the compute agent) and the `connection_info` the
//! volume service answered for this host (Cinder's `attachment_update`).
//!
//! An entry: `{"volume_id", "attachment_id", "device_name": "/dev/vdb", "boot_index": 0 | null,
//! "connection_info": {"driver_volume_type": ..., "data": {...}}}`. Two connection types:
//! `local` (`data`: `device_path`, a file or block device on this host, `format`,
//! `access_mode`, `discard`) and `nbd` (`data`: `host`, `port`, `name` of an export the volume's
//! host serves, `format`, `access_mode`, `discard`, and with `auth_method` `tls-psk` the TLS
//! pre-shared key: `auth_username` its identity, `auth_password` the hex key). Anything else is
//! refused with a clear reason.

use serde_json::Value;
use std::path::PathBuf;

use crate::{DriverError, Result};

/// Where a volume's data is.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskSource {
    /// A file or block device on this host.
    Path(PathBuf),
    /// An NBD export of the volume's host.
    Nbd {
        host: String,
        port: u16,
        export: String,
        /// The TLS pre-shared key the export requires (`auth_method` `tls-psk`).
        psk: Option<Psk>,
    },
}

/// A TLS pre-shared key: QEMU's `tls-creds-psk` reads `identity:key` from `keys.psk`.
#[derive(Clone, PartialEq)]
pub struct Psk {
    pub identity: String,
    /// Hex.
    pub key: String,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes to a log.
        f.debug_struct("Psk")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The PSK of an `nbd` connection: `auth_method` `tls-psk` with `auth_username` (the
/// identity) and `auth_password` (the hex key), as Cinder's iSCSI connections carry CHAP.
fn nbd_psk(volume_id: &str, data: &Value) -> Result<Option<Psk>> {
    match data["auth_method"].as_str() {
        None => Ok(None),
        Some("tls-psk") => {
            let identity = data["auth_username"]
                .as_str()
                .filter(|i| !i.is_empty() && !i.contains([':', '\n', '\r']))
                .ok_or_else(|| refuse(volume_id, "tls-psk without a usable auth_username"))?;
            let key = data["auth_password"]
                .as_str()
                .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| refuse(volume_id, "tls-psk without a hex auth_password"))?;
            Ok(Some(Psk {
                identity: identity.to_string(),
                key: key.to_string(),
            }))
        }
        Some(other) => Err(refuse(
            volume_id,
            format!("auth_method {other:?} is not supported (tls-psk)"),
        )),
    }
}

impl std::fmt::Display for DiskSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskSource::Path(p) => write!(f, "{}", p.display()),
            DiskSource::Nbd {
                host, port, export, ..
            } if host.contains(':') => write!(f, "nbd://[{host}]:{port}/{export}"),
            DiskSource::Nbd {
                host, port, export, ..
            } => write!(f, "nbd://{host}:{port}/{export}"),
        }
    }
}

/// One volume to give a guest.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeDisk {
    pub volume_id: String,
    /// Where the volume's data is.
    pub source: DiskSource,
    /// `qcow2` or `raw`.
    pub format: String,
    pub read_only: bool,
    pub discard: bool,
    /// The boot volume (`boot_index` 0): the guest's root disk.
    pub boot: bool,
}

fn refuse(volume_id: &str, reason: impl std::fmt::Display) -> DriverError {
    DriverError::Failed {
        step: "connecting the volume",
        reason: format!("volume {volume_id}: {reason}"),
    }
}

impl VolumeDisk {
    /// The disk of one block_device_info entry.
    pub fn from_entry(entry: &Value) -> Result<Self> {
        let volume_id = entry["volume_id"].as_str().unwrap_or_default().to_string();
        let ci = &entry["connection_info"];
        let kind = ci["driver_volume_type"].as_str().unwrap_or("");
        let data = &ci["data"];
        let source = match kind {
            "local" => {
                let path = data["device_path"]
                    .as_str()
                    .filter(|p| p.starts_with('/'))
                    .ok_or_else(|| {
                        refuse(&volume_id, "connection_info has no absolute device_path")
                    })?;
                DiskSource::Path(PathBuf::from(path))
            }
            "nbd" => {
                let host = data["host"]
                    .as_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| refuse(&volume_id, "nbd connection_info has no host"))?;
                // A port as a number or a string (os-brick's connectors send both kinds).
                let port = data["port"]
                    .as_u64()
                    .or_else(|| data["port"].as_str().and_then(|p| p.parse().ok()))
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        refuse(&volume_id, "nbd connection_info has no port (1-65535)")
                    })?;
                let export = data["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| refuse(&volume_id, "nbd connection_info has no export name"))?;
                DiskSource::Nbd {
                    host: host.to_string(),
                    port,
                    export: export.to_string(),
                    psk: nbd_psk(&volume_id, data)?,
                }
            }
            _ => {
                return Err(refuse(
                    &volume_id,
                    format!(
                        "driver_volume_type {kind:?} is not supported by this host (\"local\": a file or block device here, or \"nbd\": an export of the volume's host)"
                    ),
                ));
            }
        };
        let format = data["format"].as_str().unwrap_or("raw").to_string();
        if !matches!(format.as_str(), "raw" | "qcow2") {
            return Err(refuse(
                &volume_id,
                format!("format {format:?} is not supported (raw or qcow2)"),
            ));
        }
        Ok(Self {
            source,
            format,
            read_only: data["access_mode"].as_str() == Some("ro"),
            discard: data["discard"].as_bool().unwrap_or(true),
            boot: entry["boot_index"].as_i64() == Some(0),
            volume_id,
        })
    }

    /// The volumes of a spec in its order (entries without connection info are skipped).
    pub fn all(block_device_info: &Value) -> Result<Vec<Self>> {
        block_device_info
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["connection_info"].is_object())
            .map(Self::from_entry)
            .collect()
    }

    /// QEMU's block node names (at most 31 characters): the format node and its file node.
    pub fn node_names(&self) -> (String, String) {
        let hex: String = self
            .volume_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect();
        (format!("vol{hex}"), format!("vol{hex}-f"))
    }

    /// The guest device's id (stable per volume, so a restarted kumo finds it).
    pub fn device_id(&self) -> String {
        let safe: String = self
            .volume_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!("volume-{safe}")
    }

    /// The disk's serial as the guest sees it (virtio-blk keeps 20 bytes, as with libvirt's
    /// volume serial; `/dev/disk/by-id/virtio-<serial>`).
    pub fn serial(&self) -> String {
        self.volume_id.chars().take(20).collect()
    }

    /// Whether the source is a block device on this host (QEMU's `host_device` driver) rather
    /// than a file.
    pub fn is_block_device(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        match &self.source {
            DiskSource::Path(p) => std::fs::metadata(p)
                .map(|m| m.file_type().is_block_device())
                .unwrap_or(false),
            DiskSource::Nbd { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_and_nbd_connections_only() {
        let e = json!({"volume_id": "0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5", "boot_index": null,
            "connection_info": {"driver_volume_type": "local",
                "data": {"device_path": "/v/volume-1", "format": "qcow2", "access_mode": "ro"}}});
        let d = VolumeDisk::from_entry(&e).expect("local");
        assert!(d.read_only && !d.boot && d.discard);
        assert_eq!(d.format, "qcow2");
        let (node, file) = d.node_names();
        assert!(node.len() <= 31 && file.len() <= 31, "{node} {file}");
        assert_eq!(d.device_id(), "volume-0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5");
        assert_eq!(d.serial(), "0b7f3a52-9a43-4f6e-8");
        let iscsi = json!({"volume_id": "v", "connection_info": {"driver_volume_type": "iscsi", "data": {}}});
        let err = VolumeDisk::from_entry(&iscsi).unwrap_err().to_string();
        assert!(err.contains("\"iscsi\" is not supported"), "{err}");
        assert_eq!(d.source, DiskSource::Path("/v/volume-1".into()));
        let rel = json!({"volume_id": "v", "connection_info": {"driver_volume_type": "local", "data": {"device_path": "x"}}});
        assert!(VolumeDisk::from_entry(&rel).is_err());
        assert_eq!(
            VolumeDisk::all(&json!([{"volume_id": "pending"}, e]))
                .expect("ok")
                .len(),
            1
        );
    }

    #[test]
    fn nbd_connections() {
        let e = json!({"volume_id": "v2", "boot_index": 0,
            "connection_info": {"driver_volume_type": "nbd",
                "data": {"host": "10.250.0.1", "port": 10809, "name": "volume-v2",
                    "format": "raw", "access_mode": "rw", "discard": true}}});
        let d = VolumeDisk::from_entry(&e).expect("nbd");
        assert!(d.boot && !d.read_only && d.discard && !d.is_block_device());
        assert_eq!(
            d.source,
            DiskSource::Nbd {
                host: "10.250.0.1".into(),
                port: 10809,
                export: "volume-v2".into(),
                psk: None,
            }
        );
        let mut t = e.clone();
        t["connection_info"]["data"]["auth_method"] = json!("tls-psk");
        t["connection_info"]["data"]["auth_username"] = json!("volume-v2");
        t["connection_info"]["data"]["auth_password"] = json!("00ff");
        let psk = match VolumeDisk::from_entry(&t).expect("tls-psk").source {
            DiskSource::Nbd { psk, .. } => psk.expect("a psk"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (psk.identity.as_str(), psk.key.as_str()),
            ("volume-v2", "00ff")
        );
        assert!(
            !format!("{psk:?}").contains("00ff"),
            "the key is not logged"
        );
        for (field, bad) in [
            ("auth_password", json!("not hex")),
            ("auth_username", json!("a:b")),
            ("auth_method", json!("CHAP")),
        ] {
            let mut b = t.clone();
            b["connection_info"]["data"][field] = bad;
            assert!(VolumeDisk::from_entry(&b).is_err(), "{field}");
        }
        assert_eq!(d.source.to_string(), "nbd://10.250.0.1:10809/volume-v2");
        let mut s = e.clone();
        s["connection_info"]["data"]["port"] = json!("10810");
        assert!(matches!(
            VolumeDisk::from_entry(&s).expect("port as a string").source,
            DiskSource::Nbd { port: 10810, .. }
        ));
        for (field, bad) in [
            ("host", json!("")),
            ("port", json!(0)),
            ("port", json!(70000)),
            ("port", Value::Null),
            ("name", Value::Null),
        ] {
            let mut b = e.clone();
            b["connection_info"]["data"][field] = bad.clone();
            let err = VolumeDisk::from_entry(&b).expect_err(field).to_string();
            assert!(
                err.contains("nbd connection_info has no"),
                "{field}={bad}: {err}"
            );
        }
    }
}
