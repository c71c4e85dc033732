//! Host aggregates (os-aggregates) and the availability zones they make, with Nova's rules
//! (nova/compute/api.py AggregateAPI): a host is in at most one zone, the zone of a host is
//! the `availability_zone` metadata of an aggregate it is in (else
//! `default_availability_zone`), hosts with instances do not change zone, membership is
//! mirrored into placement aggregates of the host's compute node providers.
//!
//! Zones and aggregate metadata are read from one load of the (small) aggregates table per
//! request or scheduling decision: [`HostAggregates`], never a query per host.

use std::collections::{BTreeMap, BTreeSet};

use super::ComputeService;
use crate::error::{ComputeError, Result};
use crate::model::*;
use crate::store;
use crate::store::aggregates as sa;

/// The metadata key that makes an aggregate an availability zone.
pub const AZ_KEY: &str = "availability_zone";

/// The aggregates, loaded once, asked per host.
#[derive(Debug, Clone)]
pub struct HostAggregates {
    aggregates: Vec<Aggregate>,
    default_zone: String,
}

impl HostAggregates {
    pub fn new(aggregates: Vec<Aggregate>, default_zone: &str) -> Self {
        Self {
            aggregates,
            default_zone: default_zone.to_string(),
        }
    }

    /// The aggregates `host` is in, by id.
    pub fn of_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Aggregate> + 'a {
        self.aggregates
            .iter()
            .filter(move |a| a.hosts.iter().any(|h| h == host))
    }

    /// The zone of `host`: its aggregate's `availability_zone`, else the default zone.
    pub fn zone(&self, host: &str) -> String {
        self.of_host(host)
            .find_map(|a| a.metadata.get(AZ_KEY).filter(|z| !z.is_empty()))
            .cloned()
            .unwrap_or_else(|| self.default_zone.clone())
    }

    /// The union of the metadata of `host`'s aggregates, comma-separated values split and
    /// trimmed (Nova's `aggregate_metadata_get_by_host`).
    pub fn metadata(&self, host: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in self.of_host(host) {
            for (k, v) in &a.metadata {
                out.entry(k.clone())
                    .or_default()
                    .extend(v.split(',').map(|x| x.trim().to_string()));
            }
        }
        out
    }
}

/// One flavor extra spec value against one aggregate value, with Nova's extra-spec
/// operators (`=`, `==`, `!=`, `>=`, `<=` numeric; `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=`
/// on strings; `<in>`, `<all-in>`, `<or>`); anything else must be equal.
pub fn extra_spec_matches(value: &str, req: &str) -> bool {
    let mut words = req.split_whitespace();
    let op = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let numeric = |f: fn(f64, f64) -> bool| match (num(value), rest.first().and_then(|r| num(r))) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    };
    let first = rest.first().copied();
    match op {
        "=" | ">=" => numeric(|a, b| a >= b),
        "==" => numeric(|a, b| a == b),
        "!=" => numeric(|a, b| a != b),
        "<=" => numeric(|a, b| a <= b),
        "s==" => first.is_some_and(|r| value == r),
        "s!=" => first.is_some_and(|r| value != r),
        "s<" => first.is_some_and(|r| value < r),
        "s<=" => first.is_some_and(|r| value <= r),
        "s>" => first.is_some_and(|r| value > r),
        "s>=" => first.is_some_and(|r| value >= r),
        "<in>" => first.is_some_and(|r| value.contains(r)),
        "<all-in>" => !rest.is_empty() && rest.iter().all(|r| value.contains(r)),
        "<or>" => rest.iter().step_by(2).any(|alt| *alt == value),
        _ => value == req,
    }
}

/// Nova's AggregateInstanceExtraSpecsFilter: every flavor extra spec that is unscoped or
/// scoped `aggregate_instance_extra_specs:` must be matched by a value of that key in the
/// host's aggregates' metadata; other scopes are not its business.
pub fn extra_specs_pass(
    specs: &BTreeMap<String, String>,
    metadata: &BTreeMap<String, BTreeSet<String>>,
) -> bool {
    specs.iter().all(|(k, req)| {
        let key = match k.split_once(':') {
            Some(("aggregate_instance_extra_specs", key)) => key,
            Some(_) => return true,
            None => k.as_str(),
        };
        metadata
            .get(key)
            .is_some_and(|vals| vals.iter().any(|v| extra_spec_matches(v, req)))
    })
}

/// Which call refuses: Nova words each one's refusal its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    AddHost,
    RemoveHost,
    Update,
    UpdateMeta,
}

fn refused(action: Action, id: i32, reason: &str) -> ComputeError {
    match action {
        Action::AddHost => ComputeError::conflict(format!(
            "Cannot add host to aggregate {id}. Reason: {reason}."
        )),
        Action::RemoveHost => ComputeError::conflict(format!(
            "Cannot remove host from aggregate {id}. Reason: {reason}."
        )),
        Action::Update => {
            ComputeError::bad(format!("Cannot update aggregate {id}. Reason: {reason}."))
        }
        Action::UpdateMeta => ComputeError::bad(format!(
            "Cannot update metadata of aggregate {id}. Reason: {reason}."
        )),
    }
}

fn not_found(id: i32) -> ComputeError {
    ComputeError::NotFound(format!("Aggregate {id} could not be found."))
}

fn name_exists(name: &str) -> ComputeError {
    ComputeError::conflict(format!("Aggregate {name} already exists."))
}

/// Nova's `is_safe_to_update_az`: a zone must have a name, and none of `hosts` may already
/// be in another aggregate with a different zone.
fn check_zone(
    all: &[Aggregate],
    agg: &Aggregate,
    new_zone: Option<&str>,
    hosts: &[String],
    action: Action,
) -> Result<()> {
    let Some(zone) = new_zone.filter(|z| !z.is_empty()) else {
        return Err(refused(
            action,
            agg.id,
            &format!(
                "Aggregate {} does not support empty named availability zone",
                agg.name
            ),
        ));
    };
    let conflicting: Vec<String> = all
        .iter()
        .filter(|a| a.id != agg.id && a.hosts.iter().any(|h| hosts.contains(h)))
        .filter_map(|a| a.metadata.get(AZ_KEY))
        .filter(|z| z.as_str() != zone)
        .map(|z| format!("'{z}'"))
        .collect();
    if !conflicting.is_empty() {
        return Err(refused(
            action,
            agg.id,
            &format!(
                "One or more hosts already in availability zone(s) [{}]",
                conflicting.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The zone a host has from its aggregates other than `except` (None: no zone aggregate).
fn zone_without(all: &[Aggregate], host: &str, except: Option<i32>) -> Option<String> {
    all.iter()
        .filter(|a| Some(a.id) != except && a.hosts.iter().any(|h| h == host))
        .find_map(|a| a.metadata.get(AZ_KEY).cloned())
}

fn zone_move_refused(
    action: Action,
    id: i32,
    from: Option<&str>,
    to: Option<&str>,
    n: usize,
) -> ComputeError {
    let verb = if action == Action::AddHost {
        "added to"
    } else {
        "removed from"
    };
    refused(
        action,
        id,
        &format!(
            "The host cannot be {verb} the aggregate as the availability zone of the host would change from '{}' to '{}' but the host already has {n} instance(s). Changing the AZ of an existing instance is not supported by this action. Move the instances away from this host then try again. If you need to move the instances between AZs then you can use shelve_offload and unshelve to achieve this",
            from.unwrap_or("None"),
            to.unwrap_or("None")
        ),
    )
}

/// What `PUT /os-aggregates/{id}` changes.
#[derive(Debug, Clone, Default)]
pub struct AggregateUpdate {
    pub name: Option<String>,
    /// Some(None): the request set `availability_zone` to null (which Nova refuses).
    pub availability_zone: Option<Option<String>>,
}

impl ComputeService {
    /// The aggregates for per-host questions (zones, scheduler metadata).
    pub async fn host_aggregates(&self) -> Result<HostAggregates> {
        Ok(HostAggregates::new(
            sa::list_aggregates(self.db.conn()).await?,
            &self.cfg.default_availability_zone,
        ))
    }

    pub async fn aggregates(&self) -> Result<Vec<Aggregate>> {
        sa::list_aggregates(self.db.conn()).await
    }

    pub async fn aggregate(&self, id: i32) -> Result<Aggregate> {
        sa::get_aggregate(self.db.conn(), id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// `POST /os-aggregates`: a new aggregate, in a zone when `zone` is given.
    pub async fn create_aggregate(&self, name: &str, zone: Option<&str>) -> Result<Aggregate> {
        let txn = self.db.write().await?;
        if sa::find_aggregate_by_name(&*txn, name).await?.is_some() {
            return Err(name_exists(name));
        }
        let mut metadata = BTreeMap::new();
        if let Some(z) = zone.filter(|z| !z.is_empty()) {
            metadata.insert(AZ_KEY.to_string(), z.to_string());
        }
        let a = sa::insert_aggregate(
            &*txn,
            &Aggregate {
                id: 0,
                uuid: uuid::Uuid::new_v4().to_string(),
                name: name.to_string(),
                availability_zone: None,
                hosts: vec![],
                metadata,
                created_at: chrono::Utc::now(),
                updated_at: None,
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(id = a.id, name = %a.name, zone = ?a.availability_zone, "aggregate created");
        Ok(a)
    }

    /// `PUT /os-aggregates/{id}`: rename and/or re-zone.
    pub async fn update_aggregate(&self, id: i32, up: &AggregateUpdate) -> Result<Aggregate> {
        let txn = self.db.write().await?;
        let all = sa::list_aggregates(&*txn).await?;
        let mut a = all
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))?;
        if let Some(name) = &up.name
            && *name != a.name
        {
            if all.iter().any(|o| o.id != id && o.name == *name) {
                return Err(name_exists(name));
            }
            a.name = name.clone();
        }
        if let Some(zone) = &up.availability_zone {
            self.check_zone_change(&*txn, &all, &a, zone.as_deref(), Action::Update)
                .await?;
            if let Some(z) = zone {
                a.metadata.insert(AZ_KEY.to_string(), z.clone());
            }
        }
        sa::save_aggregate(&*txn, &mut a).await?;
        txn.commit().await?;
        Ok(a)
    }

    /// `set_metadata`: set keys, a null value removes its key.
    pub async fn set_aggregate_metadata(
        &self,
        id: i32,
        metadata: &BTreeMap<String, Option<String>>,
    ) -> Result<Aggregate> {
        let txn = self.db.write().await?;
        let all = sa::list_aggregates(&*txn).await?;
        let mut a = all
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))?;
        if let Some(zone) = metadata.get(AZ_KEY) {
            self.check_zone_change(&*txn, &all, &a, zone.as_deref(), Action::UpdateMeta)
                .await?;
        }
        for (k, v) in metadata {
            match v {
                Some(v) => {
                    a.metadata.insert(k.clone(), v.clone());
                }
                None => {
                    a.metadata.remove(k);
                }
            }
        }
        sa::save_aggregate(&*txn, &mut a).await?;
        txn.commit().await?;
        Ok(a)
    }

    /// A zone change on an aggregate: named, no conflict with its hosts' other zones, and
    /// no instances on its hosts when the name changes.
    async fn check_zone_change(
        &self,
        c: &impl sea_orm::ConnectionTrait,
        all: &[Aggregate],
        a: &Aggregate,
        zone: Option<&str>,
        action: Action,
    ) -> Result<()> {
        check_zone(all, a, zone, &a.hosts, action)?;
        if a.metadata.get(AZ_KEY).map(String::as_str) != zone {
            for h in &a.hosts {
                if !store::instances_on_host(c, h).await?.is_empty() {
                    return Err(refused(
                        action,
                        a.id,
                        "One or more hosts contain instances in this zone",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `DELETE /os-aggregates/{id}`: only an empty aggregate.
    pub async fn delete_aggregate(&self, id: i32) -> Result<()> {
        let txn = self.db.write().await?;
        let a = sa::get_aggregate(&*txn, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !a.hosts.is_empty() {
            return Err(ComputeError::bad(format!(
                "Cannot remove host from aggregate {id}. Reason: Host aggregate is not empty."
            )));
        }
        sa::delete_aggregate(&*txn, id).await?;
        txn.commit().await?;
        tracing::info!(id, name = %a.name, "aggregate deleted");
        Ok(())
    }

    /// `add_host`: a nova-compute host joins; its compute node providers join the placement
    /// aggregate of the same uuid.
    pub async fn aggregate_add_host(
        &self,
        id: i32,
        host: &str,
        request_id: &str,
    ) -> Result<Aggregate> {
        let txn = self.db.write().await?;
        if store::find_service(&*txn, host, "nova-compute")
            .await?
            .is_none()
        {
            return Err(ComputeError::NotFound(format!(
                "Compute host {host} could not be found."
            )));
        }
        let all = sa::list_aggregates(&*txn).await?;
        let mut a = all
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))?;
        let new_zone = a.metadata.get(AZ_KEY).cloned();
        if let Some(z) = &new_zone {
            check_zone(&all, &a, Some(z), &[host.to_string()], Action::AddHost)?;
            let on_host = store::instances_on_host(&*txn, host).await?;
            let old_zone = zone_without(&all, host, None);
            if !on_host.is_empty() && old_zone.as_ref() != Some(z) {
                return Err(zone_move_refused(
                    Action::AddHost,
                    id,
                    old_zone.as_deref(),
                    Some(z),
                    on_host.len(),
                ));
            }
        }
        if a.hosts.iter().any(|h| h == host) {
            return Err(ComputeError::conflict(format!(
                "Aggregate {id} already has host {host}."
            )));
        }
        a.hosts.push(host.to_string());
        sa::save_aggregate(&*txn, &mut a).await?;
        txn.commit().await?;
        tracing::info!(id, host, "host added to aggregate");
        self.mirror_to_placement(&a, host, true, request_id).await;
        Ok(a)
    }

    /// `remove_host`: the host leaves, in placement too.
    pub async fn aggregate_remove_host(
        &self,
        id: i32,
        host: &str,
        request_id: &str,
    ) -> Result<Aggregate> {
        let cannot =
            || ComputeError::NotFound(format!("Cannot remove host {host} in aggregate {id}"));
        let txn = self.db.write().await?;
        if store::find_service(&*txn, host, "nova-compute")
            .await?
            .is_none()
        {
            return Err(cannot());
        }
        let all = sa::list_aggregates(&*txn).await?;
        let mut a = all
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(cannot)?;
        if let Some(current) = a.metadata.get(AZ_KEY) {
            let on_host = store::instances_on_host(&*txn, host).await?;
            let after = zone_without(&all, host, Some(id));
            if !on_host.is_empty() && after.as_ref() != Some(current) {
                return Err(zone_move_refused(
                    Action::RemoveHost,
                    id,
                    Some(current),
                    after.as_deref(),
                    on_host.len(),
                ));
            }
        }
        if !a.hosts.iter().any(|h| h == host) {
            return Err(cannot());
        }
        a.hosts.retain(|h| h != host);
        sa::save_aggregate(&*txn, &mut a).await?;
        txn.commit().await?;
        tracing::info!(id, host, "host removed from aggregate");
        self.mirror_to_placement(&a, host, false, request_id).await;
        Ok(a)
    }

    /// Put (or take) the aggregate's uuid on the host's compute node providers. A failure
    /// is logged, not returned: Nova does the same (`nova-manage placement
    /// sync_aggregates` repairs it there).
    async fn mirror_to_placement(&self, a: &Aggregate, host: &str, add: bool, request_id: &str) {
        let clients = match self.clients() {
            Ok(c) => c.clone(),
            Err(e) => {
                tracing::warn!(host, aggregate = %a.uuid, error = %e, "placement aggregate not mirrored");
                return;
            }
        };
        let nodes = match store::list_nodes(self.db.conn()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(host, aggregate = %a.uuid, error = %e, "placement aggregate not mirrored");
                return;
            }
        };
        for n in nodes.iter().filter(|n| n.host == host) {
            if let Err(e) = clients
                .provider_aggregate(&n.uuid, &a.uuid, add, request_id)
                .await
            {
                tracing::warn!(
                    host, node = %n.hypervisor_hostname, aggregate = %a.uuid, error = %e,
                    "failed to mirror the host aggregate into placement"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(id: i32, hosts: &[&str], md: &[(&str, &str)]) -> Aggregate {
        Aggregate {
            id,
            uuid: format!("u{id}"),
            name: format!("agg{id}"),
            availability_zone: md
                .iter()
                .find(|(k, _)| *k == AZ_KEY)
                .map(|(_, v)| v.to_string()),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: chrono::Utc::now(),
            updated_at: None,
        }
    }

    #[test]
    fn a_host_is_in_its_aggregates_zone_else_the_default() {
        let idx = HostAggregates::new(
            vec![
                agg(1, &["a", "b"], &[("ssd", "true")]),
                agg(2, &["b"], &[(AZ_KEY, "az2")]),
            ],
            "nova",
        );
        assert_eq!(idx.zone("a"), "nova");
        assert_eq!(idx.zone("b"), "az2");
        assert_eq!(idx.zone("nowhere"), "nova");
    }

    #[test]
    fn metadata_is_the_union_of_the_hosts_aggregates() {
        let idx = HostAggregates::new(
            vec![
                agg(1, &["a", "b"], &[("ssd", "true"), ("tier", "gold, silver")]),
                agg(2, &["b"], &[("tier", "bronze")]),
            ],
            "nova",
        );
        let b = idx.metadata("b");
        assert_eq!(b["ssd"], BTreeSet::from(["true".to_string()]));
        assert_eq!(
            b["tier"],
            BTreeSet::from(["gold".into(), "silver".into(), "bronze".into()])
        );
        assert!(idx.metadata("c").is_empty());
    }

    #[test]
    fn extra_specs_filter_scopes_and_operators() {
        let md = HostAggregates::new(
            vec![agg(
                1,
                &["a"],
                &[("ssd", "true"), ("cpus", "8"), ("tier", "gold,silver")],
            )],
            "nova",
        )
        .metadata("a");
        let specs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(extra_specs_pass(&specs(&[]), &md));
        assert!(extra_specs_pass(
            &specs(&[("aggregate_instance_extra_specs:ssd", "true")]),
            &md
        ));
        assert!(extra_specs_pass(&specs(&[("ssd", "true")]), &md));
        assert!(!extra_specs_pass(&specs(&[("ssd", "false")]), &md));
        assert!(!extra_specs_pass(
            &specs(&[("aggregate_instance_extra_specs:gpu", "true")]),
            &md
        ));
        // Other scopes are for other filters.
        assert!(extra_specs_pass(
            &specs(&[("hw:cpu_policy", "dedicated"), ("resources:VCPU", "2")]),
            &md
        ));
        assert!(extra_specs_pass(&specs(&[("cpus", ">= 4")]), &md));
        assert!(!extra_specs_pass(&specs(&[("cpus", ">= 16")]), &md));
        assert!(extra_specs_pass(&specs(&[("tier", "silver")]), &md));
        assert!(extra_specs_pass(
            &specs(&[("tier", "<or> bronze <or> gold")]),
            &md
        ));
        assert!(!extra_specs_pass(
            &specs(&[("tier", "<or> bronze <or> iron")]),
            &md
        ));
        // A host in no aggregate passes only flavors without such specs.
        assert!(!extra_specs_pass(
            &specs(&[("ssd", "true")]),
            &BTreeMap::new()
        ));
    }

    #[test]
    fn operators() {
        assert!(extra_spec_matches("10", "= 8"));
        assert!(!extra_spec_matches("4", "= 8"));
        assert!(extra_spec_matches("abc", "s== abc"));
        assert!(extra_spec_matches("abc", "s< abd"));
        assert!(extra_spec_matches("x86 avx", "<in> avx"));
        assert!(extra_spec_matches("a b c", "<all-in> a c"));
        assert!(!extra_spec_matches("a b", "<all-in> a c"));
        assert!(extra_spec_matches("plain", "plain"));
    }

    #[test]
    fn zone_rules() {
        let all = vec![
            agg(1, &["a"], &[(AZ_KEY, "az1")]),
            agg(2, &[], &[(AZ_KEY, "az2")]),
            agg(3, &["a"], &[]),
        ];
        // a is in az1: it cannot join az2, it can join another az1 or a plain aggregate.
        assert!(matches!(
            check_zone(&all, &all[1], Some("az2"), &["a".into()], Action::AddHost),
            Err(ComputeError::Conflict(m)) if m.contains("['az1']")
        ));
        assert!(check_zone(&all, &all[1], Some("az1"), &["a".into()], Action::AddHost).is_ok());
        // Zones need a name.
        assert!(matches!(
            check_zone(&all, &all[2], Some(""), &[], Action::UpdateMeta),
            Err(ComputeError::BadRequest(m)) if m.contains("empty named")
        ));
        assert_eq!(zone_without(&all, "a", None).as_deref(), Some("az1"));
        assert_eq!(zone_without(&all, "a", Some(1)), None);
    }
}
