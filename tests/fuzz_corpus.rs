//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the same
//! checks the fuzz targets run (`fuzz/checks.rs`), so `cargo test` guards what fuzzing
//! found without needing nightly or cargo-fuzz. The TLS target needs
//! `RESEAU_RUN_TLS_TESTS=1`, like the other TLS tests.

use std::path::Path;

const CERTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

#[path = "../fuzz/checks.rs"]
mod checks;

/// Runs `target`'s check on each file of its corpus; returns how many ran.
fn replay(target: &str) -> usize {
    let check = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        // Name the file in the failure message.
        let res = std::panic::catch_unwind(|| check(&data));
        assert!(res.is_ok(), "{target}: {} fails its check", f.display());
    }
    files.len()
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in checks::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(name);
        let n = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert!(n > 0, "{} is empty or missing", dir.display());
    }
}

#[test]
fn ip_addr_corpus() {
    assert!(replay("ip_addr") > 0);
}

#[test]
fn host_port_corpus() {
    assert!(replay("host_port") > 0);
}

#[test]
fn port_corpus() {
    assert!(replay("port") > 0);
}

#[test]
fn read_buf_corpus() {
    assert!(replay("read_buf") > 0);
}

#[test]
fn tls_server_corpus() {
    let on = std::env::var("RESEAU_RUN_TLS_TESTS")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    if !on {
        println!("skipping tls_server_corpus: set RESEAU_RUN_TLS_TESTS=1 to run the TLS tests");
        return;
    }
    assert!(replay("tls_server") > 0);
}
