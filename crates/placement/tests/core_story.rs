//! The placement core against a real SQLite database in a temp dir: generations, capacity,
//! the provider view after writes and after a reopen, allocation candidates over trees and
//! sharing providers, the reshaper.

#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use placement::Placement;
use placement::config::PlacementConfig;
use placement::core::providers::ParentChange;
use placement::core::reshaper::ReshapeInventories;
use placement::error::PlacementError;
use placement::model::*;

async fn open(dir: &std::path::Path) -> Arc<Placement> {
    Placement::open(PlacementConfig::defaults(dir))
        .await
        .unwrap()
}

fn u(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn inv(p: &Placement, rp: &str, totals: &[(&str, i64)]) {
    let g = p.provider(rp).await.unwrap().generation;
    let invs = totals
        .iter()
        .map(|(rc, t)| Inventory::new(*rc, *t))
        .collect();
    p.set_inventories(rp, Some(g), invs, ReservedRule::UpToTotal)
        .await
        .unwrap();
}

fn write(consumer: &str, generation: Option<i64>, allocs: &[(&str, &str, i64)]) -> ConsumerWrite {
    let mut a: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (rp, rc, n) in allocs {
        a.entry(rp.to_string())
            .or_default()
            .insert(rc.to_string(), *n);
    }
    ConsumerWrite {
        consumer_uuid: consumer.to_string(),
        project_id: Some("p".into()),
        user_id: Some("u".into()),
        consumer_generation: generation,
        consumer_type: Some("INSTANCE".into()),
        allocations: a,
    }
}

const RULES: WriteRules = WriteRules {
    check_consumer_generation: true,
    set_consumer_type: true,
};

fn group(resources: &[(&str, i64)], same: bool) -> RequestGroup {
    RequestGroup {
        use_same_provider: same,
        resources: resources.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ..RequestGroup::default()
    }
}

fn wide() -> RequestWide {
    RequestWide {
        nested_aware: true,
        ..RequestWide::default()
    }
}

/// Allocation requests as sorted (provider uuid, class, amount) lists.
async fn candidates(
    p: &Placement,
    groups: Vec<(&str, RequestGroup)>,
    w: RequestWide,
) -> Vec<Vec<(String, String, i64)>> {
    let groups: Vec<(String, RequestGroup)> = groups
        .into_iter()
        .map(|(s, g)| (s.to_string(), g))
        .collect();
    let (view, c) = p.allocation_candidates(&groups, &w).await.unwrap();
    let mut out: Vec<Vec<(String, String, i64)>> = c
        .requests
        .iter()
        .map(|a| {
            let mut v: Vec<(String, String, i64)> = a
                .resources
                .iter()
                .map(|(rp, rc, n)| {
                    (
                        view.uuid(*rp).to_string(),
                        view.rcs.name(*rc).to_string(),
                        *n,
                    )
                })
                .collect();
            v.sort();
            v
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn providers_inventories_generations_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    let cn = p.create_provider(&u(1), "cn1", None).await.unwrap();
    assert_eq!(
        (cn.generation, cn.root_provider_uuid.as_str()),
        (0, u(1).as_str())
    );
    assert!(matches!(
        p.create_provider(&u(2), "cn1", None).await,
        Err(PlacementError::Duplicate(_))
    ));
    assert!(matches!(
        p.create_provider(&u(3), "child", Some(&u(99))).await,
        Err(PlacementError::ObjectAction { .. })
    ));
    let child = p
        .create_provider(&u(3), "child", Some(&u(1)))
        .await
        .unwrap();
    assert_eq!(child.root_provider_uuid, u(1));

    inv(&p, &u(1), &[("VCPU", 8), ("MEMORY_MB", 1024)]).await;
    assert_eq!(p.provider(&u(1)).await.unwrap().generation, 1);
    // a stale generation is refused
    assert!(matches!(
        p.set_inventories(
            &u(1),
            Some(0),
            vec![Inventory::new("VCPU", 4)],
            ReservedRule::UpToTotal
        )
        .await,
        Err(PlacementError::GenerationConflict(_))
    ));
    // reserved == total only from 1.26
    let mut full = Inventory::new("VCPU", 4);
    full.reserved = 4;
    assert!(matches!(
        p.set_inventories(&u(1), Some(1), vec![full.clone()], ReservedRule::BelowTotal)
            .await,
        Err(PlacementError::InvalidInventoryCapacity { .. })
    ));
    assert!(matches!(
        p.set_inventories(
            &u(1),
            Some(1),
            vec![Inventory::new("CUSTOM_NOPE", 4)],
            ReservedRule::UpToTotal
        )
        .await,
        Err(PlacementError::ResourceClassNotFound(_))
    ));
    p.create_resource_class("CUSTOM_GOLD").await.unwrap();
    p.add_inventory(
        &u(3),
        Inventory::new("CUSTOM_GOLD", 2),
        ReservedRule::UpToTotal,
    )
    .await
    .unwrap();
    assert!(matches!(
        p.delete_resource_class("CUSTOM_GOLD").await,
        Err(PlacementError::ResourceClassInUse(_))
    ));
    assert!(matches!(
        p.delete_provider(&u(1)).await,
        Err(PlacementError::CannotDeleteParent)
    ));

    // re-parenting is refused unless allowed, loops always
    let other = p.create_provider(&u(4), "cn2", None).await.unwrap();
    assert_eq!(other.generation, 0);
    assert!(matches!(
        p.update_provider(&u(3), "child", ParentChange::Set(Some(u(4))), false)
            .await,
        Err(PlacementError::ObjectAction { .. })
    ));
    assert!(matches!(
        p.update_provider(&u(1), "cn1", ParentChange::Set(Some(u(3))), true)
            .await,
        Err(PlacementError::ObjectAction { .. })
    ));
    let moved = p
        .update_provider(&u(3), "child", ParentChange::Set(Some(u(4))), true)
        .await
        .unwrap();
    assert_eq!(moved.root_provider_uuid, u(4));
    let tree: Vec<String> = p
        .list_providers(&ProviderFilter {
            in_tree: Some(u(3)),
            ..ProviderFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uuid)
        .collect();
    assert_eq!(tree, vec![u(3), u(4)]);

    // everything is still there after a reopen
    drop(p);
    let p = open(dir.path()).await;
    assert_eq!(
        p.provider(&u(3)).await.unwrap().parent_provider_uuid,
        Some(u(4))
    );
    let invs = p.inventories(&u(1)).await.unwrap();
    assert_eq!(invs.generation, 1);
    assert_eq!(
        invs.inventories
            .iter()
            .map(|i| i.resource_class.as_str())
            .collect::<Vec<_>>(),
        vec!["VCPU", "MEMORY_MB"]
    );
}

#[tokio::test]
async fn allocations_consumers_capacity_and_usages() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    p.create_provider(&u(1), "cn", None).await.unwrap();
    let g = p.provider(&u(1)).await.unwrap().generation;
    let mut vcpu = Inventory::new("VCPU", 4);
    vcpu.allocation_ratio = 2.0;
    vcpu.max_unit = 6;
    p.set_inventories(
        &u(1),
        Some(g),
        vec![vcpu, Inventory::new("MEMORY_MB", 1024)],
        ReservedRule::UpToTotal,
    )
    .await
    .unwrap();

    let c1 = u(101);
    p.write_allocations(&[write(&c1, None, &[(&u(1), "VCPU", 6)])], RULES)
        .await
        .unwrap();
    // max_unit 6: 7 violates constraints; capacity 8: 3 more does not fit
    assert!(matches!(
        p.write_allocations(&[write(&u(102), None, &[(&u(1), "VCPU", 7)])], RULES)
            .await,
        Err(PlacementError::ConstraintsViolated { .. })
    ));
    assert!(matches!(
        p.write_allocations(&[write(&u(102), None, &[(&u(1), "VCPU", 3)])], RULES)
            .await,
        Err(PlacementError::CapacityExceeded { .. })
    ));
    // consumer generations
    assert!(matches!(
        p.write_allocations(&[write(&c1, None, &[(&u(1), "VCPU", 1)])], RULES).await,
        Err(PlacementError::GenerationConflict(m)) if m == "consumer generation conflict - expected 1 but got None"
    ));
    p.write_allocations(&[write(&c1, Some(1), &[(&u(1), "VCPU", 2)])], RULES)
        .await
        .unwrap();
    let ca = p.consumer_allocations(&c1).await.unwrap();
    let consumer = ca.consumer.unwrap();
    assert_eq!(
        (consumer.generation, consumer.consumer_type.as_deref()),
        (2, Some("INSTANCE"))
    );
    assert_eq!(p.provider(&u(1)).await.unwrap().generation, g + 3);
    // a failed write leaves nothing behind, not even the consumer
    assert!(
        p.consumer_allocations(&u(102))
            .await
            .unwrap()
            .consumer
            .is_none()
    );

    let usages = p
        .usages("p", None, &ConsumerTypeFilter::None)
        .await
        .unwrap();
    assert_eq!(usages.len(), 1);
    assert_eq!(
        (usages[0].resource_class.as_str(), usages[0].usage),
        ("VCPU", 2)
    );
    let per_type = p
        .usages("p", None, &ConsumerTypeFilter::PerType)
        .await
        .unwrap();
    assert_eq!(per_type[0].consumer_type.as_deref(), Some("INSTANCE"));
    assert_eq!(per_type[0].consumer_count, 1);

    // inventory in use cannot go; shrinking below usage is allowed
    let g = p.provider(&u(1)).await.unwrap().generation;
    assert!(matches!(
        p.set_inventories(
            &u(1),
            Some(g),
            vec![Inventory::new("MEMORY_MB", 1)],
            ReservedRule::UpToTotal
        )
        .await,
        Err(PlacementError::InventoryInUse { .. })
    ));
    p.set_inventories(
        &u(1),
        Some(g),
        vec![Inventory::new("VCPU", 1), Inventory::new("MEMORY_MB", 1)],
        ReservedRule::UpToTotal,
    )
    .await
    .unwrap();
    assert_eq!(p.provider_usages(&u(1)).await.unwrap().usages["VCPU"], 2);
    // emptying with the right generation removes the consumer
    p.write_allocations(&[write(&c1, Some(2), &[])], RULES)
        .await
        .unwrap();
    assert!(
        p.consumer_allocations(&c1)
            .await
            .unwrap()
            .consumer
            .is_none()
    );
    assert_eq!(p.provider_usages(&u(1)).await.unwrap().usages["VCPU"], 0);
}

#[tokio::test]
async fn concurrent_claims_for_the_last_unit() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    p.create_provider(&u(1), "cn", None).await.unwrap();
    inv(&p, &u(1), &[("VCPU", 1)]).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.write_allocations(&[write(&u(1000 + i), None, &[(&u(1), "VCPU", 1)])], RULES)
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(PlacementError::CapacityExceeded { .. }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(p.provider_usages(&u(1)).await.unwrap().usages["VCPU"], 1);
}

#[tokio::test]
async fn candidates_over_trees_and_sharing_providers() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    // cn1 (VCPU, MEMORY_MB) with two NUMA children holding VFs; ss shares DISK_GB with cn1
    p.create_provider(&u(1), "cn1", None).await.unwrap();
    p.create_provider(&u(2), "numa0", Some(&u(1)))
        .await
        .unwrap();
    p.create_provider(&u(3), "numa1", Some(&u(1)))
        .await
        .unwrap();
    p.create_provider(&u(4), "cn2", None).await.unwrap();
    p.create_provider(&u(5), "ss", None).await.unwrap();
    inv(&p, &u(1), &[("VCPU", 8), ("MEMORY_MB", 4096)]).await;
    inv(&p, &u(2), &[("SRIOV_NET_VF", 2)]).await;
    inv(&p, &u(3), &[("SRIOV_NET_VF", 2)]).await;
    inv(
        &p,
        &u(4),
        &[("VCPU", 8), ("MEMORY_MB", 4096), ("DISK_GB", 50)],
    )
    .await;
    inv(&p, &u(5), &[("DISK_GB", 1000)]).await;
    p.ensure_trait("CUSTOM_PHYSNET1").await.unwrap();
    let g = p.provider(&u(2)).await.unwrap().generation;
    p.set_provider_traits(&u(2), Some(g), &set(&["CUSTOM_PHYSNET1"]))
        .await
        .unwrap();
    let g = p.provider(&u(5)).await.unwrap().generation;
    p.set_provider_traits(&u(5), Some(g), &set(&["MISC_SHARES_VIA_AGGREGATE"]))
        .await
        .unwrap();
    let agg = "aaaaaaaa-0000-4000-8000-000000000001".to_string();
    for rp in [u(1), u(5)] {
        let g = p.provider(&rp).await.unwrap().generation;
        p.set_provider_aggregates(&rp, Some(g), std::slice::from_ref(&agg))
            .await
            .unwrap();
    }
    let r = |rp: u32, rc: &str, n: i64| (u(rp), rc.to_string(), n);

    // disk from the sharing provider for cn1, cn2's own disk, or the sharing provider for...
    // cn2 is not in the aggregate: only its own disk.
    let got = candidates(
        &p,
        vec![("", group(&[("VCPU", 1), ("DISK_GB", 10)], false))],
        wide(),
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec![r(1, "VCPU", 1), r(5, "DISK_GB", 10)],
            vec![r(4, "DISK_GB", 10), r(4, "VCPU", 1)],
        ]
    );
    // the tree collectively: VCPU from cn1, a VF from either NUMA node
    let got = candidates(
        &p,
        vec![("", group(&[("VCPU", 1), ("SRIOV_NET_VF", 1)], false))],
        wide(),
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec![r(1, "VCPU", 1), r(2, "SRIOV_NET_VF", 1)],
            vec![r(1, "VCPU", 1), r(3, "SRIOV_NET_VF", 1)],
        ]
    );
    // ... only the one with the trait; and none before 1.29
    let mut g = group(&[("VCPU", 1), ("SRIOV_NET_VF", 1)], false);
    g.required_traits = vec![set(&["CUSTOM_PHYSNET1"])];
    let got = candidates(&p, vec![("", g.clone())], wide()).await;
    assert_eq!(got, vec![vec![r(1, "VCPU", 1), r(2, "SRIOV_NET_VF", 1)]]);
    let old = RequestWide {
        nested_aware: false,
        ..RequestWide::default()
    };
    assert!(candidates(&p, vec![("", g)], old).await.is_empty());
    // two granular VF groups: isolate needs two NUMA nodes, none lets one serve both
    let vf = group(&[("SRIOV_NET_VF", 1)], true);
    let iso = RequestWide {
        group_policy: Some(GroupPolicy::Isolate),
        ..wide()
    };
    // (group 1 on numa0, group 2 on numa1) and the reverse: the mappings differ
    let got = candidates(&p, vec![("1", vf.clone()), ("2", vf.clone())], iso).await;
    let split = vec![r(2, "SRIOV_NET_VF", 1), r(3, "SRIOV_NET_VF", 1)];
    assert_eq!(got, vec![split.clone(), split.clone()]);
    let none = RequestWide {
        group_policy: Some(GroupPolicy::None),
        ..wide()
    };
    let got = candidates(&p, vec![("1", vf.clone()), ("2", vf.clone())], none.clone()).await;
    assert_eq!(
        got,
        vec![
            split.clone(),
            split,
            vec![r(2, "SRIOV_NET_VF", 2)],
            vec![r(3, "SRIOV_NET_VF", 2)],
        ]
    );
    // VF 2 + VF 1 on the same node exceeds its capacity of 2 once consolidated
    let vf2 = group(&[("SRIOV_NET_VF", 2)], true);
    let got = candidates(&p, vec![("1", vf2), ("2", vf)], none).await;
    assert_eq!(
        got,
        vec![
            vec![r(2, "SRIOV_NET_VF", 1), r(3, "SRIOV_NET_VF", 2)],
            vec![r(2, "SRIOV_NET_VF", 2), r(3, "SRIOV_NET_VF", 1)],
        ]
    );
    // root_required filters by the tree's root
    p.ensure_trait("CUSTOM_GOLD_HOST").await.unwrap();
    let g = p.provider(&u(4)).await.unwrap().generation;
    p.set_provider_traits(&u(4), Some(g), &set(&["CUSTOM_GOLD_HOST"]))
        .await
        .unwrap();
    let gold = RequestWide {
        root_required: set(&["CUSTOM_GOLD_HOST"]),
        ..wide()
    };
    let got = candidates(&p, vec![("", group(&[("VCPU", 1)], false))], gold).await;
    assert_eq!(got, vec![vec![r(4, "VCPU", 1)]]);
    // member_of on the root spans the tree; forbidden aggregates exclude it
    let mut g = group(&[("SRIOV_NET_VF", 1)], false);
    g.member_of = vec![set(&[&agg])];
    assert_eq!(candidates(&p, vec![("", g.clone())], wide()).await.len(), 2);
    g.member_of.clear();
    g.forbidden_aggs = set(&[&agg]);
    assert!(candidates(&p, vec![("", g)], wide()).await.is_empty());
    // limit and unknown names
    let limited = RequestWide {
        limit: Some(1),
        ..wide()
    };
    assert_eq!(
        candidates(&p, vec![("", group(&[("VCPU", 1)], false))], limited)
            .await
            .len(),
        1
    );
    let groups = vec![("".to_string(), group(&[("CUSTOM_NOPE", 1)], false))];
    assert!(matches!(
        p.allocation_candidates(&groups, &wide()).await,
        Err(PlacementError::ResourceClassNotFound(_))
    ));
}

#[tokio::test]
async fn reshaper_moves_inventory_and_allocations_to_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    p.create_provider(&u(1), "cn", None).await.unwrap();
    inv(&p, &u(1), &[("VCPU", 8), ("DISK_GB", 100)]).await;
    let c = u(100);
    p.write_allocations(
        &[write(
            &c,
            None,
            &[(&u(1), "VCPU", 2), (&u(1), "DISK_GB", 10)],
        )],
        RULES,
    )
    .await
    .unwrap();
    p.create_provider(&u(2), "numa", Some(&u(1))).await.unwrap();
    let g1 = p.provider(&u(1)).await.unwrap().generation;
    let mut invs = BTreeMap::new();
    invs.insert(
        u(1),
        ReshapeInventories {
            generation: g1,
            inventories: vec![Inventory::new("DISK_GB", 100)],
        },
    );
    invs.insert(
        u(2),
        ReshapeInventories {
            generation: 0,
            inventories: vec![Inventory::new("VCPU", 8)],
        },
    );
    let moved = write(&c, Some(1), &[(&u(2), "VCPU", 2), (&u(1), "DISK_GB", 10)]);
    p.reshape(&invs, &[moved], RULES).await.unwrap();
    let parent = p.inventories(&u(1)).await.unwrap();
    assert_eq!(parent.inventories.len(), 1);
    assert_eq!(parent.inventories[0].resource_class, "DISK_GB");
    assert_eq!(p.provider_usages(&u(2)).await.unwrap().usages["VCPU"], 2);
    let ca = p.consumer_allocations(&c).await.unwrap();
    assert_eq!(ca.consumer.unwrap().generation, 2);
    // a stale generation is refused and nothing changes
    let err = p.reshape(&invs, &[], RULES).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("resource provider generation conflict"),
        "{err}"
    );
    assert_eq!(p.inventories(&u(2)).await.unwrap().inventories.len(), 1);
}

#[tokio::test]
async fn two_services_on_one_database_see_each_others_writes() {
    // What several API processes on one database rely on: the view follows the revision.
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path()).await;
    let b = open(dir.path()).await;
    a.create_provider(&u(1), "cn", None).await.unwrap();
    assert_eq!(b.provider(&u(1)).await.unwrap().name, "cn");
    inv(&b, &u(1), &[("VCPU", 2)]).await;
    let got = candidates(&a, vec![("", group(&[("VCPU", 2)], false))], wide()).await;
    assert_eq!(got, vec![vec![(u(1), "VCPU".to_string(), 2)]]);
    b.write_allocations(&[write(&u(100), None, &[(&u(1), "VCPU", 2)])], RULES)
        .await
        .unwrap();
    assert!(
        candidates(&a, vec![("", group(&[("VCPU", 1)], false))], wide())
            .await
            .is_empty()
    );
    // a class created through one is usable through the other
    b.create_resource_class("CUSTOM_X").await.unwrap();
    a.add_inventory(
        &u(1),
        Inventory::new("CUSTOM_X", 1),
        ReservedRule::UpToTotal,
    )
    .await
    .unwrap();
    assert_eq!(b.inventories(&u(1)).await.unwrap().inventories.len(), 2);
}

/// The providers of `p`'s view, compared with what a service opening the database now loads.
async fn assert_view_as_loaded(p: &Placement, dir: &std::path::Path, step: &str) {
    let mine = p.view().await.unwrap();
    let fresh = open(dir).await.view().await.unwrap();
    assert_eq!(mine.revision, fresh.revision, "{step}");
    assert_eq!(mine.providers, fresh.providers, "{step}");
}

#[tokio::test]
async fn allocation_writes_leave_the_view_as_a_fresh_load_would() {
    // Allocation writes patch the view with what they committed instead of reading the
    // providers back: after each kind of write it must equal a full load.
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    let (a, b) = (u(1), u(2));
    p.create_provider(&a, "a", None).await.unwrap();
    p.create_provider(&b, "b", None).await.unwrap();
    p.create_resource_class("CUSTOM_GPU").await.unwrap();
    inv(
        &p,
        &a,
        &[("VCPU", 8), ("MEMORY_MB", 1024), ("CUSTOM_GPU", 2)],
    )
    .await;
    inv(&p, &b, &[("VCPU", 8), ("MEMORY_MB", 1024)]).await;
    let usage = |view: &placement::core::view::View, rp: &str, rc: &str| {
        let prov = view.by_uuid(rp).unwrap();
        prov.inventory(view.rcs.id(rc).unwrap()).unwrap().used
    };

    // a claim by a new consumer
    let c1 = u(101);
    p.write_allocations(
        &[write(&c1, None, &[(&a, "VCPU", 2), (&a, "CUSTOM_GPU", 1)])],
        RULES,
    )
    .await
    .unwrap();
    assert_view_as_loaded(&p, dir.path(), "claim").await;
    assert_eq!(p.provider(&a).await.unwrap().generation, 2);

    // the consumer moves to another provider: the one it left has its usage back although
    // its generation does not move (as upstream)
    let mut moved = write(&c1, Some(1), &[(&b, "VCPU", 4)]);
    moved.project_id = Some("p2".into());
    p.write_allocations(&[moved], RULES).await.unwrap();
    assert_view_as_loaded(&p, dir.path(), "move").await;
    let view = p.view().await.unwrap();
    assert_eq!(usage(&view, &a, "VCPU"), 0);
    assert_eq!(usage(&view, &a, "CUSTOM_GPU"), 0);
    assert_eq!(usage(&view, &b, "VCPU"), 4);
    assert_eq!(p.provider(&a).await.unwrap().generation, 2);
    assert_eq!(p.provider(&b).await.unwrap().generation, 2);
    let got = p.consumer_allocations(&c1).await.unwrap();
    let consumer = got.consumer.unwrap();
    assert_eq!(
        (consumer.generation, consumer.project_id.as_str()),
        (2, "p2")
    );

    // two consumers in one write: one emptied, one new
    let c2 = u(102);
    p.write_allocations(
        &[
            write(&c1, Some(2), &[]),
            write(&c2, None, &[(&a, "VCPU", 8), (&b, "MEMORY_MB", 512)]),
        ],
        RULES,
    )
    .await
    .unwrap();
    assert_view_as_loaded(&p, dir.path(), "post").await;
    assert!(
        p.consumer_allocations(&c1)
            .await
            .unwrap()
            .consumer
            .is_none()
    );
    let view = p.view().await.unwrap();
    assert_eq!(usage(&view, &a, "VCPU"), 8);
    assert_eq!(usage(&view, &b, "VCPU"), 0);
    assert_eq!(usage(&view, &b, "MEMORY_MB"), 512);

    // a refused write changes nothing
    let err = p
        .write_allocations(&[write(&u(103), None, &[(&a, "VCPU", 1)])], RULES)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlacementError::CapacityExceeded { .. }),
        "{err:?}"
    );
    assert_view_as_loaded(&p, dir.path(), "refused").await;

    // DELETE /allocations/{consumer}
    p.delete_consumer_allocations(&c2).await.unwrap();
    assert_view_as_loaded(&p, dir.path(), "delete").await;
    let view = p.view().await.unwrap();
    assert_eq!(usage(&view, &a, "VCPU"), 0);
    assert_eq!(usage(&view, &b, "MEMORY_MB"), 0);
    assert!(
        p.consumer_allocations(&c2)
            .await
            .unwrap()
            .consumer
            .is_none()
    );
}
