//! Waiting, deadlines and descriptor lifetime (Reseau's `IOPoll`, Go's `internal/poll`).
//!
//! # Design
//!
//! Every operation on an [`Fd`] follows Go's order: take a reference (fails with
//! [`Error::Closed`] once `close` has started), check the direction's deadline (a passed
//! deadline fails even when the I/O could proceed), **try the syscall**, and only on
//! `EAGAIN` park. Parking is a single `ppoll(2)` on the socket plus a wake-up `eventfd`
//! checked out for that wait from a small shared pool, with the deadline as its timeout:
//! the kernel wakes exactly the blocked thread when data arrives, with no hop through a
//! poller thread. Wake descriptors are held only while parked (at most 64 idle ones stay
//! open), and when none can be had the wait goes on "blind", re-checking close and
//! deadlines every few milliseconds, so running out of descriptors never fails a wait.
//! A read whose peer answered quickly last time may spin briefly before parking
//! ([`Fd::spin`]'s rules keep that to idle cores).
//!
//! Each direction has two waiter slots: one for the operation that owns the direction
//! (its lock serialises same-direction calls) and one for a TLS call of the other
//! direction that needs this one (an `SSL_read` that must write, say). Whoever changes
//! what a waiter waits for — `close`, a deadline setter — first publishes the change and
//! then, under the slots' lock, signals the parked threads' eventfds; a waiter publishes
//! itself in a slot before it
//! re-checks state. The slot lock orders the two, so no wake-up is lost, and the eventfd
//! latches, so a wake sent just before the waiter parks still ends its `ppoll`.
//!
//! This replaces the poller-thread design the SPEC (§2) sketches; the README's design
//! notes give the measurements (a central epoll thread costs two context switches per
//! wait: 0.73× `std::net` at 32 connections in the prototypes).
//!
//! # Blocking datagram receives (Linux backend)
//!
//! A UDP socket bound to a loopback or unspecified address can have its receives wait in
//! the kernel instead ([`Fd::enable_blocking_receives`]): its description is made
//! blocking, every attempt that must not wait passes `MSG_DONTWAIT`, and a receive that
//! would park makes one blocking `recvfrom` bounded by `SO_RCVTIMEO` (std's one syscall,
//! where parking costs `ppoll` + `recvfrom` and the wake-descriptor bookkeeping). The
//! kernel timeout is kept below the read deadline's remaining time (with room for the
//! kernel's jiffy rounding and timer-wheel slack, and at most [`RCVTIMEO_CAP_NS`]), and
//! only re-installed when it no longer fits, so re-arming a deadline per receive costs
//! no syscall; the last [`BLOCK_MIN_NS`] before a deadline wait in `ppoll`, to the
//! nanosecond as before. The two wake-ups the kernel call cannot see:
//! - `close` calls `shutdown(SHUT_RD)`, which on an unconnected Linux UDP socket fails
//!   with `ENOTCONN` but marks it shut and wakes the sleeper (and any later receive
//!   returns at once), before waiting for operations to leave;
//! - a read deadline set while a receive sleeps: the first setter of that sleep sends
//!   one empty datagram to the socket's own address from a process-wide wake socket
//!   bound to loopback (one per family, in the network namespace of the first bind: a
//!   socket of another namespace keeps `ppoll`, since the wake could not reach it).
//!   The receiver drops
//!   every datagram from that address (no other socket can send from it: the wake
//!   socket holds its port without `SO_REUSEADDR`), re-reads its deadline and goes on.
//!   Nothing is counted, so a lost wake datagram leaves no state behind; the kernel
//!   timeout's cap bounds how late such a loss makes the deadline.
//!
//! Signals would wake the call too, but a library must not install handlers.
//!
//! # Descriptor lifetime
//!
//! Go's fdMutex idea: one atomic word holds a `closed` bit and a reference count. The
//! owner holds one reference; every operation holds one more while it runs. `close`
//! sets the bit, wakes both waiters, drops the owner's reference and waits until the
//! last operation has dropped its own; only then is the socket closed. A descriptor
//! number is therefore never closed (and reused) while another thread may still use it.
//! The socket is closed by `dup3`-ing a dead placeholder socket onto its number, which
//! stays allocated until the value is dropped: `AsFd` on a closed value can never name a
//! file opened later (SPEC §2, I/O safety). Dropping an open value closes outright.

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::sys::{self, WakeFd, Woken};
use crate::util::lock;
use crate::{Error, Result};

const CLOSED: u64 = 1;
/// Set by the release that drops the last reference of a closed `Fd`, so references
/// taken (and failed) later never close the number a second time.
const DESTROYED: u64 = 2;
const REF: u64 = 4;

/// Deadline word meaning "no deadline".
const NO_DEADLINE: u64 = 0;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's poll epoch (never 0, which means "no deadline").
fn now_ns() -> u64 {
    epoch().elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64 + 1
}

/// Encodes an absolute deadline; anything before the epoch is "already passed" (1).
fn deadline_word(at: Option<Instant>) -> u64 {
    match at {
        None => NO_DEADLINE,
        Some(t) => {
            t.saturating_duration_since(epoch())
                .as_nanos()
                .min(u64::MAX as u128 - 2) as u64
                + 1
        }
    }
}

/// Which half of a full-duplex descriptor an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Reads, accepts and `eof` peeks.
    Read,
    /// Writes and connect completion.
    Write,
}

/// A read spins at most this long before it parks (see [`Fd::spin`]).
const SPIN_NS: u64 = 50_000;
/// ...and only when the last read on its socket waited at most this long.
const SPIN_IF_WAITED_NS: u64 = 100_000;
/// Threads parked in a read or write right now (accepts and connects not counted).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Threads spinning right now (bounded by [`max_spinners`]).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// Half the cores, at least one: spinners never crowd out runnable threads.
fn max_spinners() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .max(1)
    })
}

/// [`Fd::spin`]'s eligibility: the last wait on the socket was short (the peer answers
/// quickly, so a cross-core wake-up would cost more than the wait) and no other thread
/// is parked in a read or write (a busy process needs its cores for wake-ups).
fn may_spin(last_wait_ns: u64, parked: usize) -> bool {
    last_wait_ns <= SPIN_IF_WAITED_NS && parked == 0
}

/// Most idle wake eventfds kept open for reuse (SPEC §2 allows 128).
const MAX_IDLE_WAKES: usize = 64;
/// How long a waiter without a wake descriptor sleeps between re-checks of close and
/// deadline changes, at most (it starts at 1 ms and doubles).
const BLIND_RECHECK_NS: u64 = 50_000_000;

/// Idle wake-up eventfds. A waiter takes one for the duration of one wait and gives it
/// back: a thread that is not parked holds none, so descriptors spent on waking are
/// bounded by the number of threads parked right now plus [`MAX_IDLE_WAKES`] (SPEC §2),
/// not by the number of threads that ever parked. No thread-local storage is involved,
/// so a wait works anywhere, thread-local destructors included.
static IDLE_WAKES: Mutex<Vec<WakeFd>> = Mutex::new(Vec::new());

/// A wake eventfd checked out for one wait; returns to [`IDLE_WAKES`] on drop.
struct Wake(Option<WakeFd>);

impl Wake {
    /// An idle eventfd, or a new one; `Wake(None)` when the process is out of
    /// descriptors, or so close to its limit that a wake descriptor would take a number
    /// sockets need: the wait goes on blind then (see [`Fd::park`]). Descriptors are
    /// numbered lowest-free first, so a new one's number tells how full the table is.
    /// Keeping the last sixteenth (16 to 1,024 numbers) for sockets is what lets a
    /// thread-per-connection server hold as many connections as the limit allows, instead
    /// of half of them (each parked thread would otherwise pin one eventfd).
    fn take() -> Wake {
        if let Some(w) = lock(&IDLE_WAKES).pop() {
            return Wake(Some(w));
        }
        let Ok(w) = WakeFd::new() else {
            return Wake(None);
        };
        let limit = sys::nofile_limit();
        let reserve = (limit / 16).clamp(16, 1024);
        let highest = w.poll_fd().max(w.signal_fd()) as u64;
        if highest.saturating_add(reserve) >= limit {
            return Wake(None);
        }
        Wake(Some(w))
    }

    /// `(number to poll, number wakers signal)`, or -1s (which `poll` ignores) for a
    /// blind wait.
    fn fds(&self) -> (RawFd, RawFd) {
        self.0
            .as_ref()
            .map_or((-1, -1), |w| (w.poll_fd(), w.signal_fd()))
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            // A wake latched after the waiter left its slot cannot happen (signals are sent
            // under the slot lock), but one latched before it woke may still be pending:
            // the next owner sees one spurious wake-up and re-checks its state. Not
            // draining saves a syscall per wait.
            let mut idle = lock(&IDLE_WAKES);
            // Full capacity at once: a later push never reallocates, so a warm wait
            // allocates nothing whatever other threads returned meanwhile.
            if idle.capacity() < MAX_IDLE_WAKES {
                let room = MAX_IDLE_WAKES - idle.len();
                idle.reserve_exact(room);
            }
            if idle.len() < MAX_IDLE_WAKES {
                idle.push(w);
            }
        }
    }
}

/// A blocking datagram receive's kernel timeout (`SO_RCVTIMEO`) is at most this, so a
/// lost wake datagram (see the module docs) delays a deadline change by at most ~2 s.
const RCVTIMEO_CAP_NS: u64 = 2_000_000_000;
/// The longest jiffy Linux has (`HZ` = 100): `SO_RCVTIMEO` is rounded up to jiffies.
const JIFFY_NS: u64 = 10_000_000;
/// Closer than this to its deadline, a blocking-mode receive waits in `ppoll` (exact to
/// the nanosecond) instead of the jiffy-grained kernel timeout.
const BLOCK_MIN_NS: u64 = 4 * JIFFY_NS;

/// The `SO_RCVTIMEO` to install before a blocking receive, or `None` to keep
/// `installed` (0 = none yet). The kernel rounds the timeout up to a jiffy and the timer
/// wheel adds its slack (under 1/8) to the rounded value, so a timeout fits `left` (the
/// deadline's remaining time, at least [`BLOCK_MIN_NS`]; `None` = no deadline) when
/// `(t + JIFFY_NS) * 9/8 <= left`. A fitting one is kept while it is at least half the
/// largest fit, so a deadline re-armed before every receive costs no `setsockopt`; a
/// new one is three quarters of the largest fit, in the middle of that range.
fn kernel_timeout(installed: u64, left: Option<u64>) -> Option<u64> {
    let fit = left.map_or(RCVTIMEO_CAP_NS, |ns| {
        (ns / 9 * 8).saturating_sub(JIFFY_NS).min(RCVTIMEO_CAP_NS)
    });
    if installed != 0 && installed <= fit && installed >= fit / 2 {
        None
    } else {
        Some((fit / 4 * 3).max(1_000))
    }
}

/// The process-wide socket that sends wake datagrams to one address family's
/// blocking-mode receivers (see the module docs).
#[derive(Debug)]
struct WakeSender {
    sock: OwnedFd,
    /// Its address: datagrams from here are wakes, never data.
    addr: SocketAddr,
    /// Its network namespace: its wakes reach only sockets of the same one.
    netns: sys::NetNs,
}

/// `[IPv4, IPv6]` wake senders, made on first use; `None` when the family's loopback
/// did not deliver the probe (a firewall, say): its sockets keep the `ppoll` path.
static WAKE_SENDERS: [OnceLock<Option<WakeSender>>; 2] = [OnceLock::new(), OnceLock::new()];

fn loopback(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    }
}

/// The family's wake sender. A failed syscall (out of descriptors, no `::1`) is not
/// remembered, so a later bind tries again; a probe that did not arrive is.
fn wake_sender(v6: bool) -> Option<&'static WakeSender> {
    let cell = &WAKE_SENDERS[usize::from(v6)];
    if let Some(s) = cell.get() {
        return s.as_ref();
    }
    // Two first binds may both probe; the loser's socket is closed.
    let made = new_wake_sender(v6).ok()?;
    cell.get_or_init(|| made).as_ref()
}

/// Binds a wake sender to the family's loopback and proves that a datagram from it
/// arrives (one probe to a throwaway socket, waited for at most 500 ms, once per
/// process): a family whose loopback drops it never gets blocking receives.
fn new_wake_sender(v6: bool) -> io::Result<Option<WakeSender>> {
    let domain = if v6 {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let lo = sys::ip_addr(SocketAddr::new(loopback(v6), 0));
    let sock = sys::dgram_socket(domain)?;
    let fd = sock.as_fd();
    sys::sock(&fd).bind(&lo)?;
    // It never reads: the smallest buffer bounds what stray datagrams to it can pin.
    let _ = sys::sock(&fd).set_recv_buffer_size(1);
    let (Some(addr), Some(netns)) = (sys::sock(&fd).local_addr()?.as_socket(), sys::netns(fd))
    else {
        return Ok(None);
    };
    let probe = sys::dgram_socket(domain)?;
    let pfd = probe.as_fd();
    sys::sock(&pfd).bind(&lo)?;
    sys::send_to(fd, &[], &sys::sock(&pfd).local_addr()?)?;
    if sys::wait(
        std::os::fd::AsRawFd::as_raw_fd(&pfd),
        sys::READABLE,
        -1,
        Some(500_000_000),
    )? != Woken::Ready
    {
        return Ok(None);
    }
    let (n, _, from) = sys::recv_from(pfd, &mut [0u8; 1], false)?;
    Ok((n == 0 && from.as_socket() == Some(addr)).then_some(WakeSender { sock, addr, netns }))
}

/// What a blocking-mode [`Fd`] needs to be woken by a deadline setter.
#[derive(Debug)]
struct DgramWake {
    /// The socket's own address, as wakes reach it (an unspecified one → loopback).
    target: socket2::SockAddr,
    sender: &'static WakeSender,
}

/// Idle wake descriptors kept open now (for tests of the descriptor budget).
#[cfg(test)]
pub(crate) fn idle_wakes() -> usize {
    lock(&IDLE_WAKES).len()
}

#[derive(Debug)]
struct Half {
    deadline: AtomicU64,
    /// Threads parked on this direction: at most one owner of `lock` plus one TLS call
    /// from the other direction (see the module docs).
    /// Each is the wake eventfd a parked thread checked out, or -1.
    waiters: Mutex<[RawFd; 2]>,
    /// Serialises operations of this direction (concurrent readers queue here).
    lock: Mutex<()>,
}

impl Default for Half {
    fn default() -> Half {
        Half {
            deadline: AtomicU64::new(NO_DEADLINE),
            waiters: Mutex::new([-1; 2]),
            lock: Mutex::new(()),
        }
    }
}

impl Half {
    fn wake(&self) {
        for &w in lock(&self.waiters).iter().filter(|w| **w >= 0) {
            // SAFETY: a registered waiter's eventfd stays checked out (open) until the
            // waiter leaves the slot, which it does under this lock (see `Fd::wait`).
            unsafe { WakeFd::signal(w) };
        }
    }

    fn set_deadline(&self, word: u64) {
        self.deadline.store(word, Ordering::SeqCst);
        // The waiter recomputes its timeout from the new value: earlier, later and cleared
        // deadlines all take effect for the call already blocked.
        self.wake();
    }

    /// Fails if the deadline has passed; otherwise the nanoseconds left (`None` = no deadline).
    fn remaining(&self) -> Result<Option<u64>> {
        Self::left(self.deadline.load(Ordering::Acquire))
    }

    /// [`Half::remaining`] for a deadline word already loaded.
    fn left(d: u64) -> Result<Option<u64>> {
        if d == NO_DEADLINE {
            return Ok(None);
        }
        let now = now_ns();
        if now >= d {
            Err(Error::DeadlineExceeded)
        } else {
            Ok(Some(d - now))
        }
    }
}

/// A registered, non-blocking descriptor with deadlines and race-free close.
#[derive(Debug)]
pub(crate) struct Fd {
    raw: RawFd,
    state: AtomicU64,
    read: Half,
    write: Half,
    /// Set by an operation that saw the receive queue drained (`EAGAIN` or a short read),
    /// so the next read parks first instead of paying for a syscall that would fail.
    drained: AtomicBool,
    /// How long the last parked (or spun) read waited, in ns (`u64::MAX`: not yet).
    last_wait_ns: AtomicU64,
    /// Set once receives may block in the kernel (see the module docs). Boxed: a
    /// sockaddr is 128 bytes, and every stream's `Fd` would carry them.
    dgram: OnceLock<Box<DgramWake>>,
    /// A receive is (about to be) asleep in a blocking `recvfrom`: the deadline setter
    /// that clears it sends a wake datagram.
    blocked: AtomicBool,
    /// The `SO_RCVTIMEO` installed, in ns (0: none yet).
    rcvtimeo_ns: AtomicU64,
    /// The socket is closed but the number names the dead placeholder (see
    /// [`sys::retire`]): released when the `Fd` is dropped.
    retired: AtomicBool,
    /// `(closed(2) has run, closers waiting for it)`: the count lets the common case
    /// (the closer drops the last reference itself) skip the condvar's wake syscall.
    destroyed: Mutex<(bool, usize)>,
    destroyed_cv: Condvar,
}

/// What [`Fd::begin_left`] returns: the operation's reference, the direction's lock, and
/// `(deadline word, time left)`.
type BeganOp<'a> = (OpRef<'a>, MutexGuard<'a, ()>, (u64, Option<u64>));

/// The buffer of a [`Fd::try_io`] call.
#[derive(Debug)]
pub(crate) enum IoBuf<'a> {
    /// Receive into this.
    Read(&'a mut [u8]),
    /// Send this.
    Write(&'a [u8]),
}

/// A reference held by a running operation; dropping it may destroy a closed `Fd`.
pub(crate) struct OpRef<'a> {
    fd: &'a Fd,
}

impl Drop for OpRef<'_> {
    fn drop(&mut self) {
        self.fd.release();
    }
}

impl OpRef<'_> {
    /// The descriptor, valid while this reference lives.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: a held reference keeps the descriptor open (close waits for it).
        unsafe { sys::borrow(self.fd.raw) }
    }
}

impl Fd {
    /// Takes ownership of a non-blocking descriptor.
    pub(crate) fn new(fd: OwnedFd) -> Fd {
        // The core count is read (and cached) here, where allocating is fine:
        // `available_parallelism` reads cgroup files, and a first spin inside a read
        // must not allocate. The dead placeholder is made here too, while descriptors
        // are to be had, so a `close` under `EMFILE` still keeps its number reserved.
        max_spinners();
        sys::prepare_placeholder();
        Fd {
            raw: std::os::fd::IntoRawFd::into_raw_fd(fd),
            state: AtomicU64::new(REF),
            read: Half::default(),
            write: Half::default(),
            drained: AtomicBool::new(false),
            last_wait_ns: AtomicU64::new(u64::MAX),
            dgram: OnceLock::new(),
            blocked: AtomicBool::new(false),
            rcvtimeo_ns: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            destroyed: Mutex::new((false, 0)),
            destroyed_cv: Condvar::new(),
        }
    }

    /// The raw number: the socket while open, a dead placeholder after `close` (never
    /// another file: see [`Fd::as_fd`]).
    pub(crate) fn raw(&self) -> RawFd {
        self.raw
    }

    /// Borrows the descriptor for `AsFd`. I/O safe from safe code: until `close` the
    /// number is the socket; after it, the number stays allocated to a dead placeholder
    /// socket until this `Fd` is dropped, so it never names a file opened later.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the number is open for as long as `self` lives: the socket until close,
        // then the placeholder `sys::retire` put there, released only in `Drop`. (If the
        // placeholder could not be had, `retire` closed outright; see its docs.)
        unsafe { sys::borrow(self.raw) }
    }

    fn half(&self, dir: Dir) -> &Half {
        match dir {
            Dir::Read => &self.read,
            Dir::Write => &self.write,
        }
    }

    /// Takes an operation reference, or fails with [`Error::Closed`].
    pub(crate) fn op(&self) -> Result<OpRef<'_>> {
        let prev = self.state.fetch_add(REF, Ordering::Acquire);
        let r = OpRef { fd: self };
        if prev & CLOSED != 0 {
            Err(Error::Closed)
        } else {
            Ok(r)
        }
    }

    fn release(&self) {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let last = cur - REF == CLOSED;
            let next = if last { CLOSED | DESTROYED } else { cur - REF };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if last => return self.destroy(),
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn destroy(&self) {
        // SAFETY: the last reference is gone and the closed bit stops new ones, so no
        // thread uses the socket any more; the number stays ours (see `as_fd`).
        if unsafe { sys::retire(self.raw) } {
            self.retired.store(true, Ordering::Release);
        }
        let mut d = lock(&self.destroyed);
        d.0 = true;
        if d.1 > 0 {
            self.destroyed_cv.notify_all();
        }
    }

    /// True until `close` starts.
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Closes: wakes every blocked operation (they fail with [`Error::Closed`]) and
    /// returns once the descriptor is really closed. Idempotent; true for the call that
    /// started the close.
    pub(crate) fn close(&self) -> bool {
        let prev = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let first = prev & CLOSED == 0;
        if first {
            self.read.wake();
            self.write.wake();
            if self.dgram.get().is_some() {
                // SAFETY: the owner's reference, released just below, keeps the socket
                // open for the call.
                sys::shutdown_wake(unsafe { sys::borrow(self.raw) });
            }
            self.release();
        }
        let mut d = lock(&self.destroyed);
        if !d.0 {
            d.1 += 1;
            while !d.0 {
                d = self.destroyed_cv.wait(d).unwrap_or_else(|p| p.into_inner());
            }
            d.1 -= 1;
        }
        first
    }

    /// Hands the descriptor to the caller without closing it: same number; the socket
    /// (still non-blocking: only datagram sockets, which are never handed over, are made
    /// blocking) while open, the dead placeholder `close` put there after it.
    /// Deadlines and waiters die with `self` (none can be blocked: an operation borrows
    /// the `Fd`).
    ///
    /// # Errors
    /// [`Error::Closed`] only when `close` could not keep the number (no placeholder
    /// could be made: see [`sys::retire`]), so there is nothing left to hand over.
    pub(crate) fn into_owned(mut self) -> Result<OwnedFd> {
        let closed = *self.state.get_mut() & CLOSED != 0;
        if closed && !*self.retired.get_mut() {
            return Err(Error::Closed);
        }
        let raw = self.raw;
        // Marks the value closed and not retired, so `Drop` leaves the number alone.
        *self.state.get_mut() |= CLOSED | DESTROYED;
        *self.retired.get_mut() = false;
        drop(self);
        // SAFETY: `raw` is open and owned by `self` (the socket, or the placeholder
        // `retire` installed; checked above), and no operation reference can exist while
        // we hold `self` by value; `Drop` skipped it, so ownership moves to the result.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
    }

    /// Sets a direction's deadline (semantics: SPEC §2).
    pub(crate) fn set_deadline(&self, dir: Dir, at: Option<Instant>) -> Result<()> {
        let _r = self.op()?;
        self.half(dir).set_deadline(deadline_word(at));
        if dir == Dir::Read {
            self.read_deadline_changed();
        }
        Ok(())
    }

    /// Sets both deadlines.
    pub(crate) fn set_deadlines(&self, at: Option<Instant>) -> Result<()> {
        let _r = self.op()?;
        let w = deadline_word(at);
        self.read.set_deadline(w);
        self.read_deadline_changed();
        self.write.set_deadline(w);
        Ok(())
    }

    /// Makes datagram receives wait in the kernel (module docs), for a UDP socket bound
    /// to `local` (its real port). Only where the backend can
    /// ([`sys::BLOCKING_DGRAM_RECV`]) and where a wake datagram cannot leave the machine
    /// or miss: `local` is a loopback address or unspecified (multicast, broadcast and
    /// other addresses keep `ppoll`), the family's loopback carries one (probed once),
    /// and the socket is in the wake sender's network namespace (that of the process's
    /// first such bind; sockets of other namespaces keep `ppoll`). The caller vouches
    /// that no other socket shares the port (`SO_REUSEADDR` or `SO_REUSEPORT` could hand
    /// the wake to it). Idempotent; false = `ppoll` stays.
    pub(crate) fn enable_blocking_receives(&self, local: SocketAddr) -> bool {
        if !sys::BLOCKING_DGRAM_RECV || local.port() == 0 {
            return false;
        }
        let v6 = local.is_ipv6();
        let ip = match local.ip() {
            ip if ip.is_unspecified() => loopback(v6),
            ip if ip.is_loopback() => ip,
            _ => return false,
        };
        let Some(sender) = wake_sender(v6) else {
            return false;
        };
        if self.dgram.get().is_some() {
            return true;
        }
        // A socket made in another network namespace (a thread that unshared or
        // setns'ed) has its own loopback: the wake would miss it and could reach a
        // stranger holding the same port in the sender's.
        let same_ns = |fd: BorrowedFd<'_>| Ok(sys::netns(fd) == Some(sender.netns));
        if !matches!(self.control("getsockopt", same_ns), Ok(true))
            || self
                .control("fcntl", |fd| sys::set_blocking(fd, true))
                .is_err()
        {
            return false;
        }
        let _ = self.dgram.set(Box::new(DgramWake {
            target: sys::ip_addr(SocketAddr::new(ip, local.port())),
            sender,
        }));
        true
    }

    /// Whether receives may block in the kernel (for tests).
    #[cfg(test)]
    pub(crate) fn receives_block(&self) -> bool {
        self.dgram.get().is_some()
    }

    /// Wakes a receive asleep in the kernel so it re-reads its deadline. Called after
    /// the read deadline is stored (`SeqCst`); the receiver publishes `blocked` before
    /// it re-reads the deadline, so one of the two sees the other. The setter that
    /// takes `blocked` sends the one wake of that sleep: a later setter that finds it
    /// taken is seen by the receiver, which re-reads the deadline after that wake and
    /// re-checks it after publishing `blocked` again. One wake per sleep, however many
    /// setters: more would only fill the receive buffer and crowd out data.
    fn read_deadline_changed(&self) {
        if let Some(d) = self.dgram.get()
            && self.blocked.load(Ordering::SeqCst)
            && self.blocked.swap(false, Ordering::SeqCst)
        {
            // A failed send (`ENOBUFS`) is bounded by the kernel timeout's cap; the flag
            // goes back so the next setter tries again (at worst one stale wake).
            if sys::send_to(d.sender.sock.as_fd(), &[], &d.target).is_err() {
                self.blocked.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Takes a reference and the direction's lock, then checks the deadline.
    pub(crate) fn begin(&self, dir: Dir) -> Result<(OpRef<'_>, MutexGuard<'_, ()>)> {
        self.begin_left(dir).map(|(r, g, _)| (r, g))
    }

    /// [`Fd::begin`], also returning the deadline word it checked and the time left
    /// before it (`None`: no deadline), so a caller that needs them reads no clock again.
    fn begin_left(&self, dir: Dir) -> Result<BeganOp<'_>> {
        let r = self.op()?;
        let g = lock(&self.half(dir).lock);
        // A close that came while we queued on the lock wins over the deadline.
        if !self.is_open() {
            return Err(Error::Closed);
        }
        let word = self.half(dir).deadline.load(Ordering::SeqCst);
        let left = Half::left(word)?;
        Ok((r, g, (word, left)))
    }

    /// Parks until the direction is ready, the deadline passes, or `close` runs. The
    /// caller holds the direction's lock (from [`Fd::begin`]).
    pub(crate) fn wait(&self, dir: Dir) -> Result<()> {
        let half = self.half(dir);
        let checked_out = Wake::take();
        let (wake, signal) = checked_out.fds();
        if wake < 0 {
            return self.park(half, dir, wake);
        }
        let slot = {
            let mut ws = lock(&half.waiters);
            let Some(i) = ws.iter().position(|w| *w < 0) else {
                // Unreachable by construction (one owner + one cross-direction TLS call);
                // refusing beats a waiter that could miss its wake-up.
                return Err(Error::InvalidArgument(
                    "too many threads waiting on one socket direction".into(),
                ));
            };
            ws[i] = signal;
            i
        };
        let res = self.park(half, dir, wake);
        lock(&half.waiters)[slot] = -1;
        res
    }

    /// The wait itself. `wake < 0` is a blind wait (no descriptor could be had for
    /// waking): nobody can signal it, so it sleeps in slices of at most
    /// [`BLIND_RECHECK_NS`] and re-checks close and the deadline after each; slower to
    /// notice them, but a wait that can proceed never fails for want of a descriptor.
    fn park(&self, half: &Half, dir: Dir, wake: RawFd) -> Result<()> {
        let events = match dir {
            Dir::Read => sys::READABLE,
            Dir::Write => sys::WRITABLE,
        };
        let mut slice = 1_000_000u64;
        loop {
            if !self.is_open() {
                return Err(Error::Closed);
            }
            let mut timeout = half.remaining()?;
            if wake < 0 {
                timeout = Some(timeout.map_or(slice, |t| t.min(slice)));
                slice = (slice * 2).min(BLIND_RECHECK_NS);
            }
            match sys::wait(self.raw, events, wake, timeout) {
                Ok(Woken::Ready) => return Ok(()),
                // SAFETY: `wake` is the eventfd this wait checked out; it stays open until
                // the wait returns it. (A blind wait's ppoll is only interrupted by EINTR.)
                Ok(Woken::Signalled) if wake >= 0 => unsafe { WakeFd::drain(wake) },
                Ok(Woken::Signalled) => {}
                Ok(Woken::TimedOut) => {}
                Err(e) => return Err(Error::sys("ppoll", e)),
            }
        }
    }

    /// One read: short reads allowed, `Ok(0)` = EOF.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let (r, _g) = self.begin(Dir::Read)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len();
        // A short read drained the receive queue: the next read parks first.
        self.receive(&r, "read", |fd| sys::recv(fd, buf, 0), |n, _| *n < len)
    }

    /// The receive loop shared by stream reads and datagram receives: park first when
    /// `drained` says the queue is likely empty (spinning briefly if [`Fd::spin`]
    /// allows), try `f`, park on `EAGAIN`. After a success, `drained(&value, waited)`
    /// sets the hint for the next call. The caller holds the read lock (from
    /// [`Fd::begin`]).
    fn receive<T>(
        &self,
        r: &OpRef<'_>,
        op: &'static str,
        mut f: impl FnMut(BorrowedFd<'_>) -> io::Result<T>,
        drained: impl Fn(&T, bool) -> bool,
    ) -> Result<T> {
        let mut waited = self.drained.load(Ordering::Relaxed);
        let mut park = waited;
        loop {
            if park {
                match self.spin(op, || f(r.fd())) {
                    Some(Ok(v)) => {
                        self.drained.store(drained(&v, true), Ordering::Relaxed);
                        return Ok(v);
                    }
                    Some(Err(e)) => return Err(e),
                    None => self.timed_wait(Dir::Read)?,
                }
            }
            match f(r.fd()) {
                Ok(v) => {
                    self.drained.store(drained(&v, waited), Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    waited = true;
                    park = true;
                }
                Err(e) => return Err(Error::sys(op, e)),
            }
        }
    }

    /// One park of a blocking-mode receive (module docs): `Some` = what `f` returned,
    /// `None` = the kernel timeout passed, a wake came, or the deadline moved; the
    /// caller re-checks and calls again. Closer than [`BLOCK_MIN_NS`] to the deadline
    /// (or if `SO_RCVTIMEO` cannot be set) it parks in `ppoll` and tries once. `known`:
    /// the deadline word and time left that [`Fd::begin_left`] just read, if any.
    fn block_once<T>(
        &self,
        r: &OpRef<'_>,
        op: &'static str,
        f: &mut impl FnMut(BorrowedFd<'_>, bool) -> io::Result<T>,
        known: Option<(u64, Option<u64>)>,
    ) -> Result<Option<T>> {
        let one = |res: io::Result<T>| match res {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::sys(op, e)),
        };
        let (word, left) = match known {
            Some(k) => k,
            None => {
                if !self.is_open() {
                    return Err(Error::Closed);
                }
                let word = self.read.deadline.load(Ordering::SeqCst);
                (word, Half::left(word)?)
            }
        };
        let mut precise = left.is_some_and(|ns| ns < BLOCK_MIN_NS);
        if !precise && let Some(t) = kernel_timeout(self.rcvtimeo_ns.load(Ordering::Relaxed), left)
        {
            match sys::set_recv_timeout(r.fd(), t) {
                Ok(()) => self.rcvtimeo_ns.store(t, Ordering::Relaxed),
                Err(_) => precise = true,
            }
        }
        if precise {
            self.timed_wait(Dir::Read)?;
            return one(f(r.fd(), false));
        }
        // Re-checked after `blocked` is published: a setter that stored a new deadline
        // before it either sees `blocked` (and sends a wake) or is seen here.
        self.blocked.store(true, Ordering::SeqCst);
        if self.read.deadline.load(Ordering::SeqCst) != word || !self.is_open() {
            self.blocked.store(false, Ordering::Relaxed);
            return Ok(None);
        }
        // Counted as parked, for other sockets' spin rule; not timed: this socket never
        // spins.
        PARKED.fetch_add(1, Ordering::Relaxed);
        let res = f(r.fd(), true);
        PARKED.fetch_sub(1, Ordering::Relaxed);
        self.blocked.store(false, Ordering::Relaxed);
        // After `close`'s shutdown the call returns at once (0 bytes, no sender).
        if !self.is_open() {
            return Err(Error::Closed);
        }
        one(res)
    }

    /// Bounded adaptive spinning before a read parks (README, "One-connection latency"):
    /// retries `attempt` for at most [`SPIN_NS`] when the last wait on this socket was
    /// short (the peer answers quickly: a cross-core wake-up would cost more than the
    /// wait), no other thread is parked in a read or write (a busy process needs its
    /// cores for wake-ups), and fewer threads spin than half the cores. The deadline
    /// and `close` are checked before every attempt, so their semantics are exact.
    /// `None` = not eligible or nothing came: park.
    fn spin<T>(
        &self,
        op: &'static str,
        attempt: impl FnMut() -> io::Result<T>,
    ) -> Option<Result<T>> {
        if !may_spin(
            self.last_wait_ns.load(Ordering::Relaxed),
            PARKED.load(Ordering::Relaxed),
        ) {
            return None;
        }
        if SPINNERS.fetch_add(1, Ordering::AcqRel) >= max_spinners() {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                SPINNERS.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _release = Release;
        self.spin_loop(op, attempt)
    }

    /// The spin itself, once allowed: `attempt` until it succeeds, fails, the deadline
    /// passes, `close` runs, or [`SPIN_NS`] is spent (`None`).
    fn spin_loop<T>(
        &self,
        op: &'static str,
        mut attempt: impl FnMut() -> io::Result<T>,
    ) -> Option<Result<T>> {
        let start = Instant::now();
        let mut tries = 0u32;
        loop {
            if !self.is_open() {
                return Some(Err(Error::Closed));
            }
            // Go's rule holds while spinning too: a passed deadline fails the call even
            // when data has just arrived.
            if let Err(e) = self.read.remaining() {
                return Some(Err(e));
            }
            match attempt() {
                Ok(v) => {
                    let spent = start.elapsed().as_nanos() as u64;
                    self.last_wait_ns.store(spent, Ordering::Relaxed);
                    return Some(Ok(v));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(Error::sys(op, e))),
            }
            // Each try is a syscall (~0.5 µs): reading the clock every eighth is precise
            // enough for a 50 µs budget and saves most of the clock reads.
            tries += 1;
            if tries.is_multiple_of(8) && start.elapsed().as_nanos() as u64 >= SPIN_NS {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// [`Fd::wait`] counted in [`PARKED`] (writers: a parked writer means a busy process).
    fn counted_wait(&self, dir: Dir) -> Result<()> {
        PARKED.fetch_add(1, Ordering::Relaxed);
        let res = self.wait(dir);
        PARKED.fetch_sub(1, Ordering::Relaxed);
        res
    }

    /// [`Fd::counted_wait`] that records how long it waited, for [`Fd::spin`]'s
    /// eligibility.
    fn timed_wait(&self, dir: Dir) -> Result<()> {
        let start = Instant::now();
        let res = self.counted_wait(dir);
        let waited = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.last_wait_ns.store(waited, Ordering::Relaxed);
        res
    }

    /// Parks until `dir` is ready without taking the direction's lock: for layers (TLS)
    /// that serialise their own calls and retry a non-blocking operation after.
    pub(crate) fn wait_ready(&self, dir: Dir) -> Result<()> {
        let _r = self.op()?;
        self.half(dir).remaining()?;
        self.wait(dir)
    }

    /// Fails with [`Error::DeadlineExceeded`] if `dir`'s deadline has passed, or
    /// [`Error::Closed`].
    pub(crate) fn check_deadline(&self, dir: Dir) -> Result<()> {
        let _r = self.op()?;
        self.half(dir).remaining().map(drop)
    }

    /// Overlays `at` on both deadlines: each becomes the earlier of itself and `at`.
    /// Returns, per direction (read, write), `(previous word, installed word)` if the
    /// overlay changed it, for [`restore_deadline_words`](Self::restore_deadline_words).
    pub(crate) fn cap_deadlines(&self, at: Instant) -> [Option<(u64, u64)>; 2] {
        let w = deadline_word(Some(at));
        [&self.read, &self.write].map(|half| {
            let mut cur = half.deadline.load(Ordering::Acquire);
            while cur == NO_DEADLINE || w < cur {
                match half
                    .deadline
                    .compare_exchange(cur, w, Ordering::SeqCst, Ordering::Acquire)
                {
                    Ok(_) => {
                        half.wake();
                        if std::ptr::eq(half, &self.read) {
                            self.read_deadline_changed();
                        }
                        return Some((cur, w));
                    }
                    Err(now) => cur = now,
                }
            }
            None
        })
    }

    /// Undoes [`cap_deadlines`](Self::cap_deadlines): a direction still holding the
    /// overlay's word gets its previous word back; one that a setter changed meanwhile
    /// keeps the setter's value.
    pub(crate) fn restore_deadline_words(&self, overlay: [Option<(u64, u64)>; 2]) {
        for (half, o) in [&self.read, &self.write].into_iter().zip(overlay) {
            if let Some((prev, installed)) = o
                && half
                    .deadline
                    .compare_exchange(installed, prev, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                half.wake();
                if std::ptr::eq(half, &self.read) {
                    self.read_deadline_changed();
                }
            }
        }
    }

    /// `Ok(None)` for `EAGAIN`, the error tagged with `op` otherwise.
    fn nonblocking<T>(op: &'static str, res: io::Result<T>) -> Result<Option<T>> {
        match res {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::sys(op, e)),
        }
    }

    /// One `accept4`, retrying `EINTR` (in `sys`) and `ECONNABORTED` (a connection reset
    /// while queued: take the next one); `Ok(None)` when the queue is empty.
    fn accept_once(fd: BorrowedFd<'_>) -> Result<Option<(OwnedFd, socket2::SockAddr)>> {
        loop {
            match sys::accept(fd) {
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                res => return Self::nonblocking("accept", res),
            }
        }
    }

    /// One non-blocking syscall for a layer above (the TLS transport): `Ok(None)` on
    /// `EAGAIN`. Checks close but not deadlines: OpenSSL treats a transport error as
    /// fatal, so the TLS layer checks deadlines itself (in [`check_deadline`] and
    /// [`wait_ready`]) where a timeout leaves its state intact. Takes no direction lock,
    /// so a TLS writer can read a record while a reader is parked.
    ///
    /// [`check_deadline`]: Self::check_deadline
    /// [`wait_ready`]: Self::wait_ready
    pub(crate) fn try_io(&self, buf: IoBuf<'_>) -> Result<Option<usize>> {
        let r = self.op()?;
        match buf {
            IoBuf::Read(b) => Self::nonblocking("read", sys::recv(r.fd(), b, 0)),
            IoBuf::Write(b) => Self::nonblocking("write", sys::send(r.fd(), b)),
        }
    }

    /// One read that never parks: `Ok(None)` when nothing is ready.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        let (r, _g) = self.begin(Dir::Read)?;
        let got = Self::nonblocking("read", sys::recv(r.fd(), buf, 0))?;
        if got.is_none() {
            self.drained.store(true, Ordering::Relaxed);
        }
        Ok(got)
    }

    /// Waits until at least one byte or EOF is readable; true at EOF.
    pub(crate) fn eof(&self) -> Result<bool> {
        let (r, _g) = self.begin(Dir::Read)?;
        let mut b = [0u8; 1];
        loop {
            match sys::recv(r.fd(), &mut b, libc::MSG_PEEK) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(Dir::Read)?,
                Err(e) => return Err(Error::sys("recv(MSG_PEEK)", e)),
            }
        }
    }

    /// Bytes queued for reading now, without waiting.
    pub(crate) fn readable_now(&self) -> Result<usize> {
        let r = self.op()?;
        sys::bytes_readable(r.fd()).map_err(|e| Error::sys("ioctl(FIONREAD)", e))
    }

    /// Writes all of `buf`. A deadline, close or error after partial progress returns
    /// `Ok(written)`; the next call reports the error (it is still there).
    pub(crate) fn write(&self, buf: &[u8]) -> Result<usize> {
        let (r, _g) = self.begin(Dir::Write)?;
        let mut done = 0;
        while done < buf.len() {
            match sys::send(r.fd(), &buf[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.counted_wait(Dir::Write) {
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                }
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(Error::sys("write", e)),
            }
        }
        Ok(done)
    }

    /// One gathered write (`sendmsg`), waiting on `EAGAIN`.
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> Result<usize> {
        let (r, _g) = self.begin(Dir::Write)?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        loop {
            match sys::sendmsg(r.fd(), bufs) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.counted_wait(Dir::Write)?,
                Err(e) => return Err(Error::sys("write", e)),
            }
        }
    }

    /// Accepts one connection, parking on the read direction. `EINTR` and `ECONNABORTED`
    /// are retried; `EMFILE`/`ENFILE` come back at once (the queued connection stays
    /// queued), so a caller never spins on a readiness that cannot be consumed.
    pub(crate) fn accept(&self) -> Result<(OwnedFd, socket2::SockAddr)> {
        let (r, _g) = self.begin(Dir::Read)?;
        // `drained` here: the last accept had to wait, so the queue is likely empty again
        // (light load) and parking first saves an accept4 that would fail. Under a burst
        // accepts succeed without waiting and the hint stays off.
        let mut waited = self.drained.load(Ordering::Relaxed);
        if waited {
            self.wait(Dir::Read)?;
        }
        loop {
            if let Some(x) = Self::accept_once(r.fd())? {
                self.drained.store(waited, Ordering::Relaxed);
                return Ok(x);
            }
            waited = true;
            self.wait(Dir::Read)?;
        }
    }

    /// One `accept4` that never parks and ignores the deadline; `Ok(None)` when nothing
    /// is queued.
    pub(crate) fn try_accept(&self) -> Result<Option<(OwnedFd, socket2::SockAddr)>> {
        let r = self.op()?;
        let _g = lock(&self.read.lock);
        Self::accept_once(r.fd())
    }

    /// Starts a connect and waits for it (bounded by the write deadline), then reads
    /// `SO_ERROR`. Close from another thread cancels it with [`Error::Closed`].
    pub(crate) fn connect(&self, addr: &socket2::SockAddr) -> Result<()> {
        let (r, _g) = self.begin(Dir::Write)?;
        match sys::connect(r.fd(), addr) {
            Ok(()) => return Ok(()),
            // EAGAIN is not "in progress": a unix listener's queue is full, or TCP ran out
            // of local ports. Go reports it at once; waiting would spin on POLLOUT.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.raw_os_error() == Some(libc::EISCONN) => return Ok(()),
            Err(e) => return Err(Error::sys("connect", e)),
        }
        loop {
            self.wait(Dir::Write)?;
            match sys::take_error(r.fd()) {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(Error::sys("connect", e)),
            }
            // A spurious wake leaves the connect pending: getpeername tells.
            if sys::sock(&r.fd()).peer_addr().is_ok() {
                return Ok(());
            }
        }
    }

    /// Receives one datagram: `f(fd, block)` is one receive (waiting in the kernel only
    /// when `block`, which is asked only in blocking mode, module docs), retried until it
    /// succeeds, fails, the deadline passes or `close` runs. `sender` names the value's
    /// source address, so wake datagrams (module docs) are dropped, never returned.
    ///
    /// In blocking mode every attempt is one [`Fd::block_once`]: a blocking `recvfrom`
    /// returns at once when a datagram is queued, so trying first would only add a
    /// syscall when none is, and there is no spin: the kernel's wake-up is then std's
    /// own, and spinning would trade CPU for latency (measured in the in-process
    /// ping-pong: dozens of failed `recvfrom`s per round trip).
    pub(crate) fn receive_datagram<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(BorrowedFd<'_>, bool) -> io::Result<T>,
        sender: impl Fn(&T) -> &socket2::SockAddr,
    ) -> Result<T> {
        let (r, _g, began) = self.begin_left(Dir::Read)?;
        if let Some(d) = self.dgram.get() {
            let mut known = Some(began);
            loop {
                // `None` or a wake: re-check close and the deadline, and wait again.
                if let Some(v) = self.block_once(&r, op, &mut f, known.take())?
                    && sender(&v).as_socket() != Some(d.sender.addr)
                {
                    return Ok(v);
                }
            }
        }
        // A receive that had to wait says the queue is likely empty again (the receiver
        // keeps up with its sender); one that did not turns the hint off (as `accept`).
        self.receive(&r, op, |fd| f(fd, false), |_, waited| waited)
    }

    /// Runs one non-blocking syscall of the write direction (a datagram send), parking
    /// on `EAGAIN` until it succeeds, fails, the deadline passes or `close` runs.
    pub(crate) fn write_with<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Result<T> {
        let (r, _g) = self.begin(Dir::Write)?;
        loop {
            match f(r.fd()) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.counted_wait(Dir::Write)?,
                Err(e) => return Err(Error::sys(op, e)),
            }
        }
    }

    /// Runs a control call (option, shutdown) on the open descriptor.
    pub(crate) fn control<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Result<T> {
        let r = self.op()?;
        f(r.fd()).map_err(|e| Error::sys(op, e))
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // `&mut self`: no operation reference can exist, so nothing waits to be woken.
        let state = *self.state.get_mut();
        if state & CLOSED == 0 || *self.retired.get_mut() {
            // SAFETY: we own the number (the socket, or the placeholder `retire` put
            // there) and nothing can use it after the value is gone.
            unsafe { sys::close(self.raw) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn pair() -> (Fd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Fd::new(a.into()), b)
    }

    #[test]
    fn deadline_words() {
        assert_eq!(deadline_word(None), NO_DEADLINE);
        assert!(deadline_word(Some(Instant::now())) > 0);
        let far = Instant::now() + Duration::from_secs(1 << 40);
        assert!(deadline_word(Some(far)) > now_ns());
    }

    #[test]
    fn past_deadline_fails_even_with_data() {
        let (fd, mut peer) = pair();
        io::Write::write_all(&mut peer, b"x").unwrap();
        fd.set_deadline(Dir::Read, Some(Instant::now() - Duration::from_millis(1)))
            .unwrap();
        let mut b = [0u8; 4];
        assert!(matches!(fd.read(&mut b), Err(Error::DeadlineExceeded)));
        fd.set_deadline(Dir::Read, None).unwrap();
        assert_eq!(fd.read(&mut b).unwrap(), 1);
    }

    #[test]
    fn close_waits_for_in_flight_operations() {
        let (fd, _peer) = pair();
        let r = fd.op().unwrap();
        std::thread::scope(|s| {
            let closer = s.spawn(|| fd.close());
            std::thread::sleep(Duration::from_millis(30));
            assert!(
                !closer.is_finished(),
                "close returned while an operation held the fd"
            );
            assert!(!fd.is_open());
            // The descriptor is still valid for the holder.
            assert!(sys::sock(&r.fd()).r#type().is_ok());
            drop(r);
            closer.join().unwrap();
        });
        assert!(matches!(fd.op(), Err(Error::Closed)));
    }

    #[test]
    fn wake_descriptors_are_returned_and_bounded() {
        // Many threads that each parked once leave at most MAX_IDLE_WAKES behind.
        let fds: Vec<_> = (0..MAX_IDLE_WAKES + 40).map(|_| pair()).collect();
        std::thread::scope(|s| {
            for (fd, _) in &fds {
                s.spawn(move || {
                    fd.set_deadline(Dir::Read, Some(Instant::now() + Duration::from_millis(30)))
                        .unwrap();
                    let mut b = [0u8; 1];
                    assert!(matches!(fd.read(&mut b), Err(Error::DeadlineExceeded)));
                });
            }
        });
        assert!(idle_wakes() <= MAX_IDLE_WAKES, "{} idle", idle_wakes());
    }

    #[test]
    fn blind_wait_sees_close_and_deadlines() {
        let (fd, mut peer) = pair();
        let half = &fd.read;
        // Data: ready at once.
        io::Write::write_all(&mut peer, b"x").unwrap();
        fd.park(half, Dir::Read, -1).unwrap();
        let mut b = [0u8; 1];
        fd.read(&mut b).unwrap();
        std::thread::scope(|s| {
            let t = Instant::now();
            let waiter = s.spawn(|| {
                let _r = fd.op()?;
                fd.park(&fd.read, Dir::Read, -1)
            });
            std::thread::sleep(Duration::from_millis(20));
            // Nobody can signal a blind waiter: it must notice the deadline on its own.
            fd.set_deadline(Dir::Read, Some(Instant::now())).unwrap();
            assert!(matches!(
                waiter.join().unwrap(),
                Err(Error::DeadlineExceeded)
            ));
            assert!(t.elapsed() < Duration::from_secs(2));
            fd.set_deadline(Dir::Read, None).unwrap();
            let waiter = s.spawn(|| {
                let _r = fd.op()?;
                fd.park(&fd.read, Dir::Read, -1)
            });
            std::thread::sleep(Duration::from_millis(20));
            fd.close();
            assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
        });
    }

    #[test]
    fn kernel_timeouts_fit_the_deadline_and_are_kept_while_they_do() {
        let ms = 1_000_000;
        for left in [BLOCK_MIN_NS, 50 * ms, 200 * ms, 5_000 * ms, u64::MAX / 2] {
            let t = kernel_timeout(0, Some(left)).unwrap();
            // Jiffy rounding, then the timer wheel's slack (< 1/8) on the rounded
            // value, still end before it.
            assert!(
                (t + JIFFY_NS) + (t + JIFFY_NS) / 8 <= left,
                "{t} for {left}"
            );
            assert!((1_000..=RCVTIMEO_CAP_NS).contains(&t));
            // Every timeout kept for this deadline fits it too.
            for i in 0..=200u64 {
                let kept = t / 2 + (t / 100) * i;
                if kernel_timeout(kept, Some(left)).is_none() {
                    let end = (kept + JIFFY_NS) + (kept + JIFFY_NS) / 8;
                    assert!(end <= left, "kept {kept} for {left}");
                }
            }
            // Re-armed a little later (per-receive deadlines): no new setsockopt.
            assert_eq!(kernel_timeout(t, Some(left - ms.min(left / 100))), None);
            assert_eq!(kernel_timeout(t, Some(left + ms)), None);
            // Closer than it fits: replaced by one that does.
            let closer = (t + JIFFY_NS) + (t + JIFFY_NS) / 8 - 1;
            if closer >= BLOCK_MIN_NS {
                let n = kernel_timeout(t, Some(closer)).unwrap();
                assert!((n + JIFFY_NS) + (n + JIFFY_NS) / 8 <= closer);
            }
        }
        let t = kernel_timeout(0, None).unwrap();
        assert!((RCVTIMEO_CAP_NS / 2..=RCVTIMEO_CAP_NS).contains(&t));
        assert_eq!(kernel_timeout(t, None), None);
        // A far deadline after "none": the cap still holds.
        assert_eq!(kernel_timeout(t, Some(u64::MAX / 2)), None);
    }

    #[test]
    fn blocking_receives_only_where_a_wake_stays_on_the_machine() {
        let fd = || Fd::new(sys::dgram_socket(socket2::Domain::IPV4).unwrap());
        for addr in [
            "224.0.0.1:5000",
            "255.255.255.255:5000",
            "10.1.2.3:5000",
            "127.0.0.1:0",
        ] {
            let f = fd();
            assert!(!f.enable_blocking_receives(addr.parse().unwrap()), "{addr}");
            assert!(!f.receives_block());
        }
        for addr in ["127.0.0.1:5000", "0.0.0.0:5000", "127.0.0.7:5000"] {
            let f = fd();
            assert_eq!(
                f.enable_blocking_receives(addr.parse().unwrap()),
                sys::BLOCKING_DGRAM_RECV,
                "{addr}"
            );
            assert_eq!(f.receives_block(), sys::BLOCKING_DGRAM_RECV);
        }
    }

    #[test]
    fn a_burst_of_deadline_changes_sends_one_wake_per_sleep() {
        if !sys::BLOCKING_DGRAM_RECV {
            return; // no blocking receives, no wakes
        }
        // A receive asleep in the kernel (`blocked`, as `block_once` sets it; no thread
        // needed) and a thread that re-arms the deadline in a loop: one wake wakes it,
        // more would only fill its receive buffer and crowd out data.
        let fd = Fd::new(sys::dgram_socket(socket2::Domain::IPV4).unwrap());
        let lo = sys::ip_addr("127.0.0.1:0".parse().unwrap());
        fd.control("bind", |f| sys::sock(&f).bind(&lo)).unwrap();
        fd.control("setsockopt", |f| sys::sock(&f).set_recv_buffer_size(1))
            .unwrap();
        let local = fd
            .control("getsockname", |f| sys::sock(&f).local_addr())
            .unwrap();
        assert!(fd.enable_blocking_receives(local.as_socket().unwrap()));
        fd.blocked.store(true, Ordering::SeqCst);
        for i in 0..200 {
            let at = Instant::now() + Duration::from_secs(20 + i);
            fd.set_deadline(Dir::Read, Some(at)).unwrap();
        }
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"data", local.as_socket().unwrap()).unwrap();
        let wake = fd.dgram.get().unwrap().sender.addr;
        let (mut wakes, mut data) = (0, 0);
        let mut buf = [0u8; 8];
        while let Ok((n, _, from)) = fd.control("recv", |f| sys::recv_from(f, &mut buf, false)) {
            if from.as_socket() == Some(wake) {
                wakes += 1;
            } else {
                assert_eq!(&buf[..n], b"data");
                data += 1;
            }
        }
        assert_eq!((wakes, data), (1, 1));
    }

    #[test]
    fn a_datagram_send_on_a_blocking_description_waits_in_poll() {
        if !sys::BLOCKING_DGRAM_RECV {
            return; // this backend never makes a description blocking
        }
        // Sends pass MSG_DONTWAIT, so a full queue parks the sender in `ppoll` as on a
        // non-blocking description: the write deadline and a later drain both work.
        let path = std::env::temp_dir().join(format!("reseau-poll-dgram-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let to = sys::unix_addr(&path).unwrap();
        let fd = std::sync::Arc::new(Fd::new(sys::dgram_socket(socket2::Domain::UNIX).unwrap()));
        fd.control("fcntl", |f| sys::set_blocking(f, true)).unwrap();
        fd.set_deadline(
            Dir::Write,
            Some(Instant::now() + Duration::from_millis(200)),
        )
        .unwrap();
        let send = move |fd: &Fd| fd.write_with("send", |f| sys::send_to(f, &[1u8; 512], &to));
        // In a thread, so a send that sleeps in the kernel fails the test, not hangs it.
        let (done, res) = std::sync::mpsc::channel();
        let (fd2, send2) = (fd.clone(), send.clone());
        std::thread::spawn(move || {
            let full = loop {
                if let Err(e) = send2(&fd2) {
                    break e;
                }
            };
            let _ = done.send(full);
        });
        let full = res
            .recv_timeout(Duration::from_secs(20))
            .expect("a send slept on the full queue");
        assert!(matches!(full, Error::DeadlineExceeded), "{full:?}");
        fd.set_deadline(Dir::Write, Some(Instant::now() + Duration::from_secs(20)))
            .unwrap();
        let (done, res) = std::sync::mpsc::channel();
        let fd2 = fd.clone();
        std::thread::spawn(move || {
            let _ = done.send(send(&fd2));
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(res.try_recv().is_err(), "a send went through a full queue");
        let mut b = [0u8; 512];
        rx.recv(&mut b).unwrap();
        let sent = res.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(sent.unwrap(), 512);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn spinning_is_only_for_quick_peers_in_an_idle_process() {
        assert!(may_spin(10_000, 0));
        assert!(!may_spin(u64::MAX, 0), "no wait measured yet");
        assert!(!may_spin(SPIN_IF_WAITED_NS + 1, 0), "slow peer");
        assert!(!may_spin(10_000, 1), "another thread is parked");
    }

    #[test]
    fn a_spin_keeps_close_and_deadline_semantics() {
        let (fd, _peer) = pair();
        let would_block = || Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock));
        // Nothing comes: gives up after the budget, so the caller parks.
        let t = Instant::now();
        assert!(fd.spin_loop("read", would_block).is_none());
        assert!(t.elapsed() >= Duration::from_nanos(SPIN_NS));
        // Data after a few tries: returned, and the short wait is remembered.
        let mut n = 0;
        let got = fd.spin_loop("read", || {
            n += 1;
            if n < 5 { would_block() } else { Ok(()) }
        });
        assert!(matches!(got, Some(Ok(()))));
        assert!(fd.last_wait_ns.load(Ordering::Relaxed) < SPIN_IF_WAITED_NS);
        // Other errors carry the caller's op.
        let e = fd
            .spin_loop("recv", || {
                Err::<(), _>(io::Error::from_raw_os_error(libc::EIO))
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(e.op(), Some("recv"));
        // A passed deadline fails even when the attempt would succeed.
        fd.set_deadline(Dir::Read, Some(Instant::now() - Duration::from_millis(1)))
            .unwrap();
        let got = fd.spin_loop("read", || Ok(()));
        assert!(matches!(got, Some(Err(Error::DeadlineExceeded))), "{got:?}");
        fd.set_deadline(Dir::Read, None).unwrap();
        // A close seen while spinning ends the spin.
        fd.close();
        let got = fd.spin_loop("read", || Ok(()));
        assert!(matches!(got, Some(Err(Error::Closed))), "{got:?}");
    }
}
