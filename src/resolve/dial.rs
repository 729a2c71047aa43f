//! [`Dialer`] (Go's `net.Dialer` with RFC 8305 Happy Eyeballs) and [`ListenConfig`].
//!
//! The dialer drives its connects itself, on the dialing thread: non-blocking connects
//! on [`Fd`]s and one `ppoll` over those in flight (`sys::poll_writable`). Of `tcp` it
//! uses only construction: a socket to connect (`tcp::connect_socket`), a finished
//! connect made a [`tcp::Conn`] (`Conn::connected`), a listener (`tcp::listen_with`).
//! `tcp` reaches back here only through its `dial`/`listen_on` conveniences.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{
    Policy, Resolver, SystemResolver, interleave, lookup_port, parse_literal, split_host_port,
};
use crate::poll::Fd;
use crate::{Error, OpError, Result, sys, tcp};

/// RFC 8305 §5's recommended Connection Attempt Delay.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Go's floor for one attempt's share of a serial dial's budget.
const SANE_MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// The process-wide system resolver used by `Dialer::default()`.
fn system_resolver() -> Arc<dyn Resolver> {
    static SYSTEM: OnceLock<Arc<dyn Resolver>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| Arc::new(SystemResolver::new()))
        .clone()
}

/// The networks a TCP entry point accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    Tcp,
    Tcp4,
    Tcp6,
}

impl Net {
    pub(crate) fn parse(network: &str) -> Result<Net> {
        match network {
            "tcp" => Ok(Net::Tcp),
            "tcp4" => Ok(Net::Tcp4),
            "tcp6" => Ok(Net::Tcp6),
            other => Err(Error::UnknownNetwork(other.to_string())),
        }
    }

    fn allows(self, ip: &IpAddr) -> bool {
        match self {
            Net::Tcp => true,
            Net::Tcp4 => ip.is_ipv4(),
            Net::Tcp6 => ip.is_ipv6(),
        }
    }
}

/// Wraps a string-address entry point's failure in one [`Error::Op`]; configuration
/// errors found before any I/O and errors that are already wrapped pass through.
pub(crate) fn wrap(
    op: &str,
    net: &str,
    source: Option<SocketAddr>,
    addr: &str,
    err: Error,
) -> Error {
    match err {
        Error::Op(_) | Error::InvalidArgument(_) | Error::TlsConfig(_) => err,
        err => OpError::new(op, net, source.map(|s| s.to_string()), addr, err).into(),
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn timeout_error() -> Error {
    Error::DialTimeout("i/o timeout".to_string())
}

/// The address a host that answers itself stands for when dialing (shared by
/// [`Dialer`] and the event client): an IP literal (`::ffff:a.b.c.d` read as IPv4)
/// with its IPv6 zone, and an empty host or an unspecified address standing for this
/// machine's loopback (Go's `:port`). `Ok(None)`: a name to resolve.
///
/// # Errors
/// [`Error::Address`] for an unusable zone; [`Error::InvalidArgument`] when `local`
/// is of the other family (nothing could be dialed).
pub(crate) fn literal_target(
    net: Net,
    host: &str,
    local: Option<SocketAddr>,
) -> Result<Option<(IpAddr, u32)>> {
    let literal = if host.is_empty() {
        Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    } else {
        parse_literal(host)?
    };
    let Some((ip, scope)) = literal else {
        return Ok(None);
    };
    let ip = match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() && net == Net::Tcp6 => {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    if let Some(l) = local.filter(|l| l.is_ipv4() != ip.is_ipv4()) {
        return Err(Error::InvalidArgument(format!(
            "local address {l} does not match the family of {ip}"
        )));
    }
    Ok(Some((ip, scope)))
}

/// The addresses of `ips` (for `host`) that `net` and the family of `local` allow,
/// in their order (shared by [`Dialer`] and the event client).
///
/// # Errors
/// [`Error::Address`] `no suitable address found` when none is left.
pub(crate) fn usable(
    net: Net,
    local: Option<SocketAddr>,
    host: &str,
    ips: Vec<IpAddr>,
) -> Result<Vec<IpAddr>> {
    let usable: Vec<IpAddr> = ips
        .into_iter()
        .filter(|ip| net.allows(ip) && local.is_none_or(|l| l.is_ipv4() == ip.is_ipv4()))
        .collect();
    if usable.is_empty() {
        return Err(Error::Address {
            msg: "no suitable address found".to_string(),
            addr: host.to_string(),
        });
    }
    Ok(usable)
}

/// Dials TCP by `host:port` string: resolution, then every address raced with RFC 8305
/// Happy Eyeballs, all under one time budget (Go's `net.Dialer`).
///
/// The budget is the earlier of `timeout` (from the start of the call) and `deadline`,
/// and covers resolution (the resolver runs off the caller's thread, so a slow one is
/// abandoned), every connect attempt, and — through `dial_tls` — the TLS handshake.
///
/// Racing (RFC 8305, better than Go's RFC 6555 two-racer scheme): the addresses are
/// interleaved by family starting with the first resolved family; attempt *n + 1* starts
/// `fallback_delay` after attempt *n* (`None` = 250 ms, `Some(ZERO)` = all at once) or at
/// once when attempt *n* fails; the first connection wins, the others are cancelled, and
/// one that connects late is closed. `serial: true` instead tries the addresses one by
/// one in resolver order, each with Go's share of the remaining budget.
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use reseau::resolve::{Dialer, StaticResolver};
/// # fn main() -> reseau::Result<()> {
/// let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
/// let port = ln.local_addr().unwrap().port();
/// // `db.test` resolves to ::1 first, where nothing listens, then to the live listener.
/// let hosts = StaticResolver::new();
/// hosts.insert("db.test", ["::1".parse::<IpAddr>().unwrap(), "127.0.0.1".parse().unwrap()]);
/// let dialer = Dialer { resolver: Arc::new(hosts), ..Dialer::default() };
/// let conn = dialer.dial("tcp", &format!("db.test:{port}"))?;
/// assert!(conn.remote_addr().unwrap().is_ipv4());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Dialer {
    /// Budget for the whole dial, from the start of the call (`None` = no limit).
    pub timeout: Option<Duration>,
    /// Absolute end of the whole dial (`None` = no limit).
    pub deadline: Option<Instant>,
    /// Local address to bind before connecting; only addresses of its family are dialed.
    pub local_addr: Option<SocketAddr>,
    /// RFC 8305 Connection Attempt Delay (`None` = 250 ms; `Some(ZERO)` = no stagger).
    pub fallback_delay: Option<Duration>,
    /// Try addresses one by one instead of racing them.
    pub serial: bool,
    /// Who turns host names into addresses (literals never reach it).
    pub resolver: Arc<dyn Resolver>,
    /// Which families to use and in what order.
    pub policy: Policy,
}

impl Default for Dialer {
    fn default() -> Dialer {
        Dialer {
            timeout: None,
            deadline: None,
            local_addr: None,
            fallback_delay: None,
            serial: false,
            resolver: system_resolver(),
            policy: Policy::default(),
        }
    }
}

impl Dialer {
    /// Connects to `address` (`host:port`; a service name may stand for the port) on
    /// `network` (`tcp`, `tcp4`, `tcp6`).
    ///
    /// An empty host or an unspecified IP (`0.0.0.0`, `::`) dials this machine's
    /// loopback address of that family, as Go does on systems where the wildcard is
    /// not routable.
    ///
    /// # Errors
    /// Every failure is one [`Error::Op`] with `op == "dial"` whose `err` is the first
    /// attempt's error (all of them in [`OpError::attempts`]): [`Error::UnknownNetwork`],
    /// [`Error::Address`], [`Error::Lookup`], `Sys { op: "connect" }`,
    /// [`Error::DialTimeout`] when the budget ran out. [`Error::InvalidArgument`]
    /// (a bad [`Policy`], a `local_addr` of the wrong family for a literal target) comes
    /// unwrapped, before any I/O.
    pub fn dial(&self, network: &str, address: &str) -> Result<tcp::Conn> {
        self.dial_budget(network, address).map(|(conn, _)| conn)
    }

    /// As [`dial`](Self::dial), also returning the budget's end so a TLS handshake can
    /// be held to what is left of it.
    pub(crate) fn dial_budget(
        &self,
        network: &str,
        address: &str,
    ) -> Result<(tcp::Conn, Option<Instant>)> {
        let budget = earliest(
            self.timeout.and_then(|t| Instant::now().checked_add(t)),
            self.deadline,
        );
        let res = self.dial_inner(network, address, budget);
        res.map(|c| (c, budget))
            .map_err(|e| wrap("dial", network, self.local_addr, address, e))
    }

    fn dial_inner(
        &self,
        network: &str,
        address: &str,
        budget: Option<Instant>,
    ) -> Result<tcp::Conn> {
        let net = Net::parse(network)?;
        self.policy.validate()?;
        let (host, port) = super::split(address)?;
        let port = lookup_port(network, port)?;
        let targets = self.targets(net, host, port, budget)?;
        let res = if targets.len() == 1 || self.serial {
            self.dial_serial(&targets, budget)
        } else {
            self.race(&targets, budget, None)
        };
        res.map_err(|errs| {
            let expired = budget.is_some_and(|b| Instant::now() >= b);
            let errs: Vec<Error> = errs
                .into_iter()
                .map(|e| match e {
                    Error::DeadlineExceeded if expired => timeout_error(),
                    e => e,
                })
                .collect();
            // The first attempt's error is the one to report (Go: "most relevant"); all of
            // them stay in `attempts`, in start order.
            let first = errs.first().map_or_else(timeout_error, Error::duplicate);
            let source = self.local_addr.map(|a| a.to_string());
            OpError::new("dial", network, source, address, first)
                .with_attempts(errs)
                .into()
        })
    }

    /// The addresses to try, in order.
    fn targets(
        &self,
        net: Net,
        host: &str,
        port: u16,
        budget: Option<Instant>,
    ) -> Result<Vec<SocketAddr>> {
        let (ips, scope) = match literal_target(net, host, self.local_addr)? {
            Some((ip, scope)) => (vec![ip], scope),
            None => {
                if budget.is_some_and(|b| Instant::now() >= b) {
                    return Err(timeout_error());
                }
                let found =
                    self.resolver
                        .clone()
                        .lookup_until(host, budget)
                        .map_err(|e| match e {
                            Error::DeadlineExceeded => timeout_error(),
                            e => e,
                        })?;
                (self.policy.apply(host, found)?, 0)
            }
        };
        let usable = usable(net, self.local_addr, host, ips)?;
        let ordered = if self.serial {
            usable
        } else {
            interleave(&usable)
        };
        Ok(ordered
            .into_iter()
            .map(|ip| match ip {
                IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
                ip => SocketAddr::new(ip, port),
            })
            .collect())
    }

    /// Dials already-resolved addresses (the Julia facade resolves with its own DNS
    /// errors): interleaved and raced unless `serial`, within `budget`.
    pub(crate) fn dial_addrs(
        &self,
        addrs: &[SocketAddr],
        budget: Option<Instant>,
    ) -> std::result::Result<tcp::Conn, Vec<Error>> {
        if addrs.len() <= 1 || self.serial {
            return self.dial_serial(addrs, budget);
        }
        self.race(&interleaved(addrs), budget, None)
    }

    /// [`dial_addrs`](Self::dial_addrs) that another thread can abort through `cancel`
    /// (the facade's `close` during `TcpSocket::connect`): always a race (`serial` is
    /// not consulted), every attempt socket tracked by `cancel` while it connects. Once
    /// cancelled, the sockets in flight are closed, no attempt starts, and the race
    /// fails with [`Error::Closed`] as its last error.
    pub(crate) fn dial_addrs_cancellable(
        &self,
        addrs: &[SocketAddr],
        budget: Option<Instant>,
        cancel: &tcp::Cancel,
    ) -> std::result::Result<tcp::Conn, Vec<Error>> {
        let res = self.race(&interleaved(addrs), budget, Some(cancel));
        // Losers still in flight were dropped with the race: stop tracking them so
        // their sockets close now (the winner was untracked when it won).
        cancel.untrack_all();
        res
    }

    /// Go's `dialSerial`: each address gets its share of what is left of the budget.
    fn dial_serial(
        &self,
        targets: &[SocketAddr],
        budget: Option<Instant>,
    ) -> std::result::Result<tcp::Conn, Vec<Error>> {
        let mut errs = Vec::new();
        for (i, &addr) in targets.iter().enumerate() {
            let share = match partial_deadline(Instant::now(), budget, targets.len() - i) {
                Ok(d) => d,
                Err(e) => {
                    errs.push(e);
                    break;
                }
            };
            match self.connect_one(addr, share) {
                Ok(c) => return Ok(c),
                Err(e) => errs.push(e),
            }
        }
        Err(errs)
    }

    /// One address: [`race`](Self::race) with a single attempt, minus its
    /// bookkeeping (the common dial to one IP). Fails with [`Error::DeadlineExceeded`]
    /// at `deadline`.
    fn connect_one(&self, addr: SocketAddr, deadline: Option<Instant>) -> Result<tcp::Conn> {
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        if expired() {
            return Err(Error::DeadlineExceeded);
        }
        let mut step = self.launch(0, addr, tcp::connect_tries(self.local_addr), None);
        loop {
            let a = match step {
                Step::Won(conn) => return Ok(conn),
                Step::Failed(_, e) => return Err(e),
                Step::Pending(a) => a,
            };
            let timeout_ns = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(nanos(left)),
                    _ => return Err(Error::DeadlineExceeded),
                },
                None => None,
            };
            let mut revents = [0];
            step = match sys::poll_writable(&[a.fd.as_fd()], timeout_ns, &mut revents) {
                Ok(0) => Step::Pending(a),
                Ok(_) => self.finish(a, addr, revents[0], None),
                Err(e) => return Err(Error::sys("ppoll", e)),
            };
        }
    }

    /// RFC 8305 §5: races connects to `targets` on the calling thread: attempt *n + 1*
    /// starts `fallback_delay` after attempt *n* or as soon as an attempt fails, and one
    /// `ppoll` waits on every connect in flight. The first connection wins; the other
    /// sockets are closed on return, so a loser that connected meanwhile is closed too.
    /// An attempt still in flight at `deadline` fails with [`Error::DialTimeout`]. The
    /// errors (one per started attempt, in start order) come back when none connects.
    ///
    /// With `cancel`, each attempt's socket is tracked from before its connect starts
    /// until its outcome is known, and a cancel (which shuts down and closes those
    /// sockets, waking the `ppoll`) ends the race with [`Error::Closed`] added last.
    fn race(
        &self,
        targets: &[SocketAddr],
        deadline: Option<Instant>,
        cancel: Option<&tcp::Cancel>,
    ) -> std::result::Result<tcp::Conn, Vec<Error>> {
        let delay = self.fallback_delay.unwrap_or(DEFAULT_ATTEMPT_DELAY);
        let tries = tcp::connect_tries(self.local_addr);
        let mut errs: Vec<Option<Error>> = Vec::with_capacity(targets.len());
        // In start order, so that of two attempts done in the same wait the earlier wins.
        let mut pending: Vec<Attempt> = Vec::new();
        let mut revents = Vec::new();
        // `None` = no later start is scheduled (a delay too large to represent).
        let mut next_start = Some(Instant::now());
        loop {
            if cancel.is_some_and(tcp::Cancel::is_cancelled) {
                errs.push(Some(Error::Closed));
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                for a in pending.drain(..) {
                    errs[a.idx] = Some(timeout_error());
                }
                break;
            }
            let started = errs.len();
            if started < targets.len()
                && (pending.is_empty() || next_start.is_some_and(|t| now >= t))
            {
                errs.push(None);
                next_start = now.checked_add(delay);
                match self.launch(started, targets[started], tries, cancel) {
                    Step::Won(conn) => return Ok(conn),
                    Step::Pending(a) => pending.push(a),
                    Step::Failed(i, e) => {
                        errs[i] = Some(e);
                        // RFC 8305 §5: a failed attempt starts the next one at once.
                        next_start = Some(now);
                    }
                }
                continue;
            }
            if pending.is_empty() {
                break;
            }
            let until = if started < targets.len() {
                earliest(deadline, next_start)
            } else {
                deadline
            };
            // Exact to the nanosecond, so the wait never ends before `until`.
            let timeout_ns = until.map(|t| nanos(t.saturating_duration_since(now)));
            revents.clear();
            revents.resize(pending.len(), 0);
            // Up to four connects in flight (nearly every race) without building a list
            // per wait, as `poll_writable` itself keeps its `pollfd`s on the stack.
            let polled = if pending.len() <= 4 {
                let mut fds = [pending[0].fd.as_fd(); 4];
                for (slot, a) in fds.iter_mut().zip(&pending) {
                    *slot = a.fd.as_fd();
                }
                sys::poll_writable(&fds[..pending.len()], timeout_ns, &mut revents)
            } else {
                let fds: Vec<BorrowedFd<'_>> = pending.iter().map(|a| a.fd.as_fd()).collect();
                sys::poll_writable(&fds, timeout_ns, &mut revents)
            };
            match polled {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => {
                    let code = e.raw_os_error().unwrap_or(libc::EIO);
                    for a in pending.drain(..) {
                        let e = io::Error::from_raw_os_error(code);
                        errs[a.idx] = Some(Error::sys("ppoll", e));
                    }
                    break;
                }
            }
            // The ready ones in start order; the others keep their place.
            let mut i = 0;
            for &got in &revents {
                if got == 0 {
                    i += 1;
                    continue;
                }
                let a = pending.remove(i);
                let addr = targets[a.idx];
                match self.finish(a, addr, got, cancel) {
                    Step::Won(conn) => return Ok(conn),
                    Step::Pending(a) => {
                        pending.insert(i, a);
                        i += 1;
                    }
                    Step::Failed(idx, e) => {
                        errs[idx] = Some(e);
                        next_start = Some(Instant::now());
                    }
                }
            }
        }
        Err(errs.into_iter().flatten().collect())
    }

    /// Opens a socket for target `idx` and starts a non-blocking connect to `addr`;
    /// `tries` sockets may be used in all (a self-connect is retried with a fresh one).
    fn launch(
        &self,
        idx: usize,
        addr: SocketAddr,
        tries: usize,
        cancel: Option<&tcp::Cancel>,
    ) -> Step {
        let fd = match tcp::connect_socket(addr, self.local_addr) {
            Ok(fd) => Arc::new(fd),
            Err(e) => return Step::Failed(idx, e),
        };
        if let Some(Err(e)) = cancel.map(|c| c.track(&fd)) {
            return Step::Failed(idx, e);
        }
        let a = Attempt { idx, fd, tries };
        match a
            .fd
            .control("connect", |b| sys::connect(b, &sys::ip_addr(addr)))
        {
            Ok(()) => self.conclude(a, addr, cancel),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINPROGRESS) => Step::Pending(a),
                Some(libc::EISCONN) => self.conclude(a, addr, cancel),
                // EAGAIN included: TCP ran out of local ports, and waiting would spin.
                _ => fail(a, e, cancel),
            },
        }
    }

    /// An attempt whose socket `ppoll` reported (`revents`): the connect's outcome.
    fn finish(
        &self,
        a: Attempt,
        addr: SocketAddr,
        revents: i16,
        cancel: Option<&tcp::Cancel>,
    ) -> Step {
        // Writable and nothing else: a TCP socket only polls writable once connected,
        // and a failed connect adds POLLERR, so the two checks below can be skipped.
        if revents == sys::WRITABLE {
            return self.conclude(a, addr, cancel);
        }
        match a.fd.control("connect", sys::take_error) {
            Ok(None) => {}
            Ok(Some(e)) => return fail(a, Error::sys("connect", e), cancel),
            Err(e) => return fail(a, e, cancel),
        }
        match a.fd.control("connect", |b| sys::sock(&b).peer_addr()) {
            Ok(_) => self.conclude(a, addr, cancel),
            // Writable without an error yet not connected: still in progress.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Step::Pending(a),
            Err(e) => fail(a, e, cancel),
        }
    }

    /// A connected attempt becomes the winning connection, unless it connected to
    /// itself: then a fresh socket tries again while tries are left. A cancelled
    /// attempt fails with [`Error::Closed`] even if it connected.
    fn conclude(&self, a: Attempt, addr: SocketAddr, cancel: Option<&tcp::Cancel>) -> Step {
        let Attempt { idx, fd, tries } = a;
        let fd = match cancel {
            Some(c) => c.release(fd),
            // Never shared without a cancel.
            None => Arc::into_inner(fd).ok_or(Error::Closed),
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => return Step::Failed(idx, e),
        };
        match tcp::Conn::connected(fd, addr) {
            Ok(Some(conn)) => Step::Won(conn),
            Ok(None) if tries > 1 => self.launch(idx, addr, tries - 1, cancel),
            Ok(None) => Step::Failed(idx, tcp::self_connect_error()),
            Err(e) => Step::Failed(idx, e),
        }
    }
}

/// A failed attempt: no longer tracked by `cancel`, so its socket closes now.
fn fail(a: Attempt, e: Error, cancel: Option<&tcp::Cancel>) -> Step {
    if let Some(c) = cancel {
        // Cancelled meanwhile or not, the attempt's own error is the one to report.
        let _ = c.untrack(&a.fd);
    }
    Step::Failed(a.idx, e)
}

/// `addrs` in RFC 8305 order (families interleaved, duplicates dropped).
fn interleaved(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    let mut ordered = Vec::with_capacity(addrs.len());
    for ip in interleave(&ips) {
        if let Some(a) = addrs.iter().find(|a| a.ip() == ip && !ordered.contains(*a)) {
            ordered.push(*a);
        }
    }
    ordered
}

/// A connect in flight.
#[derive(Debug)]
struct Attempt {
    /// Which target (and error slot) it is for.
    idx: usize,
    /// Shared only with a `tcp::Cancel` that tracks it while it connects.
    fd: Arc<Fd>,
    /// Sockets this target may still use, this one included.
    tries: usize,
}

/// Where an attempt stands after a step.
enum Step {
    Won(tcp::Conn),
    Pending(Attempt),
    Failed(usize, Error),
}

/// A wait's timeout for `sys::poll_writable` (exact: a `Duration` holds nanoseconds).
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Go's `partialDeadline`: an equal share of the remaining budget per address left,
/// but at least `min(remaining, 2 s)`.
fn partial_deadline(now: Instant, budget: Option<Instant>, left: usize) -> Result<Option<Instant>> {
    let Some(b) = budget else { return Ok(None) };
    let remaining = b.saturating_duration_since(now);
    if remaining.is_zero() {
        return Err(timeout_error());
    }
    let share = remaining / left.max(1) as u32;
    let share = if share < SANE_MIN_ATTEMPT {
        remaining.min(SANE_MIN_ATTEMPT)
    } else {
        share
    };
    Ok(Some(now + share))
}

/// How to listen by `host:port` string (Go's `net.ListenConfig`).
///
/// ```
/// use reseau::resolve::ListenConfig;
/// # fn main() -> reseau::Result<()> {
/// let ln = ListenConfig::default().listen("tcp4", "127.0.0.1:0")?;
/// assert!(ln.local_addr().unwrap().is_ipv4());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenConfig {
    /// `listen(2)` backlog (default: the system's `somaxconn`, as Go).
    pub backlog: i32,
    /// `SO_REUSEADDR` (default on).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` (default off).
    pub reuse_port: bool,
}

impl Default for ListenConfig {
    fn default() -> ListenConfig {
        ListenConfig {
            backlog: tcp::default_backlog(),
            reuse_address: true,
            reuse_port: false,
        }
    }
}

impl ListenConfig {
    /// Listens on `address` (`host:port`) for `network` (`tcp`, `tcp4`, `tcp6`).
    ///
    /// An empty host listens on the wildcard: `tcp` on `[::]` dual-stack
    /// (`IPV6_V6ONLY` off; `0.0.0.0` where the host has no IPv6), `tcp6` on `[::]` with
    /// `IPV6_V6ONLY` on, `tcp4` on `0.0.0.0`. A host name listens on its first IPv4
    /// address (for `tcp6`, its first IPv6 one), as Go does.
    ///
    /// # Errors
    /// One [`Error::Op`] with `op == "listen"` around [`Error::UnknownNetwork`],
    /// [`Error::Address`], [`Error::Lookup`], `Sys { op: "bind" }` (`EADDRINUSE`, …).
    pub fn listen(&self, network: &str, address: &str) -> Result<tcp::Listener> {
        self.listen_inner(network, address)
            .map_err(|e| wrap("listen", network, None, address, e))
    }

    fn listen_inner(&self, network: &str, address: &str) -> Result<tcp::Listener> {
        let net = Net::parse(network)?;
        let (host, port) = split_host_port(address)?;
        let port = lookup_port(network, &port)?;
        let ip = if host.is_empty() {
            None
        } else {
            match parse_literal(&host)? {
                Some((ip, scope)) => Some((ip, scope)),
                None => {
                    let found = system_resolver().lookup(&host)?;
                    let pick = found
                        .iter()
                        .find(|ip| net.allows(ip) && (net == Net::Tcp6 || ip.is_ipv4()))
                        .or_else(|| found.iter().find(|ip| net.allows(ip)));
                    pick.map(|ip| (*ip, 0))
                }
            }
        };
        let ip = match ip {
            Some((ip, _)) if !net.allows(&ip) => {
                return Err(Error::Address {
                    msg: "no suitable address found".to_string(),
                    addr: host,
                });
            }
            Some(found) => Some(found),
            None if !host.is_empty() => {
                return Err(Error::Address {
                    msg: "no suitable address found".to_string(),
                    addr: host,
                });
            }
            None => None,
        };
        let v6only = Some(net == Net::Tcp6);
        match ip {
            Some((IpAddr::V6(v6), scope)) => self.bind(
                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
                v6only,
            ),
            Some((ip, _)) => self.bind(SocketAddr::new(ip, port), None),
            None if net == Net::Tcp4 => {
                self.bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), None)
            }
            None => match self.bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), v6only) {
                Err(e) if net == Net::Tcp && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    self.bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), None)
                }
                other => other,
            },
        }
    }

    fn bind(&self, addr: SocketAddr, v6only: Option<bool>) -> Result<tcp::Listener> {
        tcp::listen_with(
            addr,
            self.backlog,
            self.reuse_address,
            self.reuse_port,
            v6only,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_deadline_follows_go() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let cases = [
            (s(12), 1, s(12)),
            (s(12), 2, s(6)),
            (s(12), 3, s(4)),
            (s(12), 999, s(2)),
        ];
        for (remaining, left, want) in cases {
            assert_eq!(
                partial_deadline(now, Some(now + remaining), left).unwrap(),
                Some(now + want)
            );
        }
        let short = Duration::from_millis(1900);
        assert_eq!(
            partial_deadline(now, Some(now + short), 999).unwrap(),
            Some(now + short)
        );
        assert_eq!(partial_deadline(now, None, 3).unwrap(), None);
        assert!(
            partial_deadline(now, Some(now), 1)
                .unwrap_err()
                .is_timeout()
        );
    }

    /// The race's wait: readiness per descriptor, and a timeout that never ends early.
    #[test]
    fn poll_writable_reports_each_fd_and_never_times_out_early() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let (mut full, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (free, _peer2) = std::os::unix::net::UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        let chunk = [0u8; 65536];
        while full.write(&chunk).is_ok() {}
        let mut ready = [-1];
        for wait in [Duration::from_millis(1), Duration::from_millis(60)] {
            let start = Instant::now();
            let n = sys::poll_writable(&[full.as_fd()], Some(wait.as_nanos() as u64), &mut ready)
                .unwrap();
            let took = start.elapsed();
            assert_eq!((n, ready), (0, [0]));
            assert!(took >= wait, "waited {took:?} of {wait:?}");
            assert!(took < wait + Duration::from_secs(2), "waited {took:?}");
        }
        let mut ready = [-1, -1];
        let start = Instant::now();
        let n = sys::poll_writable(
            &[full.as_fd(), free.as_fd()],
            Some(5_000_000_000),
            &mut ready,
        )
        .unwrap();
        assert_eq!((n, ready), (1, [0, sys::WRITABLE]));
        assert!(start.elapsed() < Duration::from_secs(2));
        // More descriptors than the stack buffer holds.
        let mut fds = vec![full.as_fd(); 6];
        fds.push(free.as_fd());
        let mut ready = [-1; 7];
        let n = sys::poll_writable(&fds, Some(5_000_000_000), &mut ready).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ready, [0, 0, 0, 0, 0, 0, sys::WRITABLE]);
        // No timeout: returns as soon as one is ready.
        let n = sys::poll_writable(&[free.as_fd()], None, &mut [0]).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn wrap_never_double_wraps_or_wraps_config_errors() {
        let inner = wrap("dial", "tcp", None, "x:1", Error::Closed);
        assert!(matches!(&inner, Error::Op(_)));
        let again = wrap("dial", "tcp", None, "x:1", inner);
        match again {
            Error::Op(op) => assert!(matches!(op.err, Error::Closed)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            wrap("dial", "tcp", None, "x", Error::InvalidArgument("p".into())),
            Error::InvalidArgument(_)
        ));
    }
}
