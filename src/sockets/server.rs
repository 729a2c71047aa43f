//! `TcpServer`, `listen`, `listenany`, `accept`, `accept_loop` and the name queries.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::addr::{IPAddr, LOCALHOST};
use super::socket::{Base, Endpoint, Target, TcpSocket, check_stream, opts};
use socket2::SockRef;

use crate::tcp::{self, Bound};
use crate::{Error, OpError, Result, tls, unix};

/// Julia's `BACKLOG_DEFAULT`.
pub const BACKLOG_DEFAULT: i32 = 511;

/// Options for [`listen_with`] (Julia keyword arguments).
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// `listen(2)` backlog (default 511, Julia's).
    pub backlog: i32,
    /// Serve TLS: accepted sockets handshake on first I/O.
    pub tls: bool,
    /// A full TLS server config; the fields below override it when set.
    pub tls_config: Option<tls::Config>,
    /// Server certificate chain.
    pub cert_file: Option<PathBuf>,
    /// Server key.
    pub key_file: Option<PathBuf>,
    /// ALPN protocols, in the server's preference order.
    pub alpn: Vec<String>,
    /// Require and verify client certificates against this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// `SO_REUSEPORT`: several servers (processes) share the port, the kernel spreads
    /// connections across them (TCP only: with a unix path, `listen_with` refuses it
    /// with [`Error::InvalidArgument`]).
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> ListenOptions {
        ListenOptions {
            backlog: BACKLOG_DEFAULT,
            tls: false,
            tls_config: None,
            cert_file: None,
            key_file: None,
            alpn: Vec::new(),
            client_ca_file: None,
            reuse_port: false,
        }
    }
}

impl ListenOptions {
    fn tls_config(&self) -> tls::Config {
        let mut c = self.tls_config.clone().unwrap_or_default();
        if self.cert_file.is_some() {
            c.cert_file = self.cert_file.clone();
            c.key_file = self.key_file.clone();
        }
        if !self.alpn.is_empty() {
            c.alpn_protocols = self.alpn.clone();
        }
        if self.client_ca_file.is_some() {
            c.client_ca_file = self.client_ca_file.clone();
            c.client_auth = tls::ClientAuthMode::RequireAndVerifyClientCert;
        }
        c
    }
}

#[derive(Debug)]
enum Kind {
    Unbound,
    Bound(Bound),
    Tcp(tcp::Listener),
    Unix(unix::Listener),
    Tls(tls::Listener),
    /// TLS over a unix-domain listener: each accepted socket gets a server session.
    UnixTls(unix::Listener, Box<tls::Config>),
}

/// A listening TCP, unix-domain or TLS server (Julia's `TCPServer`/`PipeServer`).
///
/// `Send + Sync`: one thread may block in [`accept`](Self::accept) while another calls
/// [`close`](Self::close), which wakes it with Julia's `ECONNABORTED` error and lets
/// connections still queued read EOF rather than a reset.
#[derive(Debug)]
pub struct TcpServer {
    kind: Kind,
    closing: AtomicBool,
}

fn aborted(net: &str, addr: &str) -> Error {
    let err = Error::Sys {
        op: "accept",
        source: io::Error::from_raw_os_error(libc::ECONNABORTED),
    };
    OpError::new("accept", net, None, addr, err).into()
}

impl Default for TcpServer {
    fn default() -> TcpServer {
        TcpServer::new()
    }
}

impl TcpServer {
    /// A server that is neither bound nor listening (Julia's `TCPServer()`).
    pub fn new() -> TcpServer {
        crate::sys::prepare_placeholder();
        TcpServer {
            kind: Kind::Unbound,
            closing: AtomicBool::new(false),
        }
    }

    fn with(kind: Kind) -> TcpServer {
        TcpServer {
            kind,
            closing: AtomicBool::new(false),
        }
    }

    /// Starts listening on the address [`bind`] bound (Julia's `listen(server)`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if not bound (or already listening); one
    /// [`Error::Op`] with `op() == Some("listen")` for OS errors.
    pub fn listen(&mut self, backlog: i32) -> Result<()> {
        if !matches!(self.kind, Kind::Bound(_)) {
            let why = if matches!(self.kind, Kind::Unbound) {
                "not bound (call `bind` first)"
            } else {
                "already listening"
            };
            return Err(Error::InvalidArgument(format!("server is {why}")));
        }
        let Kind::Bound(b) = std::mem::replace(&mut self.kind, Kind::Unbound) else {
            unreachable!("checked above");
        };
        let label = b.local_addr().map_or_else(String::new, |a| a.to_string());
        let ln = b
            .listen(backlog)
            .map_err(|e| OpError::new("listen", "tcp", None, &label, e))?;
        self.kind = Kind::Tcp(ln);
        Ok(())
    }

    /// Waits for the next connection. TLS servers return a socket whose handshake runs
    /// on first I/O.
    ///
    /// # Errors
    /// After (or during) [`close`](Self::close): an [`Error::Op`] with `op() ==
    /// Some("accept")` and `raw_os_error() == Some(ECONNABORTED)` (Julia's
    /// `_UVError("accept", UV_ECONNABORTED)`). [`Error::InvalidArgument`] for a server
    /// that never listened; [`Error::DeadlineExceeded`]; OS errors.
    pub fn accept(&self) -> Result<TcpSocket> {
        let net = if matches!(self.kind, Kind::Unix(_) | Kind::UnixTls(..)) {
            "unix"
        } else {
            "tcp"
        };
        let aborted = || aborted(net, &self.label());
        if self.closing.load(Ordering::Acquire) {
            return Err(aborted());
        }
        let res = match &self.kind {
            Kind::Tcp(l) => l.accept().map(|c| TcpSocket::from_base(Base::Tcp(c), None)),
            Kind::Unix(l) => l
                .accept()
                .map(|c| TcpSocket::from_base(Base::Unix(c), None)),
            Kind::Tls(l) => l.accept().map(|c| TcpSocket::from_tls(c, false)),
            Kind::UnixTls(l, cfg) => l.accept().and_then(|c| {
                let transport = tcp::Conn::from_stream_fd(c.into_fd());
                tls::server(transport, cfg).map(|c| TcpSocket::from_tls(c, true))
            }),
            Kind::Unbound | Kind::Bound(_) => {
                return Err(Error::InvalidArgument(
                    "server not connected, make sure \"listen\" has been called".into(),
                ));
            }
        };
        match res {
            Ok(s) => Ok(s),
            Err(_) if self.closing.load(Ordering::Acquire) => Err(aborted()),
            Err(Error::Closed) => Err(aborted()),
            Err(e) => Err(e),
        }
    }

    /// The address for error messages: the path, or `ip:port`.
    fn label(&self) -> String {
        match &self.kind {
            Kind::Unix(l) | Kind::UnixTls(l, _) => l
                .local_addr()
                .map_or_else(String::new, |p| p.display().to_string()),
            _ => self
                .local()
                .map_or_else(|_| String::new(), |a| a.to_string()),
        }
    }

    /// Closes: a blocked `accept` fails with `ECONNABORTED`; connections still queued
    /// are accepted and closed cleanly first, so their clients read EOF (as in Julia;
    /// Linux would otherwise reset them). Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        if self.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A past deadline wakes a blocked accept without closing the socket, so the
        // queue can still be drained below.
        let past = Some(Instant::now());
        match &self.kind {
            Kind::Tcp(l) => drain_tcp(l, past),
            Kind::Tls(l) => drain_tcp(l.net_listener(), past),
            Kind::Unix(l) | Kind::UnixTls(l, _) => {
                let _ = l.set_deadline(past);
                while let Ok(Some(c)) = l.try_accept() {
                    c.close_gracefully();
                }
                let _ = l.close();
            }
            Kind::Bound(_) | Kind::Unbound => {}
        }
        Ok(())
    }

    /// False once closed (or before listening).
    pub fn is_open(&self) -> bool {
        !self.closing.load(Ordering::Acquire)
            && match &self.kind {
                Kind::Tcp(l) => l.is_open(),
                Kind::Unix(l) | Kind::UnixTls(l, _) => l.is_open(),
                Kind::Tls(l) => l.is_open(),
                Kind::Unbound | Kind::Bound(_) => false,
            }
    }

    /// Sets the accept deadline.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::InvalidArgument`] before listening.
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        match &self.kind {
            Kind::Tcp(l) => l.set_deadline(at),
            Kind::Unix(l) | Kind::UnixTls(l, _) => l.set_deadline(at),
            Kind::Tls(l) => l.set_deadline(at),
            Kind::Unbound | Kind::Bound(_) => {
                Err(Error::InvalidArgument("server is not listening".into()))
            }
        }
    }

    fn local(&self) -> Result<SocketAddr> {
        let addr = match &self.kind {
            Kind::Tcp(l) => l.addr(),
            Kind::Tls(l) => l.addr(),
            Kind::Bound(b) => b.local_addr(),
            Kind::Unix(_) | Kind::UnixTls(..) => {
                return Err(Error::InvalidArgument(
                    "a unix socket has no IP address".into(),
                ));
            }
            Kind::Unbound => None,
        };
        addr.ok_or_else(|| Error::Sys {
            op: "cannot obtain socket name",
            source: io::Error::from_raw_os_error(libc::EBADF),
        })
    }
}

impl TcpServer {
    /// A TCP listener's socket, for options.
    fn tcp_listener(&self) -> Result<&tcp::Listener> {
        match &self.kind {
            Kind::Tcp(l) => Ok(l),
            Kind::Tls(l) => Ok(l.net_listener()),
            Kind::Unix(_) | Kind::UnixTls(..) => {
                Err(Error::InvalidArgument("not a TCP server".into()))
            }
            Kind::Unbound | Kind::Bound(_) => {
                Err(Error::InvalidArgument("server is not listening".into()))
            }
        }
    }

    fn setopt<T>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<T>) -> Result<T> {
        let l = self.tcp_listener()?;
        if !self.is_open() {
            return Err(Error::Closed);
        }
        f(SockRef::from(l)).map_err(|e| Error::sys("setsockopt", e))
    }

    /// Julia's `nagle(server, enable)`: sets `TCP_NODELAY` (off when `enable`) on the
    /// listening socket, which Linux copies to every socket it accepts.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a unix or not-listening server, [`Error::Closed`],
    /// OS errors.
    pub fn nagle(&self, enable: bool) -> Result<()> {
        self.setopt(|s| s.set_tcp_nodelay(!enable))
    }

    /// Julia's `quickack(server, enable)` (`TCP_QUICKACK` on the listening socket).
    ///
    /// # Errors
    /// As [`nagle`](Self::nagle).
    pub fn quickack(&self, enable: bool) -> Result<()> {
        self.setopt(|s| opts::quickack(&s, enable))
    }

    /// Sets `SO_RCVBUF` on the listening socket (accepted sockets inherit it; set it
    /// before connections arrive for the window scale to use it).
    ///
    /// # Errors
    /// As [`nagle`](Self::nagle).
    pub fn set_recv_buffer_size(&self, size: usize) -> Result<()> {
        self.setopt(|s| s.set_recv_buffer_size(size))
    }

    /// Sets `SO_SNDBUF` on the listening socket (accepted sockets inherit it).
    ///
    /// # Errors
    /// As [`nagle`](Self::nagle).
    pub fn set_send_buffer_size(&self, size: usize) -> Result<()> {
        self.setopt(|s| s.set_send_buffer_size(size))
    }
}

/// The listening descriptor (the bound one before `listen`). After `close` the number
/// stays reserved until drop (see `tcp::Listener`). A fresh [`TcpServer::new`] has no
/// descriptor: `as_fd` borrows a process-wide placeholder and `as_raw_fd` is -1, as for
/// an unconnected [`TcpSocket`].
impl AsFd for TcpServer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Tcp(l) => l.as_fd(),
            Kind::Tls(l) => l.net_listener().as_fd(),
            Kind::Unix(l) | Kind::UnixTls(l, _) => l.as_fd(),
            Kind::Bound(b) => b.as_fd(),
            Kind::Unbound => crate::sys::placeholder(),
        }
    }
}

impl AsRawFd for TcpServer {
    fn as_raw_fd(&self) -> RawFd {
        match self.kind {
            Kind::Unbound => -1,
            _ => self.as_fd().as_raw_fd(),
        }
    }
}

/// Adopts a listening TCP or unix-domain socket (inherited from systemd or a parent,
/// see `examples/systemd_listener.rs`): checked with `SO_TYPE`, `SO_ACCEPTCONN` and
/// the family, made non-blocking. A unix socket file is left in place on close.
///
/// ```
/// use std::os::fd::OwnedFd;
/// use reseau::sockets::{TcpServer, connect, getsockname};
/// # fn main() -> reseau::Result<()> {
/// let std_ln = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let server = TcpServer::try_from(OwnedFd::from(std_ln))?;
/// let (_, port) = getsockname(&server)?;
/// let _client = connect(port)?;
/// let _conn = server.accept()?;
/// let not_listening = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// assert!(matches!(
///     TcpServer::try_from(OwnedFd::from(not_listening)),
///     Err(reseau::Error::InvalidArgument(_))
/// ));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for a socket that is not a listening stream socket of
/// an IP or unix family, or a descriptor that is not a socket (closed then).
impl TryFrom<OwnedFd> for TcpServer {
    type Error = Error;

    fn try_from(fd: OwnedFd) -> Result<TcpServer> {
        let domain = check_stream(&fd, true)?;
        Ok(TcpServer::with(if domain == socket2::Domain::UNIX {
            Kind::Unix(unix::Listener::from(
                std::os::unix::net::UnixListener::from(fd),
            ))
        } else {
            Kind::Tcp(tcp::Listener::from(std::net::TcpListener::from(fd)))
        }))
    }
}

fn drain_tcp(l: &tcp::Listener, past: Option<Instant>) {
    let _ = l.set_deadline(past);
    while let Ok(Some(c)) = l.try_accept() {
        c.close_gracefully();
    }
    let _ = l.close();
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Julia's `bind(server, host, port)`: binds a fresh [`TcpServer::new`] (with
/// `SO_REUSEADDR`, as libuv). Returns `false` for `EADDRINUSE`, `EACCES` and
/// `EADDRNOTAVAIL`.
///
/// # Errors
/// [`Error::InvalidArgument`] if the server is not fresh; `Sys { op: "bind" }` for
/// other OS errors.
///
/// ```
/// use reseau::sockets::{bind, TcpServer, LOCALHOST};
/// # fn main() -> reseau::Result<()> {
/// let mut server = TcpServer::new();
/// assert!(bind(&mut server, LOCALHOST, 0)?);
/// server.listen(16)?;
/// let (_, port) = reseau::sockets::getsockname(&server)?;
/// assert!(!bind(&mut TcpServer::new(), LOCALHOST, port)?, "port in use");
/// # Ok(()) }
/// ```
pub fn bind<S: Bind>(sock: &mut S, host: impl Into<IPAddr>, port: u16) -> Result<bool> {
    sock.bind_to(SocketAddr::new(host.into().into(), port))
}

/// What [`bind`] binds: a [`TcpServer`] (then [`TcpServer::listen`]) or a
/// [`UdpSocket`](super::UdpSocket) (with default [`BindOptions`](super::BindOptions);
/// [`bind_with`](super::bind_with) takes options).
pub trait Bind {
    /// Binds to `addr`; false when the address is taken or not allowed.
    ///
    /// # Errors
    /// As [`bind`].
    fn bind_to(&mut self, addr: SocketAddr) -> Result<bool>;
}

impl Bind for super::UdpSocket {
    fn bind_to(&mut self, addr: SocketAddr) -> Result<bool> {
        self.bind_addr(addr, &super::BindOptions::default())
    }
}

impl Bind for TcpServer {
    fn bind_to(&mut self, addr: SocketAddr) -> Result<bool> {
        bind_server(self, addr)
    }
}

fn bind_server(server: &mut TcpServer, addr: SocketAddr) -> Result<bool> {
    if !matches!(server.kind, Kind::Unbound) {
        return Err(Error::InvalidArgument(
            "TcpServer is not in initialization state".into(),
        ));
    }
    match Bound::new(addr, true, false, None) {
        Ok(b) => {
            server.kind = Kind::Bound(b);
            Ok(true)
        }
        Err(e) if bind_refused(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The bind errors Julia's `bind` reports as `false` rather than throwing: the address is
/// in use, not allowed, or not this machine's.
pub(crate) fn bind_refused(e: &Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EADDRINUSE | libc::EACCES | libc::EADDRNOTAVAIL)
    )
}

fn listen_error(target: &Target, e: Error) -> Error {
    match e {
        Error::InvalidArgument(_) | Error::TlsConfig(_) | Error::Dns(_) | Error::Op(_) => e,
        e => OpError::new("listen", target.net(), None, &target.label(), e).into(),
    }
}

/// Listens on `endpoint` with backlog 511 (Julia's `listen(port)`,
/// `listen(host, port)`, `listen(path)`). A bare port listens on 127.0.0.1 only; pass
/// `(IPv4::ANY, port)` for every interface. A host name listens on its first IPv4
/// address (else its first address).
///
/// # Errors
/// One [`Error::Op`] with `op() == Some("listen")` (a port in use:
/// `raw_os_error() == Some(EADDRINUSE)`); [`Error::Dns`] for a name that does not
/// resolve.
pub fn listen(endpoint: impl Endpoint) -> Result<TcpServer> {
    listen_with(endpoint, &ListenOptions::default())
}

/// [`listen`] with options (`tls: true`, backlog, …).
///
/// # Errors
/// As [`listen`]; [`Error::TlsConfig`] before any I/O.
pub fn listen_with(endpoint: impl Endpoint, opts: &ListenOptions) -> Result<TcpServer> {
    let target = endpoint.target();
    let tls_cfg = opts.tls.then(|| opts.tls_config());
    if let Some(cfg) = &tls_cfg {
        cfg.context(true)?;
    }
    let addr = match &target {
        Target::Path(_) if opts.reuse_port => {
            // Silently ignoring it would let a second server fail later with EADDRINUSE.
            return Err(Error::InvalidArgument(
                "reuse_port applies to TCP listeners only, not to a unix socket path".into(),
            ));
        }
        Target::Path(p) => {
            let l = unix::listen_bare(p).map_err(|e| listen_error(&target, e))?;
            return Ok(TcpServer::with(match tls_cfg {
                Some(cfg) => Kind::UnixTls(l, Box::new(cfg)),
                None => Kind::Unix(l),
            }));
        }
        _ => {
            let (addrs, _) = target.resolve()?;
            *addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .ok_or_else(|| {
                    listen_error(
                        &target,
                        Error::Address {
                            msg: "no suitable address found".into(),
                            addr: target.label(),
                        },
                    )
                })?
        }
    };
    let ln = Bound::new(addr, true, opts.reuse_port, None)
        .and_then(|b| b.listen(opts.backlog))
        .map_err(|e| listen_error(&target, e))?;
    Ok(TcpServer::with(match tls_cfg {
        Some(cfg) => Kind::Tls(tls::Listener::new(ln, cfg)?),
        None => Kind::Tcp(ln),
    }))
}

/// Julia's `listenany(port_hint)` on 127.0.0.1.
///
/// # Errors
/// As [`listenany_on`].
pub fn listenany(port_hint: u16) -> Result<(u16, TcpServer)> {
    listenany_on(LOCALHOST, port_hint)
}

/// Julia's `listenany(host, port_hint)`: a hint of 0 takes the port the OS picks;
/// otherwise tries the hint, hint + 1, … (wrapping past 65535) until one is free.
///
/// # Errors
/// An [`Error::Op`] (`op() == Some("listen")`) with `no ports available` after a full
/// turn; other OS errors as they come.
pub fn listenany_on(host: impl Into<IPAddr>, port_hint: u16) -> Result<(u16, TcpServer)> {
    let ip: std::net::IpAddr = host.into().into();
    let mut port = port_hint;
    loop {
        let addr = SocketAddr::new(ip, port);
        match Bound::new(addr, true, false, None).and_then(|b| b.listen(BACKLOG_DEFAULT)) {
            Ok(ln) => {
                let got = if port_hint == 0 {
                    ln.addr().map_or(0, |a| a.port())
                } else {
                    port
                };
                return Ok((got, TcpServer::with(Kind::Tcp(ln))));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES)) => {}
            Err(e) => return Err(listen_error(&Target::Inet(addr), e)),
        }
        port = port.wrapping_add(1);
        if port == port_hint {
            let err = Error::Address {
                msg: "no ports available".into(),
                addr: ip.to_string(),
            };
            return Err(OpError::new("listen", "tcp", None, &ip.to_string(), err).into());
        }
    }
}

/// Julia's `accept(server)`.
///
/// # Errors
/// As [`TcpServer::accept`].
pub fn accept(server: &TcpServer) -> Result<TcpSocket> {
    server.accept()
}

fn temporary(e: &Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Julia's `accept(callback, server)`: a thread that accepts and calls `f` for each
/// connection (inline, as Julia does: spawn inside `f` to serve concurrently).
///
/// Ends quietly (`Ok(())`) when the server is closed. Temporary accept failures
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) are retried with exponential backoff from
/// 5 ms to 1 s, as Go's `net/http` does, so the loop neither spins nor dies nor drops
/// the queued connection. Any other error ends it with that error.
pub fn accept_loop<F>(server: Arc<TcpServer>, mut f: F) -> JoinHandle<Result<()>>
where
    F: FnMut(TcpSocket) + Send + 'static,
{
    thread::spawn(move || {
        let mut backoff = Duration::ZERO;
        loop {
            match server.accept() {
                Ok(s) => {
                    backoff = Duration::ZERO;
                    f(s);
                }
                Err(_) if server.closing.load(Ordering::Acquire) => return Ok(()),
                Err(e) if temporary(&e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    thread::sleep(backoff);
                }
                Err(e) => return Err(e),
            }
        }
    })
}

/// Types with a local IP address (Julia's `getsockname` methods).
pub trait SockName {
    /// The local socket address.
    ///
    /// # Errors
    /// As [`getsockname`].
    fn sock_name(&self) -> Result<SocketAddr>;
}

impl SockName for TcpServer {
    fn sock_name(&self) -> Result<SocketAddr> {
        self.local()
    }
}

impl SockName for super::UdpSocket {
    fn sock_name(&self) -> Result<SocketAddr> {
        self.local_addr()
    }
}

impl SockName for TcpSocket {
    fn sock_name(&self) -> Result<SocketAddr> {
        self.local()
    }
}

/// Julia's `getsockname(sock)`: `(ip, port)` of the local end (IPv6 scope dropped).
///
/// # Errors
/// `Sys { op: "cannot obtain socket name", EBADF }` before bind;
/// [`Error::InvalidArgument`] for unix sockets; [`Error::Closed`].
pub fn getsockname(sock: &impl SockName) -> Result<(IPAddr, u16)> {
    let a = sock.sock_name()?;
    Ok((a.ip().into(), a.port()))
}

/// Julia's `getpeername(sock)`: `(ip, port)` of the remote end.
///
/// # Errors
/// [`Error::InvalidArgument`] for unix sockets; [`Error::Closed`].
pub fn getpeername(sock: &TcpSocket) -> Result<(IPAddr, u16)> {
    let a = sock.peer()?;
    Ok((a.ip().into(), a.port()))
}
