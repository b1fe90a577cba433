//! `rally-tui run`: from a checked [`RunConfig`] to a stored task and an exit code.
//!
//! The steps follow the run: open what the run writes to (`--events`, `--metrics-listen`,
//! the TUI's log file) and load what it reads (theme, task file, cluster file, token), each
//! a usage error (exit 64) before any load starts; start the agents, if any; wire the
//! engine's event stream to the front end (TUI or headless printer), the event log and the
//! metrics exporter; turn signals into a stop, then a leave-now, then an exit; and at the
//! end print the summary, wait for the store and give the verdict.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::mpsc::UnboundedReceiver;

use super::run_config::{AgentsFrom, EventsTo, RunConfig};
use super::{exit, init_tracing, load_runtime, wait_for_signal};
use crate::cluster::ClusterFile;
use crate::distributed::controller::{ControllerOptions, Notice};
use crate::distributed::pool::{Pool, Source};
use crate::engine::{EngineOptions, TaskEngine, TaskOutcome};
use crate::events::{Event, Level, StopCause};
use crate::headless;
use crate::store::StoreError;
use crate::task::TaskSpec;
use crate::transport::token::Token;
use crate::tui::app::run_tui;
use crate::tui::theme::Theme;

/// Runs the task `config` names, storing it in the database `db`; the exit code (SPEC §9).
pub fn run(config: RunConfig, db: PathBuf) -> anyhow::Result<u8> {
    let outputs = match Outputs::open(&config) {
        Ok(outputs) => outputs,
        Err(e) => {
            init_tracing(std::io::stderr);
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    // A log file that cannot be opened is a bad argument (`--log-file`, or the database's
    // directory), found before any load.
    let _log_guard = match start_logging(&config, &db) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(exit::USAGE);
        }
    };
    let plan = match Plan::load(&config) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    // Only now, with the task known to be good, is an `--events` file emptied.
    let events = match outputs.events.map(open_events).transpose() {
        Ok(events) => events,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    let store = crate::store::Store::open(&db)
        .with_context(|| format!("cannot open the task database {}", db.display()))?;
    let (recorder, writer) = crate::store::writer::spawn(store);
    let runtime = load_runtime()?;
    runtime.block_on(async move {
        let options = EngineOptions {
            abort_on_sla_failure: config.abort_on_sla_failure,
            interval: config.sla_interval,
            detail: outputs.metrics_listener.is_some(),
            ..EngineOptions::default()
        };
        // Up from here, while the agents come (the run's state says `starting`).
        let metrics = match outputs
            .metrics_listener
            .map(crate::metrics::Exporter::start)
        {
            None => None,
            Some(Ok(exporter)) => {
                if !config.tui {
                    eprintln!("Metrics: http://{}/metrics", exporter.addr);
                }
                Some(exporter)
            }
            Some(Err(e)) => {
                eprintln!("error: --metrics-listen: {e}");
                return Ok(exit::USAGE);
            }
        };
        let (notices, mut notice_rx) = tokio::sync::mpsc::unbounded_channel();
        // What the headless mode printed while the agents came, for the start of `--events`.
        let mut early_notices = Vec::new();
        let pool = match plan.token {
            None => None,
            Some(token) => {
                let agents = Agents {
                    config: &config,
                    cluster: plan.cluster.as_ref(),
                    db: &db,
                    count: plan.pool_size,
                };
                match agents
                    .start(token, notices, &mut notice_rx, &mut early_notices)
                    .await
                {
                    Ok(pool) => Some(pool),
                    Err(code) => return Ok(code),
                }
            }
        };
        let tui = config.tui;
        let events_to_stdout = config.events_to_stdout();
        let mut engine = TaskEngine::new(plan.spec, options).with_recorder(recorder);
        if let Some(pool) = &pool {
            engine = engine.with_controller(pool.controller.clone());
        }
        // With the TUI on screen, late warnings go to its log pane (and to the terminal once
        // it has left), not onto its screen.
        let warnings = match tui {
            true => crate::event_log::Warnings::screen(engine.events()),
            false => crate::event_log::Warnings::stderr(),
        };
        let event_log = events.map(|out| {
            let early = early_notices
                .iter()
                .map(|n| Event::from(n.clone()))
                .collect();
            let log =
                crate::event_log::write_events(early, engine.subscribe(), out, warnings.clone());
            tokio::spawn(log)
        });
        let metrics_follower = metrics.as_ref().map(|m| m.follow(engine.subscribe()));
        let front = if tui {
            tokio::spawn(run_tui(
                engine.subscribe(),
                engine.stopper(),
                engine.abandoner(),
                engine.stop_reason(),
                outputs.theme,
            ))
        } else if events_to_stdout {
            // Standard output carries the event lines alone, for a program to read.
            tokio::spawn(async { Ok(()) })
        } else {
            let printer = headless::print_events(engine.subscribe(), std::io::stdout());
            tokio::spawn(async move {
                printer.await;
                Ok(())
            })
        };
        // After the front end has subscribed, so that no notice is lost.
        tokio::spawn(forward_notices(notice_rx, engine.events(), tui));
        let signals = tokio::spawn(stop_on_signals(&engine, tui));
        let outcome = engine.run().await;
        // A signal from now on (the linger's) is not a stop of a run that is over.
        signals.abort();
        let ended = tokio::time::Instant::now();
        if let Some(pool) = pool {
            let killed = pool.end().await;
            if !killed.is_empty() {
                let killed = killed.join(", ");
                warnings.say(format!("agents {killed} did not exit and were killed"));
            }
        }
        // The TUI stays on its final screen until the user quits.
        let front = front.await;
        drop(engine);
        if let Some(log) = event_log {
            // It ends with the task's last event (or when the engine's stream closed).
            let _ = log.await;
        }
        // What the TUI's log pane said late, now that the terminal is back.
        for w in warnings.kept() {
            eprintln!("warning: {w}");
        }
        if let Some(follower) = metrics_follower {
            let _ = follower.await;
        }
        let failed = match front {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            let _ = writeln!(std::io::stderr(), "error: the terminal UI failed: {e}");
        }
        if tui {
            print_summary(&outcome);
        }
        // The storing and the verdict, whose early returns must not skip the linger below.
        let code = store_and_judge(writer, &outcome, &db, events_to_stdout).await;
        if let Some(metrics) = metrics {
            // The last scrapes see the end; a signal cuts the wait short.
            let left = config.metrics_linger.saturating_sub(ended.elapsed());
            if !left.is_zero() {
                eprintln!(
                    "Metrics: serving /metrics {:.0} s more (--metrics-linger)",
                    left.as_secs_f64()
                );
            }
            metrics
                .linger(left, async {
                    wait_for_signal().await;
                })
                .await;
        }
        Ok(code)
    })
}

/// What the run writes to besides the store, checked before anything runs, so that a bad
/// theme, path or address is an argument error rather than a run without its output.
struct Outputs {
    theme: Theme,
    /// Checked to be writable, not yet emptied: see [`EventsSink::open`].
    events: Option<EventsTo>,
    metrics_listener: Option<std::net::TcpListener>,
}

/// Where `--events` lines go, opened for writing.
type EventsSink = Box<dyn Write + Send>;

/// Creates (empties) the `--events` file: called once the task file has loaded, so a bad
/// task leaves the last run's events as they were.
fn open_events(to: EventsTo) -> Result<EventsSink, String> {
    match to {
        EventsTo::Stdout => Ok(Box::new(std::io::stdout())),
        EventsTo::File(p) => match std::fs::File::create(&p) {
            Ok(f) => Ok(Box::new(std::io::BufWriter::new(f))),
            Err(e) => Err(format!("--events {}: {e}", p.display())),
        },
    }
}

impl Outputs {
    fn open(config: &RunConfig) -> Result<Outputs, String> {
        let theme = Theme::load(&config.theme).map_err(|e| e.to_string())?;
        // Writable? Opened to append, which creates a missing file and empties nothing.
        if let Some(EventsTo::File(p)) = &config.events {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .map_err(|e| format!("--events {}: {e}", p.display()))?;
        }
        let events = config.events.clone();
        // A port in use is an argument error too, not a run without its metrics.
        let metrics_listener = match &config.metrics_listen {
            None => None,
            Some(addr) => Some(crate::metrics::bind(addr).map_err(|e| e.to_string())?),
        };
        Ok(Outputs {
            theme,
            events,
            metrics_listener,
        })
    }
}

/// Sets up tracing: the TUI logs to a file, never onto its screen (the guard flushes it on
/// the way out); the headless mode to standard error.
fn start_logging(
    config: &RunConfig,
    db: &Path,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    if !config.tui {
        init_tracing(std::io::stderr);
        return Ok(None);
    }
    let path = config
        .log_file
        .clone()
        .unwrap_or_else(|| db.with_file_name("rally-tui.log"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    init_tracing(writer);
    Ok(Some(guard))
}

/// What will run, and on how many agents.
struct Plan {
    /// The task file with the `--tag`s added and, with `--agents` or `--cluster`, every
    /// workload distributed.
    spec: TaskSpec,
    cluster: Option<ClusterFile>,
    /// Agents the largest workload needs: the pool started for the whole task.
    pool_size: usize,
    /// The agents' shared token; none when no workload is distributed.
    token: Option<Token>,
}

impl Plan {
    fn load(config: &RunConfig) -> Result<Plan, String> {
        let mut spec = config.task.load().map_err(|e| e.to_string())?;
        for tag in &config.tags {
            if !spec.tags.contains(tag) {
                spec.tags.push(tag.clone());
            }
        }
        // --cluster: the file says where to listen and which agents start (all workloads
        // share them unless --agents says otherwise).
        let cluster = match &config.agents_from {
            AgentsFrom::Cluster { file, min_agents } => {
                let mut file = ClusterFile::load(file).map_err(|e| e.to_string())?;
                if let Some(n) = *min_agents {
                    file.set_min_agents(n).map_err(|e| e.to_string())?;
                }
                Some(file)
            }
            _ => None,
        };
        let agents = config
            .agents
            .or(cluster.as_ref().map(|c| c.agents() as u64));
        if let Some(n) = agents {
            for s in &mut spec.subtasks {
                for w in &mut s.workloads {
                    w.runner = w.runner.clone().distribute(n);
                }
            }
        }
        let pool_size = spec
            .workloads()
            .map(|(_, w)| w.runner.agents())
            .max()
            .unwrap_or(0) as usize;
        let token = match (&config.agents_from, pool_size) {
            // Agents started elsewhere would wait for a run that never uses them, while the
            // load ran here: say so instead.
            (AgentsFrom::Listen { addr, .. }, 0) => {
                return Err(format!(
                    "--listen {addr} waits for agents, but no workload runs on agents: give \
                     --agents N, or a `distributed` runner in the task file"
                ));
            }
            (_, 0) => None,
            (AgentsFrom::Listen { token_file, .. }, _) => {
                Some(Token::load(token_file.as_deref()).map_err(|e| e.to_string())?)
            }
            // Local and cluster agents get a fresh token through their stdin.
            _ => Some(Token::random()),
        };
        Ok(Plan {
            spec,
            cluster,
            pool_size,
            token,
        })
    }
}

/// The agents of a distributed run, about to be started.
struct Agents<'a> {
    config: &'a RunConfig,
    cluster: Option<&'a ClusterFile>,
    db: &'a Path,
    count: usize,
}

impl Agents<'_> {
    /// Starts the pool and waits for its agents; on failure or a signal, the exit code.
    /// Headless, the notices (connecting, started, failed) are printed as they come and
    /// kept in `early` for `--events`.
    async fn start(
        &self,
        token: Token,
        notices: tokio::sync::mpsc::UnboundedSender<Notice>,
        notice_rx: &mut UnboundedReceiver<Notice>,
        early: &mut Vec<Notice>,
    ) -> Result<Pool, u8> {
        let config = self.config;
        let source = match (&config.agents_from, self.cluster) {
            (_, Some(file)) => Source::Cluster(Box::new(file.clone())),
            (AgentsFrom::Listen { .. }, None) => Source::Listen,
            _ => Source::Local {
                cache_root: self
                    .db
                    .with_file_name("agents")
                    .join(std::process::id().to_string()),
            },
        };
        let listen = match (&config.agents_from, self.cluster) {
            (AgentsFrom::Listen { addr, .. }, _) => addr.clone(),
            (_, Some(c)) => c.listen.clone(),
            _ => "tcp://127.0.0.1:0".into(),
        };
        let controller_options = ControllerOptions {
            listen,
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            sla_interval: config.sla_interval,
            ..ControllerOptions::default()
        };
        // In both modes (before the TUI owns the screen): registering can take a while.
        eprintln!("Starting {}", self.describe());
        eprintln!(
            "Waiting for them to register (up to {:.0} s, --agent-wait)…",
            config.agent_wait.as_secs_f64()
        );
        let start = Pool::start(
            self.count,
            source,
            controller_options,
            token,
            config.agent_wait,
            notices,
        );
        // Headless: how the agents come (connecting, started, failed) as it happens.
        let started = async {
            if config.tui {
                start.await
            } else {
                print_notices_while(start, notice_rx, early, config.events_to_stdout()).await
            }
        };
        // A signal while the agents come is a stop like any other: exit 3, not the
        // signal's default death (local agents follow: their stdin closes).
        let started = tokio::select! {
            started = started => started,
            _ = wait_for_signal() => {
                eprintln!("Stopped while waiting for agents.");
                return Err(exit::STOPPED);
            }
        };
        started.map_err(|e| {
            eprintln!("error: {e}");
            exit::FAILURE
        })
    }

    /// `N agents on this machine`, `… : waiting for them on ADDR`, or where the cluster is.
    fn describe(&self) -> String {
        let n = self.count;
        let whence = match (&self.config.agents_from, self.cluster) {
            (_, Some(c)) => format!(
                " on {} host{} of {} (listening on {})",
                c.hosts.len(),
                if c.hosts.len() == 1 { "" } else { "s" },
                c.file.display(),
                c.listen
            ),
            (AgentsFrom::Listen { addr, .. }, None) => format!(": waiting for them on {addr}"),
            _ => " on this machine".into(),
        };
        format!("{n} agent{}{whence}", if n == 1 { "" } else { "s" })
    }
}

/// Prints notices as `level: message` lines (as the headless printer does) while `work`
/// runs: the printer only starts with the engine, once the agents have come.
/// Each notice is kept in `seen` too (for `--events`), and goes to standard error when
/// standard output carries the event lines.
async fn print_notices_while<T>(
    work: impl std::future::Future<Output = T>,
    notices: &mut UnboundedReceiver<Notice>,
    seen: &mut Vec<Notice>,
    to_stderr: bool,
) -> T {
    let mut say = |n: Notice| {
        if to_stderr {
            eprintln!("{}: {}", n.level, n.message);
        } else {
            println!("{}: {}", n.level, n.message);
        }
        seen.push(n);
    };
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            Some(n) = notices.recv() => say(n),
        }
    };
    while let Ok(n) = notices.try_recv() {
        say(n);
    }
    out
}

/// The controller's notices become `Log` events; the TUI's log file keeps them too (the
/// headless printer prints the event).
async fn forward_notices(
    mut notices: UnboundedReceiver<Notice>,
    events: tokio::sync::broadcast::Sender<Event>,
    tui: bool,
) {
    while let Some(n) = notices.recv().await {
        if tui {
            match n.level {
                Level::Error => tracing::error!("{}", n.message),
                Level::Warning => tracing::warn!("{}", n.message),
                Level::Info => tracing::info!("{}", n.message),
            }
        }
        let _ = events.send(n.into());
    }
}

/// The first signal stops the load (in-flight iterations finish), the second leaves now
/// (they are abandoned, what arrived is stored and the task recorded as aborted), the
/// third exits without storing.
fn stop_on_signals(engine: &TaskEngine, tui: bool) -> impl Future<Output = ()> + use<> {
    let stopper = engine.stopper();
    let abandoner = engine.abandoner();
    let stop_reason = engine.stop_reason();
    async move {
        let mut signals = 0;
        loop {
            let signal = wait_for_signal().await;
            signals += 1;
            if signals == 1 {
                stop_reason.set(StopCause::Signal(signal));
                if !tui {
                    eprintln!(
                        "Stopping: no new iterations start; in-flight ones finish. Press Ctrl-C again to quit now."
                    );
                }
                stopper.cancel();
            } else if signals == 2 {
                if !tui {
                    eprintln!(
                        "Leaving now: in-flight iterations are abandoned. Press Ctrl-C again to exit without storing."
                    );
                }
                abandoner.cancel();
            } else {
                if tui {
                    // The terminal must not stay in raw mode behind us.
                    let _ = ratatui::try_restore();
                }
                std::process::exit(i32::from(exit::STOPPED));
            }
        }
    }
}

/// After the TUI: the screen is gone with it, so leave what `--no-tui` prints at the end,
/// as k6 and oha leave their summaries. The terminal may have hung up: printing must not
/// turn a stored run into a panic.
fn print_summary(outcome: &TaskOutcome) {
    let mut summary = String::new();
    for report in &outcome.workloads {
        summary.push_str(&headless::workload_summary(&outcome.uuid, report));
    }
    summary.push_str(&headless::task_verdict(
        &outcome.uuid,
        outcome.status,
        outcome.pass_sla,
    ));
    let _ = std::io::stdout().write_all(summary.as_bytes());
}

/// Waits for the store, says where the task is, and gives the exit code: a failure when
/// results were not stored or are missing, else the stop or the SLA's verdict.
async fn store_and_judge(
    writer: std::thread::JoinHandle<Result<(), StoreError>>,
    outcome: &TaskOutcome,
    db: &Path,
    events_to_stdout: bool,
) -> u8 {
    let stored = tokio::task::spawn_blocking(move || writer.join()).await;
    match stored {
        Ok(Ok(Ok(()))) => {
            let db_arg = if db == crate::store::default_path() {
                String::new()
            } else {
                format!(" --db {}", db.display())
            };
            let text = format!(
                "Stored as task {id} in {}\nSee it again: rally-tui{db_arg} task show {id}\n\
                 A report:    rally-tui{db_arg} task report {id} --out report.html",
                db.display(),
                id = outcome.uuid,
            );
            // With `--events -` standard output is the event lines' alone.
            let _ = if events_to_stdout {
                writeln!(std::io::stderr(), "{text}")
            } else {
                writeln!(std::io::stdout(), "{text}")
            };
        }
        Ok(Ok(Err(e))) => {
            let _ = writeln!(std::io::stderr(), "error: results were not all stored: {e}");
            return exit::FAILURE;
        }
        _ => {
            let _ = writeln!(std::io::stderr(), "error: the storage thread failed");
            return exit::FAILURE;
        }
    }
    let verdict = super::verdict::verdict(outcome);
    if let Some(e) = &verdict.error {
        let _ = writeln!(std::io::stderr(), "error: {e}");
    }
    verdict.code
}
