//! What each key does. Popups (the stop and leave confirmations, help, the overlays)
//! take the keys first, so a stray key never stops a run.

use crate::events::Level;
use crossterm::event::KeyCode;

use super::{Action, Overlay, Phase, TuiState};

/// Rows PageUp / PageDown move the agent selection by.
pub const PAGE: usize = 10;

impl TuiState {
    /// Handles one key; popups take the keys first, so a stray key never stops a run.
    pub fn on_key(&mut self, key: KeyCode) -> Action {
        self.notice = None;
        if self.confirm_leave {
            self.confirm_leave = false;
            return match key {
                KeyCode::Char('y' | 'Y' | 'q' | 'Q') if !self.phase.is_over() => Action::LeaveNow,
                KeyCode::Char('y' | 'Y' | 'q' | 'Q') => Action::Quit,
                _ => Action::None,
            };
        }
        if self.confirm_stop {
            return match key {
                KeyCode::Char('s' | 'S' | 'y' | 'Y') => self.request_stop(),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.confirm_stop = false;
                    Action::None
                }
                _ => Action::None,
            };
        }
        if self.show_help {
            return match key {
                KeyCode::Char('?' | 'q') | KeyCode::Esc => {
                    self.show_help = false;
                    Action::ToggleHelp
                }
                _ => Action::None,
            };
        }
        if let Some(action) = self.overlay_key(key) {
            return action;
        }
        match key {
            KeyCode::Char('s' | 'S') => self.ask_stop(false),
            KeyCode::Char('q' | 'Q') => {
                if self.phase.is_over() {
                    Action::Quit
                } else {
                    self.ask_stop(true)
                }
            }
            KeyCode::Char('t' | 'T') => Action::CycleTheme,
            KeyCode::Char('?') => {
                self.show_help = true;
                Action::ToggleHelp
            }
            KeyCode::Tab | KeyCode::Down | KeyCode::Char('j') => {
                self.select(true);
                Action::None
            }
            KeyCode::BackTab | KeyCode::Up | KeyCode::Char('k') => {
                self.select(false);
                Action::None
            }
            KeyCode::PageDown => self.select_by(PAGE as isize),
            KeyCode::PageUp => self.select_by(-(PAGE as isize)),
            KeyCode::Home => self.select_by(isize::MIN),
            KeyCode::End => self.select_by(isize::MAX),
            KeyCode::Right => {
                self.view = self.view.step(true);
                Action::None
            }
            KeyCode::Left => {
                self.view = self.view.step(false);
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Keys that open, close or move within an overlay; `None` for the keys it leaves to
    /// the main screen (stop, quit, theme).
    pub(super) fn overlay_key(&mut self, key: KeyCode) -> Option<Action> {
        let toggle = |this: &mut Self, o: Overlay| {
            this.overlay = if this.overlay == o { Overlay::None } else { o };
            this.overlay_scroll = 0;
            Some(Action::None)
        };
        match key {
            KeyCode::Char('w' | 'W') => return toggle(self, Overlay::Workloads),
            KeyCode::Char('e' | 'E') => return toggle(self, Overlay::Errors),
            KeyCode::Char('v' | 'V') => return toggle(self, Overlay::Statistics),
            KeyCode::Char('l' | 'L') => {
                self.log_scroll = 0;
                return toggle(self, Overlay::Log);
            }
            KeyCode::Esc if self.overlay != Overlay::None || self.inspected.is_some() => {
                self.overlay = Overlay::None;
                self.inspected = None;
                return Some(Action::None);
            }
            _ => {}
        }
        if self.overlay == Overlay::Log {
            let most = self.logs.len().saturating_sub(1);
            let back = |n: usize| self.log_scroll.saturating_add(n).min(most);
            self.log_scroll = match key {
                KeyCode::Up | KeyCode::Char('k') => back(1),
                KeyCode::PageUp => back(PAGE),
                KeyCode::Home => most,
                KeyCode::Down | KeyCode::Char('j') => self.log_scroll.saturating_sub(1),
                KeyCode::PageDown => self.log_scroll.saturating_sub(PAGE),
                KeyCode::End => 0,
                _ => return None,
            };
            return Some(Action::None);
        }
        if matches!(self.overlay, Overlay::Errors | Overlay::Statistics) {
            // In the errors panel ↑↓ (and Tab) still select the agent whose errors show
            // beside everyone's; pages scroll.
            let lines = self.overlay == Overlay::Statistics;
            let most = self.overlay_rows().saturating_sub(1);
            let down = |n: usize| self.overlay_scroll.saturating_add(n).min(most);
            self.overlay_scroll = match key {
                KeyCode::Down | KeyCode::Char('j') if lines => down(1),
                KeyCode::PageDown => down(PAGE),
                KeyCode::End => most,
                KeyCode::Up | KeyCode::Char('k') if lines => self.overlay_scroll.saturating_sub(1),
                KeyCode::PageUp => self.overlay_scroll.saturating_sub(PAGE),
                KeyCode::Home => 0,
                _ => return None,
            };
            return Some(Action::None);
        }
        if self.overlay != Overlay::Workloads {
            return None;
        }
        let last = self.workloads.len().saturating_sub(1);
        match key {
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.workload_cursor = (self.workload_cursor + 1).min(last);
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.workload_cursor = self.workload_cursor.saturating_sub(1);
            }
            KeyCode::Home => self.workload_cursor = 0,
            KeyCode::End => self.workload_cursor = last,
            KeyCode::Enter => {
                // A finished workload other than the one on screen: its final charts, SLA
                // panel, statistics and errors, until Esc.
                let current = self.workload.as_ref().map(|w| w.index);
                let finished = self.finished_report(self.workload_cursor).is_some();
                self.inspected = (finished && Some(self.workload_cursor) != current)
                    .then_some(self.workload_cursor);
                self.overlay = Overlay::None;
            }
            _ => return None,
        }
        Some(Action::None)
    }

    /// Rows of the open errors or Response Times panel: how far it can scroll.
    fn overlay_rows(&self) -> usize {
        let Some((_, table, errors)) = self.shown_statistics() else {
            return 0;
        };
        match self.overlay {
            Overlay::Errors => {
                let selected = self.selected_source().and_then(|src| {
                    let live = self.live.as_ref()?;
                    live.by_source.iter().find(|(n, _)| *n == src.name)
                });
                errors.len().max(selected.map_or(0, |(_, e)| e.len()))
            }
            Overlay::Statistics => {
                fn rows(r: &crate::stats::StatsRow) -> usize {
                    1 + r.children.iter().map(rows).sum::<usize>()
                }
                1 + table.atomics.iter().map(rows).sum::<usize>()
            }
            _ => 0,
        }
    }

    /// A confirmed stop (the popup's `y`, Ctrl-C, a signal): shows `stopping` at once, since
    /// the engine announces only its own (SLA) stops. `Action::None` once the task is over.
    pub fn request_stop(&mut self) -> Action {
        self.confirm_stop = false;
        if self.phase.is_over() {
            self.notice = Some("task over: q quits".into());
            return Action::None;
        }
        if !self.stop_requested {
            self.stop_requested = true;
            self.log(
                Level::Warning,
                "stop requested: agents stop starting iterations",
            );
        }
        if !matches!(self.phase, Phase::Stopping { .. }) {
            self.phase = Phase::Stopping {
                reason: "by user".into(),
            };
        }
        self.notice = Some("stopping: in-flight iterations finish".into());
        Action::ConfirmStop
    }

    /// `s` (or `q` with `leave`): the stop question; while stopping, `q` asks instead
    /// whether to leave without waiting for in-flight iterations.
    pub(super) fn ask_stop(&mut self, leave: bool) -> Action {
        let stopping = self.stop_requested || matches!(self.phase, Phase::Stopping { .. });
        if self.phase.is_over() {
            self.notice = Some("task over: q quits".into());
            Action::None
        } else if stopping && leave {
            self.confirm_leave = true;
            Action::AskStop
        } else if stopping {
            self.notice =
                Some("already stopping: waiting for in-flight iterations (q leaves now)".into());
            Action::None
        } else {
            self.confirm_stop = true;
            Action::AskStop
        }
    }

    /// Moves the selection `by` rows, clamped to the table (no wrap-around, so End and
    /// PageDown stop at the last agent).
    pub(super) fn select_by(&mut self, by: isize) -> Action {
        let last = self.sources.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(by).min(last);
        Action::None
    }

    pub(super) fn select(&mut self, forward: bool) {
        let n = self.sources.len();
        if n == 0 {
            self.selected = 0;
        } else if forward {
            self.selected = (self.selected + 1) % n;
        } else {
            self.selected = (self.selected + n - 1) % n;
        }
    }
}
