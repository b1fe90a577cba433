//! The `/metrics` endpoint: a small HTTP/1.1 responder over a tokio listener.
//!
//! Scrapers send one short GET; nothing here needs a full HTTP server (the project's hyper
//! is built as a client only). Each request is read with a size and time bound, answered,
//! and the connection closed: a scraper opens a new one at its next interval. A peer that
//! is not a scraper cannot hold more than [`MAX_PER_PEER`] of the [`MAX_CONNECTIONS`]
//! connections, nor any for longer than [`EXCHANGE_TIMEOUT`] (one that never reads its
//! answer included), nor more than [`MAX_REQUEST`] bytes of memory each. The body is
//! rendered once per change of the figures ([`Bodies`]), not per scrape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
/// Connections served at once from one peer address; more are closed at once, so one
/// misbehaving host cannot take the endpoint from the others.
pub const MAX_PER_PEER: usize = 4;
/// Time a peer has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a whole exchange may take, the answer's writing included: a peer that never reads
/// cannot hold a connection for longer.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds [`serve`] applies (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub per_peer: usize,
    pub exchange: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: MAX_CONNECTIONS,
            per_peer: MAX_PER_PEER,
            exchange: EXCHANGE_TIMEOUT,
        }
    }
}

/// The metrics bodies, rendered once per change of the figures and format however many
/// scrapers ask, and off the runtime's workers (thousands of series are CPU work).
pub struct Bodies {
    registry: Arc<Registry>,
    /// Moves whenever the figures behind the registry change.
    generation: Box<dyn Fn() -> u64 + Send + Sync>,
    cache: tokio::sync::Mutex<Vec<(Format, u64, Arc<String>)>>,
}

impl Bodies {
    pub fn new(registry: Registry, generation: impl Fn() -> u64 + Send + Sync + 'static) -> Bodies {
        Bodies {
            registry: Arc::new(registry),
            generation: Box::new(generation),
            cache: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// The body in `format` for the figures as they are now.
    async fn get(&self, format: Format) -> Result<Arc<String>, std::fmt::Error> {
        let now = (self.generation)();
        // One renders, the others wait for its body.
        let mut cache = self.cache.lock().await;
        if let Some((_, _, body)) = cache.iter().find(|(f, g, _)| *f == format && *g == now) {
            return Ok(body.clone());
        }
        let registry = self.registry.clone();
        let body = tokio::task::spawn_blocking(move || render(&registry, format))
            .await
            .map_err(|_| std::fmt::Error)??;
        let body = Arc::new(body);
        cache.retain(|(f, _, _)| *f != format);
        cache.push((format, now, body.clone()));
        Ok(body)
    }
}

/// Connections open per peer address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection of a peer; dropping it frees its place.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn enter(self: &Arc<Self>, ip: IpAddr, most: usize) -> Option<PeerSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

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

/// What to answer `request` with: the metrics in a format, or an error status and text.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Metrics(Format),
    Error(u16, &'static str),
}

pub fn answer(request: Option<&Request>) -> Answer {
    let Some(r) = request else {
        return Answer::Error(400, "Bad request\n");
    };
    if r.path != "/metrics" {
        return Answer::Error(404, "Not found: try /metrics\n");
    }
    if r.method != "GET" && r.method != "HEAD" {
        return Answer::Error(405, "Method not allowed: GET /metrics\n");
    }
    Answer::Metrics(Format::from_accept(r.accept.as_deref()))
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

async fn serve_one(mut stream: TcpStream, bodies: &Bodies) -> std::io::Result<()> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let error = |status: u16, text: &str| (status, PLAIN, Arc::new(text.to_owned()));
    let (head_only, (status, content_type, body)) = match read_head(&mut stream).await? {
        Ok(head) => {
            let request = parse_request(&head);
            let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
            let reply = match answer(request.as_ref()) {
                Answer::Metrics(format) => match bodies.get(format).await {
                    Ok(body) => (200, format.content_type(), body),
                    Err(_) => error(500, "Cannot encode the metrics\n"),
                },
                Answer::Error(status, text) => error(status, text),
            };
            (head_only, reply)
        }
        Err(status) => (false, error(status, &format!("{}\n", reason(status)))),
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        // The shared body as it is, not a copy per scrape.
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Serves `/metrics` on `listener` until `until` is cancelled, within [`Limits::default`].
pub async fn serve(listener: TcpListener, bodies: Arc<Bodies>, until: CancellationToken) {
    serve_within(listener, bodies, until, Limits::default()).await;
}

/// [`serve`] within `limits`.
pub async fn serve_within(
    listener: TcpListener,
    bodies: Arc<Bodies>,
    until: CancellationToken,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    let peers = Arc::new(Peers::default());
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
            Ok((stream, peer)) => {
                // A peer over its share is closed at once (its permit goes back).
                let Some(slot) = peers.enter(peer.ip(), limits.per_peer) else {
                    continue;
                };
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    // A peer that went away, or took too long, is no concern of the run's.
                    let _ = tokio::time::timeout(limits.exchange, serve_one(stream, &bodies)).await;
                    drop(slot);
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
        let req = |m: &str, p: &str| Request {
            method: m.into(),
            path: p.into(),
            accept: None,
        };
        let status = |a: Answer| match a {
            Answer::Error(status, _) => status,
            Answer::Metrics(_) => 200,
        };
        assert_eq!(status(answer(Some(&req("GET", "/")))), 404);
        assert_eq!(status(answer(Some(&req("POST", "/metrics")))), 405);
        assert_eq!(status(answer(None)), 400);
        assert_eq!(
            answer(Some(&req("GET", "/metrics"))),
            Answer::Metrics(Format::Text)
        );
    }

    #[tokio::test]
    async fn serves_over_tcp_and_bounds_the_head() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let bodies = Arc::new(Bodies::new(Registry::default(), || 0));
        let server = tokio::spawn(serve(listener, bodies, stop.clone()));
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

    /// A registry whose body is larger than any socket buffer: 150,000 agents' series.
    fn big_registry() -> Registry {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let family = Family::<Vec<(String, String)>, Counter>::default();
        for i in 0..150_000 {
            family
                .get_or_create(&vec![("agent".to_owned(), format!("agent-{i:06}"))])
                .inc();
        }
        let mut registry = Registry::default();
        registry.register("rally_tui_agent_iterations", "iterations", family);
        registry
    }

    /// A scrape from `from` (a loopback address): the whole answer, or what came before
    /// the server closed.
    async fn scrape(from: &str, to: std::net::SocketAddr) -> String {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let Ok(mut s) = socket.connect(to).await else {
            return String::new();
        };
        if s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.is_err() {
            return String::new();
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Peers that ask and never read their (larger than any socket buffer) answer hold at
    /// most their share of the connections, and only until the exchange's deadline: another
    /// host scrapes meanwhile, and the same host again after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_never_reads_cannot_take_the_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let limits = Limits {
            connections: 8,
            per_peer: 2,
            exchange: Duration::from_millis(1500),
        };
        let bodies = Arc::new(Bodies::new(big_registry(), || 0));
        // Rendered before the clock matters (the figures do not change: once).
        let size = bodies.get(Format::Text).await.unwrap().len();
        assert!(size > 8 << 20, "{size} bytes");
        let server = tokio::spawn(serve_within(listener, bodies, stop.clone(), limits));
        let mut stuck = Vec::new();
        for _ in 0..limits.connections + 2 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut s = socket.connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
            stuck.push(s);
        }
        let whole =
            |body: &str| body.starts_with("HTTP/1.1 200 OK") && body.contains("agent-149999");
        let other = tokio::time::timeout(limits.exchange / 2, scrape("127.0.0.2", addr))
            .await
            .expect("another host is served while one never reads");
        assert!(whole(&other), "{}", &other[..other.len().min(200)]);
        // The same host, once the stuck exchanges hit their deadline (polled: the deadline
        // is real time on real sockets).
        let again = tokio::time::timeout(limits.exchange * 4, async {
            loop {
                let body = scrape("127.0.0.1", addr).await;
                if whole(&body) {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(again.is_ok(), "the stuck peers were never cut off");
        drop(stuck);
        stop.cancel();
        server.await.unwrap();
    }
}
