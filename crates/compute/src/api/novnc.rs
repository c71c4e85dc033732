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
use http::{HeaderMap, StatusCode};
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
    headers: HeaderMap,
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
    if let Err(why) = check_origin(&headers, &svc.cfg.console_allowed_origins) {
        tracing::warn!(origin = ?headers.get(http::header::ORIGIN), "console connection refused: {why}");
        return Fault::forbidden(why).into_response();
    }
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

/// nova-novncproxy's Origin check: a page of another site must not open a console with a
/// token it got hold of (cross-site websocket hijacking). Browsers always send `Origin`; its
/// host must be the one the proxy was reached at (`Host`) or one of `[console]
/// allowed_origins`. No `Origin`: not a browser, nothing to check.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), &'static str> {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<http::Uri>().ok())
        // A serialized origin is scheme://host[:port]; "null" (a sandboxed page) is not one.
        .filter(|u| u.scheme().is_some())
        .and_then(|u| {
            u.host()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        })
        .filter(|h| !h.is_empty())
        .ok_or("Origin header not valid.")?;
    let expected = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| format!("http://{h}").parse::<http::Uri>().ok())
        .and_then(|u| {
            u.host()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        });
    let matches = expected.as_deref() == Some(origin_host.as_str())
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin_host));
    if matches {
        Ok(())
    } else {
        Err("Origin header does not match this host.")
    }
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
    fn origins_as_nova_novncproxy_checks_them() {
        let h = |origin: Option<&'static str>, host: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::HOST, http::HeaderValue::from_static(host));
            if let Some(o) = origin {
                m.insert(http::header::ORIGIN, http::HeaderValue::from_static(o));
            }
            m
        };
        let none: &[String] = &[];
        assert!(check_origin(&h(None, "10.0.0.5:5000"), none).is_ok());
        assert!(check_origin(&h(Some("http://10.0.0.5:5000"), "10.0.0.5:5000"), none).is_ok());
        // The port may differ (a TLS terminator in front), the host may not.
        assert!(
            check_origin(
                &h(Some("https://Cloud.example"), "cloud.example:5000"),
                none
            )
            .is_ok()
        );
        assert!(check_origin(&h(Some("http://[::1]:5000"), "[::1]:5000"), none).is_ok());
        assert_eq!(
            check_origin(&h(Some("https://evil.example"), "cloud.example"), none),
            Err("Origin header does not match this host.")
        );
        assert_eq!(
            check_origin(&h(Some("null"), "cloud.example"), none),
            Err("Origin header not valid.")
        );
        let allowed = vec!["dash.example".to_string()];
        assert!(check_origin(&h(Some("https://dash.example"), "cloud.example"), &allowed).is_ok());
    }

    #[test]
    fn the_token_comes_from_the_query() {
        assert_eq!(token_of(Some("token=abc")), Some("abc".into()));
        assert_eq!(token_of(Some("x=1&token=a-b_c")), Some("a-b_c".into()));
        assert_eq!(token_of(Some("token=")), None);
        assert_eq!(token_of(None), None);
    }
}
