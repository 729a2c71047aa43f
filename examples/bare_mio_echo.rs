//! The floor reference for the event layer's benchmarks: the smallest echo server mio
//! allows, with none of `reseau::event`'s features (no handlers, timers, TLS,
//! back-pressure or tokens). The issue that asked for the event layer measured a server
//! like this one as "what is possible here"; keeping it in the repository lets every
//! benchmark run measure that floor in the same run as the real thing:
//!
//! ```sh
//! OURS_ARGS="--event" PEER=tokio bash ../shared/tools/netbench/pair.sh . fanin1000 pp32
//! OURS_ARGS="--bare-mio" PEER=tokio bash ../shared/tools/netbench/pair.sh . fanin1000 pp32
//! ```
//! (`pair.sh` runs `examples/echo_server`, which includes this file for `--bare-mio`.)
//!
//! `bare_mio_echo [--addr HOST:PORT] [--threads N]`: prints `listening on IP:PORT`, then
//! echoes every byte on every connection until killed. One acceptor thread hands
//! connections round-robin to N loop threads (default: one per core); each loop owns
//! one 256 KiB read buffer; unsent bytes wait in a per-connection queue with WRITABLE
//! interest only while it is non-empty.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

const WAKER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    writable: bool,
}

struct Loop {
    poll: Poll,
    rx: Receiver<std::net::TcpStream>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    buf: Vec<u8>,
}

impl Loop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.adopt();
                } else {
                    self.ready(ev.token().0);
                }
            }
        }
    }

    fn adopt(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            let _ = s.set_nodelay(true);
            let mut stream = TcpStream::from_std(s);
            let id = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if self
                .poll
                .registry()
                .register(&mut stream, Token(id), Interest::READABLE)
                .is_err()
            {
                self.free.push(id);
                continue;
            }
            self.conns[id] = Some(Conn {
                stream,
                out: Vec::new(),
                writable: false,
            });
        }
    }

    fn ready(&mut self, id: usize) {
        let Some(Some(c)) = self.conns.get_mut(id) else {
            return;
        };
        let mut dead = false;
        // Flush what waited first, then read until the socket is drained (edge
        // triggered) and echo each read at once.
        if !c.out.is_empty() {
            dead |= flush(c);
        }
        while !dead {
            match c.stream.read(&mut self.buf) {
                Ok(0) => dead = true,
                Ok(n) => {
                    if c.out.is_empty() {
                        match c.stream.write(&self.buf[..n]) {
                            Ok(k) => c.out.extend_from_slice(&self.buf[k..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                c.out.extend_from_slice(&self.buf[..n])
                            }
                            Err(_) => dead = true,
                        }
                    } else {
                        c.out.extend_from_slice(&self.buf[..n]);
                    }
                    if n < self.buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => dead = true,
            }
        }
        if !dead && c.out.is_empty() == c.writable {
            let want = if c.out.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            dead = self
                .poll
                .registry()
                .reregister(&mut c.stream, Token(id), want)
                .is_err();
            c.writable = !c.out.is_empty();
        }
        if dead {
            if let Some(mut c) = self.conns[id].take() {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
            self.free.push(id);
        }
    }
}

/// Writes the queue until empty or the kernel is full; true when the connection broke.
fn flush(c: &mut Conn) -> bool {
    let mut head = 0;
    while head < c.out.len() {
        match c.stream.write(&c.out[head..]) {
            Ok(k) => head += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    c.out.drain(..head);
    false
}

/// Serves `ln` on `threads` loop threads (at least one) until the process ends;
/// announces nothing (the caller prints the address).
pub fn serve(ln: TcpListener, threads: usize) -> ! {
    let mut hands: Vec<(Sender<std::net::TcpStream>, Arc<Waker>)> = Vec::new();
    for i in 0..threads.max(1) {
        let poll = Poll::new().expect("epoll");
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
        let (tx, rx) = channel();
        let lp = Loop {
            poll,
            rx,
            conns: Vec::new(),
            free: Vec::new(),
            buf: vec![0; 256 << 10],
        };
        thread::Builder::new()
            .name(format!("mio-loop-{i}"))
            .spawn(move || lp.run())
            .expect("spawn");
        hands.push((tx, waker));
    }
    let mut next = 0;
    loop {
        let Ok((s, _)) = ln.accept() else { continue };
        if s.set_nonblocking(true).is_err() {
            continue;
        }
        let (tx, waker) = &hands[next % hands.len()];
        next += 1;
        if tx.send(s).is_ok() {
            let _ = waker.wake();
        }
    }
}

#[allow(dead_code)] // also compiled into echo_server (`--bare-mio`), which has its own main
fn main() {
    let mut addr = "127.0.0.1:0".to_string();
    let mut threads = thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            ("--threads", Some(v)) => threads = v.parse().expect("--threads N"),
            _ => {
                eprintln!("usage: bare_mio_echo [--addr HOST:PORT] [--threads N]");
                std::process::exit(2);
            }
        }
    }
    let ln = TcpListener::bind(&addr).expect("bind");
    println!("listening on {}", ln.local_addr().expect("local_addr"));
    serve(ln, threads)
}
