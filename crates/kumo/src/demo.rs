//! Demo data that `kumo up --demo` adds besides identity's and compute's: the kumo-tiny guest
//! image (tools/guest-image/build.sh), uploaded once as a public image through the image
//! service's own core API, as the admin project.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{Duration, Utc};
use common::auth::{AuthContext, RoleRef, Scope};
use common::config::Config;
use futures::Stream;
use identity::bootstrap::BootstrapReport;
use identity::model::Target;
use image::core::{CreateRequest, ListParams};
use image::model::{Status, Visibility};
use image::store::{ColFilter, ImageCol};
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;

use crate::server::Cloud;

/// The demo image's name (and its `os_distro`).
pub const GUEST_IMAGE_NAME: &str = "kumo-tiny";

/// Where build.sh caches its images: `$KUMO_CACHE_DIR`, else `$XDG_CACHE_HOME/kumo`, else
/// `~/.cache/kumo`, then `images/`.
fn image_cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let cache = nonempty("KUMO_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("kumo")))
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("kumo")))?;
    Some(cache.join("images"))
}

/// The newest `kumo-tiny-*.qcow2` in `dir`, if any.
fn newest_cached_image(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("kumo-tiny-") && n.ends_with(".qcow2")
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (m.modified().ok(), e.path()))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, p)| p)
}

/// What `[demo] guest_image` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestImage {
    /// `none`: no demo image.
    Off,
    /// Empty, and no cached build.
    NotBuilt,
    File(PathBuf),
}

/// The file `[demo] guest_image` names, else the newest cached build.
pub fn guest_image(cfg: &Config) -> Result<GuestImage> {
    let configured = cfg.get_str("demo", "guest_image")?;
    Ok(match configured.trim() {
        "none" => GuestImage::Off,
        "" => image_cache_dir()
            .and_then(|d| newest_cached_image(&d))
            .map_or(GuestImage::NotBuilt, GuestImage::File),
        path => GuestImage::File(PathBuf::from(path)),
    })
}

/// The file's bytes in 1 MiB chunks; ends after the first read error.
fn file_stream(
    file: tokio::fs::File,
) -> Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> {
    Box::pin(futures::stream::unfold(Some(file), |state| async move {
        let mut f = state?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }))
}

/// The admin user on the admin project, as a token of theirs would resolve (effective roles,
/// `is_admin_project`), without a token: kumo acts for the operator here, in-process.
async fn admin_context(cloud: &Cloud, report: &BootstrapReport) -> Result<AuthContext> {
    let id = cloud.identity()?;
    let user = id.get_user(&report.admin_user_id).await?;
    let user_domain = id.get_domain(&user.domain_id).await?;
    let project = id.get_project(&report.admin_project_id).await?;
    let project_domain = id.get_domain(&project.domain_id).await?;
    let roles = id
        .effective_roles(&user.id, &Target::Project(project.id.clone()))
        .await?;
    let now = Utc::now();
    Ok(AuthContext {
        user_id: user.id,
        user_name: user.name,
        user_domain_id: user_domain.id,
        user_domain_name: user_domain.name,
        scope: Scope::Project {
            id: project.id,
            name: project.name,
            domain_id: project_domain.id,
            domain_name: project_domain.name,
        },
        roles: roles
            .into_iter()
            .map(|r| RoleRef {
                id: r.id,
                name: r.name,
            })
            .collect(),
        methods: vec!["password".into()],
        audit_ids: Vec::new(),
        issued_at: now,
        expires_at: now + Duration::minutes(10),
        app_cred: None,
        is_admin_project: true,
    })
}

/// The demo user's key pair (devstack leaves this to the user; `kumo ssh` needs one): an
/// ed25519 key made with ssh-keygen into STATE/demo-key, registered for the demo user as
/// `demo-key`. Returns whether it was created now.
pub async fn ensure_demo_keypair(
    cloud: &Cloud,
    report: &BootstrapReport,
    private_key: &std::path::Path,
) -> Result<bool> {
    let Some(demo_user) = report.demo_user_id.clone() else {
        return Ok(false);
    };
    let public = private_key.with_extension("pub");
    if !private_key.exists() || !public.exists() {
        let _ = std::fs::remove_file(private_key);
        let _ = std::fs::remove_file(&public);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kumo-demo", "-f"])
            .arg(private_key)
            .output()
            .context("running ssh-keygen (package openssh-client)")?;
        if !out.status.success() {
            anyhow::bail!(
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let key = std::fs::read_to_string(&public)
        .with_context(|| format!("reading {}", public.display()))?;
    let ctx = admin_context(cloud, report).await?;
    let created = cloud
        .compute
        .create_keypair(
            &ctx,
            compute::core::keypairs::CreateKeypair {
                name: DEMO_KEYPAIR.into(),
                key_type: "ssh".into(),
                public_key: Some(key.trim().to_string()),
                user_id: Some(demo_user),
            },
        )
        .await;
    match created {
        Ok(_) => Ok(true),
        Err(compute::error::ComputeError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Upload `path` as the public image `kumo-tiny` unless an active one exists. Returns the new
/// image's id (`None`: there was one already). A `kumo-tiny` left `queued` by an interrupted
/// start (owned by the admin project) gets the data instead of a second image.
pub async fn ensure_guest_image(
    cloud: &Cloud,
    report: &BootstrapReport,
    path: &Path,
) -> Result<Option<String>> {
    let ctx = admin_context(cloud, report).await?;
    let found = cloud
        .image
        .list(
            &ctx,
            ListParams {
                filters: vec![ColFilter::Text(ImageCol::Name, GUEST_IMAGE_NAME.into())],
                ..Default::default()
            },
        )
        .await
        .context("listing images")?
        .images;
    if found.iter().any(|i| i.status == Status::Active) {
        return Ok(None);
    }
    let size = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("{}", path.display()))?
        .len();
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("{}", path.display()))?;
    let leftover = found.into_iter().find(|i| {
        i.status == Status::Queued && i.owner.as_deref() == Some(&report.admin_project_id)
    });
    let id = match leftover {
        Some(img) => img.id,
        None => {
            let mut properties = Map::new();
            properties.insert("os_distro".into(), json!(GUEST_IMAGE_NAME));
            properties.insert("hw_qemu_guest_agent".into(), Value::from("no"));
            cloud
                .image
                .create(
                    &ctx,
                    CreateRequest {
                        name: Some(GUEST_IMAGE_NAME.into()),
                        visibility: Some(Visibility::Public),
                        disk_format: Some("qcow2".into()),
                        container_format: Some("bare".into()),
                        min_disk: Some(1),
                        min_ram: Some(128),
                        properties,
                        ..Default::default()
                    },
                )
                .await
                .context("creating the image")?
                .id
        }
    };
    cloud
        .image
        .upload(&ctx, &id, Some(size), file_stream(file))
        .await
        .with_context(|| format!("uploading {} into image {id}", path.display()))?;
    Ok(Some(id))
}

/// Names of the demo network, as devstack makes them.
pub const PUBLIC_NETWORK: &str = "public";
pub const PRIVATE_NETWORK: &str = "private";
pub const DEMO_ROUTER: &str = "router1";
/// devstack's shared default IPv4 subnet pool.
pub const DEFAULT_SUBNET_POOL: &str = "shared-default-subnetpool-v4";
/// The demo user's key pair (its private half is STATE/demo-key, what `kumo ssh` uses).
pub const DEMO_KEYPAIR: &str = "demo-key";

fn body(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn first_id(v: &[Value]) -> Result<String> {
    v.first()
        .and_then(|x| x["id"].as_str())
        .map(str::to_string)
        .context("the network service returned nothing")
}

/// `kumo up --demo` ([demo] network): devstack's networks, once: `public` (external,
/// 172.24.4.0/24, no DHCP, its gateway .1 held by the outside-world namespace), the demo
/// project's `private` (10.0.0.0/26) behind `router1`, and ICMP and SSH allowed into the demo
/// project's default security group so `kumo ssh` works out of the box. Returns whether it
/// made anything.
pub async fn ensure_network(cloud: &Cloud, report: &BootstrapReport) -> Result<bool> {
    let Some(demo_project) = report.demo_project_id.clone() else {
        return Ok(false);
    };
    let ctx = admin_context(cloud, report).await?;
    let net = &cloud.network;
    let existing = net.list_networks(&ctx).await.map_err(anyhow::Error::msg)?;
    if existing
        .iter()
        .any(|n| n["name"] == PUBLIC_NETWORK || n["name"] == PRIVATE_NETWORK)
    {
        return Ok(false);
    }
    let e = |e: network::error::NetError| anyhow::anyhow!("{} ({})", e.message, e.kind);
    let public = net
        .create_networks(
            &ctx,
            &[&body(
                json!({"name": PUBLIC_NETWORK, "router:external": true, "is_default": true}),
            )],
        )
        .await
        .map_err(e)?;
    let public_id = first_id(&public)?;
    net.create_subnets(
        &ctx,
        &[&body(json!({
            "name": "public-subnet", "network_id": public_id, "ip_version": 4,
            "cidr": "172.24.4.0/24", "gateway_ip": "172.24.4.1", "enable_dhcp": false,
        }))],
    )
    .await
    .map_err(e)?;
    // devstack's default pool: `networks: auto` (auto-allocated topology) takes its
    // subnets from it, and the demo's private subnet is its first /26.
    let pool = net
        .create_subnetpools(
            &ctx,
            &[&body(json!({
                "name": DEFAULT_SUBNET_POOL, "prefixes": ["10.0.0.0/16"],
                "default_prefixlen": 26, "shared": true, "is_default": true,
            }))],
        )
        .await
        .map_err(e)?;
    let pool_id = first_id(&pool)?;
    let private = net
        .create_networks(
            &ctx,
            &[&body(
                json!({"name": PRIVATE_NETWORK, "project_id": demo_project}),
            )],
        )
        .await
        .map_err(e)?;
    let private_id = first_id(&private)?;
    let subnet = net
        .create_subnets(
            &ctx,
            &[&body(json!({
                "name": "private-subnet", "network_id": private_id, "ip_version": 4,
                "cidr": "10.0.0.0/26", "project_id": demo_project,
                "subnetpool_id": pool_id,
            }))],
        )
        .await
        .map_err(e)?;
    let subnet_id = first_id(&subnet)?;
    let router = net
        .create_routers(
            &ctx,
            &[&body(json!({
                "name": DEMO_ROUTER, "project_id": demo_project,
                "external_gateway_info": {"network_id": public_id},
            }))],
        )
        .await
        .map_err(e)?;
    let router_id = first_id(&router)?;
    net.add_router_interface(&ctx, &router_id, &body(json!({"subnet_id": subnet_id})))
        .await
        .map_err(e)?;
    let group = net
        .default_security_group_id(&demo_project)
        .await
        .map_err(e)?;
    for rule in [
        json!({"security_group_id": group, "direction": "ingress", "ethertype": "IPv4",
               "protocol": "icmp", "project_id": demo_project}),
        json!({"security_group_id": group, "direction": "ingress", "ethertype": "IPv4",
               "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
               "project_id": demo_project}),
    ] {
        net.create_security_group_rules(&ctx, &[&body(rule)])
            .await
            .map_err(e)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_cached_image_ignores_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(newest_cached_image(dir.path()), None);
        for name in [
            "kumo-tiny-aaaa.manifest",
            "kumo-tiny-bbbb.qcow2.part",
            "other.qcow2",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        assert_eq!(newest_cached_image(dir.path()), None);
        let old = dir.path().join("kumo-tiny-0001.qcow2");
        let new = dir.path().join("kumo-tiny-0002.qcow2");
        std::fs::write(&old, b"old").expect("write");
        std::fs::write(&new, b"new").expect("write");
        let t = std::time::SystemTime::now();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(t - std::time::Duration::from_secs(60)))
            .expect("mtime");
        assert_eq!(newest_cached_image(dir.path()), Some(new));
    }

    #[test]
    fn guest_image_option() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::new(dir.path());
        crate::settings::declare_all(&mut cfg);
        cfg.set("demo", "guest_image", "none");
        assert_eq!(guest_image(&cfg).expect("read"), GuestImage::Off);
        cfg.set("demo", "guest_image", "$state_dir/tiny.qcow2");
        assert_eq!(
            guest_image(&cfg).expect("read"),
            GuestImage::File(dir.path().join("tiny.qcow2"))
        );
    }
}
