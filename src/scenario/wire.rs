//! `Http.request` on the wire: the request serialized once, written whole on the slot's
//! kept-alive connection, the response head parsed in place with `httparse` and the body
//! counted and dropped — what wrk does.
//!
//! hyper's client runs each connection as a task of its own and hands every request and
//! response across a channel between the two, which costs more CPU per request than the
//! request itself at loopback speeds (measured: 8 µs of user time per request against wrk's
//! 2.4). `Http.request` always sends the same request and only checks the status, so it
//! needs none of that: one write, reads until the response is complete, no allocation once
//! the buffer has grown. The `HttpRequests.*` scenarios (redirects, cookies, forms) keep
//! using hyper.

use std::io;
use std::pin::Pin;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

use super::http::{Conn, Target};
use crate::chunk::Dials;

/// Response heads larger than this are refused (nginx's default limit is 8 KiB per line).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; more is an error, like a head that is too large.
const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("Failed to establish a new connection to {target}: {error}")]
    Connect { target: String, error: io::Error },
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection before a complete response")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("no response before the deadline")]
    TimedOut,
}

/// The request bytes, built once per workload.
pub fn serialize(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.request_target().to_string().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !has("host") {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(target.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(auth) = target.proxy_authorization()
        && !has("proxy-authorization")
    {
        out.extend_from_slice(b"Proxy-Authorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() && !has("content-length") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// What is checked of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub status: u16,
    pub body_bytes: u64,
}

/// One slot's connection and read buffer.
#[derive(Default)]
pub struct Wire {
    stream: Option<Conn>,
    buf: Vec<u8>,
    /// The deadline of the request in flight: one timer per connection, moved later for each
    /// request. Moving a tokio timer later is an atomic store; a fresh `timeout()` per
    /// request inserts into and removes from the timer wheel and reads the clock, which was
    /// about 3% of an HTTP load's CPU.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Connections opened since the slot last took the count.
    pub dials: Dials,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Wire {
    /// Drop the connection (after a timeout, when it may be mid-response).
    pub fn reset(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    async fn connect(&mut self, target: &Target) -> Result<Conn, WireError> {
        let (conn, dial) = super::http::dial(target)
            .await
            .map_err(|error| WireError::Connect {
                target: format!("{}:{}", target.host, target.port),
                error,
            })?;
        self.dials.add(dial);
        Ok(conn)
    }

    /// [`Wire::exchange`], given up at `deadline` with [`WireError::TimedOut`]; the
    /// connection is then dropped, since it may be mid-response.
    pub async fn exchange_before(
        &mut self,
        deadline: Instant,
        target: &Target,
        request: &[u8],
        head: bool,
    ) -> Result<Exchange, WireError> {
        let mut timer = match self.deadline.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline.into());
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        let result = tokio::select! {
            biased;
            r = self.exchange(target, request, head) => r,
            _ = timer.as_mut() => {
                self.reset();
                Err(WireError::TimedOut)
            }
        };
        self.deadline = Some(timer);
        result
    }

    /// Send `request` and read its response. A kept-alive connection that the server had
    /// closed in the meantime is replaced and the request sent once more.
    pub async fn exchange(
        &mut self,
        target: &Target,
        request: &[u8],
        head: bool,
    ) -> Result<Exchange, WireError> {
        let reused = self.stream.is_some();
        if !reused {
            self.stream = Some(self.connect(target).await?);
        }
        match self.round_trip(request, head).await {
            Err(WireError::Closed | WireError::Io(_)) if reused && self.buf.is_empty() => {
                self.stream = Some(self.connect(target).await?);
                let r = self.round_trip(request, head).await;
                if r.is_err() {
                    self.reset();
                }
                r
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
            ok => ok,
        }
    }

    async fn round_trip(&mut self, request: &[u8], head: bool) -> Result<Exchange, WireError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(WireError::Closed);
        };
        self.buf.clear();
        stream.write_all(request).await?;
        loop {
            let (status, head_len, framing, close) = read_head(stream, &mut self.buf).await?;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&status) && status != 101 {
                self.buf.drain(..head_len);
                continue;
            }
            let framing = if head || status == 204 || status == 304 {
                Framing::None
            } else {
                framing
            };
            let body_bytes = read_body(stream, &mut self.buf, head_len, framing).await?;
            if close || framing == Framing::UntilClose {
                self.stream = None;
            }
            self.buf.clear();
            return Ok(Exchange { status, body_bytes });
        }
    }
}

/// Reads until `buf` holds a complete response head; returns the status, the head's length,
/// how the body is framed and whether the server will close the connection.
async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<(u16, usize, Framing, bool), WireError> {
    loop {
        if !buf.is_empty()
            && let Some(parsed) = parse_head(buf)?
        {
            return Ok(parsed);
        }
        if buf.len() > MAX_HEAD {
            return Err(WireError::Malformed(format!(
                "response head larger than {MAX_HEAD} bytes"
            )));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(WireError::Closed);
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, Framing, bool)>, WireError> {
    // Left uninitialized: filling 64 empty headers for every response cost more than parsing.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    let mut close = response.version == Some(0);
    for h in response.headers.iter() {
        // Only three names matter; their lengths tell them apart before any comparison
        // (comparing every name with all three was a third of the parsing time).
        match h.name.len() {
            14 if h.name.eq_ignore_ascii_case("content-length") => {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| WireError::Malformed("bad Content-Length".into()))?;
                if framing != Framing::Chunked {
                    framing = Framing::Length(n);
                }
            }
            17 if h.name.eq_ignore_ascii_case("transfer-encoding")
                && contains_token(h.value, b"chunked") =>
            {
                framing = Framing::Chunked;
            }
            10 if h.name.eq_ignore_ascii_case("connection") => {
                if contains_token(h.value, b"close") {
                    close = true;
                } else if contains_token(h.value, b"keep-alive") {
                    close = false;
                }
            }
            _ => {}
        }
    }
    Ok(Some((status, len, framing, close)))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    // The whole value first: it usually is the one token.
    value.eq_ignore_ascii_case(token)
        || value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads and drops the body; returns its length. `buf[head_len..]` holds what was read past
/// the head already.
async fn read_body(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    head_len: usize,
    framing: Framing,
) -> Result<u64, WireError> {
    match framing {
        Framing::None => Ok(0),
        Framing::Length(len) => {
            let mut have = (buf.len() - head_len) as u64;
            while have < len {
                buf.clear();
                buf.reserve(16 * 1024);
                let n = stream.read_buf(buf).await?;
                if n == 0 {
                    return Err(WireError::Closed);
                }
                have += n as u64;
            }
            Ok(len)
        }
        Framing::UntilClose => {
            let mut have = (buf.len() - head_len) as u64;
            loop {
                buf.clear();
                buf.reserve(16 * 1024);
                let n = stream.read_buf(buf).await?;
                if n == 0 {
                    return Ok(have);
                }
                have += n as u64;
            }
        }
        Framing::Chunked => {
            let mut chunked = Chunked::default();
            let mut start = head_len;
            loop {
                if chunked.feed(&buf[start..])? {
                    return Ok(chunked.data);
                }
                buf.clear();
                buf.reserve(16 * 1024);
                if stream.read_buf(buf).await? == 0 {
                    return Err(WireError::Closed);
                }
                start = 0;
            }
        }
    }
}

/// A chunked-body decoder that only counts: sizes in hex (extensions ignored), data, and
/// trailer lines up to the empty line.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u32,
    left: u64,
    data: u64,
    /// Bytes in the current trailer line.
    line: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
}

impl Chunked {
    /// Consumes `bytes`; true once the body is complete.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<bool, WireError> {
        let bad = |what: &str| WireError::Malformed(format!("chunked body: {what}"));
        while let Some((&b, rest)) = bytes.split_first() {
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(bad("chunk size too large"));
                        }
                        self.size =
                            self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                    }
                    b';' | b' ' | b'\t' => self.state = ChunkState::Extension,
                    b'\r' => self.state = ChunkState::SizeLf,
                    _ => return Err(bad("bad chunk size")),
                },
                ChunkState::Extension => {
                    if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' || self.digits == 0 {
                        return Err(bad("bad chunk size line"));
                    }
                    if self.size == 0 {
                        self.state = ChunkState::Trailer;
                        self.line = 0;
                    } else {
                        self.state = ChunkState::Data;
                        self.left = self.size;
                    }
                }
                ChunkState::Data => {
                    let take = (self.left as usize).min(bytes.len());
                    self.left -= take as u64;
                    self.data += take as u64;
                    bytes = &bytes[take..];
                    if self.left == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    self.state = ChunkState::Size;
                    self.size = 0;
                    self.digits = 0;
                }
                ChunkState::Trailer => {
                    if b == b'\r' {
                        self.state = ChunkState::TrailerLf;
                    } else {
                        self.line += 1;
                    }
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("bad trailer line"));
                    }
                    if self.line == 0 {
                        return Ok(true);
                    }
                    self.line = 0;
                    self.state = ChunkState::Trailer;
                }
            }
            bytes = rest;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    fn target(port: u16) -> Target {
        Target::parse(&format!("http://127.0.0.1:{port}/p?q=1")).unwrap()
    }

    #[test]
    fn requests_are_serialized_once_and_completely() {
        let t = target(8080);
        let r = serialize("POST", &t, &[("X-A".into(), "1".into())], b"hi");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
        );
        let r = serialize("GET", &t, &[("host".into(), "other".into())], b"");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: other\r\n\r\n"
        );
    }

    #[test]
    fn chunked_bodies_in_any_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let first = c.feed(&body[..split]).unwrap();
            assert!(!first || split == body.len());
            assert!(c.feed(&body[split..]).unwrap(), "split at {split}");
            assert_eq!(c.data, 23);
        }
        let mut c = Chunked::default();
        assert!(c.feed(b"zz\r\n").is_err());
        let mut c = Chunked::default();
        assert!(c.feed(b"4\r\nWikiXX").is_err());
        let mut c = Chunked::default();
        assert!(c.feed(b"ffffffffffffffffff\r\n").is_err());
    }

    #[test]
    fn heads_give_status_framing_and_close() {
        let h = |s: &str| parse_head(s.as_bytes()).unwrap().unwrap();
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            (200, 38, Framing::Length(5), false)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n").2,
            Framing::Chunked
        );
        assert!(h("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").3);
        assert!(h("HTTP/1.0 200 OK\r\n\r\n").3);
        assert!(!h("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").3);
        assert!(h("HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\n\r\n").3);
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n").2,
            Framing::Chunked
        );
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    /// A server that answers each request with the next canned response, then closes when
    /// told to.
    async fn serve(responses: Vec<&'static [u8]>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut responses = responses.into_iter();
            'accept: loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let mut stream = tokio::io::BufReader::new(stream);
                loop {
                    // Read one request head.
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            continue 'accept;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    match responses.next() {
                        Some(b"CLOSE") => continue 'accept,
                        // HTTP/1.0 without keep-alive: the body ends where the connection does.
                        Some(r) if r.starts_with(b"HTTP/1.0") => {
                            let _ = stream.get_mut().write_all(r).await;
                            continue 'accept;
                        }
                        Some(r) => {
                            let _ = stream.get_mut().write_all(r).await;
                        }
                        None => return,
                    }
                }
            }
        });
        port
    }

    /// No test of a network client may hang the suite.
    async fn within_5s<F: std::future::Future<Output = ()>>(f: F) {
        tokio::time::timeout(std::time::Duration::from_secs(5), f)
            .await
            .expect("test finished within 5 s");
    }

    #[tokio::test]
    async fn keep_alive_chunked_interim_and_reconnect() {
        within_5s(keep_alive_chunked_interim_and_reconnect_body()).await;
    }

    async fn keep_alive_chunked_interim_and_reconnect_body() {
        let port = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
            // The server drops the kept-alive connection: the request goes again on a new one.
            b"CLOSE",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        ])
        .await;
        let t = target(port);
        let req = serialize("GET", &t, &[], b"");
        let mut w = Wire::default();
        assert_eq!(
            w.exchange(&t, &req, false).await.unwrap(),
            Exchange {
                status: 200,
                body_bytes: 3
            }
        );
        assert_eq!(
            w.exchange(&t, &req, false).await.unwrap(),
            Exchange {
                status: 404,
                body_bytes: 3
            }
        );
        assert_eq!(w.exchange(&t, &req, false).await.unwrap().status, 204);
        let last = w.exchange(&t, &req, false).await.unwrap();
        assert_eq!(last.body_bytes, 11);
        assert!(w.stream.is_none(), "HTTP/1.0 without keep-alive closes");
    }

    #[tokio::test]
    async fn deadlines_give_up_and_move_on() {
        within_5s(deadlines_give_up_and_move_on_body()).await;
    }

    async fn deadlines_give_up_and_move_on_body() {
        use std::time::Duration;
        // Answers the first request at once, never the second, the third at once again
        // (on the new connection the timed-out one was replaced by).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let mut stream = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        n += 1;
                        if n != 2 {
                            let _ = stream
                                .get_mut()
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                    }
                    line.clear();
                }
            }
        });
        let t = target(port);
        let req = serialize("GET", &t, &[], b"");
        let mut w = Wire::default();
        let soon = || Instant::now() + Duration::from_millis(300);
        assert_eq!(
            w.exchange_before(soon(), &t, &req, false)
                .await
                .unwrap()
                .status,
            200
        );
        let started = Instant::now();
        let e = w
            .exchange_before(soon(), &t, &req, false)
            .await
            .unwrap_err();
        assert!(matches!(e, WireError::TimedOut), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(w.stream.is_none(), "a timed-out connection is not reused");
        assert_eq!(
            w.exchange_before(soon(), &t, &req, false)
                .await
                .unwrap()
                .status,
            200
        );
    }

    #[tokio::test]
    async fn refused_and_truncated_are_errors() {
        within_5s(refused_and_truncated_are_errors_body()).await;
    }

    async fn refused_and_truncated_are_errors_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let t = target(port);
        let req = serialize("GET", &t, &[], b"");
        let e = Wire::default().exchange(&t, &req, false).await.unwrap_err();
        assert!(matches!(e, WireError::Connect { .. }), "{e}");
        // A body cut short by the server closing the connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
                .await;
        });
        let t = target(port);
        let e = Wire::default().exchange(&t, &req, false).await;
        assert!(!matches!(e, Ok(Exchange { body_bytes: 10, .. })));
    }
}
