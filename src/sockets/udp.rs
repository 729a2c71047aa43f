//! Julia's `UDPSocket`: datagrams over the same descriptor lifetime, deadlines and
//! close-wakes-blocked-calls machinery as the streams.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use socket2::{Domain, SockAddr};

use super::addr::{IPAddr, InetAddr};
use crate::poll::Fd;
use crate::{Error, Result, sys};

/// The largest datagram [`recv`] returns whole: 64 KiB covers every UDP payload over
/// IPv4 (65,507 bytes) and IPv6 without jumbograms (65,527).
pub const MAX_DATAGRAM: usize = 65_536;

/// Options for [`bind_with`] (Julia's `bind(sock, host, port; ipv6only, reuseaddr,
/// enable_broadcast)` keywords). `Default`: all false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// `IPV6_V6ONLY` (only for an IPv6 host): do not also receive IPv4-mapped traffic.
    pub ipv6only: bool,
    /// `SO_REUSEADDR` (UDP only, as libuv): several sockets may bind the same address
    /// and port; broadcasts and multicasts reach all of them.
    pub reuseaddr: bool,
    /// `SO_BROADCAST`: allow sending to broadcast addresses.
    pub enable_broadcast: bool,
}

/// Julia's `setopt(sock; multicast_loop, multicast_ttl, enable_broadcast, ttl)`: each
/// `Some` is applied, `None` leaves the option as it is. `Default`: all `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpOptions {
    /// Whether multicasts sent by this socket loop back to the host's own members
    /// (`IP_MULTICAST_LOOP` / `IPV6_MULTICAST_LOOP`).
    pub multicast_loop: Option<bool>,
    /// Hop limit of outgoing multicasts (`IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS`).
    pub multicast_ttl: Option<u32>,
    /// `SO_BROADCAST`.
    pub enable_broadcast: Option<bool>,
    /// Hop limit of outgoing unicasts (`IP_TTL` / `IPV6_UNICAST_HOPS`).
    pub ttl: Option<u32>,
}

/// Julia's `UDPSocket`: `Send + Sync`, every method takes `&self`, so one socket can be
/// shared by receiving threads, sending threads and a closer.
///
/// A new socket has no descriptor (Julia's `init` state): [`bind`](super::bind) or the
/// first [`send`] creates one of the right family. Receiving on a socket that is neither
/// bound nor has sent is [`Error::InvalidArgument`], as in Julia. Deadlines set before
/// that apply from the start.
///
/// ```
/// use reseau::sockets::{self, UdpSocket, LOCALHOST};
/// # fn main() -> reseau::Result<()> {
/// let mut a = UdpSocket::new();
/// assert!(sockets::bind(&mut a, LOCALHOST, 0)?);
/// let (_, port) = sockets::getsockname(&a)?;
/// let b = UdpSocket::new();
/// sockets::send(&b, LOCALHOST, port, b"hello")?; // binds b to 0.0.0.0:0 first
/// let (from, data) = sockets::recvfrom(&a)?;
/// assert_eq!(data, b"hello");
/// assert_eq!(from.port, sockets::getsockname(&b)?.1);
/// # Ok(()) }
/// ```
pub struct UdpSocket {
    fd: OnceLock<Fd>,
    /// Serialises creating the descriptor with deadline setters and `close`.
    init: Mutex<Pending>,
    bound: AtomicBool,
    closed: AtomicBool,
    /// The descriptor's family (set before `fd` is, read after it is).
    v6: AtomicBool,
}

/// Deadlines set before the descriptor exists.
#[derive(Default)]
struct Pending {
    read: Option<Instant>,
    write: Option<Instant>,
}

impl Default for UdpSocket {
    fn default() -> UdpSocket {
        UdpSocket::new()
    }
}

impl UdpSocket {
    /// Julia's `UDPSocket()`: no descriptor yet (see the type's docs).
    pub fn new() -> UdpSocket {
        sys::prepare_placeholder();
        UdpSocket {
            fd: OnceLock::new(),
            init: Mutex::new(Pending::default()),
            bound: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            v6: AtomicBool::new(false),
        }
    }

    /// The descriptor of a socket that has one and is open.
    fn fd(&self) -> Result<&Fd> {
        match self.fd.get() {
            Some(fd) => Ok(fd),
            None if self.closed.load(Ordering::Acquire) => Err(Error::Closed),
            None => Err(not_bound()),
        }
    }

    /// The descriptor of a socket that can receive: open and bound (or has sent).
    fn receiver(&self) -> Result<&Fd> {
        let fd = self.fd()?;
        if !self.bound.load(Ordering::Acquire) {
            return Err(not_bound());
        }
        Ok(fd)
    }

    /// The descriptor, created for `family` if there is none yet.
    fn fd_for(&self, domain: Domain) -> Result<&Fd> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd);
        }
        let pending = crate::util::lock(&self.init);
        if let Some(fd) = self.fd.get() {
            return Ok(fd);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let fd = Fd::new(sys::dgram_socket(domain).map_err(|e| Error::sys("socket", e))?);
        if pending.read.is_some() {
            fd.set_deadline(crate::poll::Dir::Read, pending.read)?;
        }
        if pending.write.is_some() {
            fd.set_deadline(crate::poll::Dir::Write, pending.write)?;
        }
        self.v6.store(domain == Domain::IPV6, Ordering::Release);
        Ok(self.fd.get_or_init(|| fd))
    }

    /// Binds (used by [`bind`](super::bind) and [`bind_with`]).
    pub(crate) fn bind_addr(&mut self, addr: SocketAddr, opts: &BindOptions) -> Result<bool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.bound.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(
                "UdpSocket is not in initialization state (already bound)".into(),
            ));
        }
        let v6 = addr.is_ipv6();
        let fd = self.fd_for(if v6 { Domain::IPV6 } else { Domain::IPV4 })?;
        if self.is_v6() != v6 {
            return Err(Error::InvalidArgument(format!(
                "cannot bind a socket created for the other address family to {addr}"
            )));
        }
        fd.control("setsockopt", |fd| {
            let s = sys::sock(&fd);
            if v6 {
                s.set_only_v6(opts.ipv6only)?;
            }
            s.set_reuse_address(opts.reuseaddr)?;
            s.set_broadcast(opts.enable_broadcast)
        })?;
        match fd.control("bind", |fd| sys::sock(&fd).bind(&sys::ip_addr(addr))) {
            Ok(()) => {
                // A shared port could hand a wake datagram to another socket.
                if !opts.reuseaddr {
                    enable_blocking_receives(fd);
                }
                self.bound.store(true, Ordering::Release);
                Ok(true)
            }
            Err(e) if super::server::bind_refused(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends `data` as one datagram to `to` (Go's `WriteTo`). An unbound socket is first
    /// bound to the wildcard address of `to`'s family (the OS picks the port), as libuv
    /// does; an IPv4 destination from an IPv6 socket is sent to its IPv4-mapped form.
    /// Waits while the send buffer is full, up to the write deadline.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::DeadlineExceeded`]; `Sys { op: "send" }` from the OS
    /// (`EMSGSIZE` for a datagram over the limit, `EACCES` for a broadcast without
    /// `enable_broadcast`); [`Error::InvalidArgument`] for an IPv6 destination from an
    /// IPv4 socket.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<()> {
        let domain = if to.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let fd = self.fd_for(domain)?;
        let to = match (to, self.is_v6()) {
            (SocketAddr::V4(a), true) => {
                SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port())
            }
            (SocketAddr::V6(_), false) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot send to IPv6 address {to} from an IPv4 socket"
                )));
            }
            (to, _) => to,
        };
        let addr = SockAddr::from(to);
        fd.write_with("send", |fd| sys::send_to(fd, data, &addr))?;
        // The first send bound the socket (no `bind`, so no `reuseaddr`): receives
        // may block from now on. Concurrent first sends both try; that is idempotent.
        if !self.bound.load(Ordering::Acquire) {
            enable_blocking_receives(fd);
        }
        self.bound.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the descriptor (once there is one) is IPv6.
    fn is_v6(&self) -> bool {
        self.v6.load(Ordering::Acquire)
    }

    /// Receives one datagram into `buf` (no allocation), returning its length and
    /// sender. A zero-length datagram gives `Ok((0, from))`.
    ///
    /// # Errors
    /// `Sys { op: "recv" }` with `EMSGSIZE` if the datagram was longer than `buf` (its
    /// first `buf.len()` bytes are in `buf`, the rest is lost: never silently cut);
    /// [`Error::InvalidArgument`] on a socket that is not bound; [`Error::Closed`],
    /// [`Error::DeadlineExceeded`].
    pub fn recvfrom_into(&self, buf: &mut [u8]) -> Result<(usize, InetAddr)> {
        let fd = self.receiver()?;
        let (n, cut, from) = fd.receive_datagram(
            "recv",
            |fd, block| sys::recv_from(fd, buf, block),
            |(_, _, from)| from,
        )?;
        if cut {
            return Err(truncated());
        }
        Ok((n, inet(&from)))
    }

    /// As [`recvfrom_into`](Self::recvfrom_into) without the sender.
    ///
    /// # Errors
    /// As [`recvfrom_into`](Self::recvfrom_into).
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recvfrom_into(buf).map(|(n, _)| n)
    }

    /// Julia's `recvfrom(sock)`: one whole datagram (up to [`MAX_DATAGRAM`] bytes) and
    /// its sender.
    ///
    /// # Errors
    /// As [`recvfrom_into`](Self::recvfrom_into).
    pub fn recvfrom(&self) -> Result<(InetAddr, Vec<u8>)> {
        let fd = self.receiver()?;
        let (data, cut, from) =
            fd.receive_datagram("recv", sys::recv_datagram, |(_, _, from)| from)?;
        if cut {
            return Err(truncated());
        }
        Ok((inet(&from), data))
    }

    /// Julia's `recv(sock)`: one whole datagram.
    ///
    /// # Errors
    /// As [`recvfrom_into`](Self::recvfrom_into).
    pub fn recv(&self) -> Result<Vec<u8>> {
        self.recvfrom().map(|(_, d)| d)
    }

    /// Sets both deadlines (absolute; `None` clears). On a socket without a descriptor
    /// yet they are kept and applied when it gets one.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.set_read_deadline(at)?;
        self.set_write_deadline(at)
    }

    /// Sets the deadline of receives (a receive already blocked sees the change).
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_read_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.set_dir_deadline(crate::poll::Dir::Read, at)
    }

    /// Sets the deadline of sends.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_write_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.set_dir_deadline(crate::poll::Dir::Write, at)
    }

    fn set_dir_deadline(&self, dir: crate::poll::Dir, at: Option<Instant>) -> Result<()> {
        // Once the descriptor exists the pending values are never read again: no lock
        // (deadlines re-armed per receive are a hot path).
        if let Some(fd) = self.fd.get() {
            return fd.set_deadline(dir, at);
        }
        let mut pending = crate::util::lock(&self.init);
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        match dir {
            crate::poll::Dir::Read => pending.read = at,
            crate::poll::Dir::Write => pending.write = at,
        }
        match self.fd.get() {
            Some(fd) => fd.set_deadline(dir, at),
            None => Ok(()),
        }
    }

    /// Closes the socket; a receive or send blocked in another thread fails with
    /// [`Error::Closed`]. Idempotent.
    ///
    /// # Errors
    /// None today; `Result` for symmetry with the other sockets.
    pub fn close(&self) -> Result<()> {
        let _init = crate::util::lock(&self.init);
        self.closed.store(true, Ordering::Release);
        if let Some(fd) = self.fd.get() {
            fd.close();
        }
        Ok(())
    }

    /// True until [`close`](Self::close).
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// The local address, once bound.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] before the socket has a descriptor; [`Error::Closed`].
    pub fn local_addr(&self) -> Result<SocketAddr> {
        let a = self
            .fd()?
            .control("getsockname", |fd| sys::sock(&fd).local_addr())?;
        a.as_socket()
            .ok_or_else(|| Error::InvalidArgument("not an IP socket".into()))
    }

    /// Applies `opts` (Julia's `setopt`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a socket without a descriptor (Julia: "Cannot set
    /// options on uninitialized socket"); `Sys { op: "setsockopt" }`.
    pub fn setopt(&self, opts: &UdpOptions) -> Result<()> {
        let fd = self.fd().map_err(|e| match e {
            Error::InvalidArgument(_) => {
                Error::InvalidArgument("cannot set options on an uninitialized UdpSocket".into())
            }
            e => e,
        })?;
        let v6 = self.is_v6();
        fd.control("setsockopt", |fd| {
            let s = sys::sock(&fd);
            if let Some(on) = opts.multicast_loop {
                if v6 {
                    s.set_multicast_loop_v6(on)?;
                } else {
                    s.set_multicast_loop_v4(on)?;
                }
            }
            if let Some(ttl) = opts.multicast_ttl {
                if v6 {
                    s.set_multicast_hops_v6(ttl)?;
                } else {
                    s.set_multicast_ttl_v4(ttl)?;
                }
            }
            if let Some(on) = opts.enable_broadcast {
                s.set_broadcast(on)?;
            }
            if let Some(ttl) = opts.ttl {
                if v6 {
                    s.set_unicast_hops_v6(ttl)?;
                } else {
                    s.set_ttl_v4(ttl)?;
                }
            }
            Ok(())
        })
    }

    /// Joins `group` on the default interface, or on the interface with address `iface`.
    fn membership(&self, group: IPAddr, iface: Option<IPAddr>, join: bool) -> Result<()> {
        let group: IpAddr = group.into();
        if !group.is_multicast() {
            return Err(Error::InvalidArgument(format!(
                "{group} is not a multicast address"
            )));
        }
        let fd = self.fd()?;
        let v6 = self.is_v6();
        match (group, iface.map(IpAddr::from)) {
            (IpAddr::V4(g), iface) => {
                if v6 {
                    return Err(Error::InvalidArgument(format!(
                        "IPv4 group {g} on an IPv6 socket"
                    )));
                }
                let ifa = match iface {
                    None => std::net::Ipv4Addr::UNSPECIFIED,
                    Some(IpAddr::V4(a)) => a,
                    Some(IpAddr::V6(a)) => {
                        return Err(Error::InvalidArgument(format!(
                            "IPv6 interface address {a} for IPv4 group {g}"
                        )));
                    }
                };
                fd.control("setsockopt", |fd| {
                    let s = sys::sock(&fd);
                    if join {
                        s.join_multicast_v4(&g, &ifa)
                    } else {
                        s.leave_multicast_v4(&g, &ifa)
                    }
                })
            }
            (IpAddr::V6(g), iface) => {
                if !v6 {
                    return Err(Error::InvalidArgument(format!(
                        "IPv6 group {g} on an IPv4 socket"
                    )));
                }
                let index = match iface {
                    // `::` is "any interface", as 0.0.0.0 is for IPv4: the default one.
                    None => 0,
                    Some(IpAddr::V6(a)) if a.is_unspecified() => 0,
                    Some(IpAddr::V6(a)) => interface_index(a)?,
                    Some(IpAddr::V4(a)) => {
                        return Err(Error::InvalidArgument(format!(
                            "IPv4 interface address {a} for IPv6 group {g}"
                        )));
                    }
                };
                fd.control("setsockopt", |fd| {
                    let s = sys::sock(&fd);
                    if join {
                        s.join_multicast_v6(&g, index)
                    } else {
                        s.leave_multicast_v6(&g, index)
                    }
                })
            }
        }
    }
}

/// Lets a freshly bound socket's receives wait in the kernel where that is safe (see
/// [`Fd::enable_blocking_receives`]); any failure leaves them on the `ppoll` path.
fn enable_blocking_receives(fd: &Fd) {
    if let Ok(local) = fd.control("getsockname", |fd| sys::sock(&fd).local_addr())
        && let Some(local) = local.as_socket()
    {
        fd.enable_blocking_receives(local);
    }
}

/// The index of the interface that has IPv6 address `a`.
fn interface_index(a: Ipv6Addr) -> Result<u32> {
    let ifaces = if_addrs::get_if_addrs().map_err(|e| Error::sys("getifaddrs", e))?;
    ifaces
        .iter()
        .find(|i| i.ip() == IpAddr::V6(a))
        .and_then(|i| i.index.or_else(|| sys::if_nametoindex(&i.name)))
        .ok_or_else(|| Error::InvalidArgument(format!("no interface has address {a}")))
}

/// Receiving (or setting options) before the socket has an address, as Julia refuses it.
fn not_bound() -> Error {
    Error::InvalidArgument("UdpSocket is not bound (bind it, or send from it, first)".into())
}

/// A datagram did not fit the buffer: `EMSGSIZE`, the OS's name for it.
fn truncated() -> Error {
    Error::sys("recv", std::io::Error::from_raw_os_error(libc::EMSGSIZE))
}

fn inet(a: &SockAddr) -> InetAddr {
    match a.as_socket() {
        Some(sa) => InetAddr::from(sa),
        None => InetAddr::new(IPAddr::from(std::net::Ipv4Addr::UNSPECIFIED), 0),
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_open() {
            return f.write_str("UdpSocket(closed)");
        }
        match self.fd.get() {
            Some(_) if self.bound.load(Ordering::Acquire) => match self.local_addr() {
                Ok(a) => write!(f, "UdpSocket(open, {a})"),
                Err(_) => f.write_str("UdpSocket(open)"),
            },
            _ => f.write_str("UdpSocket(init)"),
        }
    }
}

/// Julia's `bind(sock, host, port; ipv6only, reuseaddr, enable_broadcast)` for a
/// [`UdpSocket`]: false for `EADDRINUSE`/`EACCES`/`EADDRNOTAVAIL`.
///
/// # Errors
/// [`Error::InvalidArgument`] if already bound; [`Error::Closed`]; `Sys { op: "bind" }`.
pub fn bind_with(
    sock: &mut UdpSocket,
    host: impl Into<IPAddr>,
    port: u16,
    opts: &BindOptions,
) -> Result<bool> {
    sock.bind_addr(SocketAddr::new(host.into().into(), port), opts)
}

/// Julia's `send(sock, host, port, msg)`: one datagram (see [`UdpSocket::send_to`]).
///
/// # Errors
/// As [`UdpSocket::send_to`].
pub fn send(sock: &UdpSocket, host: impl Into<IPAddr>, port: u16, data: &[u8]) -> Result<()> {
    sock.send_to(data, SocketAddr::new(host.into().into(), port))
}

/// Julia's `recv(sock)`: one whole datagram.
///
/// # Errors
/// As [`UdpSocket::recvfrom_into`].
pub fn recv(sock: &UdpSocket) -> Result<Vec<u8>> {
    sock.recv()
}

/// Julia's `recvfrom(sock)`: the sender and one whole datagram.
///
/// # Errors
/// As [`UdpSocket::recvfrom_into`].
pub fn recvfrom(sock: &UdpSocket) -> Result<(InetAddr, Vec<u8>)> {
    sock.recvfrom()
}

/// Julia's `join_multicast_group(sock, group)` on the default interface.
///
/// # Errors
/// [`Error::InvalidArgument`] for a unicast `group` or a family mismatch, or a socket that
/// is not bound; `Sys { op: "setsockopt" }` from the OS.
pub fn join_multicast_group(sock: &UdpSocket, group: impl Into<IPAddr>) -> Result<()> {
    sock.membership(group.into(), None, true)
}

/// Julia's `join_multicast_group(sock, group, iface)`: on the interface that has address
/// `iface`.
///
/// # Errors
/// As [`join_multicast_group`]; also [`Error::InvalidArgument`] when no interface has an
/// IPv6 `iface`.
pub fn join_multicast_group_on(
    sock: &UdpSocket,
    group: impl Into<IPAddr>,
    iface: impl Into<IPAddr>,
) -> Result<()> {
    sock.membership(group.into(), Some(iface.into()), true)
}

/// Julia's `leave_multicast_group(sock, group)`.
///
/// # Errors
/// As [`join_multicast_group`].
pub fn leave_multicast_group(sock: &UdpSocket, group: impl Into<IPAddr>) -> Result<()> {
    sock.membership(group.into(), None, false)
}

/// Julia's `leave_multicast_group(sock, group, iface)`.
///
/// # Errors
/// As [`join_multicast_group_on`].
pub fn leave_multicast_group_on(
    sock: &UdpSocket,
    group: impl Into<IPAddr>,
    iface: impl Into<IPAddr>,
) -> Result<()> {
    sock.membership(group.into(), Some(iface.into()), false)
}

/// Julia's `setopt(sock; …)`.
///
/// # Errors
/// As [`UdpSocket::setopt`].
pub fn setopt(sock: &UdpSocket, opts: &UdpOptions) -> Result<()> {
    sock.setopt(opts)
}

/// The datagram socket's descriptor. An unbound [`UdpSocket::new`] has none yet (the
/// family is only known at `bind` or the first `send`, and `&self` cannot create it
/// without guessing one): `as_fd` then borrows the crate's dead placeholder socket (never
/// closed; every I/O call on it fails), and `as_raw_fd` returns -1 (Julia's `fd` of an
/// uninitialised socket is invalid too). After `close` the number stays reserved until
/// drop, as for every socket of this crate.
///
/// On Linux a socket bound (by `bind` without `reuseaddr`, or by its first `send`) to a
/// loopback or unspecified address has a **blocking** file description, so that a
/// receive can wait in one `recvfrom` as `std::net` does: the crate passes
/// `MSG_DONTWAIT` on every call that must not wait, and sets `SO_RCVTIMEO` itself. Code
/// that uses the descriptor directly should do the same (or wait with `poll` first), and
/// should not change `SO_RCVTIMEO`, connect the socket, bind it to a device, attach a
/// filter or set `SO_REUSEADDR`/`SO_REUSEPORT` (a socket sharing the port could take
/// them): a read deadline set while a receive waits is delivered as an empty datagram
/// from a loopback socket of the crate's, which such settings could stop (the receive
/// then notices the deadline up to two seconds late). Those datagrams are never returned
/// by this type's receives, but a direct read may see them. Sockets bound to other
/// addresses or made in another network namespace than the process's first, and all on
/// the portable backend, stay non-blocking.
impl std::os::fd::AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self.fd.get() {
            Some(fd) => fd.as_fd(),
            None => sys::placeholder(),
        }
    }
}

impl std::os::fd::AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get().map_or(-1, |fd| fd.raw())
    }
}
