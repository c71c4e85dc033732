//! Domain types of placement: what the core takes and returns. No HTTP, no SQL.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

pub type Timestamp = DateTime<Utc>;

/// Largest value of an inventory field (the database column is a 32-bit integer).
pub const MAX_INT: i64 = 0x7FFF_FFFF;
/// Largest allocation ratio (a single-precision float in upstream's schema).
pub const MAX_RATIO: f64 = 3.40282e38;
/// Resource class ids below this are the standard classes.
pub const MIN_CUSTOM_RESOURCE_CLASS_ID: i32 = 10000;
pub const CUSTOM_PREFIX: &str = "CUSTOM_";
/// The trait that marks a provider whose inventory is shared with its aggregates' members.
pub const SHARES_VIA_AGGREGATE: &str = "MISC_SHARES_VIA_AGGREGATE";
/// Consumers written before consumer types existed report this type (1.38).
pub const UNKNOWN_CONSUMER_TYPE: &str = "unknown";

/// A resource provider as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceProvider {
    pub id: i32,
    pub uuid: String,
    pub name: String,
    pub generation: i64,
    pub parent_provider_uuid: Option<String>,
    pub root_provider_uuid: String,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl ResourceProvider {
    pub fn last_modified(&self) -> Timestamp {
        self.updated_at.unwrap_or(self.created_at)
    }
}

/// One inventory record of a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub resource_class: String,
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub allocation_ratio: f64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

impl Inventory {
    /// Defaults for the optional fields, as upstream's API fills them in.
    pub fn new(resource_class: impl Into<String>, total: i64) -> Self {
        Self {
            resource_class: resource_class.into(),
            total,
            reserved: 0,
            min_unit: 1,
            max_unit: MAX_INT,
            step_size: 1,
            allocation_ratio: 1.0,
            created_at: None,
            updated_at: None,
        }
    }

    /// What can be allocated: `(total - reserved) * allocation_ratio`, truncated.
    pub fn capacity(&self) -> i64 {
        capacity(self.total, self.reserved, self.allocation_ratio)
    }

    pub fn last_modified(&self) -> Option<Timestamp> {
        self.updated_at.or(self.created_at)
    }
}

pub fn capacity(total: i64, reserved: i64, ratio: f64) -> i64 {
    ((total - reserved) as f64 * ratio) as i64
}

/// Whether `reserved` may equal `total` (microversion 1.26) when inventories are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedRule {
    /// capacity must be > 0
    BelowTotal,
    /// capacity must be >= 0
    UpToTotal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceClass {
    pub id: i32,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl ResourceClass {
    pub fn last_modified(&self) -> Timestamp {
        self.updated_at.unwrap_or(self.created_at)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trait {
    pub id: i32,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl Trait {
    pub fn last_modified(&self) -> Timestamp {
        self.updated_at.unwrap_or(self.created_at)
    }
}

/// Filters of `GET /traits`.
#[derive(Debug, Clone, Default)]
pub struct TraitFilter {
    pub name_in: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub associated: Option<bool>,
}

/// The owner of allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub uuid: String,
    pub project_id: String,
    pub user_id: String,
    pub generation: i64,
    pub consumer_type: Option<String>,
}

/// One allocation row as `GET /allocations/{consumer}` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerAllocation {
    pub provider_uuid: String,
    pub provider_generation: i64,
    pub resource_class: String,
    pub used: i64,
    pub last_modified: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerAllocations {
    /// None when the consumer has no allocations (it then does not exist).
    pub consumer: Option<Consumer>,
    pub allocations: Vec<ConsumerAllocation>,
}

/// One allocation row as `GET /resource_providers/{uuid}/allocations` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAllocation {
    pub consumer_uuid: String,
    pub consumer_generation: i64,
    pub resource_class: String,
    pub used: i64,
    pub last_modified: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAllocations {
    pub provider_generation: i64,
    pub allocations: Vec<ProviderAllocation>,
}

/// What a writer wants one consumer's allocations to become.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerWrite {
    pub consumer_uuid: String,
    /// None before microversion 1.8: the configured "incomplete consumer" ids are used.
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    /// The generation the writer believes the consumer has (None: "no such consumer").
    pub consumer_generation: Option<i64>,
    pub consumer_type: Option<String>,
    /// Provider uuid -> resource class -> amount. Empty: remove the consumer's allocations.
    pub allocations: BTreeMap<String, BTreeMap<String, i64>>,
}

/// Which checks of an allocation write the request's microversion asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteRules {
    /// 1.28: compare `consumer_generation` with the stored generation.
    pub check_consumer_generation: bool,
    /// 1.38: record `consumer_type`.
    pub set_consumer_type: bool,
}

/// Why an allocation write was refused, for the handler's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerGenerationConflict {
    /// The consumer exists at `expected`, the writer said `got` (None: "new").
    Mismatch { expected: i64, got: Option<i64> },
    /// The consumer does not exist, the writer gave a generation.
    ExpectedNull { got: i64 },
}

/// Usage of one resource class.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub resource_class: String,
    pub usage: i64,
    /// Present when grouped by consumer type (1.38).
    pub consumer_type: Option<String>,
    pub consumer_count: i64,
}

/// `GET /usages` grouping (1.38).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerTypeFilter {
    /// Before 1.38: no grouping at all.
    None,
    /// 1.38 without a filter: one group per consumer type.
    PerType,
    All,
    Unknown,
    Named(String),
}

/// Filters of `GET /resource_providers`.
#[derive(Debug, Clone, Default)]
pub struct ProviderFilter {
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub in_tree: Option<String>,
    /// AND of ORs of aggregate uuids.
    pub member_of: Vec<BTreeSet<String>>,
    pub forbidden_aggs: BTreeSet<String>,
    /// AND of ORs of trait names.
    pub required_traits: Vec<BTreeSet<String>>,
    pub forbidden_traits: BTreeSet<String>,
    pub resources: BTreeMap<String, i64>,
}

/// One request group of `GET /allocation_candidates`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestGroup {
    /// Numbered/named groups must be satisfied by one provider; the unsuffixed one may
    /// span a tree and sharing providers.
    pub use_same_provider: bool,
    pub resources: BTreeMap<String, i64>,
    pub required_traits: Vec<BTreeSet<String>>,
    pub forbidden_traits: BTreeSet<String>,
    pub member_of: Vec<BTreeSet<String>>,
    pub forbidden_aggs: BTreeSet<String>,
    pub in_tree: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    None,
    Isolate,
}

/// Parameters of `GET /allocation_candidates` that apply to the whole request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestWide {
    pub limit: Option<usize>,
    pub group_policy: Option<GroupPolicy>,
    pub root_required: BTreeSet<String>,
    pub root_forbidden: BTreeSet<String>,
    pub same_subtrees: Vec<BTreeSet<String>>,
    /// 1.29: allocation requests may span several providers of one tree.
    pub nested_aware: bool,
}
