//! One socket shared by a reader thread and a writer thread (Julia's reader task +
//! writer task): `Arc<sockets::TcpSocket>` against `Arc<tcp::Conn>`, same echo server,
//! interleaved runs.
//!
//! `cargo run --release --example shared_socket_bench -- [--secs S] [--reps R] [--size B]`
//!
//! The writer sends `size`-byte messages as fast as the echo lets it (at most 64 KiB in
//! flight); the reader reads the echoes through `Read for &TcpSocket` (the shared read
//! buffer and its lock) or `Read for &tcp::Conn`. Prints messages per second for both
//! and the ratio (medians over the repetitions).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reseau::{sockets, tcp};

/// A plain echo server on 127.0.0.1 (one thread per connection).
fn echo_server() -> std::net::SocketAddr {
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen");
    let addr = ln.local_addr().expect("address");
    thread::spawn(move || {
        while let Ok(c) = ln.accept() {
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Runs a reader and a writer over `s` for `secs`; returns messages echoed per second.
fn run<S>(s: Arc<S>, size: usize, secs: f64) -> f64
where
    S: Send + Sync + 'static,
    for<'a> &'a S: Read + Write,
{
    let window = (64 * 1024 / size).max(1) as u64;
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, sent, received, stop) = (s.clone(), sent.clone(), received.clone(), stop.clone());
        thread::spawn(move || {
            let msg = vec![7u8; size];
            while !stop.load(Ordering::Relaxed) {
                // Keep at most `window` messages in flight.
                if sent.load(Ordering::Relaxed) - received.load(Ordering::Acquire) >= window {
                    thread::yield_now();
                    continue;
                }
                if (&*s).write_all(&msg).is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Release);
            }
        })
    };
    let start = Instant::now();
    let mut buf = vec![0u8; size];
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        match (&*s).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bytes += n as u64;
                received.store(bytes / size as u64, Ordering::Release);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    // Unblock a writer waiting on a full window.
    received.store(u64::MAX / 2, Ordering::Release);
    writer.join().expect("writer");
    (bytes / size as u64) as f64 / elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut secs = 2.0;
    let mut reps = 3;
    let mut size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value after each flag");
        match a.as_str() {
            "--secs" => secs = v.parse().expect("seconds"),
            "--reps" => reps = v.parse().expect("count"),
            "--size" => size = v.parse().expect("bytes"),
            _ => panic!("usage: shared_socket_bench [--secs S] [--reps R] [--size B]"),
        }
    }
    let addr = echo_server();
    let (mut conn, mut facade) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let c = Arc::new(tcp::connect(addr).expect("connect"));
        conn.push(run(c.clone(), size, secs));
        c.close().expect("close");
        let f = Arc::new(sockets::connect(addr).expect("connect"));
        facade.push(run(f.clone(), size, secs));
        f.close().expect("close");
        thread::sleep(Duration::from_millis(50));
    }
    let (c, f) = (median(conn), median(facade));
    println!(
        "reader+writer threads, {size}-byte messages: conn={c:.0} msg/s facade={f:.0} msg/s ratio={:.3}",
        f / c
    );
}
