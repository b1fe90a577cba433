//! Every task file Rally ships as a sample must validate and run unchanged (SPEC §3).
//!
//! To keep CI fast the running test shortens the samples' sleeps (`sleep`, `sleep_max`,
//! `sleep_factor`) to a hundredth, except in the timeout sample whose point is a sleep longer
//! than the timeout; and it points the HTTP samples at a local nginx instead of public sites.
//! Nothing else in the files is changed.

use std::path::{Path, PathBuf};

use crate::support::{self, Nginx};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rally-samples")
}

fn sample_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("samples directory is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            ) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&samples_dir(), &mut files);
    files.sort();
    assert_eq!(
        files.len(),
        64,
        "Rally ships 64 sample task files (v1 and v2, YAML and JSON)"
    );
    files
}

#[test]
fn every_rally_sample_validates() {
    let mut failures = Vec::new();
    for file in sample_files() {
        let out = support::run(&["validate", file.to_str().expect("utf-8 path")]);
        if !out.status.success() {
            failures.push(format!("{}: {}", file.display(), support::stderr(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "samples that do not validate:\n{}",
        failures.join("\n")
    );
}

/// Divide the number after each sleep key by 100.
fn shorten_sleeps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["sleep\"", "sleep:", "sleep_max", "sleep_factor"]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
    {
        let key_end = at + rest[at..].find(':').expect("a key is followed by ':'") + 1;
        out.push_str(&rest[..key_end]);
        rest = &rest[key_end..];
        let spaces = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..spaces]);
        rest = &rest[spaces..];
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..len].parse().expect("a sleep is a number");
        out.push_str(&format!("{}", value / 100.0));
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// What each sample must produce: exit code(s) and per-workload (iterations, failures).
fn expectation(name: &str) -> (&'static [i32], Option<(u64, Option<u64>)>) {
    match name {
        "dummy-context" => (&[0], Some((4, Some(0)))),
        // 30 seconds of 5 slots; the count depends on timing.
        "constant-for-duration" => (&[0], None),
        // Every iteration sleeps 10 s under a 5 s timeout.
        "constant-timeout" => (&[2], Some((20, Some(20)))),
        "rps" | "serial" | "dummy" | "check-request" | "check-random-request" => {
            (&[0], Some((20, Some(0))))
        }
        "dummy-exception-probability" => (&[2], Some((1000, None))),
        "dummy-exception" => (&[2], Some((20, Some(20)))),
        "dummy-failure" => (&[2], Some((20, Some(3)))),
        "dummy-output" => (&[0], Some((50, Some(0)))),
        "dummy-random-action" | "dummy-timed-atomic-actions" => (&[0], Some((5, Some(0)))),
        "dummy-random-fail-in-atomic" => (&[2], Some((100, None))),
        // Outliers with 10 sigmas may or may not trip on 50 ms sleeps.
        "sla-dummy" => (&[0, 2], Some((20, Some(0)))),
        other => panic!("no expectation for sample {other}"),
    }
}

#[test]
fn every_rally_sample_runs() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = sample_files();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let (nginx, dir) = (&nginx, dir.path());
                scope.spawn(move || {
                    let text = std::fs::read_to_string(file).expect("sample is readable");
                    let stem = file
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .expect("file name")
                        .to_string();
                    let name = if file.parent().is_some_and(|p| p.ends_with("sla")) {
                        format!("sla-{stem}")
                    } else {
                        stem
                    };
                    let text = if name == "constant-timeout" {
                        text
                    } else {
                        shorten_sleeps(&text)
                    };
                    let text = text
                        .replace("http://www.example.com", &nginx.url(""))
                        .replace("http://www.openstack.org", &nginx.url("/small"));
                    let ext = file
                        .extension()
                        .and_then(|e| e.to_str())
                        .expect("extension");
                    let copy = support::write(dir, &format!("{i}-{name}.{ext}"), &text);
                    let out = support::run(&["run", copy.to_str().expect("utf-8"), "--no-tui"]);
                    let (codes, counts) = expectation(&name);
                    let code = out.status.code().unwrap_or(-1);
                    let got = support::workload_counts(&support::stdout(&out));
                    let mut problems = Vec::new();
                    if !codes.contains(&code) {
                        problems.push(format!("exit code {code}, expected one of {codes:?}"));
                    }
                    if got.len() != 1 {
                        problems.push(format!("expected one workload summary, got {got:?}"));
                    } else if let Some((n, failed)) = counts {
                        if got[0].0 != n || failed.is_some_and(|f| f != got[0].1) {
                            problems.push(format!("got {:?}, expected ({n}, {failed:?})", got[0]));
                        }
                    } else if got[0].0 < 5 {
                        problems.push(format!("too few iterations: {:?}", got[0]));
                    }
                    (!problems.is_empty()).then(|| {
                        format!(
                            "{}: {}\n--- stdout\n{}--- stderr\n{}",
                            file.display(),
                            problems.join("; "),
                            support::stdout(&out),
                            support::stderr(&out)
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("sample thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} samples misbehaved:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sleeps_are_shortened_and_nothing_else() {
    assert_eq!(
        shorten_sleeps("sleep: 5\ntimes: 20"),
        "sleep: 0.05\ntimes: 20"
    );
    assert_eq!(
        shorten_sleeps("{\"sleep\": 0.2, \"sleep_max\": 2}"),
        "{\"sleep\": 0.002, \"sleep_max\": 0.02}"
    );
}
