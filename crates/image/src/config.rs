//! The image service's options. Names are Glance's, so operators find them; the sections are
//! kumo's (`[image]` instead of Glance's `[DEFAULT]`, which kumo's services share).

use common::config::{Config, ConfigError, Opt};
use std::path::PathBuf;

pub static OPTS: &[Opt] = &[
    Opt {
        section: "image",
        name: "connection",
        default: "",
        help: "Database URL of the image service. Empty: [database] connection with $service = image.",
    },
    Opt {
        section: "image",
        name: "public_endpoint",
        default: "",
        help: "Base URL of the image API as clients reach it (e.g. http://cloud:5000/image). Empty: derived from each request's Host header.",
    },
    Opt {
        section: "image",
        name: "image_size_cap",
        default: "1099511627776",
        help: "Largest image data accepted, in bytes (413 above). Glance's default: 1 TiB.",
    },
    Opt {
        section: "image",
        name: "limit_param_default",
        default: "25",
        help: "Images (or tasks) per page when the request gives no limit.",
    },
    Opt {
        section: "image",
        name: "api_limit_max",
        default: "1000",
        help: "Largest page a list request may ask for.",
    },
    Opt {
        section: "image",
        name: "image_member_quota",
        default: "128",
        help: "Members an image may have (413 above). -1: unlimited.",
    },
    Opt {
        section: "image",
        name: "image_property_quota",
        default: "128",
        help: "Additional properties an image may have (413 above). -1: unlimited.",
    },
    Opt {
        section: "image",
        name: "image_tag_quota",
        default: "128",
        help: "Tags an image may have (413 above). -1: unlimited.",
    },
    Opt {
        section: "image",
        name: "enabled_import_methods",
        default: "glance-direct,web-download",
        help: "Interoperable image import methods offered (glance-direct, web-download).",
    },
    Opt {
        section: "image",
        name: "max_request_body_size",
        default: "65536",
        help: "Largest JSON request body of the image API, in bytes (image data is not limited by this).",
    },
    Opt {
        section: "image",
        name: "max_header_line",
        default: "16384",
        help: "Longest request header line accepted, in bytes (400 above), as Glance's server.",
    },
    Opt {
        section: "image",
        name: "task_time_to_live",
        default: "48",
        help: "Hours a finished task stays visible.",
    },
    Opt {
        section: "image",
        name: "policy_file",
        default: "$state_dir/image-policy.yaml",
        help: "Operator overrides of the image policy defaults (YAML or JSON); ignored if absent.",
    },
    Opt {
        section: "image",
        name: "enforce_scope",
        default: "true",
        help: "Deny image calls made with a token whose scope the policy does not list (project).",
    },
    Opt {
        section: "glance_store",
        name: "filesystem_store_datadir",
        default: "$state_dir/images",
        help: "Directory of the filesystem store (image data; staging/ holds glance-direct uploads).",
    },
    Opt {
        section: "glance_store",
        name: "store_id",
        default: "file",
        help: "Identifier of the one store, as /v2/info/stores and the image `stores` attribute show it.",
    },
    Opt {
        section: "image_format",
        name: "disk_formats",
        default: "ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop",
        help: "Disk formats images may declare.",
    },
    Opt {
        section: "image_format",
        name: "container_formats",
        default: "ami,ari,aki,bare,ovf,ova,docker,compressed",
        help: "Container formats images may declare.",
    },
    Opt {
        section: "image_format",
        name: "require_image_format_match",
        default: "true",
        help: "Inspect uploaded data (qemu-img info) and refuse data that does not match the image's disk_format, as Glance does.",
    },
    Opt {
        section: "image_format",
        name: "qemu_img",
        default: "qemu-img",
        help: "The qemu-img binary used to inspect image data.",
    },
    Opt {
        section: "import_filtering_opts",
        name: "allowed_schemes",
        default: "http,https",
        help: "URL schemes web-download may fetch from.",
    },
    Opt {
        section: "import_filtering_opts",
        name: "allowed_hosts",
        default: "",
        help: "Hosts web-download may fetch from (empty: any not disallowed).",
    },
    Opt {
        section: "import_filtering_opts",
        name: "disallowed_hosts",
        default: "",
        help: "Hosts web-download must not fetch from.",
    },
    Opt {
        section: "import_filtering_opts",
        name: "allowed_ports",
        default: "80,443",
        help: "Ports web-download may fetch from (empty: any not disallowed).",
    },
    Opt {
        section: "import_filtering_opts",
        name: "disallowed_ports",
        default: "",
        help: "Ports web-download must not fetch from.",
    },
];

/// Typed view of the options above.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub database_url: String,
    pub public_endpoint: Option<String>,
    pub image_size_cap: u64,
    pub limit_param_default: u64,
    pub api_limit_max: u64,
    pub image_member_quota: i64,
    pub image_property_quota: i64,
    pub image_tag_quota: i64,
    pub enabled_import_methods: Vec<String>,
    pub max_request_body_size: usize,
    pub max_header_line: usize,
    pub task_time_to_live_hours: i64,
    pub policy_file: PathBuf,
    pub enforce_scope: bool,
    pub datadir: PathBuf,
    pub store_id: String,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    pub require_image_format_match: bool,
    pub qemu_img: String,
    pub import_filter: ImportFilter,
}

/// Glance's `[import_filtering_opts]`: which URLs web-download may fetch.
#[derive(Debug, Clone, Default)]
pub struct ImportFilter {
    pub allowed_schemes: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    pub allowed_ports: Vec<u16>,
    pub disallowed_ports: Vec<u16>,
}

impl ImageConfig {
    /// Read the image options; `database_template` is `[database] connection`.
    pub fn from_config(c: &Config, database_template: &str) -> Result<Self, ConfigError> {
        let database_url = match c.get::<Option<String>>("image", "connection")? {
            Some(u) => u,
            None => database_template.replace("$service", "image"),
        };
        let list = |s: &str, n: &str| -> Result<Vec<String>, ConfigError> {
            Ok(c.get_str(s, n)?
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect())
        };
        let ports = |n: &str| -> Result<Vec<u16>, ConfigError> {
            list("import_filtering_opts", n)?
                .iter()
                .map(|p| {
                    p.parse::<u16>().map_err(|_| ConfigError::Invalid {
                        section: "import_filtering_opts".into(),
                        name: n.into(),
                        value: p.clone(),
                        expected: "a comma-separated list of port numbers",
                    })
                })
                .collect()
        };
        Ok(Self {
            database_url,
            public_endpoint: c
                .get::<Option<String>>("image", "public_endpoint")?
                .map(|s| s.trim_end_matches('/').to_string()),
            image_size_cap: c.get("image", "image_size_cap")?,
            limit_param_default: c.get("image", "limit_param_default")?,
            api_limit_max: c.get("image", "api_limit_max")?,
            image_member_quota: c.get("image", "image_member_quota")?,
            image_property_quota: c.get("image", "image_property_quota")?,
            image_tag_quota: c.get("image", "image_tag_quota")?,
            enabled_import_methods: list("image", "enabled_import_methods")?,
            max_request_body_size: c.get("image", "max_request_body_size")?,
            max_header_line: c.get("image", "max_header_line")?,
            task_time_to_live_hours: c.get("image", "task_time_to_live")?,
            policy_file: c.get_str("image", "policy_file")?.into(),
            enforce_scope: c.get("image", "enforce_scope")?,
            datadir: c
                .get_str("glance_store", "filesystem_store_datadir")?
                .into(),
            store_id: c.get_str("glance_store", "store_id")?,
            disk_formats: list("image_format", "disk_formats")?,
            container_formats: list("image_format", "container_formats")?,
            require_image_format_match: c.get("image_format", "require_image_format_match")?,
            qemu_img: c.get_str("image_format", "qemu_img")?,
            import_filter: ImportFilter {
                allowed_schemes: list("import_filtering_opts", "allowed_schemes")?,
                allowed_hosts: list("import_filtering_opts", "allowed_hosts")?,
                disallowed_hosts: list("import_filtering_opts", "disallowed_hosts")?,
                allowed_ports: ports("allowed_ports")?,
                disallowed_ports: ports("disallowed_ports")?,
            },
        })
    }

    /// Defaults, rooted at `state_dir` (tests and tools).
    pub fn defaults(state_dir: &std::path::Path) -> Self {
        let mut c = Config::new(state_dir);
        c.declare(OPTS);
        let template = format!("sqlite://{}/db/$service.sqlite", state_dir.display());
        match Self::from_config(&c, &template) {
            Ok(cfg) => cfg,
            Err(e) => panic!("image option defaults do not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_parse() {
        let d = tempfile::tempdir().unwrap();
        let c = super::ImageConfig::defaults(d.path());
        assert!(c.database_url.ends_with("/db/image.sqlite"));
        assert_eq!(c.import_filter.allowed_ports, vec![80, 443]);
        assert!(c.disk_formats.contains(&"qcow2".to_string()));
        assert!(c.datadir.ends_with("images"));
    }
}
