//! `TcpSocket`, endpoints and `connect` (Julia's `TCPSocket`/`PipeEndpoint`).

use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::addr::{IPAddr, IPv4, IPv6, InetAddr, LOCALHOST};
use super::dns::getalladdrinfo;
use super::readbuf::ReadBuf;
use crate::resolve::{Dialer, join_host_port, parse_literal};
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

    /// The addresses to use and the host name (for TLS) they came from.
    pub(crate) fn resolve(&self) -> Result<(Vec<SocketAddr>, Option<String>)> {
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
                    None => getalladdrinfo(h)?
                        .into_iter()
                        .map(|ip| SocketAddr::new(IpAddr::from(ip).to_canonical(), *port))
                        .collect(),
                };
                Ok((addrs, Some(h.clone())))
            }
            Target::Path(_) => Ok((Vec::new(), None)),
        }
    }
}

/// Options for [`connect_with`] (Julia keyword arguments).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Wrap the connection in TLS (handshake done before `connect_with` returns).
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
    /// One budget for resolution (on the caller's thread: DNS errors as Julia's),
    /// connecting and the TLS handshake.
    pub timeout: Option<Duration>,
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
}

/// The stream behind a [`TcpSocket`].
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(tcp::Conn),
    Unix(unix::Conn),
    Tls(Box<tls::Conn>),
    /// After a failed STARTTLS (the connection is closed).
    Gone,
}

/// What [`TcpSocket`] needs of each stream kind, so it dispatches once instead of
/// matching on every call.
trait Duplex {
    fn read(&self, out: &mut [u8]) -> Result<usize>;
    fn write(&self, data: &[u8]) -> Result<usize>;
    fn read_available(&self) -> Result<Vec<u8>>;
    fn eof(&self) -> Result<bool>;
    fn bytes_available(&self) -> Result<usize>;
    fn close(&self) -> Result<()>;
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
            fn close(&self) -> Result<()> {
                <$ty>::close(self)
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

impl Stream {
    /// The open stream, or [`Error::Closed`] after a failed STARTTLS.
    fn duplex(&self) -> Result<&dyn Duplex> {
        match self {
            Stream::Tcp(c) => Ok(c),
            Stream::Unix(c) => Ok(c),
            Stream::Tls(c) => Ok(&**c),
            Stream::Gone => Err(Error::Closed),
        }
    }
}

const BUF_SIZE: usize = 64 * 1024;

/// A connected TCP, unix-domain or TLS stream (Julia's `TCPSocket`/`PipeEndpoint`).
///
/// `Read + BufRead + Write`; reads are buffered (64 KiB, allocated on first buffered
/// read), writes go straight to the socket. Deadlines, `close`, half-close and
/// STARTTLS ([`tls_upgrade`](Self::tls_upgrade)) work on every kind.
///
/// ```
/// use std::io::{BufRead, Write};
/// use reseau::sockets::{accept, connect, listenany};
/// # fn main() -> reseau::Result<()> {
/// let (port, server) = listenany(0)?;
/// let mut client = connect(port)?;
/// let mut conn = accept(&server)?;
/// client.write_all(b"hello\nworld\n").unwrap();
/// let mut line = String::new();
/// conn.read_line(&mut line).unwrap();
/// assert_eq!(line, "hello\n");
/// assert_eq!(conn.bytesavailable()?, 6); // "world\n", already buffered
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TcpSocket {
    stream: Stream,
    rb: ReadBuf,
    /// The host name this socket was connected to (STARTTLS server name).
    host: Option<String>,
    peer_eof: bool,
    write_shut: bool,
}

impl TcpSocket {
    pub(crate) fn new(stream: Stream, host: Option<String>) -> TcpSocket {
        TcpSocket {
            stream,
            rb: ReadBuf::new(BUF_SIZE),
            host,
            peer_eof: false,
            write_shut: false,
        }
    }

    fn buffered(&self) -> usize {
        self.rb.len()
    }

    /// The buffer and a fill closure reading from the stream (recording EOF), borrowed
    /// apart so the buffer can call the stream.
    fn parts(
        &mut self,
    ) -> (
        &mut ReadBuf,
        impl FnMut(&mut [u8]) -> Result<usize> + use<'_>,
    ) {
        let TcpSocket {
            stream,
            rb,
            peer_eof,
            ..
        } = self;
        let fill = move |out: &mut [u8]| {
            let n = stream.duplex()?.read(out)?;
            if n == 0 && !out.is_empty() {
                *peer_eof = true;
            }
            Ok(n)
        };
        (rb, fill)
    }

    /// The next byte without consuming it (`None` at EOF); blocks for one.
    ///
    /// # Errors
    /// As [`Read::read`]: deadline, closed, OS or TLS errors.
    pub fn peek_byte(&mut self) -> Result<Option<u8>> {
        let (rb, fill) = self.parts();
        Ok(rb.fill_buf(fill)?.first().copied())
    }

    /// Bytes readable without blocking: buffered here plus queued in the kernel (TCP,
    /// unix) or decrypted in OpenSSL (TLS).
    ///
    /// # Errors
    /// [`Error::Closed`] for a closed socket.
    pub fn bytesavailable(&self) -> Result<usize> {
        Ok(self.buffered() + self.stream.duplex()?.bytes_available()?)
    }

    /// Buffered bytes if there are any, else waits for at least one and returns all
    /// that are ready (Julia's `readavailable`); empty at EOF.
    ///
    /// # Errors
    /// As [`Read::read`].
    pub fn read_available(&mut self) -> Result<Vec<u8>> {
        if self.buffered() > 0 {
            return Ok(self.rb.take());
        }
        let out = self.stream.duplex()?.read_available()?;
        self.peer_eof |= out.is_empty();
        Ok(out)
    }

    /// True once the peer closed its side and everything has been read; blocks until
    /// that or a byte is known (honours the read deadline).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::DeadlineExceeded`], OS or TLS errors.
    pub fn eof(&mut self) -> Result<bool> {
        if self.buffered() > 0 {
            return Ok(false);
        }
        let at_end = self.stream.duplex()?.eof()?;
        self.peer_eof |= at_end;
        Ok(at_end)
    }

    /// Closes (TLS: close_notify first); wakes calls blocked in other threads.
    /// Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        // After a failed STARTTLS the connection is already closed.
        self.stream.duplex().map_or(Ok(()), |d| d.close())
    }

    /// Shuts the write side (TLS: close_notify); reading goes on (Julia's `closewrite`).
    ///
    /// # Errors
    /// [`Error::Closed`]; for TLS, an error before the handshake completed.
    pub fn closewrite(&mut self) -> Result<()> {
        self.stream.duplex()?.close_write()?;
        self.write_shut = true;
        Ok(())
    }

    /// Julia's `isopen`: false after `close`, and once both directions are done (our
    /// `closewrite` and the peer's EOF read).
    pub fn is_open(&self) -> bool {
        self.stream.duplex().is_ok_and(|d| d.is_open()) && !(self.write_shut && self.peer_eof)
    }

    /// Julia's `isreadable`: open, or buffered bytes left.
    pub fn isreadable(&self) -> bool {
        self.is_open() || self.buffered() > 0
    }

    /// Julia's `iswritable`: open and not `closewrite`n. Reading EOF does not change
    /// it (JuliaLang/julia#35442).
    pub fn iswritable(&self) -> bool {
        self.is_open() && !self.write_shut
    }

    /// Sets both deadlines (absolute; `None` clears). Go semantics.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.stream.duplex()?.set_deadline(at)
    }

    /// Sets the read deadline.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_read_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.stream.duplex()?.set_read_deadline(at)
    }

    /// Sets the write deadline.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_write_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.stream.duplex()?.set_write_deadline(at)
    }

    fn tcp(&self) -> Result<&tcp::Conn> {
        match &self.stream {
            Stream::Tcp(c) => Ok(c),
            Stream::Tls(c) => Ok(c.net_conn()),
            Stream::Unix(_) => Err(Error::InvalidArgument("not a TCP socket".into())),
            Stream::Gone => Err(Error::Closed),
        }
    }

    /// Julia's `nagle(sock, enable)`: `true` turns Nagle's algorithm on (`TCP_NODELAY`
    /// off). Sockets start with it off.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn nagle(&self, enable: bool) -> Result<()> {
        self.tcp()?.set_nodelay(!enable)
    }

    /// Julia's `quickack(sock, enable)` (`TCP_QUICKACK`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a unix socket, [`Error::Closed`], OS errors.
    pub fn quickack(&self, enable: bool) -> Result<()> {
        self.tcp()?.set_quickack(enable)
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The TLS session's state, `None` for plain sockets.
    pub fn connection_state(&self) -> Option<tls::ConnectionState> {
        match &self.stream {
            Stream::Tls(c) => Some(c.connection_state()),
            _ => None,
        }
    }

    /// Client-side STARTTLS: upgrades this plain TCP connection to TLS and completes the
    /// handshake. A no-op when already TLS. `server_name` defaults to the host this
    /// socket was connected to.
    ///
    /// Refuses while plaintext is buffered here or queued in the kernel: bytes that
    /// arrived before the upgrade would otherwise be trusted as if they came over TLS
    /// (CVE-2021-23222, the STARTTLS response injection).
    ///
    /// # Errors
    /// [`Error::TlsUpgradeNotReady`] (buffered plaintext, a unix or closed socket);
    /// [`Error::TlsConfig`]; handshake errors (the connection is closed then).
    pub fn tls_upgrade(&mut self, config: &tls::Config) -> Result<()> {
        self.upgrade(config, false)
    }

    /// Server-side STARTTLS: as [`tls_upgrade`](Self::tls_upgrade) with this side as the
    /// TLS server (the handshake completes before returning). Bytes already queued in
    /// the kernel may be the client's hello, so only locally buffered plaintext refuses.
    ///
    /// # Errors
    /// As [`tls_upgrade`](Self::tls_upgrade).
    pub fn tls_accept_upgrade(&mut self, config: &tls::Config) -> Result<()> {
        self.upgrade(config, true)
    }

    fn upgrade(&mut self, config: &tls::Config, server: bool) -> Result<()> {
        let not_ready = |why: String| Err(Error::TlsUpgradeNotReady(why));
        let queued = match &self.stream {
            Stream::Tls(_) => return Ok(()),
            Stream::Tcp(c) if c.is_open() => c.bytes_available()?,
            Stream::Tcp(_) | Stream::Gone => {
                return not_ready("the socket is not connected".into());
            }
            Stream::Unix(_) => return not_ready("STARTTLS needs a TCP socket".into()),
        };
        if self.buffered() > 0 {
            return not_ready(format!(
                "{} bytes of unread plaintext are buffered",
                self.buffered()
            ));
        }
        if !server && queued > 0 {
            return not_ready(format!(
                "{queued} bytes of plaintext arrived before the upgrade"
            ));
        }
        let mut cfg = config.clone();
        if !server && cfg.server_name.is_none() {
            cfg.server_name = self.host.as_deref().map(tls::normalize_name);
        }
        // A config error must leave the plain connection usable: check before taking it.
        cfg.context(server)?;
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            unreachable!("checked above");
        };
        let conn = if server {
            tls::server(tcp, &cfg)?
        } else {
            tls::client(tcp, &cfg)?
        };
        conn.handshake()?;
        self.stream = Stream::Tls(Box::new(conn));
        Ok(())
    }

    /// The local address.
    pub(crate) fn local(&self) -> Result<SocketAddr> {
        self.tcp()?.local_addr().ok_or(Error::Closed)
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> Result<SocketAddr> {
        self.tcp()?.remote_addr().ok_or(Error::Closed)
    }
}

impl Read for TcpSocket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let (rb, fill) = self.parts();
        Ok(rb.read(out, fill)?)
    }
}

impl BufRead for TcpSocket {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let (rb, fill) = self.parts();
        Ok(rb.fill_buf(fill)?)
    }

    fn consume(&mut self, n: usize) {
        self.rb.consume(n);
    }
}

impl Write for TcpSocket {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(self.stream.duplex()?.write(data)?)
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

/// [`connect`] with options: `tls: true` (handshake before returning), a budget, …
///
/// # Errors
/// As [`connect`]; [`Error::TlsConfig`] before any I/O; TLS handshake errors wrapped
/// in the same `Op`.
pub fn connect_with(endpoint: impl Endpoint, opts: &ConnectOptions) -> Result<TcpSocket> {
    let target = endpoint.target();
    let budget = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    if let Target::Path(p) = &target {
        if opts.tls {
            return Err(Error::InvalidArgument(
                "tls over unix sockets is not supported".into(),
            ));
        }
        let conn = unix::connect(p).map_err(|e| connect_error(&target, e, Vec::new()))?;
        return Ok(TcpSocket::new(Stream::Unix(conn), None));
    }
    let (addrs, host) = target.resolve()?;
    let tls_cfg = opts.tls.then(|| {
        let name = host
            .clone()
            .or_else(|| addrs.first().map(|a| a.ip().to_string()));
        opts.tls_config(name.as_deref())
    });
    // Building the context loads every file, so a bad CA or key is a TlsConfig error
    // before any connection is made.
    if let Some(cfg) = &tls_cfg {
        cfg.context(false)?;
    }
    let dialer = Dialer {
        timeout: opts.timeout,
        ..Dialer::default()
    };
    let tcp = dialer.dial_addrs(&addrs, budget).map_err(|mut errs| {
        let first = if errs.is_empty() {
            Error::Closed
        } else {
            errs.remove(0)
        };
        let mut all = vec![first.duplicate()];
        all.extend(errs);
        connect_error(&target, first, all)
    })?;
    let stream = match tls_cfg {
        None => Stream::Tcp(tcp),
        Some(cfg) => {
            let conn = tls::client(tcp, &cfg)?;
            conn.handshake_until(budget)
                .map_err(|e| connect_error(&target, e, Vec::new()))?;
            Stream::Tls(Box::new(conn))
        }
    };
    Ok(TcpSocket::new(stream, host))
}
