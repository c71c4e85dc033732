//! Volume backends behind one trait. `file`: one qcow2 file per volume under the backend's
//! directory (`volume-<id>.qcow2`); a snapshot is an independent qcow2 copy
//! (`snapshot-<id>.qcow2`, made with `qemu-img convert -U` so an attached volume can be read),
//! so deleting a volume never breaks its snapshots nor the volumes made from them.

use std::path::{Path, PathBuf};
use tokio::process::Command;

use crate::config::BackendConfig;

const GIB: u64 = 1 << 30;

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `volume_backend_name`.
    fn name(&self) -> &str;
    /// Disk format of the volumes (`qcow2` or `raw`), as connection info announces it.
    fn format(&self) -> &'static str;
    /// Where a volume's data is (file or block device).
    fn volume_path(&self, id: &str) -> PathBuf;
    fn has_volume(&self, id: &str) -> bool;
    async fn create(&self, id: &str, size_gb: i64) -> std::io::Result<()>;
    /// A new volume from a data file of `format` (image data), grown to `size_gb`.
    async fn create_from_file(
        &self,
        id: &str,
        src: &Path,
        format: Option<&str>,
        size_gb: i64,
    ) -> std::io::Result<()>;
    async fn clone_volume(&self, id: &str, src_id: &str, size_gb: i64) -> std::io::Result<()>;
    async fn create_snapshot(&self, snap_id: &str, volume_id: &str) -> std::io::Result<()>;
    async fn create_from_snapshot(
        &self,
        id: &str,
        snap_id: &str,
        size_gb: i64,
    ) -> std::io::Result<()>;
    async fn delete(&self, id: &str) -> std::io::Result<()>;
    async fn delete_snapshot(&self, snap_id: &str) -> std::io::Result<()>;
    async fn extend(&self, id: &str, size_gb: i64) -> std::io::Result<()>;
    /// The volume's data converted to `format` into `dest`.
    async fn export(&self, id: &str, dest: &Path, format: &str) -> std::io::Result<()>;
    /// A scratch directory on the backend's file system (downloads, exports).
    fn scratch_dir(&self) -> PathBuf;
}

pub fn open(cfg: &BackendConfig, qemu_img: &str) -> std::io::Result<Box<dyn Backend>> {
    match cfg.driver.as_str() {
        "file" => Ok(Box::new(FileBackend::open(cfg, qemu_img)?)),
        other => Err(std::io::Error::other(format!(
            "[{}] volume_driver = {other}: unknown driver (file)",
            cfg.section
        ))),
    }
}

pub struct FileBackend {
    name: String,
    dir: PathBuf,
    qemu_img: String,
}

impl FileBackend {
    pub fn open(cfg: &BackendConfig, qemu_img: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        std::fs::create_dir_all(cfg.dir.join("tmp"))?;
        Ok(Self {
            name: cfg.backend_name.clone(),
            dir: cfg.dir.clone(),
            qemu_img: qemu_img.to_string(),
        })
    }

    fn snapshot_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{id}.qcow2"))
    }

    fn partial(&self, p: &Path) -> PathBuf {
        let mut s = p.as_os_str().to_owned();
        s.push(".part");
        PathBuf::from(s)
    }

    async fn qemu_img(&self, args: &[&str]) -> std::io::Result<()> {
        let out = Command::new(&self.qemu_img)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "qemu-img {}: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Convert `src` into a new volume file, grown to `size_gb` (written to a partial file,
    /// renamed when complete: a volume file exists only whole).
    async fn convert_into(
        &self,
        id: &str,
        src: &Path,
        src_format: Option<&str>,
        size_gb: i64,
    ) -> std::io::Result<()> {
        let dest = self.volume_path(id);
        let part = self.partial(&dest);
        let src_s = src.to_string_lossy().to_string();
        let part_s = part.to_string_lossy().to_string();
        let mut args = vec!["convert", "-U", "-O", "qcow2"];
        if let Some(f) = src_format {
            args.extend(["-f", f]);
        }
        args.push(&src_s);
        args.push(&part_s);
        if let Err(e) = self.qemu_img(&args).await {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        let size = format!("{}", size_gb as u64 * GIB);
        // Only grow: a source larger than the volume was refused before.
        let virt = virtual_size(&self.qemu_img, &part).await.unwrap_or(0);
        if virt < size_gb as u64 * GIB
            && let Err(e) = self.qemu_img(&["resize", "-q", &part_s, &size]).await
        {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, &dest)
    }
}

/// `qemu-img info`'s virtual size of a file.
pub async fn virtual_size(qemu_img: &str, p: &Path) -> std::io::Result<u64> {
    let out = Command::new(qemu_img)
        .args(["info", "-U", "--output=json"])
        .arg(p)
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(std::io::Error::other)?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| std::io::Error::other("qemu-img info: no virtual-size"))
}

#[async_trait::async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn format(&self) -> &'static str {
        "qcow2"
    }
    fn volume_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("volume-{id}.qcow2"))
    }
    fn has_volume(&self, id: &str) -> bool {
        self.volume_path(id).exists()
    }
    fn scratch_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    async fn create(&self, id: &str, size_gb: i64) -> std::io::Result<()> {
        let dest = self.volume_path(id);
        let part = self.partial(&dest);
        let part_s = part.to_string_lossy().to_string();
        let size = format!("{}", size_gb as u64 * GIB);
        if let Err(e) = self
            .qemu_img(&["create", "-q", "-f", "qcow2", &part_s, &size])
            .await
        {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, &dest)
    }

    async fn create_from_file(
        &self,
        id: &str,
        src: &Path,
        format: Option<&str>,
        size_gb: i64,
    ) -> std::io::Result<()> {
        self.convert_into(id, src, format, size_gb).await
    }

    async fn clone_volume(&self, id: &str, src_id: &str, size_gb: i64) -> std::io::Result<()> {
        let src = self.volume_path(src_id);
        self.convert_into(id, &src, Some("qcow2"), size_gb).await
    }

    async fn create_snapshot(&self, snap_id: &str, volume_id: &str) -> std::io::Result<()> {
        let dest = self.snapshot_path(snap_id);
        let part = self.partial(&dest);
        let src = self.volume_path(volume_id).to_string_lossy().to_string();
        let part_s = part.to_string_lossy().to_string();
        if let Err(e) = self
            .qemu_img(&["convert", "-U", "-f", "qcow2", "-O", "qcow2", &src, &part_s])
            .await
        {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, &dest)
    }

    async fn create_from_snapshot(
        &self,
        id: &str,
        snap_id: &str,
        size_gb: i64,
    ) -> std::io::Result<()> {
        let src = self.snapshot_path(snap_id);
        self.convert_into(id, &src, Some("qcow2"), size_gb).await
    }

    async fn delete(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.volume_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn delete_snapshot(&self, snap_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.snapshot_path(snap_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn extend(&self, id: &str, size_gb: i64) -> std::io::Result<()> {
        let p = self.volume_path(id).to_string_lossy().to_string();
        let size = format!("{}", size_gb as u64 * GIB);
        self.qemu_img(&["resize", "-q", &p, &size]).await
    }

    async fn export(&self, id: &str, dest: &Path, format: &str) -> std::io::Result<()> {
        let src = self.volume_path(id).to_string_lossy().to_string();
        let d = dest.to_string_lossy().to_string();
        self.qemu_img(&["convert", "-U", "-f", "qcow2", "-O", format, &src, &d])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[tokio::test]
    async fn snapshot_survives_its_volume() {
        if !have_qemu_img() {
            eprintln!("no qemu-img: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let cfg = BackendConfig {
            section: "file".into(),
            driver: "file".into(),
            backend_name: "file".into(),
            dir: d.path().to_path_buf(),
        };
        let b = FileBackend::open(&cfg, "qemu-img").unwrap();
        b.create("v1", 1).await.unwrap();
        assert_eq!(
            virtual_size("qemu-img", &b.volume_path("v1"))
                .await
                .unwrap(),
            GIB
        );
        b.create_snapshot("s1", "v1").await.unwrap();
        b.delete("v1").await.unwrap();
        assert!(!b.has_volume("v1"));
        b.create_from_snapshot("v2", "s1", 2).await.unwrap();
        assert_eq!(
            virtual_size("qemu-img", &b.volume_path("v2"))
                .await
                .unwrap(),
            2 * GIB
        );
        b.extend("v2", 3).await.unwrap();
        assert_eq!(
            virtual_size("qemu-img", &b.volume_path("v2"))
                .await
                .unwrap(),
            3 * GIB
        );
        b.delete_snapshot("s1").await.unwrap();
        b.delete("v2").await.unwrap();
    }
}
