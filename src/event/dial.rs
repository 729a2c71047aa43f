//! Client connects on a loop: resolution off the loop, then RFC 8305 Happy Eyeballs
//! with non-blocking connects.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::ConnectOptions;
use super::reactor::{Cmd, Shared};
use crate::Error;
use crate::resolve::pool::{self, Cancel, Task};
use crate::resolve::{Net, Resolver};

/// Most connect attempts in flight at once (token space: 4 bits per slot).
pub(crate) const MAX_ATTEMPTS: usize = 15;

/// A client's dial in progress.
#[derive(Debug)]
pub(crate) struct Dialing {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) opts: ConnectOptions,
    /// Addresses not tried yet, in attempt order.
    pub(crate) pending: VecDeque<SocketAddr>,
    /// In-flight attempts by sub-token (index + 1).
    pub(crate) attempts: [Option<Attempt>; MAX_ATTEMPTS],
    /// Every started attempt's error.
    pub(crate) errors: Vec<Error>,
    /// Why there was nothing to attempt (resolution, no usable address): reported
    /// alone, as `Dialer` does, not as an attempt.
    pub(crate) setup: Option<Error>,
    /// Bumped whenever the stagger timer is superseded.
    pub(crate) seq: u64,
    pub(crate) resolved: bool,
    /// What the host stands for when it needs no resolution ([`literal`]), until the
    /// loop takes it: `None` for a name.
    pub(crate) literal: Option<crate::Result<(IpAddr, u32)>>,
    /// The TLS client context, when the connection is TLS.
    pub(crate) tls: Option<super::tls::Prepared>,
}

impl Dialing {
    /// A dial of `host` at `port`; `literal` is what [`literal`] read `host` as.
    pub(crate) fn new(
        host: String,
        port: u16,
        literal: crate::Result<Option<(IpAddr, u32)>>,
        opts: ConnectOptions,
        tls: Option<super::tls::Prepared>,
    ) -> Dialing {
        Dialing {
            host,
            port,
            opts,
            pending: VecDeque::new(),
            attempts: Default::default(),
            errors: Vec::new(),
            setup: None,
            seq: 0,
            resolved: false,
            literal: literal.transpose(),
            tls,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.attempts.iter().filter(|a| a.is_some()).count()
    }

    /// Deregisters and closes every attempt still in flight.
    pub(crate) fn drop_attempts(&mut self, registry: &mio::Registry) {
        for a in self.attempts.iter_mut() {
            if let Some(mut a) = a.take() {
                let _ = registry.deregister(&mut a.stream);
            }
        }
    }

    /// Starts a connect to `addr` in a free attempt slot, registered for writability
    /// under `token(sub)`; `tries` sockets may be used for it in all.
    ///
    /// # Errors
    /// As [`start_connect`]; `Sys` `connect` when the socket cannot be registered.
    pub(crate) fn launch(
        &mut self,
        registry: &mio::Registry,
        addr: SocketAddr,
        tries: usize,
        token: impl FnOnce(usize) -> mio::Token,
    ) -> crate::Result<()> {
        let mut stream = start_connect(addr, self.opts.local_addr)?;
        let sub = self
            .attempts
            .iter()
            .position(Option::is_none)
            .expect("room");
        registry
            .register(&mut stream, token(sub + 1), mio::Interest::WRITABLE)
            .map_err(|e| Error::sys("connect", e))?;
        self.attempts[sub] = Some(Attempt {
            stream,
            addr,
            tries,
        });
        Ok(())
    }

    /// The attempt order for a literal host: that one address (no policy applies to
    /// literals, as in `Dialer`).
    pub(crate) fn set_literal(&mut self, ip: IpAddr, scope: u32) {
        self.pending = VecDeque::from([self.socket_addr(ip, scope)]);
        self.resolved = true;
    }

    /// Orders the resolver's answer for attempts as `Dialer` does: the policy, the
    /// addresses of the local address's family, then family interleave.
    pub(crate) fn set_addrs(&mut self, ips: Vec<IpAddr>) -> crate::Result<()> {
        let ips = self.opts.policy.apply(&self.host, ips)?;
        let ips = crate::resolve::usable(Net::Tcp, self.opts.local_addr, &self.host, ips)?;
        self.pending = crate::resolve::interleave(&ips)
            .into_iter()
            .map(|ip| self.socket_addr(ip, 0))
            .collect();
        self.resolved = true;
        Ok(())
    }

    fn socket_addr(&self, ip: IpAddr, scope: u32) -> SocketAddr {
        match ip {
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, scope)),
            ip => SocketAddr::new(ip, self.port),
        }
    }

    /// The error a failed dial reports: the first attempt's, wrapped with every attempt.
    pub(crate) fn failure(&mut self, timeout: bool) -> Error {
        let addr = crate::resolve::join_host_port(&self.host, self.port);
        let local = self.opts.local_addr;
        if let Some(e) = self.setup.take() {
            return crate::resolve::wrap("dial", "tcp", local, &addr, e);
        }
        let errors = std::mem::take(&mut self.errors);
        let first = if timeout {
            Error::DialTimeout("i/o timeout".to_string())
        } else if let Some(e) = errors.first() {
            e.duplicate()
        } else {
            Error::Lookup {
                msg: "no suitable address".to_string(),
                name: self.host.clone(),
            }
        };
        match crate::resolve::wrap("dial", "tcp", local, &addr, first) {
            Error::Op(op) => Error::Op(Box::new(op.with_attempts(errors))),
            e => e,
        }
    }
}

/// What `host` stands for when it needs no resolution, read by the blocking
/// dialer's own code ([`literal_target`](crate::resolve::literal_target)): an IP
/// literal with its zone, or this machine's loopback for an empty or unspecified
/// host. `Ok(None)`: a name to resolve.
///
/// # Errors
/// [`Error::InvalidArgument`] when `local` is of the other family than the literal
/// (found before any I/O); [`Error::Address`] for an unusable zone.
pub(crate) fn literal(
    host: &str,
    local: Option<SocketAddr>,
) -> crate::Result<Option<(IpAddr, u32)>> {
    crate::resolve::literal_target(Net::Tcp, host, local)
}

/// One connect attempt in flight.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
    /// Sockets this address may still use, this one included: a self-connect is
    /// retried with a fresh one ([`tcp::connect_tries`](crate::tcp::connect_tries)).
    pub(crate) tries: usize,
}

/// Starts one non-blocking connect on a socket from [`tcp::connect_socket`] (as the
/// blocking dialer's: families checked first, `socket`/`bind` errors named so).
///
/// # Errors
/// [`Error::InvalidArgument`] for a `local` of the other family; `Sys` `socket`,
/// `bind` or `connect`.
pub(crate) fn start_connect(
    addr: SocketAddr,
    local: Option<SocketAddr>,
) -> crate::Result<TcpStream> {
    let fd = crate::tcp::connect_socket(addr, local)?.into_owned()?;
    match socket2::SockRef::from(&fd).connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(Error::sys("connect", e)),
    }
    Ok(TcpStream::from_std(fd.into()))
}

/// How an attempt the loop saw as ready stands.
#[derive(Debug)]
pub(crate) enum Outcome {
    Connected,
    /// Still in progress (a spurious event).
    Pending,
    /// Connected to itself: a loopback connect to a free port in the ephemeral range
    /// (TCP simultaneous open). Not a connection; the blocking dialer retries it.
    SelfConnected,
    Failed(io::Error),
}

/// Whether an attempt the loop saw as ready has connected.
pub(crate) fn check_connected(s: &TcpStream) -> Outcome {
    match s.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return Outcome::Failed(e),
    }
    match s.peer_addr() {
        // As `tcp::Conn::connected`: an unknown local address is no self-connect.
        Ok(peer) if s.local_addr().is_ok_and(|l| l == peer) => Outcome::SelfConnected,
        Ok(_) => Outcome::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Outcome::Pending,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Outcome::Pending,
        Err(e) => Outcome::Failed(e),
    }
}

/// A lookup on the crate's resolver pool; its answer goes back to the loop as a command.
pub(crate) struct Lookup {
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) host: String,
    pub(crate) due: Option<Instant>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: u32,
    pub(crate) epoch: u32,
}

impl Lookup {
    fn reply(self, result: crate::Result<Vec<IpAddr>>) {
        self.shared.push(Cmd::Resolved {
            slot: self.slot,
            epoch: self.epoch,
            result,
        });
    }
}

impl Task for Lookup {
    fn due(&self) -> Option<Instant> {
        self.due
    }

    fn run(self: Box<Self>) {
        let r = self.resolver.lookup(&self.host);
        self.reply(r);
    }

    fn cancel(self: Box<Self>, why: Cancel) {
        let err = match why {
            Cancel::Expired => Error::DialTimeout("i/o timeout".to_string()),
            Cancel::Full => pool::queue_full(&self.host),
        };
        self.reply(Err(err));
    }
}
