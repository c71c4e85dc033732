//! What the network agent reads and writes: a snapshot of everything the host plan is made
//! from, and the ports' status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::agents::AGENT;
use super::{FLOATINGIP, NETWORK, NetworkService, PORT, ROUTER, SECURITY_GROUP_RULE, SUBNET};
use crate::error::Result;
use crate::hostplan::Snapshot;
use crate::model::{Port, now};
use crate::store;

/// The agent's last snapshot, kept between passes: a pass reads only the rows written since
/// (`store::changed_since`), not every row of every kind. With hundreds of ports, rereading
/// and parsing all of them on every pass of every host's agent was most of a boot's
/// networking cost (bench/scale_out.sh).
pub(crate) struct SnapshotCache {
    /// The change counter the snapshot is complete up to.
    seq: i64,
    snap: Arc<Snapshot>,
    read_at: Instant,
}

/// A full read at least this often, whatever the counter says: a safety net for a write that
/// did not go through `NetworkService::write`.
const FULL_READ_EVERY: Duration = Duration::from_secs(60);

/// The kinds a snapshot holds.
const SNAPSHOT_KINDS: &[&str] = &[
    NETWORK,
    SUBNET,
    PORT,
    SECURITY_GROUP_RULE,
    ROUTER,
    FLOATINGIP,
    AGENT,
];

impl NetworkService {
    /// Everything the host plan is made from: the last snapshot brought up to date with what
    /// changed since (one statement when nothing did), or read in full.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let mut cache = self.snapshot_cache.lock().await;
        let r = self.db.conn();
        // Read first: every row written at or before this value is visible to what follows.
        let seq = store::current_seq(r).await?;
        if let Some(c) = cache.as_mut()
            && c.read_at.elapsed() < FULL_READ_EVERY
        {
            if c.seq == seq {
                return Ok(c.snap.clone());
            }
            self.catch_up(c, seq).await?;
            return Ok(c.snap.clone());
        }
        let snap = Arc::new(self.read_snapshot().await?);
        *cache = Some(SnapshotCache {
            seq,
            snap: snap.clone(),
            read_at: Instant::now(),
        });
        Ok(snap)
    }

    /// Every row of every kind the plan needs, oldest first. Separate reads: a write landing
    /// between them is seen by the next pass.
    async fn read_snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        for kind in SNAPSHOT_KINDS {
            self.reread(&mut snap, kind).await?;
        }
        Ok(snap)
    }

    /// Read every row of `kind` into `snap` again (the networks with their segments).
    async fn reread(&self, snap: &mut Snapshot, kind: &str) -> Result<()> {
        let r = self.db.conn();
        match kind {
            NETWORK => {
                snap.networks = super::read_all(r, NETWORK).await?;
                snap.segments = store::segments(r).await?;
            }
            SUBNET => snap.subnets = super::read_all(r, SUBNET).await?,
            PORT => snap.ports = super::read_all(r, PORT).await?,
            SECURITY_GROUP_RULE => {
                snap.security_group_rules = super::read_all(r, SECURITY_GROUP_RULE).await?
            }
            ROUTER => snap.routers = super::read_all(r, ROUTER).await?,
            FLOATINGIP => snap.floating_ips = super::read_all(r, FLOATINGIP).await?,
            AGENT => snap.agents = super::read_all(r, AGENT).await?,
            _ => {}
        }
        Ok(())
    }

    /// Bring `c` up to counter `seq`: ports written since are replaced or added in place; any
    /// other kind with a row written since, or whose count no longer matches (a deletion
    /// leaves no row to see), is read again whole, as are the ports when their count does not.
    async fn catch_up(&self, c: &mut SnapshotCache, seq: i64) -> Result<()> {
        let r = self.db.conn();
        let rows = store::changed_since(r, c.seq).await?;
        let counts = store::count_kinds(r, SNAPSHOT_KINDS).await?;
        let snap = Arc::make_mut(&mut c.snap);
        let mut stale: HashSet<&str> = HashSet::new();
        for row in &rows {
            if row.kind == PORT {
                let p: Port = serde_json::from_str(&row.body)?;
                match snap.ports.iter_mut().find(|x| x.id == row.id) {
                    Some(x) => *x = p,
                    None => snap.ports.push(p),
                }
            } else if let Some(k) = SNAPSHOT_KINDS.iter().find(|k| **k == row.kind) {
                stale.insert(k);
            }
        }
        for kind in SNAPSHOT_KINDS {
            let held = match *kind {
                NETWORK => snap.networks.len(),
                SUBNET => snap.subnets.len(),
                PORT => snap.ports.len(),
                SECURITY_GROUP_RULE => snap.security_group_rules.len(),
                ROUTER => snap.routers.len(),
                FLOATINGIP => snap.floating_ips.len(),
                AGENT => snap.agents.len(),
                _ => continue,
            };
            if counts.get(*kind).copied().unwrap_or(0) as usize != held {
                stale.insert(kind);
            }
        }
        for kind in stale {
            self.reread(snap, kind).await?;
        }
        c.seq = seq;
        Ok(())
    }

    /// Set the ports' status (ACTIVE/DOWN) where it differs; returns the ports that went
    /// ACTIVE. Not a change of the desired data plane: the agent is not woken by it.
    pub async fn set_port_statuses(
        &self,
        statuses: &HashMap<String, &'static str>,
    ) -> Result<Vec<Port>> {
        let mut went_up = Vec::new();
        if statuses.is_empty() {
            return Ok(went_up);
        }
        let w = self.write().await?;
        let mut any = false;
        for (id, status) in statuses {
            let Some(mut p) = self.load_port(&*w, id).await? else {
                continue;
            };
            if p.status == *status {
                continue;
            }
            p.status = (*status).to_string();
            p.updated_at = now();
            p.revision_number += 1;
            store::update(&*w, &p.id, serde_json::to_string(&p)?).await?;
            any = true;
            if *status == "ACTIVE" {
                went_up.push(p);
            }
        }
        if any {
            w.commit().await?;
        }
        Ok(went_up)
    }
}
