//! Starting compute's roles on a bus: conductor, scheduler and the compute agents (one per
//! fake host, or the one of this machine). All-in-one they share the process; scale-out the
//! same roles run on other hosts over RabbitMQ.

use bus::{Bus, Subscription, Target};
use hypervisor::fake::{FakeDriver, FakeHost};
use hypervisor::qemu::{QemuConfig, QemuDriver};
use std::sync::Arc;

use crate::clients::{ServiceClients, ServiceImages};
use crate::core::ComputeService;
use crate::error::{ComputeError, Result};
use crate::manager::{self, ComputeAgent};
use crate::{conductor, rpc, scheduler};

/// The running roles; dropping this stops them.
pub struct Roles {
    pub subscriptions: Vec<Subscription>,
    pub agents: Vec<Arc<ComputeAgent>>,
}

/// The name of this machine, as compute hosts are named.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Which of compute's roles run in this process (`kumo serve ROLE...`); all-in-one runs all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSet {
    pub conductor: bool,
    pub scheduler: bool,
    pub compute: bool,
}

impl RoleSet {
    pub const ALL: RoleSet = RoleSet {
        conductor: true,
        scheduler: true,
        compute: true,
    };

    /// The control-plane services this process records and keeps up.
    fn control_services(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.conductor {
            out.push(("nova-conductor", "conductor"));
        }
        if self.scheduler {
            out.push(("nova-scheduler", "scheduler"));
        }
        out
    }
}

/// Keep the conductor's and scheduler's service records up (every `report_interval`).
fn spawn_heartbeat(
    svc: Arc<ComputeService>,
    host: String,
    services: Vec<(&'static str, &'static str)>,
) {
    if services.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(svc.cfg.report_interval);
        loop {
            beat.tick().await;
            for (binary, topic) in &services {
                if let Ok(txn) = svc.db.write().await
                    && crate::store::heartbeat_service(&*txn, &host, binary, topic)
                        .await
                        .is_ok()
                {
                    let _ = txn.commit().await;
                }
            }
        }
    });
}

/// Start every role of compute in this process (all-in-one).
pub async fn start(
    svc: Arc<ComputeService>,
    bus: Arc<dyn Bus>,
    clients: Arc<ServiceClients>,
) -> Result<Roles> {
    start_roles(svc, bus, clients, RoleSet::ALL).await
}

/// Start the chosen roles of compute in this process. The API (always there: it casts to
/// the conductor) needs only the bus and clients; the others subscribe to their topics.
pub async fn start_roles(
    svc: Arc<ComputeService>,
    bus: Arc<dyn Bus>,
    clients: Arc<ServiceClients>,
    roles: RoleSet,
) -> Result<Roles> {
    svc.attach(bus.clone(), clients.clone());
    let mut subscriptions = Vec::new();
    if roles.conductor {
        subscriptions.push(
            bus.serve(
                Target::topic(rpc::CONDUCTOR_TOPIC),
                Arc::new(conductor::dispatcher(svc.clone())),
            )
            .await?,
        );
    }
    if roles.scheduler {
        subscriptions.push(
            bus.serve(
                Target::topic(rpc::SCHEDULER_TOPIC),
                Arc::new(scheduler::dispatcher(svc.clone())),
            )
            .await?,
        );
    }
    let agents = if roles.compute {
        make_agents(&svc, &clients)?
    } else {
        Vec::new()
    };
    for agent in &agents {
        subscriptions.push(
            bus.serve(
                Target::server(rpc::COMPUTE_TOPIC, &agent.host),
                Arc::new(manager::dispatcher(agent.clone())),
            )
            .await?,
        );
    }
    for agent in &agents {
        agent.start().await?;
        agent.spawn_periodic();
    }
    // The control-plane services, as `compute service list` shows Nova's.
    let here = svc.cfg.host.clone();
    let control = roles.control_services();
    for (binary, topic) in &control {
        let txn = svc.db.write().await?;
        crate::store::heartbeat_service(&*txn, &here, binary, topic).await?;
        txn.commit().await?;
    }
    spawn_heartbeat(svc.clone(), here, control);
    if roles.conductor {
        let mut live: Vec<String> = agents.iter().map(|a| a.host.clone()).collect();
        if !roles.compute {
            // The agents run elsewhere: a build on a host whose agent beats is that agent's
            // to resume.
            live.extend(
                crate::store::list_services(svc.db.conn())
                    .await?
                    .into_iter()
                    .filter(|s| s.binary == "nova-compute" && svc.is_up(s))
                    .map(|s| s.host),
            );
        }
        svc.recover_unscheduled(&live).await?;
    }
    tracing::info!(?roles, hosts = agents.len(), driver = %svc.cfg.compute_driver, "compute roles started");
    Ok(Roles {
        subscriptions,
        agents,
    })
}

/// The compute agents of this process: one per fake host (`[fake] hosts`; a single one is
/// `[DEFAULT] host`), or the one of this machine with the qemu driver.
fn make_agents(
    svc: &Arc<ComputeService>,
    clients: &Arc<ServiceClients>,
) -> Result<Vec<Arc<ComputeAgent>>> {
    let mut agents = Vec::new();
    match svc.cfg.compute_driver.as_str() {
        "fake" | "fake.FakeDriver" => {
            let n = svc.cfg.fake_hosts;
            let base = svc.cfg.host.clone();
            for k in 1..=n {
                let host = if n == 1 {
                    base.clone()
                } else {
                    format!("fake-{k}")
                };
                let driver = FakeDriver::new(FakeHost {
                    hostname: host.clone(),
                    vcpus: svc.cfg.fake_vcpus,
                    memory_mb: svc.cfg.fake_memory_mb,
                    local_gb: svc.cfg.fake_local_gb,
                    spawn_delay: svc.cfg.fake_spawn_delay,
                    fail_spawn: svc.cfg.fake_fail_spawn_hosts.contains(&host),
                    state_file: Some(
                        svc.cfg
                            .state_dir
                            .join("instances")
                            .join("fake")
                            .join(format!("{host}.json")),
                    ),
                });
                agents.push(Arc::new(ComputeAgent {
                    svc: svc.clone(),
                    host,
                    driver: Arc::new(driver),
                }));
            }
        }
        "qemu" | "libvirt.LibvirtDriver" => {
            let cfg = &svc.cfg;
            let accel = cfg
                .qemu_accel
                .parse()
                .map_err(|e: String| ComputeError::Internal(format!("[qemu] {e}")))?;
            let instances_dir = std::path::absolute(cfg.state_dir.join("instances"))
                .map_err(|e| ComputeError::Internal(format!("instances directory: {e}")))?;
            let driver = Arc::new(QemuDriver::new(
                QemuConfig {
                    hostname: cfg.host.clone(),
                    host_ip: cfg.my_ip.clone(),
                    instances_dir,
                    qemu_binary: cfg.qemu_binary.clone(),
                    qemu_img: cfg.qemu_img.clone(),
                    accel,
                    shutdown_timeout: cfg.shutdown_timeout,
                    console_log_max_bytes: cfg.qemu_console_log_max_bytes,
                    root_ports: cfg.qemu_pcie_root_ports,
                    volume_detach_timeout: cfg.volume_detach_timeout,
                    unused_base_min_age: cfg.unused_base_min_age,
                    cache_interval: cfg.image_cache_interval,
                    kumo_version: env!("CARGO_PKG_VERSION").to_string(),
                    migration_ports: cfg.qemu_migration_ports.clone(),
                },
                Arc::new(ServiceImages(clients.clone())),
            ));
            driver.spawn_housekeeping();
            agents.push(Arc::new(ComputeAgent {
                svc: svc.clone(),
                host: cfg.host.clone(),
                driver,
            }));
        }
        other => {
            return Err(ComputeError::Internal(format!(
                "[DEFAULT] compute_driver = {other} is not available: use qemu (real guests) or fake (guests are records)"
            )));
        }
    }
    Ok(agents)
}
