//! SSH clusters end to end (SPEC §6 "Where agents come from", §9): `run --cluster` and
//! `cluster check` against a real OpenSSH server on 127.0.0.1.
//!
//! Each test starts its own `sshd -D` on a free port with a host key and an authorized key
//! it generates (StrictModes off, no PAM, the test's own user), and gives the client a
//! known_hosts file for that host key, so ssh runs exactly as it would against a real host,
//! host-key checking included. The tests install nothing: `.ci/run` installs openssh-server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop};

/// A guard against hangs, not a timing assertion.
const HANG: Duration = Duration::from_secs(120);

const TASK: &str = "---\nversion: 2\ntitle: cluster\nsubtasks:\n\
- title: constant\n  scenario: {Dummy.dummy: {}}\n  runner: {constant: {times: 300, concurrency: 4}}\n";

/// A real sshd owned by one test, and the keys to reach it.
struct Sshd {
    port: u16,
    dir: tempfile::TempDir,
    _child: KillOnDrop,
}

fn sshd_binary() -> PathBuf {
    support::tool(&["/usr/sbin/sshd", "/usr/bin/sshd"], "openssh-server")
}

fn keygen(path: &Path) {
    let status = Command::new(support::tool(&["ssh-keygen"], "openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = sshd_binary();
        // sshd started as root wants its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("user_key"));
        keygen(&d.join("wrong_key"));
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized");
        for attempt in 0..5 {
            let port = support::free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\n\
                 UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nMaxStartups 100\n",
                d = d.display()
            );
            std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
            let log = std::fs::File::create(d.join("sshd.log")).expect("sshd log");
            let child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let child = KillOnDrop(child);
            if support::wait_for_port(port, Duration::from_secs(5)) {
                let host_key = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
                std::fs::write(
                    d.join("known_hosts"),
                    format!("[127.0.0.1]:{port} {host_key}"),
                )
                .expect("known_hosts");
                return Sshd {
                    port,
                    dir,
                    _child: child,
                };
            }
            eprintln!(
                "sshd did not come up on port {port} (attempt {attempt}): {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
        }
        panic!("sshd would not start");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A cluster file: the controller on any free loopback port, and `hosts` (YAML list
    /// items, indented by two) reaching this sshd through `defaults`.
    fn cluster(&self, hosts: &str) -> PathBuf {
        let text = format!(
            "listen: tcp://127.0.0.1:0\n\
             defaults:\n  user: {user}\n  port: {port}\n  identity_file: user_key\n\
             \x20 cache_dir: {cache}\n\
             \x20 ssh_options: [StrictHostKeyChecking=yes, UserKnownHostsFile={known}, IdentitiesOnly=yes]\n\
             hosts:\n{hosts}",
            user = user(),
            port = self.port,
            cache = self.path("remote").display(),
            known = self.path("known_hosts").display(),
        );
        support::write(self.dir.path(), "cluster.yaml", &text)
    }

    fn db(&self) -> PathBuf {
        self.path("tasks.db")
    }
}

/// Runs rally-tui to completion with a hang guard.
fn run_guarded(args: &[&str]) -> Output {
    let mut child = support::rally(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rally-tui starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rally-tui {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status.code(),
        support::stdout(o),
        support::stderr(o)
    )
}

/// Processes whose command line matches `pattern` (pgrep -f), with their command lines.
fn processes(pattern: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", "--", pattern])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// No agent of the test is left: neither by name nor by anything under its temp dir.
fn assert_no_agent_left(sshd: &Sshd, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = processes(&format!("[a]gent .*{}", sshd.dir.path().display()));
        for name in names {
            left.extend(processes(&format!("[-]-name {name}( |$)")));
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agents left after the run: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_task(sshd: &Sshd, cluster: &Path) -> Output {
    let task = support::write(sshd.dir.path(), "task.yaml", TASK);
    run_guarded(&[
        "--db",
        sshd.db().to_str().expect("utf-8"),
        "run",
        task.to_str().expect("utf-8"),
        "--cluster",
        cluster.to_str().expect("utf-8"),
        "--no-tui",
        "--agent-wait",
        "60",
    ])
}

#[test]
fn runs_a_task_on_agents_started_over_ssh() {
    let sshd = Sshd::start();
    let cluster = sshd.cluster(&format!(
        "  - host: 127.0.0.1\n    name: plain\n    count: 2\n    remote_path: {}\n    \
         env: {{RUST_LOG: warn}}\n",
        support::bin().display()
    ));
    let o = run_task(&sshd, &cluster);
    let out = support::stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for line in [
        "info: host plain: starting 2 agents over ssh",
        "info: host plain: agent plain-1: connecting",
        "info: host plain: agent plain-2: connecting",
        "info: host plain: agent plain-1: started",
        "info: host plain: agent plain-2: started",
        "info: agent plain-1 registered",
        "info: agent plain-2 registered",
    ] {
        assert!(out.contains(line), "no '{line}' in\n{}", text(&o));
    }
    assert_eq!(support::workload_counts(&out), [(300, 0)], "{}", text(&o));
    assert!(
        out.contains("| plain-1 ") && out.contains("| plain-2 "),
        "{}",
        text(&o)
    );
    assert_no_agent_left(&sshd, &["plain-1", "plain-2"]);
}

#[test]
fn copies_its_binary_once_per_version() {
    let sshd = Sshd::start();
    let cluster = sshd
        .cluster("  - host: 127.0.0.1\n    name: copied\n    count: 2\n    copy_binary: true\n");
    let first = run_task(&sshd, &cluster);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let out = support::stdout(&first);
    assert!(
        out.contains("info: host copied: copied rally-tui ("),
        "{}",
        text(&first)
    );
    assert_eq!(
        support::workload_counts(&out),
        [(300, 0)],
        "{}",
        text(&first)
    );
    let versions: Vec<PathBuf> = std::fs::read_dir(sshd.path("remote/bin"))
        .expect("a bin dir under cache_dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let dir = versions[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    assert!(
        dir.starts_with(&format!("{}-", env!("CARGO_PKG_VERSION"))),
        "{dir}"
    );
    let copy = versions[0].join("rally-tui");
    assert_eq!(
        std::fs::metadata(&copy).expect("copied binary").len(),
        std::fs::metadata(support::bin()).expect("binary").len()
    );
    assert_no_agent_left(&sshd, &["copied-1", "copied-2"]);

    // The same binary is not sent again.
    let second = run_task(&sshd, &cluster);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let out = support::stdout(&second);
    assert!(
        out.contains(&format!(
            "info: host copied: rally-tui already at {}",
            copy.display()
        )),
        "{}",
        text(&second)
    );
    assert!(!out.contains("copied rally-tui ("), "{}", text(&second));
    assert_no_agent_left(&sshd, &["copied-1", "copied-2"]);
}

#[test]
fn a_host_that_refuses_fails_the_run_before_any_load() {
    let sshd = Sshd::start();
    let cluster = sshd.cluster(&format!(
        "  - host: 127.0.0.1\n    name: refused\n    count: 2\n    identity_file: wrong_key\n    \
         remote_path: {}\n",
        support::bin().display()
    ));
    let o = run_task(&sshd, &cluster);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let (out, err) = (support::stdout(&o), support::stderr(&o));
    assert!(
        out.contains("error: host refused: agent refused-1: failed: ")
            && out.contains("Permission denied"),
        "{}",
        text(&o)
    );
    assert!(
        err.contains("0 of 2 agents registered") && err.contains("Permission denied"),
        "{}",
        text(&o)
    );
    assert!(!out.contains("iterations"), "load ran: {}", text(&o));
    let list = run_guarded(&["--db", sshd.db().to_str().expect("utf-8"), "task", "list"]);
    assert!(
        support::stdout(&list).contains("There are no tasks"),
        "{}",
        text(&list)
    );
    assert_no_agent_left(&sshd, &["refused-1", "refused-2"]);
}

#[test]
fn cluster_check_reports_every_host() {
    let sshd = Sshd::start();
    let cluster = sshd.cluster(&format!(
        "  - host: 127.0.0.1\n    name: good\n    remote_path: {}\n\
         \x20 - host: 127.0.0.1\n    name: nokey\n    identity_file: wrong_key\n\
         \x20 - host: 127.0.0.1\n    name: nobinary\n    remote_path: {}\n\
         \x20 - host: 127.0.0.1\n    name: tocopy\n    copy_binary: true\n",
        support::bin().display(),
        sshd.path("missing/rally-tui").display()
    ));
    let o = run_guarded(&["cluster", "check", cluster.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = support::stdout(&o);
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert!(out.starts_with("HOST "), "{out}");
    let version = format!("rally-tui {}", env!("CARGO_PKG_VERSION"));
    let good = row("good");
    assert_eq!(good[1], "ok", "{out}");
    assert!(good[2].contains(' '), "uname -sm in {good:?}");
    assert_eq!(good[3], version, "{out}");
    let nokey = row("nokey");
    assert_eq!(nokey[1], "failed", "{out}");
    assert!(nokey[4].contains("Permission denied"), "{out}");
    let nobinary = row("nobinary");
    assert_eq!(nobinary[1], "failed", "{out}");
    assert!(nobinary[4].contains("rally-tui not found"), "{out}");
    let tocopy = row("tocopy");
    assert_eq!(tocopy[1], "ok", "{out}");
    assert!(tocopy[4].contains("the run copies rally-tui to"), "{out}");
}

#[test]
fn an_invalid_cluster_file_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = support::write(
        dir.path(),
        "cluster.yaml",
        "listen: tcp://127.0.0.1:0\nhosts:\n  - host: h\n    count: 0\n",
    );
    let task = support::write(dir.path(), "task.yaml", TASK);
    let path = cluster.to_str().expect("utf-8");
    let want = format!("{path}:4:12: hosts[0].count: must be an integer >= 1, got 0");
    let o = run_guarded(&[
        "run",
        task.to_str().expect("utf-8"),
        "--cluster",
        path,
        "--no-tui",
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(support::stderr(&o).contains(&want), "{}", text(&o));
    let o = run_guarded(&["cluster", "check", path]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(support::stderr(&o).contains(&want), "{}", text(&o));
}

#[test]
fn a_controller_killed_mid_run_leaves_no_agent() {
    let sshd = Sshd::start();
    let cluster = sshd.cluster(&format!(
        "  - host: 127.0.0.1\n    name: orphan\n    count: 2\n    remote_path: {}\n",
        support::bin().display()
    ));
    let task = support::write(
        sshd.dir.path(),
        "long.yaml",
        "---\nversion: 2\ntitle: long\nsubtasks:\n- title: long\n  scenario: {Dummy.dummy: {sleep: 0.01}}\n  \
         runner: {constant_for_duration: {duration: 600, concurrency: 2}}\n",
    );
    let mut child = support::rally(&[
        "--db",
        sshd.db().to_str().expect("utf-8"),
        "run",
        task.to_str().expect("utf-8"),
        "--cluster",
        cluster.to_str().expect("utf-8"),
        "--no-tui",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("rally-tui starts");
    let out = child.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = seen.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + HANG;
    // Under load: the workload's progress lines are coming.
    loop {
        let text = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if text.contains("iterations |") {
            break;
        }
        assert!(
            Instant::now() < deadline && child.0.try_wait().ok().flatten().is_none(),
            "the run did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (On loopback the ssh client's command line, which carries the remote one, matches too.)
    let agent = format!("{} agent ", support::bin().display());
    assert!(
        processes("[-]-name orphan-1( |$)")
            .iter()
            .any(|p| p.contains(&agent)),
        "agent orphan-1 is not running"
    );
    // SIGKILL: no teardown code runs; the ssh sessions' stdin closes with the process.
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert_no_agent_left(&sshd, &["orphan-1", "orphan-2"]);
}
