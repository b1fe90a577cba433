//! The TUI's event loop: terminal setup and restore, crossterm input, engine events and frame
//! pacing around the pure [`TuiState`] and [`draw`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::render::draw;
use super::state::{Action, TuiState};
use super::theme::Theme;
use crate::events::Event;

/// Redraw period: 10 frames per second at least (SPEC §7).
const FRAME: Duration = Duration::from_millis(100);
/// How long the input thread waits for a key before checking whether it should end.
const INPUT_POLL: Duration = Duration::from_millis(50);

/// Puts the terminal back (raw mode off, main screen) and ends the input thread, however the
/// loop ends. `ratatui::try_init` also installs a panic hook that restores, then calls the
/// previous hook.
struct Restore {
    input_done: Arc<AtomicBool>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.input_done.store(true, Ordering::Relaxed);
        ratatui::restore();
    }
}

/// Reads terminal input on its own thread (crossterm's reads block) and forwards it; ends when
/// `done` is set or the loop is gone.
fn spawn_input(done: Arc<AtomicBool>) -> mpsc::Receiver<io::Result<TermEvent>> {
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
        })
        .expect("spawn the TUI input thread");
    rx
}

/// Runs the terminal UI until the user quits (possible once the task is over). `stop` is
/// cancelled when the user confirms a stop (`s` then `y`, or Ctrl-C).
pub async fn run_tui(
    mut events: broadcast::Receiver<Event>,
    stop: CancellationToken,
    mut theme: Theme,
) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let input_done = Arc::new(AtomicBool::new(false));
    let _restore = Restore {
        input_done: input_done.clone(),
    };
    let mut input = spawn_input(input_done);
    let mut state = TuiState::new();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut events_open = true;
    let mut dirty = true;
    loop {
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
            term = input.recv() => match term {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    let action = if key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL)
                    {
                        if state.phase.is_over() {
                            Action::Quit
                        } else {
                            Action::ConfirmStop
                        }
                    } else {
                        state.on_key(key.code)
                    };
                    match action {
                        Action::ConfirmStop => stop.cancel(),
                        Action::CycleTheme => theme = theme.next_builtin(),
                        Action::Quit => return Ok(()),
                        Action::None | Action::AskStop | Action::ToggleHelp => {}
                    }
                    terminal.draw(|f| draw(f, &state, &theme))?;
                    dirty = false;
                }
                Some(Ok(TermEvent::Resize(..))) => {
                    terminal.autoresize()?;
                    terminal.draw(|f| draw(f, &state, &theme))?;
                    dirty = false;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(io::Error::other("the terminal input thread ended")),
            },
            _ = tick.tick() => {
                if dirty {
                    terminal.draw(|f| draw(f, &state, &theme))?;
                    dirty = false;
                }
            }
        }
    }
}
