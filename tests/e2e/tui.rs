//! The terminal UI in a real terminal: a detached tmux session of fixed size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support;

/// A tmux session owned by one test, killed when the test ends, pass or fail.
struct Tmux {
    name: String,
}

impl Tmux {
    /// Starts `cmd` (a shell command line) in a new detached `width`×`height` session.
    fn start_sized(cmd: &str, width: u16, height: u16) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "rally-tui-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new(support::tool(&["tmux"], "tmux"))
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                cmd,
            ])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .status()
            .expect("tmux is installed")
            .success();
        assert!(ok, "tmux new-session failed");
        Self { name }
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send(&self, key: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, key])
            .status()
            .expect("tmux send-keys")
            .success();
        assert!(ok, "tmux send-keys {key} failed");
    }

    /// Polls the pane until `done` holds, or panics with the last screen after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// `rally-tui run` of one task in its own tmux session: the scratch directory with the task
/// file and the database, and the file the shell writes the exit code to.
struct TuiRun {
    /// First, so that it is dropped first: the session ends before its directory goes.
    tmux: Tmux,
    dir: tempfile::TempDir,
    db: PathBuf,
    exit_file: PathBuf,
}

impl TuiRun {
    /// Writes `body` as the task and runs `rally-tui --db DB run TASK ARGS…` in a new
    /// `size` session. With `stay`, the shell stays after (the session dies with the test)
    /// so the terminal can be read after the UI left.
    fn start(body: &str, args: &[&str], size: (u16, u16), stay: bool) -> TuiRun {
        let dir = tempfile::tempdir().unwrap();
        let task = support::write(dir.path(), "task.yaml", body);
        let db = dir.path().join("tasks.db");
        let exit_file = dir.path().join("exit");
        let mut cmd = format!(
            "{} --db {} run {}",
            quote(&support::bin()),
            quote(&db),
            quote(&task)
        );
        for a in args {
            cmd.push(' ');
            cmd.push_str(a);
        }
        cmd.push_str(&format!("; echo EXIT=$? > {}", quote(&exit_file)));
        if stay {
            cmd.push_str("; sleep 60");
        }
        let tmux = Tmux::start_sized(&cmd, size.0, size.1);
        TuiRun {
            tmux,
            dir,
            db,
            exit_file,
        }
    }

    /// Waits for the `EXIT=N` line the shell writes once rally-tui has exited.
    fn exit_code(&self) -> String {
        let (tmux, exit_file) = (&self.tmux, &self.exit_file);
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(exit_file)
                && text.ends_with('\n')
            {
                return text.trim().to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "rally-tui did not exit after q; screen:\n{}",
                tmux.capture()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Single-quotes `p` for the shell tmux runs the command with.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn s_then_y_stops_the_run_and_q_quits_with_exit_3() {
    // The shell stays (the session dies with the test) so the terminal can be read after.
    let run = TuiRun::start(
        "version: 2\ntitle: tui-stop\nsubtasks:\n\
         - title: long\n  scenario: {Dummy.dummy: {sleep: 0.01}}\n  runner: {constant_for_duration: {duration: 60, concurrency: 2}}\n",
        &[],
        (120, 40),
        true,
    );
    let (db, tmux) = (&run.db, &run.tmux);
    tmux.wait_for(
        "the header and the SLA panel",
        Duration::from_secs(10),
        |s| s.contains("rally-tui tui-stop") && s.contains("RUNNING") && s.contains("SLA"),
    );
    // The panels one key away, over the charts.
    for (key, shows) in [
        ("v", "Response Times · workload 1/1 (so far)"),
        ("e", "errors · workload 1/1"),
        ("w", "workloads · ↑↓ select"),
    ] {
        tmux.send(key);
        tmux.wait_for(shows, Duration::from_secs(5), |s| s.contains(shows));
    }
    tmux.send("Escape");
    tmux.send("s");
    tmux.wait_for("the stop confirmation", Duration::from_secs(5), |s| {
        s.contains("Stop the run?")
    });
    tmux.send("y");
    let stopped = Instant::now();
    tmux.wait_for("the aborted state", Duration::from_secs(10), |s| {
        s.contains("ABORTED")
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        stopped.elapsed()
    );
    // The final screen stays until `q`.
    assert!(!run.exit_file.exists(), "the TUI left before q");
    tmux.send("q");
    assert_eq!(run.exit_code(), "EXIT=3");
    let list = support::run(&["--db", db.to_str().unwrap(), "task", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "aborted", "{rows}");
    // What --no-tui prints at the end stays on the terminal once the UI is gone.
    let uuid = rows[0]["uuid"].as_str().unwrap().to_string();
    let left = tmux.wait_for("the summary after the UI", Duration::from_secs(5), |s| {
        s.contains("task show")
    });
    for line in [
        "Response Times (sec)".to_string(),
        "aborted_manually".to_string(),
        format!("Task {uuid} aborted: SLA failed"),
        format!("task show {uuid}"),
        format!("task report {uuid} --out report.html"),
    ] {
        assert!(left.contains(&line), "{line} missing from:\n{left}");
    }
}

/// Below 80×24 the UI says so instead of drawing empty boxes, and still stops and quits.
#[test]
fn a_terminal_below_80x24_gets_a_clear_message() {
    let run = TuiRun::start(
        "version: 2\ntitle: small\nsubtasks:\n\
         - title: long\n  scenario: {Dummy.dummy: {sleep: 0.01}}\n  runner: {constant_for_duration: {duration: 60, concurrency: 2}}\n",
        &[],
        (60, 20),
        false,
    );
    let tmux = &run.tmux;
    tmux.wait_for("the too-small message", Duration::from_secs(10), |s| {
        s.contains("terminal too small (60×20, needs 80×24)") && s.contains("running")
    });
    tmux.send("s");
    tmux.send("y");
    tmux.wait_for("the aborted state", Duration::from_secs(10), |s| {
        s.contains("aborted")
    });
    tmux.send("q");
    assert_eq!(run.exit_code(), "EXIT=3");
}

/// Command lines of live `rally-tui agent` processes whose arguments mention `marker`
/// (the run's temp dir: local agents keep their chunk cache under the database's dir).
fn agents_of(marker: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains(" agent ") && cmd.contains(marker))
        .collect()
}

/// The distributed run in the TUI: both local agents' rows and the aggregate charts show;
/// `s` then `y` stops the load on every agent, the agents exit, the task is stored as
/// aborted, and rally-tui exits with 3 after `q`.
#[test]
fn distributed_run_shows_agents_and_s_y_stops_them_all() {
    let run = TuiRun::start(
        "version: 2\ntitle: tui-agents\nsubtasks:\n\
         - title: long\n  scenario: {Dummy.dummy: {sleep: 0.01}}\n  runner: {constant_for_duration: {duration: 120, concurrency: 2}}\n",
        &["--agents", "2"],
        (120, 40),
        false,
    );
    let (dir, db, tmux) = (&run.dir, &run.db, &run.tmux);
    let marker = dir.path().to_string_lossy().into_owned();
    let screen = tmux.wait_for(
        "both agents running and the aggregate charts",
        Duration::from_secs(30),
        |s| {
            s.contains("rally-tui tui-agents")
                && s.contains("all agents · throughput")
                && s.lines()
                    .any(|l| l.contains("local-1") && l.contains("running"))
                && s.lines()
                    .any(|l| l.contains("local-2") && l.contains("running"))
        },
    );
    assert!(screen.contains("agents 2/2"), "{screen}");
    assert_eq!(agents_of(&marker).len(), 2, "{:?}", agents_of(&marker));
    tmux.send("s");
    tmux.wait_for("the stop confirmation", Duration::from_secs(5), |s| {
        s.contains("Stop the run on 2 agents?")
    });
    tmux.send("y");
    let stopped = Instant::now();
    let screen = tmux.wait_for("the aborted state", Duration::from_secs(20), |s| {
        s.contains("ABORTED")
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopped.elapsed()
    );
    // Every agent's row ends as done (none left running or lost).
    for name in ["local-1", "local-2"] {
        assert!(
            screen
                .lines()
                .any(|l| l.contains(name) && l.contains("done")),
            "{name} not done:\n{screen}"
        );
    }
    // The agents exit on their own while the final screen stays up.
    let start = Instant::now();
    while !agents_of(&marker).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "agents still running: {:?}",
            agents_of(&marker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let show = support::run(&["--db", db.to_str().unwrap(), "task", "show", "last"]);
    let text = support::stdout(&show);
    assert!(
        text.lines().next().is_some_and(|l| l.contains("(aborted")),
        "{text}"
    );
    assert!(!run.exit_file.exists(), "the TUI left before q");
    tmux.send("q");
    assert_eq!(run.exit_code(), "EXIT=3");
}

/// Ctrl-C stops; a second Ctrl-C leaves at once, without waiting for iterations that sleep
/// 20 s: the terminal is restored, the exit code is 3 and the task is stored as aborted.
#[test]
fn a_second_ctrl_c_leaves_at_once() {
    let run = TuiRun::start(
        "version: 2\ntitle: tui-leave\nsubtasks:\n\
         - title: slow\n  scenario: {Dummy.dummy: {sleep: 20}}\n  runner: {constant: {times: 100, concurrency: 2}}\n",
        &[],
        (120, 40),
        true,
    );
    let (db, tmux) = (&run.db, &run.tmux);
    tmux.wait_for("the running state", Duration::from_secs(10), |s| {
        s.contains("RUNNING")
    });
    tmux.send("C-c");
    tmux.wait_for("the stopping state", Duration::from_secs(5), |s| {
        s.contains("STOPPING")
    });
    let second = Instant::now();
    tmux.send("C-c");
    assert_eq!(run.exit_code(), "EXIT=3");
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "leaving took {:?}",
        second.elapsed()
    );
    let list = support::run(&["--db", db.to_str().unwrap(), "task", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "aborted", "{rows}");
}

/// An `rps` workload on two agents whose iterations outlast their pace: the header shows
/// the agents' iterations in flight at the `max_concurrency` cap.
#[test]
fn rps_in_flight_against_max_concurrency_from_the_agents() {
    let run = TuiRun::start(
        "version: 2\ntitle: tui-rps\nsubtasks:\n\
         - title: capped\n  scenario: {Dummy.dummy: {sleep: 0.5}}\n  runner: {rps: {times: 300, rps: 30, max_concurrency: 4}}\n",
        &["--agents", "2"],
        (160, 48),
        true,
    );
    let tmux = &run.tmux;
    tmux.wait_for(
        "iterations in flight at the cap",
        Duration::from_secs(20),
        |s| s.contains("in flight 4/4"),
    );
    tmux.send("C-c");
    tmux.send("C-c");
    assert_eq!(run.exit_code(), "EXIT=3");
}
