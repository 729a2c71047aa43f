//! The event layer (`reseau::event`) on loopback: lifecycle invariants, the controls
//! (send/tokens, back-pressure, mute, timers, idle timeout, close vs hard close, the
//! cross-thread handle), the server's connection limit, Happy Eyeballs and faults
//! (panicking handler, peer RST). Ports of lori's connection, listener, back-pressure,
//! mute and timer cases where they apply.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reseau::event::{
    Conn, ConnectOptions, Handle, Handler, Runtime, SendToken, ServerOptions, TimerToken,
};
use reseau::resolve::StaticResolver;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Connected(Option<SocketAddr>),
    Failed(String, bool),
    Received(Vec<u8>),
    Sent(u64),
    Throttled,
    Unthrottled,
    Timer(TimerToken),
    Idle,
    Closed,
    /// A callback ran after `closed` (an invariant violation).
    AfterClose(&'static str),
    Handle(H),
}

/// A handle inside an event (handles do not compare).
#[derive(Debug, Clone)]
struct H(Handle);

impl PartialEq for H {
    fn eq(&self, _: &H) -> bool {
        false
    }
}

type Hook<A> = Box<dyn FnMut(&mut Conn<'_>, A) + Send>;
/// A hook that sees the received bytes during the call.
type RecvHook = Box<dyn FnMut(&mut Conn<'_>, &[u8]) + Send>;

/// A handler that reports every callback on a channel and runs optional hooks.
struct Probe {
    tx: Sender<Ev>,
    closed: bool,
    echo: bool,
    on_connected: Option<Hook<()>>,
    on_received: Option<RecvHook>,
    on_timer: Option<Hook<TimerToken>>,
    on_idle: Option<Hook<()>>,
}

impl Probe {
    fn new(tx: Sender<Ev>) -> Probe {
        Probe {
            tx,
            closed: false,
            echo: false,
            on_connected: None,
            on_received: None,
            on_timer: None,
            on_idle: None,
        }
    }
    fn echo(mut self) -> Probe {
        self.echo = true;
        self
    }
    fn check(&self, what: &'static str) {
        if self.closed {
            let _ = self.tx.send(Ev::AfterClose(what));
        }
    }
}

impl Handler for Probe {
    fn connected(&mut self, conn: &mut Conn<'_>) {
        self.check("connected");
        let _ = self.tx.send(Ev::Connected(conn.remote_addr()));
        let _ = self.tx.send(Ev::Handle(H(conn.handle())));
        if let Some(h) = self.on_connected.as_mut() {
            h(conn, ());
        }
    }
    fn connect_failed(&mut self, err: reseau::Error) {
        self.check("connect_failed");
        let _ = self.tx.send(Ev::Failed(err.to_string(), err.is_timeout()));
    }
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        self.check("received");
        let _ = self.tx.send(Ev::Received(data.to_vec()));
        if self.echo {
            let _ = conn.send(data);
        }
        if let Some(h) = self.on_received.as_mut() {
            h(conn, data);
        }
    }
    fn sent(&mut self, _conn: &mut Conn<'_>, token: SendToken) {
        self.check("sent");
        let _ = self.tx.send(Ev::Sent(token.id()));
    }
    fn throttled(&mut self, _conn: &mut Conn<'_>) {
        self.check("throttled");
        let _ = self.tx.send(Ev::Throttled);
    }
    fn unthrottled(&mut self, _conn: &mut Conn<'_>) {
        self.check("unthrottled");
        let _ = self.tx.send(Ev::Unthrottled);
    }
    fn timer(&mut self, conn: &mut Conn<'_>, token: TimerToken) {
        self.check("timer");
        let _ = self.tx.send(Ev::Timer(token));
        if let Some(h) = self.on_timer.as_mut() {
            h(conn, token);
        }
    }
    fn idle_timeout(&mut self, conn: &mut Conn<'_>) {
        self.check("idle");
        let _ = self.tx.send(Ev::Idle);
        if let Some(h) = self.on_idle.as_mut() {
            h(conn, ());
        }
    }
    fn closed(&mut self) {
        self.check("closed");
        self.closed = true;
        let _ = self.tx.send(Ev::Closed);
    }
}

fn rt(threads: usize) -> Runtime {
    Runtime::builder()
        .threads(threads)
        .build()
        .expect("runtime")
}

/// Waits for the first event matching `pred`, returning the events seen before it.
fn wait_for(rx: &Receiver<Ev>, what: &str, pred: impl Fn(&Ev) -> bool) -> (Ev, Vec<Ev>) {
    let end = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return (ev, seen),
            Ok(ev) => seen.push(ev),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
        }
    }
}

fn handle_of(rx: &Receiver<Ev>) -> Handle {
    match wait_for(rx, "handle", |e| matches!(e, Ev::Handle(_))).0 {
        Ev::Handle(h) => h.0,
        _ => unreachable!(),
    }
}

/// Asserts nothing matching `pred` arrives within `d` (returns what did arrive).
fn none_within(rx: &Receiver<Ev>, d: Duration, pred: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    let end = Instant::now() + d;
    let mut seen = Vec::new();
    while let Ok(ev) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        assert!(!pred(&ev), "unexpected {ev:?} (before it: {seen:?})");
        seen.push(ev);
    }
    seen
}

fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

fn roundtrip(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

fn server(rt: &Runtime, opts: ServerOptions) -> (reseau::event::Server, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let s = rt
        .listen("127.0.0.1:0".parse().unwrap(), opts, move |_| {
            Probe::new(tx.lock().unwrap().clone()).echo()
        })
        .expect("listen");
    (s, rx)
}

// ---------------------------------------------------------------------------------------
// server basics

#[test]
fn echo_many_clients_across_loops() {
    let rt = rt(2);
    let (srv, _rx) = server(&rt, ServerOptions::default());
    let mut clients: Vec<TcpStream> = (0..40).map(|_| client(srv.local_addr())).collect();
    for round in 0..5u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            roundtrip(c, &[round, i as u8, 1, 2, 3]);
        }
    }
    assert_eq!(srv.connections(), 40);
}

#[test]
fn listener_reports_assigned_port_and_close_stops_accepting() {
    let rt = rt(1);
    let (srv, rx) = server(&rt, ServerOptions::default());
    assert_ne!(srv.local_addr().port(), 0);
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"x");
    srv.close();
    // Closing is asynchronous: wait until the port refuses.
    let end = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(srv.local_addr()) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > end => panic!("listener still accepting"),
            _ => thread::sleep(Duration::from_millis(10)),
        }
    }
    // The open connection goes on.
    roundtrip(&mut c, b"still here");
    drop(rx);
}

#[test]
fn closed_exactly_once_when_peer_closes_and_nothing_after() {
    let rt = rt(1);
    let (srv, rx) = server(&rt, ServerOptions::default());
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"hi");
    drop(c);
    wait_for(&rx, "closed", |e| *e == Ev::Closed);
    none_within(&rx, Duration::from_millis(200), |e| {
        matches!(e, Ev::Closed | Ev::AfterClose(_))
    });
    let end = Instant::now() + WAIT;
    while srv.connections() != 0 {
        assert!(Instant::now() < end, "connection count not released");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn peer_reset_closes_once() {
    let rt = rt(1);
    let (srv, rx) = server(&rt, ServerOptions::default());
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"hi");
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    wait_for(&rx, "closed after RST", |e| *e == Ev::Closed);
    none_within(&rx, Duration::from_millis(200), |e| {
        matches!(e, Ev::Closed | Ev::AfterClose(_))
    });
}

#[test]
fn connection_limit_pauses_accepting_without_dropping() {
    let rt = rt(2);
    let (srv, rx) = server(
        &rt,
        ServerOptions {
            max_connections: 2,
            ..ServerOptions::default()
        },
    );
    let mut a = client(srv.local_addr());
    let mut b = client(srv.local_addr());
    roundtrip(&mut a, b"a");
    roundtrip(&mut b, b"b");
    // The third completes the TCP handshake in the kernel but is not accepted yet.
    let mut c = client(srv.local_addr());
    c.write_all(b"c").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    let e = c
        .read(&mut one)
        .expect_err("third connection served beyond the limit");
    assert!(matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert_eq!(srv.connections(), 2);
    drop(a);
    // Closing one resumes accepting; the queued connection was kept, with its byte.
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"c");
    roundtrip(&mut b, b"b2");
    drop(rx);
}

#[test]
fn panicking_handler_closes_only_its_connection() {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions::default(),
            move |_| {
                let mut p = Probe::new(tx.lock().unwrap().clone()).echo();
                p.on_received = Some(Box::new(|_c, d| {
                    if d == b"boom" {
                        panic!("handler panic (expected by the test)");
                    }
                }));
                p
            },
        )
        .unwrap();
    let mut good = client(srv.local_addr());
    let mut bad = client(srv.local_addr());
    roundtrip(&mut good, b"ok");
    bad.write_all(b"boom").unwrap();
    // The echo went out before the panic; then the connection is reset.
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        match bad.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("panicked connection not closed: {e}"),
        }
    }
    assert!(total <= 4);
    wait_for(&rx, "closed of the panicking conn", |e| *e == Ev::Closed);
    // The other connection on the same loop is untouched.
    roundtrip(&mut good, b"still fine");
    assert_eq!(srv.connections(), 1);
}

#[test]
fn runtime_drop_closes_connections() {
    let rt = rt(2);
    let (srv, rx) = server(&rt, ServerOptions::default());
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"x");
    drop(rt);
    wait_for(&rx, "closed at shutdown", |e| *e == Ev::Closed);
    let mut buf = [0u8; 1];
    let r = c.read(&mut buf);
    // Reset (or EOF), not the read timeout of a connection left open.
    assert!(
        matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// clients

fn client_probe(
    rt: &Runtime,
    host: &str,
    port: u16,
    opts: ConnectOptions,
    f: impl FnOnce(&mut Probe),
) -> Receiver<Ev> {
    let (tx, rx) = mpsc::channel();
    let mut p = Probe::new(tx);
    f(&mut p);
    rt.connect(host, port, opts, p).expect("connect");
    rx
}

#[test]
fn client_connects_sends_and_gets_closed_once() {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let rt = rt(1);
    let rx = client_probe(&rt, "127.0.0.1", port, ConnectOptions::default(), |p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.send(b"ping").unwrap();
        }));
    });
    let (mut peer, _) = ln.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    peer.write_all(b"pong").unwrap();
    wait_for(&rx, "pong", |e| *e == Ev::Received(b"pong".to_vec()));
    drop(peer);
    let (_, before) = wait_for(&rx, "closed", |e| *e == Ev::Closed);
    assert!(!before.iter().any(|e| matches!(e, Ev::Failed(..))));
    none_within(&rx, Duration::from_millis(200), |e| {
        matches!(e, Ev::Closed | Ev::Connected(_) | Ev::AfterClose(_))
    });
}

#[test]
fn client_refused_gets_connect_failed_once_and_nothing_else() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rt = rt(1);
    let rx = client_probe(&rt, "127.0.0.1", port, ConnectOptions::default(), |_| {});
    let (ev, before) = wait_for(&rx, "connect_failed", |e| matches!(e, Ev::Failed(..)));
    assert!(before.is_empty(), "{before:?}");
    let Ev::Failed(msg, timeout) = ev else {
        unreachable!()
    };
    assert!(!timeout);
    assert!(msg.contains("refused"), "{msg}");
    assert!(msg.starts_with("dial tcp"), "{msg}");
    none_within(&rx, Duration::from_millis(200), |_| true);
}

#[test]
fn unknown_host_fails_through_the_resolver() {
    let rt = rt(1);
    let opts = ConnectOptions {
        resolver: Arc::new(StaticResolver::new()),
        ..ConnectOptions::default()
    };
    let rx = client_probe(&rt, "nowhere.test", 80, opts, |_| {});
    let (ev, _) = wait_for(&rx, "connect_failed", |e| matches!(e, Ev::Failed(..)));
    let Ev::Failed(msg, _) = ev else {
        unreachable!()
    };
    assert!(msg.contains("no such host"), "{msg}");
}

/// A loopback address (`at`, or the port chosen for port 0) whose SYNs go unanswered:
/// a listener with a full backlog.
fn blackhole(at: &str) -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&at.parse::<SocketAddr>().unwrap().into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => fillers.push(c),
            Err(_) => return (s, fillers, addr),
        }
    }
    panic!("could not fill the backlog of {addr}");
}

#[test]
fn connection_timeout_fires_on_a_silent_address() {
    let (_hole, _fill, addr) = blackhole("127.0.0.1:0");
    let rt = rt(1);
    let opts = ConnectOptions {
        connection_timeout: Some(Duration::from_millis(300)),
        ..ConnectOptions::default()
    };
    let start = Instant::now();
    let rx = client_probe(&rt, "127.0.0.1", addr.port(), opts, |_| {});
    let (ev, _) = wait_for(&rx, "timeout", |e| matches!(e, Ev::Failed(..)));
    let took = start.elapsed();
    assert!(matches!(ev, Ev::Failed(_, true)), "{ev:?}");
    assert!(took >= Duration::from_millis(290), "{took:?}");
    none_within(&rx, Duration::from_millis(200), |_| true);
}

/// A resolver answering `name` with `ips`, in that order.
fn answers(name: &str, ips: &[&str]) -> Arc<StaticResolver> {
    let hosts = StaticResolver::new();
    hosts.insert(name, ips.iter().map(|ip| ip.parse::<IpAddr>().unwrap()));
    Arc::new(hosts)
}

#[test]
fn happy_eyeballs_staggers_then_the_live_address_wins() {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let live = ln.local_addr().unwrap();
    // One dial uses one port: the silent address is 127.0.0.2 at the live port.
    let _hole = blackhole(&format!("127.0.0.2:{}", live.port()));
    let opts = ConnectOptions {
        resolver: answers("race.test", &["127.0.0.2", "127.0.0.1"]),
        connection_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    };
    let rt = rt(1);
    let start = Instant::now();
    let rx = client_probe(&rt, "race.test", live.port(), opts, |_| {});
    let (ev, _) = wait_for(&rx, "connected", |e| {
        matches!(e, Ev::Connected(_) | Ev::Failed(..))
    });
    let took = start.elapsed();
    assert_eq!(ev, Ev::Connected(Some(live)));
    assert!(took >= Duration::from_millis(240), "no stagger: {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let _accepted = ln.accept().unwrap();
    none_within(&rx, Duration::from_millis(200), |e| {
        matches!(e, Ev::Connected(_) | Ev::Failed(..))
    });
}

#[test]
fn failed_attempt_starts_the_next_at_once() {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let live = ln.local_addr().unwrap();
    // Nothing listens on 127.0.0.3 at that port: refused at once.
    let opts = ConnectOptions {
        resolver: answers("two.test", &["127.0.0.3", "127.0.0.1"]),
        attempt_delay: Duration::from_secs(3),
        ..ConnectOptions::default()
    };
    let rt = rt(1);
    let start = Instant::now();
    let rx = client_probe(&rt, "two.test", live.port(), opts, |_| {});
    let (ev, _) = wait_for(&rx, "connected", |e| {
        matches!(e, Ev::Connected(_) | Ev::Failed(..))
    });
    assert_eq!(ev, Ev::Connected(Some(live)));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for the stagger"
    );
}

#[test]
fn slow_resolution_does_not_block_the_loop() {
    let rt = rt(1);
    let (srv, _srx) = server(&rt, ServerOptions::default());
    let hosts = StaticResolver::new();
    hosts.insert_with_delay(
        "slow.test",
        ["127.0.0.1".parse::<IpAddr>().unwrap()],
        Duration::from_millis(800),
    );
    let opts = ConnectOptions {
        resolver: Arc::new(hosts),
        ..ConnectOptions::default()
    };
    let start = Instant::now();
    let rx = client_probe(&rt, "slow.test", srv.local_addr().port(), opts, |_| {});
    // Meanwhile the single loop still serves its server connection promptly.
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"quick");
    assert!(start.elapsed() < Duration::from_millis(700), "loop blocked");
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    assert!(start.elapsed() >= Duration::from_millis(780));
}

// ---------------------------------------------------------------------------------------
// controls

/// A server connection driven by hooks; returns the runtime, a client and the events.
fn hooked(f: impl Fn(&mut Probe) + Send + Sync + 'static) -> (Runtime, TcpStream, Receiver<Ev>) {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let srv = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions::default(),
            move |_| {
                let mut p = Probe::new(tx.lock().unwrap().clone());
                f(&mut p);
                p
            },
        )
        .unwrap();
    let c = client(srv.local_addr());
    (rt, c, rx)
}

#[test]
fn send_tokens_complete_in_order_and_sendv_is_one_stream() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            let a = c.send(b"Hello").unwrap();
            let b = c.send_vectored(&[b"", b", ", b"", b"world"]).unwrap();
            let e = c.send_vectored(&[]).unwrap();
            assert!(a < b && b < e);
        }));
    });
    let mut got = [0u8; 12];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"Hello, world");
    let mut sent = Vec::new();
    while sent.len() < 3 {
        if let (Ev::Sent(t), _) = wait_for(&rx, "sent", |e| matches!(e, Ev::Sent(_))) {
            sent.push(t);
        }
    }
    assert_eq!(sent, [1, 2, 3]);
}

#[test]
fn full_send_buffer_throttles_then_unthrottles_and_delivers_everything() {
    const CHUNK: usize = 64 * 1024;
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.socket().unwrap().set_send_buffer_size(4096).unwrap();
            c.set_watermarks(128 * 1024, 0).unwrap();
            let chunk = vec![7u8; CHUNK];
            let mut n = 0;
            while !c.is_throttled() {
                c.send(&chunk).unwrap();
                n += 1;
                assert!(n < 1000, "never throttled");
            }
            assert!(!c.is_writeable());
        }));
    });
    // A slow reader: nothing read until the server is throttled.
    let (_, before) = wait_for(&rx, "throttled", |e| *e == Ev::Throttled);
    assert!(!before.contains(&Ev::Unthrottled));
    // Drain everything.
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                assert!(buf[..k].iter().all(|&b| b == 7));
                total += k;
            }
            Err(_) => break,
        }
    }
    let (_, mid) = wait_for(&rx, "unthrottled", |e| *e == Ev::Unthrottled);
    assert!(
        total >= 128 * 1024 && total.is_multiple_of(CHUNK),
        "{total}"
    );
    let sent = mid.iter().filter(|e| matches!(e, Ev::Sent(_))).count();
    assert!(sent <= total / CHUNK);
}

#[test]
fn mute_stops_received_until_unmute() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.mute();
            c.set_timer(Duration::from_millis(300)).unwrap();
        }));
        p.on_timer = Some(Box::new(|c, _| c.unmute()));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    c.write_all(b"held").unwrap();
    let (_, before) = wait_for(&rx, "received", |e| matches!(e, Ev::Received(_)));
    assert!(
        before.iter().any(|e| matches!(e, Ev::Timer(_))),
        "delivered while muted: {before:?}"
    );
}

#[test]
fn mute_inside_received_holds_the_rest_of_framed_data() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.buffer_until(Some(4)).unwrap();
        }));
        p.on_received = Some(Box::new(|c, d| {
            if d == b"aaaa" {
                c.mute();
                c.set_timer(Duration::from_millis(200)).unwrap();
            }
        }));
        p.on_timer = Some(Box::new(|c, _| c.unmute()));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    c.write_all(b"aaaabbbbcc").unwrap();
    wait_for(&rx, "first frame", |e| *e == Ev::Received(b"aaaa".to_vec()));
    let (_, before) = wait_for(&rx, "second frame", |e| matches!(e, Ev::Received(_)));
    assert!(
        before.iter().any(|e| matches!(e, Ev::Timer(_))),
        "{before:?}"
    );
    c.write_all(b"dd").unwrap();
    wait_for(&rx, "third frame", |e| *e == Ev::Received(b"ccdd".to_vec()));
}

#[test]
fn timers_fire_once_cancel_and_refuse_a_second() {
    let (_rt, _c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            let t1 = c.set_timer(Duration::from_millis(50)).unwrap();
            assert!(c.set_timer(Duration::from_millis(50)).is_err());
            c.cancel_timer(t1);
            c.cancel_timer(t1);
            let t2 = c.set_timer(Duration::from_millis(100)).unwrap();
            assert_ne!(t1, t2);
            assert!(c.set_timer(Duration::ZERO).is_err());
        }));
    });
    let start = Instant::now();
    // The cancelled 50 ms timer would have fired first.
    wait_for(&rx, "timer", |e| matches!(e, Ev::Timer(_)));
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "{:?}",
        start.elapsed()
    );
    none_within(&rx, Duration::from_millis(300), |e| {
        matches!(e, Ev::Timer(_))
    });
}

#[test]
fn timer_can_rearm_from_its_callback() {
    let (_rt, _c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.set_timer(Duration::from_millis(20)).unwrap();
        }));
        let mut n = 0;
        p.on_timer = Some(Box::new(move |c, _| {
            n += 1;
            if n < 3 {
                c.set_timer(Duration::from_millis(20)).unwrap();
            }
        }));
    });
    for _ in 0..3 {
        wait_for(&rx, "timer", |e| matches!(e, Ev::Timer(_)));
    }
    none_within(&rx, Duration::from_millis(200), |e| {
        matches!(e, Ev::Timer(_))
    });
}

#[test]
fn idle_timeout_fires_rearms_and_is_rolling() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.echo = true;
        p.on_connected = Some(Box::new(|c, ()| {
            c.set_idle_timeout(Some(Duration::from_millis(250)));
        }));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    // Traffic every 50 ms for 600 ms keeps it from firing.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        roundtrip(&mut c, b"k");
        thread::sleep(Duration::from_millis(50));
        while let Ok(ev) = rx.try_recv() {
            assert_ne!(ev, Ev::Idle, "idle fired during traffic");
        }
    }
    let quiet = Instant::now();
    wait_for(&rx, "idle", |e| *e == Ev::Idle);
    assert!(quiet.elapsed() >= Duration::from_millis(150));
    let first = Instant::now();
    wait_for(&rx, "idle again", |e| *e == Ev::Idle);
    assert!(first.elapsed() >= Duration::from_millis(200));
}

#[test]
fn idle_timeout_none_disables() {
    let (_rt, _c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.set_idle_timeout(Some(Duration::from_millis(100)));
            c.set_idle_timeout(None);
        }));
    });
    none_within(&rx, Duration::from_millis(400), |e| *e == Ev::Idle);
}

#[test]
fn graceful_close_flushes_queued_bytes_then_fin() {
    const N: usize = 4 * 1024 * 1024;
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.send(&vec![9u8; N]).unwrap();
            c.close();
            assert!(c.send(b"late").is_err());
        }));
    });
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), N);
    drop(c);
    let (_, before) = wait_for(&rx, "closed", |e| *e == Ev::Closed);
    assert!(before.contains(&Ev::Sent(1)), "{before:?}");
}

#[test]
fn hard_close_resets() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_received = Some(Box::new(|c, _| c.hard_close()));
    });
    c.write_all(b"x").unwrap();
    wait_for(&rx, "closed", |e| *e == Ev::Closed);
    let mut buf = [0u8; 8];
    let e = c.read(&mut buf).expect_err("hard close must reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn hard_close_inside_received_stops_delivery() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| c.buffer_until(Some(2)).unwrap()));
        p.on_received = Some(Box::new(|c, _| c.hard_close()));
    });
    c.write_all(b"aabb").unwrap();
    let (_, before) = wait_for(&rx, "closed", |e| *e == Ev::Closed);
    let frames = before
        .iter()
        .filter(|e| matches!(e, Ev::Received(_)))
        .count();
    assert_eq!(frames, 1, "{before:?}");
}

#[test]
fn handle_sends_and_closes_from_another_thread() {
    let (_rt, mut c, rx) = hooked(|_| {});
    let h = handle_of(&rx);
    let h2 = h.clone();
    thread::spawn(move || h2.send(&b"from afar"[..]).unwrap())
        .join()
        .unwrap();
    let mut buf = [0u8; 9];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"from afar");
    h.close().unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(c);
    wait_for(&rx, "closed", |e| *e == Ev::Closed);
    // A stale handle is harmless.
    h.send(&b"nobody"[..]).unwrap();
}

#[test]
fn buffer_until_delivers_exact_frames() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            assert!(c.buffer_until(Some(0)).is_err());
            c.buffer_until(Some(4)).unwrap();
        }));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    c.write_all(b"0123456789").unwrap();
    wait_for(&rx, "f1", |e| *e == Ev::Received(b"0123".to_vec()));
    wait_for(&rx, "f2", |e| *e == Ev::Received(b"4567".to_vec()));
    none_within(&rx, Duration::from_millis(150), |e| {
        matches!(e, Ev::Received(_))
    });
    c.write_all(b"ab").unwrap();
    wait_for(&rx, "f3", |e| *e == Ev::Received(b"89ab".to_vec()));
}

#[test]
fn yield_read_still_delivers_everything() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.echo = true;
        p.on_received = Some(Box::new(|c, _| c.yield_read()));
    });
    let msg = vec![5u8; 300_000];
    let mut c2 = c.try_clone().unwrap();
    let w = thread::spawn(move || c2.write_all(&msg).unwrap());
    let mut got = vec![0u8; 300_000];
    c.read_exact(&mut got).unwrap();
    w.join().unwrap();
    assert!(got.iter().all(|&b| b == 5));
    drop(rx);
}

#[test]
fn socket_options_and_addresses() {
    let (_rt, c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.set_nodelay(false).unwrap();
            assert!(!c.socket().unwrap().tcp_nodelay().unwrap());
            c.set_keepalive(Some(Duration::from_secs(30))).unwrap();
            assert!(c.socket().unwrap().keepalive().unwrap());
            c.set_keepalive(None).unwrap();
            assert!(c.local_addr().is_some());
            assert!(c.is_writeable());
            c.close();
        }));
    });
    let (ev, _) = wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    assert_eq!(ev, Ev::Connected(Some(c.local_addr().unwrap())));
    // The graceful close sent FIN; it completes when ours arrives.
    let mut c = c;
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    drop(c);
    let (_, before) = wait_for(&rx, "closed", |e| matches!(e, Ev::Closed));
    assert!(!before.iter().any(|e| matches!(e, Ev::AfterClose(_))));
}

// ---------------------------------------------------------------------------------------
// read size and cancelling a client

#[test]
fn handle_close_cancels_a_client_still_resolving() {
    let rt = rt(1);
    let hosts = StaticResolver::new();
    hosts.insert_with_delay(
        "slow.test",
        ["127.0.0.1".parse::<IpAddr>().unwrap()],
        Duration::from_millis(1500),
    );
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = ConnectOptions {
        resolver: Arc::new(hosts),
        ..ConnectOptions::default()
    };
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let h = rt
        .connect(
            "slow.test",
            ln.local_addr().unwrap().port(),
            opts,
            Probe::new(tx),
        )
        .expect("connect");
    h.close().unwrap();
    let (ev, seen) = wait_for(&rx, "connect_failed", |e| matches!(e, Ev::Failed(..)));
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        matches!(&ev, Ev::Failed(msg, false) if msg.contains("closed")),
        "{ev:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "not cancelled"
    );
    // The handler is gone (its channel closed) and the late resolution is ignored:
    // past the resolver's delay, nothing has connected.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    thread::sleep(Duration::from_millis(1800).saturating_sub(start.elapsed()));
    ln.set_nonblocking(true).unwrap();
    assert!(ln.accept().is_err(), "a cancelled client connected");
}

#[test]
fn read_size_caps_each_received() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|conn, ()| {
            assert!(conn.set_read_size(Some(0)).is_err());
            conn.set_read_size(Some(7)).unwrap();
            assert_eq!(conn.read_size(), Some(7));
        }));
    });
    let msg: Vec<u8> = (0..100u8).collect();
    c.write_all(&msg).unwrap();
    let mut got = Vec::new();
    while got.len() < msg.len() {
        let (ev, _) = wait_for(&rx, "received", |e| matches!(e, Ev::Received(_)));
        let Ev::Received(d) = ev else { unreachable!() };
        assert!(
            !d.is_empty() && d.len() <= 7,
            "{} bytes in one received",
            d.len()
        );
        got.extend_from_slice(&d);
    }
    assert_eq!(got, msg);
}

// ---------------------------------------------------------------------------------------
// careless calls: zero, huge, empty, wrong order

#[test]
fn careless_huge_durations_do_not_kill_the_loop() {
    let (rt, mut c, rx) = hooked(|p| {
        p.echo = true;
        p.on_connected = Some(Box::new(|c, ()| {
            let t = c
                .set_timer(Duration::MAX)
                .expect("a timer that never fires");
            c.cancel_timer(t);
            c.set_timer(Duration::MAX).unwrap();
            c.set_idle_timeout(Some(Duration::MAX));
        }));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    roundtrip(&mut c, b"alive");
    // A client with a huge connection timeout and attempt delay connects as usual.
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = ConnectOptions {
        connection_timeout: Some(Duration::MAX),
        attempt_delay: Duration::MAX,
        ..ConnectOptions::default()
    };
    let crx = client_probe(
        &rt,
        "127.0.0.1",
        ln.local_addr().unwrap().port(),
        opts,
        |_| {},
    );
    wait_for(&crx, "connected", |e| matches!(e, Ev::Connected(_)));
    roundtrip(&mut c, b"still alive");
    none_within(&rx, Duration::from_millis(100), |e| {
        matches!(e, Ev::Timer(_) | Ev::Idle | Ev::Closed)
    });
}

#[test]
fn careless_zero_threads_and_zero_connection_limit() {
    let rt = Runtime::builder().threads(0).build().expect("0 threads");
    assert_eq!(rt.threads(), 1);
    let err = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions {
                max_connections: 0,
                ..ServerOptions::default()
            },
            |_| Probe::new(mpsc::channel().0),
        )
        .expect_err("a server that may hold no connection");
    assert!(matches!(err, reseau::Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn careless_listen_on_a_port_in_use_names_the_address() {
    let rt = rt(1);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = rt
        .listen(addr, ServerOptions::default(), |_| {
            Probe::new(mpsc::channel().0)
        })
        .expect_err("port in use");
    assert_eq!(err.op(), Some("bind"));
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    assert!(
        err.to_string().starts_with(&format!("bind {addr}: ")),
        "{err}"
    );
}

#[test]
fn careless_empty_or_nul_host() {
    let rt = rt(1);
    let err = rt
        .connect(
            "a\0b",
            80,
            ConnectOptions::default(),
            Probe::new(mpsc::channel().0),
        )
        .expect_err("NUL host");
    assert!(matches!(err, reseau::Error::InvalidArgument(_)), "{err:?}");
    // An empty host dials this machine, as Dialer does (Go's ":port").
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let rx = client_probe(&rt, "", port, ConnectOptions::default(), |_| {});
    let (ev, _) = wait_for(&rx, "connected", |e| {
        matches!(e, Ev::Connected(_) | Ev::Failed(..))
    });
    assert_eq!(ev, Ev::Connected(Some(ln.local_addr().unwrap())));
    // A literal with an unusable zone fails as an address error, not a lookup.
    let rx = client_probe(
        &rt,
        "fe80::1%nosuchif0",
        port,
        ConnectOptions::default(),
        |_| {},
    );
    let (ev, _) = wait_for(&rx, "connect_failed", |e| matches!(e, Ev::Failed(..)));
    assert!(
        matches!(&ev, Ev::Failed(msg, false) if msg.contains("unknown interface zone")),
        "{ev:?}"
    );
}

#[test]
fn careless_handle_and_server_after_the_runtime_is_dropped() {
    let rt = rt(1);
    let (srv, rx) = server(&rt, ServerOptions::default());
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"x");
    let h = handle_of(&rx);
    drop(rt);
    assert!(matches!(h.send(&b"late"[..]), Err(reseau::Error::Closed)));
    assert!(matches!(h.close(), Err(reseau::Error::Closed)));
    assert!(matches!(h.hard_close(), Err(reseau::Error::Closed)));
    srv.close();
    assert_eq!(srv.connections(), 0);
}

#[test]
fn small_frames_of_a_large_read_are_delivered_in_linear_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const TOTAL: usize = 4 << 20;
    struct Frames(Arc<AtomicUsize>);
    impl Handler for Frames {
        fn connected(&mut self, conn: &mut Conn<'_>) {
            conn.buffer_until(Some(4)).unwrap();
            // Muted while the bytes pile up in the kernel: then every read is full.
            conn.mute();
            conn.set_timer(Duration::from_millis(300)).unwrap();
        }
        fn timer(&mut self, conn: &mut Conn<'_>, _: TimerToken) {
            conn.unmute();
        }
        fn received(&mut self, _conn: &mut Conn<'_>, data: &[u8]) {
            assert_eq!(data.len(), 4);
            self.0.fetch_add(4, Ordering::Relaxed);
        }
    }
    let got = Arc::new(AtomicUsize::new(0));
    // Reads as large as the kernel has: up to the whole message in one.
    let rt = Runtime::builder()
        .threads(1)
        .read_buffer_size(TOTAL)
        .build()
        .unwrap();
    let g = got.clone();
    let srv = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions::default(),
            move |_| Frames(g.clone()),
        )
        .unwrap();
    let mut c = client(srv.local_addr());
    let start = Instant::now();
    let w = thread::spawn(move || c.write_all(&vec![1u8; TOTAL]).unwrap());
    // Each frame used to shift the rest of the held read: quadratic in the read size.
    while got.load(Ordering::Relaxed) < TOTAL {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{} of {TOTAL} bytes framed in 4 s",
            got.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(5));
    }
    w.join().unwrap();
}

#[test]
fn careless_builder_sizes() {
    // A buffer no machine can allocate is refused, not a panic or an abort.
    let err = Runtime::builder()
        .threads(1)
        .read_buffer_size(usize::MAX)
        .build()
        .expect_err("an impossible read buffer");
    assert!(matches!(err, reseau::Error::InvalidArgument(_)), "{err:?}");
    // Zero sizes fall back to something that works (0 budget: the buffer's size).
    let rt = Runtime::builder()
        .threads(1)
        .read_buffer_size(0)
        .read_budget(0)
        .build()
        .unwrap();
    let (srv, _rx) = server(&rt, ServerOptions::default());
    let mut c = client(srv.local_addr());
    roundtrip(&mut c, b"one byte at a time");
}

#[test]
fn careless_conn_arguments() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.echo = true;
        p.on_connected = Some(Box::new(|c, ()| {
            let e = c.set_watermarks(1, 2).expect_err("low above high");
            assert!(matches!(e, reseau::Error::InvalidArgument(_)), "{e:?}");
            c.set_watermarks(0, 0).unwrap();
            c.set_read_size(Some(usize::MAX)).unwrap();
            assert_eq!(c.read_size(), Some(usize::MAX));
            c.set_idle_timeout(Some(Duration::ZERO));
            let t = c.send(b"").unwrap();
            assert_eq!(t.id(), 1);
        }));
    });
    wait_for(&rx, "empty send's token", |e| *e == Ev::Sent(1));
    // An uncapped read size is the loop buffer's; high-water 0 throttles on any backlog
    // and nothing else changes.
    roundtrip(&mut c, b"after careless settings");
    none_within(&rx, Duration::from_millis(150), |e| {
        matches!(e, Ev::Idle | Ev::Closed)
    });
}

#[test]
fn local_address_errors_are_named_as_the_blocking_dialer_names_them() {
    let rt = rt(1);
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let failed = |local: &str| {
        let opts = ConnectOptions {
            local_addr: Some(local.parse().unwrap()),
            ..ConnectOptions::default()
        };
        let rx = client_probe(&rt, "127.0.0.1", port, opts, |_| {});
        match wait_for(&rx, "connect_failed", |e| matches!(e, Ev::Failed(..))).0 {
            Ev::Failed(msg, _) => msg,
            _ => unreachable!(),
        }
    };
    // The local end taken: a bind error, not a connect error.
    let msg = failed(&ln.local_addr().unwrap().to_string());
    assert!(msg.contains("bind") && msg.contains("in use"), "{msg}");
    // The other family is refused up front: see
    // literal_of_the_other_family_than_local_is_refused_up_front_as_dialer_does.
}

#[test]
fn shortening_the_idle_timeout_takes_effect() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.set_idle_timeout(Some(Duration::from_secs(5)));
        }));
        p.on_received = Some(Box::new(|c, _| {
            c.set_idle_timeout(Some(Duration::from_millis(100)));
        }));
    });
    wait_for(&rx, "connected", |e| matches!(e, Ev::Connected(_)));
    c.write_all(b"shorter").unwrap();
    wait_for(&rx, "received", |e| matches!(e, Ev::Received(_)));
    let start = Instant::now();
    wait_for(&rx, "idle", |e| *e == Ev::Idle);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the 100 ms idle timeout fired after {:?}",
        start.elapsed()
    );
}

/// Reports a client's `connect_failed` error whole (the probe keeps only its text).
struct FailedWith(Sender<reseau::Error>);
impl Handler for FailedWith {
    fn connect_failed(&mut self, err: reseau::Error) {
        let _ = self.0.send(err);
    }
    fn received(&mut self, _conn: &mut Conn<'_>, _data: &[u8]) {}
}

/// The error `rt` reports for a client of `host:port` with `opts` that must fail.
fn event_failure(rt: &Runtime, host: &str, port: u16, opts: ConnectOptions) -> reseau::Error {
    let (tx, rx) = mpsc::channel();
    rt.connect(host, port, opts, FailedWith(tx))
        .expect("connect");
    rx.recv_timeout(WAIT).expect("connect_failed")
}

/// `(error text, attempt texts)`: what two dialers' failures are compared by.
fn failure_shape(e: &reseau::Error) -> (String, Vec<String>) {
    let attempts = match e {
        reseau::Error::Op(op) => op.attempts().iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    (e.to_string(), attempts)
}

/// A `local_addr` of the other family than an IP literal host is refused up front by
/// `Runtime::connect`, with the blocking `Dialer`'s error (both combinations); nothing
/// reaches the handler.
#[test]
fn literal_of_the_other_family_than_local_is_refused_up_front_as_dialer_does() {
    let rt = rt(1);
    let port = 9; // never connected to: the refusal comes before any I/O
    for (host, local) in [("::1", "127.0.0.1:0"), ("127.0.0.1", "[::1]:0")] {
        let local: SocketAddr = local.parse().unwrap();
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let blocking = reseau::resolve::Dialer {
            local_addr: Some(local),
            ..reseau::resolve::Dialer::default()
        }
        .dial("tcp", &address)
        .map(drop)
        .expect_err("blocking dialer: families differ");
        assert!(
            matches!(blocking, reseau::Error::InvalidArgument(_)),
            "{blocking:?}"
        );
        let (tx, rx) = mpsc::channel();
        let opts = ConnectOptions {
            local_addr: Some(local),
            ..ConnectOptions::default()
        };
        let event = rt
            .connect(host, port, opts, Probe::new(tx))
            .map(drop)
            .expect_err("event dialer: families differ");
        assert!(
            matches!(event, reseau::Error::InvalidArgument(_)),
            "{event:?}"
        );
        assert_eq!(event.to_string(), blocking.to_string());
        none_within(&rx, Duration::from_millis(100), |_| true);
    }
}

/// A name's addresses of the other family than `local_addr` are not tried (as
/// `Dialer`): the dial fails with the tried address's error, not an invalid argument,
/// and with nothing usable left it fails as `Dialer` does.
#[test]
fn resolved_addresses_are_filtered_by_the_local_family_as_dialer_does() {
    let port = free_port();
    let rt = rt(1);
    let cases = [
        // ::1 first: tried first unless filtered out, and its error would be reported.
        (&["::1", "127.0.0.1"][..], "127.0.0.1:0"),
        (&["127.0.0.1"][..], "[::1]:0"),
    ];
    for (ips, local) in cases {
        let local: SocketAddr = local.parse().unwrap();
        let resolver = answers("mixed.test", ips);
        let blocking = reseau::resolve::Dialer {
            local_addr: Some(local),
            resolver: resolver.clone(),
            timeout: Some(WAIT),
            ..reseau::resolve::Dialer::default()
        }
        .dial("tcp", &format!("mixed.test:{port}"))
        .map(drop)
        .expect_err("nothing listens");
        let opts = ConnectOptions {
            local_addr: Some(local),
            resolver,
            connection_timeout: Some(WAIT),
            ..ConnectOptions::default()
        };
        let event = event_failure(&rt, "mixed.test", port, opts);
        assert!(matches!(event, reseau::Error::Op(_)), "{event:?}");
        assert_eq!(failure_shape(&event), failure_shape(&blocking), "{ips:?}");
    }
}

/// The policy orders and filters a name's addresses; an IP literal is dialed as
/// given, as `Dialer` dials it.
#[test]
fn policy_applies_to_names_not_to_literals_as_dialer() {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let policy = reseau::resolve::Policy {
        allow_ipv4: false,
        ..reseau::resolve::Policy::default()
    };
    let blocking = reseau::resolve::Dialer {
        policy,
        timeout: Some(WAIT),
        ..reseau::resolve::Dialer::default()
    };
    blocking
        .dial("tcp", &format!("127.0.0.1:{port}"))
        .expect("a literal ignores the policy");
    let rt = rt(1);
    let opts = ConnectOptions {
        policy,
        connection_timeout: Some(WAIT),
        ..ConnectOptions::default()
    };
    let rx = client_probe(&rt, "127.0.0.1", port, opts.clone(), |_| {});
    let (ev, _) = wait_for(&rx, "connected", |e| {
        matches!(e, Ev::Connected(_) | Ev::Failed(..))
    });
    assert_eq!(ev, Ev::Connected(Some(ln.local_addr().unwrap())));
    // A name answering only IPv4 is filtered out, as by Dialer.
    let resolver = answers("v4.test", &["127.0.0.1"]);
    let blocking = reseau::resolve::Dialer {
        resolver: resolver.clone(),
        ..blocking
    }
    .dial("tcp", &format!("v4.test:{port}"))
    .map(drop)
    .expect_err("the policy allows no IPv4");
    let opts = ConnectOptions { resolver, ..opts };
    let event = event_failure(&rt, "v4.test", port, opts);
    assert_eq!(failure_shape(&event), failure_shape(&blocking));
}

/// Once connected, writes `data` and waits for the handler's timer: nothing may be
/// received before it (the bytes are held for an incomplete frame).
fn held_until_timer(rx: &Receiver<Ev>, c: &mut TcpStream, data: &[u8]) {
    wait_for(rx, "connected", |e| matches!(e, Ev::Connected(_)));
    c.write_all(data).unwrap();
    let (_, before) = wait_for(rx, "timer", |e| matches!(e, Ev::Timer(_)));
    assert!(
        !before.iter().any(|e| matches!(e, Ev::Received(_))),
        "{before:?}"
    );
}

#[test]
fn buffer_until_is_bounded_by_max_frame() {
    use reseau::event::MAX_FRAME;
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            for n in [usize::MAX, MAX_FRAME + 1] {
                let e = c.buffer_until(Some(n)).expect_err("above the maximum");
                assert!(
                    matches!(&e, reseau::Error::InvalidArgument(m) if m.contains(&MAX_FRAME.to_string())),
                    "{e:?}"
                );
            }
            // The largest frame is taken (and nothing of its size is allocated)...
            c.buffer_until(Some(MAX_FRAME)).unwrap();
            c.set_timer(Duration::from_millis(200)).unwrap();
        }));
        // ...and holds what arrives until framing changes.
        p.on_timer = Some(Box::new(|c, _| {
            c.buffer_until(Some(3)).unwrap();
        }));
    });
    held_until_timer(&rx, &mut c, b"abcdef");
    wait_for(&rx, "first frame", |e| *e == Ev::Received(b"abc".to_vec()));
    wait_for(&rx, "second frame", |e| *e == Ev::Received(b"def".to_vec()));
}

/// Bytes held for an incomplete frame are delivered as soon as the framing changes
/// so that they can be (here: to streaming, from a timer), not when more arrive.
#[test]
fn changing_buffer_until_delivers_held_bytes_at_once() {
    let (_rt, mut c, rx) = hooked(|p| {
        p.on_connected = Some(Box::new(|c, ()| {
            c.buffer_until(Some(10)).unwrap();
            c.set_timer(Duration::from_millis(200)).unwrap();
        }));
        p.on_timer = Some(Box::new(|c, _| {
            c.buffer_until(None).unwrap();
        }));
    });
    held_until_timer(&rx, &mut c, b"abcdef");
    wait_for(&rx, "held bytes", |e| {
        *e == Ev::Received(b"abcdef".to_vec())
    });
}

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Bound to the port it dials, with nothing listening there, a socket connects to
/// itself (TCP simultaneous open). With a fixed local port no fresh socket can help:
/// the dial fails with the blocking dialer's self-connect error (`EADDRINUSE`), not a
/// refusal. Each dialer gets a port of its own (the first's is left in TIME_WAIT).
#[test]
fn self_connect_from_a_fixed_port_fails_as_dialer_fails() {
    let rt = rt(1);
    let mut shapes = Vec::new();
    for event in [false, true] {
        let port = free_port();
        let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let err = if event {
            let opts = ConnectOptions {
                local_addr: Some(local),
                connection_timeout: Some(WAIT),
                ..ConnectOptions::default()
            };
            event_failure(&rt, "127.0.0.1", port, opts)
        } else {
            reseau::resolve::Dialer {
                local_addr: Some(local),
                timeout: Some(WAIT),
                ..reseau::resolve::Dialer::default()
            }
            .dial("tcp", &local.to_string())
            .map(drop)
            .expect_err("a self-connected conn came back")
        };
        let reseau::Error::Op(op) = &err else {
            panic!("not an Op error: {err:?}");
        };
        assert_eq!(op.attempts().len(), 1, "{err:?}");
        let e = &op.attempts()[0];
        assert!(
            matches!(e, reseau::Error::Sys { op: "connect", .. })
                && e.raw_os_error() == Some(libc::EADDRINUSE),
            "event {event}: {e:?}"
        );
        let (text, attempts) = failure_shape(&err);
        shapes.push((text.replace(&port.to_string(), "PORT"), attempts));
    }
    assert_eq!(shapes[0], shapes[1], "blocking vs event");
}

// ---------------------------------------------------------------------------------------
// Self-connects, in a network namespace of our own (as tests/dial.rs)

/// Set to a case name in the child processes of [`self_connect_fails_as_dialer_fails`].
const NETNS_CASE: &str = "RESEAU_EVENT_NETNS_CASE";

/// Makes 40000 the namespace's only ephemeral port and brings loopback up: a connect
/// to port 40000 with nothing listening connects the socket to itself (TCP simultaneous
/// open); a fresh socket then finds no free local port (the one 4-tuple is in TIME_WAIT).
const NETNS_SETUP: &str =
    "echo '40000 40000' > /proc/sys/net/ipv4/ip_local_port_range && ip link set lo up";

/// In a child: the failure of one dial to a self-connecting target, by the blocking
/// `Dialer` or the event client, printed for the parent to compare.
fn self_connect_case(case: &str) {
    let (dialer, target) = case.split_once('/').expect("dialer/target");
    let resolver = answers("self.test", &["127.0.0.1", "::1"]);
    let err = match dialer {
        "blocking" => reseau::resolve::Dialer {
            timeout: Some(WAIT),
            fallback_delay: Some(Duration::ZERO),
            resolver,
            ..reseau::resolve::Dialer::default()
        }
        .dial("tcp", &format!("{target}:40000"))
        .map(drop)
        .expect_err("a self-connected conn came back"),
        "event" => {
            let opts = ConnectOptions {
                connection_timeout: Some(WAIT),
                attempt_delay: Duration::ZERO,
                resolver,
                ..ConnectOptions::default()
            };
            event_failure(&rt(1), target, 40000, opts)
        }
        other => panic!("unknown dialer {other}"),
    };
    let reseau::Error::Op(op) = &err else {
        panic!("not an Op error: {err:?}");
    };
    // Rejected, not refused: a refusal would mean no self-connect happened (or that
    // one was reported as a refusal).
    for e in op.attempts() {
        assert!(
            matches!(e, reseau::Error::Sys { op: "connect", .. })
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE)
                ),
            "{case}: {e:?}"
        );
    }
    println!("RESULT {:?}", failure_shape(&err));
}

/// A self-connect (the target port in the ephemeral range, nothing listening) is
/// dropped and retried with a fresh socket by the event client as by the blocking
/// dialer, and the dial fails with the blocking dialer's error: one literal address,
/// and a name racing IPv4 and IPv6. Each dial runs in a fresh network namespace
/// (`unshare -rn`), skipped where that is not allowed.
#[test]
fn self_connect_fails_as_dialer_fails() {
    if let Ok(case) = std::env::var(NETNS_CASE) {
        return self_connect_case(&case);
    }
    let can = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", NETNS_SETUP])
        .stderr(std::process::Stdio::null())
        .status();
    if !can.is_ok_and(|s| s.success()) {
        println!("skipped: cannot make a network namespace here (unshare -rn, ip)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for target in ["127.0.0.1", "self.test"] {
        let mut results = Vec::new();
        for dialer in ["blocking", "event"] {
            let case = format!("{dialer}/{target}");
            let script = format!(
                "{NETNS_SETUP} && exec \"$0\" --exact self_connect_fails_as_dialer_fails --nocapture --test-threads=1"
            );
            let mut child = std::process::Command::new("unshare")
                .args(["-rn", "sh", "-c", &script])
                .arg(&exe)
                .env(NETNS_CASE, &case)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let limit = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > limit {
                    let _ = child.kill();
                    panic!("case {case}: child still running after 30 s; killed");
                }
                thread::sleep(Duration::from_millis(10));
            }
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "case {case}: {}\n{text}", out.status);
            let result = text
                .lines()
                .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
                .unwrap_or_else(|| panic!("case {case}: no result:\n{text}"))
                .to_string();
            results.push(result);
        }
        assert_eq!(results[0], results[1], "{target}: blocking vs event");
    }
}
