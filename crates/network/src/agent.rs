//! The network agent of this host (Neutron's L2/DHCP/L3 agents in one): after every change
//! to the database it computes the host plan ([`crate::hostplan`]), makes the host match it
//! ([`dataplane::converge`]), sets the ports' status, and tells compute when a guest's port
//! is up (`network-vif-plugged`), which the build of a server waits for.
//!
//! Changes arrive through [`NetworkService::watch_changes`] (this process's API) or the
//! [`Agent::waker`] (another process's, over the bus); bursts are coalesced (one converge for
//! many API calls). A periodic pass repairs drift (a tap or namespace deleted by hand) and
//! retries after an error. With `[network] dataplane = none` nothing is built on the host, and
//! bound ports go ACTIVE at once (API-only clouds and fast tests).
//!
//! The agent registers itself as Neutron's agents ([`crate::core::agents`]) and sends their
//! heartbeats: a Linux bridge agent always (its VXLAN endpoint and host namespace are how
//! other hosts reach its bridges and how ports bound here are wired), DHCP, L3 and metadata
//! agents when it serves the networks ([`Scope::services`]).

use async_trait::async_trait;
use dataplane::plan::Names;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::NetworkService;
use crate::core::agents::{AgentKind, AgentReport};
use crate::hostplan::{self, Options, Scope};

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
    /// The binding host whose guest ports this agent wires; empty: every bound port.
    host: String,
    /// The host its agents register under.
    report_host: String,
    scope: Scope,
    wake: Arc<tokio::sync::Notify>,
    /// What the last pass built, for the heartbeats.
    counts: std::sync::Mutex<Counts>,
    registered: std::sync::atomic::AtomicBool,
}

/// What an agent's heartbeat says it serves (Neutron's agents report the same counts).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    devices: usize,
    networks: usize,
    dhcp_networks: usize,
    dhcp_ports: usize,
    subnets: usize,
    routers: usize,
    floating_ips: usize,
    gateways: usize,
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
        let host = svc.cfg.host.clone();
        Agent {
            svc,
            mode,
            names,
            state_dir,
            events,
            metadata: None,
            report_host: host.clone(),
            host,
            scope: Scope::ALL,
            wake: Arc::new(tokio::sync::Notify::new()),
            counts: std::sync::Mutex::new(Counts::default()),
            registered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Register the agents under `host` (all-in-one: the machine's or compute's host name
    /// when `[network] host` is empty; the ports it wires stay every bound one).
    pub fn reporting_as(mut self, host: String) -> Self {
        if self.host.is_empty() {
            self.report_host = host;
        }
        self
    }

    /// One host of several: wire the guest ports bound to `host` and/or serve the networks.
    pub fn on_host(mut self, host: String, scope: Scope) -> Self {
        self.report_host = host.clone();
        self.host = host;
        self.scope = scope;
        self
    }

    /// Wakes the agent for a pass (a change made by another process).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
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
                host: &self.host,
                lease_seconds: self.svc.cfg.dhcp_lease_duration,
                metadata: self.svc.cfg.isolated_metadata && self.metadata.is_some(),
                uplinks: &self.svc.cfg.segments,
                external_access: self.svc.cfg.external_access,
                scope: self.scope,
            },
        );
        self.count(&built.plan);
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
                    let mine = if hostplan::is_guest_port(p) {
                        self.scope.guests
                            && !p.binding_host_id.is_empty()
                            && (self.host.is_empty() || p.binding_host_id == self.host)
                    } else {
                        self.scope.services && p.device_owner.starts_with("network:")
                    };
                    if !mine {
                        continue;
                    }
                    if p.admin_state_up {
                        statuses.insert(p.id.clone(), "ACTIVE");
                    }
                }
            }
        }
        // Only what the snapshot shows differently: with hundreds of ports, rereading each
        // one on every pass made port creates slower as the cloud grew (bench/scale_out.sh).
        let seen: HashMap<&str, &str> = snap
            .ports
            .iter()
            .map(|p| (p.id.as_str(), p.status.as_str()))
            .collect();
        statuses.retain(|id, status| seen.get(id.as_str()) != Some(status));
        let went_up = self.svc.set_port_statuses(&statuses).await?;
        for p in &went_up {
            if hostplan::is_guest_port(p) && !p.device_id.is_empty() {
                tracing::info!(port = %p.id, server = %p.device_id, "port up: network-vif-plugged");
                self.events.vif_plugged(&p.device_id, &p.id).await;
            }
        }
        Ok(went_up.len())
    }

    fn count(&self, plan: &dataplane::plan::HostPlan) {
        let c = Counts {
            devices: plan.vm_ports.len(),
            networks: plan.networks.len(),
            dhcp_networks: plan.networks.iter().filter(|n| n.dhcp.is_some()).count(),
            dhcp_ports: plan
                .networks
                .iter()
                .filter_map(|n| n.dhcp.as_ref())
                .map(|d| d.hosts.len())
                .sum(),
            subnets: plan
                .networks
                .iter()
                .filter_map(|n| n.dhcp.as_ref())
                .map(|d| d.subnets.len())
                .sum(),
            routers: plan.routers.len(),
            floating_ips: plan.routers.iter().map(|r| r.floating_ips.len()).sum(),
            gateways: plan.routers.iter().filter(|r| r.gateway.is_some()).count(),
        };
        if let Ok(mut g) = self.counts.lock() {
            *g = c;
        }
    }

    /// This host's agents as they describe themselves in their heartbeats.
    fn reports(&self) -> Vec<AgentReport> {
        let c = self.counts.lock().map(|g| *g).unwrap_or_default();
        let seg = &self.svc.cfg.segments;
        let vtep = seg.vtep.as_ref();
        let report = |kind, configurations| AgentReport {
            kind,
            host: self.report_host.clone(),
            configurations,
        };
        let mut out = vec![report(
            AgentKind::LinuxBridge,
            serde_json::json!({
                "tunneling_ip": vtep.map(|(ip, _)| ip.to_string()),
                "tunnel_types": if vtep.is_some() { vec!["vxlan"] } else { vec![] },
                "interface_mappings": seg.physical_interface_mappings,
                "l2_population": true,
                "devices": c.devices,
                "namespace": self.names.host_namespace(),
                "dataplane": format!("{:?}", self.mode).to_lowercase(),
            }),
        )];
        if self.scope.services {
            out.push(report(
                AgentKind::Dhcp,
                serde_json::json!({
                    "dhcp_driver": "dnsmasq",
                    "dhcp_lease_duration": self.svc.cfg.dhcp_lease_duration,
                    "networks": c.dhcp_networks,
                    "ports": c.dhcp_ports,
                    "subnets": c.subnets,
                }),
            ));
            out.push(report(
                AgentKind::L3,
                serde_json::json!({
                    "agent_mode": "legacy",
                    "routers": c.routers,
                    "floating_ips": c.floating_ips,
                    "ex_gw_ports": c.gateways,
                    "interfaces": c.networks,
                }),
            ));
            if self.metadata.is_some() {
                out.push(report(
                    AgentKind::Metadata,
                    serde_json::json!({"metadata_address": hostplan::METADATA_ADDRESS.to_string()}),
                ));
            }
        }
        out
    }

    /// Register this host's agents now (before [`Agent::run`], so that ports bound to this
    /// host are bound with its namespace).
    pub async fn register(&self) {
        self.report(true).await;
        self.registered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Register (`starting`) or heartbeat every agent of this host; failures are logged.
    async fn report(&self, starting: bool) {
        for r in self.reports() {
            if let Err(e) = self.svc.report_agent(&r, starting).await {
                tracing::warn!(error = %e, agent_type = r.kind.agent_type(), "network agent heartbeat failed");
            }
        }
    }

    /// Run until the process ends.
    pub async fn run(self) {
        let mut changes = self.svc.watch_changes();
        let mut failures: u32 = 0;
        let interval = Duration::from_secs(self.svc.cfg.agent_report_interval.max(1));
        let mut next_report = Instant::now();
        let mut next_sync = Instant::now();
        let mut starting = !self.registered.load(std::sync::atomic::Ordering::Relaxed);
        if !starting {
            next_report += interval;
        }
        loop {
            if Instant::now() >= next_report {
                self.report(starting).await;
                starting = false;
                next_report = Instant::now() + interval;
            }
            if Instant::now() >= next_sync {
                match self.sync_once().await {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        tracing::error!(error = %e, failures, "network data plane sync failed; retrying");
                    }
                }
                next_sync = Instant::now()
                    + if failures > 0 {
                        Duration::from_millis(500 * u64::from(failures.min(20)))
                    } else {
                        RESYNC
                    };
            }
            let deadline = tokio::time::Instant::from_std(next_report.min(next_sync));
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                    changes.mark_unchanged();
                    next_sync = Instant::now();
                }
                _ = self.wake.notified() => {
                    tokio::time::sleep(SETTLE).await;
                    next_sync = Instant::now();
                }
                _ = tokio::time::sleep_until(deadline) => {}
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
