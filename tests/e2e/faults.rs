//! Faults a distributed run survives (SPEC §6): real controller and agent processes, each
//! test checking what was stored, the exit codes, and that nothing is left running.

use std::time::{Duration, Instant};

use rally_tui::store::Store;

use crate::support::{HANG, Proc, Scratch, TOKEN};

/// Stored iteration numbers of the last task's first workload, by agent.
fn stored(s: &Scratch) -> Vec<(u64, String)> {
    let store = Store::open(&s.db()).expect("store opens");
    let uuid = store.resolve("last").expect("a task is stored");
    let task = store.task(&uuid).expect("the task loads");
    let mut its = Vec::new();
    store
        .for_each_chunk(&task.workloads[0].uuid, |chunk| {
            for r in &chunk.records {
                its.push((r.iteration, chunk.source.to_string()));
            }
        })
        .expect("chunks decode");
    its.sort();
    its
}

fn assert_exactly_once(its: &[(u64, String)], times: u64, text: &str) {
    let numbers: Vec<u64> = its.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u64> = (1..=times).collect();
    assert_eq!(numbers, expected, "every iteration exactly once\n{text}");
}

/// Two agents started with the same `--name` (on their own caches): the second is refused,
/// says who holds the name, and exits 1; the run goes on with the first, and nobody evicts
/// anybody.
#[test]
fn a_second_agent_under_a_taken_name_is_refused_and_exits_1() {
    let s = Scratch::new();
    let body = "version: 2\ntitle: names\nsubtasks:\n\
- title: d\n  scenario: {Dummy.dummy: {sleep: 0.005}}\n  runner: {constant: {times: 600, concurrency: 2}}\n";
    let (mut c, port) = s.listen(body, 1, &[]);
    let mut first = s.agent_with_cache(port, "same", TOKEN, "first");
    assert!(
        c.wait_for_stdout(|o| o.contains("agent same registered")),
        "{}",
        c.text()
    );
    let mut second = s.agent_with_cache(port, "same", TOKEN, "second");
    let status = second.wait();
    assert_eq!(status.code(), Some(1), "{}", second.text());
    let said = second.stderr();
    assert!(
        said.contains("already registered") && said.contains(&format!("pid {}", first.pid())),
        "the refusal names the holder's host and pid:\n{said}"
    );
    let status = c.wait();
    let text = c.text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("refused agent same"), "{text}");
    assert!(!text.contains("registered again"), "no eviction:\n{text}");
    assert_exactly_once(&stored(&s), 600, &text);
    assert!(first.wait().success(), "{}", first.text());
}

/// A run on two agents (`--liveness 2`) of which one, "frozen", was stopped with SIGSTOP
/// until the controller declared it lost, then `after` more, then resumed.
struct Frozen {
    scratch: Scratch,
    controller: Proc,
    frozen: Proc,
    _steady: Proc,
}

fn freeze(runner: &str, after: Duration) -> Frozen {
    let scratch = Scratch::new();
    let body = format!(
        "version: 2\ntitle: freeze\nsubtasks:\n\
         - title: d\n  scenario: {{Dummy.dummy: {{sleep: 0.01}}}}\n  runner: {runner}\n"
    );
    let (mut controller, port) = scratch.listen(&body, 2, &["--liveness", "2"]);
    let steady = scratch.agent(port, "steady", TOKEN);
    let frozen = scratch.agent(port, "frozen", TOKEN);
    assert!(
        controller.wait_for_stdout(|o| o.contains("=== Workload 1/1")),
        "{}",
        controller.text()
    );
    std::thread::sleep(Duration::from_millis(700));
    frozen.signal("-STOP");
    assert!(
        controller.wait_for_stdout(|o| o.contains("agent frozen lost")),
        "{}",
        controller.text()
    );
    std::thread::sleep(after);
    frozen.signal("-CONT");
    Frozen {
        scratch,
        controller,
        frozen,
        _steady: steady,
    }
}

/// An agent frozen (SIGSTOP) for longer than the liveness timeout, then resumed: it judges
/// its own silence before it runs anything, stops its load, registers again and takes its
/// share again, and every iteration is stored exactly once.
#[test]
fn a_frozen_agent_stops_its_stale_load_on_resume_and_registers_again() {
    let Frozen {
        scratch: s,
        controller: mut c,
        frozen,
        _steady,
    } = freeze(
        "{constant: {times: 3000, concurrency: 4}}",
        Duration::from_millis(1500),
    );
    let resumed = Instant::now();
    let status = c.wait();
    let text = c.text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert_exactly_once(&stored(&s), 3000, &text);
    let said = frozen.stderr();
    // Either check may see the silence first on a loaded machine: the wake-up's own (the
    // deadline passed while frozen) or the liveness tick's; both stop the load before
    // anything else runs, which the exactly-once check above holds it to.
    assert!(
        said.contains("resumed after hearing nothing from the controller")
            || said.contains("nothing heard from the controller within the liveness timeout"),
        "the agent noticed its freeze:\n{said}"
    );
    assert!(
        text.matches("agent frozen registered").count() >= 2,
        "it registered again:\n{text}"
    );
    assert!(
        text.contains("agent frozen is back"),
        "and took its share again:\n{text}"
    );
    assert!(resumed.elapsed() < HANG);
}

/// SIGTERM is a stop in every phase, also while the controller waits for its agents: exit 3.
#[test]
fn sigterm_while_waiting_for_agents_exits_3() {
    let s = Scratch::new();
    let body = "version: 2\ntitle: t\nsubtasks:\n- title: d\n  scenario: {Dummy.dummy: {}}\n";
    let (mut c, _port) = s.listen(body, 2, &[]);
    let deadline = Instant::now() + HANG;
    while !c.stderr().contains("waiting for them") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.signal("-TERM");
    let status = c.wait();
    assert_eq!(status.code(), Some(3), "{}", c.text());
    assert!(
        c.stderr().contains("Stopped while waiting for agents"),
        "{}",
        c.text()
    );
}

/// An agent started before its controller says the connection was refused (not that it
/// timed out), and keeps trying.
#[test]
fn an_agent_before_its_controller_says_refused() {
    let s = Scratch::new();
    let port = crate::support::free_port_pair();
    let mut agent = s.agent(port, "early", TOKEN);
    let deadline = Instant::now() + HANG;
    while !agent.stderr().contains("refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = agent.stderr();
    assert!(said.contains("Connection refused"), "{said}");
    assert!(!said.contains("timed out"), "{said}");
    assert!(agent.exited().is_none(), "it keeps trying:\n{said}");
}

/// A controller killed mid-run leaves a task whose workload has no summary: `task show`
/// says how many iterations are stored, and `task export` has exactly those rows; the
/// chunks its agent made and nobody stored are listed by `agent --list` and cleared by
/// `agent --clear`.
#[test]
fn a_crashed_task_shows_what_export_has_and_its_leftover_chunks_can_be_cleared() {
    let s = Scratch::new();
    let task = s.task(
        "version: 2\ntitle: crash\nsubtasks:\n\
         - title: d\n  scenario: {Dummy.dummy: {sleep: 0.002}}\n  runner: {constant_for_duration: {duration: 60, concurrency: 2}}\n",
    );
    let mut c = crate::support::Proc::spawn(
        "controller",
        crate::support::rally_db(&s.db(), &["run", &task, "--no-tui", "--agents", "1"]),
    );
    assert!(
        c.wait_for_stdout(|o| o
            .lines()
            .any(|l| l.contains("iterations |") && !l.contains(" 0/"))
            && o.matches("iterations |").count() >= 3),
        "{}",
        c.text()
    );
    c.kill9();
    let show = s.task_command(&["show", "last"]);
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    let stored: u64 = shown
        .split(" iterations stored")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stored count in:\n{shown}"));
    assert!(stored > 0, "{shown}");
    let export = s.task_command(&["export", "last", "--type", "csv"]);
    let rows = String::from_utf8_lossy(&export.stdout).lines().count() as u64;
    assert_eq!(
        rows,
        stored + 1,
        "CSV rows (with the header) against `show`:\n{shown}"
    );

    // What the agent made and nobody stored stays in its cache: listed, then cleared.
    let cache = find_cache(s.path()).expect("the local agent's cache is left behind");
    let cache = cache.to_str().expect("utf-8 path");
    let list = |args: &[&str]| {
        let deadline = Instant::now() + HANG;
        loop {
            // The agent leaves once its stdin closes; until then it holds the cache's lock.
            let mut all = vec!["agent", "--cache-dir", cache];
            all.extend_from_slice(args);
            let out = crate::support::run(&all);
            let text = crate::support::stdout(&out) + &crate::support::stderr(&out);
            if out.status.success() || Instant::now() > deadline {
                return (out.status.code(), text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (code, listed) = list(&["--list"]);
    assert_eq!(code, Some(0), "{listed}");
    let uuid = shown
        .split_whitespace()
        .nth(1)
        .expect("Task UUID: ...")
        .trim_end_matches(':');
    assert!(
        listed.contains(uuid),
        "the crashed task's chunks are listed:\n{listed}"
    );
    let (code, cleared) = list(&["--clear"]);
    assert_eq!(code, Some(0), "{cleared}");
    assert!(cleared.contains("Deleted"), "{cleared}");
    let (_, after) = list(&["--list"]);
    assert!(after.contains("holds no chunks"), "{after}");
}

/// The first directory under `dir` that is a chunk cache (it has a `cache-id`).
fn find_cache(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    if dir.join("cache-id").is_file() {
        return Some(dir.to_path_buf());
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .find_map(|e| find_cache(&e.path()))
}

/// A small tmpfs mounted for one test, unmounted when it ends.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    /// `None` when mounting is not permitted here.
    fn mount(dir: std::path::PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new(crate::support::tool(
            &["/usr/bin/mount", "/bin/mount", "mount"],
            "mount",
        ))
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    /// Fill it up: write until the disk says no.
    fn fill(&self) {
        let _ = std::fs::write(self.dir.join("filler"), vec![0u8; 64 << 20]);
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::support::tool(
            &["/usr/bin/umount", "/bin/umount", "umount"],
            "mount",
        ))
        .args(["-l"])
        .arg(&self.dir)
        .status();
    }
}

/// An agent whose cache disk fills up mid-run (and, in the second case, stays full) keeps
/// the chunks it cannot write in memory and delivers them: every iteration is stored once,
/// the run ends by itself, exit 0.
fn full_cache_disk(free_after: Option<Duration>) {
    let s = Scratch::new();
    let Some(disk) = Tmpfs::mount(s.path().join("cache").join("small"), "4m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not permitted here");
        return;
    };
    let body = "version: 2\ntitle: full disk\nsubtasks:\n\
- title: d\n  scenario: {Dummy.dummy: {sleep: 0.001}}\n  runner: {constant: {times: 30000, concurrency: 8}}\n";
    let (mut c, port) = s.listen(body, 2, &[]);
    let small = s.agent_with_cache(port, "small", TOKEN, "small");
    let _roomy = s.agent(port, "roomy", TOKEN);
    assert!(
        c.wait_for_stdout(|o| o.contains("=== Workload 1/1")),
        "{}",
        c.text()
    );
    std::thread::sleep(Duration::from_millis(800));
    disk.fill();
    if let Some(after) = free_after {
        std::thread::sleep(after);
        disk.free();
    }
    let status = c.wait();
    let text = c.text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert_exactly_once(&stored(&s), 30000, &text);
    let said = small.stderr();
    assert!(
        said.contains("cannot write") && said.contains("No space left on device"),
        "the agent says why:\n{said}"
    );
    if free_after.is_some() {
        assert!(said.contains("writes again"), "{said}");
    }
}

#[test]
fn a_cache_disk_that_fills_up_and_frees_again_loses_nothing() {
    full_cache_disk(Some(Duration::from_secs(2)));
}

#[test]
fn a_cache_disk_that_stays_full_loses_nothing() {
    full_cache_disk(None);
}

/// The same freeze in a `constant_for_duration` workload: the agent that comes back runs its
/// share on the workload's own clock, so the workload still ends on time.
#[test]
fn a_frozen_agent_back_in_a_duration_workload_ends_with_the_others() {
    let Frozen {
        scratch: s,
        controller: mut c,
        frozen: _frozen,
        _steady,
    } = freeze(
        "{constant_for_duration: {duration: 7, concurrency: 4}}",
        Duration::from_millis(500),
    );
    let status = c.wait();
    let text = c.text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("agent frozen is back"), "{text}");
    // Its half of the concurrency went to the other agent while it was away, and came back
    // with it (SPEC §6 lost shares).
    assert!(
        text.contains("its concurrency 2 went to steady (+2)"),
        "{text}"
    );
    assert!(
        text.contains("it takes concurrency 2 from steady (-2)"),
        "{text}"
    );
    assert!(text.contains("Shares moved: frozen back at"), "{text}");
    let its = stored(&s);
    let mut numbers: Vec<u64> = its.iter().map(|(n, _)| *n).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), its.len(), "no iteration twice\n{text}");
    assert!(
        its.iter().filter(|(_, agent)| agent == "frozen").count() > 0,
        "{text}"
    );
    // Its share ended with the workload's: the load took about 7 s, not 7 s after its return.
    let load: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Load duration: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no load duration in\n{text}"));
    assert!(load < 8.5, "load duration {load} s\n{text}");
}

/// The controller killed (SIGKILL) mid-run and started again on the same address with the
/// same task: the hand-started agents reconnect to the new one and run its work exactly
/// once; the chunks they hold from the crashed run stay in their caches, the new controller
/// says so, and `agent --list` shows them under the crashed task.
#[test]
fn a_restarted_controller_gets_its_agents_back_and_their_old_chunks_are_kept() {
    let s = Scratch::new();
    let body = "version: 2\ntitle: restart\nsubtasks:\n\
- title: d\n  scenario: {Dummy.dummy: {sleep: 0.005}}\n  runner: {constant: {times: 4000, concurrency: 4}}\n";
    let (mut first, port) = s.listen(body, 1, &[]);
    let mut agent = s.agent(port, "keeper", TOKEN);
    // Mid-run, with the controller frozen first so that chunks pile up in the agent's cache.
    assert!(
        first.wait_for_stdout(|o| o.matches("iterations |").count() >= 2),
        "{}",
        first.text()
    );
    first.signal("-STOP");
    std::thread::sleep(Duration::from_millis(600));
    first.kill9();
    let crashed = first.stdout();
    let crashed_uuid = crashed
        .lines()
        .find_map(|l| l.strip_prefix("Task "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no task id in\n{crashed}"))
        .to_string();
    let mut second = None;
    let deadline = Instant::now() + HANG;
    while second.is_none() && Instant::now() < deadline {
        // The old sockets may linger a moment.
        second = s.listen_at("127.0.0.1", port, body, 1, &[]);
        if second.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut second = second.expect("the controller starts again on the same address");
    let status = second.wait();
    let text = second.text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert_exactly_once(&stored(&s), 4000, &text);
    assert!(
        text.contains("chunks of other runs"),
        "the old run's chunks are reported:\n{text}"
    );
    // The agent was told to leave at the end; its cache still holds the crashed run's.
    assert!(agent.wait().success(), "{}", agent.text());
    let cache = s.path().join("cache").join("keeper");
    let out = crate::support::run(&[
        "agent",
        "--cache-dir",
        cache.to_str().expect("utf-8"),
        "--list",
    ]);
    let listed = crate::support::stdout(&out);
    assert!(listed.contains(&crashed_uuid), "{listed}");
}
