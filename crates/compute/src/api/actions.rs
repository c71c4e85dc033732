//! `POST /servers/{id}/action`: the server actions, one body key each.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bus::{BusExt, Target};
use http::StatusCode;
use serde_json::{Value, json};

use super::validate as v;
use super::{Api, Ctx, JsonBody, St, accepted, render};
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::rpc::{self, Operation};

pub fn routes() -> Router<Api> {
    Router::new().route("/servers/{id}/action", post(action))
}

const ANY_TASK: &[Option<&str>] = &[];
const NO_TASK: &[Option<&str>] = &[None];

async fn action(
    State(api): St,
    ctx: Ctx,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let Some(obj) = body.as_object().filter(|o| o.len() == 1) else {
        return Err(ComputeError::bad(
            "Malformed request body: one action expected",
        ));
    };
    let Some((name, arg)) = obj.iter().next() else {
        return Err(ComputeError::bad("Malformed request body"));
    };
    let svc = &api.svc;
    let rid = ctx.request_id.clone();
    let tok = ctx.token.clone();
    let auth = ctx.auth.clone();
    let run = |action_name: &'static str,
               policy: &'static str,
               vms: &'static [&'static str],
               tasks: &'static [Option<&'static str>],
               new_task: Option<&'static str>,
               op: Operation| {
        let svc = svc.clone();
        let rid = rid.clone();
        let tok = tok.clone();
        let auth = auth.clone();
        let id = id.clone();
        async move {
            svc.run_action(
                &auth,
                &id,
                action_name,
                policy,
                vms,
                tasks,
                new_task,
                op,
                &rid,
                &tok,
            )
            .await
        }
    };
    use task_state as t;
    use vm_state as vm;
    match name.as_str() {
        "os-stop" => {
            run(
                action::STOP,
                "os_compute_api:servers:stop",
                &[vm::ACTIVE, vm::ERROR],
                NO_TASK,
                Some(t::POWERING_OFF),
                Operation::Stop,
            )
            .await?;
        }
        "os-start" => {
            run(
                action::START,
                "os_compute_api:servers:start",
                &[vm::STOPPED],
                NO_TASK,
                Some(t::POWERING_ON),
                Operation::Start,
            )
            .await?;
        }
        "reboot" => {
            let kind = arg
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| v::invalid("reboot", arg, "'type' is a required property"))?;
            match kind.to_ascii_uppercase().as_str() {
                "SOFT" => {
                    run(
                        action::REBOOT,
                        "os_compute_api:servers:reboot",
                        &[vm::ACTIVE],
                        NO_TASK,
                        Some(t::REBOOTING),
                        Operation::Reboot { hard: false },
                    )
                    .await?;
                }
                "HARD" => {
                    run(
                        action::REBOOT,
                        "os_compute_api:servers:reboot",
                        &[
                            vm::ACTIVE,
                            vm::STOPPED,
                            vm::PAUSED,
                            vm::SUSPENDED,
                            vm::ERROR,
                        ],
                        &[None, Some(t::REBOOTING), Some(t::REBOOTING_HARD)],
                        Some(t::REBOOTING_HARD),
                        Operation::Reboot { hard: true },
                    )
                    .await?;
                }
                _ => {
                    return Err(v::invalid(
                        "type",
                        &json!(kind),
                        "is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']",
                    ));
                }
            }
        }
        "pause" => {
            run(
                action::PAUSE,
                "os_compute_api:os-pause-server:pause",
                &[vm::ACTIVE],
                NO_TASK,
                Some(t::PAUSING),
                Operation::Pause,
            )
            .await?;
        }
        "unpause" => {
            run(
                action::UNPAUSE,
                "os_compute_api:os-pause-server:unpause",
                &[vm::PAUSED],
                NO_TASK,
                Some(t::UNPAUSING),
                Operation::Unpause,
            )
            .await?;
        }
        "suspend" => {
            run(
                action::SUSPEND,
                "os_compute_api:os-suspend-server:suspend",
                &[vm::ACTIVE],
                NO_TASK,
                Some(t::SUSPENDING),
                Operation::Suspend,
            )
            .await?;
        }
        "resume" => {
            run(
                action::RESUME,
                "os_compute_api:os-suspend-server:resume",
                &[vm::SUSPENDED],
                NO_TASK,
                Some(t::RESUMING),
                Operation::Resume,
            )
            .await?;
        }
        "lock" => {
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-lock-server:lock")
                .await?;
            svc.record_action(&ctx.auth, &i, action::LOCK, &rid).await?;
            let by = if ctx.auth.project_id() == Some(i.project_id.as_str()) {
                "owner"
            } else {
                "admin"
            };
            svc.update_instance(&id, None, |x| {
                x.locked = true;
                x.locked_by = Some(by.into());
                Ok(())
            })
            .await?;
            svc.action_finish(&id, &rid).await?;
        }
        "unlock" => {
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-lock-server:unlock")
                .await?;
            if i.locked_by.as_deref() == Some("admin")
                && ctx.auth.project_id() == Some(i.project_id.as_str())
            {
                let target = json!({"project_id": i.project_id, "user_id": i.user_id});
                svc.authorize(
                    &ctx.auth,
                    "os_compute_api:os-lock-server:unlock:unlock_override",
                    &target,
                )?;
            }
            svc.record_action(&ctx.auth, &i, action::UNLOCK, &rid)
                .await?;
            svc.update_instance(&id, None, |x| {
                x.locked = false;
                x.locked_by = None;
                x.locked_reason = None;
                Ok(())
            })
            .await?;
            svc.action_finish(&id, &rid).await?;
        }
        "shelve" => {
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-shelve:shelve")
                .await?;
            crate::core::servers::check_state(
                &i,
                "shelve",
                &[vm::ACTIVE, vm::STOPPED, vm::PAUSED, vm::SUSPENDED],
                NO_TASK,
            )?;
            let image_id = if i.image_ref.is_empty() {
                None
            } else {
                let img = svc
                    .clients()?
                    .image_create(
                        &ctx.token,
                        &json!({
                            "name": format!("{}-shelved", i.display_name),
                            "disk_format": "raw", "container_format": "bare",
                            "image_type": "snapshot", "instance_uuid": i.uuid,
                            "base_image_ref": i.image_ref,
                        }),
                        &rid,
                    )
                    .await?;
                img["id"].as_str().map(str::to_string)
            };
            run(
                action::SHELVE,
                "os_compute_api:os-shelve:shelve",
                &[vm::ACTIVE, vm::STOPPED, vm::PAUSED, vm::SUSPENDED],
                NO_TASK,
                Some(t::SHELVING),
                Operation::Shelve {
                    image_id,
                    offload: true,
                },
            )
            .await?;
        }
        "shelveOffload" => {
            run(
                action::SHELVE_OFFLOAD,
                "os_compute_api:os-shelve:shelve_offload",
                &[vm::SHELVED],
                NO_TASK,
                Some(t::SHELVING_OFFLOADING),
                Operation::ShelveOffload,
            )
            .await?;
        }
        "unshelve" => {
            if let Some(a) = arg.as_object() {
                v::only(a, &["availability_zone", "host"])?;
            } else if !arg.is_null() {
                return Err(v::invalid(
                    "unshelve",
                    arg,
                    "is not of type 'object', 'null'",
                ));
            }
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-shelve:unshelve")
                .await?;
            if i.locked && !ctx.is_admin() {
                return Err(ComputeError::locked(&id));
            }
            crate::core::servers::check_state(
                &i,
                "unshelve",
                &[vm::SHELVED, vm::SHELVED_OFFLOADED],
                NO_TASK,
            )?;
            svc.update_instance(&id, Some(NO_TASK), |x| {
                x.task_state = Some(t::UNSHELVING.into());
                Ok(())
            })
            .await?;
            svc.record_action(&ctx.auth, &i, action::UNSHELVE, &rid)
                .await?;
            if i.vm_state == vm::SHELVED_OFFLOADED {
                let msg = rpc::UnshelveInstance {
                    instance_uuid: id.clone(),
                    user_token: ctx.token.clone(),
                };
                svc.bus()?
                    .cast_typed(&Target::topic(rpc::CONDUCTOR_TOPIC), &rid, &msg)
                    .await?;
            } else {
                svc.cast_operation(&i, Operation::Unshelve, &rid, &ctx.token)
                    .await?;
            }
        }
        "rebuild" => return rebuild(&api, &ctx, &id, arg).await,
        "resize" => {
            let a = arg
                .as_object()
                .ok_or_else(|| v::invalid("resize", arg, "is not of type 'object'"))?;
            v::only(a, &["flavorRef", "OS-DCF:diskConfig"])?;
            let fref = match a.get("flavorRef") {
                Some(Value::String(s)) if !s.is_empty() => {
                    s.rsplit('/').next().unwrap_or(s).to_string()
                }
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(v::invalid(
                        "flavorRef",
                        other,
                        "is not a valid flavor reference",
                    ));
                }
                None => {
                    return Err(v::invalid(
                        "resize",
                        arg,
                        "'flavorRef' is a required property",
                    ));
                }
            };
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:servers:resize")
                .await?;
            let new = svc
                .usable_flavor(&ctx.auth, &fref)
                .await?
                .ok_or_else(|| ComputeError::bad(format!("Flavor {fref} could not be found.")))?;
            if new.flavorid == i.flavor.flavorid {
                return Err(ComputeError::bad(
                    "When resizing, instances must change flavor!",
                ));
            }
            if new.root_gb < i.flavor.root_gb && !i.image_ref.is_empty() {
                return Err(ComputeError::bad(
                    "Resize to a smaller disk is not allowed: the flavor's disk is smaller than the server's.",
                ));
            }
            let dv = new.vcpus - i.flavor.vcpus;
            let dr = new.memory_mb - i.flavor.memory_mb;
            if dv > 0 || dr > 0 {
                let (_, cores, ram) =
                    crate::store::project_usage(svc.db.conn(), &i.project_id, None).await?;
                let lc = svc.quota_limit(&i.project_id, "cores").await?;
                let lr = svc.quota_limit(&i.project_id, "ram").await?;
                if lc >= 0 && dv > 0 && cores + dv > lc {
                    return Err(ComputeError::QuotaExceeded(format!(
                        "Quota exceeded for cores: Requested {dv}, but already used {cores} of {lc} cores"
                    )));
                }
                if lr >= 0 && dr > 0 && ram + dr > lr {
                    return Err(ComputeError::QuotaExceeded(format!(
                        "Quota exceeded for ram: Requested {dr}, but already used {ram} of {lr} ram"
                    )));
                }
            }
            crate::core::servers::check_state(&i, "resize", &[vm::ACTIVE, vm::STOPPED], NO_TASK)?;
            let mut snap = new.clone();
            snap.id = 0;
            svc.update_instance(&id, Some(NO_TASK), move |x| {
                x.new_flavor = Some(snap);
                Ok(())
            })
            .await?;
            run(
                action::RESIZE,
                "os_compute_api:servers:resize",
                &[vm::ACTIVE, vm::STOPPED],
                NO_TASK,
                Some(t::RESIZE_PREP),
                Operation::Resize,
            )
            .await?;
        }
        "confirmResize" => {
            run(
                action::CONFIRM_RESIZE,
                "os_compute_api:servers:confirm_resize",
                &[vm::RESIZED],
                NO_TASK,
                Some(t::RESIZE_CONFIRMING),
                Operation::ConfirmResize,
            )
            .await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        "revertResize" => {
            run(
                action::REVERT_RESIZE,
                "os_compute_api:servers:revert_resize",
                &[vm::RESIZED],
                NO_TASK,
                Some(t::RESIZE_REVERTING),
                Operation::RevertResize,
            )
            .await?;
        }
        "createImage" => return create_image(&api, &ctx, &id, arg).await,
        "os-resetState" => {
            let state = arg.get("state").and_then(Value::as_str).ok_or_else(|| {
                v::invalid("os-resetState", arg, "'state' is a required property")
            })?;
            let new_vm = match state {
                "active" => vm::ACTIVE,
                "error" => vm::ERROR,
                _ => {
                    return Err(v::invalid(
                        "state",
                        &json!(state),
                        "is not one of ['active', 'error']",
                    ));
                }
            };
            let i = svc
                .instance_for(
                    &ctx.auth,
                    &id,
                    "os_compute_api:os-admin-actions:reset_state",
                )
                .await?;
            svc.record_action(&ctx.auth, &i, action::RESET_STATE, &rid)
                .await?;
            svc.update_instance(&id, None, |x| {
                x.vm_state = new_vm.into();
                x.task_state = None;
                Ok(())
            })
            .await?;
            svc.action_finish(&id, &rid).await?;
        }
        "forceDelete" => {
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-deferred-delete:force")
                .await?;
            crate::core::servers::check_state(&i, "forceDelete", &[vm::SOFT_DELETED], ANY_TASK)?;
        }
        "restore" => {
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-deferred-delete:restore")
                .await?;
            crate::core::servers::check_state(&i, "restore", &[vm::SOFT_DELETED], ANY_TASK)?;
        }
        "trigger_crash_dump" => {
            ctx.need(17)?;
            if !arg.is_null() {
                return Err(v::invalid(
                    "trigger_crash_dump",
                    arg,
                    "is not of type 'null'",
                ));
            }
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:servers:trigger_crash_dump")
                .await?;
            if i.locked && !ctx.is_admin() {
                return Err(ComputeError::locked(&id));
            }
            crate::core::servers::check_state(
                &i,
                "trigger_crash_dump",
                &[vm::ACTIVE, vm::PAUSED, vm::RESCUED, vm::RESIZED, vm::ERROR],
                NO_TASK,
            )?;
            svc.record_action(&ctx.auth, &i, "trigger_crash_dump", &rid)
                .await?;
            svc.action_finish(&id, &rid).await?;
        }
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(l) => {
                    let n = v::positive_int("length", l, -1)?;
                    (n >= 0).then_some(n as usize)
                }
            };
            let i = svc
                .instance_for(&ctx.auth, &id, "os_compute_api:os-console-output")
                .await?;
            let Some(host) = i.host.clone().filter(|_| i.vm_state != vm::BUILDING) else {
                return Err(ComputeError::conflict(format!(
                    "Cannot 'get_console_output' instance {id} while it is in vm_state {}",
                    i.vm_state
                )));
            };
            let msg = rpc::ConsoleOutput {
                instance_uuid: id.clone(),
                length,
            };
            let out = svc
                .bus()?
                .call_typed(
                    &Target::server(rpc::COMPUTE_TOPIC, &host),
                    &rid,
                    &msg,
                    std::time::Duration::from_secs(30),
                )
                .await
                .map_err(|e| match e {
                    bus::BusError::Remote { message, .. } => ComputeError::NotFound(format!(
                        "Guest does not have a console available. {message}"
                    )),
                    other => other.into(),
                })?;
            return Ok(Json(json!({"output": out})).into_response());
        }
        "addFixedIp" | "removeFixedIp" => return multinic(&api, &ctx, &id, name, arg).await,
        "evacuate" => return evacuate(&api, &ctx, &id, arg).await,
        "os-migrateLive" => return migrate_live(&api, &ctx, &id, arg).await,
        "migrate" => {
            // `null` before 2.56; from 2.56 also `{"host": ...}`.
            let host = match arg {
                Value::Null => None,
                Value::Object(a) if ctx.at(56) => {
                    v::only(a, &["host"])?;
                    match a.get("host") {
                        None | Some(Value::Null) => None,
                        Some(h) => Some(v::string("host", h, 255, false)?.unwrap_or_default())
                            .filter(|s| !s.is_empty())
                            .ok_or_else(|| v::invalid("host", h, format!("{h} is too short")))
                            .map(Some)?,
                    }
                }
                other => {
                    return Err(v::invalid(
                        "migrate",
                        other,
                        format!("{other} is not of type 'null'"),
                    ));
                }
            };
            svc.cold_migrate_server(&ctx.auth, &id, host.as_deref(), &ctx.request_id)
                .await?;
        }
        "addSecurityGroup" | "removeSecurityGroup" => {
            return super::security_groups::server_action(&api, &ctx, &id, name, arg).await;
        }
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getRDPConsole" | "os-getSerialConsole" => {
            return super::consoles::legacy(&api, &ctx, &id, name, arg).await;
        }
        other => {
            return Err(ComputeError::bad(format!(
                "There is no such action: {other}"
            )));
        }
    }
    Ok(accepted())
}

/// `evacuate` (admin): the body by microversion as Nova's schemas (onSharedStorage required
/// before 2.14 and gone after, `force` from 2.29 to 2.67); 200 with the admin password
/// before 2.14, an empty 200 after.
async fn evacuate(api: &Api, ctx: &Ctx, id: &str, arg: &Value) -> Result<Response> {
    let a = arg
        .as_object()
        .ok_or_else(|| v::invalid("evacuate", arg, format!("{arg} is not of type 'object'")))?;
    let mut allowed = vec!["host", "adminPass"];
    if !ctx.at(14) {
        allowed.push("onSharedStorage");
    }
    if ctx.at(29) && !ctx.at(68) {
        allowed.push("force");
    }
    v::only(a, &allowed)?;
    if !ctx.at(14) {
        match a.get("onSharedStorage") {
            Some(x) => {
                v::boolean("onSharedStorage", x)?;
            }
            None => {
                return Err(v::invalid(
                    "evacuate",
                    arg,
                    "'onSharedStorage' is a required property",
                ));
            }
        }
    }
    if let Some(f) = a.get("force") {
        // Nova skips the scheduler's filters when forced; here the named host is still
        // filtered (a host without room is refused either way by placement).
        v::boolean("force", f)?;
    }
    let host = match a.get("host") {
        None => None,
        Some(h) => {
            let s = v::string("host", h, 255, false)?.unwrap_or_default();
            if s.is_empty() || s.chars().any(|c| c.is_whitespace()) {
                return Err(v::invalid(
                    "host",
                    h,
                    format!("{h} does not match the host name pattern"),
                ));
            }
            Some(s)
        }
    };
    let pass = match a.get("adminPass") {
        None => None,
        Some(p) => v::string("adminPass", p, 255, false)?,
    };
    let req = crate::core::evacuate::EvacuateRequest { host };
    api.svc
        .evacuate_server(&ctx.auth, id, &req, &ctx.request_id, &ctx.token)
        .await?;
    if ctx.at(14) {
        return Ok(StatusCode::OK.into_response());
    }
    // Nova generates a password when none is given (the guest does not learn it here).
    let pass = pass.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    Ok((StatusCode::OK, Json(json!({"adminPass": pass}))).into_response())
}

/// `os-migrateLive` (admin): the body by microversion as Nova's schemas (`block_migration`,
/// `disk_over_commit` and `host` all required before 2.25; from 2.25 `block_migration` may be
/// `auto` and `disk_over_commit` is gone; `force` from 2.30 to 2.67). 202, no body.
async fn migrate_live(api: &Api, ctx: &Ctx, id: &str, arg: &Value) -> Result<Response> {
    const NAME: &str = "os-migrateLive";
    let a = arg
        .as_object()
        .ok_or_else(|| v::invalid(NAME, arg, format!("{arg} is not of type 'object'")))?;
    let mut allowed = vec!["host", "block_migration"];
    let mut required = vec!["block_migration", "host"];
    if !ctx.at(25) {
        allowed.push("disk_over_commit");
        required.push("disk_over_commit");
    }
    if ctx.at(30) && !ctx.at(68) {
        allowed.push("force");
    }
    v::only(a, &allowed)?;
    for k in required {
        if !a.contains_key(k) {
            return Err(v::invalid(
                NAME,
                arg,
                format!("'{k}' is a required property"),
            ));
        }
    }
    let block_migration = match &a["block_migration"] {
        Value::String(s) if ctx.at(25) && s == "auto" => None,
        Value::String(_) if ctx.at(25) => {
            return Err(v::invalid(
                "block_migration",
                &a["block_migration"],
                format!(
                    "{} is not one of [True, False, 'auto']",
                    a["block_migration"]
                ),
            ));
        }
        b @ Value::Bool(_) => Some(v::boolean("block_migration", b)?),
        other if !ctx.at(25) => Some(v::boolean("block_migration", other)?),
        other => {
            return Err(v::invalid(
                "block_migration",
                other,
                format!("{other} is not one of [True, False, 'auto']"),
            ));
        }
    };
    if let Some(d) = a.get("disk_over_commit") {
        v::boolean("disk_over_commit", d)?;
    }
    if let Some(f) = a.get("force") {
        // Nova skips the scheduler's filters when forced; here the named host is still
        // filtered (a host without room is refused either way by placement).
        v::boolean("force", f)?;
    }
    let host = match a.get("host") {
        None | Some(Value::Null) => None,
        Some(h) => {
            let s = v::string("host", h, 255, false)?.unwrap_or_default();
            if s.is_empty() || s.chars().any(|c| c.is_whitespace()) {
                return Err(v::invalid(
                    "host",
                    h,
                    format!("{h} does not match the host name pattern"),
                ));
            }
            Some(s)
        }
    };
    let req = crate::core::live_migration::LiveMigrateRequest {
        host,
        block_migration,
    };
    api.svc
        .live_migrate_server(&ctx.auth, id, &req, &ctx.request_id)
        .await?;
    Ok(accepted())
}

async fn rebuild(api: &Api, ctx: &Ctx, id: &str, arg: &Value) -> Result<Response> {
    let svc = &api.svc;
    let a = arg
        .as_object()
        .ok_or_else(|| v::invalid("rebuild", arg, "is not of type 'object'"))?;
    let mut allowed = vec![
        "imageRef",
        "name",
        "adminPass",
        "metadata",
        "accessIPv4",
        "accessIPv6",
        "OS-DCF:diskConfig",
        "preserve_ephemeral",
        "personality",
    ];
    if ctx.at(19) {
        allowed.push("description");
    }
    if ctx.at(54) {
        allowed.push("key_name");
    }
    if ctx.at(57) {
        allowed.push("user_data");
        allowed.retain(|k| *k != "personality");
    }
    if ctx.at(63) {
        allowed.push("trusted_image_certificates");
    }
    v::only(a, &allowed)?;
    let href = a
        .get("imageRef")
        .and_then(Value::as_str)
        .ok_or_else(|| v::invalid("rebuild", arg, "'imageRef' is a required property"))?;
    let image_id = href
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    if !v::is_uuid(&image_id) {
        return Err(ComputeError::bad("Invalid imageRef provided."));
    }
    let name = a.get("name").map(|n| v::name("name", n)).transpose()?;
    let metadata = a
        .get("metadata")
        .map(|m| v::metadata("metadata", m))
        .transpose()?;
    let v4 = a
        .get("accessIPv4")
        .map(|x| v::ipv4("accessIPv4", x))
        .transpose()?;
    let v6 = a
        .get("accessIPv6")
        .map(|x| v::ipv6("accessIPv6", x))
        .transpose()?;
    let description = a
        .get("description")
        .map(|d| v::string("description", d, 255, true))
        .transpose()?;
    let i = svc
        .instance_for(&ctx.auth, id, "os_compute_api:servers:rebuild")
        .await?;
    if i.locked && !ctx.is_admin() {
        return Err(ComputeError::locked(id));
    }
    crate::core::servers::check_state(
        &i,
        "rebuild",
        &[vm_state::ACTIVE, vm_state::STOPPED, vm_state::ERROR],
        NO_TASK,
    )?;
    let image = svc
        .clients()?
        .image_get(&ctx.token, &image_id, &ctx.request_id)
        .await?
        .ok_or_else(|| ComputeError::bad("Cannot find image for rebuild"))?;
    if image["status"] != "active" {
        return Err(ComputeError::bad(format!(
            "Image {image_id} is not active."
        )));
    }
    let key = match a.get("key_name") {
        Some(Value::Null) => Some(None),
        Some(Value::String(k)) => Some(Some(
            crate::store::flavors::get_keypair(svc.db.conn(), &ctx.auth.user_id, k)
                .await?
                .ok_or_else(|| ComputeError::bad("Invalid key_name provided."))?,
        )),
        Some(other) => {
            return Err(v::invalid(
                "key_name",
                other,
                "is not of type 'string', 'null'",
            ));
        }
        None => None,
    };
    let user_data = match a.get("user_data") {
        Some(Value::Null) => Some(None),
        Some(Value::String(u)) => Some(Some(u.clone())),
        _ => None,
    };
    let i = svc
        .update_instance(id, Some(NO_TASK), |x| {
            x.image_ref = image_id.clone();
            x.image_meta = image.clone();
            if let Some(n) = name {
                x.hostname = crate::core::servers::sanitize_hostname(&n);
                x.display_name = n;
            }
            if let Some(m) = metadata {
                x.metadata = m;
            }
            if let Some(a) = v4 {
                x.access_ip_v4 = a;
            }
            if let Some(a) = v6 {
                x.access_ip_v6 = a;
            }
            if let Some(d) = description {
                x.display_description = d;
            }
            if let Some(k) = key {
                x.key_name = k.as_ref().map(|k| k.name.clone());
                x.key_data = k.map(|k| k.public_key);
            }
            if let Some(u) = user_data {
                x.user_data = u;
            }
            x.task_state = Some(task_state::REBUILDING.into());
            Ok(())
        })
        .await?;
    svc.record_action(&ctx.auth, &i, action::REBUILD, &ctx.request_id)
        .await?;
    svc.cast_operation(&i, Operation::Rebuild, &ctx.request_id, &ctx.token)
        .await?;
    let mut server = render::server_changed(
        ctx,
        &i,
        Some(i.server_group.iter().cloned().collect()),
        ctx.at(54),
    );
    let pass = a
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    server["adminPass"] = json!(pass);
    Ok((StatusCode::ACCEPTED, Json(json!({"server": server}))).into_response())
}

async fn create_image(api: &Api, ctx: &Ctx, id: &str, arg: &Value) -> Result<Response> {
    let svc = &api.svc;
    let a = arg
        .as_object()
        .ok_or_else(|| v::invalid("createImage", arg, "is not of type 'object'"))?;
    v::only(a, &["name", "metadata"])?;
    let name = v::name(
        "name",
        a.get("name")
            .ok_or_else(|| v::invalid("createImage", arg, "'name' is a required property"))?,
    )?;
    let metadata = a
        .get("metadata")
        .map(|m| v::metadata("metadata", m))
        .transpose()?
        .unwrap_or_default();
    let i = svc
        .instance_for(&ctx.auth, id, "os_compute_api:servers:create_image")
        .await?;
    if i.locked && !ctx.is_admin() {
        return Err(ComputeError::locked(id));
    }
    crate::core::servers::check_state(
        &i,
        "createImage",
        &[
            vm_state::ACTIVE,
            vm_state::STOPPED,
            vm_state::PAUSED,
            vm_state::SUSPENDED,
        ],
        NO_TASK,
    )?;
    // The source image's formats, as Nova takes them from the instance's image metadata; the
    // driver corrects them at upload if its snapshot differs.
    let fmt = |k: &str, default: &str| {
        i.image_meta[k]
            .as_str()
            .filter(|f| !f.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    let mut props = json!({
        "name": name, "disk_format": fmt("disk_format", "raw"),
        "container_format": fmt("container_format", "bare"),
        "image_type": "snapshot", "instance_uuid": i.uuid, "base_image_ref": i.image_ref,
        "user_id": i.user_id,
    });
    for (k, val) in &metadata {
        props[k] = json!(val);
    }
    let image = svc
        .clients()?
        .image_create(&ctx.token, &props, &ctx.request_id)
        .await?;
    let image_id = image["id"].as_str().unwrap_or_default().to_string();
    svc.run_action(
        &ctx.auth,
        id,
        action::CREATE_IMAGE,
        "os_compute_api:servers:create_image",
        &[
            vm_state::ACTIVE,
            vm_state::STOPPED,
            vm_state::PAUSED,
            vm_state::SUSPENDED,
        ],
        NO_TASK,
        Some(task_state::IMAGE_SNAPSHOT),
        Operation::Snapshot {
            image_id: image_id.clone(),
        },
        &ctx.request_id,
        &ctx.token,
    )
    .await?;
    let location = format!("{}/images/{image_id}", ctx.bookmark);
    if ctx.at(45) {
        Ok((StatusCode::ACCEPTED, Json(json!({"image_id": image_id}))).into_response())
    } else {
        Ok((StatusCode::ACCEPTED, [(http::header::LOCATION, location)]).into_response())
    }
}

/// The multinic actions `addFixedIp` (`{"networkId": ...}`) and `removeFixedIp`
/// (`{"address": ...}`), 202; gone from 2.44 (404, as Nova's versioned actions).
async fn multinic(api: &Api, ctx: &Ctx, id: &str, name: &str, arg: &Value) -> Result<Response> {
    if ctx.at(44) {
        return Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let a = arg
        .as_object()
        .ok_or_else(|| v::invalid(name, arg, format!("{arg} is not of type 'object'")))?;
    if name == "addFixedIp" {
        v::only(a, &["networkId"])?;
        let network_id = match a.get("networkId") {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 36 => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(v::invalid(
                    "networkId",
                    other,
                    format!("{other} is not valid: a string of 1 to 36 characters or a number"),
                ));
            }
            None => {
                return Err(v::invalid(name, arg, "'networkId' is a required property"));
            }
        };
        api.svc
            .add_fixed_ip(&ctx.auth, id, &network_id, &ctx.token, &ctx.request_id)
            .await?;
    } else {
        v::only(a, &["address"])?;
        let address = match a.get("address") {
            Some(Value::String(s)) if s.parse::<std::net::IpAddr>().is_ok() => s.clone(),
            Some(other) => {
                return Err(v::invalid(
                    "address",
                    other,
                    format!("{other} is not valid under any of the given schemas"),
                ));
            }
            None => {
                return Err(v::invalid(name, arg, "'address' is a required property"));
            }
        };
        api.svc
            .remove_fixed_ip(&ctx.auth, id, &address, &ctx.token, &ctx.request_id)
            .await?;
    }
    Ok(accepted())
}
