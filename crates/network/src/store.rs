//! Persistence: one table of resources (kind, id, project, parent, body as JSON) and one of
//! per-project quota limits. Lists are filtered, sorted and paged in the core, in memory:
//! an all-in-one cloud holds hundreds of networks, not millions (see docs/network.md).

use sea_orm::{ConnectionTrait, DbErr, Statement, Value as DbValue};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use std::collections::{HashMap, HashSet};

use crate::segments::Segment;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002IpAllocations),
            Box::new(M0003NetworkSegments),
            Box::new(M0004ResourceSeq),
            Box::new(M0005ParentKindIndex),
            Box::new(M0006PortMacs),
        ]
    }
}

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_network_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("resource")
                .col(string_len("id", 36).primary_key())
                .col(string_len("kind", 32))
                .col(string_len("project_id", 255))
                .col(string_len_null("parent_id", 36))
                .col(string_len("created_at", 32))
                .col(text("body"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_resource_kind_project")
                .table("resource")
                .col("kind")
                .col("project_id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_resource_parent")
                .table("resource")
                .col("parent_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("quota")
                .col(string_len("project_id", 255))
                .col(string_len("resource", 64))
                .col(big_integer("hard_limit"))
                .primary_key(Index::create().col("project_id").col("resource"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("quota").to_owned())
            .await?;
        m.drop_table(Table::drop().table("resource").to_owned())
            .await
    }
}

/// Addresses given to ports: the primary key makes a double allocation impossible, also
/// between concurrent requests.
struct M0002IpAllocations;

impl MigrationName for M0002IpAllocations {
    fn name(&self) -> &str {
        "m0002_network_ip_allocations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002IpAllocations {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("ip_allocation")
                .col(string_len("subnet_id", 36))
                .col(string_len("ip_address", 64))
                .col(string_len("port_id", 36))
                .col(string_len("network_id", 36))
                .primary_key(Index::create().col("subnet_id").col("ip_address"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_ip_allocation_port")
                .table("ip_allocation")
                .col("port_id")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("ip_allocation").to_owned())
            .await
    }
}

/// Each network's segment (the `provider` attributes). `allocation` (`vlan:physnet1:100`,
/// `vxlan:5`, `flat:physnet1`; null for local networks) is unique: two networks can never hold
/// the same VLAN, VNI or flat physical network. Networks made before this migration have no
/// row and are local.
struct M0003NetworkSegments;

impl MigrationName for M0003NetworkSegments {
    fn name(&self) -> &str {
        "m0003_network_segments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003NetworkSegments {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("network_segment")
                .col(string_len("network_id", 36).primary_key())
                .col(string_len("network_type", 32))
                .col(string_len_null("physical_network", 64))
                .col(big_integer_null("segmentation_id"))
                .col(string_len_null("allocation", 128).unique_key())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("network_segment").to_owned())
            .await
    }
}

/// A change counter for the agents' snapshots: every network write transaction bumps the one
/// row of `resource_seq` first ([`bump`], which also orders those transactions), and every
/// resource it writes carries the bumped value in `seq`. A reader that saw counter C has seen
/// every row with `seq <= C` (the row lock on the counter is held until commit), so the next
/// read asks only for `seq > C` ([`changed_since`]) instead of every row of every kind.
struct M0004ResourceSeq;

impl MigrationName for M0004ResourceSeq {
    fn name(&self) -> &str {
        "m0004_network_resource_seq"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004ResourceSeq {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("resource")
                .add_column(big_integer("seq").default(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_resource_seq")
                .table("resource")
                .col("seq")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("resource_seq")
                .col(integer("id").primary_key())
                .col(big_integer("seq"))
                .to_owned(),
        )
        .await?;
        let c = m.get_connection();
        c.execute_raw(stmt(
            c,
            "INSERT INTO resource_seq (id, seq) VALUES (1, 0)",
            vec![],
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("resource_seq").to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("ix_resource_seq")
                .table("resource")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("resource")
                .drop_column("seq")
                .to_owned(),
        )
        .await
    }
}

/// The children of one kind under a parent (a network's subnets, a group's rules) by index: on
/// `parent_id` alone, a network's subnets were found by visiting every one of its ports.
struct M0005ParentKindIndex;

impl MigrationName for M0005ParentKindIndex {
    fn name(&self) -> &str {
        "m0005_network_resource_parent_kind"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005ParentKindIndex {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_resource_parent_kind")
                .table("resource")
                .col("parent_id")
                .col("kind")
                .to_owned(),
        )
        .await?;
        // The new index serves every lookup by parent the old one did.
        m.drop_index(
            Index::drop()
                .name("ix_resource_parent")
                .table("resource")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_resource_parent")
                .table("resource")
                .col("parent_id")
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ix_resource_parent_kind")
                .table("resource")
                .to_owned(),
        )
        .await
    }
}

/// The MAC of every port, by network: a new port's MAC is checked by key. Scanning the bodies
/// of the network's ports for it cost a create time in proportion to the ports already there
/// (0.8 ms of PostgreSQL per create at 500 ports, bench/scale_out.sh). Every network write
/// holds the change counter's row lock (`bump`), so a check and the insert after it see no
/// other writer in between.
struct M0006PortMacs;

impl MigrationName for M0006PortMacs {
    fn name(&self) -> &str {
        "m0006_network_port_macs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006PortMacs {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("port_mac")
                .col(string_len("network_id", 36))
                .col(string_len("mac_address", 32))
                .col(string_len("port_id", 36))
                .primary_key(Index::create().col("network_id").col("mac_address"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_port_mac_port")
                .table("port_mac")
                .col("port_id")
                .to_owned(),
        )
        .await?;
        // The ports made before: their MACs, the first port of a pair if two shared one.
        let c = m.get_connection();
        let rows = c
            .query_all_raw(stmt(
                c,
                "SELECT id, parent_id, body FROM resource WHERE kind = $1 ORDER BY created_at, id",
                vec!["port".into()],
            ))
            .await?;
        let mut seen = HashSet::new();
        for r in rows {
            let id: String = r.try_get("", "id")?;
            let net: Option<String> = r.try_get("", "parent_id")?;
            let body: String = r.try_get("", "body")?;
            let mac = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|b| b["mac_address"].as_str().map(str::to_lowercase));
            let (Some(net), Some(mac)) = (net, mac) else {
                continue;
            };
            if seen.insert((net.clone(), mac.clone())) {
                add_mac(c, &net, &mac, &id).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("port_mac").to_owned())
            .await
    }
}

pub async fn migrate(conn: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(conn, None).await
}

fn stmt<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<DbValue>) -> Statement {
    let backend = c.get_database_backend();
    Statement::from_sql_and_values(backend, common::db::placeholders(backend, sql), values)
}

/// Every body of `kind`, oldest first.
pub async fn list<C: ConnectionTrait>(c: &C, kind: &str) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 ORDER BY created_at, id",
            vec![kind.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "body"))
        .collect()
}

/// The bodies of `kind` whose parent is `parent`, oldest first.
pub async fn children<C: ConnectionTrait>(
    c: &C,
    kind: &str,
    parent: &str,
) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 AND parent_id = $2 ORDER BY created_at, id",
            vec![kind.into(), parent.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "body"))
        .collect()
}

pub async fn get<C: ConnectionTrait>(c: &C, kind: &str, id: &str) -> Result<Option<String>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT body FROM resource WHERE kind = $1 AND id = $2",
            vec![kind.into(), id.into()],
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "body")).transpose()
}

pub struct NewRow<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub project_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub created_at: &'a str,
    pub body: String,
}

pub async fn insert<C: ConnectionTrait>(c: &C, r: NewRow<'_>) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "INSERT INTO resource (id, kind, project_id, parent_id, created_at, body, seq) VALUES ($1, $2, $3, $4, $5, $6, (SELECT seq FROM resource_seq WHERE id = 1))",
        vec![
            r.id.into(),
            r.kind.into(),
            r.project_id.into(),
            r.parent_id.map(str::to_string).into(),
            r.created_at.into(),
            r.body.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(c: &C, id: &str, body: String) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "UPDATE resource SET body = $1, seq = (SELECT seq FROM resource_seq WHERE id = 1) WHERE id = $2",
        vec![body.into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// Bump the change counter: the first statement of every network write transaction
/// (`NetworkService::write`), see [`M0004ResourceSeq`].
pub async fn bump<C: ConnectionTrait>(c: &C) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "UPDATE resource_seq SET seq = seq + 1 WHERE id = 1",
        vec![],
    ))
    .await?;
    Ok(())
}

/// The change counter as committed.
pub async fn current_seq<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    let row = c
        .query_one_raw(stmt(c, "SELECT seq FROM resource_seq WHERE id = 1", vec![]))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64>("", "seq")?,
        None => 0,
    })
}

/// A resource row written after some counter value.
pub struct ChangedRow {
    pub kind: String,
    pub id: String,
    pub body: String,
}

/// The rows written with `seq > after`, oldest first.
pub async fn changed_since<C: ConnectionTrait>(
    c: &C,
    after: i64,
) -> Result<Vec<ChangedRow>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT kind, id, body FROM resource WHERE seq > $1 ORDER BY seq, created_at, id",
            vec![after.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ChangedRow {
                kind: r.try_get("", "kind")?,
                id: r.try_get("", "id")?,
                body: r.try_get("", "body")?,
            })
        })
        .collect()
}

/// How many rows there are of each of `kinds` (a kind without rows is absent).
pub async fn count_kinds<C: ConnectionTrait>(
    c: &C,
    kinds: &[&str],
) -> Result<HashMap<String, i64>, DbErr> {
    let marks = (1..=kinds.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = c
        .query_all_raw(stmt(
            c,
            &format!(
                "SELECT kind, COUNT(*) AS n FROM resource WHERE kind IN ({marks}) GROUP BY kind"
            ),
            kinds.iter().map(|k| (*k).into()).collect(),
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String>("", "kind")?, r.try_get::<i64>("", "n")?)))
        .collect()
}

pub async fn delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM resource WHERE id = $1",
        vec![id.into()],
    ))
    .await?;
    Ok(())
}

pub async fn delete_children<C: ConnectionTrait>(c: &C, parent: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM resource WHERE parent_id = $1",
        vec![parent.into()],
    ))
    .await?;
    Ok(())
}

pub async fn count<C: ConnectionTrait>(c: &C, kind: &str, project: &str) -> Result<i64, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT COUNT(*) AS n FROM resource WHERE kind = $1 AND project_id = $2",
            vec![kind.into(), project.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64>("", "n")?,
        None => 0,
    })
}

/// (project, resource, limit) of every explicitly set quota.
pub async fn quotas<C: ConnectionTrait>(
    c: &C,
    project: Option<&str>,
) -> Result<Vec<(String, String, i64)>, DbErr> {
    let s = match project {
        Some(p) => stmt(
            c,
            "SELECT project_id, resource, hard_limit FROM quota WHERE project_id = $1 ORDER BY project_id, resource",
            vec![p.into()],
        ),
        None => stmt(
            c,
            "SELECT project_id, resource, hard_limit FROM quota ORDER BY project_id, resource",
            vec![],
        ),
    };
    let rows = c.query_all_raw(s).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "project_id")?,
                r.try_get::<String>("", "resource")?,
                r.try_get::<i64>("", "hard_limit")?,
            ))
        })
        .collect()
}

pub async fn set_quota<C: ConnectionTrait>(
    c: &C,
    project: &str,
    resource: &str,
    limit: i64,
) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM quota WHERE project_id = $1 AND resource = $2",
        vec![project.into(), resource.into()],
    ))
    .await?;
    c.execute_raw(stmt(
        c,
        "INSERT INTO quota (project_id, resource, hard_limit) VALUES ($1, $2, $3)",
        vec![project.into(), resource.into(), limit.into()],
    ))
    .await?;
    Ok(())
}

pub async fn delete_quotas<C: ConnectionTrait>(c: &C, project: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM quota WHERE project_id = $1",
        vec![project.into()],
    ))
    .await?;
    Ok(())
}

/// The addresses taken in `subnet`.
pub async fn allocated_ips<C: ConnectionTrait>(c: &C, subnet: &str) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT ip_address FROM ip_allocation WHERE subnet_id = $1",
            vec![subnet.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "ip_address"))
        .collect()
}

/// The port holding `ip` in `subnet`, if any.
pub async fn ip_holder<C: ConnectionTrait>(
    c: &C,
    subnet: &str,
    ip: &str,
) -> Result<Option<String>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT port_id FROM ip_allocation WHERE subnet_id = $1 AND ip_address = $2",
            vec![subnet.into(), ip.into()],
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "port_id")).transpose()
}

/// The port holding `ip` on any subnet of `network`, if any.
pub async fn ip_holder_on_network<C: ConnectionTrait>(
    c: &C,
    network: &str,
    ip: &str,
) -> Result<Option<String>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT port_id FROM ip_allocation WHERE network_id = $1 AND ip_address = $2",
            vec![network.into(), ip.into()],
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "port_id")).transpose()
}

/// Ports with an address in `subnet`.
pub async fn ports_in_subnet<C: ConnectionTrait>(
    c: &C,
    subnet: &str,
) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT DISTINCT port_id FROM ip_allocation WHERE subnet_id = $1",
            vec![subnet.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "port_id"))
        .collect()
}

pub async fn allocate_ip<C: ConnectionTrait>(
    c: &C,
    subnet: &str,
    ip: &str,
    port: &str,
    network: &str,
) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "INSERT INTO ip_allocation (subnet_id, ip_address, port_id, network_id) VALUES ($1, $2, $3, $4)",
        vec![subnet.into(), ip.into(), port.into(), network.into()],
    ))
    .await?;
    Ok(())
}

/// Free every address of `port`.
/// Whether a port of `network` has `mac` (lower case).
pub async fn mac_taken<C: ConnectionTrait>(c: &C, network: &str, mac: &str) -> Result<bool, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT port_id FROM port_mac WHERE network_id = $1 AND mac_address = $2",
            vec![network.into(), mac.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Record `port`'s MAC on `network` (lower case).
pub async fn add_mac<C: ConnectionTrait>(
    c: &C,
    network: &str,
    mac: &str,
    port: &str,
) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "INSERT INTO port_mac (network_id, mac_address, port_id) VALUES ($1, $2, $3)",
        vec![network.into(), mac.into(), port.into()],
    ))
    .await?;
    Ok(())
}

/// Forget `port`'s MAC.
pub async fn release_mac<C: ConnectionTrait>(c: &C, port: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM port_mac WHERE port_id = $1",
        vec![port.into()],
    ))
    .await?;
    Ok(())
}

pub async fn release_ips<C: ConnectionTrait>(c: &C, port: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM ip_allocation WHERE port_id = $1",
        vec![port.into()],
    ))
    .await?;
    Ok(())
}

fn segment_row(r: &sea_orm::QueryResult) -> Result<(String, Segment), DbErr> {
    Ok((
        r.try_get::<String>("", "network_id")?,
        Segment {
            network_type: r.try_get::<String>("", "network_type")?,
            physical_network: r.try_get::<Option<String>>("", "physical_network")?,
            segmentation_id: r
                .try_get::<Option<i64>>("", "segmentation_id")?
                .map(|i| i as u32),
        },
    ))
}

/// Every network's segment, by network id.
pub async fn segments<C: ConnectionTrait>(c: &C) -> Result<HashMap<String, Segment>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT network_id, network_type, physical_network, segmentation_id FROM network_segment",
            vec![],
        ))
        .await?;
    rows.iter().map(segment_row).collect()
}

/// The segment of `network`, if it has one.
pub async fn segment<C: ConnectionTrait>(c: &C, network: &str) -> Result<Option<Segment>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT network_id, network_type, physical_network, segmentation_id FROM network_segment WHERE network_id = $1",
            vec![network.into()],
        ))
        .await?;
    row.map(|r| segment_row(&r).map(|(_, s)| s)).transpose()
}

/// The allocations held (see [`Segment::allocation`]).
pub async fn segment_allocations<C: ConnectionTrait>(c: &C) -> Result<HashSet<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT allocation FROM network_segment WHERE allocation IS NOT NULL",
            vec![],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "allocation"))
        .collect()
}

/// Set (insert or replace) the segment of `network`.
pub async fn set_segment<C: ConnectionTrait>(
    c: &C,
    network: &str,
    s: &Segment,
) -> Result<(), DbErr> {
    delete_segment(c, network).await?;
    c.execute_raw(stmt(
        c,
        "INSERT INTO network_segment (network_id, network_type, physical_network, segmentation_id, allocation) VALUES ($1, $2, $3, $4, $5)",
        vec![
            network.into(),
            s.network_type.clone().into(),
            s.physical_network.clone().into(),
            s.segmentation_id.map(i64::from).into(),
            s.allocation().into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn delete_segment<C: ConnectionTrait>(c: &C, network: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        c,
        "DELETE FROM network_segment WHERE network_id = $1",
        vec![network.into()],
    ))
    .await?;
    Ok(())
}
