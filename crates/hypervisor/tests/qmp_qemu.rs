//! The QMP client against a real QEMU (TCG, no guest: `-S` keeps the vCPUs stopped, and
//! starting them with no firmware image still runs SeaBIOS, which is enough for run states).
//! Skipped, with a message, when `qemu-system-x86_64` is not installed (Debian:
//! `apt-get install qemu-system-x86 qemu-utils`).

use hypervisor::qemu::qmp::{QmpClient, QmpError, QmpEvent};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const QEMU: &str = "qemu-system-x86_64";
const TIMEOUT: Duration = Duration::from_secs(10);

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Kills QEMU (by its PID, through the `Child`) and reaps it, whatever the test did.
struct QemuGuard {
    child: Child,
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn connect_when_listening(socket: &Path, qemu: &mut QemuGuard) -> QmpClient {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = qemu.child.try_wait().expect("waitpid on QEMU") {
            panic!("QEMU exited early ({status}); see its log in the test's temp dir");
        }
        match QmpClient::connect(socket, TIMEOUT).await {
            Ok(client) => return client,
            // Not listening yet.
            Err(QmpError::Io(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to QEMU's QMP socket: {e}"),
        }
    }
}

async fn wait_event(events: &mut broadcast::Receiver<QmpEvent>, name: &str) -> QmpEvent {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within {TIMEOUT:?}"))
            .expect("QMP event stream");
        if event.event == name {
            return event;
        }
    }
}

#[tokio::test]
async fn qmp_against_a_real_qemu() {
    let Some(qemu) = find_in_path(QEMU) else {
        eprintln!(
            "SKIPPED qmp_against_a_real_qemu: {QEMU} not found in PATH \
             (install Debian's qemu-system-x86 to run it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let log = std::fs::File::create(dir.path().join("qemu.log")).unwrap();
    let child = Command::new(&qemu)
        .args(["-machine", "q35", "-accel", "tcg", "-m", "64"])
        .args(["-nodefaults", "-display", "none", "-S", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut guard = QemuGuard { child };

    let client = connect_when_listening(&socket, &mut guard).await;
    assert!(client.version().major >= 7, "{:?}", client.version());
    eprintln!("real QEMU {:?} at {}", client.version(), qemu.display());
    let mut events = client.subscribe_events();

    let status = client.query_status().await.unwrap();
    assert!(!status.running);
    assert_eq!(status.status, "prelaunch");

    client.cont().await.unwrap();
    wait_event(&mut events, "RESUME").await;
    let status = client.query_status().await.unwrap();
    assert!(status.running);
    assert_eq!(status.status, "running");

    client.stop().await.unwrap();
    let stop = wait_event(&mut events, "STOP").await;
    assert!(stop.timestamp.seconds > 0);
    let status = client.query_status().await.unwrap();
    assert!(!status.running);
    assert_eq!(status.status, "paused");

    client.cont().await.unwrap();
    wait_event(&mut events, "RESUME").await;

    // A failing command is a command error, not a dead QEMU.
    let err = client
        .execute("device_del", Some(serde_json::json!({"id": "nope"})))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Command { .. }), "{err:?}");
    assert!(!client.is_closed());

    client.quit().await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "QEMU still running after quit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "QEMU exited with {status}");

    // The event stream ends, and every command from now on says the QEMU is gone.
    while let Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) =
        tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap()
    {}
    assert!(client.is_closed());
    let err = client.query_status().await.unwrap_err();
    assert!(matches!(err, QmpError::Closed), "{err:?}");
}
