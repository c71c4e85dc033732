//! The network agent of this host (Neutron's L2/DHCP/L3 agents in one): after every change
//! to the database it computes the host plan ([`crate::hostplan`]), makes the host match it
//! ([`dataplane::converge`]), sets the ports' status, and tells compute when a guest's port
//! is up (`network-vif-plugged`), which the build of a server waits for.
//!
//! Changes arrive through [`NetworkService::watch_changes`]; bursts are coalesced (one
//! converge for many API calls). A periodic pass repairs drift (a tap or namespace deleted
//! by hand) and retries after an error. With `[network] dataplane = none` nothing is built on
//! the host, and bound ports go ACTIVE at once (API-only clouds and fast tests).

use async_trait::async_trait;
use dataplane::plan::Names;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::NetworkService;
use crate::hostplan::{self, Options};

/// What the agent tells compute (Nova's os-server-external-events, as Neutron sends them).
#[async_trait]
pub trait PortEvents: Send + Sync {
    /// The port `port` of server `server` is wired and up.
    async fn vif_plugged(&self, server: &str, port: &str);
}

/// Whoever serves the metadata service inside the DHCP namespaces (kumo wires
/// `metadata::listeners`; the network crate does not know how metadata is rendered).
#[async_trait]
pub trait MetadataHost: Send + Sync {
    /// After each pass: exactly the (network id, DHCP namespace) pairs that carry the
    /// metadata address now.
    async fn serve(&self, networks: Vec<(String, String)>);
}

/// Nobody listens (tests of the network service alone).
pub struct NoEvents;

#[async_trait]
impl PortEvents for NoEvents {
    async fn vif_plugged(&self, _server: &str, _port: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bridges, namespaces, nftables and dnsmasq on this host.
    Linux,
    /// No data plane: ports go ACTIVE when bound.
    None,
}

/// `[network] dataplane`: `auto` is linux when kumo runs as root with the tools installed.
pub fn resolve_mode(setting: &str) -> Result<Mode, String> {
    match setting {
        "linux" => Ok(Mode::Linux),
        "none" => Ok(Mode::None),
        "auto" => {
            let root = nix::unistd::geteuid().is_root();
            let tools = ["ip", "nft", "dnsmasq"]
                .iter()
                .all(|t| dataplane::tool_available(t));
            if root && tools {
                Ok(Mode::Linux)
            } else {
                tracing::warn!(
                    root,
                    tools,
                    "network data plane off ([network] dataplane = auto needs root and the ip, nft and dnsmasq tools): ports go ACTIVE without connectivity"
                );
                Ok(Mode::None)
            }
        }
        other => Err(format!(
            "[network] dataplane = {other}: expected linux, none or auto"
        )),
    }
}

pub struct Agent {
    svc: Arc<NetworkService>,
    mode: Mode,
    names: Names,
    state_dir: PathBuf,
    events: Arc<dyn PortEvents>,
    metadata: Option<Arc<dyn MetadataHost>>,
}

/// Where the data plane's files live (dnsmasq's hosts/opts/leases/log): under /run, because
/// dnsmasq re-reads them after dropping root, and kumo's state directory is private (0700).
pub fn runtime_dir(prefix: &str) -> PathBuf {
    PathBuf::from(format!("/run/kumo/{prefix}network"))
}

/// How long a burst of changes may last before the agent acts (coalescing).
const SETTLE: Duration = Duration::from_millis(15);
/// Drift repair and retry period.
const RESYNC: Duration = Duration::from_secs(30);

impl Agent {
    pub fn new(svc: Arc<NetworkService>, mode: Mode, events: Arc<dyn PortEvents>) -> Self {
        let names = Names::new(svc.cfg.namespace_prefix.clone());
        let state_dir = runtime_dir(&svc.cfg.namespace_prefix);
        Agent {
            svc,
            mode,
            names,
            state_dir,
            events,
            metadata: None,
        }
    }

    /// Serve metadata from the DHCP namespaces this agent builds.
    pub fn with_metadata(mut self, host: Arc<dyn MetadataHost>) -> Self {
        self.metadata = Some(host);
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One pass: plan, converge, statuses, events. Returns how many ports changed status.
    pub async fn sync_once(&self) -> Result<usize, AgentError> {
        let t0 = Instant::now();
        let snap = self.svc.snapshot().await?;
        let built = hostplan::build(
            &snap,
            &Options {
                names: self.names.clone(),
                host: &self.svc.cfg.host,
                lease_seconds: self.svc.cfg.dhcp_lease_duration,
                metadata: self.svc.cfg.isolated_metadata && self.metadata.is_some(),
                uplinks: &self.svc.cfg.segments,
                external_access: self.svc.cfg.external_access,
            },
        );
        let mut statuses: HashMap<String, &'static str> = built.port_status;
        match self.mode {
            Mode::Linux => {
                let report = dataplane::converge::converge(&built.plan, &self.state_dir).await?;
                if !report.is_noop() {
                    tracing::info!(%report, elapsed_ms = t0.elapsed().as_millis() as u64, "network data plane converged");
                }
                if let Some(host) = &self.metadata {
                    let metadata_cidr = format!("{}/32", hostplan::METADATA_ADDRESS);
                    let serving = built
                        .plan
                        .networks
                        .iter()
                        .filter(|n| {
                            n.dhcp
                                .as_ref()
                                .is_some_and(|d| d.addresses.contains(&metadata_cidr))
                        })
                        .map(|n| (n.id.clone(), self.names.dhcp_namespace(&n.id)))
                        .collect();
                    host.serve(serving).await;
                }
            }
            Mode::None => {
                // Nothing to build: what would be wired is up.
                for p in &snap.ports {
                    if !hostplan::is_guest_port(p) && !p.device_owner.starts_with("network:") {
                        continue;
                    }
                    if hostplan::is_guest_port(p) && p.binding_host_id.is_empty() {
                        continue;
                    }
                    if p.admin_state_up {
                        statuses.insert(p.id.clone(), "ACTIVE");
                    }
                }
            }
        }
        let went_up = self.svc.set_port_statuses(&statuses).await?;
        for p in &went_up {
            if hostplan::is_guest_port(p) && !p.device_id.is_empty() {
                tracing::info!(port = %p.id, server = %p.device_id, "port up: network-vif-plugged");
                self.events.vif_plugged(&p.device_id, &p.id).await;
            }
        }
        Ok(went_up.len())
    }

    /// Run until the process ends.
    pub async fn run(self) {
        let mut changes = self.svc.watch_changes();
        let mut failures: u32 = 0;
        loop {
            match self.sync_once().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, failures, "network data plane sync failed; retrying");
                }
            }
            let wait = if failures > 0 {
                Duration::from_millis(500 * u64::from(failures.min(20)))
            } else {
                RESYNC
            };
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                    changes.mark_unchanged();
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Why a pass failed (logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("reading the network database: {0}")]
    Db(#[from] crate::error::NetError),
    #[error(transparent)]
    Dataplane(#[from] dataplane::Error),
}
