//! The [`Resolver`] trait, the system resolver and the static host map.

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use super::hostport::host_key;
use super::pool;
use crate::{Error, Result};

/// Turns host names into IP addresses.
///
/// Implement [`lookup`](Resolver::lookup); [`lookup_until`](Resolver::lookup_until) is
/// provided. The addresses come back in preference order with no duplicates; a name
/// that does not resolve is [`Error::Lookup`].
///
/// IP literals never reach a resolver: the dialer and listener check
/// [`parse_literal`](crate::resolve::parse_literal) first (the built-in resolvers
/// still answer a bare literal with itself).
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use reseau::resolve::Resolver;
///
/// #[derive(Debug)]
/// struct Loop;
/// impl Resolver for Loop {
///     fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
///         Ok(vec!["127.0.0.1".parse().unwrap()])
///     }
/// }
/// let r: Arc<dyn Resolver> = Arc::new(Loop);
/// assert_eq!(r.lookup("anything")?.len(), 1);
/// assert_eq!(r.clone().lookup_until("anything", None)?.len(), 1);
/// # Ok::<(), reseau::Error>(())
/// ```
pub trait Resolver: Send + Sync + fmt::Debug + 'static {
    /// The addresses of `host`, blocking until the answer is known.
    ///
    /// # Errors
    /// [`Error::Lookup`] when the name does not resolve (`no such host`, …);
    /// [`Error::InvalidArgument`] for a host containing NUL.
    fn lookup(&self, host: &str) -> Result<Vec<IpAddr>>;

    /// As [`lookup`](Resolver::lookup), but gives up waiting at `deadline`
    /// (`None` = no limit). This is what the dialer calls, so the dial budget covers
    /// resolution.
    ///
    /// The provided implementation runs `lookup` on the internal lookup worker pool and
    /// abandons the wait at the deadline; the lookup finishes in the background and its
    /// answer is dropped. A queued lookup whose deadline passes before a worker is free
    /// is not started at all. Without a deadline, or when called on a pool worker (a
    /// resolver nested in another), it just calls `lookup` in place: a worker never
    /// waits on the pool, so nested resolvers cannot deadlock it. The built-in
    /// resolvers override it to answer cache and map hits without a thread hop. Takes
    /// `Arc<Self>` because the abandoned lookup may outlive the call.
    ///
    /// # Errors
    /// As `lookup`, plus [`Error::DeadlineExceeded`] when the deadline passes first
    /// (or has passed already: then no lookup is started), and [`Error::Lookup`] with
    /// `resolver queue full` when 1024 lookups already wait for a worker (an overload:
    /// refused at once rather than left to time out; never negatively cached).
    fn lookup_until(self: Arc<Self>, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        if deadline.is_none() {
            return self.lookup(host);
        }
        let h = host.to_string();
        pool::run_until(host, deadline, move || self.lookup(&h))
    }
}

/// Rejects hosts libc cannot take (a NUL would silently truncate the name): the one
/// check shared by the resolvers and the `sockets` facade.
pub(crate) fn check_host(host: &str) -> Result<()> {
    if host.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "host name contains NUL: {host:?}"
        )));
    }
    Ok(())
}

/// A bare IP literal (no zone) answers itself.
fn literal(host: &str) -> Option<Vec<IpAddr>> {
    host.parse::<IpAddr>().ok().map(|ip| vec![ip])
}

/// Removes duplicates, keeping the first occurrence (so the order is preserved).
pub(crate) fn dedup(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut seen = HashSet::new();
    addrs.into_iter().filter(|ip| seen.insert(*ip)).collect()
}

/// A `getaddrinfo` failure, for each caller to map to its own error.
#[derive(Debug)]
pub(crate) struct GaiError {
    /// The `EAI_*` value (0 for a failure before the call).
    pub(crate) code: i32,
    /// Its text; for `EAI_SYSTEM` the errno.
    pub(crate) source: io::Error,
}

/// One blocking `getaddrinfo(host, NULL, {AF_UNSPEC, SOCK_STREAM})`, on the calling
/// thread: the crate's only one ([`SystemResolver`] and the `sockets` facade). Results
/// in the system's (RFC 6724) order as libc gives them (scope ids dropped, IPv4-mapped
/// IPv6 kept), de-duplicated. Callers check the host with [`check_host`] first.
pub(crate) fn getaddrinfo(host: &str) -> std::result::Result<Vec<IpAddr>, GaiError> {
    let hints = dns_lookup::AddrInfoHints {
        socktype: libc::SOCK_STREAM,
        ..Default::default()
    };
    let iter = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|e| GaiError {
        code: e.error_num(),
        source: io::Error::from(e),
    })?;
    Ok(dedup(
        iter.filter_map(|ai| ai.ok()).map(|ai| ai.sockaddr.ip()),
    ))
}

/// The operating system's resolver (`getaddrinfo`: `/etc/hosts`, DNS, nsswitch).
///
/// Every lookup runs on the internal lookup worker pool, never on the caller's thread,
/// so [`lookup_until`](SystemResolver::lookup_until) can abandon it at a deadline
/// (except when the caller is itself a pool worker, e.g. a
/// [`CachingResolver`](crate::resolve::CachingResolver)'s miss:
/// then `getaddrinfo` runs in place, as a worker never waits on the pool).
/// Answers keep the system's order (RFC 6724: usually IPv6 first when it is routable),
/// de-duplicated.
///
/// ```
/// use reseau::resolve::{Resolver, SystemResolver};
/// let r = SystemResolver::default();
/// if let Ok(addrs) = r.lookup("localhost") {
///     assert!(addrs.iter().all(|ip| ip.is_loopback()));
/// }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver {
    // Private: room for options (hints, pool size) without breaking users.
    _private: (),
}

impl SystemResolver {
    /// The system resolver (same as `default()`).
    pub fn new() -> SystemResolver {
        SystemResolver::default()
    }

    /// Looks `host` up, giving up waiting at `deadline` (`None` = no limit). The
    /// `getaddrinfo` call goes on in the background and its answer is dropped.
    ///
    /// # Errors
    /// [`Error::DeadlineExceeded`] when the deadline passes first;
    /// [`Error::InvalidArgument`] for a host containing NUL; [`Error::Lookup`] with
    /// `no such host` (`EAI_NONAME`), `resolver queue full` (1024 lookups already
    /// waiting for a worker) or `lookup failed: <reason>` otherwise.
    pub fn lookup_until(&self, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        check_host(host)?;
        if let Some(ips) = literal(host) {
            return Ok(ips);
        }
        let h = host.to_string();
        pool::run_until(host, deadline, move || match getaddrinfo(&h) {
            // IPv4-mapped IPv6 answers become IPv4, as Go treats them.
            Ok(ips) => Ok(dedup(ips.into_iter().map(|ip| ip.to_canonical()))),
            Err(e) => Err(Error::Lookup {
                msg: if e.code == libc::EAI_NONAME {
                    "no such host".to_string()
                } else {
                    format!("lookup failed: {}", e.source)
                },
                name: h.clone(),
            }),
        })
    }
}

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        SystemResolver::lookup_until(self, host, None)
    }

    fn lookup_until(self: Arc<Self>, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        SystemResolver::lookup_until(&self, host, deadline)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<IpAddr>,
    delay: Duration,
}

impl Entry {
    /// The entry's answer: its addresses, or `no such host` when it has none (a
    /// resolver never answers `Ok` with an empty list).
    fn answer(self, host: &str) -> Result<Vec<IpAddr>> {
        if self.addrs.is_empty() {
            return Err(StaticResolver::miss(host));
        }
        Ok(self.addrs)
    }
}

/// A fixed host map, for tests and for pinning names (like `/etc/hosts`).
///
/// Host names match case-insensitively and ignoring trailing dots; answers come back
/// in the stored order. A miss goes to the [`fallback`](StaticResolver::fallback)
/// resolver if there is one, else fails with [`Error::Lookup`] `no such host`. A
/// per-host delay ([`insert_with_delay`](StaticResolver::insert_with_delay)) simulates
/// slow resolution.
///
/// ```
/// use std::net::IpAddr;
/// use reseau::resolve::{Resolver, StaticResolver};
/// let r = StaticResolver::new();
/// let lo: IpAddr = "127.0.0.1".parse().unwrap();
/// r.insert("db.test", [lo]);
/// assert_eq!(r.lookup("DB.test.")?, vec![lo]);
/// assert!(r.lookup("other.test").is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct StaticResolver {
    hosts: RwLock<HashMap<String, Entry>>,
    fallback: Option<Arc<dyn Resolver>>,
}

impl StaticResolver {
    /// An empty map without fallback.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Sends misses to `parent` instead of failing.
    pub fn fallback(mut self, parent: Arc<dyn Resolver>) -> StaticResolver {
        self.fallback = Some(parent);
        self
    }

    /// Maps `host` to `addrs` (replacing any earlier entry). Duplicates are dropped.
    /// An empty `addrs` pins `host` as a name without addresses: its lookups fail with
    /// `no such host`, and the [`fallback`](StaticResolver::fallback) is not asked.
    pub fn insert(&self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) {
        self.insert_with_delay(host, addrs, Duration::ZERO);
    }

    /// As [`insert`](StaticResolver::insert), but every lookup of `host` takes `delay`
    /// before answering (a slow DNS server).
    pub fn insert_with_delay(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = IpAddr>,
        delay: Duration,
    ) {
        let entry = Entry {
            addrs: dedup(addrs),
            delay,
        };
        self.write().insert(host_key(host), entry);
    }

    /// Removes `host`; returns whether it was there.
    pub fn remove(&self, host: &str) -> bool {
        self.write().remove(&host_key(host)).is_some()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.hosts.write().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, host: &str) -> Option<Entry> {
        let map = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        map.get(&host_key(host)).cloned()
    }

    fn miss(host: &str) -> Error {
        Error::Lookup {
            msg: "no such host".to_string(),
            name: host.to_string(),
        }
    }
}

impl Resolver for StaticResolver {
    /// # Errors
    /// [`Error::Lookup`] `no such host` for a host not in the map (without fallback).
    fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        check_host(host)?;
        match self.get(host) {
            Some(e) => {
                thread::sleep(e.delay);
                e.answer(host)
            }
            None => match (&self.fallback, literal(host)) {
                (_, Some(ips)) => Ok(ips),
                (Some(parent), None) => parent.lookup(host),
                (None, None) => Err(Self::miss(host)),
            },
        }
    }

    /// Answers in place: a delayed entry sleeps until the earlier of its delay and
    /// `deadline`; misses go to the fallback's `lookup_until`.
    fn lookup_until(self: Arc<Self>, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        check_host(host)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::DeadlineExceeded);
        }
        match self.get(host) {
            Some(e) => {
                // `None`: a delay past what `Instant` can represent, i.e. never.
                let ready = Instant::now().checked_add(e.delay);
                match deadline {
                    Some(d) if ready.is_none_or(|r| d < r) => {
                        thread::sleep(d.saturating_duration_since(Instant::now()));
                        Err(Error::DeadlineExceeded)
                    }
                    _ => {
                        thread::sleep(
                            ready.map_or(e.delay, |r| r.saturating_duration_since(Instant::now())),
                        );
                        e.answer(host)
                    }
                }
            }
            None => match (&self.fallback, literal(host)) {
                (_, Some(ips)) => Ok(ips),
                (Some(parent), None) => parent.clone().lookup_until(host, deadline),
                (None, None) => Err(Self::miss(host)),
            },
        }
    }
}
