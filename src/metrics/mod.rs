//! `run --metrics-listen ADDR`: the run's live figures at `http://ADDR/metrics`, for
//! Prometheus to scrape (Prometheus text format 0.0.4, or OpenMetrics when the scraper
//! asks for it).
//!
//! The values come from the engine's event stream, as `--events` does ([`follow`]
//! subscribes like [`crate::event_log`]), never from the hot path: a scrape reads what the
//! last events said and costs the load nothing. [`state`] keeps those values (a pure
//! function of the events), [`encode`] turns them into metric families with the
//! `prometheus-client` crate, and [`server`] answers HTTP.

pub mod encode;
pub mod server;
pub mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::events::Event;
use encode::Shared;
use state::RunMetrics;

/// `--metrics-linger`'s default: seconds the endpoint stays up after the run, so that a
/// scraper at a 15 s interval (Prometheus's default) still sees the end.
pub const DEFAULT_LINGER: f64 = 15.0;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "--metrics-listen {addr}: not an address to listen on (HOST:PORT, e.g. 127.0.0.1:9464): {reason}"
    )]
    Address { addr: String, reason: String },
    #[error("--metrics-listen {addr}: cannot listen: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` (`HOST:PORT`) at once, so a bad address or a port in use is an argument
/// error before any load starts, not a surprise halfway through.
pub fn bind(addr: &str) -> Result<std::net::TcpListener, MetricsError> {
    use std::net::ToSocketAddrs;
    let bad = |reason: String| MetricsError::Address {
        addr: addr.to_string(),
        reason,
    };
    let candidates: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if candidates.is_empty() {
        return Err(bad("it names no address".into()));
    }
    let listener =
        std::net::TcpListener::bind(&candidates[..]).map_err(|source| MetricsError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    // tokio takes over a listener only in non-blocking mode.
    listener
        .set_nonblocking(true)
        .map_err(|source| MetricsError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    Ok(listener)
}

/// A running `/metrics` endpoint.
pub struct Exporter {
    shared: Shared,
    /// Moves at every event applied, so the server renders a new body only then.
    generation: Arc<AtomicU64>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    /// Where it listens (the port chosen when ADDR said 0).
    pub addr: std::net::SocketAddr,
}

impl Exporter {
    /// Serves `listener` (from [`bind`]) on the current runtime, with the run's state
    /// `starting` until the engine's events arrive ([`Exporter::follow`]).
    pub fn start(listener: std::net::TcpListener) -> std::io::Result<Exporter> {
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shared: Shared = Arc::new(Mutex::new(RunMetrics::default()));
        let generation = Arc::new(AtomicU64::new(0));
        let seen = generation.clone();
        let bodies = Arc::new(server::Bodies::new(
            encode::registry(shared.clone()),
            move || seen.load(Ordering::Acquire),
        ));
        let stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(listener, bodies, stop.clone()));
        Ok(Exporter {
            shared,
            generation,
            stop,
            server,
            addr,
        })
    }

    /// Follows the engine's events (subscribe before the engine runs).
    pub fn follow(&self, events: broadcast::Receiver<Event>) -> tokio::task::JoinHandle<()> {
        let generation = self.generation.clone();
        tokio::spawn(follow_with(events, self.shared.clone(), move || {
            generation.fetch_add(1, Ordering::AcqRel);
        }))
    }

    /// Keeps serving for `linger` (or until `cut_short` ends first), then stops.
    pub async fn linger(self, linger: Duration, cut_short: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = tokio::time::sleep(linger) => {}
            () = cut_short => {}
        }
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// Applies the engine's events to `shared` until the task finishes or the stream closes.
/// A subscriber that fell behind only loses time: every event carries totals.
pub async fn follow(events: broadcast::Receiver<Event>, shared: Shared) {
    follow_with(events, shared, || {}).await;
}

/// [`follow`], calling `changed` after each event applied.
async fn follow_with(mut events: broadcast::Receiver<Event>, shared: Shared, changed: impl Fn()) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let last = matches!(event, Event::TaskFinished { .. });
                match shared.lock() {
                    Ok(mut m) => m.apply(&event),
                    Err(poisoned) => poisoned.into_inner().apply(&event),
                }
                changed();
                if last {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_and_ports_in_use_are_errors() {
        assert!(matches!(bind("no-port"), Err(MetricsError::Address { .. })));
        let taken = bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(matches!(e, MetricsError::Bind { .. }));
        assert!(e.to_string().contains("cannot listen"), "{e}");
    }

    #[tokio::test]
    async fn follow_applies_events_until_the_task_ends() {
        let (tx, rx) = broadcast::channel(16);
        let shared: Shared = Arc::new(Mutex::new(RunMetrics::default()));
        let task = tokio::spawn(follow(rx, shared.clone()));
        tx.send(Event::TaskFinished {
            uuid: "u".into(),
            status: crate::events::TaskStatus::Finished,
            pass_sla: true,
        })
        .unwrap();
        task.await.unwrap();
        assert_eq!(shared.lock().unwrap().state, state::RunState::Finished);
    }
}
