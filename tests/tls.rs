//! Integration tests for `reseau::tls` (OpenSSL), on loopback only, with the test PKI in
//! `certs/` (see `certs/README.md`).
//!
//! Gated like Reseau's TLS tests: they run only with `RESEAU_RUN_TLS_TESTS=1` (or
//! `true`/`yes`/`on`); otherwise every test prints why and passes.
//!
//! Every wait is bounded: conns get far-off safety deadlines, and calls that must block
//! run on helper threads read through `recv_timeout`, so a regression fails instead of
//! hanging the suite. Timing assertions have generous upper bounds (noisy 2-core CI);
//! lower bounds only where a deadline makes them exact (deadlines never fire early).
//! Nothing depends on the calendar: valid certs run to 2126 and `expired.pem` is expired
//! by construction.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use reseau::resolve::{Dialer, StaticResolver};
use reseau::tcp;
use reseau::tls::{self, ClientAuthMode, Config, Conn, ConnectionState, Listener, TlsVersion};
use reseau::{Error, TlsError};

/// Bound for anything that should finish "soon"; far above normal, so only a real hang trips it.
const SAFETY: Duration = Duration::from_secs(20);
/// Bound for a wake-up that should be prompt; generous for a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(1);

const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Conn>();
    send_sync::<Listener>();
    send_sync::<Config>();
};

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

fn soon() -> Option<Instant> {
    Some(Instant::now() + SAFETY)
}

/// A server config presenting `server.pem` (SAN localhost, 127.0.0.1, ::1).
fn server_cfg() -> Config {
    Config {
        cert_file: Some(cert!("server.pem")),
        key_file: Some(cert!("server.key")),
        ..Config::default()
    }
}

/// A client config trusting the test CA (server name inferred or set per test).
fn client_cfg() -> Config {
    Config {
        ca_file: Some(cert!("ca.pem")),
        ..Config::default()
    }
}

/// A client config trusting the test CA and verifying `localhost`.
fn localhost_cfg() -> Config {
    Config {
        server_name: Some("localhost".into()),
        ..client_cfg()
    }
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn wait<T>(rx: &Receiver<T>, limit: Duration, what: &str) -> T {
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: no result within {limit:?} ({e})"))
}

/// A TLS listener on 127.0.0.1 with a safety accept deadline.
fn tls_listener(cfg: Config) -> Listener {
    let ln = tls::listen(tcp::loopback_addr(0), cfg).expect("tls::listen on 127.0.0.1");
    ln.set_deadline(soon()).unwrap();
    ln
}

/// Serves one connection: accepts (lazy), sets safety deadlines, runs `f` on a thread.
fn serve_one<T: Send + 'static>(
    cfg: Config,
    f: impl FnOnce(Conn) -> T + Send + 'static,
) -> (SocketAddr, Receiver<T>) {
    let ln = tls_listener(cfg);
    let addr = ln.local_addr().unwrap();
    let rx = spawn(move || {
        let conn = ln.accept().expect("accept");
        conn.set_deadline(soon()).unwrap();
        f(conn)
    });
    (addr, rx)
}

/// Server body: handshake, echo everything until EOF, then close.
fn echo(conn: Conn) -> reseau::Result<ConnectionState> {
    conn.handshake()?;
    let state = conn.connection_state();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf)? {
            0 => break,
            n => {
                conn.write(&buf[..n])?;
            }
        }
    }
    conn.close()?;
    Ok(state)
}

/// A lazy client over a fresh TCP connection to `addr`, with safety deadlines.
fn lazy_client(addr: SocketAddr, cfg: &Config) -> Conn {
    let c = tls::client(tcp::connect(addr).expect("tcp connect"), cfg).expect("tls::client");
    c.set_deadline(soon()).unwrap();
    c
}

/// The `TlsError` inside `err` (looking through one `Op` wrapper); panics otherwise.
fn tls_error(err: &Error) -> &TlsError {
    match err {
        Error::Tls(t) => t,
        Error::Op(op) => tls_error(&op.err),
        other => panic!("expected Error::Tls, got {other:?} ({other})"),
    }
}

/// Writes `msg` through the conn, then reads the echo (`msg.len()` bytes).
fn round_trip(conn: &Conn, msg: &[u8]) {
    assert_eq!(conn.write(msg).unwrap(), msg.len());
    let mut got = vec![0u8; msg.len()];
    assert_eq!(conn.read_full(&mut got).unwrap(), msg.len());
    assert_eq!(got, msg);
}

/// Is IPv6 loopback usable here?
fn ipv6_listener(cfg: Config) -> Option<Listener> {
    match tls::listen(tcp::loopback_addr6(0, 0), cfg) {
        Ok(ln) => {
            ln.set_deadline(soon()).unwrap();
            Some(ln)
        }
        Err(e) => {
            println!("skipping the IPv6 part: no ::1 ({e})");
            None
        }
    }
}

/// A plain TCP listener whose accepted conns never speak (a stalled TLS peer).
fn silent_listener() -> tcp::Listener {
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    ln.set_deadline(soon()).unwrap();
    ln
}

/// Proves nothing connected to `ln` (no I/O happened): accept times out.
fn assert_no_connection(ln: &tcp::Listener) {
    ln.set_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    match ln.accept() {
        Err(Error::DeadlineExceeded) => {}
        other => panic!("expected no connection attempt, got {other:?}"),
    }
    ln.set_deadline(soon()).unwrap();
}

// ------------------------------------------------------------------------------------
// Config validation (Reseau tls_config_tests / tls_tests "config validation"; Go
// "either ServerName or InsecureSkipVerify must be specified").
// ------------------------------------------------------------------------------------

fn assert_config_err<T: std::fmt::Debug>(res: reseau::Result<T>, what: &str) -> String {
    match res {
        Err(Error::TlsConfig(msg)) => msg,
        other => panic!("{what}: expected unwrapped Error::TlsConfig, got {other:?}"),
    }
}

/// Every entry point, with a config that is invalid for the client role: `TlsConfig`,
/// unwrapped, and no connection attempt reaches the (silent) listener.
fn assert_client_config_rejected(cfg: &Config, what: &str) -> String {
    let ln = silent_listener();
    let addr = ln.addr().unwrap();
    let msg = assert_config_err(tls::connect(addr, cfg), &format!("{what}: tls::connect"));
    assert_config_err(
        tls::dial("tcp", &addr.to_string(), cfg),
        &format!("{what}: tls::dial"),
    );
    let dialer = Dialer {
        timeout: Some(Duration::from_secs(5)),
        ..Dialer::default()
    };
    assert_config_err(
        dialer.dial_tls("tcp", &addr.to_string(), cfg),
        &format!("{what}: Dialer::dial_tls"),
    );
    assert_no_connection(&ln);
    msg
}

/// Every server entry point with an invalid server config: `TlsConfig`, unwrapped, before
/// binding (the port is taken, so a bind would fail with a different error).
fn assert_server_config_rejected(cfg: &Config, what: &str) -> String {
    let taken = tcp::listen(tcp::loopback_addr(0)).unwrap();
    let addr = taken.addr().unwrap();
    let msg = assert_config_err(tls::listen(addr, cfg.clone()), &format!("{what}: listen"));
    assert_config_err(
        tls::listen_on("tcp", &addr.to_string(), cfg.clone()),
        &format!("{what}: listen_on"),
    );
    let (c, s) = {
        let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
        ln.set_deadline(soon()).unwrap();
        let c = tcp::connect(ln.addr().unwrap()).unwrap();
        (c, ln.accept().unwrap())
    };
    assert_config_err(tls::server(s, cfg), &format!("{what}: tls::server"));
    // Nothing was sent on the TCP conn handed to tls::server.
    c.set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(0) | Err(Error::DeadlineExceeded) => {}
        other => panic!("{what}: tls::server must not write, got {other:?}"),
    }
    msg
}

#[test]
fn config_cert_without_key_and_key_without_cert() {
    // Reseau: "both `cert_file` and `key_file` must be set together".
    if !enabled() {
        return;
    }
    let cert_only = Config {
        cert_file: Some(cert!("client.pem")),
        ..localhost_cfg()
    };
    let key_only = Config {
        key_file: Some(cert!("client.key")),
        ..localhost_cfg()
    };
    for (cfg, what) in [(cert_only, "cert only"), (key_only, "key only")] {
        let msg = assert_client_config_rejected(&cfg, what);
        assert!(
            msg.contains("cert_file") && msg.contains("key_file"),
            "{msg}"
        );
        let server = Config {
            server_name: None,
            ca_file: None,
            ..cfg
        };
        assert_server_config_rejected(&server, what);
    }
}

#[test]
fn config_server_without_cert() {
    // Reseau tls_tests: `TLS.listen("tcp", "127.0.0.1:0", Config(verify_peer=false))` → ConfigError.
    if !enabled() {
        return;
    }
    let cfg = Config {
        verify_peer: false,
        ..Config::default()
    };
    let msg = assert_server_config_rejected(&cfg, "no cert");
    assert!(msg.contains("cert_file"), "{msg}");
    // Listen by string, too (and the string form is not wrapped in Op).
    assert_config_err(
        tls::listen_on("tcp", "127.0.0.1:0", cfg),
        "listen_on 127.0.0.1:0",
    );
}

#[test]
fn config_missing_files() {
    // Reseau: "certificate file not found", "private key file not found", missing ca_file /
    // client_ca_file → ConfigError.
    if !enabled() {
        return;
    }
    let nowhere = cert!("does-not-exist.pem");
    let cases = [
        (
            Config {
                cert_file: Some(nowhere.clone()),
                key_file: Some(cert!("client.key")),
                ..localhost_cfg()
            },
            "missing cert_file",
        ),
        (
            Config {
                cert_file: Some(cert!("client.pem")),
                key_file: Some(nowhere.clone()),
                ..localhost_cfg()
            },
            "missing key_file",
        ),
        (
            Config {
                ca_file: Some(nowhere.clone()),
                ..localhost_cfg()
            },
            "missing ca_file",
        ),
    ];
    for (cfg, what) in &cases {
        let msg = assert_client_config_rejected(cfg, what);
        assert!(msg.contains("does-not-exist.pem"), "{what}: {msg}");
    }
    let server_cases = [
        Config {
            cert_file: Some(nowhere.clone()),
            ..server_cfg()
        },
        Config {
            key_file: Some(nowhere.clone()),
            ..server_cfg()
        },
        Config {
            client_auth: ClientAuthMode::RequireAndVerifyClientCert,
            client_ca_file: Some(nowhere.clone()),
            ..server_cfg()
        },
    ];
    for cfg in &server_cases {
        let msg = assert_server_config_rejected(cfg, "server missing file");
        assert!(msg.contains("does-not-exist.pem"), "{msg}");
    }
}

#[test]
fn config_verify_peer_requires_server_name() {
    // Reseau: `TLS.client(tcp, Config(verify_peer=true))` without server_name → ConfigError
    // (client() never infers); Go: "either ServerName or InsecureSkipVerify must be specified".
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let addr = ln.addr().unwrap();
    let conn = tcp::connect(addr).unwrap();
    let msg = assert_config_err(tls::client(conn, &client_cfg()), "tls::client");
    assert!(msg.contains("server_name"), "{msg}");
    let conn = tcp::connect(addr).unwrap();
    let empty = Config {
        server_name: Some(String::new()),
        ..client_cfg()
    };
    assert_config_err(tls::client(conn, &empty), "tls::client with empty name");
    // verify_peer = false needs no name.
    let conn = tcp::connect(addr).unwrap();
    let insecure = Config {
        verify_peer: false,
        ..Config::default()
    };
    let c = tls::client(conn, &insecure).expect("verify_peer=false needs no server_name");
    assert!(!c.is_handshake_complete());
}

#[test]
fn config_verify_modes_require_client_ca_file() {
    // Reseau: Verify* client-auth modes without `client_ca_file` → ConfigError; the other
    // modes do not need it.
    if !enabled() {
        return;
    }
    for mode in [
        ClientAuthMode::VerifyClientCertIfGiven,
        ClientAuthMode::RequireAndVerifyClientCert,
    ] {
        let cfg = Config {
            client_auth: mode,
            ..server_cfg()
        };
        let msg = assert_server_config_rejected(&cfg, &format!("{mode:?}"));
        assert!(msg.contains("client_ca_file"), "{mode:?}: {msg}");
    }
    for mode in [
        ClientAuthMode::NoClientCert,
        ClientAuthMode::RequestClientCert,
        ClientAuthMode::RequireAnyClientCert,
    ] {
        let cfg = Config {
            client_auth: mode,
            ..server_cfg()
        };
        tls::listen(tcp::loopback_addr(0), cfg)
            .unwrap_or_else(|e| panic!("{mode:?} without client_ca_file: {e}"));
    }
}

#[test]
fn config_min_above_max_version() {
    // Reseau main: min_version > max_version → ConfigError at construction/use.
    if !enabled() {
        return;
    }
    let bad = |c: Config| Config {
        min_version: Some(TlsVersion::Tls13),
        max_version: Some(TlsVersion::Tls12),
        ..c
    };
    assert_client_config_rejected(&bad(localhost_cfg()), "min > max");
    assert_server_config_rejected(&bad(server_cfg()), "min > max");
    // min == max is fine.
    let eq = Config {
        min_version: Some(TlsVersion::Tls13),
        max_version: Some(TlsVersion::Tls13),
        ..server_cfg()
    };
    tls::listen(tcp::loopback_addr(0), eq).expect("min == max");
}

#[test]
fn config_alpn_name_lengths() {
    // Reseau: ALPN names are wire-encoded; empty or >255 bytes → ConfigError.
    if !enabled() {
        return;
    }
    for (name, what) in [(String::new(), "empty"), ("a".repeat(256), "256 bytes")] {
        let client = Config {
            alpn_protocols: vec!["h2".into(), name.clone()],
            ..localhost_cfg()
        };
        assert_client_config_rejected(&client, what);
        let server = Config {
            alpn_protocols: vec![name, "h2".into()],
            ..server_cfg()
        };
        assert_server_config_rejected(&server, what);
    }
    // 255 bytes is the largest legal name.
    let ok = Config {
        alpn_protocols: vec!["a".repeat(255)],
        ..server_cfg()
    };
    tls::listen(tcp::loopback_addr(0), ok).expect("255-byte ALPN name");
}

#[test]
fn config_defaults_and_error_kinds() {
    // Reseau tls_tests "config validation: defaults (min TLS1_2, NoClientCert)".
    if !enabled() {
        return;
    }
    let d = Config::default();
    assert!(d.verify_peer);
    assert_eq!(d.client_auth, ClientAuthMode::NoClientCert);
    assert_eq!(d.min_version, Some(TlsVersion::Tls12));
    assert_eq!(d.max_version, None);
    assert_eq!(d.server_name, None);
    assert_eq!(d.handshake_timeout, None);
    assert!(d.alpn_protocols.is_empty());
    assert!(d.cert_file.is_none() && d.key_file.is_none());
    assert!(d.ca_file.is_none() && d.client_ca_file.is_none());
    let err = tls::listen(tcp::loopback_addr(0), Config::default()).unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!err.is_timeout());
    assert_eq!(err.op(), None);
}

#[test]
fn listener_new_wraps_an_existing_tcp_listener() {
    if !enabled() {
        return;
    }
    let bad = tls::Listener::new(
        tcp::listen(tcp::loopback_addr(0)).unwrap(),
        Config::default(),
    );
    assert!(matches!(bad, Err(Error::TlsConfig(_))), "{bad:?}");
    let tcp_ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    let addr = tcp_ln.addr().unwrap();
    let ln = tls::Listener::new(tcp_ln, server_cfg()).expect("Listener::new");
    ln.set_deadline(soon()).unwrap();
    assert_eq!(ln.addr(), Some(addr));
    let srv = spawn(move || -> reseau::Result<ConnectionState> {
        let c = ln.accept()?;
        c.set_deadline(soon())?;
        echo(c)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    round_trip(&conn, b"wrapped");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

// ------------------------------------------------------------------------------------
// Round trips (Reseau "connect/listen handshake and roundtrip", "ip literal verification
// path does not require explicit server_name", "direct socket-address passthroughs").
// ------------------------------------------------------------------------------------

#[test]
fn connect_infers_ip_server_name_and_round_trips() {
    // Reseau main: IP-literal inference succeeds with version "TLSv1.3"; no SNI for IPs.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| {
        let sni = c.handshake().map(|()| c.connection_state().server_name);
        (sni, echo(c))
    });
    let conn = tls::connect(addr, &client_cfg()).expect("tls::connect to 127.0.0.1");
    conn.set_deadline(soon()).unwrap();
    assert!(conn.is_handshake_complete(), "connect returns handshaken");
    let st = conn.connection_state();
    assert!(st.handshake_complete);
    assert_eq!(st.version, "TLSv1.3");
    assert!(!st.cipher_suite.is_empty());
    assert_eq!(st.alpn_protocol, None);
    assert!(!conn.is_server());
    assert_eq!(conn.remote_addr(), Some(addr));
    assert_eq!(
        conn.local_addr().map(|a| a.ip()),
        Some(tcp::loopback_addr(0).ip())
    );
    round_trip(&conn, b"ping");
    round_trip(&conn, b"\x00\x01\x02 binary \xff");
    conn.close().unwrap();
    let (sni, res) = wait(&srv, SAFETY, "server");
    assert_eq!(sni.unwrap(), None, "SNI is not sent for IP literals");
    let st = res.expect("server echo");
    assert!(st.handshake_complete);
    assert_eq!(st.version, "TLSv1.3");
}

#[test]
fn dial_localhost_infers_name_and_sends_sni() {
    // Go tls.Dial fills ServerName from the address; SNI visible on both sides.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| {
        let st = c.handshake().map(|()| c.connection_state());
        (st, echo(c))
    });
    let conn = tls::dial("tcp", &format!("localhost:{}", addr.port()), &client_cfg())
        .expect("tls::dial localhost");
    conn.set_deadline(soon()).unwrap();
    assert_eq!(conn.connection_state().version, "TLSv1.3");
    round_trip(&conn, b"hello localhost");
    conn.close().unwrap();
    let (st, res) = wait(&srv, SAFETY, "server");
    let st = st.expect("server handshake");
    assert_eq!(st.server_name.as_deref(), Some("localhost"));
    assert!(!st.cipher_suite.is_empty());
    res.expect("server echo");
}

#[test]
fn dial_trailing_dot_name_is_normalized() {
    // Reseau _normalize_peer_name: "localhost." → "localhost" (SNI and verification).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| {
        c.handshake().map(|()| c.connection_state().server_name)
    });
    // glibc's hosts backend does not resolve "localhost." here; a static resolver keeps
    // this test about the TLS name, not the system's resolver.
    let hosts = StaticResolver::new();
    hosts.insert("localhost.", [addr.ip()]);
    let dialer = Dialer {
        resolver: Arc::new(hosts),
        timeout: Some(SAFETY),
        ..Dialer::default()
    };
    let conn = dialer
        .dial_tls("tcp", &format!("localhost.:{}", addr.port()), &client_cfg())
        .expect("dial_tls localhost.");
    conn.close().unwrap();
    let sni = wait(&srv, SAFETY, "server").expect("server handshake");
    assert_eq!(sni.as_deref(), Some("localhost"));
}

#[test]
fn dial_ipv6_literal_verifies_ip_san() {
    // Reseau: "[::1]:443" → server_name "::1", verified against the IP SAN, no SNI.
    if !enabled() {
        return;
    }
    let Some(ln) = ipv6_listener(server_cfg()) else {
        return;
    };
    let port = ln.local_addr().unwrap().port();
    let srv = spawn(move || {
        let c = ln.accept()?;
        c.set_deadline(soon())?;
        c.handshake()?;
        let sni = c.connection_state().server_name;
        echo(c).map(|_| sni)
    });
    let conn = tls::dial("tcp", &format!("[::1]:{port}"), &client_cfg()).expect("dial [::1]");
    conn.set_deadline(soon()).unwrap();
    assert!(conn.remote_addr().unwrap().is_ipv6());
    assert_eq!(conn.connection_state().version, "TLSv1.3");
    round_trip(&conn, b"six");
    conn.close().unwrap();
    assert_eq!(wait(&srv, SAFETY, "server").expect("server"), None);
}

#[test]
fn explicit_server_name_overrides_the_dialed_host() {
    // The name inferred from the address is only a default: an explicit `server_name`
    // is what SNI carries and what the certificate is verified against, whichever way
    // the peer was named (connect and dial pass the inferred name beside the config).
    if !enabled() {
        return;
    }
    let sni_of = |dial: &dyn Fn(SocketAddr) -> reseau::Result<tls::Conn>| {
        let (addr, srv) = serve_one(server_cfg(), |c| {
            c.handshake().map(|()| c.connection_state().server_name)
        });
        let conn = dial(addr).expect("handshake");
        let client_side = conn.connection_state().server_name;
        conn.close().unwrap();
        let server_side = wait(&srv, SAFETY, "server").expect("server handshake");
        assert_eq!(client_side, server_side);
        server_side
    };
    // By IP, named "localhost": SNI and DNS-name verification.
    let named = localhost_cfg();
    let got = sni_of(&|a| tls::dial("tcp", &a.to_string(), &named));
    assert_eq!(got.as_deref(), Some("localhost"), "dial by IP");
    let got = sni_of(&|a| tls::connect(a, &named));
    assert_eq!(got.as_deref(), Some("localhost"), "connect");
    // By host name, named by IP: no SNI, verified against the IP SAN.
    let by_ip = Config {
        server_name: Some("127.0.0.1".into()),
        ..client_cfg()
    };
    let got = sni_of(&|a| tls::dial("tcp", &format!("localhost:{}", a.port()), &by_ip));
    assert_eq!(got, None, "dial by name, verified by IP");
    // A wrong explicit name fails even though the dialed host would have matched.
    let (addr, srv) = serve_one(server_cfg(), |c| c.handshake());
    let wrong = Config {
        server_name: Some("example.com".into()),
        ..client_cfg()
    };
    let err = tls::dial("tcp", &format!("localhost:{}", addr.port()), &wrong)
        .expect_err("example.com is not in the certificate");
    assert_eq!(tls_error(&err).op, "handshake", "{err:?}");
    assert!(wait(&srv, SAFETY, "server").is_err());
}

#[test]
fn listen_on_and_dial_tls_with_dialer() {
    // Reseau `listen(network, address, config)` + resolver-kw connect.
    if !enabled() {
        return;
    }
    let ln = tls::listen_on("tcp", "127.0.0.1:0", server_cfg()).expect("listen_on");
    ln.set_deadline(soon()).unwrap();
    let addr = ln.addr().unwrap();
    let srv = spawn(move || {
        let c = ln.accept()?;
        c.set_deadline(soon())?;
        echo(c)
    });
    let dialer = Dialer {
        timeout: Some(SAFETY),
        ..Dialer::default()
    };
    let conn = dialer
        .dial_tls("tcp4", &addr.to_string(), &client_cfg())
        .expect("dial_tls");
    conn.set_deadline(soon()).unwrap();
    round_trip(&conn, b"dialer");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn connection_state_before_and_after_handshake() {
    // Reseau: connection_state never forces a handshake (before: false, "", nothing).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), echo);
    let conn = lazy_client(addr, &localhost_cfg());
    for _ in 0..2 {
        let st = conn.connection_state();
        assert!(!st.handshake_complete);
        assert_eq!(st.version, "");
        assert_eq!(st.cipher_suite, "");
        assert_eq!(st.alpn_protocol, None);
        assert!(!st.did_resume);
    }
    assert!(!conn.is_handshake_complete());
    conn.handshake().expect("handshake");
    let st = conn.connection_state();
    assert!(st.handshake_complete);
    assert_eq!(st.version, "TLSv1.3");
    assert!(st.cipher_suite.starts_with("TLS_"), "{}", st.cipher_suite);
    assert!(!st.did_resume);
    assert_eq!(st.server_name.as_deref(), Some("localhost"));
    round_trip(&conn, b"x");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn tls12_only() {
    // Go TestVersion-style: both sides pinned to TLS 1.2 → "TLSv1.2".
    if !enabled() {
        return;
    }
    let v12 = |c: Config| Config {
        min_version: Some(TlsVersion::Tls12),
        max_version: Some(TlsVersion::Tls12),
        ..c
    };
    // Server capped at 1.2, client default (1.2..1.3): negotiates 1.2.
    let (addr, srv) = serve_one(v12(server_cfg()), echo);
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    assert_eq!(conn.connection_state().version, "TLSv1.2");
    round_trip(&conn, b"twelve");
    conn.close().unwrap();
    assert_eq!(wait(&srv, SAFETY, "server").unwrap().version, "TLSv1.2");
    // Client pinned to 1.2, server default.
    let (addr, srv) = serve_one(server_cfg(), echo);
    let conn = tls::connect(addr, &v12(client_cfg())).unwrap();
    conn.set_deadline(soon()).unwrap();
    assert_eq!(conn.connection_state().version, "TLSv1.2");
    round_trip(&conn, b"twelve");
    conn.close().unwrap();
    assert_eq!(wait(&srv, SAFETY, "server").unwrap().version, "TLSv1.2");
}

#[test]
fn version_mismatch_fails() {
    // Go TestVersion: client 1.3-only vs server 1.2-only → handshake fails on both sides.
    if !enabled() {
        return;
    }
    let server = Config {
        max_version: Some(TlsVersion::Tls12),
        ..server_cfg()
    };
    let (addr, srv) = serve_one(server, |c| c.handshake());
    let client = Config {
        min_version: Some(TlsVersion::Tls13),
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &client);
    let err = conn
        .handshake()
        .expect_err("1.3-only client vs 1.2-only server");
    assert_eq!(tls_error(&err).op, "handshake");
    let serr = wait(&srv, SAFETY, "server").expect_err("server handshake must fail");
    assert!(matches!(serr, Error::Tls(_)), "{serr:?}");
}

// ------------------------------------------------------------------------------------
// Lazy vs eager handshake (Reseau: client()/server() lazy; handshake! idempotent; main:
// zero-length I/O drives the handshake; Go TestHandshakeRace in spirit).
// ------------------------------------------------------------------------------------

#[test]
fn client_is_lazy_until_handshake() {
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let raw_client = tcp::connect(ln.addr().unwrap()).unwrap();
    let raw_server = ln.accept().unwrap();
    raw_server.set_deadline(soon()).unwrap();
    let client = tls::client(raw_client, &localhost_cfg()).unwrap();
    client.set_deadline(soon()).unwrap();
    let _ = client.connection_state();
    let _ = format!("{client:?}");
    // No ClientHello was sent by tls::client, connection_state or Debug.
    raw_server
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(150)))
        .unwrap();
    let mut b = [0u8; 1];
    match raw_server.read(&mut b) {
        Err(Error::DeadlineExceeded) => {}
        other => panic!("tls::client must do no I/O, server read {other:?}"),
    }
    // Now upgrade the server side and let the client's handshake() run.
    raw_server.set_read_deadline(soon()).unwrap();
    let server = tls::server(raw_server, &server_cfg()).unwrap();
    assert!(server.is_server());
    let srv = spawn(move || echo(server));
    client.handshake().expect("client handshake");
    assert!(client.is_handshake_complete());
    round_trip(&client, b"lazy");
    client.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn read_drives_the_handshake() {
    // Reseau: "first read/write/eof/readavailable also triggers it".
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<()> {
        // The server never calls handshake(): its first write drives it.
        c.write(b"first")?;
        let mut b = [0u8; 1];
        c.read(&mut b).map(drop)
    });
    let conn = lazy_client(addr, &localhost_cfg());
    let mut got = [0u8; 5];
    // The client never calls handshake() either: its first read drives it.
    assert_eq!(conn.read_full(&mut got).unwrap(), 5);
    assert_eq!(&got, b"first");
    assert!(conn.is_handshake_complete());
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn handshake_is_idempotent_and_thread_safe() {
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), echo);
    let conn = Arc::new(lazy_client(addr, &localhost_cfg()));
    let barrier = Arc::new(Barrier::new(4));
    let rxs: Vec<_> = (0..4)
        .map(|_| {
            let conn = conn.clone();
            let barrier = barrier.clone();
            spawn(move || {
                barrier.wait();
                conn.handshake()
            })
        })
        .collect();
    for (i, rx) in rxs.iter().enumerate() {
        wait(rx, SAFETY, "concurrent handshake")
            .unwrap_or_else(|e| panic!("handshake thread {i}: {e}"));
    }
    assert!(conn.is_handshake_complete());
    conn.handshake().expect("again");
    conn.handshake().expect("and again");
    round_trip(&conn, b"once");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn zero_length_io_drives_the_handshake() {
    // Reseau main: server `read(tls, 0)` + client `write(tls, UInt8[])` complete the handshake.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| {
        let n = c.read(&mut []);
        let done = c.is_handshake_complete();
        (n, done, c)
    });
    let conn = lazy_client(addr, &localhost_cfg());
    assert_eq!(conn.write(&[]).expect("zero-length write"), 0);
    assert!(conn.is_handshake_complete());
    assert_eq!(conn.connection_state().version, "TLSv1.3");
    let (n, done, server) = wait(&srv, SAFETY, "server");
    assert_eq!(n.expect("zero-length read"), 0);
    assert!(done, "server handshake complete after a zero-length read");
    // The std::io traits too, and data still flows.
    assert_eq!(Write::write(&mut &conn, &[]).unwrap(), 0);
    assert_eq!(Read::read(&mut &server, &mut []).unwrap(), 0);
    server.write(b"after").unwrap();
    let mut got = [0u8; 5];
    assert_eq!(conn.read_full(&mut got).unwrap(), 5);
    assert_eq!(&got, b"after");
}

#[test]
fn zero_length_io_surfaces_handshake_failure() {
    // Reseau main: zero-length I/O surfaces handshake failures (never a silent Ok(0)).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| c.handshake());
    let cfg = Config {
        ca_file: Some(cert!("other-ca.pem")),
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &cfg);
    let err = conn
        .write(&[])
        .expect_err("zero-length write with a bad chain");
    assert_eq!(tls_error(&err).op, "handshake");
    assert!(!conn.is_handshake_complete());
    let err = conn
        .read(&mut [])
        .expect_err("zero-length read with a bad chain");
    assert_eq!(tls_error(&err).op, "handshake");
    assert!(wait(&srv, SAFETY, "server").is_err());
}

// ------------------------------------------------------------------------------------
// Verification failures (Go handshake_client_test error cases; Reseau main "wrong
// hostname", "sticky handshake failures", "CN-only rejection (legacy Common Name)").
// ------------------------------------------------------------------------------------

/// A server presenting `cert`/`key` that handshakes one conn; the client's handshake with
/// `client` must fail with a `handshake` `Error::Tls` (sticky) whose message contains one
/// of `needles`. Returns the message.
fn assert_verify_fails(cert: PathBuf, key: PathBuf, client: &Config, needles: &[&str]) -> String {
    let server = Config {
        cert_file: Some(cert),
        key_file: Some(key),
        ..Config::default()
    };
    let (addr, srv) = serve_one(server, |c| c.handshake());
    let conn = lazy_client(addr, client);
    let err = conn.handshake().expect_err("verification must fail");
    let t = tls_error(&err);
    assert_eq!(t.op, "handshake", "{err}");
    assert!(
        needles.iter().any(|n| t.message.contains(n)),
        "message {:?} contains none of {needles:?}",
        t.message
    );
    assert!(!err.is_timeout());
    assert!(!conn.is_handshake_complete());
    // Sticky (Reseau main, Go): the same failure again, without I/O.
    let again = conn.handshake().expect_err("sticky");
    let t2 = tls_error(&again);
    assert_eq!((t2.op, t2.code, &t2.message), (t.op, t.code, &t.message));
    assert_eq!(again.to_string(), err.to_string());
    // Reads and writes report it too.
    assert_eq!(
        conn.read(&mut [0u8; 4]).unwrap_err().to_string(),
        err.to_string()
    );
    assert_eq!(conn.write(b"x").unwrap_err().to_string(), err.to_string());
    // The server sees the client's alert as a handshake failure.
    let serr = wait(&srv, SAFETY, "server").expect_err("server handshake must fail");
    assert!(matches!(serr, Error::Tls(_)), "{serr:?}");
    t.message.clone()
}

#[test]
fn verify_unknown_ca() {
    // Go: "x509: certificate signed by unknown authority".
    if !enabled() {
        return;
    }
    let cfg = Config {
        ca_file: Some(cert!("other-ca.pem")),
        ..localhost_cfg()
    };
    assert_verify_fails(
        cert!("server.pem"),
        cert!("server.key"),
        &cfg,
        &[
            "unable to get local issuer certificate",
            "self-signed certificate in certificate chain",
            "self signed certificate in certificate chain",
        ],
    );
}

#[test]
fn verify_wrong_host_server_cert() {
    // Go: "x509: certificate is valid for wrong.example, not localhost".
    if !enabled() {
        return;
    }
    assert_verify_fails(
        cert!("wronghost.pem"),
        cert!("wronghost.key"),
        &localhost_cfg(),
        &["hostname mismatch"],
    );
    // The IP-literal path checks IP SANs: wronghost.pem has none for 127.0.0.1.
    assert_verify_fails(
        cert!("wronghost.pem"),
        cert!("wronghost.key"),
        &Config {
            server_name: Some("127.0.0.1".into()),
            ..client_cfg()
        },
        &["IP address mismatch"],
    );
}

#[test]
fn verify_wrong_host_client_name() {
    // Reseau main: server_name "example.com" against a localhost cert fails.
    if !enabled() {
        return;
    }
    let cfg = Config {
        server_name: Some("example.com".into()),
        ..client_cfg()
    };
    assert_verify_fails(
        cert!("server.pem"),
        cert!("server.key"),
        &cfg,
        &["hostname mismatch"],
    );
}

#[test]
fn verify_wrong_host_through_connect() {
    // tls::connect with an explicit, wrong server_name: the error is the handshake's (not
    // wrapped), and the conn is closed.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| c.handshake());
    let cfg = Config {
        server_name: Some("example.com".into()),
        ..client_cfg()
    };
    let err = tls::connect(addr, &cfg).expect_err("wrong name");
    assert_eq!(tls_error(&err).op, "handshake");
    assert!(
        matches!(err, Error::Tls(_)),
        "tls::connect does not wrap: {err:?}"
    );
    assert!(wait(&srv, SAFETY, "server").is_err());
    // Through dial: one Op("dial") wrapper around the same Tls error.
    let (addr, srv) = serve_one(server_cfg(), |c| c.handshake());
    let err = tls::dial("tcp", &addr.to_string(), &cfg).expect_err("wrong name");
    assert_eq!(err.op(), Some("dial"), "{err:?}");
    assert_eq!(tls_error(&err).op, "handshake");
    assert!(!err.is_timeout());
    assert!(wait(&srv, SAFETY, "server").is_err());
}

#[test]
fn verify_expired() {
    // Go: "x509: certificate has expired or is not yet valid" (expired.pem: 2020-01-01..02).
    if !enabled() {
        return;
    }
    assert_verify_fails(
        cert!("expired.pem"),
        cert!("expired.key"),
        &localhost_cfg(),
        &["certificate has expired"],
    );
}

#[test]
fn verify_untrusted_self_signed() {
    if !enabled() {
        return;
    }
    assert_verify_fails(
        cert!("untrusted.pem"),
        cert!("untrusted.key"),
        &localhost_cfg(),
        &["self-signed certificate", "self signed certificate"],
    );
    // It does verify when it is its own trust anchor (certs/README.md).
    let server = Config {
        cert_file: Some(cert!("untrusted.pem")),
        key_file: Some(cert!("untrusted.key")),
        ..Config::default()
    };
    let (addr, srv) = serve_one(server, echo);
    let cfg = Config {
        ca_file: Some(cert!("untrusted.pem")),
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &cfg);
    conn.handshake().expect("self-signed cert as its own CA");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn verify_cn_only_cert_rejected_like_go() {
    // Go: "x509: certificate relies on legacy Common Name field"; the crate sets
    // X509_CHECK_FLAG_NEVER_CHECK_SUBJECT (Reseau main "legacy Common Name").
    if !enabled() {
        return;
    }
    assert_verify_fails(
        cert!("ecdsa-cn.pem"),
        cert!("ecdsa-cn.key"),
        &localhost_cfg(),
        &["hostname mismatch"],
    );
}

#[test]
fn verify_peer_false_accepts_anything() {
    // Reseau v1.0.1: verify_peer=false → no chain and no name check (Go InsecureSkipVerify).
    if !enabled() {
        return;
    }
    let insecure = Config {
        verify_peer: false,
        ..Config::default()
    };
    for (cert, key) in [
        (cert!("ecdsa-cn.pem"), cert!("ecdsa-cn.key")),
        (cert!("expired.pem"), cert!("expired.key")),
        (cert!("untrusted.pem"), cert!("untrusted.key")),
        (cert!("wronghost.pem"), cert!("wronghost.key")),
    ] {
        let server = Config {
            cert_file: Some(cert.clone()),
            key_file: Some(key),
            ..Config::default()
        };
        let (addr, srv) = serve_one(server, echo);
        // No server_name at all, even through tls::client.
        let conn = lazy_client(addr, &insecure);
        conn.handshake()
            .unwrap_or_else(|e| panic!("{}: {e}", cert.display()));
        round_trip(&conn, b"insecure");
        conn.close().unwrap();
        wait(&srv, SAFETY, "server").expect("server");
    }
    // And with a name that does not match, through connect.
    let server = Config {
        cert_file: Some(cert!("ecdsa-cn.pem")),
        key_file: Some(cert!("ecdsa-cn.key")),
        ..Config::default()
    };
    let (addr, srv) = serve_one(server, echo);
    let conn = tls::connect(
        addr,
        &Config {
            server_name: Some("example.com".into()),
            ..insecure
        },
    )
    .expect("verify_peer=false ignores the name");
    conn.set_deadline(soon()).unwrap();
    round_trip(&conn, b"ecdsa");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

// ------------------------------------------------------------------------------------
// Client auth matrix (Go testVerifyCertificates / TestClientAuth; Reseau main
// tls_native_tls13 client-auth modes). TLS 1.3: a rejected client usually completes its
// handshake and sees the alert on its first read, so "handshake or first read fails".
// ------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ClientCert {
    None,
    Good,
    Other,
    /// `server.pem`: chains to the CA but its EKU is serverAuth only.
    ServerPem,
}

fn client_auth_case(mode: ClientAuthMode, client_ca: bool, presented: ClientCert, ok: bool) {
    let what = format!("{mode:?} with client cert {presented:?}");
    let server = Config {
        client_auth: mode,
        client_ca_file: client_ca.then(|| cert!("ca.pem")),
        ..server_cfg()
    };
    let (addr, srv) = serve_one(server, |c| -> reseau::Result<()> {
        c.handshake()?;
        c.write(b"ok")?;
        // Wait for the client to finish (its close_notify) before closing.
        let mut b = [0u8; 1];
        c.read(&mut b).map(drop)
    });
    let (cert_file, key_file) = match presented {
        ClientCert::None => (None, None),
        ClientCert::Good => (Some(cert!("client.pem")), Some(cert!("client.key"))),
        ClientCert::Other => (
            Some(cert!("other-client.pem")),
            Some(cert!("other-client.key")),
        ),
        ClientCert::ServerPem => (Some(cert!("server.pem")), Some(cert!("server.key"))),
    };
    let client = Config {
        cert_file,
        key_file,
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &client);
    let res = conn.handshake().and_then(|()| {
        let mut got = [0u8; 2];
        let n = conn.read_full(&mut got)?;
        Ok(got[..n].to_vec())
    });
    if ok {
        assert_eq!(
            res.unwrap_or_else(|e| panic!("{what}: {e}")),
            b"ok",
            "{what}"
        );
        conn.close().unwrap();
        wait(&srv, SAFETY, "server").unwrap_or_else(|e| panic!("{what}: server: {e}"));
    } else {
        let err = res.expect_err(&format!("{what}: handshake or first read must fail"));
        let t = tls_error(&err);
        assert!(
            t.op == "handshake" || t.op == "read",
            "{what}: failed in {:?}: {err}",
            t.op
        );
        let serr = wait(&srv, SAFETY, "server").expect_err(&format!("{what}: server must fail"));
        assert_eq!(tls_error(&serr).op, "handshake", "{what}: {serr}");
    }
}

#[test]
fn client_auth_no_client_cert() {
    if !enabled() {
        return;
    }
    for cert in [ClientCert::None, ClientCert::Good, ClientCert::Other] {
        client_auth_case(ClientAuthMode::NoClientCert, false, cert, true);
    }
}

#[test]
fn client_auth_request_client_cert() {
    if !enabled() {
        return;
    }
    for cert in [ClientCert::None, ClientCert::Good, ClientCert::Other] {
        client_auth_case(ClientAuthMode::RequestClientCert, false, cert, true);
    }
}

#[test]
fn client_auth_require_any_client_cert() {
    // Go: "tls: client didn't provide a certificate" (TLS 1.3 alert certificate_required).
    if !enabled() {
        return;
    }
    client_auth_case(
        ClientAuthMode::RequireAnyClientCert,
        false,
        ClientCert::Good,
        true,
    );
    client_auth_case(
        ClientAuthMode::RequireAnyClientCert,
        false,
        ClientCert::Other,
        true,
    );
    client_auth_case(
        ClientAuthMode::RequireAnyClientCert,
        false,
        ClientCert::None,
        false,
    );
}

#[test]
fn client_auth_verify_client_cert_if_given() {
    if !enabled() {
        return;
    }
    let m = ClientAuthMode::VerifyClientCertIfGiven;
    client_auth_case(m, true, ClientCert::None, true);
    client_auth_case(m, true, ClientCert::Good, true);
    client_auth_case(m, true, ClientCert::Other, false);
}

#[test]
fn client_auth_require_and_verify_client_cert() {
    // Go: untrusted client cert → client sees "remote error: tls: bad certificate".
    if !enabled() {
        return;
    }
    let m = ClientAuthMode::RequireAndVerifyClientCert;
    client_auth_case(m, true, ClientCert::Good, true);
    client_auth_case(m, true, ClientCert::None, false);
    client_auth_case(m, true, ClientCert::Other, false);
    // certs/README.md: a serverAuth-only cert fails the sslclient purpose check.
    client_auth_case(m, true, ClientCert::ServerPem, false);
}

#[test]
fn client_auth_over_tls12() {
    // The same rules when TLS 1.2 is negotiated (the client learns of a rejection in its
    // handshake there).
    if !enabled() {
        return;
    }
    let server = Config {
        client_auth: ClientAuthMode::RequireAndVerifyClientCert,
        client_ca_file: Some(cert!("ca.pem")),
        max_version: Some(TlsVersion::Tls12),
        ..server_cfg()
    };
    let (addr, srv) = serve_one(server.clone(), echo);
    let good = Config {
        cert_file: Some(cert!("client.pem")),
        key_file: Some(cert!("client.key")),
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &good);
    conn.handshake().expect("mTLS over 1.2");
    assert_eq!(conn.connection_state().version, "TLSv1.2");
    round_trip(&conn, b"mtls12");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");

    let (addr, srv) = serve_one(server, |c| c.handshake());
    let conn = lazy_client(addr, &localhost_cfg());
    let err = conn.handshake().expect_err("no client cert over 1.2");
    assert_eq!(tls_error(&err).op, "handshake");
    assert!(wait(&srv, SAFETY, "server").is_err());
}

// ------------------------------------------------------------------------------------
// ALPN (Go negotiateALPN; Reseau "ALPN negotiates", main h2/http1.1 fallback and
// no-overlap alert 120).
// ------------------------------------------------------------------------------------

fn alpn_case(
    server: &[&str],
    client: &[&str],
) -> (
    reseau::Result<ConnectionState>,
    reseau::Result<ConnectionState>,
) {
    let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let scfg = Config {
        alpn_protocols: names(server),
        ..server_cfg()
    };
    let (addr, srv) = serve_one(scfg, |c| {
        c.handshake()?;
        let st = c.connection_state();
        let mut b = [0u8; 1];
        c.read(&mut b)?;
        Ok(st)
    });
    let ccfg = Config {
        alpn_protocols: names(client),
        ..localhost_cfg()
    };
    let conn = lazy_client(addr, &ccfg);
    let res = conn.handshake().map(|()| conn.connection_state());
    if res.is_ok() {
        conn.write(b"!").unwrap();
    }
    let sres = wait(&srv, SAFETY, "server");
    (res, sres)
}

#[test]
fn alpn_both_sides_agree_on_h2() {
    if !enabled() {
        return;
    }
    let (c, s) = alpn_case(&["h2", "http/1.1"], &["h2", "http/1.1"]);
    assert_eq!(c.unwrap().alpn_protocol.as_deref(), Some("h2"));
    assert_eq!(s.unwrap().alpn_protocol.as_deref(), Some("h2"));
}

#[test]
fn alpn_server_preference() {
    // Go: server ["proto1","proto2"], client proto2,proto1 → "proto1".
    if !enabled() {
        return;
    }
    let (c, s) = alpn_case(&["a", "b"], &["b", "a"]);
    assert_eq!(c.unwrap().alpn_protocol.as_deref(), Some("a"));
    assert_eq!(s.unwrap().alpn_protocol.as_deref(), Some("a"));
    let (c, s) = alpn_case(&["x", "b"], &["a", "b", "c"]);
    assert_eq!(c.unwrap().alpn_protocol.as_deref(), Some("b"));
    assert_eq!(s.unwrap().alpn_protocol.as_deref(), Some("b"));
}

#[test]
fn alpn_no_overlap_fails_with_alert() {
    // Go: "tls: client requested unsupported application protocols"; alert 120.
    if !enabled() {
        return;
    }
    let (c, s) = alpn_case(&["proto3"], &["proto1", "proto2"]);
    let err = c.expect_err("no ALPN overlap must fail");
    let t = tls_error(&err);
    assert_eq!(t.op, "handshake");
    let msg = t.message.to_lowercase();
    assert!(
        msg.contains("alert") && (msg.contains("no application protocol") || msg.contains("120")),
        "{}",
        t.message
    );
    let serr = s.expect_err("server must fail too");
    assert_eq!(tls_error(&serr).op, "handshake");
}

#[test]
fn alpn_h2_server_http11_client_falls_back() {
    // Go issue 46310: server offers h2, client only http/1.1 → success without ALPN.
    if !enabled() {
        return;
    }
    let (c, s) = alpn_case(&["h2"], &["http/1.1"]);
    assert_eq!(c.expect("fallback").alpn_protocol, None);
    assert_eq!(s.expect("fallback").alpn_protocol, None);
    let (c, s) = alpn_case(
        &["proto1", "h2", "proto2"],
        &["proto3", "http/1.1", "proto4"],
    );
    assert_eq!(c.expect("fallback").alpn_protocol, None);
    assert_eq!(s.expect("fallback").alpn_protocol, None);
}

#[test]
fn alpn_one_side_without() {
    // Go: "if either side has no protocols ⇒ "" and no error".
    if !enabled() {
        return;
    }
    let (c, s) = alpn_case(&["h2"], &[]);
    assert_eq!(c.unwrap().alpn_protocol, None);
    assert_eq!(s.unwrap().alpn_protocol, None);
    let (c, s) = alpn_case(&[], &["h2", "http/1.1"]);
    assert_eq!(c.unwrap().alpn_protocol, None);
    assert_eq!(s.unwrap().alpn_protocol, None);
}

// ------------------------------------------------------------------------------------
// close_notify, close_write, truncation (Reseau "peer read observes clean EOF after
// close_notify", "close_write ...", main "truncated records → unexpected EOF"; Go
// TestConnCloseWrite).
// ------------------------------------------------------------------------------------

#[test]
fn peer_close_notify_reads_as_eof() {
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<()> {
        c.handshake()?;
        c.write(b"last words")?;
        c.close()
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    let mut got = Vec::new();
    (&conn).read_to_end(&mut got).expect("read to clean EOF");
    assert_eq!(got, b"last words");
    assert_eq!(conn.read(&mut [0u8; 8]).unwrap(), 0, "EOF again");
    assert!(conn.eof().unwrap());
    assert!(conn.read_available().unwrap().is_empty());
    let mut exact = [0u8; 4];
    assert_eq!(conn.read_full(&mut exact).unwrap(), 0);
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn eof_and_read_available_with_data() {
    // eof() is false while decrypted bytes are waiting; read_available returns them all.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<()> {
        c.write(b"abc")?;
        c.write(b"def")?;
        c.close_write()?;
        let mut b = [0u8; 1];
        c.read(&mut b).map(drop)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    assert!(!conn.eof().unwrap());
    let mut got = Vec::new();
    loop {
        let chunk = conn.read_available().unwrap();
        if chunk.is_empty() {
            break;
        }
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"abcdef");
    assert!(conn.eof().unwrap());
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn close_write_half_closes() {
    // Go TestConnCloseWrite: CloseWrite, then Write → errShutdown; peer reads EOF; this
    // side can still read what the peer sends after.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<Vec<u8>> {
        let mut got = Vec::new();
        (&c).read_to_end(&mut got).expect("server reads to EOF");
        assert!(c.eof()?);
        c.write(b"reply after your close_notify")?;
        c.close_write()?;
        Ok(got)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    conn.write(b"request").unwrap();
    conn.close_write().expect("close_write");
    conn.close_write().expect("close_write is idempotent");
    for _ in 0..2 {
        let err = conn.write(b"more").expect_err("write after close_write");
        assert_eq!(
            tls_error(&err).message,
            "tls: protocol is shutdown",
            "{err}"
        );
        assert!(!err.is_timeout());
    }
    let mut reply = Vec::new();
    (&conn)
        .read_to_end(&mut reply)
        .expect("read after close_write");
    assert_eq!(reply, b"reply after your close_notify");
    assert_eq!(wait(&srv, SAFETY, "server").unwrap(), b"request");
    conn.close().unwrap();
}

#[test]
fn close_write_before_handshake() {
    // Go errEarlyCloseWrite; Reseau "closewrite before handshake complete".
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let conn = tls::client(tcp::connect(ln.addr().unwrap()).unwrap(), &localhost_cfg()).unwrap();
    let err = conn
        .close_write()
        .expect_err("close_write before handshake");
    let t = tls_error(&err);
    assert!(t.message.contains("before handshake complete"), "{err}");
    assert!(!conn.is_handshake_complete());
}

#[test]
fn truncation_without_close_notify_is_unexpected_eof() {
    // Reseau: peer closed TCP without close_notify → TLSError "unexpected EOF" (a truncation
    // attack looks exactly like this; it must not read as a clean EOF).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<Conn> {
        c.handshake()?;
        c.write(b"partial")?;
        // Close the TCP stream underneath: FIN, no close_notify.
        c.net_conn().close()?;
        Ok(c)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    let _server = wait(&srv, SAFETY, "server").expect("server");
    let mut got = [0u8; 7];
    assert_eq!(conn.read_full(&mut got).unwrap(), 7);
    assert_eq!(&got, b"partial");
    let err = conn.read(&mut [0u8; 16]).expect_err("truncated stream");
    let t = tls_error(&err);
    assert_eq!(t.message, "unexpected EOF", "{err:?}");
    assert_eq!(t.op, "read");
    assert!(!err.is_timeout());
    let mut rest = Vec::new();
    let io_err = (&conn)
        .read_to_end(&mut rest)
        .expect_err("never a clean EOF");
    let inner = Error::from_io(&io_err).expect("the reseau error is kept");
    assert_eq!(tls_error(inner).message, "unexpected EOF");
}

#[test]
fn truncation_during_handshake_is_unexpected_eof() {
    // Reseau main: truncated records during the handshake → "unexpected EOF".
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let addr = ln.addr().unwrap();
    let srv = spawn(move || -> reseau::Result<()> {
        let raw = ln.accept()?;
        raw.set_deadline(soon())?;
        // Read the whole ClientHello record, then hang up without a word.
        let mut hdr = [0u8; 5];
        assert_eq!(raw.read_full(&mut hdr)?, 5);
        assert_eq!(hdr[0], 22, "a handshake record");
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        let mut body = vec![0u8; len];
        assert_eq!(raw.read_full(&mut body)?, len);
        raw.close()
    });
    let conn = lazy_client(addr, &localhost_cfg());
    let err = conn.handshake().expect_err("peer hung up mid-handshake");
    let t = tls_error(&err);
    assert_eq!(t.op, "handshake");
    assert_eq!(t.message, "unexpected EOF", "{err:?}");
    wait(&srv, SAFETY, "raw server").expect("raw server");
}

// ------------------------------------------------------------------------------------
// Deadlines (Go TestDeadlineOnWrite; Reseau "write timeout remains sticky", "handshake
// timeout", "handshake deadline with no handshake_timeout", "resolver budget includes
// TLS handshake").
// ------------------------------------------------------------------------------------

#[test]
fn write_timeout_is_sticky() {
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<Conn> {
        // Handshake, then never read.
        c.handshake()?;
        Ok(c)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    let _server = wait(&srv, SAFETY, "server").expect("server");
    conn.set_read_deadline(soon()).unwrap();
    conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let conn = Arc::new(conn);
    let start = Instant::now();
    let rx = {
        let conn = conn.clone();
        spawn(move || {
            let big = vec![0x5au8; 64 << 20];
            // A write cut after some bytes returns Ok(sent); the next one reports the error.
            let mut total = 0usize;
            loop {
                match conn.write(&big) {
                    Ok(n) => {
                        total += n;
                        assert!(total < big.len() * 2, "wrote {total} bytes to a non-reader");
                    }
                    Err(e) => return (e, total),
                }
            }
        })
    };
    let (err, total) = wait(&rx, SAFETY, "write to a non-reader");
    assert!(start.elapsed() >= Duration::from_millis(45));
    assert!(
        total < 64 << 20,
        "a non-reader cannot take 64 MiB ({total})"
    );
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // Permanent: clearing the deadline does not help (the record stream is corrupt).
    conn.set_write_deadline(None).unwrap();
    let start = Instant::now();
    let again = conn.write(b"x").expect_err("sticky write error");
    assert!(start.elapsed() < PROMPT, "fails fast");
    assert!(again.is_timeout(), "{again:?}");
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(std::mem::discriminant(&again), std::mem::discriminant(&err));
    // Through std::io::Write as well.
    let io_err = (&*conn).write_all(b"y").expect_err("sticky via io::Write");
    assert!(
        Error::from_io(&io_err).is_some_and(Error::is_timeout),
        "{io_err:?}"
    );
}

#[test]
fn read_timeout_is_recoverable() {
    // Go: read timeouts are recoverable (only writes are sticky).
    if !enabled() {
        return;
    }
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (addr, srv) = serve_one(server_cfg(), move |c| -> reseau::Result<()> {
        c.handshake()?;
        go_rx.recv_timeout(SAFETY).expect("go signal");
        c.write(b"late data")?;
        let mut b = [0u8; 5];
        assert_eq!(c.read_full(&mut b)?, 5);
        assert_eq!(&b, b"still");
        c.close()
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    let start = Instant::now();
    conn.set_read_deadline(Some(start + Duration::from_millis(100)))
        .unwrap();
    let err = conn.read(&mut [0u8; 16]).expect_err("nothing to read");
    assert!(start.elapsed() >= Duration::from_millis(95));
    assert!(start.elapsed() < PROMPT * 2);
    assert!(err.is_timeout(), "{err:?}");
    // Again, immediately (the deadline is in the past): still a timeout, no hang.
    assert!(conn.read(&mut [0u8; 16]).unwrap_err().is_timeout());
    assert!(conn.eof().unwrap_err().is_timeout());
    // Clear it: the conn still works both ways.
    conn.set_read_deadline(soon()).unwrap();
    go_tx.send(()).unwrap();
    let mut got = [0u8; 9];
    assert_eq!(conn.read_full(&mut got).unwrap(), 9);
    assert_eq!(&got, b"late data");
    conn.write(b"still").unwrap();
    let mut rest = Vec::new();
    (&conn).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn handshake_timeout_restores_no_deadline() {
    // Reseau "handshake timeout surfaces TLSHandshakeTimeoutError (silent TCP peer, 200 ms;
    // deadlines restored)".
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let raw_client = tcp::connect(ln.addr().unwrap()).unwrap();
    let raw_server = ln.accept().unwrap();
    raw_server.set_deadline(soon()).unwrap();
    let cfg = Config {
        handshake_timeout: Some(Duration::from_millis(200)),
        ..localhost_cfg()
    };
    let conn = tls::client(raw_client, &cfg).unwrap();
    let start = Instant::now();
    let err = conn.handshake().expect_err("silent server");
    let took = start.elapsed();
    assert!(
        matches!(err, Error::TlsHandshakeTimeout(d) if d == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert!(took >= Duration::from_millis(195), "{took:?}");
    assert!(took < PROMPT, "{took:?}");
    // Sticky.
    assert!(matches!(
        conn.handshake(),
        Err(Error::TlsHandshakeTimeout(_))
    ));
    // No deadline was set before, so none is left behind: a plain TCP read on the conn
    // waits past 200 ms and gets the byte the peer sends after 300 ms.
    let conn = Arc::new(conn);
    let c2 = conn.clone();
    let reader = spawn(move || {
        let mut b = [0u8; 1];
        c2.net_conn().read(&mut b).map(|n| (n, b[0]))
    });
    thread::sleep(Duration::from_millis(300));
    raw_server.write(b"z").unwrap();
    let got = wait(&reader, SAFETY, "tcp read after the failed handshake");
    assert_eq!(got.expect("no stale handshake deadline"), (1, b'z'));
}

#[test]
fn handshake_timeout_restores_earlier_deadline() {
    // Reseau: rd/wd identical before/after a timed-out handshake.
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let raw_client = tcp::connect(ln.addr().unwrap()).unwrap();
    let _raw_server = ln.accept().unwrap();
    let cfg = Config {
        handshake_timeout: Some(Duration::from_millis(200)),
        ..localhost_cfg()
    };
    let conn = tls::client(raw_client, &cfg).unwrap();
    let start = Instant::now();
    let read_deadline = start + Duration::from_millis(1200);
    conn.set_read_deadline(Some(read_deadline)).unwrap();
    let err = conn.handshake().expect_err("silent server");
    assert!(matches!(err, Error::TlsHandshakeTimeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1100),
        "the 200 ms cap won"
    );
    // The caller's read deadline is back: a TCP read times out at it, not before, not never.
    let conn = Arc::new(conn);
    let c2 = conn.clone();
    let reader = spawn(move || c2.net_conn().read(&mut [0u8; 1]));
    let res = wait(&reader, SAFETY, "tcp read with the restored deadline");
    assert!(matches!(res, Err(Error::DeadlineExceeded)), "{res:?}");
    assert!(
        Instant::now() >= read_deadline,
        "timed out {:?} before the caller's deadline",
        read_deadline - Instant::now()
    );
}

#[test]
fn earlier_transport_deadline_is_plain_io_timeout() {
    // Reseau main: "earlier transport deadline keeps i/o timeout identity" (not the
    // handshake-timeout error) and "no-handshake-timeout → i/o timeout".
    if !enabled() {
        return;
    }
    for handshake_timeout in [None, Some(Duration::from_secs(10))] {
        let ln = silent_listener();
        let raw_client = tcp::connect(ln.addr().unwrap()).unwrap();
        let _raw_server = ln.accept().unwrap();
        let cfg = Config {
            handshake_timeout,
            ..localhost_cfg()
        };
        let conn = tls::client(raw_client, &cfg).unwrap();
        let start = Instant::now();
        conn.set_deadline(Some(start + Duration::from_millis(100)))
            .unwrap();
        let err = conn.handshake().expect_err("silent server");
        let took = start.elapsed();
        assert!(err.is_timeout(), "{handshake_timeout:?}: {err:?}");
        assert!(
            !matches!(err, Error::TlsHandshakeTimeout(_)),
            "{handshake_timeout:?}: the caller's deadline fired, not the cap: {err:?}"
        );
        let t = tls_error(&err);
        assert_eq!(t.op, "handshake");
        assert!(
            matches!(t.cause.as_deref(), Some(Error::DeadlineExceeded)),
            "{err:?}"
        );
        assert!(
            took >= Duration::from_millis(95) && took < PROMPT,
            "{took:?}"
        );
    }
}

#[test]
fn dial_budget_covers_stalled_handshake() {
    // Reseau "host resolver timeout budget includes TLS handshake time (250 ms budget,
    // silent peer → i/o timeout in < 700 ms)"; Go TestDialTimeout / tls.Dialer.
    if !enabled() {
        return;
    }
    let ln = silent_listener(); // the kernel completes TCP handshakes; nobody speaks TLS
    let dialer = Dialer {
        timeout: Some(Duration::from_millis(250)),
        ..Dialer::default()
    };
    let addr = ln.addr().unwrap().to_string();
    let cfg = client_cfg();
    let start = Instant::now();
    let rx = spawn(move || dialer.dial_tls("tcp", &addr, &cfg).map(drop));
    let err = wait(&rx, SAFETY, "dial_tls").expect_err("stalled handshake");
    let took = start.elapsed();
    assert!(matches!(err, Error::Op(_)), "{err:?}");
    assert_eq!(err.op(), Some("dial"));
    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= Duration::from_millis(240), "{took:?}");
    // Reseau asserts < 700 ms; a little slack for a loaded CI box.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // The TCP connect did happen (the budget was spent in the handshake).
    ln.accept().expect("the dial reached the listener");
}

#[test]
fn dial_deadline_covers_stalled_handshake() {
    // Same with Dialer::deadline, and a handshake_timeout longer than the budget: the
    // budget wins (a dial timeout, not a handshake timeout).
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let dialer = Dialer {
        deadline: Some(Instant::now() + Duration::from_millis(250)),
        ..Dialer::default()
    };
    let addr = ln.addr().unwrap().to_string();
    let cfg = Config {
        handshake_timeout: Some(Duration::from_secs(10)),
        ..client_cfg()
    };
    let rx = spawn(move || dialer.dial_tls("tcp", &addr, &cfg).map(drop));
    let err = wait(&rx, Duration::from_millis(1500), "dial_tls").expect_err("stalled");
    assert_eq!(err.op(), Some("dial"));
    assert!(err.is_timeout(), "{err:?}");
    match &err {
        Error::Op(op) => assert!(
            !matches!(op.err, Error::TlsHandshakeTimeout(_)),
            "the dial budget ran out first: {err:?}"
        ),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------
// Close (Reseau "blocked read unblocks when local close races", "operations fail fast
// after close"; Go TestConnCloseBreakingWrite in spirit).
// ------------------------------------------------------------------------------------

#[test]
fn close_unblocks_a_blocked_read() {
    if !enabled() {
        return;
    }
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (addr, srv) = serve_one(server_cfg(), move |c| -> reseau::Result<()> {
        c.handshake()?;
        let _ = done_rx.recv_timeout(SAFETY);
        Ok(())
    });
    let conn = Arc::new(tls::connect(addr, &client_cfg()).unwrap());
    conn.set_deadline(soon()).unwrap();
    let c2 = conn.clone();
    let reader = spawn(move || c2.read(&mut [0u8; 16]));
    thread::sleep(Duration::from_millis(100));
    assert!(
        reader.try_recv().is_err(),
        "the read should still be blocked"
    );
    let start = Instant::now();
    conn.close().unwrap();
    let res = wait(&reader, PROMPT * 2, "blocked read after close");
    assert!(matches!(res, Err(Error::Closed)), "{res:?}");
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());
    // Fail fast afterwards.
    let start = Instant::now();
    assert!(matches!(conn.read(&mut [0u8; 1]), Err(Error::Closed)));
    assert!(matches!(conn.write(b"x"), Err(Error::Closed)));
    assert!(matches!(conn.eof(), Err(Error::Closed)));
    assert!(matches!(conn.close_write(), Err(Error::Closed)));
    assert!(conn.set_deadline(None).is_err());
    assert!(start.elapsed() < PROMPT);
    conn.close().expect("close is idempotent");
    assert!(!conn.is_open());
    let _ = done_tx.send(());
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn close_unblocks_a_blocked_handshake() {
    // Go TestCloseClientConnectionOnIdleServer: Close while Handshake blocks → a
    // non-timeout error, promptly.
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let raw = tcp::connect(ln.addr().unwrap()).unwrap();
    let _peer = ln.accept().unwrap();
    let conn = Arc::new(tls::client(raw, &localhost_cfg()).unwrap());
    conn.set_deadline(soon()).unwrap();
    let c2 = conn.clone();
    let hs = spawn(move || c2.handshake());
    thread::sleep(Duration::from_millis(100));
    conn.close().unwrap();
    let res = wait(&hs, PROMPT * 2, "blocked handshake after close");
    let err = res.expect_err("closed mid-handshake");
    assert!(matches!(err, Error::Closed), "{err:?}");
    assert!(!err.is_timeout());
    assert!(matches!(conn.handshake(), Err(Error::Closed)));
}

#[test]
fn operations_after_close_fail_fast() {
    // Reseau "operations fail fast after close (double close OK; handshake!/read!/write)".
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let conn = tls::client(tcp::connect(ln.addr().unwrap()).unwrap(), &localhost_cfg()).unwrap();
    conn.close().unwrap();
    conn.close().unwrap();
    let start = Instant::now();
    assert!(matches!(conn.handshake(), Err(Error::Closed)));
    assert!(matches!(conn.read(&mut [0u8; 1]), Err(Error::Closed)));
    assert!(matches!(conn.write(b"x"), Err(Error::Closed)));
    assert!(start.elapsed() < PROMPT);
    assert!(!conn.is_open());
    assert!(format!("{conn:?}").contains("closed"));
}

#[test]
fn close_breaks_a_blocked_write() {
    // Go TestConnCloseBreakingWrite: Close while a Write is blocked returns promptly; the
    // Write fails; a second Close is fine here (idempotent, unlike Go's ErrClosed).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<Conn> {
        c.handshake()?;
        Ok(c) // and never read
    });
    let conn = Arc::new(tls::connect(addr, &client_cfg()).unwrap());
    conn.set_deadline(soon()).unwrap();
    let _server = wait(&srv, SAFETY, "server").expect("server");
    let c2 = conn.clone();
    let writer = spawn(move || {
        let big = vec![1u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match c2.write(&big) {
                Ok(n) => total += n,
                Err(e) => return (e, total),
            }
            assert!(total < 256 << 20, "a non-reader took {total} bytes");
        }
    });
    thread::sleep(Duration::from_millis(300));
    assert!(writer.try_recv().is_err(), "the write should be blocked");
    let start = Instant::now();
    conn.close().unwrap();
    let (err, _) = wait(&writer, PROMPT * 2, "blocked write after close");
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());
    assert!(matches!(err, Error::Closed), "{err:?}");
    conn.close().expect("second close");
    assert!(matches!(conn.write(b"x"), Err(Error::Closed)));
}

#[test]
fn pending_bytes_are_returned_past_the_read_deadline() {
    // Go tls.Conn.Read serves already-decrypted bytes without touching the socket (and so
    // without the deadline); Reseau checks SSL_pending before parking.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<()> {
        c.write(b"0123456789")?;
        let mut b = [0u8; 1];
        c.read(&mut b).map(drop)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    let mut one = [0u8; 1];
    assert_eq!(conn.read(&mut one).unwrap(), 1);
    assert_eq!(one[0], b'0');
    conn.set_read_deadline(Some(Instant::now())).unwrap();
    assert!(!conn.eof().unwrap(), "decrypted bytes are waiting");
    let mut rest = [0u8; 9];
    assert_eq!(conn.read_full(&mut rest).unwrap(), 9);
    assert_eq!(&rest, b"123456789");
    // Now nothing is buffered: the past deadline applies.
    assert!(conn.read(&mut one).unwrap_err().is_timeout());
    conn.set_read_deadline(soon()).unwrap();
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn concurrent_read_and_write_during_handshake() {
    // Go TestHandshakeRace: a read and a write racing to drive the handshake — no
    // deadlock, both complete.
    if !enabled() {
        return;
    }
    for round in 0..8 {
        let (addr, srv) = serve_one(server_cfg(), echo);
        let conn = Arc::new(lazy_client(addr, &localhost_cfg()));
        let barrier = Arc::new(Barrier::new(2));
        let r = {
            let (conn, barrier) = (conn.clone(), barrier.clone());
            spawn(move || {
                barrier.wait();
                let mut got = [0u8; 4];
                conn.read_full(&mut got).map(|n| got[..n].to_vec())
            })
        };
        let w = {
            let (conn, barrier) = (conn.clone(), barrier.clone());
            spawn(move || {
                barrier.wait();
                conn.write(b"race")
            })
        };
        assert_eq!(
            wait(&w, SAFETY, "writer").expect("write"),
            4,
            "round {round}"
        );
        assert_eq!(
            wait(&r, SAFETY, "reader").expect("read"),
            b"race",
            "round {round}"
        );
        conn.close().unwrap();
        wait(&srv, SAFETY, "server").expect("server");
    }
}

// ------------------------------------------------------------------------------------
// Robustness and concurrency.
// ------------------------------------------------------------------------------------

#[test]
fn garbage_client_does_not_break_the_listener() {
    // Reseau main: non-TLS first record → handshake error; Go TestClose-style robustness.
    if !enabled() {
        return;
    }
    let ln = tls_listener(server_cfg());
    let addr = ln.addr().unwrap();
    let srv = spawn(move || {
        let bad = ln.accept().expect("accept the garbage client");
        bad.set_deadline(soon()).unwrap();
        let bad_res = bad.handshake();
        drop(bad);
        let good = ln.accept().expect("accept after garbage");
        good.set_deadline(soon()).unwrap();
        (bad_res, echo(good))
    });
    let raw = tcp::connect(addr).unwrap();
    raw.set_deadline(soon()).unwrap();
    raw.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // Whatever the server answers (an alert, or nothing), it is not an HTTP response and
    // the connection ends.
    let mut answer = Vec::new();
    let _ = (&raw).read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let conn = tls::connect(addr, &client_cfg()).expect("a proper client afterwards");
    conn.set_deadline(soon()).unwrap();
    round_trip(&conn, b"still serving");
    conn.close().unwrap();
    let (bad_res, good_res) = wait(&srv, SAFETY, "server");
    let err = bad_res.expect_err("garbage must fail the handshake");
    assert_eq!(tls_error(&err).op, "handshake", "{err:?}");
    good_res.expect("good client served");
}

#[test]
fn client_hangs_up_before_client_hello() {
    // Go TestClose: peer closes before ClientHello → server handshake fails (no panic, no hang).
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), |c| c.handshake());
    let raw = tcp::connect(addr).unwrap();
    raw.close().unwrap();
    let err = wait(&srv, SAFETY, "server").expect_err("no ClientHello");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_timeout());
}

#[test]
fn concurrent_reader_and_writer() {
    // Reseau: "Safe for one concurrent reader + one concurrent writer"; 4 MiB each way.
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), echo);
    let conn = Arc::new(tls::connect(addr, &client_cfg()).unwrap());
    conn.set_deadline(soon()).unwrap();
    const N: usize = 4 << 20;
    let data: Arc<Vec<u8>> = Arc::new((0..N).map(|i| (i % 251) as u8).collect());
    let w = {
        let conn = conn.clone();
        let data = data.clone();
        spawn(move || -> reseau::Result<()> {
            for chunk in data.chunks(100_003) {
                assert_eq!(conn.write(chunk)?, chunk.len());
            }
            conn.close_write()
        })
    };
    let r = {
        let conn = conn.clone();
        spawn(move || -> reseau::Result<Vec<u8>> {
            let mut got = Vec::with_capacity(N);
            let mut buf = vec![0u8; 50_000];
            loop {
                match conn.read(&mut buf)? {
                    0 => return Ok(got),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    wait(&w, SAFETY, "writer").expect("writer");
    let got = wait(&r, SAFETY, "reader").expect("reader");
    assert_eq!(got.len(), N);
    assert!(got == *data, "echoed bytes differ");
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn many_sequential_connections_share_a_listener() {
    if !enabled() {
        return;
    }
    let ln = tls_listener(server_cfg());
    let addr = ln.addr().unwrap();
    let srv = spawn(move || -> reseau::Result<()> {
        for _ in 0..20 {
            let c = ln.accept()?;
            c.set_deadline(soon())?;
            echo(c)?;
        }
        Ok(())
    });
    for i in 0..20 {
        let conn = tls::connect(addr, &client_cfg()).unwrap();
        conn.set_deadline(soon()).unwrap();
        round_trip(&conn, format!("conn {i}").as_bytes());
        conn.close().unwrap();
    }
    wait(&srv, SAFETY, "server").expect("server");
}

// ------------------------------------------------------------------------------------
// Debug strings and the listener (Reseau "show methods summarize TLS endpoints and
// handshake state", "listener deadline, open state, and local_addr alias").
// ------------------------------------------------------------------------------------

#[test]
fn debug_strings() {
    if !enabled() {
        return;
    }
    let ln = tls_listener(Config {
        alpn_protocols: vec!["h2".into()],
        ..server_cfg()
    });
    let laddr = ln.addr().unwrap();
    assert_eq!(format!("{ln:?}"), format!("tls::Listener({laddr}, active)"));
    let client = lazy_client(
        laddr,
        &Config {
            alpn_protocols: vec!["h2".into()],
            ..localhost_cfg()
        },
    );
    let server = ln.accept().unwrap();
    server.set_deadline(soon()).unwrap();
    let (cl, cr) = (client.local_addr().unwrap(), client.remote_addr().unwrap());
    assert_eq!(cr, laddr);
    assert_eq!(server.remote_addr(), Some(cl));
    assert_eq!(
        format!("{client:?}"),
        format!("tls::Conn({cl} => {cr}, client, handshake pending)")
    );
    assert_eq!(
        format!("{server:?}"),
        format!("tls::Conn({cr} => {cl}, server, handshake pending)")
    );
    let server = Arc::new(server);
    let s2 = server.clone();
    let hs = spawn(move || s2.handshake());
    client.handshake().unwrap();
    wait(&hs, SAFETY, "server handshake").unwrap();
    assert_eq!(
        format!("{client:?}"),
        format!("tls::Conn({cl} => {cr}, client, TLSv1.3, h2)")
    );
    assert_eq!(
        format!("{server:?}"),
        format!("tls::Conn({cr} => {cl}, server, TLSv1.3, h2)")
    );
    client.close().unwrap();
    assert_eq!(
        format!("{client:?}"),
        format!("tls::Conn({cl} => {cr}, client, closed)")
    );
    ln.close().unwrap();
    assert!(!ln.is_open());
    assert_eq!(format!("{ln:?}"), format!("tls::Listener({laddr}, closed)"));
}

#[test]
fn debug_string_without_alpn() {
    if !enabled() {
        return;
    }
    let (addr, srv) = serve_one(server_cfg(), echo);
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    let s = format!("{conn:?}");
    assert!(s.ends_with(", client, TLSv1.3)"), "{s}");
    conn.close().unwrap();
    wait(&srv, SAFETY, "server").expect("server");
}

#[test]
fn listener_deadline_and_close() {
    if !enabled() {
        return;
    }
    let ln = tls::listen(tcp::loopback_addr(0), server_cfg()).unwrap();
    assert!(ln.is_open());
    assert_eq!(ln.addr(), ln.local_addr());
    assert_eq!(ln.addr(), ln.net_listener().addr());
    // A deadline already in the past: a bare DeadlineExceeded, at once.
    ln.set_deadline(Some(Instant::now())).unwrap();
    let start = Instant::now();
    match ln.accept() {
        Err(Error::DeadlineExceeded) => {}
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert!(start.elapsed() < PROMPT);
    // A short one in the future.
    let start = Instant::now();
    ln.set_deadline(Some(start + Duration::from_millis(100)))
        .unwrap();
    assert!(matches!(ln.accept(), Err(Error::DeadlineExceeded)));
    assert!(start.elapsed() >= Duration::from_millis(95));
    // accept returns a lazy Conn even for a plain TCP client (Reseau).
    ln.set_deadline(soon()).unwrap();
    let raw = tcp::connect(ln.addr().unwrap()).unwrap();
    let lazy = ln.accept().expect("accept a plain TCP client");
    assert!(lazy.is_server());
    assert!(!lazy.is_handshake_complete());
    drop(raw);
    // A blocked accept wakes with Closed when the listener closes.
    let ln = Arc::new(ln);
    let l2 = ln.clone();
    let acc = spawn(move || l2.accept().map(drop));
    thread::sleep(Duration::from_millis(100));
    ln.close().unwrap();
    let res = wait(&acc, PROMPT * 2, "blocked accept after close");
    assert!(matches!(res, Err(Error::Closed)), "{res:?}");
    ln.close().expect("idempotent");
    assert!(!ln.is_open());
}

#[test]
fn default_ca_comes_from_ssl_cert_file() {
    // SPEC §6: the default CA is `ca_file`, else `SSL_CERT_FILE`, else the system bundle.
    // The environment is process-wide, so the SSL_CERT_FILE half runs in a child process
    // (this test binary re-run with the variable set).
    if !enabled() {
        return;
    }
    let no_ca = Config {
        server_name: Some("localhost".into()),
        ..Config::default()
    };
    let connect_without_ca_file = || {
        let (addr, srv) = serve_one(server_cfg(), echo);
        let res = tls::connect(addr, &no_ca).map(|c| round_trip(&c, b"ca"));
        let _ = wait(&srv, SAFETY, "server");
        res
    };
    if std::env::var_os("RESEAU_TEST_CERT_FILE_CHILD").is_some() {
        connect_without_ca_file().expect("SSL_CERT_FILE supplies the trusted CA");
        return;
    }
    if std::env::var_os("SSL_CERT_FILE").is_none() {
        // Control: the system bundle does not trust the test CA.
        let err = connect_without_ca_file().expect_err("system bundle trusts the test CA?");
        assert!(tls_error(&err).message.contains("verify"), "{err}");
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "default_ca_comes_from_ssl_cert_file",
            "--nocapture",
        ])
        .env("RESEAU_TEST_CERT_FILE_CHILD", "1")
        .env("SSL_CERT_FILE", cert!("ca.pem"))
        .env("RESEAU_RUN_TLS_TESTS", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + SAFETY;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("child did not finish within {SAFETY:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "child failed: {status}");
}

// ------------------------------------------------------------------------------------
// Review fixes: the handshake overlay vs. concurrent deadline setters, sticky faults
// after close_write and their Display, read-ahead records, renewed certificate files.
// ------------------------------------------------------------------------------------

#[test]
fn read_deadline_set_during_the_handshake_survives_the_overlay() {
    // The handshake_timeout overlay must restore only what it changed: a read deadline
    // another thread sets while the handshake runs stays in force after it.
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let raw_client = tcp::connect(ln.addr().unwrap()).unwrap();
    let raw_server = ln.accept().unwrap();
    raw_server.set_deadline(soon()).unwrap();
    let cfg = Config {
        handshake_timeout: Some(SAFETY),
        ..localhost_cfg()
    };
    let conn = Arc::new(tls::client(raw_client, &cfg).unwrap());
    // What the overlay saved: a lost update falls back to this, far past the bound below,
    // so the bug fails the test instead of hanging it.
    conn.set_deadline(Some(Instant::now() + Duration::from_secs(8)))
        .unwrap();
    let c2 = conn.clone();
    let hs = spawn(move || c2.handshake());
    // The ClientHello is here, the server has not answered: the client's handshake (and
    // its overlay) is in progress.
    assert!(!raw_server.eof().unwrap(), "ClientHello expected");
    assert!(!conn.is_handshake_complete());
    let deadline = Instant::now() + Duration::from_secs(1);
    conn.set_read_deadline(Some(deadline)).unwrap();
    let server = tls::server(raw_server, &server_cfg()).unwrap();
    server.handshake().expect("server handshake");
    wait(&hs, SAFETY, "client handshake").expect("client handshake");
    let c3 = conn.clone();
    let reader = spawn(move || c3.read(&mut [0u8; 1]));
    let res = wait(&reader, SAFETY, "read with no data");
    let now = Instant::now();
    assert!(matches!(res, Err(Error::DeadlineExceeded)), "{res:?}");
    assert!(now >= deadline, "fired {:?} early", deadline - now);
    assert!(
        now - deadline < Duration::from_millis(1500),
        "the read ran {:?} past the deadline set during the handshake",
        now - deadline
    );
    drop(server);
}

/// A client whose write timed out against a server that never reads: the conn, the
/// error the write returned, and the server conn (kept open).
fn timed_out_writer() -> (Arc<Conn>, Error, Conn) {
    let (addr, srv) = serve_one(server_cfg(), |c| -> reseau::Result<Conn> {
        c.handshake()?;
        Ok(c)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    let server = wait(&srv, SAFETY, "server").expect("server");
    conn.set_read_deadline(soon()).unwrap();
    conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let conn = Arc::new(conn);
    let c2 = conn.clone();
    let rx = spawn(move || {
        let big = vec![0x5au8; 64 << 20];
        loop {
            if let Err(e) = c2.write(&big) {
                return e;
            }
        }
    });
    let err = wait(&rx, SAFETY, "write to a non-reader");
    assert!(err.is_timeout(), "{err:?}");
    (conn, err, server)
}

#[test]
fn close_write_after_a_write_timeout_returns_the_sticky_fault() {
    // The record stream is corrupt after a cut write, so close_notify cannot be sent
    // either: close_write reports the stored fault, not whatever OpenSSL says next.
    if !enabled() {
        return;
    }
    let (conn, err, _server) = timed_out_writer();
    conn.set_write_deadline(soon()).unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        let again = conn
            .close_write()
            .expect_err("close_write after a cut write");
        assert!(start.elapsed() < PROMPT, "fails fast");
        assert!(again.is_timeout(), "{again:?}");
        assert_eq!(again.to_string(), err.to_string());
        assert_eq!(tls_error(&again).op, "write");
    }
    // Writes still replay the same fault.
    assert_eq!(conn.write(b"x").unwrap_err().to_string(), err.to_string());
}

#[test]
fn sticky_timeout_display_says_it_once() {
    // The fault is stored as a recipe and replayed; its Display names the timeout once.
    if !enabled() {
        return;
    }
    let (conn, err, _server) = timed_out_writer();
    let again = conn.write(b"x").expect_err("sticky");
    for e in [&err, &again] {
        let text = e.to_string();
        assert_eq!(text.matches("i/o timeout").count(), 1, "{text:?}");
        assert!(text.starts_with("tls write: "), "{text:?}");
        assert!(
            matches!(tls_error(e).cause.as_deref(), Some(Error::DeadlineExceeded)),
            "{e:?}"
        );
    }
    assert_eq!(again.to_string(), err.to_string());
    // The handshake's own deadline error reads the same way.
    let ln = silent_listener();
    let raw = tcp::connect(ln.addr().unwrap()).unwrap();
    let _peer = ln.accept().unwrap();
    let hs = tls::client(raw, &localhost_cfg()).unwrap();
    hs.set_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let first = hs.handshake().expect_err("silent server");
    let replayed = hs.handshake().expect_err("sticky handshake failure");
    for e in [&first, &replayed] {
        let text = e.to_string();
        assert_eq!(text.matches("i/o timeout").count(), 1, "{text:?}");
        assert!(text.starts_with("tls handshake: "), "{text:?}");
    }
    assert_eq!(first.to_string(), replayed.to_string());
}

#[test]
fn records_buffered_by_read_ahead_count_as_available() {
    // With read_ahead OpenSSL pulls several records off the socket at once; SSL_pending
    // only counts the decrypted one. The rest must still count as readable data: for
    // bytes_available, eof, read_available and a read past the deadline (Go serves
    // records already read from the socket without touching it).
    if !enabled() {
        return;
    }
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let (addr, srv) = serve_one(server_cfg(), move |c| -> reseau::Result<Conn> {
        c.write(b"x")?;
        let mut ack = [0u8; 3];
        assert_eq!(c.read_full(&mut ack)?, 3);
        // Three records in one burst.
        for r in [b"a", b"b", b"c"] {
            c.write(r)?;
        }
        sent_tx.send(()).unwrap();
        Ok(c)
    });
    let conn = tls::connect(addr, &client_cfg()).unwrap();
    conn.set_deadline(soon()).unwrap();
    let mut one = [0u8; 1];
    // Session tickets and "x": the socket is drained of everything sent so far.
    assert_eq!(conn.read(&mut one).unwrap(), 1);
    assert_eq!(&one, b"x");
    conn.write(b"ack").unwrap();
    sent_rx.recv_timeout(SAFETY).expect("server wrote");
    // Each 1-byte TLS 1.3 record is 23 bytes on the wire.
    let end = Instant::now() + SAFETY;
    while conn.net_conn().bytes_available().unwrap() < 3 * 23 {
        assert!(Instant::now() < end, "records did not arrive");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(conn.read(&mut one).unwrap(), 1);
    assert_eq!(&one, b"a");
    // "b" and "c" left the kernel with "a" and wait, undecrypted, in OpenSSL.
    assert_eq!(conn.net_conn().bytes_available().unwrap(), 0);
    assert!(conn.bytes_available() >= 1, "records held by read_ahead");
    conn.set_read_deadline(Some(Instant::now())).unwrap();
    assert!(!conn.eof().unwrap(), "records are waiting");
    assert_eq!(conn.read_available().unwrap(), b"bc");
    assert_eq!(conn.bytes_available(), 0);
    assert!(conn.read(&mut one).unwrap_err().is_timeout());
    conn.set_read_deadline(soon()).unwrap();
    let server = wait(&srv, SAFETY, "server").expect("server");
    // Past the deadline too: a fresh burst, read one record, then the rest with the
    // deadline already gone.
    server.write(b"d").unwrap();
    server.write(b"e").unwrap();
    let end = Instant::now() + SAFETY;
    while conn.net_conn().bytes_available().unwrap() < 2 * 23 {
        assert!(Instant::now() < end, "records did not arrive");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(conn.read(&mut one).unwrap(), 1);
    assert_eq!(&one, b"d");
    conn.set_read_deadline(Some(Instant::now())).unwrap();
    assert_eq!(
        conn.read(&mut one).unwrap(),
        1,
        "buffered record past the deadline"
    );
    assert_eq!(&one, b"e");
    conn.close().unwrap();
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("reseau-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn renewed_certificate_files_are_picked_up_by_new_connections() {
    // A certificate renewed in place (same paths) serves new connections; connections
    // made before keep the old one.
    if !enabled() {
        return;
    }
    let dir = TempDir::new("renew");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("cert.key"));
    std::fs::copy(cert!("server.pem"), &cert).unwrap();
    std::fs::copy(cert!("server.key"), &key).unwrap();
    let ln = tls_listener(Config {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        ..Config::default()
    });
    let addr = ln.addr().unwrap();
    let srv = spawn(move || {
        // Five clients: old, mid-renewal, wrong name, renewed, and after the swap back.
        for _ in 0..5 {
            let c = ln.accept().expect("accept");
            c.set_deadline(soon()).unwrap();
            thread::spawn(move || echo(c));
        }
    });
    let old = tls::connect(addr, &localhost_cfg()).expect("server.pem verifies");
    old.set_deadline(soon()).unwrap();
    round_trip(&old, b"before");
    // Renew in place: same paths (and inodes), a certificate for another name. Half
    // written (the new certificate with the old key), it does not load: the listener
    // keeps serving the previous pair.
    std::fs::copy(cert!("wronghost.pem"), &cert).unwrap();
    let mid = tls::connect(addr, &localhost_cfg()).expect("previous pair while half renewed");
    mid.set_deadline(soon()).unwrap();
    round_trip(&mid, b"mid-renewal");
    mid.close().unwrap();
    std::fs::copy(cert!("wronghost.key"), &key).unwrap();
    let err = tls::connect(addr, &localhost_cfg()).expect_err("new conn sees wronghost.pem");
    let msg = &tls_error(&err).message;
    assert!(msg.contains("mismatch") || msg.contains("verify"), "{err}");
    let ok = tls::connect(
        addr,
        &Config {
            server_name: Some("wrong.example".into()),
            ..client_cfg()
        },
    )
    .expect("the renewed certificate verifies for its own name");
    ok.set_deadline(soon()).unwrap();
    round_trip(&ok, b"renewed");
    // The old connection keeps working with its session.
    round_trip(&old, b"after");
    // Renewed again by rename (a new inode), back to server.pem.
    let (tmp_cert, tmp_key) = (dir.0.join("new.pem"), dir.0.join("new.key"));
    std::fs::copy(cert!("server.pem"), &tmp_cert).unwrap();
    std::fs::copy(cert!("server.key"), &tmp_key).unwrap();
    std::fs::rename(&tmp_key, &key).unwrap();
    std::fs::rename(&tmp_cert, &cert).unwrap();
    let back = tls::connect(addr, &localhost_cfg()).expect("server.pem again");
    back.set_deadline(soon()).unwrap();
    round_trip(&back, b"back");
    for c in [old, ok, back] {
        c.close().unwrap();
    }
    wait(&srv, SAFETY, "accept loop");
}

#[test]
fn config_file_errors_read_like_go() {
    if !enabled() {
        return;
    }
    let nowhere = cert!("does-not-exist.pem");
    let msg = assert_server_config_rejected(
        &Config {
            cert_file: Some(nowhere.clone()),
            ..server_cfg()
        },
        "missing cert",
    );
    assert_eq!(
        msg,
        format!("open {}: no such file or directory", nowhere.display())
    );
    let dir = TempDir::new("pem");
    let (empty, text) = (dir.0.join("empty.pem"), dir.0.join("text.pem"));
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(&text, b"this is not PEM at all\n").unwrap();
    for (cfg, input, path) in [
        (
            Config {
                cert_file: Some(empty.clone()),
                ..server_cfg()
            },
            "certificate",
            &empty,
        ),
        (
            Config {
                cert_file: Some(text.clone()),
                ..server_cfg()
            },
            "certificate",
            &text,
        ),
        (
            Config {
                key_file: Some(empty.clone()),
                ..server_cfg()
            },
            "key",
            &empty,
        ),
    ] {
        let msg = assert_server_config_rejected(&cfg, input);
        let want = format!(
            "tls: failed to find any PEM data in {input} input ({})",
            path.display()
        );
        assert!(msg.starts_with(&want), "{msg:?} should start with {want:?}");
        assert!(msg.len() > want.len(), "OpenSSL's text follows: {msg}");
    }
    let mismatched = Config {
        key_file: Some(cert!("client.key")),
        ..server_cfg()
    };
    let msg = assert_server_config_rejected(&mismatched, "mismatched key");
    assert!(
        msg.starts_with("tls: private key does not match public key"),
        "{msg}"
    );
    assert!(msg.contains("client.key"), "{msg}");
}

/// The handshake error of a TLS client whose plaintext peer writes `greeting` (after
/// reading the ClientHello when `after_hello`) and closes.
fn client_vs_plaintext(greeting: &'static [u8], after_hello: bool) -> Error {
    let ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    let peer = spawn(move || {
        let (mut s, _) = ln.accept().unwrap();
        s.set_read_timeout(Some(SAFETY)).unwrap();
        if after_hello {
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
        }
        let _ = s.write_all(greeting);
        // Let the client read before the FIN.
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
    });
    let c = lazy_client(addr, &localhost_cfg());
    let err = c.handshake().unwrap_err();
    // The sticky handshake failure replays it whole, OpenSSL's text (the cause) too.
    assert_eq!(c.handshake().unwrap_err().to_string(), err.to_string());
    drop(c);
    wait(&peer, SAFETY, "plaintext peer");
    err
}

fn assert_not_tls(err: &Error, what: &str) {
    let t = tls_error(err);
    assert_eq!(
        t.message, "tls: first record does not look like a TLS handshake",
        "{what}: {err}"
    );
    let cause = t.cause.as_ref().map(|c| c.to_string()).unwrap_or_default();
    assert!(
        cause.contains("openssl") && cause.len() > "openssl: ".len(),
        "{what}: OpenSSL's text kept as the cause: {err:?}"
    );
    assert!(!err.is_timeout(), "{what}");
}

#[test]
fn plaintext_peers_read_like_go() {
    if !enabled() {
        return;
    }
    let http = client_vs_plaintext(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        true,
    );
    assert_not_tls(&http, "HTTP server");
    let smtp = client_vs_plaintext(b"220 mail.example.test ESMTP ready\r\n", false);
    assert_not_tls(&smtp, "SMTP server");

    // A plaintext HTTP client talking to a TLS server: the server's handshake error.
    for request in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &b"HELO client.example.test\r\n"[..],
    ] {
        let (addr, rx) = serve_one(server_cfg(), |conn| conn.handshake());
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(SAFETY)).unwrap();
        c.write_all(request).unwrap();
        let err = wait(&rx, SAFETY, "server handshake").unwrap_err();
        assert_not_tls(&err, &String::from_utf8_lossy(request));
    }
}

#[test]
fn a_failed_handshake_reads_the_same_every_time() {
    // The first error a handshake returns is the one later calls replay (sticky, as in
    // Go), whatever layer it came from: here the peer resets the connection mid-way.
    if !enabled() {
        return;
    }
    let ln = silent_listener();
    let addr = ln.addr().unwrap();
    let conn = lazy_client(addr, &localhost_cfg());
    let peer = ln.accept().unwrap();
    peer.abort().unwrap();
    conn.set_deadline(soon()).unwrap();
    let first = conn.handshake().unwrap_err();
    let again = conn.handshake().unwrap_err();
    let write = conn.write(b"x").unwrap_err();
    assert_eq!(first.to_string(), again.to_string());
    assert_eq!(first.to_string(), write.to_string());
    assert_eq!(first.raw_os_error(), again.raw_os_error());
}

#[test]
fn config_server_name_with_nul() {
    // A NUL cannot go into SNI or a host check: a config error before any I/O, not a
    // panic in SSL_set_tlsext_host_name's C string, whether or not the peer is verified.
    if !enabled() {
        return;
    }
    for verify_peer in [true, false] {
        let cfg = Config {
            server_name: Some("local\0host".into()),
            verify_peer,
            ..client_cfg()
        };
        let msg = assert_client_config_rejected(&cfg, "server_name with NUL");
        assert!(msg.contains("server_name"), "{msg}");
    }
}

#[test]
fn empty_server_name_without_verification_sends_no_sni() {
    // Go: an empty ServerName with InsecureSkipVerify handshakes without SNI.
    if !enabled() {
        return;
    }
    let (addr, rx) = serve_one(server_cfg(), echo);
    let cfg = Config {
        server_name: Some(String::new()),
        verify_peer: false,
        ..Config::default()
    };
    let conn = tls::client(tcp::connect(addr).unwrap(), &cfg).expect("empty name, no verification");
    conn.set_deadline(soon()).unwrap();
    round_trip(&conn, b"no sni");
    conn.close().unwrap();
    let st = wait(&rx, Duration::from_secs(10), "server").expect("server handshake");
    assert_eq!(st.server_name, None);
}
