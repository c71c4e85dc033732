//! Named network namespaces, laid out as `ip netns` does: a file `/run/netns/NAME` on which the
//! namespace is bind-mounted, so `ip netns exec/list/del` and kumo see the same namespaces.
//!
//! Creation happens on a short-lived dedicated thread that `unshare`s a new network namespace and
//! bind-mounts its `/proc/thread-self/ns/net`; [`run_in_namespace`] runs async code on a dedicated
//! thread that `setns`es first, so sockets it opens stay in that namespace for their lifetime.

use crate::{Error, Result};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::future::Future;
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// `/run/netns/NAME`, after checking the name is a plain file name.
pub fn namespace_path(name: &str) -> Result<PathBuf> {
    validate_name(name)?;
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

fn validate_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some("must be a plain file name (no `/`)")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// Whether `/run/netns/NAME` exists and has a namespace mounted on it.
pub fn namespace_exists(name: &str) -> Result<bool> {
    let path = namespace_path(name)?;
    Ok(is_netns_file(&path))
}

fn is_netns_file(path: &Path) -> bool {
    // A mounted nsfs file reports the nsfs magic; an empty leftover file is a plain tmpfs file.
    match nix::sys::statfs::statfs(path) {
        Ok(s) => s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC,
        Err(_) => false,
    }
}

/// The names in `/run/netns` with a namespace mounted, sorted (what `ip netns list` shows).
pub fn list_namespaces() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {NETNS_RUN_DIR}"), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_netns_file(&e.path()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so namespaces mounted there
/// are visible in mount namespaces created later (and unmounts propagate).
fn prepare_run_dir() -> Result<()> {
    std::fs::create_dir_all(NETNS_RUN_DIR)
        .map_err(|e| Error::io(format!("creating {NETNS_RUN_DIR}"), e))?;
    let shared = || {
        nix::mount::mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            nix::mount::mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("bind-mounting {NETNS_RUN_DIR}"), e))?;
            shared().map_err(|e| Error::sys(format!("making {NETNS_RUN_DIR} shared"), e))
        }
        Err(e) => Err(Error::sys(format!("making {NETNS_RUN_DIR} shared"), e)),
    }
}

/// Creates the namespace `name` unless it exists (blocking; see [`ensure_namespace`]).
pub fn ensure_namespace_blocking(name: &str) -> Result<()> {
    let path = namespace_path(name)?;
    if is_netns_file(&path) {
        return Ok(());
    }
    prepare_run_dir()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let target = path.clone();
    // unshare() changes only the calling thread: do it on a thread that ends right after.
    let made = std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys("unshare(CLONE_NEWNET)", e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::sys(
                format!("bind-mounting the namespace on {}", target.display()),
                e,
            )
        })
    })
    .join()
    .map_err(|_| Error::Worker)?;
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made?;
    tracing::debug!(namespace = name, "network namespace created");
    Ok(())
}

/// Removes the namespace `name` if it exists (blocking; see [`remove_namespace`]). Links inside
/// it go with it once no process or socket holds it any more (veth peers elsewhere vanish too).
pub fn remove_namespace_blocking(name: &str) -> Result<()> {
    let path = namespace_path(name)?;
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("unmounting {}", path.display()), e)),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    tracing::debug!(namespace = name, "network namespace removed");
    Ok(())
}

/// Creates the network namespace `name` (as `ip netns add NAME`); succeeds if it exists.
pub async fn ensure_namespace(name: &str) -> Result<()> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || ensure_namespace_blocking(&name))
        .await
        .map_err(|_| Error::Worker)?
}

/// Deletes the network namespace `name` (as `ip netns del NAME`); succeeds if it is gone.
pub async fn remove_namespace(name: &str) -> Result<()> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || remove_namespace_blocking(&name))
        .await
        .map_err(|_| Error::Worker)?
}

/// Runs `f` inside the namespace `name`, on a dedicated thread (with its own current-thread
/// tokio runtime) that entered the namespace with `setns`. Sockets created there keep that
/// namespace, so a listener bound inside serves that namespace's addresses for as long as `f`
/// runs. The returned future is `Send` even when `f`'s future is not.
pub fn run_in_namespace<F, Fut, T>(
    name: &str,
    f: F,
) -> impl Future<Output = Result<T>> + Send + 'static
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    // The thread starts now; the returned future only waits for its answer (and borrows
    // nothing, so it can be spawned).
    let started = spawn_in_namespace(name, f);
    async move { started?.await.map_err(|_| Error::Worker)? }
}

fn spawn_in_namespace<F, Fut, T>(
    name: &str,
    f: F,
) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let path = namespace_path(name)?;
    if !is_netns_file(&path) {
        return Err(Error::NoNamespace(name.to_owned()));
    }
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            let result = (|| {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys(format!("setns into {}", path.display()), e))?;
                drop(file);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("building the namespace thread's runtime", e))?;
                Ok(runtime.block_on(f()))
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| Error::io("spawning a namespace thread", e))?;
    Ok(rx)
}

/// Sets a sysctl under /proc/sys/net inside the namespace (e.g. `ipv4/ip_forward`): those
/// files show the network namespace of the thread that opens them.
pub async fn set_net_sysctl(name: &str, key: &str, value: &str) -> Result<()> {
    if key.contains("..") || key.starts_with('/') {
        return Err(Error::Invalid(format!("sysctl key `{key}`")));
    }
    let file = format!("/proc/sys/net/{key}");
    let value = value.to_owned();
    run_in_namespace(name, move || async move {
        std::fs::write(&file, value).map_err(|e| Error::io(format!("writing {file}"), e))
    })
    .await?
}

/// Like [`set_net_sysctl`], but reads the value first and writes only when it differs;
/// true when it wrote.
pub async fn ensure_net_sysctl(name: &str, key: &str, value: &str) -> Result<bool> {
    if key.contains("..") || key.starts_with('/') {
        return Err(Error::Invalid(format!("sysctl key `{key}`")));
    }
    let file = format!("/proc/sys/net/{key}");
    let value = value.to_owned();
    run_in_namespace(name, move || async move {
        let now =
            std::fs::read_to_string(&file).map_err(|e| Error::io(format!("reading {file}"), e))?;
        if now.trim() == value {
            return Ok(false);
        }
        std::fs::write(&file, &value).map_err(|e| Error::io(format!("writing {file}"), e))?;
        Ok(true)
    })
    .await?
}

/// SIGKILLs every process in the namespace `name` except this one (before removing it).
pub fn kill_namespace_processes(name: &str) -> Result<usize> {
    if !namespace_exists(name)? {
        return Ok(0);
    }
    let me = std::process::id() as i32;
    let mut killed = 0;
    for pid in namespace_pids(name)? {
        if pid == me {
            continue;
        }
        if nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            killed += 1;
        }
    }
    Ok(killed)
}

/// The pids of processes whose network namespace is `name` (as `ip netns pids NAME`).
pub fn namespace_pids(name: &str) -> Result<Vec<i32>> {
    use std::os::unix::fs::MetadataExt;
    let path = namespace_path(name)?;
    let target = std::fs::metadata(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut pids = Vec::new();
    let entries =
        std::fs::read_dir("/proc").map_err(|e| Error::io("reading /proc".to_owned(), e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(m) = std::fs::metadata(entry.path().join("ns/net"))
            && m.dev() == target.dev()
            && m.ino() == target.ino()
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}
