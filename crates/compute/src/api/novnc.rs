//! The console proxy (nova-novncproxy's job), mounted at `/novnc` on kumo's one listener:
//!
//! - `GET /novnc/websockify?token=T`: a websocket upgrade, only for a valid, unexpired, unused
//!   token (401 and no upgrade otherwise). The token is used up by this first connection;
//!   then bytes flow between the browser and the guest's VNC server (the driver's target:
//!   a unix socket or TCP), as binary frames, until either side ends.
//! - `GET /novnc/<file>`: noVNC's own files from `[vnc] novnc_path`, so the URL the API hands
//!   out (`/novnc/vnc_lite.html?path=...`) works with nothing else running.
//!
//! No Keystone token here: the browser cannot send one, the console token is the credential.

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Family, Fault};
use futures::SinkExt;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

use crate::console::{ConsoleAuth, ConsoleTarget};
use crate::core::ComputeService;

/// How long connecting to the guest's VNC server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from the VNC server per websocket frame at most.
const CHUNK: usize = 64 * 1024;

/// The proxy router, to be nested at `/novnc`.
pub fn router(svc: Arc<ComputeService>) -> Router {
    Router::new()
        .route("/websockify", get(websockify))
        .fallback(static_file)
        .with_state(svc)
        .layer(common::fault::FaultLayer::new(Family::Compute))
}

/// Both directions of a connection to the guest's VNC server.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(target: &ConsoleTarget) -> std::io::Result<Box<dyn Stream>> {
    let fut = async {
        Ok::<Box<dyn Stream>, std::io::Error>(match target {
            ConsoleTarget::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            ConsoleTarget::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                // RFB is interactive: key presses and small updates must not wait for Nagle.
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

fn token_of(query: Option<&str>) -> Option<String> {
    let pairs = super::query_pairs(query);
    super::query_get(&pairs, "token").filter(|t| !t.is_empty())
}

async fn websockify(
    State(svc): State<Arc<ComputeService>>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Checked before the token, so a plain GET (a link preview, a curl) does not use it up.
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return Fault::bad_request(format!(
                "A websocket upgrade is expected here: {rejection}"
            ))
            .into_response();
        }
    };
    let Some(token) = token_of(query.as_deref()) else {
        return Fault::unauthorized("The token is invalid or has expired").into_response();
    };
    let auth = match svc.consume_console_token(&token).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(reason = ?e, "console connection refused");
            return Fault::unauthorized(e.to_string()).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let target = match ConsoleTarget::parse(&auth.target) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(instance = %auth.instance_uuid, error = %e, "console target unusable");
            return Fault::internal("The console target is unusable.").into_response();
        }
    };
    // Connect before upgrading: a guest that is gone gets an HTTP error the browser shows,
    // not a websocket that opens and closes at once.
    let stream = match connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(instance = %auth.instance_uuid, target = %auth.target, error = %e, "console target unreachable");
            return Fault::new(
                StatusCode::BAD_GATEWAY,
                "The instance's console could not be reached.",
            )
            .into_response();
        }
    };
    tracing::info!(instance = %auth.instance_uuid, host = %auth.host, target = %auth.target, "console connected");
    // noVNC asks for `binary` (older websockify clients also offer `base64`, unsupported).
    upgrade
        .protocols(["binary"])
        .on_upgrade(move |socket| pump(socket, stream, auth))
}

/// Copy bytes both ways until either side ends, then close the other cleanly.
async fn pump(mut ws: WebSocket, stream: Box<dyn Stream>, auth: ConsoleAuth) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; CHUNK];
    let (mut to_guest, mut to_client) = (0u64, 0u64);
    let ended_by = loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Err(e) = wr.write_all(&b).await {
                        break format!("write to the VNC server failed: {e}");
                    }
                    to_guest += b.len() as u64;
                }
                // websockify's text frames carry base64, a protocol noVNC no longer uses.
                Some(Ok(Message::Text(_))) => {
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::UNSUPPORTED,
                            reason: "binary frames only".into(),
                        })))
                        .await;
                    break "client sent text".to_string();
                }
                // axum answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    break "client closed".to_string();
                }
                Some(Err(e)) => break format!("client error: {e}"),
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::NORMAL,
                            reason: "the console closed".into(),
                        })))
                        .await;
                    break match n {
                        Err(e) => format!("read from the VNC server failed: {e}"),
                        _ => "VNC server closed".to_string(),
                    };
                }
                Ok(n) => {
                    let frame = Message::Binary(axum::body::Bytes::copy_from_slice(&buf[..n]));
                    if let Err(e) = ws.send(frame).await {
                        break format!("send to the client failed: {e}");
                    }
                    to_client += n as u64;
                }
            },
        }
    };
    let _ = wr.shutdown().await;
    let _ = ws.close().await;
    tracing::info!(
        instance = %auth.instance_uuid,
        bytes_to_guest = to_guest,
        bytes_to_client = to_client,
        ended_by = %ended_by,
        "console disconnected"
    );
}

/// noVNC's files; `ServeDir` refuses `..` and absolute components, so nothing outside
/// `[vnc] novnc_path` is reachable.
async fn static_file(State(svc): State<Arc<ComputeService>>, req: Request) -> Response {
    let dir = &svc.cfg.novnc_path;
    if !dir.is_dir() {
        return Fault::not_found(format!(
            "noVNC is not installed: {} does not exist (Debian: apt-get install novnc, or set [vnc] novnc_path).",
            dir.display()
        ))
        .into_response();
    }
    match tower_http::services::ServeDir::new(dir)
        .append_index_html_on_directories(false)
        .oneshot(req)
        .await
    {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_query() {
        assert_eq!(token_of(Some("token=abc")), Some("abc".into()));
        assert_eq!(token_of(Some("x=1&token=a-b_c")), Some("a-b_c".into()));
        assert_eq!(token_of(Some("token=")), None);
        assert_eq!(token_of(None), None);
    }
}
