//! Scenarios: what one iteration does.
//!
//! A scenario is configured once per workload ([`ScenarioSpec`], checked at load time) and
//! then run many times, concurrently, by a runner's slots. Each slot owns a [`SlotState`]
//! (its random generator, its keep-alive HTTP connections) so iterations share nothing.

mod actions;
mod dummy;
pub mod http;
pub mod http2;
pub mod proxy;
mod requests;
pub mod tls;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

pub use actions::ActionRecorder;

use crate::chunk::{Dials, IterationError, Output};
use crate::task::check::{Checked, PluginError, list};
use crate::task::node::Node;

pub use dummy::DummyScenario;
pub use http::HttpRequestScenario;
pub use requests::CheckRequestScenario;

/// All scenario names we know, for messages.
pub const SCENARIOS: &[&str] = &[
    "Dummy.dummy",
    "Dummy.failure",
    "Dummy.dummy_exception",
    "Dummy.dummy_exception_probability",
    "Dummy.dummy_output",
    "Dummy.dummy_random_fail_in_atomic",
    "Dummy.dummy_random_action",
    "Dummy.dummy_timed_atomic_actions",
    "HttpRequests.check_request",
    "HttpRequests.check_random_request",
    "Http.request",
];

/// True when `name` is not a scenario we have (so the error belongs to the name, not args).
pub fn is_unknown(name: &str) -> bool {
    !SCENARIOS.contains(&name)
}

/// A validated scenario: its name, its arguments as written, and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSpec {
    pub name: String,
    pub args: serde_json::Value,
    pub kind: ScenarioKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioKind {
    Dummy(DummyScenario),
    CheckRequest(CheckRequestScenario),
    /// Boxed: it is large, and scenarios are built once per workload.
    HttpRequest(Box<HttpRequestScenario>),
}

impl ScenarioSpec {
    /// Check `args` against the scenario's signature.
    pub fn from_config(name: &str, args: &Node) -> Checked<ScenarioSpec> {
        if args.as_map().is_none() {
            return Err(PluginError::new(
                "",
                format!(
                    "scenario arguments must be a mapping, got {}",
                    args.type_name()
                ),
            ));
        }
        let kind = if let Some(d) = DummyScenario::from_config(name, args)? {
            ScenarioKind::Dummy(d)
        } else if let Some(r) = CheckRequestScenario::from_config(name, args)? {
            ScenarioKind::CheckRequest(r)
        } else if name == "Http.request" {
            ScenarioKind::HttpRequest(Box::new(HttpRequestScenario::from_config(args)?))
        } else {
            return Err(PluginError::new(
                "",
                format!("unknown scenario '{name}'; available: {}", list(SCENARIOS)),
            ));
        };
        Ok(ScenarioSpec {
            name: name.to_string(),
            args: args.to_json(),
            kind,
        })
    }
}

impl ScenarioKind {
    /// First line of the scenario's description (Rally's default workload description).
    pub fn summary(&self) -> &'static str {
        match self {
            ScenarioKind::Dummy(d) => d.summary(),
            ScenarioKind::CheckRequest(r) => r.summary(),
            ScenarioKind::HttpRequest(h) if h.http2 => {
                "Send one HTTP/2 request on a stream of a shared connection."
            }
            ScenarioKind::HttpRequest(_) => "Send one HTTP/1.1 request on a keep-alive connection.",
        }
    }

    /// Every atomic action name this scenario can record; `ActionId`s index this table.
    pub fn action_names(&self) -> Vec<String> {
        match self {
            ScenarioKind::Dummy(d) => d.action_names(),
            ScenarioKind::CheckRequest(_) => vec![requests::CHECK_REQUEST_ACTION.to_string()],
            ScenarioKind::HttpRequest(_) => Vec::new(),
        }
    }

    /// Whether a per-iteration timeout can cut this scenario short. Scenarios that never
    /// wait (e.g. `Dummy.dummy` with `sleep: 0`) skip the timer on the hot path.
    pub fn may_wait(&self) -> bool {
        match self {
            ScenarioKind::Dummy(d) => d.may_wait(),
            _ => true,
        }
    }

    /// Whether a runner `timeout` of `limit` can ever fire before the scenario's own. An
    /// `Http.request` iteration is one request with its own timeout: when that is shorter,
    /// a second timer per iteration would only cost (a timer-wheel insert and removal per
    /// request, measurable at 100k requests/s).
    pub fn needs_timeout(&self, limit: std::time::Duration) -> bool {
        match self {
            ScenarioKind::HttpRequest(h) => h.timeout > limit,
            _ => self.may_wait(),
        }
    }
}

/// What a slot keeps between the iterations it runs.
pub struct SlotState {
    pub rng: fastrand::Rng,
    pub http: http::Connections,
    /// `Http.request`'s connection.
    pub wire: wire::Wire,
    /// `Http.request` with `http2: true`: this slot's line of the workload's pool.
    pub h2: http2::Slot,
}

impl SlotState {
    pub fn new(seed: u64) -> SlotState {
        SlotState {
            rng: fastrand::Rng::with_seed(seed),
            http: http::Connections::default(),
            wire: wire::Wire::default(),
            h2: http2::Slot::default(),
        }
    }

    /// The connections opened since the last call: the iteration's, when called after it.
    pub fn take_dials(&mut self) -> Dials {
        let mut dials = std::mem::take(&mut self.wire.dials);
        dials.merge(std::mem::take(&mut self.http.dials));
        dials.merge(std::mem::take(&mut self.h2.dials));
        dials
    }
}

/// One running iteration, as the scenario sees it.
pub struct Iteration<'a> {
    /// Global, 1-based (Rally's `context["iteration"]`).
    pub number: u64,
    pub actions: &'a mut ActionRecorder,
    pub output: Option<Box<Output>>,
    /// Seconds the scenario declared idle (Rally's `sleep_between`).
    pub idle: f64,
    /// When the runner started the iteration: scenarios derive their deadlines from it
    /// instead of reading the clock again.
    pub started: Instant,
}

/// A workload's scenario, ready to run iterations.
pub struct Scenario {
    kind: ScenarioKind,
    pub action_names: Arc<[String]>,
    /// The HTTP/2 connections the slots share (`Http.request` with `http2: true`).
    h2: Option<http2::Pool>,
}

impl Scenario {
    pub fn new(kind: ScenarioKind) -> Scenario {
        let action_names: Arc<[String]> = kind.action_names().into();
        let h2 = match &kind {
            ScenarioKind::HttpRequest(h) if h.http2 => Some(http2::Pool::new(h)),
            _ => None,
        };
        Scenario {
            kind,
            action_names,
            h2,
        }
    }

    pub fn kind(&self) -> &ScenarioKind {
        &self.kind
    }

    /// Run one iteration. An `Err` is the iteration's recorded error; it never stops the run.
    pub async fn run(
        &self,
        slot: &mut SlotState,
        it: &mut Iteration<'_>,
    ) -> Result<(), IterationError> {
        match &self.kind {
            ScenarioKind::Dummy(d) => d.run(slot, it).await,
            ScenarioKind::CheckRequest(r) => r.run(slot, it).await,
            ScenarioKind::HttpRequest(h) => match &self.h2 {
                Some(pool) => pool.run(h, &mut slot.h2, it.started).await,
                None => h.run(slot, it.started).await,
            },
        }
    }
}
