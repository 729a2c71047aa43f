//! TLS handshake rates on loopback, in one run: reseau full vs resumed handshakes, against
//! a plain `std::net` + `openssl`-crate client/server pair (`SslConnector`/`SslAcceptor`)
//! that resumes too; then a vectored-write micro-benchmark (8 x 64-byte slices).
//!
//! ```text
//! cargo run --release --example tls_resume_bench -- [--secs S] [--rounds R]
//! ```
//! Each handshake is a fresh TCP connection with a one-byte round trip (TLS 1.3 tickets
//! arrive with the server's first bytes), sequential, client and server threads in this
//! process; the modes are interleaved `R` times and each figure is the best round.
//! Then the public-key operations of one handshake are timed, which bounds how far a
//! resumed handshake (still X25519 on both ends: forward secrecy) can beat a full one.
//!
//! The baseline client resumes through `SslRef::set_session`, which the `openssl` crate
//! marks `unsafe` (the session must come from the same context): this example holds the
//! only `unsafe` outside `src/sys.rs`, with its reason beside it.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use openssl::ssl::{
    SslAcceptor, SslConnector, SslFiletype, SslMethod, SslSession, SslSessionCacheMode,
};
use reseau::tcp;
use reseau::tls::{self, ClientSessionCache, Config};

fn cert(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/")).join(name)
}

/// CPU time (user + system) used so far by this process's live threads, from
/// `/proc/self/task/*/schedstat` (nanoseconds on a CPU). Both ends of every benchmark
/// connection run here, so this is the whole cost of a handshake, independent of how
/// long other processes on a shared machine keep us waiting.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `one` repeatedly for `secs`: handshakes per second, and CPU microseconds per
/// handshake (both ends).
fn rate(secs: f64, mut one: impl FnMut()) -> (f64, f64) {
    let cpu = cpu_ns();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        one();
        n += 1;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    (per_sec, (cpu_ns() - cpu) as f64 / 1e3 / n as f64)
}

/// A reseau TLS listener on loopback with the test server certificate.
fn reseau_listener() -> tls::Listener {
    let cfg = Config {
        cert_file: Some(cert("server.pem")),
        key_file: Some(cert("server.key")),
        ..Config::default()
    };
    tls::listen(tcp::loopback_addr(0), cfg).unwrap()
}

/// A reseau TLS server: per connection, handshake and echo one byte.
fn reseau_server() -> SocketAddr {
    let ln = reseau_listener();
    let addr = ln.local_addr().unwrap();
    thread::spawn(move || {
        while let Ok(c) = ln.accept() {
            let mut b = [0u8; 1];
            if c.read_full(&mut b).is_ok() {
                let _ = c.write(&b);
            }
        }
    });
    addr
}

fn reseau_client(addr: SocketAddr, cfg: &Config) -> bool {
    let c = tls::client(tcp::connect(addr).unwrap(), cfg).unwrap();
    c.write(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_full(&mut b).unwrap();
    c.connection_state().did_resume
}

/// The baseline server: `std::net` + `SslAcceptor` (tickets on, OpenSSL's defaults).
fn std_server() -> SocketAddr {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate_chain_file(cert("server.pem")).unwrap();
    b.set_private_key_file(cert("server.key"), SslFiletype::PEM)
        .unwrap();
    let acceptor = b.build();
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    thread::spawn(move || {
        for s in ln.incoming().flatten() {
            let _ = s.set_nodelay(true);
            if let Ok(mut t) = acceptor.accept(s) {
                let mut b = [0u8; 1];
                if t.read_exact(&mut b).is_ok() {
                    let _ = t.write_all(&b);
                }
                // close_notify, as reseau's close sends.
                let _ = t.shutdown();
            }
        }
    });
    addr
}

/// The baseline client: `SslConnector` with a one-entry session cache when `resume`.
struct StdClient {
    connector: SslConnector,
    session: Arc<Mutex<Option<SslSession>>>,
    resume: bool,
}

impl StdClient {
    fn new(resume: bool) -> StdClient {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(cert("ca.pem")).unwrap();
        let session = Arc::new(Mutex::new(None));
        if resume {
            b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
            let slot = session.clone();
            b.set_new_session_callback(move |_, s| *slot.lock().unwrap() = Some(s));
        }
        StdClient {
            connector: b.build(),
            session,
            resume,
        }
    }

    fn connect(&self, addr: SocketAddr) -> bool {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut ssl = self
            .connector
            .configure()
            .unwrap()
            .into_ssl("localhost")
            .unwrap();
        if self.resume
            && let Some(sess) = self.session.lock().unwrap().as_ref()
        {
            // SAFETY: the session was made by a connection of this same connector's
            // context, the condition `set_session` leaves to its caller.
            unsafe { ssl.set_session(sess).unwrap() };
        }
        let mut t = openssl::ssl::SslStream::new(ssl, s).unwrap();
        t.connect().unwrap();
        t.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        t.read_exact(&mut b).unwrap();
        let reused = t.ssl().session_reused();
        // Without close_notify OpenSSL marks the session not resumable on free.
        let _ = t.shutdown();
        reused
    }
}

/// Microseconds per call of `f` (after a warm-up of a tenth as many).
fn micros(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// The public-key operations a handshake with the test certificates costs, both ends
/// together, in microseconds: `(resumed, full)`. A resumed TLS 1.3 handshake keeps
/// forward secrecy (psk_dhe_ke): each end generates an X25519 key and derives the shared
/// secret. A full one adds the server's CertificateVerify signature (RSA-PSS with the
/// test key), the client's check of it, and the client's check of the CA's signature on
/// the leaf. Everything else (TCP, syscalls, wake-ups, key schedule, records) costs both
/// kinds about the same, so `full / resumed` can at best reach this ratio.
fn crypto_floor() -> (f64, f64) {
    use openssl::derive::Deriver;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{Id, PKey};
    use openssl::sign::{Signer, Verifier};
    use openssl::x509::X509;
    let peer = PKey::generate_x25519().unwrap();
    let peer_pub =
        PKey::public_key_from_raw_bytes(&peer.raw_public_key().unwrap(), Id::X25519).unwrap();
    let keygen = micros(3000, || drop(PKey::generate_x25519().unwrap()));
    let derive = micros(3000, || {
        let mut d = Deriver::new(&peer).unwrap();
        d.set_peer(&peer_pub).unwrap();
        d.derive_to_vec().unwrap();
    });
    let key = PKey::private_key_from_pem(&std::fs::read(cert("server.key")).unwrap()).unwrap();
    let rsa = key.id() == Id::RSA;
    // A TLS 1.3 CertificateVerify signs 130 bytes (64 spaces, context string, hash).
    let msg = [0x20u8; 130];
    let signer = || {
        let mut s = Signer::new(MessageDigest::sha256(), &key).unwrap();
        if rsa {
            s.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
        }
        s
    };
    let sig = signer().sign_oneshot_to_vec(&msg).unwrap();
    let sign = micros(1000, || drop(signer().sign_oneshot_to_vec(&msg).unwrap()));
    let verify = micros(3000, || {
        let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        if rsa {
            v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
        }
        assert!(v.verify_oneshot(&sig, &msg).unwrap());
    });
    let pem = |n: &str| X509::from_pem(&std::fs::read(cert(n)).unwrap()).unwrap();
    let (ca, leaf) = (pem("ca.pem").public_key().unwrap(), pem("server.pem"));
    let chain = micros(2000, || assert!(leaf.verify(&ca).unwrap()));
    println!(
        "| public-key operation (test certificates) | us |\n|---|---:|\n\
         | X25519 keygen | {keygen:.1} |\n| X25519 derive | {derive:.1} |\n\
         | server key sign ({}) | {sign:.1} |\n| server key verify | {verify:.1} |\n\
         | CA signature on the leaf, verify | {chain:.1} |",
        if rsa { "RSA-PSS" } else { "EC" }
    );
    let resumed = 2.0 * (keygen + derive);
    (resumed, resumed + sign + verify + chain)
}

/// Sends `iters` x 8 x 64 bytes, per slice or vectored; MB/s of plaintext.
fn vectored_rate(vectored: bool, iters: usize) -> f64 {
    let ln = reseau_listener();
    let addr = ln.local_addr().unwrap();
    let total = iters * 8 * 64;
    let server = thread::spawn(move || {
        let c = ln.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            match c.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        c.write(b"k").unwrap();
    });
    let client_cfg = Config {
        server_name: Some("localhost".into()),
        ca_file: Some(cert("ca.pem")),
        ..Config::default()
    };
    let c = tls::connect(addr, &client_cfg).unwrap();
    let slices: Vec<[u8; 64]> = (0..8).map(|i| [i as u8; 64]).collect();
    let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
    let start = Instant::now();
    for _ in 0..iters {
        if vectored {
            c.write_vectored(&io).unwrap();
        } else {
            for s in &slices {
                c.write(s).unwrap();
            }
        }
    }
    let mut b = [0u8; 1];
    c.read_full(&mut b).unwrap();
    let secs = start.elapsed().as_secs_f64();
    server.join().unwrap();
    total as f64 / secs / 1e6
}

fn main() {
    let mut secs = 2.0;
    let mut rounds = 3;
    let mut only: Option<(String, u64)> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--only" => {
                let mode = args.next().expect("--only MODE N");
                let n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--only MODE N");
                only = Some((mode, n));
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let r_addr = reseau_server();
    let s_addr = std_server();
    let full_cfg = Config {
        server_name: Some("localhost".into()),
        ca_file: Some(cert("ca.pem")),
        ..Config::default()
    };
    let resume_cfg = Config {
        client_session_cache: Some(ClientSessionCache::new(0)),
        ..full_cfg.clone()
    };
    let std_full = StdClient::new(false);
    let std_resume = StdClient::new(true);
    // Warm up, and check that resumption really happens.
    assert!(!reseau_client(r_addr, &full_cfg));
    reseau_client(r_addr, &resume_cfg);
    assert!(reseau_client(r_addr, &resume_cfg), "reseau resumes");
    assert!(!std_full.connect(s_addr));
    std_resume.connect(s_addr);
    assert!(std_resume.connect(s_addr), "baseline resumes");
    if let Some((mode, n)) = only {
        // For strace/perf: `n` handshakes of one mode after the warm-up, nothing else.
        let one: Box<dyn Fn()> = match mode.as_str() {
            "reseau-full" => Box::new(|| assert!(!reseau_client(r_addr, &full_cfg))),
            "reseau-resumed" => Box::new(|| assert!(reseau_client(r_addr, &resume_cfg))),
            "std-full" => Box::new(|| assert!(!std_full.connect(s_addr))),
            "std-resumed" => Box::new(|| assert!(std_resume.connect(s_addr))),
            // Mixed pairs, to tell a client's cost from a server's.
            "reseau-client-std-server" => Box::new(|| {
                reseau_client(s_addr, &resume_cfg);
            }),
            "std-client-reseau-server" => Box::new(|| {
                std_resume.connect(r_addr);
            }),
            other => panic!("unknown mode {other}"),
        };
        let cpu = cpu_ns();
        let start = Instant::now();
        for _ in 0..n {
            one();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{mode}: {n} handshakes, {:.0}/s, {:.0} us CPU each",
            n as f64 / secs,
            (cpu_ns() - cpu) as f64 / 1e3 / n as f64
        );
        return;
    }

    // Best rate of the rounds; CPU per handshake is the median of the rounds.
    let mut best = [0f64; 4];
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        let r = [
            rate(secs, || assert!(!reseau_client(r_addr, &full_cfg))),
            rate(secs, || assert!(reseau_client(r_addr, &resume_cfg))),
            rate(secs, || assert!(!std_full.connect(s_addr))),
            rate(secs, || assert!(std_resume.connect(s_addr))),
        ];
        for ((b, c), (x, us)) in best.iter_mut().zip(&mut cpu).zip(r) {
            *b = b.max(x);
            c.push(us);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let [rf, rr, sf, sr] = best;
    let [cf, cr, csf, csr] = cpu.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    println!(
        "| stack | full handshakes/s | resumed handshakes/s | resumed / full \
         | CPU us per full | CPU us per resumed | full / resumed CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| reseau (tls::Conn) | {rf:.0} | {rr:.0} | {:.2}x | {cf:.0} | {cr:.0} | {:.2}x |",
        rr / rf,
        cf / cr
    );
    println!(
        "| std + openssl crate (SslConnector/SslAcceptor) | {sf:.0} | {sr:.0} | {:.2}x \
         | {csf:.0} | {csr:.0} | {:.2}x |",
        sr / sf,
        csf / csr
    );
    println!();
    println!(
        "reseau resumed / baseline resumed: {:.2}x (CPU per handshake: {:.2}x of the baseline's); \
         reseau full / baseline full: {:.2}x",
        rr / sr,
        cr / csr,
        rf / sf
    );
    println!();
    let (floor_resumed, floor_full) = crypto_floor();
    // full / resumed >= 3 means a resumed handshake costs at most half of what a full
    // one adds to it.
    println!(
        "\npublic-key work per handshake, both ends: resumed {floor_resumed:.0} us, full \
         {floor_full:.0} us (alone they would allow {:.2}x).\n3x (CPU) needs a resumed \
         handshake to cost at most half of what a full one adds: ({cf:.0} - {cr:.0}) / 2 = \
         {:.0} us; it costs {cr:.0} us, {floor_resumed:.0} of them public-key work, so the \
         rest ({:.0} us: TCP connect/accept/close, syscalls, wake-ups, key schedule, \
         tickets, records) would have to shrink to {:.0} us.",
        floor_full / floor_resumed,
        (cf - cr) / 2.0,
        cr - floor_resumed,
        (cf - cr) / 2.0 - floor_resumed,
    );
    println!();
    let iters = 20_000;
    let (mut per, mut vec) = (0f64, 0f64);
    for _ in 0..rounds {
        per = per.max(vectored_rate(false, iters));
        vec = vec.max(vectored_rate(true, iters));
    }
    println!("| write of 8 x 64-byte slices | MB/s of plaintext |");
    println!("|---|---:|");
    println!("| 8 x `write` (one record each) | {per:.1} |");
    println!("| 1 x `write_vectored` (one record) | {vec:.1} |");
    println!();
    println!("write_vectored / per-slice writes: {:.2}x", vec / per);
}
