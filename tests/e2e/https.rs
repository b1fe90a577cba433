//! HTTPS (SPEC §12) against a real nginx with TLS on loopback, with certificates the test
//! makes itself with the `openssl` CLI: a CA and a server certificate for 127.0.0.1 and
//! localhost signed by it, and a self-signed one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Nginx};

/// The certificates of one test, in its own directory.
pub struct Certs {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new(support::tool(&["/usr/bin/openssl", "openssl"], "openssl"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok, "openssl {args:?}");
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let san = "subjectAltName=DNS:localhost,IP:127.0.0.1";
        // A CA, and a server certificate it signs.
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "30"]);
        ca.extend(["-subj", "/CN=rally-tui test CA"]);
        openssl(d, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &csr);
        std::fs::write(
            d.join("ext.cnf"),
            format!("{san}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("ext.cnf");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "30",
                "-extfile",
                "ext.cnf",
            ],
        );
        // A client certificate the CA signs, for mutual TLS (X.509 v3: with extensions).
        std::fs::write(
            d.join("client.cnf"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .expect("client.cnf");
        let mut client = vec!["req"];
        client.extend(ec);
        client.extend([
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=load",
        ]);
        openssl(d, &client);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "30",
                "-extfile",
                "client.cnf",
            ],
        );
        // Signed by the CA, but for another name.
        let mut other = vec!["req"];
        other.extend(ec);
        other.extend([
            "-keyout",
            "other.key",
            "-out",
            "other.csr",
            "-subj",
            "/CN=other",
        ]);
        openssl(d, &other);
        std::fs::write(
            d.join("other.cnf"),
            "subjectAltName=DNS:other.example\nbasicConstraints=CA:FALSE\n",
        )
        .expect("other.cnf");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "other.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "other.pem",
                "-days",
                "30",
                "-extfile",
                "other.cnf",
            ],
        );
        // Signed by the CA for the right names, valid in January 2020 only: `openssl x509`
        // cannot back-date, `openssl ca` can.
        let mut expired = vec!["req"];
        expired.extend(ec);
        expired.extend([
            "-keyout",
            "expired.key",
            "-out",
            "expired.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &expired);
        std::fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca=test\n[test]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n\
             default_md=sha256\npolicy=any\n[any]\ncommonName=supplied\n",
        )
        .expect("ca.cnf");
        std::fs::write(d.join("index.txt"), "").expect("index.txt");
        std::fs::write(d.join("serial"), "01\n").expect("serial");
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca.key",
                "-in",
                "expired.csr",
                "-out",
                "expired.pem",
                "-notext",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
                "-extfile",
                "ext.cnf",
            ],
        );
        // A self-signed one.
        let mut own = vec!["req", "-x509"];
        own.extend(ec);
        own.extend(["-keyout", "self.key", "-out", "self.pem", "-days", "30"]);
        own.extend(["-subj", "/CN=localhost", "-addext", san]);
        openssl(d, &own);
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_string()
    }
}

pub fn https(nginx: &Nginx, path: &str) -> String {
    nginx.url(path).replacen("http://", "https://", 1)
}

#[test]
fn https_with_a_ca_bundle_without_verification_and_failing_verification() {
    let certs = Certs::make();
    let signed = Nginx::start_tls(&certs.path("server.pem"), &certs.path("server.key"));
    let own = Nginx::start_tls(&certs.path("self.pem"), &certs.path("self.key"));
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: https\nsubtasks:\n\
         - title: ca\n  scenario: {{Http.request: {{url: '{signed}', verify: '{ca}'}}}}\n  runner: {{constant: {{times: 300, concurrency: 4}}}}\n\
         - title: requests\n  scenario: {{HttpRequests.check_request: {{url: '{signed_local}', method: GET, status_code: 200, verify: '{ca}'}}}}\n  runner: {{constant: {{times: 50, concurrency: 2}}}}\n\
         - title: unverified\n  scenario: {{Http.request: {{url: '{own}', verify: false}}}}\n  runner: {{constant: {{times: 100, concurrency: 2}}}}\n\
         - title: unknown issuer\n  scenario: {{Http.request: {{url: '{signed}'}}}}\n  runner: {{constant: {{times: 5, concurrency: 1}}}}\n\
         - title: self-signed\n  scenario: {{HttpRequests.check_request: {{url: '{own}', method: GET, status_code: 200}}}}\n  runner: {{constant: {{times: 3, concurrency: 1}}}}\n",
        signed = https(&signed, "/small"),
        signed_local = https(&signed, "/small").replace("127.0.0.1", "localhost"),
        own = https(&own, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(2), "{text}\n{err}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(300, 0), (50, 0), (100, 0), (5, 5), (3, 3)],
        "{text}"
    );
    assert!(
        text.contains(
            "SSLError: certificate verify failed: unable to get local issuer certificate"
        ),
        "{text}"
    );
    assert!(
        err.contains("verify is false"),
        "verify: false is warned about\n{err}"
    );
}

#[test]
fn a_missing_or_broken_ca_bundle_is_a_task_error_before_any_load() {
    let certs = Certs::make();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    for (verify, says) in [
        ("/nonexistent/ca.pem".to_string(), "no such file"),
        (
            dir.path().join("garbage.pem").display().to_string(),
            "no certificate",
        ),
    ] {
        let body = format!(
            "version: 2\ntitle: bad\nsubtasks:\n\
             - title: x\n  scenario: {{Http.request: {{url: 'https://127.0.0.1:1/', verify: '{verify}'}}}}\n"
        );
        let (code, _, said) = support::run_task(dir.path(), &body, &[]);
        assert_eq!(code, Some(64), "{said}");
        assert!(said.contains("verify") && said.contains(says), "{said}");
        assert!(
            said.contains("task.yaml:"),
            "names the file and place: {said}"
        );
    }
    drop(certs);
}

/// A server that demands a client certificate: with `cert` the requests go through, without
/// it every one fails, and the run says why.
#[test]
fn mutual_tls_with_and_without_a_client_certificate() {
    let certs = Certs::make();
    let nginx = Nginx::start_mtls(
        &certs.path("server.pem"),
        &certs.path("server.key"),
        &certs.path("ca.pem"),
    );
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: mtls\nsubtasks:\n\
         - title: with\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}', cert: ['{cert}', '{key}']}}}}\n  runner: {{constant: {{times: 100, concurrency: 2}}}}\n\
         - title: without\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}'}}}}\n  runner: {{constant: {{times: 4, concurrency: 1}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
        cert = certs.arg("client.pem"),
        key = certs.arg("client.key"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(2), "{text}\n{err}");
    // nginx answers a missing client certificate with 400 ("No required SSL certificate was
    // sent") after the handshake.
    assert_eq!(
        support::workload_counts(&text),
        vec![(100, 0), (4, 4)],
        "{text}"
    );
}

/// A certificate for another name and one that has expired: every iteration fails with the
/// reason a requests user knows, and the summary says so once.
#[test]
fn hostname_mismatch_and_expired_certificates_fail_with_their_reasons() {
    let certs = Certs::make();
    let other = Nginx::start_tls(&certs.path("other.pem"), &certs.path("other.key"));
    let expired = Nginx::start_tls(&certs.path("expired.pem"), &certs.path("expired.key"));
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: bad certs\nsubtasks:\n\
         - title: mismatch\n  scenario: {{Http.request: {{url: '{other}', verify: '{ca}'}}}}\n  runner: {{constant: {{times: 20, concurrency: 2}}}}\n\
         - title: expired\n  scenario: {{HttpRequests.check_request: {{url: '{expired}', method: GET, status_code: 200, verify: '{ca}'}}}}\n  runner: {{constant: {{times: 6, concurrency: 2}}}}\n",
        other = https(&other, "/small"),
        expired = https(&expired, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let (code, text, err) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(2), "{text}\n{err}");
    assert_eq!(
        support::workload_counts(&text),
        vec![(20, 20), (6, 6)],
        "{text}"
    );
    for reason in [
        "SSLError: certificate verify failed: hostname mismatch",
        "SSLError: certificate verify failed: certificate has expired",
    ] {
        assert!(
            text.contains(&format!("Every iteration failed the same way: {reason}")),
            "{reason} said once in words:\n{text}"
        );
    }
}

/// A client certificate with the wrong key is a task error at validation.
#[test]
fn a_client_key_that_does_not_match_its_certificate_is_refused_before_any_load() {
    let certs = Certs::make();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "version: 2\ntitle: bad\nsubtasks:\n\
         - title: x\n  scenario: {{Http.request: {{url: 'https://127.0.0.1:1/', cert: ['{cert}', '{key}']}}}}\n",
        cert = certs.arg("client.pem"),
        key = certs.arg("server.key"),
    );
    let (code, _, said) = support::run_task(dir.path(), &body, &[]);
    assert_eq!(code, Some(64), "{said}");
    assert!(
        said.contains("task.yaml:") && said.contains("cert"),
        "{said}"
    );
    assert!(said.contains("does not match"), "{said}");
}

/// nginx closes every connection after 10 requests; the reconnects resume the TLS session
/// (nginx logs `$ssl_session_reused`), and the summary, the JSON and the CSV count the new
/// connections and how they began as nginx saw them.
#[test]
fn reconnects_resume_the_tls_session_and_the_report_counts_them() {
    let certs = Certs::make();
    let nginx = Nginx::with()
        .tls(&certs.path("server.pem"), &certs.path("server.key"))
        .keepalive_requests(10)
        .access_log()
        .start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let body = format!(
        "version: 2\ntitle: resume\nsubtasks:\n\
         - title: h1\n  scenario: {{Http.request: {{url: '{url}', verify: '{ca}'}}}}\n  runner: {{constant: {{times: 200, concurrency: 2}}}}\n",
        url = https(&nginx, "/small"),
        ca = certs.arg("ca.pem"),
    );
    let task = support::write(dir.path(), "task.yaml", &body);
    let db = db.to_str().unwrap();
    let out = support::run(&["--db", db, "run", task.to_str().unwrap(), "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        support::stderr(&out)
    );
    let log = nginx.access_log();
    assert_eq!(log.len(), 200);
    let mut connections: Vec<(u64, bool)> = log.iter().map(|l| (l.connection, l.resumed)).collect();
    connections.sort();
    connections.dedup();
    let resumed = connections.iter().filter(|c| c.1).count();
    let full = connections.len() - resumed;
    assert!(connections.len() >= 20, "{connections:?}");
    assert!(
        resumed >= connections.len() - 4,
        "most reconnects resume: {connections:?}"
    );
    let line = format!(
        "Connections: {} opened ({full} TLS full handshakes, {resumed} TLS resumed); {} iterations reused",
        connections.len(),
        200 - connections.len()
    );
    assert!(text.contains(&line), "{line}\n{text}");
    let json = support::run(&["--db", db, "task", "export", "last", "--type", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let counts = &json["tasks"][0]["subtasks"][0]["workloads"][0]["statistics"]["connections"];
    assert_eq!(counts["tls_full"], full as u64, "{counts}");
    assert_eq!(counts["tls_resumed"], resumed as u64, "{counts}");
    let csv = support::run(&["--db", db, "task", "export", "last", "--type", "csv"]);
    let csv = support::stdout(&csv);
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "tls_resumed")
        .expect("tls_resumed column");
    let total: usize = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(col)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, resumed, "{csv}");
}
