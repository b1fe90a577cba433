//! `Http.request` over HTTP/2 (SPEC §12): `http2: true`, over TLS with ALPN `h2`, or h2c
//! with prior knowledge for `http://`.
//!
//! With HTTP/1.1 a slot owns a connection; with HTTP/2 `concurrency` is the number of
//! requests in flight and they share a few connections, each multiplexing streams up to the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` (the h2 crate holds a stream back until the
//! server allows it). The slots of one workload in one process share a [`Pool`] of lines,
//! one connection each: slot `k` (in the order slots first send) uses line `k % connections`
//! when `connections` is given, else line `k / 100` (one connection per 100 streams in
//! flight, as the scenario's documentation says), so the default needs no knowledge of the
//! runner's concurrency.
//!
//! A slot keeps its own clone of its line's `SendRequest` and touches the line's lock only
//! when the connection fails: then the first slot to notice dials the replacement (the line
//! counts generations, so the others pick it up instead of dialing again). A request that
//! never left (the connection was closing), a stream the server refused, or one its GOAWAY
//! left out, was not processed: it is sent again on the new connection (up to
//! [`UNPROCESSED_ATTEMPTS`] times in all), so a server that rotates its connections (nginx's
//! `keepalive_requests`) costs no failed iterations. Once the server may have worked on a
//! request, a failure is the iteration's: nothing is sent twice.
//!
//! A connection can also go silent (a peer or a middlebox that drops everything without a
//! reset): its requests time out, and nothing else would tell. So a timeout sends a PING on
//! the connection it happened on; a connection that does not answer within
//! [`PROBE_WITHIN`] is retired, and every slot on it rebinds to a new one at its next
//! request. One slow request alone does not cut a connection that 100 slots share.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, Uri};
use tokio::sync::Mutex;
use tokio::time::Sleep;

use super::http::{HttpRequestScenario, Target};
use crate::chunk::{Dials, IterationError};

/// How many times a request the server did not process (GOAWAY, refused stream) is sent,
/// each time on a newer connection.
const UNPROCESSED_ATTEMPTS: u32 = 4;

/// How long a connection suspected dead (a request on it timed out) has to answer a PING,
/// at most: the scenario's timeout, but within these bounds.
const PROBE_WITHIN: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

/// Streams per connection when `connections` is not given.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Request headers that HTTP/2 forbids (RFC 9113 §8.2.2) or carries as pseudo-headers.
const NOT_IN_H2: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Why an HTTP/2 request got no response.
#[derive(Debug, thiserror::Error)]
pub enum H2Failure {
    #[error("Failed to establish a new connection to {target}: {error}")]
    Connect {
        target: String,
        error: std::io::Error,
    },
    #[error(
        "the server did not agree to HTTP/2: ALPN offered h2, the server chose {0} (is http2 enabled on its TLS port?)"
    )]
    NoAlpn(String),
    #[error("{}", describe(.0))]
    Protocol(h2::Error),
}

/// An h2 error in words: who ended what, and why.
fn describe(e: &h2::Error) -> String {
    let reason = e
        .reason()
        .map_or_else(|| "no reason given".to_string(), |r| format!("{r:?}"));
    if e.is_go_away() {
        format!(
            "HTTP/2 GOAWAY from the {} ({reason})",
            if e.is_remote() { "server" } else { "client" }
        )
    } else if e.is_reset() {
        format!(
            "HTTP/2 stream reset by the {} (RST_STREAM {reason})",
            if e.is_remote() { "server" } else { "client" }
        )
    } else if e.is_io() {
        format!("HTTP/2 connection error: {e}")
    } else {
        format!("HTTP/2 protocol error: {e}")
    }
}

impl H2Failure {
    /// After the request was sent: did the server say it did not process it (RFC 9113
    /// §8.7: a stream it refused, or one its GOAWAY left out)? Only then is it sent again;
    /// a connection that broke while the server may have been working on it is an error.
    fn unprocessed(&self) -> bool {
        match self {
            H2Failure::Protocol(e) => {
                (e.is_go_away() && e.is_remote()) || e.reason() == Some(h2::Reason::REFUSED_STREAM)
            }
            _ => false,
        }
    }

    pub fn iteration_error(&self) -> IterationError {
        match self {
            H2Failure::Connect { error, .. } if let Some(reason) = super::tls::ssl_error(error) => {
                IterationError::new("SSLError", reason)
            }
            H2Failure::Connect { error, .. }
                if let Some(message) = super::proxy::proxy_error(error) =>
            {
                IterationError::new("ProxyError", message)
            }
            H2Failure::Connect { .. } | H2Failure::NoAlpn(_) => {
                IterationError::new("ConnectionError", self.to_string())
            }
            H2Failure::Protocol(_) => IterationError::new("HTTP2Error", self.to_string()),
        }
    }
}

/// A failed request, and whether it may be sent again (the server cannot have processed it).
struct Attempt {
    failure: H2Failure,
    retry: bool,
}

/// One connection of the pool, replaced whole when it fails.
#[derive(Default)]
struct Line {
    current: Mutex<Option<Current>>,
    /// Generations below this went silent (they did not answer a PING): slots that hold one
    /// rebind before their next request.
    live_from: AtomicU64,
}

/// A line's connection now.
struct Current {
    generation: u64,
    send: SendRequest<Bytes>,
    /// The connection's PING handle, taken while a probe is out.
    ping: Option<h2::PingPong>,
}

impl Line {
    /// A request on connection `generation` timed out: ask the connection whether it is
    /// still there (in the background; one probe at a time), and retire it if it says
    /// nothing within `within`.
    fn probe(self: &Arc<Line>, generation: u64, within: Duration) {
        let line = self.clone();
        tokio::spawn(async move {
            let pinger = match line.current.lock().await.as_mut() {
                Some(c) if c.generation == generation => c.ping.take(),
                _ => None,
            };
            // Another probe is out, or the connection was replaced already.
            let Some(mut pinger) = pinger else {
                return;
            };
            let answered = matches!(
                tokio::time::timeout(within, pinger.ping(h2::Ping::opaque())).await,
                Ok(Ok(_))
            );
            let mut current = line.current.lock().await;
            match current.as_mut() {
                Some(c) if c.generation == generation && answered => c.ping = Some(pinger),
                Some(c) if c.generation == generation => {
                    tracing::debug!(
                        "HTTP/2 connection {generation} did not answer a PING within {within:?}: \
                         replaced"
                    );
                    line.live_from.fetch_max(generation + 1, Ordering::Release);
                    *current = None;
                }
                _ => {}
            }
        });
    }

    /// Whether connection `generation` was found silent.
    fn retired(&self, generation: u64) -> bool {
        generation < self.live_from.load(Ordering::Acquire)
    }
}

/// A slot's hold on its line's connection: the generation, and its own handle.
struct Bound {
    generation: u64,
    send: SendRequest<Bytes>,
}

/// What a slot keeps for HTTP/2 between its iterations.
#[derive(Default)]
pub struct Slot {
    /// Its line, taken on its first request and kept (also while the server is down, so
    /// failed connects do not spread slots over ever new lines).
    line: Option<Arc<Line>>,
    bound: Option<Bound>,
    /// The request's deadline, one timer per slot moved for each request (see
    /// [`super::wire::Wire`] for why not a `timeout()` per request).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Connections this slot opened since the last count was taken.
    pub dials: Dials,
}

/// The HTTP/2 connections of one workload in one process.
pub struct Pool {
    target: Target,
    /// The workload's TLS configuration with `h2` in ALPN (same session store).
    tls: Option<Arc<rustls::ClientConfig>>,
    connections: Option<usize>,
    slots: AtomicUsize,
    lines: std::sync::Mutex<Vec<Arc<Line>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Pool {
    pub fn new(scenario: &HttpRequestScenario) -> Pool {
        let target = scenario.target.clone();
        let tls = target.tls.as_ref().map(|t| {
            let mut config = (*t.config).clone();
            // http/1.1 offered too, so that a server without HTTP/2 completes the handshake
            // (instead of a bare no_application_protocol alert) and the error can say so.
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{}{}", target.authority, target.uri)
            .parse()
            .unwrap_or_else(|_| target.uri.clone());
        let mut headers = HeaderMap::new();
        for (name, value) in &scenario.headers {
            if !NOT_IN_H2.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        Pool {
            target,
            tls,
            connections: scenario.connections.map(|n| n as usize),
            slots: AtomicUsize::new(0),
            lines: std::sync::Mutex::new(Vec::new()),
            method: scenario.method.clone(),
            uri,
            headers,
            body: scenario.body.clone(),
        }
    }

    /// The line the next slot to ask uses.
    fn line_for_new_slot(&self) -> Arc<Line> {
        let k = self.slots.fetch_add(1, Ordering::Relaxed);
        let index = match self.connections {
            Some(n) => k % n.max(1),
            None => k / STREAMS_PER_CONNECTION,
        };
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        while lines.len() <= index {
            lines.push(Arc::new(Line::default()));
        }
        lines[index].clone()
    }

    /// A handle on the line's connection: the current one, or a new one when there is none
    /// or it is the generation `failed` that the caller saw fail.
    async fn handle(
        &self,
        line: &Line,
        failed: Option<u64>,
        dials: &mut Dials,
    ) -> Result<(u64, SendRequest<Bytes>), H2Failure> {
        let mut current = line.current.lock().await;
        if let Some(c) = current.as_ref()
            && Some(c.generation) != failed
        {
            return Ok((c.generation, c.send.clone()));
        }
        let generation = current
            .as_ref()
            .map_or(line.live_from.load(Ordering::Acquire), |c| c.generation + 1);
        let (send, ping) = self.connect(dials).await?;
        *current = Some(Current {
            generation,
            send: send.clone(),
            ping,
        });
        Ok((generation, send))
    }

    async fn connect(
        &self,
        dials: &mut Dials,
    ) -> Result<(SendRequest<Bytes>, Option<h2::PingPong>), H2Failure> {
        let (conn, dial) = super::http::dial_with(&self.target, self.tls.as_ref(), true)
            .await
            .map_err(|error| H2Failure::Connect {
                target: format!("{}:{}", self.target.host, self.target.port),
                error,
            })?;
        if let tokio_util::either::Either::Right(tls) = &conn {
            let alpn = tls.get_ref().1.alpn_protocol();
            if alpn != Some(b"h2") {
                return Err(H2Failure::NoAlpn(alpn.map_or_else(
                    || "nothing (HTTP/1.1)".to_string(),
                    |p| String::from_utf8_lossy(p).into_owned(),
                )));
            }
        }
        dials.add(dial);
        let (send, mut connection) = h2::client::Builder::new()
            // Bodies are counted and dropped: let the server send without waiting for
            // window updates (h2's defaults, 64 KiB, stall a large response per round trip).
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(conn)
            .await
            .map_err(H2Failure::Protocol)?;
        let ping = connection.ping_pong();
        tokio::spawn(async move {
            // Ends when the server closes, or when every handle is dropped; errors reach
            // the streams in flight.
            if let Err(e) = connection.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        Ok((send, ping))
    }

    /// One request of `scenario`, answered before `started + timeout`.
    pub async fn run(
        &self,
        scenario: &HttpRequestScenario,
        slot: &mut Slot,
        started: Instant,
    ) -> Result<(), IterationError> {
        let deadline = (started + scenario.timeout).into();
        let mut timer = match slot.deadline.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let line = slot
            .line
            .get_or_insert_with(|| self.line_for_new_slot())
            .clone();
        let sent = tokio::select! {
            biased;
            r = self.exchange(&line, &mut slot.bound, &mut slot.dials) => Ok(r),
            _ = timer.as_mut() => Err(()),
        };
        slot.deadline = Some(timer);
        if let (Err(()), Some(bound)) = (&sent, &slot.bound) {
            let within = scenario.timeout.clamp(PROBE_WITHIN.0, PROBE_WITHIN.1);
            line.probe(bound.generation, within);
        }
        match sent {
            Err(()) => Err(IterationError::new(
                "Timeout",
                format!("no response within {:?}", scenario.timeout),
            )),
            Ok(Err(failure)) => Err(failure.iteration_error()),
            Ok(Ok(status)) if status != scenario.status_code => Err(IterationError::new(
                "UnexpectedStatus",
                format!(
                    "Expected HTTP status {} actual {status}",
                    scenario.status_code
                ),
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Send the request on the slot's line; once more on a new connection if the server
    /// did not process it. Returns the status.
    async fn exchange(
        &self,
        line: &Line,
        slot: &mut Option<Bound>,
        dials: &mut Dials,
    ) -> Result<u16, H2Failure> {
        if slot.as_ref().is_some_and(|b| line.retired(b.generation)) {
            *slot = None;
        }
        let bound = match slot {
            Some(bound) => bound,
            None => {
                let (generation, send) = self.handle(line, None, dials).await?;
                slot.insert(Bound { generation, send })
            }
        };
        let mut attempts = 1;
        loop {
            match self.round_trip(&mut bound.send).await {
                // Not processed by the server: sent again on a newer connection. A server
                // that rotates connections quickly may be sending the next GOAWAY by the
                // time the stream reaches it, so a few times.
                Err(Attempt {
                    failure,
                    retry: true,
                }) if attempts < UNPROCESSED_ATTEMPTS => {
                    tracing::trace!("HTTP/2 request not processed, sending it again: {failure}");
                    attempts += 1;
                    let (generation, send) =
                        self.handle(line, Some(bound.generation), dials).await?;
                    bound.generation = generation;
                    bound.send = send;
                }
                Err(Attempt { failure, .. }) => return Err(failure),
                Ok(status) => return Ok(status),
            }
        }
    }

    async fn round_trip(&self, send: &mut SendRequest<Bytes>) -> Result<u16, Attempt> {
        // Nothing has reached the server before the stream is open: any failure up to
        // there can be retried (the connection was closing or closed).
        let before_send = |e| Attempt {
            failure: H2Failure::Protocol(e),
            retry: true,
        };
        std::future::poll_fn(|cx| send.poll_ready(cx))
            .await
            .map_err(before_send)?;
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let (response, mut stream) = send
            .send_request(request, self.body.is_empty())
            .map_err(before_send)?;
        let sent = |e| {
            let failure = H2Failure::Protocol(e);
            Attempt {
                retry: failure.unprocessed(),
                failure,
            }
        };
        if !self.body.is_empty() {
            stream.send_data(self.body.clone(), true).map_err(sent)?;
        }
        let response = response.await.map_err(sent)?;
        // The server answered: whatever happens to the body now, it processed the request.
        let answered = |e| Attempt {
            failure: H2Failure::Protocol(e),
            retry: false,
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            let data = data.map_err(answered)?;
            let _ = body.flow_control().release_capacity(data.len());
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    //! Against an h2 server of the test's own that misbehaves on purpose: what nginx cannot be
    //! made to do on demand (reset a stream, refuse one, stall the body).

    use super::*;
    use crate::task::node::Node;
    use tokio::net::TcpListener;

    /// What the test server does with each stream, by connection number (0-based).
    #[derive(Clone, Copy)]
    enum Behaviour {
        Ok,
        Reset(h2::Reason),
        /// Headers, then no body ever.
        Stall,
        /// Nothing after the handshake: no response, no PING answer (a peer gone silent).
        Silent,
    }

    async fn server(by_connection: Vec<Behaviour>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let behaviour = by_connection[n.min(by_connection.len() - 1)];
                n += 1;
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    if let Behaviour::Silent = behaviour {
                        // Holds the socket open and never reads it again.
                        let _held = conn;
                        return std::future::pending().await;
                    }
                    while let Some(Ok((_, mut respond))) = conn.accept().await {
                        match behaviour {
                            Behaviour::Ok => {
                                let response = http::Response::new(());
                                let mut body = respond.send_response(response, false).unwrap();
                                body.send_data(Bytes::from_static(b"hello"), true).unwrap();
                            }
                            Behaviour::Reset(reason) => respond.send_reset(reason),
                            Behaviour::Silent => {}
                            Behaviour::Stall => {
                                let response = http::Response::new(());
                                let body = respond.send_response(response, false).unwrap();
                                std::mem::forget(body);
                            }
                        }
                    }
                });
            }
        });
        port
    }

    fn scenario(port: u16) -> HttpRequestScenario {
        HttpRequestScenario::from_config(
            &Node::parse(&format!(
                "{{url: 'http://127.0.0.1:{port}/', http2: true, timeout: 0.5}}"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    async fn one(port: u16) -> (Result<(), IterationError>, Dials) {
        let scenario = scenario(port);
        let pool = Pool::new(&scenario);
        let mut slot = Slot::default();
        let r = pool.run(&scenario, &mut slot, Instant::now()).await;
        (r, slot.dials)
    }

    #[tokio::test]
    async fn answered_streams_pass() {
        let port = server(vec![Behaviour::Ok]).await;
        let (r, dials) = one(port).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(dials.plain, 1);
    }

    #[tokio::test]
    async fn a_reset_stream_is_an_iteration_error_that_says_so() {
        let port = server(vec![Behaviour::Reset(h2::Reason::INTERNAL_ERROR)]).await;
        let (r, _) = one(port).await;
        let e = r.unwrap_err();
        assert_eq!(e.etype, "HTTP2Error");
        assert!(
            e.message.contains("reset by the server") && e.message.contains("INTERNAL_ERROR"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_stream_is_sent_again_on_a_new_connection() {
        let port = server(vec![
            Behaviour::Reset(h2::Reason::REFUSED_STREAM),
            Behaviour::Ok,
        ])
        .await;
        let (r, dials) = one(port).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(dials.plain, 2, "the first connection and its replacement");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let port = server(vec![Behaviour::Stall]).await;
        let (r, _) = one(port).await;
        assert_eq!(r.unwrap_err().etype, "Timeout");
    }

    #[tokio::test]
    async fn a_silent_connection_is_replaced_after_it_misses_a_ping() {
        let port = server(vec![Behaviour::Silent, Behaviour::Ok]).await;
        let scenario = scenario(port);
        let pool = Pool::new(&scenario);
        let mut slot = Slot::default();
        let first = pool.run(&scenario, &mut slot, Instant::now()).await;
        assert_eq!(first.unwrap_err().etype, "Timeout");
        // The PING goes unanswered for PROBE_WITHIN's floor (1 s); meanwhile the slot's
        // requests time out on the old connection, then one goes out on a new one.
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let r = pool.run(&scenario, &mut slot, Instant::now()).await;
            outcomes.push(r.as_ref().map_err(|e| e.etype.clone()).err());
            if r.is_ok() {
                break;
            }
        }
        assert_eq!(outcomes.last(), Some(&None), "{outcomes:?}");
        assert_eq!(
            slot.dials.plain, 2,
            "the silent connection and its replacement"
        );
    }

    #[tokio::test]
    async fn a_slow_answer_on_a_live_connection_does_not_replace_it() {
        // The stalled body times out, but the connection answers its PING: it stays.
        let port = server(vec![Behaviour::Stall, Behaviour::Ok]).await;
        let scenario = scenario(port);
        let pool = Pool::new(&scenario);
        let mut slot = Slot::default();
        for _ in 0..4 {
            let r = pool.run(&scenario, &mut slot, Instant::now()).await;
            assert_eq!(r.unwrap_err().etype, "Timeout");
        }
        assert_eq!(slot.dials.plain, 1);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (r, dials) = one(port).await;
        let e = r.unwrap_err();
        assert_eq!(e.etype, "ConnectionError");
        assert!(e.message.contains("Failed to establish"), "{e:?}");
        assert!(dials.is_empty());
    }
}
