//! `/servers`: create, list (with Nova's filters), show, update, delete; metadata, tags and
//! instance actions.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use regex::Regex;
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, no_content, query_pairs, render};
use crate::core::servers::CreateRequest;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::store;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/servers", get(list).post(create))
        .route("/servers/detail", get(detail))
        .route("/servers/{id}", get(show).put(update).delete(delete))
        .route(
            "/servers/{id}/metadata",
            get(metadata_list)
                .put(metadata_replace)
                .post(metadata_merge),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(metadata_show).put(metadata_set).delete(metadata_delete),
        )
        .route(
            "/servers/{id}/tags",
            get(tags_list).put(tags_replace).delete(tags_clear),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(tag_check).put(tag_add).delete(tag_delete),
        )
        .route("/servers/{id}/os-instance-actions", get(actions_list))
        .route("/servers/{id}/os-instance-actions/{req}", get(action_show))
}

// ------------------------------------------------------------------ create

const CREATE_KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "adminPass",
    "metadata",
    "networks",
    "OS-DCF:diskConfig",
    "accessIPv4",
    "accessIPv6",
    "personality",
    "availability_zone",
    "block_device_mapping",
    "block_device_mapping_v2",
    "config_drive",
    "key_name",
    "min_count",
    "max_count",
    "return_reservation_id",
    "security_groups",
    "user_data",
    "description",
    "tags",
    "trusted_image_certificates",
];

fn parse_networks(ctx: &Ctx, v: Option<&Value>) -> Result<Value> {
    match v {
        None if ctx.at(37) => Err(ComputeError::bad(
            "Invalid input for field/attribute networks. Value: None. 'networks' is a required property",
        )),
        // Before 2.37 nothing said is not `auto`: no network is fine when none is available.
        None => Ok(Value::Null),
        Some(Value::String(s)) if ctx.at(37) && (s == "auto" || s == "none") => Ok(json!(s)),
        Some(Value::Array(items)) => {
            for (k, n) in items.iter().enumerate() {
                let Some(o) = n.as_object() else {
                    return Err(v::invalid("networks", n, "is not of type 'object'"));
                };
                v::only(o, &["fixed_ip", "port", "uuid", "tag"])?;
                for key in ["uuid", "port"] {
                    if let Some(id) = o.get(key) {
                        let ok = id.is_null() || id.as_str().is_some_and(v::is_uuid);
                        if !ok {
                            return Err(v::invalid(
                                &format!("networks/{k}/{key}"),
                                id,
                                format!("{id} is not a 'uuid'"),
                            ));
                        }
                    }
                }
                if let Some(ip) = o.get("fixed_ip") {
                    let ok = ip
                        .as_str()
                        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
                    if !ok {
                        return Err(ComputeError::bad(format!(
                            "Invalid fixed IP address ({})",
                            ip.as_str().unwrap_or("")
                        )));
                    }
                }
            }
            Ok(Value::Array(items.clone()))
        }
        Some(other) => Err(v::invalid(
            "networks",
            other,
            format!("{other} is not valid under any of the given schemas"),
        )),
    }
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    if let Some(o) = body.as_object() {
        v::only(
            o,
            &["server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"],
        )?;
    }
    let s = v::object(&body, "server")?;
    let mut allowed: Vec<&str> = CREATE_KEYS.to_vec();
    if !ctx.at(19) {
        allowed.retain(|k| *k != "description");
    }
    if !ctx.at(52) {
        allowed.retain(|k| *k != "tags");
    }
    if !ctx.at(63) {
        allowed.retain(|k| *k != "trusted_image_certificates");
    }
    if ctx.at(57) {
        allowed.retain(|k| *k != "personality");
    }
    v::only(s, &allowed)?;
    let name = v::name(
        "name",
        s.get("name").ok_or_else(|| {
            ComputeError::bad(
                "Invalid input for field/attribute server. Value: . 'name' is a required property",
            )
        })?,
    )?;
    let flavor_ref = match s.get("flavorRef") {
        Some(Value::String(f)) if !f.is_empty() => f.rsplit('/').next().unwrap_or(f).to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(v::invalid(
                "flavorRef",
                other,
                "is not a valid flavor reference",
            ));
        }
        None => {
            return Err(ComputeError::bad(
                "Invalid input for field/attribute server. Value: . 'flavorRef' is a required property",
            ));
        }
    };
    let image_ref = match s.get("imageRef") {
        None | Some(Value::Null) => None,
        Some(Value::String(i)) => Some(i.clone()),
        Some(other) => {
            return Err(v::invalid(
                "imageRef",
                other,
                format!("{other} is not of type 'string'"),
            ));
        }
    };
    let metadata = match s.get("metadata") {
        Some(m) => v::metadata("metadata", m)?,
        None => Default::default(),
    };
    let min_count = match s.get("min_count") {
        Some(x) => v::positive_int("min_count", x, 1)? as u32,
        None => 1,
    };
    let max_count = match s.get("max_count") {
        Some(x) => v::positive_int("max_count", x, 1)? as u32,
        None => min_count,
    };
    if min_count > max_count {
        return Err(ComputeError::bad("min_count must be <= max_count"));
    }
    let user_data = match s.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            use base64::Engine;
            let clean: String = u.chars().filter(|c| !c.is_whitespace()).collect();
            if u.len() > 65535
                || base64::engine::general_purpose::STANDARD
                    .decode(&clean)
                    .is_err()
            {
                return Err(v::invalid(
                    "user_data",
                    &json!(u),
                    "is not a 'base64' string or is too long",
                ));
            }
            Some(clean)
        }
        Some(other) => return Err(v::invalid("user_data", other, "is not of type 'string'")),
    };
    let key_name = match s.get("key_name") {
        None | Some(Value::Null) => None,
        Some(k) => v::string("key_name", k, 255, true)?,
    };
    let availability_zone = match s.get("availability_zone") {
        None | Some(Value::Null) => None,
        Some(z) => v::string("availability_zone", z, 255, true)?,
    };
    let config_drive = match s.get("config_drive") {
        None | Some(Value::Null) => false,
        Some(c) => v::boolean("config_drive", c)?,
    };
    let tags = match s.get("tags") {
        None => vec![],
        Some(Value::Array(a)) if a.len() <= 50 => a
            .iter()
            .map(|t| v::tag("tags", t))
            .collect::<Result<Vec<_>>>()?,
        Some(other) => {
            return Err(v::invalid(
                "tags",
                other,
                "is not a list of at most 50 tags",
            ));
        }
    };
    let security_groups = match s.get("security_groups") {
        None => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| {
                g.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        v::invalid("security_groups", g, "'name' is a required property")
                    })
            })
            .collect::<Result<Vec<_>>>()?,
        Some(other) => {
            return Err(v::invalid(
                "security_groups",
                other,
                "is not of type 'array'",
            ));
        }
    };
    let access_ip_v4 = match s.get("accessIPv4") {
        Some(a) => v::ipv4("accessIPv4", a)?,
        None => None,
    };
    let access_ip_v6 = match s.get("accessIPv6") {
        Some(a) => v::ipv6("accessIPv6", a)?,
        None => None,
    };
    let description = match s.get("description") {
        Some(d) => v::string("description", d, 255, true)?,
        None => None,
    };
    let admin_pass = match s.get("adminPass") {
        Some(p) => v::string("adminPass", p, 255, false)?,
        None => None,
    };
    if let Some(d) = s.get("OS-DCF:diskConfig")
        && !matches!(d.as_str(), Some("AUTO" | "MANUAL"))
    {
        return Err(v::invalid(
            "OS-DCF:diskConfig",
            d,
            "is not one of ['AUTO', 'MANUAL']",
        ));
    }
    let networks = parse_networks(&ctx, s.get("networks"))?;
    let block_device_mapping = s
        .get("block_device_mapping_v2")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let block_device_mapping = v::block_device_mapping_v2(&block_device_mapping, ctx.mv.minor)?;
    let scheduler_hints = body
        .get("os:scheduler_hints")
        .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !scheduler_hints.is_object() {
        return Err(v::invalid(
            "os:scheduler_hints",
            &scheduler_hints,
            "is not of type 'object'",
        ));
    }
    if let Some(g) = scheduler_hints.get("group")
        && !g.as_str().is_some_and(v::is_uuid)
    {
        return Err(v::invalid(
            "os:scheduler_hints/group",
            g,
            format!("{g} is not a 'uuid'"),
        ));
    }
    let return_reservation_id = match s.get("return_reservation_id") {
        Some(r) => v::boolean("return_reservation_id", r)?,
        None => false,
    };
    let req = CreateRequest {
        name,
        description,
        image_ref,
        flavor_ref,
        key_name,
        user_data,
        metadata,
        availability_zone,
        min_count,
        max_count,
        networks,
        block_device_mapping,
        config_drive,
        tags,
        scheduler_hints,
        security_groups,
        access_ip_v4,
        access_ip_v6,
    };
    let made = api
        .svc
        .create_servers(&ctx.auth, req, &ctx.request_id, &ctx.token)
        .await?;
    if return_reservation_id {
        let rid = made
            .first()
            .map(|i| i.reservation_id.clone())
            .unwrap_or_default();
        return Ok((StatusCode::ACCEPTED, Json(json!({"reservation_id": rid}))).into_response());
    }
    let Some(first) = made.first() else {
        return Err(ComputeError::Internal("no server was made".into()));
    };
    let pass = admin_pass.unwrap_or_else(|| {
        use rand::Rng;
        let chars: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut rng = rand::thread_rng();
        (0..12)
            .map(|_| chars[rng.gen_range(0..chars.len())] as char)
            .collect()
    });
    let mut server = json!({
        "id": first.uuid,
        "links": render::links(&ctx, "servers", &first.uuid),
        "OS-DCF:diskConfig": "MANUAL",
        "adminPass": pass,
    });
    if first.requested_networks != json!("none") {
        server["security_groups"] = json!(
            first
                .security_groups
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    let location = format!("{}/servers/{}", ctx.base, first.uuid);
    Ok((
        StatusCode::ACCEPTED,
        [(http::header::LOCATION, location)],
        Json(json!({"server": server})),
    )
        .into_response())
}

// ------------------------------------------------------------------ list

/// Filters Nova lets everybody use; the rest are for admins (ignored for others).
const USER_FILTERS: &[&str] = &[
    "name",
    "status",
    "image",
    "flavor",
    "changes-since",
    "changes-before",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "ip",
    "ip6",
    "reservation_id",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "project_id",
    "tenant_id",
    "deleted",
    "locked",
    "description",
    "availability_zone",
    "key_name",
    "created_at",
    "updated_at",
    "launched_at",
    "terminated_at",
    "user_id",
    "host",
    "node",
    "hostname",
    "uuid",
    "vm_state",
    "task_state",
    "power_state",
    "config_drive",
    "progress",
    "access_ip_v4",
    "access_ip_v6",
    "launch_index",
    "kernel_id",
    "ramdisk_id",
    "root_device_name",
    "terminated_at",
    "soft_deleted",
];

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    list_servers(&api, &ctx, q, false).await
}

async fn detail(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    list_servers(&api, &ctx, q, true).await
}

fn tag_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn list_servers(api: &Api, ctx: &Ctx, q: Option<String>, detail: bool) -> Result<Response> {
    let svc = &api.svc;
    let own = crate::core::ComputeService::own_target(&ctx.auth);
    let policy = if detail {
        "os_compute_api:servers:detail"
    } else {
        "os_compute_api:servers:index"
    };
    svc.authorize(&ctx.auth, policy, &own)?;
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let admin_filters = svc.allowed(&ctx.auth, "os_compute_api:servers:allow_all_filters", &own);
    let all_tenants = match get("all_tenants") {
        Some(v) => {
            let on = v.is_empty() || v::boolean("all_tenants", &json!(v))?;
            on && svc.allowed(
                &ctx.auth,
                "os_compute_api:servers:index:get_all_tenants",
                &own,
            )
        }
        None => false,
    };
    let mut dbq = store::InstanceQuery::default();
    if all_tenants {
        if let Some(p) = get("project_id").or_else(|| get("tenant_id")) {
            dbq.project_id = Some(p);
        }
    } else {
        dbq.project_id = Some(ctx.auth.project_id().unwrap_or_default().to_string());
    }
    if admin_filters {
        dbq.host = get("host");
        if let Some(u) = get("user_id") {
            dbq.user_id = Some(u);
        }
    }
    let mut limit: Option<usize> = None;
    if let Some(l) = get("limit") {
        let n = l
            .parse::<i64>()
            .map_err(|_| ComputeError::bad(format!("Invalid input for query parameters limit. Value: {l}. '{l}' does not match '^[0-9]*$'")))?;
        if n < 0 {
            return Err(ComputeError::bad(format!(
                "Invalid input for query parameters limit. Value: {l}. '{l}' does not match '^[0-9]*$'"
            )));
        }
        limit = Some(n as usize);
    }
    let limit = limit.unwrap_or(svc.cfg.max_limit).min(svc.cfg.max_limit);
    if let Some(cs) = get("changes-since") {
        dbq.changes_since = Some(v::timestamp("changes-since", &cs)?);
        dbq.include_deleted = true;
    }
    if let Some(cb) = get("changes-before") {
        if !ctx.at(66) {
            // Before 2.66 the parameter is ignored.
        } else {
            dbq.changes_before = Some(v::timestamp("changes-before", &cb)?);
            dbq.include_deleted = true;
            if let (Some(s), Some(b)) = (dbq.changes_since, dbq.changes_before)
                && s > b
            {
                return Err(ComputeError::bad(
                    "The value of changes-since must be less than or equal to changes-before.",
                ));
            }
        }
    }
    if admin_filters
        && let Some(d) = get("deleted")
        && v::boolean("deleted", &json!(d))?
    {
        dbq.only_deleted = true;
    }
    let mut status_task: Option<&'static str> = None;
    if let Some(st) = get("status") {
        match crate::model::vm_states_for_status(&st) {
            Some((vms, task)) => {
                dbq.vm_states = Some(vms.iter().map(|s| s.to_string()).collect());
                status_task = task;
                if st.eq_ignore_ascii_case("DELETED") {
                    if !admin_filters {
                        return Ok(empty(ctx, detail));
                    }
                    dbq.only_deleted = true;
                }
            }
            // From 2.38 an unknown status is an error, before it matches nothing.
            None if ctx.at(38) => {
                return Err(ComputeError::bad("Invalid status value"));
            }
            None => return Ok(empty(ctx, detail)),
        }
    }
    let mut servers = store::list_instances(svc.db.conn(), &dbq).await?;
    if let Some(t) = status_task {
        servers.retain(|i| {
            crate::model::server_status(&i.vm_state, i.task_state.as_deref())
                == crate::model::server_status(&i.vm_state, Some(t))
        });
    } else if get("status").is_some() {
        // ACTIVE means active with no task that changes the status.
        let want = get("status").unwrap_or_default().to_ascii_uppercase();
        servers.retain(|i| i.status() == want);
    }
    if let Some(name) = get("name") {
        let re = Regex::new(&name).map_err(|_| {
            ComputeError::bad(format!("Invalid input for query parameters name. Value: {name}. not a valid regular expression"))
        })?;
        servers.retain(|i| re.is_match(&i.display_name));
    }
    if let Some(img) = get("image") {
        let id = img.rsplit('/').next().unwrap_or(&img).to_string();
        servers.retain(|i| i.image_ref == id);
    }
    if let Some(fl) = get("flavor") {
        let id = fl.rsplit('/').next().unwrap_or(&fl).to_string();
        match store::flavors::get_flavor(svc.db.conn(), &id).await? {
            Some(f) => servers.retain(|i| i.flavor.flavorid == f.flavorid),
            None => servers.clear(),
        }
    }
    if let Some(r) = get("reservation_id") {
        servers.retain(|i| i.reservation_id == r);
    }
    for (key, ipv6) in [("ip", false), ("ip6", true)] {
        if let Some(pat) = get(key) {
            let re =
                Regex::new(&pat).map_err(|_| ComputeError::bad(format!("Invalid {key} filter")))?;
            servers.retain(|i| {
                i.network_info.as_array().into_iter().flatten().any(|vif| {
                    vif["network"]["subnets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|sn| {
                            sn["ips"].as_array().into_iter().flatten().any(|ip| {
                                let a = ip["address"].as_str().unwrap_or_default();
                                a.contains(':') == ipv6 && re.is_match(a)
                            })
                        })
                })
            });
        }
    }
    if ctx.at(26) {
        if let Some(t) = get("tags") {
            let want = tag_list(&t);
            servers.retain(|i| want.iter().all(|w| i.tags.contains(w)));
        }
        if let Some(t) = get("tags-any") {
            let want = tag_list(&t);
            servers.retain(|i| want.iter().any(|w| i.tags.contains(w)));
        }
        if let Some(t) = get("not-tags") {
            let want = tag_list(&t);
            servers.retain(|i| !want.iter().all(|w| i.tags.contains(w)));
        }
        if let Some(t) = get("not-tags-any") {
            let want = tag_list(&t);
            servers.retain(|i| !want.iter().any(|w| i.tags.contains(w)));
        }
    }
    if admin_filters {
        if let Some(z) = get("availability_zone") {
            servers.retain(|i| render::zone_of(i) == z);
        }
        if let Some(n) = get("node") {
            servers.retain(|i| i.node.as_deref() == Some(n.as_str()));
        }
    }
    if let Some(k) = get("key_name").filter(|_| admin_filters) {
        servers.retain(|i| i.key_name.as_deref() == Some(k.as_str()));
    }
    if ctx.at(73)
        && let Some(l) = get("locked")
    {
        let want = v::boolean("locked", &json!(l))?;
        servers.retain(|i| i.locked == want);
    }
    // Sorting: Nova's default (created_at desc) is the database's order.
    if let Some(key) = get("sort_key") {
        let desc = get("sort_dir").is_none_or(|d| d != "asc");
        let k = key.as_str();
        servers.sort_by(|a, b| {
            let o = match k {
                "display_name" | "name" => a.display_name.cmp(&b.display_name),
                "updated_at" => a.updated_at.cmp(&b.updated_at),
                "uuid" | "id" => a.uuid.cmp(&b.uuid),
                "vm_state" => a.vm_state.cmp(&b.vm_state),
                "host" => a.host.cmp(&b.host),
                "launched_at" => a.launched_at.cmp(&b.launched_at),
                _ => a.created_at.cmp(&b.created_at),
            };
            if desc { o.reverse() } else { o }
        });
    }
    if let Some(m) = get("marker") {
        let pos = servers
            .iter()
            .position(|i| i.uuid == m)
            .ok_or_else(|| ComputeError::bad(format!("marker [{m}] not found")))?;
        servers.drain(..=pos);
    }
    let more = servers.len() > limit;
    servers.truncate(limit);
    let items: Vec<Value> = servers
        .iter()
        .map(|i| {
            if detail {
                render::server(ctx, i, false, None)
            } else {
                render::server_brief(ctx, i)
            }
        })
        .collect();
    let mut body = json!({ "servers": items });
    if (more || (servers.len() == limit && limit > 0 && get("limit").is_some()))
        && let Some(last) = servers.last()
    {
        let mut qs: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "marker")
            .cloned()
            .collect();
        qs.push(("marker".into(), last.uuid.clone()));
        let enc = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(qs)
            .finish();
        let path = if detail { "servers/detail" } else { "servers" };
        body["servers_links"] =
            json!([{"rel": "next", "href": format!("{}/{path}?{enc}", ctx.base)}]);
    }
    let _ = USER_FILTERS;
    Ok(Json(body).into_response())
}

fn empty(_ctx: &Ctx, _detail: bool) -> Response {
    Json(json!({"servers": []})).into_response()
}

// ------------------------------------------------------------------ one server

async fn server_groups_of(_api: &Api, i: &Instance) -> Result<Vec<String>> {
    Ok(i.server_group.iter().cloned().collect())
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:servers:show")
        .await?;
    let groups = server_groups_of(&api, &i).await?;
    Ok(Json(json!({"server": render::server(&ctx, &i, true, Some(groups))})).into_response())
}

async fn update(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let s = v::object(&body, "server")?;
    let mut allowed = vec!["name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"];
    if ctx.at(19) {
        allowed.push("description");
    }
    v::only(s, &allowed)?;
    let name = s.get("name").map(|n| v::name("name", n)).transpose()?;
    let description = match s.get("description") {
        Some(d) => Some(v::string("description", d, 255, true)?),
        None => None,
    };
    let v4 = s
        .get("accessIPv4")
        .map(|a| v::ipv4("accessIPv4", a))
        .transpose()?;
    let v6 = s
        .get("accessIPv6")
        .map(|a| v::ipv6("accessIPv6", a))
        .transpose()?;
    api.svc
        .instance_for(&ctx.auth, &id, "os_compute_api:servers:update")
        .await?;
    let i = api
        .svc
        .update_instance(&id, None, |i| {
            if let Some(n) = name {
                i.hostname = crate::core::servers::sanitize_hostname(&n);
                i.display_name = n;
            }
            if let Some(d) = description {
                i.display_description = d;
            }
            if let Some(a) = v4 {
                i.access_ip_v4 = a;
            }
            if let Some(a) = v6 {
                i.access_ip_v6 = a;
            }
            Ok(())
        })
        .await?;
    let groups = server_groups_of(&api, &i).await?;
    Ok(
        Json(json!({"server": render::server_changed(&ctx, &i, Some(groups), false)}))
            .into_response(),
    )
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    api.svc
        .delete_server(&ctx.auth, &id, &ctx.request_id, &ctx.token)
        .await?;
    Ok(no_content())
}

// ------------------------------------------------------------------ metadata

/// Nova allows metadata changes in these states only.
const METADATA_STATES: &[&str] = &[
    vm_state::ACTIVE,
    vm_state::PAUSED,
    vm_state::SUSPENDED,
    vm_state::STOPPED,
    vm_state::SHELVED,
    vm_state::SHELVED_OFFLOADED,
    vm_state::BUILDING,
    vm_state::RESIZED,
    vm_state::ERROR,
];

async fn metadata_list(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:server-metadata:index")
        .await?;
    Ok(Json(json!({"metadata": i.metadata})).into_response())
}

async fn metadata_show(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response> {
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:server-metadata:show")
        .await?;
    match i.metadata.get(&key) {
        Some(val) => Ok(Json(json!({"meta": {key: val}})).into_response()),
        None => Err(ComputeError::NotFound("Metadata item was not found".into())),
    }
}

async fn write_metadata(
    api: &Api,
    ctx: &Ctx,
    id: &str,
    policy: &str,
    f: impl FnOnce(&mut std::collections::BTreeMap<String, String>) -> Result<()>,
) -> Result<Instance> {
    let i = api.svc.instance_for(&ctx.auth, id, policy).await?;
    if i.locked && !ctx.is_admin() {
        return Err(ComputeError::locked(id));
    }
    crate::core::servers::check_state(&i, "update metadata", METADATA_STATES, &[])?;
    let mut md = i.metadata.clone();
    f(&mut md)?;
    let limit = api.svc.quota_limit(&i.project_id, "metadata_items").await?;
    if limit >= 0 && md.len() as i64 > limit {
        return Err(ComputeError::QuotaExceeded(format!(
            "Quota exceeded for metadata_items: Requested {}, but already used 0 of {limit} metadata_items",
            md.len()
        )));
    }
    api.svc
        .update_instance(id, None, move |x| {
            x.metadata = md;
            Ok(())
        })
        .await
}

async fn metadata_replace(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let o = v::object(&body, "metadata")?;
    let md = v::metadata("metadata", &Value::Object(o.clone()))?;
    let i = write_metadata(
        &api,
        &ctx,
        &id,
        "os_compute_api:server-metadata:update_all",
        |m| {
            *m = md;
            Ok(())
        },
    )
    .await?;
    Ok(Json(json!({"metadata": i.metadata})).into_response())
}

async fn metadata_merge(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let o = v::object(&body, "metadata")?;
    let md = v::metadata("metadata", &Value::Object(o.clone()))?;
    let i = write_metadata(
        &api,
        &ctx,
        &id,
        "os_compute_api:server-metadata:create",
        |m| {
            m.extend(md);
            Ok(())
        },
    )
    .await?;
    Ok(Json(json!({"metadata": i.metadata})).into_response())
}

async fn metadata_set(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let o = v::object(&body, "meta")?;
    let md = v::metadata("meta", &Value::Object(o.clone()))?;
    if md.len() > 1 {
        return Err(ComputeError::bad("Request body contains too many items"));
    }
    let Some((k, val)) = md.into_iter().next() else {
        return Err(ComputeError::bad("Malformed request body"));
    };
    if k != key {
        return Err(ComputeError::bad("Request body and URI mismatch"));
    }
    let (k2, v2) = (k.clone(), val.clone());
    write_metadata(
        &api,
        &ctx,
        &id,
        "os_compute_api:server-metadata:update",
        move |m| {
            m.insert(k2, v2);
            Ok(())
        },
    )
    .await?;
    Ok(Json(json!({"meta": {k: val}})).into_response())
}

async fn metadata_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response> {
    write_metadata(
        &api,
        &ctx,
        &id,
        "os_compute_api:server-metadata:delete",
        |m| {
            m.remove(&key)
                .map(|_| ())
                .ok_or_else(|| ComputeError::NotFound("Metadata item was not found".into()))
        },
    )
    .await?;
    Ok(no_content())
}

// ------------------------------------------------------------------ tags (2.26)

async fn tags_list(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    ctx.need(26)?;
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:os-server-tags:index")
        .await?;
    Ok(Json(json!({"tags": i.tags})).into_response())
}

async fn write_tags(
    api: &Api,
    ctx: &Ctx,
    id: &str,
    policy: &str,
    f: impl FnOnce(&mut Vec<String>) -> Result<()>,
) -> Result<Instance> {
    ctx.need(26)?;
    let i = api.svc.instance_for(&ctx.auth, id, policy).await?;
    if i.locked && !ctx.is_admin() {
        return Err(ComputeError::locked(id));
    }
    crate::core::servers::check_state(&i, "update tags", METADATA_STATES, &[])?;
    let mut tags = i.tags.clone();
    f(&mut tags)?;
    if tags.len() > 50 {
        return Err(ComputeError::bad(
            "The number of tags exceeded the per-server limit 50".to_string(),
        ));
    }
    api.svc
        .update_instance(id, None, move |x| {
            x.tags = tags;
            Ok(())
        })
        .await
}

async fn tags_replace(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let Some(Value::Array(list)) = body.get("tags") else {
        return Err(v::invalid("tags", &body, "'tags' is a required property"));
    };
    let mut new: Vec<String> = Vec::new();
    for t in list {
        let t = v::tag("tags", t)?;
        if !new.contains(&t) {
            new.push(t);
        }
    }
    let i = write_tags(
        &api,
        &ctx,
        &id,
        "os_compute_api:os-server-tags:update_all",
        |t| {
            *t = new;
            Ok(())
        },
    )
    .await?;
    Ok(Json(json!({"tags": i.tags})).into_response())
}

async fn tags_clear(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    write_tags(
        &api,
        &ctx,
        &id,
        "os_compute_api:os-server-tags:delete_all",
        |t| {
            t.clear();
            Ok(())
        },
    )
    .await?;
    Ok(no_content())
}

async fn tag_check(
    State(api): St,
    ctx: Ctx,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    ctx.need(26)?;
    let i = api
        .svc
        .instance_for(&ctx.auth, &id, "os_compute_api:os-server-tags:show")
        .await?;
    if i.tags.contains(&tag) {
        Ok(no_content())
    } else {
        Err(ComputeError::NotFound(format!(
            "Tag '{tag}' could not be found for instance {id}."
        )))
    }
}

async fn tag_add(
    State(api): St,
    ctx: Ctx,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    let tag = v::tag("tag", &json!(tag))?;
    let mut created = false;
    let t2 = tag.clone();
    write_tags(
        &api,
        &ctx,
        &id,
        "os_compute_api:os-server-tags:update",
        |t| {
            if !t.contains(&t2) {
                t.push(t2);
                created = true;
            }
            Ok(())
        },
    )
    .await?;
    let location = format!("{}/servers/{id}/tags/{tag}", ctx.base);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    Ok((status, [(http::header::LOCATION, location)]).into_response())
}

async fn tag_delete(
    State(api): St,
    ctx: Ctx,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    let id2 = id.clone();
    write_tags(
        &api,
        &ctx,
        &id,
        "os_compute_api:os-server-tags:delete",
        |t| {
            let before = t.len();
            t.retain(|x| *x != tag);
            if t.len() == before {
                return Err(ComputeError::NotFound(format!(
                    "Tag '{tag}' could not be found for instance {id2}."
                )));
            }
            Ok(())
        },
    )
    .await?;
    Ok(no_content())
}

// ------------------------------------------------------------------ instance actions

/// The instance for the actions API: deleted ones are visible (Nova reads deleted here).
async fn instance_any(api: &Api, ctx: &Ctx, id: &str, policy: &str) -> Result<Instance> {
    let i = api
        .svc
        .get_instance(id)
        .await?
        .ok_or_else(|| ComputeError::instance_not_found(id))?;
    // Actions of deleted servers: admins always, everybody from 2.21 (Nova reads deleted).
    if i.deleted && !ctx.is_admin() && !ctx.at(21) {
        return Err(ComputeError::instance_not_found(id));
    }
    let target = json!({"project_id": i.project_id, "user_id": i.user_id});
    if api.svc.authorize(&ctx.auth, policy, &target).is_err() {
        if ctx.auth.project_id() != Some(i.project_id.as_str()) {
            return Err(ComputeError::instance_not_found(id));
        }
        return Err(ComputeError::policy(policy));
    }
    Ok(i)
}

async fn actions_list(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let i = instance_any(&api, &ctx, &id, "os_compute_api:os-instance-actions:list").await?;
    let mut actions = store::list_actions(api.svc.db.conn(), &i.uuid).await?;
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    if ctx.at(58) {
        if let Some(cs) = get("changes-since") {
            let t = v::timestamp("changes-since", &cs)?;
            actions.retain(|a| a.updated_at >= t);
        }
        if ctx.at(66)
            && let Some(cb) = get("changes-before")
        {
            let t = v::timestamp("changes-before", &cb)?;
            actions.retain(|a| a.updated_at <= t);
        }
        if let Some(m) = get("marker") {
            let pos = actions
                .iter()
                .position(|a| a.request_id == m)
                .ok_or_else(|| ComputeError::bad(format!("Marker {m} could not be found.")))?;
            actions.drain(..=pos);
        }
        if let Some(l) = get("limit") {
            let n: usize = l.parse().map_err(|_| {
                ComputeError::bad(format!(
                    "Invalid input for query parameters limit. Value: {l}."
                ))
            })?;
            actions.truncate(n);
        }
    }
    let items: Vec<Value> = actions.iter().map(|a| render::action(a, &ctx)).collect();
    Ok(Json(json!({"instanceActions": items})).into_response())
}

async fn action_show(
    State(api): St,
    ctx: Ctx,
    Path((id, req)): Path<(String, String)>,
) -> Result<Response> {
    let i = instance_any(&api, &ctx, &id, "os_compute_api:os-instance-actions:show").await?;
    let a = store::find_action(api.svc.db.conn(), &i.uuid, &req)
        .await?
        .ok_or_else(|| {
            ComputeError::NotFound(format!(
                "Action for request_id {req} on instance {id} not found"
            ))
        })?;
    let target = json!({"project_id": i.project_id, "user_id": i.user_id});
    let events_allowed = api.svc.allowed(
        &ctx.auth,
        "os_compute_api:os-instance-actions:events",
        &target,
    );
    let mut body = render::action(&a, &ctx);
    if ctx.at(51) || events_allowed {
        let evs = store::list_events(api.svc.db.conn(), a.id).await?;
        body["events"] = json!(
            evs.iter()
                .map(|e| render::event(e, &ctx, &i.project_id, events_allowed))
                .collect::<Vec<_>>()
        );
    }
    Ok(Json(json!({"instanceAction": body})).into_response())
}
