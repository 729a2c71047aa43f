//! Go deadline semantics on `tcp::Conn` and `tcp::Listener` (SPEC §2, §3).
//!
//! Ports of Go's `net/timeout_test.go` cases and of the x/net `nettest` conformance
//! timeouts (catalogue: `reference/julia-sockets-go-net.md` §3.1, §3.3). Each test names
//! the Go test it ports. Only loopback is used; every wait is bounded.
//!
//! Timing policy for a noisy 2-core machine: lower bounds are exact where the semantics
//! demand them (a call must never fail before its deadline), upper bounds are generous
//! (`SLACK` after the moment the call should have returned).

use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::tcp::{self, Conn, Listener};

/// How late a call may return after the moment it should have (generous: noisy CI).
const SLACK: Duration = Duration::from_secs(1);
/// Hang guard for whole phases of a test.
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// helpers

/// A connected loopback pair: (client, server).
fn pair() -> (Conn, Conn) {
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let client = tcp::connect(ln.local_addr().expect("addr")).expect("connect");
    let server = ln.accept().expect("accept");
    (client, server)
}

/// A deadline well in the past (Go's `aLongTimeAgo` / the −5 s table entries).
fn past() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(5)).unwrap_or(now)
}

/// Runs `f` on a new thread; the result arrives on the returned channel.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Waits for a spawned result, failing the test instead of hanging.
fn wait_for<T>(rx: &Receiver<T>, limit: Duration, what: &str) -> T {
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// Asserts that a spawned call is still blocked after `d`.
fn assert_blocked<T: std::fmt::Debug>(rx: &Receiver<T>, d: Duration, what: &str) {
    match rx.recv_timeout(d) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(v) => panic!("{what}: returned {v:?} but must still be blocked after {d:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// Asserts that a spawned call has not returned yet (no waiting).
fn assert_not_returned<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str) {
    match rx.try_recv() {
        Err(TryRecvError::Empty) => {}
        Ok(v) => panic!("{what}: returned {v:?} but must still be blocked"),
        Err(TryRecvError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// Waits (bounded) until `conn` has at least `n` bytes queued for reading.
fn wait_readable(conn: &Conn, n: usize) {
    let start = Instant::now();
    while conn.bytes_available().expect("FIONREAD") < n {
        assert!(start.elapsed() < LIMIT, "{n} bytes never arrived");
        thread::sleep(Duration::from_millis(1));
    }
}

fn is_deadline<T>(r: &reseau::Result<T>) -> bool {
    matches!(r, Err(Error::DeadlineExceeded))
}

/// Asserts a timeout error returned at `at`, not before `deadline` and at most `SLACK`
/// after it.
fn assert_timed_out_at<T: std::fmt::Debug>(
    r: &reseau::Result<T>,
    at: Instant,
    deadline: Instant,
    what: &str,
) {
    assert!(is_deadline(r), "{what}: want DeadlineExceeded, got {r:?}");
    assert!(
        at >= deadline,
        "{what}: timed out {:?} before its deadline",
        deadline - at
    );
    assert!(
        at - deadline < SLACK,
        "{what}: timed out {:?} after its deadline",
        at - deadline
    );
}

/// A reader on its own thread: (result with the bytes read, when it returned).
type ReadOutcome = (reseau::Result<Vec<u8>>, Instant);

fn spawn_read(c: &Arc<Conn>) -> Receiver<ReadOutcome> {
    let c = c.clone();
    spawn(move || {
        let mut buf = [0u8; 64];
        let r = c.read(&mut buf).map(|n| buf[..n].to_vec());
        (r, Instant::now())
    })
}

/// A writer loop (64 KiB per call) on its own thread that runs until the first error:
/// (that error, when it came, total bytes accepted before it).
type WriteOutcome = (Error, Instant, usize);

fn spawn_write_loop(c: &Arc<Conn>) -> Receiver<WriteOutcome> {
    let c = c.clone();
    spawn(move || {
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut total = 0;
        loop {
            match c.write(&chunk) {
                Ok(n) => total += n,
                Err(e) => return (e, Instant::now(), total),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// past deadlines

/// Go: TestReadTimeout (timeout −5 s) and nettest PastTimeout: an expired read deadline
/// fails every read at once although data is buffered, stays expired, and `None`
/// refreshes the connection.
#[test]
fn past_read_deadline_fails_with_data_buffered_and_is_sticky() {
    let (c, s) = pair();
    s.write(b"READ TIMEOUT TEST").unwrap();
    wait_readable(&c, 17);
    c.set_read_deadline(Some(past())).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..2 {
        let t = Instant::now();
        let r = c.read(&mut buf);
        assert!(
            is_deadline(&r),
            "read #{i}: want DeadlineExceeded, got {r:?}"
        );
        assert!(t.elapsed() < SLACK, "an expired deadline must fail at once");
    }
    // Every read-side entry point honours it.
    assert!(is_deadline(&c.read_full(&mut buf)));
    assert!(is_deadline(&c.read_available()));
    assert!(is_deadline(&c.eof()));
    // A deadline of exactly "now" is already expired (Go forces d == 0 to −1).
    c.set_read_deadline(Some(Instant::now())).unwrap();
    assert!(is_deadline(&c.read(&mut buf)));
    // Nothing was consumed, and the write direction is unaffected.
    assert_eq!(c.bytes_available().unwrap(), 17);
    assert_eq!(c.write(b"w").unwrap(), 1);
    // Refresh.
    c.set_read_deadline(None).unwrap();
    assert_eq!(c.read_full(&mut buf[..17]).unwrap(), 17);
    assert_eq!(&buf[..17], b"READ TIMEOUT TEST");
    let mut one = [0u8; 1];
    s.read_full(&mut one).unwrap();
    assert_eq!(&one, b"w");
}

/// Go: TestWriteTimeout (timeout −5 s) and nettest PastTimeout: an expired write deadline
/// fails every write at once (n == 0) although the send buffer has room.
#[test]
fn past_write_deadline_fails_with_buffer_space() {
    let (c, s) = pair();
    c.set_write_deadline(Some(past())).unwrap();
    for i in 0..2 {
        let t = Instant::now();
        let r = c.write(b"WRITE TIMEOUT TEST");
        assert!(
            is_deadline(&r),
            "write #{i}: want DeadlineExceeded, got {r:?}"
        );
        assert!(t.elapsed() < SLACK);
    }
    let r = c.write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b"b")]);
    assert!(is_deadline(&r), "{r:?}");
    let e = Write::write(&mut &c, b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // n == 0: nothing reached the peer.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(s.bytes_available().unwrap(), 0);
    // The read direction is unaffected.
    s.write(b"r").unwrap();
    let mut one = [0u8; 1];
    assert_eq!(c.read(&mut one).unwrap(), 1);
    // Refresh.
    c.set_write_deadline(None).unwrap();
    assert_eq!(c.write(b"after").unwrap(), 5);
    let mut buf = [0u8; 5];
    s.read_full(&mut buf).unwrap();
    assert_eq!(&buf, b"after");
}

// ---------------------------------------------------------------------------------------
// future deadlines

/// Go: TestReadTimeout (timeout +50 ms): reads succeed until the deadline, then two
/// consecutive reads fail with the deadline error (n == 0), never before the deadline.
#[test]
fn future_read_deadline_reads_until_then_fails() {
    let msg = b"READ TIMEOUT TEST";
    let (c, s) = pair();
    s.write(msg).unwrap();
    wait_readable(&c, msg.len());
    let timeout = Duration::from_millis(50);
    let deadline = Instant::now() + timeout;
    c.set_read_deadline(Some(deadline)).unwrap();
    let mut got = Vec::new();
    let mut one = [0u8; 1];
    let r = loop {
        match c.read(&mut one) {
            Ok(1) => {
                got.push(one[0]);
                thread::sleep(timeout / 3);
            }
            other => break other,
        }
    };
    assert_timed_out_at(&r, Instant::now(), deadline, "first failing read");
    assert!(msg.starts_with(&got), "{got:?}");
    assert!(got.len() < msg.len(), "read past the deadline: {got:?}");
    let t = Instant::now();
    assert!(
        is_deadline(&c.read(&mut one)),
        "the second read must fail too"
    );
    assert!(t.elapsed() < SLACK);
}

/// Go: TestReadTimeoutFluctuation: a read with deadline now+d (nobody writes) returns a
/// timeout, never before the deadline, within a generous bound.
#[test]
fn future_read_deadline_not_before_and_not_much_after() {
    let (c, _s) = pair();
    for ms in [50u64, 10, 100] {
        let deadline = Instant::now() + Duration::from_millis(ms);
        c.set_read_deadline(Some(deadline)).unwrap();
        let r = c.read(&mut [0u8; 16]);
        assert_timed_out_at(&r, Instant::now(), deadline, "read");
    }
}

/// Go: TestWriteTimeout (timeout 10 ms) and TestWriteTimeoutFluctuation: writes against
/// a peer that never reads fill the buffers, then fail with the deadline error, not
/// before it. Partial progress comes back as `Ok(n)` and the next call reports the error.
#[test]
fn write_deadline_against_non_reading_peer() {
    let (c, _s) = pair();
    let deadline = Instant::now() + Duration::from_millis(100);
    c.set_write_deadline(Some(deadline)).unwrap();
    let chunk = vec![0x55u8; 64 * 1024];
    let mut total = 0usize;
    let start = Instant::now();
    let r = loop {
        match c.write(&chunk) {
            Ok(n) => {
                assert!(n > 0 && n <= chunk.len(), "write returned Ok({n})");
                total += n;
                if n < chunk.len() {
                    // Partial progress cut by the deadline: the next call must report it.
                    break c.write(&chunk);
                }
            }
            Err(e) => break Err(e),
        }
        assert!(start.elapsed() < LIMIT, "writes never blocked");
    };
    assert_timed_out_at(&r, Instant::now(), deadline, "write loop");
    assert!(total > 0, "the send buffer had room before the deadline");
    for _ in 0..2 {
        assert!(is_deadline(&c.write(b"x")), "stays expired (n == 0)");
    }
}

/// A write cut by its deadline after partial progress returns the exact count (SPEC §3):
/// the peer receives exactly those bytes and nothing of the failed follow-up call.
#[test]
fn partial_write_cut_by_deadline_returns_exact_count() {
    let (c, s) = pair();
    // More than loopback's send + receive buffers can hold (tcp_wmem/tcp_rmem maxima).
    let big = vec![7u8; 64 << 20];
    let deadline = Instant::now() + Duration::from_millis(100);
    c.set_write_deadline(Some(deadline)).unwrap();
    let n = c.write(&big).expect("partial progress must be Ok(n)");
    assert!(Instant::now() >= deadline, "returned before the deadline");
    assert!(n > 0 && n < big.len(), "want a partial write, got {n}");
    let r = c.write(&big);
    assert!(
        is_deadline(&r),
        "the next call must report the deadline: {r:?}"
    );
    let drained = spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(k) => {
                    assert!(buf[..k].iter().all(|&b| b == 7));
                    total += k;
                }
                Err(e) => return Err(e),
            }
        }
    });
    c.close().unwrap();
    let got = wait_for(&drained, LIMIT, "drain").expect("peer read");
    assert_eq!(got, n, "Ok(n) must be exactly what was sent");
}

// ---------------------------------------------------------------------------------------
// deadlines moved while a call is blocked

/// SPEC §2 / Go SetReadDeadline docs ("any currently-blocked Read call"): moving the
/// deadline earlier wakes the blocked read with a timeout, not before the new deadline.
#[test]
fn deadline_moved_earlier_wakes_blocked_read() {
    for to_past in [false, true] {
        let (c, _s) = pair();
        let c = Arc::new(c);
        let start = Instant::now();
        c.set_read_deadline(Some(start + Duration::from_secs(10)))
            .unwrap();
        let rx = spawn_read(&c);
        thread::sleep(Duration::from_millis(50));
        assert_not_returned(&rx, "read with a +10 s deadline");
        let new = if to_past {
            past()
        } else {
            Instant::now() + Duration::from_millis(20)
        };
        let set_at = Instant::now();
        c.set_read_deadline(Some(new)).unwrap();
        let (r, at) = wait_for(&rx, LIMIT, "blocked read");
        assert_timed_out_at(&r, at, new.max(set_at), "read after moving the deadline");
    }
}

/// Moving the deadline later while a read is blocked keeps it blocked until the new
/// deadline (Go: the runtime re-arms the timer).
#[test]
fn deadline_extended_while_blocked() {
    // Returns false if the extension came too late on a loaded machine (then retried).
    fn attempt() -> bool {
        let (c, _s) = pair();
        let c = Arc::new(c);
        let start = Instant::now();
        let first = start + Duration::from_millis(250);
        c.set_read_deadline(Some(first)).unwrap();
        let rx = spawn_read(&c);
        thread::sleep(Duration::from_millis(30));
        let later = start + Duration::from_millis(600);
        c.set_read_deadline(Some(later)).unwrap();
        if Instant::now() >= first {
            return false;
        }
        let (r, at) = wait_for(&rx, LIMIT, "blocked read");
        assert_timed_out_at(&r, at, later, "read after extending the deadline");
        true
    }
    assert!((0..3).any(|_| attempt()), "machine too loaded to test");
}

/// Clearing the deadline while a read is blocked removes the timeout: the read stays
/// blocked until data comes.
#[test]
fn deadline_cleared_while_blocked() {
    fn attempt() -> bool {
        let (c, s) = pair();
        let c = Arc::new(c);
        let start = Instant::now();
        let first = start + Duration::from_millis(150);
        c.set_read_deadline(Some(first)).unwrap();
        let rx = spawn_read(&c);
        thread::sleep(Duration::from_millis(30));
        c.set_read_deadline(None).unwrap();
        if Instant::now() >= first {
            return false;
        }
        assert_blocked(
            &rx,
            Duration::from_millis(300),
            "read with a cleared deadline",
        );
        s.write(b"z").unwrap();
        let (r, _) = wait_for(&rx, SLACK, "read after the peer wrote");
        assert_eq!(r.expect("read"), b"z");
        true
    }
    assert!((0..3).any(|_| attempt()), "machine too loaded to test");
}

/// A listener's accept deadline moved into the past wakes a blocked accept.
#[test]
fn accept_deadline_moved_earlier_wakes_blocked_accept() {
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0)).unwrap());
    ln.set_deadline(Some(Instant::now() + Duration::from_secs(10)))
        .unwrap();
    let rx = {
        let ln = ln.clone();
        spawn(move || (ln.accept().map(drop), Instant::now()))
    };
    thread::sleep(Duration::from_millis(50));
    assert_not_returned(&rx, "accept");
    let set_at = Instant::now();
    ln.set_deadline(Some(past())).unwrap();
    let (r, at) = wait_for(&rx, LIMIT, "accept");
    assert_timed_out_at(&r, at, set_at, "accept after moving the deadline");
}

// ---------------------------------------------------------------------------------------
// independence of directions; close while blocked

/// Go: TestReadTimeoutMustNotReturn: SetDeadline(past), SetWriteDeadline(past),
/// SetReadDeadline(zero) → the read blocks (≥ 100 ms); Close ends it with a non-timeout
/// error.
#[test]
fn read_timeout_must_not_return() {
    let (c, _s) = pair();
    let c = Arc::new(c);
    c.set_deadline(Some(past())).unwrap();
    c.set_write_deadline(Some(past())).unwrap();
    c.set_read_deadline(None).unwrap();
    let rx = spawn_read(&c);
    assert_blocked(
        &rx,
        Duration::from_millis(100),
        "read with no read deadline",
    );
    // The write deadline is still expired: directions are independent.
    assert!(is_deadline(&c.write(b"x")));
    let closed_at = Instant::now();
    c.close().unwrap();
    let (r, at) = wait_for(&rx, SLACK, "read after close");
    let e = r.expect_err("read after close");
    assert!(matches!(e, Error::Closed), "want Closed, got {e:?}");
    assert!(!e.is_timeout());
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotConnected);
    assert!(at - closed_at < SLACK);
}

/// Go: TestWriteTimeoutMustNotReturn: SetDeadline(past), SetReadDeadline(past),
/// SetWriteDeadline(zero) → a loop of 1024-byte writes blocks (≥ 100 ms once the buffers
/// are full); Close ends it with a non-timeout error.
#[test]
fn write_timeout_must_not_return() {
    let (c, _s) = pair();
    let c = Arc::new(c);
    c.set_deadline(Some(past())).unwrap();
    c.set_read_deadline(Some(past())).unwrap();
    c.set_write_deadline(None).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let rx = {
        let (c, written) = (c.clone(), written.clone());
        spawn(move || {
            let buf = [0x33u8; 1024];
            loop {
                match c.write(&buf) {
                    Ok(n) => written.fetch_add(n, Ordering::SeqCst),
                    Err(e) => return e,
                };
            }
        })
    };
    // Wait until the buffers are full (the count stops moving), bounded.
    let start = Instant::now();
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(20));
        let now = written.load(Ordering::SeqCst);
        if now == last && now > 0 {
            break;
        }
        last = now;
        assert!(start.elapsed() < LIMIT, "the send buffer never filled");
    }
    assert_blocked(
        &rx,
        Duration::from_millis(100),
        "write with no write deadline",
    );
    assert!(
        is_deadline(&c.read(&mut [0u8; 4])),
        "read deadline still expired"
    );
    c.close().unwrap();
    let e = wait_for(&rx, SLACK, "write after close");
    assert!(matches!(e, Error::Closed), "want Closed, got {e:?}");
    assert!(!e.is_timeout());
}

/// x/net nettest PresentTimeout: a blocked read and a blocked write loop both time out
/// promptly when another thread sets both deadlines to the past, and not before that.
#[test]
fn present_timeout_wakes_blocked_read_and_write() {
    let (c, _s) = pair();
    let c = Arc::new(c);
    let reader = spawn_read(&c);
    let writer = spawn_write_loop(&c);
    thread::sleep(Duration::from_millis(100));
    assert_not_returned(&reader, "read with no deadline");
    assert_not_returned(&writer, "write loop with no deadline");
    let set_at = Instant::now();
    c.set_deadline(Some(past())).unwrap();
    let (r, at) = wait_for(&reader, LIMIT, "reader");
    assert_timed_out_at(&r, at, set_at, "reader");
    let (e, at, total) = wait_for(&writer, LIMIT, "writer");
    assert_timed_out_at::<()>(&Err(e), at, set_at, "writer");
    assert!(total > 0);
}

/// x/net nettest FutureTimeout: deadline now+100 ms ends a blocked read and a write loop
/// with timeouts (not before); after clearing it the connection works again and every
/// byte the write loop reported as written arrives.
#[test]
fn future_timeout_then_refresh() {
    let (c, s) = pair();
    let c = Arc::new(c);
    let deadline = Instant::now() + Duration::from_millis(100);
    c.set_deadline(Some(deadline)).unwrap();
    let reader = spawn_read(&c);
    let writer = spawn_write_loop(&c);
    let (r, at) = wait_for(&reader, LIMIT, "reader");
    assert_timed_out_at(&r, at, deadline, "reader");
    let (e, at, total) = wait_for(&writer, LIMIT, "writer");
    assert_timed_out_at::<()>(&Err(e), at, deadline, "writer");
    // Refresh and resync.
    c.set_deadline(None).unwrap();
    let drain = spawn(move || {
        let mut all = Vec::new();
        let r = (&s).read_to_end(&mut all);
        (r.map(|_| all), s)
    });
    assert_eq!(c.write(b"tail").unwrap(), 4);
    c.close_write().unwrap();
    let (got, s) = wait_for(&drain, LIMIT, "drain");
    let got = got.expect("drain");
    assert_eq!(
        got.len(),
        total + 4,
        "bytes reported written must all arrive"
    );
    assert!(got.ends_with(b"tail"));
    s.write(b"pong").unwrap();
    let mut buf = [0u8; 4];
    c.read_full(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

// ---------------------------------------------------------------------------------------
// error shape

/// `set_deadline` sets both directions; the error is a timeout and maps to
/// `io::ErrorKind::TimedOut` through `Read`/`Write for &Conn`, keeping the inner error.
#[test]
fn set_deadline_sets_both_and_maps_to_timed_out() {
    let (c, _s) = pair();
    let deadline = Instant::now() + Duration::from_millis(50);
    c.set_deadline(Some(deadline)).unwrap();
    let e = Read::read(&mut &c, &mut [0u8; 8]).unwrap_err();
    assert!(Instant::now() >= deadline);
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    let inner = Error::from_io(&e).expect("inner reseau::Error");
    assert!(matches!(inner, Error::DeadlineExceeded), "{inner:?}");
    assert!(inner.is_timeout());
    assert_eq!(inner.to_string(), "i/o timeout");
    assert_eq!(e.to_string(), "i/o timeout");
    let chunk = vec![1u8; 64 * 1024];
    let start = Instant::now();
    let e = loop {
        match Write::write(&mut &c, &chunk) {
            Ok(_) => assert!(start.elapsed() < LIMIT, "writes never timed out"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(Error::from_io(&e).is_some_and(Error::is_timeout));
    // read_exact through the trait on the owned value, too.
    let mut owned = c;
    let e = owned.read_exact(&mut [0u8; 2]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}

/// Setting a deadline on a closed connection or listener fails with `Closed`.
#[test]
fn set_deadline_on_closed_socket_is_closed() {
    let (c, _s) = pair();
    c.close().unwrap();
    assert!(matches!(c.set_deadline(None), Err(Error::Closed)));
    assert!(matches!(
        c.set_read_deadline(Some(past())),
        Err(Error::Closed)
    ));
    assert!(matches!(c.set_write_deadline(None), Err(Error::Closed)));
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    ln.close().unwrap();
    assert!(matches!(ln.set_deadline(None), Err(Error::Closed)));
}

// ---------------------------------------------------------------------------------------
// accept deadlines

fn accept_result(ln: &Listener) -> reseau::Result<()> {
    ln.accept().map(drop)
}

/// Go: TestAcceptTimeout (−5 s and 10 ms): a passed accept deadline fails even with a
/// connection pending, twice; once cleared the queued connection is still there.
#[test]
fn accept_timeout() {
    // −5 s, with a pending connection.
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    let client = tcp::connect(ln.local_addr().unwrap()).unwrap();
    ln.set_deadline(Some(past())).unwrap();
    for _ in 0..2 {
        let t = Instant::now();
        let r = accept_result(&ln);
        assert!(is_deadline(&r), "{r:?}");
        assert!(t.elapsed() < SLACK);
    }
    ln.set_deadline(None).unwrap();
    let server = ln.accept().expect("the queued connection is still there");
    assert_eq!(server.remote_addr(), client.local_addr());
    // 10 ms, nothing pending.
    let deadline = Instant::now() + Duration::from_millis(10);
    ln.set_deadline(Some(deadline)).unwrap();
    for _ in 0..2 {
        let r = accept_result(&ln);
        assert_timed_out_at(&r, Instant::now(), deadline, "accept");
    }
}

/// Go: TestAcceptTimeoutMustReturn: SetDeadline(zero) then SetDeadline(now+10 ms) → the
/// accept returns a timeout.
#[test]
fn accept_timeout_must_return() {
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0)).unwrap());
    ln.set_deadline(None).unwrap();
    let deadline = Instant::now() + Duration::from_millis(10);
    ln.set_deadline(Some(deadline)).unwrap();
    let rx = {
        let ln = ln.clone();
        spawn(move || (accept_result(&ln), Instant::now()))
    };
    let (r, at) = wait_for(&rx, LIMIT, "accept");
    assert_timed_out_at(&r, at, deadline, "accept");
}

/// Go: TestAcceptTimeoutMustNotReturn: SetDeadline(past) then SetDeadline(zero) → the
/// accept blocks (≥ 100 ms); Close wakes it with `Closed`.
#[test]
fn accept_timeout_must_not_return() {
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0)).unwrap());
    ln.set_deadline(Some(past())).unwrap();
    ln.set_deadline(None).unwrap();
    let rx = {
        let ln = ln.clone();
        spawn(move || accept_result(&ln))
    };
    assert_blocked(
        &rx,
        Duration::from_millis(100),
        "accept with a cleared deadline",
    );
    ln.close().unwrap();
    let r = wait_for(&rx, SLACK, "accept after close");
    match r {
        Err(e) => {
            assert!(matches!(e, Error::Closed), "want Closed, got {e:?}");
            assert!(!e.is_timeout());
        }
        Ok(()) => panic!("accept on a closed listener succeeded"),
    }
}

// ---------------------------------------------------------------------------------------
// eof

/// `eof()` blocks under the read deadline, fails on an expired one even with data ready,
/// and peeks without consuming.
#[test]
fn eof_honours_read_deadline() {
    let (c, s) = pair();
    let deadline = Instant::now() + Duration::from_millis(50);
    c.set_read_deadline(Some(deadline)).unwrap();
    let r = c.eof();
    assert_timed_out_at(&r, Instant::now(), deadline, "eof");
    // Blocked eof, deadline moved into the past from another thread.
    let c = Arc::new(c);
    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(10)))
        .unwrap();
    let rx = {
        let c = c.clone();
        spawn(move || (c.eof(), Instant::now()))
    };
    thread::sleep(Duration::from_millis(30));
    assert_not_returned(&rx, "eof");
    let set_at = Instant::now();
    c.set_read_deadline(Some(past())).unwrap();
    let (r, at) = wait_for(&rx, LIMIT, "eof");
    assert_timed_out_at(&r, at, set_at, "blocked eof");
    // Expired with data ready.
    s.write(b"x").unwrap();
    wait_readable(&c, 1);
    assert!(is_deadline(&c.eof()));
    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(5)))
        .unwrap();
    assert!(!c.eof().unwrap());
    let mut one = [0u8; 1];
    assert_eq!(c.read(&mut one).unwrap(), 1, "eof must not consume");
    assert_eq!(&one, b"x");
    s.close().unwrap();
    let t = Instant::now();
    assert!(c.eof().unwrap());
    assert!(t.elapsed() < SLACK);
}

// ---------------------------------------------------------------------------------------
// many deadlines

/// Go: TestVariousDeadlines: for timeouts from 1 ns to 50 ms, a read loop against a peer
/// that never writes ends with a timeout error, not before the deadline.
#[test]
fn various_deadlines() {
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    let timeouts = [
        Duration::from_nanos(1),
        Duration::from_nanos(2),
        Duration::from_nanos(5),
        Duration::from_nanos(50),
        Duration::from_nanos(100),
        Duration::from_nanos(200),
        Duration::from_nanos(500),
        Duration::from_nanos(750),
        Duration::from_micros(1),
        Duration::from_micros(5),
        Duration::from_micros(25),
        Duration::from_micros(250),
        Duration::from_micros(500),
        Duration::from_millis(1),
        Duration::from_millis(5),
        Duration::from_millis(50),
    ];
    for timeout in timeouts {
        for _run in 0..3 {
            let c = tcp::connect(ln.local_addr().unwrap()).unwrap();
            let _server = ln.accept().unwrap(); // never sends
            let deadline = Instant::now() + timeout;
            c.set_deadline(Some(deadline)).unwrap();
            let r = io::copy(&mut &c, &mut io::sink());
            let at = Instant::now();
            let e = r.expect_err("copy must end with a timeout");
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{timeout:?}: {e}");
            assert!(Error::from_io(&e).is_some_and(Error::is_timeout));
            assert!(at >= deadline, "{timeout:?}: before the deadline");
            assert!(
                at - deadline < SLACK,
                "{timeout:?}: {:?} late",
                at - deadline
            );
        }
    }
}

/// Go: TestConcurrentSetDeadline (issue 35367): many threads set deadlines on several
/// connections (each with a blocked reader being woken) without deadlock.
#[test]
fn concurrent_set_deadline() {
    const CONNS: usize = 10;
    const THREADS: usize = 8;
    const TRIES: usize = 100;
    let pairs: Vec<(Conn, Conn)> = (0..CONNS).map(|_| pair()).collect();
    let (conns, _servers): (Vec<Conn>, Vec<Conn>) = pairs.into_iter().unzip();
    let conns: Vec<Arc<Conn>> = conns.into_iter().map(Arc::new).collect();
    let readers: Vec<_> = conns.iter().map(spawn_read).collect();
    let base = Instant::now();
    let start = Arc::new(Barrier::new(THREADS));
    let setters: Vec<_> = (0..THREADS)
        .map(|i| {
            let conns = conns.clone();
            let start = start.clone();
            spawn(move || {
                start.wait();
                for j in 0..TRIES {
                    for (k, c) in conns.iter().enumerate() {
                        let extra = Duration::from_secs((i * j * k) as u64);
                        c.set_read_deadline(Some(base + Duration::from_secs(7200) + extra))
                            .unwrap();
                        c.set_write_deadline(Some(base + Duration::from_secs(3600) + extra))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for s in &setters {
        wait_for(s, LIMIT, "deadline setter");
    }
    for r in &readers {
        assert_not_returned(r, "reader with hours-away deadline");
    }
    for c in &conns {
        c.close().unwrap();
    }
    for r in &readers {
        let (r, _) = wait_for(r, SLACK, "reader after close");
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    }
}

/// Go: TestReadWriteDeadlineRace: one thread keeps setting both deadlines to now+2 µs
/// while a reader and a writer run; only well-formed errors, no hang.
#[test]
fn read_write_deadline_race() {
    const N: usize = 1000;
    let (c, s) = pair();
    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (c, stop) = (c.clone(), stop.clone());
        spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let d = Instant::now() + Duration::from_micros(2);
                c.set_read_deadline(Some(d)).unwrap();
                c.set_write_deadline(Some(d)).unwrap();
                thread::sleep(Duration::from_micros(2));
            }
        })
    };
    let peer = spawn(move || {
        // Drains until EOF and sends a byte now and then.
        let mut buf = [0u8; 1024];
        let mut i = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    i += 1;
                    if i.is_multiple_of(4) {
                        let _ = s.write(b"p");
                    }
                }
            }
        }
    });
    let reader = {
        let c = c.clone();
        spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..N {
                match c.read(&mut buf) {
                    Ok(_) | Err(Error::DeadlineExceeded) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    };
    let writer = {
        let c = c.clone();
        spawn(move || {
            let buf = [9u8; 512];
            for _ in 0..N {
                match c.write(&buf) {
                    Ok(_) | Err(Error::DeadlineExceeded) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    };
    let r = wait_for(&reader, LIMIT, "reader");
    let w = wait_for(&writer, LIMIT, "writer");
    stop.store(true, Ordering::Relaxed);
    wait_for(&ticker, LIMIT, "ticker");
    c.close().unwrap();
    wait_for(&peer, LIMIT, "peer");
    r.expect("reader saw a malformed error");
    w.expect("writer saw a malformed error");
}

/// Go: TestReadWriteProlongedTimeout: the peer extends its deadlines (+1 h) before every
/// read and write while the client does 1000 round trips.
#[test]
fn read_write_prolonged_timeout() {
    let (c, s) = pair();
    let echo = spawn(move || -> reseau::Result<usize> {
        let mut one = [0u8; 1];
        let mut n = 0;
        loop {
            s.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))?;
            if s.read(&mut one)? == 0 {
                return Ok(n);
            }
            s.set_write_deadline(Some(Instant::now() + Duration::from_secs(3600)))?;
            s.write(&one)?;
            n += 1;
        }
    });
    c.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    for i in 0..1000u32 {
        let b = [(i % 251) as u8];
        c.write(&b).unwrap();
        let mut got = [0u8; 1];
        c.read_full(&mut got).unwrap();
        assert_eq!(got, b);
    }
    c.close_write().unwrap();
    let n = wait_for(&echo, LIMIT, "echo").expect("echo");
    assert_eq!(n, 1000);
}

/// A far-future deadline (now + 2^40 s) is accepted, does not overflow and does not
/// expire.
#[test]
fn far_future_deadline_does_not_expire() {
    let far = Instant::now() + Duration::from_secs(1 << 40);
    let (c, s) = pair();
    let c = Arc::new(c);
    c.set_deadline(Some(far)).unwrap();
    let rx = spawn_read(&c);
    assert_blocked(&rx, Duration::from_millis(150), "read with a far deadline");
    s.write(b"far").unwrap();
    let (r, _) = wait_for(&rx, SLACK, "read");
    assert_eq!(r.unwrap(), b"far");
    assert_eq!(c.write(b"ok").unwrap(), 2);
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0)).unwrap());
    ln.set_deadline(Some(far)).unwrap();
    let rx = {
        let ln = ln.clone();
        spawn(move || ln.accept().map(|c| c.remote_addr()))
    };
    assert_blocked(
        &rx,
        Duration::from_millis(100),
        "accept with a far deadline",
    );
    let client = tcp::connect(ln.local_addr().unwrap()).unwrap();
    let got = wait_for(&rx, SLACK, "accept").expect("accept");
    assert_eq!(got, client.local_addr());
}
