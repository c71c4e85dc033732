//! Volumes, snapshots, types and attachments as the service keeps them, and Cinder's status
//! machine: which action is allowed from which status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Metadata = BTreeMap<String, String>;

/// Cinder's volume statuses.
pub mod status {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    pub const RESERVED: &str = "reserved";
    pub const ATTACHING: &str = "attaching";
    pub const IN_USE: &str = "in-use";
    pub const DETACHING: &str = "detaching";
    pub const DELETING: &str = "deleting";
    pub const ERROR: &str = "error";
    pub const ERROR_DELETING: &str = "error_deleting";
    pub const ERROR_EXTENDING: &str = "error_extending";
    pub const EXTENDING: &str = "extending";
    pub const DOWNLOADING: &str = "downloading";
    pub const UPLOADING: &str = "uploading";
    pub const MAINTENANCE: &str = "maintenance";

    /// Every status os-reset_status accepts.
    pub const ALL: &[&str] = &[
        CREATING,
        AVAILABLE,
        RESERVED,
        ATTACHING,
        IN_USE,
        DETACHING,
        DELETING,
        ERROR,
        ERROR_DELETING,
        ERROR_EXTENDING,
        EXTENDING,
        DOWNLOADING,
        UPLOADING,
        MAINTENANCE,
    ];

    /// Statuses a process can die in the middle of (fixed at start).
    pub const TRANSIENT: &[&str] = &[CREATING, DELETING, EXTENDING, DOWNLOADING, UPLOADING];
}

/// What a caller asks of a volume; [`allowed_from`] says in which statuses Cinder allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    Extend,
    ExtendInUse,
    Snapshot,
    SnapshotForce,
    Clone,
    Upload,
    Reserve,
    Unreserve,
    BeginDetaching,
    RollDetaching,
    Attach,
    Detach,
    AttachmentCreate,
    Retype,
}

impl Action {
    /// The statuses this action may start from.
    pub fn allowed_from(self) -> &'static [&'static str] {
        use status::*;
        match self {
            Action::Delete => &[AVAILABLE, ERROR, ERROR_EXTENDING, ERROR_DELETING],
            Action::Extend => &[AVAILABLE],
            Action::ExtendInUse => &[AVAILABLE, IN_USE],
            Action::Snapshot => &[AVAILABLE],
            Action::SnapshotForce => &[AVAILABLE, IN_USE],
            Action::Clone => &[AVAILABLE, IN_USE],
            Action::Upload => &[AVAILABLE, IN_USE],
            Action::Reserve => &[AVAILABLE, IN_USE],
            Action::Unreserve => &[RESERVED, ATTACHING],
            Action::BeginDetaching => &[IN_USE],
            Action::RollDetaching => &[DETACHING],
            Action::Attach => &[AVAILABLE, RESERVED, ATTACHING, IN_USE],
            Action::Detach => &[IN_USE, DETACHING, ATTACHING],
            Action::AttachmentCreate => &[AVAILABLE, RESERVED, IN_USE, DOWNLOADING],
            Action::Retype => &[AVAILABLE, IN_USE],
        }
    }

    pub fn check(self, current: &str) -> Result<(), String> {
        if self.allowed_from().contains(&current) {
            return Ok(());
        }
        let must = self.allowed_from().join(" or ");
        Err(match self {
            Action::Delete => format!(
                "Invalid volume: Volume status must be {must}, but current status is: {current}."
            ),
            Action::Extend | Action::ExtendInUse => format!(
                "Invalid volume: Volume should be in {must} status for extending, current status is: {current}."
            ),
            Action::Snapshot | Action::SnapshotForce => {
                format!("Invalid volume: Volume {current} status must be {must}.")
            }
            _ => {
                format!("Invalid volume: Volume status must be {must} (current status: {current}).")
            }
        })
    }
}

/// A volume and everything the service knows about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: i64,
    pub status: String,
    pub availability_zone: String,
    pub volume_type_id: String,
    pub volume_type_name: String,
    pub bootable: bool,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub image_metadata: Option<Metadata>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    /// Backend name (`[file]` section) the volume lives on.
    pub backend: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The size the compute host still has to grow the guest's disk to (in-use extend).
    #[serde(default)]
    pub pending_extend: Option<i64>,
}

impl Volume {
    pub fn host(&self, hostname: &str) -> String {
        format!("{hostname}@{b}#{b}", b = self.backend)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: i64,
    pub status: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub backend: String,
    pub volume_type_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeType {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    #[serde(default)]
    pub extra_specs: Metadata,
    #[serde(default)]
    pub projects: Vec<String>,
}

/// A volume attachment (the attachments API and the legacy attach actions share it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub id: String,
    pub volume_id: String,
    pub project_id: String,
    pub instance_uuid: Option<String>,
    /// reserved, attaching, attached, detached.
    pub attach_status: String,
    pub attach_mode: String,
    pub connector: Option<serde_json::Value>,
    pub connection_info: Option<serde_json::Value>,
    pub host_name: Option<String>,
    pub mountpoint: Option<String>,
    pub attached_at: Option<DateTime<Utc>>,
    pub detached_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The status a volume has given its attachments, after one is removed or completed.
pub fn status_from_attachments(atts: &[Attachment]) -> &'static str {
    if atts.iter().any(|a| a.attach_status == "attached") {
        status::IN_USE
    } else if atts.iter().any(|a| a.attach_status == "attaching") {
        status::ATTACHING
    } else if atts.is_empty() {
        status::AVAILABLE
    } else {
        status::RESERVED
    }
}

/// What a restart makes of a volume found in `status` (`has_data`: the backend holds a complete
/// volume; `attached`: a completed attachment exists).
pub fn recovered_status(status: &str, has_data: bool, attached: bool) -> Option<&'static str> {
    match status {
        status::CREATING if has_data => Some(status::AVAILABLE),
        status::CREATING | status::DOWNLOADING | status::DELETING => Some(status::ERROR),
        status::EXTENDING => Some(status::ERROR_EXTENDING),
        status::UPLOADING | status::RESERVED | status::ATTACHING | status::DETACHING => {
            Some(if attached {
                status::IN_USE
            } else {
                status::AVAILABLE
            })
        }
        status::IN_USE if !attached => Some(status::AVAILABLE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_only_from_settled_statuses() {
        assert!(Action::Delete.check("available").is_ok());
        assert!(Action::Delete.check("error").is_ok());
        let e = Action::Delete.check("in-use").unwrap_err();
        assert!(e.starts_with("Invalid volume: "), "{e}");
        assert!(e.contains("in-use"));
        assert!(Action::Delete.check("attaching").is_err());
        assert!(Action::Delete.check("creating").is_err());
    }

    #[test]
    fn extend_in_use_only_with_the_microversion() {
        assert!(Action::Extend.check("in-use").is_err());
        assert!(Action::ExtendInUse.check("in-use").is_ok());
        assert!(Action::ExtendInUse.check("reserved").is_err());
    }

    #[test]
    fn attach_flow() {
        assert!(Action::Reserve.check("available").is_ok());
        assert!(Action::Unreserve.check("reserved").is_ok());
        assert!(Action::Unreserve.check("available").is_err());
        assert!(Action::BeginDetaching.check("in-use").is_ok());
        assert!(Action::BeginDetaching.check("available").is_err());
        assert!(Action::RollDetaching.check("detaching").is_ok());
        assert!(Action::Snapshot.check("in-use").is_err());
        assert!(Action::SnapshotForce.check("in-use").is_ok());
    }

    fn att(s: &str) -> Attachment {
        Attachment {
            id: "a".into(),
            volume_id: "v".into(),
            project_id: "p".into(),
            instance_uuid: None,
            attach_status: s.into(),
            attach_mode: "rw".into(),
            connector: None,
            connection_info: None,
            host_name: None,
            mountpoint: None,
            attached_at: None,
            detached_at: None,
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    #[test]
    fn status_follows_attachments() {
        assert_eq!(status_from_attachments(&[]), "available");
        assert_eq!(status_from_attachments(&[att("reserved")]), "reserved");
        assert_eq!(
            status_from_attachments(&[att("reserved"), att("attached")]),
            "in-use"
        );
    }

    #[test]
    fn restart_never_leaves_in_use_without_attachment() {
        assert_eq!(recovered_status("creating", false, false), Some("error"));
        assert_eq!(recovered_status("creating", true, false), Some("available"));
        assert_eq!(
            recovered_status("attaching", false, false),
            Some("available")
        );
        assert_eq!(
            recovered_status("reserved", false, false),
            Some("available")
        );
        assert_eq!(recovered_status("in-use", false, false), Some("available"));
        assert_eq!(recovered_status("in-use", false, true), None);
        assert_eq!(
            recovered_status("extending", true, false),
            Some("error_extending")
        );
        assert_eq!(recovered_status("available", true, false), None);
    }
}
