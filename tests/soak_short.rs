//! The robustness soak set at a small scale (`examples/soak.rs`; the full set with its
//! figures is `bench/robustness.sh`). One test so the rows run one after another: the
//! descriptor census of a row must not see another row's sockets, and the EMFILE row
//! lowers the process's descriptor limit while it runs.

#[path = "../examples/soak.rs"]
mod soak;

use std::time::Duration;

#[test]
fn soak_set_small() {
    let rows = [
        soak::cycles(400, 2),
        soak::bulk(8 << 20),
        soak::closerace(50),
        soak::rst(10),
        soak::slow(10, Duration::from_millis(500), Duration::from_secs(1)),
        soak::emfile(Duration::from_millis(500), 4),
    ];
    let mut failed = Vec::new();
    for r in &rows {
        println!("{}", r.markdown());
        if !r.pass {
            failed.push(r.markdown());
        }
    }
    assert!(failed.is_empty(), "rows failed:\n{}", failed.join("\n"));
}
