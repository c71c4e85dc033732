//! Disks: base images fetched once into `instances/_base/` (checksum-verified, inspected with
//! qemu-img, shared by every instance), qcow2 overlays on them, ephemeral and swap disks.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::{DriverError, ImageRecord, ImageSource, Result};

const GIB: u64 = 1 << 30;

fn failed(step: &'static str, reason: impl Into<String>) -> DriverError {
    DriverError::Failed {
        step,
        reason: reason.into(),
    }
}

fn unacceptable(image_id: &str, reason: impl Into<String>) -> DriverError {
    DriverError::ImageUnacceptable {
        image_id: image_id.to_string(),
        reason: reason.into(),
    }
}

/// A base image ready to back overlays.
#[derive(Debug, Clone)]
pub struct Base {
    pub path: PathBuf,
    /// `qcow2` or `raw`, as qemu-img confirmed it.
    pub format: String,
    pub virtual_size: u64,
}

/// The `_base` directory and the one-download-per-image locks.
pub struct BaseCache {
    dir: PathBuf,
    qemu_img: PathBuf,
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Run qemu-img; its stderr is the reason on failure.
pub async fn qemu_img(bin: &Path, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(bin)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if err.is_empty() {
            format!("qemu-img {} exited with {}", args.join(" "), out.status)
        } else {
            err
        })
    }
}

impl BaseCache {
    pub fn new(dir: PathBuf, qemu_img: PathBuf) -> Self {
        Self {
            dir,
            qemu_img,
            locks: Default::default(),
        }
    }

    /// The file name of an image's base (Nova names them by a hash of the image id too).
    pub fn base_path(&self, image_id: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(image_id.as_bytes()));
        self.dir.join(&digest[..40])
    }

    /// The base of `image_id`, downloaded and checked on first use.
    pub async fn ensure(&self, images: &dyn ImageSource, image_id: &str) -> Result<Base> {
        let lock = self
            .locks
            .lock()
            .entry(image_id.to_string())
            .or_default()
            .clone();
        let _one_download = lock.lock().await;
        let path = self.base_path(image_id);
        let meta = path.with_extension("format");
        if let Ok(format) = tokio::fs::read_to_string(&meta).await
            && path.exists()
        {
            touch(&path);
            let format = format.trim().to_string();
            let virtual_size = self.virtual_size(image_id, &path, &format).await?;
            return Ok(Base {
                path,
                format,
                virtual_size,
            });
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| failed("fetching the image", format!("{}: {e}", self.dir.display())))?;
        let part = path.with_extension("part");
        let started = std::time::Instant::now();
        let record = images.download(image_id, &part).await?;
        let r = self.check(&record, &part).await;
        if let Err(e) = r {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        let format = record.disk_format.clone();
        let virtual_size = self.virtual_size(image_id, &part, &format).await?;
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|e| failed("fetching the image", e.to_string()))?;
        tokio::fs::write(&meta, &format)
            .await
            .map_err(|e| failed("fetching the image", e.to_string()))?;
        tracing::info!(image = %image_id, format = %format, ms = started.elapsed().as_millis() as u64,
            base = %path.display(), "base image cached");
        Ok(Base {
            path,
            format,
            virtual_size,
        })
    }

    /// Checksum as the image service recorded it, then the data itself: the declared format,
    /// no backing file, and something a firmware can boot.
    async fn check(&self, record: &ImageRecord, file: &Path) -> Result<()> {
        let id = record.id.as_str();
        match record.disk_format.as_str() {
            "qcow2" | "raw" => {}
            other => {
                return Err(unacceptable(
                    id,
                    format!("disk_format {other} is not supported by the QEMU driver (qcow2, raw)"),
                ));
            }
        }
        let (md5, sha512) = hash_file(file)
            .await
            .map_err(|e| failed("fetching the image", e.to_string()))?;
        if let (Some("sha512"), Some(want)) = (
            record.os_hash_algo.as_deref(),
            record.os_hash_value.as_deref(),
        ) {
            if !want.eq_ignore_ascii_case(&sha512) {
                return Err(unacceptable(
                    id,
                    "the downloaded data does not match the image's os_hash_value",
                ));
            }
        } else if let Some(want) = record.checksum.as_deref()
            && !want.eq_ignore_ascii_case(&md5)
        {
            return Err(unacceptable(
                id,
                "the downloaded data does not match the image's checksum",
            ));
        }
        let path = file.to_string_lossy();
        let info = qemu_img(
            &self.qemu_img,
            &["info", "-f", &record.disk_format, "--output=json", &path],
        )
        .await
        .map_err(|e| unacceptable(id, e))?;
        let info: serde_json::Value = serde_json::from_str(&info)
            .map_err(|e| unacceptable(id, format!("qemu-img info: {e}")))?;
        // A backing file or external data file would let an image read host files.
        if info.get("backing-filename").is_some()
            || info.pointer("/format-specific/data/data-file").is_some()
        {
            return Err(unacceptable(
                id,
                "the image refers to a backing or data file, which is not allowed",
            ));
        }
        if record.disk_format == "raw" {
            let mut head = vec![0u8; 0x8006];
            let mut f = tokio::fs::File::open(file)
                .await
                .map_err(|e| failed("fetching the image", e.to_string()))?;
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(failed("fetching the image", e.to_string())),
                }
            }
            head.truncate(n);
            if !looks_bootable(&head) {
                return Err(unacceptable(
                    id,
                    "the data is not a bootable disk: no boot signature (0x55AA) in its first \
                     sector and no ISO 9660 volume",
                ));
            }
        }
        Ok(())
    }

    async fn virtual_size(&self, image_id: &str, path: &Path, format: &str) -> Result<u64> {
        let info = qemu_img(
            &self.qemu_img,
            &[
                "info",
                "-f",
                format,
                "--output=json",
                &path.to_string_lossy(),
            ],
        )
        .await
        .map_err(|e| unacceptable(image_id, e))?;
        let info: serde_json::Value = serde_json::from_str(&info)
            .map_err(|e| unacceptable(image_id, format!("qemu-img info: {e}")))?;
        Ok(info["virtual-size"].as_u64().unwrap_or(0))
    }

    /// Nova's image cache manager: bases in use are marked used now; a base no instance has
    /// used for `min_age` is deleted (so create/delete cycles keep a warm base).
    pub fn remove_unused(&self, in_use: &[PathBuf], min_age: std::time::Duration) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some() {
                continue;
            }
            if in_use.contains(&p) {
                touch(&p);
                continue;
            }
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if idle >= min_age {
                tracing::info!(base = %p.display(), idle_s = idle.as_secs(), "removing an unused base image");
                let _ = std::fs::remove_file(&p);
                let _ = std::fs::remove_file(p.with_extension("format"));
            }
        }
    }
}

/// Mark a base as used now (its mtime; the data is never written after it is cached).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// An MBR boot signature, or an ISO 9660 volume descriptor.
fn looks_bootable(head: &[u8]) -> bool {
    let mbr = head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA;
    let iso = head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001";
    mbr || iso
}

async fn hash_file(path: &Path) -> std::io::Result<(String, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut md5 = Md5::new();
        let mut sha = Sha512::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            sha.update(&buf[..n]);
        }
        Ok((hex::encode(md5.finalize()), hex::encode(sha.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The root disk: a qcow2 overlay of `root_gb` (at least the image's size) on the base.
pub async fn create_overlay(
    qemu_img_bin: &Path,
    base: &Base,
    disk: &Path,
    root_gb: u64,
    image_id: &str,
) -> Result<()> {
    if root_gb > 0 && base.virtual_size > root_gb * GIB {
        return Err(DriverError::Failed {
            step: "creating the root disk",
            reason: format!(
                "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image \
                 {image_id} is {} bytes.",
                root_gb * GIB,
                base.virtual_size
            ),
        });
    }
    let size = if root_gb > 0 {
        root_gb * GIB
    } else {
        base.virtual_size
    };
    let size = size.to_string();
    let b = base.path.to_string_lossy();
    let d = disk.to_string_lossy();
    qemu_img(
        qemu_img_bin,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            &base.format,
            "-b",
            &b,
            &d,
            &size,
        ],
    )
    .await
    .map_err(|e| failed("creating the root disk", e))?;
    Ok(())
}

/// Grow the root disk to `root_gb` (never shrinks).
pub async fn grow(qemu_img_bin: &Path, disk: &Path, root_gb: u64) -> Result<()> {
    let info = qemu_img(
        qemu_img_bin,
        &["info", "-U", "--output=json", &disk.to_string_lossy()],
    )
    .await
    .map_err(|e| failed("resizing the root disk", e))?;
    let current = serde_json::from_str::<serde_json::Value>(&info)
        .ok()
        .and_then(|v| v["virtual-size"].as_u64())
        .unwrap_or(0);
    if root_gb * GIB > current {
        qemu_img(
            qemu_img_bin,
            &[
                "resize",
                "-q",
                &disk.to_string_lossy(),
                &(root_gb * GIB).to_string(),
            ],
        )
        .await
        .map_err(|e| failed("resizing the root disk", e))?;
    }
    Ok(())
}

/// A sparse raw disk, formatted by `mkfs` (ext4 labelled `ephemeral0`, or swap) when the tool
/// exists; unformatted otherwise (the guest can still use it).
pub async fn create_formatted(path: &Path, bytes: u64, kind: &str) -> Result<()> {
    let f = tokio::fs::File::create(path)
        .await
        .map_err(|e| failed("creating the ephemeral disk", e.to_string()))?;
    f.set_len(bytes)
        .await
        .map_err(|e| failed("creating the ephemeral disk", e.to_string()))?;
    drop(f);
    let p = path.to_string_lossy();
    let (tool, args): (&str, Vec<&str>) = match kind {
        "swap" => ("mkswap", vec!["-L", "swap0", &p]),
        _ => ("mkfs.ext4", vec!["-q", "-F", "-L", "ephemeral0", &p]),
    };
    match Command::new(tool).args(&args).output().await {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            tracing::warn!(tool, disk = %p, stderr = %String::from_utf8_lossy(&o.stderr), "could not format a disk")
        }
        Err(e) => tracing::warn!(tool, error = %e, "could not format a disk"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bases_unused_for_the_minimum_age_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = BaseCache::new(tmp.path().to_path_buf(), "qemu-img".into());
        let day = std::time::Duration::from_secs(86400);
        let old = std::time::SystemTime::now() - 2 * day;
        for name in ["used", "idle-old", "idle-new"] {
            let p = tmp.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::write(p.with_extension("format"), b"qcow2").unwrap();
            if name != "idle-new" {
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(old).unwrap();
            }
        }
        cache.remove_unused(&[tmp.path().join("used")], day);
        assert!(tmp.path().join("used").exists());
        assert!(tmp.path().join("idle-new").exists());
        assert!(!tmp.path().join("idle-old").exists());
        assert!(!tmp.path().join("idle-old.format").exists());
        // the one in use was marked used now: it survives the next check too
        cache.remove_unused(&[], day);
        assert!(tmp.path().join("used").exists());
    }

    #[test]
    fn boot_signature_or_iso() {
        let mut mbr = vec![0u8; 512];
        assert!(!looks_bootable(&mbr));
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert!(looks_bootable(&mbr));
        let mut iso = vec![0u8; 0x8006];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert!(looks_bootable(&iso));
        assert!(!looks_bootable(b"short"));
    }
}
