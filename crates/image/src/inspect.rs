//! Does image data match its `disk_format`? Asked of `qemu-img info --output=json`, with
//! Glance's rules (`glance.location` with `[image_format] require_image_format_match`):
//! - the detected format equals `disk_format`: accepted, `virtual_size` from qemu-img;
//! - `disk_format` raw: anything is accepted (raw is whatever bytes there are);
//! - data detected as raw for a format qemu-img cannot tell from raw (ami, ari, aki, iso,
//!   ploop): accepted;
//! - otherwise refused, and so are images that point outside themselves (a qcow2 backing file
//!   or external data file, a vmdk with extents other than monolithicSparse/streamOptimized),
//!   which Glance's safety checks refuse too.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// What qemu-img found.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub format: String,
    pub virtual_size: Option<i64>,
    /// Why the image is unsafe to hand to a hypervisor, if it is.
    pub unsafe_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "Image disk_format {declared} does not match the data, which qemu-img detects as {detected}"
    )]
    Mismatch { declared: String, detected: String },
    #[error("Image failed safety checks: {0}")]
    Unsafe(String),
    /// qemu-img could not run or answered nonsense.
    #[error("Image format inspection failed: {0}")]
    Failed(String),
}

/// qemu-img's names for Glance's disk formats.
fn qemu_name(disk_format: &str) -> &str {
    match disk_format {
        "vhd" => "vpc",
        other => other,
    }
}

/// Formats qemu-img reports as raw.
fn indistinguishable_from_raw(disk_format: &str) -> bool {
    matches!(disk_format, "ami" | "ari" | "aki" | "iso" | "ploop")
}

pub async fn inspect(qemu_img: &str, path: &Path) -> Result<Inspection, InspectError> {
    let mut cmd = tokio::process::Command::new(qemu_img);
    // Without -f qemu-img probes the format; it never opens backing files for `info`.
    cmd.args(["info", "--output=json"])
        .arg(path)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| InspectError::Failed("qemu-img info took more than 60 s".into()))?
        .map_err(|e| InspectError::Failed(format!("cannot run {qemu_img}: {e}")))?;
    if !out.status.success() {
        return Err(InspectError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| InspectError::Failed(format!("qemu-img printed no JSON: {e}")))?;
    Ok(parse(&v))
}

pub fn parse(v: &Value) -> Inspection {
    let format = v["format"].as_str().unwrap_or("raw").to_string();
    let mut unsafe_reason = None;
    if v.get("backing-filename").is_some() || v.get("full-backing-filename").is_some() {
        unsafe_reason = Some("it has a backing file".to_string());
    }
    let data = &v["format-specific"]["data"];
    if data.get("data-file").is_some() {
        unsafe_reason = Some("it has an external data file".to_string());
    }
    if format == "vmdk"
        && let Some(t) = data["create-type"].as_str()
        && !matches!(t, "monolithicSparse" | "streamOptimized")
    {
        unsafe_reason = Some(format!("vmdk create-type {t} is not allowed"));
    }
    Inspection {
        format,
        virtual_size: v["virtual-size"].as_i64(),
        unsafe_reason,
    }
}

/// Glance's decision for data of `found` declared as `disk_format`; the virtual size to record.
pub fn judge(disk_format: &str, found: &Inspection) -> Result<Option<i64>, InspectError> {
    if let Some(r) = &found.unsafe_reason {
        return Err(InspectError::Unsafe(r.clone()));
    }
    if found.format == qemu_name(disk_format) {
        return Ok(found.virtual_size);
    }
    if disk_format == "raw" || (found.format == "raw" && indistinguishable_from_raw(disk_format)) {
        return Ok(None);
    }
    Err(InspectError::Mismatch {
        declared: disk_format.to_string(),
        detected: if found.format == "vpc" {
            "vhd".into()
        } else {
            found.format.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glance_rules() {
        let raw = parse(&json!({"format": "raw", "virtual-size": 1024}));
        let qcow = parse(&json!({"format": "qcow2", "virtual-size": 1048576,
            "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}}));
        assert_eq!(judge("qcow2", &qcow).unwrap(), Some(1048576));
        assert_eq!(judge("raw", &raw).unwrap(), Some(1024));
        assert_eq!(judge("raw", &qcow).unwrap(), None, "raw accepts anything");
        assert_eq!(judge("iso", &raw).unwrap(), None);
        assert!(matches!(
            judge("qcow2", &raw),
            Err(InspectError::Mismatch { .. })
        ));
        let vhd = parse(&json!({"format": "vpc", "virtual-size": 10}));
        assert_eq!(judge("vhd", &vhd).unwrap(), Some(10));
        let backed = parse(&json!({"format": "qcow2", "backing-filename": "/etc/passwd"}));
        assert!(matches!(
            judge("qcow2", &backed),
            Err(InspectError::Unsafe(_))
        ));
        let ext = parse(&json!({"format": "qcow2",
            "format-specific": {"data": {"data-file": "/dev/sda"}}}));
        assert!(matches!(judge("qcow2", &ext), Err(InspectError::Unsafe(_))));
        let flat = parse(&json!({"format": "vmdk",
            "format-specific": {"data": {"create-type": "monolithicFlat"}}}));
        assert!(matches!(judge("vmdk", &flat), Err(InspectError::Unsafe(_))));
    }

    #[tokio::test]
    async fn qemu_img_tells_qcow2_from_raw() {
        if std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("qemu-img not installed: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("a.qcow2");
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&q)
            .arg("1M")
            .status()
            .unwrap();
        assert!(ok.success());
        let i = inspect("qemu-img", &q).await.unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(judge("qcow2", &i).unwrap(), Some(1 << 20));
        let r = d.path().join("b.raw");
        std::fs::write(&r, vec![0u8; 4096]).unwrap();
        let i = inspect("qemu-img", &r).await.unwrap();
        assert!(judge("qcow2", &i).is_err());
    }
}
