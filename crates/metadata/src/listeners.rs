//! One metadata listener per network namespace: a TCP socket created inside the namespace
//! (bound to 169.254.169.254:80, which the data plane puts on the DHCP port's interface) and
//! served by kumo's own runtime. The socket's namespace says which network a request came
//! from, its peer address which port. It answers itself when the metadata service runs in
//! this process ([`ListenerSet::new`]: no proxy process, no headers to trust), or forwards
//! to the metadata API of another process, signed ([`ListenerSet::proxying`], Neutron's
//! metadata proxy).
//!
//! [`ListenerSet::sync`] is called after every data plane pass with the namespaces that should
//! serve; a namespace that was deleted and made again (its inode changed) gets a new socket.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use tokio::task::JoinHandle;

use axum::Router;

use crate::proxy::{PortLocator, Upstream};
use crate::service::{Directory, Served, router};
use crate::tree::Settings;

/// The router of one network's listener, by network id.
type NetworkRouter = dyn Fn(&str) -> Router + Send + Sync;

/// A network whose namespace should answer metadata requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub network_id: String,
    pub namespace: String,
}

struct Running {
    namespace: String,
    identity: (u64, u64),
    task: JoinHandle<()>,
}

pub struct ListenerSet {
    network_router: Arc<NetworkRouter>,
    address: SocketAddr,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

fn namespace_identity(name: &str) -> Option<(u64, u64)> {
    let path = dataplane::netns::namespace_path(name).ok()?;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

impl ListenerSet {
    /// Listeners that answer themselves from `directory`.
    pub fn new(directory: Arc<dyn Directory>, settings: Settings, port: u16) -> Self {
        let settings = Arc::new(settings);
        Self::with_router(
            Arc::new(move |network_id: &str| {
                router(Served {
                    network_id: network_id.to_string(),
                    directory: directory.clone(),
                    settings: settings.clone(),
                })
            }),
            port,
        )
    }

    /// Listeners that forward to the metadata API at `upstream`, signed.
    pub fn proxying(locator: Arc<dyn PortLocator>, upstream: Arc<Upstream>, port: u16) -> Self {
        Self::with_router(
            Arc::new(move |network_id: &str| {
                crate::proxy::router(network_id, locator.clone(), upstream.clone())
            }),
            port,
        )
    }

    fn with_router(network_router: Arc<NetworkRouter>, port: u16) -> Self {
        ListenerSet {
            network_router,
            address: SocketAddr::new(crate::METADATA_ADDRESS.into(), port),
            running: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Serve exactly `wanted`; returns how many listeners were started.
    pub async fn sync(&self, wanted: &[Wanted]) -> usize {
        let mut running = self.running.lock().await;
        let keep: std::collections::HashSet<&str> =
            wanted.iter().map(|w| w.network_id.as_str()).collect();
        running.retain(|net, r| {
            let stay = keep.contains(net.as_str());
            if !stay {
                tracing::info!(network = %net, namespace = %r.namespace, "metadata listener stopped");
                r.task.abort();
            }
            stay
        });
        let mut started = 0;
        for w in wanted {
            let Some(identity) = namespace_identity(&w.namespace) else {
                continue;
            };
            if let Some(r) = running.get(&w.network_id)
                && r.namespace == w.namespace
                && r.identity == identity
                && !r.task.is_finished()
            {
                continue;
            }
            if let Some(old) = running.remove(&w.network_id) {
                old.task.abort();
            }
            match self.start(w).await {
                Ok(task) => {
                    tracing::info!(network = %w.network_id, namespace = %w.namespace, address = %self.address, "metadata listener started");
                    running.insert(
                        w.network_id.clone(),
                        Running {
                            namespace: w.namespace.clone(),
                            identity,
                            task,
                        },
                    );
                    started += 1;
                }
                Err(e) => tracing::warn!(
                    network = %w.network_id,
                    namespace = %w.namespace,
                    error = %e,
                    "metadata listener not started yet; retried at the next data plane pass"
                ),
            }
        }
        started
    }

    async fn start(&self, w: &Wanted) -> Result<JoinHandle<()>, String> {
        let address = self.address;
        let std_listener: StdListener =
            dataplane::netns::run_in_namespace(&w.namespace, move || async move {
                StdListener::bind(address)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("binding {address} in the namespace: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
        let app = (self.network_router)(&w.network_id);
        let network = w.network_id.clone();
        Ok(tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(%network, error = %e, "metadata listener ended");
            }
        }))
    }

    /// Networks served now (for status and tests).
    pub async fn serving(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.lock().await.keys().cloned().collect();
        v.sort();
        v
    }
}

impl Drop for ListenerSet {
    fn drop(&mut self) {
        if let Ok(r) = self.running.try_lock() {
            for run in r.values() {
                run.task.abort();
            }
        }
    }
}
