//! Rolling upgrades (Nova's `[upgrade_levels]`): compute agents of two builds side by side.
//! Every service record carries the service version of its code (`rpc::SERVICE_VERSION`); a
//! sender caps compute messages at what the oldest nova-compute serves, and a message newer
//! than the cap writes itself at the cap (`bus::Message::payload_at`), so an agent at N never
//! gets a message from N+1 that it would refuse.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bus::{BusExt, Message, Target, Version};
use parking_lot::Mutex;

use crate::core::ComputeService;
use crate::error::{ComputeError, Result};
use crate::rpc::{self, COMPUTE_RPC_HISTORY};

/// `[upgrade_levels] compute`: how high compute messages may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeLevel {
    /// What every nova-compute in the database serves (from the oldest service version).
    Auto,
    /// This version at most (an operator's pin during an upgrade).
    Pinned(Version),
}

impl FromStr for UpgradeLevel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            v => v
                .parse()
                .map(Self::Pinned)
                .map_err(|_| format!("{s:?} is neither auto nor a MAJOR.MINOR version")),
        }
    }
}

/// The compute message version a nova-compute at `service_version` serves: its entry in
/// [`COMPUTE_RPC_HISTORY`]; a version older than every entry (0: a record of a build from
/// before versions were recorded) serves the first, one newer than this build at least this
/// build's last (a sender never writes above its own version anyway).
pub fn compute_rpc_for(service_version: i32) -> Version {
    let mut served = COMPUTE_RPC_HISTORY[0].1;
    for (version, rpc) in COMPUTE_RPC_HISTORY {
        if *version <= service_version {
            served = *rpc;
        }
    }
    served
}

/// The cap for compute messages: a pin as set; `auto` from the oldest nova-compute's service
/// version, or this build's newest when no nova-compute is recorded yet.
pub fn version_cap(level: UpgradeLevel, min_compute_version: Option<i32>) -> Version {
    match level {
        UpgradeLevel::Pinned(v) => v,
        UpgradeLevel::Auto => compute_rpc_for(min_compute_version.unwrap_or(rpc::SERVICE_VERSION)),
    }
}

/// What a compute agent logs of each build it serves: the version the sender spoke and, from
/// 1.1 (`rpc-next`), the node the scheduler chose, so a mixed-version phase shows in its log.
pub fn build_served(version: Version, host: &str, msg: &rpc::BuildAndRun) -> String {
    let line = format!(
        "serving build_and_run_instance {version} on {host} for instance {}",
        msg.instance_uuid
    );
    #[cfg(feature = "rpc-next")]
    let line = match &msg.node {
        Some(node) => format!("{line}: node {node}"),
        None => format!("{line}: no node (a 1.0 sender)"),
    };
    line
}

/// The `auto` cap as last read from the database, and when.
#[derive(Debug, Default)]
pub struct CapCache(Mutex<Option<(Instant, Version)>>);

impl ComputeService {
    /// The highest version of compute messages to send now. `auto` reads the oldest
    /// nova-compute's service version at most once per `report_interval` (records change at
    /// that pace: a compute restarted at another version writes it at its registration), and
    /// logs when the cap changes.
    pub async fn compute_rpc_cap(&self) -> Result<Version> {
        let level = self.cfg.upgrade_levels_compute;
        if let UpgradeLevel::Pinned(v) = level {
            return Ok(v);
        }
        let ttl: Duration = self.cfg.report_interval;
        let cached = *self.compute_rpc_cap.0.lock();
        if let Some((at, cap)) = cached
            && at.elapsed() < ttl
        {
            return Ok(cap);
        }
        let min = crate::store::min_service_version(self.db.conn(), "nova-compute").await?;
        let cap = version_cap(level, min);
        let previous = self.compute_rpc_cap.0.lock().replace((Instant::now(), cap));
        if previous.map(|(_, v)| v) != Some(cap) {
            tracing::info!(
                "compute RPC version cap {cap} (oldest nova-compute at service version {}, this build {} speaks {})",
                min.map_or_else(|| "none".to_string(), |v| v.to_string()),
                rpc::SERVICE_VERSION,
                compute_rpc_for(rpc::SERVICE_VERSION),
            );
        }
        Ok(cap)
    }

    /// Cast `message` to the compute agent of `host` under the version cap, written at the cap
    /// when it is newer (logged, so an upgrade's mixed phase shows in the sender's log).
    pub async fn cast_compute<M: Message>(
        &self,
        host: &str,
        request_id: &str,
        message: &M,
    ) -> Result<()> {
        let cap = self.compute_rpc_cap().await?;
        let sent = M::VERSION.capped_by(cap);
        if sent != M::VERSION {
            tracing::info!(
                "sending {} {sent} to compute.{host} (this code speaks {}, the version cap is {cap})",
                M::METHOD,
                M::VERSION
            );
        }
        self.bus()?
            .cast_typed_at(
                &Target::server(rpc::COMPUTE_TOPIC, host),
                request_id,
                message,
                cap,
            )
            .await
            .map_err(|e| ComputeError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_level_parses() {
        assert_eq!("auto".parse(), Ok(UpgradeLevel::Auto));
        assert_eq!(
            " 1.0 ".parse(),
            Ok(UpgradeLevel::Pinned(Version::new(1, 0)))
        );
        assert!("latest".parse::<UpgradeLevel>().is_err());
        assert!("".parse::<UpgradeLevel>().is_err());
    }

    #[test]
    fn cap_follows_the_oldest_compute() {
        let newest = COMPUTE_RPC_HISTORY.last().unwrap().1;
        // records of builds from before versions were recorded: the first version
        assert_eq!(version_cap(UpgradeLevel::Auto, Some(0)), Version::new(1, 0));
        assert_eq!(version_cap(UpgradeLevel::Auto, Some(1)), Version::new(1, 0));
        // no compute yet, or every one newer than this build: this build's newest
        assert_eq!(version_cap(UpgradeLevel::Auto, None), newest);
        assert_eq!(
            version_cap(UpgradeLevel::Auto, Some(rpc::SERVICE_VERSION + 5)),
            newest
        );
        assert_eq!(
            version_cap(UpgradeLevel::Auto, Some(rpc::SERVICE_VERSION)),
            newest
        );
        // a pin wins over the database
        let pin = UpgradeLevel::Pinned(Version::new(1, 0));
        assert_eq!(
            version_cap(pin, Some(rpc::SERVICE_VERSION)),
            Version::new(1, 0)
        );
    }

    #[test]
    fn history_is_ordered_and_ends_at_this_build() {
        let last = COMPUTE_RPC_HISTORY.last().unwrap();
        assert_eq!(last.0, rpc::SERVICE_VERSION);
        for pair in COMPUTE_RPC_HISTORY.windows(2) {
            assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1, "{pair:?}");
        }
        // every compute message this build sends is served by its own entry
        assert!(last.1.can_serve(rpc::BuildAndRun::VERSION));
    }

    #[test]
    fn builds_served_are_logged_with_their_version() {
        let msg = rpc::BuildAndRun {
            instance_uuid: "i".into(),
            user_token: String::new(),
            #[cfg(feature = "rpc-next")]
            node: None,
        };
        let line = build_served(Version::new(1, 0), "h", &msg);
        assert!(
            line.starts_with("serving build_and_run_instance 1.0 on h for instance i"),
            "{line}"
        );
    }

    /// The versions in the services table (SQLite here; PostgreSQL and MariaDB in the e2e
    /// tests): written at registration and heartbeat, and the minimum skips forced-down records.
    #[tokio::test]
    async fn min_service_version_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("compute.sqlite").display());
        let db = common::db::Database::connect(&url).await.unwrap();
        crate::store::migrate(db.conn()).await.unwrap();
        let min = || crate::store::min_service_version(db.conn(), "nova-compute");
        assert_eq!(min().await.unwrap(), None);
        let s = crate::store::heartbeat_service(db.conn(), "a", "nova-compute", "compute")
            .await
            .unwrap();
        assert_eq!(s.version, rpc::SERVICE_VERSION);
        crate::store::heartbeat_service(db.conn(), "c", "nova-conductor", "conductor")
            .await
            .unwrap();
        assert_eq!(min().await.unwrap(), Some(rpc::SERVICE_VERSION));
        // an older build's record (version 0 until its next beat) lowers it ...
        let b = crate::store::heartbeat_service(db.conn(), "b", "nova-compute", "compute")
            .await
            .unwrap();
        let b = crate::model::Service { version: 0, ..b };
        crate::store::update_service(db.conn(), &b).await.unwrap();
        assert_eq!(min().await.unwrap(), Some(0));
        // ... unless forced down, and its next beat writes this build's version
        let forced = crate::model::Service {
            forced_down: true,
            ..b.clone()
        };
        crate::store::update_service(db.conn(), &forced)
            .await
            .unwrap();
        assert_eq!(min().await.unwrap(), Some(rpc::SERVICE_VERSION));
        crate::store::update_service(db.conn(), &b).await.unwrap();
        crate::store::heartbeat_service(db.conn(), "b", "nova-compute", "compute")
            .await
            .unwrap();
        assert_eq!(min().await.unwrap(), Some(rpc::SERVICE_VERSION));
    }

    /// N+1 only (`cargo nextest run --cargo-profile ci -p compute --features rpc-next`):
    /// BuildAndRun 1.1 carries the node; written at 1.0 it goes without it, and a 1.0
    /// message decodes with none.
    #[cfg(feature = "rpc-next")]
    #[test]
    fn build_and_run_backports_to_1_0() {
        let msg = rpc::BuildAndRun {
            instance_uuid: "i".into(),
            user_token: "t".into(),
            node: Some("n1".into()),
        };
        assert_eq!(compute_rpc_for(1), Version::new(1, 0));
        assert_eq!(compute_rpc_for(2), Version::new(1, 1));
        let old = bus::Envelope::for_message_at(&msg, Version::new(1, 0), "req-1").unwrap();
        assert_eq!(old.version, Version::new(1, 0));
        assert_eq!(
            old.payload,
            serde_json::json!({"instance_uuid": "i", "user_token": "t"})
        );
        let new = bus::Envelope::for_message_at(&msg, Version::new(1, 1), "req-1").unwrap();
        assert_eq!(new.version, Version::new(1, 1));
        assert_eq!(new.payload["node"], "n1");
        let back: rpc::BuildAndRun = serde_json::from_value(old.payload).unwrap();
        assert_eq!(back.node, None);
        assert!(build_served(Version::new(1, 0), "h", &back).ends_with("no node (a 1.0 sender)"));
        assert!(build_served(Version::new(1, 1), "h", &msg).ends_with("node n1"));
    }
}
