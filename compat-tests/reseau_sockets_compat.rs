//! A port of Reseau.jl's era-A `test/sockets_compat_tests.jl` ("Sockets Compat":
//! "Addr/DNS Utils", "TCP Echo", "LOCAL Echo", "TLS Echo"; `reference/reseau.md` §5.8
//! and §2.8) onto `reseau::sockets`.
//!
//! The era-A network-gated cases (DNS for two AWS names; TLS to www.amazon.com and
//! badssl.com hosts) become loopback equivalents served from `certs/` (see
//! `certs/README.md`); each test names the original it replaces. Only 127.0.0.1 and
//! unix paths under the temp dir are used.
//!
//! TLS tests run only with `RESEAU_RUN_TLS_TESTS=1` (as in Reseau); otherwise they print
//! why and pass. Every blocking call is bounded: sockets and servers get far-off
//! safety deadlines, TLS connects a 10 s budget, helper threads are joined with a bound.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reseau::sockets::{
    ConnectOptions, IPAddr, IPv4, IPv6, LOCALHOST, ListenOptions, TcpServer, TcpSocket, accept,
    connect, connect_with, getaddrinfo, getaddrinfo_of, getalladdrinfo, getipaddrs, getnameinfo,
    getpeername, getsockname, islinklocaladdr, listen, listen_with, listenany,
};
use reseau::tls::{self, TlsVersion};
use reseau::{Error, ip};

const SAFETY: Duration = Duration::from_secs(20);
/// Julia's `timeout_ms = 10_000`.
const TLS_TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! cert {
    ($name:literal) => {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/", $name))
    };
}

fn far() -> Option<Instant> {
    Some(Instant::now() + SAFETY)
}

fn guard(s: &TcpSocket) {
    s.set_deadline(far()).expect("set_deadline");
}

fn guard_server(s: &TcpServer) {
    s.set_deadline(far()).expect("server set_deadline");
}

fn join<T>(h: JoinHandle<T>, what: &str) -> T {
    let end = Instant::now() + SAFETY + Duration::from_secs(10);
    while !h.is_finished() {
        assert!(Instant::now() < end, "{what} did not finish in time");
        thread::sleep(Duration::from_millis(2));
    }
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a resolver call on a helper thread; `None` (printed) if it takes over 10 s.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => Some(v),
        Err(_) => {
            println!("skipped: {what} did not answer within 10 s");
            None
        }
    }
}

fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Reseau's gate: `get(ENV, "RESEAU_RUN_TLS_TESTS", "0") == "1"`.
fn tls_enabled() -> bool {
    let on = std::env::var("RESEAU_RUN_TLS_TESTS").is_ok_and(|v| v == "1");
    if !on {
        println!("skipped: set RESEAU_RUN_TLS_TESTS=1 to run the TLS tests");
    }
    on
}

/// A unique, short temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rsc-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            random_u64() & 0xffff
        ));
        std::fs::create_dir(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// =================================================================================
// @testset "Addr/DNS Utils"

#[test]
fn addr_dns_utils() {
    assert_eq!(
        "127.0.0.1".parse::<IPAddr>().unwrap(),
        "127.0.0.1".parse::<IPv4>().unwrap()
    );
    assert_eq!(
        "::1".parse::<IPAddr>().unwrap(),
        "::1".parse::<IPv6>().unwrap()
    );

    // getalladdrinfo("localhost"): non-empty, all IPAddr (the type says so).
    if let Some(addrs) = bounded("getalladdrinfo(localhost)", || getalladdrinfo("localhost")) {
        assert!(!addrs.expect("getalladdrinfo(localhost)").is_empty());
    }
    if let Some(r) = bounded("getaddrinfo(localhost)", || getaddrinfo("localhost")) {
        r.expect("getaddrinfo(localhost) isa IPAddr");
    }
    if let Some(r) = bounded("getaddrinfo(localhost, IPv4)", || {
        getaddrinfo_of::<IPv4>("localhost")
    }) {
        r.expect("getaddrinfo(localhost, IPv4) isa IPv4");
    }
    // getnameinfo returns either a real name or a numeric fallback.
    if let Some(r) = bounded("getnameinfo(127.0.0.1)", || {
        getnameinfo(&"127.0.0.1".parse::<IPv4>().unwrap().into())
    }) {
        assert!(!r.expect("getnameinfo(127.0.0.1)").is_empty());
    }
    // getipaddrs should always be able to return loopback addresses.
    let local_addrs = getipaddrs(true).unwrap();
    assert!(!local_addrs.is_empty());
    assert!(local_addrs.contains(&LOCALHOST.into()));

    assert!(islinklocaladdr(&ip!("169.254.1.2")));
    assert!(islinklocaladdr(&ip!("fe80::1")));
    assert!(!islinklocaladdr(&ip!("8.8.8.8")));
}

#[test]
fn dns_dual_stack_and_ipv4_only_names() {
    // Replaces the era-A network DNS cases for `s3.dualstack.us-east-1.amazonaws.com`
    // (A and AAAA records) and `s3.us-east-1.amazonaws.com` (A only), which need the
    // internet. Loopback equivalents answered without DNS: literals of both families,
    // and `localhost` (IPv4 always; IPv6 only if /etc/hosts lists ::1).
    assert_eq!(getalladdrinfo("127.0.0.1").unwrap(), [ip!("127.0.0.1")]);
    assert_eq!(getalladdrinfo("::1").unwrap(), [ip!("::1")]);
    assert_eq!(getaddrinfo_of::<IPv4>("127.0.0.1").unwrap(), LOCALHOST);
    assert_eq!(getaddrinfo_of::<IPv6>("::1").unwrap(), IPv6(1));
    // An IPv4-only name has no IPv6 answer: Dns EAI_NONAME.
    match getaddrinfo_of::<IPv6>("127.0.0.1") {
        Err(Error::Dns(d)) => assert_eq!(d.name(), "EAI_NONAME"),
        other => panic!("{other:?}"),
    }
    let Some(all) = bounded("getalladdrinfo(localhost)", || getalladdrinfo("localhost")) else {
        return;
    };
    let all = all.expect("getalladdrinfo(localhost)");
    assert!(all.iter().any(IPAddr::is_ipv4), "{all:?}");
    // The first IPv4 and the first IPv6 answer, as getaddrinfo(host, T) returns them.
    let first_v4 = all.iter().find(|ip| ip.is_ipv4()).copied().unwrap();
    assert_eq!(getaddrinfo_of::<IPv4>("localhost").unwrap(), first_v4);
    match all.iter().find(|ip| ip.is_ipv6()) {
        Some(v6) => assert_eq!(getaddrinfo_of::<IPv6>("localhost").unwrap(), *v6),
        None => assert!(matches!(
            getaddrinfo_of::<IPv6>("localhost"),
            Err(Error::Dns(ref d)) if d.name() == "EAI_NONAME"
        )),
    }
}

// =================================================================================
// @testset "TCP Echo"

#[test]
fn tcp_echo() {
    let (port, server) = listenany(0).expect("listenany(0)");
    guard_server(&server);
    let msg = b"hello";
    let server_task = thread::spawn(move || {
        let mut client = accept(&server).expect("accept");
        guard(&client);
        let mut data = [0u8; 5];
        client.read_exact(&mut data).unwrap();
        client.write_all(&data).unwrap();
        client.write_all(b"abc").unwrap();
        client.flush().unwrap();
        client.close().unwrap();
        server
    });

    let mut sock = connect(("127.0.0.1", port)).expect("connect(\"127.0.0.1\", port)");
    guard(&sock);
    assert_eq!(
        getpeername(&sock).unwrap().0,
        "127.0.0.1".parse::<IPv4>().unwrap()
    );
    assert!(getsockname(&sock).unwrap().1 > 0);

    sock.write_all(msg).unwrap();
    let mut resp = [0u8; 5];
    sock.read_exact(&mut resp).unwrap();
    assert_eq!(&resp, msg);

    assert_eq!(sock.peek_byte().unwrap(), Some(b'a'));
    let mut one = [0u8; 1];
    sock.read_exact(&mut one).unwrap();
    assert_eq!(one[0], b'a');
    assert_eq!(sock.read_available().unwrap(), b"bc");

    sock.close().unwrap();
    let server = join(server_task, "server task");
    server.close().unwrap();
}

// =================================================================================
// @testset "LOCAL Echo"

#[test]
fn local_echo() {
    // A unique, short path ("reseau-sock-<hex>.sock") to avoid collisions with a
    // crashed earlier run and stay inside sockaddr_un's limit; under the temp dir
    // rather than the working directory.
    let dir = TempDir::new();
    let path = dir
        .path()
        .join(format!("reseau-sock-{:x}.sock", random_u64() as u32));
    assert!(path.as_os_str().len() < 100, "{}", path.display());

    let server = listen(path.as_path()).expect("listen(path)");
    guard_server(&server);
    assert!(path.exists());
    let msg = b"ping";
    let server_task = thread::spawn(move || {
        let mut client = accept(&server).expect("accept");
        guard(&client);
        let mut data = [0u8; 4];
        client.read_exact(&mut data).unwrap();
        client.write_all(&data).unwrap();
        client.flush().unwrap();
        client.close().unwrap();
        server
    });

    let mut sock = connect(path.as_path()).expect("connect(path)");
    guard(&sock);
    sock.write_all(msg).unwrap();
    let mut resp = [0u8; 4];
    sock.read_exact(&mut resp).unwrap();
    assert_eq!(&resp, msg);
    sock.close().unwrap();
    let server = join(server_task, "server task");
    server.close().unwrap();

    // Julia removes the file best-effort; here closing the server removes it (as
    // libuv does), which is checked.
    assert!(
        !path.exists(),
        "socket file left behind: {}",
        path.display()
    );
}

// =================================================================================
// @testset "TLS Echo" and the loopback equivalents of the network-gated TLS cases

/// A one-shot TLS echo server on 127.0.0.1: accepts one connection, echoes `n` bytes
/// and closes. The thread's result is the server-side outcome (an error when the
/// client rejected the handshake).
fn tls_echo_server(opts: ListenOptions, n: usize) -> (u16, JoinHandle<reseau::Result<Vec<u8>>>) {
    let server = listen_with((LOCALHOST, 0), &opts).expect("listen_with(tls)");
    guard_server(&server);
    let port = getsockname(&server).unwrap().1;
    let t = thread::spawn(move || {
        let res = (|| {
            let mut client = accept(&server)?;
            guard(&client);
            let mut data = vec![0u8; n];
            // `From<io::Error> for reseau::Error`: `?` mixes std and reseau calls.
            client.read_exact(&mut data)?;
            client.write_all(&data)?;
            client.flush()?;
            client.close()?;
            Ok(data)
        })();
        server.close().unwrap();
        res
    });
    (port, t)
}

fn server_opts(cert: PathBuf, key: PathBuf) -> ListenOptions {
    ListenOptions {
        tls: true,
        cert_file: Some(cert),
        key_file: Some(key),
        ..ListenOptions::default()
    }
}

fn client_opts(ca: PathBuf) -> ConnectOptions {
    ConnectOptions {
        tls: true,
        ca_file: Some(ca),
        server_name: Some("localhost".into()),
        timeout: Some(TLS_TIMEOUT),
        ..ConnectOptions::default()
    }
}

fn insecure_opts() -> ConnectOptions {
    ConnectOptions {
        tls: true,
        insecure: true,
        timeout: Some(TLS_TIMEOUT),
        ..ConnectOptions::default()
    }
}

/// Connects with `opts`, echoes `msg` through the server and checks it.
fn echo_ok(
    port: u16,
    server: JoinHandle<reseau::Result<Vec<u8>>>,
    opts: &ConnectOptions,
    msg: &[u8],
) {
    let mut sock = connect_with(("127.0.0.1", port), opts).expect("TLS connect");
    guard(&sock);
    assert!(sock.is_tls());
    sock.write_all(msg).unwrap();
    let mut resp = vec![0u8; msg.len()];
    sock.read_exact(&mut resp).unwrap();
    assert_eq!(resp, msg);
    sock.close().unwrap();
    assert_eq!(join(server, "TLS server").expect("server side"), msg);
}

/// Connects with `opts` and expects the handshake to fail: one `Op("connect")` around
/// a TLS error whose text contains one of `reasons`.
fn verify_fails(
    port: u16,
    server: JoinHandle<reseau::Result<Vec<u8>>>,
    opts: &ConnectOptions,
    reasons: &[&str],
) {
    let start = Instant::now();
    let err = connect_with(("127.0.0.1", port), opts).expect_err("handshake must fail");
    assert!(
        start.elapsed() < TLS_TIMEOUT,
        "failed only by the budget: {err:?}"
    );
    assert_eq!(err.op(), Some("connect"), "{err:?}");
    assert!(
        matches!(&err, Error::Op(op) if matches!(op.err, Error::Tls(_))),
        "want Op(connect) around Error::Tls, got {err:?}"
    );
    let text = err.to_string();
    assert!(
        reasons.iter().any(|r| text.contains(r)),
        "{text:?} names none of {reasons:?}"
    );
    assert!(
        join(server, "TLS server").is_err(),
        "server saw a handshake succeed"
    );
}

#[test]
fn tls_echo() {
    // listenany(0; tls=true, ssl_cert, ssl_key) + connect("127.0.0.1", port; tls=true,
    // ssl_cacert, server_name="localhost", timeout_ms=10_000), echo "tls". Era A used
    // the self-signed unittests.crt as its own CA; certs/ has a real CA.
    if !tls_enabled() {
        return;
    }
    let (port, server) = tls_echo_server(server_opts(cert!("server.pem"), cert!("server.key")), 3);
    echo_ok(port, server, &client_opts(cert!("ca.pem")), b"tls");
}

#[test]
fn tls_success_by_name_replaces_www_amazon_com() {
    // Era A: TLS success to www.amazon.com (RSA chain, verified by host name, SNI).
    // Here: the RSA server.pem chained to ca.pem, reached by the name "localhost"; the
    // server name is inferred from the host connected to.
    if !tls_enabled() {
        return;
    }
    let (port, server) = tls_echo_server(server_opts(cert!("server.pem"), cert!("server.key")), 6);
    let opts = ConnectOptions {
        tls: true,
        ca_file: Some(cert!("ca.pem")),
        timeout: Some(TLS_TIMEOUT),
        ..ConnectOptions::default()
    };
    let mut sock = connect_with(("localhost", port), &opts).expect("TLS connect by name");
    guard(&sock);
    sock.write_all(b"amazon").unwrap();
    let mut resp = [0u8; 6];
    sock.read_exact(&mut resp).unwrap();
    assert_eq!(&resp, b"amazon");
    sock.close().unwrap();
    join(server, "TLS server").expect("server side");
}

/// Issues a leaf for `localhost` / 127.0.0.1 / ::1 on curve `nid`, signed by
/// certs/ca.pem, into `dir`; returns (cert, key) paths.
fn issue_ec_leaf(dir: &Path, nid: openssl::nid::Nid, tag: &str) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage,
        SubjectAlternativeName, SubjectKeyIdentifier,
    };
    use openssl::x509::{X509, X509NameBuilder};

    let ca = X509::from_pem(&std::fs::read(cert!("ca.pem")).unwrap()).unwrap();
    let ca_key = PKey::private_key_from_pem(&std::fs::read(cert!("ca.key")).unwrap()).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap())
        .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "reseau tests").unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32((random_u64() as u32) | 1).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + 86_400).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&b.x509v3_context(Some(&ca), None))
        .unwrap();
    b.append_extension(san).unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(&ca), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&b.x509v3_context(Some(&ca), None))
        .unwrap();
    b.append_extension(aki).unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let cert_path = dir.join(format!("{tag}.pem"));
    let key_path = dir.join(format!("{tag}.key"));
    std::fs::write(&cert_path, b.build().to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path)
}

#[test]
fn tls_ecdsa_success_replaces_ecc256_and_ecc384_badssl() {
    // Era A: TLS success to ecc256.badssl.com and ecc384.badssl.com (ECDSA P-256 and
    // P-384 server keys). Here: leaves on those curves issued at test time by
    // certs/ca.pem (the fixed set has no P-384 key).
    if !tls_enabled() {
        return;
    }
    let dir = TempDir::new();
    for (nid, tag) in [
        (openssl::nid::Nid::X9_62_PRIME256V1, "ecc256"),
        (openssl::nid::Nid::SECP384R1, "ecc384"),
    ] {
        let (cert, key) = issue_ec_leaf(dir.path(), nid, tag);
        let (port, server) = tls_echo_server(server_opts(cert, key), 3);
        echo_ok(port, server, &client_opts(cert!("ca.pem")), b"ecc");
    }
}

/// One bad-certificate case: verification fails, and succeeds with `insecure: true`.
fn bad_cert_case(cert: PathBuf, key: PathBuf, ca: PathBuf, reasons: &[&str]) {
    let (port, server) = tls_echo_server(server_opts(cert.clone(), key.clone()), 3);
    verify_fails(port, server, &client_opts(ca), reasons);
    let (port, server) = tls_echo_server(server_opts(cert, key), 3);
    echo_ok(port, server, &insecure_opts(), b"bad");
}

#[test]
fn tls_expired_replaces_expired_badssl() {
    // Era A: expired.badssl.com fails; succeeds with verify_peer disabled.
    if !tls_enabled() {
        return;
    }
    bad_cert_case(
        cert!("expired.pem"),
        cert!("expired.key"),
        cert!("ca.pem"),
        &["certificate has expired"],
    );
}

#[test]
fn tls_wrong_host_replaces_wrong_host_badssl() {
    // Era A: wrong.host.badssl.com fails; succeeds with verify_peer disabled.
    if !tls_enabled() {
        return;
    }
    bad_cert_case(
        cert!("wronghost.pem"),
        cert!("wronghost.key"),
        cert!("ca.pem"),
        &["hostname mismatch"],
    );
}

#[test]
fn tls_self_signed_replaces_self_signed_badssl() {
    // Era A: self-signed.badssl.com fails; succeeds with verify_peer disabled.
    if !tls_enabled() {
        return;
    }
    bad_cert_case(
        cert!("untrusted.pem"),
        cert!("untrusted.key"),
        cert!("ca.pem"),
        &["self-signed certificate", "self signed certificate"],
    );
}

#[test]
fn tls_untrusted_root_replaces_untrusted_root_badssl() {
    // Era A: untrusted-root.badssl.com (a chain to a root the client does not trust)
    // fails; succeeds with verify_peer disabled. Here: server.pem (chained to ca.pem)
    // checked against the unrelated other-ca.pem.
    if !tls_enabled() {
        return;
    }
    bad_cert_case(
        cert!("server.pem"),
        cert!("server.key"),
        cert!("other-ca.pem"),
        &[
            "unable to get local issuer certificate",
            "self-signed certificate in certificate chain",
            "self signed certificate in certificate chain",
        ],
    );
}

#[test]
fn tls_wrong_host_with_unrelated_ca_replaces_wrong_host_with_digicert_ca() {
    // Era A: wrong.host.badssl.com checked against DigiCertGlobalRootCA.crt.pem (a real
    // root that is not its issuer) fails. Here: wronghost.pem against other-ca.pem.
    if !tls_enabled() {
        return;
    }
    let (port, server) = tls_echo_server(
        server_opts(cert!("wronghost.pem"), cert!("wronghost.key")),
        3,
    );
    verify_fails(
        port,
        server,
        &client_opts(cert!("other-ca.pem")),
        &[
            "unable to get local issuer certificate",
            "self-signed certificate in certificate chain",
            "self signed certificate in certificate chain",
            "hostname mismatch",
        ],
    );
}

#[test]
fn tls_bogus_ca_file_replaces_amazon_with_bogus_ca() {
    // Era A: www.amazon.com with a bogus CA file fails. Here: server.pem (which
    // verifies with ca.pem) against a CA file holding no certificate at all.
    if !tls_enabled() {
        return;
    }
    let dir = TempDir::new();
    let bogus = dir.path().join("bogus-ca.pem");
    std::fs::write(&bogus, "this is not a certificate\n").unwrap();
    let (port, server) = tls_echo_server(server_opts(cert!("server.pem"), cert!("server.key")), 3);
    let start = Instant::now();
    let err = connect_with(("127.0.0.1", port), &client_opts(bogus))
        .expect_err("a bogus CA file must not verify anything");
    // Found before any I/O (SPEC §6: invalid TLS configuration → TlsConfig).
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    assert!(err.to_string().contains("ca_file"), "{err}");
    assert!(start.elapsed() < TLS_TIMEOUT);
    // No TCP connection was made: unblock the server with a plain one, whose
    // handshake then fails on the server side.
    connect(port).expect("plain connect").close().unwrap();
    assert!(join(server, "TLS server").is_err());
}

#[test]
fn tls_no_common_protocol_replaces_rc4_badssl() {
    // Era A: rc4.badssl.com and rc4-md5.badssl.com (servers offering only RC4) fail the
    // handshake. OpenSSL 3 has no RC4 and the facade sets no cipher lists, so the
    // loopback equivalent is a server whose only protocol (TLS 1.2) the client does not
    // offer (TLS 1.3 only). Like RC4, this is not a verification error: it fails with
    // and without `insecure`.
    if !tls_enabled() {
        return;
    }
    let server_cfg = tls::Config {
        max_version: Some(TlsVersion::Tls12),
        ..tls::Config::default()
    };
    let tls13_only = tls::Config {
        min_version: Some(TlsVersion::Tls13),
        ..tls::Config::default()
    };
    for insecure in [false, true] {
        let (port, server) = tls_echo_server(
            ListenOptions {
                tls_config: Some(server_cfg.clone()),
                ..server_opts(cert!("server.pem"), cert!("server.key"))
            },
            3,
        );
        let opts = ConnectOptions {
            tls_config: Some(tls13_only.clone()),
            insecure,
            ..client_opts(cert!("ca.pem"))
        };
        verify_fails(
            port,
            server,
            &opts,
            &[
                "protocol version",
                "unsupported protocol",
                "no protocols available",
            ],
        );
    }
}
