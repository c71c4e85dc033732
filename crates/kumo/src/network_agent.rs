//! Wiring of the network agent (crates/network's `agent`) into a kumo process: which host and
//! which agents' work it does, how it tells compute a port is up, where metadata is served,
//! and, when the cloud spans processes, how changes reach it over the bus.
//!
//! Across processes Neutron's server notifies its agents over RPC; here every process that
//! changes the network database fans a `network_changed` out on the `neutron` exchange
//! (topic `q-agent-notifier`) and every process with an agent wakes it on one. The payload
//! names the sender so that a process ignores its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bus::{Bus, Envelope, Target, Version, handler_fn};
use network::hostplan::Scope;
use serde_json::json;

/// The fanout topic of the network agents, as Neutron's agent notifier.
const AGENT_NOTIFIER_TOPIC: &str = "q-agent-notifier";
const NETWORK_CHANGED: &str = "network_changed";
const VERSION: Version = Version::new(1, 0);

/// Neutron's notifications to Nova: a port is up → `network-vif-plugged`, delivered by this
/// process's compute service (which casts it to the server's host over the bus).
pub struct ComputeEvents(pub Arc<compute::ComputeService>);

#[async_trait::async_trait]
impl network::agent::PortEvents for ComputeEvents {
    async fn vif_plugged(&self, server: &str, port: &str) {
        let r = self
            .0
            .deliver_event(
                server,
                "network-vif-plugged",
                Some(port),
                "completed",
                "req-network-agent",
                None,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(%server, %port, error = %e, "could not deliver network-vif-plugged");
        }
    }
}

/// Where this process's agent sits in the cloud.
pub enum Placement {
    /// Every role in one process: every bound port is this host's; the agents register under
    /// `report_host`.
    AllInOne { report_host: String },
    /// One host of several.
    Host { host: String, scope: Scope },
}

/// How the namespace listeners of this process's agent serve the guests' metadata requests.
pub enum GuestMetadata {
    /// Answered here: the metadata role runs in this process (or every role does).
    Answer(metadata::tree::Settings),
    /// Forwarded, signed, to the metadata role of another process (Neutron's metadata proxy).
    Proxy(Arc<metadata::proxy::Upstream>),
}

impl GuestMetadata {
    /// Answer when `answers_here` (the process runs the metadata role, or its agent has no
    /// listeners to serve), else proxy to `[metadata] nova_metadata_host` (required then, with
    /// the shared secret).
    pub fn for_roles(cfg: &common::config::Config, answers_here: bool) -> Result<Self> {
        if answers_here {
            return Ok(GuestMetadata::Answer(
                metadata::config::settings(cfg).map_err(anyhow::Error::msg)?,
            ));
        }
        let (host, port) = metadata::config::upstream(cfg).map_err(anyhow::Error::msg)?;
        let secret =
            metadata::config::shared_secret(cfg, "a network agent that proxies metadata requests")
                .map_err(anyhow::Error::msg)?;
        let upstream = metadata::proxy::Upstream::new(&host, port, &secret);
        tracing::info!(upstream = %upstream.base(), "the metadata listeners proxy to the metadata role of another process");
        Ok(GuestMetadata::Proxy(Arc::new(upstream)))
    }
}

/// Start the network agent of this process (data plane, port status, vif-plugged events,
/// metadata in the DHCP namespaces when it serves them). Returns what wakes it and the data
/// plane it runs.
pub async fn start(
    network: Arc<network::NetworkService>,
    compute: Arc<compute::ComputeService>,
    guest_metadata: GuestMetadata,
    placement: Placement,
) -> Result<(Arc<tokio::sync::Notify>, network::agent::Mode)> {
    let mode = network::agent::resolve_mode(&network.cfg.dataplane).map_err(anyhow::Error::msg)?;
    let mut agent = network::agent::Agent::new(
        network.clone(),
        mode,
        Arc::new(ComputeEvents(compute.clone())),
    );
    let services = match &placement {
        Placement::AllInOne { .. } => true,
        Placement::Host { scope, .. } => scope.services,
    };
    if network.cfg.isolated_metadata && services {
        let listeners = match guest_metadata {
            GuestMetadata::Answer(settings) => {
                let directory = Arc::new(crate::guest_metadata::CloudDirectory {
                    compute,
                    network: network.clone(),
                });
                metadata::listeners::ListenerSet::new(directory, settings, 80)
            }
            GuestMetadata::Proxy(upstream) => metadata::listeners::ListenerSet::proxying(
                Arc::new(crate::guest_metadata::NetworkPorts(network.clone())),
                upstream,
                80,
            ),
        };
        agent = agent.with_metadata(Arc::new(crate::guest_metadata::NamespaceListeners(
            listeners,
        )));
    }
    agent = match placement {
        Placement::AllInOne { report_host } => agent.reporting_as(report_host),
        Placement::Host { host, scope } => {
            tracing::info!(%host, guests = scope.guests, services = scope.services, "network agent of one host of several");
            agent.on_host(host, scope)
        }
    };
    // Registered before the process serves anything: a port bound to this host must find
    // this host's namespace in its agent's report.
    agent.register().await;
    let waker = agent.waker();
    tracing::info!(mode = ?mode, prefix = %network.cfg.namespace_prefix, "network agent started");
    tokio::spawn(agent.run());
    Ok((waker, mode))
}

/// The bus between the network API and the agents of other processes: RabbitMQ's `neutron`
/// exchange at `transport_url`.
pub async fn open_bus(cfg: &common::config::Config) -> Result<Arc<dyn Bus>> {
    crate::server::open_rabbit(cfg, "neutron").await
}

/// A name for this process on the bus, unique across hosts.
pub fn origin(host: &str) -> String {
    format!("{host}-{}", std::process::id())
}

/// Fan this process's network changes out to the other processes' agents (coalesced like
/// the agent's own passes).
pub fn forward_changes(network: Arc<network::NetworkService>, bus: Arc<dyn Bus>, origin: String) {
    let mut changes = network.watch_changes();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(15)).await;
            changes.mark_unchanged();
            let scope = network.take_change_scope();
            let env = Envelope::new(
                NETWORK_CHANGED,
                VERSION,
                json!({"origin": origin, "scope": scope}),
            );
            if let Err(e) = bus.fanout(AGENT_NOTIFIER_TOPIC, env).await {
                tracing::warn!(error = %e, "could not tell the other hosts' network agents of a change; their periodic pass will see it");
            }
        }
    });
}

/// Who listens for changes: this process's agent of `host`, whether it serves the networks
/// and whether it filters packets.
pub struct Listener {
    pub host: String,
    pub serves: bool,
    pub filters: bool,
    pub agent: Arc<tokio::sync::Notify>,
}

/// Wake the agent when another process fans out a network change that concerns it (a change
/// without a scope, from an older kumo, concerns everyone). Keep the subscription for as
/// long as the process runs.
pub async fn listen_for_changes(
    bus: &Arc<dyn Bus>,
    origin: String,
    listener: Listener,
) -> Result<bus::Subscription> {
    let me = origin.clone();
    let listener = Arc::new(listener);
    let handler = handler_fn(move |env: Envelope| {
        let l = listener.clone();
        let me = me.clone();
        async move {
            if env.method != NETWORK_CHANGED || env.payload["origin"].as_str() == Some(&me) {
                return Ok(json!(null));
            }
            let concerned =
                serde_json::from_value::<network::core::ChangeScope>(env.payload["scope"].clone())
                    .map_or(true, |s| s.concerns(&l.host, l.serves, l.filters));
            if concerned {
                l.agent.notify_one();
            }
            Ok(json!(null))
        }
    });
    bus.serve(
        Target::server(AGENT_NOTIFIER_TOPIC, origin),
        Arc::new(handler),
    )
    .await
    .context("subscribing to the network agents' notifications")
}
