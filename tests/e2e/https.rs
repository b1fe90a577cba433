//! HTTPS (SPEC §12) against a real nginx with TLS on loopback, with certificates the test
//! makes itself with the `openssl` CLI: a CA and a server certificate for 127.0.0.1 and
//! localhost signed by it, and a self-signed one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Nginx};

/// The certificates of one test, in its own directory.
struct Certs {
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
    fn make() -> Certs {
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
        // A self-signed one.
        let mut own = vec!["req", "-x509"];
        own.extend(ec);
        own.extend(["-keyout", "self.key", "-out", "self.pem", "-days", "30"]);
        own.extend(["-subj", "/CN=localhost", "-addext", san]);
        openssl(d, &own);
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_string()
    }
}

fn https(nginx: &Nginx, path: &str) -> String {
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
    let task = support::write(dir.path(), "task.yaml", &body);
    let out = support::run(&["run", task.to_str().unwrap(), "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        support::stderr(&out)
    );
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
        support::stderr(&out).contains("verify is false"),
        "verify: false is warned about\n{}",
        support::stderr(&out)
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
        let task = support::write(dir.path(), "task.yaml", &body);
        let out = support::run(&["run", task.to_str().unwrap(), "--no-tui"]);
        let said = support::stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{said}");
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
    let task = support::write(dir.path(), "task.yaml", &body);
    let out = support::run(&["run", task.to_str().unwrap(), "--no-tui"]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        support::stderr(&out)
    );
    // nginx answers a missing client certificate with 400 ("No required SSL certificate was
    // sent") after the handshake.
    assert_eq!(
        support::workload_counts(&text),
        vec![(100, 0), (4, 4)],
        "{text}"
    );
}
