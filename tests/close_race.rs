//! Hammers for `close` racing blocked calls, and for deadlines racing I/O.
//!
//! Closing a descriptor frees its number, and the next `socket`/`accept` reuses it at
//! once. A call still blocked on the old number must fail with `Error::Closed`; if it
//! went on with the reused number it would read or write another connection's bytes.
//! Each round closes a conn while a thread uses it, opens fresh connections straight
//! away (so they take the freed number), and checks that every byte lands where it was
//! sent.
//!
//! The tests in this file take one lock so they run one at a time: the descriptor-count
//! check needs a quiet process, and the races are sharper without competing threads.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::tcp::{self, Conn, Listener};

const ROUNDS: usize = 300;
/// Far above normal: only a real hang or lost wake-up trips it.
const SAFETY: Duration = Duration::from_secs(10);
/// Fresh connections opened after each close, to take the freed descriptor number.
const FRESH: usize = 3;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + SAFETY)
}

fn listener() -> Listener {
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen on 127.0.0.1");
    ln.set_deadline(soon()).unwrap();
    ln
}

fn pair(ln: &Listener) -> (Conn, Conn) {
    let c = tcp::connect(ln.addr().unwrap()).unwrap();
    ln.set_deadline(soon()).unwrap();
    let s = ln.accept().unwrap();
    c.set_deadline(soon()).unwrap();
    s.set_deadline(soon()).unwrap();
    (c, s)
}

/// A thread whose result is awaited with a timeout, then joined, so its thread-local
/// wake eventfd has been released before anyone counts descriptors.
struct Task<T> {
    rx: Receiver<T>,
    handle: JoinHandle<()>,
}

fn task<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    Task { rx, handle }
}

impl<T> Task<T> {
    fn wait(self, what: &str) -> T {
        let r = self
            .rx
            .recv_timeout(SAFETY)
            .unwrap_or_else(|e| panic!("{what}: no result within {SAFETY:?} ({e})"));
        self.handle.join().unwrap();
        r
    }
}

/// Closes on a helper thread: `close` waits for the calls it wakes, so a lost wake-up
/// would otherwise hang the test instead of failing it.
fn close_bounded<T: Send + Sync + 'static>(x: &Arc<T>, close: fn(&T) -> reseau::Result<()>) {
    let x = x.clone();
    task(move || close(&x))
        .wait("close (a blocked call never woke)")
        .unwrap();
}

/// Varies the moment of the close: sometimes before the other thread gets to its call,
/// sometimes while it spins into it, mostly after it has parked.
fn jitter(round: usize) {
    match round % 5 {
        0 => {}
        1 => thread::yield_now(),
        2 => (0..(round % 97) * 20).for_each(|_| std::hint::spin_loop()),
        _ => thread::sleep(Duration::from_micros(200 + (round % 13) as u64 * 100)),
    }
}

/// In odd rounds the racing thread polls with a short deadline instead of parking
/// once, so close lands between its calls, in the window between taking the descriptor
/// and making the syscall, far more often.
fn polling(round: usize) -> bool {
    round % 2 == 1
}

fn poll_deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_micros(10))
}

fn marker(round: usize, conn: usize, side: char) -> Vec<u8> {
    format!("<round {round:05} conn {conn} side {side}>").into_bytes()
}

/// Fresh connections, each side already holding a unique marker sent by its peer.
struct Fresh(Vec<(Conn, Conn)>);

impl Fresh {
    fn open(ln: &Listener, round: usize) -> Fresh {
        Fresh(
            (0..FRESH)
                .map(|i| {
                    let (c, s) = pair(ln);
                    c.write(&marker(round, i, 'c')).unwrap();
                    s.write(&marker(round, i, 's')).unwrap();
                    (c, s)
                })
                .collect(),
        )
    }

    /// Reads both directions to EOF: anything a stale call read or wrote through a
    /// reused descriptor shows up as missing or extra bytes.
    fn check(self, round: usize) {
        for (i, (c, s)) in self.0.into_iter().enumerate() {
            c.close_write().unwrap();
            s.close_write().unwrap();
            for (conn, from) in [(&s, 'c'), (&c, 's')] {
                let mut got = Vec::new();
                (&*conn).read_to_end(&mut got).unwrap();
                assert!(
                    got == marker(round, i, from),
                    "round {round} conn {i}: {from} sent {:?}, peer got {:?}",
                    String::from_utf8_lossy(&marker(round, i, from)),
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }
}

/// A thread blocked reading conn A; A is closed; its number is reused at once.
fn hammer_read(ln: &Listener, rounds: usize) {
    for round in 0..rounds {
        let (a, a_peer) = pair(ln);
        a.set_deadline(None).unwrap();
        let a = Arc::new(a);
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = task({
            let a = a.clone();
            move || {
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 256];
                loop {
                    if polling(round) {
                        a.set_read_deadline(poll_deadline())?;
                    }
                    match a.read(&mut buf) {
                        Err(Error::DeadlineExceeded) if polling(round) => {}
                        r => return r.map(|n| buf[..n].to_vec()),
                    }
                }
            }
        });
        ready_rx.recv_timeout(SAFETY).unwrap();
        jitter(round);
        // Sometimes the peer goes first, so EOF is a legitimate outcome too.
        let peer_closed = round % 3 == 0;
        if peer_closed {
            a_peer.close().unwrap();
        }
        let fd = a.as_raw_fd();
        close_bounded(&a, Conn::close);
        let fresh = Fresh::open(ln, round);
        match reader.wait("reader of the closed conn") {
            Err(Error::Closed) => {}
            Ok(v) if v.is_empty() && peer_closed => {}
            other => panic!(
                "round {round}: reader of closed fd {fd} got {:?}",
                other.map(|v| String::from_utf8_lossy(&v).into_owned())
            ),
        }
        fresh.check(round);
    }
}

/// A thread writing conn A; A is closed; its number is reused at once. In even rounds
/// the peer does not read, so the writer is mostly parked on a full send buffer; in odd
/// rounds the peer drains and the writer makes many small sends.
fn hammer_write(ln: &Listener, rounds: usize) {
    for round in 0..rounds {
        let (a, a_peer) = pair(ln);
        a.set_deadline(None).unwrap();
        let a = Arc::new(a);
        // The idle peer must outlive the round: dropped with unread data it would reset A.
        let (drain, _idle_peer) = if polling(round) {
            let drain = task(move || {
                let mut got = Vec::new();
                let r = (&a_peer).read_to_end(&mut got);
                (r.map_err(|e| e.to_string()), got.iter().all(|&b| b == b'W'))
            });
            (Some(drain), None)
        } else {
            (None, Some(a_peer))
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let writer = task({
            let a = a.clone();
            let chunk = vec![b'W'; if polling(round) { 256 } else { 64 * 1024 }];
            move || {
                ready_tx.send(()).unwrap();
                // Partial progress returns Ok, so the loop ends only on an error.
                loop {
                    if let Err(e) = a.write(&chunk) {
                        return e;
                    }
                }
            }
        });
        ready_rx.recv_timeout(SAFETY).unwrap();
        jitter(round);
        close_bounded(&a, Conn::close);
        let fresh = Fresh::open(ln, round);
        let e = writer.wait("writer of the closed conn");
        assert!(
            matches!(e, Error::Closed),
            "round {round}: writer got {e:?}"
        );
        if let Some(drain) = drain {
            let (r, clean) = drain.wait("peer draining the closed conn");
            r.unwrap();
            assert!(
                clean,
                "round {round}: foreign bytes on the closed conn's peer"
            );
        }
        fresh.check(round);
    }
}

/// A thread blocked in accept on listener L; L is closed and a new listener (likely on
/// the same number) gets a connection that the stale accept must not take.
fn hammer_accept(rounds: usize) {
    for round in 0..rounds {
        let old = Arc::new(listener());
        old.set_deadline(None).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let acceptor = task({
            let old = old.clone();
            move || {
                ready_tx.send(()).unwrap();
                loop {
                    if polling(round) {
                        old.set_deadline(poll_deadline())?;
                    }
                    match old.accept() {
                        Err(Error::DeadlineExceeded) if polling(round) => {}
                        r => return r.map(|c| c.remote_addr()),
                    }
                }
            }
        });
        ready_rx.recv_timeout(SAFETY).unwrap();
        jitter(round);
        close_bounded(&old, Listener::close);
        let new = listener();
        let c = tcp::connect(new.addr().unwrap()).unwrap();
        let r = acceptor.wait("accept on the closed listener");
        assert!(
            matches!(r, Err(Error::Closed)),
            "round {round}: accept on closed listener got {r:?}"
        );
        let s = new
            .accept()
            .expect("connection stolen from the new listener");
        assert_eq!(s.remote_addr(), c.local_addr());
    }
}

#[test]
fn close_racing_a_blocked_read() {
    let _g = serial();
    hammer_read(&listener(), ROUNDS);
}

#[test]
fn close_racing_a_write() {
    let _g = serial();
    hammer_write(&listener(), ROUNDS);
}

#[test]
fn close_racing_accept() {
    let _g = serial();
    hammer_accept(ROUNDS);
}

#[derive(Debug, Default)]
struct Stats {
    bytes: u64,
    timeouts: u64,
}

/// Reads or writes until stopped, tolerating only deadline errors.
fn io_loop(conn: Arc<Conn>, write: bool, stop: Arc<AtomicBool>) -> Result<Stats, Error> {
    let mut st = Stats::default();
    let mut buf = vec![b'd'; 4096];
    loop {
        let r = if write {
            conn.write(&buf)
        } else {
            conn.read(&mut buf)
        };
        match r {
            Ok(0) if !write => return Err(Error::InvalidArgument("unexpected EOF".into())),
            Ok(n) => st.bytes += n as u64,
            Err(Error::DeadlineExceeded) => {
                st.timeouts += 1;
                // Only a deadline error ends the loop: the main thread sets a past
                // deadline after `stop`, which must reach every blocked call.
                if stop.load(Ordering::SeqCst) {
                    return Ok(st);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Go's TestReadWriteDeadlineRace: deadlines set, moved and cleared every few µs while
/// both directions of both ends read and write.
fn deadline_race(run_for: Duration) {
    let ln = listener();
    let (c, s) = pair(&ln);
    let (c, s) = (Arc::new(c), Arc::new(s));
    let stop = Arc::new(AtomicBool::new(false));
    let sets = Arc::new(AtomicU64::new(0));
    let setter = task({
        let (c, s, stop, sets) = (c.clone(), s.clone(), stop.clone(), sets.clone());
        move || {
            let mut i: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                let at = match i % 5 {
                    0 => Some(now + Duration::from_micros(i % 50)),
                    1 => None,
                    2 => Some(now + Duration::from_millis(2)),
                    3 => Some(now - Duration::from_millis(1)),
                    _ => Some(now + Duration::from_micros(500)),
                };
                let conn = if i.is_multiple_of(2) { &c } else { &s };
                match i % 3 {
                    0 => conn.set_read_deadline(at).unwrap(),
                    1 => conn.set_write_deadline(at).unwrap(),
                    _ => conn.set_deadline(at).unwrap(),
                }
                i += 1;
                if i.is_multiple_of(8) {
                    thread::sleep(Duration::from_micros(5));
                }
            }
            sets.store(i, Ordering::SeqCst);
        }
    });
    let workers: Vec<_> = [(&c, true), (&s, false), (&s, true), (&c, false)]
        .into_iter()
        .map(|(conn, write)| {
            let (conn, stop) = ((*conn).clone(), stop.clone());
            task(move || io_loop(conn, write, stop))
        })
        .collect();
    thread::sleep(run_for);
    stop.store(true, Ordering::SeqCst);
    setter.wait("deadline setter");
    c.set_deadline(Some(Instant::now())).unwrap();
    s.set_deadline(Some(Instant::now())).unwrap();
    let t = Instant::now();
    let stats: Vec<Stats> = workers
        .into_iter()
        .map(|w| w.wait("I/O loop after a past deadline").unwrap())
        .collect();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "past deadline took {:?} to stop the I/O loops",
        t.elapsed()
    );
    assert!(sets.load(Ordering::SeqCst) > 100, "setter barely ran");
    let (bytes, timeouts) = stats
        .iter()
        .fold((0, 0), |(b, t), s| (b + s.bytes, t + s.timeouts));
    assert!(bytes > 0, "no I/O got through: {stats:?}");
    assert!(timeouts > 4, "deadlines never fired: {stats:?}");
}

#[test]
fn deadlines_racing_reads_and_writes() {
    let _g = serial();
    deadline_race(Duration::from_secs(1));
}

/// Open descriptors as `(number, target)`, e.g. `(7, "socket:[123]")`.
fn fd_listing() -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name, target.display().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// Counts wake descriptors (`eventfd: true`: eventfds, or the self-pipe ends of the
/// portable backend) or everything else.
fn count(fds: &[(String, String)], eventfd: bool) -> usize {
    let wake = |t: &str| {
        t == "anon_inode:[eventfd]" || (reseau::BACKEND == "portable" && t.starts_with("pipe:"))
    };
    fds.iter().filter(|(_, t)| wake(t) == eventfd).count()
}

/// Headroom for the wake eventfds the crate keeps for reuse after their threads exit:
/// their number follows the most threads ever parked at once (at most 6 here), not the
/// number of threads spawned (hundreds), so a per-thread leak still shows.
const SPARE_WAKE_SLACK: usize = 16;

#[test]
fn hammers_leak_no_descriptors() {
    let _g = serial();
    let ln = listener();
    // Warm up so this thread's wake eventfd (made on its first park, kept while the
    // thread lives) exists before the first count.
    hammer_read(&ln, 2);
    hammer_accept(2);
    let before = fd_listing();
    hammer_read(&ln, 100);
    hammer_write(&ln, 100);
    hammer_accept(100);
    deadline_race(Duration::from_millis(200));
    let after = fd_listing();
    let show = |v: &[(String, String)]| {
        v.iter()
            .map(|(n, t)| format!("  {n} -> {t}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let msg = format!("before:\n{}\nafter:\n{}", show(&before), show(&after));
    // Sockets and everything else but eventfds: exactly as many as before (the tests
    // here are serialised, so nothing else opens descriptors meanwhile).
    assert_eq!(count(&before, false), count(&after, false), "leak: {msg}");
    assert!(
        count(&after, true) <= count(&before, true) + SPARE_WAKE_SLACK,
        "eventfd leak: {msg}"
    );
}
