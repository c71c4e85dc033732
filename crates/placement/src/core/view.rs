//! The provider view: every provider with its inventories, usage, traits and aggregates, in
//! memory, tagged with the database revision it reflects.
//!
//! Reads of provider data (lists, allocation candidates, a provider's inventories) are
//! answered from it; the database stays the authority. Every write transaction bumps the
//! revision row and names the providers it touched; after committing, the writer reloads
//! just those providers, or, for an allocation write, patches them with the usage and
//! generations it committed (under `ViewCache::refresh`, so views are installed in commit
//! order; only when the view was at the revision just before the write's). A reader compares the view's revision with the database's (one small query):
//! if another process wrote, or an in-process refresh failed, it reloads everything.

use parking_lot::RwLock;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::model::{SHARES_VIA_AGGREGATE, Timestamp, capacity};
use crate::store;

/// A hasher for the view's integer ids: lookups by id are on every hot path, and SipHash's
/// DoS resistance buys nothing for ids the database assigned.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_i32(&mut self, n: i32) {
        // Fibonacci hashing spreads consecutive ids over the table.
        self.0 = (self.0 ^ u64::from(n as u32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by database ids.
pub type IdMap<V> = HashMap<i32, V, BuildHasherDefault<IdHasher>>;

/// One inventory record with the usage of its class on the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Inv {
    pub rc: i32,
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub ratio: f64,
    pub used: i64,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl Inv {
    pub fn capacity(&self) -> i64 {
        capacity(self.total, self.reserved, self.ratio)
    }

    /// Whether `amount` more fits, unit constraints included (upstream's SQL capacity
    /// clause: the float product is compared, not the truncated capacity).
    pub fn fits(&self, amount: i64) -> bool {
        (self.used + amount) as f64 <= (self.total - self.reserved) as f64 * self.ratio
            && self.min_unit <= amount
            && self.max_unit >= amount
            && self.step_size > 0
            && amount % self.step_size == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prov {
    pub id: i32,
    pub uuid: String,
    pub name: String,
    pub generation: i64,
    pub parent: Option<i32>,
    pub root: i32,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
    /// Sorted by class id.
    pub inventories: Vec<Inv>,
    /// Sorted trait ids.
    pub traits: Vec<i32>,
    /// Sorted aggregate ids.
    pub aggregates: Vec<i32>,
}

impl Prov {
    pub fn inventory(&self, rc: i32) -> Option<&Inv> {
        self.inventories.iter().find(|i| i.rc == rc)
    }
    pub fn has_trait(&self, t: i32) -> bool {
        self.traits.binary_search(&t).is_ok()
    }
    pub fn in_aggregate(&self, a: i32) -> bool {
        self.aggregates.binary_search(&a).is_ok()
    }
    pub fn last_modified(&self) -> Timestamp {
        self.updated_at.unwrap_or(self.created_at)
    }
}

/// Names of resource classes or traits, both ways.
#[derive(Debug, Clone, Default)]
pub struct Names {
    by_id: IdMap<String>,
    by_name: HashMap<String, i32>,
}

impl Names {
    fn from_pairs(pairs: impl IntoIterator<Item = (i32, String)>) -> Self {
        let mut n = Names::default();
        for (id, name) in pairs {
            n.by_name.insert(name.clone(), id);
            n.by_id.insert(id, name);
        }
        n
    }
    pub fn id(&self, name: &str) -> Option<i32> {
        self.by_name.get(name).copied()
    }
    pub fn name(&self, id: i32) -> &str {
        self.by_id.get(&id).map(String::as_str).unwrap_or("")
    }
}

/// What an allocation write committed on one provider: the usage of every class (absolute,
/// as computed inside the transaction; a class not named has none) and, when the write
/// bumped it, the new generation and `updated_at`. The view takes these values instead of
/// reading the provider back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocated {
    pub generation: Option<(i64, Timestamp)>,
    pub used: HashMap<i32, i64>,
}

impl Allocated {
    fn applied_to(&self, p: &Prov) -> Prov {
        let mut p = p.clone();
        if let Some((generation, at)) = self.generation {
            p.generation = generation;
            p.updated_at = Some(at);
        }
        for inv in &mut p.inventories {
            inv.used = self.used.get(&inv.rc).copied().unwrap_or(0);
        }
        p
    }
}

/// What a committed write touched.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Providers to read back.
    pub providers: BTreeSet<i32>,
    /// Providers whose allocations changed, with what the write committed (no read back).
    pub allocated: BTreeMap<i32, Allocated>,
    /// Resource classes or traits were created, renamed or deleted.
    pub names: bool,
    /// Aggregates may have been created.
    pub aggregates: bool,
}

impl Changes {
    pub fn provider(id: i32) -> Self {
        let mut c = Self::default();
        c.providers.insert(id);
        c
    }
    pub fn names() -> Self {
        Self {
            names: true,
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct View {
    pub revision: i64,
    pub providers: IdMap<Arc<Prov>>,
    pub rcs: Arc<Names>,
    pub traits: Arc<Names>,
    /// Aggregate uuids by id and ids by uuid.
    pub aggregates: Arc<Names>,
    // Derived indexes, rebuilt with every install.
    pub by_uuid: HashMap<String, i32>,
    /// Provider ids in creation order.
    pub order: Vec<i32>,
    pub children: IdMap<Vec<i32>>,
    /// Providers with inventory of a class, in creation order.
    pub by_rc: IdMap<Vec<i32>>,
    /// Providers of an aggregate.
    pub agg_members: IdMap<Vec<i32>>,
    /// Providers with MISC_SHARES_VIA_AGGREGATE.
    pub sharing: BTreeSet<i32>,
    /// Some provider has a parent.
    pub has_trees: bool,
}

impl View {
    fn derive(mut self) -> Self {
        let mut order: Vec<i32> = self.providers.keys().copied().collect();
        order.sort_unstable();
        let sharing_trait = self.traits.id(SHARES_VIA_AGGREGATE);
        let mut by_uuid = HashMap::with_capacity(order.len());
        let mut children: IdMap<Vec<i32>> = IdMap::default();
        let mut by_rc: IdMap<Vec<i32>> = IdMap::default();
        let mut agg_members: IdMap<Vec<i32>> = IdMap::default();
        let mut sharing = BTreeSet::new();
        let mut has_trees = false;
        for id in &order {
            let p = &self.providers[id];
            by_uuid.insert(p.uuid.clone(), p.id);
            if let Some(parent) = p.parent {
                has_trees = true;
                children.entry(parent).or_default().push(p.id);
            }
            for inv in &p.inventories {
                by_rc.entry(inv.rc).or_default().push(p.id);
            }
            for a in &p.aggregates {
                agg_members.entry(*a).or_default().push(p.id);
            }
            if sharing_trait.is_some_and(|t| p.has_trait(t)) {
                sharing.insert(p.id);
            }
        }
        self.by_uuid = by_uuid;
        self.order = order;
        self.children = children;
        self.by_rc = by_rc;
        self.agg_members = agg_members;
        self.sharing = sharing;
        self.has_trees = has_trees;
        self
    }

    pub fn get(&self, id: i32) -> Option<&Prov> {
        self.providers.get(&id).map(Arc::as_ref)
    }

    pub fn by_uuid(&self, uuid: &str) -> Option<&Prov> {
        self.by_uuid.get(uuid).and_then(|id| self.get(*id))
    }

    pub fn uuid(&self, id: i32) -> &str {
        self.get(id).map(|p| p.uuid.as_str()).unwrap_or("")
    }

    /// Providers of a tree, in creation order.
    pub fn tree(&self, root: i32) -> impl Iterator<Item = &Prov> {
        self.order
            .iter()
            .filter_map(move |id| self.get(*id))
            .filter(move |p| p.root == root)
    }

    /// The provider and all its descendants.
    pub fn subtree(&self, id: i32) -> BTreeSet<i32> {
        let mut out = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(x) = stack.pop() {
            if out.insert(x)
                && let Some(kids) = self.children.get(&x)
            {
                stack.extend(kids.iter().copied());
            }
        }
        out
    }
}

/// Rows for the providers `ids` (all when None), assembled into `Prov`s.
async fn load_providers<C: ConnectionTrait>(
    c: &C,
    ids: Option<&BTreeSet<i32>>,
) -> Result<Vec<Prov>, DbErr> {
    if ids.is_some_and(BTreeSet::is_empty) {
        return Ok(Vec::new());
    }
    let rows = store::providers(c, ids).await?;
    let invs = store::inventories(c, ids).await?;
    let usage = store::usage(c, ids).await?;
    let traits = store::provider_traits(c, ids).await?;
    let aggs = store::provider_aggregate_links(c, ids).await?;

    let used: HashMap<(i32, i32), i64> = usage.into_iter().map(|(p, r, u)| ((p, r), u)).collect();
    let mut by_id: HashMap<i32, Prov> = HashMap::with_capacity(rows.len());
    for r in rows {
        by_id.insert(
            r.id,
            Prov {
                id: r.id,
                uuid: r.uuid,
                name: r.name,
                generation: i64::from(r.generation),
                parent: r.parent_provider_id,
                root: r.root_provider_id.unwrap_or(r.id),
                created_at: r.created_at,
                updated_at: r.updated_at,
                inventories: Vec::new(),
                traits: Vec::new(),
                aggregates: Vec::new(),
            },
        );
    }
    for i in invs {
        if let Some(p) = by_id.get_mut(&i.resource_provider_id) {
            p.inventories.push(Inv {
                rc: i.resource_class_id,
                total: i64::from(i.total),
                reserved: i64::from(i.reserved),
                min_unit: i64::from(i.min_unit),
                max_unit: i64::from(i.max_unit),
                step_size: i64::from(i.step_size),
                ratio: i.allocation_ratio,
                used: used
                    .get(&(i.resource_provider_id, i.resource_class_id))
                    .copied()
                    .unwrap_or(0),
                created_at: i.created_at,
                updated_at: i.updated_at,
            });
        }
    }
    for (rp, t) in traits {
        if let Some(p) = by_id.get_mut(&rp) {
            p.traits.push(t);
        }
    }
    for (rp, a) in aggs {
        if let Some(p) = by_id.get_mut(&rp) {
            p.aggregates.push(a);
        }
    }
    Ok(by_id
        .into_values()
        .map(|mut p| {
            p.inventories.sort_by_key(|i| i.rc);
            p.traits.sort_unstable();
            p.aggregates.sort_unstable();
            p
        })
        .collect())
}

async fn load_rcs<C: ConnectionTrait>(c: &C) -> Result<Names, DbErr> {
    Ok(Names::from_pairs(
        store::all_resource_classes(c)
            .await?
            .into_iter()
            .map(|m| (m.id, m.name)),
    ))
}

async fn load_traits<C: ConnectionTrait>(c: &C) -> Result<Names, DbErr> {
    Ok(Names::from_pairs(store::all_trait_names(c).await?))
}

async fn load_aggregates<C: ConnectionTrait>(c: &C) -> Result<Names, DbErr> {
    Ok(Names::from_pairs(store::aggregates(c).await?))
}

/// Everything, read in one transaction so the revision matches the data.
async fn load_all(db: &sea_orm::DatabaseConnection) -> Result<View, DbErr> {
    let txn = db.begin().await?;
    let revision = store::revision(&txn).await?;
    let providers = load_providers(&txn, None).await?;
    let rcs = load_rcs(&txn).await?;
    let traits = load_traits(&txn).await?;
    let aggregates = load_aggregates(&txn).await?;
    txn.commit().await?;
    Ok(View {
        revision,
        providers: providers.into_iter().map(|p| (p.id, Arc::new(p))).collect(),
        rcs: Arc::new(rcs),
        traits: Arc::new(traits),
        aggregates: Arc::new(aggregates),
        ..View::default()
    }
    .derive())
}

/// The current view and the lock that orders its replacements.
pub struct ViewCache {
    current: RwLock<Arc<View>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Default for ViewCache {
    fn default() -> Self {
        Self {
            current: RwLock::new(Arc::new(View::default())),
            refresh: tokio::sync::Mutex::new(()),
        }
    }
}

pub type RefreshGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

impl ViewCache {
    pub fn current(&self) -> Arc<View> {
        self.current.read().clone()
    }

    /// A view at least as new as the database revision read at the start of the call.
    pub async fn fresh(&self, db: &sea_orm::DatabaseConnection) -> Result<Arc<View>, DbErr> {
        let rev = store::revision(db).await?;
        let cur = self.current();
        if cur.revision >= rev && rev > 0 {
            return Ok(cur);
        }
        // Behind: a writer of this process is about to install (wait for it), or another
        // process wrote (reload).
        let _g = self.refresh.lock().await;
        let cur = self.current();
        if cur.revision >= rev && rev > 0 {
            return Ok(cur);
        }
        let view = Arc::new(load_all(db).await?);
        tracing::debug!(revision = view.revision, "placement view reloaded");
        *self.current.write() = view.clone();
        Ok(view)
    }

    /// Taken by a writer before it commits, held until `apply` has installed its changes.
    pub async fn lock(&self) -> RefreshGuard<'_> {
        self.refresh.lock().await
    }

    /// After a commit at `revision`: reload what `changes` touched (under the guard).
    pub async fn apply(
        &self,
        _guard: &RefreshGuard<'_>,
        db: &sea_orm::DatabaseConnection,
        revision: i64,
        changes: &Changes,
    ) {
        let cur = self.current();
        if cur.revision >= revision {
            return;
        }
        if cur.revision != revision - 1 {
            // A write we did not see (another process): leave it to a full reload.
            return;
        }
        match self.incremental(db, &cur, revision, changes).await {
            Ok(v) => *self.current.write() = Arc::new(v),
            Err(e) => {
                // The next reader reloads everything.
                tracing::warn!(error = %e, "placement view refresh failed");
            }
        }
    }

    async fn incremental(
        &self,
        db: &sea_orm::DatabaseConnection,
        cur: &View,
        revision: i64,
        changes: &Changes,
    ) -> Result<View, DbErr> {
        // The view is exactly the database before this write (its revision is the one
        // before), so patching what the write changed gives the database after it.
        let mut reload = changes.providers.clone();
        let mut patched = Vec::with_capacity(changes.allocated.len());
        for (id, a) in &changes.allocated {
            if reload.contains(id) {
                continue;
            }
            match cur.providers.get(id) {
                Some(p) => patched.push(a.applied_to(p)),
                None => {
                    reload.insert(*id);
                }
            }
        }
        let fresh = load_providers(db, Some(&reload)).await?;
        let mut providers = cur.providers.clone();
        for id in &reload {
            providers.remove(id);
        }
        for p in fresh.into_iter().chain(patched) {
            providers.insert(p.id, Arc::new(p));
        }
        let (rcs, traits) = if changes.names {
            (
                Arc::new(load_rcs(db).await?),
                Arc::new(load_traits(db).await?),
            )
        } else {
            (cur.rcs.clone(), cur.traits.clone())
        };
        let aggregates = if changes.aggregates {
            Arc::new(load_aggregates(db).await?)
        } else {
            cur.aggregates.clone()
        };
        Ok(View {
            revision,
            providers,
            rcs,
            traits,
            aggregates,
            ..View::default()
        }
        .derive())
    }
}
