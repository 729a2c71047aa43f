//! The robustness soak set at a small scale (`examples/soak.rs`; the full set with its
//! figures is `bench/robustness.sh`). One test so the rows run one after another: the
//! descriptor census of a row must not see another row's sockets, and the EMFILE row
//! lowers the process's descriptor limit while it runs.

#[path = "../examples/soak.rs"]
mod soak;

use std::time::Duration;

/// Under valgrind (`bench/memcheck.sh`), whose preload library is in `LD_PRELOAD`.
fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("vgpreload"))
}

#[test]
fn soak_set_small() {
    let vg = under_valgrind();
    let mut rows = vec![
        soak::cycles(400, 2),
        // Valgrind runs ~50x slower; the row's own deadline would cut 8 MiB short.
        soak::bulk(if vg { 1 << 20 } else { 8 << 20 }),
        soak::closerace(50),
        soak::rst(10),
        soak::slow(10, Duration::from_millis(500), Duration::from_secs(1)),
    ];
    // Valgrind emulates RLIMIT_NOFILE itself: it closes any descriptor the kernel hands
    // out above the emulated limit and reports EMFILE, so an accepted connection is lost
    // rather than left queued. The row is meaningless there.
    if !vg {
        rows.push(soak::emfile(Duration::from_millis(500), 4));
    }
    let mut failed = Vec::new();
    for r in &rows {
        println!("{}", r.markdown());
        if !r.pass {
            failed.push(r.markdown());
        }
    }
    assert!(failed.is_empty(), "rows failed:\n{}", failed.join("\n"));
}
