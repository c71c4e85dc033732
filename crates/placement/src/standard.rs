//! The standard resource classes (os-resource-classes 1.1) and traits (os-traits 3.9), as
//! data, and their insertion into the database at start, as upstream does on boot.

use common::db::Database;
use sea_orm::DbErr;
use std::collections::BTreeSet;

use crate::store;

/// Standard resource classes; a class's id is its index here, as upstream.
pub const RESOURCE_CLASSES: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
];

/// One standard trait name per line.
const TRAITS: &str = include_str!("data/traits.txt");

pub fn traits() -> impl Iterator<Item = &'static str> {
    TRAITS.lines().map(str::trim).filter(|l| !l.is_empty())
}

pub fn is_standard_trait(name: &str) -> bool {
    traits().any(|t| t == name)
}

/// Insert the standard classes and traits the database lacks.
pub async fn sync(db: &Database) -> Result<(), DbErr> {
    let w = db.write().await?;
    let have: BTreeSet<String> = store::all_resource_classes(&*w)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let mut inserted_classes = false;
    for (id, name) in RESOURCE_CLASSES.iter().enumerate() {
        if !have.contains(*name) {
            store::insert_resource_class(&*w, id as i32, name).await?;
            inserted_classes = true;
        }
    }
    let have: BTreeSet<String> = store::all_trait_names(&*w)
        .await?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let missing: Vec<&str> = traits().filter(|t| !have.contains(*t)).collect();
    store::insert_traits(&*w, &missing).await?;
    if inserted_classes || !missing.is_empty() {
        // A running kumo on the same database (`kumo db sync` after an upgrade) then reloads
        // its view, names included.
        store::bump_revision(&*w).await?;
    }
    w.commit().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_is_well_formed() {
        let traits: Vec<&str> = super::traits().collect();
        assert_eq!(traits.len(), 377);
        assert!(traits.contains(&"MISC_SHARES_VIA_AGGREGATE"));
        assert!(traits.contains(&"HW_CPU_X86_AVX2"));
        for t in &traits {
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{t}"
            );
            assert!(!t.starts_with("CUSTOM_"));
        }
        assert_eq!(super::RESOURCE_CLASSES[0], "VCPU");
        assert_eq!(super::RESOURCE_CLASSES.len(), 21);
    }
}
