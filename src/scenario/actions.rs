//! Timing atomic actions into a flat, pre-ordered list (Rally's nested tree, without a heap
//! allocation per action).

use std::time::Instant;

use crate::chunk::{ActionId, ActionSpan};
use crate::clock::Clock;

/// Deepest nesting we track; Rally's reports only look three levels down.
const MAX_DEPTH: usize = 16;

/// Records the atomic actions of the iterations a slot runs. The spans accumulate across
/// iterations (they belong to the slot's current chunk); each iteration takes the range it
/// added.
pub struct ActionRecorder {
    pub spans: Vec<ActionSpan>,
    clock: Clock,
    open: [u32; MAX_DEPTH],
    depth: usize,
}

/// An action that has started and not finished.
#[derive(Debug, Clone, Copy)]
pub struct OpenAction(u32);

impl ActionRecorder {
    pub fn new(clock: Clock) -> ActionRecorder {
        ActionRecorder {
            spans: Vec::new(),
            clock,
            open: [0; MAX_DEPTH],
            depth: 0,
        }
    }

    /// Start `name`, nested in the innermost action still open.
    pub fn start(&mut self, name: ActionId) -> OpenAction {
        let index = self.spans.len() as u32;
        let now = self.clock.now();
        self.spans.push(ActionSpan {
            name,
            depth: self.depth.min(u8::MAX as usize) as u8,
            failed: false,
            started_at: now,
            finished_at: now,
        });
        if self.depth < MAX_DEPTH {
            self.open[self.depth] = index;
        }
        self.depth += 1;
        OpenAction(index)
    }

    /// Finish an action; a failed one is marked as Rally marks an action an exception left.
    pub fn finish(&mut self, action: OpenAction, failed: bool) {
        let now = self.clock.now();
        if let Some(span) = self.spans.get_mut(action.0 as usize) {
            span.finished_at = now;
            span.failed = failed;
        }
        self.depth = self.depth.saturating_sub(1);
    }

    /// Close whatever an interrupted iteration left open, as failed (a timeout is an
    /// exception passing through every enclosing action).
    pub fn abandon_open(&mut self, at: Instant) {
        let now = self.clock.wall(at);
        while self.depth > 0 {
            self.depth -= 1;
            if self.depth < MAX_DEPTH
                && let Some(span) = self.spans.get_mut(self.open[self.depth] as usize)
            {
                span.finished_at = now;
                span.failed = true;
            }
        }
    }

    pub fn len(&self) -> u32 {
        self.spans.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_abandon() {
        let mut r = ActionRecorder::new(Clock::new());
        let foo = r.start(0);
        let bar = r.start(1);
        r.finish(bar, false);
        r.finish(foo, false);
        let outer = r.start(2);
        let _inner = r.start(3);
        let _ = outer;
        r.abandon_open(Instant::now());
        let depths: Vec<_> = r
            .spans
            .iter()
            .map(|s| (s.name, s.depth, s.failed))
            .collect();
        assert_eq!(
            depths,
            vec![(0, 0, false), (1, 1, false), (2, 0, true), (3, 1, true)]
        );
        assert!(r.spans.iter().all(|s| s.finished_at >= s.started_at));
    }
}
