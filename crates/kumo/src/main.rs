//! kumo: OpenStack's core services in one program.

/// jemalloc instead of glibc's malloc: glibc keeps freed memory in per-thread arenas, which
/// left a fresh kumo at 63 MB RSS (31 MB under jemalloc, which returns it)
/// (docs/adr/0001-allocator.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod catalog_registration;
mod credentials;
mod demo;
mod guest_metadata;
mod identity_events;
mod lifecycle;
mod network_agent;
mod server;
mod settings;
mod ssh;
mod state;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use state::StateDir;

#[derive(Parser)]
#[command(
    name = "kumo",
    version,
    about = "OpenStack's core services (Keystone v3, ...) in one program."
)]
struct Cli {
    /// State directory (config, databases, keys, credentials, logs). Default: ~/.kumo
    #[arg(long, global = true, env = "KUMO_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// INI configuration file. Default: STATE_DIR/kumo.conf if it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cloud (in the background unless --foreground) and wait until it answers.
    Up {
        /// HOST:PORT to listen on (port 0: any free port).
        #[arg(long)]
        listen: Option<String>,
        /// Also create the demo project and user (member role).
        #[arg(long)]
        demo: bool,
        /// Run in this terminal instead of in the background.
        #[arg(long)]
        foreground: bool,
        /// Services to run (only `identity` exists yet).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
    },
    /// Stop the cloud started from this state directory.
    Down {
        /// Also remove the network data plane (kumo's namespaces with their bridges, taps,
        /// dnsmasqs and rules) and so the guests attached to it: nothing is left running.
        #[arg(long)]
        purge: bool,
    },
    /// Is it running, where, and does every API answer?
    Status,
    /// Log in to a server over SSH: to its floating IP through the outside-world namespace,
    /// else to its fixed IP through its network's DHCP namespace (run as root on the host of
    /// the cloud). The key is the demo key pair's (STATE/demo-key) unless -i says otherwise.
    Ssh {
        /// Server name or id.
        server: String,
        /// User to log in as (kumo-tiny's is `kumo`; Debian cloud images use `debian`).
        #[arg(short = 'l', long, default_value = "kumo")]
        login: String,
        /// Private key file.
        #[arg(short = 'i', long)]
        identity: Option<PathBuf>,
        /// Command to run instead of a login shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print the log (`--follow` to keep reading).
    Logs {
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end.
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: usize,
    },
    /// Run chosen roles in the foreground (scale-out): `api` (every public API but volume),
    /// `conductor`, `scheduler`, `compute` (this host's compute agent, which also wires its
    /// guests' ports), `network-agent` (DHCP, routers and metadata listeners for every host),
    /// `volume` (Cinder's API and backend), `metadata` (Nova's metadata API, port 8775, for the
    /// agents' proxies), `dashboard` (the web UI), or `all`. Roles split over processes share
    /// [DEFAULT] transport_url (RabbitMQ) and [database] connection (PostgreSQL/MySQL).
    Serve {
        #[arg(required = true)]
        roles: Vec<String>,
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create or upgrade every service's database schema.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Create the admin user, roles, region and catalog (idempotent).
    Bootstrap {
        #[arg(long)]
        demo: bool,
    },
    /// Token key repository (Keystone's keystone-manage fernet_*).
    Fernet {
        #[command(subcommand)]
        action: FernetAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Policy helpers.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
}

#[derive(Subcommand)]
enum DbAction {
    Sync,
}

#[derive(Subcommand)]
enum FernetAction {
    /// Create the key repository if it does not exist.
    Setup,
    /// Promote the staged key, stage a new one, drop the oldest beyond max_active_keys.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print every option with its default and help.
    Sample,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Print a service's policy defaults as a policy.yaml to start overrides from.
    Sample {
        /// identity, compute, image, placement or volume.
        #[arg(default_value = "identity")]
        service: String,
    },
}

fn init_logging(cfg: &common::config::Config) {
    use tracing_subscriber::EnvFilter;
    let debug = cfg.get::<bool>("DEFAULT", "debug").unwrap_or(false);
    let default = if debug {
        "debug,sqlx=warn,sea_orm=info"
    } else {
        "info,sqlx=warn,sea_orm=warn"
    };
    let filter = EnvFilter::try_from_env("KUMO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = cfg
        .get_str("DEFAULT", "log_format")
        .map(|f| f == "json")
        .unwrap_or(false);
    // Colours only on a terminal: in the background the log goes to logs/kumo.log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let state = StateDir::resolve(cli.state_dir.clone())?;
    let cfg = settings::load(cli.config.as_deref(), &state.root)?;
    match cli.command {
        Command::Up {
            listen,
            demo,
            foreground,
            services,
        } => {
            for s in &services {
                if s != "identity" && s != "keystone" {
                    eprintln!("note: service {s:?} is not part of kumo yet; running identity only");
                }
            }
            server::refuse_remote_identity_here(&cfg, "kumo up")?;
            if foreground {
                init_logging(&cfg);
                runtime()?.block_on(server::run(&state, &cfg, listen.as_deref(), demo))
            } else {
                lifecycle::up_background(&state, cli.config.as_deref(), listen.as_deref(), demo)
            }
        }
        Command::Serve { roles, listen } => {
            let roles = server::Roles::parse(&roles)?;
            init_logging(&cfg);
            runtime()?.block_on(server::serve(&state, &cfg, listen.as_deref(), roles))
        }
        Command::Down { purge } => {
            lifecycle::down(&state)?;
            if purge {
                let prefix = cfg.get_str("network", "namespace_prefix")?;
                let dir = network::agent::runtime_dir(&prefix);
                let removed = runtime()?.block_on(dataplane::converge::teardown(
                    &dataplane::plan::Names::new(prefix.clone()),
                    &dir,
                ))?;
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                }
                if removed.is_empty() {
                    println!("no network namespaces of kumo's to remove");
                } else {
                    println!(
                        "removed the network data plane: {} (their guests and dnsmasqs stopped)",
                        removed.join(", ")
                    );
                }
            }
            Ok(())
        }
        Command::Status => lifecycle::status(&state),
        Command::Ssh {
            server,
            login,
            identity,
            command,
        } => runtime()?.block_on(ssh::run(
            &cfg,
            state.demo_key(),
            ssh::Ask {
                server,
                login,
                identity,
                command,
            },
        )),
        Command::Logs { follow, lines } => lifecycle::logs(&state, follow, lines),
        Command::Db {
            action: DbAction::Sync,
        } => runtime()?.block_on(async {
            state.ensure()?;
            server::open(&cfg).await?;
            println!("databases are up to date ({})", state.root.display());
            Ok(())
        }),
        Command::Bootstrap { demo } => runtime()?.block_on(async {
            state.ensure()?;
            let cloud = server::open(&cfg).await?;
            let base = state
                .read_endpoint()
                .unwrap_or_else(|| "http://127.0.0.1:5000".into());
            let password = server::admin_password(&state)?;
            let region = cfg.get_str("DEFAULT", "region_name")?;
            let spec = identity::bootstrap::BootstrapSpec {
                admin_password: password.clone(),
                region_id: region.clone(),
                services: server::catalog(&base),
                demo_password: demo.then(|| password.clone()),
                service_users: vec![(
                    cfg.get_str("service_user", "username")?,
                    server::service_password(&state, &cfg)?,
                )],
            };
            let report = identity::bootstrap::bootstrap(cloud.identity()?, &spec).await?;
            credentials::write(
                &state,
                &format!("{base}/identity"),
                &region,
                &password,
                demo || state.demo_marker().exists(),
            )?;
            if report.created.is_empty() {
                println!("bootstrap: nothing to do, everything exists");
            }
            for c in report.created {
                println!("bootstrap: {c}");
            }
            Ok(())
        }),
        Command::Fernet { action } => {
            let icfg = identity::config::IdentityConfig::from_config(
                &cfg,
                &cfg.get_str("database", "connection")?,
            )?;
            let repo = identity::token::KeyRepository::new(
                &icfg.fernet_key_repository,
                identity::token::KeyPurpose::Tokens,
            )
            .with_max_active_keys(icfg.fernet_max_active_keys)?;
            match action {
                FernetAction::Setup => {
                    let out = repo.setup()?;
                    println!("{}: {out:?}", icfg.fernet_key_repository.display());
                }
                FernetAction::Rotate => {
                    repo.setup()?;
                    let out = repo.rotate().context("rotating the Fernet keys")?;
                    println!(
                        "rotated {}: key {} is the new primary{}",
                        icfg.fernet_key_repository.display(),
                        out.new_primary,
                        if out.purged.is_empty() {
                            String::new()
                        } else {
                            format!(", removed keys {:?}", out.purged)
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Sample,
        } => {
            print!("{}", cfg.sample());
            Ok(())
        }
        Command::Policy {
            action: PolicyAction::Sample { service },
        } => {
            let defaults = match service.as_str() {
                "identity" => identity::core::POLICY_DEFAULTS,
                "compute" => compute::core::POLICY_DEFAULTS,
                "image" => image::core::POLICY_DEFAULTS,
                "placement" => placement::core::POLICY_DEFAULTS,
                "volume" => volume::core::POLICY_DEFAULTS,
                other => anyhow::bail!(
                    "no policy for {other:?}: choose identity, compute, image, placement or volume"
                ),
            };
            let e = common::policy::Enforcer::builder()
                .defaults_yaml(defaults)?
                .build()?;
            print!("{}", e.render_yaml());
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .context("starting the async runtime")
}
