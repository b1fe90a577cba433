//! HTTP/1.1 over raw hyper connections, one keep-alive connection per slot and host (for the
//! `HttpRequests.*` scenarios), and the `Http.request` scenario (which goes on the wire
//! directly, see [`super::wire`]).
//!
//! A connection pool would add bookkeeping per request and hide which user a connection
//! belongs to; like oha and wrk, each concurrency slot holds its own connection and opens a
//! new one when the server closes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderName, HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::SlotState;
use super::proxy::{Proxies, Proxy};
use super::tls::Tls;
use super::wire::WireError;
use crate::chunk::{Dial, Dials, IterationError};
use crate::task::check::{self, Checked, PluginError};
use crate::task::node::Node;

/// Where a request goes: the parts of an `http://` or `https://` URL we need.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`, for the Host header and connection reuse.
    pub authority: String,
    /// Path and query, the request-target of an origin-form request.
    pub uri: Uri,
    /// For `https://`: how the server is checked (see [`super::tls`]).
    pub tls: Option<Tls>,
    /// The scenario's `proxies` (see [`super::proxy`]); kept whole so that a redirect to
    /// another scheme finds its proxy.
    pub proxies: Option<Arc<Proxies>>,
}

/// A connection to a target: TCP, or TLS over TCP.
pub type Conn = tokio_util::either::Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid URL '{url}': {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "invalid URL '{url}': it must start with http:// or https://"
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("invalid URL '{url}': no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.clone());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let uri: Uri = path
            .parse()
            .map_err(|e| format!("invalid URL '{url}': {e}"))?;
        Ok(Target {
            host,
            port,
            authority,
            uri,
            tls: https.then(Tls::system),
            proxies: None,
        })
    }

    /// The proxy a request to this target goes through, if any.
    pub fn proxy(&self) -> Option<&Proxy> {
        let proxies = self.proxies.as_deref()?;
        if self.tls.is_some() {
            proxies.https.as_ref()
        } else {
            proxies.http.as_ref()
        }
    }

    /// The request-target of an HTTP/1.1 request: the path and query, or the absolute URL
    /// when the request goes to an `http` proxy (RFC 9112 §3.2.2).
    pub fn request_target(&self) -> Uri {
        match self.proxy() {
            Some(_) if self.tls.is_none() => format!("http://{}{}", self.authority, self.uri)
                .parse()
                .unwrap_or_else(|_| self.uri.clone()),
            _ => self.uri.clone(),
        }
    }

    /// `Proxy-Authorization` for requests in absolute form through a proxy with credentials.
    pub fn proxy_authorization(&self) -> Option<&str> {
        match self.proxy() {
            Some(p) if self.tls.is_none() => p.authorization.as_deref(),
            _ => None,
        }
    }

    /// The same, with `tls` (from the scenario's `verify` and `cert`) for an https URL.
    pub fn with_tls(mut self, tls: Option<&Tls>) -> Target {
        if let (Some(_), Some(tls)) = (&self.tls, tls) {
            self.tls = Some(tls.clone());
        }
        self
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Resolve a redirect's `Location` against this target; an https target keeps how its
    /// server is checked.
    pub fn join(&self, location: &str) -> Result<Target, String> {
        let joined = if location.starts_with("http://") || location.starts_with("https://") {
            Target::parse(location)
        } else if location.starts_with('/') {
            Target::parse(&format!("{}://{}{location}", self.scheme(), self.authority))
        } else {
            let path = self.uri.path();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            Target::parse(&format!(
                "{}://{}{dir}{location}",
                self.scheme(),
                self.authority
            ))
        }?;
        let mut joined = joined.with_tls(self.tls.as_ref());
        joined.proxies = self.proxies.clone();
        Ok(joined)
    }

    /// The `url` of a scenario's arguments, with how an https server is checked (`verify`,
    /// `cert`); `verify: false` is warned about here, once per workload.
    pub fn from_args(args: &Node) -> Checked<Target> {
        let url = check::required(
            check::string(args, "url")?,
            "url",
            "an http:// or https:// URL",
        )?;
        let tls = Tls::from_args(args)?;
        if tls.as_ref().is_some_and(|t| t.unverified) {
            tracing::warn!("{url}: verify is false, the server's certificate is not checked");
        }
        let mut target = Target::parse(&url)
            .map_err(|m| PluginError::new("url", m))?
            .with_tls(tls.as_ref());
        target.proxies = Proxies::from_args(args)?;
        Ok(target)
    }

    /// What connections to this target are kept under: scheme and authority.
    pub fn connection_key(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority)
    }
}

/// Why a request produced no response.
#[derive(Debug)]
pub enum HttpFailure {
    Connect {
        target: String,
        error: std::io::Error,
    },
    Protocol(hyper::Error),
}

/// A response, reduced to what scenarios check.
pub struct Response {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body_bytes: u64,
}

/// A connection for HTTP: TCP with Nagle off (requests are small and latency is measured),
/// and for https the TLS handshake, with the URL's host as SNI and as the name checked.
/// Says how it began: a TLS session is resumed when the workload's configuration holds a
/// ticket or session id from an earlier connection to the server (rustls keeps them in
/// memory per configuration, and a workload shares one configuration).
/// Through a proxy, the TCP connection is the proxy's, and for https a `CONNECT` tunnel.
pub async fn dial(target: &Target) -> std::io::Result<(Conn, Dial)> {
    dial_with(target, target.tls.as_ref().map(|t| &t.config), false).await
}

/// [`dial`] with a TLS configuration of the caller's (HTTP/2 offers `h2` in ALPN); `tunnel`
/// asks a proxy for a tunnel even without TLS (h2c speaks HTTP/2 to the server itself).
pub async fn dial_with(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    tunnel: bool,
) -> std::io::Result<(Conn, Dial)> {
    let stream = match target.proxy() {
        None => TcpStream::connect((target.host.as_str(), target.port)).await?,
        Some(proxy) => {
            let mut stream = proxy.connect().await?;
            if tls.is_some() || tunnel {
                // An IPv6 address goes in brackets (`[::1]:443`), as in a URL.
                let authority = if target.host.contains(':') {
                    format!("[{}]:{}", target.host, target.port)
                } else {
                    format!("{}:{}", target.host, target.port)
                };
                proxy.tunnel(&mut stream, &authority).await?;
            }
            stream
        }
    };
    stream.set_nodelay(true)?;
    let Some(config) = tls else {
        return Ok((tokio_util::either::Either::Left(stream), Dial::Plain));
    };
    let name = ServerName::try_from(target.host.clone()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("'{}' is not a TLS server name: {e}", target.host),
        )
    })?;
    let tls = TlsConnector::from(config.clone())
        .connect(name, stream)
        .await?;
    let dial = match tls.get_ref().1.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => Dial::TlsResumed,
        _ => Dial::TlsFull,
    };
    Ok((tokio_util::either::Either::Right(tls), dial))
}

/// The keep-alive connections of one slot, by authority.
#[derive(Default)]
pub struct Connections {
    open: Vec<(String, SendRequest<Full<Bytes>>)>,
    /// Connections opened since the slot last took the count.
    pub dials: Dials,
}

impl Connections {
    async fn connect(&mut self, target: &Target) -> Result<SendRequest<Full<Bytes>>, HttpFailure> {
        let (stream, dial) = dial(target).await.map_err(|error| HttpFailure::Connect {
            target: format!("{}:{}", target.host, target.port),
            error,
        })?;
        self.dials.add(dial);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(HttpFailure::Protocol)?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped; errors show up on the
            // sender's next request.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Send a request built by `build`, reusing this slot's connection to the target. A
    /// reused connection that the server had already closed is replaced and the request
    /// sent again once.
    pub async fn send(
        &mut self,
        target: &Target,
        build: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<Response, HttpFailure> {
        // The connection stays in place: no allocation per request on the hot path.
        let key = target.connection_key();
        let (i, mut reused) = match self.open.iter().position(|(a, _)| *a == key) {
            Some(i) => (i, true),
            None => {
                let sender = self.connect(target).await?;
                self.open.push((key.clone(), sender));
                (self.open.len() - 1, false)
            }
        };
        if reused && self.open[i].1.ready().await.is_err() {
            self.open[i].1 = self.connect(target).await?;
            reused = false;
        }
        let response = match self.open[i].1.send_request(build()).await {
            Ok(r) => r,
            Err(e) if reused && (e.is_canceled() || e.is_incomplete_message() || e.is_closed()) => {
                // The server had closed the idle connection: once more on a new one.
                self.open[i].1 = self.connect(target).await?;
                self.open[i]
                    .1
                    .send_request(build())
                    .await
                    .map_err(HttpFailure::Protocol)?
            }
            Err(e) => return Err(HttpFailure::Protocol(e)),
        };
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = response.into_body();
        let mut body_bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(HttpFailure::Protocol)?;
            if let Some(data) = frame.data_ref() {
                body_bytes += data.len() as u64;
            }
        }
        Ok(Response {
            status,
            location,
            body_bytes,
        })
    }
}

/// `Http.request`: one request per iteration, for real load.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequestScenario {
    pub method: Method,
    pub target: Target,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub status_code: u16,
    pub timeout: Duration,
    /// The request as it goes on the wire, serialized once.
    pub wire: Bytes,
    /// `http2: true`: HTTP/2, see [`super::http2`].
    pub http2: bool,
    /// `connections: N` (HTTP/2): the connections the requests in flight share.
    pub connections: Option<u32>,
}

impl HttpRequestScenario {
    pub fn from_config(args: &Node) -> Checked<HttpRequestScenario> {
        check::mapping(
            args,
            &[
                "url",
                "method",
                "headers",
                "body",
                "status_code",
                "timeout",
                "verify",
                "cert",
                "auth",
                "http2",
                "connections",
                "proxies",
            ],
        )?;
        let target = Target::from_args(args)?;
        let http2 = check::boolean(args, "http2")?.unwrap_or(false);
        let connections = check::int_at_least(args, "connections", 1)?;
        if connections.is_some() && !http2 {
            return Err(PluginError::new(
                "connections",
                "is for HTTP/2 (http2: true); with HTTP/1.1 each of the runner's concurrency slots keeps its own connection",
            ));
        }
        let connections = connections
            .map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n <= 100_000)
                    .ok_or_else(|| PluginError::new("connections", "must be at most 100000"))
            })
            .transpose()?;
        let method = parse_method(check::string(args, "method")?.as_deref().unwrap_or("GET"))?;
        // Host first, built once: the request path only copies headers.
        let host = HeaderValue::from_str(&target.authority)
            .map_err(|_| PluginError::new("url", "the host is not a valid Host header"))?;
        let user_headers = parse_headers(args)?;
        let body = Bytes::from(check::string(args, "body")?.unwrap_or_default());
        let wire = Bytes::from(super::wire::serialize(
            method.as_str(),
            &target,
            &user_headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect::<Vec<_>>(),
            &body,
        ));
        let mut headers = vec![(HOST, host)];
        headers.extend(user_headers);
        let status_code = status(args, "status_code")?.unwrap_or(200);
        let timeout =
            check::number(args, "timeout", "a number of seconds > 0", |t| t > 0.0)?.unwrap_or(30.0);
        Ok(HttpRequestScenario {
            method,
            target,
            headers,
            body,
            status_code,
            timeout: Duration::from_secs_f64(timeout),
            wire,
            http2,
            connections,
        })
    }

    /// One request, answered before `started + timeout`.
    pub async fn run(&self, slot: &mut SlotState, started: Instant) -> Result<(), IterationError> {
        let head = self.method == Method::HEAD;
        let sent = slot
            .wire
            .exchange_before(started + self.timeout, &self.target, &self.wire, head)
            .await;
        match sent {
            Err(WireError::TimedOut) => Err(IterationError::new(
                "Timeout",
                format!("no response within {:?}", self.timeout),
            )),
            Err(WireError::Connect { error, .. })
                if let Some(reason) = super::tls::ssl_error(&error) =>
            {
                Err(IterationError::new("SSLError", reason))
            }
            Err(WireError::Connect { error, .. })
                if let Some(message) = super::proxy::proxy_error(&error) =>
            {
                Err(IterationError::new("ProxyError", message))
            }
            Err(failure) => Err(IterationError::new("ConnectionError", failure.to_string())),
            Ok(r) if r.status != self.status_code => Err(IterationError::new(
                "UnexpectedStatus",
                format!(
                    "Expected HTTP status {} actual {}",
                    self.status_code, r.status
                ),
            )),
            Ok(_) => Ok(()),
        }
    }
}

/// An error record for a request that got no response.
pub fn failure_error(failure: &HttpFailure) -> IterationError {
    match failure {
        HttpFailure::Connect { error, .. }
            if let Some(message) = super::proxy::proxy_error(error) =>
        {
            IterationError::new("ProxyError", message)
        }
        HttpFailure::Connect { error, .. } if let Some(reason) = super::tls::ssl_error(error) => {
            IterationError::new("SSLError", reason)
        }
        HttpFailure::Connect { target, error } => IterationError::new(
            "ConnectionError",
            format!("Failed to establish a new connection to {target}: {error}"),
        ),
        HttpFailure::Protocol(e) => {
            IterationError::new("ConnectionError", format!("HTTP error: {e}"))
        }
    }
}

pub fn parse_method(text: &str) -> Checked<Method> {
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| PluginError::new("method", format!("'{text}' is not an HTTP method")))
}

pub fn status(args: &Node, key: &str) -> Checked<Option<u16>> {
    match check::int_at_least(args, key, 100)? {
        Some(s) if s <= 599 => Ok(Some(s as u16)),
        Some(s) => Err(PluginError::new(
            key,
            format!("must be an HTTP status from 100 to 599, got {s}"),
        )),
        None => Ok(None),
    }
}

/// `auth: [user, password]`: HTTP Basic, as python-requests takes a tuple; the header it
/// makes, if given.
pub fn basic_auth(args: &Node) -> Checked<Option<(HeaderName, HeaderValue)>> {
    use base64::Engine;
    let Some(node) = args.get("auth") else {
        return Ok(None);
    };
    let pair = match node.as_seq() {
        Some([user, password]) => match (user.as_str(), password.as_str()) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => None,
        },
        _ => None,
    };
    let Some((user, password)) = pair else {
        return Err(PluginError::new(
            "auth",
            "must be [user, password] (two strings)",
        ));
    };
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let value = HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|_| PluginError::new("auth", "cannot be sent in a header"))?;
    Ok(Some((hyper::header::AUTHORIZATION, value)))
}

/// `headers: {Name: value}`, and the `Authorization` header `auth` makes.
pub fn parse_headers(args: &Node) -> Checked<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = basic_auth(args)?.into_iter().collect::<Vec<_>>();
    headers.extend(parse_header_map(args)?);
    Ok(headers)
}

fn parse_header_map(args: &Node) -> Checked<Vec<(HeaderName, HeaderValue)>> {
    let Some(node) = args.get("headers") else {
        return Ok(Vec::new());
    };
    let Some(entries) = node.as_map() else {
        return Err(PluginError::new(
            "headers",
            "must be a mapping of header names to values",
        ));
    };
    entries
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                PluginError::new(format!("headers.{k}"), "is not a valid header name")
            })?;
            let text = match v.as_str() {
                Some(s) => s.to_string(),
                None => check::describe(v),
            };
            let value = HeaderValue::from_str(&text).map_err(|_| {
                PluginError::new(format!("headers.{k}"), "is not a valid header value")
            })?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("127.0.0.1", 8080, "127.0.0.1:8080")
        );
        assert_eq!(t.uri.to_string(), "/a/b?x=1");
        assert_eq!(
            Target::parse("http://example.com").unwrap().uri.to_string(),
            "/"
        );
        let https = Target::parse("https://example.com/x").unwrap();
        assert_eq!((https.port, https.tls.is_some()), (443, true));
        assert_eq!(
            https.join("/y").unwrap().connection_key(),
            "https://example.com"
        );
        assert!(Target::parse("ftp://x").is_err());
        assert_eq!(t.join("/c").unwrap().uri.to_string(), "/c");
        assert_eq!(t.join("d").unwrap().uri.to_string(), "/a/d");
        assert_eq!(t.join("http://h:1/z").unwrap().authority, "h:1");
    }

    #[test]
    fn config() {
        let ok = HttpRequestScenario::from_config(
            &Node::parse(
                "{url: 'http://localhost:1/x', method: post, headers: {X-A: 1}, body: hi}",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.method, Method::POST);
        assert_eq!(ok.status_code, 200);
        let e =
            HttpRequestScenario::from_config(&Node::parse("{method: GET}").unwrap()).unwrap_err();
        assert_eq!(e.subpath, "url");
        let e = HttpRequestScenario::from_config(
            &Node::parse("{url: 'http://x', status_code: 42}").unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.subpath, "status_code");
    }
}
