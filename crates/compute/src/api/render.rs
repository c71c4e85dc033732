//! Servers, flavors and actions as Nova renders them, per microversion.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha224};

use super::Ctx;
use crate::model::*;

/// `2013-09-03T04:01:32Z` (created, updated).
pub fn iso(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2013-09-23T13:53:12.000000` (launched_at, action times: no zone, microseconds).
pub fn naive(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// The zone a server shows: its host's once scheduled, else the one it asked for.
pub fn zone_of(i: &Instance) -> String {
    i.host_availability_zone
        .clone()
        .or_else(|| i.availability_zone.clone())
        .unwrap_or_default()
}

/// Nova's hostId: sha224 of project id + host, empty without a host.
pub fn host_id(project_id: &str, host: Option<&str>) -> String {
    match host {
        Some(h) if !h.is_empty() => {
            let mut d = Sha224::new();
            d.update(project_id.as_bytes());
            d.update(h.as_bytes());
            hex::encode(d.finalize())
        }
        _ => String::new(),
    }
}

pub fn links(ctx: &Ctx, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/{collection}/{id}", ctx.base)},
        {"rel": "bookmark", "href": format!("{}/{collection}/{id}", ctx.bookmark)},
    ])
}

/// `addresses` from the network info (`{network label: [{addr, version, OS-EXT-IPS...}]}`).
pub(super) fn addresses(i: &Instance) -> Value {
    let mut out = serde_json::Map::new();
    for vif in i.network_info.as_array().into_iter().flatten() {
        let label = vif["network"]["label"]
            .as_str()
            .unwrap_or("network")
            .to_string();
        let mac = vif["address"].clone();
        let entry = out.entry(label).or_insert_with(|| json!([]));
        for subnet in vif["network"]["subnets"].as_array().into_iter().flatten() {
            for ip in subnet["ips"].as_array().into_iter().flatten() {
                let addr = ip["address"].as_str().unwrap_or_default();
                let version = if addr.contains(':') { 6 } else { 4 };
                if let Some(a) = entry.as_array_mut() {
                    a.push(json!({"addr": addr, "version": version,
                        "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac}));
                }
                for fip in ip["floating_ips"].as_array().into_iter().flatten() {
                    if let Some(a) = entry.as_array_mut() {
                        a.push(json!({"addr": fip["address"], "version": 4,
                            "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}));
                    }
                }
            }
        }
    }
    Value::Object(out)
}

pub fn flavor_ref(ctx: &Ctx, f: &Flavor) -> Value {
    if ctx.at(47) {
        let mut v = json!({
            "vcpus": f.vcpus, "ram": f.memory_mb, "disk": f.root_gb,
            "ephemeral": f.ephemeral_gb, "swap": f.swap, "original_name": f.name,
        });
        // Extra specs are shown to whom the flavor-extra-specs index policy allows; Nova's
        // default allows project readers.
        v["extra_specs"] = json!(f.extra_specs);
        v
    } else {
        json!({"id": f.flavorid, "links": [
            {"rel": "bookmark", "href": format!("{}/flavors/{}", ctx.bookmark, f.flavorid)}
        ]})
    }
}

/// The instance name on the hypervisor (Nova: `instance-%08x` of a row id; kumo has uuids).
pub fn instance_name(i: &Instance) -> String {
    format!("instance-{}", &i.uuid[..8])
}

/// The full server (detail and show).
pub fn server(ctx: &Ctx, i: &Instance, show: bool, server_groups: Option<Vec<String>>) -> Value {
    let admin = ctx.is_admin();
    let image = if i.image_ref.is_empty() {
        json!("")
    } else {
        json!({"id": i.image_ref, "links": [
            {"rel": "bookmark", "href": format!("{}/images/{}", ctx.bookmark, i.image_ref)}
        ]})
    };
    let mut s = json!({
        "id": i.uuid,
        "name": i.display_name,
        "status": i.status(),
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(&i.project_id, i.host.as_deref()),
        "image": image,
        "flavor": flavor_ref(ctx, &i.flavor),
        "created": iso(&i.created_at),
        "updated": iso(&i.updated_at),
        "addresses": addresses(i),
        "accessIPv4": i.access_ip_v4.clone().unwrap_or_default(),
        "accessIPv6": i.access_ip_v6.clone().unwrap_or_default(),
        "links": links(ctx, "servers", &i.uuid),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": zone_of(i),
        "config_drive": if i.config_drive { "True" } else { "" },
        "key_name": i.key_name,
        "OS-SRV-USG:launched_at": i.launched_at.as_ref().map(naive),
        "OS-SRV-USG:terminated_at": i.terminated_at.as_ref().map(naive),
        "OS-EXT-STS:task_state": i.task_state,
        "OS-EXT-STS:vm_state": i.vm_state,
        "OS-EXT-STS:power_state": i.power_state,
        "os-extended-volumes:volumes_attached": i.volume_attachments.iter().map(|a| {
            let mut v = json!({"id": a.volume_id});
            if ctx.at(3) {
                v["delete_on_termination"] = json!(a.delete_on_termination);
            }
            v
        }).collect::<Vec<_>>(),
    });
    if !i.security_groups.is_empty() && i.network_info.as_array().is_some_and(|a| !a.is_empty()) {
        s["security_groups"] = json!(
            i.security_groups
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    // Nova shows progress only in the statuses where something is under way or just done.
    if matches!(
        s["status"].as_str(),
        Some("ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING")
    ) {
        s["progress"] = json!(i.progress);
    }
    if let Some(f) = &i.fault
        && matches!(i.vm_state.as_str(), "error" | "deleted")
    {
        let mut fault = json!({"code": f.code, "message": f.message, "created": iso(&f.created)});
        if admin || f.code != 500 {
            fault["details"] = json!(f.details);
        }
        s["fault"] = fault;
    }
    if admin {
        s["OS-EXT-SRV-ATTR:host"] = json!(i.host);
        s["OS-EXT-SRV-ATTR:instance_name"] = json!(instance_name(i));
        s["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(i.node);
        if ctx.at(3) {
            s["OS-EXT-SRV-ATTR:reservation_id"] = json!(i.reservation_id);
            s["OS-EXT-SRV-ATTR:launch_index"] = json!(i.launch_index);
            s["OS-EXT-SRV-ATTR:hostname"] = json!(i.hostname);
            s["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            s["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            s["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            s["OS-EXT-SRV-ATTR:user_data"] = json!(i.user_data);
        }
        if ctx.at(16) {
            s["host_status"] = json!(if i.host.is_some() { "UP" } else { "" });
        }
    }
    if ctx.at(9) {
        s["locked"] = json!(i.locked);
    }
    if ctx.at(19) {
        s["description"] = json!(i.display_description);
    }
    if ctx.at(26) {
        s["tags"] = json!(i.tags);
    }
    if ctx.at(63) {
        s["trusted_image_certificates"] = Value::Null;
    }
    if show && ctx.at(71) {
        s["server_groups"] = json!(server_groups.unwrap_or_default());
    }
    s
}

/// The server in the answer of `PUT /servers/{id}` and of rebuild: below 2.75 Nova leaves out
/// the extended attributes (availability zone, config drive, usage dates, OS-EXT-STS,
/// OS-EXT-SRV-ATTR, host_status, volumes, security groups, the addresses' OS-EXT-IPS type and
/// MAC) and key_name unless `keypair` (rebuild from 2.54).
pub fn server_changed(
    ctx: &Ctx,
    i: &Instance,
    server_groups: Option<Vec<String>>,
    keypair: bool,
) -> Value {
    let mut s = server(ctx, i, true, server_groups);
    if !ctx.at(75)
        && let Some(o) = s.as_object_mut()
    {
        o.retain(|k, _| {
            !(k.starts_with("OS-EXT-")
                || k.starts_with("OS-SRV-USG:")
                || matches!(
                    k.as_str(),
                    "config_drive"
                        | "os-extended-volumes:volumes_attached"
                        | "security_groups"
                        | "host_status"
                )
                || (k == "key_name" && !keypair))
        });
        for ips in s["addresses"]
            .as_object_mut()
            .into_iter()
            .flat_map(|nets| nets.values_mut())
        {
            for ip in ips.as_array_mut().into_iter().flatten() {
                if let Some(o) = ip.as_object_mut() {
                    o.retain(|k, _| !k.starts_with("OS-EXT-IPS"));
                }
            }
        }
    }
    s
}

/// The short form of a list.
pub fn server_brief(ctx: &Ctx, i: &Instance) -> Value {
    json!({"id": i.uuid, "name": i.display_name, "links": links(ctx, "servers", &i.uuid)})
}

pub fn flavor(ctx: &Ctx, f: &Flavor, detail: bool) -> Value {
    let mut v = json!({
        "id": f.flavorid,
        "name": f.name,
        "links": links(ctx, "flavors", &f.flavorid),
    });
    if ctx.at(55) {
        v["description"] = json!(f.description);
    }
    if detail {
        v["ram"] = json!(f.memory_mb);
        v["disk"] = json!(f.root_gb);
        v["vcpus"] = json!(f.vcpus);
        v["OS-FLV-EXT-DATA:ephemeral"] = json!(f.ephemeral_gb);
        v["OS-FLV-DISABLED:disabled"] = json!(f.disabled);
        v["swap"] = if f.swap == 0 {
            json!("")
        } else {
            json!(f.swap)
        };
        v["rxtx_factor"] = json!(f.rxtx_factor);
        v["os-flavor-access:is_public"] = json!(f.is_public);
        if ctx.at(61) {
            v["extra_specs"] = json!(f.extra_specs);
        }
    }
    v
}

pub fn action(a: &InstanceAction, ctx: &Ctx) -> Value {
    let mut v = json!({
        "action": a.action,
        "instance_uuid": a.instance_uuid,
        "message": a.message,
        "project_id": a.project_id,
        "request_id": a.request_id,
        "start_time": naive(&a.start_time),
        "user_id": a.user_id,
    });
    if ctx.at(58) {
        v["updated_at"] = json!(naive(&a.updated_at));
    }
    v
}

pub fn event(e: &ActionEvent, ctx: &Ctx, project_id: &str, with_traceback: bool) -> Value {
    let mut v = json!({
        "event": e.event,
        "start_time": naive(&e.start_time),
        "finish_time": e.finish_time.as_ref().map(naive),
        "result": e.result,
    });
    if with_traceback {
        v["traceback"] = json!(e.traceback);
    }
    if ctx.at(62) {
        if ctx.is_admin() {
            v["host"] = json!(e.host);
        }
        v["hostId"] = json!(host_id(project_id, e.host.as_deref()));
    }
    v
}
