//! TCP connections and listeners on concrete addresses.
//!
//! Blocking, `std::io`-shaped sockets with Go's deadlines and a `close` that wakes calls
//! blocked in other threads. Host names and `host:port` strings arrive with
//! `crate::resolve` (`tcp::dial`, `tcp::listen_on`).
//!
//! ```
//! use std::io::Read;
//! # fn main() -> reseau::Result<()> {
//! let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
//! let addr = ln.local_addr().unwrap();
//! let server = std::thread::spawn(move || -> reseau::Result<()> {
//!     let conn = ln.accept()?;
//!     let mut buf = [0u8; 5];
//!     conn.read_full(&mut buf)?;
//!     conn.write(&buf)?;
//!     Ok(())
//! });
//! let conn = reseau::tcp::connect(addr)?;
//! conn.write(b"hello")?;
//! let mut echo = String::new();
//! (&conn).read_to_string(&mut echo).unwrap();
//! assert_eq!(echo, "hello");
//! server.join().unwrap()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use socket2::Domain;

use crate::poll::{Dir, Fd};
use crate::util::lock;
use crate::{Error, Result, sys};

/// `127.0.0.1:port`.
pub fn loopback_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// `0.0.0.0:port`.
pub fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// `[::1%scope_id]:port`.
pub fn loopback_addr6(port: u16, scope_id: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, scope_id))
}

/// `[::%scope_id]:port`.
pub fn any_addr6(port: u16, scope_id: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, scope_id))
}

/// The listen backlog: the system's `somaxconn`, as Go uses (a 128 backlog drops SYNs
/// under a 1000-connection burst).
pub(crate) fn default_backlog() -> i32 {
    static BACKLOG: OnceLock<i32> = OnceLock::new();
    *BACKLOG.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&n: &i32| n > 0)
            .unwrap_or(4096)
    })
}

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Connects to `remote` and returns once the handshake is done.
///
/// The new socket has `TCP_NODELAY` and `SO_KEEPALIVE` on. A self-connect (possible when
/// the target port is in the ephemeral range and nothing listens) is never returned: it
/// is retried with a fresh socket, up to three sockets in all (one for [`connect_from`]
/// with a fixed local port); if every one connects to itself, the error is `EADDRINUSE`.
///
/// # Errors
/// `Sys { op: "connect" }` with the OS error (`ECONNREFUSED`, `ENETUNREACH`, …);
/// `Sys { op: "socket" }` if no socket can be made.
///
/// # Examples
/// ```
/// # fn main() -> reseau::Result<()> {
/// let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
/// let conn = reseau::tcp::connect(ln.local_addr().unwrap())?;
/// assert_eq!(conn.remote_addr(), ln.local_addr());
/// assert!(conn.nodelay()? && conn.keepalive()?);
/// # Ok(()) }
/// ```
pub fn connect(remote: SocketAddr) -> Result<Conn> {
    connect_until(remote, None, None)
}

/// Connects to `remote` from the local address `local` (port 0 = any port).
///
/// # Errors
/// [`Error::InvalidArgument`] if the two families differ (before any syscall);
/// `Sys { op: "bind" }`; otherwise as [`connect`].
pub fn connect_from(remote: SocketAddr, local: SocketAddr) -> Result<Conn> {
    connect_until(remote, Some(local), None)
}

/// A blocking connect with an optional local address and absolute deadline.
fn connect_until(
    remote: SocketAddr,
    local: Option<SocketAddr>,
    deadline: Option<Instant>,
) -> Result<Conn> {
    for _ in 0..connect_tries(local) {
        let fd = connect_socket(remote, local)?;
        connect_fd(&fd, remote, deadline)?;
        if let Some(conn) = Conn::connected(fd, remote)? {
            return Ok(conn);
        }
    }
    Err(self_connect_error())
}

/// Lets another thread abort a connect in flight: the dialer's race
/// (`resolve::Dialer::dial_addrs_cancellable`, the facade's `TcpSocket::connect`), which
/// may have several attempt sockets in flight at once.
///
/// Every attempt socket is tracked (under the lock) from before its connect starts
/// until its outcome is known; [`cancel`](Self::cancel) sets the flag and, with the
/// lock released, shuts down and closes every socket tracked at that moment. A socket
/// tracked later is refused by the flag, so no attempt can start or connect after a
/// cancel; the connect that owns a socket sees [`Error::Closed`].
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    /// `(cancelled, the attempts' sockets while they connect)`.
    state: Mutex<(bool, Vec<Arc<Fd>>)>,
}

impl Cancel {
    /// Cancels every attempt in flight and every later one.
    pub(crate) fn cancel(&self) {
        let fds = {
            let mut st = lock(&self.state);
            st.0 = true;
            std::mem::take(&mut st.1)
        };
        for fd in fds {
            // `shutdown` first: the dialer waits in a `ppoll` that holds its own reference
            // to the socket, so closing the number alone would not wake it, while the
            // shutdown of a connecting socket does (and fails the connect).
            let _ = fd.control("shutdown", |b| {
                sys::sock(&b).shutdown(std::net::Shutdown::Both)
            });
            let _ = fd.close();
        }
    }

    /// True once [`cancel`](Self::cancel) has run.
    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&self.state).0
    }

    /// Tracks an attempt's socket; [`Error::Closed`] if already cancelled.
    pub(crate) fn track(&self, fd: &Arc<Fd>) -> Result<()> {
        let mut st = lock(&self.state);
        if st.0 {
            return Err(Error::Closed);
        }
        st.1.push(fd.clone());
        Ok(())
    }

    /// Stops tracking `fd`; [`Error::Closed`] if cancelled meanwhile.
    pub(crate) fn untrack(&self, fd: &Arc<Fd>) -> Result<()> {
        let mut st = lock(&self.state);
        st.1.retain(|t| !Arc::ptr_eq(t, fd));
        if st.0 { Err(Error::Closed) } else { Ok(()) }
    }

    /// Stops tracking every socket (their owner has dropped them: they close now).
    pub(crate) fn untrack_all(&self) {
        let fds = std::mem::take(&mut lock(&self.state).1);
        drop(fds);
    }

    /// Untracks `fd` and takes it back for a connection: [`Error::Closed`] if cancelled
    /// (the socket is closed, or being closed, by [`cancel`](Self::cancel)).
    pub(crate) fn release(&self, fd: Arc<Fd>) -> Result<Fd> {
        self.untrack(&fd)?;
        Arc::into_inner(fd).ok_or(Error::Closed)
    }
}

fn connect_fd(fd: &Fd, remote: SocketAddr, deadline: Option<Instant>) -> Result<()> {
    fd.set_deadline(Dir::Write, deadline)?;
    fd.connect(&sys::ip_addr(remote))?;
    fd.set_deadline(Dir::Write, None)
}

/// How many sockets a connect may use: a self-connect is retried with a fresh socket
/// (Go's `dialTCP` does the same), which a fixed local port cannot help.
pub(crate) fn connect_tries(local: Option<SocketAddr>) -> usize {
    match local {
        Some(l) if l.port() != 0 => 1,
        _ => 3,
    }
}

/// A new non-blocking socket for connecting to `remote`, bound to `local` if given.
///
/// # Errors
/// [`Error::InvalidArgument`] if the families differ (before any syscall),
/// `Sys { op: "socket" }`, `Sys { op: "bind" }`.
pub(crate) fn connect_socket(remote: SocketAddr, local: Option<SocketAddr>) -> Result<Fd> {
    if let Some(l) = local.filter(|l| l.is_ipv4() != remote.is_ipv4()) {
        return Err(Error::InvalidArgument(format!(
            "local and remote address families must match (local {l}, remote {remote})"
        )));
    }
    let fd = Fd::new(sys::stream_socket(domain(&remote)).map_err(|e| Error::sys("socket", e))?);
    if let Some(l) = local {
        fd.control("bind", |fd| sys::sock(&fd).bind(&sys::ip_addr(l)))?;
    }
    Ok(fd)
}

/// The error a connect reports when every try connected the socket to itself.
pub(crate) fn self_connect_error() -> Error {
    Error::sys("connect", io::Error::from_raw_os_error(libc::EADDRINUSE))
}

/// Dials `address` (`host:port`) on `network` (`tcp`, `tcp4`, `tcp6`) with
/// [`Dialer::default()`](crate::resolve::Dialer): the system resolver, RFC 8305 Happy
/// Eyeballs across the resolved addresses, no time limit.
///
/// # Errors
/// One [`Error::Op`] with `op == "dial"`; see [`Dialer::dial`](crate::resolve::Dialer::dial).
///
/// # Examples
/// ```
/// # fn main() -> reseau::Result<()> {
/// let ln = reseau::tcp::listen_on("tcp4", "127.0.0.1:0")?;
/// let port = ln.local_addr().unwrap().port();
/// let conn = reseau::tcp::dial("tcp", &format!("127.0.0.1:{port}"))?;
/// assert_eq!(conn.remote_addr(), ln.local_addr());
/// let err = reseau::tcp::dial("udp", "127.0.0.1:1").unwrap_err();
/// assert_eq!(err.op(), Some("dial"));
/// # Ok(()) }
/// ```
pub fn dial(network: &str, address: &str) -> Result<Conn> {
    crate::resolve::Dialer::default().dial(network, address)
}

/// Listens on `address` (`host:port`) for `network` with
/// [`ListenConfig::default()`](crate::resolve::ListenConfig): backlog `somaxconn`,
/// `SO_REUSEADDR`; `":0"` on `tcp` is dual-stack `[::]`.
///
/// # Errors
/// One [`Error::Op`] with `op == "listen"`; see
/// [`ListenConfig::listen`](crate::resolve::ListenConfig::listen).
pub fn listen_on(network: &str, address: &str) -> Result<Listener> {
    crate::resolve::ListenConfig::default().listen(network, address)
}

/// Binds `local` and listens with backlog `somaxconn` and `SO_REUSEADDR` on.
///
/// # Errors
/// `Sys { op: "bind" }` (`EADDRINUSE`, `EACCES`, `EADDRNOTAVAIL`), `Sys { op: "listen" }`,
/// `Sys { op: "socket" }`; their Display names the address
/// (`bind 127.0.0.1:80: Address already in use (os error 98)`, see [`Error::Sys`]).
///
/// # Examples
/// ```
/// # fn main() -> reseau::Result<()> {
/// let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
/// assert_ne!(ln.addr().unwrap().port(), 0);
/// let taken = reseau::tcp::listen(ln.addr().unwrap()).unwrap_err();
/// assert_eq!(taken.op(), Some("bind"));
/// assert_eq!(taken.raw_os_error(), Some(libc::EADDRINUSE));
/// assert!(taken.to_string().starts_with(&format!("bind {}: ", ln.addr().unwrap())));
/// # Ok(()) }
/// ```
pub fn listen(local: SocketAddr) -> Result<Listener> {
    listen_with(local, default_backlog(), true, false, None).map_err(|e| e.with_addr(local))
}

/// The listener builder behind [`listen`] and `resolve::ListenConfig`.
pub(crate) fn listen_with(
    local: SocketAddr,
    backlog: i32,
    reuse_address: bool,
    reuse_port: bool,
    v6only: Option<bool>,
) -> Result<Listener> {
    Bound::new(local, reuse_address, reuse_port, v6only)?.listen(backlog)
}

/// A bound socket not yet listening: Julia's `bind(server, host, port)` then
/// `listen(server)` are two steps.
#[derive(Debug)]
pub(crate) struct Bound {
    fd: Fd,
}

impl Bound {
    /// Opens a socket for `local`'s family, sets the options and binds.
    pub(crate) fn new(
        local: SocketAddr,
        reuse_address: bool,
        reuse_port: bool,
        v6only: Option<bool>,
    ) -> Result<Bound> {
        let fd = Fd::new(sys::stream_socket(domain(&local)).map_err(|e| Error::sys("socket", e))?);
        fd.control("setsockopt", |fd| {
            let s = sys::sock(&fd);
            s.set_reuse_address(reuse_address)?;
            if reuse_port {
                s.set_reuse_port(true)?;
            }
            if let (Some(only), SocketAddr::V6(_)) = (v6only, local) {
                s.set_only_v6(only)?;
            }
            Ok(())
        })?;
        fd.control("bind", |fd| sys::sock(&fd).bind(&sys::ip_addr(local)))?;
        Ok(Bound { fd })
    }

    /// The bound address (port 0 resolved).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.fd
            .control("getsockname", |fd| sys::sock(&fd).local_addr())
            .ok()
            .and_then(|a| a.as_socket())
    }

    /// Starts listening.
    pub(crate) fn listen(self, backlog: i32) -> Result<Listener> {
        self.fd
            .control("listen", |fd| sys::sock(&fd).listen(backlog))?;
        let addr = self.local_addr();
        let inherits = sys::ACCEPT_INHERITS_TCP_OPTIONS
            && self
                .fd
                .control("setsockopt", |fd| {
                    let s = sys::sock(&fd);
                    s.set_tcp_nodelay(true)?;
                    s.set_keepalive(true)
                })
                .is_ok();
        Ok(Listener {
            fd: self.fd,
            addr,
            inherits,
        })
    }
}

/// A connected TCP stream.
///
/// `Send + Sync`: one reader and one writer may run concurrently from different
/// threads; concurrent readers (or writers) queue. `Read`/`Write` are implemented for
/// `Conn` and `&Conn`. Dropping closes.
///
/// ```
/// use std::time::{Duration, Instant};
/// # fn main() -> reseau::Result<()> {
/// let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
/// let conn = reseau::tcp::connect(ln.local_addr().unwrap())?;
/// let _server = ln.accept()?;
/// conn.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))?;
/// let err = conn.read(&mut [0u8; 8]).unwrap_err();
/// assert!(err.is_timeout());
/// # Ok(()) }
/// ```
pub struct Conn {
    fd: Fd,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

stream_io!(Conn);

impl Conn {
    /// Applies the defaults and caches the addresses; `local`/`remote` already known
    /// (from the listener and `accept`) save a `getsockname`/`getpeername` each.
    /// `defaults: false` when the socket inherited them from its listener.
    fn from_fd(
        fd: Fd,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        defaults: bool,
    ) -> Result<Conn> {
        let (local, remote) = fd.control("getsockname", |fd| {
            let s = sys::sock(&fd);
            if defaults {
                // Best effort, as in Go: a socket that refuses them still works.
                let _ = s.set_tcp_nodelay(true);
                let _ = s.set_keepalive(true);
            }
            let local = local.or_else(|| s.local_addr().ok().and_then(|a| a.as_socket()));
            let remote = match remote {
                Some(r) if local.is_some() => Some(r),
                requested => s.peer_addr().ok().and_then(|a| a.as_socket()).or(requested),
            };
            Ok((local, remote))
        })?;
        Ok(Conn { fd, local, remote })
    }

    /// Wraps a socket whose connect to `remote` has completed. `Ok(None)` when the
    /// socket connected to itself (the port was in the ephemeral range and nothing
    /// listened): the socket is closed, and a fresh one may be tried.
    pub(crate) fn connected(fd: Fd, remote: SocketAddr) -> Result<Option<Conn>> {
        let conn = Conn::from_fd(fd, None, Some(remote), true)?;
        Ok((conn.local.is_none() || conn.local != conn.remote).then_some(conn))
    }

    /// The local address (cached at connect/accept; still readable after close).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The descriptor with its deadlines, for layers above (TLS).
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }

    /// The peer's address (cached at connect/accept; still readable after close).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Closes with `SO_LINGER` 0: the peer gets a RST (its reads fail with
    /// `ECONNRESET`) and unsent data is dropped. Idempotent with [`close`](Self::close).
    ///
    /// # Errors
    /// None once closed; `Sys { op: "setsockopt" }` if the option cannot be set.
    pub fn abort(&self) -> Result<()> {
        match self.fd.control("setsockopt", sys::set_linger_zero) {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => return Err(e),
        }
        self.close()
    }

    /// Turns Nagle's algorithm off (`true`, the default here) or on (`TCP_NODELAY`).
    ///
    /// # Errors
    /// [`Error::Closed`], `Sys { op: "setsockopt" }`.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        self.fd
            .control("setsockopt", |fd| sys::sock(&fd).set_tcp_nodelay(on))
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// [`Error::Closed`], `Sys { op: "getsockopt" }`.
    pub fn nodelay(&self) -> Result<bool> {
        self.fd
            .control("getsockopt", |fd| sys::sock(&fd).tcp_nodelay())
    }

    /// Turns `SO_KEEPALIVE` on (the default here) or off.
    ///
    /// # Errors
    /// [`Error::Closed`], `Sys { op: "setsockopt" }`.
    pub fn set_keepalive(&self, on: bool) -> Result<()> {
        self.fd
            .control("setsockopt", |fd| sys::sock(&fd).set_keepalive(on))
    }

    /// Whether `SO_KEEPALIVE` is set.
    ///
    /// # Errors
    /// [`Error::Closed`], `Sys { op: "getsockopt" }`.
    pub fn keepalive(&self) -> Result<bool> {
        self.fd
            .control("getsockopt", |fd| sys::sock(&fd).keepalive())
    }

    /// Sets `TCP_QUICKACK` (Linux: ack at once instead of delaying; the kernel may reset it).
    ///
    /// # Errors
    /// [`Error::Closed`], `Sys { op: "setsockopt" }`.
    pub fn set_quickack(&self, on: bool) -> Result<()> {
        self.fd
            .control("setsockopt", |fd| sys::set_quickack(fd, on))
    }
}

fn show(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "?".to_string(), |a| a.to_string())
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() { "open" } else { "closed" };
        write!(
            f,
            "tcp::Conn({} => {}, {state})",
            show(self.local),
            show(self.remote)
        )
    }
}

/// A listening TCP socket. `Send + Sync`; `close` from another thread wakes a blocked
/// [`accept`](Self::accept). Dropping closes.
pub struct Listener {
    fd: Fd,
    addr: Option<SocketAddr>,
    /// Accepted sockets inherit `TCP_NODELAY` and `SO_KEEPALIVE` from this one (set at
    /// listen time where the OS copies them), saving two syscalls per accept.
    inherits: bool,
}

fd_traits!(Listener);

impl Listener {
    /// Waits for and returns the next connection (`TCP_NODELAY` and `SO_KEEPALIVE` on).
    ///
    /// `EINTR` and `ECONNABORTED` are retried. Out of descriptors (`EMFILE`, `ENFILE`), it
    /// returns the error at once rather than spinning; the connection stays queued and a
    /// later `accept` gets it once descriptors are free.
    ///
    /// # Errors
    /// [`Error::Closed`] when the listener is or gets closed, [`Error::DeadlineExceeded`],
    /// `Sys { op: "accept" }`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> reseau::Result<()> {
    /// let ln = std::sync::Arc::new(reseau::tcp::listen(reseau::tcp::loopback_addr(0))?);
    /// let ln2 = ln.clone();
    /// let t = std::thread::spawn(move || ln2.accept().map(drop));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// ln.close()?;
    /// assert!(matches!(t.join().unwrap(), Err(reseau::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub fn accept(&self) -> Result<Conn> {
        let (fd, peer) = self.fd.accept()?;
        // A listener on a concrete address is also every accepted socket's local address.
        let local = self.addr.filter(|a| !a.ip().is_unspecified());
        Conn::from_fd(Fd::new(fd), local, peer.as_socket(), !self.inherits)
    }

    /// Accepts one queued connection without waiting or checking the deadline:
    /// `Ok(None)` when the queue is empty (draining a listener before it closes).
    pub(crate) fn try_accept(&self) -> Result<Option<Conn>> {
        match self.fd.try_accept()? {
            Some((fd, peer)) => {
                let local = self.addr.filter(|a| !a.ip().is_unspecified());
                Conn::from_fd(Fd::new(fd), local, peer.as_socket(), !self.inherits).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Sets the accept deadline (absolute; `None` clears; semantics as for `Conn`).
    ///
    /// # Errors
    /// [`Error::Closed`] on a closed listener.
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.fd.set_deadline(Dir::Read, at)
    }

    /// The bound address (port 0 resolved to the real port).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Alias of [`addr`](Self::addr).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Closes; a blocked `accept` fails with [`Error::Closed`]. Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        let _ = self.fd.close();
        Ok(())
    }

    /// False once [`close`](Self::close) has started.
    pub fn is_open(&self) -> bool {
        self.fd.is_open()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() { "active" } else { "closed" };
        write!(f, "tcp::Listener({}, {state})", show(self.addr))
    }
}

// ---------------------------------------------------------------------------------------
// Conversions from and to `std` types and raw descriptors (SPEC §7b).

/// Adopts a connected `std` stream: made non-blocking; the options are left as they are
/// (as Go's `FileConn`), the addresses read once.
impl From<std::net::TcpStream> for Conn {
    fn from(stream: std::net::TcpStream) -> Conn {
        // `fcntl(F_SETFL)` cannot fail on an open socket, which `stream` owns.
        let _ = stream.set_nonblocking(true);
        let fd = Fd::new(std::os::fd::OwnedFd::from(stream));
        let (local, remote) = {
            let b = fd.as_fd();
            let s = sys::sock(&b);
            (
                s.local_addr().ok().and_then(|a| a.as_socket()),
                s.peer_addr().ok().and_then(|a| a.as_socket()),
            )
        };
        Conn { fd, local, remote }
    }
}

/// Adopts a listening `std` listener (made non-blocking).
impl From<std::net::TcpListener> for Listener {
    fn from(ln: std::net::TcpListener) -> Listener {
        let _ = ln.set_nonblocking(true);
        let addr = ln.local_addr().ok();
        Listener {
            fd: Fd::new(std::os::fd::OwnedFd::from(ln)),
            addr,
            inherits: false,
        }
    }
}

/// The socket as an owned descriptor: the same number as `as_raw_fd()` and the same
/// socket (connection, options), released without being closed. It is handed over in
/// blocking mode, as `std` types and child processes expect.
///
/// A closed `Conn` has no socket to give: the result is then its number as it is, naming
/// the dead placeholder `close` put there (every I/O call on it fails). Only if `close`
/// could not keep the number (the process was out of descriptors then) is a fresh dead
/// socket made, which panics if the process is still out of descriptors.
impl From<Conn> for std::os::fd::OwnedFd {
    fn from(conn: Conn) -> std::os::fd::OwnedFd {
        release_fd(conn.fd)
    }
}

/// As for [`Conn`]: the listening descriptor itself, number kept, in blocking mode.
impl From<Listener> for std::os::fd::OwnedFd {
    fn from(ln: Listener) -> std::os::fd::OwnedFd {
        release_fd(ln.fd)
    }
}

/// The descriptor of `fd`, released in blocking mode, number kept (see `From<Conn> for
/// OwnedFd` for a closed one).
///
/// # Panics
/// If `fd` was closed without keeping its number and the process is out of descriptors
/// for a stand-in.
pub(crate) fn release_fd(fd: Fd) -> std::os::fd::OwnedFd {
    use std::os::fd::AsFd;
    let owned = match fd.into_owned() {
        Ok(owned) => owned,
        // Closed without a placeholder (the process was out of descriptors at close):
        // the number is gone, so hand over a fresh dead socket.
        Err(_) => sys::stream_socket(socket2::Domain::UNIX)
            .expect("a descriptor for a closed socket's stand-in"),
    };
    // `std` types and child processes expect a blocking descriptor.
    let _ = sys::sock(&owned.as_fd()).set_nonblocking(false);
    owned
}

impl Conn {
    /// A TLS transport over another stream socket's descriptor (TLS over unix-domain
    /// sockets): no addresses, no TCP options.
    pub(crate) fn from_stream_fd(fd: Fd) -> Conn {
        Conn {
            fd,
            local: None,
            remote: None,
        }
    }
}

/// The bound socket (a `TcpServer` between `bind` and `listen`).
impl std::os::fd::AsFd for Bound {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_helpers() {
        assert_eq!(loopback_addr(80).to_string(), "127.0.0.1:80");
        assert_eq!(any_addr(0).to_string(), "0.0.0.0:0");
        assert_eq!(loopback_addr6(443, 0).to_string(), "[::1]:443");
        assert_eq!(any_addr6(0, 0).to_string(), "[::]:0");
        assert_eq!(loopback_addr6(1, 7).to_string(), "[::1%7]:1");
    }
}
