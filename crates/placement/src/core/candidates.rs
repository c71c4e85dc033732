//! `GET /allocation_candidates`, computed over the provider view.
//!
//! The semantics are upstream placement's (objects/allocation_candidate.py and
//! research_context.py), restated over in-memory sets:
//! - each request group yields allocation requests on its own: a numbered/named group from
//!   single providers that satisfy all of it; the unnumbered group, when trees or sharing
//!   providers exist, from combinations of providers of one tree plus sharing providers
//!   associated with it through an aggregate ("anchored" at the tree's root);
//! - the groups' requests are combined per anchor (one from each group), filtered by
//!   `group_policy` and `same_subtree`, consolidated and checked against capacity again
//!   (several groups may draw on the same inventory);
//! - before 1.29 a request may not use two providers of one tree; `limit` keeps the first N
//!   (or a random N).
//!
//! Output order is deterministic (providers in creation order) where upstream's follows
//! Python set order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rand::seq::SliceRandom;

use super::Placement;
use super::view::{IdMap, Prov, View};
use crate::config::GenerationStrategy;
use crate::error::{PlacementError, Result};
use crate::model::{GroupPolicy, RequestGroup, RequestWide};

/// One allocation request: amounts per (provider, class), and which providers satisfied
/// which group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// (provider, class, amount), at most one entry per (provider, class).
    pub resources: Vec<(i32, i32, i64)>,
    /// Group suffix ("" for the unnumbered group) -> providers.
    pub mappings: BTreeMap<String, BTreeSet<i32>>,
    anchor: i32,
    use_same_provider: bool,
}

/// What makes two allocation requests the same (upstream compares resources as a set, and
/// mappings; not the anchor).
type RequestKey = (Vec<(i32, i32, i64)>, BTreeMap<String, BTreeSet<i32>>);

impl AllocationRequest {
    fn key(&self) -> RequestKey {
        let mut r = self.resources.clone();
        r.sort_unstable();
        (r, self.mappings.clone())
    }
}

/// The answer, in view ids; the API renders it with the view.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub requests: Vec<AllocationRequest>,
    /// Providers to summarise, in creation order.
    pub summaries: Vec<i32>,
    /// Classes named by any group (summaries before 1.27 show only these).
    pub requested_classes: BTreeSet<i32>,
}

/// A request group with its names resolved to ids.
struct Group<'a> {
    suffix: &'a str,
    use_same_provider: bool,
    /// In the order the request listed them.
    resources: Vec<(i32, i64)>,
    required: Vec<BTreeSet<i32>>,
    forbidden: BTreeSet<i32>,
    member_of: bool,
    rps_in_aggs: BTreeSet<i32>,
    forbidden_aggs: BTreeSet<i32>,
    tree_root: Option<i32>,
    /// Per class: (provider, root) with capacity for the amount.
    with_resource: HashMap<i32, Vec<(i32, i32)>>,
}

/// Raised while resolving a group when no provider can possibly match: the whole answer is
/// empty (upstream's ResourceProviderNotFound).
struct NoResults;

fn resolve<'a>(
    view: &View,
    suffix: &'a str,
    g: &RequestGroup,
) -> Result<std::result::Result<Group<'a>, NoResults>> {
    let mut resources = Vec::new();
    for (rc, amount) in &g.resources {
        let id = view
            .rcs
            .id(rc)
            .ok_or_else(|| PlacementError::ResourceClassNotFound(rc.clone()))?;
        resources.push((id, *amount));
    }
    let member_of = !g.member_of.is_empty();
    let rps_in_aggs = if member_of {
        let s = view.providers_in_aggregates(&g.member_of);
        if s.is_empty() {
            return Ok(Err(NoResults));
        }
        s
    } else {
        BTreeSet::new()
    };
    let required = g
        .required_traits
        .iter()
        .map(|any| view.trait_ids(any))
        .collect::<Result<Vec<_>>>()?;
    let forbidden = view.trait_ids(&g.forbidden_traits)?;
    let tree_root = match &g.in_tree {
        Some(u) => match view.by_uuid(u) {
            Some(p) => Some(p.root),
            None => return Ok(Err(NoResults)),
        },
        None => None,
    };
    let mut with_resource = HashMap::new();
    for (rc, amount) in &resources {
        let list: Vec<(i32, i32)> = view
            .by_rc
            .get(rc)
            .into_iter()
            .flatten()
            .filter_map(|id| view.get(*id))
            .filter(|p| tree_root.is_none_or(|r| p.root == r))
            .filter(|p| p.inventory(*rc).is_some_and(|i| i.fits(*amount)))
            .map(|p| (p.id, p.root))
            .collect();
        if list.is_empty() {
            return Ok(Err(NoResults));
        }
        with_resource.insert(*rc, list);
    }
    Ok(Ok(Group {
        suffix,
        use_same_provider: g.use_same_provider,
        resources,
        required,
        forbidden,
        member_of,
        rps_in_aggs,
        forbidden_aggs: view.providers_in_any(&g.forbidden_aggs),
        tree_root,
        with_resource,
    }))
}

/// Request-wide search state.
struct Wide<'a> {
    view: &'a View,
    /// Roots satisfying root_required; None when not asked.
    anchors: Option<BTreeSet<i32>>,
}

impl Wide<'_> {
    fn anchor_ok(&self, root: i32) -> bool {
        self.anchors.as_ref().is_none_or(|a| a.contains(&root))
    }

    /// Roots of the trees of every provider sharing an aggregate with sharing provider `rp`.
    fn anchors_of_sharing(&self, rp: &Prov) -> BTreeSet<i32> {
        rp.aggregates
            .iter()
            .filter_map(|a| self.view.agg_members.get(a))
            .flatten()
            .filter_map(|m| self.view.get(*m))
            .map(|m| m.root)
            .collect()
    }
}

/// Whether the providers of a combination collectively have the required traits and none
/// of them has a forbidden one.
fn traits_ok(view: &View, rps: impl Iterator<Item = i32>, g: &Group<'_>) -> bool {
    let mut all = BTreeSet::new();
    for id in rps {
        let Some(p) = view.get(id) else { return false };
        if g.forbidden.iter().any(|t| p.has_trait(*t)) {
            return false;
        }
        all.extend(p.traits.iter().copied());
    }
    g.required
        .iter()
        .all(|any| any.iter().any(|t| all.contains(t)))
}

/// A group satisfied by single providers (numbered groups, or no trees and no sharing).
fn single_provider(w: &Wide<'_>, g: &Group<'_>) -> Vec<AllocationRequest> {
    let view = w.view;
    // None: nothing filtered yet (upstream's empty set).
    let mut filtered: Option<BTreeSet<i32>> = None;
    if !g.required.is_empty() {
        let s: BTreeSet<i32> = view
            .order
            .iter()
            .filter_map(|id| view.get(*id))
            .filter(|p| {
                g.required
                    .iter()
                    .all(|any| any.iter().any(|t| p.has_trait(*t)))
            })
            .map(|p| p.id)
            .collect();
        if s.is_empty() {
            return Vec::new();
        }
        filtered = Some(s);
    }
    if g.member_of {
        let s = match filtered {
            Some(f) => f.intersection(&g.rps_in_aggs).copied().collect(),
            None => g.rps_in_aggs.clone(),
        };
        if s.is_empty() {
            return Vec::new();
        }
        filtered = Some(s);
    }
    let mut forbidden_rps: BTreeSet<i32> = g.forbidden_aggs.clone();
    if !g.forbidden.is_empty() {
        forbidden_rps.extend(
            view.order
                .iter()
                .filter_map(|id| view.get(*id))
                .filter(|p| g.forbidden.iter().any(|t| p.has_trait(*t)))
                .map(|p| p.id),
        );
    }
    if let Some(f) = filtered.as_mut() {
        f.retain(|id| !forbidden_rps.contains(id));
        if f.is_empty() {
            return Vec::new();
        }
    }
    for (rc, _) in &g.resources {
        let ids: BTreeSet<i32> = g.with_resource[rc].iter().map(|(id, _)| *id).collect();
        let s: BTreeSet<i32> = match filtered {
            Some(f) => f.intersection(&ids).copied().collect(),
            None => ids.difference(&forbidden_rps).copied().collect(),
        };
        if s.is_empty() {
            return Vec::new();
        }
        filtered = Some(s);
    }
    let matching: Vec<&Prov> = view
        .order
        .iter()
        .filter_map(|id| view.get(*id))
        .filter(|p| match &filtered {
            Some(f) => f.contains(&p.id),
            None => !forbidden_rps.contains(&p.id),
        })
        .collect();

    let mut out = Vec::new();
    for p in matching {
        let areq = AllocationRequest {
            resources: g.resources.iter().map(|(rc, a)| (p.id, *rc, *a)).collect(),
            mappings: BTreeMap::from([(g.suffix.to_string(), BTreeSet::from([p.id]))]),
            anchor: p.root,
            use_same_provider: g.use_same_provider,
        };
        if w.anchor_ok(p.root) {
            out.push(areq.clone());
        }
        // A sharing provider can serve any tree it shares an aggregate with.
        if view.sharing.contains(&p.id) {
            for anchor in w.anchors_of_sharing(p) {
                if anchor == p.root || !w.anchor_ok(anchor) {
                    continue;
                }
                out.push(AllocationRequest {
                    anchor,
                    ..areq.clone()
                });
            }
        }
    }
    out
}

/// The unnumbered group when trees or sharing providers exist: combinations of providers
/// of one tree, plus sharing providers, that together have every class and the traits.
fn multiple_providers(w: &Wide<'_>, g: &Group<'_>) -> Vec<AllocationRequest> {
    let view = w.view;
    if !g.required.is_empty() {
        let any_trait: BTreeSet<i32> = g.required.iter().flatten().copied().collect();
        if !view
            .providers
            .values()
            .any(|p| any_trait.iter().any(|t| p.has_trait(*t)))
        {
            return Vec::new();
        }
    }
    // (provider, anchor root, class)
    let mut cands: BTreeSet<(i32, i32, i32)> = BTreeSet::new();
    for (rc, _) in &g.resources {
        let mut rc_cands: BTreeSet<(i32, i32, i32)> = g.with_resource[rc]
            .iter()
            .map(|(id, root)| (*id, *root, *rc))
            .collect();
        if g.tree_root.is_none() {
            let with: BTreeSet<i32> = g.with_resource[rc].iter().map(|(id, _)| *id).collect();
            for s in &view.sharing {
                if !with.contains(s) || (g.member_of && !g.rps_in_aggs.contains(s)) {
                    continue;
                }
                if let Some(p) = view.get(*s) {
                    for anchor in w.anchors_of_sharing(p) {
                        rc_cands.insert((*s, anchor, *rc));
                    }
                }
            }
        }
        if let Some(anchors) = &w.anchors {
            rc_cands.retain(|(_, root, _)| anchors.contains(root));
        }
        if g.member_of {
            rc_cands
                .retain(|(id, root, _)| g.rps_in_aggs.contains(id) || g.rps_in_aggs.contains(root));
        }
        if !g.forbidden_aggs.is_empty() {
            rc_cands.retain(|(id, root, _)| {
                !g.forbidden_aggs.contains(id) && !g.forbidden_aggs.contains(root)
            });
        }
        if rc_cands.is_empty() {
            return Vec::new();
        }
        if cands.is_empty() {
            cands = rc_cands;
        } else {
            let trees: BTreeSet<i32> = cands.iter().map(|c| c.1).collect();
            let rc_trees: BTreeSet<i32> = rc_cands.iter().map(|c| c.1).collect();
            cands.extend(rc_cands);
            cands.retain(|c| trees.contains(&c.1) && rc_trees.contains(&c.1));
            if cands.is_empty() {
                return Vec::new();
            }
        }
    }

    let amount: HashMap<i32, i64> = g.resources.iter().copied().collect();
    // root -> class -> providers
    let mut trees: BTreeMap<i32, BTreeMap<i32, Vec<i32>>> = BTreeMap::new();
    for (id, root, rc) in &cands {
        trees
            .entry(*root)
            .or_default()
            .entry(*rc)
            .or_default()
            .push(*id);
    }
    let mut out = Vec::new();
    for (root, by_rc) in trees {
        let lists: Vec<(i32, &Vec<i32>)> = by_rc.iter().map(|(rc, v)| (*rc, v)).collect();
        let mut idx = vec![0usize; lists.len()];
        'product: loop {
            let combo: Vec<(i32, i32)> = lists
                .iter()
                .zip(&idx)
                .map(|((rc, rps), i)| (rps[*i], *rc))
                .collect();
            if traits_ok(view, combo.iter().map(|(rp, _)| *rp), g) {
                out.push(AllocationRequest {
                    resources: combo
                        .iter()
                        .map(|(rp, rc)| (*rp, *rc, amount[rc]))
                        .collect(),
                    mappings: BTreeMap::from([(
                        g.suffix.to_string(),
                        combo.iter().map(|(rp, _)| *rp).collect(),
                    )]),
                    anchor: root,
                    use_same_provider: g.use_same_provider,
                });
            }
            // next index, last position fastest (itertools.product order)
            let mut pos = lists.len();
            loop {
                if pos == 0 {
                    break 'product;
                }
                pos -= 1;
                idx[pos] += 1;
                if idx[pos] < lists[pos].1.len() {
                    break;
                }
                idx[pos] = 0;
            }
        }
    }
    out
}

/// Amounts per (provider, class) of a (partial) combination exceed capacity or max_unit.
fn exceeds(view: &View, amounts: &[((i32, i32), i64)]) -> bool {
    amounts.iter().any(
        |((rp, rc), amount)| match view.get(*rp).and_then(|p| p.inventory(*rc)) {
            Some(inv) => inv.used + amount > inv.capacity() || *amount > inv.max_unit,
            None => true,
        },
    )
}

/// Add `a`'s amounts to a combination's (combinations are a few entries: a vec is fastest).
fn add_amounts(amounts: &mut Vec<((i32, i32), i64)>, a: &AllocationRequest) {
    for (rp, rc, amt) in &a.resources {
        match amounts.iter_mut().find(|(k, _)| *k == (*rp, *rc)) {
            Some((_, n)) => *n += amt,
            None => amounts.push(((*rp, *rc), *amt)),
        }
    }
}

fn same_subtree_ok(view: &View, combo: &[&AllocationRequest], same: &[BTreeSet<String>]) -> bool {
    for set in same {
        let rps: BTreeSet<i32> = combo
            .iter()
            .flat_map(|a| set.iter().filter_map(|s| a.mappings.get(s)))
            .flatten()
            .copied()
            .collect();
        if rps.len() <= 1 {
            continue;
        }
        let ancestors = |id: i32| {
            let mut out = BTreeSet::from([id]);
            let mut cur = view.get(id).and_then(|p| p.parent);
            while let Some(p) = cur {
                if !out.insert(p) {
                    break;
                }
                cur = view.get(p).and_then(|x| x.parent);
            }
            out
        };
        let mut common: Option<BTreeSet<i32>> = None;
        for id in &rps {
            let a = ancestors(*id);
            common = Some(match common {
                None => a,
                Some(c) => c.intersection(&a).copied().collect(),
            });
        }
        if common.unwrap_or_default().is_disjoint(&rps) {
            return false;
        }
    }
    true
}

/// Combine one request per group for every anchor that all groups can serve.
fn merge(
    view: &View,
    mut groups: Vec<(String, Vec<AllocationRequest>)>,
    wide: &RequestWide,
    max_candidates: i64,
    strategy: GenerationStrategy,
) -> Vec<AllocationRequest> {
    let cap = usize::try_from(max_candidates).ok();
    // Identical requests can only come from different anchors, and only sharing providers
    // are anchored to trees other than their own: without them nothing needs de-duplicating.
    let dedup = !view.sharing.is_empty();
    let mut seen = HashSet::new();
    if groups.len() == 1
        && wide.same_subtrees.is_empty()
        && strategy == GenerationStrategy::DepthFirst
    {
        // One group: every request is a combination of its own (the usual scheduler query),
        // taken anchor by anchor in first-seen order as the general path does.
        let (_, mut areqs) = groups.remove(0);
        let mut first_seen: IdMap<usize> = IdMap::default();
        for a in &areqs {
            let n = first_seen.len();
            first_seen.entry(a.anchor).or_insert(n);
        }
        areqs.sort_by_key(|a| first_seen.get(&a.anchor).copied().unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(areqs.len());
        let mut amounts = Vec::new();
        for a in areqs {
            if cap.is_some_and(|c| out.len() >= c) {
                break;
            }
            amounts.clear();
            add_amounts(&mut amounts, &a);
            if exceeds(view, &amounts) || (dedup && !seen.insert(a.key())) {
                continue;
            }
            out.push(a);
        }
        return out;
    }
    let groups = &groups;
    let num_granular = groups.iter().filter(|(s, _)| !s.is_empty()).count();
    // anchor -> per group (in group order) its requests; anchors in first-seen order
    let mut anchors: Vec<i32> = Vec::new();
    let mut by_anchor: HashMap<i32, Vec<Vec<&AllocationRequest>>> = HashMap::new();
    for (gi, (_, areqs)) in groups.iter().enumerate() {
        for a in areqs {
            let slot = by_anchor.entry(a.anchor).or_insert_with(|| {
                anchors.push(a.anchor);
                vec![Vec::new(); groups.len()]
            });
            slot[gi].push(a);
        }
    }
    let viable: Vec<&Vec<Vec<&AllocationRequest>>> = anchors
        .iter()
        .filter_map(|a| by_anchor.get(a))
        .filter(|lists| lists.iter().all(|l| !l.is_empty()))
        .collect();

    let mut out = Vec::new();
    let mut iters: Vec<Product<'_>> = viable.iter().map(|l| Product::new(l)).collect();
    // depth-first: all of one anchor, then the next; breadth-first: round-robin.
    let mut live: std::collections::VecDeque<usize> = (0..iters.len()).collect();
    let mut amounts: Vec<((i32, i32), i64)> = Vec::new();
    while let Some(which) = live.pop_front() {
        if cap.is_some_and(|c| out.len() >= c) {
            break;
        }
        let Some(combo) = iters[which].next(view, &mut amounts) else {
            continue;
        };
        match strategy {
            GenerationStrategy::DepthFirst => live.push_front(which),
            GenerationStrategy::BreadthFirst => live.push_back(which),
        }
        if wide.group_policy == Some(GroupPolicy::Isolate) {
            let used: BTreeSet<i32> = combo
                .iter()
                .filter(|a| a.use_same_provider)
                .filter_map(|a| a.mappings.values().next())
                .flatten()
                .copied()
                .collect();
            if used.len() != num_granular {
                continue;
            }
        }
        if !wide.same_subtrees.is_empty() && !same_subtree_ok(view, &combo, &wide.same_subtrees) {
            continue;
        }
        // `amounts` holds the consolidated combination, in first-use order.
        let areq = if combo.len() == 1 {
            combo[0].clone()
        } else {
            let mut mappings: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
            for a in &combo {
                for (s, rps) in &a.mappings {
                    mappings.entry(s.clone()).or_default().extend(rps);
                }
            }
            AllocationRequest {
                resources: amounts.iter().map(|((rp, rc), n)| (*rp, *rc, *n)).collect(),
                mappings,
                anchor: combo[0].anchor,
                use_same_provider: false,
            }
        };
        if !dedup || seen.insert(areq.key()) {
            out.push(areq);
        }
    }
    out
}

/// The cartesian product of one anchor's per-group request lists, skipping partial
/// combinations that already exceed capacity (exceeding is monotone, so this prunes
/// exactly what the final capacity check would reject).
struct Product<'a> {
    lists: &'a [Vec<&'a AllocationRequest>],
    idx: Vec<usize>,
    done: bool,
}

impl<'a> Product<'a> {
    fn new(lists: &'a [Vec<&'a AllocationRequest>]) -> Self {
        Self {
            lists,
            idx: vec![0; lists.len()],
            done: lists.is_empty(),
        }
    }

    /// Advance position `pos` (and reset everything after it); false when exhausted.
    fn bump(&mut self, pos: usize) -> bool {
        let mut p = pos + 1;
        while p > 0 {
            p -= 1;
            for x in self.idx.iter_mut().skip(p + 1) {
                *x = 0;
            }
            self.idx[p] += 1;
            if self.idx[p] < self.lists[p].len() {
                return true;
            }
        }
        self.done = true;
        false
    }

    /// The next combination within capacity; `amounts` is left holding its consolidated
    /// amounts.
    fn next(
        &mut self,
        view: &View,
        amounts: &mut Vec<((i32, i32), i64)>,
    ) -> Option<Vec<&'a AllocationRequest>> {
        'outer: while !self.done {
            amounts.clear();
            for pos in 0..self.lists.len() {
                add_amounts(amounts, self.lists[pos][self.idx[pos]]);
                if exceeds(view, amounts) {
                    if !self.bump(pos) {
                        return None;
                    }
                    continue 'outer;
                }
            }
            let combo: Vec<&AllocationRequest> = self
                .idx
                .iter()
                .zip(self.lists)
                .map(|(i, l)| l[*i])
                .collect();
            let last = self.lists.len() - 1;
            self.bump(last);
            return Some(combo);
        }
        None
    }
}

/// Compute allocation candidates over `view`.
pub fn compute(
    view: &View,
    groups: &[(String, RequestGroup)],
    wide: &RequestWide,
    max_candidates: i64,
    strategy: GenerationStrategy,
    randomize: bool,
) -> Result<Candidates> {
    // Roots satisfying root_required.
    let anchors = if wide.root_required.is_empty() && wide.root_forbidden.is_empty() {
        None
    } else {
        let req = view.trait_ids(&wide.root_required)?;
        let forb = view.trait_ids(&wide.root_forbidden)?;
        let roots: BTreeSet<i32> = view
            .providers
            .values()
            .filter(|p| p.parent.is_none())
            .filter(|p| req.iter().all(|t| p.has_trait(*t)))
            .filter(|p| !forb.iter().any(|t| p.has_trait(*t)))
            .map(|p| p.id)
            .collect();
        if roots.is_empty() {
            return Ok(Candidates::default());
        }
        Some(roots)
    };
    let w = Wide { view, anchors };

    let mut requested_classes = BTreeSet::new();
    let mut per_group: Vec<(String, Vec<AllocationRequest>)> = Vec::new();
    for (suffix, g) in groups {
        let group = match resolve(view, suffix, g)? {
            Ok(g) => g,
            Err(NoResults) => return Ok(Candidates::default()),
        };
        requested_classes.extend(group.resources.iter().map(|(rc, _)| *rc));
        let areqs = if !group.use_same_provider && (!view.sharing.is_empty() || view.has_trees) {
            multiple_providers(&w, &group)
        } else {
            single_provider(&w, &group)
        };
        if areqs.is_empty() {
            return Ok(Candidates::default());
        }
        per_group.push((suffix.clone(), areqs));
    }
    if per_group.is_empty() {
        return Ok(Candidates::default());
    }
    let mut requests = merge(view, per_group, wide, max_candidates, strategy);

    // Before 1.29 a request may not use two providers of one tree.
    let mut only: Option<BTreeSet<i32>> = None;
    if !wide.nested_aware && view.has_trees {
        requests.retain(|a| {
            let rps: BTreeSet<i32> = a.resources.iter().map(|r| r.0).collect();
            let roots: BTreeSet<i32> = rps
                .iter()
                .filter_map(|id| view.get(*id))
                .map(|p| p.root)
                .collect();
            rps.len() == roots.len()
        });
        only = Some(
            requests
                .iter()
                .flat_map(|a| a.resources.iter().map(|r| r.0))
                .collect(),
        );
    }
    match wide.limit {
        Some(limit) if limit < requests.len() => {
            if randomize {
                requests.shuffle(&mut rand::thread_rng());
            }
            requests.truncate(limit);
        }
        _ => {
            if randomize {
                requests.shuffle(&mut rand::thread_rng());
            }
        }
    }
    let roots: BTreeSet<i32> = requests
        .iter()
        .flat_map(|a| a.resources.iter())
        .filter_map(|(rp, _, _)| view.get(*rp))
        .map(|p| p.root)
        .collect();
    let summaries = view
        .order
        .iter()
        .filter_map(|id| view.get(*id))
        .filter(|p| roots.contains(&p.root))
        .filter(|p| only.as_ref().is_none_or(|o| o.contains(&p.id)))
        .map(|p| p.id)
        .collect();
    Ok(Candidates {
        requests,
        summaries,
        requested_classes,
    })
}

impl Placement {
    /// Allocation candidates for `groups` (in request order) and the request-wide
    /// parameters; the view is returned for rendering.
    pub async fn allocation_candidates(
        &self,
        groups: &[(String, RequestGroup)],
        wide: &RequestWide,
    ) -> Result<(std::sync::Arc<View>, Candidates)> {
        let view = self.view().await?;
        let c = compute(
            &view,
            groups,
            wide,
            self.cfg.max_allocation_candidates,
            self.cfg.generation_strategy,
            self.cfg.randomize_allocation_candidates,
        )?;
        Ok((view, c))
    }
}
