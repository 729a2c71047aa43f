//! The event layer's hot path does not allocate: once a connection is warm, receiving,
//! echoing (direct writes and queued writes), send tokens and the loop's polling make
//! no heap allocation.
//!
//! A counting `#[global_allocator]` counts allocations on every thread while the
//! global `MEASURING` flag is set; during a measurement the only other thread working is
//! the client below, whose `read`/`write` on a `std::net::TcpStream` with preallocated
//! buffers do not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reseau::event::{Conn, Handler, Runtime, SendToken, ServerOptions};

struct Counting;

static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    if MEASURING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
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

/// Echoes with a tracked send (token callbacks run too) split in two buffers.
struct Echo {
    tokens: u64,
}

impl Handler for Echo {
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        let (a, b) = data.split_at(data.len() / 2);
        conn.send_vectored(&[a, b]).expect("open");
    }
    fn sent(&mut self, _conn: &mut Conn<'_>, token: SendToken) {
        assert!(token.id() > self.tokens);
        self.tokens = token.id();
    }
}

fn rounds(c: &mut TcpStream, msg: &[u8], back: &mut [u8], n: usize) {
    for _ in 0..n {
        c.write_all(msg).unwrap();
        c.read_exact(back).unwrap();
    }
}

#[test]
fn echo_round_trips_do_not_allocate() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let srv = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions::default(),
            |_| Echo { tokens: 0 },
        )
        .unwrap();
    let mut c = TcpStream::connect(srv.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let small = [7u8; 64];
    let mut small_back = [0u8; 64];
    // Big bursts make the server queue part of its echo (the queue's capacity is then
    // kept for later bursts).
    let big = vec![3u8; 4 << 20];
    let mut big_back = vec![0u8; 4 << 20];
    let mut c2 = c.try_clone().unwrap();

    let burst = |c: &mut TcpStream, c2: &mut TcpStream, back: &mut [u8]| {
        std::thread::scope(|s| {
            s.spawn(|| c2.write_all(&big).unwrap());
            c.read_exact(back).unwrap();
        });
    };
    // Warm-up: first events, the token queue and the write queue reach their sizes.
    rounds(&mut c, &small, &mut small_back, 200);
    for _ in 0..3 {
        burst(&mut c, &mut c2, &mut big_back);
    }

    ALLOCS.store(0, Ordering::SeqCst);
    MEASURING.store(true, Ordering::SeqCst);
    rounds(&mut c, &small, &mut small_back, 2000);
    MEASURING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(n, 0, "{n} allocations in 2000 small round trips");

    // 1 MiB echoes: the server's write queue and back-pressure path (this thread
    // writes all of it before reading; the server queues what the socket refuses).
    let mut worst = usize::MAX;
    for _ in 0..3 {
        ALLOCS.store(0, Ordering::SeqCst);
        MEASURING.store(true, Ordering::SeqCst);
        c2.write_all(&big[..1 << 20]).unwrap();
        c.read_exact(&mut big_back[..1 << 20]).unwrap();
        MEASURING.store(false, Ordering::SeqCst);
        worst = worst.min(ALLOCS.load(Ordering::SeqCst));
    }
    assert_eq!(worst, 0, "a 1 MiB echo allocated {worst} times");
}
