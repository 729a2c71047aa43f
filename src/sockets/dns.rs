//! DNS and interface helpers of the Julia facade: [`getalladdrinfo`], [`getaddrinfo`],
//! [`getaddrinfo_of`], [`getnameinfo`], [`getipaddrs`], [`getipaddrs_of`],
//! [`getipaddr`], [`getipaddr_of`], [`islinklocaladdr`].
//!
//! Like Julia's, these calls **block the calling thread** until the system resolver
//! answers, with no timeout of their own (the libc resolver's timeouts apply). For a
//! lookup bounded by a deadline use [`resolve::SystemResolver`](crate::resolve::SystemResolver)
//! and `lookup_until`, or dial with a [`Dialer`](crate::resolve::Dialer), whose budget
//! covers resolution.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;

use super::addr::{IPAddr, IPv4, IpFamily};
use crate::resolve::{check_host, getaddrinfo as system_getaddrinfo};
use crate::{DnsError, Error, Result};

/// A `getaddrinfo`/`getnameinfo` failure: `Dns` with the `EAI_*` code, except
/// `EAI_SYSTEM` (and errors without a code), which become `Sys { op }` with the errno,
/// as Julia rethrows them as `IOError`s.
fn lookup_err(code: i32, source: io::Error, op: &'static str, host: String) -> Error {
    if code == 0 || code == libc::EAI_SYSTEM {
        return Error::Sys { op, source };
    }
    Error::Dns(DnsError { host, code })
}

fn no_name(host: &str) -> Error {
    Error::Dns(DnsError {
        host: host.to_string(),
        code: libc::EAI_NONAME,
    })
}

/// Every address of `host`, in the order the system resolver returns them (RFC 6724
/// sorting by libc), duplicates removed (Julia's `getalladdrinfo`).
///
/// One blocking `getaddrinfo(host, NULL, {AF_UNSPEC, SOCK_STREAM})` on the calling
/// thread, as in Julia. IP literals (`"127.0.0.1"`, `"::1"`) are answered by libc
/// without DNS. IPv6 scope ids are dropped and IPv4-mapped IPv6 answers stay IPv6.
///
/// ```
/// use reseau::sockets::{getalladdrinfo, IPv4};
/// assert_eq!(getalladdrinfo("127.0.0.1")?, [IPv4::new(127, 0, 0, 1)]);
/// if let Ok(addrs) = getalladdrinfo("localhost") {
///     assert!(!addrs.is_empty());
/// }
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] when `host` contains NUL (before any call);
/// [`Error::Dns`] with the `EAI_*` code when the lookup fails (`EAI_NONAME` for a name
/// that does not exist, `EAI_AGAIN` when the resolver cannot be reached, …);
/// `Error::Sys { op: "getaddrinfo" }` for `EAI_SYSTEM`, with the errno.
pub fn getalladdrinfo(host: &str) -> Result<Vec<IPAddr>> {
    check_host(host)?;
    let addrs = system_getaddrinfo(host)
        .map_err(|e| lookup_err(e.code, e.source, "getaddrinfo", host.to_string()))?;
    Ok(addrs.into_iter().map(IPAddr::from).collect())
}

/// The first address of `host`, of either family (Julia's `getaddrinfo(host)`).
///
/// ```
/// use reseau::sockets::{getaddrinfo, IPv6};
/// assert_eq!(getaddrinfo("::1")?, IPv6(1));
/// if let Ok(ip) = getaddrinfo("localhost") {
///     println!("localhost is {ip}");
/// }
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// As [`getalladdrinfo`]; an empty answer is [`Error::Dns`] `EAI_NONAME`.
pub fn getaddrinfo(host: &str) -> Result<IPAddr> {
    getaddrinfo_of::<IPAddr>(host)
}

/// The first address of `host` in family `T` (Julia's `getaddrinfo(host, T)`).
///
/// ```
/// use reseau::sockets::{getaddrinfo_of, IPv4, IPv6};
/// assert_eq!(getaddrinfo_of::<IPv4>("127.0.0.1")?, IPv4::new(127, 0, 0, 1));
/// let err = getaddrinfo_of::<IPv6>("127.0.0.1").unwrap_err();
/// assert!(matches!(err, reseau::Error::Dns(ref d) if d.name() == "EAI_NONAME"));
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// As [`getalladdrinfo`]; [`Error::Dns`] `EAI_NONAME` (with `host`) when no address
/// of family `T` came back.
pub fn getaddrinfo_of<T: IpFamily>(host: &str) -> Result<T> {
    getalladdrinfo(host)?
        .into_iter()
        .find_map(T::from_ipaddr)
        .ok_or_else(|| no_name(host))
}

/// The host name of `ip` by reverse lookup (Julia's `getnameinfo`).
///
/// One blocking `getnameinfo` with flags 0 (as Julia) on the calling thread: when no
/// name is known, libc answers with the numeric form (in libc's spelling, so an
/// IPv4-mapped address reads `::ffff:192.0.2.1` here, unlike this crate's
/// `Display`). A reverse lookup that is not in `/etc/hosts` asks the configured DNS
/// servers.
///
/// ```
/// use reseau::ip;
/// use reseau::sockets::getnameinfo;
/// if let Ok(name) = getnameinfo(&ip!("127.0.0.1")) {
///     assert!(!name.is_empty()); // "localhost" with a usual /etc/hosts
/// }
/// ```
///
/// # Errors
/// [`Error::Dns`] with the `EAI_*` code (e.g. `EAI_AGAIN` when the resolver cannot be
/// reached); its `host` is the address in `Debug` form, `ip"…"`, as Julia's
/// `repr(ip)`. `Error::Sys { op: "getnameinfo" }` for `EAI_SYSTEM`.
pub fn getnameinfo(ip: &IPAddr) -> Result<String> {
    let sa = SocketAddr::new((*ip).into(), 0);
    dns_lookup::getnameinfo(&sa, 0)
        .map(|(host, _service)| host)
        .map_err(|e| lookup_err(e.error_num(), e.into(), "getnameinfo", format!("{ip:?}")))
}

/// The addresses of this machine's network interfaces, in interface order (Julia's
/// `getipaddrs(; loopback)`).
///
/// Loopback addresses are left out unless `loopback` is true. An address counts as
/// loopback when it is one (127/8, `::1`) or sits on an interface that carries one —
/// an approximation of libuv's "internal interface" flag. Link-local addresses
/// (`fe80::/10`, 169.254/16) are included; IPv6 scope ids are dropped; an address on
/// two interfaces is listed twice. Enumeration is local (`getifaddrs`); no traffic is
/// sent.
///
/// ```
/// use reseau::sockets::{getipaddrs, IPv4};
/// let all = getipaddrs(true)?;
/// assert!(all.contains(&IPv4::new(127, 0, 0, 1).into()));
/// assert!(getipaddrs(false)?.iter().all(|ip| all.contains(ip)));
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// `Error::Sys { op: "getlocalip" }` when the interfaces cannot be listed.
pub fn getipaddrs(loopback: bool) -> Result<Vec<IPAddr>> {
    let ifaces = if_addrs::get_if_addrs().map_err(|e| Error::Sys {
        op: "getlocalip",
        source: e,
    })?;
    let loopback_ifaces: HashSet<&str> = ifaces
        .iter()
        .filter(|i| i.is_loopback())
        .map(|i| i.name.as_str())
        .collect();
    Ok(ifaces
        .iter()
        .filter(|i| loopback || !(i.is_loopback() || loopback_ifaces.contains(i.name.as_str())))
        .map(|i| IPAddr::from(i.ip()))
        .collect())
}

/// [`getipaddrs`] restricted to family `T` (Julia's `getipaddrs(T; loopback)`).
///
/// ```
/// use reseau::sockets::{getipaddrs_of, IPv4, LOCALHOST};
/// assert!(getipaddrs_of::<IPv4>(true)?.contains(&LOCALHOST));
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// As [`getipaddrs`].
pub fn getipaddrs_of<T: IpFamily>(loopback: bool) -> Result<Vec<T>> {
    Ok(getipaddrs(loopback)?
        .into_iter()
        .filter_map(T::from_ipaddr)
        .collect())
}

/// A non-loopback address of this machine: the first IPv4 one, else the first IPv6
/// one (Julia ≥ 1.12's `getipaddr()`; older Julia returned IPv4 only).
///
/// ```
/// use reseau::sockets::{getipaddr, getipaddrs};
/// match getipaddr() {
///     Ok(ip) => assert!(getipaddrs(false)?.contains(&ip)),
///     Err(e) => assert!(e.to_string().contains("No networking interface available")),
/// }
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::Lookup`] with `msg` `No networking interface available` when the machine
/// has only loopback addresses; as [`getipaddrs`] otherwise.
pub fn getipaddr() -> Result<IPAddr> {
    getipaddr_of::<IPAddr>()
}

/// The first non-loopback address of family `T`; for [`IPAddr`] an IPv4 one is
/// preferred (Julia's `getipaddr(T)`).
///
/// ```
/// use reseau::sockets::{getipaddr_of, getipaddrs_of, IPv6};
/// match getipaddr_of::<IPv6>() {
///     Ok(ip) => assert!(getipaddrs_of::<IPv6>(false)?.contains(&ip)),
///     Err(e) => assert!(matches!(e, reseau::Error::Lookup { .. })),
/// }
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// As [`getipaddr`].
pub fn getipaddr_of<T: IpFamily>() -> Result<T> {
    let addrs = getipaddrs_of::<T>(false)?;
    addrs
        .iter()
        .find(|ip| IPv4::from_ipaddr((**ip).into()).is_some())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| Error::Lookup {
            msg: "No networking interface available".to_string(),
            name: format!("local {} address", T::NAME),
        })
}

/// True for a link-local address: 169.254.0.0/16 or `fe80::/10` (Julia's
/// `islinklocaladdr`; an IPv4-mapped link-local IPv6 address is not one, as in Julia).
///
/// ```
/// use reseau::ip;
/// use reseau::sockets::islinklocaladdr;
/// assert!(islinklocaladdr(&ip!("169.254.1.0")));
/// assert!(islinklocaladdr(&ip!("febf::")));
/// assert!(!islinklocaladdr(&ip!("fec0::")));
/// assert!(!islinklocaladdr(&ip!("127.0.0.1")));
/// ```
pub fn islinklocaladdr(ip: &IPAddr) -> bool {
    match ip {
        IPAddr::V4(v4) => v4.0 & 0xffff_0000 == 0xa9fe_0000,
        IPAddr::V6(v6) => v6.0 >> 118 == 0xfe80 >> 6,
    }
}
