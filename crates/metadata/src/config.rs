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
