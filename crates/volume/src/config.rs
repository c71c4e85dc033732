//! The volume service's options. Backends are configured as cinder.conf does it: the
//! `[volume] enabled_backends` list names sections, each with `volume_driver` and
//! `volume_backend_name`.

use common::config::{Config, ConfigError, Opt};
use std::path::PathBuf;

use crate::target::{TargetConfig, TargetProtocol};

pub static OPTS: &[Opt] = &[
    Opt {
        section: "volume",
        name: "connection",
        default: "",
        help: "Database URL of the volume service. Empty: [database] connection with $service = volume.",
    },
    Opt {
        section: "volume",
        name: "public_endpoint",
        default: "",
        help: "Base URL of the volume API as clients reach it (e.g. http://cloud:5000/volume). Empty: derived from each request's Host header.",
    },
    Opt {
        section: "volume",
        name: "enabled_backends",
        default: "file",
        help: "Backend sections to serve (cinder.conf's enabled_backends); each section has volume_driver (file) and volume_backend_name.",
    },
    Opt {
        section: "volume",
        name: "default_volume_type",
        default: "__DEFAULT__",
        help: "Volume type of volumes created without one (made at start if missing).",
    },
    Opt {
        section: "volume",
        name: "storage_availability_zone",
        default: "nova",
        help: "Availability zone of this host's volumes.",
    },
    Opt {
        section: "volume",
        name: "host",
        default: "kumo",
        help: "Host name in os-vol-host-attr:host (host@backend#pool) and os-services.",
    },
    Opt {
        section: "volume",
        name: "policy_file",
        default: "$state_dir/volume-policy.yaml",
        help: "Operator overrides of the volume policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "volume",
        name: "osapi_max_limit",
        default: "1000",
        help: "Largest page a list request returns.",
    },
    Opt {
        section: "volume",
        name: "qemu_img",
        default: "qemu-img",
        help: "The qemu-img binary the file backend runs.",
    },
    Opt {
        section: "volume",
        name: "quota_volumes",
        default: "10",
        help: "Default per-project number of volumes (-1: unlimited).",
    },
    Opt {
        section: "volume",
        name: "quota_snapshots",
        default: "10",
        help: "Default per-project number of snapshots (-1: unlimited).",
    },
    Opt {
        section: "volume",
        name: "quota_gigabytes",
        default: "1000",
        help: "Default per-project GiB of volumes and snapshots (-1: unlimited).",
    },
    Opt {
        section: "volume",
        name: "per_volume_size_limit",
        default: "-1",
        help: "Default largest volume, in GiB (-1: unlimited).",
    },
    Opt {
        section: "volume",
        name: "target_protocol",
        default: "auto",
        help: "How attachments reach a volume (Cinder's target_protocol): auto (the volume's file for a connector on this host, `[DEFAULT] host`; an NBD export by qemu-storage-daemon for a connector on another host) or nbd (an NBD export for every connector).",
    },
    Opt {
        section: "volume",
        name: "target_ip_address",
        default: "",
        help: "The address NBD exports listen on, which compute hosts reach (Cinder's target_ip_address). Empty: [network] local_ip, else [DEFAULT] my_ip.",
    },
    Opt {
        section: "volume",
        name: "target_port",
        default: "10809",
        help: "The first port of NBD exports (Cinder's target_port); each exported volume takes the lowest free port from there.",
    },
    Opt {
        section: "volume",
        name: "qemu_storage_daemon",
        default: "qemu-storage-daemon",
        help: "The qemu-storage-daemon binary that serves NBD exports.",
    },
    Opt {
        section: "file",
        name: "volume_driver",
        default: "file",
        help: "Driver of the backend section [file]: file (qcow2 files).",
    },
    Opt {
        section: "file",
        name: "volume_backend_name",
        default: "file",
        help: "volume_backend_name of this backend (volume types select it with this extra spec).",
    },
    Opt {
        section: "file",
        name: "volumes_dir",
        default: "$state_dir/volumes",
        help: "Directory of the file backend's volume and snapshot files.",
    },
];

/// One `[backend]` section.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub section: String,
    pub driver: String,
    pub backend_name: String,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct VolumeConfig {
    pub database_url: String,
    pub public_endpoint: Option<String>,
    pub backends: Vec<BackendConfig>,
    pub default_volume_type: String,
    pub availability_zone: String,
    pub host: String,
    pub policy_file: PathBuf,
    pub max_limit: usize,
    pub qemu_img: String,
    pub quota_volumes: i64,
    pub quota_snapshots: i64,
    pub quota_gigabytes: i64,
    pub per_volume_size_limit: i64,
    /// NBD exports for attachments of other hosts.
    pub target: TargetConfig,
}

/// An option another crate declares (compute's `[DEFAULT] host`, the network's `local_ip`):
/// `None` when it is empty or when this configuration did not declare it (the volume
/// service's own tests declare only its options).
fn foreign(c: &Config, section: &str, name: &str) -> Result<Option<String>, ConfigError> {
    match c.get_str(section, name) {
        Ok(v) => Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty())),
        Err(ConfigError::Undeclared { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The machine's hostname: the host name compute and the network agent use when
/// `[DEFAULT] host` is not set.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn target_config(c: &Config) -> Result<TargetConfig, ConfigError> {
    let protocol = match c.get_str("volume", "target_protocol")?.trim() {
        "auto" => TargetProtocol::Auto,
        "nbd" => TargetProtocol::Nbd,
        other => {
            return Err(ConfigError::Invalid {
                section: "volume".into(),
                name: "target_protocol".into(),
                value: other.into(),
                expected: "auto or nbd",
            });
        }
    };
    let local_ip = foreign(c, "network", "local_ip")?;
    let address = match c.get::<Option<String>>("volume", "target_ip_address")? {
        Some(a) if !a.trim().is_empty() => a.trim().to_string(),
        _ => match &local_ip {
            Some(ip) => ip.clone(),
            None => foreign(c, "DEFAULT", "my_ip")?.unwrap_or_else(|| "127.0.0.1".into()),
        },
    };
    // The host's data plane namespace holds local_ip (the underlay): daemons listen there.
    let dataplane = foreign(c, "network", "dataplane")?.unwrap_or_default();
    let namespace = (local_ip.is_some() && dataplane != "none").then(|| {
        let prefix = foreign(c, "network", "namespace_prefix")
            .ok()
            .flatten()
            .unwrap_or_default();
        format!("{prefix}kumo-host")
    });
    Ok(TargetConfig {
        protocol,
        own_host: foreign(c, "DEFAULT", "host")?.unwrap_or_else(hostname),
        address,
        first_port: c.get("volume", "target_port")?,
        namespace,
        daemon: c.get_str("volume", "qemu_storage_daemon")?,
        dir: c.state_dir().join("volume-exports"),
    })
}

impl VolumeConfig {
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let database_url = match c.get::<Option<String>>("volume", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "volume"),
        };
        let mut backends = Vec::new();
        for section in c
            .get_str("volume", "enabled_backends")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // Sections other than the declared [file] fall back to the [file] defaults.
            let get = |name: &str, default: String| -> String {
                c.get::<Option<String>>(section, name)
                    .ok()
                    .flatten()
                    .unwrap_or(default)
            };
            let file_dir = c.get_str("file", "volumes_dir")?;
            let dir = if section == "file" {
                file_dir
            } else {
                get("volumes_dir", format!("{file_dir}/{section}"))
            };
            backends.push(BackendConfig {
                section: section.to_string(),
                driver: get("volume_driver", "file".into()),
                backend_name: get("volume_backend_name", section.to_string()),
                dir: dir.into(),
            });
        }
        Ok(Self {
            database_url,
            public_endpoint: c
                .get::<Option<String>>("volume", "public_endpoint")?
                .map(|s| s.trim_end_matches('/').to_string()),
            backends,
            default_volume_type: c.get_str("volume", "default_volume_type")?,
            availability_zone: c.get_str("volume", "storage_availability_zone")?,
            host: c.get_str("volume", "host")?,
            policy_file: c.get_str("volume", "policy_file")?.into(),
            max_limit: c.get("volume", "osapi_max_limit")?,
            qemu_img: c.get_str("volume", "qemu_img")?,
            quota_volumes: c.get("volume", "quota_volumes")?,
            quota_snapshots: c.get("volume", "quota_snapshots")?,
            quota_gigabytes: c.get("volume", "quota_gigabytes")?,
            per_volume_size_limit: c.get("volume", "per_volume_size_limit")?,
            target: target_config(c)?,
        })
    }

    /// Defaults, rooted at `state_dir` (tests and tools).
    pub fn defaults(state_dir: &std::path::Path) -> Self {
        let mut c = Config::new(state_dir);
        c.declare(OPTS);
        let template = format!("sqlite://{}/db/$service.sqlite", state_dir.display());
        match Self::from_config(&c, &template) {
            Ok(cfg) => cfg,
            Err(e) => panic!("volume option defaults do not parse: {e}"),
        }
    }
}
