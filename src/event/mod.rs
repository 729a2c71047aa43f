//! Event-driven connections: many connections on a few loop threads, served through a
//! handler's lifecycle callbacks (ponylang/lori's `TCPConnection`, in Rust).
//!
//! A [`Runtime`] runs N loop threads (default: one per core), each owning a
//! `mio::Poll`. A connection belongs to one loop for its whole life; its [`Handler`]
//! (a user type) is called on that loop with a [`Conn`] context to send, close, mute,
//! set timers and read addresses. Nothing blocks a loop: name resolution runs on the
//! crate's resolver pool and reports back through the loop's waker, connects are
//! non-blocking (RFC 8305 Happy Eyeballs, 250 ms stagger), and unsent bytes are
//! queued per connection with write interest only while the queue is non-empty.
//! Other threads reach a connection through its [`Handle`].
//!
//! Use the blocking API ([`tcp`](crate::tcp), [`tls`](crate::tls)) for a few
//! connections, or when code reads best as straight-line calls with deadlines; use this
//! layer when connections are many (thousands on two threads) or mostly idle.
//!
//! ```
//! use std::io::{Read, Write};
//! use reseau::event::{Conn, Handler, Runtime, ServerOptions};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
//!         let _ = conn.send(data);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = Runtime::builder().threads(2).build()?;
//! let server = rt.listen(reseau::tcp::loopback_addr(0), ServerOptions::default(), |_peer| Echo)?;
//! let mut c = std::net::TcpStream::connect(server.local_addr())?;
//! c.write_all(b"hello")?;
//! let mut buf = [0u8; 5];
//! c.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok(()) }
//! ```
//!
//! Lifecycle guarantees, per connection: a client gets exactly one of
//! [`connected`](Handler::connected) or [`connect_failed`](Handler::connect_failed);
//! a connection that was connected gets [`closed`](Handler::closed) exactly once, and
//! no callback after it; a TLS server's connection whose handshake fails gets only
//! [`tls_failed`](Handler::tls_failed). TLS ([`ServerOptions::tls`],
//! [`ConnectOptions::tls`], [`Conn::start_tls`]) runs OpenSSL over memory buffers on
//! the loop: handshakes advance only when ciphertext arrives. A callback that panics hard-closes its own connection (its
//! `closed` still runs) and nothing else.

mod conn;
mod dial;
mod reactor;
mod timer;
mod tls;

use std::fmt;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use self::conn::{CloseReq, ConnState, Phase};
use self::reactor::{Cmd, ListenerShared, Loop, LoopConfig, RtShared, Shared, Target};
use self::tls::{Prepared, Role};
use crate::resolve::{Policy, Resolver, SystemResolver};
use crate::{Error, Result};

/// Default high-water mark of a connection's unsent bytes: past it the handler is
/// [`throttled`](Handler::throttled).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default size of each loop's read buffer (shared by all of the loop's connections).
pub const DEFAULT_READ_BUFFER: usize = 256 * 1024;
/// Largest read buffer [`Builder::read_buffer_size`] accepts (1 GiB): each loop
/// allocates one up front.
pub const MAX_READ_BUFFER: usize = 1 << 30;
/// Largest frame [`Conn::buffer_until`] accepts (1 GiB, the largest read buffer): a
/// connection holds at most one frame less a byte of undelivered data. lori bounds
/// its frames by its read buffer in the same way.
pub const MAX_FRAME: usize = MAX_READ_BUFFER;

/// Lifecycle callbacks of one connection, run on the connection's loop thread.
///
/// Every method but [`received`](Handler::received) has an empty default. Callbacks
/// must not block: a slow callback delays every connection of its loop.
pub trait Handler: Send + 'static {
    /// The connection is ready: a client connected, or a server accepted it; with TLS
    /// ([`ConnectOptions::tls`], [`ServerOptions::tls`]), after the handshake.
    fn connected(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A client could not connect (resolution, every attempt, its TLS handshake, the
    /// connection timeout, or [`Handle::close`] before it connected); no other
    /// callback follows. The error is an [`Error::Op`] wrapping the
    /// first attempt's error (every attempt's error in `attempts()`), or
    /// [`Error::DialTimeout`] inside one, or [`Error::Closed`] when the runtime stopped.
    fn connect_failed(&mut self, err: Error) {
        let _ = err;
    }

    /// Bytes arrived (decrypted, on TLS). `data` is at most one read's worth: the
    /// loop's read buffer, or less with [`set_read_size`](Conn::set_read_size), or on
    /// TLS at most one record (16 KiB); with [`buffer_until`](Conn::buffer_until),
    /// exactly that many bytes.
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]);

    /// Every byte of the send that returned `token` was handed to the kernel. Tokens
    /// complete in order, after the callback that made the send returns.
    fn sent(&mut self, conn: &mut Conn<'_>, token: SendToken) {
        let _ = (conn, token);
    }

    /// Unsent bytes passed the high-water mark ([`Conn::set_watermarks`]).
    fn throttled(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// The unsent bytes drained to the low-water mark after [`throttled`](Handler::throttled).
    fn unthrottled(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// The one-shot timer set with [`Conn::set_timer`] fired.
    fn timer(&mut self, conn: &mut Conn<'_>, token: TimerToken) {
        let _ = (conn, token);
    }

    /// Nothing was received or sent for the [`idle timeout`](Conn::set_idle_timeout);
    /// it re-arms after firing.
    fn idle_timeout(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A [`start_tls`](Conn::start_tls) handshake completed: sends are accepted again
    /// and go out encrypted.
    fn tls_ready(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A TLS handshake failed (verification, protocol, the peer closing, its
    /// `handshake_timeout` as [`Error::TlsHandshakeTimeout`]). On a TLS server's
    /// accepted connection it is the only callback (no `connected`, no `closed`);
    /// after [`start_tls`](Conn::start_tls), [`closed`](Handler::closed) follows. A TLS
    /// client's first handshake reports through
    /// [`connect_failed`](Handler::connect_failed) instead.
    fn tls_failed(&mut self, err: Error) {
        let _ = err;
    }

    /// The connection is closed (by either side, an error, or the runtime stopping).
    /// The last callback.
    fn closed(&mut self) {}
}

/// Identifies one [`Conn::send`]; reported to [`Handler::sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendToken(pub(crate) u64);

impl SendToken {
    /// The token's number: 1 for a connection's first send, then counting up.
    pub fn id(self) -> u64 {
        self.0
    }
}

/// Identifies one [`Conn::set_timer`]; reported to [`Handler::timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerToken(pub(crate) u64);

/// A connection, as its handler's callbacks see it.
pub struct Conn<'a> {
    pub(crate) st: &'a mut ConnState,
    pub(crate) shared: &'a Arc<Shared>,
}

impl fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.st.peer)
            .field("local", &self.st.local)
            .field("queued", &self.st.queued())
            .finish()
    }
}

impl Conn<'_> {
    /// Sends `data`: written at once when nothing is queued, the rest queued and
    /// written as the socket drains (a graceful close still sends it).
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection is not open: closing, closed, or in a TLS
    /// handshake (until [`connected`](Handler::connected) or
    /// [`tls_ready`](Handler::tls_ready)).
    pub fn send(&mut self, data: &[u8]) -> Result<SendToken> {
        self.send_vectored(&[data])
    }

    /// Sends several buffers as one stream, in one `writev` when nothing is queued.
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection is closing or closed.
    pub fn send_vectored(&mut self, bufs: &[&[u8]]) -> Result<SendToken> {
        if !self.st.is_open() {
            return Err(Error::Closed);
        }
        Ok(SendToken(self.st.send_tracked(bufs)))
    }

    /// Closes gracefully: queued bytes are sent, then FIN; the connection ends once the
    /// peer's FIN arrives (or after 10 s). A muted connection closes hard instead.
    pub fn close(&mut self) {
        self.st.close_req = self.st.close_req.max(CloseReq::Graceful);
    }

    /// Closes at once with a reset (RST); queued bytes are dropped.
    pub fn hard_close(&mut self) {
        self.st.close_req = CloseReq::Hard;
    }

    /// Stops reading from the socket (and delivering held bytes) until
    /// [`unmute`](Conn::unmute). Writing goes on.
    pub fn mute(&mut self) {
        self.st.muted = true;
    }

    /// Resumes reading; bytes held meanwhile are delivered first.
    pub fn unmute(&mut self) {
        if self.st.muted {
            self.st.muted = false;
            self.st.kick = true;
        }
    }

    /// Whether the connection is muted.
    pub fn is_muted(&self) -> bool {
        self.st.muted
    }

    /// Stops delivering for this turn: the loop serves other connections and comes
    /// back to this one on its next turn.
    pub fn yield_read(&mut self) {
        self.st.yield_now = true;
    }

    /// Delivers [`received`](Handler::received) in chunks of exactly `n` bytes
    /// (`Some(n)`), or whatever arrives (`None`, the default). Bytes of a frame are
    /// held until it is complete, so `n` is bounded by [`MAX_FRAME`]; nothing of its
    /// size is allocated up front.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `Some(0)` or more than [`MAX_FRAME`] bytes (the
    /// framing is unchanged).
    pub fn buffer_until(&mut self, n: Option<usize>) -> Result<()> {
        match n {
            Some(0) => Err(Error::InvalidArgument(
                "buffer_until needs at least 1 byte".to_string(),
            )),
            Some(n) if n > MAX_FRAME => Err(Error::InvalidArgument(format!(
                "buffer_until of {n} bytes above the maximum frame of {MAX_FRAME}"
            ))),
            n => {
                self.st.frame = n.unwrap_or(0);
                if !self.st.held.is_empty() {
                    // Held bytes may make whole frames now: deliver them without
                    // waiting for more to arrive.
                    self.st.kick = true;
                }
                Ok(())
            }
        }
    }

    /// Sets the back-pressure marks: [`throttled`](Handler::throttled) fires when more
    /// than `high` bytes are unsent, [`unthrottled`](Handler::unthrottled) when at most
    /// `low` are left (defaults: [`DEFAULT_HIGH_WATER`] and 0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `low > high`.
    pub fn set_watermarks(&mut self, high: usize, low: usize) -> Result<()> {
        if low > high {
            return Err(Error::InvalidArgument(
                "low-water mark above high-water mark".to_string(),
            ));
        }
        self.st.high_water = high;
        self.st.low_water = low;
        Ok(())
    }

    /// Bytes accepted by `send` but not yet handed to the kernel.
    pub fn queued(&self) -> usize {
        self.st.queued()
    }

    /// Whether the handler is currently throttled.
    pub fn is_throttled(&self) -> bool {
        self.st.throttled
    }

    /// Whether a send now would go straight to the kernel: open, nothing queued.
    pub fn is_writeable(&self) -> bool {
        self.st.is_open() && self.st.queued() == 0
    }

    /// Arms the connection's one-shot timer: [`Handler::timer`] fires after `after`.
    /// Not moved by I/O; survives a graceful close; a hard close cancels it. A
    /// duration too long to represent (`Duration::MAX`) never fires.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a timer is already active or `after` is zero;
    /// [`Error::Closed`] when the connection is not open.
    pub fn set_timer(&mut self, after: Duration) -> Result<TimerToken> {
        if after.is_zero() {
            return Err(Error::InvalidArgument(
                "timer duration must be positive".to_string(),
            ));
        }
        if !self.st.is_open() {
            return Err(Error::Closed);
        }
        if self.st.timer.is_some() {
            return Err(Error::InvalidArgument("timer already active".to_string()));
        }
        self.st.timer_ids += 1;
        let id = self.st.timer_ids;
        self.st.timer = Some((id, timer::deadline(self.st.now, after)));
        self.st.timer_push = true;
        Ok(TimerToken(id))
    }

    /// Cancels the timer `token` named; a stale or foreign token is ignored.
    pub fn cancel_timer(&mut self, token: TimerToken) {
        if self.st.timer.is_some_and(|(id, _)| id == token.0) {
            self.st.timer = None;
        }
    }

    /// Sets a rolling idle timeout: [`Handler::idle_timeout`] fires when nothing was
    /// received or sent for `after`, and again after each further `after` of silence.
    /// `None` disables it; a close cancels it.
    pub fn set_idle_timeout(&mut self, after: Option<Duration>) {
        self.st.idle = after.filter(|d| !d.is_zero());
        self.st.idle_base = self.st.now;
    }

    /// Sets `TCP_NODELAY` (on by default).
    ///
    /// # Errors
    /// [`Error::Sys`] `setsockopt`, or [`Error::Closed`] without a socket.
    pub fn set_nodelay(&mut self, on: bool) -> Result<()> {
        let s = self.socket()?;
        s.set_tcp_nodelay(on).map_err(sys("setsockopt"))
    }

    /// Turns TCP keepalive on with probes after `idle` of silence, or off (`None`).
    ///
    /// # Errors
    /// [`Error::Sys`] `setsockopt`, or [`Error::Closed`] without a socket.
    pub fn set_keepalive(&mut self, idle: Option<Duration>) -> Result<()> {
        let s = self.socket()?;
        match idle {
            None => s.set_keepalive(false),
            Some(d) => s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(d)),
        }
        .map_err(sys("setsockopt"))
    }

    /// The socket, for any other option (`SO_SNDBUF`, `SO_RCVBUF`, raw
    /// `getsockopt`/`setsockopt` through `socket2`). Do not change `O_NONBLOCK`.
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection has no socket (not connected).
    pub fn socket(&self) -> Result<socket2::SockRef<'_>> {
        self.st
            .stream
            .as_ref()
            .map(socket2::SockRef::from)
            .ok_or(Error::Closed)
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.st.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.st.peer
    }

    /// A handle to reach this connection from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
            target: Target::Slot {
                slot: self.st.slot,
                epoch: self.st.epoch,
            },
        }
    }

    /// Caps each socket read, and so each [`received`](Handler::received), at `bytes`
    /// (lori's `read_buffer_size` for one connection). The buffer itself is the loop's,
    /// shared by its connections ([`Builder::read_buffer_size`]): a size above it is
    /// capped there, and `None` goes back to it. Frames of
    /// [`buffer_until`](Conn::buffer_until) are delivered whole whatever this is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `Some(0)`.
    pub fn set_read_size(&mut self, bytes: Option<usize>) -> Result<()> {
        match bytes {
            Some(0) => Err(Error::InvalidArgument(
                "read size must be at least 1 byte".to_string(),
            )),
            n => {
                self.st.read_size = n.unwrap_or(0);
                Ok(())
            }
        }
    }

    /// The per-connection read cap ([`set_read_size`](Conn::set_read_size)), `None`
    /// when reads fill the loop's buffer.
    pub fn read_size(&self) -> Option<usize> {
        (self.st.read_size != 0).then_some(self.st.read_size)
    }

    /// Whether the connection runs TLS (from the start, or after
    /// [`start_tls`](Conn::start_tls)).
    pub fn is_tls(&self) -> bool {
        self.st.tls.is_some()
    }

    /// Upgrades an open plaintext connection to TLS (STARTTLS): `server` picks the
    /// side; a client's `server_name` defaults to the peer's IP. Sends are refused
    /// until [`tls_ready`](Handler::tls_ready); a failure calls
    /// [`tls_failed`](Handler::tls_failed), then [`closed`](Handler::closed).
    ///
    /// Refused while plaintext the handler has not seen is buffered (CVE-2021-23222:
    /// bytes a man in the middle sent after the STARTTLS command would otherwise be
    /// taken as if they came over TLS). With [`buffer_until`](Conn::buffer_until)
    /// framing the rest of the read counts; without it each `received` gets the whole
    /// read, and a handler that finds bytes after its command in `data` must not
    /// upgrade.
    ///
    /// # Errors
    /// [`Error::TlsUpgradeNotReady`] when not open, already TLS, muted, with unsent
    /// bytes queued, or with unread plaintext buffered (the connection is unchanged);
    /// [`Error::TlsConfig`] for an invalid `config`; [`Error::Tls`] when no session
    /// can be created.
    pub fn start_tls(&mut self, config: &crate::tls::Config, server: bool) -> Result<()> {
        let st = &mut *self.st;
        let refuse = |why: &str| Err(Error::TlsUpgradeNotReady(why.to_string()));
        if !st.is_open() {
            return refuse("connection not open");
        }
        if st.tls.is_some() {
            return refuse("already TLS");
        }
        if st.muted {
            return refuse("connection muted");
        }
        if st.queued() > 0 {
            return refuse("unsent bytes queued");
        }
        if !st.held.is_empty() || st.unread > 0 {
            return refuse("unread plaintext buffered (CVE-2021-23222)");
        }
        let host = st.peer.map(|p| p.ip().to_string());
        let p = Prepared::new(config.clone(), server, host.as_deref())?;
        let sess = p.session(st.peer)?;
        st.tls = Some(Box::new(sess));
        st.phase = Phase::Handshaking(Role::Upgrade);
        st.hs_limit = p.config.handshake_timeout;
        st.hs_push = true;
        if !server {
            // The ClientHello; the server waits for it.
            if let Some(t) = st.tls.as_mut()
                && let tls::Step::Failed(e) = t.handshake()
            {
                st.tls_err = Some(e);
                st.close_req = CloseReq::Hard;
            }
            st.push_tls_out();
        }
        Ok(())
    }
}

fn sys(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Sys { op, source }
}

/// Sends to or closes a connection from any thread, through its loop's waker.
/// Commands for a connection that has closed meanwhile are ignored.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    target: Target,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("loop", &self.shared.index)
            .field("target", &self.target)
            .finish()
    }
}

impl Handle {
    fn push(&self, cmd: Cmd) -> Result<()> {
        if self.shared.push(cmd) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Queues `data` to be sent (no [`SendToken`] is reported for it). Dropped when
    /// the connection is not open (a client still connecting, a TLS handshake).
    ///
    /// # Errors
    /// [`Error::Closed`] when the runtime has stopped.
    pub fn send(&self, data: impl Into<Vec<u8>>) -> Result<()> {
        self.push(Cmd::Send {
            target: self.target.clone(),
            data: data.into(),
        })
    }

    /// Closes gracefully, as [`Conn::close`]. A client still connecting is cancelled
    /// (its `connect_failed` gets [`Error::Closed`]); one in its first TLS handshake
    /// fails the same way.
    ///
    /// # Errors
    /// [`Error::Closed`] when the runtime has stopped.
    pub fn close(&self) -> Result<()> {
        self.push(Cmd::Close {
            target: self.target.clone(),
            hard: false,
        })
    }

    /// Closes with a reset, as [`Conn::hard_close`].
    ///
    /// # Errors
    /// [`Error::Closed`] when the runtime has stopped.
    pub fn hard_close(&self) -> Result<()> {
        self.push(Cmd::Close {
            target: self.target.clone(),
            hard: true,
        })
    }
}

/// How a client connects ([`Runtime::connect`]).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Gives up after this long (resolution, every attempt): `connect_failed` with
    /// [`Error::DialTimeout`] inside the `Op` error. `None`, or a duration too long
    /// to represent: no limit.
    pub connection_timeout: Option<Duration>,
    /// Binds the local end first. As with [`Dialer`](crate::resolve::Dialer), only
    /// a name's addresses of its family are tried, and an IP literal host of the
    /// other family is refused by [`Runtime::connect`].
    pub local_addr: Option<SocketAddr>,
    /// Address families allowed and preferred for a name's addresses (an IP literal
    /// host is dialed as given, as by [`Dialer`](crate::resolve::Dialer)).
    pub policy: Policy,
    /// RFC 8305 connection-attempt delay (`ZERO` = every attempt at once).
    pub attempt_delay: Duration,
    /// Resolves host names (off the loop, on the crate's resolver pool).
    pub resolver: Arc<dyn Resolver>,
    /// TLS client configuration (lori's `ssl_client`): `connected` follows the
    /// handshake, `connection_timeout` covers it, its failure goes to
    /// `connect_failed`. `server_name` defaults to the host given to
    /// [`Runtime::connect`]. `verify_connection` is not run by the event layer.
    pub tls: Option<crate::tls::Config>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connection_timeout: None,
            local_addr: None,
            policy: Policy::default(),
            attempt_delay: crate::resolve::DEFAULT_ATTEMPT_DELAY,
            resolver: Arc::new(SystemResolver::default()),
            tls: None,
        }
    }
}

/// How a server accepts ([`Runtime::listen`]).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Most connections open at once; beyond it accepting pauses (connections wait in
    /// the kernel's backlog) until one closes. At least 1 (`listen` refuses 0).
    pub max_connections: usize,
    /// TLS server configuration (lori's `ssl_server`): `connected` follows each
    /// accepted connection's handshake, a failed handshake calls only
    /// [`tls_failed`](Handler::tls_failed); `handshake_timeout` bounds it.
    pub tls: Option<crate::tls::Config>,
}

impl ServerOptions {
    fn check(&self) -> Result<()> {
        if self.max_connections == 0 {
            return Err(Error::InvalidArgument(
                "max_connections must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            max_connections: 100_000,
            tls: None,
        }
    }
}

/// Configures a [`Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    threads: Option<usize>,
    read_buffer: usize,
    read_budget: usize,
}

impl Builder {
    /// Number of loop threads (default: one per core; 0 counts as 1).
    pub fn threads(mut self, n: usize) -> Builder {
        self.threads = Some(n.max(1));
        self
    }

    /// Size of each loop's read buffer (default [`DEFAULT_READ_BUFFER`]; 0 counts as
    /// 1; at most [`MAX_READ_BUFFER`], checked by [`build`](Builder::build)).
    pub fn read_buffer_size(mut self, bytes: usize) -> Builder {
        self.read_buffer = bytes.max(1);
        self
    }

    /// Most bytes one connection reads per readiness before the loop serves others
    /// (default, and for 0: the read buffer's size).
    pub fn read_budget(mut self, bytes: usize) -> Builder {
        self.read_budget = bytes;
        self
    }

    /// Starts the loop threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a read buffer above [`MAX_READ_BUFFER`];
    /// [`Error::Sys`] `epoll_create`/`eventfd`/`spawn` when the system refuses.
    pub fn build(self) -> Result<Runtime> {
        if self.read_buffer > MAX_READ_BUFFER {
            return Err(Error::InvalidArgument(format!(
                "read buffer of {} bytes above the maximum of {MAX_READ_BUFFER}",
                self.read_buffer
            )));
        }
        let n = self
            .threads
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        let cfg = LoopConfig {
            read_buffer: self.read_buffer,
            read_budget: if self.read_budget == 0 {
                self.read_buffer
            } else {
                self.read_budget
            },
            events: 1024,
        };
        let mut loops = Vec::with_capacity(n);
        let mut shareds = Vec::with_capacity(n);
        for i in 0..n {
            let (lp, sh) = Loop::new(i, cfg).map_err(sys("epoll_create"))?;
            loops.push(lp);
            shareds.push(sh);
        }
        let rt = Arc::new(RtShared {
            loops: shareds,
            rr: AtomicUsize::new(0),
            next_listener: AtomicUsize::new(0),
        });
        let mut threads = Vec::with_capacity(n);
        for (i, lp) in loops.into_iter().enumerate() {
            let rt2 = rt.clone();
            let t = thread::Builder::new()
                .name(format!("reseau-event-{i}"))
                .spawn(move || lp.run(rt2));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let partial = Runtime { rt, threads };
                    drop(partial);
                    return Err(Error::Sys {
                        op: "spawn",
                        source: e,
                    });
                }
            }
        }
        Ok(Runtime { rt, threads })
    }
}

/// The loop threads. Dropping it stops them: every connection is hard-closed (its
/// `closed` runs) and every listener closes.
pub struct Runtime {
    rt: Arc<RtShared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("threads", &self.rt.loops.len())
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder {
            threads: None,
            read_buffer: DEFAULT_READ_BUFFER,
            read_budget: 0,
        }
    }

    /// A runtime with one loop per core.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub fn new() -> Result<Runtime> {
        Runtime::builder().build()
    }

    /// Number of loop threads.
    pub fn threads(&self) -> usize {
        self.rt.loops.len()
    }

    /// Listens on `addr` (`SO_REUSEADDR`, backlog = the system's somaxconn) and serves
    /// each accepted connection with a handler from `factory` (called with the peer's
    /// address on the accepting loop). One loop accepts; connections are handed to the
    /// loops round-robin.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `max_connections` 0; [`Error::TlsConfig`] for an
    /// invalid [`ServerOptions::tls`]; [`Error::Sys`] `socket`/`bind`/`listen`, naming
    /// `addr` (`bind 127.0.0.1:80: Address already in use …`); [`Error::Closed`] when
    /// the runtime stopped.
    pub fn listen<H, F>(&self, addr: SocketAddr, opts: ServerOptions, factory: F) -> Result<Server>
    where
        H: Handler,
        F: Fn(SocketAddr) -> H + Send + Sync + 'static,
    {
        opts.check()?;
        let bound = || {
            let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(sys("socket"))?;
            sock.set_reuse_address(true).map_err(sys("setsockopt"))?;
            sock.bind(&addr.into()).map_err(sys("bind"))?;
            // The kernel caps the backlog at net.core.somaxconn.
            sock.listen(i32::MAX).map_err(sys("listen"))?;
            Ok::<_, Error>(sock)
        };
        // Named like tcp::listen's: `bind 127.0.0.1:80: Address already in use`.
        let sock = bound().map_err(|e| e.with_addr(addr))?;
        self.serve(sock.into(), opts, factory)
    }

    /// Serves an already listening socket, as [`listen`](Runtime::listen).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `max_connections` 0; [`Error::TlsConfig`] for an
    /// invalid [`ServerOptions::tls`];
    /// [`Error::Sys`] when the socket cannot be made non-blocking or has no address;
    /// [`Error::Closed`] when the runtime stopped.
    pub fn serve<H, F>(&self, ln: StdListener, opts: ServerOptions, factory: F) -> Result<Server>
    where
        H: Handler,
        F: Fn(SocketAddr) -> H + Send + Sync + 'static,
    {
        opts.check()?;
        let tls = opts
            .tls
            .as_ref()
            .map(|c| Prepared::new(c.clone(), true, None))
            .transpose()?;
        ln.set_nonblocking(true).map_err(sys("fcntl"))?;
        let local = ln.local_addr().map_err(sys("getsockname"))?;
        let home = self.rt.next_loop().clone();
        let shared = Arc::new(ListenerShared {
            id: self.rt.next_listener.fetch_add(1, Ordering::Relaxed),
            limit: opts.max_connections,
            active: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            home: home.clone(),
            factory: Box::new(move |peer| Box::new(factory(peer)) as Box<dyn Handler>),
            local,
            tls,
        });
        let sock = mio::net::TcpListener::from_std(ln);
        if !home.push(Cmd::Listen(shared.clone(), sock)) {
            return Err(Error::Closed);
        }
        Ok(Server { shared })
    }

    /// Connects to `host:port` (a name or an IP literal) and serves the connection
    /// with `handler`: exactly one of [`connected`](Handler::connected) or
    /// [`connect_failed`](Handler::connect_failed) follows. Names resolve off the loop;
    /// addresses are raced with RFC 8305 Happy Eyeballs. As with
    /// [`Dialer`](crate::resolve::Dialer), an empty host or an unspecified address
    /// dials this machine's loopback, and an IPv6 literal may carry a zone (`fe80::1%eth0`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use reseau::event::{Conn, ConnectOptions, Handler, Runtime};
    ///
    /// struct Hello(mpsc::Sender<Vec<u8>>);
    /// impl Handler for Hello {
    ///     fn connected(&mut self, conn: &mut Conn<'_>) {
    ///         let _ = conn.send(b"hi");
    ///     }
    ///     fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
    ///         let _ = self.0.send(data.to_vec());
    ///         conn.close();
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ln = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let port = ln.local_addr()?.port();
    /// let rt = Runtime::builder().threads(1).build()?;
    /// let (tx, rx) = mpsc::channel();
    /// rt.connect("127.0.0.1", port, ConnectOptions::default(), Hello(tx))?;
    /// let (mut peer, _) = ln.accept()?;
    /// std::io::copy(&mut std::io::Read::take(&mut peer.try_clone()?, 2), &mut peer)?;
    /// assert_eq!(rx.recv().unwrap(), b"hi");
    /// # Ok(()) }
    /// ```
    ///
    /// The returned [`Handle`] works from the start: [`Handle::close`] cancels a
    /// client that has not connected yet.
    ///
    /// # Errors
    /// Found before any I/O: [`Error::InvalidArgument`] (a policy allowing no family,
    /// a host containing NUL, an IP literal host of the other family than
    /// [`ConnectOptions::local_addr`], as [`Dialer`](crate::resolve::Dialer) refuses
    /// it), [`Error::TlsConfig`] (an invalid [`ConnectOptions::tls`]); [`Error::Closed`]
    /// when the runtime stopped. Everything else arrives through `connect_failed`.
    pub fn connect<H: Handler>(
        &self,
        host: &str,
        port: u16,
        mut opts: ConnectOptions,
        handler: H,
    ) -> Result<Handle> {
        opts.policy.validate()?;
        crate::resolve::check_host(host)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = dial::literal(host, opts.local_addr);
        if let Err(e @ Error::InvalidArgument(_)) = literal {
            return Err(e);
        }
        // The config moves into the prepared context: no copy per connection.
        let tls = opts
            .tls
            .take()
            .map(|c| Prepared::new(c, false, Some(host)))
            .transpose()?;
        let cell = Arc::new(AtomicU64::new(reactor::UNSET));
        let handler = Box::new(handler);
        let cmd = reactor::connect_cmd(host, port, literal, opts, tls, handler, cell.clone());
        let shared = self.rt.next_loop().clone();
        if shared.push(cmd) {
            Ok(Handle {
                shared,
                target: Target::Client(cell),
            })
        } else {
            Err(Error::Closed)
        }
    }

    /// Serves an already connected stream with `handler` (its `connected` runs first).
    ///
    /// # Errors
    /// [`Error::Sys`] when the stream cannot be made non-blocking; [`Error::Closed`]
    /// when the runtime stopped.
    pub fn adopt<H: Handler>(&self, stream: std::net::TcpStream, handler: H) -> Result<()> {
        stream.set_nonblocking(true).map_err(sys("fcntl"))?;
        let _ = stream.set_nodelay(true);
        let cmd = Cmd::Adopt {
            stream: mio::net::TcpStream::from_std(stream),
            handler: Box::new(handler),
            listener: None,
        };
        if self.rt.next_loop().push(cmd) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for l in &self.rt.loops {
            l.push(Cmd::Shutdown);
        }
        let me = thread::current().id();
        for t in self.threads.drain(..) {
            // Dropped from one of its own handlers: that loop stops after the callback.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// A listening socket served by a [`Runtime`]; it keeps accepting until
/// [`close`](Server::close) or the runtime stops (dropping a `Server` does not close it).
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<ListenerShared>,
}

impl Server {
    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Connections of this server open now.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Stops accepting and closes the listening socket; open connections go on.
    pub fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            self.shared.home.push(Cmd::CloseListener(self.shared.id));
        }
    }
}
