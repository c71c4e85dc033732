//! `/flavors`: list, detail, show, create, delete (update, extra specs and access:
//! `flavor_extras.rs`).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, query_pairs, render};
use crate::error::{ComputeError, Result};
use crate::model::Flavor;
use crate::store::flavors as fs;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/flavors", get(list).post(create))
        .route("/flavors/detail", get(detail))
        .route("/flavors/{id}", get(show).delete(delete))
}

/// Nova's `is_public` filter: absent = public (and, for a project, its private ones),
/// `none` = all, else a strict boolean (400 otherwise). Only an admin may choose.
fn is_public_filter(admin: bool, is_public: Option<&str>) -> Result<Option<bool>> {
    if !admin {
        return Ok(Some(true));
    }
    let Some(x) = is_public else {
        return Ok(Some(true));
    };
    match x.to_ascii_lowercase().as_str() {
        "none" => Ok(None),
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(Some(true)),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(Some(false)),
        _ => Err(ComputeError::bad(format!("Invalid is_public filter [{x}]"))),
    }
}

async fn visible(api: &Api, ctx: &Ctx, is_public: Option<&str>) -> Result<Vec<Flavor>> {
    let all = fs::list_flavors(api.svc.db.conn()).await?;
    let admin = ctx.is_admin();
    let filter = is_public_filter(admin, is_public)?;
    let mine: Vec<i32> = match ctx.auth.project_id() {
        Some(p) => fs::flavors_of_project(api.svc.db.conn(), p).await?,
        None => vec![],
    };
    Ok(all
        .into_iter()
        .filter(|f| match filter {
            None => true,
            Some(true) => f.is_public || mine.contains(&f.id),
            Some(false) => !f.is_public,
        })
        .filter(|f| admin || !f.disabled)
        .collect())
}

/// A flavor as shown, without extra specs for whom the policy hides them (2.61+).
fn shown(api: &Api, ctx: &Ctx, f: &Flavor, detail: bool) -> Value {
    let mut v = render::flavor(ctx, f, detail);
    if let Some(o) = v.as_object_mut()
        && o.contains_key("extra_specs")
        && !api.svc.sees_extra_specs(&ctx.auth)
    {
        o.remove("extra_specs");
    }
    v
}

async fn list_common(api: &Api, ctx: &Ctx, q: Option<String>, detail: bool) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let mut flavors = visible(api, ctx, get("is_public").as_deref()).await?;
    if let Some(m) = get("minRam") {
        let n: i64 = m
            .parse()
            .map_err(|_| ComputeError::bad(format!("Invalid minRam filter [{m}]")))?;
        flavors.retain(|f| f.memory_mb >= n);
    }
    if let Some(m) = get("minDisk") {
        let n: i64 = m
            .parse()
            .map_err(|_| ComputeError::bad(format!("Invalid minDisk filter [{m}]")))?;
        flavors.retain(|f| f.root_gb >= n);
    }
    let key = get("sort_key").unwrap_or_else(|| "flavorid".into());
    let desc = get("sort_dir").is_some_and(|d| d == "desc");
    flavors.sort_by(|a, b| {
        let o = match key.as_str() {
            "name" => a.name.cmp(&b.name),
            "memory_mb" => a.memory_mb.cmp(&b.memory_mb),
            "vcpus" => a.vcpus.cmp(&b.vcpus),
            "root_gb" => a.root_gb.cmp(&b.root_gb),
            _ => a.flavorid.cmp(&b.flavorid),
        };
        if desc { o.reverse() } else { o }
    });
    if let Some(m) = get("marker") {
        let pos = flavors
            .iter()
            .position(|f| f.flavorid == m)
            .ok_or_else(|| ComputeError::bad(format!("marker [{m}] not found")))?;
        flavors.drain(..=pos);
    }
    if let Some(l) = get("limit") {
        let n = v::positive_int("limit", &json!(l), 0)? as usize;
        flavors.truncate(n.min(api.svc.cfg.max_limit));
    }
    let items: Vec<Value> = flavors.iter().map(|f| shown(api, ctx, f, detail)).collect();
    Ok(Json(json!({"flavors": items})).into_response())
}

async fn list(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    list_common(&api, &ctx, q, false).await
}

async fn detail(State(api): St, ctx: Ctx, RawQuery(q): RawQuery) -> Result<Response> {
    list_common(&api, &ctx, q, true).await
}

async fn show(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let f = api
        .svc
        .usable_flavor(&ctx.auth, &id)
        .await?
        .ok_or_else(|| ComputeError::flavor_not_found(&id))?;
    Ok(Json(json!({"flavor": shown(&api, &ctx, &f, true)})).into_response())
}

async fn create(State(api): St, ctx: Ctx, JsonBody(body): JsonBody) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-flavor-manage:create",
        &json!({}),
    )?;
    let f = v::object(&body, "flavor")?;
    let mut allowed = vec![
        "name",
        "id",
        "ram",
        "vcpus",
        "disk",
        "OS-FLV-EXT-DATA:ephemeral",
        "swap",
        "rxtx_factor",
        "os-flavor-access:is_public",
    ];
    if ctx.at(55) {
        allowed.push("description");
    }
    v::only(f, &allowed)?;
    let req = |k: &str| {
        f.get(k).ok_or_else(|| {
            v::invalid(
                "flavor",
                &body["flavor"],
                format!("'{k}' is a required property"),
            )
        })
    };
    let name = v::name("name", req("name")?)?;
    let flavorid = match f.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 && s.trim() == s => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(v::invalid("id", other, "is not a valid flavor id")),
    };
    let int = |k: &str, min: i64, dflt: Option<i64>| -> Result<i64> {
        match (f.get(k), dflt) {
            (None, Some(d)) => Ok(d),
            (Some(Value::String(s)), Some(d)) if s.is_empty() => Ok(d),
            (None, None) => Err(v::invalid(
                "flavor",
                &body["flavor"],
                format!("'{k}' is a required property"),
            )),
            (Some(x), _) => {
                let n = v::positive_int(k, x, min)?;
                if n > i32::MAX as i64 {
                    return Err(v::invalid(
                        k,
                        x,
                        format!("{n} is greater than the maximum of 2147483647"),
                    ));
                }
                Ok(n)
            }
        }
    };
    let flavor = Flavor {
        id: 0,
        flavorid: flavorid.clone(),
        name,
        memory_mb: int("ram", 1, None)?,
        vcpus: int("vcpus", 1, None)?,
        root_gb: int("disk", 0, None)?,
        ephemeral_gb: int("OS-FLV-EXT-DATA:ephemeral", 0, Some(0))?,
        swap: int("swap", 0, Some(0))?,
        rxtx_factor: f.get("rxtx_factor").and_then(Value::as_f64).unwrap_or(1.0),
        is_public: match f.get("os-flavor-access:is_public") {
            Some(x) => v::boolean("os-flavor-access:is_public", x)?,
            None => true,
        },
        disabled: false,
        description: f
            .get("description")
            .map(|d| v::string("description", d, 65535, true))
            .transpose()?
            .flatten(),
        extra_specs: Default::default(),
        created_at: None,
        updated_at: None,
    };
    let txn = svc.db.write().await?;
    if fs::get_flavor(&*txn, &flavorid).await?.is_some() {
        return Err(ComputeError::conflict(format!(
            "Flavor with ID {flavorid} already exists."
        )));
    }
    if fs::get_flavor_by_name(&*txn, &flavor.name).await?.is_some() {
        return Err(ComputeError::conflict(format!(
            "Flavor with name {} already exists.",
            flavor.name
        )));
    }
    let made = fs::insert_flavor(&*txn, &flavor).await?;
    txn.commit().await?;
    Ok(Json(json!({"flavor": shown(&api, &ctx, &made, true)})).into_response())
}

async fn delete(State(api): St, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let svc = &api.svc;
    svc.authorize(
        &ctx.auth,
        "os_compute_api:os-flavor-manage:delete",
        &json!({}),
    )?;
    let txn = svc.db.write().await?;
    let f = fs::get_flavor(&*txn, &id)
        .await?
        .ok_or_else(|| ComputeError::flavor_not_found(&id))?;
    fs::delete_flavor(&*txn, f.id).await?;
    txn.commit().await?;
    Ok(accepted())
}
