//! The `run` command's arguments, and their check: [`RunConfig::from_args`] turns what clap
//! parsed into a typed configuration, or into the usage error (exit 64) that names the bad
//! argument. Pure (no file is opened, no address bound), so each bad combination is a unit
//! test; what needs the world (the task file, the theme, the token, the `--events` file,
//! the `--metrics-listen` address) is checked by [`super::run`] before any load starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::task::TaskSource;

#[derive(Args)]
pub struct TaskArgs {
    /// Task file (YAML or JSON, Rally format v1 or v2, a Jinja2 template); `-` reads stdin.
    pub file: PathBuf,
    /// Template arguments: YAML/JSON mapping, or `key=value,key=value`. Overrides --task-args-file.
    #[arg(long)]
    pub task_args: Option<String>,
    /// File with template arguments (YAML or JSON mapping).
    #[arg(long)]
    pub task_args_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Mark the task with a tag (repeatable), as `rally task start --tag`; `task list --tag`
    /// finds it. Added to the task file's own `tags`.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Write every engine event to FILE as JSON lines (schema `"v": 1`, see the README);
    /// `-` is standard output, with --no-tui.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Serve the run's live figures at http://ADDR/metrics for Prometheus (HOST:PORT, e.g.
    /// 127.0.0.1:9464; Prometheus text or OpenMetrics, see the README). Served by this
    /// process (the controller of a distributed run), never by agents.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Seconds /metrics stays up after the run ends, so that the last scrape sees the end.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::metrics::DEFAULT_LINGER)]
    pub metrics_linger: f64,
    /// Print progress lines and tables instead of the terminal UI (for CI).
    #[arg(long)]
    pub no_tui: bool,
    /// Stop all load the first time any SLA criterion fails, and skip the remaining workloads.
    #[arg(long)]
    pub abort_on_sla_failure: bool,
    /// TUI colour theme: a built-in name (dark, light, high-contrast) or a TOML file.
    #[arg(long, value_name = "NAME|PATH", default_value = "dark")]
    pub theme: String,
    /// Where the TUI writes its log (never onto the screen). Default: rally-tui.log next to
    /// the task database.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Run every workload on N agents (local agent processes unless --listen is given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub agents: Option<u64>,
    /// Wait on ADDR (tcp://HOST:PORT; results use PORT+1) for agents started elsewhere
    /// instead of starting local ones. Needs the shared token (--token-file or RALLY_TUI_TOKEN).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Seconds to wait for the agents to register.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub agent_wait: f64,
    /// Seconds between the agents' SLA reports.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub sla_interval: f64,
    /// Seconds of silence after which an agent is lost (and agents stop on their own).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub liveness: f64,
    /// File holding the shared token (mode 0600), for --listen.
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,
    /// Start the agents listed in this cluster file over ssh (listen address, hosts, agents
    /// per host); a fresh token goes to each over ssh's standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "token_file"])]
    pub cluster: Option<PathBuf>,
    /// Start the load once N of the cluster's agents have registered (default: the cluster
    /// file's min_agents, else all of them).
    #[arg(long, value_name = "N", requires = "cluster")]
    pub min_agents: Option<usize>,
}

impl TaskArgs {
    pub fn source(&self) -> TaskSource {
        TaskSource {
            file: self.file.clone(),
            args: self.task_args.clone(),
            args_file: self.task_args_file.clone(),
        }
    }
}

/// Where `--events` writes its JSON lines.
#[derive(Debug, Clone, PartialEq)]
pub enum EventsTo {
    /// `--events -`: standard output carries the event lines alone.
    Stdout,
    File(PathBuf),
}

/// Where the agents of a distributed run come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentsFrom {
    /// Agent processes started on this machine.
    Local,
    /// `--listen ADDR`: agents started elsewhere connect, with the shared token.
    Listen {
        addr: String,
        token_file: Option<PathBuf>,
    },
    /// `--cluster FILE`: agents started over ssh, as the file says.
    Cluster {
        file: PathBuf,
        min_agents: Option<usize>,
    },
}

/// The `run` command, checked: every number is in range and every combination allowed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub task: TaskSource,
    /// `--tag`s, added to the task file's own.
    pub tags: Vec<String>,
    pub events: Option<EventsTo>,
    pub metrics_listen: Option<String>,
    pub metrics_linger: Duration,
    /// The terminal UI, rather than the headless printer: asked for and on a terminal.
    pub tui: bool,
    pub abort_on_sla_failure: bool,
    /// A built-in theme's name or a TOML file (loaded by [`super::run`]).
    pub theme: String,
    pub log_file: Option<PathBuf>,
    /// `--agents N`: every workload on N agents (a cluster file gives its own count).
    pub agents: Option<u64>,
    pub agents_from: AgentsFrom,
    pub agent_wait: Duration,
    pub sla_interval: Duration,
    pub liveness: Duration,
    /// How often the controller and its agents say they are alive: a third of the
    /// liveness, at most a second.
    pub heartbeat: Duration,
}

/// The shortest `--sla-interval`: 10 ms (agents get it in whole milliseconds).
pub const MIN_SLA_INTERVAL: f64 = 0.01;
/// The shortest `--liveness`: 100 ms, so the heartbeat (a third) is still a real period.
pub const MIN_LIVENESS: f64 = 0.1;

/// A bad argument: the message after `error: `; the exit code is 64.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl RunConfig {
    /// Checks `args`; `stdout_is_terminal` says whether the TUI can be drawn.
    pub fn from_args(args: RunArgs, stdout_is_terminal: bool) -> Result<RunConfig, UsageError> {
        let events = args.events.map(|p| {
            if p.as_os_str() == "-" {
                EventsTo::Stdout
            } else {
                EventsTo::File(p)
            }
        });
        if events == Some(EventsTo::Stdout) && !args.no_tui {
            return Err(UsageError(
                "--events - writes to standard output, which needs --no-tui".into(),
            ));
        }
        if !(args.metrics_linger.is_finite() && (0.0..1e6).contains(&args.metrics_linger)) {
            return Err(UsageError(format!(
                "--metrics-linger must be a number of seconds >= 0, got {}",
                args.metrics_linger
            )));
        }
        // Floors where a smaller figure would make a timer's period zero (tokio refuses
        // it) or make the live loop spin: the interval is sent to agents in milliseconds,
        // and the heartbeat is a third of the liveness.
        for (name, v, floor) in [
            ("--sla-interval", args.sla_interval, MIN_SLA_INTERVAL),
            ("--liveness", args.liveness, MIN_LIVENESS),
            ("--agent-wait", args.agent_wait, 0.0),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e6) {
                return Err(UsageError(format!(
                    "{name} must be a positive number of seconds, got {v}"
                )));
            }
            if v < floor {
                return Err(UsageError(format!(
                    "{name} must be at least {floor} seconds, got {v}"
                )));
            }
        }
        // clap already refuses --cluster with --listen or --token-file, and --min-agents
        // without --cluster.
        let agents_from = match (args.cluster, args.listen) {
            (Some(file), _) => AgentsFrom::Cluster {
                file,
                min_agents: args.min_agents,
            },
            (None, Some(addr)) => AgentsFrom::Listen {
                addr,
                token_file: args.token_file,
            },
            (None, None) => AgentsFrom::Local,
        };
        Ok(RunConfig {
            task: args.task.source(),
            tags: args.tags,
            events,
            metrics_listen: args.metrics_listen,
            metrics_linger: Duration::from_secs_f64(args.metrics_linger),
            tui: !args.no_tui && stdout_is_terminal,
            abort_on_sla_failure: args.abort_on_sla_failure,
            theme: args.theme,
            log_file: args.log_file,
            agents: args.agents,
            agents_from,
            agent_wait: Duration::from_secs_f64(args.agent_wait),
            sla_interval: Duration::from_secs_f64(args.sla_interval),
            liveness: Duration::from_secs_f64(args.liveness),
            heartbeat: Duration::from_secs_f64((args.liveness / 3.0).min(1.0)),
        })
    }

    /// Whether standard output carries the `--events` lines (and nothing else).
    pub fn events_to_stdout(&self) -> bool {
        self.events == Some(EventsTo::Stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(args: &[&str]) -> Result<RunConfig, UsageError> {
        let cli = Cli::try_parse_from(["run"].iter().chain(args)).expect("clap accepts it");
        RunConfig::from_args(cli.run, false)
    }

    fn refused(args: &[&str]) -> String {
        config(args).expect_err("refused").0
    }

    #[test]
    fn defaults() {
        let c = config(&["task.yaml"]).unwrap();
        assert_eq!(c.task.file, PathBuf::from("task.yaml"));
        assert_eq!(c.agents_from, AgentsFrom::Local);
        assert_eq!(c.sla_interval, Duration::from_secs(1));
        assert_eq!(c.liveness, Duration::from_secs(3));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(c.agent_wait, Duration::from_secs(60));
        assert_eq!(c.metrics_linger, Duration::from_secs(15));
        assert_eq!(c.theme, "dark");
        assert!(!c.tui);
        assert_eq!(c.events, None);
    }

    #[test]
    fn the_tui_needs_a_terminal_and_no_no_tui() {
        let cli = Cli::try_parse_from(["run", "t.yaml"]).unwrap();
        assert!(RunConfig::from_args(cli.run, true).unwrap().tui);
        let cli = Cli::try_parse_from(["run", "t.yaml", "--no-tui"]).unwrap();
        assert!(!RunConfig::from_args(cli.run, true).unwrap().tui);
    }

    #[test]
    fn events_to_stdout_needs_no_tui() {
        assert_eq!(
            refused(&["t.yaml", "--events", "-"]),
            "--events - writes to standard output, which needs --no-tui"
        );
        let c = config(&["t.yaml", "--events", "-", "--no-tui"]).unwrap();
        assert!(c.events_to_stdout());
        let c = config(&["t.yaml", "--events", "e.jsonl"]).unwrap();
        assert_eq!(c.events, Some(EventsTo::File("e.jsonl".into())));
        assert!(!c.events_to_stdout());
    }

    #[test]
    fn metrics_linger_is_seconds_from_zero() {
        assert_eq!(
            refused(&["t.yaml", "--metrics-linger=-1"]),
            "--metrics-linger must be a number of seconds >= 0, got -1"
        );
        assert_eq!(
            refused(&["t.yaml", "--metrics-linger", "NaN"]),
            "--metrics-linger must be a number of seconds >= 0, got NaN"
        );
        let c = config(&["t.yaml", "--metrics-linger", "0"]).unwrap();
        assert_eq!(c.metrics_linger, Duration::ZERO);
    }

    #[test]
    fn intervals_are_positive_seconds() {
        for name in ["--sla-interval", "--liveness", "--agent-wait"] {
            assert_eq!(
                refused(&["t.yaml", name, "0"]),
                format!("{name} must be a positive number of seconds, got 0")
            );
            assert_eq!(
                refused(&["t.yaml", name, "inf"]),
                format!("{name} must be a positive number of seconds, got inf")
            );
            assert_eq!(
                refused(&["t.yaml", name, "1e6"]),
                format!("{name} must be a positive number of seconds, got 1000000")
            );
        }
        let c = config(&["t.yaml", "--liveness", "0.6"]).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs_f64(0.2));
    }

    #[test]
    fn agents_come_from_one_place() {
        let c = config(&[
            "t.yaml",
            "--listen",
            "tcp://0.0.0.0:5555",
            "--token-file",
            "tok",
        ]);
        assert_eq!(
            c.unwrap().agents_from,
            AgentsFrom::Listen {
                addr: "tcp://0.0.0.0:5555".into(),
                token_file: Some("tok".into())
            }
        );
        let c = config(&["t.yaml", "--cluster", "c.yaml", "--min-agents", "2"]);
        assert_eq!(
            c.unwrap().agents_from,
            AgentsFrom::Cluster {
                file: "c.yaml".into(),
                min_agents: Some(2)
            }
        );
    }

    /// Figures so small that a timer's period would be zero are refused with the floor,
    /// instead of panicking in the runtime later.
    #[test]
    fn tiny_intervals_are_refused_with_their_floor() {
        assert_eq!(
            refused(&["t.yaml", "--sla-interval", "1e-10"]),
            "--sla-interval must be at least 0.01 seconds, got 0.0000000001"
        );
        assert_eq!(
            refused(&["t.yaml", "--liveness", "0.05"]),
            "--liveness must be at least 0.1 seconds, got 0.05"
        );
        assert!(config(&["t.yaml", "--sla-interval", "0.01", "--liveness", "0.1"]).is_ok());
    }
}
