//! The operations listener (`--metrics-addr`): `GET /metrics` (Prometheus text format),
//! `/livez` and `/readyz` (200 or 503 with the reasons in the body).
//!
//! A few lines of HTTP/1.1 on a tokio listener instead of a web framework: three
//! read-only endpoints, one request per connection, bounded request size and time, so a
//! slow or hostile client costs one small task and never the ingest.

use super::health::HEALTH;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read; longer ones get 431.
const REQUEST_HEAD_BYTES_MAX: usize = 8 << 10;
/// A client has this long to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on --metrics-addr {addr}: {source}; pick a free address (e.g. 127.0.0.1:9464) or leave it unset")]
pub struct ListenError {
    addr: String,
    source: std::io::Error,
}

/// Binds `addr`; the returned listener serves once [`serve`] runs it.
///
/// # Errors
///
/// The address is taken or not ours.
pub async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError {
        addr: addr.to_string(),
        source,
    })
}

/// Serves requests forever.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors, say: try again shortly instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &handle)).await;
        });
    }
}

/// The local address a listener is bound to (for logs when the port was 0).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await;
        }
    }
    let (status, content_type, body) = route(&head, handle);
    respond(&mut stream, status, content_type, &body).await
}

/// The answer to a request head: status, content type and body.
fn route(head: &[u8], handle: &PrometheusHandle) -> (u16, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "only GET\n".into());
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            // Keeps the histograms' windows bounded between scrapes.
            handle.run_upkeep();
            let _ = HEALTH.readiness();
            (200, "text/plain; version=0.0.4", handle.render())
        }
        "/livez" | "/ping" => match HEALTH.liveness() {
            Ok(()) => (200, "text/plain", "ok\n".into()),
            Err(reason) => (503, "text/plain", format!("not live: {reason}\n")),
        },
        "/readyz" | "/ready" => match HEALTH.readiness() {
            Ok(()) => (200, "text/plain", "ready\n".into()),
            Err(reasons) => (
                503,
                "text/plain",
                format!("not ready:\n- {}\n", reasons.join("\n- ")),
            ),
        },
        _ => (
            404,
            "text/plain",
            "not found: try /metrics, /livez or /readyz\n".into(),
        ),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
