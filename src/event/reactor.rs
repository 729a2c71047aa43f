//! One event loop: a `mio::Poll`, its waker, the connections it owns, its timers and
//! its share of the listeners. Everything here runs on the loop's own thread; other
//! threads talk to it only through [`Shared::push`].

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{CloseReq, ConnState, Phase};
use super::dial::{self, Dialing, Lookup};
use super::timer::{self, Kind, Owner, Timers};
use super::tls::{self as etls, Prepared, Role, Step};
use super::{Conn, ConnectOptions, Handler, SendToken, TimerToken};
use crate::Error;
use crate::util::lock;

const WAKER: usize = usize::MAX;

const LISTENER_BIT: usize = 1 << (usize::BITS - 2);
/// Low token bits: 0 = the connection's stream, 1..=15 = a connect attempt.
const SUB_BITS: u32 = 4;
/// How long an accept that failed for want of descriptors (or memory) waits before
/// trying again; the queued connection stays in the kernel's backlog meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a graceful close may take to flush and see the peer's FIN before the
/// socket is closed anyway.
pub(crate) const LINGER: Duration = Duration::from_secs(10);

pub(crate) type Factory = dyn Fn(SocketAddr) -> Box<dyn Handler> + Send + Sync;

/// A request to a loop from any thread.
pub(crate) enum Cmd {
    Adopt {
        stream: TcpStream,
        handler: Box<dyn Handler>,
        listener: Option<Arc<ListenerShared>>,
    },
    Connect {
        dialing: Box<Dialing>,
        handler: Box<dyn Handler>,
        cell: Arc<AtomicU64>,
    },
    Resolved {
        slot: u32,
        epoch: u32,
        result: crate::Result<Vec<std::net::IpAddr>>,
    },
    Send {
        target: Target,
        data: Vec<u8>,
    },
    Close {
        target: Target,
        hard: bool,
    },
    Listen(Arc<ListenerShared>, TcpListener),
    ResumeListener(usize),
    CloseListener(usize),
    Shutdown,
}

/// Which connection a [`Handle`](super::Handle) command is for.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Slot {
        slot: u32,
        epoch: u32,
    },
    /// A client's: the loop fills the cell with slot and epoch when it takes the
    /// connect command, which it runs before any command a handle sends later.
    Client(Arc<AtomicU64>),
}

/// A client cell not filled yet.
pub(crate) const UNSET: u64 = u64::MAX;

impl Target {
    fn resolve(&self) -> Option<(u32, u32)> {
        match self {
            Target::Slot { slot, epoch } => Some((*slot, *epoch)),
            Target::Client(cell) => {
                let v = cell.load(Ordering::Acquire);
                (v != UNSET).then_some(((v >> 32) as u32, v as u32))
            }
        }
    }
}

/// The part of a loop other threads can reach.
#[derive(Debug)]
pub(crate) struct Shared {
    cmds: Mutex<Vec<Cmd>>,
    waker: Waker,
    pub(crate) index: usize,
    down: AtomicBool,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl Shared {
    /// Queues `cmd` and wakes the loop (only when the queue was empty: one wake-up
    /// per batch). `false` when the loop has stopped; the command is dropped.
    pub(crate) fn push(&self, cmd: Cmd) -> bool {
        if self.down.load(Ordering::Acquire) {
            return false;
        }
        let was_empty = {
            let mut q = lock(&self.cmds);
            let e = q.is_empty();
            q.push(cmd);
            e
        };
        if was_empty {
            let _ = self.waker.wake();
        }
        true
    }
}

/// State of the runtime every loop shares.
#[derive(Debug)]
pub(crate) struct RtShared {
    pub(crate) loops: Vec<Arc<Shared>>,
    pub(crate) rr: AtomicUsize,
    pub(crate) next_listener: AtomicUsize,
}

impl RtShared {
    pub(crate) fn next_loop(&self) -> &Arc<Shared> {
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        &self.loops[i]
    }
}

/// A listener's cross-thread state: the connection limit and its count.
pub(crate) struct ListenerShared {
    pub(crate) id: usize,
    pub(crate) limit: usize,
    pub(crate) active: AtomicUsize,
    pub(crate) paused: AtomicBool,
    pub(crate) closed: AtomicBool,
    pub(crate) home: Arc<Shared>,
    pub(crate) factory: Box<Factory>,
    pub(crate) local: SocketAddr,
    pub(crate) tls: Option<Prepared>,
}

impl std::fmt::Debug for ListenerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerShared")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("limit", &self.limit)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl ListenerShared {
    /// A connection of this listener ended: one more may be accepted.
    pub(crate) fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        if self.paused.swap(false, Ordering::AcqRel) {
            self.home.push(Cmd::ResumeListener(self.id));
        }
    }
}

struct LoopListener {
    shared: Arc<ListenerShared>,
    sock: TcpListener,
    registered: bool,
}

/// The last callback(s) a connection gets.
enum End {
    ConnectFailed(Error),
    TlsFailed(Error, bool),
    Closed,
}

pub(crate) struct Slot {
    pub(crate) handler: Box<dyn Handler>,
    pub(crate) st: ConnState,
}

#[derive(Default)]
struct SlotEntry {
    epoch: u32,
    inner: Option<Box<Slot>>,
}

/// Loop construction parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopConfig {
    pub(crate) read_buffer: usize,
    pub(crate) read_budget: usize,
    pub(crate) events: usize,
}

pub(crate) struct Loop {
    poll: Poll,
    shared: Arc<Shared>,
    rt: Option<Arc<RtShared>>,
    slots: Vec<SlotEntry>,
    free: Vec<u32>,
    buf: Vec<u8>,
    /// Plaintext out of TLS sessions (allocated at the loop's first TLS connection).
    tls_buf: Vec<u8>,
    read_budget: usize,
    events: usize,
    timers: Timers,
    listeners: HashMap<usize, LoopListener>,
    again: Vec<(u32, u32)>,
    again_spare: Vec<(u32, u32)>,
    cmd_spare: Vec<Cmd>,
    now: Instant,
}

/// Runs one handler callback with a connection context; a panic in it hard-closes
/// the connection (the loop and every other connection carry on).
fn call(
    slot: &mut Slot,
    shared: &Arc<Shared>,
    now: Instant,
    f: impl FnOnce(&mut dyn Handler, &mut Conn<'_>),
) {
    let Slot { handler, st } = slot;
    st.now = now;
    let mut c = Conn { st, shared };
    if catch_unwind(AssertUnwindSafe(|| f(&mut **handler, &mut c))).is_err() {
        c.st.close_req = CloseReq::Hard;
    }
}

/// Delivers from `data` while the handler takes it (not muted, yielding or closing):
/// all of it at once, or frames of exactly [`buffer_until`](Conn::buffer_until)'s
/// size. Returns the bytes delivered; the caller keeps the rest.
fn deliver_from(slot: &mut Slot, shared: &Arc<Shared>, now: Instant, data: &[u8]) -> usize {
    let mut off = 0;
    loop {
        let st = &slot.st;
        if st.muted || st.close_req == CloseReq::Hard || st.fault.is_some() || st.yield_now {
            return off;
        }
        let avail = data.len() - off;
        let n = match st.frame {
            0 => avail,
            f if avail >= f => f,
            _ => 0,
        };
        if n == 0 {
            return off;
        }
        slot.st.unread = avail - n;
        call(slot, shared, now, |h, c| h.received(c, &data[off..off + n]));
        slot.st.unread = 0;
        off += n;
    }
}

/// Delivers held bytes (framing remainder, or bytes kept while muted); what is left
/// is moved to the front once, not once per frame.
fn deliver_held(slot: &mut Slot, shared: &Arc<Shared>, now: Instant) {
    let mut held = std::mem::take(&mut slot.st.held);
    let used = deliver_from(slot, shared, now, &held);
    held.drain(..used);
    slot.st.held = held;
}

/// Delivers one read: straight from the read buffer when nothing is held, keeping
/// only the undelivered tail.
fn deliver(slot: &mut Slot, shared: &Arc<Shared>, now: Instant, data: &[u8]) {
    if slot.st.held.is_empty() {
        let used = deliver_from(slot, shared, now, data);
        slot.st.held.extend_from_slice(&data[used..]);
    } else {
        slot.st.held.extend_from_slice(data);
        deliver_held(slot, shared, now);
    }
}

/// Runs a connection's TLS session on the ciphertext it has: advances the handshake
/// (then `connected` or `tls_ready`), and decrypts and delivers records until it
/// needs more ciphertext or the handler mutes, yields or closes.
fn tls_drive(slot: &mut Slot, shared: &Arc<Shared>, now: Instant, pt: &mut [u8]) {
    loop {
        let st = &mut slot.st;
        let Some(tls) = st.tls.as_mut() else {
            return;
        };
        if let Phase::Handshaking(_) = st.phase {
            match tls.handshake() {
                Step::WantRead => {
                    st.push_tls_out();
                    return;
                }
                Step::Failed(e) => {
                    // The alert OpenSSL wrote goes out before the reset.
                    st.push_tls_out();
                    st.tls_err = Some(e);
                    st.close_req = CloseReq::Hard;
                    return;
                }
                Step::Ready => {
                    st.push_tls_out();
                    let was = std::mem::replace(&mut st.phase, Phase::Open);
                    st.idle_base = now;
                    st.hs_limit = None;
                    if matches!(was, Phase::Handshaking(Role::Upgrade)) {
                        call(slot, shared, now, |h, c| h.tls_ready(c));
                    } else {
                        call(slot, shared, now, |h, c| h.connected(c));
                    }
                    continue;
                }
            }
        }
        if st.muted
            || st.yield_now
            || st.close_req == CloseReq::Hard
            || st.fault.is_some()
            || st.read_eof
        {
            return;
        }
        let cap = match st.read_size {
            0 => pt.len(),
            n => n.min(pt.len()),
        };
        match tls.read(&mut pt[..cap]) {
            Ok(Some(n)) => {
                // A read can answer the peer (TLS 1.3 key update): send it.
                st.push_tls_out();
                st.idle_base = now;
                deliver(slot, shared, now, &pt[..n]);
            }
            Ok(None) => {
                let closed = tls.peer_closed;
                st.push_tls_out();
                if closed {
                    st.read_eof = true;
                    if st.close_req == CloseReq::None {
                        st.close_req = CloseReq::Graceful;
                    }
                }
                return;
            }
            Err(e) => {
                st.fault = Some(io::Error::other(e));
                return;
            }
        }
    }
}

/// The live connection in slot `idx` (a borrow of the slot table alone, so other
/// fields of the loop stay usable).
fn slot_mut(slots: &mut [SlotEntry], idx: u32) -> Option<&mut Slot> {
    slots.get_mut(idx as usize)?.inner.as_deref_mut()
}

fn token(idx: u32, sub: usize) -> Token {
    Token(((idx as usize) << SUB_BITS) | sub)
}

impl Loop {
    pub(crate) fn new(index: usize, cfg: LoopConfig) -> io::Result<(Loop, Arc<Shared>)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), Token(WAKER))?;
        let shared = Arc::new(Shared {
            cmds: Mutex::new(Vec::new()),
            waker,
            index,
            down: AtomicBool::new(false),
        });
        let lp = Loop {
            poll,
            shared: shared.clone(),
            rt: None,
            slots: Vec::new(),
            free: Vec::new(),
            buf: vec![0; cfg.read_buffer.max(1)],
            tls_buf: Vec::new(),
            read_budget: cfg.read_budget.max(1),
            events: cfg.events.max(16),
            timers: Timers::default(),
            listeners: HashMap::new(),
            again: Vec::new(),
            again_spare: Vec::new(),
            cmd_spare: Vec::new(),
            now: Instant::now(),
        };
        Ok((lp, shared))
    }

    /// The loop body; returns after a shutdown command.
    pub(crate) fn run(mut self, rt: Arc<RtShared>) {
        self.rt = Some(rt);
        let mut events = Events::with_capacity(self.events);
        loop {
            let timeout = if self.again.is_empty() {
                self.timers.timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // epoll_wait fails only on programming errors; stop rather than spin.
                break;
            }
            self.now = Instant::now();
            let mut woken = false;
            for ev in events.iter() {
                let t = ev.token().0;
                if t == WAKER {
                    woken = true;
                } else if t & LISTENER_BIT != 0 {
                    self.on_accept(t & !LISTENER_BIT);
                } else {
                    let idx = (t >> SUB_BITS) as u32;
                    let sub = t & ((1 << SUB_BITS) - 1);
                    if sub != 0 {
                        self.on_attempt(idx, sub);
                    } else {
                        let hup = ev.is_read_closed() || ev.is_error();
                        self.on_ready(idx, ev.is_readable() || hup, ev.is_writable(), hup);
                    }
                }
            }
            if woken && self.commands() {
                break;
            }
            self.fire_timers();
            self.run_again();
        }
        self.shutdown();
    }

    fn slot(&mut self, idx: u32) -> Option<&mut Slot> {
        slot_mut(&mut self.slots, idx)
    }

    /// Takes a connection out of its slot and frees the slot (a new epoch: stale
    /// handles, timers and events no longer match).
    fn take(&mut self, idx: u32) -> Option<Box<Slot>> {
        let entry = self.slots.get_mut(idx as usize)?;
        let slot = entry.inner.take()?;
        entry.epoch = entry.epoch.wrapping_add(1);
        self.free.push(idx);
        Some(slot)
    }

    fn alive(&mut self, idx: u32, epoch: u32) -> bool {
        self.slots
            .get(idx as usize)
            .is_some_and(|e| e.epoch == epoch && e.inner.is_some())
    }

    fn alloc(&mut self, phase: Phase, handler: Box<dyn Handler>) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(SlotEntry::default());
                (self.slots.len() - 1) as u32
            }
        };
        let epoch = self.slots[idx as usize].epoch;
        self.slots[idx as usize].inner = Some(Box::new(Slot {
            handler,
            st: ConnState::new(idx, epoch, phase, self.now),
        }));
        idx
    }

    // ---------------------------------------------------------------------------------
    // readiness

    fn on_ready(&mut self, idx: u32, readable: bool, writable: bool, hup: bool) {
        let Some(slot) = slot_mut(&mut self.slots, idx) else {
            return;
        };
        if slot.st.stream.is_none() {
            return;
        }
        slot.st.now = self.now;
        if writable && slot.st.queued() > 0 {
            slot.st.flush();
        }
        if readable {
            self.read(idx, hup);
        }
        self.settle(idx);
    }

    fn read(&mut self, idx: u32, hup: bool) {
        let Loop {
            slots,
            buf,
            tls_buf,
            shared,
            now,
            read_budget,
            again,
            ..
        } = self;
        let Some(slot) = slot_mut(slots, idx) else {
            return;
        };
        let now = *now;
        if !slot.st.held.is_empty() {
            deliver_held(slot, shared, now);
        }
        let tls = slot.st.tls.is_some();
        if tls {
            if tls_buf.is_empty() {
                tls_buf.resize(etls::RECORD, 0);
            }
            // Records decrypted earlier but held back (mute, yield) go first; no
            // SSL_read per readiness otherwise.
            if slot.st.tls.as_ref().is_some_and(|t| t.has_pending()) {
                tls_drive(slot, shared, now, tls_buf);
            }
        }
        let mut cap = match slot.st.read_size {
            0 => buf.len(),
            n => n.min(buf.len()),
        };
        if tls {
            // Bounds what one read leaves in the session's input.
            cap = cap.min(4 * etls::RECORD);
        }
        let mut budget = *read_budget;
        loop {
            let st = &mut slot.st;
            if st.muted
                || st.read_eof
                || st.yield_now
                || st.close_req == CloseReq::Hard
                || st.fault.is_some()
            {
                break;
            }
            let Some(stream) = st.stream.as_mut() else {
                break;
            };
            match stream.read(&mut buf[..cap]) {
                Ok(0) => {
                    st.read_eof = true;
                    if matches!(st.phase, Phase::Handshaking(_)) {
                        st.tls_err = Some(etls::eof_error());
                        st.close_req = CloseReq::Hard;
                    } else if st.close_req == CloseReq::None {
                        st.close_req = CloseReq::Graceful;
                    }
                    break;
                }
                Ok(n) => {
                    st.idle_base = now;
                    if let Some(t) = st.tls.as_mut() {
                        t.feed(&buf[..n]);
                        tls_drive(slot, shared, now, tls_buf);
                    } else {
                        deliver(slot, shared, now, &buf[..n]);
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        // A busy connection yields: the rest is read on the next turn.
                        slot.st.yield_now = true;
                        break;
                    }
                    // Edge-triggered: a short read drained the socket, and new data
                    // raises a new edge; keep going only when the peer's FIN is known
                    // to be waiting.
                    if n < cap && !hup {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    st.fault = Some(e);
                    break;
                }
            }
        }
        let st = &mut slot.st;
        if st.yield_now {
            st.yield_now = false;
            if !st.queued_again {
                st.queued_again = true;
                again.push((idx, st.epoch));
            }
        }
    }

    fn run_again(&mut self) {
        if self.again.is_empty() {
            return;
        }
        std::mem::swap(&mut self.again, &mut self.again_spare);
        let mut list = std::mem::take(&mut self.again_spare);
        for &(idx, epoch) in &list {
            if !self.alive(idx, epoch) {
                continue;
            }
            if let Some(s) = self.slot(idx) {
                s.st.queued_again = false;
            }
            self.on_ready(idx, true, false, false);
        }
        list.clear();
        self.again_spare = list;
    }

    /// After callbacks: completion and back-pressure callbacks, closing, timers and
    /// the epoll interest, until nothing more is pending.
    fn settle(&mut self, idx: u32) {
        let now = self.now;
        loop {
            let shared = &self.shared;
            let Some(slot) = slot_mut(&mut self.slots, idx) else {
                return;
            };
            if slot.st.close_req == CloseReq::Graceful
                && matches!(slot.st.phase, Phase::Handshaking(_))
            {
                // Nothing of the application's to flush yet: a close ends the handshake.
                slot.st.close_req = CloseReq::Hard;
            }
            if slot.st.fault.is_some() || slot.st.close_req == CloseReq::Hard {
                self.finish(idx, true);
                return;
            }
            let st = &mut slot.st;
            if st.reported_token < st.done_token {
                st.reported_token += 1;
                let t = SendToken(st.reported_token);
                call(slot, shared, now, |h, c| h.sent(c, t));
                continue;
            }
            st.update_throttle();
            if st.throttled != st.reported_throttled {
                st.reported_throttled = st.throttled;
                if st.throttled {
                    call(slot, shared, now, |h, c| h.throttled(c));
                } else {
                    call(slot, shared, now, |h, c| h.unthrottled(c));
                }
                continue;
            }
            break;
        }
        let Loop {
            slots,
            timers,
            poll,
            again,
            ..
        } = self;
        let Some(slot) = slot_mut(slots, idx) else {
            return;
        };
        let st = &mut slot.st;
        let (slot_no, epoch) = (st.slot, st.epoch);
        if st.kick {
            // Held bytes wait for delivery and the socket's edge may be spent: look
            // again on the next turn.
            st.kick = false;
            if !st.muted && !st.queued_again {
                st.queued_again = true;
                again.push((slot_no, epoch));
            }
        }
        if st.close_req == CloseReq::Graceful {
            if st.muted && !st.read_eof {
                // Muted data cannot be delivered any more: as lori, a hard close.
                self.finish(idx, true);
                return;
            }
            st.phase = Phase::Closing;
            if !st.lingering {
                st.lingering = true;
                let conn = Owner::Conn {
                    slot: slot_no,
                    epoch,
                    kind: Kind::Linger,
                };
                timers.push(timer::deadline(now, LINGER), conn);
            }
            if st.queued() == 0
                && let Some(tls) = st.tls.as_mut()
                && !tls.notify_sent
            {
                // close_notify before the FIN (lori #358), queued like any record; also
                // the answer to the peer's, so its reader sees a clean end.
                tls.close_notify();
                st.push_tls_out();
            }
            if st.queued() == 0 && st.read_eof {
                self.finish(idx, false);
                return;
            }
            if st.queued() == 0 && !st.fin_sent {
                st.shutdown_write();
            }
        }
        if st.hs_push {
            st.hs_push = false;
            if let Some(d) = st.hs_limit {
                st.hs_seq += 1;
                let conn = Owner::Conn {
                    slot: slot_no,
                    epoch,
                    kind: Kind::Handshake(st.hs_seq),
                };
                timers.push(timer::deadline(now, d), conn);
            }
        }
        if st.timer_push {
            st.timer_push = false;
            if let Some((id, at)) = st.timer {
                let conn = Owner::Conn {
                    slot: slot_no,
                    epoch,
                    kind: Kind::User(id),
                };
                timers.push(at, conn);
            }
        }
        if let Some(d) = st.idle
            && matches!(st.phase, Phase::Open)
        {
            // One entry rolls: I/O only moves the deadline later, and the entry, when
            // it pops early, is pushed again. A shorter timeout needs an earlier one.
            let at = timer::deadline(st.idle_base.max(now), d);
            if st.idle_entry.is_none_or(|e| at < e) {
                st.idle_entry = Some(at);
                let conn = Owner::Conn {
                    slot: slot_no,
                    epoch,
                    kind: Kind::Idle,
                };
                timers.push(at, conn);
            }
        }
        let want = st.wanted_interest();
        if want != st.registered
            && let Some(stream) = st.stream.as_mut()
        {
            let tok = token(idx, 0);
            let r = match (st.registered, want) {
                (None, Some(i)) => poll.registry().register(stream, tok, i),
                (Some(_), Some(i)) => poll.registry().reregister(stream, tok, i),
                (Some(_), None) => poll.registry().deregister(stream),
                (None, None) => Ok(()),
            };
            match r {
                Ok(()) => st.registered = want,
                Err(e) => {
                    st.fault = Some(e);
                    self.finish(idx, true);
                }
            }
        }
    }

    /// Ends a connection: deregisters and closes the socket (RST when `hard`), frees
    /// the slot, then tells the handler (`closed`, or `connect_failed` for a client
    /// that never connected). Runs once per connection: the slot is taken first.
    fn finish(&mut self, idx: u32, hard: bool) {
        let Some(mut slot) = self.take(idx) else {
            return;
        };
        let st = &mut slot.st;
        if let Some(mut s) = st.stream.take() {
            if st.registered.is_some() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            if hard {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            drop(s);
        }
        if let Some(l) = st.listener.take() {
            l.release();
        }
        let why = st.tls_err.take().or_else(|| {
            st.fault
                .take()
                .map(|source| match source.downcast::<Error>() {
                    Ok(e) => e,
                    Err(source) => Error::Sys { op: "read", source },
                })
        });
        let end = match &mut st.phase {
            Phase::Connecting(d) => {
                d.drop_attempts(self.poll.registry());
                End::ConnectFailed(Error::Closed)
            }
            Phase::Handshaking(Role::Client { addr, local }) => {
                let e = why.unwrap_or(Error::Closed);
                End::ConnectFailed(crate::resolve::wrap("dial", "tcp", *local, addr, e))
            }
            Phase::Handshaking(Role::Server) => End::TlsFailed(why.unwrap_or(Error::Closed), false),
            Phase::Handshaking(Role::Upgrade) => End::TlsFailed(why.unwrap_or(Error::Closed), true),
            _ => End::Closed,
        };
        let handler = &mut slot.handler;
        let _ = catch_unwind(AssertUnwindSafe(|| match end {
            End::ConnectFailed(e) => handler.connect_failed(e),
            End::TlsFailed(e, then_closed) => {
                handler.tls_failed(e);
                if then_closed {
                    handler.closed();
                }
            }
            End::Closed => handler.closed(),
        }));
    }

    // ---------------------------------------------------------------------------------
    // commands

    /// Runs queued commands; true on shutdown.
    fn commands(&mut self) -> bool {
        {
            let mut q = lock(&self.shared.cmds);
            std::mem::swap(&mut *q, &mut self.cmd_spare);
        }
        let mut list = std::mem::take(&mut self.cmd_spare);
        let mut stop = false;
        for cmd in list.drain(..) {
            if stop {
                continue;
            }
            match cmd {
                Cmd::Adopt {
                    stream,
                    handler,
                    listener,
                } => self.adopt(stream, handler, listener),
                Cmd::Connect {
                    dialing,
                    handler,
                    cell,
                } => self.connect(dialing, handler, cell),
                Cmd::Resolved {
                    slot,
                    epoch,
                    result,
                } => self.resolved(slot, epoch, result),
                Cmd::Send { target, data } => {
                    if let Some((slot, epoch)) = target.resolve()
                        && self.alive(slot, epoch)
                    {
                        let now = self.now;
                        let s = self.slot(slot).expect("alive");
                        if s.st.is_open() {
                            s.st.now = now;
                            s.st.send_data(&[&data]);
                            self.settle(slot);
                        }
                    }
                }
                Cmd::Close { target, hard } => {
                    if let Some((slot, epoch)) = target.resolve()
                        && self.alive(slot, epoch)
                    {
                        let s = self.slot(slot).expect("alive");
                        let req = if hard {
                            CloseReq::Hard
                        } else {
                            CloseReq::Graceful
                        };
                        if matches!(s.st.phase, Phase::Connecting(_)) {
                            // Cancels the dial: connect_failed(Closed).
                            self.finish(slot, true);
                        } else {
                            s.st.close_req = s.st.close_req.max(req);
                            self.settle(slot);
                        }
                    }
                }
                Cmd::Listen(shared, sock) => self.add_listener(shared, sock),
                Cmd::ResumeListener(id) => self.register_listener(id),
                Cmd::CloseListener(id) => {
                    if let Some(mut l) = self.listeners.remove(&id)
                        && l.registered
                    {
                        let _ = self.poll.registry().deregister(&mut l.sock);
                    }
                }
                Cmd::Shutdown => stop = true,
            }
        }
        self.cmd_spare = list;
        stop
    }

    fn shutdown(&mut self) {
        self.shared.down.store(true, Ordering::Release);
        for idx in 0..self.slots.len() as u32 {
            self.finish(idx, true);
        }
        self.listeners.clear();
        // Commands that raced the shutdown: drop them (their sockets close).
        let mut q = lock(&self.shared.cmds);
        for cmd in q.drain(..) {
            if let Cmd::Adopt {
                listener: Some(l), ..
            } = cmd
            {
                l.release();
            }
        }
    }

    fn adopt(
        &mut self,
        mut stream: TcpStream,
        handler: Box<dyn Handler>,
        listener: Option<Arc<ListenerShared>>,
    ) {
        let idx = self.alloc(Phase::Open, handler);
        let now = self.now;
        let shared = &self.shared;
        let slot = self.slots[idx as usize].inner.as_deref_mut().expect("new");
        slot.st.peer = stream.peer_addr().ok();
        slot.st.local = stream.local_addr().ok();
        slot.st.listener = listener;
        match self
            .poll
            .registry()
            .register(&mut stream, token(idx, 0), Interest::READABLE)
        {
            Ok(()) => slot.st.registered = Some(Interest::READABLE),
            Err(e) => slot.st.fault = Some(e),
        }
        slot.st.stream = Some(stream);
        let tls = slot.st.listener.as_ref().and_then(|l| l.tls.clone());
        if let Some(p) = tls {
            // `connected` waits for the handshake; the client speaks first.
            match p.session(slot.st.peer) {
                Ok(sess) => {
                    slot.st.tls = Some(Box::new(sess));
                    slot.st.phase = Phase::Handshaking(Role::Server);
                    slot.st.hs_limit = p.config.handshake_timeout;
                    slot.st.hs_push = true;
                }
                Err(e) => {
                    slot.st.phase = Phase::Handshaking(Role::Server);
                    slot.st.tls_err = Some(e);
                    slot.st.close_req = CloseReq::Hard;
                }
            }
        } else if slot.st.fault.is_none() {
            call(slot, shared, now, |h, c| h.connected(c));
        }
        self.settle(idx);
    }

    // ---------------------------------------------------------------------------------
    // listeners

    fn add_listener(&mut self, shared: Arc<ListenerShared>, sock: TcpListener) {
        let id = shared.id;
        self.listeners.insert(
            id,
            LoopListener {
                shared,
                sock,
                registered: false,
            },
        );
        self.register_listener(id);
    }

    fn register_listener(&mut self, id: usize) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        if l.registered || l.shared.closed.load(Ordering::Acquire) {
            return;
        }
        if self
            .poll
            .registry()
            .register(&mut l.sock, Token(LISTENER_BIT | id), Interest::READABLE)
            .is_ok()
        {
            l.registered = true;
        }
        // Edge-triggered: connections queued while unregistered raise no new edge.
        self.on_accept(id);
    }

    fn pause_listener(&mut self, id: usize) {
        if let Some(l) = self.listeners.get_mut(&id)
            && l.registered
        {
            let _ = self.poll.registry().deregister(&mut l.sock);
            l.registered = false;
        }
    }

    fn on_accept(&mut self, id: usize) {
        let rt = self.rt.clone().expect("running");
        loop {
            let Some(l) = self.listeners.get_mut(&id) else {
                return;
            };
            if !l.registered {
                return;
            }
            let ls = l.shared.clone();
            if ls.active.load(Ordering::Acquire) >= ls.limit {
                self.pause_listener(id);
                ls.paused.store(true, Ordering::Release);
                // A connection may have closed between the check and the flag.
                if ls.active.load(Ordering::Acquire) < ls.limit
                    && ls.paused.swap(false, Ordering::AcqRel)
                {
                    self.register_listener(id);
                }
                return;
            }
            match l.sock.accept() {
                Ok((stream, peer)) => {
                    ls.active.fetch_add(1, Ordering::AcqRel);
                    let _ = stream.set_nodelay(true);
                    let handler = match catch_unwind(AssertUnwindSafe(|| (ls.factory)(peer))) {
                        Ok(h) => h,
                        Err(_) => {
                            ls.release();
                            continue;
                        }
                    };
                    let target = rt.next_loop();
                    if target.index == self.shared.index {
                        self.adopt(stream, handler, Some(ls));
                    } else if !target.push(Cmd::Adopt {
                        stream,
                        handler,
                        listener: Some(ls.clone()),
                    }) {
                        ls.release();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM, …: stop accepting for a while;
                    // the connection stays queued in the kernel until then.
                    self.pause_listener(id);
                    self.timers
                        .push(self.now + ACCEPT_BACKOFF, Owner::Listener(id));
                    return;
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // clients

    fn connect(
        &mut self,
        mut dialing: Box<Dialing>,
        handler: Box<dyn Handler>,
        cell: Arc<AtomicU64>,
    ) {
        let timeout = dialing.opts.connection_timeout;
        let literal = dialing.literal.take();
        let idx = self.alloc(Phase::Connecting(dialing), handler);
        let epoch = self.slots[idx as usize].epoch;
        cell.store(((idx as u64) << 32) | epoch as u64, Ordering::Release);
        // A timeout too long to represent is no timeout (as `Dialer`).
        let deadline = timeout.and_then(|t| self.now.checked_add(t));
        if let Some(at) = deadline {
            let conn = Owner::Conn {
                slot: idx,
                epoch,
                kind: Kind::ConnectTimeout,
            };
            self.timers.push(at, conn);
        }
        match literal {
            Some(Ok((ip, scope))) => {
                if let Some(d) = self.dialing(idx) {
                    d.set_literal(ip, scope);
                }
                self.dial_next(idx);
            }
            Some(Err(e)) => self.resolved(idx, epoch, Err(e)),
            None => {
                let Some(Phase::Connecting(d)) = self.slot(idx).map(|s| &s.st.phase) else {
                    return;
                };
                let task = Lookup {
                    resolver: d.opts.resolver.clone(),
                    host: d.host.clone(),
                    due: deadline,
                    shared: self.shared.clone(),
                    slot: idx,
                    epoch,
                };
                crate::resolve::pool::spawn(Box::new(task));
            }
        }
    }

    fn dialing(&mut self, idx: u32) -> Option<&mut Dialing> {
        match &mut self.slot(idx)?.st.phase {
            Phase::Connecting(d) => Some(d),
            _ => None,
        }
    }

    fn resolved(&mut self, idx: u32, epoch: u32, result: crate::Result<Vec<std::net::IpAddr>>) {
        if !self.alive(idx, epoch) {
            return;
        }
        let Some(d) = self.dialing(idx) else {
            return;
        };
        if d.resolved {
            return;
        }
        let r = result.and_then(|ips| d.set_addrs(ips));
        match r {
            Ok(()) => self.dial_next(idx),
            Err(e) => {
                let timeout = e.is_timeout();
                if !timeout {
                    d.setup = Some(e);
                }
                self.fail_dial(idx, timeout);
            }
        }
    }

    /// Starts the next attempt(s); fails the dial when nothing is left to try.
    fn dial_next(&mut self, idx: u32) {
        let now = self.now;
        let epoch = self.slots[idx as usize].epoch;
        let Loop {
            slots,
            poll,
            timers,
            ..
        } = self;
        let Some(Phase::Connecting(d)) = slot_mut(slots, idx).map(|s| &mut s.st.phase) else {
            return;
        };
        let delay = d.opts.attempt_delay;
        let tries = crate::tcp::connect_tries(d.opts.local_addr);
        while d.in_flight() < dial::MAX_ATTEMPTS {
            let Some(addr) = d.pending.pop_front() else {
                break;
            };
            match d.launch(poll.registry(), addr, tries, |sub| token(idx, sub)) {
                Ok(()) => {
                    if !d.pending.is_empty() && !delay.is_zero() {
                        d.seq += 1;
                        let conn = Owner::Conn {
                            slot: idx,
                            epoch,
                            kind: Kind::Attempt(d.seq),
                        };
                        timers.push(timer::deadline(now, delay), conn);
                        break;
                    }
                }
                Err(e) => d.errors.push(e),
            }
        }
        if d.in_flight() == 0 && d.pending.is_empty() {
            self.fail_dial(idx, false);
        }
    }

    fn on_attempt(&mut self, idx: u32, sub: usize) {
        let Loop { slots, poll, .. } = self;
        let Some(Phase::Connecting(d)) = slot_mut(slots, idx).map(|s| &mut s.st.phase) else {
            return;
        };
        let Some(a) = d.attempts.get(sub - 1).and_then(Option::as_ref) else {
            return;
        };
        let failed = match dial::check_connected(&a.stream) {
            dial::Outcome::Pending => return,
            dial::Outcome::Connected => return self.won(idx, sub),
            dial::Outcome::Failed(e) => Error::sys("connect", e),
            dial::Outcome::SelfConnected => {
                // As the blocking dialer: the socket is closed and, while tries are
                // left, a fresh one connects to the same address.
                let mut a = d.attempts[sub - 1].take().expect("attempt");
                let _ = poll.registry().deregister(&mut a.stream);
                drop(a.stream);
                if a.tries > 1 {
                    match d.launch(poll.registry(), a.addr, a.tries - 1, |sub| token(idx, sub)) {
                        Ok(()) => return,
                        Err(e) => e,
                    }
                } else {
                    crate::tcp::self_connect_error()
                }
            }
        };
        if let Some(mut a) = d.attempts[sub - 1].take() {
            let _ = poll.registry().deregister(&mut a.stream);
        }
        d.errors.push(failed);
        // The next attempt starts now, not at the stagger timer.
        d.seq += 1;
        self.dial_next(idx);
    }

    fn won(&mut self, idx: u32, sub: usize) {
        let now = self.now;
        let Loop {
            slots,
            poll,
            shared,
            ..
        } = self;
        let Some(slot) = slot_mut(slots, idx) else {
            return;
        };
        let Phase::Connecting(d) = &mut slot.st.phase else {
            return;
        };
        let dial::Attempt {
            mut stream,
            addr: peer,
            ..
        } = d.attempts[sub - 1].take().expect("attempt");
        d.drop_attempts(poll.registry());
        let _ = stream.set_nodelay(true);
        let tls = d.tls.take();
        let role = Role::Client {
            addr: crate::resolve::join_host_port(&d.host, d.port),
            local: d.opts.local_addr,
        };
        let st = &mut slot.st;
        match poll
            .registry()
            .reregister(&mut stream, token(idx, 0), Interest::READABLE)
        {
            Ok(()) => st.registered = Some(Interest::READABLE),
            Err(e) => {
                let _ = poll.registry().deregister(&mut stream);
                st.fault = Some(e)
            }
        }
        st.peer = Some(peer);
        st.local = stream.local_addr().ok();
        st.stream = Some(stream);
        st.idle_base = now;
        match tls {
            None => {
                st.phase = Phase::Open;
                if st.fault.is_none() {
                    call(slot, shared, now, |h, c| h.connected(c));
                }
            }
            Some(p) => {
                st.phase = Phase::Handshaking(role);
                st.hs_limit = p.config.handshake_timeout;
                st.hs_push = true;
                match p.session(Some(peer)) {
                    Ok(sess) => {
                        st.tls = Some(Box::new(sess));
                        // The ClientHello goes out now; the rest on readiness.
                        let buf = &mut self.tls_buf;
                        if buf.is_empty() {
                            buf.resize(etls::RECORD, 0);
                        }
                        tls_drive(slot, shared, now, buf);
                    }
                    Err(e) => {
                        st.tls_err = Some(e);
                        st.close_req = CloseReq::Hard;
                    }
                }
            }
        }
        self.settle(idx);
    }

    fn fail_dial(&mut self, idx: u32, timeout: bool) {
        if self.dialing(idx).is_none() {
            return;
        }
        let Some(mut slot) = self.take(idx) else {
            return;
        };
        let Phase::Connecting(d) = &mut slot.st.phase else {
            unreachable!("checked above");
        };
        d.drop_attempts(self.poll.registry());
        let err = d.failure(timeout);
        let handler = &mut slot.handler;
        let _ = catch_unwind(AssertUnwindSafe(|| handler.connect_failed(err)));
    }

    // ---------------------------------------------------------------------------------
    // timers

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((at, owner)) = self.timers.pop_due(now) {
            match owner {
                Owner::Listener(id) => self.register_listener(id),
                Owner::Conn { slot, epoch, kind } => {
                    if !self.alive(slot, epoch) {
                        continue;
                    }
                    self.conn_timer(slot, kind, at);
                }
            }
        }
    }

    fn conn_timer(&mut self, idx: u32, kind: Kind, at: Instant) {
        let now = self.now;
        let shared = &self.shared;
        let Some(slot) = slot_mut(&mut self.slots, idx) else {
            return;
        };
        match kind {
            Kind::User(id) => {
                if slot.st.timer.is_some_and(|(t, _)| t == id) {
                    slot.st.timer = None;
                    call(slot, shared, now, |h, c| h.timer(c, TimerToken(id)));
                    self.settle(idx);
                }
            }
            Kind::Idle => {
                let st = &mut slot.st;
                if st.idle_entry != Some(at) {
                    return;
                }
                st.idle_entry = None;
                let open = matches!(st.phase, Phase::Open) && st.close_req == CloseReq::None;
                if let (Some(d), true) = (st.idle, open) {
                    if timer::deadline(st.idle_base, d) <= now {
                        st.idle_base = now;
                        call(slot, shared, now, |h, c| h.idle_timeout(c));
                    }
                    // settle pushes the entry again at the (possibly moved) deadline.
                    self.settle(idx);
                }
            }
            Kind::Attempt(seq) => {
                if let Phase::Connecting(d) = &slot.st.phase
                    && d.seq == seq
                {
                    self.dial_next(idx);
                }
            }
            Kind::ConnectTimeout => match slot.st.phase {
                Phase::Connecting(_) => self.fail_dial(idx, true),
                Phase::Handshaking(Role::Client { .. }) => {
                    slot.st.tls_err = Some(Error::DialTimeout("i/o timeout".to_string()));
                    self.finish(idx, true);
                }
                _ => {}
            },
            Kind::Handshake(seq) => {
                let st = &mut slot.st;
                if matches!(st.phase, Phase::Handshaking(_)) && st.hs_seq == seq {
                    let limit = st.hs_limit.unwrap_or_default();
                    st.tls_err = Some(match st.phase {
                        Phase::Handshaking(Role::Client { .. }) => {
                            Error::DialTimeout("i/o timeout".to_string())
                        }
                        _ => Error::TlsHandshakeTimeout(limit),
                    });
                    self.finish(idx, true);
                }
            }
            Kind::Linger => self.finish(idx, false),
        }
    }
}

impl std::fmt::Debug for Loop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loop")
            .field("index", &self.shared.index)
            .finish()
    }
}

/// Builds a connect request for a loop (`literal`: what [`dial::literal`] read `host` as).
pub(crate) fn connect_cmd(
    host: &str,
    port: u16,
    literal: crate::Result<Option<(std::net::IpAddr, u32)>>,
    opts: ConnectOptions,
    tls: Option<Prepared>,
    handler: Box<dyn Handler>,
    cell: Arc<AtomicU64>,
) -> Cmd {
    Cmd::Connect {
        dialing: Box::new(Dialing::new(host.to_string(), port, literal, opts, tls)),
        handler,
        cell,
    }
}
