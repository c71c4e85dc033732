//! Running kumo in the foreground: open every service, bootstrap, serve one listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use axum::Router;
use common::config::Config;
use identity::Identity;
use identity::bootstrap::{BootstrapSpec, CatalogService};
use identity::config::IdentityConfig;
use tokio::net::TcpListener;

use crate::credentials;
use crate::state::{StateDir, write_file};

/// Bind the listener: the requested address, else the last one used, else 5000, else any.
pub async fn bind(state: &StateDir, requested: Option<&str>) -> Result<TcpListener> {
    if let Some(addr) = requested {
        return TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr}: is another kumo or service using it? Choose another with --listen")
        });
    }
    let last = state.read_endpoint().and_then(|u| {
        u.strip_prefix("http://")
            .map(|h| h.trim_end_matches('/').to_string())
    });
    for candidate in last.iter().map(String::as_str).chain(["127.0.0.1:5000"]) {
        if let Ok(l) = TcpListener::bind(candidate).await {
            return Ok(l);
        }
        tracing::info!(address = candidate, "address busy, trying another");
    }
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

/// The admin password: `ADMIN_PASSWORD`, else the one kept in the state dir, else a new one.
pub fn admin_password(state: &StateDir) -> Result<String> {
    let file = state.admin_password_file();
    let kept = std::fs::read_to_string(&file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let pw = match (
        std::env::var("ADMIN_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty()),
        kept,
    ) {
        (Some(env), _) => env,
        (None, Some(k)) => return Ok(k),
        (None, None) => {
            use rand::Rng;
            const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
            let mut rng = rand::thread_rng();
            (0..20)
                .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
                .collect()
        }
    };
    write_file(&file, &format!("{pw}\n"), 0o600)?;
    Ok(pw)
}

/// The user the volume service reads the catalog with (devstack's name for it).
pub const VOLUME_SERVICE_USER: &str = "cinder";

/// The password of the services' own users: `[service_user] password`, else the one kept in
/// the state dir (only processes sharing the state dir know that one).
pub fn service_password(state: &StateDir, cfg: &Config) -> Result<String> {
    if let Some(pw) = cfg
        .get::<Option<String>>("service_user", "password")?
        .filter(|p| !p.trim().is_empty())
    {
        return Ok(pw.trim().to_string());
    }
    let file = state.root.join("service-password");
    if let Some(pw) = std::fs::read_to_string(&file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        return Ok(pw);
    }
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let pw: String = (0..32)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    write_file(&file, &format!("{pw}\n"), 0o600)?;
    Ok(pw)
}

pub struct Cloud {
    /// The identity service, when it runs in this process; `None` on an API host that
    /// validates tokens at another one (`[keystone_authtoken] auth_url`).
    pub identity: Option<Arc<Identity>>,
    /// How every service here validates `X-Auth-Token`.
    validator: Arc<dyn common::auth::TokenValidator>,
    pub placement: Arc<placement::Placement>,
    pub image: Arc<image::ImageService>,
    pub compute: Arc<compute::ComputeService>,
    pub network: Arc<network::NetworkService>,
    /// The volume service, when this process runs the volume role.
    pub volume: Option<Arc<volume::VolumeService>>,
}

/// Open every service (databases migrated, keys created), identity included.
pub async fn open(cfg: &Config) -> Result<Cloud> {
    open_with(cfg, true).await
}

/// Open identity and the api role's services, and volume when `with_volume`.
async fn open_with(cfg: &Config, with_volume: bool) -> Result<Cloud> {
    let db_template = cfg.get_str("database", "connection")?;
    let icfg = IdentityConfig::from_config(cfg, &db_template)?;
    let identity = Identity::open(icfg)
        .await
        .context("opening the identity service")?;
    let validator = Arc::new(identity::core::LocalValidator(identity.clone()));
    open_services(cfg, Some(identity), validator, with_volume).await
}

/// Open every service but identity, which `validator` asks.
async fn open_services(
    cfg: &Config,
    identity: Option<Arc<Identity>>,
    validator: Arc<dyn common::auth::TokenValidator>,
    with_volume: bool,
) -> Result<Cloud> {
    let db_template = cfg.get_str("database", "connection")?;
    let pcfg = placement::config::PlacementConfig::from_config(cfg, &db_template)?;
    let placement = placement::Placement::open(pcfg)
        .await
        .context("opening the placement service")?;
    let image =
        image::ImageService::open(image::config::ImageConfig::from_config(cfg, &db_template)?)
            .await
            .context("opening the image service")?;
    let compute = compute::ComputeService::open(compute::config::ComputeConfig::from_config(
        cfg,
        &db_template,
    )?)
    .await
    .context("opening the compute service")?;
    let network = network::NetworkService::open(network::config::NetworkConfig::from_config(
        cfg,
        &db_template,
    )?)
    .await
    .context("opening the network service")?;
    let volume = match with_volume {
        true => Some(open_volume(cfg).await?),
        false => None,
    };
    Ok(Cloud {
        identity,
        validator,
        placement,
        image,
        compute,
        network,
        volume,
    })
}

/// The volume service (its database migrated, its backends ready).
async fn open_volume(cfg: &Config) -> Result<Arc<volume::VolumeService>> {
    volume::VolumeService::open(volume::config::VolumeConfig::from_config(
        cfg,
        &cfg.get_str("database", "connection")?,
    )?)
    .await
    .context("opening the volume service")
}

/// Cinder's catalog entries (its v3 endpoint `url` under both types).
fn volume_catalog(url: &str) -> Vec<CatalogService> {
    let url = url.to_string();
    vec![
        // Cinder registers its v3 endpoint under both types; clients look up either.
        CatalogService {
            service_type: "block-storage".into(),
            name: "cinder".into(),
            description: "Block Storage (Cinder v3)".into(),
            url: url.clone(),
        },
        CatalogService {
            service_type: "volumev3".into(),
            name: "cinderv3".into(),
            description: "Block Storage (Cinder v3)".into(),
            url,
        },
    ]
}

/// The catalog entries of every service at `base`.
pub fn catalog(base: &str) -> Vec<CatalogService> {
    let mut c = api_catalog(base);
    c.extend(volume_catalog(&format!("{base}/volume/v3")));
    c
}

/// The catalog entries of the services of the api role at `base` (all but volume).
fn api_catalog(base: &str) -> Vec<CatalogService> {
    vec![
        CatalogService {
            service_type: "identity".into(),
            name: "keystone".into(),
            description: "Identity (Keystone v3)".into(),
            url: format!("{base}/identity"),
        },
        CatalogService {
            service_type: "placement".into(),
            name: "placement".into(),
            description: "Placement".into(),
            url: format!("{base}/placement"),
        },
        CatalogService {
            service_type: "image".into(),
            name: "glance".into(),
            description: "Image (Glance v2)".into(),
            url: format!("{base}/image"),
        },
        CatalogService {
            service_type: "compute".into(),
            name: "nova".into(),
            description: "Compute (Nova v2.1)".into(),
            url: format!("{base}/compute/v2.1"),
        },
        CatalogService {
            service_type: "network".into(),
            name: "neutron".into(),
            description: "Network (Neutron v2.0)".into(),
            // Neutron's endpoint has no version: clients append /v2.0.
            url: format!("{base}/network"),
        },
    ]
}

impl Cloud {
    /// How every other service validates `X-Auth-Token`: in-process through identity, or at
    /// the remote identity with a cache.
    pub fn token_validator(&self) -> Arc<dyn common::auth::TokenValidator> {
        self.validator.clone()
    }

    /// The identity service of this process (`kumo up`, bootstrap, the demo data need it).
    pub fn identity(&self) -> Result<&Arc<Identity>> {
        self.identity
            .as_ref()
            .context("identity does not run in this process ([keystone_authtoken] auth_url is set)")
    }
}

/// One router for every service of this process, each under its catalog path (identity also
/// at the root, where Keystone's clients expect `/v3`, when it runs here; volume when the
/// process runs that role), and the dashboard when it runs that role.
pub fn app(cloud: &Cloud, identity_url: &str, dashboard: bool) -> Router {
    let placement = placement::api::router(cloud.placement.clone(), cloud.token_validator());
    let image = image::api::router(cloud.image.clone(), cloud.token_validator());
    let compute = compute::api::router(cloud.compute.clone(), cloud.token_validator());
    let network = network::api::router(cloud.network.clone(), cloud.token_validator());
    let mut router = Router::new()
        .nest("/compute", compute)
        .nest("/placement", placement)
        .nest("/image", image)
        .nest("/network", network)
        // The console proxy: noVNC's page and its websocket, authenticated by console tokens.
        .nest("/novnc", compute::api::novnc::router(cloud.compute.clone()));
    if let Some(v) = &cloud.volume {
        router = router.nest(
            "/volume",
            volume::api::router(v.clone(), cloud.token_validator()),
        );
    }
    if dashboard {
        router = router.merge(dashboard_router(identity_url));
    }
    let router = match &cloud.identity {
        Some(id) => {
            let identity = identity::api::router(id.clone());
            router.nest("/identity", identity.clone()).merge(identity)
        }
        None => router,
    };
    with_common_layers(router)
}

/// The web UI: pages over the public APIs with the user's token, no database access, logging
/// in at `identity_url` (`.../identity`).
fn dashboard_router(identity_url: &str) -> Router {
    Router::new().nest(
        "/dashboard",
        dashboard::router(&format!("{identity_url}/v3")),
    )
}

/// What every listener of kumo does around its routes: request ids, and a 500 instead of a
/// dropped connection when a handler panics.
fn with_common_layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(common::request_id::middleware))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(common::Fault::internal(
                "An unexpected error prevented the server from fulfilling your request.",
            ))
        }))
}

/// The roles of `kumo serve ROLE...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Every public API but volume (identity, compute, image, network, placement, the
    /// console proxy).
    pub api: bool,
    pub compute: compute::roles::RoleSet,
    /// DHCP, routers and metadata listeners for every host's guests (Neutron's network node).
    /// Every process with the `compute` role also wires its own guests' ports.
    pub network_agent: bool,
    /// Cinder's API and its backend (cinder-api + cinder-volume).
    pub volume: bool,
    /// Nova's metadata API (nova-api-metadata): answers the network agents' metadata proxies.
    pub metadata: bool,
    /// The web UI (horizon).
    pub dashboard: bool,
}

/// The names `kumo serve` takes, in the order the messages list them.
pub const ROLE_NAMES: &str =
    "api, conductor, scheduler, compute, network-agent, volume, metadata, dashboard (or all)";

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        compute: compute::roles::RoleSet::ALL,
        network_agent: true,
        volume: true,
        metadata: true,
        dashboard: true,
    };

    pub const NONE: Roles = Roles {
        api: false,
        compute: compute::roles::RoleSet {
            conductor: false,
            scheduler: false,
            compute: false,
        },
        network_agent: false,
        volume: false,
        metadata: false,
        dashboard: false,
    };

    /// `all`, or any of [`ROLE_NAMES`].
    pub fn parse(names: &[String]) -> Result<Roles> {
        let mut r = Roles::NONE;
        for n in names {
            match n.as_str() {
                "all" => return Ok(Roles::ALL),
                "api" => r.api = true,
                "conductor" => r.compute.conductor = true,
                "scheduler" => r.compute.scheduler = true,
                "compute" => r.compute.compute = true,
                "network-agent" => r.network_agent = true,
                "volume" => r.volume = true,
                "metadata" => r.metadata = true,
                "dashboard" => r.dashboard = true,
                other => bail!("role {other:?} is not available: choose among {ROLE_NAMES}"),
            }
        }
        if r == Roles::NONE {
            bail!("name at least one role: {ROLE_NAMES}");
        }
        Ok(r)
    }

    /// Whether other roles of the cloud run in other processes.
    pub fn split(&self) -> bool {
        *self != Roles::ALL
    }

    fn any_compute(&self) -> bool {
        let c = self.compute;
        c.conductor || c.scheduler || c.compute
    }
}

/// The role names, as `kumo serve` takes them (for the logs).
impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Roles::ALL {
            return f.write_str("all");
        }
        let c = self.compute;
        let names = [
            (self.api, "api"),
            (c.conductor, "conductor"),
            (c.scheduler, "scheduler"),
            (c.compute, "compute"),
            (self.network_agent, "network-agent"),
            (self.volume, "volume"),
            (self.metadata, "metadata"),
            (self.dashboard, "dashboard"),
        ];
        let on: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&on.join(" "))
    }
}

/// What a process running only some roles needs: the bus (compute's roles, the network's
/// changes and identity's, which a volume process hears too) and the databases shared with
/// the other processes (compute's, where the roles meet and where the metadata role reads
/// instances; the network's, for the agents and the metadata role). A dashboard alone needs
/// neither: it only calls the public APIs.
fn check_split(cfg: &Config, roles: &Roles) -> Result<()> {
    if !roles.split() {
        return Ok(());
    }
    let needs_bus = roles.api || roles.any_compute() || roles.network_agent || roles.volume;
    if needs_bus && cfg.get_str("DEFAULT", "transport_url")?.trim().is_empty() {
        bail!(
            "the roles of this process ({roles}) need the others, which run in other processes: the in-process bus cannot reach them. Set [DEFAULT] transport_url = rabbit://USER:PASS@HOST:5672/ (the same RabbitMQ in every process's config), or run every role in one process with `kumo serve all` / `kumo up`"
        );
    }
    let needs_compute_db =
        roles.api || roles.any_compute() || roles.network_agent || roles.metadata;
    let db =
        compute::config::ComputeConfig::from_config(cfg, &cfg.get_str("database", "connection")?)?
            .database_url;
    if needs_compute_db && db.starts_with("sqlite:") {
        bail!(
            "the compute database is SQLite ({db}): processes on other hosts cannot see it. Set [database] connection = postgresql://USER:PASS@HOST/kumo_$service (or mysql://...), the same in every process's config, or run every role in one process with `kumo serve all` / `kumo up`"
        );
    }
    if roles.network_agent || roles.compute.compute || roles.metadata {
        let net = network_config(cfg)?.database_url;
        if net.starts_with("sqlite:") {
            bail!(
                "the network database is SQLite ({net}): the network agents and the metadata service of other processes cannot see it. Set [database] connection = postgresql://USER:PASS@HOST/kumo_$service (or [network] connection), the same in every process's config"
            );
        }
    }
    Ok(())
}

/// The options the roles of a split process need beyond the shared bus and databases, each
/// refusal saying what to set.
fn check_role_options(cfg: &Config, roles: &Roles) -> Result<()> {
    if !roles.split() {
        return Ok(());
    }
    if roles.metadata {
        metadata::config::shared_secret(cfg, "the metadata role").map_err(anyhow::Error::msg)?;
    }
    if roles.network_agent && !roles.metadata && network_config(cfg)?.isolated_metadata {
        crate::network_agent::GuestMetadata::for_roles(cfg, false)?;
    }
    if !roles.api {
        if roles.volume {
            let auth = keystone_authtoken_url(cfg)?;
            if auth.is_none() {
                bail!(
                    "the volume role without the api role validates tokens at the identity service of another process: set [keystone_authtoken] auth_url to its endpoint, e.g. http://CONTROLLER:5000/identity"
                );
            }
            require_service_password(cfg, "the volume role without the api role")?;
        }
        if roles.dashboard && identity_url_of(cfg)?.is_none() {
            bail!(
                "the dashboard role without the api role logs its users in at the identity service of another process: set [keystone_authtoken] auth_url (or [service_user] auth_url) to its endpoint, e.g. http://CONTROLLER:5000/identity"
            );
        }
    }
    Ok(())
}

/// `[keystone_authtoken] auth_url`, without trailing slash; `None` when unset.
fn keystone_authtoken_url(cfg: &Config) -> Result<Option<String>> {
    Ok(cfg
        .get::<Option<String>>("keystone_authtoken", "auth_url")?
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty()))
}

/// `[service_user] auth_url`, without trailing slash; `None` when unset.
fn service_user_url(cfg: &Config) -> Result<Option<String>> {
    Ok(cfg
        .get::<Option<String>>("service_user", "auth_url")?
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty()))
}

/// The identity endpoint of another process: `[keystone_authtoken] auth_url`, else
/// `[service_user] auth_url`.
fn identity_url_of(cfg: &Config) -> Result<Option<String>> {
    Ok(keystone_authtoken_url(cfg)?.or(service_user_url(cfg)?))
}

fn require_service_password(cfg: &Config, who: &str) -> Result<()> {
    if cfg
        .get::<Option<String>>("service_user", "password")?
        .is_none_or(|p| p.trim().is_empty())
    {
        bail!(
            "[service_user] password is needed by {who}: the one set in the config of the process that runs identity (its bootstrap gives it to the service users)"
        );
    }
    Ok(())
}

fn network_config(cfg: &Config) -> Result<network::config::NetworkConfig> {
    Ok(network::config::NetworkConfig::from_config(
        cfg,
        &cfg.get_str("database", "connection")?,
    )?)
}

/// `kumo serve ROLE...`: the api role (with whichever others are chosen) in [`run_roles`],
/// else the other roles in [`run_agents`].
pub async fn serve(
    state: &StateDir,
    cfg: &Config,
    listen: Option<&str>,
    roles: Roles,
) -> Result<()> {
    check_split(cfg, &roles)?;
    check_role_options(cfg, &roles)?;
    if roles.api {
        run_roles(state, cfg, listen, false, roles).await
    } else {
        run_agents(state, cfg, listen, roles).await
    }
}

/// Make the state dir and refuse it when another live kumo runs from it (`what_to_do` ends
/// the message).
fn claim_state_dir(state: &StateDir, what_to_do: &str) -> Result<()> {
    state.ensure()?;
    if let Some(pid) = state.read_pid()
        && pid != std::process::id() as i32
        && crate::state::alive(pid)
    {
        bail!(
            "kumo is already running from {} (pid {pid}); {what_to_do}",
            state.root.display()
        );
    }
    Ok(())
}

/// The roles of a process without the api role: the compute roles and the network agent
/// (the compute database, the bus, and the other services through their public APIs as
/// `[service_user]`), the metadata API on `[metadata] listen`, and volume and the dashboard on
/// one listener (`--listen`), each talking to identity at another process.
async fn run_agents(
    state: &StateDir,
    cfg: &Config,
    listen: Option<&str>,
    all_roles: Roles,
) -> Result<()> {
    let roles = all_roles.compute;
    let started = Instant::now();
    claim_state_dir(state, "give each process its own --state-dir")?;
    let agents = all_roles.any_compute() || all_roles.network_agent;
    let svc = if agents || all_roles.metadata {
        Some(
            compute::ComputeService::open(compute::config::ComputeConfig::from_config(
                cfg,
                &cfg.get_str("database", "connection")?,
            )?)
            .await
            .context("opening the compute database")?,
        )
    } else {
        None
    };
    let network = if roles.compute || all_roles.network_agent || all_roles.metadata {
        Some(
            network::NetworkService::open(network_config(cfg)?)
                .await
                .context("opening the network database")?,
        )
    } else {
        None
    };
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    let mut _network_wiring = None;
    let mut _compute_roles = None;
    if let Some(svc) = svc.as_ref().filter(|_| agents) {
        let auth_url = service_user_url(cfg)?.ok_or_else(|| {
            anyhow::anyhow!(
                "[service_user] auth_url is needed without the api role: the identity endpoint of the api process, e.g. http://CONTROLLER:5000/identity"
            )
        })?;
        require_service_password(cfg, "a process without the api role")?;
        let password = service_password(state, cfg)?;
        let bus = open_bus(cfg).await?;
        let clients = Arc::new(compute::clients::ServiceClients::new(
            compute::clients::ServiceCredentials {
                auth_url,
                username: cfg.get_str("service_user", "username")?,
                password,
                project_name: cfg.get_str("service_user", "project_name")?,
                region: cfg.get_str("DEFAULT", "region_name")?,
            },
        ));
        // The network agent registers before the compute agent reports its host: ports bound
        // here are bound with this host's namespace.
        if let Some(network) = network
            .as_ref()
            .filter(|_| roles.compute || all_roles.network_agent)
        {
            _network_wiring =
                Some(start_split_network_agent(cfg, network, svc, &svc.cfg.host, all_roles).await?);
        }
        _compute_roles = Some(
            compute::roles::start_roles(svc.clone(), bus, clients, roles)
                .await
                .context(
                    "starting the compute roles (is the api process up at [service_user] auth_url?)",
                )?,
        );
    }
    if all_roles.metadata
        && let (Some(svc), Some(network)) = (&svc, &network)
    {
        let (server, addr) = serve_metadata_api(cfg, svc, network).await?;
        servers.push(server);
        urls.push(format!("metadata http://{addr}"));
    }
    let mut _identity_events = None;
    if all_roles.volume || all_roles.dashboard {
        let cfg_listen = cfg.get::<Option<String>>("DEFAULT", "listen")?;
        let listener = bind(state, listen.or(cfg_listen.as_deref())).await?;
        let local = listener.local_addr()?;
        let base = format!("http://{local}");
        let volume_url = match all_roles.volume {
            true => Some(volume_endpoint(cfg, &base, local)?),
            false => None,
        };
        let mut router = Router::new();
        if all_roles.volume {
            let (volume, validator, events) = open_volume_role(state, cfg).await?;
            _identity_events = Some(events);
            router = router.nest("/volume", volume::api::router(volume, validator));
        }
        if all_roles.dashboard {
            let identity_url = identity_url_of(cfg)?
                .context("the dashboard needs [keystone_authtoken] auth_url")?;
            router = router.merge(dashboard_router(&identity_url));
        }
        let app = tower::Layer::layer(
            &tower::util::MapRequestLayer::new(trim_trailing_slash),
            with_common_layers(router),
        );
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }));
        if let Some(url) = volume_url {
            register_volume_endpoints(state, cfg, &url).await?;
        }
        write_file(&state.endpoint_file(), &format!("{base}\n"), 0o644)?;
        urls.push(base);
    }
    write_file(
        &state.pid_file(),
        &format!("{}\n", std::process::id()),
        0o644,
    )?;
    let host = svc.as_ref().map(|s| s.cfg.host.clone()).unwrap_or_default();
    tracing::info!(roles = %all_roles, %host, urls = %urls.join(" "), pid = std::process::id(), elapsed_ms = started.elapsed().as_millis() as u64, "kumo is serving");
    let mut result = Ok(());
    if servers.is_empty() {
        shutdown_signal().await;
    }
    for server in servers {
        let r = match server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if result.is_ok() {
            result = r;
        }
    }
    drop(_network_wiring);
    if state.read_pid() == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(state.pid_file());
    }
    tracing::info!("kumo stopped");
    result.context("serving HTTP")
}

/// The volume role without identity in its process: its database and backends, tokens
/// validated at `[keystone_authtoken] auth_url` as the volume service's user (its cache
/// cleared on identity's changes: keep the subscription), image called as that user, and
/// `volume-extended` sent to compute's public API.
async fn open_volume_role(
    state: &StateDir,
    cfg: &Config,
) -> Result<(
    Arc<volume::VolumeService>,
    Arc<dyn common::auth::TokenValidator>,
    bus::Subscription,
)> {
    let mut rcfg = remote_identity(cfg)?
        .context("the volume role without the api role needs [keystone_authtoken] auth_url")?;
    rcfg.username = VOLUME_SERVICE_USER.into();
    let auth_url = rcfg.auth_url.clone();
    let validator = Arc::new(identity::remote::RemoteValidator::new(rcfg));
    let volume = open_volume(cfg).await?;
    let bus = crate::identity_events::open_bus(cfg).await?;
    let events = crate::identity_events::clear_on_changes(
        &bus,
        crate::network_agent::origin("volume"),
        validator.clone(),
    )
    .await?;
    let creds = volume_credentials(
        state,
        cfg,
        service_user_url(cfg)?.unwrap_or(auth_url.clone()),
    )?;
    volume.set_image_client(Arc::new(volume::glance::ImageClient::new(creds.clone())));
    volume.set_server_events(Arc::new(volume::server_events::ComputeApiEvents::new(
        creds,
    )));
    tracing::info!(%auth_url, "volume: tokens are validated at the identity service of another process");
    Ok((volume, validator, events))
}

/// How the volume service logs in as itself (devstack's `cinder` user in project `service`).
fn volume_credentials(
    state: &StateDir,
    cfg: &Config,
    auth_url: String,
) -> Result<volume::glance::ServiceCredentials> {
    Ok(volume::glance::ServiceCredentials {
        auth_url,
        username: VOLUME_SERVICE_USER.into(),
        password: service_password(state, cfg)?,
        project_name: "service".into(),
        region: cfg.get_str("DEFAULT", "region_name")?,
    })
}

/// The URL a volume process puts in the catalog: `[volume] public_endpoint`/v3 when set, else
/// `base`/volume/v3 (its listener's address, which must then be one clients can reach).
fn volume_endpoint(cfg: &Config, base: &str, local: SocketAddr) -> Result<String> {
    let public = cfg
        .get::<Option<String>>("volume", "public_endpoint")?
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    let url = match public {
        Some(p) => format!("{p}/v3"),
        None if local.ip().is_unspecified() => bail!(
            "the volume role listens on {local}, an address clients cannot be sent to: set [volume] public_endpoint = http://HOST:PORT/volume (how clients reach this listener), which goes in the catalog"
        ),
        None => format!("{base}/volume/v3"),
    };
    Ok(url)
}

/// Put this volume process's endpoints at `url` (types block-storage and volumev3) in the
/// catalog, through identity's public API as the volume service's user.
async fn register_volume_endpoints(state: &StateDir, cfg: &Config, url: &str) -> Result<()> {
    let auth_url =
        identity_url_of(cfg)?.context("the volume role needs [keystone_authtoken] auth_url")?;
    let registrar = crate::catalog_registration::Registrar {
        auth_url: auth_url.clone(),
        username: VOLUME_SERVICE_USER.into(),
        password: service_password(state, cfg)?,
        project_name: "service".into(),
        region: cfg.get_str("DEFAULT", "region_name")?,
    };
    let changed = registrar
        .register(&volume_catalog(url))
        .await
        .with_context(|| {
            format!("registering the volume endpoints in the catalog at {auth_url}")
        })?;
    for c in &changed {
        tracing::info!(registered = %c, "catalog");
    }
    Ok(())
}

/// Nova's metadata API for the network agents' proxies, on `[metadata] listen`, until
/// SIGTERM; returns the server's task and its address.
async fn serve_metadata_api(
    cfg: &Config,
    compute: &Arc<compute::ComputeService>,
    network: &Arc<network::NetworkService>,
) -> Result<(tokio::task::JoinHandle<std::io::Result<()>>, SocketAddr)> {
    let secret =
        metadata::config::shared_secret(cfg, "the metadata role").map_err(anyhow::Error::msg)?;
    let settings = metadata::config::settings(cfg).map_err(anyhow::Error::msg)?;
    let addr = cfg.get_str("metadata", "listen")?;
    let listener = TcpListener::bind(addr.trim()).await.with_context(|| {
        format!(
            "[metadata] listen = {addr}: cannot listen there; is another metadata service using it?"
        )
    })?;
    let local = listener.local_addr()?;
    let directory = Arc::new(crate::guest_metadata::CloudDirectory {
        compute: compute.clone(),
        network: network.clone(),
    });
    let app = with_common_layers(metadata::signed::router(directory, settings, &secret));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    tracing::info!(address = %local, "metadata API serving the network agents' proxies");
    Ok((server, local))
}

/// `[keystone_authtoken]`: the identity service of another process this API host validates
/// tokens at, as `[service_user]`; `None` when identity runs here.
fn remote_identity(cfg: &Config) -> Result<Option<identity::remote::RemoteConfig>> {
    let Some(auth_url) = cfg
        .get::<Option<String>>("keystone_authtoken", "auth_url")?
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(identity::remote::RemoteConfig {
        auth_url,
        username: cfg.get_str("service_user", "username")?,
        password: cfg
            .get::<Option<String>>("service_user", "password")?
            .unwrap_or_default()
            .trim()
            .to_string(),
        project_name: cfg.get_str("service_user", "project_name")?,
        cache_time: std::time::Duration::from_secs(
            cfg.get::<u64>("keystone_authtoken", "token_cache_time")?,
        ),
        cache_size: cfg
            .get::<usize>("keystone_authtoken", "token_cache_size")?
            .max(1),
        request_timeout: std::time::Duration::from_secs(
            cfg.get::<u64>("keystone_authtoken", "http_request_timeout")?
                .max(1),
        ),
    }))
}

/// Refuse `[keystone_authtoken] auth_url` where identity must run here: every role in one
/// process (`kumo up`, `kumo serve all`) and `--demo` (its data is made in identity).
pub fn refuse_remote_identity_here(cfg: &Config, what: &str) -> Result<()> {
    if remote_identity(cfg)?.is_some() {
        bail!(
            "{what} runs identity in this process, but [keystone_authtoken] auth_url points at another one: that option is for a second API host (`kumo serve api ...` next to the process that serves identity). Remove it, or run `kumo serve api` with it"
        );
    }
    Ok(())
}

fn check_remote(
    cfg: &Config,
    r: &identity::remote::RemoteConfig,
    demo: bool,
    roles: &Roles,
) -> Result<()> {
    if demo {
        refuse_remote_identity_here(cfg, "--demo")?;
    }
    if !roles.split() {
        refuse_remote_identity_here(
            cfg,
            "every role in one process (`kumo up`, `kumo serve all`)",
        )?;
    }
    if r.password.is_empty() {
        bail!(
            "[service_user] password is needed with [keystone_authtoken] auth_url: this API host validates tokens and calls the other services as the service user, with the password set in the config of the process that serves identity (its bootstrap gives it to the service users)"
        );
    }
    Ok(())
}

/// `kumo up --foreground`: every role, until SIGTERM or Ctrl-C.
pub async fn run(state: &StateDir, cfg: &Config, listen: Option<&str>, demo: bool) -> Result<()> {
    run_roles(state, cfg, listen, demo, Roles::ALL).await
}

/// Every public API with the chosen compute roles, until SIGTERM or Ctrl-C.
async fn run_roles(
    state: &StateDir,
    cfg: &Config,
    listen: Option<&str>,
    demo: bool,
    roles: Roles,
) -> Result<()> {
    let compute_roles = roles.compute;
    let started = Instant::now();
    let remote = remote_identity(cfg)?;
    if let Some(r) = &remote {
        check_remote(cfg, r, demo, &roles)?;
    }
    claim_state_dir(state, "`kumo down` stops it")?;
    let cfg_listen = cfg.get::<Option<String>>("DEFAULT", "listen")?;
    let listener = bind(state, listen.or(cfg_listen.as_deref())).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let region = cfg.get_str("DEFAULT", "region_name")?;
    let service_password = service_password(state, cfg)?;
    let compute_user = cfg.get_str("service_user", "username")?;

    // Identity here (bootstrapped, its changes fanned out to the other API hosts), or at
    // another process: then every token is validated there, with a cache its changes clear.
    // (The subscription of a remote validator to identity's events is held to the end.)
    // Bootstrap registers volume's endpoints only when volume runs here: a volume process
    // registers its own, and a restart of this one must not move them back.
    let services = match roles.volume {
        true => catalog(&base),
        false => api_catalog(&base),
    };
    let (cloud, identity_url, _identity_events) = match remote {
        None => {
            let cloud = open_with(cfg, roles.volume).await?;
            bootstrap_here(state, cfg, &cloud, &base, services, demo, &service_password).await?;
            if !cfg.get_str("DEFAULT", "transport_url")?.trim().is_empty() {
                let bus = crate::identity_events::open_bus(cfg).await?;
                crate::identity_events::forward_changes(
                    cloud.identity()?,
                    bus,
                    crate::network_agent::origin(&cloud.compute.cfg.host),
                );
            }
            (cloud, format!("{base}/identity"), None)
        }
        Some(rcfg) => {
            let auth_url = rcfg.auth_url.clone();
            let validator = Arc::new(identity::remote::RemoteValidator::new(rcfg));
            let cloud = open_services(cfg, None, validator.clone(), roles.volume).await?;
            let bus = crate::identity_events::open_bus(cfg).await?;
            let sub = crate::identity_events::clear_on_changes(
                &bus,
                crate::network_agent::origin(&cloud.compute.cfg.host),
                validator,
            )
            .await?;
            tracing::info!(%auth_url, "identity is remote: tokens are validated there (cached, cleared on its changes)");
            (cloud, auth_url, Some(sub))
        }
    };

    // `/identity/` and `/identity` are the same resource, as for the Python services. Not
    // below `/image/v2/`: Glance answers `/v2/images/` with 404, not with the image list
    // (Tempest checks it).
    let app = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(trim_trailing_slash),
        app(&cloud, &identity_url, roles.dashboard),
    );
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    // Serve first: the compute roles report to placement over the public API at start.
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    let bus = open_bus(cfg).await?;
    // The services' own calls to each other log in where identity is.
    let service_auth_url = match &cloud.identity {
        Some(_) => identity_url.clone(),
        None => cfg
            .get::<Option<String>>("service_user", "auth_url")?
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| identity_url.clone()),
    };
    let clients = Arc::new(compute::clients::ServiceClients::new(
        compute::clients::ServiceCredentials {
            auth_url: service_auth_url.clone(),
            username: compute_user.clone(),
            password: service_password.clone(),
            project_name: cfg.get_str("service_user", "project_name")?,
            region: region.clone(),
        },
    ));
    if let Some(v) = &cloud.volume {
        v.set_image_client(Arc::new(volume::glance::ImageClient::new(
            volume_credentials(state, cfg, service_auth_url)?,
        )));
        v.set_server_events(Arc::new(VolumeServerEvents(cloud.compute.clone())));
    }
    let _roles = compute::roles::start_roles(cloud.compute.clone(), bus, clients, compute_roles)
        .await
        .context("starting the compute roles")?;
    let _network_wiring = if roles.split() {
        if roles.network_agent || compute_roles.compute {
            let host = cloud.compute.cfg.host.clone();
            Some(
                start_split_network_agent(cfg, &cloud.network, &cloud.compute, &host, roles)
                    .await?,
            )
        } else {
            // No agent here, but the agents elsewhere hear of this API's changes.
            let bus = crate::network_agent::open_bus(cfg).await?;
            let origin = crate::network_agent::origin(&cloud.compute.cfg.host);
            crate::network_agent::forward_changes(cloud.network.clone(), bus, origin);
            None
        }
    } else {
        let placement = crate::network_agent::Placement::AllInOne {
            report_host: cloud.compute.cfg.host.clone(),
        };
        crate::network_agent::start(
            cloud.network.clone(),
            cloud.compute.clone(),
            crate::network_agent::GuestMetadata::for_roles(cfg, true)?,
            placement,
        )
        .await?;
        None
    };
    // Split, the metadata role also answers the proxies of other processes' agents.
    let metadata_api = match roles.split() && roles.metadata {
        true => Some(
            serve_metadata_api(cfg, &cloud.compute, &cloud.network)
                .await?
                .0,
        ),
        false => None,
    };

    // The endpoint first: `kumo up` waits for the pid file, then reads the endpoint.
    write_file(&state.endpoint_file(), &format!("{base}\n"), 0o644)?;
    write_file(
        &state.pid_file(),
        &format!("{}\n", std::process::id()),
        0o644,
    )?;
    tracing::info!(url = %base, %roles, pid = std::process::id(), elapsed_ms = started.elapsed().as_millis() as u64, "kumo is serving");
    let mut result = match server.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    if let Some(m) = metadata_api {
        let r = m
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if result.is_ok() {
            result = r;
        }
    }
    // Only remove the pid file if it is still ours.
    if state.read_pid() == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(state.pid_file());
    }
    tracing::info!("kumo stopped");
    result.context("serving HTTP")
}

/// Identity's bootstrap in this process (admin, service users, catalog at `base`), the demo
/// data when asked for, and the state dir's clouds.yaml.
async fn bootstrap_here(
    state: &StateDir,
    cfg: &Config,
    cloud: &Cloud,
    base: &str,
    services: Vec<CatalogService>,
    demo: bool,
    service_password: &str,
) -> Result<()> {
    let region = cfg.get_str("DEFAULT", "region_name")?;
    let password = admin_password(state)?;
    let compute_user = cfg.get_str("service_user", "username")?;
    let demo = demo || state.demo_marker().exists();
    let spec = BootstrapSpec {
        admin_password: password.clone(),
        region_id: region.clone(),
        services,
        demo_password: demo.then(|| password.clone()),
        service_users: vec![
            (compute_user.clone(), service_password.to_string()),
            (VOLUME_SERVICE_USER.into(), service_password.to_string()),
        ],
    };
    let report = identity::bootstrap::bootstrap(cloud.identity()?, &spec)
        .await
        .context("bootstrap")?;
    for c in &report.created {
        tracing::info!(created = %c, "bootstrap");
    }
    if demo {
        for name in cloud
            .compute
            .ensure_demo_flavors()
            .await
            .context("demo flavors")?
        {
            tracing::info!(flavor = %name, "demo flavor created");
        }
        ensure_demo_image(cloud, cfg, &report).await?;
        if cfg.get::<bool>("demo", "network")? {
            match crate::demo::ensure_network(cloud, &report).await {
                Ok(true) => tracing::info!(
                    public = crate::demo::PUBLIC_NETWORK,
                    private = crate::demo::PRIVATE_NETWORK,
                    router = crate::demo::DEMO_ROUTER,
                    "demo networks created"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "could not create the demo networks"
                ),
            }
        }
        match crate::demo::ensure_demo_keypair(cloud, &report, &state.demo_key()).await {
            Ok(true) => tracing::info!(
                keypair = crate::demo::DEMO_KEYPAIR,
                private_key = %state.demo_key().display(),
                "demo key pair created"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "could not create the demo key pair; kumo ssh needs --identity"
            ),
        }
        write_file(
            &state.demo_marker(),
            "demo project and user created\n",
            0o600,
        )?;
    }
    credentials::write(state, &format!("{base}/identity"), &region, &password, demo)?;
    Ok(())
}

/// The bus between the compute roles: in-process unless `[DEFAULT] transport_url` names a
/// RabbitMQ (the compute service's exchange is `nova`, as oslo's control_exchange), where calls to
/// the roles of this process are still answered in-process ([`bus::LocalFirstBus`]).
async fn open_bus(cfg: &Config) -> Result<Arc<dyn bus::Bus>> {
    let url = cfg.get_str("DEFAULT", "transport_url")?;
    if url.trim().is_empty() {
        return Ok(Arc::new(bus::InProcessBus::new()));
    }
    let b = open_rabbit(cfg, "nova").await?;
    tracing::info!(transport_url = %common::db::redact(url.trim()), "compute roles talk over RabbitMQ");
    // A call to a role of this process (the conductor asking its scheduler) is answered here.
    Ok(Arc::new(bus::LocalFirstBus::new(b)))
}

/// The RabbitMQ at `[DEFAULT] transport_url`, on `exchange` (oslo's control_exchange of the
/// service: `nova`, `neutron`, `keystone`).
pub async fn open_rabbit(cfg: &Config, exchange: &str) -> Result<Arc<dyn bus::Bus>> {
    let url = cfg.get_str("DEFAULT", "transport_url")?;
    let b = bus::RabbitBus::connect_with(url.trim(), exchange, rabbit_options(cfg)?)
        .await
        .context(
            "[DEFAULT] transport_url: the message bus is unreachable; is RabbitMQ running there?",
        )?;
    Ok(Arc::new(b))
}

/// How every RabbitMQ bus of this process rides out a broker outage.
pub fn rabbit_options(cfg: &Config) -> Result<bus::RabbitOptions> {
    let wait = cfg.get::<u64>("DEFAULT", "transport_outage_wait")?.max(1);
    Ok(bus::RabbitOptions::default().outage_wait(std::time::Duration::from_secs(wait)))
}

/// Cinder's notifications to Nova, in-process: an attached volume grew → `volume-extended`.
struct VolumeServerEvents(Arc<compute::ComputeService>);

#[async_trait::async_trait]
impl volume::server_events::ServerEvents for VolumeServerEvents {
    async fn volume_extended(
        &self,
        server: &str,
        volume_id: &str,
        by: &volume::server_events::Sender,
    ) {
        let sender = Some((by.user_id.as_str(), by.project_id.as_str()));
        let r = self
            .0
            .deliver_event(
                server,
                "volume-extended",
                Some(volume_id),
                "completed",
                &by.request_id,
                sender,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(%server, volume = %volume_id, error = %e, "could not deliver volume-extended");
        }
    }
}

/// The network agent of a process of a cloud split over several: this host's guests when it
/// runs `compute`, every host's DHCP, routers and metadata when it runs `network-agent`;
/// changes reach it over the bus and this process's changes reach the others. Keep the
/// subscription it returns for as long as the process runs.
async fn start_split_network_agent(
    cfg: &Config,
    network: &Arc<network::NetworkService>,
    compute: &Arc<compute::ComputeService>,
    compute_host: &str,
    roles: Roles,
) -> Result<bus::Subscription> {
    let host = match network.cfg.host.trim() {
        "" => compute_host.to_string(),
        h => h.to_string(),
    };
    // The listeners answer when the metadata role runs here, else proxy to it (only a
    // process serving the networks has listeners).
    let answers_here = roles.metadata || !roles.network_agent || !network.cfg.isolated_metadata;
    let guest_metadata = crate::network_agent::GuestMetadata::for_roles(cfg, answers_here)?;
    let scope = network::hostplan::Scope {
        guests: roles.compute.compute,
        services: roles.network_agent,
    };
    let (waker, mode) = crate::network_agent::start(
        network.clone(),
        compute.clone(),
        guest_metadata,
        crate::network_agent::Placement::Host {
            host: host.clone(),
            scope,
        },
    )
    .await?;
    let bus = crate::network_agent::open_bus(cfg).await?;
    let origin = crate::network_agent::origin(&host);
    crate::network_agent::forward_changes(network.clone(), bus.clone(), origin.clone());
    let listener = crate::network_agent::Listener {
        host,
        serves: scope.services,
        filters: mode == network::agent::Mode::Linux,
        agent: waker,
    };
    crate::network_agent::listen_for_changes(&bus, origin, listener).await
}

/// `kumo up --demo`: the kumo-tiny guest image as a public image, once. A missing file or a
/// failed upload is a warning, never a failed start.
async fn ensure_demo_image(
    cloud: &Cloud,
    cfg: &Config,
    report: &identity::bootstrap::BootstrapReport,
) -> Result<()> {
    use crate::demo::GuestImage;
    let path = match crate::demo::guest_image(cfg)? {
        GuestImage::Off => return Ok(()),
        GuestImage::NotBuilt => {
            tracing::info!(
                "no kumo-tiny image to upload ([demo] guest_image is empty and no cached build): tools/guest-image/build.sh makes one"
            );
            return Ok(());
        }
        GuestImage::File(p) => p,
    };
    if !path.is_file() {
        tracing::warn!(path = %path.display(), "[demo] guest_image: no such file; the demo cloud has no kumo-tiny image");
        return Ok(());
    }
    let t0 = Instant::now();
    match crate::demo::ensure_guest_image(cloud, report, &path).await {
        Ok(Some(id)) => tracing::info!(
            image = %id,
            name = crate::demo::GUEST_IMAGE_NAME,
            path = %path.display(),
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "demo image uploaded (public)"
        ),
        Ok(None) => tracing::debug!(
            name = crate::demo::GUEST_IMAGE_NAME,
            "demo image already there"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = format!("{e:#}"),
            "could not upload the demo image; the demo cloud has no kumo-tiny image"
        ),
    }
    Ok(())
}

/// Drop the trailing slash of a path (but `/`), except for Glance's resource paths.
fn trim_trailing_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    // Cinder, like Glance, answers `/volumes/` with 404 (Tempest checks it).
    let keep = (path.starts_with("/image/v2/") && path.len() > "/image/v2/".len())
        || (path.starts_with("/volume/v3/") && path.len() > "/volume/v3/".len());
    if path.len() > 1 && path.ends_with('/') && !keep {
        let trimmed = path.trim_end_matches('/');
        let new = match req.uri().query() {
            Some(q) => format!("{}?{q}", if trimmed.is_empty() { "/" } else { trimmed }),
            None => {
                if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.to_string()
                }
            }
        };
        if let Ok(pq) = new.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Result<Roles> {
        Roles::parse(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn roles_parse_and_split() {
        assert_eq!(roles(&["all"]).ok(), Some(Roles::ALL));
        // the five roles of before are a split now: volume, metadata, dashboard run elsewhere
        assert!(
            roles(&["api", "conductor", "scheduler", "compute", "network-agent"])
                .is_ok_and(|r| r.split())
        );
        let a = roles(&["api", "conductor", "scheduler"]).ok();
        assert!(a.is_some_and(|r| r.api && r.split() && !r.compute.compute));
        let c = roles(&["compute"]).ok();
        assert!(c.is_some_and(|r| !r.api && r.compute.compute && !r.compute.conductor));
        let n = roles(&["api", "network-agent"]).ok();
        assert!(n.is_some_and(|r| r.api && r.network_agent && r.split()));
        assert!(n.is_some_and(|r| !r.volume && !r.metadata && !r.dashboard));
        let every = [
            "api",
            "conductor",
            "scheduler",
            "compute",
            "network-agent",
            "volume",
            "metadata",
            "dashboard",
        ];
        assert_eq!(roles(&every).ok(), Some(Roles::ALL));
        assert!(roles(&every[..7]).is_ok_and(|r| r.split() && !r.dashboard));
        let v = roles(&["volume"]).ok();
        assert!(v.is_some_and(|r| r.volume && !r.api && !r.metadata && !r.dashboard));
        let m = roles(&["metadata", "dashboard"]).ok();
        assert!(m.is_some_and(|r| r.metadata && r.dashboard && !r.volume && !r.api));
        let e = roles(&["horizon"]).err().map(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_some_and(|m| m.contains("\"horizon\"") && m.contains(ROLE_NAMES)),
            "{e:?}"
        );
        assert!(roles(&[]).is_err());
        assert_eq!(Roles::ALL.to_string(), "all");
        assert!(m.is_some_and(|r| r.to_string() == "metadata dashboard"));
    }

    const SHARED: &str = "[DEFAULT]\ntransport_url = rabbit://g:g@127.0.0.1:1/\n[database]\nconnection = postgresql://k:k@127.0.0.1/kumo_$service\n";

    fn refusal(ini: &str, names: &[&str]) -> String {
        let r = roles(names).unwrap_or(Roles::ALL);
        let c = cfg(ini);
        check_split(&c, &r)
            .and_then(|_| check_role_options(&c, &r))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_volume_process_registers_an_address_clients_can_reach() {
        let at = |ini: &str, listen: &str| {
            let local: SocketAddr = listen.parse().unwrap_or_else(|e| panic!("{e}"));
            volume_endpoint(&cfg(ini), &format!("http://{local}"), local).map_err(|e| e.to_string())
        };
        assert_eq!(
            at("", "10.0.0.5:8776").ok().as_deref(),
            Some("http://10.0.0.5:8776/volume/v3")
        );
        let any = at("", "0.0.0.0:8776").err().unwrap_or_default();
        assert!(any.contains("[volume] public_endpoint"), "{any}");
        let public = "[volume]\npublic_endpoint = http://storage.example:8776/volume/\n";
        assert_eq!(
            at(public, "0.0.0.0:8776").ok().as_deref(),
            Some("http://storage.example:8776/volume/v3")
        );
    }

    #[test]
    fn each_split_role_says_which_option_it_misses() {
        // a dashboard alone needs neither bus nor databases, only where identity is
        let d = refusal("", &["dashboard"]);
        assert!(d.contains("[keystone_authtoken] auth_url"), "{d}");
        assert!(!d.contains("transport_url"), "{d}");
        assert_eq!(
            refusal(
                "[service_user]\nauth_url = http://a/identity\n",
                &["dashboard"]
            ),
            ""
        );
        assert_eq!(
            refusal(
                "[keystone_authtoken]\nauth_url = http://a/identity\n",
                &["dashboard"]
            ),
            ""
        );
        // volume alone: the bus (identity's changes), where identity is, the service password
        assert!(refusal("", &["volume"]).contains("[DEFAULT] transport_url"));
        let v = refusal(SHARED, &["volume"]);
        assert!(v.contains("[keystone_authtoken] auth_url"), "{v}");
        let v = refusal(
            &format!("{SHARED}[keystone_authtoken]\nauth_url = http://a/identity\n"),
            &["volume"],
        );
        assert!(v.contains("[service_user] password"), "{v}");
        assert_eq!(
            refusal(
                &format!(
                    "{SHARED}[keystone_authtoken]\nauth_url = http://a/identity\n[service_user]\npassword = p\n"
                ),
                &["volume"]
            ),
            ""
        );
        // with api in the process, volume and dashboard need nothing more
        assert_eq!(refusal(SHARED, &["api", "volume", "dashboard"]), "");
        // metadata: the shared databases and the secret
        let m = refusal("", &["metadata"]);
        assert!(m.contains("compute database is SQLite"), "{m}");
        let m = refusal(SHARED, &["metadata"]);
        assert!(m.contains("[neutron] metadata_proxy_shared_secret"), "{m}");
        let secret = "[neutron]\nmetadata_proxy_shared_secret = s\n";
        assert_eq!(refusal(&format!("{SHARED}{secret}"), &["metadata"]), "");
        // a network agent without the metadata role proxies: where to, and the secret
        let n = refusal(SHARED, &["api", "network-agent"]);
        assert!(n.contains("[metadata] nova_metadata_host"), "{n}");
        let to = "[metadata]\nnova_metadata_host = 10.0.0.1\n";
        let n = refusal(&format!("{SHARED}{to}"), &["api", "network-agent"]);
        assert!(n.contains("[neutron] metadata_proxy_shared_secret"), "{n}");
        assert_eq!(
            refusal(&format!("{SHARED}{to}{secret}"), &["api", "network-agent"]),
            ""
        );
        // ... unless the metadata role runs with it, or no listener is wanted at all
        assert_eq!(
            refusal(
                &format!("{SHARED}{secret}"),
                &["api", "network-agent", "metadata"]
            ),
            ""
        );
        let off = "[network]\nisolated_metadata = false\n";
        assert_eq!(
            refusal(&format!("{SHARED}{off}"), &["api", "network-agent"]),
            ""
        );
        // a compute host serves no networks: no metadata options
        assert!(
            refusal(
                &format!("{SHARED}[service_user]\nauth_url = http://a/identity\n"),
                &["compute"]
            )
            .is_empty()
        );
        // all-in-one checks nothing of this
        assert_eq!(refusal("", &["all"]), "");
    }

    /// The config `ini` says, read from a file in a temp dir of its own (removed again: the
    /// config keeps only the path).
    fn cfg(ini: &str) -> Config {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kumo-roles-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("kumo.conf");
        let _ = std::fs::write(&f, ini);
        let c = crate::settings::load(Some(&f), &dir).unwrap_or_else(|_| Config::new(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    #[test]
    fn keystone_authtoken_makes_a_second_api_host_and_is_refused_elsewhere() {
        assert!(remote_identity(&cfg("")).ok().flatten().is_none());
        let ini = "[keystone_authtoken]\nauth_url = http://10.0.0.1:5000/identity/\ntoken_cache_time = 60\n";
        let with_pw = cfg(&format!("{ini}[service_user]\npassword = pw\n"));
        let r = remote_identity(&with_pw).ok().flatten();
        assert!(
            r.as_ref()
                .is_some_and(|r| r.auth_url == "http://10.0.0.1:5000/identity"
                    && r.cache_time == std::time::Duration::from_secs(60)
                    && r.cache_size == 10_000
                    && r.username == "nova"
                    && r.password == "pw")
        );
        let api = roles(&["api"]).ok().unwrap_or(Roles::ALL);
        let Some(r) = r else { return };
        assert!(check_remote(&with_pw, &r, false, &api).is_ok());
        let refusal = |c: &Config, demo: bool, roles: &Roles| {
            let rc = remote_identity(c).ok().flatten();
            rc.and_then(|rc| check_remote(c, &rc, demo, roles).err())
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refusal(&with_pw, true, &api).contains("--demo"));
        assert!(refusal(&with_pw, false, &Roles::ALL).contains("[keystone_authtoken] auth_url"));
        assert!(refusal(&cfg(ini), false, &api).contains("[service_user] password"));
        assert!(refuse_remote_identity_here(&with_pw, "kumo up").is_err());
        assert!(refuse_remote_identity_here(&cfg(""), "kumo up").is_ok());
    }

    #[test]
    fn a_split_refuses_the_in_process_bus_and_sqlite() {
        let compute = Roles {
            compute: compute::roles::RoleSet {
                conductor: false,
                scheduler: false,
                compute: true,
            },
            ..Roles::NONE
        };
        let e = check_split(&cfg(""), &compute).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("[DEFAULT] transport_url")));
        let e = check_split(
            &cfg("[DEFAULT]\ntransport_url = rabbit://g:g@127.0.0.1:1/\n"),
            &compute,
        )
        .err()
        .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("[database] connection")));
        // The compute database shared, the network database not: its agents could not see it.
        let e = check_split(
            &cfg("[DEFAULT]\ntransport_url = rabbit://g:g@127.0.0.1:1/\n[compute_database]\nconnection = postgresql://k:k@127.0.0.1/nova\n"),
            &compute,
        )
        .err()
        .map(|e| e.to_string());
        assert!(
            e.as_ref().is_some_and(|m| m.contains("network database")),
            "{e:?}"
        );
        assert!(check_split(&cfg(""), &Roles::ALL).is_ok());
    }
}
