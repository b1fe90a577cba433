//! Writing a running task to the store from its own thread, so that SQLite never blocks the
//! engine: the engine sends [`Record`]s; chunks that queue up while a transaction commits
//! are written together in the next one.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::{Record, Store, StoreError};

/// Chunks per transaction at most; under load, fewer and larger transactions.
const BATCH: usize = 64;

/// Start the writer. Its thread ends when every sender is dropped and returns the first
/// error it met (it keeps going after one, so a full disk loses no more than it must).
pub fn spawn(
    store: Store,
) -> (
    mpsc::Sender<Record>,
    std::thread::JoinHandle<Result<(), StoreError>>,
) {
    let (tx, rx) = mpsc::channel(256);
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || Writer::new(store).run(rx))
        .expect("spawning the store writer thread");
    (tx, handle)
}

struct Writer {
    store: Store,
    task: String,
    subtasks: HashMap<usize, String>,
    /// Workload index → (uuid, next chunk order).
    workloads: HashMap<usize, (String, u64)>,
    /// Per workload: chunks committed so far, and who wants to know.
    committed: HashMap<usize, (u64, tokio::sync::watch::Sender<u64>)>,
    pending: Vec<(usize, crate::chunk::Chunk)>,
    first_error: Option<StoreError>,
}

impl Writer {
    fn new(store: Store) -> Writer {
        Writer {
            store,
            task: String::new(),
            subtasks: HashMap::new(),
            workloads: HashMap::new(),
            committed: HashMap::new(),
            pending: Vec::new(),
            first_error: None,
        }
    }

    fn note(&mut self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            tracing::error!("storing results failed: {e}");
            self.first_error.get_or_insert(e);
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Record>) -> Result<(), StoreError> {
        loop {
            let next = if self.pending.is_empty() {
                rx.blocking_recv()
            } else {
                match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.flush();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            match next {
                None => break,
                Some(Record::Chunk { index, chunk }) => {
                    self.pending.push((index, chunk));
                    if self.pending.len() >= BATCH {
                        self.flush();
                    }
                }
                Some(other) => {
                    self.flush();
                    let result = self.handle(other);
                    self.note(result);
                }
            }
        }
        self.flush();
        self.first_error.map_or(Ok(()), Err)
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut batch = Vec::with_capacity(pending.len());
        for (index, chunk) in &pending {
            if let Some((uuid, order)) = self.workloads.get_mut(index) {
                batch.push((uuid.clone(), *order, chunk));
                *order += 1;
            }
        }
        let result = self
            .store
            .add_chunks(batch.iter().map(|(u, o, c)| (u.as_str(), *o, *c)));
        if result.is_ok() {
            for (index, _) in &pending {
                if let Some((n, tx)) = self.committed.get_mut(index) {
                    *n += 1;
                    let _ = tx.send(*n);
                }
            }
        }
        self.note(result);
    }

    fn handle(&mut self, record: Record) -> Result<(), StoreError> {
        match record {
            Record::TaskStarted { uuid, spec } => {
                self.task = uuid;
                self.store.begin_task(&self.task, &spec)
            }
            Record::WorkloadStarted {
                info,
                subtask_index,
                subtask,
                workload,
                action_names,
                committed,
            } => {
                if let Some(tx) = committed {
                    self.committed.insert(info.index, (0, tx));
                }
                let subtask_uuid = self
                    .subtasks
                    .entry(subtask_index)
                    .or_insert_with(|| uuid::Uuid::new_v4().to_string())
                    .clone();
                let uuid = self.store.begin_workload(
                    &self.task,
                    &subtask_uuid,
                    subtask_index,
                    &subtask,
                    &info,
                    &workload,
                    &action_names,
                )?;
                self.workloads.insert(info.index, (uuid, 0));
                Ok(())
            }
            Record::WorkloadFinished(report) => match self.workloads.get(&report.info.index) {
                Some((uuid, _)) => {
                    let status = if report
                        .sla
                        .iter()
                        .any(|r| r.criterion.starts_with("aborted"))
                    {
                        "aborted"
                    } else {
                        "finished"
                    };
                    self.store.finish_workload(uuid, &report, status)
                }
                None => Ok(()),
            },
            Record::Stopping { status } => self.store.set_task_status(&self.task, status),
            Record::TaskFinished { status, pass_sla } => {
                self.store.finish_task(&self.task, status, pass_sla)
            }
            Record::Chunk { .. } => Ok(()),
        }
    }
}
