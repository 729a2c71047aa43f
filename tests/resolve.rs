//! `reseau::resolve`: host:port parsing, ports, literals, resolvers, cache, policy
//! (SPEC §5; Reseau's `host_resolvers_tests.jl`, `reference/reseau.md` §5.5; Go's
//! `TestSplitHostPort`, `TestJoinHostPort`, `TestParsePort`, `TestLookupPort`).
//!
//! Only literals, in-memory resolvers and `localhost` are resolved; nothing is
//! connected to. Every wait is bounded; timing bounds are generous for a noisy CI.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::resolve::{
    self, CachingResolver, Policy, Resolver, StaticResolver, SystemResolver, interleave,
    join_host_port, lookup_port, parse_literal, parse_port, scope_id, split_host_port,
};

/// How late a call may return after the moment it should have.
const SLACK: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn address_msg(e: &Error) -> (&str, &str) {
    match e {
        Error::Address { msg, addr } => (msg, addr),
        other => panic!("want Error::Address, got {other:?}"),
    }
}

fn lookup_msg(e: &Error) -> (&str, &str) {
    match e {
        Error::Lookup { msg, name } => (msg, name),
        other => panic!("want Error::Lookup, got {other:?}"),
    }
}

/// Polls `cond` until true or `limit` passes.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

// ---------------------------------------------------------------------------------------
// host:port (Go net/ip_test.go splitJoinTests, splitFailureTests)

const SPLIT_JOIN: &[(&str, &str, &str)] = &[
    ("www.google.com", "80", "www.google.com:80"),
    ("127.0.0.1", "1234", "127.0.0.1:1234"),
    ("::1", "80", "[::1]:80"),
    ("fe80::1%lo0", "80", "[fe80::1%lo0]:80"),
    ("localhost%lo0", "80", "localhost%lo0:80"),
    ("", "0", ":0"),
    ("google.com", "https%foo", "google.com:https%foo"), // Go 1.0 behaviour
    ("127.0.0.1", "", "127.0.0.1:"),                     // Go 1.0 behaviour
    ("www.google.com", "", "www.google.com:"),           // Go 1.0 behaviour
];

#[test]
fn split_join_round_trip() {
    for &(host, port, joined) in SPLIT_JOIN {
        assert_eq!(join_host_port(host, port), joined, "join {host:?} {port:?}");
        let (h, p) = split_host_port(joined).unwrap_or_else(|e| panic!("{joined}: {e}"));
        assert_eq!((h.as_str(), p.as_str()), (host, port), "split {joined:?}");
    }
}

#[test]
fn split_more_ok() {
    let cases = [
        ("golang.org:", "golang.org", ""),
        ("[::1]:", "::1", ""),
        ("[fe80::1%lo0]:443", "fe80::1%lo0", "443"),
        ("[::1]:http", "::1", "http"),
        ("[localhost%lo0]:80", "localhost%lo0", "80"),
        (":http", "", "http"),
    ];
    for (input, host, port) in cases {
        let got = split_host_port(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got, (host.to_string(), port.to_string()), "{input}");
    }
}

#[test]
fn split_failures() {
    let cases = [
        ("www.google.com", "missing port in address"),
        ("127.0.0.1", "missing port in address"),
        ("[::1]", "missing port in address"),
        ("[fe80::1%lo0]", "missing port in address"),
        ("[localhost%lo0]", "missing port in address"),
        ("localhost%lo0", "missing port in address"),
        ("", "missing port in address"),
        ("::1", "too many colons in address"),
        ("::1:443", "too many colons in address"),
        ("fe80::1%lo0", "too many colons in address"),
        ("fe80::1%lo0:80", "too many colons in address"),
        // Cases that did not fail in Go 1.0.
        ("[foo:bar]", "missing port in address"),
        ("[foo:bar]baz", "missing port in address"),
        ("[foo]bar:baz", "missing port in address"),
        ("[foo]:[bar]:baz", "too many colons in address"),
        ("[::1]:443:80", "too many colons in address"),
        ("[foo]:[bar]baz", "unexpected '[' in address"),
        ("foo[bar]:baz", "unexpected '[' in address"),
        ("host[bad]:80", "unexpected '[' in address"),
        ("foo]bar:baz", "unexpected ']' in address"),
        ("host]bad:80", "unexpected ']' in address"),
        ("[::1:80", "missing ']' in address"),
    ];
    for (input, want) in cases {
        let err = split_host_port(input).expect_err(input);
        assert_eq!(address_msg(&err), (want, input), "{input}");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), format!("address {input}: {want}"));
    }
}

#[test]
fn join_numeric_ports() {
    assert_eq!(join_host_port("::1", 443u16), "[::1]:443");
    assert_eq!(join_host_port("127.0.0.1", 0), "127.0.0.1:0");
    assert_eq!(join_host_port("", 80), ":80");
    assert_eq!(
        join_host_port("fe80::1%eth0", "http"),
        "[fe80::1%eth0]:http"
    );
}

// ---------------------------------------------------------------------------------------
// ports (Go net/port_test.go parsePortTests, lookup_test.go lookupPortTests)

#[test]
fn parse_port_table() {
    const CUT: i64 = 1 << 30;
    let cases: &[(&str, i64, bool)] = &[
        ("", 0, false),
        ("-1073741825", -CUT, false),
        ("-1073741824", -CUT, false),
        ("-1073741823", -(CUT - 1), false),
        ("-123456789", -123456789, false),
        ("-1", -1, false),
        ("-0", 0, false),
        ("0", 0, false),
        ("+0", 0, false),
        ("+1", 1, false),
        ("+", 0, false),
        ("-", 0, false),
        ("65535", 65535, false),
        ("65536", 65536, false),
        ("123456789", 123456789, false),
        ("1073741822", CUT - 2, false),
        ("1073741823", CUT - 1, false),
        ("1073741824", CUT - 1, false),
        ("1073741825", CUT - 1, false),
        ("99999999999999999999999", CUT - 1, false),
        ("abc", 0, true),
        ("9pfs", 0, true),
        ("123badport", 0, true),
        ("bad123port", 0, true),
        ("badport123", 0, true),
        ("123456789badport", 0, true),
        ("-2147483649badport", 0, true),
        ("2147483649badport", 0, true),
        (" 80", 0, true),
        ("٣", 0, true), // a non-ASCII digit is a name
    ];
    for &(input, port, lookup) in cases {
        assert_eq!(parse_port(input), (port, lookup), "{input:?}");
    }
}

#[test]
fn lookup_port_numeric() {
    for net in ["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "", "ip"] {
        assert_eq!(lookup_port(net, "0").unwrap(), 0, "{net}");
        assert_eq!(lookup_port(net, "65535").unwrap(), 65535, "{net}");
        assert_eq!(lookup_port(net, "").unwrap(), 0, "{net}");
        assert_eq!(lookup_port(net, "+80").unwrap(), 80, "{net}");
    }
    for bad in ["65536", "-1", "1073741825", "-1073741825"] {
        let err = lookup_port("tcp", bad).expect_err(bad);
        assert_eq!(address_msg(&err), ("invalid port", bad));
    }
}

#[test]
fn lookup_port_named() {
    let cases = [
        ("tcp", "http", 80),
        ("tcp", "https", 443),
        ("tcp", "ftp", 21),
        ("tcp", "ftps", 990),
        ("tcp", "gopher", 70),
        ("tcp", "imap2", 143),
        ("tcp", "imap3", 220),
        ("tcp", "imaps", 993),
        ("tcp", "pop3", 110),
        ("tcp", "pop3s", 995),
        ("tcp", "smtp", 25),
        ("tcp", "submissions", 465),
        ("tcp", "ssh", 22),
        ("tcp", "telnet", 23),
        ("tcp4", "http", 80),
        ("tcp6", "HTTP", 80),
        ("tcp", "HtTpS", 443),
        ("udp", "domain", 53),
        ("udp6", "Domain", 53),
        ("tcp", "domain", 53),
        ("", "http", 80),
        ("ip", "domain", 53),
    ];
    for (net, svc, port) in cases {
        let got = lookup_port(net, svc).unwrap_or_else(|e| panic!("{net}/{svc}: {e}"));
        assert_eq!(got, port, "{net}/{svc}");
    }
}

#[test]
fn lookup_port_unknown_and_bad_network() {
    let err = lookup_port("tcp", "no-such-service-reseau").unwrap_err();
    assert_eq!(
        lookup_msg(&err),
        ("unknown port", "tcp/no-such-service-reseau")
    );
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    // Go's table has `domain` for udp and Go has no builtin udp http.
    let err = lookup_port("udp", "submissions-no-such").unwrap_err();
    assert_eq!(lookup_msg(&err).0, "unknown port");

    for net in ["sctp", "unix", "TCP", "tcp7", "udp64"] {
        let err = lookup_port(net, "http").expect_err(net);
        assert!(
            matches!(&err, Error::UnknownNetwork(n) if n == net),
            "{err:?}"
        );
        // The network is checked for numbers too.
        assert!(matches!(
            lookup_port(net, "80"),
            Err(Error::UnknownNetwork(_))
        ));
    }
}

/// A non-builtin `/etc/services` entry resolves for tcp and udp (Reseau's test).
#[test]
fn lookup_port_etc_services() {
    let Ok(text) = std::fs::read_to_string("/etc/services") else {
        println!("skip: no /etc/services");
        return;
    };
    // First entry per proto/name wins, aliases included: same rule as the crate.
    let mut first: HashMap<(String, String), u16> = HashMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        let Some((port, proto)) = f[1].split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        for name in std::iter::once(f[0]).chain(f[2..].iter().copied()) {
            let key = (proto.to_ascii_lowercase(), name.to_ascii_lowercase());
            if !first.contains_key(&key) {
                first.insert(key.clone(), port);
                order.push(key);
            }
        }
    }
    let builtin = [
        "domain",
        "ftp",
        "ftps",
        "gopher",
        "http",
        "https",
        "imap2",
        "imap3",
        "imaps",
        "pop3",
        "pop3s",
        "smtp",
        "submissions",
        "ssh",
        "telnet",
    ];
    let mut checked = 0;
    for proto in ["tcp", "udp"] {
        let picks = order
            .iter()
            .filter(|(p, n)| p == proto && !builtin.contains(&n.as_str()))
            .filter(|(_, n)| parse_port(n).1) // a numeric "name" would parse as a port
            .take(5);
        for key in picks {
            let want = first[key];
            let got = lookup_port(proto, &key.1).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(got, want, "{key:?}");
            checked += 1;
        }
    }
    if checked == 0 {
        println!("skip: /etc/services has no non-builtin entries");
    }
}

// ---------------------------------------------------------------------------------------
// literals and zones (Reseau "literal host and scope parsing helpers")

#[test]
fn literals() {
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        parse_literal("127.0.0.1").unwrap(),
        Some((ip("127.0.0.1"), 0))
    );
    assert_eq!(parse_literal("::1").unwrap(), Some((v6("::1"), 0)));
    assert_eq!(
        parse_literal("fe80::1%7").unwrap(),
        Some((v6("fe80::1"), 7))
    );
    assert_eq!(
        parse_literal("::ffff:127.0.0.1").unwrap(),
        Some((v6("::ffff:127.0.0.1"), 0))
    );
    assert_eq!(
        parse_literal("fe80::1%0").unwrap(),
        Some((v6("fe80::1"), 0))
    );
    // Names, not literals: they go to a resolver.
    for name in [
        "localhost",
        "127.1",
        "01.2.3.4",
        "0x7f.0.0.1",
        "%z",
        "[::1]",
        "",
        "example.com%eth0",
        "1.2.3.4.5",
    ] {
        assert_eq!(parse_literal(name).unwrap(), None, "{name:?}");
    }
    let cases = [
        ("127.0.0.1%7", "invalid scoped address"),
        ("127.0.0.1%lo", "invalid scoped address"),
        ("fe80::1%", "invalid scoped address zone"),
        ("fe80::1%4294967296", "invalid scope id"),
        ("fe80::1%no-such-if-reseau", "unknown interface zone"),
        ("fe80::1%-1", "unknown interface zone"),
        ("fe80::1%../lo", "unknown interface zone"),
        ("fe80::1%..", "unknown interface zone"),
    ];
    for (input, want) in cases {
        let err = parse_literal(input).expect_err(input);
        assert_eq!(address_msg(&err), (want, input), "{input}");
    }
}

#[test]
fn zones() {
    assert_eq!(scope_id("").unwrap(), 0);
    assert_eq!(scope_id("7").unwrap(), 7);
    assert_eq!(scope_id("4294967295").unwrap(), u32::MAX);
    let err = scope_id("4294967296").unwrap_err();
    assert_eq!(address_msg(&err), ("invalid scope id", "4294967296"));
    let err = scope_id("no-such-if-reseau").unwrap_err();
    assert_eq!(
        address_msg(&err),
        ("unknown interface zone", "no-such-if-reseau")
    );
    // A named interface: the loopback one has some index > 0 when sysfs shows it.
    match std::fs::read_to_string("/sys/class/net/lo/ifindex") {
        Ok(text) => {
            let want: u32 = text.trim().parse().unwrap();
            assert!(want > 0);
            assert_eq!(scope_id("lo").unwrap(), want);
            let (_, id) = parse_literal("fe80::1%lo").unwrap().unwrap();
            assert_eq!(id, want);
        }
        Err(_) => println!("skip: no /sys/class/net/lo (named zones)"),
    }
}

// ---------------------------------------------------------------------------------------
// StaticResolver

#[test]
fn static_resolver_map() {
    let r = StaticResolver::new();
    r.insert("dual.local", ips(&["::1", "127.0.0.1", "::1"]));
    assert_eq!(r.lookup("dual.local").unwrap(), ips(&["::1", "127.0.0.1"]));
    // Case-insensitive, trailing dots ignored (Reseau: "DUAL.LOCAL" matches).
    assert_eq!(r.lookup("DUAL.LOCAL.").unwrap(), ips(&["::1", "127.0.0.1"]));
    let err = r.lookup("missing.local").unwrap_err();
    assert_eq!(lookup_msg(&err), ("no such host", "missing.local"));
    assert_eq!(err.to_string(), "lookup missing.local: no such host");
    // Replace, remove.
    r.insert("Dual.Local", ips(&["127.0.0.2"]));
    assert_eq!(r.lookup("dual.local").unwrap(), ips(&["127.0.0.2"]));
    assert!(r.remove("dual.local"));
    assert!(!r.remove("dual.local"));
    assert!(r.lookup("dual.local").is_err());
    // NUL is rejected before any lookup.
    assert!(matches!(r.lookup("a\0b"), Err(Error::InvalidArgument(_))));
    // A bare literal answers itself.
    assert_eq!(r.lookup("127.0.0.1").unwrap(), ips(&["127.0.0.1"]));
}

#[test]
fn static_resolver_fallback() {
    let parent = Arc::new(StaticResolver::new());
    parent.insert("far.test", ips(&["127.0.0.3"]));
    let r = StaticResolver::new().fallback(parent);
    r.insert("near.test", ips(&["127.0.0.2"]));
    assert_eq!(r.lookup("near.test").unwrap(), ips(&["127.0.0.2"]));
    assert_eq!(r.lookup("far.test").unwrap(), ips(&["127.0.0.3"]));
    let r = Arc::new(r);
    assert_eq!(
        r.clone().lookup_until("far.test", None).unwrap(),
        ips(&["127.0.0.3"])
    );
    assert!(r.lookup("nowhere.test").is_err());
}

/// An entry with no addresses is a name that does not resolve (`Resolver` never
/// answers `Ok(vec![])`): it used to come back as an empty success, which a cache then
/// kept as a positive answer.
#[test]
fn static_resolver_empty_entry_is_no_such_host() {
    let parent = Arc::new(StaticResolver::new());
    parent.insert("gone.test", ips(&["127.0.0.3"]));
    let r = Arc::new(StaticResolver::new().fallback(parent));
    r.insert("gone.test", []);
    let err = r.lookup("gone.test").unwrap_err();
    assert_eq!(lookup_msg(&err), ("no such host", "gone.test"));
    let deadline = Some(Instant::now() + SLACK);
    let err = r.clone().lookup_until("gone.test", deadline).unwrap_err();
    assert_eq!(lookup_msg(&err), ("no such host", "gone.test"));
    let cache = CachingResolver::new(r);
    assert!(cache.lookup("gone.test").is_err());
    assert!(cache.is_empty());
}

// ---------------------------------------------------------------------------------------
// lookup_until: abandoning a slow lookup at the deadline

#[test]
fn lookup_until_abandons_slow_static() {
    let r = Arc::new(StaticResolver::new());
    r.insert_with_delay("slow.test", ips(&["127.0.0.1"]), Duration::from_secs(2));
    let start = Instant::now();
    let deadline = start + Duration::from_millis(50);
    let err = r
        .clone()
        .lookup_until("slow.test", Some(deadline))
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded), "{err:?}");
    assert!(err.is_timeout());
    assert!(
        took >= Duration::from_millis(45),
        "returned early: {took:?}"
    );
    assert!(took < SLACK, "took {took:?}");

    // A deadline that is already past fails at once.
    let start = Instant::now();
    let past = start.checked_sub(Duration::from_secs(1)).unwrap_or(start);
    assert!(matches!(
        r.clone().lookup_until("slow.test", Some(past)),
        Err(Error::DeadlineExceeded)
    ));
    assert!(start.elapsed() < Duration::from_millis(100));

    // Delay shorter than the budget: the answer arrives.
    r.insert_with_delay("quick.test", ips(&["127.0.0.1"]), Duration::from_millis(20));
    let got = r
        .clone()
        .lookup_until("quick.test", Some(Instant::now() + Duration::from_secs(5)))
        .unwrap();
    assert_eq!(got, ips(&["127.0.0.1"]));
}

/// A delay too long for `Instant` (a careless "never answer") still ends at the
/// deadline; it used to panic adding the delay to the clock.
#[test]
fn lookup_until_with_a_huge_static_delay_times_out() {
    let r = Arc::new(StaticResolver::new());
    r.insert_with_delay("never.test", ips(&["127.0.0.1"]), Duration::MAX);
    let start = Instant::now();
    let res = r
        .clone()
        .lookup_until("never.test", Some(start + Duration::from_millis(20)));
    assert!(matches!(res, Err(Error::DeadlineExceeded)), "{res:?}");
    assert!(start.elapsed() < SLACK, "took {:?}", start.elapsed());
}

/// A resolver that only implements `lookup` (the trait's provided `lookup_until`).
#[derive(Debug)]
struct Sleepy(Duration);

impl Resolver for Sleepy {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        thread::sleep(self.0);
        Ok(ips(&["127.0.0.1"]))
    }
}

#[test]
fn lookup_until_abandons_any_resolver() {
    let r: Arc<dyn Resolver> = Arc::new(Sleepy(Duration::from_secs(2)));
    let start = Instant::now();
    let err = r
        .clone()
        .lookup_until("x.test", Some(start + Duration::from_millis(50)))
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded), "{err:?}");
    assert!(
        took >= Duration::from_millis(45) && took < SLACK,
        "{took:?}"
    );

    let r: Arc<dyn Resolver> = Arc::new(Sleepy(Duration::from_millis(10)));
    let got = r
        .clone()
        .lookup_until("x.test", Some(Instant::now() + Duration::from_secs(5)))
        .unwrap();
    assert_eq!(got, ips(&["127.0.0.1"]));
    assert_eq!(r.lookup_until("x.test", None).unwrap(), ips(&["127.0.0.1"]));
}

#[derive(Debug)]
struct Panicky;

impl Resolver for Panicky {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        panic!("deliberate panic in a test resolver");
    }
}

#[test]
fn lookup_until_survives_a_panicking_resolver() {
    let r: Arc<dyn Resolver> = Arc::new(Panicky);
    let err = r
        .lookup_until("boom.test", Some(Instant::now() + Duration::from_secs(5)))
        .unwrap_err();
    assert_eq!(lookup_msg(&err), ("resolver panicked", "boom.test"));
}

// ---------------------------------------------------------------------------------------
// CachingResolver

/// Counts parent lookups (per host and in total); answers from a map after a delay.
#[derive(Debug, Default)]
struct Counting {
    map: StaticResolver,
    delay: Duration,
    total: AtomicUsize,
    per_host: Mutex<HashMap<String, usize>>,
}

impl Counting {
    fn new(delay: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            delay,
            ..Counting::default()
        })
    }

    fn calls(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn calls_for(&self, host: &str) -> usize {
        *self.per_host.lock().unwrap().get(host).unwrap_or(&0)
    }
}

impl Resolver for Counting {
    fn lookup(&self, host: &str) -> reseau::Result<Vec<IpAddr>> {
        self.total.fetch_add(1, Ordering::SeqCst);
        *self
            .per_host
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default() += 1;
        thread::sleep(self.delay);
        self.map.lookup(host)
    }
}

#[test]
fn cache_fresh_hit() {
    let parent = Counting::new(Duration::ZERO);
    parent.map.insert("a.test", ips(&["127.0.0.1"]));
    let cache = CachingResolver::new(parent.clone());
    assert!(cache.is_empty());
    assert_eq!(cache.lookup("a.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(cache.lookup("A.TEST.").unwrap(), ips(&["127.0.0.1"]));
    let cache = Arc::new(cache);
    assert_eq!(
        cache
            .clone()
            .lookup_until("a.test", Some(Instant::now() + SLACK))
            .unwrap(),
        ips(&["127.0.0.1"])
    );
    assert_eq!(parent.calls(), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.parent_lookups), (2, 1, 1), "{s:?}");
    assert_eq!(cache.len(), 1);
    cache.clear();
    assert_eq!(cache.lookup("a.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(parent.calls(), 2);
    assert!(matches!(
        cache.lookup("a\0"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn cache_ttl_expiry() {
    let parent = Counting::new(Duration::ZERO);
    parent.map.insert("a.test", ips(&["127.0.0.1"]));
    let cache = CachingResolver::new(parent.clone()).ttl(Duration::from_millis(30));
    cache.lookup("a.test").unwrap();
    thread::sleep(Duration::from_millis(80));
    parent.map.insert("a.test", ips(&["127.0.0.2"]));
    assert_eq!(cache.lookup("a.test").unwrap(), ips(&["127.0.0.2"]));
    assert_eq!(parent.calls(), 2);
}

#[test]
fn cache_stale_while_refresh() {
    // The refresh takes 200 ms so that several stale hits overlap it.
    let parent = Counting::new(Duration::from_millis(200));
    parent.map.insert("s.test", ips(&["127.0.0.1"]));
    let cache = CachingResolver::new(parent.clone())
        .ttl(Duration::from_millis(30))
        .stale_ttl(Duration::from_secs(30));
    assert_eq!(cache.lookup("s.test").unwrap(), ips(&["127.0.0.1"]));
    parent.map.insert("s.test", ips(&["127.0.0.2"]));
    thread::sleep(Duration::from_millis(60));

    // Expired but within the stale window: the old answer at once, one refresh.
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(cache.lookup("s.test").unwrap(), ips(&["127.0.0.1"]));
        assert!(
            start.elapsed() < Duration::from_millis(150),
            "stale hit blocked"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || cache.lookup("s.test").unwrap()
            == ips(&["127.0.0.2"])),
        "refresh never landed"
    );
    assert_eq!(parent.calls(), 2, "one refresh for all stale hits");
    let s = cache.stats();
    assert!(s.stale_hits >= 5, "{s:?}");
    assert_eq!(s.parent_lookups, 2, "{s:?}");
}

#[test]
fn cache_stale_window_closes() {
    let parent = Counting::new(Duration::ZERO);
    parent.map.insert("s.test", ips(&["127.0.0.1"]));
    let cache = CachingResolver::new(parent.clone())
        .ttl(Duration::from_millis(20))
        .stale_ttl(Duration::from_millis(20));
    cache.lookup("s.test").unwrap();
    parent.map.insert("s.test", ips(&["127.0.0.2"]));
    thread::sleep(Duration::from_millis(100));
    // Past ttl + stale_ttl: a plain miss, answered by the parent synchronously.
    assert_eq!(cache.lookup("s.test").unwrap(), ips(&["127.0.0.2"]));
    assert_eq!(parent.calls(), 2);
}

#[test]
fn cache_negative_ttl() {
    let parent = Counting::new(Duration::ZERO);
    // Off by default: every failure goes to the parent.
    let cache = CachingResolver::new(parent.clone());
    assert!(cache.lookup("nx.test").is_err());
    assert!(cache.lookup("nx.test").is_err());
    assert_eq!(parent.calls(), 2);

    let parent = Counting::new(Duration::ZERO);
    let cache = CachingResolver::new(parent.clone()).negative_ttl(Duration::from_millis(50));
    let e1 = cache.lookup("nx.test").unwrap_err();
    let e2 = cache.lookup("nx.test").unwrap_err();
    assert_eq!(lookup_msg(&e1), ("no such host", "nx.test"));
    assert_eq!(lookup_msg(&e2), ("no such host", "nx.test"));
    assert_eq!(parent.calls(), 1);
    assert_eq!(cache.stats().negative_hits, 1);
    // After the negative ttl the parent is asked again (and now knows the name).
    thread::sleep(Duration::from_millis(100));
    parent.map.insert("nx.test", ips(&["127.0.0.1"]));
    assert_eq!(cache.lookup("nx.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(parent.calls(), 2);
}

#[test]
fn cache_lru_eviction() {
    let parent = Counting::new(Duration::ZERO);
    for (h, a) in [("a", "127.0.0.1"), ("b", "127.0.0.2"), ("c", "127.0.0.3")] {
        parent.map.insert(h, ips(&[a]));
    }
    let cache = CachingResolver::new(parent.clone()).max_hosts(2);
    cache.lookup("a").unwrap();
    cache.lookup("b").unwrap();
    cache.lookup("a").unwrap(); // a is now more recent than b
    cache.lookup("c").unwrap(); // evicts b
    assert_eq!(cache.len(), 2);
    cache.lookup("a").unwrap();
    cache.lookup("c").unwrap();
    assert_eq!((parent.calls_for("a"), parent.calls_for("c")), (1, 1));
    cache.lookup("b").unwrap();
    assert_eq!(parent.calls_for("b"), 2);

    // Reseau's case: max_hosts 1, one/two/one → 3 parent calls.
    let parent = Counting::new(Duration::ZERO);
    parent.map.insert("one", ips(&["127.0.0.1"]));
    parent.map.insert("two", ips(&["127.0.0.2"]));
    let cache = CachingResolver::new(parent.clone()).max_hosts(1);
    for h in ["one", "two", "one"] {
        cache.lookup(h).unwrap();
    }
    assert_eq!(parent.calls(), 3);
}

#[test]
fn cache_single_flight() {
    const N: usize = 8;
    let parent = Counting::new(Duration::from_millis(200));
    parent.map.insert("same.test", ips(&["127.0.0.1", "::1"]));
    let cache = Arc::new(CachingResolver::new(parent.clone()));
    let gate = Arc::new(Barrier::new(N));
    let start = Instant::now();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (cache, gate) = (cache.clone(), gate.clone());
            thread::spawn(move || {
                gate.wait();
                if i.is_multiple_of(2) {
                    cache.lookup("same.test")
                } else {
                    cache.lookup_until("same.test", Some(Instant::now() + Duration::from_secs(5)))
                }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), ips(&["127.0.0.1", "::1"]));
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(parent.calls(), 1, "parent must run once");
    let s = cache.stats();
    assert_eq!(s.parent_lookups, 1, "{s:?}");
    assert_eq!(s.misses as usize + s.hits as usize, N, "{s:?}");
}

#[test]
fn cache_single_flight_shares_errors() {
    const N: usize = 4;
    let parent = Counting::new(Duration::from_millis(200));
    let cache = Arc::new(CachingResolver::new(parent.clone()));
    let gate = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (cache, gate) = (cache.clone(), gate.clone());
            thread::spawn(move || {
                gate.wait();
                cache.lookup("nx.test")
            })
        })
        .collect();
    for h in handles {
        let err = h.join().unwrap().unwrap_err();
        assert_eq!(lookup_msg(&err), ("no such host", "nx.test"));
    }
    assert_eq!(parent.calls(), 1);
    // Nothing cached (negative ttl off): the next lookup asks again.
    assert!(cache.lookup("nx.test").is_err());
    assert_eq!(parent.calls(), 2);
}

#[test]
fn cache_miss_abandoned_at_deadline() {
    let parent = Counting::new(Duration::from_secs(2));
    parent.map.insert("slow.test", ips(&["127.0.0.1"]));
    let cache = Arc::new(CachingResolver::new(parent.clone()));
    let start = Instant::now();
    let err = cache
        .clone()
        .lookup_until("slow.test", Some(start + Duration::from_millis(50)))
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded), "{err:?}");
    assert!(
        took >= Duration::from_millis(45) && took < SLACK,
        "{took:?}"
    );
    // A second caller joins the flight still running (no second parent call) and
    // gets the answer once it lands.
    let got = cache
        .clone()
        .lookup_until("slow.test", Some(Instant::now() + Duration::from_secs(10)))
        .unwrap();
    assert_eq!(got, ips(&["127.0.0.1"]));
    assert_eq!(parent.calls(), 1);
    assert_eq!(cache.lookup("slow.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(parent.calls(), 1);
}

#[test]
fn cache_zero_ttl_only_coalesces() {
    let parent = Counting::new(Duration::ZERO);
    parent.map.insert("z.test", ips(&["127.0.0.1"]));
    let cache = CachingResolver::new(parent.clone()).ttl(Duration::ZERO);
    cache.lookup("z.test").unwrap();
    thread::sleep(Duration::from_millis(2));
    cache.lookup("z.test").unwrap();
    assert_eq!(parent.calls(), 2);
    // Nothing is kept (it used to hold an entry that could never be served), so even
    // back-to-back lookups on a coarse clock both reach the parent.
    assert!(cache.is_empty(), "{} entries kept", cache.len());
    cache.lookup("z.test").unwrap();
    cache.lookup("z.test").unwrap();
    assert_eq!(parent.calls(), 4);
    assert_eq!(cache.stats().hits, 0);
}

#[test]
fn cache_over_the_trait_object() {
    let map = Arc::new(StaticResolver::new());
    map.insert("t.test", ips(&["127.0.0.1"]));
    let r: Arc<dyn Resolver> = Arc::new(CachingResolver::new(map));
    assert_eq!(r.lookup("t.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(
        r.lookup_until("t.test", Some(Instant::now() + SLACK))
            .unwrap(),
        ips(&["127.0.0.1"])
    );
}

// ---------------------------------------------------------------------------------------
// Policy and interleaving

#[test]
fn policy_filters_and_orders() {
    let p = Policy::default();
    assert_eq!(
        p,
        Policy {
            prefer_ipv6: false,
            allow_ipv4: true,
            allow_ipv6: true
        }
    );
    let mixed = ips(&["127.0.0.1", "::1", "127.0.0.2", "fe80::1"]);
    // Default keeps the resolver's order.
    assert_eq!(p.apply("h", mixed.clone()).unwrap(), mixed);
    let v6_first = Policy {
        prefer_ipv6: true,
        ..p
    };
    assert_eq!(
        v6_first.apply("h", mixed.clone()).unwrap(),
        ips(&["::1", "fe80::1", "127.0.0.1", "127.0.0.2"])
    );
    let v4_only = Policy {
        allow_ipv6: false,
        ..v6_first
    };
    assert_eq!(
        v4_only.apply("h", mixed.clone()).unwrap(),
        ips(&["127.0.0.1", "127.0.0.2"])
    );
    let v6_only = Policy {
        allow_ipv4: false,
        ..p
    };
    assert_eq!(
        v6_only.apply("h", mixed.clone()).unwrap(),
        ips(&["::1", "fe80::1"])
    );
    // Nothing left.
    let err = v6_only.apply("v4.test", ips(&["127.0.0.1"])).unwrap_err();
    assert_eq!(lookup_msg(&err), ("no suitable address", "v4.test"));
    assert!(p.apply("empty.test", Vec::new()).is_err());
    // Both families disallowed: a configuration error.
    let none = Policy {
        allow_ipv4: false,
        allow_ipv6: false,
        ..p
    };
    assert!(matches!(none.validate(), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        none.apply("h", mixed),
        Err(Error::InvalidArgument(_))
    ));
    assert!(p.validate().is_ok());
    assert!(v4_only.allows(&ip("127.0.0.1")) && !v4_only.allows(&ip("::1")));
}

#[test]
fn interleave_families() {
    let s = |v: Vec<IpAddr>| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert!(interleave(&[]).is_empty());
    assert_eq!(
        s(interleave(&ips(&["::1", "::2", "::3", "127.0.0.1"]))),
        ["::1", "127.0.0.1", "::2", "::3"]
    );
    assert_eq!(
        s(interleave(&ips(&[
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "::2",
            "::3"
        ]))),
        ["127.0.0.1", "::1", "127.0.0.2", "::2", "::3"]
    );
    assert_eq!(
        s(interleave(&ips(&["127.0.0.1", "::1", "::2", "127.0.0.2"]))),
        ["127.0.0.1", "::1", "127.0.0.2", "::2"]
    );
    let one = ips(&["127.0.0.3", "127.0.0.1", "127.0.0.2"]);
    assert_eq!(interleave(&one), one);
}

// ---------------------------------------------------------------------------------------
// SystemResolver: `localhost` only

#[test]
fn system_resolver_localhost() {
    let r = SystemResolver::default();
    let addrs = match r.lookup("localhost") {
        Ok(a) => a,
        Err(e) => {
            println!("skip: system resolver cannot resolve localhost: {e}");
            return;
        }
    };
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    let mut dedup = addrs.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), addrs.len(), "duplicates in {addrs:?}");

    // Through the inherent and the trait `lookup_until`, with a generous deadline.
    let dl = Some(Instant::now() + Duration::from_secs(10));
    assert_eq!(r.lookup_until("localhost", dl).unwrap(), addrs);
    let shared: Arc<dyn Resolver> = Arc::new(SystemResolver::new());
    assert_eq!(shared.lookup_until("localhost", dl).unwrap(), addrs);

    // 8 threads at once (Reseau's parity guard), all answered.
    let handles: Vec<_> = (0..8)
        .map(|_| thread::spawn(|| SystemResolver::new().lookup("localhost")))
        .collect();
    for h in handles {
        assert!(!h.join().unwrap().unwrap().is_empty());
    }
}

#[test]
fn system_resolver_without_lookup() {
    let r = SystemResolver::default();
    // Literals answer themselves; NUL and past deadlines fail before any lookup.
    assert_eq!(r.lookup("127.0.0.1").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(r.lookup("::1").unwrap(), ips(&["::1"]));
    assert!(matches!(
        r.lookup("local\0host"),
        Err(Error::InvalidArgument(_))
    ));
    let now = Instant::now();
    let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
    assert!(matches!(
        r.lookup_until("localhost", Some(past)),
        Err(Error::DeadlineExceeded)
    ));
}

#[test]
fn module_paths() {
    // The functions are reachable through the module path too.
    assert_eq!(resolve::join_host_port("a", 1), "a:1");
}
