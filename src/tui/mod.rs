//! The terminal UI (SPEC §7): a live view of one task run, fed only by the engine's
//! [`Event`](crate::events::Event) stream.
//!
//! It is split so that everything but the terminal itself is pure and testable:
//! - [`state`] folds events and key presses into a bounded [`state::TuiState`] (no clock, no
//!   I/O), so memory stays flat however long the run and every screen can be replayed;
//! - [`theme`] loads the colour palette from TOML (built-in or user file);
//! - [`render`] draws a state with a theme onto a ratatui `Frame`, with no side effects, so the
//!   snapshot tests in [`render`] pin every screen with `TestBackend`.
//!
//! The event loop ([`app`]: terminal setup/restore, crossterm input, frame pacing) only calls
//! [`state::TuiState::apply`], [`state::TuiState::on_key`] and [`render::draw`].

pub mod app;
pub mod render;
pub mod state;
pub mod theme;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod render_tests;
