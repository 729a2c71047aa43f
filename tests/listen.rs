//! Integration tests for `reseau::resolve::ListenConfig` and `tcp::listen_on` (Go's
//! `net.ListenConfig` / `net.Listen`, Reseau's listen-by-string).
//!
//! Listeners may bind wildcards (`0.0.0.0`, `[::]`), but every connection is made to
//! loopback only (127.0.0.1, ::1). IPv6 cases are skipped (with a printed reason) when
//! `::1` cannot be bound. Every connect has a budget and every accept a deadline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reseau::resolve::{Dialer, ListenConfig};
use reseau::tcp::{self, Conn, Listener};
use reseau::{Error, OpError};

const SAFE: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ipv6_ok() -> bool {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    match OK.get_or_init(|| {
        tcp::listen(tcp::loopback_addr6(0, 0))
            .map(drop)
            .map_err(|e| e.to_string())
    }) {
        Ok(()) => true,
        Err(e) => {
            println!("skipped (IPv6 part): cannot bind [::1] here ({e})");
            false
        }
    }
}

/// A connect to a concrete loopback address with a budget.
fn connect(addr: SocketAddr) -> reseau::Result<Conn> {
    Dialer {
        timeout: Some(SAFE),
        ..Dialer::default()
    }
    .dial("tcp", &addr.to_string())
}

fn v4(port: u16) -> SocketAddr {
    tcp::loopback_addr(port)
}

fn v6(port: u16) -> SocketAddr {
    tcp::loopback_addr6(port, 0)
}

/// Accepts one connection with a deadline and checks a round trip with `client`.
fn accept_and_echo(ln: &Listener, client: &Conn) {
    ln.set_deadline(Some(Instant::now() + SAFE)).unwrap();
    let srv = ln.accept().unwrap();
    // A dual-stack listener reports an IPv4 peer as IPv4-mapped IPv6 (as getpeername
    // and std do); compare canonical forms.
    assert_eq!(
        srv.remote_addr().map(canonical),
        client.local_addr().map(canonical)
    );
    client.set_deadline(Some(Instant::now() + SAFE)).unwrap();
    srv.set_deadline(Some(Instant::now() + SAFE)).unwrap();
    client.write(b"hi!").unwrap();
    let mut buf = [0u8; 3];
    srv.read_full(&mut buf).unwrap();
    assert_eq!(&buf, b"hi!");
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The `OpError` of a listen failure; checks the wrapping.
#[track_caller]
fn listen_err(e: &Error) -> &OpError {
    match e {
        Error::Op(op) => {
            assert!(!matches!(op.err, Error::Op(_)), "double-wrapped: {e:?}");
            assert_eq!(op.op, "listen");
            assert_eq!(e.op(), Some("listen"));
            op
        }
        other => panic!("expected Error::Op, got {other:?}"),
    }
}

fn sock(ln: &Listener) -> socket2::SockRef<'_> {
    socket2::SockRef::from(ln)
}

#[track_caller]
fn assert_refused(res: reseau::Result<Conn>, what: &str) {
    match res {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{what}: {e:?}"),
        Ok(c) => panic!("{what}: connected to {:?}", c.remote_addr()),
    }
}

/// Runs `f` up to 3 times: a wildcard port chosen by the kernel for one family may be
/// held on the other family by an unrelated socket, which would make a "must be
/// refused" check connect (Reseau retries these tests 3× for the same reason).
fn with_retries(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3 {
        if f() {
            return;
        }
    }
    panic!("{what}: failed 3 times");
}

/// Whether a connect to `addr` is refused (a connect that succeeds means another
/// socket holds that port on that family; the caller retries).
fn refused(addr: SocketAddr) -> bool {
    match connect(addr) {
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{addr}: {e:?}");
            true
        }
        Ok(_) => {
            println!("{addr} is served by another socket; retrying with a new port");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wildcards

/// Reseau main "tcp wildcard accepts IPv4" / Go TestDialListenerAddr: `"tcp"` with
/// `":0"` listens dual-stack on `[::]`; 127.0.0.1 and ::1 both reach it.
#[test]
fn listen_tcp_wildcard_is_dual_stack() {
    let ln = ListenConfig::default().listen("tcp", ":0").unwrap();
    let addr = ln.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let c = connect(v4(addr.port())).unwrap();
    accept_and_echo(&ln, &c);
    if !ipv6_ok() {
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        return;
    }
    assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert!(!sock(&ln).only_v6().unwrap(), "IPV6_V6ONLY must be off");
    let c = connect(v6(addr.port())).unwrap();
    accept_and_echo(&ln, &c);
    // Dialing the listener's own address ("[::]:port") and ":port" reaches it too.
    for target in [addr.to_string(), format!(":{}", addr.port())] {
        let c = Dialer {
            timeout: Some(SAFE),
            ..Dialer::default()
        }
        .dial("tcp", &target)
        .unwrap();
        accept_and_echo(&ln, &c);
    }
    // tcp::listen_on is ListenConfig::default().listen.
    let ln = tcp::listen_on("tcp", ":0").unwrap();
    assert_eq!(
        ln.local_addr().unwrap().ip(),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    );
    let c = connect(v4(ln.local_addr().unwrap().port())).unwrap();
    accept_and_echo(&ln, &c);
}

/// Reseau main "tcp6 wildcard is IPv6-only": `"tcp6"` with `":0"` sets IPV6_V6ONLY, so
/// 127.0.0.1 is refused and a separate IPv4 listener can take the same port.
#[test]
fn listen_tcp6_wildcard_is_v6only() {
    if !ipv6_ok() {
        return;
    }
    with_retries("tcp6 wildcard", || {
        let ln = ListenConfig::default().listen("tcp6", ":0").unwrap();
        let addr = ln.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert!(sock(&ln).only_v6().unwrap(), "IPV6_V6ONLY must be on");
        let c = connect(v6(addr.port())).unwrap();
        accept_and_echo(&ln, &c);
        if !refused(v4(addr.port())) {
            return false;
        }
        // The IPv4 side of the port is free: a tcp4 listener can bind it.
        let ln4 =
            match ListenConfig::default().listen("tcp4", &format!("127.0.0.1:{}", addr.port())) {
                Ok(l) => l,
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => return false,
                Err(e) => panic!("tcp4 on the tcp6 wildcard's port: {e:?}"),
            };
        let c = connect(v4(addr.port())).unwrap();
        accept_and_echo(&ln4, &c);
        // A tcp6 literal wildcard is IPv6-only as well.
        let ln = ListenConfig::default().listen("tcp6", "[::]:0").unwrap();
        assert!(sock(&ln).only_v6().unwrap());
        refused(v4(ln.local_addr().unwrap().port()))
    });
}

/// `"tcp4"` with `":0"` listens on 0.0.0.0; ::1 does not reach it.
#[test]
fn listen_tcp4_wildcard() {
    with_retries("tcp4 wildcard", || {
        let ln = ListenConfig::default().listen("tcp4", ":0").unwrap();
        let addr = ln.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_ne!(addr.port(), 0);
        let c = connect(v4(addr.port())).unwrap();
        accept_and_echo(&ln, &c);
        !ipv6_ok() || refused(v6(addr.port()))
    });
}

/// Literal wildcards: `"tcp"` with `0.0.0.0` is IPv4, with `[::]` dual-stack.
#[test]
fn listen_literal_wildcards() {
    let ln = ListenConfig::default().listen("tcp", "0.0.0.0:0").unwrap();
    let addr = ln.local_addr().unwrap();
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let c = connect(v4(addr.port())).unwrap();
    accept_and_echo(&ln, &c);
    if !ipv6_ok() {
        return;
    }
    let ln = ListenConfig::default().listen("tcp", "[::]:0").unwrap();
    let addr = ln.local_addr().unwrap();
    assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert!(!sock(&ln).only_v6().unwrap());
    let c = connect(v4(addr.port())).unwrap();
    accept_and_echo(&ln, &c);
    let c = connect(v6(addr.port())).unwrap();
    accept_and_echo(&ln, &c);
}

// ---------------------------------------------------------------------------------------
// Literal and named hosts

/// Reseau "connect/listen by address strings" and "ipv6 connect/listen path".
#[test]
fn listen_literal_hosts() {
    for net in ["tcp", "tcp4"] {
        let ln = ListenConfig::default().listen(net, "127.0.0.1:0").unwrap();
        let addr = ln.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{net}");
        let c = connect(addr).unwrap();
        accept_and_echo(&ln, &c);
    }
    // Another loopback address of 127/8.
    let ln = ListenConfig::default()
        .listen("tcp", "127.0.0.2:0")
        .unwrap();
    assert_eq!(ln.local_addr().unwrap().ip().to_string(), "127.0.0.2");
    let c = connect(ln.local_addr().unwrap()).unwrap();
    accept_and_echo(&ln, &c);

    let e = ListenConfig::default()
        .listen("tcp6", "127.0.0.1:0")
        .unwrap_err();
    let op = listen_err(&e);
    assert!(
        matches!(&op.err, Error::Address { msg, .. } if msg == "no suitable address found"),
        "{e:?}"
    );
    let e = ListenConfig::default()
        .listen("tcp4", "[::1]:0")
        .unwrap_err();
    assert!(
        matches!(&listen_err(&e).err, Error::Address { msg, .. } if msg == "no suitable address found"),
        "{e:?}"
    );
    if !ipv6_ok() {
        return;
    }
    for net in ["tcp", "tcp6"] {
        let ln = ListenConfig::default().listen(net, "[::1]:0").unwrap();
        let addr = ln.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST), "{net}");
        let c = connect(addr).unwrap();
        accept_and_echo(&ln, &c);
    }
    let ln = ListenConfig::default().listen("tcp6", "[::1]:0").unwrap();
    assert!(sock(&ln).only_v6().unwrap());
}

/// Go `Listen("tcp", "localhost:0")`: a host name listens on its first IPv4 address.
#[test]
fn listen_localhost() {
    for net in ["tcp", "tcp4"] {
        let ln = match ListenConfig::default().listen(net, "localhost:0") {
            Ok(ln) => ln,
            Err(e) if matches!(listen_err(&e).err, Error::Lookup { .. }) => {
                println!("skipped: localhost does not resolve here ({e})");
                return;
            }
            Err(e) => panic!("{net} localhost:0: {e:?}"),
        };
        let addr = ln.local_addr().unwrap();
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{net}");
        let c = connect(addr).unwrap();
        accept_and_echo(&ln, &c);
    }
    // tcp6: the first IPv6 address of localhost, if it has one.
    match ListenConfig::default().listen("tcp6", "localhost:0") {
        Ok(ln) => assert_eq!(
            ln.local_addr().unwrap().ip(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        ),
        Err(e) => {
            let op = listen_err(&e);
            assert!(
                matches!(&op.err, Error::Address { .. } | Error::Lookup { .. })
                    || op.err.raw_os_error().is_some(),
                "{e:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options

/// Backlog 0 queues one connection; further SYNs wait (Linux drops them), and a freed
/// slot takes the next. The default (somaxconn) queues 64 unaccepted connections.
#[test]
fn listen_backlog() {
    let cfg = ListenConfig {
        backlog: 0,
        ..ListenConfig::default()
    };
    let ln = cfg.listen("tcp", "127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    let quick = Dialer {
        timeout: Some(ms(200)),
        ..Dialer::default()
    };
    let mut queued = Vec::new();
    let mut full = false;
    for _ in 0..4 {
        match quick.dial("tcp", &addr.to_string()) {
            Ok(c) => queued.push(c),
            Err(e) if e.is_timeout() => {
                full = true;
                break;
            }
            Err(e) => panic!("dial backlog-0 listener: {e:?}"),
        }
    }
    if full {
        assert!(
            !queued.is_empty() && queued.len() <= 2,
            "{} queued",
            queued.len()
        );
        // Accepting frees the slot: the next connect goes through.
        ln.set_deadline(Some(Instant::now() + SAFE)).unwrap();
        let _first = ln.accept().unwrap();
        let c = connect(addr).unwrap();
        assert_eq!(c.remote_addr(), Some(addr));
    } else {
        println!("note: this kernel queued 4 connections on a backlog-0 listener");
    }

    let ln = ListenConfig::default()
        .listen("tcp", "127.0.0.1:0")
        .unwrap();
    let addr = ln.local_addr().unwrap();
    let conns: Vec<Conn> = (0..64)
        .map(|i| {
            Dialer {
                timeout: Some(Duration::from_secs(2)),
                ..Dialer::default()
            }
            .dial("tcp", &addr.to_string())
            .unwrap_or_else(|e| panic!("unaccepted connect #{i}: {e:?}"))
        })
        .collect();
    assert_eq!(conns.len(), 64);
    assert!(ListenConfig::default().backlog >= 64);
}

/// Go's ListenConfig Control with SO_REUSEPORT: two listeners on one port with
/// `reuse_port`; without it the second fails with `listen` around `bind` EADDRINUSE.
#[test]
fn listen_reuse_port_and_addr_in_use() {
    let shared = ListenConfig {
        reuse_port: true,
        ..ListenConfig::default()
    };
    let a = shared.listen("tcp", "127.0.0.1:0").unwrap();
    let addr = a.local_addr().unwrap();
    assert!(sock(&a).reuse_port().unwrap());
    let b = shared.listen("tcp", &addr.to_string()).unwrap();
    assert_eq!(b.local_addr(), Some(addr));
    assert!(a.is_open() && b.is_open());
    let c = connect(addr).unwrap();
    assert_eq!(c.remote_addr(), Some(addr));
    drop((a, b));

    let ln = ListenConfig::default()
        .listen("tcp", "127.0.0.1:0")
        .unwrap();
    let addr = ln.local_addr().unwrap();
    assert!(!sock(&ln).reuse_port().unwrap());
    assert!(
        sock(&ln).reuse_address().unwrap(),
        "SO_REUSEADDR is on by default"
    );
    let target = addr.to_string();
    for e in [
        ListenConfig::default().listen("tcp", &target).unwrap_err(),
        shared.listen("tcp", &target).unwrap_err(),
        tcp::listen_on("tcp4", &target).unwrap_err(),
    ] {
        let op = listen_err(&e);
        assert!(
            matches!(&op.err, Error::Sys { op: "bind", .. }),
            "expected Sys{{bind}}: {e:?}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{e:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert_eq!(op.addr, target);
        assert!(
            e.to_string()
                .starts_with(&format!("listen {} {target}: bind: ", op.net)),
            "{e}"
        );
    }

    let no_reuse = ListenConfig {
        reuse_address: false,
        ..ListenConfig::default()
    };
    let ln = no_reuse.listen("tcp", "127.0.0.1:0").unwrap();
    assert!(!sock(&ln).reuse_address().unwrap());
}

// ---------------------------------------------------------------------------------------
// Errors

/// Unknown networks and bad addresses: one `Op{op:"listen"}`, never double-wrapped.
#[test]
fn listen_errors() {
    for net in ["udp", "tcp5", "", "unix"] {
        let e = ListenConfig::default()
            .listen(net, "127.0.0.1:0")
            .unwrap_err();
        let op = listen_err(&e);
        assert!(
            matches!(&op.err, Error::UnknownNetwork(n) if n == net),
            "{net}: {e:?}"
        );
        assert_eq!(op.net, net);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
    let cases = [
        ("127.0.0.1", "missing port in address"),
        ("", "missing port in address"),
        ("[::1", "missing ']' in address"),
        ("1:2:3", "too many colons in address"),
    ];
    for (addr, msg) in cases {
        let e = ListenConfig::default().listen("tcp", addr).unwrap_err();
        let op = listen_err(&e);
        assert!(
            matches!(&op.err, Error::Address { msg: m, .. } if m == msg),
            "{addr:?}: {e:?}"
        );
        assert_eq!(op.addr, addr);
        assert!(op.source.is_none());
    }
    let e = ListenConfig::default()
        .listen("tcp", "127.0.0.1:65536")
        .unwrap_err();
    assert!(
        matches!(&listen_err(&e).err, Error::Address { msg, .. } if msg == "invalid port"),
        "{e:?}"
    );
    let e = ListenConfig::default()
        .listen("tcp", "127.0.0.1:no-such-service")
        .unwrap_err();
    assert!(
        matches!(&listen_err(&e).err, Error::Lookup { msg, .. } if msg == "unknown port"),
        "{e:?}"
    );
    let e = tcp::listen_on("udp", ":0").unwrap_err();
    assert!(
        matches!(&listen_err(&e).err, Error::UnknownNetwork(_)),
        "{e:?}"
    );
}

/// A listener made by string behaves like one from `tcp::listen`: close wakes accept,
/// and a closed listener's port refuses.
#[test]
fn listen_on_listener_lifecycle() {
    let ln = tcp::listen_on("tcp4", "127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    ln.set_deadline(Some(Instant::now() + ms(50))).unwrap();
    assert!(ln.accept().unwrap_err().is_timeout());
    ln.close().unwrap();
    assert!(!ln.is_open());
    assert!(matches!(ln.accept(), Err(Error::Closed)));
    assert_refused(connect(addr), "closed listener");
}
