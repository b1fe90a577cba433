//! The results' path through the controller: announced chunks are pulled a few at a time per
//! agent (credits), checked, moved by the agent's clock offset, stripped of iterations
//! already stored, merged in time order, handed to storage, and confirmed to their agent
//! (which may then delete them) once storage has committed them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::core::{Action, Core};
use crate::chunk::codec;
use crate::chunk::merge::{retain_new, shift_clock};
use crate::distributed::protocol::{Delivery, ToAgent};
use crate::events::Level;

impl Core {
    /// A chunk (or word that it cannot come) from agent `i`.
    pub(super) fn on_delivery(&mut self, i: usize, delivery: Delivery) {
        let Some(active) = &mut self.active else {
            return;
        };
        let agent = &mut self.agents[i];
        match delivery {
            Delivery::Missing { id, reason } => {
                agent.in_flight.remove(&id);
                active
                    .outcome
                    .missing
                    .push(format!("chunk {id} of agent {}: {reason}", agent.name));
                let msg = format!("agent {} cannot deliver chunk {id}: {reason}", agent.name);
                self.out.notice(Level::Error, msg);
            }
            Delivery::Chunk { id, bytes } => {
                if agent.in_flight.remove(&id).is_none() {
                    return;
                }
                active.delivered.insert((agent.name.clone(), id));
                match codec::decode(&bytes) {
                    Err(e) => {
                        active
                            .outcome
                            .missing
                            .push(format!("chunk {id} of agent {}: {e}", agent.name));
                    }
                    Ok(mut chunk) => {
                        chunk.source = Arc::from(agent.name.as_str());
                        shift_clock(&mut chunk, agent.offset());
                        // Numbers we never handed out cannot be ours; they would also make the
                        // stored-number set as large as the number.
                        let max = active.max_number;
                        let before = chunk.len();
                        chunk
                            .records
                            .retain(|r| r.iteration >= 1 && r.iteration <= max);
                        if chunk.len() < before {
                            active.outcome.missing.push(format!(
                                "chunk {id} of agent {}: {} records with iteration numbers never handed out were dropped",
                                agent.name,
                                before - chunk.len()
                            ));
                        }
                        active.outcome.duplicates +=
                            retain_new(&mut chunk, &mut active.stored) as u64;
                        let source = *agent
                            .source
                            .get_or_insert_with(|| active.merger.add_source(agent.name.as_str()));
                        if chunk.is_empty() {
                            // Nothing new in it: the agent may delete it now.
                            self.out.send(agent.conn, ToAgent::Stored { ids: vec![id] });
                        } else {
                            active.next_tag += 1;
                            active.tags.insert(active.next_tag, (i, id));
                            active.merger.push_tagged(source, chunk, active.next_tag);
                        }
                    }
                }
                // Leases run whose numbers are now all stored are complete.
                let stored = &active.stored;
                let plan = &mut active.plan;
                let agent_id = agent.id;
                agent.ran.retain_mut(|ran| {
                    if ran.advance(stored) {
                        plan.complete(agent_id, ran.lease.id);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        self.serve_waiting();
    }

    /// Ask agents for announced chunks, within each agent's credit.
    pub(super) fn pull(&mut self) {
        if self.active.is_none() {
            return;
        }
        let credits = self.options.credits;
        let mut queued = std::mem::take(&mut self.to_pull);
        queued.sort_unstable();
        queued.dedup();
        let now = Instant::now();
        for i in queued {
            let Some(agent) = self.agents.get_mut(i) else {
                continue;
            };
            if !(agent.alive() && agent.results_ready) {
                continue;
            }
            let room = credits.saturating_sub(agent.in_flight.len());
            if room == 0 || agent.announced.is_empty() {
                continue;
            }
            // An id already asked for (announced twice by a confused agent) is not asked
            // again: a failed second pull would otherwise take the first out of flight.
            let mut ids = Vec::new();
            while ids.len() < room {
                let Some(meta) = agent.announced.pop_front() else {
                    break;
                };
                if agent.in_flight.insert(meta.id, now).is_none() {
                    ids.push(meta.id);
                }
            }
            if ids.is_empty() {
                continue;
            }
            self.out.push(Action::Pull {
                agent: i,
                conn: agent.conn,
                ids,
            });
        }
    }

    /// A pull could not be queued (the session is gone or its outbox full): its chunks are
    /// not in flight (nor announced any more, as before the pull).
    pub(super) fn pull_failed(&mut self, i: usize, ids: &[u64]) {
        if let Some(agent) = self.agents.get_mut(i) {
            for id in ids {
                agent.in_flight.remove(id);
            }
        }
    }

    /// Chunks that are in time order go to storage ([`Action::Store`]s); then the loop
    /// calls [`Core::confirm`].
    pub(super) fn release(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        while let Some((chunk, tag)) = active.merger.pop_ready_tagged() {
            self.out.push(Action::Store { chunk, tag });
        }
    }

    /// Storage took the chunk of `tag`: confirm it to its agent once storage has committed
    /// it.
    pub(super) fn handed(&mut self, tag: u64) {
        let Some(active) = &mut self.active else {
            return;
        };
        active.released += 1;
        if let Some((i, id)) = active.tags.remove(&tag) {
            active.unconfirmed.push_back((active.released, i, id));
        }
    }

    /// Storage has committed this many chunks of the workload.
    pub(super) fn storage_committed(&mut self, chunks: u64) {
        if let Some(active) = &mut self.active {
            active.committed = Some(chunks);
        }
    }

    /// Tell agents which of their chunks are committed to storage: they may delete them.
    pub(super) fn confirm(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        let committed = active.committed.unwrap_or(active.released);
        let mut confirm: HashMap<usize, Vec<u64>> = HashMap::new();
        while let Some(&(seq, i, id)) = active.unconfirmed.front() {
            if seq > committed {
                break;
            }
            active.unconfirmed.pop_front();
            confirm.entry(i).or_default().push(id);
        }
        for (i, ids) in confirm {
            self.out.send(self.agents[i].conn, ToAgent::Stored { ids });
        }
    }
}
