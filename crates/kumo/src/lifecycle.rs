//! `kumo up` (background), `down`, `status`, `logs`.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::state::{StateDir, alive};

/// The APIs `kumo up` waits for, with the path that answers 200 when ready.
const HEALTH: &[(&str, &str)] = &[
    ("identity", "/identity/v3"),
    ("placement", "/placement"),
    ("image", "/image/versions"),
    ("compute", "/compute/v2.1"),
    ("network", "/network"),
    ("volume", "/volume/v3"),
];

/// Minimal HTTP/1.0 GET on loopback: the status code, or None if nothing answers.
pub fn http_status(base: &str, path: &str) -> Option<u16> {
    let hostport = base.strip_prefix("http://")?.trim_end_matches('/');
    let addr = hostport.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn print_summary(state: &StateDir, base: &str, pid: i32, elapsed: Option<Duration>) {
    let took = elapsed
        .map(|d| format!(" in {:.1} s", d.as_secs_f64()))
        .unwrap_or_default();
    println!("kumo is up at {base}/ (pid {pid}){took}");
    for (name, path) in HEALTH {
        println!("  {name:<10} {base}{path}");
    }
    println!("dashboard: {base}/dashboard/ (log in with a user of the cloud, e.g. admin)");
    let pw = std::fs::read_to_string(state.admin_password_file()).unwrap_or_default();
    println!(
        "admin password: {} (kept in {})",
        pw.trim(),
        state.admin_password_file().display()
    );
    println!(
        "credentials: {} (clouds: kumo, kumo-admin, kumo-system-admin), {}",
        state.clouds_yaml().display(),
        state.openrc().display()
    );
    println!(
        "try: OS_CLIENT_CONFIG_FILE={} openstack --os-cloud kumo-admin token issue",
        state.clouds_yaml().display()
    );
}

pub fn up_background(
    state: &StateDir,
    config: Option<&Path>,
    listen: Option<&str>,
    demo: bool,
) -> Result<()> {
    state.ensure()?;
    if let Some(pid) = state.read_pid()
        && alive(pid)
        && let Some(base) = state.read_endpoint()
    {
        if demo && !state.demo_marker().exists() {
            bail!(
                "kumo is already running (pid {pid}) without the demo data: `kumo down`, then `kumo up --demo`"
            );
        }
        println!("kumo is already running");
        print_summary(state, &base, pid, None);
        return Ok(());
    }
    let started = Instant::now();
    let previous = state.read_endpoint();
    let exe = std::env::current_exe().context("cannot find the kumo executable")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.log_file())
        .with_context(|| format!("cannot open {}", state.log_file().display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(&state.root)
        .arg("up")
        .arg("--foreground");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if let Some(l) = listen {
        cmd.arg("--listen").arg(l);
    }
    if demo {
        cmd.arg("--demo");
    }
    // Its own process group: the cloud outlives this command and the terminal's Ctrl-C.
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().context("cannot start kumo in the background")?;
    let child_pid = child.id() as i32;

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut base: Option<String> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "kumo exited during start ({status}); the end of {}:\n{}",
                state.log_file().display(),
                tail(&state.log_file(), 30)
            );
        }
        if base.is_none() && state.read_pid() == Some(child_pid) {
            base = state.read_endpoint();
        }
        if let Some(b) = &base
            && HEALTH.iter().all(|(_, p)| http_status(b, p) == Some(200))
        {
            print_summary(state, b, child_pid, Some(started.elapsed()));
            if listen.is_none() && previous.as_deref() != Some(b.as_str()) && !b.ends_with(":5000")
            {
                println!(
                    "note: 127.0.0.1:5000 is in use, so kumo listens on {b} (choose with --listen)"
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(child_pid), Signal::SIGTERM);
            bail!(
                "kumo did not answer within 120 s; stopped it. The end of {}:\n{}",
                state.log_file().display(),
                tail(&state.log_file(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn down(state: &StateDir) -> Result<()> {
    let Some(pid) = state.read_pid() else {
        println!("kumo is not running (no {})", state.pid_file().display());
        return Ok(());
    };
    if !alive(pid) {
        let _ = std::fs::remove_file(state.pid_file());
        println!("kumo is not running (stale pid {pid} removed)");
        return Ok(());
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .with_context(|| format!("cannot signal pid {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        eprintln!("kumo (pid {pid}) did not stop within 30 s; killing it");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        while alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if state.read_pid() == Some(pid) {
        let _ = std::fs::remove_file(state.pid_file());
    }
    println!("kumo stopped (pid {pid})");
    Ok(())
}

pub fn status(state: &StateDir) -> Result<()> {
    match (state.read_pid(), state.read_endpoint()) {
        (Some(pid), Some(base)) if alive(pid) => {
            println!(
                "kumo is running (pid {pid}) at {base}/, state in {}",
                state.root.display()
            );
            let mut healthy = true;
            for (name, path) in HEALTH {
                let code = http_status(&base, path);
                healthy &= code == Some(200);
                let shown = code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "no answer".into());
                println!("  {name:<10} {base}{path}  {shown}");
            }
            if !healthy {
                std::process::exit(1);
            }
            Ok(())
        }
        _ => {
            println!("kumo is not running (state in {})", state.root.display());
            std::process::exit(3);
        }
    }
}

pub fn logs(state: &StateDir, follow: bool, lines: usize) -> Result<()> {
    let path = state.log_file();
    println!("{}", tail(&path, lines));
    if !follow {
        return Ok(());
    }
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pos = f.seek(SeekFrom::End(0))?;
    loop {
        let len = f.metadata()?.len();
        if len < pos {
            pos = 0;
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = String::new();
            f.read_to_string(&mut buf)?;
            print!("{buf}");
            std::io::stdout().flush()?;
            pos = len;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
