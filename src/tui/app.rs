//! The TUI's event loop: terminal setup and restore, crossterm input, engine events and frame
//! pacing around the pure [`TuiState`] and [`draw`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use ratatui::DefaultTerminal;

use super::render::draw;
use super::state::{Action, TuiState};
use super::theme::Theme;
use crate::engine::StopReason;
use crate::events::Event;
use crate::events::StopCause;

/// Redraw period: 10 frames per second at least (SPEC §7).
const FRAME: Duration = Duration::from_millis(100);
/// How long the input thread waits for a key before checking whether it should end.
const INPUT_POLL: Duration = Duration::from_millis(50);

/// The terminal while the TUI owns it. Dropping it puts the terminal back (raw mode off,
/// main screen, cursor shown) and ends the input thread, however the loop ends;
/// `ratatui::try_init` also installs a panic hook that restores, then calls the previous hook.
///
/// Once the terminal is gone (hangup: the window closed, the SSH session died) nothing is
/// written to it any more: ratatui's own restore and `Terminal` drop would report their
/// failures with `eprintln!`, which panics when stderr is that same dead terminal.
struct Screen {
    /// `None` once the terminal is lost.
    terminal: Option<DefaultTerminal>,
    input_done: Arc<AtomicBool>,
}

impl Screen {
    fn draw(&mut self, state: &TuiState, theme: &Theme) -> io::Result<()> {
        match self.terminal.as_mut() {
            Some(t) => t.draw(|f| draw(f, state, theme)).map(|_| ()),
            None => Ok(()),
        }
    }

    fn autoresize(&mut self) -> io::Result<()> {
        self.terminal.as_mut().map_or(Ok(()), |t| t.autoresize())
    }

    /// Stops drawing for good, and leaks the terminal (a few buffers, once): its drop
    /// would write to the dead terminal.
    fn lose(&mut self, why: &io::Error) {
        if let Some(t) = self.terminal.take() {
            tracing::warn!("the terminal is gone ({why}): stopping the run");
            std::mem::forget(t);
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.input_done.store(true, Ordering::Relaxed);
        // The terminal is dropped (showing the cursor) before the restore.
        if self.terminal.take().is_some()
            && let Err(e) = ratatui::try_restore()
        {
            tracing::warn!("could not restore the terminal: {e}");
        }
    }
}

/// Reads terminal input on its own thread (crossterm's reads block) and forwards it; ends when
/// `done` is set, the loop is gone or reading fails.
fn spawn_input(done: Arc<AtomicBool>) -> io::Result<mpsc::Receiver<io::Result<TermEvent>>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let ev = match crossterm::event::poll(INPUT_POLL) {
                    Ok(false) => continue,
                    Ok(true) => crossterm::event::read(),
                    Err(e) => Err(e),
                };
                let failed = ev.is_err();
                if tx.blocking_send(ev).is_err() || failed {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Stops the load if the TUI ends before the task does (an I/O error, a panic unwinding
/// through the loop): nobody could watch or stop it any more.
struct StopOnExit<'a> {
    stop: &'a CancellationToken,
    over: bool,
}

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        if !self.over {
            self.stop.cancel();
        }
    }
}

/// Resolves on SIGTERM, SIGHUP or SIGINT. Raw mode turns Ctrl-C into a key, so these come
/// from elsewhere: a supervisor, `kill`, or the terminal closing (SIGHUP, whose default
/// would kill the process before the load is stopped and the results stored).
#[cfg(unix)]
async fn signalled(signals: &mut [(&'static str, tokio::signal::unix::Signal)]) -> &'static str {
    let waits = signals.iter_mut().map(|(_, s)| Box::pin(s.recv()));
    let (_, i, _) = futures::future::select_all(waits).await;
    signals[i].0
}

#[cfg(unix)]
fn signal_streams() -> Vec<(&'static str, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{SignalKind, signal};
    [
        ("SIGTERM", SignalKind::terminate()),
        ("SIGHUP", SignalKind::hangup()),
        ("SIGINT", SignalKind::interrupt()),
    ]
    .into_iter()
    .filter_map(|(name, k)| signal(k).ok().map(|s| (name, s)))
    .collect()
}

#[cfg(not(unix))]
fn signal_streams() -> Vec<()> {
    Vec::new()
}

#[cfg(not(unix))]
async fn signalled(_: &mut [()]) -> &'static str {
    std::future::pending::<&'static str>().await
}

/// What a key press becomes: Ctrl-C is a confirmed stop while the task runs (SPEC §7, as
/// in the headless mode) and quits once it is over.
fn key_action(state: &mut TuiState, key: KeyEvent) -> Action {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        if state.phase.is_over() {
            Action::Quit
        } else if state.stop_requested {
            // The second Ctrl-C: no waiting for in-flight iterations.
            Action::LeaveNow
        } else {
            state.request_stop()
        }
    } else {
        state.on_key(key.code)
    }
}

/// Runs the terminal UI until the user quits (possible once the task is over). `stop` is
/// cancelled when the user confirms a stop (`s` then `y`, or Ctrl-C), on SIGTERM, SIGHUP or
/// SIGINT, and when the terminal fails (then logged, not returned: the error could only be
/// printed onto that terminal), so load never runs on without a screen. After a signal or
/// a terminal failure the TUI leaves by itself once the task is over.
pub async fn run_tui(
    mut events: broadcast::Receiver<Event>,
    stop: CancellationToken,
    abandon: CancellationToken,
    stop_reason: StopReason,
    mut theme: Theme,
) -> io::Result<()> {
    let mut guard = StopOnExit {
        stop: &stop,
        over: false,
    };
    let input_done = Arc::new(AtomicBool::new(false));
    let mut screen = Screen {
        terminal: Some(ratatui::try_init()?),
        input_done: input_done.clone(),
    };
    let mut input = spawn_input(input_done)?;
    let mut input_open = true;
    let mut signals = signal_streams();
    let mut leave_when_over = false;
    let mut state = TuiState::new();
    let themes = Theme::cycle(&theme);
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut events_open = true;
    let mut dirty = true;
    loop {
        let mut draw_now = false;
        // Set when the terminal failed: nobody can watch or stop the run any more.
        let mut lost: Option<io::Error> = None;
        tokio::select! {
            ev = events.recv(), if events_open => match ev {
                Ok(ev) => {
                    state.apply(&ev);
                    dirty = true;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!("the TUI skipped {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            term = input.recv(), if input_open => match term {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    match key_action(&mut state, key) {
                        Action::ConfirmStop => stop.cancel(),
                        Action::CycleTheme => {
                            let at = themes.iter().position(|t| *t == theme).unwrap_or(0);
                            theme = themes[(at + 1) % themes.len()].clone();
                        }
                        Action::Quit => break,
                        Action::LeaveNow => {
                            stop_reason.set(StopCause::User);
                            stop.cancel();
                            abandon.cancel();
                            break;
                        }
                        Action::None | Action::AskStop | Action::ToggleHelp => {}
                    }
                    // Keys answer at once, not at the next tick (input within 100 ms).
                    draw_now = true;
                }
                Some(Ok(TermEvent::Resize(..))) => {
                    if let Err(e) = screen.autoresize() {
                        lost = Some(e);
                    }
                    draw_now = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => lost = Some(e),
                None => lost = Some(io::Error::other("the terminal input thread ended")),
            },
            signal = signalled(&mut signals), if !signals.is_empty() => {
                stop_reason.set(StopCause::Signal(signal));
                state.request_stop();
                stop.cancel();
                leave_when_over = true;
                dirty = true;
            }
            _ = tick.tick() => draw_now = dirty,
        }
        if draw_now && lost.is_none() {
            match screen.draw(&state, &theme) {
                Ok(()) => dirty = false,
                Err(e) => lost = Some(e),
            }
        }
        if let Some(e) = lost {
            screen.lose(&e);
            input_open = false;
            state.request_stop();
            stop.cancel();
            leave_when_over = true;
        }
        guard.over = state.phase.is_over();
        if leave_when_over && guard.over {
            break;
        }
        if !events_open && !guard.over && screen.terminal.is_none() {
            // No screen and no more events: nothing left to wait for.
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TaskStatus;
    use crate::tui::fixtures::started;
    use crate::tui::state::Phase;

    #[test]
    fn ctrl_c_stops_without_asking_then_quits() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        let mut s = TuiState::new();
        s.apply(&started());
        assert_eq!(key_action(&mut s, ctrl_c), Action::ConfirmStop);
        assert!(!s.confirm_stop, "no question asked");
        assert!(matches!(s.phase, Phase::Stopping { .. }));
        let plain_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE);
        assert_eq!(key_action(&mut s, plain_c), Action::None);
        s.apply(&Event::TaskFinished {
            uuid: String::new(),
            status: TaskStatus::Aborted,
            pass_sla: false,
        });
        assert_eq!(key_action(&mut s, ctrl_c), Action::Quit);
    }
}
