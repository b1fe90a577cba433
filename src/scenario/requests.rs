//! Rally's `HttpRequests.check_request` and `HttpRequests.check_random_request`: one request
//! (chosen at random for the second) inside the atomic action `requests.check_request`,
//! failing with Rally's `ValueError` text when the status differs.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::http::{self, Connections, Target, failure_error};
use super::{Iteration, SlotState};
use crate::chunk::IterationError;
use crate::task::check::{self, Checked, PluginError};
use crate::task::node::Node;

pub const CHECK_REQUEST_ACTION: &str = "requests.check_request";

/// Keyword arguments of `requests.request` that we honour.
const REQUEST_KWARGS: &[&str] = &[
    "headers",
    "params",
    "data",
    "json",
    "cookies",
    "timeout",
    "allow_redirects",
    "verify",
    "cert",
    "auth",
    "proxies",
];

/// Redirects followed before giving up, as `requests` does.
const MAX_REDIRECTS: usize = 30;

/// One request as `requests.request(method, url, **kwargs)` would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestCall {
    /// `None` only in a `check_random_request` entry without one, which Rally accepts and
    /// which then fails every iteration that picks it.
    pub method: Option<Method>,
    pub target: Target,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub status_code: Option<u16>,
    pub timeout: Option<Duration>,
    pub allow_redirects: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequestScenario {
    pub random: bool,
    pub requests: Vec<RequestCall>,
    pub status_code: u16,
}

/// One request's arguments; `method_optional` for `check_random_request`'s entries, where
/// Rally accepts a missing method (and fails the iterations that pick it).
fn call(args: &Node, extra: &[&str], prefix: &str, method_optional: bool) -> Checked<RequestCall> {
    let with_prefix = |e: PluginError| {
        PluginError::new(
            if prefix.is_empty() {
                e.subpath
            } else if e.subpath.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.subpath)
            },
            e.message,
        )
    };
    let mut allowed: Vec<&str> = vec!["url", "method"];
    allowed.extend_from_slice(extra);
    allowed.extend_from_slice(REQUEST_KWARGS);
    check::mapping(args, &allowed).map_err(with_prefix)?;
    let inner = || -> Checked<RequestCall> {
        let mut target = Target::from_args(args)?;
        let method = match check::string(args, "method")? {
            Some(m) => Some(http::parse_method(&m)?),
            None if method_optional => None,
            None => {
                return Err(PluginError::new(
                    "method",
                    "is required: an HTTP method such as GET",
                ));
            }
        };
        let mut headers = http::parse_headers(args)?;
        if let Some(params) = args.get("params") {
            let Some(entries) = params.as_map() else {
                return Err(PluginError::new(
                    "params",
                    "must be a mapping of query parameters",
                ));
            };
            let query = form_encode(entries);
            let sep = if target.uri.query().is_some() {
                '&'
            } else {
                '?'
            };
            target.uri = format!("{}{sep}{query}", target.uri)
                .parse()
                .map_err(|e| PluginError::new("params", format!("cannot build the URL: {e}")))?;
        }
        let mut body = Bytes::new();
        if let Some(data) = args.get("data") {
            if let Some(s) = data.as_str() {
                body = Bytes::from(s.to_string());
            } else if let Some(entries) = data.as_map() {
                body = Bytes::from(form_encode(entries));
                headers.push((
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                ));
            } else {
                return Err(PluginError::new("data", "must be a string or a mapping"));
            }
        }
        if let Some(json) = args.get("json") {
            body = Bytes::from(json.to_json().to_string());
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        if let Some(cookies) = args.get("cookies") {
            let Some(entries) = cookies.as_map() else {
                return Err(PluginError::new(
                    "cookies",
                    "must be a mapping of cookie names to values",
                ));
            };
            let text = entries
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map_or_else(|| check::describe(v), str::to_string)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let value = HeaderValue::from_str(&text)
                .map_err(|_| PluginError::new("cookies", "not a valid Cookie header"))?;
            headers.push((COOKIE, value));
        }
        let timeout = match args.get("timeout") {
            None => None,
            Some(t) => {
                // requests takes a number or a (connect, read) pair; we bound the whole request.
                let seconds = match (t.as_f64(), t.as_seq()) {
                    (Some(s), _) => s,
                    (None, Some([c, r])) => c.as_f64().unwrap_or(-1.0) + r.as_f64().unwrap_or(-1.0),
                    _ => -1.0,
                };
                if seconds <= 0.0 || !seconds.is_finite() {
                    return Err(PluginError::new(
                        "timeout",
                        "must be a number of seconds > 0 or a [connect, read] pair",
                    ));
                }
                Some(Duration::from_secs_f64(seconds))
            }
        };
        Ok(RequestCall {
            method,
            target,
            headers,
            body,
            status_code: http::status(args, "status_code")?,
            timeout,
            allow_redirects: check::boolean(args, "allow_redirects")?.unwrap_or(true),
        })
    };
    inner().map_err(with_prefix)
}

/// `application/x-www-form-urlencoded`, as `requests` encodes `params` and `data`.
fn form_encode(entries: &[(String, Node)]) -> String {
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    entries
        .iter()
        .map(|(k, v)| {
            let value = v
                .as_str()
                .map_or_else(|| check::describe(v), str::to_string);
            format!("{}={}", encode(k), encode(&value))
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl CheckRequestScenario {
    pub fn from_config(name: &str, args: &Node) -> Checked<Option<CheckRequestScenario>> {
        match name {
            "HttpRequests.check_request" => {
                let c = call(args, &["status_code"], "", false)?;
                let status_code =
                    check::required(c.status_code, "status_code", "the expected HTTP status")?;
                Ok(Some(CheckRequestScenario {
                    random: false,
                    requests: vec![c],
                    status_code,
                }))
            }
            "HttpRequests.check_random_request" => {
                check::mapping(args, &["requests", "status_code"])?;
                let status_code = check::required(
                    http::status(args, "status_code")?,
                    "status_code",
                    "the expected HTTP status",
                )?;
                let list = check::required(
                    args.get("requests"),
                    "requests",
                    "a list of requests to pick from",
                )?;
                let Some(items) = list.as_seq().filter(|i| !i.is_empty()) else {
                    return Err(PluginError::new(
                        "requests",
                        "must be a non-empty list of requests, each with url and method",
                    ));
                };
                let requests = items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| call(r, &["status_code"], &format!("requests[{i}]"), true))
                    .collect::<Checked<Vec<_>>>()?;
                Ok(Some(CheckRequestScenario {
                    random: true,
                    requests,
                    status_code,
                }))
            }
            _ => Ok(None),
        }
    }

    pub fn summary(&self) -> &'static str {
        if self.random {
            "Execute a single random HTTP request."
        } else {
            "Standard way for testing web services using HTTP requests."
        }
    }

    pub async fn run(
        &self,
        slot: &mut SlotState,
        it: &mut Iteration<'_>,
    ) -> Result<(), IterationError> {
        let index = if self.random {
            slot.rng.usize(..self.requests.len())
        } else {
            0
        };
        let call = &self.requests[index];
        let expected = call.status_code.unwrap_or(self.status_code);
        let action = it.actions.start(0);
        let Some(method) = &call.method else {
            // Rally calls `_check_request(**request)` inside the atomic action's timer.
            it.actions.finish(action, true);
            return Err(IterationError::new(
                "TypeError",
                "RequestScenario._check_request() missing 1 required positional argument: 'method'",
            ));
        };
        let result = match call.timeout {
            Some(t) => match tokio::time::timeout(t, perform(&mut slot.http, call, method)).await {
                Ok(r) => r,
                Err(_) => {
                    slot.http = Connections::default();
                    Err(IterationError::new(
                        "ReadTimeout",
                        format!(
                            "HTTPConnectionPool(host='{}', port={}): Read timed out. (read timeout={})",
                            call.target.host,
                            call.target.port,
                            t.as_secs_f64()
                        ),
                    ))
                }
            },
            None => perform(&mut slot.http, call, method).await,
        };
        let result = result.and_then(|status| {
            if status.as_u16() == expected {
                Ok(())
            } else {
                Err(IterationError::new(
                    "ValueError",
                    format!(
                        "Expected HTTP request code is `{expected}` actual `{}`",
                        status.as_u16()
                    ),
                ))
            }
        });
        it.actions.finish(action, result.is_err());
        result
    }
}

/// Send, following redirects as `requests` does when `allow_redirects` is on.
async fn perform(
    conns: &mut Connections,
    call: &RequestCall,
    method: &Method,
) -> Result<StatusCode, IterationError> {
    let mut target = call.target.clone();
    let mut method = method.clone();
    let mut body = call.body.clone();
    for _ in 0..=MAX_REDIRECTS {
        let build = || {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = target.request_target();
            let headers = request.headers_mut();
            if let Ok(host) = HeaderValue::from_str(&target.authority) {
                headers.insert(HOST, host);
            }
            if let Some(auth) = target.proxy_authorization()
                && let Ok(auth) = HeaderValue::from_str(auth)
            {
                headers.insert(hyper::header::PROXY_AUTHORIZATION, auth);
            }
            for (k, v) in &call.headers {
                headers.append(k.clone(), v.clone());
            }
            request
        };
        let response = conns
            .send(&target, build)
            .await
            .map_err(|f| failure_error(&f))?;
        let redirect = matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308);
        match (redirect && call.allow_redirects, response.location) {
            (true, Some(location)) => {
                target = target
                    .join(&location)
                    .map_err(|m| IterationError::new("InvalidURL", m))?;
                if matches!(response.status.as_u16(), 301..=303) && method != Method::HEAD {
                    method = Method::GET;
                    body = Bytes::new();
                }
            }
            _ => return Ok(response.status),
        }
    }
    Err(IterationError::new(
        "TooManyRedirects",
        format!("Exceeded {MAX_REDIRECTS} redirects."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, args: &str) -> Checked<Option<CheckRequestScenario>> {
        CheckRequestScenario::from_config(name, &Node::parse(args).unwrap())
    }

    #[test]
    fn check_request_needs_url_method_status() {
        assert_eq!(
            parse(
                "HttpRequests.check_request",
                "{url: 'http://x', method: GET}"
            )
            .unwrap_err()
            .subpath,
            "status_code"
        );
        assert_eq!(
            parse(
                "HttpRequests.check_request",
                "{method: GET, status_code: 200}"
            )
            .unwrap_err()
            .subpath,
            "url"
        );
        let s = parse("HttpRequests.check_request", "{url: 'http://x/p', method: GET, status_code: 200, allow_redirects: false, params: {a: 'b c'}}")
            .unwrap()
            .unwrap();
        assert!(!s.requests[0].allow_redirects);
        assert_eq!(s.requests[0].target.uri.to_string(), "/p?a=b+c");
        assert_eq!(
            parse(
                "HttpRequests.check_request",
                "{url: 'http://x', method: GET, status_code: 200, proxies: 'http://p:1'}"
            )
            .unwrap_err()
            .subpath,
            "proxies"
        );
    }

    #[test]
    fn random_request_paths() {
        let e = parse("HttpRequests.check_random_request", "{status_code: 200, requests: [{url: 'http://x', method: GET}, {url: 'nope', method: GET}]}").unwrap_err();
        assert_eq!(e.subpath, "requests[1].url");
        let s = parse(
            "HttpRequests.check_random_request",
            "{status_code: 200, requests: [{url: 'http://x', method: GET, status_code: 404}]}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.requests[0].status_code, Some(404));
    }
}
