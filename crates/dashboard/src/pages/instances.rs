//! Instances: the table (rows polled by htmx while in a transitional state), the launch form,
//! per-row actions, and the detail page (overview, interfaces, volumes, console log, noVNC,
//! action log, boot trace).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use super::{is_htmx, refusal, render, see_other, seg};
use crate::views::{self, ActionView, BootPhase, Layout, Named, ServerView, Trace};
use crate::{Ctx, DashError, Dashboard, FormData};

const PAGE: &str = "/dashboard/project/instances";

/// What the launch form offers.
#[derive(Default)]
pub struct LaunchOptions {
    pub images: Vec<Named>,
    pub flavors: Vec<Named>,
    pub networks: Vec<Named>,
    pub keypairs: Vec<String>,
    pub secgroups: Vec<String>,
    /// why some choices could not be listed
    pub problems: Vec<String>,
}

/// What the user typed into the launch form (kept when the API refuses it).
pub struct LaunchValues {
    pub name: String,
    pub image: String,
    pub flavor: String,
    /// the networks chosen, in the order of the instance's interfaces ("" = a slot left empty)
    pub networks: Vec<String>,
    pub key_name: String,
    pub secgroups: Vec<String>,
    pub user_data: String,
    pub config_drive: bool,
    pub count: String,
}

impl Default for LaunchValues {
    fn default() -> Self {
        LaunchValues {
            name: String::new(),
            image: String::new(),
            flavor: String::new(),
            networks: Vec::new(),
            key_name: String::new(),
            secgroups: vec!["default".into()],
            user_data: String::new(),
            config_drive: false,
            count: "1".into(),
        }
    }
}

impl LaunchValues {
    fn from_form(f: &FormData) -> Self {
        LaunchValues {
            name: f.text("name"),
            image: f.text("image"),
            flavor: f.text("flavor"),
            networks: f
                .all("networks")
                .into_iter()
                .map(|n| n.trim().to_string())
                .collect(),
            key_name: f.text("key_name"),
            secgroups: f.all("security_groups"),
            // browsers send a textarea's lines with CRLF; a script's "#!/bin/sh\r" would not run
            user_data: f.get("user_data").unwrap_or_default().replace("\r\n", "\n"),
            config_drive: f.get("config_drive").is_some(),
            count: f.text("count"),
        }
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.secgroups.iter().any(|g| g == name)
    }

    /// The network chosen in slot `i` of the form ("" when none).
    pub fn network_at(&self, i: &usize) -> &str {
        self.networks
            .get(*i)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The networks chosen, in order, the empty slots skipped.
    pub fn chosen_networks(&self) -> Vec<&str> {
        self.networks
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .collect()
    }
}

#[derive(Template)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    pub layout: Layout,
    pub csrf: String,
    pub can_write: bool,
    pub servers: Vec<ServerView>,
    pub opts: LaunchOptions,
    pub form: LaunchValues,
    /// the launch form's field the error is about ("" = the whole form)
    pub error_field: String,
    pub error: String,
    pub row_error: String,
}

#[derive(Template)]
#[template(path = "instance_row.html")]
pub struct RowFragment {
    pub csrf: String,
    pub can_write: bool,
    pub s: ServerView,
    pub row_error: String,
}

fn named(list: &Value, key: &str, extra: impl Fn(&Value) -> String) -> Vec<Named> {
    let mut out: Vec<Named> = list[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Named {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            extra: extra(v),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn image_names(images: &Value) -> HashMap<String, String> {
    images["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some((
                i["id"].as_str()?.to_string(),
                i["name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

async fn list_page(
    d: &Dashboard,
    ctx: &Ctx,
    form: LaunchValues,
    error: Option<(String, String)>,
) -> Result<Response, DashError> {
    let groups_path = format!("/security-groups?project_id={}", seg(&ctx.auth.project.id));
    let (servers, images, flavors, networks, keypairs, groups) = tokio::join!(
        d.get(ctx, "compute", "/servers/detail"),
        d.get(ctx, "image", "/images?limit=200&sort=name:asc"),
        d.get(ctx, "compute", "/flavors/detail"),
        d.get(ctx, "network", "/networks"),
        d.get(ctx, "compute", "/os-keypairs"),
        d.get(ctx, "network", &groups_path),
    );
    let servers = servers?;
    let mut opts = LaunchOptions::default();
    let mut problem = |what: &str, e: DashError| -> Result<(), DashError> {
        match e {
            DashError::Api(e) => {
                opts.problems
                    .push(format!("{what}: {}", crate::error::api_message(&e)));
                Ok(())
            }
            other => Err(other),
        }
    };
    let mut names = HashMap::new();
    let mut image_opts = Vec::new();
    match images {
        Ok(v) => {
            names = image_names(&v);
            image_opts = named(&v, "images", |_| String::new());
            image_opts.retain(|_| true);
            if let Some(list) = v["images"].as_array() {
                let active: Vec<&str> = list
                    .iter()
                    .filter(|i| i["status"] == "active")
                    .filter_map(|i| i["id"].as_str())
                    .collect();
                image_opts.retain(|n| active.contains(&n.id.as_str()));
            }
        }
        Err(e) => problem("images", e)?,
    }
    let mut flavor_opts = Vec::new();
    match flavors {
        Ok(v) => {
            flavor_opts = named(&v, "flavors", |f| {
                format!(
                    "{} vCPU, {} MiB RAM, {} GiB disk",
                    f["vcpus"], f["ram"], f["disk"]
                )
            });
        }
        Err(e) => problem("flavors", e)?,
    }
    let mut network_opts = Vec::new();
    match networks {
        Ok(v) => {
            network_opts = named(&v, "networks", |_| String::new());
            if let Some(list) = v["networks"].as_array() {
                let external: Vec<&str> = list
                    .iter()
                    .filter(|n| n["router:external"] == true)
                    .filter_map(|n| n["id"].as_str())
                    .collect();
                network_opts.retain(|n| !external.contains(&n.id.as_str()));
            }
        }
        Err(e) => problem("networks", e)?,
    }
    let mut keypair_opts = Vec::new();
    match keypairs {
        Ok(v) => {
            keypair_opts = views::keypairs(&v).into_iter().map(|k| k.name).collect();
        }
        Err(e) => problem("key pairs", e)?,
    }
    let mut group_opts = Vec::new();
    match groups {
        Ok(v) => {
            group_opts = named(&v, "security_groups", |_| String::new())
                .into_iter()
                .map(|g| g.name)
                .collect();
            group_opts.dedup();
        }
        Err(e) => problem("security groups", e)?,
    }
    opts.images = image_opts;
    opts.flavors = flavor_opts;
    opts.networks = network_opts;
    opts.keypairs = keypair_opts;
    opts.secgroups = group_opts;
    let servers: Vec<ServerView> = servers["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| ServerView::from_json(s, &names))
        .collect();
    d.sessions.update(&ctx.sid, |s| s.image_names = names);
    let (error_field, error) = error.unwrap_or_default();
    render(&InstancesPage {
        layout: d.layout(ctx, "instances"),
        csrf: ctx.session.csrf.clone(),
        can_write: ctx.auth.can_write(),
        servers,
        opts,
        form,
        error_field,
        error,
        row_error: String::new(),
    })
}

/// `?image=ID` (the images page's "Launch"): the launch form opened with that image chosen.
#[derive(serde::Deserialize, Default)]
pub struct LaunchQuery {
    image: Option<String>,
}

pub async fn list(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<LaunchQuery>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let form = LaunchValues {
        image: q.image.unwrap_or_default(),
        ..LaunchValues::default()
    };
    list_page(&d, &ctx, form, None).await
}

/// Which launch field an API message is about.
fn field_of(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("min_count") || m.contains("max_count") || m.contains("count") {
        "count"
    } else if m.contains("flavor") {
        "flavor"
    } else if m.contains("image") {
        "image"
    } else if m.contains("network") || m.contains("port") {
        "network"
    } else if m.contains("key pair") || m.contains("keypair") || m.contains("key_name") {
        "key_name"
    } else if m.contains("security group") {
        "security_groups"
    } else if m.contains("user_data") || m.contains("user data") {
        "user_data"
    } else if m.contains("name") {
        "name"
    } else {
        ""
    }
}

/// The `POST /servers` body of a launch form.
pub fn launch_body(v: &LaunchValues) -> Result<Value, (String, String)> {
    let count: i64 = if v.count.is_empty() {
        1
    } else {
        v.count.parse().map_err(|_| {
            (
                "count".to_string(),
                "The number of instances must be a whole number.".to_string(),
            )
        })?
    };
    let mut server = json!({
        "name": v.name,
        "imageRef": v.image,
        "flavorRef": v.flavor,
        "min_count": count,
        "max_count": count,
    });
    let networks = v.chosen_networks();
    if networks.is_empty() {
        server["networks"] = json!("none");
    } else {
        server["networks"] = Value::Array(networks.iter().map(|n| json!({ "uuid": n })).collect());
        if !v.secgroups.is_empty() {
            server["security_groups"] =
                Value::Array(v.secgroups.iter().map(|g| json!({"name": g})).collect());
        }
    }
    if !v.key_name.is_empty() {
        server["key_name"] = json!(v.key_name);
    }
    if !v.user_data.is_empty() {
        server["user_data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(v.user_data.as_bytes()));
    }
    if v.config_drive {
        server["config_drive"] = json!(true);
    }
    Ok(json!({ "server": server }))
}

pub async fn launch(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let values = LaunchValues::from_form(&form);
    let body = match launch_body(&values) {
        Ok(b) => b,
        Err(e) => return list_page(&d, &ctx, values, Some(e)).await,
    };
    match d
        .call(&ctx, "compute", Method::POST, "/servers", Some(&body))
        .await
    {
        Ok(_) => {
            let n = body["server"]["min_count"].as_i64().unwrap_or(1);
            let what = if n == 1 {
                format!("instance {}", values.name)
            } else {
                format!("{n} instances named {}", values.name)
            };
            d.sessions
                .flash(&ctx.sid, "ok", format!("Launching {what}."));
            Ok(see_other(PAGE))
        }
        // refused (403) is not about a field: the error page says who refused and why
        Err(DashError::Api(e)) if e.status().is_some_and(|s| s < 500 && s != 403) => {
            let field = field_of(&e.to_string()).to_string();
            let message = crate::error::api_message(&e);
            list_page(&d, &ctx, values, Some((field, message))).await
        }
        Err(e) => Err(e),
    }
}

async fn server_view(d: &Dashboard, ctx: &Ctx, id: &str) -> Result<Option<ServerView>, DashError> {
    match d
        .get(ctx, "compute", &format!("/servers/{}", seg(id)))
        .await
    {
        Ok(v) => {
            let names = d
                .sessions
                .get(&ctx.sid)
                .map(|s| s.image_names)
                .unwrap_or_default();
            Ok(Some(ServerView::from_json(&v["server"], &names)))
        }
        Err(DashError::Api(e)) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

fn row_fragment(
    ctx: &Ctx,
    s: Option<ServerView>,
    row_error: String,
) -> Result<Response, DashError> {
    match s {
        // gone: an empty answer removes the row
        None => Ok(Html(String::new()).into_response()),
        Some(s) => render(&RowFragment {
            csrf: ctx.session.csrf.clone(),
            can_write: ctx.auth.can_write(),
            s,
            row_error,
        }),
    }
}

/// One row of the table (what htmx polls while the server is in a transitional state).
pub async fn row(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let s = server_view(&d, &ctx, &id).await?;
    row_fragment(&ctx, s, String::new())
}

pub async fn action(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = d.post_ctx(&headers, &form)?;
    let action = form.text("action");
    let path = format!("/servers/{}", seg(&id));
    let r = match action.as_str() {
        "delete" => d.call(&ctx, "compute", Method::DELETE, &path, None).await,
        "stop" | "start" | "reboot" => {
            let body = match action.as_str() {
                "stop" => json!({"os-stop": null}),
                "start" => json!({"os-start": null}),
                _ => json!({"reboot": {"type": "SOFT"}}),
            };
            d.call(
                &ctx,
                "compute",
                Method::POST,
                &format!("{path}/action"),
                Some(&body),
            )
            .await
        }
        other => {
            return Err(DashError::NotFound(format!(
                "There is no instance action called {other:?}."
            )));
        }
    };
    let problem = refusal(r)?;
    if is_htmx(&headers) {
        let s = server_view(&d, &ctx, &id).await?;
        return row_fragment(&ctx, s, problem);
    }
    if problem.is_empty() {
        d.sessions.flash(
            &ctx.sid,
            "ok",
            format!("Requested {action} of instance {id}."),
        );
    } else {
        d.sessions.flash(&ctx.sid, "error", problem);
    }
    Ok(see_other(PAGE))
}

#[derive(Debug, Clone)]
pub struct InterfaceView {
    pub port_id: String,
    pub net_id: String,
    pub ips: String,
    pub mac: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct VolumeView {
    pub volume_id: String,
    pub device: String,
}

#[derive(Template)]
#[template(path = "instance_detail.html")]
pub struct DetailPage {
    pub layout: Layout,
    pub s: ServerView,
    pub flavor_text: String,
    pub interfaces: Vec<InterfaceView>,
    pub interfaces_error: String,
    pub volumes: Vec<VolumeView>,
    pub volumes_error: String,
    pub console_log: String,
    pub console_error: String,
    pub vnc_url: String,
    pub vnc_error: String,
    pub actions: Vec<ActionView>,
    pub actions_error: String,
    pub trace: Trace,
    pub trace_error: String,
    /// the seed book's boot sequence, measured from the same events
    pub phases: Vec<BootPhase>,
}

/// The value of a call, or the readable reason it failed (a 401 still ends the session).
fn soft(r: Result<Value, DashError>) -> Result<(Value, String), DashError> {
    match r {
        Ok(v) => Ok((v, String::new())),
        Err(DashError::Api(e)) => Ok((Value::Null, crate::error::api_message(&e))),
        Err(e) => Err(e),
    }
}

async fn console_output(d: &Dashboard, ctx: &Ctx, id: &str) -> Result<Value, DashError> {
    d.call(
        ctx,
        "compute",
        Method::POST,
        &format!("/servers/{}/action", seg(id)),
        Some(&json!({"os-getConsoleOutput": {"length": 200}})),
    )
    .await
}

pub async fn detail(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let sp = format!("/servers/{}", seg(&id));
    let (p_if, p_vol, p_act) = (
        format!("{sp}/os-interface"),
        format!("{sp}/os-volume_attachments"),
        format!("{sp}/os-instance-actions"),
    );
    let (server, ifaces, vols, acts, log) = tokio::join!(
        d.get(&ctx, "compute", &sp),
        d.get(&ctx, "compute", &p_if),
        d.get(&ctx, "compute", &p_vol),
        d.get(&ctx, "compute", &p_act),
        console_output(&d, &ctx, &id),
    );
    let server = server?;
    let names = d
        .sessions
        .get(&ctx.sid)
        .map(|s| s.image_names)
        .unwrap_or_default();
    let raw = &server["server"];
    let mut s = ServerView::from_json(raw, &names);
    // opened directly (no list seen yet): the image's name, one call
    if let Some(image_id) = raw["image"]["id"].as_str()
        && s.image == image_id
        && let Ok(img) = d
            .get(&ctx, "image", &format!("/images/{}", seg(image_id)))
            .await
        && let Some(name) = img["name"].as_str()
    {
        s.image = name.to_string();
    }
    let f = &raw["flavor"];
    let flavor_text = format!(
        "{} ({} vCPU, {} MiB RAM, {} GiB disk)",
        s.flavor, f["vcpus"], f["ram"], f["disk"]
    );
    let (ifaces, interfaces_error) = soft(ifaces)?;
    let interfaces = ifaces["interfaceAttachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| InterfaceView {
            port_id: i["port_id"].as_str().unwrap_or_default().into(),
            net_id: i["net_id"].as_str().unwrap_or_default().into(),
            ips: i["fixed_ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["ip_address"].as_str())
                .collect::<Vec<_>>()
                .join(", "),
            mac: i["mac_addr"].as_str().unwrap_or_default().into(),
            state: i["port_state"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let (vols, volumes_error) = soft(vols)?;
    let volumes = vols["volumeAttachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| VolumeView {
            volume_id: v["volumeId"].as_str().unwrap_or_default().into(),
            device: v["device"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let (log, console_error) = soft(log)?;
    let (acts, actions_error) = soft(acts)?;
    let actions = views::actions(&acts);
    // the boot trace: the events of the create action
    let mut trace = Trace {
        steps: Vec::new(),
        total: String::new(),
    };
    let mut trace_error = String::new();
    let mut phases = Vec::new();
    if let Some(create) = actions.iter().find(|a| a.action == "create") {
        let (events, err) = soft(
            d.get(
                &ctx,
                "compute",
                &format!("{sp}/os-instance-actions/{}", seg(&create.request_id)),
            )
            .await,
        )?;
        let now = chrono::Utc::now();
        trace = views::boot_trace(&events["instanceAction"], now);
        phases = views::boot_phases(&events["instanceAction"], now);
        trace_error = err;
    } else if actions_error.is_empty() {
        trace_error = "This instance has no create action to trace.".into();
    }
    let mut vnc_url = String::new();
    let vnc_error;
    if s.status == "ACTIVE" {
        let (v, err) = soft(
            d.call(
                &ctx,
                "compute",
                Method::POST,
                &format!("{sp}/remote-consoles"),
                Some(&json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
            )
            .await,
        )?;
        vnc_url = v["remote_console"]["url"]
            .as_str()
            .unwrap_or_default()
            .into();
        vnc_error = err;
    } else {
        vnc_error = format!(
            "The console is available while the instance is ACTIVE (it is {}).",
            s.status
        );
    }
    render(&DetailPage {
        layout: d.layout(&ctx, "instances"),
        s,
        flavor_text,
        interfaces,
        interfaces_error,
        volumes,
        volumes_error,
        console_log: log["output"].as_str().unwrap_or_default().to_string(),
        console_error,
        vnc_url,
        vnc_error,
        actions,
        actions_error,
        trace,
        trace_error,
        phases,
    })
}

#[derive(Template)]
#[template(path = "console_log.html")]
pub struct ConsoleLogFragment {
    pub console_log: String,
    pub console_error: String,
}

/// The console log alone (the detail page's refresh button).
pub async fn console_log(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let ctx = d.ctx(&headers)?;
    let (log, console_error) = soft(console_output(&d, &ctx, &id).await)?;
    render(&ConsoleLogFragment {
        console_log: log["output"].as_str().unwrap_or_default().to_string(),
        console_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_body_from_the_form() {
        let mut v = LaunchValues {
            name: "web".into(),
            image: "img".into(),
            flavor: "1".into(),
            networks: vec!["net".into(), String::new(), "net2".into()],
            key_name: "k".into(),
            secgroups: vec!["default".into()],
            user_data: "#!/bin/sh\necho hi\n".into(),
            config_drive: true,
            count: "2".into(),
        };
        let b = launch_body(&v).unwrap();
        let s = &b["server"];
        // in the order chosen, the empty slot skipped
        assert_eq!(s["networks"], json!([{"uuid": "net"}, {"uuid": "net2"}]));
        assert_eq!(s["min_count"], 2);
        assert_eq!(s["security_groups"], json!([{"name": "default"}]));
        assert_eq!(s["user_data"], "IyEvYmluL3NoCmVjaG8gaGkK");
        assert_eq!(s["config_drive"], true);
        v.networks = vec![String::new()];
        v.count = "many".into();
        assert_eq!(launch_body(&v).unwrap_err().0, "count");
        v.count.clear();
        let b = launch_body(&v).unwrap();
        assert_eq!(b["server"]["networks"], "none");
        assert!(b["server"].get("security_groups").is_none());
    }

    #[test]
    fn user_data_lines_lose_the_browsers_cr() {
        let f = FormData::parse(
            b"user_data=%23%21%2Fbin%2Fsh%0D%0Aecho+hi%0D%0A&networks=a&networks=&networks=b",
        );
        let v = LaunchValues::from_form(&f);
        assert_eq!(v.user_data, "#!/bin/sh\necho hi\n");
        assert_eq!(v.chosen_networks(), vec!["a", "b"]);
        assert_eq!(v.network_at(&1), "");
    }

    #[test]
    fn api_messages_find_their_field() {
        assert_eq!(field_of("Flavor 99 could not be found."), "flavor");
        assert_eq!(field_of("Invalid key_name provided."), "key_name");
        assert_eq!(field_of("Network x could not be found."), "network");
        assert_eq!(field_of("something else"), "");
    }
}
