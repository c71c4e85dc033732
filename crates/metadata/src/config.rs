//! `[metadata]`: how the metadata service and the config drive render what they serve.

use common::config::{Config, ConfigError, Opt};
use serde_json::Value;

use crate::tree::Settings;

pub static OPTS: &[Opt] = &[
    Opt {
        section: "metadata",
        name: "dhcp_domain",
        default: "novalocal",
        help: "Domain appended to instances' host names in the metadata (Nova's [api] dhcp_domain); empty: the short name.",
    },
    Opt {
        section: "metadata",
        name: "vendordata_jsonfile_path",
        default: "",
        help: "A JSON file served as vendor_data.json (and as `static` in vendor_data2.json); empty: {}.",
    },
    Opt {
        section: "metadata",
        name: "listen",
        default: "0.0.0.0:8775",
        help: "Where the metadata role of a process of a split cloud (`kumo serve metadata`, nova-api-metadata) listens for the requests the network agents' metadata proxies forward (HOST:PORT; Nova's metadata_listen and metadata_listen_port). All-in-one, the namespace listeners answer directly and nothing listens here.",
    },
    Opt {
        section: "metadata",
        name: "nova_metadata_host",
        default: "",
        help: "Where a network agent whose process does not run the metadata role forwards the guests' metadata requests (Neutron's metadata agent option): the host of the `kumo serve metadata` process. Required then.",
    },
    Opt {
        section: "metadata",
        name: "nova_metadata_port",
        default: "8775",
        help: "The port of nova_metadata_host.",
    },
    Opt {
        section: "neutron",
        name: "metadata_proxy_shared_secret",
        default: "",
        help: "The secret the network agents' metadata proxies sign the instance id with (X-Instance-ID-Signature, hex HMAC-SHA256) and the metadata role checks; the same in both processes' configs. Required by `kumo serve metadata` and by a proxying network agent.",
    },
];

/// The settings from the configuration; a vendor data file that is unreadable or not JSON is
/// an error at start, with the path in the message.
pub fn settings(c: &Config) -> Result<Settings, String> {
    let get = |name: &str| -> Result<String, String> {
        c.get_str("metadata", name)
            .map_err(|e: ConfigError| e.to_string())
    };
    let path = get("vendordata_jsonfile_path")?;
    let vendor_data = if path.is_empty() {
        serde_json::json!({})
    } else {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("[metadata] vendordata_jsonfile_path = {path}: {e}"))?;
        serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("[metadata] vendordata_jsonfile_path = {path}: not JSON: {e}"))?
    };
    Ok(Settings {
        dhcp_domain: get("dhcp_domain")?,
        vendor_data,
    })
}

/// `[neutron] metadata_proxy_shared_secret`, refused when empty: `who` needs it (`kumo serve
/// metadata` checks the signatures, a proxying network agent makes them).
pub fn shared_secret(c: &Config, who: &str) -> Result<String, String> {
    let s = c
        .get_str("neutron", "metadata_proxy_shared_secret")
        .map_err(|e| e.to_string())?;
    let s = s.trim();
    if s.is_empty() {
        return Err(format!(
            "{who} needs [neutron] metadata_proxy_shared_secret: the secret the network agents' metadata proxies sign the instance id with and the metadata service checks (set the same one in the config of the processes that run network-agent and metadata)"
        ));
    }
    Ok(s.to_string())
}

/// Where a proxying network agent forwards (`[metadata] nova_metadata_host`/`_port`), refused
/// when the host is unset.
pub fn upstream(c: &Config) -> Result<(String, u16), String> {
    let host = c
        .get_str("metadata", "nova_metadata_host")
        .map_err(|e| e.to_string())?;
    let host = host.trim();
    if host.is_empty() {
        return Err(
            "the network agent of this process serves the guests' metadata requests but the metadata role runs in another process: set [metadata] nova_metadata_host (and nova_metadata_port, 8775) to where `kumo serve metadata` listens ([metadata] listen there), or run the metadata role in this process (`kumo serve ... network-agent metadata`)".into(),
        );
    }
    let port = c
        .get::<u16>("metadata", "nova_metadata_port")
        .map_err(|e| e.to_string())?;
    Ok((host.to_string(), port))
}
