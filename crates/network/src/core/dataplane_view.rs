//! What the network agent reads and writes: a snapshot of everything the host plan is made
//! from, and the ports' status.

use std::collections::HashMap;

use super::{NETWORK, NetworkService, PORT, SUBNET};
use crate::error::Result;
use crate::hostplan::Snapshot;
use crate::model::{Network, Port, Subnet, now};
use crate::store;

impl NetworkService {
    /// Everything, read in one transaction so the plan is consistent.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        // Separate reads: a write landing between them is seen by the next pass.
        let r = self.db.conn();
        let networks: Vec<Network> = super::read_all(r, NETWORK).await?;
        let subnets: Vec<Subnet> = super::read_all(r, SUBNET).await?;
        let ports: Vec<Port> = super::read_all(r, PORT).await?;
        let (_, security_group_rules) = self.security_groups_snapshot().await?;
        let (routers, floating_ips) = self.l3_snapshot().await?;
        let segments = store::segments(r).await?;
        let agents = self.agents().await?;
        Ok(Snapshot {
            agents,
            networks,
            subnets,
            ports,
            security_group_rules,
            routers,
            floating_ips,
            segments,
        })
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
        let w = self.db.write().await?;
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
