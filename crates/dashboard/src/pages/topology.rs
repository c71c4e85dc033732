//! The network topology as a picture: external networks, routers, the project's networks and
//! instances in four columns, linked by router gateways, router interfaces and instance ports;
//! an instance shows its floating IPs. Drawn here as SVG from five list calls (no script).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::render;
use crate::views::Layout;
use crate::{DashError, Dashboard};

#[derive(Template)]
#[template(path = "topology.html")]
pub struct TopologyPage {
    pub layout: Layout,
    pub svg: String,
    pub empty: bool,
}

/// One box of the picture.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub detail: String,
}

/// What the picture shows: four columns and the links between boxes (by id).
#[derive(Debug, Default)]
pub struct Topology {
    pub external: Vec<Node>,
    pub routers: Vec<Node>,
    pub networks: Vec<Node>,
    pub instances: Vec<Node>,
    pub links: BTreeSet<(String, String)>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// The picture's content from the API's lists (networks, subnets, routers, ports, servers,
/// floating IPs).
pub fn topology(
    networks: &Value,
    subnets: &Value,
    routers: &Value,
    ports: &Value,
    servers: &Value,
    fips: &Value,
) -> Topology {
    let mut cidrs: HashMap<String, Vec<String>> = HashMap::new();
    for sn in list(subnets, "subnets") {
        cidrs
            .entry(s(&sn["network_id"]))
            .or_default()
            .push(s(&sn["cidr"]));
    }
    let mut t = Topology::default();
    for n in list(networks, "networks") {
        let id = s(&n["id"]);
        let node = Node {
            label: s(&n["name"]),
            detail: cidrs.get(&id).map(|c| c.join(", ")).unwrap_or_default(),
            id,
        };
        if n["router:external"] == true {
            t.external.push(node);
        } else {
            t.networks.push(node);
        }
    }
    for r in list(routers, "routers") {
        let id = s(&r["id"]);
        let gw = s(&r["external_gateway_info"]["network_id"]);
        let ip = list(&r["external_gateway_info"], "external_fixed_ips")
            .next()
            .map(|f| s(&f["ip_address"]))
            .unwrap_or_default();
        if !gw.is_empty() {
            t.links.insert((gw, id.clone()));
        }
        t.routers.push(Node {
            label: s(&r["name"]),
            detail: ip,
            id,
        });
    }
    let mut fip_of: HashMap<String, Vec<String>> = HashMap::new();
    for f in list(fips, "floatingips") {
        if let Some(port) = f["port_id"].as_str() {
            fip_of
                .entry(port.to_string())
                .or_default()
                .push(s(&f["floating_ip_address"]));
        }
    }
    let names: HashMap<String, String> = list(servers, "servers")
        .map(|v| (s(&v["id"]), s(&v["name"])))
        .collect();
    let mut instances: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for p in list(ports, "ports") {
        let owner = s(&p["device_owner"]);
        let (device, net) = (s(&p["device_id"]), s(&p["network_id"]));
        if owner.starts_with("network:router_interface") {
            t.links.insert((device, net));
        } else if owner.starts_with("compute:") && !device.is_empty() {
            t.links.insert((net, device.clone()));
            let e = instances.entry(device.clone()).or_insert_with(|| {
                (
                    names.get(&device).cloned().unwrap_or(device.clone()),
                    BTreeSet::new(),
                )
            });
            e.1.extend(fip_of.remove(&s(&p["id"])).unwrap_or_default());
        }
    }
    t.instances = instances
        .into_iter()
        .map(|(id, (label, fips))| Node {
            id,
            label,
            detail: fips.into_iter().collect::<Vec<_>>().join(", "),
        })
        .collect();
    for col in [
        &mut t.external,
        &mut t.routers,
        &mut t.networks,
        &mut t.instances,
    ] {
        col.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
    }
    t
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Labels longer than a box holds are cut with an ellipsis (the full text is the title).
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

const BOX_W: i32 = 170;
const BOX_H: i32 = 42;
const COL_X: [i32; 4] = [10, 230, 450, 670];
const ROW_H: i32 = 60;
const TOP: i32 = 34;

/// The SVG of a topology: columns with headings, links behind the boxes.
pub fn svg(t: &Topology) -> String {
    let cols: [(&str, &str, &Vec<Node>); 4] = [
        ("External networks", "ext", &t.external),
        ("Routers", "router", &t.routers),
        ("Networks", "net", &t.networks),
        ("Instances", "vm", &t.instances),
    ];
    let mut at: HashMap<&str, (i32, i32)> = HashMap::new();
    let mut rows = 1;
    for (c, (_, _, nodes)) in cols.iter().enumerate() {
        rows = rows.max(nodes.len() as i32);
        for (i, n) in nodes.iter().enumerate() {
            at.insert(n.id.as_str(), (COL_X[c], TOP + i as i32 * ROW_H));
        }
    }
    let width = COL_X[3] + BOX_W + 10;
    let height = TOP + rows * ROW_H;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="topology" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="network topology">"#
    );
    for (c, (title, _, _)) in cols.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text class="heading" x="{}" y="18">{title}</text>"#,
            COL_X[c]
        );
    }
    for (a, b) in &t.links {
        if let (Some((ax, ay)), Some((bx, by))) = (at.get(a.as_str()), at.get(b.as_str())) {
            let _ = write!(
                out,
                r#"<line class="link" data-from="{}" data-to="{}" x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
                esc(a),
                esc(b),
                ax + BOX_W,
                ay + BOX_H / 2,
                bx,
                by + BOX_H / 2
            );
        }
    }
    for (_, kind, nodes) in cols {
        for n in nodes {
            let Some((x, y)) = at.get(n.id.as_str()) else {
                continue;
            };
            let label = if n.label.is_empty() { &n.id } else { &n.label };
            let _ = write!(
                out,
                r#"<g class="node {kind}" data-id="{id}" data-name="{name}"><title>{name} {id}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{tx}" y="{ty}">{short}</text>"#,
                id = esc(&n.id),
                name = esc(label),
                short = esc(&fit(label, 20)),
                tx = x + 8,
                ty = y + 17,
            );
            if !n.detail.is_empty() {
                let _ = write!(
                    out,
                    r#"<text class="detail" x="{}" y="{}">{}</text>"#,
                    x + 8,
                    y + 33,
                    esc(&fit(&n.detail, 24))
                );
            }
            out.push_str("</g>");
        }
    }
    out.push_str("</svg>");
    out
}

pub async fn page(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let (nets, subnets, routers, ports, servers, fips) = tokio::join!(
        d.get(&ctx, "network", "/networks"),
        d.get(&ctx, "network", "/subnets"),
        d.get(&ctx, "network", "/routers"),
        d.get(&ctx, "network", "/ports"),
        d.get(&ctx, "compute", "/servers"),
        d.get(&ctx, "network", "/floatingips")
    );
    let t = topology(&nets?, &subnets?, &routers?, &ports?, &servers?, &fips?);
    let empty = t.external.is_empty() && t.networks.is_empty() && t.routers.is_empty();
    render(&TopologyPage {
        layout: d.layout(&ctx, "topology"),
        svg: svg(&t),
        empty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_follow_gateways_interfaces_and_ports() {
        let t = topology(
            &json!({"networks": [{"id": "ext", "name": "public", "router:external": true},
                                 {"id": "n1", "name": "private"}]}),
            &json!({"subnets": [{"network_id": "n1", "cidr": "10.0.0.0/26"}]}),
            &json!({"routers": [{"id": "r1", "name": "router1", "external_gateway_info":
                {"network_id": "ext", "external_fixed_ips": [{"ip_address": "172.24.4.2"}]}}]}),
            &json!({"ports": [
                {"id": "p1", "device_id": "r1", "device_owner": "network:router_interface", "network_id": "n1"},
                {"id": "p2", "device_id": "s1", "device_owner": "compute:nova", "network_id": "n1"},
                {"id": "p3", "device_id": "", "device_owner": "network:dhcp", "network_id": "n1"}]}),
            &json!({"servers": [{"id": "s1", "name": "web<1>"}]}),
            &json!({"floatingips": [{"port_id": "p2", "floating_ip_address": "172.24.4.9"}]}),
        );
        assert_eq!(t.external[0].label, "public");
        assert_eq!(t.networks[0].detail, "10.0.0.0/26");
        assert_eq!(t.routers[0].detail, "172.24.4.2");
        assert_eq!(t.instances[0].detail, "172.24.4.9");
        let links: Vec<(&str, &str)> = t
            .links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(links, vec![("ext", "r1"), ("n1", "s1"), ("r1", "n1")]);
        let pic = svg(&t);
        assert_eq!(pic.matches("<line class=\"link\"").count(), 3);
        assert!(pic.contains("web&lt;1&gt;") && !pic.contains("web<1>"));
        assert!(pic.contains(r#"data-name="router1""#));
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
