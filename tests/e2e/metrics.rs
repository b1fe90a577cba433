//! `run --metrics-listen`: a real Prometheus scrapes a real run, and Prometheus's own Python
//! client parses what `/metrics` serves in both formats.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop};

/// A task with failures at known iterations (10 of 400) that runs for a few seconds, so
/// that several scrapes see it running.
fn failing_task(dir: &Path) -> String {
    support::write(
        dir,
        "task.yaml",
        "version: 2\ntitle: metrics\nsubtasks:\n\
         - title: some fail\n  scenario: {Dummy.failure: {sleep: 0.04, from_iteration: 1, to_iteration: 40, each: 4}}\n  runner: {constant: {times: 400, concurrency: 4}}\n  sla: {failure_rate: {max: 50}}\n",
    )
    .to_str()
    .expect("utf-8")
    .to_string()
}

/// `GET path` over plain HTTP/1.0, with an optional Accept header: (status, body).
fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus on loopback, owned by one test, scraping `target` every second.
struct Prometheus {
    port: u16,
    _dir: tempfile::TempDir,
    _child: KillOnDrop,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let exe = support::tool(&["/usr/bin/prometheus", "prometheus"], "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = support::write(
            dir.path(),
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: rally\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        );
        let port = support::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            port,
            _child: KillOnDrop(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(port, "/-/ready", None), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not get ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result vector: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
            None,
        )
        .expect("prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{promql}: {body}"))
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN);
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// One number: the query's only series' value.
    fn scalar(&self, promql: &str) -> f64 {
        let r = self.query(promql);
        assert_eq!(r.len(), 1, "{promql}: {r:?}\n{}", self.log());
        r[0].1
    }
}

/// A real Prometheus scrapes a distributed run (2 agents) with failures; what it stored
/// agrees with the task database, and every agent has its series.
#[test]
fn prometheus_scrapes_a_distributed_run_and_agrees_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = failing_task(dir.path());
    let metrics_port = support::free_port();
    let prometheus = Prometheus::start(metrics_port);
    // Its first scrape of the (not yet listening) target has happened: the next ones see
    // the run from its start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.query("up{job=\"rally\"}").is_empty() {
        assert!(Instant::now() < deadline, "no scrape: {}", prometheus.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let listen = format!("127.0.0.1:{metrics_port}");
    let db_arg = db.to_str().unwrap();
    let out = support::run(&[
        "--db",
        db_arg,
        "run",
        &t,
        "--no-tui",
        "--agents",
        "2",
        "--metrics-listen",
        &listen,
        // Scrapes come every second: four leave room for the last one after the end.
        "--metrics-linger",
        "4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    let show = support::stdout(&support::run(&["--db", db_arg, "task", "show", "last"]));
    let stored = support::workload_counts(&show);
    assert_eq!(stored, vec![(400, 10)], "{show}");

    // The target is gone now, so its series are stale at "now": the newest sample of
    // each is what the last scrape saw.
    let last = |m: &str| format!("max_over_time({m}[10m])");
    assert_eq!(
        prometheus.scalar(&last("rally_tui_iterations_finished_total")),
        400.0
    );
    assert_eq!(
        prometheus.scalar(&last("rally_tui_iterations_failed_total")),
        10.0
    );
    assert_eq!(
        prometheus.scalar(&format!(
            "sum({})",
            last("rally_tui_failures_total{error_type!=\"\"}")
        )),
        10.0
    );
    assert_eq!(
        prometheus.scalar(&last("rally_tui_iteration_duration_seconds_count")),
        400.0
    );
    assert_eq!(
        prometheus.scalar(&last(
            "rally_tui_iteration_duration_seconds_bucket{le=\"+Inf\"}"
        )),
        400.0
    );
    // Every iteration slept 40 ms: none is under 10 ms, all are under 5 s.
    assert_eq!(
        prometheus.scalar(&last(
            "rally_tui_iteration_duration_seconds_bucket{le=\"0.01\"}"
        )),
        0.0
    );
    assert_eq!(
        prometheus.scalar(&last(
            "rally_tui_iteration_duration_seconds_bucket{le=\"5.0\"}"
        )),
        400.0
    );
    assert_eq!(
        prometheus.scalar(&last("rally_tui_run_state{state=\"finished\"}")),
        1.0
    );
    assert_eq!(
        prometheus.scalar(&last("rally_tui_sla_passing{criterion=\"failure_rate\"}")),
        1.0
    );
    // Per agent: two of them, whose shares add up to the stored totals.
    let agents = prometheus.query(&last("rally_tui_agent_iterations_finished_total"));
    assert_eq!(agents.len(), 2, "{agents:?}");
    assert!(
        agents
            .iter()
            .all(|(l, _)| l["agent"].as_str().is_some_and(|a| a != "other")),
        "{agents:?}"
    );
    assert_eq!(agents.iter().map(|(_, v)| v).sum::<f64>(), 400.0);
    assert_eq!(
        prometheus.scalar(&format!(
            "sum({})",
            last("rally_tui_agent_iterations_failed_total")
        )),
        10.0
    );
    assert_eq!(
        prometheus.scalar(&format!(
            "sum({})",
            last("rally_tui_agent_iteration_duration_seconds_count")
        )),
        400.0
    );
    // It was scraped while running, not only at the end.
    assert_eq!(
        prometheus.scalar(&last("rally_tui_run_state{state=\"running\"}")),
        1.0
    );
    // The labels say which workload it is.
    let (labels, _) = &prometheus.query(&last("rally_tui_iterations_finished_total"))[0];
    assert_eq!(labels["subtask"], "some fail", "{labels}");
    assert_eq!(labels["scenario"], "Dummy.failure", "{labels}");
    assert_eq!(labels["workload"], "0", "{labels}");
}

/// Prometheus's Python client parses `/metrics` in both formats, and reads the run's
/// totals from it.
#[test]
fn python_prometheus_client_parses_both_formats() {
    // Debian's python3-prometheus-client is installed for Debian's own python3.
    let python = support::tool(&["/usr/bin/python3"], "python3");
    let check = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "prometheus_client is missing for {}: scripts/test.sh (the README's test command) \
         installs it, or `apt-get install python3-prometheus-client`\n{}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = failing_task(dir.path());
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(
        support::rally(&[
            "--db",
            db.to_str().unwrap(),
            "run",
            &t,
            "--no-tui",
            "--metrics-listen",
            &listen,
            "--metrics-linger",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rally-tui runs"),
    );
    // The run is over (and stored) when it says how long /metrics stays.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no linger notice: {seen:?}"));
        let done = line.contains("--metrics-linger");
        seen.push(line);
        if done {
            break;
        }
    }
    let (status, text) = http_get(port, "/metrics", None).unwrap();
    assert_eq!(status, 200, "{text}");
    let (status, om) = http_get(
        port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert_eq!(status, 200, "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(http_get(port, "/", None).unwrap().0, 404);

    let text_file = support::write(dir.path(), "metrics.txt", &text);
    let om_file = support::write(dir.path(), "metrics.om", &om);
    // Each format through its own parser; the totals of a few families per format.
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as text_parse
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
out = {}
for kind, parse, path in (("text", text_parse, sys.argv[1]), ("openmetrics", om_parse, sys.argv[2])):
    totals = {}
    for family in parse(open(path).read()):
        for s in family.samples:
            key = family.type + " " + s.name
            if s.name.endswith("_bucket") and s.labels.get("le") != "+Inf":
                continue
            totals[key] = totals.get(key, 0) + s.value
    out[kind] = totals
print(json.dumps(out))
"#;
    let parsed = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&text_file)
        .arg(&om_file)
        .output()
        .expect("python3 runs");
    assert!(
        parsed.status.success(),
        "the Python client rejected /metrics:\n{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    for kind in ["text", "openmetrics"] {
        let t = &v[kind];
        assert_eq!(
            t["counter rally_tui_iterations_finished_total"], 400.0,
            "{kind}: {t}"
        );
        assert_eq!(
            t["counter rally_tui_iterations_failed_total"], 10.0,
            "{kind}"
        );
        assert_eq!(t["counter rally_tui_failures_total"], 10.0, "{kind}");
        assert_eq!(
            t["histogram rally_tui_iteration_duration_seconds_count"], 400.0,
            "{kind}"
        );
        assert_eq!(
            t["counter rally_tui_agent_iterations_finished_total"], 400.0,
            "{kind}"
        );
        assert_eq!(t["gauge rally_tui_run_state"], 1.0, "{kind}");
    }
    // A signal cuts the linger short; the run's own verdict stands.
    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the linger did not end on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

/// A bad address or a port in use is an argument error (64), before any load.
#[test]
fn a_bad_metrics_address_or_a_port_in_use_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = failing_task(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    for addr in ["nonsense", "127.0.0.1:99999", in_use.as_str()] {
        let out = support::run(&[
            "--db",
            db.to_str().unwrap(),
            "run",
            &t,
            "--no-tui",
            "--metrics-listen",
            addr,
        ]);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{addr}: {}",
            support::stderr(&out)
        );
        assert!(
            support::stderr(&out).contains("--metrics-listen"),
            "{addr}: {}",
            support::stderr(&out)
        );
        assert!(
            !support::stdout(&out).contains("iterations"),
            "{addr}: no load: {}",
            support::stdout(&out)
        );
    }
    assert!(
        !db.exists() || {
            let list = support::stdout(&support::run(&[
                "--db",
                db.to_str().unwrap(),
                "task",
                "list",
            ]));
            !list.contains("metrics")
        }
    );
}

/// Ctrl-C during the linger only cuts the linger short: the run is over, so nothing says it
/// is stopping, and the exit code is the run's.
#[test]
fn ctrl_c_during_the_linger_ends_it_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let t = failing_task(dir.path());
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(
        support::rally(&[
            "--db",
            db.to_str().unwrap(),
            "run",
            &t,
            "--no-tui",
            "--metrics-listen",
            &listen,
            "--metrics-linger",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rally-tui runs"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no linger notice: {seen:?}"));
        let done = line.contains("--metrics-linger");
        seen.push(line);
        if done {
            break;
        }
    }
    let interrupted = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "the linger went on for {:?}",
        interrupted.elapsed()
    );
    seen.extend(rx.try_iter());
    assert_eq!(status.code(), Some(0), "{seen:?}");
    assert!(
        !seen.iter().any(|l| l.contains("Stopping")),
        "a stop was announced after the run: {seen:?}"
    );
}
