//! The config drive: the metadata trees on a read-only disk labelled `config-2`, for guests
//! without a metadata service (a network without DHCP, or no route to 169.254.169.254).
//! The files are Nova's (`metadata_for_config_drive`); the ISO 9660 image is made with
//! genisoimage and the flags Nova passes it; vfat (64 MiB, as Nova) with mtools, no mounts.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::ec2;
use crate::facts::InstanceFacts;
use crate::tree::{self, Settings};

/// The volume label cloud-init and kumo-tiny look for.
pub const LABEL: &str = "config-2";
/// EC2 versions Nova leaves out of the drive (`config_drive_skip_versions`).
const SKIPPED_EC2: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
];
const VFAT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Iso9660,
    Vfat,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iso9660" => Ok(Format::Iso9660),
            "vfat" => Ok(Format::Vfat),
            other => Err(format!(
                "config drive format `{other}`: expected iso9660 or vfat"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "{tool} failed ({status}): {stderr}; install genisoimage (iso9660) or mtools and dosfstools (vfat)"
    )]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriveError {
    let what = what.into();
    move |source| DriveError::Io { what, source }
}

/// Every file of the drive, by path relative to its root, as Nova lays them out.
pub fn files(facts: &InstanceFacts, s: &Settings) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for v in ec2::VERSIONS.iter().chain(["latest"].iter()) {
        if !SKIPPED_EC2.contains(v) {
            out.extend(ec2::config_drive_files(facts, s, v));
        }
    }
    let today = "9999-12-31";
    for v in tree::OPENSTACK_VERSIONS.iter().chain(["latest"].iter()) {
        let listed = tree::files_of(facts, v);
        for name in listed.iter().filter(|n| n.as_str() != tree::PASSWORD) {
            let path = format!("openstack/{v}/{name}");
            if let Some(a) = tree::lookup(facts, s, &path, today) {
                out.push((path, a.into_bytes()));
            }
        }
    }
    out
}

async fn run(tool: &str, args: &[&str]) -> Result<(), DriveError> {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io(format!("running {tool}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(DriveError::Tool {
        tool: tool.into(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Writes the drive image for `facts` to `dest` (replaced atomically).
pub async fn build(
    facts: &InstanceFacts,
    s: &Settings,
    format: Format,
    dest: &Path,
) -> Result<(), DriveError> {
    write_image(&files(facts, s), format, dest).await
}

/// Writes a drive image holding `files` to `dest` (replaced atomically).
pub async fn write_image(
    files: &[(String, Vec<u8>)],
    format: Format,
    dest: &Path,
) -> Result<(), DriveError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".config-drive-")
        .tempdir_in(parent)
        .map_err(io(format!("making a directory in {}", parent.display())))?;
    let root = staging.path().join("root");
    for (path, data) in files {
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(DriveError::Io {
                what: format!("config drive path `{path}`"),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let file = root.join(path);
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        tokio::fs::write(&file, data)
            .await
            .map_err(io(format!("writing {}", file.display())))?;
    }
    let image: PathBuf = staging.path().join("disk");
    let image_s = image.to_string_lossy().into_owned();
    let root_s = root.to_string_lossy().into_owned();
    match format {
        Format::Iso9660 => {
            let publisher = format!("kumo {}", env!("CARGO_PKG_VERSION"));
            run(
                "genisoimage",
                &[
                    "-o",
                    &image_s,
                    "-ldots",
                    "-allow-lowercase",
                    "-allow-multidot",
                    "-l",
                    "-publisher",
                    &publisher,
                    "-quiet",
                    "-J",
                    "-r",
                    "-V",
                    LABEL,
                    &root_s,
                ],
            )
            .await?;
        }
        Format::Vfat => {
            let kib = (VFAT_BYTES / 1024).to_string();
            run("mkfs.vfat", &["-C", "-n", LABEL, &image_s, &kib]).await?;
            let mut entries = tokio::fs::read_dir(&root)
                .await
                .map_err(io(format!("reading {}", root.display())))?;
            let mut args = vec!["-s".to_string(), "-i".into(), image_s.clone()];
            while let Some(e) = entries
                .next_entry()
                .await
                .map_err(io(format!("reading {}", root.display())))?
            {
                args.push(e.path().to_string_lossy().into_owned());
            }
            args.push("::/".into());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run("mcopy", &refs).await?;
        }
    }
    tokio::fs::rename(&image, dest)
        .await
        .map_err(io(format!("moving the drive to {}", dest.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::facts;

    #[test]
    fn drive_holds_novas_paths() {
        let f = files(&facts(), &Settings::default());
        let paths: Vec<&str> = f.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "ec2/2009-04-04/meta-data.json",
            "ec2/latest/meta-data.json",
            "ec2/latest/user-data",
            "openstack/2012-08-10/meta_data.json",
            "openstack/2012-08-10/user_data",
            "openstack/latest/meta_data.json",
            "openstack/latest/network_data.json",
            "openstack/latest/vendor_data2.json",
            "openstack/2015-10-15/network_data.json",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(
            !paths
                .iter()
                .any(|p| p.contains("1.0") || p.ends_with("password"))
        );
        assert!(!paths.contains(&"openstack/2013-04-04/network_data.json"));
        let md = f
            .iter()
            .find(|(p, _)| p == "ec2/latest/meta-data.json")
            .map(|(_, d)| serde_json::from_slice::<serde_json::Value>(d).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(md["public-keys"]["0"]["openssh-key"], "ssh-ed25519 AAAA k");
        assert_eq!(md["hostname"], "web-1.novalocal");
    }

    #[tokio::test]
    async fn iso_is_labelled_config_2() {
        if which("genisoimage").is_none() {
            eprintln!("genisoimage not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("disk.config");
        build(&facts(), &Settings::default(), Format::Iso9660, &dest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&dest).unwrap_or_default();
        // The primary volume descriptor at 32 KiB: type 1, "CD001", the volume id at +40.
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert_eq!(&bytes[0x8028..0x8030], b"config-2");
    }

    fn which(tool: &str) -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.is_file())
        })
    }
}
