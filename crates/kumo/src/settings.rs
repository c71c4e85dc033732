//! kumo's configuration: every crate's declared options in one INI file.

use std::path::Path;

use anyhow::{Context, Result};
use common::config::{Config, Opt};

pub static KUMO_OPTS: &[Opt] = &[
    Opt {
        section: "DEFAULT",
        name: "listen",
        default: "",
        help: "Address the API listens on (HOST:PORT). Empty: the last one used by this state directory, else 127.0.0.1:5000 if free, else a free port.",
    },
    Opt {
        section: "DEFAULT",
        name: "debug",
        default: "false",
        help: "Log at debug level.",
    },
    Opt {
        section: "DEFAULT",
        name: "log_format",
        default: "text",
        help: "Log line format: text or json.",
    },
    Opt {
        section: "DEFAULT",
        name: "region_name",
        default: "RegionOne",
        help: "Region of this cloud's endpoints.",
    },
    Opt {
        section: "demo",
        name: "guest_image",
        default: "",
        help: "kumo up --demo: qcow2 file uploaded once as the public image kumo-tiny (owned by the admin project). Empty: the newest kumo-tiny-*.qcow2 that tools/guest-image/build.sh cached in $KUMO_CACHE_DIR/images (default ~/.cache/kumo/images), if any. none: no demo image. A missing file is a logged warning.",
    },
    Opt {
        section: "demo",
        name: "network",
        default: "true",
        help: "kumo up --demo: make devstack's networks once (public 172.24.4.0/24 external, the demo project's private 10.0.0.0/26 behind router1, ICMP and SSH into its default security group).",
    },
    Opt {
        section: "DEFAULT",
        name: "transport_url",
        default: "",
        help: "Message bus between the roles (oslo's transport URL): rabbit://USER:PASS@HOST:PORT/VHOST (several hosts: rabbit://u:p@h1:5672,u:p@h2:5672/), or amqp://... Empty: the in-process bus (all-in-one).",
    },
    Opt {
        section: "DEFAULT",
        name: "transport_outage_wait",
        default: "60",
        help: "Seconds a message to another role waits for an unreachable RabbitMQ (a broker restart) before the request fails with 503; as long as oslo's rpc_response_timeout by default.",
    },
    Opt {
        section: "service_user",
        name: "auth_url",
        default: "",
        help: "Identity endpoint the compute role authenticates at to call placement, image, network and volume (nova.conf's [service_user]), e.g. http://CONTROLLER:5000/identity. Empty: this process's own API (all-in-one), or [keystone_authtoken] auth_url when that is set; a `kumo serve compute` without the api role needs it.",
    },
    Opt {
        section: "service_user",
        name: "username",
        default: "nova",
        help: "The compute service's user (the api process's bootstrap creates it in the service project).",
    },
    Opt {
        section: "service_user",
        name: "password",
        default: "",
        help: "Password of the service users (the api process's bootstrap sets it). Empty: one kept in the state dir (STATE/service-password), which only processes sharing that state dir know; set it when roles run in several processes.",
    },
    Opt {
        section: "service_user",
        name: "project_name",
        default: "service",
        help: "Project of the service user's token.",
    },
    Opt {
        section: "keystone_authtoken",
        name: "auth_url",
        default: "",
        help: "Identity endpoint of another kumo, e.g. http://CONTROLLER:5000/identity: a `kumo serve api` with it set is a second API host. It opens no identity database and serves no /identity (nor /v3), validates every request's token there (GET /v3/auth/tokens as [service_user], whose password it needs) with a cache, and its services call each other with [service_user] credentials there. Empty: identity runs in this process. `kumo up` and --demo refuse it.",
    },
    Opt {
        section: "keystone_authtoken",
        name: "token_cache_time",
        default: "300",
        help: "Seconds a token validated at [keystone_authtoken] auth_url is trusted without asking again (also never past the token's expiry). Identity's changes (revocations, disabled users, removed roles...) clear the cache at once over the bus ([DEFAULT] transport_url); without the bus this bounds how long a revoked token is still accepted.",
    },
    Opt {
        section: "keystone_authtoken",
        name: "token_cache_size",
        default: "10000",
        help: "Tokens the validation cache keeps at most; above it the ones that expire soonest are dropped.",
    },
    Opt {
        section: "keystone_authtoken",
        name: "http_request_timeout",
        default: "10",
        help: "Seconds a request to [keystone_authtoken] auth_url may take (connect and answer); past it the caller gets 503 (identity unavailable).",
    },
    Opt {
        section: "database",
        name: "connection",
        default: "sqlite://$state_dir/db/$service.sqlite",
        help: "Database URL template; $service is replaced by each service's name (identity, ...).",
    },
];

/// Load `path` if it exists (or the state dir's kumo.conf), with every option declared.
pub fn load(path: Option<&Path>, state_dir: &Path) -> Result<Config> {
    let default = state_dir.join("kumo.conf");
    let file = path
        .map(Path::to_path_buf)
        .or_else(|| default.exists().then_some(default));
    let mut cfg = match &file {
        Some(f) => {
            Config::load(f, state_dir).with_context(|| format!("loading {}", f.display()))?
        }
        None => Config::new(state_dir),
    };
    declare_all(&mut cfg);
    for unknown in cfg.unknown_options() {
        eprintln!(
            "warning: unknown option {unknown} in {}",
            file.as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(cfg)
}

pub fn declare_all(cfg: &mut Config) {
    cfg.declare(KUMO_OPTS);
    cfg.declare(identity::config::OPTS);
    cfg.declare(placement::config::OPTS);
    cfg.declare(image::config::OPTS);
    cfg.declare(compute::config::OPTS);
    cfg.declare(network::config::OPTS);
    cfg.declare(volume::config::OPTS);
    cfg.declare(metadata::config::OPTS);
}
