//! The networks the project sees, with their subnets (two list calls, joined here).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::render;
use crate::views::Layout;
use crate::{DashError, Dashboard};

pub struct NetworkView {
    pub id: String,
    pub name: String,
    pub subnets: Vec<String>,
    pub shared: bool,
    pub external: bool,
    pub status: String,
}

#[derive(Template)]
#[template(path = "networks.html")]
pub struct NetworksPage {
    pub layout: Layout,
    pub networks: Vec<NetworkView>,
}

pub fn networks(nets: &Value, subnets: &Value) -> Vec<NetworkView> {
    let mut cidrs: HashMap<&str, Vec<String>> = HashMap::new();
    for s in subnets["subnets"].as_array().into_iter().flatten() {
        if let (Some(net), Some(cidr)) = (s["network_id"].as_str(), s["cidr"].as_str()) {
            let name = s["name"].as_str().unwrap_or_default();
            let text = if name.is_empty() {
                cidr.to_string()
            } else {
                format!("{name} {cidr}")
            };
            cidrs.entry(net).or_default().push(text);
        }
    }
    let mut out: Vec<NetworkView> = nets["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let id = n["id"].as_str().unwrap_or_default();
            NetworkView {
                id: id.into(),
                name: n["name"].as_str().unwrap_or_default().into(),
                subnets: cidrs.remove(id).unwrap_or_default(),
                shared: n["shared"] == true,
                external: n["router:external"] == true,
                status: n["status"].as_str().unwrap_or_default().into(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let (nets, subnets) = tokio::join!(
        d.get(&ctx, "network", "/networks"),
        d.get(&ctx, "network", "/subnets")
    );
    render(&NetworksPage {
        layout: d.layout(&ctx, "networks"),
        networks: networks(&nets?, &subnets?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subnets_join_their_networks() {
        let nets = json!({"networks": [{"id": "n1", "name": "b", "status": "ACTIVE", "shared": false},
            {"id": "n2", "name": "a", "router:external": true}]});
        let subs = json!({"subnets": [{"network_id": "n1", "cidr": "10.0.0.0/24", "name": "s"}]});
        let v = networks(&nets, &subs);
        assert_eq!(v[0].name, "a");
        assert!(v[0].external && v[0].subnets.is_empty());
        assert_eq!(v[1].subnets, vec!["s 10.0.0.0/24".to_string()]);
    }
}
