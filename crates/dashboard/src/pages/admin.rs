//! The admin pages (`/dashboard/admin/...`): hypervisors, all instances, flavors, all images,
//! all networks, quotas of any project, services; the identity ones are in `admin_identity.rs`.
//! Shown to tokens with the admin role; a non-admin gets the 403 page. The dashboard still has
//! no privileges of its own: every call carries the user's token and the APIs decide.
//!
//! One generic page (`admin.html`): forms, then tables of cells with per-row action buttons
//! that post to the section's URL with a hidden `action` field.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{admin_identity, flash_outcome, refusal, render, see_other, seg};
use crate::views::{Layout, ServerView, Usage};
use crate::{Ctx, DashError, Dashboard, FormData};

/// One cell: text (optionally as a badge) or a usage bar.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub badge: String,
    pub bar: Option<Usage>,
    pub class: String,
}

impl Cell {
    pub fn text(t: impl Into<String>) -> Self {
        Cell {
            text: t.into(),
            ..Default::default()
        }
    }

    pub fn badge(t: impl Into<String>, badge: &str) -> Self {
        Cell {
            text: t.into(),
            badge: badge.into(),
            ..Default::default()
        }
    }

    pub fn bar(u: Usage) -> Self {
        Cell {
            text: u.text.clone(),
            bar: Some(u),
            ..Default::default()
        }
    }

    pub fn yes_no(b: bool) -> Self {
        Cell::text(if b { "yes" } else { "no" })
    }

    pub fn with_class(mut self, class: &str) -> Self {
        self.class = class.into();
        self
    }
}

/// A button of a row: a POST of `fields` (and `action=name`) to the table's URL.
#[derive(Debug, Clone)]
pub struct RowAction {
    pub name: String,
    pub label: String,
    pub fields: Vec<(String, String)>,
    pub confirm: String,
    pub danger: bool,
}

impl RowAction {
    pub fn new(name: &str, label: &str, fields: &[(&str, &str)]) -> Self {
        let mut all = vec![("action".to_string(), name.to_string())];
        all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        RowAction {
            name: name.into(),
            label: label.into(),
            fields: all,
            confirm: String::new(),
            danger: false,
        }
    }

    /// A destructive action: red, and asked about first.
    pub fn dangerous(mut self, confirm: String) -> Self {
        self.confirm = confirm;
        self.danger = true;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    /// `data-name` of the row (what tests and people find it by)
    pub key: String,
    pub cells: Vec<Cell>,
    pub actions: Vec<RowAction>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub id: String,
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
    pub action_url: String,
    pub empty: String,
    /// why the table could not be listed (the API's message)
    pub error: String,
}

impl Table {
    pub fn new(id: &str, headers: &[&str]) -> Self {
        Table {
            id: id.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            empty: "Nothing to show.".into(),
            ..Default::default()
        }
    }

    pub fn has_actions(&self) -> bool {
        self.rows.iter().any(|r| !r.actions.is_empty())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Field {
    pub name: String,
    pub label: String,
    /// text, number, password, checkbox, select; "heading": a subheading of the form
    pub kind: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub required: bool,
}

impl Field {
    pub fn input(kind: &'static str, name: &str, label: &str, value: &str) -> Self {
        Field {
            name: name.into(),
            label: label.into(),
            kind,
            value: value.into(),
            required: kind != "checkbox",
            ..Default::default()
        }
    }

    pub fn select(name: &str, label: &str, options: Vec<(String, String)>, value: &str) -> Self {
        Field {
            name: name.into(),
            label: label.into(),
            kind: "select",
            value: value.into(),
            options,
            required: true,
        }
    }

    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct FormSpec {
    pub id: String,
    pub title: String,
    pub method: &'static str,
    pub action: String,
    pub hidden: Vec<(String, String)>,
    pub fields: Vec<Field>,
    pub submit: String,
}

impl FormSpec {
    /// A POST form to `action` whose hidden `action` field is `name`.
    pub fn post(id: &str, action: &str, name: &str, submit: &str, fields: Vec<Field>) -> Self {
        FormSpec {
            id: id.into(),
            method: "post",
            action: action.into(),
            hidden: vec![("action".into(), name.into())],
            fields,
            submit: submit.into(),
            ..Default::default()
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub layout: Layout,
    pub csrf: String,
    pub title: String,
    pub intro: String,
    pub problems: Vec<String>,
    pub forms: Vec<FormSpec>,
    pub tables: Vec<Table>,
}

/// The admin context of a request: logged in, and the token has the admin role.
pub fn admin_ctx(d: &Dashboard, headers: &HeaderMap) -> Result<Ctx, DashError> {
    let ctx = d.ctx(headers)?;
    if !ctx.auth.is_admin() {
        return Err(DashError::NotAdmin);
    }
    Ok(ctx)
}

/// A POST of an admin page: CSRF, then as `admin_ctx`.
pub fn admin_post(d: &Dashboard, headers: &HeaderMap, form: &FormData) -> Result<Ctx, DashError> {
    d.csrf_session(headers, form)?;
    admin_ctx(d, headers)
}

pub fn section_url(section: &str) -> String {
    format!("/dashboard/admin/{section}")
}

/// An admin page from its parts.
pub fn page(
    d: &Dashboard,
    ctx: &Ctx,
    section: &str,
    title: &str,
    forms: Vec<FormSpec>,
    mut tables: Vec<Table>,
) -> Result<Response, DashError> {
    for t in &mut tables {
        if t.action_url.is_empty() {
            t.action_url = section_url(section);
        }
    }
    let active = crate::pages::admin::active(section);
    render(&AdminPage {
        layout: d.layout(ctx, active),
        csrf: ctx.session.csrf.clone(),
        title: title.into(),
        intro: String::new(),
        problems: Vec::new(),
        forms,
        tables,
    })
}

/// The nav's name of a section (a `&'static str`, as `Layout` wants).
pub fn active(section: &str) -> &'static str {
    match section {
        "hypervisors" => "admin-hypervisors",
        "instances" => "admin-instances",
        "flavors" => "admin-flavors",
        "images" => "admin-images",
        "networks" => "admin-networks",
        "projects" => "admin-projects",
        "users" => "admin-users",
        "groups" => "admin-groups",
        "roles" => "admin-roles",
        "quotas" => "admin-quotas",
        "services" => "admin-services",
        _ => "",
    }
}

/// A list call whose failure is shown in its table instead of failing the page (a 401 still
/// ends the session).
pub fn soft(r: Result<Value, DashError>) -> Result<(Value, String), DashError> {
    match r {
        Ok(v) => Ok((v, String::new())),
        Err(e) => Ok((Value::Null, refusal(Err::<(), _>(e))?)),
    }
}

fn st(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// project id -> name, from `GET /v3/projects`.
pub fn project_names(list: &Value) -> HashMap<String, String> {
    list["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?.into(), p["name"].as_str()?.into())))
        .collect()
}

/// (id, name) options sorted by name, from a list body.
pub fn options(list: &Value, key: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?.into(), p["name"].as_str()?.into())))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn name_of(names: &HashMap<String, String>, id: &str) -> String {
    names.get(id).cloned().unwrap_or_else(|| id.to_string())
}

// ------------------------------------------------------------------ hypervisors

/// `GET /os-hypervisors/detail` as rows with usage bars.
pub fn hypervisor_table(list: &Value) -> Table {
    let mut t = Table::new(
        "hypervisors",
        &[
            "Host",
            "Type",
            "State",
            "vCPUs",
            "RAM",
            "Local disk",
            "Running VMs",
        ],
    );
    t.empty = "No hypervisors.".into();
    for h in list["hypervisors"].as_array().into_iter().flatten() {
        let state = st(h, "state");
        let status = st(h, "status");
        let badge = if state == "up" && status == "enabled" {
            "ok"
        } else {
            "bad"
        };
        t.rows.push(Row {
            key: st(h, "hypervisor_hostname"),
            cells: vec![
                Cell::text(st(h, "hypervisor_hostname")),
                Cell::text(st(h, "hypervisor_type")),
                Cell::badge(format!("{state}, {status}"), badge),
                Cell::bar(Usage::new(
                    "vCPUs",
                    int(h, "vcpus_used"),
                    int(h, "vcpus"),
                    "",
                ))
                .with_class("vcpus"),
                Cell::bar(Usage::new(
                    "RAM",
                    int(h, "memory_mb_used"),
                    int(h, "memory_mb"),
                    "MiB",
                ))
                .with_class("ram"),
                Cell::bar(Usage::new(
                    "Local disk",
                    int(h, "local_gb_used"),
                    int(h, "local_gb"),
                    "GiB",
                ))
                .with_class("disk"),
                Cell::text(int(h, "running_vms").to_string()).with_class("running"),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub async fn hypervisors(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, err) = soft(d.get(ctx, "compute", "/os-hypervisors/detail").await)?;
    let mut t = hypervisor_table(&list);
    t.error = err;
    page(d, ctx, "hypervisors", "Hypervisors", Vec::new(), vec![t])
}

// ------------------------------------------------------------------ all instances

pub fn instance_table(servers: &Value, projects: &HashMap<String, String>) -> Table {
    let mut t = Table::new(
        "all-instances",
        &[
            "Name",
            "Project",
            "Host",
            "Status",
            "Flavor",
            "IP addresses",
        ],
    );
    t.empty = "No instances in any project.".into();
    for s in servers["servers"].as_array().into_iter().flatten() {
        let v = ServerView::from_json(s, &HashMap::new());
        let project = name_of(projects, &st(s, "tenant_id"));
        t.rows.push(Row {
            key: v.name.clone(),
            cells: vec![
                Cell::text(v.name.clone()),
                Cell::text(project).with_class("project"),
                Cell::text(v.host.clone()).with_class("host"),
                Cell::badge(v.status.clone(), v.badge()),
                Cell::text(v.flavor.clone()),
                Cell::text(v.ips.join(", ")).with_class("ips"),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub async fn instances(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (servers, projects) = tokio::join!(
        d.get(ctx, "compute", "/servers/detail?all_tenants=1"),
        d.get(ctx, "identity", "/projects"),
    );
    let (servers, err) = soft(servers)?;
    let (projects, _) = soft(projects)?;
    let mut t = instance_table(&servers, &project_names(&projects));
    t.error = err;
    page(d, ctx, "instances", "All instances", Vec::new(), vec![t])
}

// ------------------------------------------------------------------ flavors

pub fn flavor_table(list: &Value) -> Table {
    let mut t = Table::new("flavors", &["Name", "vCPUs", "RAM", "Disk", "Public", "ID"]);
    let mut flavors: Vec<&Value> = list["flavors"].as_array().into_iter().flatten().collect();
    flavors.sort_by_key(|f| (int(f, "ram"), st(f, "name")));
    for f in flavors {
        let name = st(f, "name");
        let id = st(f, "id");
        t.rows.push(Row {
            key: name.clone(),
            cells: vec![
                Cell::text(name.clone()),
                Cell::text(st(f, "vcpus")),
                Cell::text(format!("{} MiB", st(f, "ram"))),
                Cell::text(format!("{} GiB", st(f, "disk"))),
                Cell::yes_no(f["os-flavor-access:is_public"] != false),
                Cell::text(id.clone()),
            ],
            actions: vec![
                RowAction::new("delete", "delete", &[("id", &id)])
                    .dangerous(format!("Delete flavor {name}?")),
            ],
        });
    }
    t
}

/// The `POST /flavors` body of the create form.
pub fn flavor_body(f: &FormData) -> Result<Value, String> {
    let num = |k: &str, what: &str| {
        f.text(k)
            .parse::<i64>()
            .map_err(|_| format!("The {what} must be a whole number."))
    };
    let name = f.text("name");
    if name.is_empty() {
        return Err("A flavor needs a name.".into());
    }
    Ok(json!({"flavor": {
        "name": name,
        "vcpus": num("vcpus", "number of vCPUs")?,
        "ram": num("ram", "RAM")?,
        "disk": num("disk", "disk size")?,
        "os-flavor-access:is_public": f.get("public").is_some(),
    }}))
}

pub async fn flavors(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    // is_public=None: the private flavors too (admin)
    let (list, err) = soft(
        d.get(ctx, "compute", "/flavors/detail?is_public=None")
            .await,
    )?;
    let mut t = flavor_table(&list);
    t.error = err;
    let form = FormSpec::post(
        "create-flavor",
        &section_url("flavors"),
        "create",
        "Create flavor",
        vec![
            Field::input("text", "name", "Name", ""),
            Field::input("number", "vcpus", "vCPUs", "1"),
            Field::input("number", "ram", "RAM (MiB)", "512"),
            Field::input("number", "disk", "Disk (GiB)", "1"),
            Field::input("checkbox", "public", "Public", "1"),
        ],
    );
    page(d, ctx, "flavors", "Flavors", vec![form], vec![t])
}

async fn flavors_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    match form.text("action").as_str() {
        "create" => match flavor_body(form) {
            Ok(body) => {
                let r = d
                    .call(ctx, "compute", Method::POST, "/flavors", Some(&body))
                    .await;
                flash_outcome(d, ctx, r, format!("Created flavor {}.", form.text("name"))).map(drop)
            }
            Err(m) => {
                d.sessions.flash(&ctx.sid, "error", m);
                Ok(())
            }
        },
        "delete" => {
            let id = form.text("id");
            let r = d
                .call(
                    ctx,
                    "compute",
                    Method::DELETE,
                    &format!("/flavors/{}", seg(&id)),
                    None,
                )
                .await;
            flash_outcome(d, ctx, r, format!("Deleted flavor {id}.")).map(drop)
        }
        other => Err(unknown(other)),
    }
}

// ------------------------------------------------------------------ images, networks

pub fn image_table(list: &Value, projects: &HashMap<String, String>) -> Table {
    let mut t = Table::new(
        "all-images",
        &["Name", "Project", "Visibility", "Status", "Size", "Format"],
    );
    for i in crate::views::images(list) {
        let owner = list["images"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"] == i.id.as_str())
            .map(|x| st(x, "owner"))
            .unwrap_or_default();
        t.rows.push(Row {
            key: i.name.clone(),
            cells: vec![
                Cell::text(i.name.clone()),
                Cell::text(name_of(projects, &owner)).with_class("project"),
                Cell::text(i.visibility.clone()).with_class("visibility"),
                Cell::badge(
                    i.status.clone(),
                    if i.status == "active" { "ok" } else { "busy" },
                ),
                Cell::text(i.size.clone()),
                Cell::text(i.disk_format.clone()),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub async fn images(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (list, projects) = tokio::join!(
        d.get(ctx, "image", "/images?limit=1000&sort=name:asc"),
        d.get(ctx, "identity", "/projects"),
    );
    let (list, err) = soft(list)?;
    let (projects, _) = soft(projects)?;
    let mut t = image_table(&list, &project_names(&projects));
    t.error = err;
    page(d, ctx, "images", "All images", Vec::new(), vec![t])
}

pub fn network_table(nets: &Value, subnets: &Value, projects: &HashMap<String, String>) -> Table {
    let mut t = Table::new(
        "all-networks",
        &["Name", "Project", "Subnets", "Shared", "External", "Status"],
    );
    let views = super::networks::networks(nets, subnets);
    for n in views {
        let owner = nets["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"] == n.id.as_str())
            .map(|x| {
                let p = st(x, "project_id");
                if p.is_empty() { st(x, "tenant_id") } else { p }
            })
            .unwrap_or_default();
        t.rows.push(Row {
            key: n.name.clone(),
            cells: vec![
                Cell::text(n.name.clone()),
                Cell::text(name_of(projects, &owner)).with_class("project"),
                Cell::text(n.subnets.join(", ")).with_class("subnets"),
                Cell::yes_no(n.shared).with_class("shared"),
                Cell::yes_no(n.external).with_class("external"),
                Cell::badge(
                    n.status.clone(),
                    if n.status == "ACTIVE" { "ok" } else { "busy" },
                ),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub async fn networks(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (nets, subnets, projects) = tokio::join!(
        d.get(ctx, "network", "/networks"),
        d.get(ctx, "network", "/subnets"),
        d.get(ctx, "identity", "/projects"),
    );
    let (nets, err) = soft(nets)?;
    let (subnets, _) = soft(subnets)?;
    let (projects, _) = soft(projects)?;
    let mut t = network_table(&nets, &subnets, &project_names(&projects));
    t.error = err;
    page(d, ctx, "networks", "All networks", Vec::new(), vec![t])
}

// ------------------------------------------------------------------ quotas

/// The limits the quota page edits, per service, in the order shown (those the API answers).
pub const COMPUTE_QUOTAS: &[&str] = &[
    "instances",
    "cores",
    "ram",
    "key_pairs",
    "metadata_items",
    "server_groups",
    "server_group_members",
];
pub const NETWORK_QUOTAS: &[&str] = &[
    "network",
    "subnet",
    "port",
    "router",
    "floatingip",
    "security_group",
    "security_group_rule",
];
pub const VOLUME_QUOTAS: &[&str] = &[
    "volumes",
    "gigabytes",
    "snapshots",
    "backups",
    "backup_gigabytes",
    "per_volume_gigabytes",
];

/// The number fields of one service's quota set (`service.key`), present ones only.
pub fn quota_fields(service: &str, keys: &[&str], set: &Value) -> Vec<Field> {
    keys.iter()
        .filter_map(|k| {
            let v = set.get(*k)?.as_i64()?;
            Some(Field::input(
                "number",
                &format!("{service}.{k}"),
                k,
                &v.to_string(),
            ))
        })
        .collect()
}

/// The bodies of the quota updates from the form: (compute, network, volume) maps of the
/// numbers given; a value that is not a whole number is an error naming it.
pub fn quota_updates(f: &FormData) -> Result<[Map<String, Value>; 3], String> {
    let mut out: [Map<String, Value>; 3] = Default::default();
    for (k, v) in &f.0 {
        let Some((service, key)) = k.split_once('.') else {
            continue;
        };
        let i = match service {
            "compute" if COMPUTE_QUOTAS.contains(&key) => 0,
            "network" if NETWORK_QUOTAS.contains(&key) => 1,
            "volume" if VOLUME_QUOTAS.contains(&key) => 2,
            _ => continue,
        };
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| format!("The {service} limit {key} must be a whole number (-1: none)."))?;
        out[i].insert(key.to_string(), json!(n));
    }
    Ok(out)
}

#[derive(serde::Deserialize, Default)]
pub struct QuotaQuery {
    project: Option<String>,
}

pub async fn quotas(d: &Dashboard, ctx: &Ctx, q: QuotaQuery) -> Result<Response, DashError> {
    let (projects, _) = soft(d.get(ctx, "identity", "/projects").await)?;
    let opts = options(&projects, "projects");
    let project = q
        .project
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ctx.auth.project.id.clone());
    let chooser = FormSpec {
        id: "quota-project".into(),
        method: "get",
        action: section_url("quotas"),
        fields: vec![Field::select("project", "Project", opts, &project)],
        submit: "Show".into(),
        ..Default::default()
    };
    let p = seg(&project);
    let (qs, nq) = (format!("/os-quota-sets/{p}"), format!("/quotas/{p}"));
    let (c, n, v) = tokio::join!(
        d.get(ctx, "compute", &qs),
        d.get(ctx, "network", &nq),
        d.get(ctx, "volume", &qs),
    );
    let mut fields = Vec::new();
    let mut problems = Vec::new();
    for (what, r, svc, keys, key) in [
        ("compute", c, "compute", COMPUTE_QUOTAS, "quota_set"),
        ("network", n, "network", NETWORK_QUOTAS, "quota"),
        ("volume", v, "volume", VOLUME_QUOTAS, "quota_set"),
    ] {
        let (body, err) = soft(r)?;
        if err.is_empty() {
            fields.push(Field {
                kind: "heading",
                label: format!("{what} limits"),
                ..Default::default()
            });
            fields.extend(quota_fields(svc, keys, &body[key]));
        } else {
            problems.push(format!("{what}: {err}"));
        }
    }
    let mut edit = FormSpec::post(
        "edit-quotas",
        &section_url("quotas"),
        "update",
        "Save quotas",
        fields,
    );
    edit.hidden.push(("project".into(), project.clone()));
    edit.title = format!(
        "Limits of {} (-1: no limit)",
        name_of(&project_names(&projects), &project)
    );
    render(&AdminPage {
        layout: d.layout(ctx, active("quotas")),
        csrf: ctx.session.csrf.clone(),
        title: "Quotas".into(),
        intro: "Compute (os-quota-sets), network (quotas) and volume (os-quota-sets) limits of a \
                project."
            .into(),
        problems,
        forms: vec![chooser, edit],
        tables: Vec::new(),
    })
}

async fn quotas_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<String, DashError> {
    let project = form.text("project");
    let back = format!("{}?project={}", section_url("quotas"), seg(&project));
    let [c, n, v] = match quota_updates(form) {
        Ok(x) => x,
        Err(m) => {
            d.sessions.flash(&ctx.sid, "error", m);
            return Ok(back);
        }
    };
    let p = seg(&project);
    let cp = format!("/os-quota-sets/{p}");
    let np = format!("/quotas/{p}");
    let (cb, nb, vb) = (
        json!({"quota_set": c}),
        json!({"quota": n}),
        json!({"quota_set": v}),
    );
    let (rc, rn, rv) = tokio::join!(
        async {
            if c.is_empty() {
                Ok(Value::Null)
            } else {
                d.call(ctx, "compute", Method::PUT, &cp, Some(&cb)).await
            }
        },
        async {
            if n.is_empty() {
                Ok(Value::Null)
            } else {
                d.call(ctx, "network", Method::PUT, &np, Some(&nb)).await
            }
        },
        async {
            if v.is_empty() {
                Ok(Value::Null)
            } else {
                d.call(ctx, "volume", Method::PUT, &cp, Some(&vb)).await
            }
        },
    );
    let mut problems = Vec::new();
    for r in [rc, rn, rv] {
        let p = refusal(r)?;
        if !p.is_empty() {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        d.sessions.flash(&ctx.sid, "ok", "Saved the quotas.");
    } else {
        d.sessions.flash(&ctx.sid, "error", problems.join(" "));
    }
    Ok(back)
}

// ------------------------------------------------------------------ services

pub fn compute_service_table(list: &Value) -> Table {
    let mut t = Table::new(
        "compute-services",
        &["Binary", "Host", "Zone", "Status", "State", "Updated"],
    );
    t.title = "Compute services".into();
    for s in list["services"].as_array().into_iter().flatten() {
        let id = st(s, "id");
        let status = st(s, "status");
        let state = st(s, "state");
        let action = if status == "enabled" {
            RowAction::new("disable", "disable", &[("id", &id)])
        } else {
            RowAction::new("enable", "enable", &[("id", &id)])
        };
        t.rows.push(Row {
            key: format!("{}@{}", st(s, "binary"), st(s, "host")),
            cells: vec![
                Cell::text(st(s, "binary")),
                Cell::text(st(s, "host")),
                Cell::text(st(s, "zone")),
                Cell::badge(
                    status.clone(),
                    if status == "enabled" { "ok" } else { "off" },
                )
                .with_class("status"),
                Cell::badge(state.clone(), if state == "up" { "ok" } else { "bad" }),
                Cell::text(st(s, "updated_at")),
            ],
            actions: vec![action],
        });
    }
    t
}

pub fn volume_service_table(list: &Value) -> Table {
    let mut t = Table::new(
        "volume-services",
        &["Binary", "Host", "Zone", "Status", "State", "Updated"],
    );
    t.title = "Block storage services".into();
    for s in list["services"].as_array().into_iter().flatten() {
        let status = st(s, "status");
        let state = st(s, "state");
        t.rows.push(Row {
            key: format!("{}@{}", st(s, "binary"), st(s, "host")),
            cells: vec![
                Cell::text(st(s, "binary")),
                Cell::text(st(s, "host")),
                Cell::text(st(s, "zone")),
                Cell::badge(
                    status.clone(),
                    if status == "enabled" { "ok" } else { "off" },
                ),
                Cell::badge(state.clone(), if state == "up" { "ok" } else { "bad" }),
                Cell::text(st(s, "updated_at")),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub fn agent_table(list: &Value) -> Table {
    let mut t = Table::new(
        "network-agents",
        &["Type", "Binary", "Host", "Alive", "Admin state"],
    );
    t.title = "Network agents".into();
    for a in list["agents"].as_array().into_iter().flatten() {
        t.rows.push(Row {
            key: format!("{}@{}", st(a, "binary"), st(a, "host")),
            cells: vec![
                Cell::text(st(a, "agent_type")),
                Cell::text(st(a, "binary")),
                Cell::text(st(a, "host")),
                Cell::yes_no(a["alive"] == true),
                Cell::text(if a["admin_state_up"] == true {
                    "up"
                } else {
                    "down"
                }),
            ],
            actions: Vec::new(),
        });
    }
    t
}

pub async fn services(d: &Dashboard, ctx: &Ctx) -> Result<Response, DashError> {
    let (c, v, a) = tokio::join!(
        d.get(ctx, "compute", "/os-services"),
        d.get(ctx, "volume", "/os-services"),
        d.get(ctx, "network", "/agents"),
    );
    let (c, ce) = soft(c)?;
    let (v, ve) = soft(v)?;
    let (a, ae) = match a {
        // a network API without the `agent` extension (an older kumo)
        Err(DashError::Api(e)) if e.status() == Some(404) => (
            Value::Null,
            "This cloud has no network agents API (GET /v2.0/agents answered 404).".to_string(),
        ),
        other => soft(other)?,
    };
    let mut tables = vec![
        compute_service_table(&c),
        volume_service_table(&v),
        agent_table(&a),
    ];
    for (t, e) in tables.iter_mut().zip([ce, ve, ae]) {
        t.error = e;
    }
    page(d, ctx, "services", "Services", Vec::new(), tables)
}

async fn services_post(d: &Dashboard, ctx: &Ctx, form: &FormData) -> Result<(), DashError> {
    let id = form.text("id");
    let status = match form.text("action").as_str() {
        "enable" => "enabled",
        "disable" => "disabled",
        other => return Err(unknown(other)),
    };
    let body = json!({"status": status});
    let r = d
        .call(
            ctx,
            "compute",
            Method::PUT,
            &format!("/os-services/{}", seg(&id)),
            Some(&body),
        )
        .await;
    flash_outcome(d, ctx, r, format!("The compute service is now {status}.")).map(drop)
}

// ------------------------------------------------------------------ routing

pub fn unknown(action: &str) -> DashError {
    DashError::NotFound(format!("There is no admin action called {action:?}."))
}

/// `GET /dashboard/admin/{section}`.
pub async fn show(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(section): Path<String>,
    Query(q): Query<QuotaQuery>,
) -> Result<Response, DashError> {
    let ctx = admin_ctx(&d, &headers)?;
    match section.as_str() {
        "hypervisors" => hypervisors(&d, &ctx).await,
        "instances" => instances(&d, &ctx).await,
        "flavors" => flavors(&d, &ctx).await,
        "images" => images(&d, &ctx).await,
        "networks" => networks(&d, &ctx).await,
        "quotas" => quotas(&d, &ctx, q).await,
        "services" => services(&d, &ctx).await,
        "projects" => admin_identity::projects(&d, &ctx).await,
        "users" => admin_identity::users(&d, &ctx).await,
        "groups" => admin_identity::groups(&d, &ctx).await,
        "roles" => admin_identity::roles(&d, &ctx).await,
        _ => Err(DashError::NotFound("No such admin page.".into())),
    }
}

/// `POST /dashboard/admin/{section}`: the form's `action` says what; back to the page with a
/// flash saying how it went.
pub async fn act(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(section): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = FormData::parse(&body);
    let ctx = admin_post(&d, &headers, &form)?;
    let mut back = section_url(&section);
    match section.as_str() {
        "flavors" => flavors_post(&d, &ctx, &form).await?,
        "quotas" => back = quotas_post(&d, &ctx, &form).await?,
        "services" => services_post(&d, &ctx, &form).await?,
        "projects" => admin_identity::projects_post(&d, &ctx, &form).await?,
        "users" => admin_identity::users_post(&d, &ctx, &form).await?,
        "groups" => admin_identity::groups_post(&d, &ctx, &form).await?,
        "roles" => admin_identity::roles_post(&d, &ctx, &form).await?,
        _ => return Err(DashError::NotFound("No such admin page.".into())),
    }
    Ok(see_other(&back))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_rows_have_usage_bars() {
        let t = hypervisor_table(&json!({"hypervisors": [{"hypervisor_hostname": "fake-0",
            "hypervisor_type": "fake", "state": "up", "status": "enabled", "vcpus": 8,
            "vcpus_used": 2, "memory_mb": 8192, "memory_mb_used": 1024, "local_gb": 100,
            "local_gb_used": 1, "running_vms": 2}]}));
        let r = &t.rows[0];
        assert_eq!(r.key, "fake-0");
        assert_eq!(r.cells[3].text, "2 of 8 used");
        assert_eq!(
            r.cells[4].bar.as_ref().map(|b| b.pct.as_str()),
            Some("12.5")
        );
        assert_eq!(r.cells[6].text, "2");
        assert_eq!(r.cells[2].badge, "ok");
    }

    #[test]
    fn flavor_form_to_body() {
        let f = FormData::parse(b"name=big&vcpus=4&ram=4096&disk=20&public=1");
        let b = flavor_body(&f).unwrap();
        assert_eq!(b["flavor"]["vcpus"], 4);
        assert_eq!(b["flavor"]["os-flavor-access:is_public"], true);
        let f = FormData::parse(b"name=p&vcpus=1&ram=1&disk=0");
        assert_eq!(
            flavor_body(&f).unwrap()["flavor"]["os-flavor-access:is_public"],
            false
        );
        assert!(flavor_body(&FormData::parse(b"name=x&vcpus=two&ram=1&disk=1")).is_err());
        assert!(flavor_body(&FormData::parse(b"vcpus=1&ram=1&disk=1")).is_err());
    }

    #[test]
    fn quota_form_to_three_bodies() {
        let f = FormData::parse(
            b"action=update&project=p&compute.instances=7&network.port=-1&volume.volumes=3&compute.bogus=1",
        );
        let [c, n, v] = quota_updates(&f).unwrap();
        assert_eq!(c.get("instances"), Some(&json!(7)));
        assert!(c.get("bogus").is_none());
        assert_eq!(n.get("port"), Some(&json!(-1)));
        assert_eq!(v.get("volumes"), Some(&json!(3)));
        assert!(quota_updates(&FormData::parse(b"compute.cores=lots")).is_err());
        let fields = quota_fields(
            "compute",
            COMPUTE_QUOTAS,
            &json!({"id": "p", "instances": 10, "cores": 20}),
        );
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["compute.instances", "compute.cores"]);
    }

    #[test]
    fn instances_of_all_projects_name_their_project() {
        let projects = HashMap::from([("p1".to_string(), "demo".to_string())]);
        let t = instance_table(
            &json!({"servers": [{"id": "s", "name": "vm", "tenant_id": "p1", "status": "ACTIVE",
                "OS-EXT-SRV-ATTR:host": "fake-0", "flavor": {"original_name": "m1.nano"},
                "addresses": {}}]}),
            &projects,
        );
        assert_eq!(t.rows[0].cells[1].text, "demo");
        assert_eq!(t.rows[0].cells[2].text, "fake-0");
    }

    #[test]
    fn services_offer_the_other_state() {
        let t = compute_service_table(&json!({"services": [
            {"id": "a", "binary": "nova-compute", "host": "h", "status": "enabled", "state": "up"},
            {"id": "b", "binary": "nova-compute", "host": "g", "status": "disabled", "state": "up"}]}));
        assert_eq!(t.rows[0].actions[0].name, "disable");
        assert_eq!(t.rows[1].actions[0].name, "enable");
    }
}
