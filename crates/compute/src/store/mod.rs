//! Persistence of the compute service: free functions over any sea-orm connection or
//! transaction. An instance is a row of searchable columns plus its JSON document.

pub mod aggregates;
pub mod console_tokens;
pub mod entities;
pub mod flavors;
pub mod migration;
pub mod migrations;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Order,
    QueryFilter, QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;

use crate::error::{ComputeError, Result};
use crate::model::*;
use entities as e;

/// Create or upgrade the schema.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}

// ---------------------------------------------------------------- instances

fn instance_from(m: e::instance::Model) -> Result<Instance> {
    serde_json::from_value(m.doc)
        .map_err(|err| ComputeError::Internal(format!("instance {} unreadable: {err}", m.uuid)))
}

fn instance_am(i: &Instance) -> Result<e::instance::ActiveModel> {
    Ok(e::instance::ActiveModel {
        uuid: Set(i.uuid.clone()),
        project_id: Set(i.project_id.clone()),
        user_id: Set(i.user_id.clone()),
        display_name: Set(i.display_name.clone()),
        host: Set(i.host.clone()),
        vm_state: Set(i.vm_state.clone()),
        task_state: Set(i.task_state.clone()),
        vcpus: Set(i.flavor.vcpus as i32),
        memory_mb: Set(i.flavor.memory_mb),
        deleted: Set(i.deleted),
        created_at: Set(i.created_at),
        updated_at: Set(i.updated_at),
        deleted_at: Set(i.deleted_at),
        doc: Set(serde_json::to_value(i).map_err(|e| ComputeError::Internal(e.to_string()))?),
    })
}

pub async fn insert_instance(c: &impl ConnectionTrait, i: &Instance) -> Result<()> {
    e::instance::Entity::insert(instance_am(i)?).exec(c).await?;
    Ok(())
}

/// Write the whole instance back (the caller holds the write transaction it read it in).
pub async fn save_instance(c: &impl ConnectionTrait, i: &Instance) -> Result<()> {
    e::instance::Entity::update(instance_am(i)?).exec(c).await?;
    Ok(())
}

/// An instance, deleted ones included (they answer 404 at the API, not here).
pub async fn get_instance(c: &impl ConnectionTrait, uuid: &str) -> Result<Option<Instance>> {
    match e::instance::Entity::find_by_id(uuid.to_string())
        .one(c)
        .await?
    {
        Some(m) => Ok(Some(instance_from(m)?)),
        None => Ok(None),
    }
}

/// What a server list asks the database for; the rest is filtered in memory.
#[derive(Debug, Default, Clone)]
pub struct InstanceQuery {
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub host: Option<String>,
    pub include_deleted: bool,
    pub only_deleted: bool,
    pub vm_states: Option<Vec<String>>,
    pub changes_since: Option<Timestamp>,
    pub changes_before: Option<Timestamp>,
    pub uuids: Option<Vec<String>>,
}

/// Instances matching `q`, newest first (Nova's default sort: created_at desc, then uuid).
pub async fn list_instances(c: &impl ConnectionTrait, q: &InstanceQuery) -> Result<Vec<Instance>> {
    use e::instance::Column as C;
    let mut cond = Condition::all();
    if let Some(p) = &q.project_id {
        cond = cond.add(C::ProjectId.eq(p.clone()));
    }
    if let Some(u) = &q.user_id {
        cond = cond.add(C::UserId.eq(u.clone()));
    }
    if let Some(h) = &q.host {
        cond = cond.add(C::Host.eq(h.clone()));
    }
    if q.only_deleted {
        cond = cond.add(C::Deleted.eq(true));
    } else if !q.include_deleted {
        cond = cond.add(C::Deleted.eq(false));
    }
    if let Some(v) = &q.vm_states {
        cond = cond.add(C::VmState.is_in(v.clone()));
    }
    if let Some(t) = q.changes_since {
        cond = cond.add(C::UpdatedAt.gte(t));
    }
    if let Some(t) = q.changes_before {
        cond = cond.add(C::UpdatedAt.lte(t));
    }
    if let Some(u) = &q.uuids {
        cond = cond.add(C::Uuid.is_in(u.clone()));
    }
    let rows = e::instance::Entity::find()
        .filter(cond)
        .order_by(C::CreatedAt, Order::Desc)
        .order_by(C::Uuid, Order::Desc)
        .all(c)
        .await?;
    rows.into_iter().map(instance_from).collect()
}

/// Live instances of a project (and of one user in it) with the vCPUs and RAM they hold,
/// counted by the database: shelved-offloaded servers hold no cores or RAM (as Nova counts).
pub async fn project_usage(
    c: &impl ConnectionTrait,
    project_id: &str,
    user_id: Option<&str>,
) -> Result<(i64, i64, i64)> {
    use sea_orm::{DbBackend, Statement, Value as V};
    let backend = c.get_database_backend();
    // SUM of a BIGINT is NUMERIC on PostgreSQL and DECIMAL on MySQL: cast back to an integer.
    let int = match backend {
        DbBackend::MySql => "SIGNED",
        DbBackend::Postgres => "BIGINT",
        _ => "INTEGER",
    };
    let mut sql = format!(
        "SELECT COUNT(*) AS n, \
         CAST(COALESCE(SUM(CASE WHEN vm_state <> 'shelved_offloaded' THEN vcpus ELSE 0 END), 0) AS {int}) AS cores, \
         CAST(COALESCE(SUM(CASE WHEN vm_state <> 'shelved_offloaded' THEN memory_mb ELSE 0 END), 0) AS {int}) AS ram \
         FROM instances WHERE deleted = $1 AND project_id = $2",
    );
    let mut values: Vec<V> = vec![false.into(), project_id.into()];
    if let Some(u) = user_id {
        sql.push_str(" AND user_id = $3");
        values.push(u.into());
    }
    let sql = common::db::placeholders(backend, &sql);
    let row = c
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| ComputeError::Internal("usage query returned nothing".into()))?;
    let n: i64 = row.try_get("", "n")?;
    let cores: i64 = row.try_get("", "cores")?;
    let ram: i64 = row.try_get("", "ram")?;
    Ok((n, cores, ram))
}

/// Uuids of the live instances on `host`.
pub async fn instances_on_host(c: &impl ConnectionTrait, host: &str) -> Result<Vec<Instance>> {
    list_instances(
        c,
        &InstanceQuery {
            host: Some(host.to_string()),
            ..Default::default()
        },
    )
    .await
}

// ---------------------------------------------------------------- actions and events

fn action_from(m: e::instance_action::Model) -> InstanceAction {
    InstanceAction {
        id: m.id,
        instance_uuid: m.instance_uuid,
        action: m.action,
        request_id: m.request_id,
        user_id: m.user_id,
        project_id: m.project_id,
        start_time: m.start_time,
        finish_time: m.finish_time,
        message: m.message,
        updated_at: m.updated_at,
    }
}

fn event_from(m: e::instance_action_event::Model) -> ActionEvent {
    ActionEvent {
        id: m.id,
        action_id: m.action_id,
        event: m.event,
        start_time: m.start_time,
        finish_time: m.finish_time,
        result: m.result,
        traceback: m.traceback,
        host: m.host,
        details: m.details,
    }
}

pub async fn insert_action(
    c: &impl ConnectionTrait,
    instance_uuid: &str,
    action: &str,
    request_id: &str,
    user_id: &str,
    project_id: &str,
) -> Result<i32> {
    let now = Utc::now();
    let r = e::instance_action::Entity::insert(e::instance_action::ActiveModel {
        instance_uuid: Set(instance_uuid.to_string()),
        action: Set(action.to_string()),
        request_id: Set(request_id.to_string()),
        user_id: Set(Some(user_id.to_string())),
        project_id: Set(Some(project_id.to_string())),
        start_time: Set(now),
        finish_time: Set(None),
        message: Set(None),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(c)
    .await?;
    Ok(r.last_insert_id)
}

/// The id of the latest action that `request_id` made on `instance_uuid`.
pub async fn find_action_id(
    c: &impl ConnectionTrait,
    instance_uuid: &str,
    request_id: &str,
) -> Result<Option<i32>> {
    use e::instance_action::Column as C;
    Ok(e::instance_action::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::InstanceUuid.eq(instance_uuid))
        .filter(C::RequestId.eq(request_id))
        .order_by(C::Id, Order::Desc)
        .into_tuple::<i32>()
        .one(c)
        .await?)
}

pub async fn find_action(
    c: &impl ConnectionTrait,
    instance_uuid: &str,
    request_id: &str,
) -> Result<Option<InstanceAction>> {
    use e::instance_action::Column as C;
    Ok(e::instance_action::Entity::find()
        .filter(C::InstanceUuid.eq(instance_uuid))
        .filter(C::RequestId.eq(request_id))
        .order_by(C::Id, Order::Desc)
        .one(c)
        .await?
        .map(action_from))
}

pub async fn list_actions(
    c: &impl ConnectionTrait,
    instance_uuid: &str,
) -> Result<Vec<InstanceAction>> {
    use e::instance_action::Column as C;
    Ok(e::instance_action::Entity::find()
        .filter(C::InstanceUuid.eq(instance_uuid))
        .order_by(C::StartTime, Order::Desc)
        .order_by(C::Id, Order::Desc)
        .all(c)
        .await?
        .into_iter()
        .map(action_from)
        .collect())
}

pub async fn list_events(c: &impl ConnectionTrait, action_id: i32) -> Result<Vec<ActionEvent>> {
    use e::instance_action_event::Column as C;
    Ok(e::instance_action_event::Entity::find()
        .filter(C::ActionId.eq(action_id))
        .order_by(C::StartTime, Order::Desc)
        .order_by(C::Id, Order::Desc)
        .all(c)
        .await?
        .into_iter()
        .map(event_from)
        .collect())
}

/// An event row and the action it belongs to: finishing it needs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef {
    pub id: i32,
    pub action_id: i32,
}

/// Start an event of action `action_id` (one insert; [`touch_action`] goes with it).
pub async fn insert_event(
    c: &impl ConnectionTrait,
    action_id: i32,
    event: &str,
    host: Option<&str>,
) -> Result<EventRef> {
    let r = e::instance_action_event::Entity::insert(e::instance_action_event::ActiveModel {
        action_id: Set(action_id),
        event: Set(event.to_string()),
        start_time: Set(Utc::now()),
        finish_time: Set(None),
        result: Set(None),
        traceback: Set(None),
        host: Set(host.map(str::to_string)),
        details: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?;
    Ok(EventRef {
        id: r.last_insert_id,
        action_id,
    })
}

/// Finish an event row: `error` None is Success; Some(message) is Error with the message as
/// traceback (what `server event show` prints as the reason). One update, no read.
pub async fn finish_event(
    c: &impl ConnectionTrait,
    event_id: i32,
    error: Option<&str>,
) -> Result<()> {
    use e::instance_action_event::Column as C;
    e::instance_action_event::Entity::update_many()
        .col_expr(C::FinishTime, Expr::value(Some(Utc::now())))
        .col_expr(
            C::Result,
            Expr::value(Some(
                if error.is_some() { "Error" } else { "Success" }.to_string(),
            )),
        )
        .col_expr(C::Traceback, Expr::value(error.map(str::to_string)))
        .filter(C::Id.eq(event_id))
        .exec(c)
        .await?;
    Ok(())
}

/// An action's events changed: its `updated_at` moves (what `changes-since` on the action
/// list reads), and an event that failed marks it failed (`message: Error`, as Nova).
pub async fn touch_action(c: &impl ConnectionTrait, action_id: i32, failed: bool) -> Result<()> {
    let mut upd = e::instance_action::Entity::update_many()
        .col_expr(
            e::instance_action::Column::UpdatedAt,
            Expr::value(Utc::now()),
        )
        .filter(e::instance_action::Column::Id.eq(action_id));
    if failed {
        upd = upd.col_expr(e::instance_action::Column::Message, Expr::value("Error"));
    }
    upd.exec(c).await?;
    Ok(())
}

/// Mark an action finished (Nova sets finish_time when the last event of a request ends).
pub async fn action_finish(c: &impl ConnectionTrait, action_id: i32) -> Result<()> {
    let now = Utc::now();
    e::instance_action::Entity::update_many()
        .col_expr(e::instance_action::Column::FinishTime, Expr::value(now))
        .col_expr(e::instance_action::Column::UpdatedAt, Expr::value(now))
        .filter(e::instance_action::Column::Id.eq(action_id))
        .exec(c)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- services and nodes

fn service_from(m: e::service::Model) -> Service {
    Service {
        id: m.id,
        uuid: m.uuid,
        host: m.host,
        binary: m.binary,
        topic: m.topic,
        disabled: m.disabled,
        disabled_reason: m.disabled_reason,
        forced_down: m.forced_down,
        report_count: m.report_count,
        last_seen_up: m.last_seen_up,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    }
}

pub async fn list_services(c: &impl ConnectionTrait) -> Result<Vec<Service>> {
    Ok(e::service::Entity::find()
        .order_by(e::service::Column::Id, Order::Asc)
        .all(c)
        .await?
        .into_iter()
        .map(service_from)
        .collect())
}

pub async fn get_service(c: &impl ConnectionTrait, id: i32) -> Result<Option<Service>> {
    Ok(e::service::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(service_from))
}

pub async fn find_service(
    c: &impl ConnectionTrait,
    host: &str,
    binary: &str,
) -> Result<Option<Service>> {
    Ok(e::service::Entity::find()
        .filter(e::service::Column::Host.eq(host))
        .filter(e::service::Column::Binary.eq(binary))
        .one(c)
        .await?
        .map(service_from))
}

/// Register (or refresh) a service at start and on every heartbeat, with the service version
/// of the code that runs it (`rpc::SERVICE_VERSION`): the record follows an upgrade or a
/// downgrade at its first beat.
pub async fn heartbeat_service(
    c: &impl ConnectionTrait,
    host: &str,
    binary: &str,
    topic: &str,
) -> Result<Service> {
    let now = Utc::now();
    let version = crate::rpc::SERVICE_VERSION;
    if let Some(s) = find_service(c, host, binary).await? {
        e::service::Entity::update_many()
            .col_expr(e::service::Column::LastSeenUp, Expr::value(now))
            .col_expr(e::service::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                e::service::Column::ReportCount,
                Expr::value(s.report_count + 1),
            )
            .col_expr(e::service::Column::Version, Expr::value(version))
            .filter(e::service::Column::Id.eq(s.id))
            .exec(c)
            .await?;
        return Ok(Service {
            last_seen_up: Some(now),
            report_count: s.report_count + 1,
            version,
            ..s
        });
    }
    let r = e::service::Entity::insert(e::service::ActiveModel {
        uuid: Set(uuid::Uuid::new_v4().to_string()),
        host: Set(host.to_string()),
        binary: Set(binary.to_string()),
        topic: Set(topic.to_string()),
        disabled: Set(false),
        disabled_reason: Set(None),
        forced_down: Set(false),
        report_count: Set(1),
        last_seen_up: Set(Some(now)),
        created_at: Set(now),
        updated_at: Set(Some(now)),
        version: Set(version),
        ..Default::default()
    })
    .exec(c)
    .await?;
    get_service(c, r.last_insert_id)
        .await?
        .ok_or_else(|| ComputeError::Internal("service row vanished".into()))
}

pub async fn update_service(c: &impl ConnectionTrait, s: &Service) -> Result<()> {
    e::service::Entity::update(e::service::ActiveModel {
        id: Set(s.id),
        uuid: Set(s.uuid.clone()),
        host: Set(s.host.clone()),
        binary: Set(s.binary.clone()),
        topic: Set(s.topic.clone()),
        disabled: Set(s.disabled),
        disabled_reason: Set(s.disabled_reason.clone()),
        forced_down: Set(s.forced_down),
        report_count: Set(s.report_count),
        last_seen_up: Set(s.last_seen_up),
        created_at: Set(s.created_at),
        updated_at: Set(Some(Utc::now())),
        version: Set(s.version),
    })
    .exec(c)
    .await?;
    Ok(())
}

/// The lowest service version among the records of `binary` that are not forced down (Nova's
/// `service_get_minimum_version`); `None` when there is none. A service that is down still
/// counts: it may come back at its old version before anyone notices.
pub async fn min_service_version(c: &impl ConnectionTrait, binary: &str) -> Result<Option<i32>> {
    let min: Option<Option<i32>> = e::service::Entity::find()
        .select_only()
        .column_as(e::service::Column::Version.min(), "min_version")
        .filter(e::service::Column::Binary.eq(binary))
        .filter(e::service::Column::ForcedDown.eq(false))
        .into_tuple()
        .one(c)
        .await?;
    Ok(min.flatten())
}

pub async fn delete_service(c: &impl ConnectionTrait, id: i32) -> Result<()> {
    e::service::Entity::delete_by_id(id).exec(c).await?;
    Ok(())
}

/// Remove the compute nodes of a host (with its deleted service).
pub async fn delete_nodes_of_host(c: &impl ConnectionTrait, host: &str) -> Result<()> {
    e::compute_node::Entity::delete_many()
        .filter(e::compute_node::Column::Host.eq(host))
        .exec(c)
        .await?;
    Ok(())
}

fn node_from(m: e::compute_node::Model) -> Result<ComputeNode> {
    Ok(ComputeNode {
        id: m.id,
        uuid: m.uuid,
        host: m.host,
        hypervisor_hostname: m.hypervisor_hostname,
        resources: serde_json::from_value(m.resources)
            .map_err(|e| ComputeError::Internal(format!("compute node unreadable: {e}")))?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn list_nodes(c: &impl ConnectionTrait) -> Result<Vec<ComputeNode>> {
    e::compute_node::Entity::find()
        .order_by(e::compute_node::Column::Id, Order::Asc)
        .all(c)
        .await?
        .into_iter()
        .map(node_from)
        .collect()
}

/// The node of `host`, created on first report; its uuid is the placement provider's.
pub async fn upsert_node(
    c: &impl ConnectionTrait,
    host: &str,
    res: &hypervisor::HostResources,
) -> Result<ComputeNode> {
    use e::compute_node::Column as C;
    let now = Utc::now();
    let doc = serde_json::to_value(res).map_err(|e| ComputeError::Internal(e.to_string()))?;
    if let Some(m) = e::compute_node::Entity::find()
        .filter(C::Host.eq(host))
        .filter(C::HypervisorHostname.eq(res.hypervisor_hostname.clone()))
        .one(c)
        .await?
    {
        let id = m.id;
        e::compute_node::Entity::update_many()
            .col_expr(C::Resources, Expr::value(doc))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.eq(id))
            .exec(c)
            .await?;
        let mut n = node_from(m)?;
        n.resources = res.clone();
        return Ok(n);
    }
    e::compute_node::Entity::insert(e::compute_node::ActiveModel {
        uuid: Set(uuid::Uuid::new_v4().to_string()),
        host: Set(host.to_string()),
        hypervisor_hostname: Set(res.hypervisor_hostname.clone()),
        resources: Set(doc),
        created_at: Set(now),
        updated_at: Set(None),
        ..Default::default()
    })
    .exec(c)
    .await?;
    let m = e::compute_node::Entity::find()
        .filter(C::Host.eq(host))
        .filter(C::HypervisorHostname.eq(res.hypervisor_hostname.clone()))
        .one(c)
        .await?
        .ok_or_else(|| ComputeError::Internal("compute node row vanished".into()))?;
    node_from(m)
}

// ---------------------------------------------------------------- server groups

fn group_from(m: e::server_group::Model) -> ServerGroup {
    ServerGroup {
        uuid: m.uuid,
        name: m.name,
        project_id: m.project_id,
        user_id: m.user_id,
        policy: m.policy,
        rules: serde_json::from_value(m.rules).unwrap_or_default(),
        members: serde_json::from_value(m.members).unwrap_or_default(),
        created_at: m.created_at,
    }
}

fn group_am(g: &ServerGroup) -> e::server_group::ActiveModel {
    e::server_group::ActiveModel {
        uuid: Set(g.uuid.clone()),
        name: Set(g.name.clone()),
        project_id: Set(g.project_id.clone()),
        user_id: Set(g.user_id.clone()),
        policy: Set(g.policy.clone()),
        rules: Set(serde_json::to_value(&g.rules).unwrap_or_default()),
        members: Set(serde_json::to_value(&g.members).unwrap_or_default()),
        created_at: Set(g.created_at),
    }
}

pub async fn insert_group(c: &impl ConnectionTrait, g: &ServerGroup) -> Result<()> {
    e::server_group::Entity::insert(group_am(g)).exec(c).await?;
    Ok(())
}

pub async fn save_group(c: &impl ConnectionTrait, g: &ServerGroup) -> Result<()> {
    e::server_group::Entity::update(group_am(g)).exec(c).await?;
    Ok(())
}

pub async fn get_group(c: &impl ConnectionTrait, uuid: &str) -> Result<Option<ServerGroup>> {
    Ok(e::server_group::Entity::find_by_id(uuid.to_string())
        .one(c)
        .await?
        .map(group_from))
}

pub async fn list_groups(
    c: &impl ConnectionTrait,
    project_id: Option<&str>,
) -> Result<Vec<ServerGroup>> {
    let mut q = e::server_group::Entity::find();
    if let Some(p) = project_id {
        q = q.filter(e::server_group::Column::ProjectId.eq(p));
    }
    Ok(q.order_by(e::server_group::Column::CreatedAt, Order::Asc)
        .all(c)
        .await?
        .into_iter()
        .map(group_from)
        .collect())
}

pub async fn delete_group(c: &impl ConnectionTrait, uuid: &str) -> Result<bool> {
    let r = e::server_group::Entity::delete_by_id(uuid.to_string())
        .exec(c)
        .await?;
    Ok(r.rows_affected > 0)
}

// ---------------------------------------------------------------- quotas

/// Limits set for a project (user None) or a user in a project.
pub async fn quota_limits(
    c: &impl ConnectionTrait,
    project_id: &str,
    user_id: Option<&str>,
) -> Result<Vec<(String, i64)>> {
    use e::quota::Column as C;
    Ok(e::quota::Entity::find()
        .filter(C::ProjectId.eq(project_id))
        .filter(C::UserId.eq(user_id.unwrap_or("")))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.resource, m.hard_limit))
        .collect())
}

pub async fn set_quota(
    c: &impl ConnectionTrait,
    project_id: &str,
    user_id: Option<&str>,
    resource: &str,
    limit: i64,
) -> Result<()> {
    use e::quota::Column as C;
    e::quota::Entity::delete_many()
        .filter(C::ProjectId.eq(project_id))
        .filter(C::UserId.eq(user_id.unwrap_or("")))
        .filter(C::Resource.eq(resource))
        .exec(c)
        .await?;
    e::quota::Entity::insert(e::quota::ActiveModel {
        project_id: Set(project_id.to_string()),
        user_id: Set(user_id.unwrap_or("").to_string()),
        resource: Set(resource.to_string()),
        hard_limit: Set(limit),
    })
    .exec(c)
    .await?;
    Ok(())
}

pub async fn delete_quotas(
    c: &impl ConnectionTrait,
    project_id: &str,
    user_id: Option<&str>,
) -> Result<()> {
    use e::quota::Column as C;
    let mut q = e::quota::Entity::delete_many().filter(C::ProjectId.eq(project_id));
    if let Some(u) = user_id {
        q = q.filter(C::UserId.eq(u));
    }
    q.exec(c).await?;
    Ok(())
}

pub async fn quota_class_limits(
    c: &impl ConnectionTrait,
    class: &str,
) -> Result<Vec<(String, i64)>> {
    Ok(e::quota_class::Entity::find()
        .filter(e::quota_class::Column::ClassName.eq(class))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.resource, m.hard_limit))
        .collect())
}

pub async fn set_quota_class(
    c: &impl ConnectionTrait,
    class: &str,
    resource: &str,
    limit: i64,
) -> Result<()> {
    use e::quota_class::Column as C;
    e::quota_class::Entity::delete_many()
        .filter(C::ClassName.eq(class))
        .filter(C::Resource.eq(resource))
        .exec(c)
        .await?;
    e::quota_class::Entity::insert(e::quota_class::ActiveModel {
        class_name: Set(class.to_string()),
        resource: Set(resource.to_string()),
        hard_limit: Set(limit),
    })
    .exec(c)
    .await?;
    Ok(())
}

/// Count of rows, for tests and status.
pub async fn count_live_instances(c: &impl ConnectionTrait) -> Result<u64> {
    Ok(e::instance::Entity::find()
        .filter(e::instance::Column::Deleted.eq(false))
        .select_only()
        .column(e::instance::Column::Uuid)
        .into_tuple::<String>()
        .all(c)
        .await?
        .len() as u64)
}
