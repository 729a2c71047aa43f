//! Integration tests for the Julia `Sockets`-shaped facade (`reseau::sockets`): every
//! `Endpoint` form, error shapes, `bind`/`listen`/`listenany`, `TcpSocket` I/O and Julia's
//! half-close rules, deadlines, `accept_loop` (including its `EMFILE` backoff, in a child
//! process), TLS and STARTTLS (with the CVE-2021-23222 guard).
//!
//! Only loopback addresses and unix sockets in temporary directories (or abstract names)
//! are used. Every wait is bounded: sockets get far-off safety deadlines and calls that
//! could hang run on helper threads read through `recv_timeout`. Upper time bounds are
//! generous (noisy 2-core machines); lower bounds only where a deadline makes them exact.
//!
//! TLS tests that run handshakes are gated like the crate's other TLS tests: they run
//! only with `RESEAU_RUN_TLS_TESTS=1` (or `true`/`yes`/`on`); otherwise they print why and
//! pass.

use std::io::{self, BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reseau::resolve::ListenConfig;
use reseau::sockets::{
    self, ConnectOptions, IPAddr, IPv4, IPv6, InetAddr, LOCALHOST, LOCALHOST6, ListenOptions,
    TcpServer, TcpSocket, accept, accept_loop, bind, connect, connect_with, getpeername,
    getsockname, listen, listen_with, listenany, listenany_on,
};
use reseau::{Error, ip, tls};

/// Bound for anything that should finish "soon"; far above normal, so only a hang trips it.
const SAFETY: Duration = Duration::from_secs(20);
/// Bound for a wake-up that should be prompt.
const PROMPT: Duration = Duration::from_secs(1);

// Compile-time: the facade's types cross threads.
const _: fn() = || {
    fn send<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    send::<TcpSocket>();
    send_sync::<TcpServer>();
    send_sync::<Error>();
};

macro_rules! cert {
    ($name:literal) => {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/", $name))
    };
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The TLS gate (Reseau's `RESEAU_RUN_TLS_TESTS`).
fn tls_enabled(test: &str) -> bool {
    let on = std::env::var("RESEAU_RUN_TLS_TESTS").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    if !on {
        println!("skipping {test}: set RESEAU_RUN_TLS_TESTS=1 to run the TLS tests");
    }
    on
}

/// Whether `::1` is usable here (prints a skip reason when not).
fn has_ipv6(test: &str) -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        println!("skipping {test}: no IPv6 loopback");
    }
    ok
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + SAFETY)
}

/// Runs `f` on a helper thread and waits at most `limit` for it.
fn bounded<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Polls `cond` every few ms until it holds; panics after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) for a thread that must end soon.
fn join_within<T>(h: JoinHandle<T>, limit: Duration, what: &str) -> T {
    wait_until(limit, what, || h.is_finished());
    h.join().expect("thread panicked")
}

/// A temporary directory for unix sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("reseau-sockets-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique Linux abstract socket name (`@…`).
fn abstract_name() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    PathBuf::from(format!(
        "@reseau-sockets-{}-{n}-{nanos}",
        std::process::id()
    ))
}

fn port_of(server: &TcpServer) -> u16 {
    let (_, port) = getsockname(server).unwrap();
    assert_ne!(port, 0);
    port
}

fn guard(sock: &TcpSocket) {
    sock.set_deadline(soon()).unwrap();
}

/// Accepts one connection with a safety deadline.
fn accept_one(server: &TcpServer) -> TcpSocket {
    server.set_deadline(soon()).unwrap();
    let s = accept(server).unwrap();
    guard(&s);
    s
}

/// A connected TCP pair on 127.0.0.1: (server, client, accepted).
fn tcp_pair() -> (TcpServer, TcpSocket, TcpSocket) {
    let (port, server) = listenany(0).unwrap();
    let client = connect(port).unwrap();
    guard(&client);
    let conn = accept_one(&server);
    (server, client, conn)
}

/// A connected unix pair in `dir`: (server, client, accepted).
fn unix_pair(dir: &TempDir) -> (TcpServer, TcpSocket, TcpSocket) {
    let path = dir.sock("pair.sock");
    let server = listen(path.as_path()).unwrap();
    let client = connect(path.as_path()).unwrap();
    guard(&client);
    let conn = accept_one(&server);
    (server, client, conn)
}

fn read_line(s: &mut TcpSocket) -> String {
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    line
}

/// A line each way: proves the two ends are connected to each other.
fn exchange(a: &mut TcpSocket, b: &mut TcpSocket) {
    a.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(b), "ping\n");
    b.write_all(b"pong\n").unwrap();
    assert_eq!(read_line(a), "pong\n");
}

/// Takes the result of a `connect` to `server`, accepts the other end and exchanges a
/// line each way.
fn roundtrip(server: &TcpServer, client: reseau::Result<TcpSocket>) -> (TcpSocket, TcpSocket) {
    let mut c = client.unwrap();
    guard(&c);
    let mut s = accept_one(server);
    exchange(&mut c, &mut s);
    (c, s)
}

#[track_caller]
fn assert_op_errno(err: &Error, op: &str, errno: i32) {
    assert_eq!(err.op(), Some(op), "wrong op in {err:?}");
    assert_eq!(err.raw_os_error(), Some(errno), "wrong errno in {err:?}");
}

/// A pattern that does not repeat at any power-of-two period.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = (i as u32).wrapping_add(seed).wrapping_mul(2_654_435_761);
            (x >> 24) as u8 ^ (i / 65_521) as u8
        })
        .collect()
}

/// Reads to EOF with chunk sizes that exercise both the buffered and the bypass path,
/// checking every chunk against `expect` as it comes.
fn read_checked(s: &mut TcpSocket, expect: &[u8]) {
    const SIZES: [usize; 7] = [1, 13, 4096, 70_000, 65_536, 200_000, 777];
    let mut got = 0;
    let mut buf = vec![0u8; 200_000];
    for i in 0.. {
        let want = SIZES[i % SIZES.len()];
        let n = s.read(&mut buf[..want]).unwrap();
        if n == 0 {
            break;
        }
        assert!(got + n <= expect.len(), "more bytes than were sent");
        assert!(
            buf[..n] == expect[got..got + n],
            "corrupt bytes at offset {got}"
        );
        got += n;
    }
    assert_eq!(got, expect.len(), "short transfer");
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------
// Endpoint forms
// ---------------------------------------------------------------------------------------

#[test]
fn endpoint_u16_is_ipv4_loopback_only() {
    let server = listen(0u16).unwrap();
    let (ip, port) = getsockname(&server).unwrap();
    assert_eq!(ip, IPAddr::from(LOCALHOST));
    assert_ne!(port, 0);
    let (c, s) = roundtrip(&server, connect(port));
    assert_eq!(getpeername(&c).unwrap(), (IPAddr::from(LOCALHOST), port));
    assert_eq!(getsockname(&c).unwrap(), getpeername(&s).unwrap());
    assert_eq!(getsockname(&s).unwrap(), (IPAddr::from(LOCALHOST), port));
    if has_ipv6("endpoint_u16 (::1 part)") {
        let err = connect((LOCALHOST6, port)).unwrap_err();
        assert_op_errno(&err, "connect", libc::ECONNREFUSED);
    }
}

#[test]
fn endpoint_str_127_0_0_1() {
    let server = listen(("127.0.0.1", 0)).unwrap();
    let port = port_of(&server);
    assert_eq!(getsockname(&server).unwrap().0, ip!("127.0.0.1"));
    let (c, _s) = roundtrip(&server, connect(("127.0.0.1", port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
}

#[test]
fn endpoint_str_localhost() {
    let server = listen(("localhost", 0)).unwrap();
    let port = port_of(&server);
    // A name listens on its first IPv4 address.
    assert_eq!(getsockname(&server).unwrap().0, ip!("127.0.0.1"));
    let (c, _s) = roundtrip(&server, connect(("localhost", port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
}

#[test]
fn endpoint_str_ipv6_loopback() {
    if !has_ipv6("endpoint_str_ipv6_loopback") {
        return;
    }
    let server = listen(("::1", 0)).unwrap();
    let port = port_of(&server);
    assert_eq!(getsockname(&server).unwrap().0, ip!("::1"));
    let (c, s) = roundtrip(&server, connect(("::1", port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("::1"), port));
    assert_eq!(getpeername(&s).unwrap().0, ip!("::1"));
    // Not reachable through IPv4.
    let err = connect(("127.0.0.1", port)).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECONNREFUSED);
}

#[test]
fn endpoint_string_u16() {
    let server = listen((String::from("127.0.0.1"), 0)).unwrap();
    let port = port_of(&server);
    let (c, _s) = roundtrip(&server, connect((String::from("localhost"), port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
}

#[test]
fn endpoint_ipaddr_u16() {
    let server = listen((ip!("127.0.0.1"), 0)).unwrap();
    let port = port_of(&server);
    let (c, _s) = roundtrip(&server, connect((ip!("127.0.0.1"), port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
    if has_ipv6("endpoint_ipaddr_u16 (::1 part)") {
        let server = listen((ip!("::1"), 0)).unwrap();
        let port = port_of(&server);
        let (c, _s) = roundtrip(&server, connect((ip!("::1"), port)));
        assert_eq!(getpeername(&c).unwrap(), (ip!("::1"), port));
    }
}

#[test]
fn endpoint_ipv4_u16() {
    let server = listen((IPv4::new(127, 0, 0, 1), 0)).unwrap();
    let port = port_of(&server);
    let (c, _s) = roundtrip(&server, connect((LOCALHOST, port)));
    assert_eq!(getpeername(&c).unwrap(), (IPAddr::V4(LOCALHOST), port));
}

#[test]
fn endpoint_ipv6_u16() {
    if !has_ipv6("endpoint_ipv6_u16") {
        return;
    }
    let server = listen((IPv6::new(0, 0, 0, 0, 0, 0, 0, 1), 0)).unwrap();
    let port = port_of(&server);
    assert_eq!(getsockname(&server).unwrap().0, IPAddr::V6(LOCALHOST6));
    let (c, _s) = roundtrip(&server, connect((LOCALHOST6, port)));
    assert_eq!(getpeername(&c).unwrap(), (IPAddr::V6(LOCALHOST6), port));
}

#[test]
fn endpoint_inetaddr() {
    let server = listen(InetAddr::new(LOCALHOST, 0)).unwrap();
    let port = port_of(&server);
    let (c, _s) = roundtrip(&server, connect(InetAddr::new(LOCALHOST, port)));
    assert_eq!(getpeername(&c).unwrap(), (IPAddr::V4(LOCALHOST), port));
}

#[test]
fn endpoint_socketaddr() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = listen(any).unwrap();
    let port = port_of(&server);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (c, _s) = roundtrip(&server, connect(addr));
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
}

#[test]
fn endpoint_path_and_pathbuf_are_unix_sockets() {
    let dir = TempDir::new();
    let path = dir.sock("a.sock");
    let server = listen(path.as_path()).unwrap();
    assert!(path.exists(), "the socket file is created");
    assert!(server.is_open());
    let (c, s) = roundtrip(&server, connect(path.clone()));
    // Unix sockets have no IP names and no TCP options.
    assert!(matches!(getpeername(&c), Err(Error::InvalidArgument(_))));
    assert!(matches!(getsockname(&s), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        getsockname(&server),
        Err(Error::InvalidArgument(_))
    ));

    let path2 = dir.sock("b.sock");
    let server2 = listen(path2.clone()).unwrap();
    roundtrip(&server2, connect(path2.as_path()));
}

#[test]
fn endpoint_abstract_unix_name() {
    let name = abstract_name();
    let server = listen(name.as_path()).unwrap();
    assert!(!name.exists(), "abstract sockets create no file");
    roundtrip(&server, connect(name.as_path()));
    roundtrip(&server, connect(name.clone()));
    server.close().unwrap();
    assert!(connect(name.as_path()).is_err(), "gone once closed");
}

// ---------------------------------------------------------------------------------------
// Connecting by name; timeouts
// ---------------------------------------------------------------------------------------

#[test]
fn connect_by_name_tries_every_address() {
    // The server is on 127.0.0.1 only; wherever `localhost` resolves to `::1` first, the
    // connect must fall through to the IPv4 address (Julia tries only the first).
    let order = sockets::getalladdrinfo("localhost").unwrap();
    println!("localhost resolves to {order:?}");
    let (port, server) = listenany(0).unwrap();
    let (c, _s) = bounded(SAFETY, "connect localhost", move || {
        let c = connect(("localhost", port));
        let r = roundtrip(&server, c);
        drop(server);
        r
    });
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
    // The same through connect_with and a timeout.
    let (port, server) = listenany(0).unwrap();
    let opts = ConnectOptions {
        timeout: Some(Duration::from_secs(10)),
        ..ConnectOptions::default()
    };
    roundtrip(&server, connect_with(("localhost", port), &opts));
}

#[test]
fn connect_timeout_bounds_a_black_hole() {
    // A backlog-0 listener whose queue is full drops further SYNs: a black hole.
    let ln = ListenConfig {
        backlog: 0,
        ..ListenConfig::default()
    }
    .listen("tcp4", "127.0.0.1:0")
    .unwrap();
    let port = ln.addr().unwrap().port();
    let quick = ConnectOptions {
        timeout: Some(Duration::from_millis(200)),
        ..ConnectOptions::default()
    };
    // Fill the queue (one connection fills a backlog of 0 on Linux; allow a few more on
    // stacks that round the backlog up).
    let mut fillers = Vec::new();
    loop {
        match connect_with(port, &quick) {
            Ok(c) => fillers.push(c),
            Err(e) if e.is_timeout() => break,
            Err(e) => panic!("unexpected error while filling the queue: {e:?}"),
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    println!("queue filled by {} connection(s)", fillers.len());
    let opts = ConnectOptions {
        timeout: Some(Duration::from_millis(300)),
        ..ConnectOptions::default()
    };
    let t = Instant::now();
    let err = bounded(SAFETY, "black-hole connect", move || {
        connect_with(port, &opts).unwrap_err()
    });
    let took = t.elapsed();
    assert!(err.is_timeout(), "not a timeout: {err:?}");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(250), "fired early: {took:?}");
    assert!(took < Duration::from_millis(1500), "too slow: {took:?}");
    drop(ln);
}

// ---------------------------------------------------------------------------------------
// Error shapes
// ---------------------------------------------------------------------------------------

#[test]
fn connect_refused_shape() {
    let (port, server) = listenany(0).unwrap();
    server.close().unwrap();
    drop(server);
    let err = connect(port).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECONNREFUSED);
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let err = connect(("127.0.0.1", port)).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECONNREFUSED);
    let err = connect(("localhost", port)).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECONNREFUSED);
    // A unix path nobody listens on.
    let dir = TempDir::new();
    let err = connect(dir.sock("none.sock").as_path()).unwrap_err();
    assert_eq!(err.op(), Some("connect"), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err:?}");
}

#[test]
fn listen_port_in_use_shape() {
    let (port, _held) = listenany(0).unwrap();
    let err = listen(port).unwrap_err();
    assert_op_errno(&err, "listen", libc::EADDRINUSE);
    let err = listen(("127.0.0.1", port)).unwrap_err();
    assert_op_errno(&err, "listen", libc::EADDRINUSE);
    // A unix path in use.
    let dir = TempDir::new();
    let path = dir.sock("busy.sock");
    let _unix = listen(path.as_path()).unwrap();
    let err = listen(path.as_path()).unwrap_err();
    assert_op_errno(&err, "listen", libc::EADDRINUSE);
}

#[test]
fn accept_on_server_closed_before() {
    let (_, server) = listenany(0).unwrap();
    assert!(server.is_open());
    server.close().unwrap();
    assert!(!server.is_open());
    server.close().unwrap(); // idempotent
    let err = accept(&server).unwrap_err();
    assert_op_errno(&err, "accept", libc::ECONNABORTED);

    let dir = TempDir::new();
    let server = listen(dir.sock("c.sock").as_path()).unwrap();
    server.close().unwrap();
    let err = accept(&server).unwrap_err();
    assert_op_errno(&err, "accept", libc::ECONNABORTED);
}

fn accept_woken_by_close(server: TcpServer) {
    let server = Arc::new(server);
    server.set_deadline(soon()).unwrap();
    let s2 = server.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = accept(&s2).map(drop);
        let _ = tx.send((r, Instant::now()));
    });
    thread::sleep(Duration::from_millis(100));
    assert!(
        rx.try_recv().is_err(),
        "accept returned with nothing to accept"
    );
    let closed = Instant::now();
    server.close().unwrap();
    let (res, woke) = rx.recv_timeout(PROMPT).expect("accept not woken by close");
    let err = res.unwrap_err();
    assert_op_errno(&err, "accept", libc::ECONNABORTED);
    assert!(woke.duration_since(closed) < PROMPT);
}

#[test]
fn accept_on_server_closed_while_blocked_tcp() {
    accept_woken_by_close(listenany(0).unwrap().1);
}

#[test]
fn accept_on_server_closed_while_blocked_unix() {
    let dir = TempDir::new();
    accept_woken_by_close(listen(dir.sock("w.sock").as_path()).unwrap());
}

#[test]
fn accept_on_server_that_never_listened() {
    let server = TcpServer::new();
    assert!(!server.is_open());
    assert!(matches!(accept(&server), Err(Error::InvalidArgument(_))));
    let mut bound = TcpServer::new();
    assert!(bind(&mut bound, LOCALHOST, 0).unwrap());
    assert!(!bound.is_open());
    assert!(matches!(accept(&bound), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        bound.set_deadline(soon()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn unresolvable_host_is_dns_error() {
    // A resolver that hangs (no network) is not what this test is about: bounded.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let c = connect(("nonexistent.invalid", 80)).map(drop);
        let l = listen(("nonexistent.invalid", 0)).map(drop);
        let _ = tx.send((c, l));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok((c, l)) => {
            let err = c.unwrap_err();
            assert!(matches!(err, Error::Dns(_)), "connect: {err:?}");
            let Error::Dns(d) = &err else { unreachable!() };
            assert_eq!(d.host, "nonexistent.invalid");
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");
            let err = l.unwrap_err();
            assert!(matches!(err, Error::Dns(_)), "listen: {err:?}");
        }
        Err(_) => println!("skipping: the resolver hangs on nonexistent.invalid"),
    }
}

#[test]
fn host_with_nul_is_invalid_argument() {
    let err = connect(("local\0host", 80)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = connect((String::from("\0"), 80)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = listen(("local\0host", 0)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// bind / TcpServer::listen / getsockname / listenany
// ---------------------------------------------------------------------------------------

#[test]
fn bind_then_listen_then_accept() {
    let mut server = TcpServer::new();
    assert!(bind(&mut server, LOCALHOST, 0).unwrap());
    let (ip, port) = getsockname(&server).unwrap();
    assert_eq!(ip, IPAddr::V4(LOCALHOST));
    assert_ne!(port, 0, "a bound server knows its port");
    // Binding twice is refused.
    assert!(matches!(
        bind(&mut server, LOCALHOST, 0),
        Err(Error::InvalidArgument(_))
    ));
    server.listen(16).unwrap();
    assert!(server.is_open());
    assert!(
        matches!(
            bind(&mut server, LOCALHOST, 0),
            Err(Error::InvalidArgument(_))
        ),
        "bind on a listening server"
    );
    let (c, _s) = roundtrip(&server, connect(port));
    assert_eq!(getpeername(&c).unwrap(), (IPAddr::V4(LOCALHOST), port));
    // The port is in use now.
    let mut other = TcpServer::new();
    assert!(!bind(&mut other, LOCALHOST, port).unwrap());
    assert!(
        getsockname(&other).is_err(),
        "failed bind leaves it unbound"
    );
    // ...and the server stays fresh, so a later bind works.
    assert!(bind(&mut other, LOCALHOST, 0).unwrap());
}

#[test]
fn listen_twice_is_refused_and_keeps_the_server() {
    let mut server = TcpServer::new();
    assert!(bind(&mut server, LOCALHOST, 0).unwrap());
    server.listen(16).unwrap();
    let port = port_of(&server);
    assert!(matches!(server.listen(16), Err(Error::InvalidArgument(_))));
    assert!(
        server.is_open(),
        "a refused second listen closed the server"
    );
    assert_eq!(getsockname(&server).unwrap().1, port);
    roundtrip(&server, connect(port));
    // The same for servers made by `listen`, on TCP and unix.
    let (port, mut server) = listenany(0).unwrap();
    assert!(server.listen(16).is_err());
    assert!(server.is_open());
    roundtrip(&server, connect(port));
    let dir = TempDir::new();
    let path = dir.sock("l2.sock");
    let mut server = listen(path.as_path()).unwrap();
    assert!(server.listen(16).is_err());
    assert!(server.is_open());
    roundtrip(&server, connect(path.as_path()));
}

#[test]
fn bind_on_ipv6_loopback() {
    if !has_ipv6("bind_on_ipv6_loopback") {
        return;
    }
    let mut server = TcpServer::new();
    assert!(bind(&mut server, LOCALHOST6, 0).unwrap());
    server.listen(sockets::BACKLOG_DEFAULT).unwrap();
    let (ip, port) = getsockname(&server).unwrap();
    assert_eq!(ip, IPAddr::V6(LOCALHOST6));
    roundtrip(&server, connect((LOCALHOST6, port)));
}

#[test]
fn getsockname_of_unbound_server_is_an_error() {
    let server = TcpServer::new();
    let err = getsockname(&server).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err:?}");
    let mut server = TcpServer::new();
    assert!(matches!(server.listen(16), Err(Error::InvalidArgument(_))));
}

#[test]
fn listenany_zero_returns_the_os_port() {
    let (port, server) = listenany(0).unwrap();
    assert_ne!(port, 0);
    assert_eq!(getsockname(&server).unwrap(), (IPAddr::V4(LOCALHOST), port));
    roundtrip(&server, connect(port));
}

#[test]
fn listenany_skips_a_busy_hint() {
    let (hint, _busy) = listenany(0).unwrap();
    if hint == u16::MAX {
        println!("skipping: the OS picked port 65535");
        return;
    }
    let (port, server) = listenany(hint).unwrap();
    assert!(port > hint, "returned {port} for busy hint {hint}");
    if port != hint + 1 {
        println!("note: {} was busy as well", hint + 1);
    }
    assert_eq!(getsockname(&server).unwrap(), (IPAddr::V4(LOCALHOST), port));
    assert!(server.is_open());
    roundtrip(&server, connect(port));
    // A free hint is taken as is (retried: another socket may grab a freed port).
    drop(server);
    let taken = (0..5).any(|_| {
        let (free, probe) = listenany(0).unwrap();
        drop(probe);
        let (got, server) = listenany(free).unwrap();
        if got == free {
            roundtrip(&server, connect(free));
        }
        got == free
    });
    assert!(taken, "listenany never returned a free hint as is");
}

#[test]
fn listenany_on_ipv6_loopback() {
    if !has_ipv6("listenany_on_ipv6_loopback") {
        return;
    }
    let (port, server) = listenany_on(LOCALHOST6, 0).unwrap();
    assert_ne!(port, 0);
    assert_eq!(
        getsockname(&server).unwrap(),
        (IPAddr::V6(LOCALHOST6), port)
    );
    let (c, _s) = roundtrip(&server, connect((ip!("::1"), port)));
    assert_eq!(getpeername(&c).unwrap(), (ip!("::1"), port));
    let (port2, _server2) = listenany_on(ip!("::1"), port).unwrap();
    assert!(port2 > port);
}

// ---------------------------------------------------------------------------------------
// TcpSocket I/O
// ---------------------------------------------------------------------------------------

#[test]
fn read_line_across_several_writes() {
    let (_server, mut c, mut s) = tcp_pair();
    let (tx, rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        for part in ["hel", "lo wo", "rld\nsec", "ond line", "\n"] {
            c.write_all(part.as_bytes()).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        let _ = rx.recv_timeout(SAFETY);
        c
    });
    assert_eq!(read_line(&mut s), "hello world\n");
    assert_eq!(read_line(&mut s), "second line\n");
    tx.send(()).unwrap();
    let c = join_within(writer, SAFETY, "writer");
    c.closewrite().unwrap();
    let mut rest = String::new();
    assert_eq!(s.read_line(&mut rest).unwrap(), 0);
}

#[test]
fn peek_byte_does_not_consume() {
    let (_server, mut c, mut s) = tcp_pair();
    c.write_all(b"ab").unwrap();
    assert_eq!(s.peek_byte().unwrap(), Some(b'a'));
    assert_eq!(s.peek_byte().unwrap(), Some(b'a'));
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"a");
    assert_eq!(s.peek_byte().unwrap(), Some(b'b'));
    s.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"b");
    c.closewrite().unwrap();
    assert_eq!(s.peek_byte().unwrap(), None, "None at EOF");
}

#[test]
fn bytesavailable_counts_buffered_and_kernel_bytes() {
    let (_server, mut c, mut s) = tcp_pair();
    assert_eq!(s.bytesavailable().unwrap(), 0);
    c.write_all(b"abc\ndef").unwrap();
    wait_until(SAFETY, "7 bytes queued", || {
        s.bytesavailable().unwrap() == 7
    });
    assert_eq!(read_line(&mut s), "abc\n");
    assert_eq!(s.bytesavailable().unwrap(), 3, "\"def\" buffered");
    c.write_all(b"gh").unwrap();
    wait_until(SAFETY, "3 buffered + 2 queued", || {
        s.bytesavailable().unwrap() == 5
    });
    // read_available: the buffered bytes first, then what the kernel has.
    assert_eq!(s.read_available().unwrap(), b"def");
    assert_eq!(s.bytesavailable().unwrap(), 2);
    assert_eq!(s.read_available().unwrap(), b"gh");
    assert_eq!(s.bytesavailable().unwrap(), 0);
    c.closewrite().unwrap();
    assert_eq!(s.read_available().unwrap(), b"", "empty at EOF");
    s.close().unwrap();
    assert!(matches!(s.bytesavailable(), Err(Error::Closed)));
}

#[test]
fn bytesavailable_on_unix() {
    let dir = TempDir::new();
    let (_server, mut c, mut s) = unix_pair(&dir);
    c.write_all(b"xy\nz").unwrap();
    wait_until(SAFETY, "4 bytes queued", || {
        s.bytesavailable().unwrap() == 4
    });
    assert_eq!(read_line(&mut s), "xy\n");
    assert_eq!(s.bytesavailable().unwrap(), 1);
    assert_eq!(s.read_available().unwrap(), b"z");
}

#[test]
fn read_available_waits_for_data() {
    let (_server, mut c, s) = tcp_pair();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        c.write_all(b"late").unwrap();
        c
    });
    let got = s.read_available().unwrap();
    assert_eq!(got, b"late");
    let _c = join_within(t, SAFETY, "writer");
}

#[test]
fn eof_after_peer_closewrite() {
    let (_server, mut c, mut s) = tcp_pair();
    c.write_all(b"x").unwrap();
    c.closewrite().unwrap();
    assert!(!s.eof().unwrap(), "a byte is pending");
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    assert!(s.eof().unwrap());
    assert!(s.eof().unwrap(), "eof stays true");
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn eof_blocks_until_data_or_eof() {
    let (_server, mut c, s) = tcp_pair();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        c.write_all(b"y").unwrap();
        c
    });
    let start = Instant::now();
    assert!(!s.eof().unwrap());
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "did not block"
    );
    assert_eq!(s.bytesavailable().unwrap(), 1);
    let _c = join_within(t, SAFETY, "writer");
}

/// Julia's half-close rules on a connected pair `(a, b)`.
fn half_close_rules(mut a: TcpSocket, mut b: TcpSocket) {
    for s in [&a, &b] {
        assert!(s.is_open() && s.isreadable() && s.iswritable());
    }
    // b shuts its write side: b stays readable, not writable.
    b.closewrite().unwrap();
    assert!(!b.iswritable(), "after closewrite: !iswritable");
    assert!(b.isreadable(), "after closewrite: isreadable");
    assert!(b.is_open(), "after closewrite alone: still open");
    assert!(b.write_all(b"nope").is_err(), "write after closewrite");

    // a reads b's EOF: reading EOF alone does not make it unwritable (julia#35442).
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf).unwrap(), 0);
    assert!(a.eof().unwrap());
    assert!(a.iswritable(), "reading EOF alone keeps iswritable");
    assert!(a.is_open(), "reading EOF alone keeps isopen");
    a.write_all(b"after eof\n").unwrap();
    assert_eq!(read_line(&mut b), "after eof\n");
    assert!(b.is_open());

    // a shuts its write side too: both directions are done for a.
    a.closewrite().unwrap();
    assert!(!a.is_open(), "closewrite + EOF read: !isopen");
    assert!(!a.isreadable(), "closewrite + EOF read: !isreadable");
    assert!(!a.iswritable());

    // b reads a's EOF: both directions done for b as well.
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    assert!(!b.is_open(), "closewrite + EOF read: !isopen");
    assert!(!b.isreadable(), "closewrite + EOF read: !isreadable");
    assert!(!b.iswritable());

    // close is still fine and idempotent.
    a.close().unwrap();
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn half_close_rules_tcp() {
    let (_server, c, s) = tcp_pair();
    half_close_rules(c, s);
}

#[test]
fn half_close_rules_unix() {
    let dir = TempDir::new();
    let (_server, c, s) = unix_pair(&dir);
    half_close_rules(c, s);
}

#[test]
fn close_makes_everything_false_and_fails_io() {
    let (_server, mut c, _s) = tcp_pair();
    c.close().unwrap();
    assert!(!c.is_open() && !c.isreadable() && !c.iswritable());
    let mut buf = [0u8; 4];
    assert!(c.read(&mut buf).is_err());
    assert!(c.write_all(b"x").is_err());
    assert!(c.closewrite().is_err());
}

#[test]
fn peer_close_wakes_a_blocked_read() {
    // `read` needs `&mut`, so a blocked read is woken by the peer here.
    let (_server, mut c, s) = tcp_pair();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4];
        let _ = tx.send(c.read(&mut buf).map_err(|e| e.kind()));
    });
    thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "read returned early");
    s.close().unwrap();
    assert_eq!(rx.recv_timeout(PROMPT).expect("not woken"), Ok(0));
}

fn large_transfer(mut client: TcpSocket, mut conn: TcpSocket) {
    const LEN: usize = 8 << 20;
    let up = pattern(LEN, 1);
    let down = pattern(LEN, 7);
    let up2 = up.clone();
    let down2 = down.clone();
    let server = thread::spawn(move || {
        read_checked(&mut conn, &up2);
        conn.write_all(&down2).unwrap();
        conn.closewrite().unwrap();
        conn
    });
    client.write_all(&up).unwrap();
    client.closewrite().unwrap();
    read_checked(&mut client, &down);
    let _conn = join_within(server, SAFETY, "server side");
}

#[test]
fn large_transfer_tcp() {
    let (_server, c, s) = tcp_pair();
    large_transfer(c, s);
}

#[test]
fn large_transfer_unix() {
    let dir = TempDir::new();
    let (_server, c, s) = unix_pair(&dir);
    large_transfer(c, s);
}

#[test]
fn large_transfer_concurrent_both_directions() {
    // Two connections so each side can read and write at once without splitting a socket.
    let (_s1, mut c_up, mut s_up) = tcp_pair();
    let (_s2, mut c_down, mut s_down) = tcp_pair();
    const LEN: usize = 8 << 20;
    let up = pattern(LEN, 3);
    let down = pattern(LEN, 11);
    let (up2, down2) = (up.clone(), down.clone());
    let reader_up = thread::spawn(move || read_checked(&mut s_up, &up2));
    let reader_down = thread::spawn(move || read_checked(&mut c_down, &down2));
    let writer_down = thread::spawn(move || {
        s_down.write_all(&down).unwrap();
        s_down.closewrite().unwrap();
        s_down
    });
    c_up.write_all(&up).unwrap();
    c_up.closewrite().unwrap();
    join_within(reader_up, SAFETY, "reader up");
    join_within(reader_down, SAFETY, "reader down");
    let _ = join_within(writer_down, SAFETY, "writer down");
}

fn read_deadline(mut a: TcpSocket, mut b: TcpSocket) {
    a.set_read_deadline(Some(Instant::now() + Duration::from_millis(150)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 8];
    let err = a.read(&mut buf).unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
    let inner = Error::from_io(&err).expect("a reseau::Error inside");
    assert!(inner.is_timeout(), "{inner:?}");
    assert!(took >= Duration::from_millis(140), "fired early: {took:?}");
    assert!(took < Duration::from_secs(3), "fired late: {took:?}");
    // The inherent calls report the reseau error directly.
    let err = a.peek_byte().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let err = a.eof().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let err = a.read_available().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // Extending the deadline makes the socket usable again.
    a.set_read_deadline(soon()).unwrap();
    b.write_all(b"ok\n").unwrap();
    assert_eq!(read_line(&mut a), "ok\n");
    // set_deadline covers reads too.
    a.set_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let err = a.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // A past deadline fails at once.
    a.set_read_deadline(Some(Instant::now())).unwrap();
    let t = Instant::now();
    assert!(a.read(&mut buf).is_err());
    assert!(t.elapsed() < PROMPT);
}

#[test]
fn read_deadline_tcp() {
    let (_server, c, s) = tcp_pair();
    read_deadline(c, s);
}

#[test]
fn read_deadline_unix() {
    let dir = TempDir::new();
    let (_server, c, s) = unix_pair(&dir);
    read_deadline(c, s);
}

#[test]
fn write_deadline_tcp() {
    let (_server, mut c, _s) = tcp_pair();
    c.set_write_deadline(Some(Instant::now() + Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    let t = Instant::now();
    let err = loop {
        // The peer never reads, so the buffers fill and the deadline fires.
        if let Err(e) = c.write_all(&chunk) {
            break e;
        }
        assert!(t.elapsed() < SAFETY, "write deadline never fired");
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
    assert!(Error::from_io(&err).unwrap().is_timeout());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn accept_deadline() {
    let (_, server) = listenany(0).unwrap();
    server
        .set_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    let t = Instant::now();
    let err = accept(&server).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(server.is_open(), "a deadline does not close the server");
}

#[test]
fn nagle_and_quickack() {
    let (_server, c, s) = tcp_pair();
    for sock in [&c, &s] {
        sock.nagle(true).unwrap();
        sock.nagle(false).unwrap();
        sock.quickack(true).unwrap();
        sock.quickack(false).unwrap();
    }
    let dir = TempDir::new();
    let (_userver, uc, us) = unix_pair(&dir);
    for sock in [&uc, &us] {
        assert!(matches!(sock.nagle(true), Err(Error::InvalidArgument(_))));
        assert!(matches!(sock.nagle(false), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            sock.quickack(true),
            Err(Error::InvalidArgument(_))
        ));
    }
    c.close().unwrap();
    assert!(matches!(
        c.nagle(true),
        Err(Error::Closed) | Err(Error::Sys { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// accept_loop
// ---------------------------------------------------------------------------------------

#[test]
fn accept_loop_serves_clients_and_ends_quietly() {
    const N: usize = 8;
    let (port, server) = listenany(0).unwrap();
    let server = Arc::new(server);
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let h = accept_loop(server.clone(), move |mut sock| {
        counter.fetch_add(1, Ordering::SeqCst);
        thread::spawn(move || {
            guard(&sock);
            let mut line = String::new();
            while sock.read_line(&mut line).unwrap_or(0) > 0 {
                if sock.write_all(line.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        });
    });
    // All clients connected at once: the callback must not serialise them.
    let mut clients: Vec<TcpSocket> = (0..N)
        .map(|_| {
            let c = connect(port).unwrap();
            guard(&c);
            c
        })
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i} round {round}\n").as_bytes())
                .unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(read_line(c), format!("client {i} round {round}\n"));
        }
    }
    assert_eq!(served.load(Ordering::SeqCst), N);
    assert!(!h.is_finished());
    server.close().unwrap();
    let res = join_within(h, Duration::from_secs(2), "accept_loop after close");
    assert!(res.is_ok(), "{res:?}");
    // Connections already served are unaffected by closing the server.
    clients[0].write_all(b"still here\n").unwrap();
    assert_eq!(read_line(&mut clients[0]), "still here\n");
}

/// A connection still queued when the server closes reads EOF (not a reset): with an
/// `accept_loop` stuck in a slow callback.
fn queued_reads_eof_with_loop(server: TcpServer, dial: impl Fn() -> TcpSocket) {
    let server = Arc::new(server);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let h = accept_loop(server.clone(), move |sock| {
        let _ = entered_tx.send(());
        let _ = release_rx.recv_timeout(SAFETY);
        drop(sock);
    });
    let _first = dial();
    entered_rx
        .recv_timeout(SAFETY)
        .expect("first connection accepted");
    let mut queued = dial();
    thread::sleep(Duration::from_millis(50));
    server.close().unwrap();
    queued
        .set_read_deadline(Some(Instant::now() + PROMPT))
        .unwrap();
    let mut buf = [0u8; 8];
    let t = Instant::now();
    match queued.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "queued connection got data"),
        Err(e) => panic!(
            "queued connection: {e:?} (want EOF) after {:?}",
            t.elapsed()
        ),
    }
    assert!(queued.eof().unwrap());
    release_tx.send(()).unwrap();
    let res = join_within(h, Duration::from_secs(2), "accept_loop after close");
    assert!(res.is_ok(), "{res:?}");
}

#[test]
fn accept_loop_queued_connection_reads_eof_tcp() {
    let (port, server) = listenany(0).unwrap();
    queued_reads_eof_with_loop(server, move || {
        let c = connect(port).unwrap();
        guard(&c);
        c
    });
}

#[test]
fn accept_loop_queued_connection_reads_eof_unix() {
    let dir = TempDir::new();
    let path = dir.sock("q.sock");
    let server = listen(path.as_path()).unwrap();
    queued_reads_eof_with_loop(server, move || {
        let c = connect(path.as_path()).unwrap();
        guard(&c);
        c
    });
}

/// Connections queued on a server nobody accepts from read EOF once it closes. With
/// `send_first`, each client has sent a request first (which the server never read).
fn queued_reads_eof_plain(server: TcpServer, send_first: bool, dial: impl Fn() -> TcpSocket) {
    let mut queued: Vec<TcpSocket> = (0..3).map(|_| dial()).collect();
    if send_first {
        for q in &mut queued {
            q.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        }
    }
    thread::sleep(Duration::from_millis(50));
    server.close().unwrap();
    for q in &mut queued {
        q.set_read_deadline(Some(Instant::now() + PROMPT)).unwrap();
        let mut buf = [0u8; 8];
        match q.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => panic!("queued connection: {e:?} (want EOF)"),
        }
        assert!(q.eof().unwrap());
    }
}

fn queued_tcp(send_first: bool) {
    let (port, server) = listenany(0).unwrap();
    queued_reads_eof_plain(server, send_first, move || {
        let c = connect(port).unwrap();
        guard(&c);
        c
    });
}

fn queued_unix(send_first: bool) {
    let dir = TempDir::new();
    let path = dir.sock("p.sock");
    let server = listen(path.as_path()).unwrap();
    queued_reads_eof_plain(server, send_first, move || {
        let c = connect(path.as_path()).unwrap();
        guard(&c);
        c
    });
}

#[test]
fn server_close_queued_connections_read_eof_tcp() {
    queued_tcp(false);
}

#[test]
fn server_close_queued_connections_read_eof_unix() {
    queued_unix(false);
}

#[test]
fn server_close_queued_connections_with_a_request_read_eof_tcp() {
    queued_tcp(true);
}

#[test]
fn server_close_queued_connections_with_a_request_read_eof_unix() {
    queued_unix(true);
}

#[test]
fn accept_loop_ends_with_error_on_never_listened_server() {
    let h = accept_loop(Arc::new(TcpServer::new()), drop);
    let res = join_within(h, SAFETY, "accept_loop on a fresh server");
    assert!(matches!(res, Err(Error::InvalidArgument(_))), "{res:?}");
}

#[test]
fn accept_loop_on_an_already_closed_server_ends_quietly() {
    let (_port, server) = listenany(0).unwrap();
    server.close().unwrap();
    let h = accept_loop(Arc::new(server), |_| panic!("nothing to accept"));
    let res = join_within(h, SAFETY, "accept_loop on a closed server");
    assert!(res.is_ok(), "{res:?}");
}

const EMFILE_CHILD_ENV: &str = "RESEAU_SOCKETS_EMFILE_CHILD";
const EMFILE_CHILD_OK: &str = "EMFILE-CHILD-OK";

#[test]
fn accept_loop_backs_off_on_emfile() {
    if std::env::var_os(EMFILE_CHILD_ENV).is_some() {
        emfile_child();
        println!("{EMFILE_CHILD_OK}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .env(EMFILE_CHILD_ENV, "1")
        .args([
            "--exact",
            "accept_loop_backs_off_on_emfile",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("child hung; stdout:\n{out}\nstderr:\n{err}"));
    assert!(
        status.success() && out.contains(EMFILE_CHILD_OK),
        "child failed ({status}); stdout:\n{out}\nstderr:\n{err}"
    );
}

/// Runs in the child: starts an `accept_loop` with a client queued and no descriptors
/// left, then frees them.
fn emfile_child() {
    // The CPU clock must work for the spin check to mean anything.
    // Spin until it counts 30 ms (however busy the machine is), bounded in wall time.
    let c0 = cpu_time();
    let spin = Instant::now();
    while cpu_time() - c0 < Duration::from_millis(30) {
        assert!(
            spin.elapsed() < Duration::from_secs(10),
            "getrusage does not track CPU time here"
        );
        std::hint::black_box(0u64);
    }

    let (port, server) = listenany(0).unwrap();
    let server = Arc::new(server);
    // Queued before the loop exists, so nothing can accept it early.
    let mut client = connect(port).unwrap();
    client.set_deadline(soon()).unwrap();

    // A low limit so exhausting it is quick.
    let open_now = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count());
    // SAFETY: getrlimit/setrlimit read or write only the struct given.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = (open_now as libc::rlim_t + 64).min(lim.rlim_max);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
                break;
            }
        }
        assert!(hog.len() < 100_000, "RLIMIT_NOFILE had no effect");
    }
    println!("holding {} extra descriptors", hog.len());

    let (tx, rx) = mpsc::channel();
    let h = accept_loop(server.clone(), move |mut sock| {
        let _ = sock.write_all(b"served\n");
        let _ = tx.send(());
    });
    // The loop now fails accept with EMFILE: it must neither exit nor spin.
    thread::sleep(Duration::from_millis(200));
    let cpu0 = cpu_time();
    thread::sleep(Duration::from_millis(1200));
    let cpu = cpu_time() - cpu0;
    println!("cpu during EMFILE: {cpu:?}");
    assert!(
        rx.try_recv().is_err(),
        "served although descriptors were exhausted (no EMFILE?)"
    );
    assert!(!h.is_finished(), "accept_loop exited on EMFILE");
    assert!(
        cpu < Duration::from_millis(300),
        "accept_loop spins: {cpu:?}"
    );

    drop(hog);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("queued connection not served after freeing descriptors");
    assert_eq!(read_line(&mut client), "served\n");
    server.close().unwrap();
    let res = join_within(h, Duration::from_secs(2), "accept_loop after close");
    assert!(res.is_ok(), "{res:?}");
}

// ---------------------------------------------------------------------------------------
// TLS (gated)
// ---------------------------------------------------------------------------------------

fn tls_listen(cert: PathBuf, key: PathBuf, alpn: &[&str]) -> (u16, TcpServer) {
    let server = listen_with(
        0u16,
        &ListenOptions {
            tls: true,
            cert_file: Some(cert),
            key_file: Some(key),
            alpn: alpn.iter().map(|s| s.to_string()).collect(),
            ..ListenOptions::default()
        },
    )
    .unwrap();
    (port_of(&server), server)
}

type Served = Result<(bool, Option<tls::ConnectionState>), String>;

/// Accepts one connection on a TLS server and echoes one line.
fn echo_once(server: TcpServer) -> Receiver<Served> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let res = (|| -> Result<_, String> {
            server.set_deadline(soon()).map_err(|e| e.to_string())?;
            let mut s = accept(&server).map_err(|e| e.to_string())?;
            guard(&s);
            let mut line = String::new();
            s.read_line(&mut line).map_err(|e| e.to_string())?;
            s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            Ok(s)
        })();
        match res {
            Ok(mut s) => {
                let _ = tx.send(Ok((s.is_tls(), s.connection_state())));
                // Stay open until the client is done (EOF, error or the safety deadline),
                // so the client never races our close.
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    rx
}

fn trusting_client() -> ConnectOptions {
    ConnectOptions {
        tls: true,
        ca_file: Some(cert!("ca.pem")),
        timeout: Some(SAFETY),
        ..ConnectOptions::default()
    }
}

#[test]
fn tls_echo_with_listen_with_and_connect_with() {
    if !tls_enabled("tls_echo_with_listen_with_and_connect_with") {
        return;
    }
    let (port, server) = tls_listen(cert!("server.pem"), cert!("server.key"), &[]);
    let rx = echo_once(server);
    let mut c = connect_with(("localhost", port), &trusting_client()).unwrap();
    guard(&c);
    assert!(c.is_tls());
    let st = c.connection_state().unwrap();
    assert!(st.handshake_complete);
    assert!(st.version.starts_with("TLSv1."), "{:?}", st.version);
    assert_eq!(st.alpn_protocol, None);
    c.write_all(b"secret hello\n").unwrap();
    assert_eq!(read_line(&mut c), "secret hello\n");
    let (server_tls, server_st) = rx.recv_timeout(SAFETY).unwrap().unwrap();
    assert!(server_tls);
    assert_eq!(server_st.unwrap().version, st.version);
    // STARTTLS on an already-TLS socket is a no-op.
    c.tls_upgrade(&tls::Config::default()).unwrap();
    assert!(c.is_tls());
    // Half-close over TLS: close_notify reads as EOF on the other side.
    c.closewrite().unwrap();
    assert!(!c.iswritable());
    let mut buf = [0u8; 4];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "server closed after the echo");
    // Plain sockets have no TLS state.
    let (_s, plain, _p) = tcp_pair();
    assert!(!plain.is_tls());
    assert!(plain.connection_state().is_none());
}

#[test]
fn tls_insecure_against_untrusted_server() {
    if !tls_enabled("tls_insecure_against_untrusted_server") {
        return;
    }
    // Verification on (trusting only the test CA): the untrusted cert is refused.
    let (port, server) = tls_listen(cert!("untrusted.pem"), cert!("untrusted.key"), &[]);
    let rx = echo_once(server);
    let err = connect_with(("localhost", port), &trusting_client()).unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(err.op(), Some("connect"), "{err:?}");
    assert!(
        rx.recv_timeout(SAFETY).unwrap().is_err(),
        "server side must fail too"
    );

    // insecure: true skips verification.
    let (port, server) = tls_listen(cert!("untrusted.pem"), cert!("untrusted.key"), &[]);
    let rx = echo_once(server);
    let opts = ConnectOptions {
        tls: true,
        insecure: true,
        timeout: Some(SAFETY),
        ..ConnectOptions::default()
    };
    let mut c = connect_with(("localhost", port), &opts).unwrap();
    guard(&c);
    assert!(c.is_tls());
    c.write_all(b"anyway\n").unwrap();
    assert_eq!(read_line(&mut c), "anyway\n");
    assert!(rx.recv_timeout(SAFETY).unwrap().unwrap().0);
}

#[test]
fn tls_alpn_through_options() {
    if !tls_enabled("tls_alpn_through_options") {
        return;
    }
    let (port, server) = tls_listen(
        cert!("server.pem"),
        cert!("server.key"),
        &["http/1.1", "h2"],
    );
    let rx = echo_once(server);
    let opts = ConnectOptions {
        alpn: vec!["h2".into(), "http/1.1".into()],
        ..trusting_client()
    };
    let mut c = connect_with(("localhost", port), &opts).unwrap();
    guard(&c);
    // Server preference wins (Go).
    assert_eq!(
        c.connection_state().unwrap().alpn_protocol.as_deref(),
        Some("http/1.1")
    );
    c.write_all(b"alpn\n").unwrap();
    assert_eq!(read_line(&mut c), "alpn\n");
    let (_, st) = rx.recv_timeout(SAFETY).unwrap().unwrap();
    assert_eq!(st.unwrap().alpn_protocol.as_deref(), Some("http/1.1"));
}

#[test]
fn tls_connect_timeout_covers_the_handshake() {
    if !tls_enabled("tls_connect_timeout_covers_the_handshake") {
        return;
    }
    // A plain server that never answers the ClientHello: the budget must end the wait.
    let (port, _server) = listenany(0).unwrap();
    let opts = ConnectOptions {
        timeout: Some(Duration::from_millis(300)),
        ..trusting_client()
    };
    let t = Instant::now();
    let err = bounded(SAFETY, "stuck TLS handshake", move || {
        connect_with(("localhost", port), &opts).unwrap_err()
    });
    let took = t.elapsed();
    assert!(err.is_timeout(), "not a timeout: {err:?}");
    assert!(took >= Duration::from_millis(250), "fired early: {took:?}");
    assert!(took < Duration::from_millis(1500), "too slow: {took:?}");
}

#[test]
fn tls_over_unix_sockets() {
    // SPEC §7b: `tls: true` with a path endpoint; `server_name` names the certificate.
    let dir = TempDir::new();
    let path = dir.sock("t.sock");
    let server = listen_with(
        path.as_path(),
        &ListenOptions {
            tls: true,
            cert_file: Some(cert!("server.pem")),
            key_file: Some(cert!("server.key")),
            ..ListenOptions::default()
        },
    )
    .unwrap();
    // Without a name a verifying client has nothing to check the certificate against.
    let err = connect_with(path.as_path(), &trusting_client()).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    if !tls_enabled("tls_over_unix_sockets") {
        return;
    }
    let server = Arc::new(server);
    let srv = server.clone();
    let echo = thread::spawn(move || -> reseau::Result<Vec<u8>> {
        let s = accept_one(&srv);
        let line = s.readuntil(b'\n', true)?;
        (&s).write_all(&line)?;
        Ok(line)
    });
    let opts = ConnectOptions {
        server_name: Some("localhost".into()),
        ..trusting_client()
    };
    let c = connect_with(path.as_path(), &opts).expect("TLS over a unix socket");
    guard(&c);
    assert!(c.is_tls());
    assert!(c.connection_state().unwrap().handshake_complete);
    (&c).write_all(b"over unix\n").unwrap();
    assert_eq!(c.readline(true).unwrap(), "over unix\n");
    assert_eq!(join_within(echo, SAFETY, "echo").unwrap(), b"over unix\n");
    // A unix socket has no IP address, under TLS too.
    assert!(matches!(getpeername(&c), Err(Error::InvalidArgument(_))));
    // A wrong name fails verification.
    let srv = server.clone();
    let t = thread::spawn(move || {
        let s = accept_one(&srv);
        let _ = s.readline(false);
    });
    let bad = ConnectOptions {
        server_name: Some("not-the-name.example".into()),
        ..trusting_client()
    };
    let err = connect_with(path.as_path(), &bad).unwrap_err();
    assert_eq!(err.op(), Some("connect"), "{err:?}");
    join_within(t, SAFETY, "refusing server");
}

#[test]
fn tls_config_errors_before_io() {
    // A TLS server without a certificate.
    let err = listen_with(
        0u16,
        &ListenOptions {
            tls: true,
            ..ListenOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    // A client with a CA file that does not exist.
    let (port, _server) = listenany(0).unwrap();
    let opts = ConnectOptions {
        ca_file: Some(cert!("does-not-exist.pem")),
        ..trusting_client()
    };
    let err = connect_with(("localhost", port), &opts).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// STARTTLS
// ---------------------------------------------------------------------------------------

fn server_tls_cfg() -> tls::Config {
    tls::Config {
        cert_file: Some(cert!("server.pem")),
        key_file: Some(cert!("server.key")),
        ..tls::Config::default()
    }
}

fn client_tls_cfg() -> tls::Config {
    tls::Config {
        ca_file: Some(cert!("ca.pem")),
        ..tls::Config::default()
    }
}

/// A plain TCP pair whose client connected by the name `localhost` (the STARTTLS server
/// name is inferred from it).
fn starttls_pair() -> (TcpServer, TcpSocket, TcpSocket) {
    let (port, server) = listenany(0).unwrap();
    let c = connect(("localhost", port)).unwrap();
    guard(&c);
    let s = accept_one(&server);
    (server, c, s)
}

#[test]
fn starttls_upgrade_and_echo() {
    if !tls_enabled("starttls_upgrade_and_echo") {
        return;
    }
    let (_server, mut c, mut s) = starttls_pair();
    let srv = thread::spawn(move || {
        assert_eq!(read_line(&mut s), "STARTTLS\n");
        s.write_all(b"GO\n").unwrap();
        s.tls_accept_upgrade(&server_tls_cfg()).unwrap();
        assert!(s.is_tls());
        let line = read_line(&mut s);
        s.write_all(format!("echo {line}").as_bytes()).unwrap();
        let st = s.connection_state().unwrap();
        (s, st)
    });
    c.write_all(b"STARTTLS\n").unwrap();
    assert_eq!(read_line(&mut c), "GO\n");
    assert!(!c.is_tls());
    c.tls_upgrade(&client_tls_cfg()).unwrap();
    assert!(c.is_tls());
    let st = c.connection_state().unwrap();
    assert!(st.handshake_complete);
    assert!(st.version.starts_with("TLSv1."), "{:?}", st.version);
    assert_eq!(st.server_name.as_deref(), Some("localhost"));
    c.write_all(b"over tls\n").unwrap();
    assert_eq!(read_line(&mut c), "echo over tls\n");
    let (s, sst) = join_within(srv, SAFETY, "STARTTLS server");
    assert!(s.is_tls());
    assert_eq!(sst.version, st.version);
    // A second upgrade is a no-op.
    c.tls_upgrade(&client_tls_cfg()).unwrap();
    assert!(c.is_tls());
}

#[test]
fn starttls_refuses_injected_bytes_in_the_buffer() {
    // CVE-2021-23222: "GO\n" and injected plaintext in one write; the client reads only
    // the line, the rest sits in its buffer.
    let (_server, mut c, mut s) = starttls_pair();
    c.write_all(b"STARTTLS\n").unwrap();
    assert_eq!(read_line(&mut s), "STARTTLS\n");
    s.write_all(b"GO\nINJECTED").unwrap();
    wait_until(SAFETY, "reply queued", || c.bytesavailable().unwrap() == 11);
    assert_eq!(read_line(&mut c), "GO\n");
    assert_eq!(c.bytesavailable().unwrap(), 8, "INJECTED is buffered");
    let err = c.tls_upgrade(&client_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
    assert!(!c.is_tls());
    // The plain connection is intact.
    let mut rest = [0u8; 8];
    c.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"INJECTED");
    exchange(&mut c, &mut s);
}

#[test]
fn starttls_refuses_injected_bytes_in_the_kernel() {
    // The injected bytes arrive after the client read the line: they sit in the kernel
    // queue, not in the client's buffer.
    let (_server, mut c, mut s) = starttls_pair();
    let (read_tx, read_rx) = mpsc::channel::<()>();
    let srv = thread::spawn(move || {
        assert_eq!(read_line(&mut s), "STARTTLS\n");
        s.write_all(b"GO\n").unwrap();
        read_rx.recv_timeout(SAFETY).unwrap();
        thread::sleep(Duration::from_millis(20));
        s.write_all(b"INJECTED").unwrap();
        s
    });
    c.write_all(b"STARTTLS\n").unwrap();
    assert_eq!(read_line(&mut c), "GO\n");
    assert_eq!(
        c.bytesavailable().unwrap(),
        0,
        "nothing buffered after the line"
    );
    read_tx.send(()).unwrap();
    wait_until(SAFETY, "injected bytes queued", || {
        c.bytesavailable().unwrap() > 0
    });
    let err = c.tls_upgrade(&client_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
    assert!(!c.is_tls());
    let mut rest = [0u8; 8];
    c.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"INJECTED");
    let mut s = join_within(srv, SAFETY, "server");
    exchange(&mut c, &mut s);
}

#[test]
fn starttls_server_refuses_buffered_plaintext() {
    let (_server, mut c, mut s) = starttls_pair();
    c.write_all(b"STARTTLS\nEXTRA").unwrap();
    // All 14 bytes reach the kernel first, so one buffered read takes them all.
    wait_until(SAFETY, "request queued", || {
        s.bytesavailable().unwrap() == 14
    });
    assert_eq!(read_line(&mut s), "STARTTLS\n");
    let err = s.tls_accept_upgrade(&server_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
    assert!(!s.is_tls());
    let mut rest = [0u8; 5];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"EXTRA");
    exchange(&mut c, &mut s);
}

#[test]
fn starttls_on_unix_socket_is_refused() {
    let dir = TempDir::new();
    let (_server, mut c, mut s) = unix_pair(&dir);
    let err = c.tls_upgrade(&client_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
    let err = s.tls_accept_upgrade(&server_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
    exchange(&mut c, &mut s);
}

#[test]
fn starttls_on_closed_socket_is_refused() {
    let (_server, c, _s) = starttls_pair();
    c.close().unwrap();
    let err = c.tls_upgrade(&client_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsUpgradeNotReady(_)), "{err:?}");
}

#[test]
fn starttls_config_error_keeps_the_plain_connection() {
    let (_server, mut c, mut s) = starttls_pair();
    let bad = tls::Config {
        ca_file: Some(cert!("does-not-exist.pem")),
        ..tls::Config::default()
    };
    let err = c.tls_upgrade(&bad).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    assert!(!c.is_tls());
    exchange(&mut c, &mut s);
    // A server config without a certificate: also a config error, connection kept.
    let err = s.tls_accept_upgrade(&tls::Config::default()).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    exchange(&mut c, &mut s);
}

#[test]
fn starttls_without_a_name_needs_server_name() {
    // Connected by port only: no host name to infer, so verify_peer cannot check one.
    let (_server, mut c, mut s) = tcp_pair();
    let err = c.tls_upgrade(&client_tls_cfg()).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    exchange(&mut c, &mut s);
}

// ---------------------------------------------------------------------------------------
// SPEC §7b: one socket, several threads; cancellable connect; descriptors; bad input;
// options
// ---------------------------------------------------------------------------------------

// Compile-time: a TcpSocket is shared between threads, and `&TcpSocket` reads and writes.
const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn rw<T: Read + Write>() {}
    send_sync::<TcpSocket>();
    rw::<&TcpSocket>();
};

/// Runs `f` on a thread that must block; `close` from here must end it with `Closed`.
fn assert_close_wakes<T: Send + 'static + std::fmt::Debug>(
    sock: Arc<TcpSocket>,
    what: &str,
    f: impl FnOnce(&TcpSocket) -> reseau::Result<T> + Send + 'static,
) {
    let s = sock.clone();
    let t = thread::spawn(move || f(&s));
    thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "{what} did not block");
    let at = Instant::now();
    sock.close().unwrap();
    let res = join_within(t, SAFETY, what);
    let woke = at.elapsed();
    assert!(matches!(res, Err(Error::Closed)), "{what}: {res:?}");
    assert!(woke < PROMPT, "{what} woke after {woke:?}");
}

#[test]
fn close_from_another_thread_wakes_read_readline_eof_and_write() {
    type Op = fn(&TcpSocket) -> reseau::Result<usize>;
    let ops: [(&str, Op); 5] = [
        ("read", |s| {
            let mut b = [0u8; 16];
            (&*s).read(&mut b).map_err(Error::from)
        }),
        ("readline", |s| s.readline(true).map(|l| l.len())),
        ("readuntil", |s| s.readuntil(b';', false).map(|l| l.len())),
        ("eof", |s| s.eof().map(usize::from)),
        ("peek_byte", |s| {
            s.peek_byte().map(|b| b.map_or(0, usize::from))
        }),
    ];
    let dir = TempDir::new();
    for (what, op) in ops {
        let (_srv, c, _s) = tcp_pair();
        assert_close_wakes(Arc::new(c), what, op);
        let (_srv, c, _s) = unix_pair(&dir);
        assert_close_wakes(Arc::new(c), what, op);
    }
    // A write blocked on a full send buffer (the peer never reads).
    let (_srv, c, _s) = tcp_pair();
    assert_close_wakes(Arc::new(c), "write", |s| {
        let chunk = vec![0u8; 1 << 20];
        loop {
            (&*s).write_all(&chunk).map_err(Error::from)?;
        }
        #[allow(unreachable_code)]
        Ok(0usize)
    });
}

#[test]
fn close_wakes_a_blocked_starttls_handshake() {
    // The peer never answers the ClientHello: the handshake blocks until `close`.
    let (_srv, c, s) = tcp_pair();
    let cfg = tls::Config {
        server_name: Some("localhost".into()),
        ca_file: Some(cert!("ca.pem")),
        ..tls::Config::default()
    };
    assert_close_wakes(Arc::new(c), "tls_upgrade", move |c| c.tls_upgrade(&cfg));
    drop(s);
}

#[test]
fn reader_and_writer_threads_share_one_socket() {
    // Julia's reader task + writer task on one socket, then a third task closes it.
    let (_srv, c, s) = tcp_pair();
    let (c, s) = (Arc::new(c), Arc::new(s));
    // Echo on the server side, also with two threads on one socket.
    let (tx, rx) = mpsc::channel::<String>();
    let s_reader = {
        let s = s.clone();
        thread::spawn(move || {
            while let Ok(line) = s.readline(true) {
                if line.is_empty() || tx.send(line).is_err() {
                    break;
                }
            }
        })
    };
    let s_writer = {
        let s = s.clone();
        thread::spawn(move || {
            while let Ok(line) = rx.recv() {
                (&*s).write_all(line.as_bytes()).unwrap();
            }
        })
    };
    const N: usize = 2000;
    let writer = {
        let c = c.clone();
        thread::spawn(move || {
            for i in 0..N {
                (&*c).write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
        })
    };
    let (lines_done, all_read) = mpsc::channel::<()>();
    let reader = {
        let c = c.clone();
        thread::spawn(move || {
            for i in 0..N {
                assert_eq!(c.readline(false).unwrap(), format!("line {i}"));
            }
            lines_done.send(()).unwrap();
            // The next readline blocks until the closer below.
            c.readline(false)
        })
    };
    join_within(writer, SAFETY, "writer");
    // Close only once every line was read (an empty buffer alone can mean the echo is
    // still on its way on a loaded machine), then give the reader time to park.
    all_read
        .recv_timeout(SAFETY)
        .expect("reader did not get all the lines");
    thread::sleep(Duration::from_millis(50));
    c.close().unwrap();
    let last = join_within(reader, SAFETY, "reader");
    assert!(matches!(last, Err(Error::Closed)), "{last:?}");
    s.close().unwrap();
    join_within(s_reader, SAFETY, "server reader");
    join_within(s_writer, SAFETY, "server writer");
}

#[test]
fn bytes_buffered_by_one_reader_are_seen_by_the_next() {
    let (_srv, c, s) = tcp_pair();
    (&c).write_all(b"first\nsecond\nthird").unwrap();
    c.closewrite().unwrap();
    let s = Arc::new(s);
    let s2 = s.clone();
    let first = thread::spawn(move || s2.readline(false).unwrap());
    assert_eq!(join_within(first, SAFETY, "first reader"), "first");
    // "second\nthird" may already be in the socket's buffer, not the kernel's.
    let s3 = s.clone();
    let rest = thread::spawn(move || {
        let mut out = String::new();
        (&*s3).read_to_string(&mut out).unwrap();
        out
    });
    assert_eq!(join_within(rest, SAFETY, "second reader"), "second\nthird");
    assert_eq!(s.readline(true).unwrap(), "", "EOF: an empty line");
    assert_eq!(s.readuntil(b'x', true).unwrap(), b"");
}

#[test]
fn readline_and_readuntil_follow_julia() {
    let (_srv, c, s) = tcp_pair();
    (&c).write_all(b"a\r\nb\nc;d;\xff\n").unwrap();
    assert_eq!(s.readline(false).unwrap(), "a");
    assert_eq!(s.readline(true).unwrap(), "b\n");
    assert_eq!(s.readuntil(b';', false).unwrap(), b"c");
    assert_eq!(s.readuntil(b';', true).unwrap(), b"d;");
    let err = s.readline(false).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        s.readuntil(b'\n', false).unwrap(),
        b"\xff",
        "kept for a raw read"
    );
}

#[test]
fn lines_longer_than_the_read_buffer() {
    // 200 KB without a newline (the buffer is 64 KiB), then EOF: one line.
    let (_srv, c, mut s) = tcp_pair();
    let long = "x".repeat(200_000);
    let writer = thread::spawn({
        let long = long.clone();
        move || {
            (&c).write_all(long.as_bytes()).unwrap();
            (&c).write_all(b"\nyz").unwrap();
            c.closewrite().unwrap();
            c
        }
    });
    // Bounded with BufRead::take: the rest stays readable.
    let mut head = Vec::new();
    (&mut s).take(100_000).read_until(b'\n', &mut head).unwrap();
    assert_eq!(head.len(), 100_000);
    let rest = s.readline(false).unwrap();
    assert_eq!(rest.len() + head.len(), long.len());
    assert_eq!(
        s.readuntil(b'\n', true).unwrap(),
        b"yz",
        "EOF ends the last one"
    );
    assert_eq!(s.readline(true).unwrap(), "");
    let _c = writer.join().unwrap();
}

#[test]
fn zero_length_reads_return_at_once() {
    // No deadline: a zero-length read that waited for data would hang (bounded here).
    let dir = TempDir::new();
    for (_srv, c, _s) in [tcp_pair(), unix_pair(&dir)] {
        c.set_deadline(None).unwrap();
        let c = Arc::new(c);
        let n = bounded(PROMPT * 5, "zero-length read", {
            let c = c.clone();
            move || (&*c).read(&mut []).unwrap()
        });
        assert_eq!(n, 0);
        let mut owned = Arc::try_unwrap(c).unwrap();
        let n = bounded(PROMPT * 5, "zero-length read (&mut)", move || {
            owned.read(&mut []).unwrap()
        });
        assert_eq!(n, 0);
    }
}

#[test]
fn unconnected_socket_then_connect() {
    let sock = TcpSocket::new();
    let err = (&sock).write(b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
    assert!(matches!(
        sock.readline(false),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!sock.is_open());
    use std::os::fd::AsRawFd;
    assert_eq!(sock.as_raw_fd(), -1, "no descriptor before connect");
    let (port, server) = listenany(0).unwrap();
    sock.connect(port).unwrap();
    assert!(sock.as_raw_fd() >= 0);
    let err = sock.connect(port).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let peer = accept_one(&server);
    (&sock).write_all(b"hi\n").unwrap();
    assert_eq!(peer.readline(false).unwrap(), "hi");
    // A unix socket, by path.
    let dir = TempDir::new();
    let path = dir.sock("late.sock");
    let userver = listen(path.as_path()).unwrap();
    let us = TcpSocket::new();
    us.connect(path.as_path()).unwrap();
    let upeer = accept_one(&userver);
    (&upeer).write_all(b"u\n").unwrap();
    assert_eq!(us.readline(true).unwrap(), "u\n");
    // A failed connect uses the socket up: a second one is refused, without claiming
    // the socket is connected.
    let (gone, gone_server) = listenany(0).unwrap();
    gone_server.close().unwrap();
    let failed = TcpSocket::new();
    assert_op_errno(
        &failed.connect(gone).unwrap_err(),
        "connect",
        libc::ECONNREFUSED,
    );
    let err = failed.connect(port).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(
        err.to_string().contains("not in initialization state"),
        "{err}"
    );
    assert!(!failed.is_open());
    // Closing a never-connected socket, then connecting it.
    let closed = TcpSocket::new();
    closed.close().unwrap();
    let err = closed.connect(port).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECANCELED);
}

/// A loopback listener whose accept queue is full, so a connect to it hangs (SYNs are
/// dropped). `None` if the queue never fills here.
fn black_hole() -> Option<(TcpServer, u16, Vec<TcpSocket>)> {
    black_hole_on(ip!("127.0.0.1"))
}

/// [`black_hole`] listening on `host` (`0.0.0.0`: every 127.x address is the same hole).
fn black_hole_on(host: reseau::sockets::IPAddr) -> Option<(TcpServer, u16, Vec<TcpSocket>)> {
    let server = listen_with(
        (host, 0u16),
        &ListenOptions {
            backlog: 0,
            ..ListenOptions::default()
        },
    )
    .unwrap();
    let port = port_of(&server);
    let probe = ConnectOptions {
        timeout: Some(Duration::from_millis(300)),
        ..ConnectOptions::default()
    };
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match connect_with(port, &probe) {
            Ok(s) => fillers.push(s),
            Err(e) if e.is_timeout() => return Some((server, port, fillers)),
            Err(e) => panic!("filling the queue: {e:?}"),
        }
    }
    None
}

#[test]
fn close_cancels_a_pending_connect_with_ecanceled() {
    let Some((_server, port, _fillers)) = black_hole() else {
        println!("skipped: the accept queue never filled");
        return;
    };
    for tls in [false, true] {
        let sock = Arc::new(TcpSocket::new());
        let s = sock.clone();
        let opts = ConnectOptions {
            tls,
            server_name: Some("localhost".into()),
            ca_file: Some(cert!("ca.pem")),
            ..ConnectOptions::default()
        };
        let t = thread::spawn(move || s.connect_with(port, &opts));
        thread::sleep(Duration::from_millis(150));
        assert!(!t.is_finished(), "the connect did not block");
        let at = Instant::now();
        sock.close().unwrap();
        let err = join_within(t, SAFETY, "pending connect").unwrap_err();
        assert!(at.elapsed() < PROMPT, "woke after {:?}", at.elapsed());
        assert_op_errno(&err, "connect", libc::ECANCELED);
        assert!(!sock.is_open());
    }
}

/// The inodes of this host's IPv4 TCP sockets in `SYN_SENT` towards `port`.
fn syn_sent_to(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            (remote_port == port && *f.get(3)? == "02").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// True if one of this process's descriptors is the socket with this inode.
fn holds_socket(inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").is_ok_and(|d| {
        d.flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
    })
}

/// `TcpSocket::connect` races a name's addresses (Happy Eyeballs: both attempts in
/// flight at once, which the old one-at-a-time connect never had) and `close` still
/// cancels it: promptly, with `connect`/`ECANCELED`, every attempt socket closed.
#[test]
fn close_cancels_a_happy_eyeballs_connect_to_two_black_holes() {
    use reseau::resolve::StaticResolver;
    let Some((_server, port, _fillers)) = black_hole_on(ip!("0.0.0.0")) else {
        println!("skipped: the accept queue never filled");
        return;
    };
    let r = Arc::new(StaticResolver::new());
    r.insert(
        "holes.test",
        ["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
    );
    let opts = ConnectOptions {
        resolver: Some(r),
        ..ConnectOptions::default()
    };
    let sock = Arc::new(TcpSocket::new());
    let s = sock.clone();
    let t = thread::spawn(move || s.connect_with(("holes.test", port), &opts));
    // The second attempt starts 250 ms after the first (RFC 8305's delay).
    let mut in_flight = Vec::new();
    wait_until(SAFETY, "two attempts in flight", || {
        in_flight = syn_sent_to(port);
        in_flight.len() >= 2
    });
    assert!(!t.is_finished(), "the connect did not block");
    assert!(in_flight.iter().all(|&i| holds_socket(i)), "ours");
    let at = Instant::now();
    sock.close().unwrap();
    let err = join_within(t, SAFETY, "pending connect").unwrap_err();
    assert!(at.elapsed() < PROMPT, "woke after {:?}", at.elapsed());
    assert_op_errno(&err, "connect", libc::ECANCELED);
    assert!(!sock.is_open());
    for inode in in_flight {
        assert!(!holds_socket(inode), "attempt socket {inode} leaked");
    }
}

#[test]
fn close_cancels_a_pending_tls_handshake_of_connect() {
    // TCP connects at once; the server never answers the ClientHello.
    let (port, server) = listenany(0).unwrap();
    let sock = Arc::new(TcpSocket::new());
    let s = sock.clone();
    let t = thread::spawn(move || s.connect_with(port, &trusting_client()));
    let _peer = accept_one(&server);
    thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "the handshake did not block");
    sock.close().unwrap();
    let err = join_within(t, SAFETY, "pending handshake").unwrap_err();
    assert_op_errno(&err, "connect", libc::ECANCELED);
}

#[test]
fn descriptors_from_std_and_back() {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    // std TcpStream → TcpSocket (checked, non-blocking: the deadline fires).
    let ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std_client = std::net::TcpStream::connect(ln.local_addr().unwrap()).unwrap();
    let (std_server, _) = ln.accept().unwrap();
    let sock = TcpSocket::try_from(OwnedFd::from(std_client)).unwrap();
    sock.set_read_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    let err = bounded(SAFETY, "read on an adopted socket", {
        let sock = Arc::new(sock);
        move || {
            let e = sock.readline(false).unwrap_err();
            (e, sock)
        }
    });
    assert!(err.0.is_timeout(), "{:?}", err.0);
    let sock = err.1;
    sock.set_read_deadline(soon()).unwrap();
    (&std_server).write_all(b"from std\n").unwrap();
    assert_eq!(sock.readline(false).unwrap(), "from std");
    assert_eq!(
        getpeername(&sock).unwrap().1,
        ln.local_addr().unwrap().port()
    );
    // Back: TcpSocket → OwnedFd → std, blocking again and still connected.
    let raw = sock.as_raw_fd();
    assert_eq!(raw, sock.as_fd().as_raw_fd());
    let sock = Arc::try_unwrap(sock).unwrap();
    let back = std::net::TcpStream::from(OwnedFd::from(sock));
    back.set_read_timeout(Some(SAFETY)).unwrap();
    (&back).write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    (&std_server).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
    // Wrong kinds are InvalidArgument.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pipe_r, _pipe_w) = std::io::pipe().unwrap();
    for fd in [
        OwnedFd::from(udp),
        OwnedFd::from(std::fs::File::open("/dev/null").unwrap()),
        OwnedFd::from(pipe_r),
        OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
    ] {
        let err = TcpSocket::try_from(fd).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    let (pipe_r, _pipe_w) = std::io::pipe().unwrap();
    for fd in [
        OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
        OwnedFd::from(pipe_r),
    ] {
        let err = TcpServer::try_from(fd).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    let unconnected =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let err = TcpSocket::try_from(OwnedFd::from(unconnected)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = TcpServer::try_from(OwnedFd::from(std_server)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // Unix: a std pair and a std listener.
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let ua = TcpSocket::try_from(OwnedFd::from(a)).unwrap();
    guard(&ua);
    (&b).write_all(b"pair\n").unwrap();
    assert_eq!(ua.readline(true).unwrap(), "pair\n");
    let dir = TempDir::new();
    let path = dir.sock("std.sock");
    let std_ln = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = TcpServer::try_from(OwnedFd::from(std_ln)).unwrap();
    guard_server_local(&server);
    let c = connect(path.as_path()).unwrap();
    let s = accept(&server).unwrap();
    (&c).write_all(b"via inherited unix listener\n").unwrap();
    guard(&s);
    assert_eq!(s.readline(false).unwrap(), "via inherited unix listener");
    server.close().unwrap();
    assert!(
        path.exists(),
        "an adopted listener leaves the socket file alone"
    );
}

fn guard_server_local(s: &TcpServer) {
    s.set_deadline(soon()).unwrap();
}

#[test]
fn core_types_from_std_and_to_owned_fd() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::{UnixListener, UnixStream};
    let std_ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_ln.local_addr().unwrap();
    let ln = reseau::tcp::Listener::from(std_ln);
    assert_eq!(ln.local_addr(), Some(addr));
    ln.set_deadline(soon()).unwrap();
    let conn = reseau::tcp::Conn::from(std::net::TcpStream::connect(addr).unwrap());
    let server_side = ln.accept().unwrap();
    assert_eq!(conn.remote_addr(), Some(addr));
    conn.write(b"abc").unwrap();
    let mut b = [0u8; 3];
    server_side.read_full(&mut b).unwrap();
    assert_eq!(&b, b"abc");
    let std_conn = std::net::TcpStream::from(OwnedFd::from(conn));
    std_conn.set_read_timeout(Some(SAFETY)).unwrap();
    server_side.write(b"d").unwrap();
    (&std_conn).read_exact(&mut b[..1]).unwrap();
    assert_eq!(&b[..1], b"d");
    let back = std::net::TcpListener::from(OwnedFd::from(ln));
    assert_eq!(back.local_addr().unwrap(), addr);

    let dir = TempDir::new();
    let path = dir.sock("core.sock");
    let uln = reseau::unix::Listener::from(UnixListener::bind(&path).unwrap());
    uln.set_deadline(soon()).unwrap();
    let uc = reseau::unix::Conn::from(UnixStream::connect(&path).unwrap());
    let us = uln.accept().unwrap();
    assert_eq!(uc.peer_addr(), Some(path.clone()));
    uc.write(b"u").unwrap();
    us.read_full(&mut b[..1]).unwrap();
    assert_eq!(&b[..1], b"u");
    let _std_uc = UnixStream::from(OwnedFd::from(uc));
    let std_uln = UnixListener::from(OwnedFd::from(uln));
    assert!(path.exists(), "handing the listener over keeps its file");
    drop(std_uln);
}

/// The inode of the socket descriptor `fd` names now, if it is open.
fn inode_of(fd: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

/// `From<X> for OwnedFd` hands over the value's own descriptor: the number and the
/// socket are the same, it still works, and dropping the result closes that socket (no
/// duplicate left behind). Before `Fd::into_owned` every conversion duplicated the
/// descriptor (another number) and closed the original.
#[test]
fn owned_fd_keeps_the_number_and_leaks_nothing() {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    // Checks the number and socket survive, then that dropping the std value closes the
    // socket (the number may be reused by a parallel test: compare inodes, not numbers).
    fn handed_over(before: (i32, Option<u64>), owned: OwnedFd) -> OwnedFd {
        assert!(before.1.is_some(), "the value had an open descriptor");
        assert_eq!(owned.as_raw_fd(), before.0, "the number is preserved");
        assert_eq!(inode_of(owned.as_raw_fd()), before.1, "the same socket");
        owned
    }
    fn closed_after_drop(before: (i32, Option<u64>), owned: OwnedFd) {
        drop(owned);
        assert_ne!(
            inode_of(before.0),
            before.1,
            "dropping the OwnedFd closes the socket: no other copy is left open"
        );
    }
    let id = |fd: i32| (fd, inode_of(fd));

    // tcp::Listener and tcp::Conn.
    let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0)).unwrap();
    ln.set_deadline(soon()).unwrap();
    let addr = ln.addr().unwrap();
    let conn = reseau::tcp::connect(addr).unwrap();
    let peer = ln.accept().unwrap();
    peer.set_deadline(soon()).unwrap();
    let before = id(conn.as_raw_fd());
    let owned = handed_over(before, OwnedFd::from(conn));
    let std_conn = std::net::TcpStream::from(owned);
    std_conn.set_read_timeout(Some(SAFETY)).unwrap();
    (&std_conn).write_all(b"to peer").unwrap();
    let mut b = [0u8; 7];
    peer.read_full(&mut b).unwrap();
    assert_eq!(&b, b"to peer");
    peer.write(b"back").unwrap();
    (&std_conn).read_exact(&mut b[..4]).unwrap();
    assert_eq!(&b[..4], b"back", "blocking read on the handed-over socket");
    closed_after_drop(before, OwnedFd::from(std_conn));
    let mut one = [0u8; 1];
    assert_eq!(peer.read(&mut one).unwrap(), 0, "the peer sees EOF at once");

    let before = id(ln.as_raw_fd());
    let std_ln = std::net::TcpListener::from(handed_over(before, OwnedFd::from(ln)));
    assert_eq!(std_ln.local_addr().unwrap(), addr);
    let _c = std::net::TcpStream::connect(addr).unwrap();
    std_ln.accept().unwrap();
    closed_after_drop(before, OwnedFd::from(std_ln));

    // unix::Listener (keeps its file) and unix::Conn.
    let dir = TempDir::new();
    let path = dir.sock("owned.sock");
    let uln = reseau::unix::listen(&path).unwrap();
    uln.set_deadline(soon()).unwrap();
    let uc = reseau::unix::connect(&path).unwrap();
    let us = uln.accept().unwrap();
    us.set_deadline(soon()).unwrap();
    let before = id(uc.as_raw_fd());
    let std_uc = UnixStream::from(handed_over(before, OwnedFd::from(uc)));
    (&std_uc).write_all(b"u").unwrap();
    us.read_full(&mut one).unwrap();
    assert_eq!(&one, b"u");
    closed_after_drop(before, OwnedFd::from(std_uc));
    let before = id(uln.as_raw_fd());
    let std_uln = std::os::unix::net::UnixListener::from(handed_over(before, OwnedFd::from(uln)));
    assert!(path.exists(), "handing the listener over keeps its file");
    let _c2 = UnixStream::connect(&path).unwrap();
    std_uln.accept().unwrap();
    closed_after_drop(before, OwnedFd::from(std_uln));
    assert!(path.exists(), "nobody owns the file any more: it stays");

    // TcpSocket over TCP and over a unix socket.
    let (port, server) = listenany(0).unwrap();
    let sock = connect(port).unwrap();
    let s = accept(&server).unwrap();
    s.set_read_deadline(soon()).unwrap();
    let before = id(sock.as_raw_fd());
    let std_sock = std::net::TcpStream::from(handed_over(before, OwnedFd::from(sock)));
    (&std_sock).write_all(b"facade\n").unwrap();
    assert_eq!(s.readline(false).unwrap(), "facade");
    closed_after_drop(before, OwnedFd::from(std_sock));
    let (a, _b) = UnixStream::pair().unwrap();
    let ua = TcpSocket::try_from(OwnedFd::from(a)).unwrap();
    let before = id(ua.as_raw_fd());
    closed_after_drop(before, handed_over(before, OwnedFd::from(ua)));

    // A closed value has no socket left: it hands over its own number, which names the
    // dead placeholder `close` put there (every I/O call on it fails).
    let closed = connect(port).unwrap();
    let _s2 = accept(&server).unwrap();
    closed.close().unwrap();
    let raw = closed.as_raw_fd();
    let dup = OwnedFd::from(closed);
    assert_eq!(dup.as_raw_fd(), raw);
    let err = std::net::TcpStream::from(dup).write(b"x").unwrap_err();
    assert!(err.raw_os_error().is_some(), "{err:?}");
}

/// A value with no descriptor yet lends the crate's one dead placeholder (the file a
/// closed socket's number names): I/O through it fails. It used to be `/dev/null`, where
/// a write "succeeded" and a read saw EOF.
#[test]
fn unconnected_values_lend_the_dead_placeholder() {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
    fn refuses_io(what: &str, fd: OwnedFd) {
        let mut f = std::fs::File::from(fd);
        let err = f.write(b"x").unwrap_err();
        assert!(err.raw_os_error().is_some(), "{what}: write {err:?}");
        let err = f.read(&mut [0u8; 1]).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{what}: read {err:?}");
    }
    let dup = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().unwrap();
    let never = TcpSocket::new();
    let unbound = TcpServer::new();
    refuses_io("TcpSocket::new().as_fd()", dup(never.as_fd()));
    refuses_io("TcpServer::new().as_fd()", dup(unbound.as_fd()));
    refuses_io(
        "OwnedFd::from(TcpSocket::new())",
        OwnedFd::from(TcpSocket::new()),
    );
    // The same file a closed socket's number names.
    let (port, server) = listenany(0).unwrap();
    let closed = connect(port).unwrap();
    let _peer = accept_one(&server);
    closed.close().unwrap();
    let dead = inode_of(closed.as_raw_fd());
    assert!(dead.is_some());
    assert_eq!(inode_of(never.as_fd().as_raw_fd()), dead, "one placeholder");
    assert_eq!(
        inode_of(unbound.as_fd().as_raw_fd()),
        dead,
        "one placeholder"
    );
}

#[test]
fn io_errors_convert_to_reseau_errors() {
    // `?` mixes std and reseau calls in one function.
    fn mixed(port: u16) -> reseau::Result<String> {
        let sock = connect(port)?;
        (&sock).write_all(b"ping\n")?;
        let mut s = String::new();
        std::io::BufReader::new(&sock).read_line(&mut s)?;
        Ok(s)
    }
    let (port, server) = listenany(0).unwrap();
    let t = thread::spawn(move || {
        let s = accept_one(&server);
        let line = s.readline(true).unwrap();
        (&s).write_all(line.as_bytes()).unwrap();
        server
    });
    assert_eq!(mixed(port).unwrap(), "ping\n");
    let server = join_within(t, SAFETY, "echo");
    server.close().unwrap();
    let err = mixed(port).unwrap_err();
    assert_op_errno(&err, "connect", libc::ECONNREFUSED);
    // A reseau error inside an io::Error comes back as itself.
    let io_err: io::Error = Error::DeadlineExceeded.into();
    assert!(matches!(Error::from(io_err), Error::DeadlineExceeded));
    // Anything else is Sys { op: "io" } with the errno.
    let e = Error::from(io::Error::from_raw_os_error(libc::EPIPE));
    assert!(matches!(&e, Error::Sys { op: "io", .. }), "{e:?}");
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    let e = Error::from(io::Error::new(io::ErrorKind::UnexpectedEof, "short"));
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn unix_paths_with_nul_or_empty_are_refused_before_any_syscall() {
    let dir = TempDir::new();
    let good = dir.sock("new");
    let mut bad = good.clone().into_os_string();
    bad.push("\0x");
    let bad = PathBuf::from(bad);
    let err = reseau::unix::listen(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!good.exists(), "the truncated path was bound");
    let err = reseau::unix::connect(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = listen(bad.as_path()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!good.exists(), "the truncated path was bound");
    let err = connect(bad.as_path()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let empty = PathBuf::new();
    let err = reseau::unix::listen(&empty).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = reseau::unix::connect(&empty).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = listen(empty.as_path()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn getpeername_and_getsockname_on_a_closed_socket_are_closed() {
    let (_srv, c, _s) = tcp_pair();
    assert!(getpeername(&c).is_ok());
    c.close().unwrap();
    assert!(matches!(getpeername(&c), Err(Error::Closed)));
    assert!(matches!(getsockname(&c), Err(Error::Closed)));
}

#[test]
fn facade_listen_errors_name_the_address_or_path() {
    let (port, _server) = listenany(0).unwrap();
    let err = listen(port).unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let dir = TempDir::new();
    let path = dir.sock("taken.sock");
    let _ln = listen(path.as_path()).unwrap();
    let err = listen(path.as_path()).unwrap_err();
    assert_eq!(err.op(), Some("listen"));
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn abort_resets_the_peer() {
    let (_srv, c, s) = tcp_pair();
    (&s).write_all(b"unread").unwrap();
    wait_until(SAFETY, "data arrives", || {
        c.bytesavailable().unwrap_or(0) > 0
    });
    c.abort().unwrap();
    assert!(!c.is_open());
    let err = s.readline(false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET), "{err:?}");
}

#[test]
fn socket_options_through_the_facade() {
    use socket2::SockRef;
    let (server, c, _s) = tcp_pair();
    c.set_keepalive_timing(
        Some(Duration::from_secs(30)),
        Some(Duration::from_secs(5)),
        Some(4),
    )
    .unwrap();
    let r = SockRef::from(&c);
    assert!(r.keepalive().unwrap());
    assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
    assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(5));
    assert_eq!(r.tcp_keepalive_retries().unwrap(), 4);
    c.keepalive(false).unwrap();
    assert!(!r.keepalive().unwrap());
    c.set_user_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    assert_eq!(
        r.tcp_user_timeout().unwrap(),
        Some(Duration::from_millis(1500))
    );
    c.set_recv_buffer_size(64 * 1024).unwrap();
    assert!(c.recv_buffer_size().unwrap() >= 64 * 1024);
    c.set_send_buffer_size(64 * 1024).unwrap();
    assert!(c.send_buffer_size().unwrap() >= 64 * 1024);
    // On the server: nagle and quickack reach the listening socket.
    server.nagle(true).unwrap();
    assert!(!SockRef::from(&server).tcp_nodelay().unwrap());
    server.nagle(false).unwrap();
    assert!(SockRef::from(&server).tcp_nodelay().unwrap());
    server.quickack(true).unwrap();
    server.set_recv_buffer_size(32 * 1024).unwrap();
    server.close().unwrap();
    assert!(matches!(server.nagle(true), Err(Error::Closed)));
    c.close().unwrap();
    assert!(matches!(c.set_user_timeout(None), Err(Error::Closed)));
    // Unix sockets have no TCP options.
    let dir = TempDir::new();
    let (userver, uc, _us) = unix_pair(&dir);
    assert!(matches!(
        uc.set_user_timeout(None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        userver.nagle(true),
        Err(Error::InvalidArgument(_))
    ));
    uc.set_send_buffer_size(16 * 1024).unwrap();
}

#[test]
fn reuse_port_through_listen_options() {
    let opts = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let a = listen_with((ip!("127.0.0.1"), 0), &opts).unwrap();
    let port = port_of(&a);
    let b = listen_with((ip!("127.0.0.1"), port), &opts).expect("second SO_REUSEPORT listener");
    assert_eq!(port_of(&b), port);
    let err = listen(port).unwrap_err();
    assert_op_errno(&err, "listen", libc::EADDRINUSE);
    // Not for a unix path: refused up front rather than ignored, nothing created.
    let dir = TempDir::new();
    let path = dir.sock("reuse.sock");
    let err = listen_with(path.as_path(), &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn connect_options_local_address_family_resolver_policy() {
    use reseau::resolve::{Policy, StaticResolver};
    use reseau::sockets::Family;
    let (port, server) = listenany(0).unwrap();
    // A local address.
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let c = connect_with(
        port,
        &ConnectOptions {
            local_addr: Some(local),
            ..ConnectOptions::default()
        },
    )
    .unwrap();
    let s = accept_one(&server);
    assert_eq!(getsockname(&c).unwrap(), getpeername(&s).unwrap());
    // A resolver (a name only it knows) and a policy.
    let r = Arc::new(StaticResolver::new());
    r.insert(
        "db.test",
        ["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    );
    let opts = ConnectOptions {
        resolver: Some(r.clone()),
        policy: Some(Policy {
            allow_ipv6: false,
            ..Policy::default()
        }),
        ..ConnectOptions::default()
    };
    let c = connect_with(("db.test", port), &opts).unwrap();
    assert_eq!(getpeername(&c).unwrap(), (ip!("127.0.0.1"), port));
    let _ = accept_one(&server);
    // A family restriction that leaves nothing.
    let err = connect_with(
        ("db.test", port),
        &ConnectOptions {
            family: Family::V6,
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert_eq!(err.op(), Some("connect"), "{err:?}");
    let err = connect_with(
        (ip!("127.0.0.1"), port),
        &ConnectOptions {
            family: Family::V6,
            ..ConnectOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no suitable address"), "{err}");
    // The same on a TcpSocket::new socket.
    let sock = TcpSocket::new();
    sock.connect_with(("db.test", port), &opts).unwrap();
    assert_eq!(getpeername(&sock).unwrap(), (ip!("127.0.0.1"), port));
}

#[test]
fn connect_timeout_bounds_name_resolution() {
    use reseau::resolve::StaticResolver;
    let r = Arc::new(StaticResolver::new());
    r.insert_with_delay(
        "slow.test",
        ["127.0.0.1".parse().unwrap()],
        Duration::from_secs(30),
    );
    let opts = ConnectOptions {
        resolver: Some(r),
        timeout: Some(Duration::from_millis(200)),
        ..ConnectOptions::default()
    };
    let t = Instant::now();
    let err = bounded(SAFETY, "slow resolution", move || {
        connect_with(("slow.test", 1), &opts).unwrap_err()
    });
    let took = t.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn udp_socket_descriptor() {
    use reseau::sockets::UdpSocket;
    use std::os::fd::{AsFd, AsRawFd};
    let s = UdpSocket::new();
    assert_eq!(s.as_raw_fd(), -1, "unbound: no descriptor yet");
    let _placeholder = s.as_fd(); // borrowable, never another socket of ours
    let mut s = s;
    assert!(bind(&mut s, ip!("127.0.0.1"), 0).unwrap());
    let raw = s.as_raw_fd();
    assert!(raw >= 0);
    assert_eq!(s.as_fd().as_raw_fd(), raw);
    assert_eq!(
        socket2::SockRef::from(&s).r#type().unwrap(),
        socket2::Type::DGRAM
    );
}
