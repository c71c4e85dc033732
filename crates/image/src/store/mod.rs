//! Persistence of images, members and tasks: free functions over any sea-orm connection or
//! transaction. Additional properties and tags live as JSON in the image row, so one query
//! reads a whole page of images.

pub mod entities;
pub mod migration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Order,
    QueryFilter, QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::model::*;
use entities as e;

pub use e::image::Column as ImageCol;

/// Create or upgrade the schema.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}

// ---------------------------------------------------------------- images

/// A stored image row: the image and whether it was deleted (ids are never reused).
pub struct Row {
    pub image: Image,
    pub deleted: bool,
}

fn image_from(m: e::image::Model) -> Row {
    let tags: BTreeSet<String> = match m.tags {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    };
    let properties = match m.properties {
        Value::Object(o) => o,
        _ => Properties::new(),
    };
    Row {
        deleted: m.deleted,
        image: Image {
            id: m.id,
            name: m.name,
            status: Status::parse(&m.status).unwrap_or(Status::Killed),
            visibility: Visibility::parse(&m.visibility).unwrap_or(Visibility::Private),
            owner: m.owner,
            disk_format: m.disk_format,
            container_format: m.container_format,
            size: m.size,
            virtual_size: m.virtual_size,
            checksum: m.checksum,
            os_hash_algo: m.os_hash_algo,
            os_hash_value: m.os_hash_value,
            min_disk: m.min_disk,
            min_ram: m.min_ram,
            protected: m.protected,
            os_hidden: m.os_hidden,
            created_at: m.created_at,
            updated_at: m.updated_at,
            properties,
            tags,
        },
    }
}

fn image_am(i: &Image) -> e::image::ActiveModel {
    e::image::ActiveModel {
        id: Set(i.id.clone()),
        name: Set(i.name.clone()),
        status: Set(i.status.as_str().to_string()),
        visibility: Set(i.visibility.as_str().to_string()),
        owner: Set(i.owner.clone()),
        disk_format: Set(i.disk_format.clone()),
        container_format: Set(i.container_format.clone()),
        size: Set(i.size),
        virtual_size: Set(i.virtual_size),
        checksum: Set(i.checksum.clone()),
        os_hash_algo: Set(i.os_hash_algo.clone()),
        os_hash_value: Set(i.os_hash_value.clone()),
        min_disk: Set(i.min_disk),
        min_ram: Set(i.min_ram),
        protected: Set(i.protected),
        os_hidden: Set(i.os_hidden),
        created_at: Set(i.created_at),
        updated_at: Set(i.updated_at),
        deleted: Set(i.status == Status::Deleted),
        deleted_at: Set((i.status == Status::Deleted).then_some(i.updated_at)),
        properties: Set(Value::Object(i.properties.clone())),
        tags: Set(Value::Array(
            i.tags.iter().map(|t| Value::String(t.clone())).collect(),
        )),
    }
}

pub async fn insert_image<C: ConnectionTrait>(c: &C, i: &Image) -> Result<(), DbErr> {
    e::image::Entity::insert(image_am(i))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn get_image<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Row>, DbErr> {
    Ok(e::image::Entity::find_by_id(id)
        .one(c)
        .await?
        .map(image_from))
}

/// Write `i` if the stored row still has status `expected` (a compare-and-set: concurrent
/// uploads, imports and deletes race here, and exactly one wins). Returns whether it did.
pub async fn save_image_if<C: ConnectionTrait>(
    c: &C,
    i: &Image,
    expected: Status,
) -> Result<bool, DbErr> {
    let res = e::image::Entity::update_many()
        .set(image_am(i))
        .filter(e::image::Column::Id.eq(i.id.as_str()))
        .filter(e::image::Column::Status.eq(expected.as_str()))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Images in any of `statuses` (recovery at start).
pub async fn images_in<C: ConnectionTrait>(
    c: &C,
    statuses: &[Status],
) -> Result<Vec<Image>, DbErr> {
    Ok(e::image::Entity::find()
        .filter(e::image::Column::Status.is_in(statuses.iter().map(|s| s.as_str())))
        .all(c)
        .await?
        .into_iter()
        .map(|m| image_from(m).image)
        .collect())
}

/// Who is listing: an admin sees every image, a project what Glance shows it.
#[derive(Debug, Clone)]
pub enum Viewer {
    Admin { project: Option<String> },
    Project(Option<String>),
}

/// A filter on one column.
#[derive(Debug, Clone)]
pub enum ColFilter {
    /// `col IN (...)` on a text column (`name=in:a,b`, or one value).
    TextIn(ImageCol, Vec<String>),
    Text(ImageCol, String),
    Int(ImageCol, CmpOp, i64),
    Bool(ImageCol, bool),
    Time(ImageCol, CmpOp, DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub viewer: Viewer,
    /// `None`: `member_status=all`.
    pub member_status: Option<MemberStatus>,
    /// `None`: no visibility filter; `Some(None)`: `visibility=all`.
    pub visibility: Option<Option<Visibility>>,
    pub filters: Vec<ColFilter>,
    /// Sort keys (column, ascending), `created_at` and `id` appended as Glance does.
    pub sort: Vec<(ImageCol, bool)>,
    pub marker: Option<Image>,
    /// `None`: no SQL limit (filters applied afterwards need every candidate).
    pub limit: Option<u64>,
}

fn cmp(col: ImageCol, op: CmpOp, v: sea_orm::Value) -> sea_orm::sea_query::SimpleExpr {
    match op {
        CmpOp::Eq => col.eq(v),
        CmpOp::Neq => col.ne(v),
        CmpOp::Gt => col.gt(v),
        CmpOp::Gte => col.gte(v),
        CmpOp::Lt => col.lt(v),
        CmpOp::Lte => col.lte(v),
    }
}

/// The marker image's value of a sort column.
fn sort_value(i: &Image, col: ImageCol) -> sea_orm::Value {
    use ImageCol as C;
    match col {
        C::Name => i.name.clone().into(),
        C::Status => i.status.as_str().into(),
        C::ContainerFormat => i.container_format.clone().into(),
        C::DiskFormat => i.disk_format.clone().into(),
        C::Size => i.size.into(),
        C::UpdatedAt => i.updated_at.into(),
        C::Id => i.id.clone().into(),
        _ => i.created_at.into(),
    }
}

/// One page of images in the requested order.
pub async fn list_images<C: ConnectionTrait>(c: &C, q: &ListQuery) -> Result<Vec<Image>, DbErr> {
    use e::image::Column as Col;
    let mut cond = Condition::all()
        .add(Col::Deleted.eq(false))
        .add(Col::Status.ne(Status::Killed.as_str()));
    let project = match &q.viewer {
        Viewer::Admin { project } => project.clone(),
        Viewer::Project(p) => p.clone(),
    };
    if let Viewer::Project(p) = &q.viewer {
        // Public and community images, the project's own, and shared images it is a
        // member of (with the requested membership status).
        let mut visible = Condition::any().add(
            Col::Visibility.is_in([Visibility::Public.as_str(), Visibility::Community.as_str()]),
        );
        if let Some(p) = p {
            visible = visible.add(Col::Owner.eq(p.as_str()));
            let mut sub = Query::select();
            sub.column(e::image_member::Column::ImageId)
                .from(e::image_member::Entity)
                .and_where(Expr::col(e::image_member::Column::Member).eq(p.as_str()));
            if let Some(s) = q.member_status {
                sub.and_where(Expr::col(e::image_member::Column::Status).eq(s.as_str()));
            }
            visible = visible.add(
                Condition::all()
                    .add(Col::Visibility.eq(Visibility::Shared.as_str()))
                    .add(Col::Id.in_subquery(sub.to_owned())),
            );
        }
        cond = cond.add(visible);
    }
    match &q.visibility {
        Some(Some(v)) => cond = cond.add(Col::Visibility.eq(v.as_str())),
        Some(None) => {}
        None => {
            // Community images appear in the default list only to their owner.
            let mut c2 = Condition::any().add(Col::Visibility.ne(Visibility::Community.as_str()));
            if let Some(p) = &project {
                c2 = c2.add(Col::Owner.eq(p.as_str()));
            }
            cond = cond.add(c2);
        }
    }
    for f in &q.filters {
        cond = cond.add(match f {
            ColFilter::TextIn(col, vals) => col.is_in(vals.iter().cloned()),
            ColFilter::Text(col, v) => col.eq(v.as_str()),
            ColFilter::Int(col, op, v) => cmp(*col, *op, (*v).into()),
            ColFilter::Bool(col, v) => col.eq(*v),
            ColFilter::Time(col, op, v) => cmp(*col, *op, (*v).into()),
        });
    }
    if let Some(m) = &q.marker {
        // Keyset pagination: rows strictly after the marker in the sort order.
        let mut after = Condition::any();
        for (i, (col, asc)) in q.sort.iter().enumerate() {
            let mut step = Condition::all();
            for (prev, _) in &q.sort[..i] {
                step = step.add(prev.eq(sort_value(m, *prev)));
            }
            let v = sort_value(m, *col);
            step = step.add(if *asc { col.gt(v) } else { col.lt(v) });
            after = after.add(step);
        }
        cond = cond.add(after);
    }
    let mut sel = e::image::Entity::find().filter(cond);
    for (col, asc) in &q.sort {
        sel = sel.order_by(*col, if *asc { Order::Asc } else { Order::Desc });
    }
    if let Some(l) = q.limit {
        sel = sel.limit(l);
    }
    Ok(sel
        .all(c)
        .await?
        .into_iter()
        .map(|m| image_from(m).image)
        .collect())
}

// ---------------------------------------------------------------- members

fn member_from(m: e::image_member::Model) -> Member {
    Member {
        image_id: m.image_id,
        member_id: m.member,
        status: MemberStatus::parse(&m.status).unwrap_or(MemberStatus::Pending),
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn member_am(m: &Member) -> e::image_member::ActiveModel {
    e::image_member::ActiveModel {
        image_id: Set(m.image_id.clone()),
        member: Set(m.member_id.clone()),
        status: Set(m.status.as_str().to_string()),
        created_at: Set(m.created_at),
        updated_at: Set(m.updated_at),
    }
}

pub async fn insert_member<C: ConnectionTrait>(c: &C, m: &Member) -> Result<(), DbErr> {
    e::image_member::Entity::insert(member_am(m))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_member<C: ConnectionTrait>(c: &C, m: &Member) -> Result<(), DbErr> {
    e::image_member::Entity::update_many()
        .set(member_am(m))
        .filter(e::image_member::Column::ImageId.eq(m.image_id.as_str()))
        .filter(e::image_member::Column::Member.eq(m.member_id.as_str()))
        .exec(c)
        .await
        .map(|_| ())
}

pub async fn get_member<C: ConnectionTrait>(
    c: &C,
    image_id: &str,
    member: &str,
) -> Result<Option<Member>, DbErr> {
    Ok(
        e::image_member::Entity::find_by_id((image_id.to_string(), member.to_string()))
            .one(c)
            .await?
            .map(member_from),
    )
}

pub async fn list_members<C: ConnectionTrait>(c: &C, image_id: &str) -> Result<Vec<Member>, DbErr> {
    Ok(e::image_member::Entity::find()
        .filter(e::image_member::Column::ImageId.eq(image_id))
        .order_by_asc(e::image_member::Column::CreatedAt)
        .all(c)
        .await?
        .into_iter()
        .map(member_from)
        .collect())
}

pub async fn delete_member<C: ConnectionTrait>(
    c: &C,
    image_id: &str,
    member: &str,
) -> Result<u64, DbErr> {
    Ok(
        e::image_member::Entity::delete_by_id((image_id.to_string(), member.to_string()))
            .exec(c)
            .await?
            .rows_affected,
    )
}

pub async fn delete_members_of<C: ConnectionTrait>(c: &C, image_id: &str) -> Result<(), DbErr> {
    e::image_member::Entity::delete_many()
        .filter(e::image_member::Column::ImageId.eq(image_id))
        .exec(c)
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------- tasks

fn task_from(m: e::task::Model) -> Task {
    Task {
        id: m.id,
        task_type: m.task_type,
        status: TaskStatus::parse(&m.status).unwrap_or(TaskStatus::Failure),
        owner: m.owner,
        image_id: m.image_id,
        request_id: m.request_id,
        user_id: m.user_id,
        input: m.input,
        result: m.result,
        message: m.message,
        expires_at: m.expires_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn task_am(t: &Task) -> e::task::ActiveModel {
    e::task::ActiveModel {
        id: Set(t.id.clone()),
        task_type: Set(t.task_type.clone()),
        status: Set(t.status.as_str().to_string()),
        owner: Set(t.owner.clone()),
        image_id: Set(t.image_id.clone()),
        request_id: Set(t.request_id.clone()),
        user_id: Set(t.user_id.clone()),
        input: Set(t.input.clone()),
        result: Set(t.result.clone()),
        message: Set(t.message.clone()),
        expires_at: Set(t.expires_at),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    }
}

pub async fn insert_task<C: ConnectionTrait>(c: &C, t: &Task) -> Result<(), DbErr> {
    e::task::Entity::insert(task_am(t))
        .exec_without_returning(c)
        .await
        .map(|_| ())
}

pub async fn update_task<C: ConnectionTrait>(c: &C, t: &Task) -> Result<(), DbErr> {
    e::task::Entity::update_many()
        .set(task_am(t))
        .filter(e::task::Column::Id.eq(t.id.as_str()))
        .exec(c)
        .await
        .map(|_| ())
}

pub async fn get_task<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Task>, DbErr> {
    Ok(e::task::Entity::find_by_id(id).one(c).await?.map(task_from))
}

/// Tasks not expired at `now`, newest first, optionally of one image or status.
pub async fn list_tasks<C: ConnectionTrait>(
    c: &C,
    now: DateTime<Utc>,
    image_id: Option<&str>,
    status: Option<TaskStatus>,
    task_type: Option<&str>,
    ascending: bool,
) -> Result<Vec<Task>, DbErr> {
    let mut q = e::task::Entity::find().filter(
        Condition::any()
            .add(e::task::Column::ExpiresAt.is_null())
            .add(e::task::Column::ExpiresAt.gte(now)),
    );
    if let Some(i) = image_id {
        q = q.filter(e::task::Column::ImageId.eq(i));
    }
    if let Some(s) = status {
        q = q.filter(e::task::Column::Status.eq(s.as_str()));
    }
    if let Some(t) = task_type {
        q = q.filter(e::task::Column::TaskType.eq(t));
    }
    let order = if ascending { Order::Asc } else { Order::Desc };
    Ok(q.order_by(e::task::Column::CreatedAt, order.clone())
        .order_by(e::task::Column::Id, order)
        .all(c)
        .await?
        .into_iter()
        .map(task_from)
        .collect())
}

/// Tasks left unfinished by a previous run (recovery at start).
pub async fn unfinished_tasks<C: ConnectionTrait>(c: &C) -> Result<Vec<Task>, DbErr> {
    Ok(e::task::Entity::find()
        .filter(e::task::Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Processing.as_str(),
        ]))
        .all(c)
        .await?
        .into_iter()
        .map(task_from)
        .collect())
}
