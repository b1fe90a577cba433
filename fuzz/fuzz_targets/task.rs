//! A task file as a user writes it: a Jinja2 template rendered with no arguments, then the
//! YAML/JSON parse and every plugin's validation. Errors are fine; panics, hangs and
//! unbounded memory are not.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rally_tui::task::template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/fuzz/task.yaml");
    let _ = rally_tui::task::parse_task(file, text);
    if let Ok(rendered) = template::render(text, file, &Default::default()) {
        let _ = rally_tui::task::parse_task(file, &rendered);
    }
});
