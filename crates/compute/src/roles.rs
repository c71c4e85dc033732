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

/// Keep the conductor's and scheduler's service records up (every 10 s, Nova's report_interval).
fn spawn_heartbeat(svc: Arc<ComputeService>, host: String) {
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            beat.tick().await;
            for (binary, topic) in [
                ("nova-conductor", "conductor"),
                ("nova-scheduler", "scheduler"),
            ] {
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

/// Start every role of compute in this process.
pub async fn start(
    svc: Arc<ComputeService>,
    bus: Arc<dyn Bus>,
    clients: Arc<ServiceClients>,
) -> Result<Roles> {
    svc.attach(bus.clone(), clients.clone());
    let mut subscriptions = Vec::new();
    subscriptions.push(
        bus.serve(
            Target::topic(rpc::CONDUCTOR_TOPIC),
            Arc::new(conductor::dispatcher(svc.clone())),
        )
        .await?,
    );
    subscriptions.push(
        bus.serve(
            Target::topic(rpc::SCHEDULER_TOPIC),
            Arc::new(scheduler::dispatcher(svc.clone())),
        )
        .await?,
    );
    let mut agents = Vec::new();
    match svc.cfg.compute_driver.as_str() {
        "fake" | "fake.FakeDriver" => {
            let n = svc.cfg.fake_hosts;
            let base = this_host();
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
                    hostname: this_host(),
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
                },
                Arc::new(ServiceImages(clients.clone())),
            ));
            driver.spawn_housekeeping();
            agents.push(Arc::new(ComputeAgent {
                svc: svc.clone(),
                host: this_host(),
                driver,
            }));
        }
        other => {
            return Err(ComputeError::Internal(format!(
                "[DEFAULT] compute_driver = {other} is not available: use qemu (real guests) or fake (guests are records)"
            )));
        }
    }
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
    let here = this_host();
    for (binary, topic) in [
        ("nova-conductor", "conductor"),
        ("nova-scheduler", "scheduler"),
    ] {
        let txn = svc.db.write().await?;
        crate::store::heartbeat_service(&*txn, &here, binary, topic).await?;
        txn.commit().await?;
    }
    spawn_heartbeat(svc.clone(), here);
    let live: Vec<String> = agents.iter().map(|a| a.host.clone()).collect();
    svc.recover_unscheduled(&live).await?;
    tracing::info!(hosts = agents.len(), driver = %svc.cfg.compute_driver, "compute roles started");
    Ok(Roles {
        subscriptions,
        agents,
    })
}
