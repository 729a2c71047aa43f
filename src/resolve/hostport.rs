//! `host:port` strings, ports, service names and IP literals (Go's `SplitHostPort`,
//! `JoinHostPort`, `parsePort`, `LookupPort`).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use crate::{Error, Result};

/// An [`Error::Address`] with Go's message text.
pub(crate) fn addr_err(msg: &str, addr: &str) -> Error {
    Error::Address {
        msg: msg.to_string(),
        addr: addr.to_string(),
    }
}

/// Splits `"host:port"`, `"[host]:port"` or `"[host%zone]:port"` into host and port
/// (Go's `net.SplitHostPort`, byte for byte).
///
/// The port is the text after the **last** colon and may be empty or a service name;
/// see [`lookup_port`]. A host containing colons must be bracketed. Brackets and zones
/// are not checked beyond what splitting needs: `"[::1%lo]:80"` gives `("::1%lo", "80")`.
///
/// ```
/// use reseau::resolve::split_host_port;
/// assert_eq!(split_host_port("127.0.0.1:80")?, ("127.0.0.1".into(), "80".into()));
/// assert_eq!(split_host_port("[::1]:http")?, ("::1".into(), "http".into()));
/// assert_eq!(split_host_port(":0")?, ("".into(), "0".into()));
/// let err = split_host_port("::1").unwrap_err();
/// assert_eq!(err.to_string(), "address ::1: too many colons in address");
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::Address`] with `addr` = the input and `msg` one of Go's texts:
/// `missing port in address`, `too many colons in address`, `missing ']' in address`,
/// `unexpected '[' in address`, `unexpected ']' in address`.
pub fn split_host_port(hostport: &str) -> Result<(String, String)> {
    split(hostport).map(|(h, p)| (h.to_string(), p.to_string()))
}

/// [`split_host_port`] without copying (the dialer's hot path).
pub(crate) fn split(hostport: &str) -> Result<(&str, &str)> {
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    let err = |msg: &str| Err(addr_err(msg, hostport));

    // The port starts after the last colon.
    let Some(i) = hostport.rfind(':') else {
        return err(MISSING_PORT);
    };
    // Positions before which a '[' resp. ']' may legitimately appear.
    let (j, k);
    let host;
    if hostport.starts_with('[') {
        // Expect the first ']' just before the last ':'.
        let Some(end) = hostport.find(']') else {
            return err("missing ']' in address");
        };
        if end + 1 == hostport.len() {
            // There can't be a ':' behind the ']' now.
            return err(MISSING_PORT);
        } else if end + 1 != i {
            // Either ']' isn't followed by a colon, or it is followed by a colon
            // that is not the last one.
            return if hostport.as_bytes()[end + 1] == b':' {
                err(TOO_MANY_COLONS)
            } else {
                err(MISSING_PORT)
            };
        }
        host = &hostport[1..end];
        (j, k) = (1, end + 1);
    } else {
        host = &hostport[..i];
        if host.contains(':') {
            return err(TOO_MANY_COLONS);
        }
        (j, k) = (0, 0);
    }
    if hostport[j..].contains('[') {
        return err("unexpected '[' in address");
    }
    if hostport[k..].contains(']') {
        return err("unexpected ']' in address");
    }
    Ok((host, &hostport[i + 1..]))
}

/// Joins a host and a port into `"host:port"`, bracketing a host that contains a colon
/// (an IPv6 literal, with or without zone): Go's `net.JoinHostPort`.
///
/// `port` may be a number or any text (it is not checked).
///
/// ```
/// use reseau::resolve::join_host_port;
/// assert_eq!(join_host_port("::1", 80), "[::1]:80");
/// assert_eq!(join_host_port("fe80::1%lo", "http"), "[fe80::1%lo]:http");
/// assert_eq!(join_host_port("localhost", ""), "localhost:");
/// ```
pub fn join_host_port(host: &str, port: impl Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses a decimal port the way Go's `parsePort` does: returns `(value, needs_lookup)`.
///
/// - `""` → `(0, false)` (Go's legacy "empty means 0").
/// - An optional `+` or `-`, then decimal digits → the value, saturated to
///   `±(2^30 - 1)` / `-2^30` so huge inputs cannot wrap; range is **not** checked here.
/// - As in Go, the scan stops once the value has saturated: whatever follows is not
///   looked at, so `"9990000000000h"` is the saturated number `(2^30 - 1, false)`, not
///   a service name (the caller's range check then rejects it as an invalid port).
/// - Anything else, i.e. a non-digit before saturation (a service name) → `(0, true)`.
///
/// ```
/// use reseau::resolve::parse_port;
/// assert_eq!(parse_port("443"), (443, false));
/// assert_eq!(parse_port("-1"), (-1, false));
/// assert_eq!(parse_port("https"), (0, true));
/// assert_eq!(parse_port("80h"), (0, true));
/// assert_eq!(parse_port("99999999999"), ((1 << 30) - 1, false));
/// assert_eq!(parse_port("9990000000000h"), ((1 << 30) - 1, false));
/// ```
pub fn parse_port(service: &str) -> (i64, bool) {
    const CUTOFF: u64 = 1 << 30;
    if service.is_empty() {
        return (0, false);
    }
    let (neg, digits) = match service.as_bytes()[0] {
        b'+' => (false, &service[1..]),
        b'-' => (true, &service[1..]),
        _ => (false, service),
    };
    let mut n: u64 = 0;
    for d in digits.bytes() {
        if !d.is_ascii_digit() {
            return (0, true);
        }
        // As Go: once saturated, the rest of the text is not looked at.
        if n >= CUTOFF {
            n = u64::MAX;
            break;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    let port = if !neg && n >= CUTOFF {
        CUTOFF as i64 - 1
    } else if neg && n > CUTOFF {
        CUTOFF as i64
    } else {
        n as i64
    };
    (if neg { -port } else { port }, false)
}

/// Go's built-in services, consulted before `/etc/services` so the common names work
/// on systems without that file. `domain/tcp` is added (DNS over TCP is as standard).
const BUILTIN: &[(&str, &str, u16)] = &[
    ("tcp", "domain", 53),
    ("tcp", "ftp", 21),
    ("tcp", "ftps", 990),
    ("tcp", "gopher", 70),
    ("tcp", "http", 80),
    ("tcp", "https", 443),
    ("tcp", "imap2", 143),
    ("tcp", "imap3", 220),
    ("tcp", "imaps", 993),
    ("tcp", "pop3", 110),
    ("tcp", "pop3s", 995),
    ("tcp", "smtp", 25),
    ("tcp", "submissions", 465),
    ("tcp", "ssh", 22),
    ("tcp", "telnet", 23),
    ("udp", "domain", 53),
];

/// `/etc/services`, read once: `"proto/name"` (lowercase, aliases included) → port.
fn etc_services() -> &'static HashMap<String, u16> {
    static MAP: OnceLock<HashMap<String, u16>> = OnceLock::new();
    MAP.get_or_init(|| {
        std::fs::read_to_string("/etc/services")
            .map(|text| parse_services(&text))
            .unwrap_or_default()
    })
}

/// Parses `services(5)` text: `name port/proto [aliases…] [# comment]`.
fn parse_services(text: &str) -> HashMap<String, u16> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let (Some(name), Some(spec)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, proto)) = spec.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let proto = proto.to_ascii_lowercase();
        for n in std::iter::once(name).chain(fields) {
            // First entry wins, as for a linear scan of the file.
            map.entry(format!("{proto}/{}", n.to_ascii_lowercase()))
                .or_insert(port);
        }
    }
    map
}

/// Looks a service name up for one protocol: built-in table, then `/etc/services`.
fn service_port(proto: &str, name: &str) -> Option<u16> {
    let name = name.to_ascii_lowercase();
    BUILTIN
        .iter()
        .find(|(p, n, _)| *p == proto && *n == name)
        .map(|&(_, _, port)| port)
        .or_else(|| etc_services().get(&format!("{proto}/{name}")).copied())
}

/// The port for `service` on `network` (Go's `net.LookupPort`).
///
/// A decimal `service` is parsed with [`parse_port`]; a name is looked up
/// case-insensitively in a built-in table of common services (Go's: `http`, `https`,
/// `ftp`, `ssh`, `smtp`, `domain`, …), then in `/etc/services` (read once). Networks:
/// `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6`, and `""`/`"ip"` (tcp, then udp).
/// Unlike Go, the network is checked for numeric services too.
///
/// ```
/// use reseau::resolve::lookup_port;
/// assert_eq!(lookup_port("tcp", "8080")?, 8080);
/// assert_eq!(lookup_port("tcp", "HTTPS")?, 443);
/// assert_eq!(lookup_port("udp", "domain")?, 53);
/// assert!(lookup_port("tcp", "65536").is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::UnknownNetwork`] for any other network; [`Error::Lookup`] `unknown port`
/// (name `"<network>/<service>"`, as Go's `DNSError`) for an unknown name;
/// [`Error::Address`] `invalid port` for a number outside `0..=65535`.
pub fn lookup_port(network: &str, service: &str) -> Result<u16> {
    let protos: &[&str] = match network {
        "tcp" | "tcp4" | "tcp6" => &["tcp"],
        "udp" | "udp4" | "udp6" => &["udp"],
        "" | "ip" => &["tcp", "udp"],
        _ => return Err(Error::UnknownNetwork(network.to_string())),
    };
    let (port, needs_lookup) = parse_port(service);
    if needs_lookup {
        return protos
            .iter()
            .find_map(|p| service_port(p, service))
            .ok_or_else(|| Error::Lookup {
                msg: "unknown port".to_string(),
                name: format!("{network}/{service}"),
            });
    }
    u16::try_from(port).map_err(|_| addr_err("invalid port", service))
}

/// Parses an IP literal host (no brackets), with an optional IPv6 zone after the
/// last `%`: `"127.0.0.1"`, `"::1"`, `"fe80::1%7"`, `"fe80::1%lo"`.
///
/// Returns `Ok(Some((ip, scope_id)))` for a literal (`scope_id` 0 without zone; see
/// [`scope_id`] for zones), `Ok(None)` for anything that is not a literal (a name for
/// a [`Resolver`](crate::resolve::Resolver)). IPv4 is strict dotted-quad: `127.1`,
/// `01.2.3.4` and `0x7f.0.0.1` are names, not literals. A leading `%` is not a zone.
/// Callers check this first: IP literals never reach a resolver.
///
/// ```
/// use std::net::IpAddr;
/// use reseau::resolve::parse_literal;
/// assert_eq!(parse_literal("::1")?, Some(("::1".parse::<IpAddr>().unwrap(), 0)));
/// assert_eq!(parse_literal("fe80::1%7")?, Some(("fe80::1".parse::<IpAddr>().unwrap(), 7)));
/// assert_eq!(parse_literal("localhost")?, None);
/// assert!(parse_literal("127.0.0.1%7").is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::Address`] (`addr` = `host`) when the text before `%` is an IP literal but
/// the zone is not usable: `invalid scoped address` (IPv4 with a zone),
/// `invalid scoped address zone` (empty zone), `invalid scope id` (number above
/// `u32::MAX`), `unknown interface zone` (no such interface).
pub fn parse_literal(host: &str) -> Result<Option<(IpAddr, u32)>> {
    let (base, zone) = match host.rfind('%') {
        Some(i) if i > 0 => (&host[..i], &host[i + 1..]),
        _ => return Ok(host.parse::<IpAddr>().ok().map(|ip| (ip, 0))),
    };
    if base.parse::<Ipv4Addr>().is_ok() {
        return Err(addr_err("invalid scoped address", host));
    }
    let Ok(ip) = base.parse::<Ipv6Addr>() else {
        return Ok(None);
    };
    if zone.is_empty() {
        return Err(addr_err("invalid scoped address zone", host));
    }
    let id = zone_index(zone).map_err(|msg| addr_err(msg, host))?;
    Ok(Some((IpAddr::V6(ip), id)))
}

/// The scope id for an IPv6 zone: `""` → 0, decimal → its value, else the index of the
/// network interface of that name (`"lo"` → 1 on Linux).
///
/// ```
/// assert_eq!(reseau::resolve::scope_id("")?, 0);
/// assert_eq!(reseau::resolve::scope_id("7")?, 7);
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::Address`] (`addr` = `zone`): `invalid scope id` for a number above
/// `u32::MAX`, `unknown interface zone` for a name that is no interface.
pub fn scope_id(zone: &str) -> Result<u32> {
    zone_index(zone).map_err(|msg| addr_err(msg, zone))
}

fn zone_index(zone: &str) -> std::result::Result<u32, &'static str> {
    if zone.is_empty() {
        return Ok(0);
    }
    if zone.bytes().all(|b| b.is_ascii_digit()) {
        return zone.parse::<u32>().map_err(|_| "invalid scope id");
    }
    if_index(zone).ok_or("unknown interface zone")
}

/// The interface index for a zone name (`if_nametoindex(3)`).
fn if_index(name: &str) -> Option<u32> {
    crate::sys::if_nametoindex(name)
}

/// Lowercase, trailing dots stripped: the key under which a host is cached, coalesced
/// and looked up in a [`StaticResolver`](crate::resolve::StaticResolver).
pub(crate) fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_text() {
        let m = parse_services(
            "# c\nhttp\t80/tcp www # WorldWideWeb\nfoo 7/udp Bar\nbad x/tcp\nnoport\n",
        );
        assert_eq!(m.get("tcp/http"), Some(&80));
        assert_eq!(m.get("tcp/www"), Some(&80));
        assert_eq!(m.get("udp/bar"), Some(&7));
        assert_eq!(m.get("udp/foo"), Some(&7));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn keys() {
        assert_eq!(host_key("Example.COM.."), "example.com");
    }
}
