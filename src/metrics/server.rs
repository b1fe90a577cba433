//! The `/metrics` endpoint: a small HTTP/1.1 responder over a tokio listener.
//!
//! Scrapers send one short GET; nothing here needs a full HTTP server (the project's hyper
//! is built as a client only). Each request is read with a size and time bound, answered,
//! and the connection closed: a scraper opens a new one at its next interval, and a peer
//! that is not a scraper cannot hold more than [`MAX_CONNECTIONS`] connections or
//! [`MAX_REQUEST`] bytes of memory each.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::encode::{Format, render};

/// Longest request head read; longer ones get 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once; more wait in the listener's backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a peer has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a request asks for, as far as this endpoint cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
}

/// Parses a request head (up to and including the blank line); `None` when it is not
/// HTTP/1.x.
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let accept = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    let path = target.split('?').next().unwrap_or_default().to_string();
    Some(Request {
        method: method.to_string(),
        path,
        accept,
    })
}

/// The response to `request`: status line, content type and body.
pub fn respond(request: Option<&Request>, registry: &Registry) -> (u16, &'static str, String) {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let Some(r) = request else {
        return (400, PLAIN, "Bad request\n".into());
    };
    if r.path != "/metrics" {
        return (404, PLAIN, "Not found: try /metrics\n".into());
    }
    if r.method != "GET" && r.method != "HEAD" {
        return (405, PLAIN, "Method not allowed: GET /metrics\n".into());
    }
    let format = Format::from_accept(r.accept.as_deref());
    match render(registry, format) {
        Ok(body) => (200, format.content_type(), body),
        Err(_) => (500, PLAIN, "Cannot encode the metrics\n".into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// Reads the request head: `Ok(None)` when it is too long or never ends in time.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<Vec<u8>, u16>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head.truncate(end + 4);
                return Ok(Ok(()));
            }
            if head.len() >= MAX_REQUEST {
                return Ok(Err(431));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(Err(400));
            }
            head.extend_from_slice(&buf[..n]);
        }
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(Ok(()))) => Ok(Ok(head)),
        Ok(Ok(Err(status))) => Ok(Err(status)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Err(408)),
    }
}

async fn serve_one(mut stream: TcpStream, registry: Arc<Registry>) -> std::io::Result<()> {
    let (status, content_type, body, head_only) = match read_head(&mut stream).await? {
        Ok(head) => {
            let request = parse_request(&head);
            let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
            let (status, content_type, body) = respond(request.as_ref(), &registry);
            (status, content_type, body, head_only)
        }
        Err(status) => (
            status,
            "text/plain; charset=utf-8",
            format!("{}\n", reason(status)),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// Serves `/metrics` on `listener` until `until` is cancelled.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, until: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = until.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = until.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let registry = registry.clone();
                tokio::spawn(async move {
                    // A peer that went away is no concern of the run's.
                    let _ = serve_one(stream, registry).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("--metrics-listen: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line_and_accept() {
        let r = parse_request(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: application/openmetrics-text\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.accept.as_deref(), Some("application/openmetrics-text"));
        assert!(parse_request(b"GET /metrics SPDY/3\r\n\r\n").is_none());
        assert!(parse_request(b"\xff\xfe\r\n\r\n").is_none());
    }

    #[test]
    fn answers_404_and_405() {
        let registry = Registry::default();
        let req = |m: &str, p: &str| Request {
            method: m.into(),
            path: p.into(),
            accept: None,
        };
        assert_eq!(respond(Some(&req("GET", "/")), &registry).0, 404);
        assert_eq!(respond(Some(&req("POST", "/metrics")), &registry).0, 405);
        assert_eq!(respond(None, &registry).0, 400);
        let (status, ct, _) = respond(Some(&req("GET", "/metrics")), &registry);
        assert_eq!((status, ct), (200, Format::Text.content_type()));
    }

    #[tokio::test]
    async fn serves_over_tcp_and_bounds_the_head() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::new(Registry::default()), stop.clone()));
        let ask = |request: Vec<u8>| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&request).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok =
            ask(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n".to_vec())
                .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"));
        assert!(ok.ends_with("# EOF\n"));
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        // Exactly the bound, all of it read by the server (unread bytes would reset the
        // connection before the answer arrives).
        long.resize(MAX_REQUEST, b'a');
        assert!(ask(long).await.starts_with("HTTP/1.1 431 "));
        stop.cancel();
        server.await.unwrap();
    }
}
