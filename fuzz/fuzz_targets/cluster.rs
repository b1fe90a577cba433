//! A cluster file (`run --cluster FILE`): parsed and validated without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rally_tui::cluster::file::ClusterFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cluster) = ClusterFile::parse(Path::new("/nonexistent/cluster.yaml"), text) {
        let _ = cluster.agents();
        let _ = cluster.connect_addr(5000);
    }
});
