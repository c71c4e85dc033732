//! Stored credentials (`/v3/credentials`) and policy blobs (`/v3/policies`).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use common::auth::Authenticated;
use serde_json::json;
use sha2::Digest;

use super::resource::{extra_of, s};
use super::schema::{self, check, member};
use super::{Api, Base, Body, QueryMap, created, guard, list_response, no_content, ok, render};
use crate::error::{IdentityError, Result};
use crate::model::*;

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/credentials",
            get(list_credentials).post(create_credential),
        )
        .route(
            "/credentials/{id}",
            get(get_credential)
                .patch(update_credential)
                .delete(delete_credential),
        )
        .route("/policies", get(list_policies).post(create_policy))
        .route(
            "/policies/{id}",
            get(get_policy).patch(update_policy).delete(delete_policy),
        )
}

const CREDENTIAL_FIELDS: &[&str] = &["id", "user_id", "project_id", "type", "blob"];
const POLICY_FIELDS: &[&str] = &["id", "type", "blob"];

fn credential_target(c: &Credential) -> serde_json::Value {
    json!({"target": {"credential": {"id": c.id, "user_id": c.user_id, "project_id": c.project_id}}})
}

async fn list_credentials(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    api.id
        .authorize(
            &ctx,
            "identity:list_credentials",
            &json!({"target": {"credential": {"user_id": ctx.user_id}}}),
        )
        .or_else(|_| {
            api.id
                .authorize(&ctx, "identity:list_credentials", &json!({}))
        })?;
    let creds = api
        .id
        .list_credentials(
            q.get("user_id").map(String::as_str),
            q.get("type").map(String::as_str),
        )
        .await?;
    // Each item is shown only if the caller may see it, as Keystone filters.
    let items = creds
        .iter()
        .filter(|c| {
            api.id
                .allowed(&ctx, "identity:get_credential", &credential_target(c))
        })
        .map(|c| render::credential(&base, c))
        .collect();
    Ok(list_response(
        &base,
        "credentials",
        "credentials",
        items,
        api.id.list_limit(),
    ))
}

async fn create_credential(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let v = member(&body, "credential")?;
    check(&schema::CREDENTIAL_CREATE, "credential", v)?;
    api.id.authorize(
        &ctx,
        "identity:create_credential",
        &json!({"target": {"credential": v}}),
    )?;
    let kind = s(v, "type").unwrap_or_default();
    let blob = s(v, "blob").unwrap_or_default();
    // EC2 credentials get a deterministic id (sha256 of the access key), as Keystone does.
    let id = if kind == "ec2" {
        let access = serde_json::from_str::<serde_json::Value>(&blob)
            .ok()
            .and_then(|b| b.get("access").and_then(|a| a.as_str()).map(str::to_string))
            .ok_or_else(|| {
                IdentityError::validation(
                    "Invalid blob in credential: an ec2 credential needs an 'access' key",
                )
            })?;
        if s(v, "project_id").is_none() {
            return Err(IdentityError::validation(
                "Expecting to find project_id in the ec2 credential.",
            ));
        }
        hex::encode(sha2::Sha256::digest(access.as_bytes()))
    } else {
        new_id()
    };
    let c = Credential {
        id,
        user_id: s(v, "user_id").unwrap_or_default(),
        project_id: s(v, "project_id"),
        credential_type: kind,
        blob,
        extra: extra_of(v, CREDENTIAL_FIELDS),
    };
    let c = api.id.create_credential(c).await?;
    Ok(created(
        json!({"credential": render::credential(&base, &c)}),
    ))
}

async fn credential_for(
    api: &Api,
    ctx: &common::auth::AuthContext,
    id: &str,
    action: &str,
) -> Result<Credential> {
    guard(
        api,
        ctx,
        action,
        api.id.get_credential(id).await,
        credential_target,
        "credential",
        id,
    )
}

async fn get_credential(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let c = credential_for(&api, &ctx, &id, "identity:get_credential").await?;
    Ok(ok(json!({"credential": render::credential(&base, &c)})))
}

async fn update_credential(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "credential")?;
    check(&schema::CREDENTIAL_UPDATE, "credential", patch)?;
    let mut c = credential_for(&api, &ctx, &id, "identity:update_credential").await?;
    if let Some(x) = s(patch, "user_id") {
        c.user_id = x;
    }
    if patch.get("project_id").is_some() {
        c.project_id = s(patch, "project_id");
    }
    if let Some(x) = s(patch, "type") {
        c.credential_type = x;
    }
    if let Some(x) = s(patch, "blob") {
        c.blob = x;
    }
    c.extra.extend(extra_of(patch, CREDENTIAL_FIELDS));
    let c = api.id.update_credential(c).await?;
    Ok(ok(json!({"credential": render::credential(&base, &c)})))
}

async fn delete_credential(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    credential_for(&api, &ctx, &id, "identity:delete_credential").await?;
    api.id.delete_credential(&id).await?;
    Ok(no_content())
}

async fn list_policies(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    q: QueryMap,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:list_policies", &json!({}))?;
    let items = api
        .id
        .list_policy_blobs(q.get("type").map(String::as_str))
        .await?
        .iter()
        .map(|p| render::policy(&base, p))
        .collect();
    Ok(list_response(
        &base,
        "policies",
        "policies",
        items,
        api.id.list_limit(),
    ))
}

async fn create_policy(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Body(body): Body,
) -> Result<Response> {
    let v = member(&body, "policy")?;
    check(&schema::POLICY_CREATE, "policy", v)?;
    api.id
        .authorize(&ctx, "identity:create_policy", &json!({}))?;
    let p = Policy {
        id: new_id(),
        policy_type: s(v, "type").unwrap_or_default(),
        blob: s(v, "blob").unwrap_or_default(),
        extra: extra_of(v, POLICY_FIELDS),
    };
    let p = api.id.create_policy_blob(p).await?;
    Ok(created(json!({"policy": render::policy(&base, &p)})))
}

async fn get_policy(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:get_policy", &json!({"policy_id": id}))?;
    Ok(ok(
        json!({"policy": render::policy(&base, &api.id.get_policy_blob(&id).await?)}),
    ))
}

async fn update_policy(
    State(api): State<Api>,
    Base(base): Base,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let patch = member(&body, "policy")?;
    check(&schema::POLICY_UPDATE, "policy", patch)?;
    api.id
        .authorize(&ctx, "identity:update_policy", &json!({"policy_id": id}))?;
    let mut p = api.id.get_policy_blob(&id).await?;
    if let Some(x) = s(patch, "type") {
        p.policy_type = x;
    }
    if let Some(x) = s(patch, "blob") {
        p.blob = x;
    }
    p.extra.extend(extra_of(patch, POLICY_FIELDS));
    let p = api.id.update_policy_blob(p).await?;
    Ok(ok(json!({"policy": render::policy(&base, &p)})))
}

async fn delete_policy(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    api.id
        .authorize(&ctx, "identity:delete_policy", &json!({"policy_id": id}))?;
    api.id.delete_policy_blob(&id).await?;
    Ok(no_content())
}
