//! `network_data.json`, rendered from Nova's network_info as Nova's `get_network_metadata`
//! does: one link per VIF that has subnets, one network per VIF and IP version (`ipv4_dhcp`
//! when the subnet has DHCP, else the address, netmask, routes and DNS of a static
//! configuration), and the DNS servers as services.

use ipnet::IpNet;
use serde_json::{Value, json};
use std::net::IpAddr;

/// VIF types Nova shows as they are in `links[].type` (others show as `phy`).
const EXPOSED_VIF_TYPES: &[&str] = &[
    "bridge",
    "dvs",
    "hw_veb",
    "hyperv",
    "ovs",
    "tap",
    "vhostuser",
    "vif",
];

pub fn render(network_info: &Value) -> Value {
    let vifs = match network_info.as_array() {
        Some(v) if !v.is_empty() => v,
        _ => return json!({}),
    };
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut services: Vec<Value> = Vec::new();
    let mut link_num = 0usize;
    let mut net_num = 0usize;
    for vif in vifs {
        let subnets = match vif["network"]["subnets"].as_array() {
            Some(s) if !s.is_empty() => s,
            _ => continue,
        };
        let v4 = subnets.iter().find(|s| s["version"] == 4);
        let v6 = subnets.iter().find(|s| s["version"] == 6);
        let ifc = link_num;
        link_num += 1;
        if v4.is_none() && v6.is_none() {
            continue;
        }
        let link = link_of(vif, ifc);
        let link_id = link["id"].clone();
        links.push(link);
        for (version, subnet) in [(4u8, v4), (6u8, v6)] {
            let Some(subnet) = subnet else { continue };
            if subnet["ips"].as_array().is_none_or(|ips| ips.is_empty()) {
                continue;
            }
            networks.push(network_of(vif, subnet, version, net_num, &link_id));
            net_num += 1;
            for dns in dns_services(subnet) {
                if !services.contains(&dns) {
                    services.push(dns);
                }
            }
        }
    }
    json!({"links": links, "networks": networks, "services": services})
}

fn has_dhcp(subnet: &Value) -> bool {
    subnet["meta"]["enable_dhcp"] == true || !subnet["meta"]["dhcp_server"].is_null()
}

fn link_of(vif: &Value, ifc: usize) -> Value {
    let id = vif["devname"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("interface{ifc}"));
    let vif_type = vif["type"].as_str().unwrap_or_default();
    let kind = if EXPOSED_VIF_TYPES.contains(&vif_type) {
        vif_type
    } else {
        "phy"
    };
    // A DHCP server hands out the MTU itself.
    let subnets = vif["network"]["subnets"].as_array();
    let mtu = if subnets.into_iter().flatten().any(has_dhcp) {
        Value::Null
    } else {
        vif["network"]["meta"]["mtu"].clone()
    };
    json!({
        "id": id,
        "vif_id": vif["id"],
        "type": kind,
        "mtu": mtu,
        "ethernet_mac_address": vif["address"],
    })
}

fn dns_services(subnet: &Value) -> Vec<Value> {
    subnet["dns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["address"].as_str())
        .map(|a| json!({"type": "dns", "address": a}))
        .collect()
}

fn netmask_of(cidr: &str) -> Option<(IpAddr, IpAddr)> {
    let net: IpNet = cidr.parse().ok()?;
    Some((net.network(), net.netmask()))
}

fn network_of(vif: &Value, subnet: &Value, version: u8, num: usize, link: &Value) -> Value {
    let id = format!("network{num}");
    let network_id = vif["network"]["id"].clone();
    let mode = subnet["meta"]["ipv6_address_mode"].as_str();
    if mode.is_none() && has_dhcp(subnet) {
        return json!({
            "id": id, "type": format!("ipv{version}_dhcp"), "link": link, "network_id": network_id,
        });
    }
    let kind = match mode {
        Some(m) => format!("ipv{version}_{m}"),
        None => format!("ipv{version}"),
    };
    let address = subnet["ips"][0]["address"].clone();
    let netmask = subnet["cidr"]
        .as_str()
        .and_then(netmask_of)
        .map(|(_, m)| m.to_string());
    let mut routes = Vec::new();
    if let Some(gw) = subnet["gateway"]["address"].as_str() {
        let any = if version == 4 { "0.0.0.0" } else { "::" };
        routes.push(json!({"network": any, "netmask": any, "gateway": gw}));
    }
    for r in subnet["routes"].as_array().into_iter().flatten() {
        if let Some((net, mask)) = r["cidr"].as_str().and_then(netmask_of) {
            routes.push(json!({
                "network": net.to_string(), "netmask": mask.to_string(),
                "gateway": r["gateway"]["address"],
            }));
        }
    }
    json!({
        "id": id,
        "type": kind,
        "link": link,
        "ip_address": address,
        "netmask": netmask,
        "routes": routes,
        "network_id": network_id,
        "services": dns_services(subnet),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vif(dhcp: bool) -> Value {
        json!([{
            "id": "p1", "address": "fa:16:3e:00:00:01", "type": "bridge", "devname": "tapp1",
            "network": {"id": "n1", "meta": {"mtu": 1450}, "subnets": [{
                "id": "s1", "cidr": "10.0.0.0/24", "version": 4,
                "gateway": {"address": "10.0.0.1"},
                "dns": [{"address": "8.8.8.8"}],
                "routes": [{"cidr": "192.168.0.0/16", "gateway": {"address": "10.0.0.254"}}],
                "ips": [{"address": "10.0.0.5"}],
                "meta": {"enable_dhcp": dhcp},
            }]},
        }])
    }

    #[test]
    fn dhcp_subnet_is_ipv4_dhcp_and_link_has_no_mtu() {
        let d = render(&vif(true));
        assert_eq!(d["links"][0]["id"], "tapp1");
        assert_eq!(d["links"][0]["type"], "bridge");
        assert!(d["links"][0]["mtu"].is_null());
        assert_eq!(
            d["networks"][0],
            json!({"id": "network0", "type": "ipv4_dhcp", "link": "tapp1", "network_id": "n1"})
        );
        assert_eq!(
            d["services"],
            json!([{"type": "dns", "address": "8.8.8.8"}])
        );
    }

    #[test]
    fn static_subnet_has_address_routes_and_dns() {
        let d = render(&vif(false));
        let n = &d["networks"][0];
        assert_eq!(d["links"][0]["mtu"], 1450);
        assert_eq!(n["type"], "ipv4");
        assert_eq!(n["ip_address"], "10.0.0.5");
        assert_eq!(n["netmask"], "255.255.255.0");
        assert_eq!(
            n["routes"],
            json!([
                {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
                {"network": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"},
            ])
        );
        assert_eq!(
            n["services"],
            json!([{"type": "dns", "address": "8.8.8.8"}])
        );
    }

    #[test]
    fn no_vifs_is_an_empty_object() {
        assert_eq!(render(&json!([])), json!({}));
        assert_eq!(render(&Value::Null), json!({}));
    }
}
