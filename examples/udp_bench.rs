//! UDP datagrams/s on loopback: reseau's `UdpSocket` against `std::net::UdpSocket` in
//! the same run, interleaved (A B A B …), 64-byte datagrams.
//!
//! Two loads, each with one sender thread and one receiver thread:
//! - `stream`: the sender sends as fast as it can, the receiver counts what arrives
//!   (loopback drops what the receive buffer cannot hold, so this is receive
//!   throughput);
//! - `pingpong`: one datagram in flight, echoed back (round trips/s: the cost of a
//!   blocked receive waking up).
//!
//! CPU is the process's user+system time per datagram (or round trip), so ratios can be
//! read at equal CPU. `cargo run --release --example udp_bench -- [SECS] [REPS]`.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reseau::sockets::{self, LOCALHOST, UdpSocket};

const SIZE: usize = 64;

fn cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the state field; ticks are
    // 1/100 s on Linux.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A pair of endpoints under test.
trait Udp: Send + Sync + 'static {
    fn pair() -> (Self, Self, SocketAddr, SocketAddr)
    where
        Self: Sized;
    fn send_to(&self, b: &[u8], to: SocketAddr);
    /// Receives one datagram; false on timeout.
    fn recv(&self, b: &mut [u8]) -> bool;
    fn set_timeout(&self, d: Duration);
}

impl Udp for StdUdp {
    fn pair() -> (StdUdp, StdUdp, SocketAddr, SocketAddr) {
        let a = StdUdp::bind("127.0.0.1:0").unwrap();
        let b = StdUdp::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        (a, b, aa, ba)
    }
    fn send_to(&self, b: &[u8], to: SocketAddr) {
        let _ = StdUdp::send_to(self, b, to);
    }
    fn recv(&self, b: &mut [u8]) -> bool {
        self.recv_from(b).is_ok()
    }
    fn set_timeout(&self, d: Duration) {
        self.set_read_timeout(Some(d)).unwrap();
    }
}

/// reseau, receiving with `recv_into` (no allocation).
struct Ours(UdpSocket);
/// reseau, receiving with `recv` (Julia's: a new `Vec` per datagram).
struct OursVec(UdpSocket);

fn ours_pair() -> (UdpSocket, UdpSocket, SocketAddr, SocketAddr) {
    let mut a = UdpSocket::new();
    let mut b = UdpSocket::new();
    assert!(sockets::bind(&mut a, LOCALHOST, 0).unwrap());
    assert!(sockets::bind(&mut b, LOCALHOST, 0).unwrap());
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    (a, b, aa, ba)
}

impl Udp for Ours {
    fn pair() -> (Ours, Ours, SocketAddr, SocketAddr) {
        let (a, b, aa, ba) = ours_pair();
        (Ours(a), Ours(b), aa, ba)
    }
    fn send_to(&self, b: &[u8], to: SocketAddr) {
        let _ = self.0.send_to(b, to);
    }
    fn recv(&self, b: &mut [u8]) -> bool {
        self.0.recv_into(b).is_ok()
    }
    fn set_timeout(&self, d: Duration) {
        self.0.set_read_deadline(Some(Instant::now() + d)).unwrap();
    }
}

impl Udp for OursVec {
    fn pair() -> (OursVec, OursVec, SocketAddr, SocketAddr) {
        let (a, b, aa, ba) = ours_pair();
        (OursVec(a), OursVec(b), aa, ba)
    }
    fn send_to(&self, b: &[u8], to: SocketAddr) {
        let _ = self.0.send_to(b, to);
    }
    fn recv(&self, b: &mut [u8]) -> bool {
        match self.0.recv() {
            Ok(v) => {
                b[..v.len()].copy_from_slice(&v);
                true
            }
            Err(_) => false,
        }
    }
    fn set_timeout(&self, d: Duration) {
        self.0.set_read_deadline(Some(Instant::now() + d)).unwrap();
    }
}

/// (datagrams received per second, CPU µs per datagram).
fn stream<U: Udp>(secs: f64) -> (f64, f64) {
    let (a, b, aa, _) = U::pair();
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let s2 = stop.clone();
    let sender = thread::spawn(move || {
        let msg = [7u8; SIZE];
        while !s2.load(Ordering::Relaxed) {
            b.send_to(&msg, aa);
        }
    });
    let (c0, t0) = (cpu(), Instant::now());
    let mut n = 0u64;
    let mut buf = [0u8; 2048];
    a.set_timeout(Duration::from_secs(5));
    while t0.elapsed().as_secs_f64() < secs {
        if a.recv(&mut buf) {
            n += 1;
        }
    }
    let (el, c) = (t0.elapsed().as_secs_f64(), cpu() - c0);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    (n as f64 / el, c.as_secs_f64() * 1e6 / n as f64)
}

/// (round trips per second, CPU µs per round trip).
fn pingpong<U: Udp>(secs: f64) -> (f64, f64) {
    let (a, b, aa, ba) = U::pair();
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let s2 = stop.clone();
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s2.load(Ordering::Relaxed) {
            b.set_timeout(Duration::from_millis(200));
            if b.recv(&mut buf) {
                b.send_to(&buf[..SIZE], aa);
            }
        }
    });
    let (c0, t0) = (cpu(), Instant::now());
    let mut n = 0u64;
    let msg = [9u8; SIZE];
    let mut buf = [0u8; 2048];
    while t0.elapsed().as_secs_f64() < secs {
        a.send_to(&msg, ba);
        a.set_timeout(Duration::from_millis(200));
        if a.recv(&mut buf) {
            n += 1;
        }
    }
    let (el, c) = (t0.elapsed().as_secs_f64(), cpu() - c0);
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    (n as f64 / el, c.as_secs_f64() * 1e6 / n as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    println!("udp_bench: {SIZE}-byte datagrams, {secs} s x {reps} interleaved reps (medians)");
    type Load = fn(f64) -> (f64, f64);
    let loads: [(&str, [(&str, Load); 3]); 2] = [
        (
            "stream",
            [
                ("std", stream::<StdUdp>),
                ("reseau recv_into", stream::<Ours>),
                ("reseau recv (Vec)", stream::<OursVec>),
            ],
        ),
        (
            "pingpong",
            [
                ("std", pingpong::<StdUdp>),
                ("reseau recv_into", pingpong::<Ours>),
                ("reseau recv (Vec)", pingpong::<OursVec>),
            ],
        ),
    ];
    println!("| load | impl | per second | CPU µs each | ratio vs std | CPU ratio |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, impls) in loads {
        let mut rates = vec![Vec::new(); impls.len()];
        let mut cpus = vec![Vec::new(); impls.len()];
        // UDP_ONLY=INDEX runs one implementation (for `strace -c`).
        let only: Option<usize> = std::env::var("UDP_ONLY").ok().and_then(|v| v.parse().ok());
        for _ in 0..reps {
            for (i, (_, f)) in impls.iter().enumerate() {
                if only.is_some_and(|o| o != i) {
                    rates[i].push(0.0);
                    cpus[i].push(0.0);
                    continue;
                }
                let (r, c) = f(secs);
                rates[i].push(r);
                cpus[i].push(c);
            }
        }
        let (r0, c0) = (median(rates[0].clone()), median(cpus[0].clone()));
        for (i, (label, _)) in impls.iter().enumerate() {
            let (r, c) = (median(rates[i].clone()), median(cpus[i].clone()));
            println!(
                "| {name} | {label} | {r:.0} | {c:.2} | {:.2} | {:.2} |",
                r / r0,
                c / c0
            );
        }
    }
}
