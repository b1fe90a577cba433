//! `proxies` (SPEC §12) through a real HTTP proxy, Debian's tinyproxy: absolute-form requests
//! for `http://` URLs, `CONNECT` tunnels for `https://` (HTTP/1.1 and HTTP/2), credentials
//! from the proxy URL, and a proxy that refuses or is not there.

use crate::https::{Certs, https};
use crate::support::{self, Nginx, Tinyproxy};

#[test]
fn requests_go_through_a_real_proxy_in_absolute_form_and_in_connect_tunnels() {
    let certs = Certs::make();
    let plain = Nginx::with().access_log().start();
    let tls = Nginx::with()
        .tls(&certs.path("server.pem"), &certs.path("server.key"))
        .http2()
        .access_log()
        .start();
    let proxy = Tinyproxy::start();
    let dir = tempfile::tempdir().unwrap();
    let anonymous = format!("http://127.0.0.1:{}", proxy.port);
    let body = format!(
        "version: 2\ntitle: proxied\nsubtasks:\n\
         - title: http\n  scenario: {{Http.request: {{url: '{plain}', proxies: {{http: '{proxy}'}}}}}}\n  runner: {{constant: {{times: 20, concurrency: 2}}}}\n\
         - title: https requests\n  scenario: {{HttpRequests.check_request: {{url: '{tls_url}', method: GET, status_code: 200, verify: '{ca}', proxies: {{https: '{proxy}'}}}}}}\n  runner: {{constant: {{times: 20, concurrency: 2}}}}\n\
         - title: https h2\n  scenario: {{Http.request: {{url: '{tls_url}', verify: '{ca}', http2: true, connections: 1, proxies: {{https: '{proxy}'}}}}}}\n  runner: {{constant: {{times: 50, concurrency: 5}}}}\n\
         - title: no credentials\n  scenario: {{Http.request: {{url: '{tls_url}', verify: '{ca}', proxies: {{https: '{anonymous}'}}}}}}\n  runner: {{constant: {{times: 3, concurrency: 1}}}}\n\
         - title: no proxy there\n  scenario: {{Http.request: {{url: '{plain}', proxies: {{http: 'http://127.0.0.1:{closed}'}}}}}}\n  runner: {{constant: {{times: 3, concurrency: 1}}}}\n",
        plain = plain.url("/small"),
        tls_url = https(&tls, "/small"),
        ca = certs.arg("ca.pem"),
        proxy = proxy.url(),
        closed = support::free_port(),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(2), "{text}\n{err}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(20, 0), (20, 0), (50, 0), (3, 3), (3, 3)],
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ProxyError: the proxy 127.0.0.1:{} refused the tunnel to 127.0.0.1:{}: 407",
            proxy.port, tls.port
        )),
        "{text}"
    );
    assert!(
        text.contains("ProxyError: Cannot connect to proxy 127.0.0.1:"),
        "{text}"
    );

    let requests = proxy.requests();
    let absolute = format!("GET http://127.0.0.1:{}/small HTTP/1.1", plain.port);
    assert_eq!(
        requests.iter().filter(|r| **r == absolute).count(),
        20,
        "{requests:?}"
    );
    let tunnel = format!("CONNECT 127.0.0.1:{} HTTP/1.1", tls.port);
    assert!(requests.contains(&tunnel), "{requests:?}");
    assert_eq!(plain.access_log().len(), 20);
    let served = tls.access_log();
    assert_eq!(
        served.len(),
        70,
        "20 + 50 through tunnels, none of the refused"
    );
    assert_eq!(
        served.iter().filter(|l| l.protocol == "HTTP/2.0").count(),
        50
    );
}
