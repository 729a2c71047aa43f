//! The robustness soak set behind `bench/robustness.sh` (README "Robustness").
//!
//! ```text
//! soak ROW [--short]
//! ROW: cycles | bulk | closerace | rst | slow | emfile | all
//! ```
//! Each row runs bounded in time over loopback and prints one markdown table row:
//! `| name | parameters | result | figures | pass |`. The exit status is 1 if a row failed.
//! `--short` divides the counts (about 1/100) for CI.
//!
//! The rows are plain functions so `tests/soak_short.rs` can run the short set too.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use reseau::tcp::{self, Conn};
use reseau::{Error, sockets};

/// One line of the results table.
#[derive(Debug)]
pub struct Row {
    /// Row name.
    pub name: &'static str,
    /// What was run.
    pub params: String,
    /// The outcome in words (counts, error classes).
    pub result: String,
    /// Measurements (rates, latencies, descriptor counts).
    pub figures: String,
    /// Whether every check of the row held.
    pub pass: bool,
}

impl Row {
    /// The markdown table row.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} |",
            self.name,
            self.params,
            self.result,
            self.figures,
            if self.pass { "pass" } else { "**FAIL**" }
        )
    }
}

/// The table header matching [`Row::markdown`].
pub const HEADER: &str = "| row | parameters | result | figures | pass |\n|---|---|---|---|---|";

// ---------------------------------------------------------------------------------------
// Helpers

/// Descriptors of this process by kind, from `/proc/self/fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Every open descriptor (the listing's own directory handle excluded).
    pub total: usize,
    /// Sockets.
    pub sockets: usize,
    /// eventfds (the crate's wake-ups for parked waits).
    pub eventfds: usize,
    /// Pipe ends (the portable backend's wake-ups: two per wake).
    pub pipes: usize,
}

impl Census {
    /// Wake-up descriptors of either backend.
    pub fn wakes(&self) -> usize {
        self.eventfds + self.pipes
    }
}

/// Counts the entries of `/proc/self/fd`.
pub fn census() -> Census {
    let mut c = Census::default();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return c;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            // The directory handle of this very listing, already closed by now.
            continue;
        };
        let t = target.to_string_lossy();
        if t.starts_with("/proc/") && t.ends_with("/fd") {
            continue;
        }
        c.total += 1;
        if t.starts_with("socket:") {
            c.sockets += 1;
        } else if t.contains("eventfd") {
            c.eventfds += 1;
        } else if t.starts_with("pipe:") {
            c.pipes += 1;
        }
    }
    c
}

/// Resident set size in MiB.
fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// splitmix64: a seeded stream of 64-bit words.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A byte stream from a seeded PRNG: the writer and the checker each hold one with the
/// same seed, so every byte received can be compared with the byte that was meant.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    left: usize,
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed,
            word: [0; 8],
            left: 0,
        }
    }

    /// The next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() && self.left > 0 {
            buf[i] = self.word[8 - self.left];
            self.left -= 1;
            i += 1;
        }
        let mut words = buf[i..].chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&splitmix(&mut self.state).to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.word = splitmix(&mut self.state).to_le_bytes();
            self.left = 8;
            for b in rest {
                *b = self.word[8 - self.left];
                self.left -= 1;
            }
        }
    }
}

/// FNV-1a over little-endian 64-bit words of the stream: a cheap running checksum that
/// does not depend on how the stream was cut into reads (a partial word waits for the
/// next call). The final partial word is left out; the byte counts cover it.
#[derive(Clone, Copy)]
struct Fnv {
    sum: u64,
    pend: [u8; 8],
    npend: usize,
}

impl Fnv {
    fn new() -> Fnv {
        Fnv {
            sum: 0xcbf2_9ce4_8422_2325,
            pend: [0; 8],
            npend: 0,
        }
    }
    fn word(&mut self, w: u64) {
        self.sum ^= w;
        self.sum = self.sum.wrapping_mul(0x0000_0100_0000_01B3);
    }
    fn update(&mut self, mut buf: &[u8]) {
        if self.npend > 0 {
            let k = (8 - self.npend).min(buf.len());
            self.pend[self.npend..self.npend + k].copy_from_slice(&buf[..k]);
            self.npend += k;
            buf = &buf[k..];
            if self.npend < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pend));
            self.npend = 0;
        }
        let mut words = buf.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.pend[..rest.len()].copy_from_slice(rest);
        self.npend = rest.len();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The errno of a crate error, looking through wrappers.
fn errno(e: &Error) -> Option<i32> {
    e.raw_os_error()
}

/// Keeps the first error message of a row for its result column.
#[derive(Default)]
struct FirstError(Mutex<Option<String>>);

impl FirstError {
    fn note(&self, what: impl FnOnce() -> String) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(what());
        }
    }
    fn get(&self) -> String {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .map_or_else(String::new, |s| format!(" (first: {s})"))
    }
}

/// Waits until `f` holds, for at most `limit`; returns whether it did.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// Row 1: connect/echo/close cycles

/// `n` connect/echo/close cycles from `clients` threads against a `tcp::Listener` served by
/// `clients` threads; descriptors and errors checked at the end.
pub fn cycles(n: u64, clients: usize) -> Row {
    let name = "connect/echo/close cycles";
    let params = format!("{n} cycles, {clients} client + {clients} server threads, 32 B echo");
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0)).expect("listen"));
    let addr = ln.local_addr().expect("addr");
    let errors = Arc::new(AtomicU64::new(0));
    let first = Arc::new(FirstError::default());

    let servers: Vec<_> = (0..clients)
        .map(|_| {
            let (ln, errors, first) = (ln.clone(), errors.clone(), first.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 256];
                loop {
                    let c = match ln.accept() {
                        Ok(c) => c,
                        Err(Error::Closed) => return,
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first.note(|| format!("accept: {e}"));
                            continue;
                        }
                    };
                    // Echo until the client's EOF, then drop (close).
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(k) => {
                                if let Err(e) = c.write(&buf[..k]) {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    first.note(|| format!("server write: {e}"));
                                    break;
                                }
                            }
                            Err(e) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                first.note(|| format!("server read: {e}"));
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Phases: warm-up (every thread has parked once, so its wake-up eventfd exists),
    // baseline census, the measured run, final census.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let per = n / clients as u64;
    let warm = (per / 100).clamp(10, 200);
    let run = move |id: usize, count: u64, errors: &AtomicU64, first: &FirstError| {
        let mut msg = [0u8; 32];
        let mut back = [0u8; 32];
        for i in 0..count {
            let mut p = Pattern::new(((id as u64) << 40) ^ i);
            p.fill(&mut msg);
            let res = (|| -> reseau::Result<bool> {
                let c = tcp::connect(addr)?;
                c.write(&msg)?;
                let got = c.read_full(&mut back)?;
                c.close()?;
                Ok(got == msg.len() && back == msg)
            })();
            match res {
                Ok(true) => {}
                Ok(false) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first.note(|| "echo mismatch".into());
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first.note(|| format!("client: {e}"));
                }
            }
        }
    };
    let client_threads: Vec<_> = (0..clients)
        .map(|id| {
            let (barrier, errors, first) = (barrier.clone(), errors.clone(), first.clone());
            thread::spawn(move || {
                run(id, warm, &errors, &first);
                barrier.wait(); // warm-up done
                barrier.wait(); // baseline taken
                run(id, per, &errors, &first);
                barrier.wait(); // run done
            })
        })
        .collect();

    barrier.wait();
    // The servers close their side after the clients'; let the last ones finish.
    let settle =
        |want_sockets: usize| wait_for(Duration::from_secs(5), || census().sockets == want_sockets);
    settle(1);
    let base = census();
    let rss0 = rss_mib();
    let t0 = Instant::now();
    barrier.wait();
    barrier.wait();
    let elapsed = t0.elapsed();
    let settled = settle(base.sockets);
    let end = census();
    let rss1 = rss_mib();
    ln.close().expect("close");
    for t in client_threads.into_iter().chain(servers) {
        t.join().expect("no panic");
    }
    drop(ln);
    let after = census();

    let total = per * clients as u64;
    let errs = errors.load(Ordering::Relaxed);
    // One socket may remain: the crate's process-wide dead placeholder that closed
    // values' numbers point at until they are dropped (made with the first socket).
    // Wake-ups are pooled, not per cycle: the run may park more threads at once than
    // the warm-up did (a connect, a read and an accept of 2 × clients threads), which
    // grows the pool by at most one wake (two pipe ends on the portable backend) per
    // thread; a leak per cycle would be hundreds.
    let wake_room = 2 * 2 * clients;
    let pass = errs == 0
        && settled
        && end.sockets == base.sockets
        && end.total - end.wakes() == base.total - base.wakes()
        && end.wakes() <= base.wakes() + wake_room
        && after.sockets <= 1;
    Row {
        name,
        params,
        result: format!("{total} cycles, {errs} errors{}", first.get()),
        figures: format!(
            "{:.0} cycles/s; fds {} → {} (sockets {} → {}, wake fds {} → {}; sockets after close {}); \
             RSS {:.1} → {:.1} MiB",
            total as f64 / elapsed.as_secs_f64(),
            base.total,
            end.total,
            base.sockets,
            end.sockets,
            base.wakes(),
            end.wakes(),
            after.sockets,
            rss0,
            rss1
        ),
        pass,
    }
}

// ---------------------------------------------------------------------------------------
// Row 2: bulk both ways at once

/// `bytes` each way at once through one connection; every byte compared with the PRNG
/// stream it was generated from.
pub fn bulk(bytes: u64) -> Row {
    let name = "bulk both ways at once";
    let params = format!(
        "{} MiB each way, one connection, 4 threads, 256 KiB writes",
        bytes >> 20
    );
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let client = Arc::new(tcp::connect(ln.local_addr().expect("addr")).expect("connect"));
    let server = Arc::new(ln.accept().expect("accept"));
    // Bounds the row even if something stalls (fails below ~13 MB/s each way), within
    // the script's 120 s per row.
    let limit = Instant::now() + Duration::from_secs(20 + bytes / 13_000_000);
    for c in [&client, &server] {
        c.set_deadline(Some(limit)).expect("deadline");
    }

    let writer = |c: Arc<Conn>, seed: u64| {
        thread::spawn(move || -> reseau::Result<(u64, Duration, u64)> {
            let t0 = Instant::now();
            let mut p = Pattern::new(seed);
            let mut sum = Fnv::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut sent = 0u64;
            while sent < bytes {
                let k = (bytes - sent).min(buf.len() as u64) as usize;
                p.fill(&mut buf[..k]);
                sum.update(&buf[..k]);
                let mut off = 0;
                while off < k {
                    off += c.write(&buf[off..k])?;
                }
                sent += k as u64;
            }
            c.close_write()?;
            Ok((sent, t0.elapsed(), sum.sum))
        })
    };
    // Returns (bytes, first mismatch offset, elapsed, checksum).
    let reader = |c: Arc<Conn>, seed: u64| {
        thread::spawn(
            move || -> reseau::Result<(u64, Option<u64>, Duration, u64)> {
                let t0 = Instant::now();
                let mut p = Pattern::new(seed);
                let mut sum = Fnv::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut want = vec![0u8; 256 * 1024];
                let mut got = 0u64;
                let mut bad = None;
                loop {
                    let k = c.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    p.fill(&mut want[..k]);
                    sum.update(&buf[..k]);
                    if bad.is_none() && buf[..k] != want[..k] {
                        let i = buf[..k].iter().zip(&want[..k]).position(|(a, b)| a != b);
                        bad = Some(got + i.unwrap_or(0) as u64);
                    }
                    got += k as u64;
                }
                Ok((got, bad, t0.elapsed(), sum.sum))
            },
        )
    };
    let t0 = Instant::now();
    let cw = writer(client.clone(), 1);
    let sw = writer(server.clone(), 2);
    let sr = reader(server.clone(), 1);
    let cr = reader(client.clone(), 2);
    let res = (
        cw.join().expect("no panic"),
        sr.join().expect("no panic"),
        sw.join().expect("no panic"),
        cr.join().expect("no panic"),
    );
    let wall = t0.elapsed();
    match res {
        (Ok(up_w), Ok(up_r), Ok(down_w), Ok(down_r)) => {
            let ok_up = up_r.0 == bytes && up_r.1.is_none() && up_r.3 == up_w.2;
            let ok_down = down_r.0 == bytes && down_r.1.is_none() && down_r.3 == down_w.2;
            let mib = bytes as f64 / (1024.0 * 1024.0);
            Row {
                name,
                params,
                result: format!(
                    "up {} B, down {} B, first mismatch at {:?}/{:?}, sender and receiver checksums {} (up {:016x}, down {:016x})",
                    up_r.0,
                    down_r.0,
                    up_r.1,
                    down_r.1,
                    if ok_up && ok_down { "equal" } else { "DIFFER" },
                    up_r.3,
                    down_r.3
                ),
                figures: format!(
                    "up {:.0} MiB/s, down {:.0} MiB/s, {:.0} MiB/s total over {:.1} s",
                    mib / up_r.2.as_secs_f64(),
                    mib / down_r.2.as_secs_f64(),
                    2.0 * mib / wall.as_secs_f64(),
                    wall.as_secs_f64()
                ),
                pass: ok_up && ok_down,
            }
        }
        (a, b, c, d) => Row {
            name,
            params,
            result: format!(
                "error: {:?} {:?} {:?} {:?}",
                a.err(),
                b.err(),
                c.err(),
                d.err()
            ),
            figures: String::new(),
            pass: false,
        },
    }
}

// ---------------------------------------------------------------------------------------
// Row 3: close while blocked, with descriptor reuse

/// The calling thread's id, from `/proc/thread-self`.
fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("tid")
}

/// Whether thread `tid` of this process sits in the crate's park right now: `ppoll` on
/// the Linux backend, `poll` on the portable one (`reseau::BACKEND`).
fn parked(tid: u32) -> bool {
    let want = if reseau::BACKEND == "portable" {
        libc::SYS_poll
    } else {
        libc::SYS_ppoll
    };
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
        == Some(want)
}

/// What a blocked call returned.
enum Outcome {
    Read(reseau::Result<usize>),
    /// Bytes written before the error, and the error.
    Write(u64, Error),
}

/// `rounds` rounds: one thread blocks in `read` on a connection, another in `write` (its
/// send buffer full); the main thread closes the connection, at once opens socket pairs
/// that take the freed number, and sends distinct payloads through them. Checks: both
/// blocked calls end with `Error::Closed`, every payload arrives intact and alone, the
/// peer receives only the writer's stream, and no round hangs.
pub fn closerace(rounds: u64) -> Row {
    let name = "close while blocked + fd reuse";
    let params = format!(
        "{rounds} rounds; blocked read + blocked write, close, 2 socketpairs opened at once \
         (the closed value's number must stay reserved while it exists)"
    );
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let addr = ln.local_addr().expect("addr");

    // Two long-lived threads (not one per round: each parked thread keeps a wake-up fd).
    let spawn_worker = |write: bool| {
        let (tx, rx) = mpsc::channel::<(Arc<Conn>, u64)>();
        let (rtx, rrx) = mpsc::channel::<Outcome>();
        let (tidtx, tidrx) = mpsc::channel();
        let h = thread::spawn(move || {
            tidtx.send(thread_id()).expect("tid");
            let mut buf = vec![0u8; 64 * 1024];
            for (c, round) in rx {
                let out = if write {
                    Pattern::new(round).fill(&mut buf);
                    let mut sent = 0u64;
                    // Short counts are allowed when close cuts a write; the next write
                    // must report the close.
                    loop {
                        match c.write(&buf) {
                            Ok(k) => sent += k as u64,
                            Err(e) => break Outcome::Write(sent, e),
                        }
                    }
                } else {
                    Outcome::Read(c.read(&mut buf))
                };
                drop(c);
                if rtx.send(out).is_err() {
                    return;
                }
            }
        });
        (tx, rrx, tidrx.recv().expect("tid"), h)
    };
    let (rtx, rres, rtid, rh) = spawn_worker(false);
    let (wtx, wres, wtid, wh) = spawn_worker(true);

    let (mut reused, mut hangs, mut crosstalk, mut wrong, mut not_parked) = (0, 0, 0, 0, 0);
    let mut first = None::<String>;
    let mut note = |s: String| {
        if first.is_none() {
            first = Some(s);
        }
    };
    let t0 = Instant::now();
    let mut done = 0;
    for round in 0..rounds {
        let a = Arc::new(tcp::connect(addr).expect("connect"));
        let b = ln.accept().expect("accept");
        // A small send buffer so the writer blocks sooner (the peer does not read yet).
        // Not a small receive buffer on the peer: draining it later crawls at one
        // segment per 200 ms delayed ACK.
        let _ = socket2::SockRef::from(&*a).set_send_buffer_size(4096);
        rtx.send((a.clone(), round)).expect("reader alive");
        wtx.send((a.clone(), round)).expect("writer alive");
        let spin_end = Instant::now() + Duration::from_secs(2);
        while !(parked(rtid) && parked(wtid)) && Instant::now() < spin_end {
            thread::yield_now();
        }
        if !(parked(rtid) && parked(wtid)) {
            not_parked += 1;
        }
        let num = a.as_raw_fd();
        a.close().expect("close");
        // New descriptors take the lowest free numbers; the closed value's number must not
        // be among them while the value exists (SPEC §2 I/O safety: it names a dead
        // placeholder until drop).
        let pairs = [
            UnixStream::pair().expect("pair"),
            UnixStream::pair().expect("pair"),
        ];
        if pairs
            .iter()
            .any(|(x, y)| x.as_raw_fd() == num || y.as_raw_fd() == num)
        {
            reused += 1;
        }
        let payload = |i: usize, dir: usize| format!("round {round} pair {i} dir {dir} payload");
        for (i, (x, y)) in pairs.iter().enumerate() {
            (&*x).write_all(payload(i, 0).as_bytes()).expect("write");
            (&*y).write_all(payload(i, 1).as_bytes()).expect("write");
        }
        let r = rres.recv_timeout(Duration::from_secs(5));
        let w = wres.recv_timeout(Duration::from_secs(5));
        let sent = match (r, w) {
            (Ok(Outcome::Read(Err(Error::Closed))), Ok(Outcome::Write(sent, Error::Closed))) => {
                sent
            }
            (Err(_), _) | (_, Err(_)) => {
                hangs += 1;
                note(format!(
                    "round {round}: a blocked call did not return in 5 s"
                ));
                break;
            }
            (Ok(Outcome::Read(r)), Ok(Outcome::Write(_, w))) => {
                wrong += 1;
                note(format!("round {round}: read {r:?}, write {w:?}"));
                0
            }
            _ => unreachable!("each worker sends its own outcome"),
        };
        // Every payload intact and alone (a stray read would have taken it, a stray write
        // would have added to it).
        for (i, (x, y)) in pairs.iter().enumerate() {
            for (dir, (from, to)) in [(x, y), (y, x)].into_iter().enumerate() {
                from.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let _ = to.set_read_timeout(Some(Duration::from_secs(5)));
                let mut got = Vec::new();
                let ok = (&*to).read_to_end(&mut got).is_ok();
                if !ok || got != payload(i, dir).as_bytes() {
                    crosstalk += 1;
                    note(format!(
                        "round {round} pair {i}: got {:?}",
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
        }
        // The peer gets exactly a prefix of the writer's stream, then EOF.
        b.set_read_deadline(Some(Instant::now() + Duration::from_secs(5)))
            .expect("deadline");
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        let peer_ok = loop {
            match b.read(&mut buf) {
                Ok(0) => break true,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) => {
                    note(format!("round {round}: peer read {e}"));
                    break false;
                }
            }
        };
        // The writer sent its 64 KiB buffer over and over.
        let mut unit = vec![0u8; 64 * 1024];
        Pattern::new(round).fill(&mut unit);
        let stream_ok = got
            .iter()
            .enumerate()
            .all(|(i, &x)| x == unit[i % unit.len()]);
        if !peer_ok || !stream_ok || got.len() as u64 != sent {
            crosstalk += 1;
            note(format!(
                "round {round}: peer got {} bytes (writer sent {sent}), pattern {}",
                got.len(),
                if stream_ok { "intact" } else { "differs" }
            ));
        }
        done += 1;
    }
    let elapsed = t0.elapsed();
    drop((rtx, wtx));
    if hangs == 0 {
        rh.join().expect("no panic");
        wh.join().expect("no panic");
    }
    let pass = hangs == 0
        && wrong == 0
        && crosstalk == 0
        && done == rounds
        && not_parked == 0
        && reused == 0;
    Row {
        name,
        params,
        result: format!(
            "{done} rounds: {wrong} results other than Closed, {crosstalk} cross-talk, {hangs} hangs, \
             {not_parked} not parked{}",
            first.map_or_else(String::new, |s| format!(" (first: {s})"))
        ),
        figures: format!(
            "closed number handed to a new descriptor in {reused}/{done} rounds; {:.0} rounds/s",
            done as f64 / elapsed.as_secs_f64()
        ),
        pass,
    }
}

// ---------------------------------------------------------------------------------------
// Row 4: peer RST mid-stream

/// Restores the default `SIGPIPE` action for its lifetime (Rust ignores it at startup),
/// so a write that raised it would kill the process instead of passing unnoticed.
struct SigpipeDefault(libc::sighandler_t);

impl SigpipeDefault {
    fn new() -> SigpipeDefault {
        // SAFETY: `signal` with SIG_DFL installs no handler code; it only changes the
        // disposition, which `drop` restores.
        SigpipeDefault(unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) })
    }
}

impl Drop for SigpipeDefault {
    fn drop(&mut self) {
        // SAFETY: puts back the disposition `new` found (SIG_IGN or SIG_DFL, no handler).
        unsafe { libc::signal(libc::SIGPIPE, self.0) };
    }
}

/// `rounds` rounds: both sides stream bulk both ways; after 256 KiB one side aborts
/// (`SO_LINGER` 0). The survivor's blocked reader and writer must each end with a clean
/// error (reset / broken pipe; the reader may see EOF when the writer took the reset),
/// with `SIGPIPE` at its default action.
pub fn rst(rounds: u64) -> Row {
    let name = "peer RST mid-stream";
    let params = format!(
        "{rounds} rounds; bulk both ways, peer `abort()` after 256 KiB, SIGPIPE at default"
    );
    let _sigpipe = SigpipeDefault::new();
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let addr = ln.local_addr().expect("addr");
    let mut read_reset = 0;
    let mut read_eof = 0;
    let mut write_reset = 0;
    let mut write_pipe = 0;
    let mut other = 0;
    let mut first = None::<String>;
    let t0 = Instant::now();
    for _ in 0..rounds {
        let peer = tcp::connect(addr).expect("connect");
        let survivor = ln.accept().expect("accept");
        let limit = Some(Instant::now() + Duration::from_secs(10));
        survivor.set_deadline(limit).expect("deadline");
        peer.set_deadline(limit).expect("deadline");
        let chunk = vec![0x5au8; 64 * 1024];
        let (sr, sw) = thread::scope(|s| {
            // The peer: writes until its own close stops it, reads 256 KiB then aborts.
            s.spawn(|| while peer.write(&chunk).is_ok() {});
            s.spawn(|| {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                while got < 256 * 1024 {
                    match peer.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got += k,
                    }
                }
                peer.abort().expect("abort");
            });
            let sr = s.spawn(|| {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match survivor.read(&mut buf) {
                        Ok(0) => return Ok(0),
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
            });
            let sw = s.spawn(|| {
                loop {
                    if let Err(e) = survivor.write(&chunk) {
                        return e;
                    }
                }
            });
            (sr.join().expect("no panic"), sw.join().expect("no panic"))
        });
        let mut bad = false;
        match &sr {
            Err(e) if errno(e) == Some(libc::ECONNRESET) => read_reset += 1,
            Ok(0) => read_eof += 1,
            _ => bad = true,
        }
        match errno(&sw) {
            Some(libc::ECONNRESET) => write_reset += 1,
            Some(libc::EPIPE) => write_pipe += 1,
            _ => bad = true,
        }
        // A reader EOF is only clean if the writer took the reset.
        if sr.as_ref().is_ok_and(|&n| n == 0) && errno(&sw).is_none() {
            bad = true;
        }
        if bad {
            other += 1;
            if first.is_none() {
                first = Some(format!("read {sr:?}, write {sw:?}"));
            }
        }
    }
    let elapsed = t0.elapsed();
    Row {
        name,
        params,
        result: format!(
            "survivor read: {read_reset} ECONNRESET, {read_eof} EOF (writer had the reset); \
             write: {write_reset} ECONNRESET, {write_pipe} EPIPE; {other} other{}; no SIGPIPE, no panic",
            first.map_or_else(String::new, |s| format!(" (first: {s})"))
        ),
        figures: format!("{:.0} rounds/s", rounds as f64 / elapsed.as_secs_f64()),
        pass: other == 0,
    }
}

// ---------------------------------------------------------------------------------------
// Row 5: slow clients held off by deadlines

/// `n` slow clients connect over `ramp` and send one byte a second without ever ending a
/// line; the server (`sockets::accept_loop`, a thread per connection, a read deadline of
/// `deadline` renewed per line) must drop each one at its deadline while a normal client,
/// one request per 50 ms on a new connection, is served promptly.
pub fn slow(n: usize, ramp: Duration, deadline: Duration) -> Row {
    let name = "slow clients vs read deadlines";
    let params = format!(
        "{n} clients × 1 byte/s over a {:.1} s ramp; {:.1} s read deadline per line; \
         normal client every 50 ms",
        ramp.as_secs_f64(),
        deadline.as_secs_f64()
    );
    let before = census();
    let opts = sockets::ListenOptions {
        backlog: 4096,
        ..Default::default()
    };
    let server = Arc::new(sockets::listen_with(0u16, &opts).expect("listen"));
    let (_, port) = sockets::getsockname(&*server).expect("port");
    let addr: SocketAddr = tcp::loopback_addr(port);
    let dropped_by_deadline = Arc::new(AtomicU64::new(0));
    let server_errors = Arc::new(AtomicU64::new(0));
    let live = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let handlers = Arc::new(Mutex::new(Vec::new()));
    let acceptor = {
        let (d, se, live, peak, handlers) = (
            dropped_by_deadline.clone(),
            server_errors.clone(),
            live.clone(),
            peak.clone(),
            handlers.clone(),
        );
        sockets::accept_loop(server.clone(), move |mut sock| {
            let (d, se, live, peak) = (d.clone(), se.clone(), live.clone(), peak.clone());
            let now = live.fetch_add(1, Ordering::Relaxed) + 1;
            peak.fetch_max(now, Ordering::Relaxed);
            let h = thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut line = String::new();
                    loop {
                        let _ = sock.set_read_deadline(Some(Instant::now() + deadline));
                        line.clear();
                        match sock.read_line(&mut line) {
                            Ok(0) => break,
                            Ok(_) => {
                                if sock.write_all(line.as_bytes()).is_err() {
                                    se.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::TimedOut => {
                                d.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(_) => {
                                se.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    drop(sock);
                    live.fetch_sub(1, Ordering::Relaxed);
                })
                .expect("spawn");
            handlers.lock().expect("lock").push(h);
        })
    };

    // The normal client, meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut lat = Vec::new();
            let mut errs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = (|| -> std::io::Result<bool> {
                    let c = TcpStream::connect(addr)?;
                    c.set_read_timeout(Some(Duration::from_secs(10)))?;
                    (&c).write_all(b"hello, prompt service\n")?;
                    let mut r = std::io::BufReader::new(&c);
                    let mut line = String::new();
                    r.read_line(&mut line)?;
                    Ok(line == "hello, prompt service\n")
                })();
                match ok {
                    Ok(true) => lat.push(t.elapsed()),
                    _ => errs += 1,
                }
                thread::sleep(Duration::from_millis(50));
            }
            (lat, errs)
        })
    };

    // The slow clients: one thread drives them all (non-blocking std sockets).
    struct Slow {
        s: TcpStream,
        t0: Instant,
        next: Instant,
        gone: Option<Duration>,
    }
    let mut clients: Vec<Slow> = Vec::with_capacity(n);
    let start = Instant::now();
    let mut protocol_errors = 0;
    let mut connect_errors = 0;
    let hard_end = start + ramp + deadline * 2 + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        // Ramp: connect the clients due by now.
        let due = if ramp.is_zero() {
            n
        } else {
            ((now - start).as_secs_f64() / ramp.as_secs_f64() * n as f64).ceil() as usize
        }
        .min(n);
        while clients.len() + connect_errors < due {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_nonblocking(true).expect("nonblocking");
                    let t0 = Instant::now();
                    clients.push(Slow {
                        s,
                        t0,
                        next: t0,
                        gone: None,
                    });
                }
                Err(_) => connect_errors += 1,
            }
        }
        for c in clients.iter_mut().filter(|c| c.gone.is_none()) {
            // Taken per client, before its read: a drop seen by this read happened after it.
            let now = Instant::now();
            let mut b = [0u8; 16];
            match (&c.s).read(&mut b) {
                Ok(0) => c.gone = Some(now - c.t0),
                Ok(_) => {
                    // The server never echoes a line that was never finished.
                    protocol_errors += 1;
                    c.gone = Some(now - c.t0);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if now >= c.next {
                        c.next += Duration::from_secs(1);
                        match (&c.s).write(b"x") {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => c.gone = Some(now - c.t0),
                        }
                    }
                }
                Err(_) => c.gone = Some(now - c.t0), // reset: dropped with unread bytes
            }
        }
        let all_in = clients.len() + connect_errors >= n;
        if (all_in && clients.iter().all(|c| c.gone.is_some())) || Instant::now() >= hard_end {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut lat, normal_errs) = normal.join().expect("no panic");
    let mid = census();
    server.close().expect("close");
    let loop_res = acceptor.join().expect("no panic");
    for h in handlers.lock().expect("lock").drain(..) {
        h.join().expect("no panic");
    }
    let still = clients.iter().filter(|c| c.gone.is_none()).count();
    let mut gone: Vec<Duration> = clients.iter().filter_map(|c| c.gone).collect();
    drop(clients);
    // A closed server keeps its descriptor number reserved until it is dropped.
    drop(server);
    let after = census();
    gone.sort();
    lat.sort();
    // A slow client can be dropped no sooner than the deadline after its accept (which
    // follows its connect) and, on a noisy 2-core machine, within 1.5 s after it.
    let lo = deadline.saturating_sub(Duration::from_millis(50));
    let hi = deadline + Duration::from_millis(1500);
    let early = gone.iter().filter(|&&g| g < lo).count();
    let late = gone.iter().filter(|&&g| g > hi).count();
    let slow_drops = dropped_by_deadline.load(Ordering::Relaxed);
    let lat_max = lat.last().copied().unwrap_or_default();
    let pass = still == 0
        && early == 0
        && late == 0
        && connect_errors == 0
        && protocol_errors == 0
        && slow_drops >= n as u64
        && server_errors.load(Ordering::Relaxed) == 0
        && normal_errs == 0
        && !lat.is_empty()
        && lat_max < Duration::from_millis(500)
        && loop_res.is_ok()
        && after.sockets == before.sockets
        // SPEC §2: at most 128 idle wake descriptors stay open once the threads are gone.
        && after.wakes() <= before.wakes() + 128;
    Row {
        name,
        params,
        result: format!(
            "{} of {n} dropped by the server's deadline ({still} never dropped, {early} early, \
             {late} late, {connect_errors} connect errors, {protocol_errors} protocol errors, \
             {} server errors); normal client: {} requests, {normal_errs} errors",
            gone.len(),
            server_errors.load(Ordering::Relaxed),
            lat.len()
        ),
        figures: format!(
            "drop after {} / {} / {} (min/p50/max); normal latency p50 {} p99 {} max {}; \
             peak {} server threads; {:.1} s wall; wake fds {} → {} → {}",
            ms(gone.first().copied().unwrap_or_default()),
            ms(percentile(&gone, 0.5)),
            ms(gone.last().copied().unwrap_or_default()),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat_max),
            peak.load(Ordering::Relaxed),
            wall.as_secs_f64(),
            before.wakes(),
            mid.wakes(),
            after.wakes(),
        ),
        pass,
    }
}

// ---------------------------------------------------------------------------------------
// Row 6: EMFILE storm

/// `(utime + stime)` of this process in clock ticks, re-read from an already open
/// `/proc/self/stat` (opening it would need a descriptor).
fn cpu_ticks(stat: &File) -> u64 {
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).unwrap_or(0);
    let s = String::from_utf8_lossy(&buf[..n]);
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// Lowers the soft `RLIMIT_NOFILE` to `soft`; returns the previous soft limit.
fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(r, 0, "getrlimit");
    let old = lim.rlim_cur;
    lim.rlim_cur = soft.min(lim.rlim_max);
    // SAFETY: `lim` is a valid `rlimit`; only the soft limit changes, within the hard one.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(r, 0, "setrlimit");
    old
}

/// Exhausts descriptors (soft `RLIMIT_NOFILE` lowered to 256 in this process), connects
/// `clients` clients whose sockets were made beforehand, and measures the process's CPU
/// over `window` while `sockets::accept_loop` faces `EMFILE`; then frees the descriptors
/// and checks that every queued connection is accepted and served.
///
/// Changes a process-wide limit: run it alone (the example binary does).
pub fn emfile(window: Duration, clients: usize) -> Row {
    let name = "EMFILE storm (accept_loop)";
    let params = format!(
        "RLIMIT_NOFILE 256, all descriptors taken, {clients} clients queued, {:.1} s window",
        window.as_secs_f64()
    );
    let old_limit = set_nofile(256);
    let server = Arc::new(sockets::listen(0u16).expect("listen"));
    let (_, port) = sockets::getsockname(&*server).expect("port");
    let addr = tcp::loopback_addr(port);
    let served = Arc::new(AtomicU64::new(0));
    let acceptor = {
        let served = served.clone();
        sockets::accept_loop(server.clone(), move |mut sock| {
            let mut line = String::new();
            let _ = sock.set_read_deadline(Some(Instant::now() + Duration::from_secs(5)));
            if sock.read_line(&mut line).is_ok() && sock.write_all(line.as_bytes()).is_ok() {
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the accept thread park once (its wake-up eventfd made) before the storm.
    thread::sleep(Duration::from_millis(50));
    let stat = File::open("/proc/self/stat").expect("stat");
    let socks: Vec<socket2::Socket> = (0..clients)
        .map(|_| {
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket")
        })
        .collect();
    let mut hog = Vec::new();
    let exhausted = loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => break e.raw_os_error() == Some(libc::EMFILE),
        }
    };
    // The handshakes complete in the kernel's backlog; accept(2) then fails with EMFILE.
    let streams: Vec<TcpStream> = socks
        .into_iter()
        .map(|s| {
            s.connect(&addr.into()).expect("connect");
            TcpStream::from(s)
        })
        .collect();
    for (i, s) in streams.iter().enumerate() {
        let _ = (&*s).write_all(format!("ping {i}\n").as_bytes());
    }
    let hz = 100.0; // USER_HZ on Linux.
    let c0 = cpu_ticks(&stat);
    let t0 = Instant::now();
    thread::sleep(window);
    let cpu = (cpu_ticks(&stat) - c0) as f64 / hz / t0.elapsed().as_secs_f64();
    let served_during = served.load(Ordering::Relaxed);
    let held = hog.len();
    let t1 = Instant::now();
    drop(hog);
    let all_served = wait_for(Duration::from_secs(5), || {
        served.load(Ordering::Relaxed) == clients as u64
    });
    let serve_time = t1.elapsed();
    let mut echoes = 0;
    for (i, s) in streams.iter().enumerate() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        if std::io::BufReader::new(s).read_line(&mut line).is_ok() && line == format!("ping {i}\n")
        {
            echoes += 1;
        }
    }
    server.close().expect("close");
    let loop_res = acceptor.join().expect("no panic");
    set_nofile(old_limit);
    let pass = exhausted
        && cpu < 0.5
        && served_during == 0
        && all_served
        && echoes == clients
        && serve_time < Duration::from_millis(2500)
        && loop_res.is_ok();
    Row {
        name,
        params,
        result: format!(
            "{held} descriptors held ({}); {served_during} served while exhausted; \
             {echoes}/{clients} echoed after freeing; accept_loop ended {:?}",
            if exhausted {
                "EMFILE reached"
            } else {
                "EMFILE NOT reached"
            },
            loop_res.map_err(|e| e.to_string())
        ),
        figures: format!(
            "CPU {:.1}% of a core while exhausted; all served {} after freeing (backoff ≤ 1 s)",
            cpu * 100.0,
            ms(serve_time)
        ),
        pass,
    }
}

// ---------------------------------------------------------------------------------------

/// The whole set's parameters: full (README) or short (CI).
pub struct Scale {
    /// Connect/echo/close cycles.
    pub cycles: u64,
    /// Bytes each way in the bulk row.
    pub bulk: u64,
    /// Close-while-blocked rounds.
    pub closerace: u64,
    /// RST rounds.
    pub rst: u64,
    /// Slow clients.
    pub slow: usize,
    /// Their connect ramp.
    pub ramp: Duration,
    /// The server's per-line read deadline.
    pub deadline: Duration,
    /// EMFILE measuring window.
    pub emfile: Duration,
}

/// The README figures.
pub const FULL: Scale = Scale {
    cycles: 100_000,
    bulk: 1 << 30,
    closerace: 10_000,
    rst: 1_000,
    slow: 1_000,
    ramp: Duration::from_secs(4),
    deadline: Duration::from_secs(2),
    emfile: Duration::from_secs(3),
};

/// About 1/100 of the counts, a few seconds in all.
pub const SHORT: Scale = Scale {
    cycles: 1_000,
    bulk: 16 << 20,
    closerace: 100,
    rst: 20,
    slow: 20,
    ramp: Duration::from_secs(1),
    deadline: Duration::from_secs(1),
    emfile: Duration::from_secs(1),
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let sc = if short { SHORT } else { FULL };
    let rows: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    if rows.is_empty() {
        eprintln!("usage: soak ROW... [--short]; ROW: cycles bulk closerace rst slow emfile all");
        std::process::exit(2);
    }
    let all = ["cycles", "bulk", "closerace", "rst", "slow", "emfile"];
    let rows: Vec<&str> = if rows == ["all"] { all.to_vec() } else { rows };
    let mut ok = true;
    for r in rows {
        let row = match r {
            "cycles" => cycles(sc.cycles, 4),
            "bulk" => bulk(sc.bulk),
            "closerace" => closerace(sc.closerace),
            "rst" => rst(sc.rst),
            "slow" => slow(sc.slow, sc.ramp, sc.deadline),
            "emfile" => emfile(sc.emfile, 8),
            "header" => {
                println!("{HEADER}");
                continue;
            }
            _ => {
                eprintln!("unknown row {r}");
                std::process::exit(2);
            }
        };
        ok &= row.pass;
        println!("{}", row.markdown());
        let _ = std::io::stdout().flush();
    }
    std::process::exit(if ok { 0 } else { 1 });
}
