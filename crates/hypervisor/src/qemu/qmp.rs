//! kumo's own small async client for the QEMU Machine Protocol (QMP), over a Unix socket.
//!
//! The protocol (QEMU's `docs/interop/qmp-spec`): the server greets with
//! `{"QMP": {"version": …, "capabilities": […]}}`, the client sends `qmp_capabilities` to leave
//! negotiation mode, then every line is a JSON object: a reply `{"return": …, "id": …}` or
//! `{"error": {"class": …, "desc": …}, "id": …}` to a command `{"execute": …, "arguments": …,
//! "id": …}`, or an asynchronous event `{"event": …, "data": …, "timestamp": {…}}`.
//!
//! Shape (the role Incus's `qmp` package plays for its QEMU driver):
//! - one connection per QEMU (QEMU serves one client per monitor socket at a time);
//! - a writer task owns the socket's write half, so a caller whose future is dropped mid-send
//!   can never leave half a command on the wire;
//! - a reader task hands each reply to the caller waiting for its `id` (replies may come in any
//!   order, and events can arrive before a command's reply) and events to a broadcast channel;
//! - every command has a timeout ([`QmpError::Timeout`]); a reply arriving after it is dropped;
//! - when the socket ends (QEMU exited, was killed, or crashed) every waiting command, every
//!   later command and every event subscriber gets [`QmpError::Closed`], which is how a caller
//!   tells "QEMU died" from "the command failed" ([`QmpError::Command`]).
//!
//! Reconnecting is the caller's job: the driver connects again to the QEMUs it finds running
//! when kumo starts.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 256;

/// The id of the `qmp_capabilities` command sent during the handshake.
const HANDSHAKE_ID: u64 = 0;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened or written for a reason other than the peer going away.
    #[error("QMP I/O error: {0}")]
    Io(#[from] io::Error),
    /// The connection ended: QEMU exited, was killed, or closed the monitor.
    #[error("QMP connection closed (QEMU exited or closed the monitor)")]
    Closed,
    /// QEMU ran the command and answered with an error.
    #[error("QMP command failed: {class}: {desc}")]
    Command { class: String, desc: String },
    /// No reply within the timeout; QEMU may still be alive (and may still run the command).
    #[error("QMP command {command} timed out")]
    Timeout { command: String },
    /// Something that is not QMP: bad JSON, an unexpected greeting or reply.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QmpVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
    /// Distribution package string, e.g. `Debian 1:7.2+dfsg-7+deb12u18`.
    pub package: String,
}

/// The time QEMU stamped on an event (seconds and microseconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QmpTimestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

/// An asynchronous event (`STOP`, `RESUME`, `SHUTDOWN`, `DEVICE_DELETED`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QmpEvent {
    pub event: String,
    /// `Value::Null` when the event has no data.
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub timestamp: QmpTimestamp,
}

/// `query-status`: whether the guest's vCPUs run, and QEMU's run state (`prelaunch`, `running`,
/// `paused`, `shutdown`, `guest-panicked`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub running: bool,
    pub status: String,
}

type Reply = Result<Value, QmpError>;

/// State shared by the handle and the two tasks.
struct Shared {
    state: Mutex<State>,
}

struct State {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// `None` once closed: dropping the only sender ends every subscriber's stream.
    events: Option<broadcast::Sender<QmpEvent>>,
    closed: bool,
}

impl Shared {
    /// Marks the connection dead and fails everything waiting on it.
    fn close(&self) {
        let mut state = self.state.lock();
        if !state.closed {
            tracing::debug!(pending = state.pending.len(), "QMP connection closed");
        }
        state.closed = true;
        state.events = None;
        for (_, waiter) in state.pending.drain() {
            let _ = waiter.send(Err(QmpError::Closed));
        }
    }

    fn complete(&self, id: u64, reply: Reply) {
        let waiter = self.state.lock().pending.remove(&id);
        match waiter {
            // The receiver may be gone (caller cancelled): nothing to do then.
            Some(waiter) => {
                let _ = waiter.send(reply);
            }
            None => tracing::debug!(id, "QMP reply for no waiting command (timed out?), dropped"),
        }
    }

    fn dispatch(&self, line: &str) {
        let message = match parse_object(line) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "QMP: skipping a line that is not a JSON object");
                return;
            }
        };
        if message.contains_key("event") {
            match serde_json::from_value::<QmpEvent>(Value::Object(message)) {
                Ok(event) => {
                    let sender = self.state.lock().events.clone();
                    // No subscriber is not an error: events nobody listens to are dropped.
                    if let Some(sender) = sender {
                        let _ = sender.send(event);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "QMP: malformed event skipped"),
            }
            return;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            // Replies without our numeric id (QEMU answers unparsable input so) are not ours.
            tracing::warn!(%line, "QMP: message without a known id skipped");
            return;
        };
        match reply_of(message) {
            Some(reply) => self.complete(id, reply),
            None => self.complete(
                id,
                Err(QmpError::Protocol(format!(
                    "reply with neither return nor error: {line}"
                ))),
            ),
        }
    }
}

/// `Some(Ok(return))`, `Some(Err(Command))`, or `None` if the object is neither.
fn reply_of(mut message: Map<String, Value>) -> Option<Reply> {
    if let Some(value) = message.remove("return") {
        return Some(Ok(value));
    }
    let error = message.remove("error")?;
    let field = |name: &str| {
        error
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Err(QmpError::Command {
        class: field("class"),
        desc: field("desc"),
    }))
}

fn parse_object(line: &str) -> Result<Map<String, Value>, QmpError> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(QmpError::Protocol(format!("not a JSON object: {line}"))),
        Err(e) => Err(QmpError::Protocol(format!("bad JSON ({e}): {line}"))),
    }
}

/// Whether a socket error means the peer went away.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

struct Outgoing {
    id: u64,
    line: Vec<u8>,
    /// A descriptor to pass with the line (SCM_RIGHTS), for `getfd`.
    fd: Option<OwnedFd>,
}

struct Inner {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicU64,
    version: QmpVersion,
    capabilities: Vec<String>,
    timeout: Duration,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ending both tasks drops both halves of the socket, which closes it.
        self.reader.abort();
        self.writer.abort();
    }
}

/// A QMP connection to one QEMU. Cheap to clone; clones share the connection, and any number of
/// tasks may run commands at once. The socket closes when the last clone is dropped.
#[derive(Clone)]
pub struct QmpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("version", &self.inner.version)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Removes a command's waiter when its caller stops waiting (timeout, cancellation).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.state.lock().pending.remove(&self.id);
    }
}

impl QmpClient {
    /// Connects to a QMP socket, reads the greeting and negotiates capabilities, all within
    /// `timeout`, which is also the default timeout of every command
    /// ([`QmpClient::execute_with_timeout`] sets another one).
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QmpClient, QmpError> {
        let handshake = async {
            let stream = UnixStream::connect(path).await?;
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let (version, capabilities) = read_greeting(&mut lines).await?;
            let line = format!("{{\"execute\":\"qmp_capabilities\",\"id\":{HANDSHAKE_ID}}}\n");
            write
                .write_all(line.as_bytes())
                .await
                .map_err(write_error)?;
            wait_capabilities_reply(&mut lines).await?;
            Ok::<_, QmpError>((lines, write, version, capabilities))
        };
        let (lines, write, version, capabilities) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| QmpError::Timeout {
                command: "qmp_capabilities".to_string(),
            })??;
        tracing::debug!(path = %path.display(), ?version, "QMP connected");

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                events: Some(events),
                closed: false,
            }),
        });
        let (outgoing, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(lines, shared.clone()));
        let writer = tokio::spawn(write_loop(write, queue, shared.clone()));
        Ok(QmpClient {
            inner: Arc::new(Inner {
                shared,
                outgoing,
                next_id: AtomicU64::new(HANDSHAKE_ID + 1),
                version,
                capabilities,
                timeout,
                reader,
                writer,
            }),
        })
    }

    /// QEMU's version, from the greeting.
    pub fn version(&self) -> &QmpVersion {
        &self.inner.version
    }

    /// The capabilities QEMU offered in its greeting (e.g. `oob`); none is enabled.
    pub fn capabilities(&self) -> &[String] {
        &self.inner.capabilities
    }

    /// Whether the connection has ended (every command now fails with [`QmpError::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.state.lock().closed
    }

    /// Events from now on. The receiver ends ([`broadcast::error::RecvError::Closed`]) when the
    /// connection does, and reports `Lagged` if it fell more than 256 events behind.
    pub fn subscribe_events(&self) -> broadcast::Receiver<QmpEvent> {
        match &self.inner.shared.state.lock().events {
            Some(sender) => sender.subscribe(),
            // Already closed: a receiver whose sender is gone reports Closed at once.
            None => broadcast::channel(1).1,
        }
    }

    /// Runs a command with the connection's default timeout; returns its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        self.execute_with_timeout(command, arguments, self.inner.timeout)
            .await
    }

    /// Runs a command, waiting at most `timeout` for its reply.
    pub async fn execute_with_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.send_command(command, arguments, timeout, None).await
    }

    /// `getfd`: hands QEMU a file descriptor (sent as SCM_RIGHTS with the command) under
    /// `name`, for a later command that takes it by name (`netdev_add` with `fd`).
    pub async fn getfd(&self, name: &str, fd: OwnedFd) -> Result<(), QmpError> {
        let args = serde_json::json!({ "fdname": name });
        self.send_command("getfd", Some(args), self.inner.timeout, Some(fd))
            .await
            .map(|_| ())
    }

    async fn send_command(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
        fd: Option<OwnedFd>,
    ) -> Result<Value, QmpError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = Map::new();
        request.insert("execute".into(), Value::from(command));
        if let Some(arguments) = arguments {
            request.insert("arguments".into(), arguments);
        }
        request.insert("id".into(), Value::from(id));
        let mut line = serde_json::to_vec(&request)
            .map_err(|e| QmpError::Protocol(format!("cannot encode {command}: {e}")))?;
        line.push(b'\n');

        let (waiter, reply) = oneshot::channel();
        {
            let mut state = self.inner.shared.state.lock();
            if state.closed {
                return Err(QmpError::Closed);
            }
            state.pending.insert(id, waiter);
        }
        let _guard = PendingGuard {
            shared: &self.inner.shared,
            id,
        };
        if self.inner.outgoing.send(Outgoing { id, line, fd }).is_err() {
            return Err(QmpError::Closed);
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(result)) => result,
            // The waiter was dropped unanswered: only happens as the connection goes away.
            Ok(Err(_)) => Err(QmpError::Closed),
            Err(_) => Err(QmpError::Timeout {
                command: command.to_string(),
            }),
        }
    }

    async fn execute_unit(&self, command: &str) -> Result<(), QmpError> {
        self.execute(command, None).await.map(|_| ())
    }

    /// `query-status`.
    pub async fn query_status(&self) -> Result<RunState, QmpError> {
        let value = self.execute("query-status", None).await?;
        serde_json::from_value(value.clone())
            .map_err(|e| QmpError::Protocol(format!("query-status returned {value}: {e}")))
    }

    /// `cont`: start (from `-S`/prelaunch) or resume the vCPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute_unit("cont").await
    }

    /// `stop`: pause the vCPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute_unit("stop").await
    }

    /// `system_powerdown`: press the ACPI power button (the guest may ignore it).
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute_unit("system_powerdown").await
    }

    /// `system_reset`: hard reset.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute_unit("system_reset").await
    }

    /// `netdev_add`: a host network backend; `netdev` holds its options, `type` and `id`
    /// included (QMP takes them typed: booleans as booleans).
    pub async fn netdev_add(&self, netdev: Value) -> Result<(), QmpError> {
        self.execute("netdev_add", Some(netdev)).await.map(|_| ())
    }

    /// `netdev_del`: remove the backend `id` (its NIC should be gone first).
    pub async fn netdev_del(&self, id: &str) -> Result<(), QmpError> {
        let args = serde_json::json!({ "id": id });
        self.execute("netdev_del", Some(args)).await.map(|_| ())
    }

    /// `device_add`: plug a device; `device` holds `driver`, `id`, `bus` and its properties.
    pub async fn device_add(&self, device: Value) -> Result<(), QmpError> {
        self.execute("device_add", Some(device)).await.map(|_| ())
    }

    /// `device_del`: ask for the device to be unplugged. For a PCI device this only starts
    /// the unplug: the guest must let go of it, and `DEVICE_DELETED` with `data.device == id`
    /// says when it is gone.
    pub async fn device_del(&self, id: &str) -> Result<(), QmpError> {
        let args = serde_json::json!({ "id": id });
        self.execute("device_del", Some(args)).await.map(|_| ())
    }

    /// `blockdev-add`: a block node; `node` holds its `driver`, `node-name` and options.
    pub async fn blockdev_add(&self, node: Value) -> Result<(), QmpError> {
        self.execute("blockdev-add", Some(node)).await.map(|_| ())
    }

    /// `blockdev-del`: remove the block node `node_name` (nothing may use it any more).
    pub async fn blockdev_del(&self, node_name: &str) -> Result<(), QmpError> {
        let args = serde_json::json!({ "node-name": node_name });
        self.execute("blockdev-del", Some(args)).await.map(|_| ())
    }

    /// `block_resize`: grow the image under the block node `node_name` to `size` bytes;
    /// the device using it tells the guest (virtio-blk's config-change interrupt).
    pub async fn block_resize(&self, node_name: &str, size: u64) -> Result<(), QmpError> {
        let args = serde_json::json!({ "node-name": node_name, "size": size });
        self.execute("block_resize", Some(args)).await.map(|_| ())
    }

    /// `qom-list`: the properties (and children) of the QOM object at `path`, as
    /// `(name, type)` pairs.
    pub async fn qom_list(&self, path: &str) -> Result<Vec<(String, String)>, QmpError> {
        let args = serde_json::json!({ "path": path });
        let value = self.execute("qom-list", Some(args)).await?;
        Ok(value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    p["type"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// `quit`: QEMU exits. Also `Ok` if QEMU closed the socket before its reply arrived; the
    /// connection is closed afterwards either way.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute_unit("quit").await {
            Ok(()) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl QmpError {
    /// QEMU said the device or backend named does not exist (`DeviceNotFound`, or a
    /// `GenericError` whose text says so, as `netdev_del` answers).
    pub fn is_not_found(&self) -> bool {
        match self {
            QmpError::Command { class, desc } => {
                class == "DeviceNotFound" || desc.contains("not found")
            }
            _ => false,
        }
    }
}

fn write_error(e: io::Error) -> QmpError {
    if peer_gone(&e) {
        QmpError::Closed
    } else {
        QmpError::Io(e)
    }
}

async fn next_line(lines: &mut Lines<BufReader<OwnedReadHalf>>) -> Result<String, QmpError> {
    match lines.next_line().await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(QmpError::Closed),
        Err(e) if peer_gone(&e) => Err(QmpError::Closed),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Err(QmpError::Protocol(format!("not UTF-8: {e}")))
        }
        Err(e) => Err(QmpError::Io(e)),
    }
}

#[derive(Deserialize)]
struct Greeting {
    #[serde(rename = "QMP")]
    qmp: GreetingBody,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: GreetingVersion,
    #[serde(default)]
    capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingVersion {
    qemu: GreetingQemu,
    #[serde(default)]
    package: String,
}

#[derive(Deserialize)]
struct GreetingQemu {
    major: u32,
    minor: u32,
    micro: u32,
}

async fn read_greeting(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
) -> Result<(QmpVersion, Vec<String>), QmpError> {
    let line = next_line(lines).await?;
    let greeting: Greeting = serde_json::from_str(&line)
        .map_err(|e| QmpError::Protocol(format!("unexpected greeting ({e}): {line}")))?;
    let GreetingBody {
        version,
        capabilities,
    } = greeting.qmp;
    Ok((
        QmpVersion {
            major: version.qemu.major,
            minor: version.qemu.minor,
            micro: version.qemu.micro,
            package: version.package.trim().to_string(),
        },
        capabilities,
    ))
}

/// Waits for the reply to `qmp_capabilities`, skipping events (QEMU may send some early).
async fn wait_capabilities_reply(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
) -> Result<(), QmpError> {
    loop {
        let line = next_line(lines).await?;
        let message = parse_object(&line)?;
        if message.contains_key("event") {
            tracing::debug!(%line, "QMP event during negotiation skipped");
            continue;
        }
        if message.get("id").and_then(Value::as_u64) != Some(HANDSHAKE_ID) {
            return Err(QmpError::Protocol(format!(
                "unexpected reply to qmp_capabilities: {line}"
            )));
        }
        return match reply_of(message) {
            Some(reply) => reply.map(|_| ()),
            None => Err(QmpError::Protocol(format!(
                "unexpected reply to qmp_capabilities: {line}"
            ))),
        };
    }
}

async fn read_loop(mut lines: Lines<BufReader<OwnedReadHalf>>, shared: Arc<Shared>) {
    loop {
        match next_line(&mut lines).await {
            Ok(line) => shared.dispatch(&line),
            Err(QmpError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "QMP read failed, closing the connection");
                break;
            }
        }
    }
    shared.close();
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    while let Some(Outgoing { id, line, fd }) = queue.recv().await {
        let sent = match fd {
            None => write.write_all(&line).await,
            Some(fd) => send_with_fd(&mut write, &line, &fd).await,
        };
        if let Err(e) = sent {
            // A partly written command would garble the stream: the connection is over.
            tracing::warn!(error = %e, "QMP write failed, closing the connection");
            shared.complete(id, Err(write_error(e)));
            shared.close();
            return;
        }
    }
}

/// Writes `line` with `fd` attached (SCM_RIGHTS) to its first bytes, as QEMU's monitor takes
/// a descriptor for the command it comes with.
async fn send_with_fd(write: &mut OwnedWriteHalf, line: &[u8], fd: &OwnedFd) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    let stream: &UnixStream = write.as_ref();
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        stream.writable().await?;
        let attempt = stream.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<UnixAddr>(
                stream.as_raw_fd(),
                &[io::IoSlice::new(line)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(io::Error::from)
        });
        match attempt {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    write.write_all(&line[sent..]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::future::Future;
    use std::path::PathBuf;
    use tokio::net::UnixListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// The QEMU side of a fake QMP connection.
    struct Peer {
        lines: Lines<BufReader<OwnedReadHalf>>,
        write: OwnedWriteHalf,
    }

    impl Peer {
        async fn send(&mut self, message: Value) {
            let line = format!("{message}\n");
            self.write.write_all(line.as_bytes()).await.unwrap();
        }

        async fn send_raw(&mut self, line: &str) {
            self.write.write_all(line.as_bytes()).await.unwrap();
        }

        async fn recv(&mut self) -> Value {
            let line = self.lines.next_line().await.unwrap().unwrap();
            serde_json::from_str(&line).unwrap()
        }

        async fn greet(&mut self) {
            self.send(json!({"QMP": {
                "version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": " Debian 1:7.2"},
                "capabilities": ["oob"]}}))
                .await;
        }

        async fn handshake(&mut self) {
            self.greet().await;
            let command = self.recv().await;
            assert_eq!(command["execute"], "qmp_capabilities");
            assert!(command.get("arguments").is_none());
            self.send(json!({"return": {}, "id": command["id"]})).await;
        }

        /// Reads a command, checks its name, returns its id.
        async fn expect(&mut self, name: &str) -> Value {
            let command = self.recv().await;
            assert_eq!(command["execute"], name, "{command}");
            command["id"].clone()
        }
    }

    /// A socket in a temp dir served once by `script` (playing QEMU).
    fn serve<F, Fut>(script: F) -> (tempfile::TempDir, PathBuf, JoinHandle<()>)
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, write) = stream.into_split();
            script(Peer {
                lines: BufReader::new(read).lines(),
                write,
            })
            .await;
        });
        (dir, path, task)
    }

    #[tokio::test]
    async fn handshake_keeps_the_version_and_skips_early_events() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.greet().await;
            let command = peer.recv().await;
            assert_eq!(command["execute"], "qmp_capabilities");
            // Events may come before the reply (seen with QEMU and qemu-storage-daemon).
            peer.send(json!({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}))
                .await;
            peer.send(json!({"return": {}, "id": command["id"]})).await;
            let id = peer.expect("query-status").await;
            peer.send(json!({"return": {"running": false, "singlestep": false, "status": "prelaunch"}, "id": id}))
                .await;
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        assert_eq!(
            client.version(),
            &QmpVersion {
                major: 7,
                minor: 2,
                micro: 22,
                package: "Debian 1:7.2".into()
            }
        );
        assert_eq!(client.capabilities(), ["oob".to_string()]);
        let status = client.query_status().await.unwrap();
        assert_eq!(
            status,
            RunState {
                running: false,
                status: "prelaunch".into()
            }
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_in_any_order() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            let mut ids = HashMap::new();
            for _ in 0..2 {
                let command = peer.recv().await;
                ids.insert(
                    command["execute"].as_str().unwrap().to_string(),
                    command["id"].clone(),
                );
            }
            assert_ne!(ids["first"], ids["second"]);
            peer.send(json!({"return": {"who": "second"}, "id": ids["second"]}))
                .await;
            peer.send(json!({"event": "NOISE", "data": {}, "timestamp": {"seconds": 0, "microseconds": 0}}))
                .await;
            peer.send(json!({"return": {"who": "first"}, "id": ids["first"]}))
                .await;
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let other = client.clone();
        let (first, second) = tokio::join!(
            client.execute("first", Some(json!({"n": 1}))),
            other.execute("second", None)
        );
        assert_eq!(first.unwrap(), json!({"who": "first"}));
        assert_eq!(second.unwrap(), json!({"who": "second"}));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_error_reply_is_a_command_error_and_the_connection_lives_on() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            let command = peer.recv().await;
            assert_eq!(command["arguments"], json!({"id": "nope"}));
            peer.send(json!({"error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}, "id": command["id"]}))
                .await;
            let id = peer.expect("cont").await;
            peer.send(json!({"return": {}, "id": id})).await;
            // Stay up until the client hangs up.
            assert!(peer.lines.next_line().await.unwrap().is_none());
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let err = client
            .execute("device_del", Some(json!({"id": "nope"})))
            .await
            .unwrap_err();
        match err {
            QmpError::Command { class, desc } => {
                assert_eq!(class, "DeviceNotFound");
                assert_eq!(desc, "Device 'nope' not found");
            }
            other => panic!("expected a command error, got {other:?}"),
        }
        client.cont().await.unwrap();
        assert!(!client.is_closed());
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn events_reach_every_subscriber() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            let id = peer.expect("stop").await;
            peer.send(json!({"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "STOP"}))
                .await;
            peer.send(json!({"return": {}, "id": id})).await;
            peer.send(json!({"event": "DEVICE_DELETED", "data": {"device": "vol1", "path": "/machine/peripheral/vol1"},
                "timestamp": {"seconds": 1700000001, "microseconds": 0}}))
                .await;
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let mut one = client.subscribe_events();
        let mut two = client.subscribe_events();
        client.stop().await.unwrap();
        let stop = one.recv().await.unwrap();
        assert_eq!(stop.event, "STOP");
        assert_eq!(stop.data, Value::Null);
        assert_eq!(
            stop.timestamp,
            QmpTimestamp {
                seconds: 1_700_000_000,
                microseconds: 123_456
            }
        );
        let deleted = one.recv().await.unwrap();
        assert_eq!(deleted.event, "DEVICE_DELETED");
        assert_eq!(deleted.data["device"], "vol1");
        assert_eq!(two.recv().await.unwrap(), stop);
        assert_eq!(two.recv().await.unwrap(), deleted);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn qemu_dying_mid_command_is_closed_for_everyone() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            peer.expect("a").await;
            peer.expect("b").await;
            // Dropping the peer closes the socket, as QEMU exiting does.
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let mut events = client.subscribe_events();
        let (a, b) = tokio::join!(client.execute("a", None), client.execute("b", None));
        assert!(matches!(a, Err(QmpError::Closed)), "{a:?}");
        assert!(matches!(b, Err(QmpError::Closed)), "{b:?}");
        assert!(client.is_closed());
        let later = client.query_status().await;
        assert!(matches!(later, Err(QmpError::Closed)), "{later:?}");
        assert!(matches!(
            events.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert!(matches!(
            client.subscribe_events().recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        // quit on a dead QEMU is not an error: it is gone either way.
        client.quit().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn no_reply_is_a_timeout_and_a_late_reply_is_dropped() {
        let (late_tx, late_rx) = oneshot::channel::<()>();
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            let slow = peer.expect("slow").await;
            late_rx.await.unwrap();
            let next = peer.expect("query-status").await;
            peer.send(json!({"return": {"late": true}, "id": slow}))
                .await;
            peer.send(json!({"return": {"running": true, "status": "running"}, "id": next}))
                .await;
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let err = client
            .execute_with_timeout("slow", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, QmpError::Timeout { command } if command == "slow"),
            "{err:?}"
        );
        assert!(!client.is_closed());
        late_tx.send(()).unwrap();
        let status = client.query_status().await.unwrap();
        assert!(status.running);
        assert!(client.inner.shared.state.lock().pending.is_empty());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_greeting_is_a_protocol_error() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.send(json!({"hello": "not qemu"})).await;
        });
        let err = QmpClient::connect(&path, TIMEOUT).await.unwrap_err();
        assert!(matches!(err, QmpError::Protocol(_)), "{err:?}");
        server.await.unwrap();

        let (_dir, path, server) = serve(|mut peer| async move {
            peer.send_raw("{not json\n").await;
        });
        let err = QmpClient::connect(&path, TIMEOUT).await.unwrap_err();
        assert!(matches!(err, QmpError::Protocol(_)), "{err:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refused_capabilities_is_a_command_error() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.greet().await;
            let id = peer.expect("qmp_capabilities").await;
            peer.send(json!({"error": {"class": "CommandNotFound", "desc": "no"}, "id": id}))
                .await;
        });
        let err = QmpClient::connect(&path, TIMEOUT).await.unwrap_err();
        assert!(matches!(err, QmpError::Command { .. }), "{err:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_missing_socket_is_io() {
        let (_dir, path, server) = serve(|peer| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(peer);
        });
        let err = QmpClient::connect(&path, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        server.abort();

        let dir = tempfile::tempdir().unwrap();
        let err = QmpClient::connect(&dir.path().join("absent.sock"), TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Io(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_server_closing_before_the_greeting_is_closed() {
        let (_dir, path, server) = serve(|peer| async move { drop(peer) });
        let err = QmpClient::connect(&path, TIMEOUT).await.unwrap_err();
        assert!(matches!(err, QmpError::Closed), "{err:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_last_handle_closes_the_socket() {
        let (_dir, path, server) = serve(|mut peer| async move {
            peer.handshake().await;
            assert!(peer.lines.next_line().await.unwrap().is_none());
        });
        let client = QmpClient::connect(&path, TIMEOUT).await.unwrap();
        let clone = client.clone();
        drop(client);
        drop(clone);
        tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
    }
}
