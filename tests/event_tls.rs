//! TLS on the event layer (`ServerOptions::tls`, `ConnectOptions::tls`,
//! `Conn::start_tls`) on loopback with the test PKI in `certs/`: echo both ways (event
//! against event, event against the blocking `tls`), handshake failures reported once,
//! STARTTLS on both sides and its CVE-2021-23222 guard, stalled handshakes bounded by
//! the connection/handshake timeouts, and no callback after the last one.
//!
//! Gated like tests/tls.rs: they run only with `RESEAU_RUN_TLS_TESTS=1` (or
//! `true`/`yes`/`on`); otherwise every test prints why and passes. Every wait is a
//! `recv_timeout` with a generous bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use reseau::event::{Conn, ConnectOptions, Handle, Handler, Runtime, Server, ServerOptions};
use reseau::tls;

const WAIT: Duration = Duration::from_secs(10);

/// The gate (Reseau's `RESEAU_RUN_TLS_TESTS`).
fn enabled() -> bool {
    let on = std::env::var("RESEAU_RUN_TLS_TESTS").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    if !on {
        println!("skipping: set RESEAU_RUN_TLS_TESTS=1");
    }
    on
}

macro_rules! cert {
    ($name:literal) => {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/", $name))
    };
}

fn server_cfg() -> tls::Config {
    tls::Config {
        cert_file: Some(cert!("server.pem")),
        key_file: Some(cert!("server.key")),
        ..tls::Config::default()
    }
}

fn client_cfg() -> tls::Config {
    tls::Config {
        ca_file: Some(cert!("ca.pem")),
        ..tls::Config::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Connected(bool),
    ConnectFailed(String, bool),
    TlsReady,
    TlsFailed(String, bool),
    Received(Vec<u8>),
    StartTls(Result<(), String>),
    Closed,
    AfterEnd(&'static str),
}

/// What a probe does on its own.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// Echoes what it receives.
    Echo,
    /// Sends `hello` on connect and closes after the echo came back whole.
    Hello,
    /// STARTTLS server: `STARTTLS\r\n` (framed) → `OK\r\n` + upgrade, then echo.
    StartTlsServer,
    /// STARTTLS client: sends `STARTTLS\r\n`, upgrades on `OK\r\n`, then `Hello`.
    StartTlsClient,
    /// Only reports.
    Quiet,
}

struct Probe {
    tx: Sender<Ev>,
    role: Role,
    ended: bool,
    got: Vec<u8>,
    upgraded: bool,
}

fn probe(tx: &Sender<Ev>, role: Role) -> Probe {
    Probe {
        tx: tx.clone(),
        role,
        ended: false,
        got: Vec::new(),
        upgraded: false,
    }
}

impl Probe {
    fn check(&self, what: &'static str) {
        if self.ended {
            let _ = self.tx.send(Ev::AfterEnd(what));
        }
    }
    fn say_hello(&mut self, conn: &mut Conn<'_>) {
        conn.send(b"hello").expect("send after ready");
    }
}

impl Handler for Probe {
    fn connected(&mut self, conn: &mut Conn<'_>) {
        self.check("connected");
        let _ = self.tx.send(Ev::Connected(conn.is_tls()));
        match self.role {
            Role::Hello => self.say_hello(conn),
            Role::StartTlsServer => conn.buffer_until(Some(10)).unwrap(),
            Role::StartTlsClient => {
                conn.send(b"STARTTLS\r\n").unwrap();
                conn.buffer_until(Some(4)).unwrap();
            }
            _ => {}
        }
    }
    fn connect_failed(&mut self, err: reseau::Error) {
        self.check("connect_failed");
        self.ended = true;
        let _ = self
            .tx
            .send(Ev::ConnectFailed(err.to_string(), err.is_timeout()));
    }
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        self.check("received");
        let _ = self.tx.send(Ev::Received(data.to_vec()));
        match self.role {
            Role::Echo => {
                let _ = conn.send(data);
            }
            Role::StartTlsServer if !self.upgraded => {
                assert_eq!(data, b"STARTTLS\r\n");
                self.upgraded = true;
                conn.buffer_until(None).unwrap();
                conn.send(b"OK\r\n").unwrap();
                let r = conn.start_tls(&server_cfg(), true);
                let _ = self.tx.send(Ev::StartTls(r.map_err(|e| e.to_string())));
            }
            Role::StartTlsServer => {
                let _ = conn.send(data);
            }
            Role::StartTlsClient if !self.upgraded => {
                assert_eq!(data, b"OK\r\n");
                self.upgraded = true;
                conn.buffer_until(None).unwrap();
                let r = conn.start_tls(&client_cfg(), false);
                let _ = self.tx.send(Ev::StartTls(r.map_err(|e| e.to_string())));
            }
            Role::Hello | Role::StartTlsClient => {
                self.got.extend_from_slice(data);
                if self.got == b"hello" {
                    conn.close();
                }
            }
            _ => {}
        }
    }
    fn tls_ready(&mut self, conn: &mut Conn<'_>) {
        self.check("tls_ready");
        let _ = self.tx.send(Ev::TlsReady);
        if self.role == Role::StartTlsClient {
            self.say_hello(conn);
        }
    }
    fn tls_failed(&mut self, err: reseau::Error) {
        self.check("tls_failed");
        let _ = self
            .tx
            .send(Ev::TlsFailed(err.to_string(), err.is_timeout()));
    }
    fn closed(&mut self) {
        self.check("closed");
        self.ended = true;
        let _ = self.tx.send(Ev::Closed);
    }
}

fn next(rx: &Receiver<Ev>) -> Ev {
    rx.recv_timeout(WAIT).expect("an event within the bound")
}

/// Events until `Closed`/`ConnectFailed`, then checks nothing follows for a while.
fn until_end(rx: &Receiver<Ev>) -> Vec<Ev> {
    let mut evs = Vec::new();
    loop {
        let e = next(rx);
        let end = matches!(e, Ev::Closed | Ev::ConnectFailed(..));
        evs.push(e);
        if end {
            break;
        }
    }
    if let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
        panic!("{e:?} after the last callback; before: {evs:?}");
    }
    evs
}

fn received(evs: &[Ev]) -> Vec<u8> {
    evs.iter()
        .filter_map(|e| match e {
            Ev::Received(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn rt() -> Runtime {
    Runtime::builder().threads(2).build().unwrap()
}

/// A loopback server (TLS with `tls`) whose connections are probes of `role`.
fn serve(rt: &Runtime, tls: Option<tls::Config>, role: Role) -> (Server, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let opts = ServerOptions {
        tls,
        ..ServerOptions::default()
    };
    let srv = rt
        .listen(reseau::tcp::loopback_addr(0), opts, move |_| {
            probe(&tx, role)
        })
        .unwrap();
    (srv, rx)
}

/// A client probe of `role` connecting to `127.0.0.1:port`.
fn dial(rt: &Runtime, port: u16, opts: ConnectOptions, role: Role) -> (Handle, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let h = rt
        .connect("127.0.0.1", port, opts, probe(&tx, role))
        .unwrap();
    (h, rx)
}

#[test]
fn event_client_and_server_echo_over_tls() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(&rt, Some(server_cfg()), Role::Echo);
    let copts = ConnectOptions {
        tls: Some(client_cfg()),
        connection_timeout: Some(WAIT),
        ..ConnectOptions::default()
    };
    let (_, crx) = dial(&rt, srv.local_addr().port(), copts, Role::Hello);
    let cev = until_end(&crx);
    assert_eq!(cev[0], Ev::Connected(true), "{cev:?}");
    assert_eq!(received(&cev), b"hello");
    // The client's close sends close_notify, then FIN: the server ends cleanly.
    let sev = until_end(&srx);
    assert_eq!(sev[0], Ev::Connected(true), "{sev:?}");
    assert_eq!(received(&sev), b"hello");
    assert!(
        !sev.iter().any(|e| matches!(e, Ev::TlsFailed(..))),
        "{sev:?}"
    );
}

#[test]
fn event_server_against_blocking_client_large_echo() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(&rt, Some(server_cfg()), Role::Echo);
    let conn = tls::connect(srv.local_addr(), &client_cfg()).unwrap();
    conn.set_deadline(Some(Instant::now() + WAIT)).unwrap();
    // 1 MiB across many records and several writable events each way.
    let data: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let conn = std::sync::Arc::new(conn);
    let w = conn.clone();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write(&sent).unwrap();
        w.close_write().unwrap();
    });
    let mut back = Vec::new();
    (&*conn).read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    drop(conn);
    let sev = until_end(&srx);
    assert_eq!(sev[0], Ev::Connected(true));
    assert_eq!(received(&sev).len(), data.len());
}

#[test]
fn event_client_against_blocking_server() {
    if !enabled() {
        return;
    }
    let ln = tls::listen(reseau::tcp::loopback_addr(0), server_cfg()).unwrap();
    let port = ln.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let c = ln.accept().unwrap();
        c.set_deadline(Some(Instant::now() + WAIT)).unwrap();
        let mut buf = [0u8; 5];
        c.read_full(&mut buf).unwrap();
        c.write(&buf).unwrap();
        let mut rest = Vec::new();
        // The client's close: close_notify, a clean EOF.
        (&c).read_to_end(&mut rest).unwrap();
        rest
    });
    let rt = rt();
    let copts = ConnectOptions {
        tls: Some(client_cfg()),
        ..ConnectOptions::default()
    };
    let (_, crx) = dial(&rt, port, copts, Role::Hello);
    let cev = until_end(&crx);
    assert_eq!(cev[0], Ev::Connected(true));
    assert_eq!(received(&cev), b"hello");
    assert!(server.join().unwrap().is_empty());
}

#[test]
fn wrong_ca_fails_once_on_each_side() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(&rt, Some(server_cfg()), Role::Echo);
    let copts = ConnectOptions {
        tls: Some(tls::Config {
            ca_file: Some(cert!("other-ca.pem")),
            ..tls::Config::default()
        }),
        ..ConnectOptions::default()
    };
    let (_, crx) = dial(&rt, srv.local_addr().port(), copts, Role::Hello);
    let cev = until_end(&crx);
    assert_eq!(cev.len(), 1, "{cev:?}");
    match &cev[0] {
        Ev::ConnectFailed(msg, false) => {
            assert!(msg.contains("certificate verify failed"), "{msg}");
            assert!(msg.starts_with("dial tcp 127.0.0.1:"), "{msg}");
        }
        e => panic!("{e:?}"),
    }
    // The server: one tls_failed (the client's alert or its close), nothing else.
    let e = next(&srx);
    assert!(matches!(e, Ev::TlsFailed(_, false)), "{e:?}");
    assert!(
        srx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a callback after tls_failed"
    );
    assert_eq!(srv.connections(), 0);
}

#[test]
fn start_tls_on_both_sides() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(&rt, None, Role::StartTlsServer);
    let (_, crx) = dial(
        &rt,
        srv.local_addr().port(),
        ConnectOptions::default(),
        Role::StartTlsClient,
    );
    let cev = until_end(&crx);
    assert_eq!(cev[0], Ev::Connected(false), "{cev:?}");
    assert!(cev.contains(&Ev::StartTls(Ok(()))), "{cev:?}");
    assert!(cev.contains(&Ev::TlsReady), "{cev:?}");
    let after_ready: Vec<u8> =
        received(&cev[cev.iter().position(|e| *e == Ev::TlsReady).unwrap()..]);
    assert_eq!(after_ready, b"hello");
    let sev = until_end(&srx);
    assert!(sev.contains(&Ev::StartTls(Ok(()))), "{sev:?}");
    assert!(sev.contains(&Ev::TlsReady), "{sev:?}");
    assert!(received(&sev).ends_with(b"hello"), "{sev:?}");
}

#[test]
fn start_tls_refused_with_unread_plaintext() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(&rt, None, Role::StartTlsServer);
    let mut c = TcpStream::connect(srv.local_addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    // The injected bytes arrive with the command, in one segment.
    c.write_all(b"STARTTLS\r\nINJECTED").unwrap();
    assert_eq!(next(&srx), Ev::Connected(false));
    assert_eq!(next(&srx), Ev::Received(b"STARTTLS\r\n".to_vec()));
    match next(&srx) {
        Ev::StartTls(Err(msg)) => assert!(msg.contains("unread plaintext"), "{msg}"),
        e => panic!("{e:?}"),
    }
    // Still plaintext: the rest is delivered as such and echoed in the clear.
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"OK\r\nINJECTED");
}

#[test]
fn stalled_handshake_is_bounded_by_connection_timeout() {
    if !enabled() {
        return;
    }
    // Accepts (the kernel does) and never answers the ClientHello.
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = rt();
    let copts = ConnectOptions {
        tls: Some(client_cfg()),
        connection_timeout: Some(Duration::from_millis(300)),
        ..ConnectOptions::default()
    };
    let t0 = Instant::now();
    let (_, crx) = dial(&rt, ln.local_addr().unwrap().port(), copts, Role::Hello);
    let cev = until_end(&crx);
    let took = t0.elapsed();
    assert_eq!(cev.len(), 1, "{cev:?}");
    assert!(matches!(&cev[0], Ev::ConnectFailed(_, true)), "{cev:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(ln);
}

#[test]
fn stalled_server_handshake_is_bounded_by_handshake_timeout() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, srx) = serve(
        &rt,
        Some(tls::Config {
            handshake_timeout: Some(Duration::from_millis(300)),
            ..server_cfg()
        }),
        Role::Echo,
    );
    let t0 = Instant::now();
    let mut c = TcpStream::connect(srv.local_addr()).unwrap();
    match next(&srx) {
        Ev::TlsFailed(msg, true) => assert!(!msg.is_empty()),
        e => panic!("{e:?}"),
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The server reset the connection.
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    assert!(!matches!(c.read(&mut buf), Ok(n) if n > 0));
    assert!(srx.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn handle_cancels_a_client_in_its_handshake() {
    if !enabled() {
        return;
    }
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = rt();
    let (ctx, crx) = mpsc::channel();
    let copts = ConnectOptions {
        tls: Some(client_cfg()),
        ..ConnectOptions::default()
    };
    let h = rt
        .connect(
            "127.0.0.1",
            ln.local_addr().unwrap().port(),
            copts,
            probe(&ctx, Role::Quiet),
        )
        .unwrap();
    // The TCP connect completes at once; the handshake waits on the silent peer.
    let (_peer, _) = ln.accept().unwrap();
    thread::sleep(Duration::from_millis(50));
    h.close().unwrap();
    let cev = until_end(&crx);
    assert_eq!(cev.len(), 1, "{cev:?}");
    assert!(matches!(&cev[0], Ev::ConnectFailed(_, false)), "{cev:?}");
}

#[test]
fn invalid_tls_config_is_refused_before_io() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let bad = ServerOptions {
        tls: Some(tls::Config::default()), // no certificate
        ..ServerOptions::default()
    };
    let err = rt
        .listen(reseau::tcp::loopback_addr(0), bad, |_| {
            probe(&mpsc::channel().0, Role::Quiet)
        })
        .unwrap_err();
    assert!(matches!(err, reseau::Error::TlsConfig(_)), "{err:?}");
}

#[test]
fn a_plaintext_peer_reads_like_go() {
    // The event layer classifies OpenSSL failures as the blocking layer does.
    if !enabled() {
        return;
    }
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let plain = thread::spawn(move || {
        let (mut s, _) = ln.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.read(&mut [0u8; 512]);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        thread::sleep(Duration::from_millis(200));
    });
    let rt = rt();
    let copts = ConnectOptions {
        tls: Some(client_cfg()),
        ..ConnectOptions::default()
    };
    let (_h, crx) = dial(&rt, port, copts, Role::Hello);
    let cev = until_end(&crx);
    match &cev[..] {
        [Ev::ConnectFailed(msg, false)] => assert!(
            msg.contains("first record does not look like a TLS handshake"),
            "{msg}"
        ),
        e => panic!("{e:?}"),
    }
    plain.join().unwrap();
}

/// The dialed host is the server name the certificate is checked against when
/// `server_name` is unset (a name the certificate does not carry fails as a hostname
/// mismatch), and an explicit `server_name` overrides it.
#[test]
fn dialed_host_is_verified_unless_server_name_overrides_it() {
    if !enabled() {
        return;
    }
    let rt = rt();
    let (srv, _srx) = serve(&rt, Some(server_cfg()), Role::Echo);
    let port = srv.local_addr().port();
    let hosts = reseau::resolve::StaticResolver::new();
    hosts.insert(
        "wrong.test",
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()],
    );
    let resolver = std::sync::Arc::new(hosts);
    for (server_name, ok) in [(None, false), (Some("localhost"), true)] {
        let copts = ConnectOptions {
            tls: Some(tls::Config {
                server_name: server_name.map(str::to_string),
                ..client_cfg()
            }),
            resolver: resolver.clone(),
            ..ConnectOptions::default()
        };
        let (tx, crx) = mpsc::channel();
        let _h = rt
            .connect("wrong.test", port, copts, probe(&tx, Role::Hello))
            .unwrap();
        match next(&crx) {
            Ev::Connected(true) if ok => {}
            Ev::ConnectFailed(msg, false) if !ok => {
                assert!(msg.contains("hostname mismatch"), "{msg}");
                assert!(msg.starts_with("dial tcp wrong.test:"), "{msg}");
            }
            e => panic!("server_name {server_name:?}: {e:?}"),
        }
    }
}
