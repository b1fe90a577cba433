//! Records per second into SQLite (SPEC §10: >= 2,000,000/s), and out of it again for the CSV
//! and Rally JSON exports. Run with `cargo bench --bench storage` (QUICK=1 for a smoke run).

use std::sync::Arc;
use std::time::Instant;

use rally_tui::chunk::{ActionSpan, Chunk, IterationRecord};
use rally_tui::store::Store;

/// A chunk shaped like `Dummy.dummy`'s: 1,000 records, each with `foo` containing `bar`.
fn chunk(first: u64) -> Chunk {
    let mut c = Chunk::new(Arc::from("local"));
    for i in 0..1000u64 {
        let t = 1.7e9 + (first + i) as f64 * 1e-6;
        let a = c.actions.len() as u32;
        c.actions.push(ActionSpan {
            name: 0,
            depth: 0,
            failed: false,
            started_at: t,
            finished_at: t + 1e-6,
        });
        c.actions.push(ActionSpan {
            name: 1,
            depth: 1,
            failed: false,
            started_at: t,
            finished_at: t + 1e-6,
        });
        c.records.push(IterationRecord {
            iteration: first + i + 1,
            timestamp: t,
            duration: 1e-6,
            idle_duration: 0.0,
            lateness: 0.0,
            error: None,
            output: None,
            actions: a..a + 2,
            dials: Default::default(),
        });
    }
    c
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let records: u64 = if std::env::var("QUICK").is_ok_and(|v| v == "1") {
        20_000
    } else {
        5_000_000
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let mut store = Store::open(&db)?;
    let spec = rally_tui::task::parse_task(
        std::path::Path::new("bench.yaml"),
        "version: 2\ntitle: bench\nsubtasks:\n- title: s\n  scenario: {Dummy.dummy: {}}\n",
    )?;
    store.begin_task("bench", &spec)?;
    let (subtask, workload) = (&spec.subtasks[0], &spec.subtasks[0].workloads[0]);
    let info = rally_tui::events::WorkloadInfo {
        index: 0,
        count: 1,
        subtask: subtask.title.clone(),
        position: 0,
        scenario: "Dummy.dummy".into(),
        runner: String::new(),
        total: None,
        expected_duration: None,
        target_rate: None,
        max_concurrency: None,
    };
    let uuid = store.begin_workload(
        "bench",
        "bench-subtask",
        0,
        subtask,
        &info,
        workload,
        &["foo".into(), "bar".into()],
    )?;

    let chunks: Vec<Chunk> = (0..records / 1000).map(|k| chunk(k * 1000)).collect();
    let started = Instant::now();
    let encoded: usize = chunks
        .iter()
        .map(|c| rally_tui::chunk::codec::encode(c).len())
        .sum();
    let encode = records as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (batch_no, batch) in chunks.chunks(64).enumerate() {
        store.add_chunks(
            batch
                .iter()
                .enumerate()
                .map(|(i, c)| (uuid.as_str(), (batch_no * 64 + i) as u64, c)),
        )?;
    }
    let write = records as f64 / started.elapsed().as_secs_f64();

    let task = rally_tui::store::StoredTask {
        ..store.task("bench")?
    };
    let started = Instant::now();
    rally_tui::report::export::csv(&store, &task, std::io::sink())?;
    let csv = records as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    rally_tui::report::export::rally_json(&store, std::slice::from_ref(&task), std::io::sink())?;
    let json = records as f64 / started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&db)?.len()
        + std::fs::metadata(dir.path().join("bench.db-wal")).map_or(0, |m| m.len());

    println!(
        "| storage ({} records, Dummy.dummy shape) | records/s |",
        thousands(records as f64)
    );
    println!("|---|---:|");
    println!(
        "| into SQLite (chunks of 1,000, 64 per transaction) | {} |",
        thousands(write)
    );
    println!(
        "| chunk encoding alone ({:.0} bytes/record) | {} |",
        encoded as f64 / records as f64,
        thousands(encode)
    );
    println!("| CSV export | {} |", thousands(csv));
    println!("| Rally JSON export | {} |", thousands(json));
    println!(
        "\nDatabase size: {:.1} bytes/record",
        size as f64 / records as f64
    );
    Ok(())
}

/// 1234567.8 -> "1,234,568"
fn thousands(x: f64) -> String {
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
