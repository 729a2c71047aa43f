//! A Happy Eyeballs dial races its attempts on the caller's thread (SPEC §5: "a dial
//! creates no thread"). Its own test binary with a single test, so no other test's
//! threads come and go while the process's threads are counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reseau::resolve::{Dialer, ListenConfig, StaticResolver};
use reseau::tcp::{self, Conn, Listener};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The process's threads, by `/proc/self/task` entry.
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            format!("{}:{}", e.file_name().to_string_lossy(), comm.trim())
        })
        .collect();
    names.sort();
    names
}

/// A backlog-0 listener at `addr` whose accept queue is full, so SYNs to it are
/// dropped; `None` if the port is taken or this kernel completes the handshake anyway.
fn black_hole(addr: SocketAddr) -> Option<(Listener, Vec<Conn>)> {
    let cfg = ListenConfig {
        backlog: 0,
        ..ListenConfig::default()
    };
    let ln = cfg.listen("tcp", &addr.to_string()).ok()?;
    let probe = Dialer {
        timeout: Some(ms(200)),
        ..Dialer::default()
    };
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match probe.dial("tcp", &addr.to_string()) {
            Ok(c) => fillers.push(c),
            Err(e) if e.is_timeout() => return Some((ln, fillers)),
            Err(e) => panic!("probe dial to {addr}: {e:?}"),
        }
    }
    println!("skipped: a full backlog-0 listener completes handshakes on this kernel");
    None
}

/// `[black hole, live]` with a 300 ms attempt delay: both connects are in flight
/// together for a while, and the process has no more threads then than before.
#[test]
fn happy_eyeballs_dial_creates_no_thread() {
    // The live listener first, then the hole on its port of another loopback address.
    let mut site = None;
    for _ in 0..20 {
        let live = tcp::listen(SocketAddr::new(ip("127.0.0.2"), 0)).unwrap();
        let port = live.local_addr().unwrap().port();
        if let Some(hole) = black_hole(SocketAddr::new(ip("127.0.0.1"), port)) {
            site = Some((live, hole, port));
            break;
        }
        if ListenConfig::default()
            .listen("tcp", &format!("127.0.0.1:{port}"))
            .is_ok()
        {
            // The port was free, so the hole itself was the problem: already reported.
            return;
        }
    }
    let (live, _hole, port) = site.expect("a port free on 127.0.0.1 and 127.0.0.2");

    let hosts = StaticResolver::new();
    hosts.insert("warm.test", [ip("127.0.0.2")]);
    hosts.insert("he.test", [ip("127.0.0.1"), ip("127.0.0.2")]);
    let delay = ms(300);
    let dialer = Dialer {
        timeout: Some(Duration::from_secs(10)),
        fallback_delay: Some(delay),
        resolver: Arc::new(hosts),
        ..Dialer::default()
    };
    // A lookup with a budget runs on the resolver pool: start its worker (it idles for
    // 30 s) so that it is part of the baseline, not of the dial.
    drop(dialer.dial("tcp", &format!("warm.test:{port}")).unwrap());

    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let sampler = {
        let done = done.clone();
        thread::spawn(move || {
            // The baseline, once threads from the set-up above have gone.
            let limit = Instant::now() + Duration::from_secs(3);
            let mut base = threads();
            loop {
                thread::sleep(ms(20));
                let now = threads();
                if now.len() == base.len() || Instant::now() > limit {
                    base = now;
                    break;
                }
                base = now;
            }
            tx.send(()).unwrap();
            let (mut most, mut samples) = (base.clone(), 0u32);
            while !done.load(Ordering::SeqCst) {
                let now = threads();
                if now.len() > most.len() {
                    most = now;
                }
                samples += 1;
                thread::sleep(ms(1));
            }
            (base, most, samples)
        })
    };
    rx.recv_timeout(Duration::from_secs(10))
        .expect("sampler started");

    let start = Instant::now();
    let conn = dialer.dial("tcp", &format!("he.test:{port}")).unwrap();
    let took = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let (base, most, samples) = sampler.join().unwrap();

    assert_eq!(
        conn.remote_addr(),
        Some(SocketAddr::new(ip("127.0.0.2"), port))
    );
    // The black hole held the first attempt until the second one won.
    assert!(took + ms(5) >= delay, "dial took {took:?}");
    assert!(
        samples >= 20,
        "only {samples} samples during a {took:?} dial"
    );
    assert_eq!(
        most.len(),
        base.len(),
        "threads during the dial {most:?}, before {base:?}"
    );
    drop(live);
}
