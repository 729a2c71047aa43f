//! `TcpSocket`, endpoints and `connect` (Julia's `TCPSocket`/`PipeEndpoint`).

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::addr::{IPAddr, IPv4, IPv6, InetAddr, LOCALHOST};
use super::dns::getalladdrinfo;
use super::readbuf::ReadBuf;
use crate::resolve::{Dialer, Policy, Resolver, SystemResolver, join_host_port, parse_literal};
use crate::tcp::Cancel;
use crate::util::lock;
use crate::{Error, OpError, Result, tcp, tls, unix};

/// Where to connect or listen, as every form Julia accepts resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP socket address.
    Inet(SocketAddr),
    /// A host name (or literal text) and a port.
    Host(String, u16),
    /// A unix-domain socket path (`@name` = Linux abstract).
    Path(PathBuf),
}

/// Anything `connect` and `listen` take: Julia's `(host, port)`, `port`, `InetAddr`, or a
/// path (a unix socket).
///
/// | value | meaning |
/// |---|---|
/// | `8080u16` | `127.0.0.1:8080` (Julia's `localhost`, IPv4 only) |
/// | `("example.test", 80)`, `(String, u16)` | resolve the name, try every address |
/// | `(ip!("::1"), 80)`, `(IPv4, u16)`, `(IPv6, u16)`, `InetAddr`, `SocketAddr` | that address |
/// | `Path::new("/tmp/x.sock")`, `PathBuf` | a unix-domain socket |
pub trait Endpoint {
    /// What this endpoint names.
    fn target(&self) -> Target;
}

impl Endpoint for u16 {
    fn target(&self) -> Target {
        Target::Inet(SocketAddr::new(IpAddr::V4(LOCALHOST.into()), *self))
    }
}

impl Endpoint for (&str, u16) {
    fn target(&self) -> Target {
        Target::Host(self.0.to_string(), self.1)
    }
}

impl Endpoint for (String, u16) {
    fn target(&self) -> Target {
        Target::Host(self.0.clone(), self.1)
    }
}

impl Endpoint for (IPAddr, u16) {
    fn target(&self) -> Target {
        Target::Inet(SocketAddr::new(self.0.into(), self.1))
    }
}

impl Endpoint for (IPv4, u16) {
    fn target(&self) -> Target {
        Target::Inet(SocketAddr::new(IPAddr::from(self.0).into(), self.1))
    }
}

impl Endpoint for (IPv6, u16) {
    fn target(&self) -> Target {
        Target::Inet(SocketAddr::new(IPAddr::from(self.0).into(), self.1))
    }
}

impl Endpoint for InetAddr {
    fn target(&self) -> Target {
        Target::Inet((*self).into())
    }
}

impl Endpoint for SocketAddr {
    fn target(&self) -> Target {
        Target::Inet(*self)
    }
}

impl Endpoint for &Path {
    fn target(&self) -> Target {
        Target::Path(self.to_path_buf())
    }
}

impl Endpoint for PathBuf {
    fn target(&self) -> Target {
        Target::Path(self.clone())
    }
}

impl Target {
    /// `host:port` or the path, for error messages.
    pub(crate) fn label(&self) -> String {
        match self {
            Target::Inet(a) => a.to_string(),
            Target::Host(h, p) => join_host_port(h, *p),
            Target::Path(p) => p.display().to_string(),
        }
    }

    pub(crate) fn net(&self) -> &'static str {
        if matches!(self, Target::Path(_)) {
            "unix"
        } else {
            "tcp"
        }
    }

    /// The addresses to use and the host name (for TLS) they came from, with Julia's
    /// DNS errors (an unbounded `getaddrinfo` on the calling thread).
    pub(crate) fn resolve(&self) -> Result<(Vec<SocketAddr>, Option<String>)> {
        self.resolve_with(None, None)
    }

    /// As [`resolve`](Self::resolve); with a `resolver` or a `budget` the name goes
    /// through `Resolver::lookup_until` (off the caller's thread, abandoned at the
    /// budget: [`Error::DialTimeout`]).
    pub(crate) fn resolve_with(
        &self,
        resolver: Option<&Arc<dyn Resolver>>,
        budget: Option<Instant>,
    ) -> Result<(Vec<SocketAddr>, Option<String>)> {
        match self {
            Target::Inet(a) => Ok((vec![*a], None)),
            Target::Host(h, port) => {
                let addrs = match parse_literal(h)? {
                    Some((IpAddr::V6(v6), scope)) if scope != 0 => {
                        vec![SocketAddr::V6(std::net::SocketAddrV6::new(
                            v6, *port, 0, scope,
                        ))]
                    }
                    Some((ip, _)) => vec![SocketAddr::new(ip.to_canonical(), *port)],
                    None if resolver.is_none() && budget.is_none() => getalladdrinfo(h)?
                        .into_iter()
                        .map(|ip| SocketAddr::new(IpAddr::from(ip).to_canonical(), *port))
                        .collect(),
                    None => {
                        let r = resolver
                            .cloned()
                            .unwrap_or_else(|| Arc::new(SystemResolver::default()));
                        r.lookup_until(h, budget)
                            .map_err(|e| match e {
                                Error::DeadlineExceeded => {
                                    Error::DialTimeout("i/o timeout (resolving)".into())
                                }
                                e => e,
                            })?
                            .into_iter()
                            .map(|ip| SocketAddr::new(ip.to_canonical(), *port))
                            .collect()
                    }
                };
                Ok((addrs, Some(h.clone())))
            }
            Target::Path(_) => Ok((Vec::new(), None)),
        }
    }
}

/// Which address family [`ConnectOptions`] may use (Go's `tcp4`/`tcp6` networks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// Either (the default).
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn allows(self, a: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        }
    }
}

/// Options for [`connect_with`] and [`TcpSocket::connect_with`] (Julia keyword
/// arguments, plus Go's dialer settings).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Wrap the connection in TLS (handshake done before `connect_with` returns). Works
    /// over unix-domain sockets too; give `server_name` (the name the server's
    /// certificate must carry) or `insecure` there, as a path names no host.
    pub tls: bool,
    /// A full TLS config; the fields below override it when set.
    pub tls_config: Option<tls::Config>,
    /// Name to verify and send as SNI (default: the host connected to).
    pub server_name: Option<String>,
    /// CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (mTLS).
    pub cert_file: Option<PathBuf>,
    /// Client key (mTLS).
    pub key_file: Option<PathBuf>,
    /// Skip certificate verification (tests only!).
    pub insecure: bool,
    /// ALPN protocols to offer.
    pub alpn: Vec<String>,
    /// One budget for name resolution, connecting and the TLS handshake. With a
    /// timeout (or a `resolver`) names are resolved off the caller's thread and a
    /// lookup failure is [`Error::Lookup`]; without either, resolution is Julia's
    /// blocking `getaddrinfo` with its [`Error::Dns`] errors.
    pub timeout: Option<Duration>,
    /// Bind to this local address first (port 0 = any); its family restricts the
    /// addresses tried.
    pub local_addr: Option<SocketAddr>,
    /// Use only addresses of this family.
    pub family: Family,
    /// Resolve host names with this resolver (default: the system's, see `timeout`).
    pub resolver: Option<Arc<dyn Resolver>>,
    /// Which resolved families to keep and in which order (default: all, in the
    /// resolver's order).
    pub policy: Option<Policy>,
}

impl ConnectOptions {
    /// The effective client TLS config; `host` fills an unset server name.
    pub(crate) fn tls_config(&self, host: Option<&str>) -> tls::Config {
        let mut c = self.tls_config.clone().unwrap_or_default();
        if let Some(n) = &self.server_name {
            c.server_name = Some(n.clone());
        }
        if c.server_name.is_none() {
            c.server_name = host.map(tls::normalize_name);
        }
        if self.ca_file.is_some() {
            c.ca_file = self.ca_file.clone();
        }
        if self.cert_file.is_some() {
            c.cert_file = self.cert_file.clone();
            c.key_file = self.key_file.clone();
        }
        if self.insecure {
            c.verify_peer = false;
        }
        if !self.alpn.is_empty() {
            c.alpn_protocols = self.alpn.clone();
        }
        c
    }

    /// The addresses to try for `target`: resolved within `budget`, then filtered by
    /// family, local address and policy.
    fn addresses(
        &self,
        target: &Target,
        budget: Option<Instant>,
    ) -> Result<(Vec<SocketAddr>, Option<String>)> {
        if let Some(p) = &self.policy {
            p.validate()?;
        }
        let (addrs, host) = target.resolve_with(self.resolver.as_ref(), budget)?;
        let mut addrs: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.family.allows(a))
            .filter(|a| self.local_addr.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
            .collect();
        if let Some(p) = &self.policy {
            let ips = p
                .apply(
                    host.as_deref().unwrap_or_default(),
                    addrs.iter().map(SocketAddr::ip).collect(),
                )
                .map_err(|e| connect_error(target, e, Vec::new()))?;
            let mut ordered = Vec::with_capacity(addrs.len());
            for ip in ips {
                if let Some(i) = addrs.iter().position(|a| a.ip() == ip) {
                    ordered.push(addrs.remove(i));
                }
            }
            addrs = ordered;
        }
        if addrs.is_empty() {
            return Err(connect_error(
                target,
                Error::Address {
                    msg: "no suitable address found".into(),
                    addr: target.label(),
                },
                Vec::new(),
            ));
        }
        Ok((addrs, host))
    }
}

/// The plain stream behind a [`TcpSocket`] (TLS, when used, sits on top of it or on
/// a descriptor taken from it).
#[derive(Debug)]
pub(crate) enum Base {
    Tcp(tcp::Conn),
    Unix(unix::Conn),
}

/// What [`TcpSocket`] needs of each stream kind, so it dispatches once instead of
/// matching on every call.
trait Duplex {
    fn read(&self, out: &mut [u8]) -> Result<usize>;
    fn write(&self, data: &[u8]) -> Result<usize>;
    fn read_available(&self) -> Result<Vec<u8>>;
    fn eof(&self) -> Result<bool>;
    fn bytes_available(&self) -> Result<usize>;
    fn close_write(&self) -> Result<()>;
    fn is_open(&self) -> bool;
    fn set_deadline(&self, at: Option<Instant>) -> Result<()>;
    fn set_read_deadline(&self, at: Option<Instant>) -> Result<()>;
    fn set_write_deadline(&self, at: Option<Instant>) -> Result<()>;
}

macro_rules! duplex {
    ($ty:ty, |$c:ident| $available:expr) => {
        impl Duplex for $ty {
            fn read(&self, out: &mut [u8]) -> Result<usize> {
                <$ty>::read(self, out)
            }
            fn write(&self, data: &[u8]) -> Result<usize> {
                <$ty>::write(self, data)
            }
            fn read_available(&self) -> Result<Vec<u8>> {
                <$ty>::read_available(self)
            }
            fn eof(&self) -> Result<bool> {
                <$ty>::eof(self)
            }
            fn bytes_available(&self) -> Result<usize> {
                let $c = self;
                $available
            }
            fn close_write(&self) -> Result<()> {
                <$ty>::close_write(self)
            }
            fn is_open(&self) -> bool {
                <$ty>::is_open(self)
            }
            fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
                <$ty>::set_deadline(self, at)
            }
            fn set_read_deadline(&self, at: Option<Instant>) -> Result<()> {
                <$ty>::set_read_deadline(self, at)
            }
            fn set_write_deadline(&self, at: Option<Instant>) -> Result<()> {
                <$ty>::set_write_deadline(self, at)
            }
        }
    };
}

duplex!(tcp::Conn, |c| c.bytes_available());
duplex!(unix::Conn, |c| c.bytes_available());
duplex!(tls::Conn, |c| Ok(c.bytes_available()));

const BUF_SIZE: usize = 64 * 1024;

/// The stream a call goes to: the TLS session if there is one, else the plain
/// stream. Free of `self` so `&mut` paths can borrow the read buffer alongside.
fn dispatch<'a>(
    tls: &'a OnceLock<Box<tls::Conn>>,
    base: &'a OnceLock<Base>,
    closed: &AtomicBool,
) -> Result<&'a dyn Duplex> {
    if let Some(t) = tls.get() {
        return Ok(&**t);
    }
    match base.get() {
        Some(Base::Tcp(c)) => Ok(c),
        Some(Base::Unix(c)) => Ok(c),
        None => Err(no_stream(closed)),
    }
}

/// The error for a socket without a stream: closed, or never connected.
fn no_stream(closed: &AtomicBool) -> Error {
    if closed.load(Ordering::Acquire) {
        Error::Closed
    } else {
        Error::InvalidArgument("the socket is not connected (call `connect` first)".into())
    }
}

/// Julia's report of a connect ended by `close`: `connect: operation canceled`.
fn canceled(target: &Target) -> Error {
    let err = Error::Sys {
        op: "connect",
        source: io::Error::from_raw_os_error(libc::ECANCELED),
    };
    OpError::new("connect", target.net(), None, &target.label(), err).into()
}

/// A connected TCP, unix-domain or TLS stream (Julia's `TCPSocket`/`PipeEndpoint`).
///
/// `Send + Sync`, and every method takes `&self`: share an `Arc<TcpSocket>` between a
/// reader thread, a writer thread and a thread that closes it (Julia's reader task +
/// writer task). `Read` and `Write` are implemented for `&TcpSocket` as well;
/// `BufRead` needs exclusive access (`&mut TcpSocket`). Reads are buffered in the
/// socket's one read buffer (64 KiB, allocated on the first buffered read): bytes one
/// reader buffered are seen by the next. Concurrent readers take turns; writes go
/// straight to the socket and never wait for a reader. [`close`](Self::close) from any
/// thread wakes a blocked read, write, [`readline`](Self::readline), connect or
/// STARTTLS handshake, which fails with [`Error::Closed`] (a connect: Julia's
/// `ECANCELED`).
///
/// ```
/// use std::io::Write;
/// use reseau::sockets::{accept, connect, listenany};
/// # fn main() -> reseau::Result<()> {
/// let (port, server) = listenany(0)?;
/// let client = connect(port)?;
/// let conn = accept(&server)?;
/// (&client).write_all(b"hello\nworld\n")?;
/// assert_eq!(conn.readline(false)?, "hello");
/// assert_eq!(conn.bytesavailable()?, 6); // "world\n", already buffered
/// assert_eq!(conn.readuntil(b'l', true)?, b"worl");
/// # Ok(()) }
/// ```
pub struct TcpSocket {
    base: OnceLock<Base>,
    /// The TLS session; set once (connect, accept or STARTTLS) and never removed.
    tls: OnceLock<Box<tls::Conn>>,
    rb: Mutex<ReadBuf>,
    /// The host name this socket was connected to (STARTTLS server name).
    host: OnceLock<String>,
    peer_eof: AtomicBool,
    write_shut: AtomicBool,
    /// `close` was called (a never-connected socket has no stream to mark).
    closed: AtomicBool,
    /// A connect was started on this socket (only one ever is).
    connecting: AtomicBool,
    /// TLS runs over a unix-domain socket (no IP addresses, no TCP options).
    over_unix: AtomicBool,
    /// Lets `close` abort a connect in flight.
    cancel: Cancel,
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpSocket");
        match (self.tls.get(), self.base.get()) {
            (Some(t), _) => d.field("stream", t),
            (None, Some(Base::Tcp(c))) => d.field("stream", c),
            (None, Some(Base::Unix(c))) => d.field("stream", c),
            (None, None) => d.field("stream", &"unconnected"),
        };
        d.field("buffered", &self.buffered_now()).finish()
    }
}

impl Default for TcpSocket {
    fn default() -> TcpSocket {
        TcpSocket::new()
    }
}

impl TcpSocket {
    /// An unconnected socket (Julia's `TCPSocket()`): [`connect`](Self::connect) it, or
    /// [`close`](Self::close) it from another thread while it connects. Reads and writes
    /// before a connect fail with [`Error::InvalidArgument`]. It has no descriptor yet:
    /// `as_raw_fd()` is -1 and `as_fd()` a shared placeholder until it connects.
    pub fn new() -> TcpSocket {
        crate::sys::prepare_placeholder();
        TcpSocket {
            base: OnceLock::new(),
            tls: OnceLock::new(),
            rb: Mutex::new(ReadBuf::new(BUF_SIZE)),
            host: OnceLock::new(),
            peer_eof: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            connecting: AtomicBool::new(false),
            over_unix: AtomicBool::new(false),
            cancel: Cancel::default(),
        }
    }

    /// A connected socket over `base`.
    pub(crate) fn from_base(base: Base, host: Option<String>) -> TcpSocket {
        let s = TcpSocket::new();
        s.connecting.store(true, Ordering::Relaxed);
        let _ = s.base.set(base);
        if let Some(h) = host {
            let _ = s.host.set(h);
        }
        s
    }

    /// A TLS socket (an accepted TLS connection).
    pub(crate) fn from_tls(conn: tls::Conn, over_unix: bool) -> TcpSocket {
        let s = TcpSocket::new();
        s.connecting.store(true, Ordering::Relaxed);
        s.over_unix.store(over_unix, Ordering::Relaxed);
        let _ = s.tls.set(Box::new(conn));
        s
    }

    fn duplex(&self) -> Result<&dyn Duplex> {
        dispatch(&self.tls, &self.base, &self.closed)
    }

    fn rb(&self) -> MutexGuard<'_, ReadBuf> {
        lock(&self.rb)
    }

    /// Buffered bytes, without waiting: a reader blocked on the socket holds the buffer
    /// only while it is empty, so a busy buffer counts as 0.
    fn buffered_now(&self) -> usize {
        match self.rb.try_lock() {
            Ok(g) => g.len(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().len(),
            Err(TryLockError::WouldBlock) => 0,
        }
    }

    /// Reads through the shared buffer; the stream is looked up under the buffer's lock
    /// so a STARTTLS (which holds it) is seen by the next reader.
    fn with_buf<T>(
        &self,
        f: impl FnOnce(&mut ReadBuf, &mut dyn FnMut(&mut [u8]) -> Result<usize>) -> Result<T>,
    ) -> Result<T> {
        let mut rb = self.rb();
        let d = self.duplex()?;
        f(&mut rb, &mut |out: &mut [u8]| fill(d, &self.peer_eof, out))
    }

    /// Reads into `out` (buffered bytes first): `Read for &TcpSocket`. An empty `out`
    /// returns `Ok(0)` at once. Errors: deadline, closed (also when closed while
    /// blocked), not connected, OS or TLS.
    fn read_shared(&self, out: &mut [u8]) -> Result<usize> {
        self.with_buf(|rb, fill| rb.read(out, fill))
    }

    /// Writes all of `data` (TLS: encrypted): `Write for &TcpSocket`.
    fn write_shared(&self, data: &[u8]) -> Result<usize> {
        self.duplex()?.write(data)
    }

    /// Julia's `readline(sock; keep)`: the next line, ending at `\n` or the end of the
    /// stream; without `keep` the `\n` (or `\r\n`) is dropped. At EOF: what was read,
    /// possibly `""`.
    ///
    /// No length limit, as in Julia: a peer that never sends `\n` grows the line until
    /// EOF, an error or the read deadline. To bound it, read through `BufRead` on
    /// `&mut TcpSocket`: `(&mut sock).take(limit).read_until(b'\n', &mut line)`.
    ///
    /// # Errors
    /// As [`Read`]; [`Error::InvalidArgument`] for a line that is not UTF-8
    /// (the bytes stay buffered: [`readuntil`](Self::readuntil) gets them). On an error
    /// nothing is consumed, so a retry after moving a deadline sees the same bytes.
    pub fn readline(&self, keep: bool) -> Result<String> {
        self.with_buf(|rb, fill| rb.read_line(keep, fill))
    }

    /// Julia's `readuntil(sock, delim; keep)`: the bytes up to `delim` (included with
    /// `keep`), or everything up to the end of the stream when no `delim` comes.
    ///
    /// # Errors
    /// As [`readline`](Self::readline), without the UTF-8 check.
    pub fn readuntil(&self, delim: u8, keep: bool) -> Result<Vec<u8>> {
        self.with_buf(|rb, fill| rb.read_until(delim, keep, fill))
    }

    /// The next byte without consuming it (`None` at EOF); blocks for one.
    ///
    /// # Errors
    /// As [`Read`].
    pub fn peek_byte(&self) -> Result<Option<u8>> {
        self.with_buf(|rb, fill| Ok(rb.fill_buf(fill)?.first().copied()))
    }

    /// Bytes readable without blocking: buffered here plus queued in the kernel (TCP,
    /// unix) or decrypted in OpenSSL (TLS). Never waits, even while another thread is
    /// blocked reading.
    ///
    /// # Errors
    /// [`Error::Closed`] for a closed socket.
    pub fn bytesavailable(&self) -> Result<usize> {
        Ok(self.buffered_now() + self.duplex()?.bytes_available()?)
    }

    /// Buffered bytes if there are any, else waits for at least one and returns all
    /// that are ready (Julia's `readavailable`); empty at EOF.
    ///
    /// # Errors
    /// As [`Read`].
    pub fn read_available(&self) -> Result<Vec<u8>> {
        let mut rb = self.rb();
        if !rb.is_empty() {
            return Ok(rb.take());
        }
        let out = self.duplex()?.read_available()?;
        if out.is_empty() {
            self.peer_eof.store(true, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// True once the peer closed its side and everything has been read; blocks until
    /// that or a byte is known (honours the read deadline).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::DeadlineExceeded`], OS or TLS errors.
    pub fn eof(&self) -> Result<bool> {
        let rb = self.rb();
        if !rb.is_empty() {
            return Ok(false);
        }
        let at_end = self.duplex()?.eof()?;
        if at_end {
            self.peer_eof.store(true, Ordering::Relaxed);
        }
        Ok(at_end)
    }

    /// Closes (TLS: close_notify first) from any thread: a read, write, `readline`,
    /// `eof`, connect or STARTTLS handshake blocked in another thread fails with
    /// [`Error::Closed`] (a connect with `ECANCELED`, as Julia reports it). Never waits
    /// for a blocked reader to give up the read buffer. Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        // Published before looking at the streams: a connect or STARTTLS that installs
        // a stream afterwards sees the flag and closes it itself.
        self.closed.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        if let Some(t) = self.tls.get() {
            let _ = t.close();
        }
        if let Some(b) = self.base.get() {
            match b {
                Base::Tcp(c) => c.close()?,
                Base::Unix(c) => c.close()?,
            }
        }
        Ok(())
    }

    /// Closes with a reset (`SO_LINGER` 0, the peer reads `ECONNRESET`, unsent data is
    /// dropped); no TLS close_notify. Wakes blocked calls as [`close`](Self::close).
    ///
    /// # Errors
    /// `Sys { op: "setsockopt" }` if the option cannot be set (the socket is closed
    /// anyway).
    pub fn abort(&self) -> Result<()> {
        let res = match self.tcp() {
            Ok(c) => c.abort(),
            Err(_) => Ok(()),
        };
        self.close()?;
        res
    }

    /// Shuts the write side (TLS: close_notify); reading goes on (Julia's `closewrite`).
    ///
    /// # Errors
    /// [`Error::Closed`]; for TLS, an error before the handshake completed.
    pub fn closewrite(&self) -> Result<()> {
        self.duplex()?.close_write()?;
        self.write_shut.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Julia's `isopen`: false after `close`, before a connect, and once both
    /// directions are done (our `closewrite` and the peer's EOF read).
    pub fn is_open(&self) -> bool {
        self.duplex().is_ok_and(|d| d.is_open())
            && !(self.write_shut.load(Ordering::Relaxed) && self.peer_eof.load(Ordering::Relaxed))
    }

    /// Julia's `isreadable`: open, or buffered bytes left.
    pub fn isreadable(&self) -> bool {
        self.is_open() || self.buffered_now() > 0
    }

    /// Julia's `iswritable`: open and not `closewrite`n. Reading EOF does not change
    /// it (JuliaLang/julia#35442).
    pub fn iswritable(&self) -> bool {
        self.is_open() && !self.write_shut.load(Ordering::Relaxed)
    }

    /// Sets both deadlines (absolute; `None` clears). Go semantics: a passed deadline
    /// fails the next call at once and stays until moved.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::InvalidArgument`] before a connect.
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.duplex()?.set_deadline(at)
    }

    /// Sets the read deadline.
    ///
    /// # Errors
    /// As [`set_deadline`](Self::set_deadline).
    pub fn set_read_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.duplex()?.set_read_deadline(at)
    }

    /// Sets the write deadline.
    ///
    /// # Errors
    /// As [`set_deadline`](Self::set_deadline).
    pub fn set_write_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.duplex()?.set_write_deadline(at)
    }

    /// The TCP connection (under TLS too); unix sockets have none.
    fn tcp(&self) -> Result<&tcp::Conn> {
        if let Some(t) = self.tls.get() {
            if self.over_unix.load(Ordering::Relaxed) {
                return Err(Error::InvalidArgument("not a TCP socket".into()));
            }
            return Ok(t.net_conn());
        }
        match self.base.get() {
            Some(Base::Tcp(c)) => Ok(c),
            Some(Base::Unix(_)) => Err(Error::InvalidArgument("not a TCP socket".into())),
            None => Err(no_stream(&self.closed)),
        }
    }

    /// A socket option call on the TCP connection, `Closed` once closed.
    fn setopt<T>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<T>) -> Result<T> {
        let c = self.tcp()?;
        if !c.is_open() {
            return Err(Error::Closed);
        }
        f(SockRef::from(c)).map_err(|e| Error::sys("setsockopt", e))
    }

    /// Julia's `nagle(sock, enable)`: `true` turns Nagle's algorithm on (`TCP_NODELAY`
    /// off). Sockets start with it off.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn nagle(&self, enable: bool) -> Result<()> {
        self.tcp()?.set_nodelay(!enable)
    }

    /// Julia's `quickack(sock, enable)` (`TCP_QUICKACK`, Linux).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn quickack(&self, enable: bool) -> Result<()> {
        self.tcp()?.set_quickack(enable)
    }

    /// Turns `SO_KEEPALIVE` on (the default for connected sockets) or off.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn keepalive(&self, enable: bool) -> Result<()> {
        self.tcp()?.set_keepalive(enable)
    }

    /// Keep-alive timing: idle time before the first probe (`TCP_KEEPIDLE`), time
    /// between probes (`TCP_KEEPINTVL`) and probes before the connection is dropped
    /// (`TCP_KEEPCNT`); `None` leaves a value as it is. Turns keep-alive on.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors
    /// (`EINVAL` for out-of-range values).
    pub fn set_keepalive_timing(
        &self,
        idle: Option<Duration>,
        interval: Option<Duration>,
        count: Option<u32>,
    ) -> Result<()> {
        self.setopt(|s| opts::keepalive_timing(&s, idle, interval, count))
    }

    /// `TCP_USER_TIMEOUT` (Linux): how long sent data may stay unacknowledged before
    /// the connection is dropped; `None` = the system default.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn set_user_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.setopt(|s| opts::user_timeout(&s, timeout))
    }

    /// Sets `SO_RCVBUF` (the kernel doubles it and clamps it to its limits).
    ///
    /// # Errors
    /// [`Error::Closed`], OS errors.
    pub fn set_recv_buffer_size(&self, size: usize) -> Result<()> {
        self.bufopt(|s| s.set_recv_buffer_size(size))
    }

    /// `SO_RCVBUF` as the kernel reports it.
    ///
    /// # Errors
    /// [`Error::Closed`], OS errors.
    pub fn recv_buffer_size(&self) -> Result<usize> {
        self.bufopt(|s| s.recv_buffer_size())
    }

    /// Sets `SO_SNDBUF` (the kernel doubles it and clamps it to its limits).
    ///
    /// # Errors
    /// [`Error::Closed`], OS errors.
    pub fn set_send_buffer_size(&self, size: usize) -> Result<()> {
        self.bufopt(|s| s.set_send_buffer_size(size))
    }

    /// `SO_SNDBUF` as the kernel reports it.
    ///
    /// # Errors
    /// [`Error::Closed`], OS errors.
    pub fn send_buffer_size(&self) -> Result<usize> {
        self.bufopt(|s| s.send_buffer_size())
    }

    /// A socket-level option (any stream kind).
    fn bufopt<T>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<T>) -> Result<T> {
        if !self.is_open_raw() {
            return Err(self.duplex().err().unwrap_or(Error::Closed));
        }
        f(SockRef::from(self)).map_err(|e| Error::sys("setsockopt", e))
    }

    /// Open in the `close` sense (half-closes do not count).
    fn is_open_raw(&self) -> bool {
        self.duplex().is_ok_and(|d| d.is_open())
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.get().is_some()
    }

    /// The TLS session's state, `None` for plain sockets.
    pub fn connection_state(&self) -> Option<tls::ConnectionState> {
        self.tls.get().map(|c| c.connection_state())
    }

    /// Client-side STARTTLS: upgrades this plain TCP connection to TLS and completes the
    /// handshake. A no-op when already TLS. `server_name` defaults to the host this
    /// socket was connected to. `close` from another thread ends a handshake in
    /// progress with [`Error::Closed`]. The descriptor `as_fd` returns changes (the
    /// session runs on a duplicate of the plain socket's descriptor).
    ///
    /// Refuses while plaintext is buffered here or queued in the kernel: bytes that
    /// arrived before the upgrade would otherwise be trusted as if they came over TLS
    /// (CVE-2021-23222, the STARTTLS response injection).
    ///
    /// # Errors
    /// [`Error::TlsUpgradeNotReady`] (buffered plaintext, a unix or closed socket);
    /// [`Error::TlsConfig`]; handshake errors (the connection is closed then).
    pub fn tls_upgrade(&self, config: &tls::Config) -> Result<()> {
        self.upgrade(config, false)
    }

    /// Server-side STARTTLS: as [`tls_upgrade`](Self::tls_upgrade) with this side as the
    /// TLS server (the handshake completes before returning). Bytes already queued in
    /// the kernel may be the client's hello, so only locally buffered plaintext refuses.
    ///
    /// # Errors
    /// As [`tls_upgrade`](Self::tls_upgrade).
    pub fn tls_accept_upgrade(&self, config: &tls::Config) -> Result<()> {
        self.upgrade(config, true)
    }

    fn upgrade(&self, config: &tls::Config, server: bool) -> Result<()> {
        let not_ready = |why: String| Err(Error::TlsUpgradeNotReady(why));
        // Held throughout: no reader can take handshake bytes as plaintext, and the
        // next reader finds the TLS session.
        let rb = self.rb();
        if self.tls.get().is_some() {
            return Ok(());
        }
        let tcp = match self.base.get() {
            Some(Base::Tcp(c)) if c.is_open() => c,
            Some(Base::Unix(_)) => return not_ready("STARTTLS needs a TCP socket".into()),
            _ => return not_ready("the socket is not connected".into()),
        };
        let queued = tcp.bytes_available()?;
        if !rb.is_empty() {
            return not_ready(format!(
                "{} bytes of unread plaintext are buffered",
                rb.len()
            ));
        }
        if !server && queued > 0 {
            return not_ready(format!(
                "{queued} bytes of plaintext arrived before the upgrade"
            ));
        }
        let mut cfg = config.clone();
        if !server && cfg.server_name.is_none() {
            cfg.server_name = self.host.get().map(|h| tls::normalize_name(h));
        }
        // A config error must leave the plain connection usable: check before taking it.
        cfg.context(server)?;
        // The plain stream cannot be moved out from under `&self`: the session gets a
        // duplicate of its descriptor and the plain one is closed (its number stays
        // reserved until drop, see `AsFd`).
        let dup = tcp
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::sys("dup", e))?;
        let conn = tcp::Conn::from(std::net::TcpStream::from(dup));
        let conn = if server {
            tls::server(conn, &cfg)?
        } else {
            tls::client(conn, &cfg)?
        };
        let _ = self.tls.set(Box::new(conn));
        let _ = tcp.close();
        let t = self.tls.get().ok_or(Error::Closed)?;
        if self.closed.load(Ordering::SeqCst) {
            let _ = t.close();
            return Err(Error::Closed);
        }
        t.handshake().inspect_err(|_| {
            let _ = t.close();
        })
    }

    /// The local address.
    pub(crate) fn local(&self) -> Result<SocketAddr> {
        let c = self.tcp()?;
        if !self.is_open_raw() {
            return Err(Error::Closed);
        }
        c.local_addr().ok_or(Error::Closed)
    }

    /// The peer's address; [`Error::Closed`] once closed (Julia throws).
    pub(crate) fn peer(&self) -> Result<SocketAddr> {
        let c = self.tcp()?;
        if !self.is_open_raw() {
            return Err(Error::Closed);
        }
        c.remote_addr().ok_or(Error::Closed)
    }

    /// Julia's `connect!(sock, host, port)` / `connect(sock, path)`: connects this
    /// [`TcpSocket::new`] socket. `close` from another thread ends a pending connect
    /// with `op() == Some("connect")` and `raw_os_error() == Some(libc::ECANCELED)`.
    ///
    /// A host name is resolved and its addresses are raced with Happy Eyeballs (RFC
    /// 8305, as the free function [`connect`]); a `close` shuts down and closes every
    /// attempt in flight, so none can connect after it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use reseau::sockets::{TcpSocket, accept, listenany};
    /// # fn main() -> reseau::Result<()> {
    /// let (port, server) = listenany(0)?;
    /// let sock = Arc::new(TcpSocket::new());
    /// sock.connect(port)?;
    /// assert!(sock.connect(port).is_err(), "already connected");
    /// let peer = accept(&server)?;
    /// (&*sock).write_all_bytes(b"hi\n")?;
    /// assert_eq!(peer.readline(true)?, "hi\n");
    /// # Ok(()) }
    /// # trait W { fn write_all_bytes(self, b: &[u8]) -> std::io::Result<()>; }
    /// # impl W for &TcpSocket { fn write_all_bytes(mut self, b: &[u8]) -> std::io::Result<()> { std::io::Write::write_all(&mut self, b) } }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when connect was already called on this socket (it is
    /// connected, connecting, or its connect failed: a socket connects once, as in
    /// Julia); otherwise as [`connect`].
    pub fn connect(&self, endpoint: impl Endpoint) -> Result<()> {
        self.connect_with(endpoint, &ConnectOptions::default())
    }

    /// [`connect`](Self::connect) with options (TLS, a budget, a local address, …).
    ///
    /// # Errors
    /// As [`connect_with`].
    pub fn connect_with(&self, endpoint: impl Endpoint, opts: &ConnectOptions) -> Result<()> {
        if self.connecting.swap(true, Ordering::AcqRel) {
            // Julia's words; also after a failed connect, which leaves the socket closed.
            return Err(Error::InvalidArgument(
                "TcpSocket is not in initialization state (connect was already called)".into(),
            ));
        }
        self.establish(&endpoint.target(), opts, true)
    }

    /// Connects: resolution, the connect attempts (raced; cancellable by `close` when
    /// `cancellable`),
    /// then the TLS handshake, all within `opts.timeout`.
    fn establish(&self, target: &Target, opts: &ConnectOptions, cancellable: bool) -> Result<()> {
        let budget = opts.timeout.and_then(|t| Instant::now().checked_add(t));
        let canceled_now = || self.closed.load(Ordering::SeqCst);
        if canceled_now() {
            return Err(canceled(target));
        }
        if opts.tls && matches!(target, Target::Path(_)) {
            let cfg = opts.tls_config(None);
            if cfg.verify_peer && cfg.server_name.as_deref().is_none_or(str::is_empty) {
                // Before connecting: a path names no host to infer the name from.
                return Err(Error::TlsConfig(
                    "TLS over a unix socket needs `server_name` (the name the server's \
                     certificate carries) or `insecure`"
                        .into(),
                ));
            }
        }
        let (base, host) = match target {
            Target::Path(p) => {
                let conn = unix::connect(p).map_err(|e| connect_error(target, e, Vec::new()))?;
                (Base::Unix(conn), None)
            }
            _ => {
                let (addrs, host) = opts.addresses(target, budget)?;
                let dialer = Dialer {
                    timeout: opts.timeout,
                    local_addr: opts.local_addr,
                    ..Dialer::default()
                };
                let res = if cancellable {
                    dialer.dial_addrs_cancellable(&addrs, budget, &self.cancel)
                } else {
                    dialer.dial_addrs(&addrs, budget)
                };
                let tcp = res.map_err(|errs| {
                    if canceled_now() {
                        return canceled(target);
                    }
                    // The first attempt's error is reported; all stay in `attempts`.
                    let first = errs.first().map_or(Error::Closed, Error::duplicate);
                    connect_error(target, first, errs)
                })?;
                (Base::Tcp(tcp), host)
            }
        };
        if let Some(h) = host.clone() {
            let _ = self.host.set(h);
        }
        if !opts.tls {
            let _ = self.base.set(base);
            if canceled_now() {
                let _ = self.close();
                return Err(canceled(target));
            }
            return Ok(());
        }
        let name = host.or_else(|| match target {
            Target::Inet(a) => Some(a.ip().to_string()),
            _ => None,
        });
        let cfg = opts.tls_config(name.as_deref());
        let transport = match base {
            Base::Tcp(c) => c,
            Base::Unix(c) => {
                self.over_unix.store(true, Ordering::Relaxed);
                tcp::Conn::from_stream_fd(c.into_fd())
            }
        };
        let conn = tls::client(transport, &cfg)?;
        let _ = self.tls.set(Box::new(conn));
        let t = self.tls.get().ok_or(Error::Closed)?;
        if canceled_now() {
            let _ = t.close();
            return Err(canceled(target));
        }
        t.handshake_until(budget).map_err(|e| {
            let _ = t.close();
            if canceled_now() {
                canceled(target)
            } else {
                connect_error(target, e, Vec::new())
            }
        })
    }
}

/// Descriptors (SPEC §7b). The number names the stream in use: the plain socket, or
/// after STARTTLS the duplicate the TLS session runs on. After `close` it stays
/// reserved (a dead placeholder) until the value is dropped, so it never names a file
/// opened later. A never-connected socket has no descriptor: `as_fd` then borrows that
/// same process-wide dead placeholder (an unconnected unix socket: reads and writes on
/// it fail with `ENOTCONN`), and `as_raw_fd` returns -1, as Julia's `fd` gives an
/// invalid handle.
impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        if let Some(t) = self.tls.get() {
            return t.net_conn().as_fd();
        }
        match self.base.get() {
            Some(Base::Tcp(c)) => c.as_fd(),
            Some(Base::Unix(c)) => c.as_fd(),
            None => crate::sys::placeholder(),
        }
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        if self.tls.get().is_none() && self.base.get().is_none() {
            return -1;
        }
        self.as_fd().as_raw_fd()
    }
}

/// Adopts a connected TCP or unix-domain stream socket (inherited, or from another
/// library): checked with `SO_TYPE`, `SO_ACCEPTCONN` and the family, made non-blocking.
///
/// ```
/// use std::os::fd::OwnedFd;
/// use reseau::sockets::TcpSocket;
/// # fn main() -> reseau::Result<()> {
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let sock = TcpSocket::try_from(OwnedFd::from(a))?;
/// std::io::Write::write_all(&mut &b, b"hi\n")?;
/// assert_eq!(sock.readline(false)?, "hi");
/// let ln = std::net::TcpListener::bind("127.0.0.1:0")?;
/// assert!(matches!(TcpSocket::try_from(OwnedFd::from(ln)), Err(reseau::Error::InvalidArgument(_))));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for a datagram socket, a listening socket, a socket of
/// another family, a socket that is not connected, or a descriptor that is not a
/// socket (the descriptor is closed then).
impl TryFrom<OwnedFd> for TcpSocket {
    type Error = Error;

    fn try_from(fd: OwnedFd) -> Result<TcpSocket> {
        let domain = check_stream(&fd, false)?;
        if SockRef::from(&fd).peer_addr().is_err() {
            return Err(Error::InvalidArgument(
                "the descriptor is not a connected socket".into(),
            ));
        }
        let base = if domain == socket2::Domain::UNIX {
            Base::Unix(unix::Conn::from(std::os::unix::net::UnixStream::from(fd)))
        } else {
            Base::Tcp(tcp::Conn::from(std::net::TcpStream::from(fd)))
        };
        Ok(TcpSocket::from_base(base, None))
    }
}

/// Checks that `fd` is a stream socket of a family the facade serves, listening or
/// not as asked; returns its family.
pub(crate) fn check_stream(fd: &OwnedFd, listening: bool) -> Result<socket2::Domain> {
    let bad = |why: String| Err(Error::InvalidArgument(why));
    let s = SockRef::from(fd);
    match s.r#type() {
        Ok(t) if t == socket2::Type::STREAM => {}
        Ok(t) => return bad(format!("not a stream socket ({t:?})")),
        Err(e) => return bad(format!("not a socket: {e}")),
    }
    let domain = opts::domain(&s).map_err(|e| Error::InvalidArgument(format!("SO_DOMAIN: {e}")))?;
    if ![
        socket2::Domain::IPV4,
        socket2::Domain::IPV6,
        socket2::Domain::UNIX,
    ]
    .contains(&domain)
    {
        return bad(format!("unsupported address family {domain:?}"));
    }
    let listens =
        opts::is_listener(&s).map_err(|e| Error::InvalidArgument(format!("SO_ACCEPTCONN: {e}")))?;
    if listens != listening {
        return bad(if listening {
            "the socket is not listening".into()
        } else {
            "the socket is listening (a server, not a connection)".into()
        });
    }
    Ok(domain)
}

/// The socket options whose availability differs by platform: thin forwards to `sys`,
/// where each has its `cfg` and its portable answer (SPEC: platform code in one place).
pub(crate) mod opts {
    use std::io;
    use std::time::Duration;

    use socket2::SockRef;

    use crate::sys;

    /// `SO_KEEPALIVE` plus the keep-alive timing the platform has.
    pub(crate) fn keepalive_timing(
        s: &SockRef<'_>,
        idle: Option<Duration>,
        interval: Option<Duration>,
        count: Option<u32>,
    ) -> io::Result<()> {
        sys::set_keepalive_timing(s, idle, interval, count)
    }

    /// `TCP_USER_TIMEOUT` (Linux; `Unsupported` elsewhere).
    pub(crate) fn user_timeout(s: &SockRef<'_>, t: Option<Duration>) -> io::Result<()> {
        sys::set_user_timeout(s, t)
    }

    /// `TCP_QUICKACK` (Linux; a documented no-op elsewhere).
    pub(crate) fn quickack(s: &SockRef<'_>, on: bool) -> io::Result<()> {
        use std::os::fd::AsFd;
        sys::set_quickack(s.as_fd(), on)
    }

    /// The address family.
    pub(crate) fn domain(s: &SockRef<'_>) -> io::Result<socket2::Domain> {
        sys::socket_domain(s)
    }

    /// `SO_ACCEPTCONN`.
    pub(crate) fn is_listener(s: &SockRef<'_>) -> io::Result<bool> {
        sys::is_listener(s)
    }
}

impl Read for TcpSocket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Exclusive access: no lock to take.
        let d = dispatch(&self.tls, &self.base, &self.closed)?;
        let peer_eof = &self.peer_eof;
        let rb = self.rb.get_mut().unwrap_or_else(|p| p.into_inner());
        Ok(rb.read(out, |o: &mut [u8]| fill(d, peer_eof, o))?)
    }
}

impl Read for &TcpSocket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        Ok(TcpSocket::read_shared(self, out)?)
    }
}

/// One read from the stream into the buffer, recording EOF.
fn fill(d: &dyn Duplex, peer_eof: &AtomicBool, out: &mut [u8]) -> Result<usize> {
    let n = d.read(out)?;
    if n == 0 && !out.is_empty() {
        peer_eof.store(true, Ordering::Relaxed);
    }
    Ok(n)
}

impl BufRead for TcpSocket {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let d = dispatch(&self.tls, &self.base, &self.closed)?;
        let peer_eof = &self.peer_eof;
        let rb = self.rb.get_mut().unwrap_or_else(|p| p.into_inner());
        Ok(rb.fill_buf(|o: &mut [u8]| fill(d, peer_eof, o))?)
    }

    fn consume(&mut self, n: usize) {
        self.rb
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .consume(n);
    }
}

impl Write for TcpSocket {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(TcpSocket::write_shared(self, data)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpSocket {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(TcpSocket::write_shared(self, data)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wraps a connect failure the way Julia reports it: `op() == "connect"`, errno kept.
pub(crate) fn connect_error(target: &Target, err: Error, attempts: Vec<Error>) -> Error {
    match err {
        Error::InvalidArgument(_) | Error::TlsConfig(_) | Error::Dns(_) => err,
        Error::Op(mut op) => {
            op.op = "connect".into();
            Error::Op(op)
        }
        err => OpError::new("connect", target.net(), None, &target.label(), err)
            .with_attempts(attempts)
            .into(),
    }
}

/// Connects to `endpoint` (Julia's `connect(host, port)`, `connect(port)`,
/// `connect(path)`). A host name is resolved and **every** address is tried with
/// RFC 8305 Happy Eyeballs (Julia tries only the first).
///
/// # Errors
/// [`Error::Dns`] when the name does not resolve; otherwise one [`Error::Op`] with
/// `op() == Some("connect")` and the OS error (`raw_os_error() ==
/// Some(libc::ECONNREFUSED)` when nothing listens).
///
/// # Examples
/// ```
/// # fn main() -> reseau::Result<()> {
/// let (port, server) = reseau::sockets::listenany(0)?;
/// let client = reseau::sockets::connect(port)?;
/// let (ip, p) = reseau::sockets::getpeername(&client)?;
/// assert_eq!((ip, p), (reseau::ip!("127.0.0.1"), port));
/// server.close()?;
/// let refused = reseau::sockets::connect(port).unwrap_err();
/// assert_eq!(refused.op(), Some("connect"));
/// assert_eq!(refused.raw_os_error(), Some(libc::ECONNREFUSED));
/// # Ok(()) }
/// ```
pub fn connect(endpoint: impl Endpoint) -> Result<TcpSocket> {
    connect_with(endpoint, &ConnectOptions::default())
}

/// [`connect`] with options: `tls: true` (handshake before returning, over TCP or a
/// unix socket), a budget covering resolution, connect and handshake, a local address,
/// a family, a resolver and a policy.
///
/// # Errors
/// As [`connect`]; [`Error::TlsConfig`] before any I/O; TLS handshake errors wrapped
/// in the same `Op`; [`Error::DialTimeout`] when the budget ran out resolving.
pub fn connect_with(endpoint: impl Endpoint, opts: &ConnectOptions) -> Result<TcpSocket> {
    let target = endpoint.target();
    if opts.tls {
        // Building the context loads every file, so a bad CA or key is a TlsConfig
        // error before any connection is made (the real name is checked after resolving).
        opts.tls_config(Some("name.invalid")).context(false)?;
    }
    let sock = TcpSocket::new();
    sock.connecting.store(true, Ordering::Relaxed);
    sock.establish(&target, opts, false)?;
    Ok(sock)
}

/// The socket as an owned descriptor, in blocking mode (for `std` types or a child
/// process's stdio). A plain TCP or unix socket hands over its own descriptor, released
/// without being closed: the number is [`as_raw_fd`](AsRawFd::as_raw_fd)'s. Bytes
/// already buffered for reading stay behind (read them first).
///
/// Fallback, a duplicate of [`as_fd`](AsFd::as_fd)'s descriptor (another number) with
/// the socket value itself closed: for a TLS socket (its session owns the stream, and
/// after STARTTLS runs on a duplicate of it; the close_notify is sent as the value is
/// dropped, so the raw stream is only useful to close elsewhere), a closed socket and
/// one never connected (both: the dead placeholder).
///
/// # Panics
/// In the fallback cases only, if the process is out of descriptors for the duplicate.
impl From<TcpSocket> for OwnedFd {
    fn from(sock: TcpSocket) -> OwnedFd {
        if sock.tls.get().is_none() {
            match sock.base.into_inner() {
                Some(Base::Tcp(c)) => return OwnedFd::from(c),
                Some(Base::Unix(c)) => return OwnedFd::from(c),
                None => {}
            }
            return crate::sys::placeholder()
                .try_clone_to_owned()
                .expect("duplicating the descriptor");
        }
        let owned = sock
            .as_fd()
            .try_clone_to_owned()
            .expect("duplicating the descriptor");
        let _ = SockRef::from(&owned).set_nonblocking(false);
        drop(sock);
        owned
    }
}
