//! The image domain: images, their members and import tasks. No HTTP, no SQL.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Additional (free-form, string-valued) properties of an image.
pub type Properties = Map<String, Value>;

/// Glance's image statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Saving,
    Active,
    Killed,
    Deleted,
    Uploading,
    Importing,
    PendingDelete,
    Deactivated,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Saving,
        Status::Active,
        Status::Killed,
        Status::Deleted,
        Status::Uploading,
        Status::Importing,
        Status::PendingDelete,
        Status::Deactivated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Saving => "saving",
            Status::Active => "active",
            Status::Killed => "killed",
            Status::Deleted => "deleted",
            Status::Uploading => "uploading",
            Status::Importing => "importing",
            Status::PendingDelete => "pending_delete",
            Status::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Glance's state machine (`glance.domain.Image.valid_state_targets`).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match self {
            Queued => matches!(to, Saving | Uploading | Importing | Active | Deleted),
            Saving => matches!(to, Active | Killed | Deleted | Queued),
            Uploading => matches!(to, Importing | Queued | Deleted),
            Importing => matches!(to, Active | Deleted | Queued),
            Active => matches!(to, PendingDelete | Deleted | Deactivated),
            Killed => matches!(to, Deleted),
            PendingDelete => matches!(to, Deleted | Active),
            Deleted => false,
            Deactivated => matches!(to, Active | Deleted),
        }
    }

    /// Statuses in which the image has data in the store.
    pub fn has_data(self) -> bool {
        matches!(self, Status::Active | Status::Deactivated)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            "shared" => Some(Visibility::Shared),
            "community" => Some(Visibility::Community),
            _ => None,
        }
    }
}

/// One image's metadata (its data lives in the store under its id).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    pub visibility: Visibility,
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub protected: bool,
    pub os_hidden: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub properties: Properties,
    pub tags: BTreeSet<String>,
}

/// Attributes Glance keeps as columns; everything else is an additional property.
pub const BASE_ATTRIBUTES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "owner",
    "disk_format",
    "container_format",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "min_disk",
    "min_ram",
    "protected",
    "os_hidden",
    "created_at",
    "updated_at",
    "tags",
    "locations",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<MemberStatus> {
        match s {
            "pending" => Some(MemberStatus::Pending),
            "accepted" => Some(MemberStatus::Accepted),
            "rejected" => Some(MemberStatus::Rejected),
            _ => None,
        }
    }
}

/// A project an image is shared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Pending,
    Processing,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Success => "success",
            TaskStatus::Failure => "failure",
        }
    }
    pub fn parse(s: &str) -> Option<TaskStatus> {
        match s {
            "pending" => Some(TaskStatus::Pending),
            "processing" => Some(TaskStatus::Processing),
            "success" => Some(TaskStatus::Success),
            "failure" => Some(TaskStatus::Failure),
            _ => None,
        }
    }
}

/// An asynchronous import (`api_image_import`), as `/v2/tasks` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub task_type: String,
    pub status: TaskStatus,
    pub owner: Option<String>,
    pub image_id: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub input: Value,
    pub result: Option<Value>,
    pub message: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The import methods kumo implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportMethod {
    GlanceDirect,
    WebDownload { uri: String },
}

impl ImportMethod {
    pub fn name(&self) -> &'static str {
        match self {
            ImportMethod::GlanceDirect => "glance-direct",
            ImportMethod::WebDownload { .. } => "web-download",
        }
    }
}
