//! A connection's state as its loop keeps it, and the write path (queue, tokens).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::TcpStream;

use super::dial::Dialing;
use super::reactor::ListenerShared;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// A client resolving or racing connect attempts.
    Connecting(Box<Dialing>),
    /// Connected, in a TLS handshake (the first one, or `start_tls`); sends refused.
    Handshaking(super::tls::Role),
    /// Connected; sends accepted.
    Open,
    /// `close()` asked for, or the peer's FIN seen: draining the queue, then FIN.
    Closing,
}

/// What the handler asked for about closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CloseReq {
    None,
    Graceful,
    Hard,
}

/// Maximum slices handed to one `writev`; more are written in further calls.
const IOV_BATCH: usize = 64;

#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) slot: u32,
    pub(crate) epoch: u32,
    pub(crate) stream: Option<TcpStream>,
    pub(crate) phase: Phase,
    pub(crate) close_req: CloseReq,
    /// A write or read failed: the connection ends hard at the next settle.
    pub(crate) fault: Option<io::Error>,
    pub(crate) read_eof: bool,
    pub(crate) fin_sent: bool,
    pub(crate) lingering: bool,
    // -- write side
    pub(crate) out: Vec<u8>,
    pub(crate) out_head: usize,
    pub(crate) accepted: u64,
    pub(crate) written: u64,
    pub(crate) tokens: VecDeque<(u64, u64)>,
    pub(crate) next_token: u64,
    pub(crate) done_token: u64,
    pub(crate) reported_token: u64,
    pub(crate) throttled: bool,
    pub(crate) reported_throttled: bool,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    // -- read side
    pub(crate) muted: bool,
    pub(crate) yield_now: bool,
    pub(crate) frame: usize,
    pub(crate) held: Vec<u8>,
    pub(crate) queued_again: bool,
    /// Unmuted: the loop must look at held bytes and the socket again.
    pub(crate) kick: bool,
    // -- timers
    pub(crate) timer: Option<(u64, Instant)>,
    pub(crate) timer_ids: u64,
    pub(crate) timer_push: bool,
    pub(crate) idle: Option<Duration>,
    pub(crate) idle_base: Instant,
    /// Deadline of the idle timeout's live timer entry; an entry popping at another
    /// time is stale (superseded by a shorter timeout).
    pub(crate) idle_entry: Option<Instant>,
    // -- registration and bookkeeping
    pub(crate) registered: Option<Interest>,
    pub(crate) listener: Option<Arc<ListenerShared>>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) now: Instant,
    // -- TLS and read size
    pub(crate) tls: Option<Box<super::tls::Session>>,
    /// Why a handshake failed (reported by `finish`).
    pub(crate) tls_err: Option<crate::Error>,
    /// Bytes of the current read not delivered yet while a `received` runs (the
    /// STARTTLS guard counts them as unread).
    pub(crate) unread: usize,
    /// Most bytes per socket read and per `received` (0: the loop buffer's size).
    pub(crate) read_size: usize,
    /// `handshake_timeout` of the handshake in progress, and its timer's sequence.
    pub(crate) hs_limit: Option<Duration>,
    pub(crate) hs_seq: u64,
    /// A handshake timer for `settle` to arm.
    pub(crate) hs_push: bool,
}

impl ConnState {
    pub(crate) fn new(slot: u32, epoch: u32, phase: Phase, now: Instant) -> ConnState {
        ConnState {
            slot,
            epoch,
            stream: None,
            phase,
            close_req: CloseReq::None,
            fault: None,
            read_eof: false,
            fin_sent: false,
            lingering: false,
            out: Vec::new(),
            out_head: 0,
            accepted: 0,
            written: 0,
            tokens: VecDeque::new(),
            next_token: 0,
            done_token: 0,
            reported_token: 0,
            throttled: false,
            reported_throttled: false,
            high_water: super::DEFAULT_HIGH_WATER,
            low_water: 0,
            muted: false,
            yield_now: false,
            frame: 0,
            held: Vec::new(),
            queued_again: false,
            kick: false,
            timer: None,
            timer_ids: 0,
            timer_push: false,
            idle: None,
            idle_base: now,
            idle_entry: None,
            registered: None,
            listener: None,
            peer: None,
            local: None,
            now,
            tls: None,
            tls_err: None,
            unread: 0,
            read_size: 0,
            hs_limit: None,
            hs_seq: 0,
            hs_push: false,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open) && self.close_req == CloseReq::None
    }

    pub(crate) fn queued(&self) -> usize {
        self.out.len() - self.out_head
    }

    /// Interest the loop should hold for this connection right now.
    pub(crate) fn wanted_interest(&self) -> Option<Interest> {
        self.stream.as_ref()?;
        let read = !self.muted && !self.read_eof;
        let write = self.queued() > 0;
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Accepts `bufs` for sending: written at once when nothing is queued (one
    /// `writev`), the unsent rest appended to the queue. Returns the bytes accepted.
    pub(crate) fn write_bufs(&mut self, bufs: &[&[u8]]) -> u64 {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.accepted += total;
        if total == 0 {
            return 0;
        }
        let mut sent: u64 = 0;
        if self.queued() == 0 && self.fault.is_none() {
            sent = self.write_direct(bufs);
            if sent > 0 {
                self.written += sent;
                self.idle_base = self.now;
            }
        }
        if sent < total {
            let mut skip = sent as usize;
            for b in bufs {
                if skip >= b.len() {
                    skip -= b.len();
                    continue;
                }
                self.out.extend_from_slice(&b[skip..]);
                skip = 0;
            }
        }
        self.update_throttle();
        total
    }

    /// One `writev` per batch of slices straight from the caller's buffers; stops at
    /// the first short write. Returns the bytes the kernel took.
    fn write_direct(&mut self, bufs: &[&[u8]]) -> u64 {
        let Some(stream) = self.stream.as_mut() else {
            return 0;
        };
        let mut done: u64 = 0;
        for batch in bufs.chunks(IOV_BATCH) {
            let mut iov = [IoSlice::new(&[]); IOV_BATCH];
            let mut n = 0;
            let mut want = 0usize;
            for b in batch.iter().filter(|b| !b.is_empty()) {
                iov[n] = IoSlice::new(b);
                n += 1;
                want += b.len();
            }
            if n == 0 {
                continue;
            }
            let res = loop {
                let r = if n == 1 {
                    stream.write(&iov[0])
                } else {
                    stream.write_vectored(&iov[..n])
                };
                match r {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            match res {
                Ok(k) => {
                    done += k as u64;
                    if k < want {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.fault = Some(e);
                    break;
                }
            }
        }
        done
    }

    /// Writes queued bytes until the queue is empty or the kernel is full.
    pub(crate) fn flush(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while self.out_head < self.out.len() {
            match stream.write(&self.out[self.out_head..]) {
                Ok(0) => break,
                Ok(k) => {
                    self.out_head += k;
                    self.written += k as u64;
                    self.idle_base = self.now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.fault = Some(e);
                    break;
                }
            }
        }
        if self.out_head == self.out.len() {
            // Keeps the capacity: a connection that queued once queues again without
            // allocating.
            self.out.clear();
            self.out_head = 0;
        } else if self.out_head > 64 * 1024 && self.out_head * 2 > self.out.len() {
            self.out.drain(..self.out_head);
            self.out_head = 0;
        }
        self.complete_tokens();
        self.update_throttle();
    }

    /// Marks the tokens whose last byte reached the kernel as done.
    pub(crate) fn complete_tokens(&mut self) {
        while let Some(&(tok, end)) = self.tokens.front() {
            if end > self.written {
                break;
            }
            self.done_token = tok;
            self.tokens.pop_front();
        }
    }

    /// Application bytes: encrypted first on a TLS connection (offsets, tokens and
    /// watermarks then count ciphertext, as lori's do).
    pub(crate) fn send_data(&mut self, bufs: &[&[u8]]) {
        let Some(tls) = self.tls.as_mut() else {
            self.write_bufs(bufs);
            return;
        };
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            if let Err(e) = tls.write(b) {
                self.fault = Some(std::io::Error::other(e));
                break;
            }
        }
        self.push_tls_out();
    }

    /// Hands what the TLS session produced (records, handshake flights, alerts) to
    /// the write path.
    pub(crate) fn push_tls_out(&mut self) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        if tls.out().is_empty() {
            return;
        }
        let wire = std::mem::take(tls.out());
        self.write_bufs(&[&wire]);
        let mut wire = wire;
        wire.clear();
        if let Some(tls) = self.tls.as_mut() {
            // Back to the session: its capacity is reused by the next record.
            *tls.out() = wire;
        }
    }

    /// A tracked send: the token completes when its last byte reaches the kernel.
    pub(crate) fn send_tracked(&mut self, bufs: &[&[u8]]) -> u64 {
        self.next_token += 1;
        let tok = self.next_token;
        self.send_data(bufs);
        if self.written >= self.accepted && self.tokens.is_empty() {
            self.done_token = tok;
        } else {
            self.tokens.push_back((tok, self.accepted));
            self.complete_tokens();
        }
        tok
    }

    pub(crate) fn update_throttle(&mut self) {
        let q = self.queued();
        if !self.throttled && q > self.high_water {
            self.throttled = true;
        } else if self.throttled && q <= self.low_water {
            self.throttled = false;
        }
    }

    pub(crate) fn shutdown_write(&mut self) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Write);
        }
        self.fin_sent = true;
    }
}
