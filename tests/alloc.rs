//! The hot path does not allocate: reads (including ones that park), writes, vectored
//! writes, deadline setting and timeouts make zero heap allocations once a thread is warm.
//!
//! This binary installs a counting `#[global_allocator]`. It counts only allocations made
//! by a thread while that thread's `MEASURING` flag is set, so tests running in parallel
//! and the echo peers (other threads) do not disturb a measurement.
//!
//! Warm-up before each measurement is allowed to allocate: the first wait may create a
//! wake-up eventfd and size the shared pool of idle ones.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{IoSlice, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use reseau::{Error, tcp, unix};

// ---------------------------------------------------------------------------------------
// the counting allocator

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` on this thread and returns its result with the number of heap allocations
/// (alloc, alloc_zeroed, realloc) this thread made meanwhile.
fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.with(|a| a.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, ALLOCS.with(Cell::get))
}

// ---------------------------------------------------------------------------------------
// one surface over tcp::Conn and unix::Conn

trait Stream: Send + Sync + 'static {
    fn read(&self, buf: &mut [u8]) -> reseau::Result<usize>;
    fn read_full(&self, buf: &mut [u8]) -> reseau::Result<usize>;
    fn write(&self, buf: &[u8]) -> reseau::Result<usize>;
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> reseau::Result<usize>;
    fn set_read_deadline(&self, at: Option<Instant>) -> reseau::Result<()>;
    fn set_write_deadline(&self, at: Option<Instant>) -> reseau::Result<()>;
    fn close(&self) -> reseau::Result<()>;
    /// `std::io::Write::write_all` through `Write for &Conn`.
    fn io_write_all(&self, buf: &[u8]) -> std::io::Result<()>;
    /// `std::io::Read::read_exact` through `Read for &Conn`.
    fn io_read_exact(&self, buf: &mut [u8]) -> std::io::Result<()>;
}

macro_rules! impl_stream {
    ($ty:ty) => {
        impl Stream for $ty {
            fn read(&self, buf: &mut [u8]) -> reseau::Result<usize> {
                <$ty>::read(self, buf)
            }
            fn read_full(&self, buf: &mut [u8]) -> reseau::Result<usize> {
                <$ty>::read_full(self, buf)
            }
            fn write(&self, buf: &[u8]) -> reseau::Result<usize> {
                <$ty>::write(self, buf)
            }
            fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> reseau::Result<usize> {
                <$ty>::write_vectored(self, bufs)
            }
            fn set_read_deadline(&self, at: Option<Instant>) -> reseau::Result<()> {
                <$ty>::set_read_deadline(self, at)
            }
            fn set_write_deadline(&self, at: Option<Instant>) -> reseau::Result<()> {
                <$ty>::set_write_deadline(self, at)
            }
            fn close(&self) -> reseau::Result<()> {
                <$ty>::close(self)
            }
            fn io_write_all(&self, buf: &[u8]) -> std::io::Result<()> {
                Write::write_all(&mut &*self, buf)
            }
            fn io_read_exact(&self, buf: &mut [u8]) -> std::io::Result<()> {
                Read::read_exact(&mut &*self, buf)
            }
        }
    };
}

impl_stream!(tcp::Conn);
impl_stream!(unix::Conn);

fn tcp_pair() -> (tcp::Conn, tcp::Conn) {
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let c = tcp::connect(ln.local_addr().unwrap()).expect("connect");
    let s = ln.accept().expect("accept");
    (c, s)
}

/// Removes the socket path on drop.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unix_pair() -> (unix::Conn, unix::Conn) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let path = TempPath(
        std::env::temp_dir().join(format!("reseau-test-{}-{n}-alloc.sock", std::process::id())),
    );
    let _ = std::fs::remove_file(&path.0);
    let ln = unix::listen(&path.0).expect("listen");
    let c = unix::connect(&path.0).expect("connect");
    let s = ln.accept().expect("accept");
    (c, s)
}

// ---------------------------------------------------------------------------------------
// the workload

const MSG: usize = 64;
const ROUNDS: usize = 10_000;
const WARMUP: usize = 200;
/// Every this many messages the echo peer sleeps 1 ms before answering, so the measured
/// read certainly parks (it also parks on most other rounds: the peer is another thread).
const SLOW_EVERY: usize = 500;
const LIMIT: Duration = Duration::from_secs(60);

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn wait_for<T>(rx: &Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {LIMIT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// Echoes `MSG`-byte messages until EOF; returns how many it echoed.
fn echo_peer<S: Stream>(s: S) -> Receiver<reseau::Result<usize>> {
    spawn(move || {
        let mut buf = [0u8; MSG];
        let mut n = 0usize;
        loop {
            match s.read_full(&mut buf)? {
                0 => return Ok(n),
                MSG => {}
                k => return Err(Error::InvalidArgument(format!("short message: {k}"))),
            }
            n += 1;
            if n.is_multiple_of(SLOW_EVERY) {
                thread::sleep(Duration::from_millis(1));
            }
            s.write(&buf)?;
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `write` + `read` (the inherent API).
    Plain,
    /// `write_vectored` (two slices) + `read`.
    Vectored,
    /// Read and write deadlines re-armed every round (idle-timeout pattern) + `read`.
    Deadline,
    /// `std::io::Write::write_all` + `std::io::Read::read_exact` on `&Conn`.
    StdIo,
}

/// One round trip; returns false on a mismatch or error (no allocation on success).
fn round_trip<S: Stream>(c: &S, mode: Mode, i: usize) -> bool {
    let mut out = [0u8; MSG];
    out[..8].copy_from_slice(&(i as u64).to_le_bytes());
    out[8] = mode as u8;
    let mut back = [0u8; MSG];
    match mode {
        Mode::Plain | Mode::Deadline => {
            if let Mode::Deadline = mode {
                let at = Instant::now() + Duration::from_secs(30);
                if c.set_read_deadline(Some(at)).is_err() || c.set_write_deadline(Some(at)).is_err()
                {
                    return false;
                }
            }
            if c.write(&out).ok() != Some(MSG) {
                return false;
            }
        }
        Mode::Vectored => {
            let mut sent = 0;
            while sent < MSG {
                let r = if sent < 8 {
                    c.write_vectored(&[IoSlice::new(&out[sent..8]), IoSlice::new(&out[8..])])
                } else {
                    c.write_vectored(&[IoSlice::new(&out[sent..])])
                };
                match r {
                    Ok(n) if n > 0 => sent += n,
                    _ => return false,
                }
            }
        }
        Mode::StdIo => {
            if c.io_write_all(&out).is_err() || c.io_read_exact(&mut back).is_err() {
                return false;
            }
            return back == out;
        }
    }
    // Read with single `read` calls (each may park) until the whole echo is in.
    let mut got = 0;
    while got < MSG {
        match c.read(&mut back[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    back == out
}

/// Warms up, then measures `ROUNDS` round trips in `mode`; asserts zero allocations.
fn check_mode<S: Stream>(c: &S, mode: Mode, label: &str) {
    for i in 0..WARMUP {
        assert!(
            round_trip(c, mode, i),
            "{label} {mode:?}: warm-up round {i} failed"
        );
    }
    let start = Instant::now();
    let ((ok, failed_at), allocs) = count_allocs(|| {
        for i in 0..ROUNDS {
            if !round_trip(c, mode, i) {
                return (false, i);
            }
        }
        (true, ROUNDS)
    });
    let took = start.elapsed();
    assert!(ok, "{label} {mode:?}: round {failed_at} failed");
    assert_eq!(
        allocs, 0,
        "{label} {mode:?}: {allocs} heap allocations in {ROUNDS} round trips"
    );
    eprintln!("{label} {mode:?}: {ROUNDS} round trips in {took:?}, 0 allocations");
}

fn check_all_modes<S: Stream>(c: S, s: S, label: &str) {
    let peer = echo_peer(s);
    let modes = [Mode::Plain, Mode::Vectored, Mode::Deadline, Mode::StdIo];
    for mode in modes {
        check_mode(&c, mode, label);
    }
    c.close().unwrap();
    let echoed = wait_for(&peer, "echo peer").expect("echo peer");
    assert_eq!(echoed, modes.len() * (WARMUP + ROUNDS));
}

// ---------------------------------------------------------------------------------------
// tests

/// The counter itself works (so a zero below means something).
#[test]
fn counter_sees_allocations_on_this_thread_only() {
    let (v, n) = count_allocs(|| Vec::<u8>::with_capacity(16));
    assert_eq!(n, 1);
    drop(v);
    // Another thread allocating while this one measures is not counted.
    let before = std::sync::Arc::new(std::sync::Barrier::new(2));
    let after = std::sync::Arc::new(std::sync::Barrier::new(2));
    let other = {
        let (before, after) = (before.clone(), after.clone());
        thread::spawn(move || {
            before.wait();
            for i in 0..1000 {
                drop(std::hint::black_box(vec![i as u8; 32]));
            }
            after.wait();
        })
    };
    let ((), n) = count_allocs(|| {
        before.wait();
        after.wait();
    });
    other.join().unwrap();
    assert_eq!(n, 0, "another thread's allocations were counted here");
    let ((), n) = count_allocs(|| {});
    assert_eq!(n, 0);
}

#[test]
fn tcp_hot_path_does_not_allocate() {
    let (c, s) = tcp_pair();
    check_all_modes(c, s, "tcp");
}

#[test]
fn unix_hot_path_does_not_allocate() {
    let (c, s) = unix_pair();
    check_all_modes(c, s, "unix");
}

/// Timeouts on the inherent API do not allocate either: an expired deadline, and short
/// deadlines that expire while the read is parked.
#[test]
fn timeouts_do_not_allocate() {
    let (c, _s) = tcp_pair();
    // Warm-up: one parked timeout creates this thread's wake-up descriptor.
    c.set_read_deadline(Some(Instant::now() + Duration::from_millis(1)))
        .unwrap();
    assert!(matches!(
        c.read(&mut [0u8; 8]),
        Err(Error::DeadlineExceeded)
    ));
    let (bad, n) = count_allocs(|| {
        let mut buf = [0u8; 8];
        let mut bad = 0usize;
        // Expired deadline: fails before any syscall.
        if c.set_read_deadline(Some(Instant::now())).is_err() {
            bad += 1;
        }
        for _ in 0..1000 {
            if !matches!(c.read(&mut buf), Err(Error::DeadlineExceeded)) {
                bad += 1;
            }
        }
        // Deadlines that expire while parked.
        for _ in 0..200 {
            let at = Instant::now() + Duration::from_micros(50);
            if c.set_read_deadline(Some(at)).is_err() {
                bad += 1;
            }
            if !matches!(c.read(&mut buf), Err(Error::DeadlineExceeded)) {
                bad += 1;
            }
        }
        bad
    });
    assert_eq!(bad, 0, "unexpected results");
    assert_eq!(n, 0, "{n} heap allocations on the timeout path");
}

#[test]
fn udp_send_and_recv_into_do_not_allocate() {
    use reseau::sockets::{self, LOCALHOST, UdpSocket};
    let mut a = UdpSocket::new();
    let mut b = UdpSocket::new();
    assert!(sockets::bind(&mut a, LOCALHOST, 0).unwrap());
    assert!(sockets::bind(&mut b, LOCALHOST, 0).unwrap());
    let to = a.local_addr().unwrap();
    a.set_read_deadline(Some(Instant::now() + Duration::from_secs(20)))
        .unwrap();
    let b = std::sync::Arc::new(b);
    let mut buf = [0u8; 64];
    // Warm-up: the first park may create a wake descriptor.
    let b2 = b.clone();
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        b2.send_to(b"warm", to).unwrap();
    });
    assert_eq!(a.recv_into(&mut buf).unwrap(), 4);
    late.join().unwrap();
    let ((), n) = count_allocs(|| {
        for i in 0..200u32 {
            b.send_to(&i.to_le_bytes(), to).unwrap();
            assert_eq!(a.recv_into(&mut buf).unwrap(), 4);
            assert_eq!(&buf[..4], i.to_le_bytes());
        }
        // A receive that parks first.
        let b2 = b.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let sender = thread::spawn(move || {
            rx.recv().unwrap();
            thread::sleep(Duration::from_millis(20));
            b2.send_to(b"late", to).unwrap();
        });
        tx.send(()).unwrap();
        assert_eq!(a.recvfrom_into(&mut buf).unwrap().0, 4);
        // Thread spawning allocates on this thread: measured separately below.
        drop(sender);
    });
    // The spawn above allocates (thread handle, closure box); everything else is free.
    assert!(n <= 8, "{n} allocations for 200 sends and receives");
    let ((), n) = count_allocs(|| {
        for i in 0..200u32 {
            b.send_to(&i.to_le_bytes(), to).unwrap();
            assert_eq!(a.recv_into(&mut buf).unwrap(), 4);
        }
    });
    assert_eq!(n, 0, "send/recv_into allocated");
    // Julia's `recv` returns a new Vec: exactly one allocation per datagram.
    let ((), n) = count_allocs(|| {
        for i in 0..10u32 {
            b.send_to(&i.to_le_bytes(), to).unwrap();
            assert_eq!(a.recv().unwrap(), i.to_le_bytes());
        }
    });
    assert_eq!(n, 10);
}
