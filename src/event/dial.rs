//! Client connects on a loop: resolution off the loop, then RFC 8305 Happy Eyeballs
//! with non-blocking connects.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::ConnectOptions;
use super::reactor::{Cmd, Shared};
use crate::Error;
use crate::resolve::Resolver;
use crate::resolve::pool::{self, Cancel, Task};

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
    pub(crate) attempts: [Option<(TcpStream, SocketAddr)>; MAX_ATTEMPTS],
    pub(crate) errors: Vec<Error>,
    /// Bumped whenever the stagger timer is superseded.
    pub(crate) seq: u64,
    pub(crate) resolved: bool,
    /// The zone of an IPv6 literal host (`fe80::1%eth0`), 0 otherwise.
    pub(crate) scope: u32,
    /// The TLS client context, when the connection is TLS.
    pub(crate) tls: Option<super::tls::Prepared>,
}

impl Dialing {
    pub(crate) fn new(
        host: String,
        port: u16,
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
            seq: 0,
            resolved: false,
            scope: 0,
            tls,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.attempts.iter().filter(|a| a.is_some()).count()
    }

    /// Deregisters and closes every attempt still in flight.
    pub(crate) fn drop_attempts(&mut self, registry: &mio::Registry) {
        for a in self.attempts.iter_mut() {
            if let Some((mut s, _)) = a.take() {
                let _ = registry.deregister(&mut s);
            }
        }
    }

    /// Orders the resolver's answer for attempts (policy, then family interleave).
    pub(crate) fn set_addrs(&mut self, ips: Vec<IpAddr>) -> crate::Result<()> {
        let ips = self.opts.policy.apply(&self.host, ips)?;
        let ips = crate::resolve::interleave(&ips);
        self.pending = ips
            .into_iter()
            .map(|ip| match ip {
                IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, self.scope)),
                ip => SocketAddr::new(ip, self.port),
            })
            .collect();
        self.resolved = true;
        Ok(())
    }

    /// The error a failed dial reports: the first attempt's, wrapped with every attempt.
    pub(crate) fn failure(&mut self, timeout: bool) -> Error {
        let addr = crate::resolve::join_host_port(&self.host, self.port);
        let local = self.opts.local_addr;
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

/// A host that answers itself, as `Dialer` reads it: an IP literal (with its IPv6
/// zone), and an empty host or an unspecified address standing for this machine's
/// loopback (Go's `:port`). `Ok(None)`: a name to resolve.
///
/// # Errors
/// [`Error::Address`] for an unusable zone (see [`parse_literal`](crate::resolve::parse_literal)).
pub(crate) fn literal(host: &str) -> crate::Result<Option<(IpAddr, u32)>> {
    if host.is_empty() {
        return Ok(Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)));
    }
    let Some((ip, scope)) = crate::resolve::parse_literal(host)? else {
        return Ok(None);
    };
    let ip = match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(Some((ip, scope)))
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

/// Whether an attempt the loop saw as ready has connected: `Ok(true)` connected,
/// `Ok(false)` still in progress (a spurious event).
pub(crate) fn check_connected(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
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
