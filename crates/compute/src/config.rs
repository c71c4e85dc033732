//! Compute's options, named as nova.conf names them where Nova has the option.

use common::config::{Config, ConfigError, Opt};
use std::path::PathBuf;
use std::time::Duration;

pub static OPTS: &[Opt] = &[
    Opt {
        section: "compute_database",
        name: "connection",
        default: "",
        help: "Database URL of the compute service. Empty: [database] connection with $service = compute.",
    },
    Opt {
        section: "DEFAULT",
        name: "compute_driver",
        default: "fake",
        help: "Hypervisor driver of the compute agent: fake (guests are records; for tests and benches) or qemu.",
    },
    Opt {
        section: "DEFAULT",
        name: "default_availability_zone",
        default: "nova",
        help: "Availability zone of compute hosts that are in no aggregate with a zone.",
    },
    Opt {
        section: "DEFAULT",
        name: "default_schedule_zone",
        default: "",
        help: "Availability zone a server goes to when its request names none. Empty: any.",
    },
    Opt {
        section: "DEFAULT",
        name: "shutdown_timeout",
        default: "60",
        help: "Seconds a guest gets to power off cleanly before it is stopped hard.",
    },
    Opt {
        section: "DEFAULT",
        name: "sync_power_state_interval",
        default: "600",
        help: "Seconds between the compute agent's power-state syncs with the hypervisor. -1: never.",
    },
    Opt {
        section: "DEFAULT",
        name: "resize_confirm_window",
        default: "0",
        help: "Seconds after which a resize waiting for confirmation is confirmed automatically. 0: never.",
    },
    Opt {
        section: "compute",
        name: "network_hook",
        default: "neutron",
        help: "How builds get their ports: neutron (the network service's API from the catalog, as Nova) or none (servers get no ports; for clouds without a network service).",
    },
    Opt {
        section: "DEFAULT",
        name: "force_config_drive",
        default: "false",
        help: "Give every server a config drive, asked for or not (Nova's force_config_drive).",
    },
    Opt {
        section: "compute",
        name: "force_config_drive",
        default: "false",
        help: "The same as [DEFAULT] force_config_drive (either one set gives every server a config drive).",
    },
    Opt {
        section: "DEFAULT",
        name: "config_drive_format",
        default: "iso9660",
        help: "Config drive image format: iso9660 (made with genisoimage, as Nova) or vfat.",
    },
    Opt {
        section: "DEFAULT",
        name: "vif_plugging_timeout",
        default: "300",
        help: "Seconds a build waits for the network service's network-vif-plugged event of each port before spawning. 0: do not wait.",
    },
    Opt {
        section: "DEFAULT",
        name: "vif_plugging_is_fatal",
        default: "true",
        help: "Whether a port that is not plugged within vif_plugging_timeout fails the build (else the build goes on).",
    },
    Opt {
        section: "api",
        name: "max_limit",
        default: "1000",
        help: "Most items a list request returns in one page.",
    },
    Opt {
        section: "api",
        name: "policy_file",
        default: "$state_dir/compute-policy.yaml",
        help: "Operator overrides of compute's policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "api",
        name: "enforce_scope",
        default: "true",
        help: "Deny compute calls made with a token whose scope the policy does not list.",
    },
    Opt {
        section: "api",
        name: "max_request_body_size",
        default: "1048576",
        help: "Largest request body the compute API accepts, in bytes (413 above).",
    },
    Opt {
        section: "scheduler",
        name: "max_attempts",
        default: "3",
        help: "Hosts a build is tried on before the server goes to ERROR (the first host included).",
    },
    Opt {
        section: "scheduler",
        name: "max_placement_results",
        default: "1000",
        help: "Allocation candidates asked from placement per request.",
    },
    Opt {
        section: "filter_scheduler",
        name: "enabled_filters",
        default: "ComputeFilter,AvailabilityZoneFilter,ImagePropertiesFilter,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,SameHostFilter,DifferentHostFilter,AggregateInstanceExtraSpecsFilter",
        help: "Filters a host must pass, in order.",
    },
    Opt {
        section: "filter_scheduler",
        name: "ram_weight_multiplier",
        default: "1.0",
        help: "Weight of free RAM (negative: stack instead of spread).",
    },
    Opt {
        section: "filter_scheduler",
        name: "cpu_weight_multiplier",
        default: "1.0",
        help: "Weight of free vCPUs (negative: stack instead of spread).",
    },
    Opt {
        section: "filter_scheduler",
        name: "disk_weight_multiplier",
        default: "1.0",
        help: "Weight of free disk (negative: stack instead of spread).",
    },
    Opt {
        section: "filter_scheduler",
        name: "soft_affinity_weight_multiplier",
        default: "1.0",
        help: "Weight of soft-affinity server groups.",
    },
    Opt {
        section: "filter_scheduler",
        name: "soft_anti_affinity_weight_multiplier",
        default: "1.0",
        help: "Weight of soft-anti-affinity server groups.",
    },
    Opt {
        section: "DEFAULT",
        name: "cpu_allocation_ratio",
        default: "4.0",
        help: "Virtual CPUs per physical CPU that placement lets guests claim on this host.",
    },
    Opt {
        section: "DEFAULT",
        name: "ram_allocation_ratio",
        default: "1.0",
        help: "Guest RAM per MiB of host RAM that placement lets guests claim.",
    },
    Opt {
        section: "DEFAULT",
        name: "disk_allocation_ratio",
        default: "1.0",
        help: "Guest disk per GiB of the state directory's file system that placement lets guests claim.",
    },
    Opt {
        section: "DEFAULT",
        name: "reserved_host_memory_mb",
        default: "512",
        help: "Host RAM (MiB) kept from guests (at most half of the host's).",
    },
    Opt {
        section: "DEFAULT",
        name: "reserved_host_disk_mb",
        default: "0",
        help: "Disk (MiB) of the state directory's file system kept from guests.",
    },
    Opt {
        section: "DEFAULT",
        name: "reserved_host_cpus",
        default: "0",
        help: "Host CPUs kept from guests.",
    },
    Opt {
        section: "DEFAULT",
        name: "host",
        default: "",
        help: "This compute host's name (nova.conf's host): its nova-compute service, hypervisor and bus queue compute.<host>. Empty: the machine's hostname. Several `kumo serve compute` on one machine are different hosts when each has its own.",
    },
    Opt {
        section: "DEFAULT",
        name: "report_interval",
        default: "10",
        help: "Seconds between a service's heartbeats in the database (Nova's report_interval).",
    },
    Opt {
        section: "DEFAULT",
        name: "service_down_time",
        default: "60",
        help: "Seconds without a heartbeat after which a service is down: os-services shows it down, the scheduler stops choosing its host, evacuate accepts its servers (Nova's service_down_time).",
    },
    Opt {
        section: "DEFAULT",
        name: "my_ip",
        default: "127.0.0.1",
        help: "This host's address, as os-hypervisors shows it (host_ip).",
    },
    Opt {
        section: "qemu",
        name: "accel",
        default: "auto",
        help: "How guests' CPUs run: kvm, tcg, or auto (KVM only where vmx/svm is present and /dev/kvm is not the nested kvm_pvm module; TCG otherwise).",
    },
    Opt {
        section: "qemu",
        name: "binary",
        default: "qemu-system-x86_64",
        help: "The QEMU system emulator (Debian: qemu-system-x86).",
    },
    Opt {
        section: "qemu",
        name: "qemu_img",
        default: "qemu-img",
        help: "qemu-img of the same QEMU release (Debian: qemu-utils).",
    },
    Opt {
        section: "qemu",
        name: "console_log_max_bytes",
        default: "1048576",
        help: "Size above which a guest's console.log is rotated to console.log.0.",
    },
    Opt {
        section: "qemu",
        name: "pcie_root_ports",
        default: "8",
        help: "PCIe root ports each guest gets at launch (its disks use the first, hot-plug the others).",
    },
    Opt {
        section: "qemu",
        name: "live_migration_inbound_addr",
        default: "",
        help: "The address other hosts send a guest migrating here to (its memory and disks); empty: [network] local_ip when set, else [DEFAULT] my_ip (Nova's [libvirt] option).",
    },
    Opt {
        section: "qemu",
        name: "migration_port_range",
        default: "49152:49215",
        help: "Ports MIN:MAX a guest migrating here listens on for its memory stream and its disks' NBD exports.",
    },
    Opt {
        section: "qemu",
        name: "live_migration_completion_timeout",
        default: "800",
        help: "Seconds per GiB of guest memory and disk a live migration may take before it is cancelled and the guest stays where it was (Nova's [libvirt] option).",
    },
    Opt {
        section: "qemu",
        name: "volume_detach_timeout",
        default: "20",
        help: "Seconds a volume detach waits for the guest to release the disk before it fails (the volume then stays attached).",
    },
    Opt {
        section: "DEFAULT",
        name: "block_device_allocate_retries",
        default: "60",
        help: "Times a boot polls a volume it created until it is available (Nova's option).",
    },
    Opt {
        section: "DEFAULT",
        name: "block_device_allocate_retries_interval",
        default: "3",
        help: "Seconds between those polls (Nova's option).",
    },
    Opt {
        section: "image_cache",
        name: "remove_unused_original_minimum_age_seconds",
        default: "86400",
        help: "A cached base image (instances/_base) no instance used for this long is deleted.",
    },
    Opt {
        section: "image_cache",
        name: "manager_interval",
        default: "2400",
        help: "Seconds between checks of the base image cache.",
    },
    Opt {
        section: "fake",
        name: "hosts",
        default: "1",
        help: "Compute hosts the fake driver runs in this process (fake-1, fake-2, ...; one host is named after this machine).",
    },
    Opt {
        section: "fake",
        name: "vcpus",
        default: "1000",
        help: "vCPUs each fake host reports.",
    },
    Opt {
        section: "fake",
        name: "memory_mb",
        default: "800000",
        help: "RAM (MiB) each fake host reports.",
    },
    Opt {
        section: "fake",
        name: "local_gb",
        default: "600000",
        help: "Disk (GiB) each fake host reports.",
    },
    Opt {
        section: "fake",
        name: "spawn_delay_ms",
        default: "0",
        help: "Time a fake spawn takes, in milliseconds (to watch the BUILD steps).",
    },
    Opt {
        section: "fake",
        name: "fail_spawn_hosts",
        default: "",
        help: "Fake hosts whose spawns fail (comma-separated), to exercise rescheduling.",
    },
    Opt {
        section: "vnc",
        name: "enabled",
        default: "true",
        help: "Hand out VNC consoles (noVNC in the browser). false: the console APIs answer 400 \"Unavailable console type novnc.\", as Nova.",
    },
    Opt {
        section: "vnc",
        name: "novncproxy_base_url",
        default: "",
        help: "Public URL of noVNC's page, as nova.conf (e.g. https://cloud.example/novnc/vnc_lite.html); console URLs add ?path=<dir>/websockify?token=... to it. Empty: kumo's own /novnc/vnc_lite.html on the address the API was called at.",
    },
    Opt {
        section: "vnc",
        name: "novnc_path",
        default: "/usr/share/novnc",
        help: "Directory of noVNC's files served under /novnc/ (Debian: apt-get install novnc).",
    },
    Opt {
        section: "console",
        name: "allowed_origins",
        default: "",
        help: "Host names, besides the one the proxy is reached at, whose pages may open console websockets (the Origin header), comma-separated, as nova.conf.",
    },
    Opt {
        section: "consoleauth",
        name: "token_ttl",
        default: "600",
        help: "Seconds a console token stays valid before its first use (tokens are one-time).",
    },
    Opt {
        section: "quota",
        name: "instances",
        default: "10",
        help: "Default servers per project.",
    },
    Opt {
        section: "quota",
        name: "cores",
        default: "20",
        help: "Default vCPUs per project.",
    },
    Opt {
        section: "quota",
        name: "ram",
        default: "51200",
        help: "Default RAM (MiB) per project.",
    },
    Opt {
        section: "quota",
        name: "metadata_items",
        default: "128",
        help: "Metadata items per server.",
    },
    Opt {
        section: "quota",
        name: "key_pairs",
        default: "100",
        help: "Key pairs per user.",
    },
    Opt {
        section: "quota",
        name: "server_groups",
        default: "10",
        help: "Server groups per project.",
    },
    Opt {
        section: "quota",
        name: "server_group_members",
        default: "10",
        help: "Servers per server group.",
    },
    Opt {
        section: "quota",
        name: "injected_files",
        default: "5",
        help: "Injected files per server (API < 2.57).",
    },
    Opt {
        section: "quota",
        name: "injected_file_content_bytes",
        default: "10240",
        help: "Bytes per injected file.",
    },
    Opt {
        section: "quota",
        name: "injected_file_path_length",
        default: "255",
        help: "Characters per injected file path.",
    },
    Opt {
        section: "upgrade_levels",
        name: "compute",
        default: "auto",
        help: "Highest version of the messages sent to compute agents (Nova's [upgrade_levels] compute): auto (what the oldest nova-compute in the database serves, from its service version: a rolling upgrade needs no setting) or a MAJOR.MINOR pin.",
    },
];

/// Typed view of the options above.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    pub database_url: String,
    pub state_dir: PathBuf,
    pub compute_driver: String,
    pub default_availability_zone: String,
    pub default_schedule_zone: Option<String>,
    pub shutdown_timeout: Duration,
    /// `[compute] network_hook`: `neutron` or `none`.
    pub network_hook: String,
    /// `[DEFAULT] vif_plugging_timeout`; None: do not wait.
    pub vif_plugging_timeout: Option<Duration>,
    pub vif_plugging_is_fatal: bool,
    pub force_config_drive: bool,
    pub config_drive_format: metadata::config_drive::Format,
    /// `[metadata]`: what the config drive shows (host name domain, vendor data).
    pub metadata: metadata::tree::Settings,
    pub sync_power_state_interval: Option<Duration>,
    pub max_limit: usize,
    pub policy_file: PathBuf,
    pub enforce_scope: bool,
    pub max_request_body_size: usize,
    pub max_attempts: u32,
    pub max_placement_results: u32,
    pub enabled_filters: Vec<String>,
    pub ram_weight_multiplier: f64,
    pub cpu_weight_multiplier: f64,
    pub disk_weight_multiplier: f64,
    pub soft_affinity_weight_multiplier: f64,
    pub soft_anti_affinity_weight_multiplier: f64,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub reserved_host_memory_mb: u64,
    pub reserved_host_disk_mb: u64,
    pub reserved_host_cpus: u32,
    pub my_ip: String,
    /// `[DEFAULT] host`, the machine's hostname when empty.
    pub host: String,
    /// `[DEFAULT] report_interval`: between heartbeats.
    pub report_interval: Duration,
    /// `[DEFAULT] service_down_time` in seconds.
    pub service_down_time: i64,
    pub qemu_accel: String,
    pub qemu_binary: PathBuf,
    pub qemu_img: PathBuf,
    pub qemu_console_log_max_bytes: u64,
    pub qemu_pcie_root_ports: u32,
    /// `[qemu] live_migration_inbound_addr`, resolved (never empty).
    pub live_migration_inbound_addr: String,
    pub qemu_migration_ports: std::ops::RangeInclusive<u16>,
    /// `[qemu] live_migration_completion_timeout`: seconds per GiB.
    pub live_migration_completion_timeout: u64,
    pub volume_detach_timeout: Duration,
    pub block_device_allocate_retries: u32,
    pub block_device_allocate_retries_interval: Duration,
    pub unused_base_min_age: Duration,
    pub image_cache_interval: Duration,
    pub fake_hosts: u32,
    pub fake_vcpus: u32,
    pub fake_memory_mb: u64,
    pub fake_local_gb: u64,
    pub fake_spawn_delay: Duration,
    pub fake_fail_spawn_hosts: Vec<String>,
    /// Default quota limits (resource name as the API spells it -> limit).
    pub quota_defaults: Vec<(&'static str, i64)>,
    pub vnc_enabled: bool,
    /// `[vnc] novncproxy_base_url`; None: kumo's own `/novnc/vnc_lite.html`.
    pub novncproxy_base_url: Option<String>,
    pub novnc_path: PathBuf,
    pub console_token_ttl: Duration,
    /// `[console] allowed_origins`.
    pub console_allowed_origins: Vec<String>,
    /// `[upgrade_levels] compute`.
    pub upgrade_levels_compute: crate::upgrade::UpgradeLevel,
}

/// Quota resources and their `[quota]` option names.
pub const QUOTA_RESOURCES: &[(&str, &str)] = &[
    ("instances", "instances"),
    ("cores", "cores"),
    ("ram", "ram"),
    ("metadata_items", "metadata_items"),
    ("key_pairs", "key_pairs"),
    ("server_groups", "server_groups"),
    ("server_group_members", "server_group_members"),
    ("injected_files", "injected_files"),
    ("injected_file_content_bytes", "injected_file_content_bytes"),
    ("injected_file_path_bytes", "injected_file_path_length"),
];

impl ComputeConfig {
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let database_url = match c.get::<Option<String>>("compute_database", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "compute"),
        };
        let list = |s: &str, n: &str| -> Result<Vec<String>, ConfigError> {
            Ok(c.get_str(s, n)?
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect())
        };
        let sync: i64 = c.get("DEFAULT", "sync_power_state_interval")?;
        let mut quota_defaults = Vec::new();
        for (resource, opt) in QUOTA_RESOURCES {
            quota_defaults.push((*resource, c.get::<i64>("quota", opt)?));
        }
        Ok(Self {
            database_url,
            state_dir: c.state_dir().to_path_buf(),
            compute_driver: c.get_str("DEFAULT", "compute_driver")?,
            default_availability_zone: c.get_str("DEFAULT", "default_availability_zone")?,
            default_schedule_zone: c.get::<Option<String>>("DEFAULT", "default_schedule_zone")?,
            shutdown_timeout: Duration::from_secs(c.get("DEFAULT", "shutdown_timeout")?),
            network_hook: c.get_str("compute", "network_hook")?,
            vif_plugging_timeout: Some(Duration::from_secs(
                c.get::<u64>("DEFAULT", "vif_plugging_timeout")?,
            ))
            .filter(|d| !d.is_zero()),
            vif_plugging_is_fatal: c.get("DEFAULT", "vif_plugging_is_fatal")?,
            force_config_drive: c.get::<bool>("DEFAULT", "force_config_drive")?
                || c.get::<bool>("compute", "force_config_drive")?,
            config_drive_format: {
                let v = c.get_str("DEFAULT", "config_drive_format")?;
                v.parse().map_err(|_| ConfigError::Invalid {
                    section: "DEFAULT".into(),
                    name: "config_drive_format".into(),
                    value: v.clone(),
                    expected: "iso9660 or vfat",
                })?
            },
            metadata: metadata::config::settings(c).map_err(|e| ConfigError::Invalid {
                section: "metadata".into(),
                name: "vendordata_jsonfile_path".into(),
                value: e,
                expected: "a readable JSON file",
            })?,
            sync_power_state_interval: (sync > 0).then(|| Duration::from_secs(sync as u64)),
            max_limit: c.get("api", "max_limit")?,
            policy_file: PathBuf::from(c.get_str("api", "policy_file")?),
            enforce_scope: c.get("api", "enforce_scope")?,
            max_request_body_size: c.get("api", "max_request_body_size")?,
            max_attempts: c.get::<u32>("scheduler", "max_attempts")?.max(1),
            max_placement_results: c.get("scheduler", "max_placement_results")?,
            enabled_filters: list("filter_scheduler", "enabled_filters")?,
            ram_weight_multiplier: c.get("filter_scheduler", "ram_weight_multiplier")?,
            cpu_weight_multiplier: c.get("filter_scheduler", "cpu_weight_multiplier")?,
            disk_weight_multiplier: c.get("filter_scheduler", "disk_weight_multiplier")?,
            soft_affinity_weight_multiplier: c
                .get("filter_scheduler", "soft_affinity_weight_multiplier")?,
            soft_anti_affinity_weight_multiplier: c
                .get("filter_scheduler", "soft_anti_affinity_weight_multiplier")?,
            cpu_allocation_ratio: c.get("DEFAULT", "cpu_allocation_ratio")?,
            ram_allocation_ratio: c.get("DEFAULT", "ram_allocation_ratio")?,
            disk_allocation_ratio: c.get("DEFAULT", "disk_allocation_ratio")?,
            reserved_host_memory_mb: c.get("DEFAULT", "reserved_host_memory_mb")?,
            reserved_host_disk_mb: c.get("DEFAULT", "reserved_host_disk_mb")?,
            reserved_host_cpus: c.get("DEFAULT", "reserved_host_cpus")?,
            my_ip: c.get_str("DEFAULT", "my_ip")?,
            host: c
                .get::<Option<String>>("DEFAULT", "host")?
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(crate::roles::this_host),
            report_interval: Duration::from_secs(
                c.get::<u64>("DEFAULT", "report_interval")?.max(1),
            ),
            service_down_time: c.get::<i64>("DEFAULT", "service_down_time")?.max(1),
            qemu_accel: c.get_str("qemu", "accel")?,
            qemu_binary: PathBuf::from(c.get_str("qemu", "binary")?),
            qemu_img: PathBuf::from(c.get_str("qemu", "qemu_img")?),
            qemu_console_log_max_bytes: c.get("qemu", "console_log_max_bytes")?,
            qemu_pcie_root_ports: c.get::<u32>("qemu", "pcie_root_ports")?.clamp(2, 30),
            live_migration_inbound_addr: {
                let set = c.get_str("qemu", "live_migration_inbound_addr")?;
                let local_ip = c
                    .get::<Option<String>>("network", "local_ip")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                [set, local_ip, c.get_str("DEFAULT", "my_ip")?]
                    .into_iter()
                    .map(|a| a.trim().to_string())
                    .find(|a| !a.is_empty())
                    .unwrap_or_else(|| "127.0.0.1".into())
            },
            qemu_migration_ports: {
                let r = c.get_str("qemu", "migration_port_range")?;
                let bad = || ConfigError::Invalid {
                    section: "qemu".into(),
                    name: "migration_port_range".into(),
                    value: r.clone(),
                    expected: "MIN:MAX ports, 0 < MIN <= MAX",
                };
                let (a, b) = r.split_once(':').ok_or_else(bad)?;
                let (a, b): (u16, u16) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a == 0 || a > b {
                    return Err(bad());
                }
                a..=b
            },
            live_migration_completion_timeout: c
                .get::<u64>("qemu", "live_migration_completion_timeout")?
                .max(1),
            volume_detach_timeout: Duration::from_secs(
                c.get::<u64>("qemu", "volume_detach_timeout")?.max(1),
            ),
            block_device_allocate_retries: c
                .get::<u32>("DEFAULT", "block_device_allocate_retries")?
                .max(1),
            block_device_allocate_retries_interval: Duration::from_secs(
                c.get::<u64>("DEFAULT", "block_device_allocate_retries_interval")?,
            ),
            unused_base_min_age: Duration::from_secs(
                c.get("image_cache", "remove_unused_original_minimum_age_seconds")?,
            ),
            image_cache_interval: Duration::from_secs(
                c.get::<u64>("image_cache", "manager_interval")?.max(15),
            ),
            fake_hosts: c.get::<u32>("fake", "hosts")?.max(1),
            fake_vcpus: c.get("fake", "vcpus")?,
            fake_memory_mb: c.get("fake", "memory_mb")?,
            fake_local_gb: c.get("fake", "local_gb")?,
            fake_spawn_delay: Duration::from_millis(c.get("fake", "spawn_delay_ms")?),
            fake_fail_spawn_hosts: list("fake", "fail_spawn_hosts")?,
            quota_defaults,
            vnc_enabled: c.get("vnc", "enabled")?,
            novncproxy_base_url: c.get::<Option<String>>("vnc", "novncproxy_base_url")?,
            novnc_path: PathBuf::from(c.get_str("vnc", "novnc_path")?),
            console_token_ttl: Duration::from_secs(c.get("consoleauth", "token_ttl")?),
            console_allowed_origins: list("console", "allowed_origins")?,
            upgrade_levels_compute: {
                let v = c.get_str("upgrade_levels", "compute")?;
                v.parse().map_err(|_| ConfigError::Invalid {
                    section: "upgrade_levels".into(),
                    name: "compute".into(),
                    value: v.clone(),
                    expected: "auto or MAJOR.MINOR",
                })?
            },
        })
    }
}
