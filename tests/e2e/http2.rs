//! HTTP/2 (SPEC §12) against a real nginx with `listen … ssl http2` (ALPN) and `listen …
//! http2` (h2c, prior knowledge): nginx's access log says which protocol each request came
//! in on and on which connection, so the tests see streams multiplexed as nginx saw them.

use std::collections::BTreeSet;

use crate::https::{Certs, https};
use crate::support::{self, Nginx};

fn connections(nginx: &Nginx) -> BTreeSet<u64> {
    nginx.access_log().iter().map(|l| l.connection).collect()
}

/// Over TLS: 20 requests in flight on 2 connections, every one HTTP/2 in nginx's log; the
/// summary counts the 2 connections.
#[test]
fn http2_over_tls_multiplexes_the_requests_in_flight_over_the_connections_asked_for() {
    let certs = Certs::make();
    let nginx = Nginx::with()
        .tls(&certs.path("server.pem"), &certs.path("server.key"))
        .http2()
        .access_log()
        .start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: h2\nsubtasks:\n\
         - title: h2\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}', http2: true, connections: 2, headers: {{Connection: keep-alive, X-Load: yes}}}}}}\n  runner: {{constant: {{times: 2000, concurrency: 20}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    assert_eq!(support::workload_counts(&text), vec![(2000, 0)], "{text}");
    let log = nginx.access_log();
    assert_eq!(log.len(), 2000);
    assert!(
        log.iter()
            .all(|l| l.protocol == "HTTP/2.0" && l.status == 200),
        "{log:?}"
    );
    assert_eq!(connections(&nginx).len(), 2, "{log:?}");
    assert!(text.contains("Connections: 2 opened"), "{text}");
}

/// `http://` with `http2: true` is h2c with prior knowledge; without `connections`, 150
/// requests in flight take 2 connections (one per 100 streams).
#[test]
fn h2c_with_prior_knowledge_and_one_connection_per_hundred_streams() {
    let nginx = Nginx::with().http2().access_log().start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: h2c\nsubtasks:\n\
         - title: h2c\n  scenario: {{Http.request: {{url: '{url}', http2: true}}}}\n  runner: {{constant: {{times: 3000, concurrency: 150}}}}\n",
        url = nginx.url("/small"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    let log = nginx.access_log();
    assert_eq!(log.len(), 3000);
    assert!(log.iter().all(|l| l.protocol == "HTTP/2.0"), "{log:?}");
    assert_eq!(connections(&nginx).len(), 2);
}

/// nginx ends every connection with a GOAWAY after 50 requests: the streams it did not
/// take move to a new connection, and no iteration fails.
#[test]
fn a_goaway_mid_run_moves_the_remaining_streams_to_a_new_connection() {
    let certs = Certs::make();
    let nginx = Nginx::with()
        .tls(&certs.path("server.pem"), &certs.path("server.key"))
        .http2()
        .keepalive_requests(50)
        .access_log()
        .start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: goaway\nsubtasks:\n\
         - title: h2\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}', http2: true, connections: 1}}}}\n  runner: {{constant: {{times: 2000, concurrency: 16}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    assert_eq!(support::workload_counts(&text), vec![(2000, 0)], "{text}");
    let log = nginx.access_log();
    assert_eq!(log.len(), 2000, "each request once");
    assert!(
        connections(&nginx).len() >= 40,
        "{}",
        connections(&nginx).len()
    );
    // Later connections resumed the TLS session.
    assert!(text.contains("TLS resumed"), "{text}");
}

/// A TLS server without HTTP/2: every iteration fails and says why; `connections` without
/// `http2` is a task error.
#[test]
fn a_server_without_http2_and_connections_without_http2_are_clear_errors() {
    let certs = Certs::make();
    let nginx = Nginx::start_tls(&certs.path("server.pem"), &certs.path("server.key"));
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: no h2\nsubtasks:\n\
         - title: h2\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}', http2: true}}}}\n  runner: {{constant: {{times: 10, concurrency: 2}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(2), "{text}\n{err}");
    assert!(
        text.contains("Every iteration failed the same way: ConnectionError: the server did not agree to HTTP/2"),
        "{text}"
    );
    let body = "version: 2\ntitle: bad\nsubtasks:\n\
         - title: x\n  scenario: {Http.request: {url: 'http://127.0.0.1:1/', connections: 4}}\n";
    let (code, _, err) = support::run_task(dir.path(), body, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("connections") && err.contains("http2: true"),
        "{err}"
    );
}

/// Two local agents, HTTPS over HTTP/2: every request arrives once, over HTTP/2.
#[test]
fn a_distributed_run_over_https_and_http2() {
    let certs = Certs::make();
    let nginx = Nginx::with()
        .tls(&certs.path("server.pem"), &certs.path("server.key"))
        .http2()
        .access_log()
        .start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: distributed h2\nsubtasks:\n\
         - title: h1\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}'}}}}\n  runner: {{constant: {{times: 1000, concurrency: 8}}}}\n\
         - title: h2\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}', http2: true, connections: 1}}}}\n  runner: {{constant: {{times: 1000, concurrency: 8}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &["--agents", "2"]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(1000, 0), (1000, 0)],
        "{text}"
    );
    let log = nginx.access_log();
    assert_eq!(log.len(), 2000);
    let h2 = log.iter().filter(|l| l.protocol == "HTTP/2.0").count();
    assert_eq!(h2, 1000, "the second workload's requests came over HTTP/2");
}
