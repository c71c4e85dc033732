//! The metadata trees as Nova serves them (nova/api/metadata/base.py): which paths exist for
//! which version, what each file holds, and how directories are listed. Pure: the caller
//! gathers an [`InstanceFacts`] and the [`Settings`]; the answer is bytes and a content type.

use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{Value, json};

use crate::ec2;
use crate::facts::InstanceFacts;

/// The OpenStack metadata versions, oldest first (`latest` is the last one).
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
];
const GRIZZLY: &str = "2013-04-04";
const HAVANA: &str = "2013-10-17";
const LIBERTY: &str = "2015-10-15";
const NEWTON_ONE: &str = "2016-06-30";
const NEWTON_TWO: &str = "2016-10-06";
const VICTORIA: &str = "2020-10-14";

pub const META_DATA: &str = "meta_data.json";
pub const USER_DATA: &str = "user_data";
pub const NETWORK_DATA: &str = "network_data.json";
pub const VENDOR_DATA: &str = "vendor_data.json";
pub const VENDOR_DATA2: &str = "vendor_data2.json";
pub const PASSWORD: &str = "password";

/// Deployment settings that shape the answers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Appended to the host name (`[metadata] dhcp_domain`, Nova's `novalocal`; empty: none).
    pub dhcp_domain: String,
    /// The static vendor data (`vendor_data.json`, and `static` in `vendor_data2.json`).
    pub vendor_data: Value,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dhcp_domain: "novalocal".into(),
            vendor_data: json!({}),
        }
    }
}

/// One answer of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A directory: one entry per line, `text/plain`.
    Listing(Vec<String>),
    Json(Vec<u8>),
    Text(Vec<u8>),
}

impl Answer {
    pub fn content_type(&self) -> &'static str {
        match self {
            Answer::Json(_) => "application/json",
            _ => "text/plain; charset=UTF-8",
        }
    }
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Answer::Listing(lines) => lines.join("\n").into_bytes(),
            Answer::Json(b) | Answer::Text(b) => b,
        }
    }
}

/// `path` normalised as POSIX does (`//`, `.` and `..` resolved), split into its names.
pub fn tokens(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for t in path.split('/') {
        match t {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            t => out.push(t),
        }
    }
    out
}

pub(crate) fn hostname(facts: &InstanceFacts, s: &Settings) -> String {
    if s.dhcp_domain.is_empty() {
        facts.hostname.clone()
    } else {
        format!("{}.{}", facts.hostname, s.dhcp_domain)
    }
}

fn at_least(required: &str, version: &str) -> bool {
    let idx = |v: &str| OPENSTACK_VERSIONS.iter().position(|x| *x == v);
    matches!((idx(version), idx(required)), (Some(a), Some(b)) if a >= b)
}

/// The answer for `path` (`None`: 404). `today` (`YYYY-MM-DD`) hides future versions from the
/// OpenStack listing, as Nova does.
pub fn lookup(facts: &InstanceFacts, s: &Settings, path: &str, today: &str) -> Option<Answer> {
    let mut toks = tokens(path);
    if toks
        .first()
        .is_none_or(|t| *t != "ec2" && *t != "openstack")
    {
        toks.insert(0, "ec2");
    }
    if toks.len() == 1 {
        let mut versions: Vec<String> = if toks[0] == "openstack" {
            OPENSTACK_VERSIONS
                .iter()
                .filter(|v| **v <= today)
                .map(|v| v.to_string())
                .collect()
        } else {
            ec2::VERSIONS.iter().map(|v| v.to_string()).collect()
        };
        versions.push("latest".into());
        return Some(Answer::Listing(versions));
    }
    if toks[0] == "openstack" {
        openstack_item(facts, s, &toks[1..])
    } else {
        ec2::item(facts, s, &toks[1..])
    }
}

fn openstack_version(v: &str) -> Option<&'static str> {
    if v == "latest" {
        return OPENSTACK_VERSIONS.last().copied();
    }
    OPENSTACK_VERSIONS.iter().copied().find(|x| *x == v)
}

fn openstack_item(facts: &InstanceFacts, s: &Settings, toks: &[&str]) -> Option<Answer> {
    // No injected files: `content/` has nothing (and no listing).
    if toks[0] == "content" {
        return None;
    }
    let version = openstack_version(toks[0])?;
    if toks.len() == 1 {
        return Some(Answer::Listing(files_of(facts, version)));
    }
    match toks[1..].join("/").as_str() {
        META_DATA => Some(Answer::Json(json_bytes(&meta_data(facts, s, version)))),
        USER_DATA => facts.user_data.clone().map(Answer::Text),
        NETWORK_DATA => Some(Answer::Json(json_bytes(&crate::network_data::render(
            &facts.network_info,
        )))),
        PASSWORD if at_least(GRIZZLY, version) => {
            Some(Answer::Text(facts.password.clone().into_bytes()))
        }
        VENDOR_DATA if at_least(HAVANA, version) => Some(Answer::Json(json_bytes(&s.vendor_data))),
        VENDOR_DATA2 if at_least(NEWTON_TWO, version) => {
            Some(Answer::Json(json_bytes(&json!({"static": s.vendor_data}))))
        }
        _ => None,
    }
}

/// What `/openstack/<version>` lists.
pub fn files_of(facts: &InstanceFacts, version: &str) -> Vec<String> {
    let version = openstack_version(version).unwrap_or(version);
    let mut out = vec![META_DATA.to_string()];
    if facts.user_data.is_some() {
        out.push(USER_DATA.into());
    }
    if at_least(GRIZZLY, version) {
        out.push(PASSWORD.into());
    }
    if at_least(HAVANA, version) {
        out.push(VENDOR_DATA.into());
    }
    if at_least(LIBERTY, version) {
        out.push(NETWORK_DATA.into());
    }
    if at_least(NEWTON_TWO, version) {
        out.push(VENDOR_DATA2.into());
    }
    out
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// `meta_data.json` of one version.
pub fn meta_data(facts: &InstanceFacts, s: &Settings, version: &str) -> Value {
    let mut md = serde_json::Map::new();
    md.insert("uuid".into(), json!(facts.uuid));
    if !facts.meta.is_empty() {
        md.insert("meta".into(), json!(facts.meta));
    }
    if let Some(k) = &facts.key {
        md.insert("public_keys".into(), json!({ k.name.clone(): k.data }));
        md.insert(
            "keys".into(),
            json!([{"name": k.name, "type": k.kind, "data": k.data}]),
        );
    }
    md.insert("hostname".into(), json!(hostname(facts, s)));
    md.insert("name".into(), json!(facts.name));
    md.insert("launch_index".into(), json!(facts.launch_index));
    md.insert("availability_zone".into(), json!(facts.availability_zone));
    if at_least(GRIZZLY, version) {
        let mut seed = [0u8; 512];
        rand::thread_rng().fill_bytes(&mut seed);
        md.insert(
            "random_seed".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(seed)),
        );
    }
    if at_least(LIBERTY, version) {
        md.insert("project_id".into(), json!(facts.project_id));
    }
    if at_least(NEWTON_ONE, version) {
        // Only tagged devices are listed; kumo records no device tags yet.
        md.insert("devices".into(), json!([]));
    }
    if at_least(VICTORIA, version) {
        md.insert("dedicated_cpus".into(), json!([]));
    }
    Value::Object(md)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::facts::PublicKey;

    pub(crate) fn facts() -> InstanceFacts {
        InstanceFacts {
            uuid: "8d5b5a3c-0000-4000-8000-000000000001".into(),
            name: "web 1".into(),
            hostname: "web-1".into(),
            project_id: "p1".into(),
            availability_zone: Some("nova".into()),
            launch_index: 0,
            reservation_id: "r-abc".into(),
            flavor_name: "m1.tiny".into(),
            image_id: "0f0e0d0c-0000-4000-8000-000000000002".into(),
            key: Some(PublicKey {
                name: "k".into(),
                kind: "ssh".into(),
                data: "ssh-ed25519 AAAA k".into(),
            }),
            user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
            network_info: json!([{
                "id": "p1", "address": "fa:16:3e:00:00:01", "type": "bridge", "devname": "tapp1",
                "network": {"id": "n1", "meta": {"mtu": 1450}, "subnets": [{
                    "cidr": "10.0.0.0/24", "version": 4, "gateway": {"address": "10.0.0.1"},
                    "dns": [], "routes": [], "ips": [{"address": "10.0.0.5"}],
                    "meta": {"enable_dhcp": true}}]}}]),
            security_groups: vec!["default".into()],
            floating_ips: vec!["172.24.4.10".into()],
            ..Default::default()
        }
    }

    fn get(path: &str) -> Option<Answer> {
        lookup(&facts(), &Settings::default(), path, "2026-12-06")
    }

    fn json_of(a: Option<Answer>) -> Value {
        match a {
            Some(Answer::Json(b)) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            other => panic!("not json: {other:?}"),
        }
    }

    #[test]
    fn paths_normalise_as_posix() {
        assert_eq!(
            tokens("//openstack/./latest/../latest/"),
            vec!["openstack", "latest"]
        );
        assert_eq!(tokens("/"), Vec::<&str>::new());
    }

    #[test]
    fn openstack_listing_hides_future_versions() {
        let a = lookup(&facts(), &Settings::default(), "/openstack", "2016-01-01");
        assert_eq!(
            a,
            Some(Answer::Listing(
                [
                    "2012-08-10",
                    "2013-04-04",
                    "2013-10-17",
                    "2015-10-15",
                    "latest"
                ]
                .map(String::from)
                .to_vec()
            ))
        );
    }

    #[test]
    fn version_directory_lists_its_files() {
        assert_eq!(
            get("/openstack/2012-08-10"),
            Some(Answer::Listing(vec![
                "meta_data.json".into(),
                "user_data".into()
            ]))
        );
        let Some(Answer::Listing(latest)) = get("/openstack/latest/") else {
            panic!("no listing")
        };
        assert_eq!(
            latest,
            [
                "meta_data.json",
                "user_data",
                "password",
                "vendor_data.json",
                "network_data.json",
                "vendor_data2.json"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn meta_data_has_nova_fields_by_version() {
        let md = json_of(get("/openstack/latest/meta_data.json"));
        assert_eq!(md["uuid"], "8d5b5a3c-0000-4000-8000-000000000001");
        assert_eq!(md["hostname"], "web-1.novalocal");
        assert_eq!(md["name"], "web 1");
        assert_eq!(md["public_keys"]["k"], "ssh-ed25519 AAAA k");
        assert_eq!(md["keys"][0]["type"], "ssh");
        assert_eq!(md["project_id"], "p1");
        assert_eq!(md["devices"], json!([]));
        assert!(md["random_seed"].as_str().is_some_and(|s| s.len() > 600));
        let old = json_of(get("/openstack/2012-08-10/meta_data.json"));
        assert!(old.get("random_seed").is_none() && old.get("project_id").is_none());
    }

    #[test]
    fn user_data_is_raw_and_missing_user_data_is_404() {
        assert_eq!(
            get("/openstack/latest/user_data"),
            Some(Answer::Text(b"#!/bin/sh\necho hi\n".to_vec()))
        );
        let mut f = facts();
        f.user_data = None;
        let s = Settings::default();
        assert_eq!(
            lookup(&f, &s, "/openstack/latest/user_data", "2026-01-01"),
            None
        );
        assert_eq!(
            lookup(&f, &s, "/openstack/1999-01-01/meta_data.json", "2026-01-01"),
            None
        );
        assert_eq!(lookup(&f, &s, "/openstack/latest/nope", "2026-01-01"), None);
        assert_eq!(lookup(&f, &s, "/openstack/content", "2026-01-01"), None);
    }

    #[test]
    fn vendor_data_by_version() {
        assert_eq!(get("/openstack/2013-04-04/vendor_data.json"), None);
        assert_eq!(
            json_of(get("/openstack/latest/vendor_data.json")),
            json!({})
        );
        assert_eq!(
            json_of(get("/openstack/latest/vendor_data2.json")),
            json!({"static": {}})
        );
    }
}
