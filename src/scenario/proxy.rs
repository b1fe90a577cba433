//! `proxies: {http: URL, https: URL}`, as python-requests takes them: a request to an
//! `http://` URL goes through the `http` proxy in absolute form (`GET http://host/path`);
//! a request to an `https://` URL goes through the `https` proxy in a `CONNECT` tunnel, with
//! TLS to the server inside it (so the proxy sees neither the request nor the certificate
//! check). HTTP/2 always tunnels. A proxy URL is `http://[user:password@]host:port`; its
//! credentials go in `Proxy-Authorization` (Basic), as requests sends them.
//!
//! Unlike requests, the `HTTP_PROXY`/`HTTPS_PROXY` variables are not read: a load test's
//! path to its target should be in the task file, not in the shell that started an agent.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::task::check::{Checked, PluginError};
use crate::task::node::Node;

/// The most of a proxy's answer to `CONNECT` that is read.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// One proxy: where it is, and the `Proxy-Authorization` value if its URL has credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    pub authorization: Option<String>,
}

/// The `proxies` of a scenario, by the scheme of the URL requested.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proxies {
    pub http: Option<Proxy>,
    pub https: Option<Proxy>,
}

/// Why a connection through a proxy failed; carried inside an `io::Error` to the scenario,
/// which reports it as requests' `ProxyError`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("Cannot connect to proxy {proxy}: {error}")]
    Unreachable { proxy: String, error: io::Error },
    #[error("the proxy {proxy} refused the tunnel to {target}: {status}")]
    Refused {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("the proxy {proxy} answered CONNECT with something that is not HTTP: {reason}")]
    Malformed { proxy: String, reason: String },
}

impl ProxyError {
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// The message of a proxy failure, if `error` is one.
pub fn proxy_error(error: &io::Error) -> Option<String> {
    error
        .get_ref()?
        .downcast_ref::<ProxyError>()
        .map(ToString::to_string)
}

impl Proxy {
    fn parse(url: &str) -> Result<Proxy, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid proxy URL '{url}': {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "proxy '{url}': only http:// proxies are supported, not {other}://"
                ));
            }
            None => return Err(format!("proxy '{url}' must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("proxy '{url}' has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(80);
        let authorization = authority.as_str().rsplit_once('@').map(|(credentials, _)| {
            use base64::Engine;
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            let plain = format!("{}:{}", percent_decode(user), percent_decode(password));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(plain)
            )
        });
        Ok(Proxy {
            host,
            port,
            authorization,
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A TCP connection to the proxy.
    pub async fn connect(&self) -> io::Result<TcpStream> {
        TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| {
                ProxyError::Unreachable {
                    proxy: self.address(),
                    error,
                }
                .into_io()
            })
    }

    /// Ask the proxy on `stream` for a tunnel to `authority` (`host:port`).
    pub async fn tunnel(&self, stream: &mut TcpStream, authority: &str) -> io::Result<()> {
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        // Read the answer's head byte by byte past what was read: nothing of the tunnel's
        // own bytes (the server's TLS) may be consumed here. CONNECT answers are small.
        let mut head = Vec::with_capacity(256);
        let malformed = |reason: String| {
            ProxyError::Malformed {
                proxy: self.address(),
                reason,
            }
            .into_io()
        };
        loop {
            if head.len() >= MAX_CONNECT_HEAD {
                return Err(malformed(format!(
                    "no end of its head in {MAX_CONNECT_HEAD} bytes"
                )));
            }
            let byte = match stream.read_u8().await {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(malformed("it closed the connection".into()));
                }
                Err(e) => return Err(e),
            };
            head.push(byte);
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(malformed("an incomplete head".into())),
            Err(e) => return Err(malformed(e.to_string())),
        }
        let code = response.code.unwrap_or(0);
        if (200..300).contains(&code) {
            return Ok(());
        }
        Err(ProxyError::Refused {
            proxy: self.address(),
            target: authority.to_string(),
            status: format!("{code} {}", response.reason.unwrap_or("")),
        }
        .into_io())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Proxies {
    /// The `proxies` key of a scenario's arguments.
    pub fn from_args(args: &Node) -> Checked<Option<Arc<Proxies>>> {
        let Some(node) = args.get("proxies") else {
            return Ok(None);
        };
        let Some(entries) = node.as_map() else {
            return Err(PluginError::new(
                "proxies",
                "must be a mapping of URL schemes to proxy URLs: {http: URL, https: URL}",
            ));
        };
        let mut proxies = Proxies::default();
        for (scheme, url) in entries {
            let key = format!("proxies.{scheme}");
            let Some(url) = url.as_str() else {
                return Err(PluginError::new(
                    key,
                    "must be a proxy URL (http://host:port)",
                ));
            };
            let proxy = Proxy::parse(url).map_err(|m| PluginError::new(&key, m))?;
            match scheme.as_str() {
                "http" => proxies.http = Some(proxy),
                "https" => proxies.https = Some(proxy),
                other => {
                    return Err(PluginError::new(
                        key,
                        format!("'{other}' is not a scheme we proxy; use http or https"),
                    ));
                }
            }
        }
        Ok(Some(Arc::new(proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://proxy.example:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization),
            ("proxy.example", 3128, None)
        );
        let p = Proxy::parse("http://us%40er:p%3Ass@10.0.0.1").unwrap();
        assert_eq!(p.port, 80);
        // base64("us@er:p:ss")
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert!(
            Proxy::parse("socks5://h:1")
                .unwrap_err()
                .contains("only http://")
        );
        assert!(Proxy::parse("h:1").is_err());
    }

    #[test]
    fn proxies_by_scheme() {
        let p = Proxies::from_args(
            &Node::parse("{proxies: {http: 'http://a:1', https: 'http://b:2'}}").unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.http.as_ref().unwrap().host, "a");
        assert_eq!(p.https.as_ref().unwrap().port, 2);
        let e = Proxies::from_args(&Node::parse("{proxies: {ftp: 'http://a:1'}}").unwrap())
            .unwrap_err();
        assert_eq!(e.subpath, "proxies.ftp");
        let e = Proxies::from_args(&Node::parse("{proxies: 'http://a:1'}").unwrap()).unwrap_err();
        assert_eq!(e.subpath, "proxies");
    }
}
