//! One set of handlers for every Neutron collection (`GET/POST /things`,
//! `GET/PUT/DELETE /things/{id}`): each resource says how to list, show, create, update and
//! delete through [`Collection`]; parsing, bulk bodies, filters, `fields=`, pagination,
//! `If-Match` and rendering are the same for all.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use common::auth::{AuthContext, Authenticated};
use serde_json::{Map, Value, json};
use std::future::Future;

use super::list::{self, Query};
use super::{Api, Base, JsonBody, created, no_content, ok};
use crate::core::{NetworkService, resource_body};
use crate::error::{NetError, Result};

/// A Neutron collection as the core implements it.
pub trait Collection: Send + Sync + 'static {
    /// `network`, and its collection `networks`.
    const ONE: &'static str;
    const MANY: &'static str;
    /// The URL path segment when it differs from the JSON collection key
    /// (`security-groups` for `security_groups`).
    const PATH: &'static str = Self::MANY;
    /// The rendered attributes (what filters and sort keys may name).
    const KEYS: &'static [&'static str];
    fn not_found(id: &str) -> NetError;
    fn list(
        svc: &NetworkService,
        ctx: &AuthContext,
    ) -> impl Future<Output = Result<Vec<Value>>> + Send;
    fn show(
        svc: &NetworkService,
        ctx: &AuthContext,
        id: &str,
    ) -> impl Future<Output = Result<Value>> + Send;
    fn create(
        svc: &NetworkService,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> impl Future<Output = Result<Vec<Value>>> + Send;
    fn update(
        svc: &NetworkService,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        if_match: Option<u64>,
    ) -> impl Future<Output = Result<Value>> + Send;
    fn delete(
        svc: &NetworkService,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Add `/{MANY}` and `/{MANY}/{id}` for `C`.
pub fn routes<C: Collection>(r: Router<Api>) -> Router<Api> {
    r.route(
        &format!("/{}", C::PATH),
        get(list_handler::<C>).post(create_handler::<C>),
    )
    .route(
        &format!("/{}/{{id}}", C::PATH),
        get(show_handler::<C>)
            .put(update_handler::<C>)
            .delete(delete_handler::<C>),
    )
}

/// `If-Match: revision_number=N` (Neutron's revision-if-match); other forms are ignored,
/// as Neutron ignores ETags it does not issue.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(h) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    let s = h.to_str().unwrap_or_default();
    let mut found = None;
    for part in s.split(',') {
        if let Some(n) = part.trim().strip_prefix("revision_number=") {
            let n = n.trim().parse::<u64>().map_err(|_| {
                NetError::bad(format!("Could not parse If-Match header value: {s}"))
            })?;
            found = Some(n);
        }
    }
    Ok(found)
}

/// The single resource or the bulk list of a create request.
fn create_bodies<'a>(
    body: &'a Value,
    one: &str,
    many: &str,
) -> Result<(Vec<&'a Map<String, Value>>, bool)> {
    if let Some(list) = body.get(many) {
        let items = list.as_array().ok_or_else(|| {
            NetError::bad(format!("Invalid input for {many}. Reason: not a list."))
        })?;
        if items.is_empty() {
            return Err(NetError::bad("Resources required"));
        }
        let mut out = Vec::new();
        for it in items {
            out.push(it.as_object().ok_or_else(|| {
                NetError::bad(format!(
                    "Invalid input for {one}. Reason: not a dictionary."
                ))
            })?);
        }
        return Ok((out, true));
    }
    Ok((vec![resource_body(body, one)?], false))
}

async fn list_handler<C: Collection>(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Base(base): Base,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let items = C::list(&api.svc, &ctx).await?;
    let page = list::apply(
        items,
        C::KEYS,
        &q,
        &format!("{base}/v2.0/{}", C::PATH),
        api.svc.cfg.pagination_max_limit,
        C::not_found,
    )?;
    Ok(ok(list::body(C::MANY, page, &q.fields())))
}

async fn create_handler<C: Collection>(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let (bodies, bulk) = create_bodies(&body, C::ONE, C::MANY)?;
    let mut made = C::create(&api.svc, &ctx, &bodies).await?;
    Ok(if bulk {
        created(json!({ C::MANY: made }))
    } else {
        created(json!({ C::ONE: made.pop().unwrap_or(Value::Null) }))
    })
}

async fn show_handler<C: Collection>(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let v = C::show(&api.svc, &ctx, &id).await?;
    Ok(ok(json!({ C::ONE: list::select(v, &q.fields()) })))
}

async fn update_handler<C: Collection>(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let rev = if_match(&headers)?;
    let b = resource_body(&body, C::ONE)?;
    Ok(ok(
        json!({ C::ONE: C::update(&api.svc, &ctx, &id, b, rev).await? }),
    ))
}

async fn delete_handler<C: Collection>(
    State(api): State<Api>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let rev = if_match(&headers)?;
    C::delete(&api.svc, &ctx, &id, rev).await?;
    Ok(no_content())
}

/// A collection whose five operations are the service's methods of the same shape.
macro_rules! collection {
    (
        $name:ident, one = $one:literal, many = $many:literal, path = $path:literal,
        keys = $keys:expr, not_found = $not_found:path,
        list = $list:ident, show = $show:ident, create = $create:ident,
        update = $update:ident, delete = $delete:ident
    ) => {
        pub struct $name;

        impl Collection for $name {
            const ONE: &'static str = $one;
            const MANY: &'static str = $many;
            const PATH: &'static str = $path;
            const KEYS: &'static [&'static str] = $keys;
            fn not_found(id: &str) -> NetError {
                $not_found(id)
            }
            async fn list(svc: &NetworkService, ctx: &AuthContext) -> Result<Vec<Value>> {
                svc.$list(ctx).await
            }
            async fn show(svc: &NetworkService, ctx: &AuthContext, id: &str) -> Result<Value> {
                svc.$show(ctx, id).await
            }
            async fn create(
                svc: &NetworkService,
                ctx: &AuthContext,
                bodies: &[&Map<String, Value>],
            ) -> Result<Vec<Value>> {
                svc.$create(ctx, bodies).await
            }
            async fn update(
                svc: &NetworkService,
                ctx: &AuthContext,
                id: &str,
                body: &Map<String, Value>,
                if_match: Option<u64>,
            ) -> Result<Value> {
                svc.$update(ctx, id, body, if_match).await
            }
            async fn delete(
                svc: &NetworkService,
                ctx: &AuthContext,
                id: &str,
                if_match: Option<u64>,
            ) -> Result<()> {
                svc.$delete(ctx, id, if_match).await
            }
        }
    };
}

// Networks.
collection! {
    Networks,
    one = "network",
    many = "networks",
    path = "networks",
    keys = crate::core::NETWORK_KEYS,
    not_found = NetError::network_not_found,
    list = list_networks,
    show = get_network,
    create = create_networks,
    update = update_network,
    delete = delete_network
}

// Agents (`/agents`: registered by their hosts; admins read, update and delete them).
collection! {
    Agents,
    one = "agent",
    many = "agents",
    path = "agents",
    keys = crate::core::agents::AGENT_KEYS,
    not_found = crate::core::agents::agent_not_found,
    list = list_agents,
    show = get_agent,
    create = create_agents,
    update = update_agent,
    delete = delete_agent
}

// Subnets.
collection! {
    Subnets,
    one = "subnet",
    many = "subnets",
    path = "subnets",
    keys = crate::core::SUBNET_KEYS,
    not_found = NetError::subnet_not_found,
    list = list_subnets,
    show = get_subnet,
    create = create_subnets,
    update = update_subnet,
    delete = delete_subnet
}

// Security groups (`/security-groups`).
collection! {
    SecurityGroups,
    one = "security_group",
    many = "security_groups",
    path = "security-groups",
    keys = crate::core::SECURITY_GROUP_KEYS,
    not_found = NetError::security_group_not_found,
    list = list_security_groups,
    show = get_security_group,
    create = create_security_groups,
    update = update_security_group,
    delete = delete_security_group
}

/// Security group rules (`/security-group-rules`; no update: rules are immutable).
pub struct SecurityGroupRules;

impl Collection for SecurityGroupRules {
    const ONE: &'static str = "security_group_rule";
    const MANY: &'static str = "security_group_rules";
    const PATH: &'static str = "security-group-rules";
    const KEYS: &'static [&'static str] = crate::core::SECURITY_GROUP_RULE_KEYS;
    fn not_found(id: &str) -> NetError {
        NetError::security_group_rule_not_found(id)
    }
    async fn list(svc: &NetworkService, ctx: &AuthContext) -> Result<Vec<Value>> {
        svc.list_security_group_rules(ctx).await
    }
    async fn show(svc: &NetworkService, ctx: &AuthContext, id: &str) -> Result<Value> {
        svc.get_security_group_rule(ctx, id).await
    }
    async fn create(
        svc: &NetworkService,
        ctx: &AuthContext,
        bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        svc.create_security_group_rules(ctx, bodies).await
    }
    async fn update(
        svc: &NetworkService,
        _ctx: &AuthContext,
        _id: &str,
        _body: &Map<String, Value>,
        _if_match: Option<u64>,
    ) -> Result<Value> {
        svc.update_security_group_rule()
    }
    async fn delete(
        svc: &NetworkService,
        ctx: &AuthContext,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<()> {
        svc.delete_security_group_rule(ctx, id, if_match).await
    }
}

// Ports.
collection! {
    Ports,
    one = "port",
    many = "ports",
    path = "ports",
    keys = crate::core::PORT_KEYS,
    not_found = crate::core::port_not_found,
    list = list_ports,
    show = get_port,
    create = create_ports,
    update = update_port,
    delete = delete_port
}

// Routers.
collection! {
    Routers,
    one = "router",
    many = "routers",
    path = "routers",
    keys = crate::core::ROUTER_KEYS,
    not_found = NetError::router_not_found,
    list = list_routers,
    show = get_router,
    create = create_routers,
    update = update_router,
    delete = delete_router
}

// Floating IPs.
collection! {
    FloatingIps,
    one = "floatingip",
    many = "floatingips",
    path = "floatingips",
    keys = crate::core::FLOATINGIP_KEYS,
    not_found = NetError::floatingip_not_found,
    list = list_floating_ips,
    show = get_floating_ip,
    create = create_floating_ips,
    update = update_floating_ip,
    delete = delete_floating_ip
}

// Subnet pools.
collection! {
    SubnetPools,
    one = "subnetpool",
    many = "subnetpools",
    path = "subnetpools",
    keys = crate::core::SUBNETPOOL_KEYS,
    not_found = crate::core::subnetpool_not_found,
    list = list_subnetpools,
    show = get_subnetpool,
    create = create_subnetpools,
    update = update_subnetpool,
    delete = delete_subnetpool
}
