//! The properties the fuzz targets check, shared by `fuzz/fuzz_targets/*.rs` (libFuzzer)
//! and `tests/fuzz_corpus.rs` (replays every committed corpus file under `cargo test`).
//!
//! Each check takes the raw fuzz input and panics when a property fails. The includer
//! defines `CERTS_DIR` (the repository's `certs/`) for the TLS check.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reseau::__fuzz::ReadBuf;
use reseau::resolve::{join_host_port, lookup_port, parse_port, split_host_port};
use reseau::sockets::{IPAddr, IPv4, IPv6, InetAddr};
use reseau::{Error, tcp, tls};

/// A target's property check over one raw input; panics on a violation.
pub type Check = fn(&[u8]);

/// Every target, by corpus directory name, with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("ip_addr", ip_addr),
    ("host_port", host_port),
    ("port", port),
    ("read_buf", read_buf),
    ("tls_server", tls_server),
];

// ---------------------------------------------------------------------------------
// (a) IPv4 / IPv6 / IPAddr / InetAddr text

fn is_v4_mapped(ip: IPv6) -> bool {
    ip.0 >> 32 == 0xffff
}

/// Printing `ip` gives text that parses back to `ip`, agrees with `std` (which prints
/// the same RFC 5952 form except for its dotted IPv4-mapped tail), and pads correctly.
fn check_v6_print(ip: IPv6) {
    let text = ip.to_string();
    assert!(!text.contains('.'), "{text}: no dotted tail, ever");
    assert_eq!(text.parse::<IPv6>().ok(), Some(ip), "{text} must re-parse");
    assert_eq!(
        text.parse::<Ipv6Addr>().ok(),
        Some(Ipv6Addr::from(ip)),
        "{text}"
    );
    if !is_v4_mapped(ip) {
        assert_eq!(text, Ipv6Addr::from(ip).to_string());
    }
    assert_eq!(format!("{ip:>45}").trim_start(), text);
    assert_eq!(format!("{ip:?}"), format!("ip\"{text}\""));
}

fn check_v4_print(ip: IPv4) {
    let text = ip.to_string();
    assert_eq!(text.parse::<IPv4>().ok(), Some(ip), "{text} must re-parse");
    assert_eq!(text, Ipv4Addr::from(ip).to_string());
    assert_eq!(format!("{ip:<20}").trim_end(), text);
}

fn check_inet_print(a: InetAddr) {
    let text = a.to_string();
    assert_eq!(
        text.parse::<InetAddr>().ok(),
        Some(a),
        "{text} must re-parse"
    );
    match a.host {
        // std prints a mapped address with a dotted tail; compare the others.
        IPAddr::V6(v6) if is_v4_mapped(v6) => {}
        _ => assert_eq!(text, SocketAddr::from(a).to_string()),
    }
}

/// Parses arbitrary text as every address type. Whatever parses prints and re-parses
/// to the same value; `IPAddr` picks the family by `:`; anything `std` accepts (strict
/// dotted quads, RFC 4291 IPv6) is accepted with the same value, and every IPv6 this
/// parser accepts `std` accepts too (both are RFC 4291 without zones). The raw bytes
/// are also printed as addresses, so printing is checked beyond what parses.
pub fn ip_addr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    let v4 = s.parse::<IPv4>();
    let v6 = s.parse::<IPv6>();
    let any = s.parse::<IPAddr>();
    match (&any, s.contains(':')) {
        (Ok(IPAddr::V6(a)), true) => assert_eq!(v6.as_ref().ok(), Some(a)),
        (Ok(IPAddr::V4(a)), false) => assert_eq!(v4.as_ref().ok(), Some(a)),
        (Err(e), true) => {
            assert!(v6.is_err());
            assert!(
                matches!(e, Error::Address { addr, .. } if addr == s),
                "{e:?}"
            );
        }
        (Err(e), false) => {
            assert!(v4.is_err());
            assert!(
                matches!(e, Error::Address { addr, .. } if addr == s),
                "{e:?}"
            );
        }
        (Ok(a), colon) => panic!("{s:?} parsed as {a:?} with colon={colon}"),
    }
    if let Ok(a) = v4 {
        check_v4_print(a);
        assert!(s.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{s:?}");
        if s.split('.').count() == 4 {
            assert_eq!(s.parse::<Ipv4Addr>().ok(), Some(a.into()), "{s:?}");
        }
    }
    if let Ok(a) = v6 {
        check_v6_print(a);
        assert_eq!(
            s.parse::<Ipv6Addr>().ok(),
            Some(a.into()),
            "{s:?}: std rejects it"
        );
    }
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        assert_eq!(v4.ok(), Some(IPv4::from(a)), "{s:?}: std accepts it");
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        assert_eq!(v6.ok(), Some(IPv6::from(a)), "{s:?}: std accepts it");
    }

    if let Ok(a) = s.parse::<InetAddr>() {
        check_inet_print(a);
        if let Ok(sa) = s.parse::<SocketAddr>() {
            // std also accepts a zone or flow info only through its own types; a plain
            // socket address both accept must agree.
            assert_eq!(InetAddr::from(sa), a, "{s:?}");
        }
    }

    // The bytes themselves as addresses: every value prints and re-parses.
    let mut raw = [0u8; 18];
    let n = data.len().min(18);
    raw[..n].copy_from_slice(&data[..n]);
    let v4 = IPv4(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
    let mut v6 = IPv6(u128::from_be_bytes(raw[..16].try_into().unwrap()));
    if data.first().is_some_and(|b| b & 1 == 1) {
        // Many zero groups reach the `::` placement rules more often.
        v6 = IPv6(v6.0 & u128::from_be_bytes(raw[..16].try_into().unwrap()).rotate_left(16));
    }
    let port = u16::from_be_bytes([raw[16], raw[17]]);
    check_v4_print(v4);
    check_v6_print(v6);
    check_inet_print(InetAddr::new(v4, port));
    check_inet_print(InetAddr::new(v6, port));
}

// ---------------------------------------------------------------------------------
// (b) split_host_port / join_host_port

/// `split_host_port` never panics; on success the parts re-join to text that splits
/// to the same parts (and to the input itself when the input was canonical); on failure
/// the error is an `Address` naming the input. Joining two arbitrary parts that split
/// cannot confuse (no brackets, no colon in the port) splits back to them.
pub fn host_port(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    match split_host_port(s) {
        Ok((h, p)) => {
            assert!(!p.contains(':'), "{s:?} -> port {p:?}");
            assert!(!h.contains('[') && !h.contains(']'), "{s:?} -> host {h:?}");
            assert!(!p.contains('[') && !p.contains(']'), "{s:?} -> port {p:?}");
            let joined = join_host_port(&h, &p);
            let again = split_host_port(&joined).unwrap_or_else(|e| panic!("{joined:?}: {e}"));
            assert_eq!(again, (h.clone(), p.clone()), "{s:?} -> {joined:?}");
            if s.starts_with('[') == h.contains(':') {
                assert_eq!(joined, s, "canonical input re-joins to itself");
            }
        }
        Err(e) => {
            assert!(
                matches!(&e, Error::Address { addr, .. } if addr == s),
                "{e:?}"
            );
        }
    }

    // Two parts: split the input at its first NUL (or in the middle).
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len() / 2);
    let host = String::from_utf8_lossy(&data[..cut]);
    let port = String::from_utf8_lossy(data.get(cut + 1..).unwrap_or_default());
    let joined = join_host_port(&host, &port);
    let splittable = !host.contains(['[', ']']) && !port.contains(['[', ']', ':']);
    let res = split_host_port(&joined);
    if splittable {
        assert_eq!(
            res.ok(),
            Some((host.to_string(), port.to_string())),
            "{joined:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// (c) parse_port / lookup_port

const NETWORKS: &[&str] = &["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "", "ip"];

/// `parse_port` never panics and saturates; `lookup_port` never panics, returns a port
/// that matches the number given (numbers are never looked up), fails with the
/// documented error kinds, and treats names case-insensitively.
pub fn port(data: &[u8]) {
    let (selector, rest) = data.split_first().map_or((0, data), |(b, r)| (*b, r));
    let text = String::from_utf8_lossy(rest);
    let s: &str = &text;

    let (value, needs_lookup) = parse_port(s);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let numeric = digits.bytes().all(|b| b.is_ascii_digit());
    let value_of = |t: &str| -> i128 {
        let sig = t.trim_start_matches('0');
        if sig.len() > 20 {
            1 << 70
        } else {
            sig.parse::<i128>().unwrap_or(0)
        }
    };
    // Go stops reading at a digit that comes once the value has reached 2^30, so such a
    // digit run followed by anything is still a (saturated) number: "9990000000000h"
    // is (2^30 - 1, false), "1100000000h" is a name.
    let run = digits.bytes().take_while(u8::is_ascii_digit).count();
    let saturated_early = run > 0 && value_of(&digits[..run - 1]) >= 1 << 30;
    assert_eq!(needs_lookup, !numeric && !saturated_early, "{s:?}");
    if needs_lookup {
        assert_eq!(value, 0);
    } else {
        // The value of the digit run, clamped to [-2^30, 2^30 - 1] (Go's saturation).
        let magnitude = value_of(&digits[..run]);
        let signed = if s.starts_with('-') {
            -magnitude
        } else {
            magnitude
        };
        assert_eq!(
            value,
            signed.clamp(-(1 << 30), (1 << 30) - 1) as i64,
            "{s:?}"
        );
    }

    let network: String = match NETWORKS.get(usize::from(selector % 16)) {
        Some(n) => (*n).to_string(),
        None => {
            String::from_utf8_lossy(&rest[..rest.len().min(usize::from(selector % 8))]).into_owned()
        }
    };
    let known = NETWORKS.contains(&network.as_str());
    match lookup_port(&network, s) {
        Ok(p) => {
            assert!(known, "{network:?} accepted");
            if !needs_lookup {
                assert_eq!(i64::from(p), value, "{s:?}");
            }
        }
        Err(Error::UnknownNetwork(n)) => assert!(!known && n == network),
        Err(Error::Address { msg, addr }) => {
            assert!(known && !needs_lookup && addr == s && msg == "invalid port");
            assert!(u16::try_from(value).is_err(), "{s:?}");
        }
        Err(Error::Lookup { name, .. }) => {
            assert!(known && needs_lookup && name == format!("{network}/{s}"));
        }
        Err(e) => panic!("{network:?} {s:?}: unexpected {e:?}"),
    }
    if known && needs_lookup {
        let upper = lookup_port(&network, &s.to_ascii_uppercase()).ok();
        assert_eq!(upper, lookup_port(&network, &s.to_ascii_lowercase()).ok());
    }
}

// ---------------------------------------------------------------------------------
// (d) the facade's read buffer against a reference model

/// What the source does on one call.
enum Event {
    Chunk(Vec<u8>),
    Fail,
}

/// Decodes the input into a buffer size, a source (chunks and injected errors) and a
/// list of operations, runs them on a [`ReadBuf`] and on a model (the concatenated
/// stream and a cursor), and compares: every result is the model's answer; an
/// operation that fails consumed nothing and failed only because the source did; the
/// end of the stream is reported only at the real end; nothing is lost or repeated.
pub fn read_buf(data: &[u8]) {
    let mut it = data.iter().copied();
    let cap = 1 + usize::from(it.next().unwrap_or(0) % 32);
    let mut events = VecDeque::new();
    let mut ops = Vec::new();
    while let Some(h) = it.next() {
        if h & 0x80 == 0 {
            if h & 0x40 != 0 {
                events.push_back(Event::Fail);
            } else {
                let len = usize::from(h & 0x3f) + 1;
                let chunk: Vec<u8> = it.by_ref().take(len).collect();
                if !chunk.is_empty() {
                    events.push_back(Event::Chunk(chunk));
                }
            }
        } else {
            ops.push((h & 0x7f, it.next().unwrap_or(b'\n')));
        }
    }
    let stream: Vec<u8> = events
        .iter()
        .flat_map(|e| match e {
            Event::Chunk(c) => c.clone(),
            Event::Fail => Vec::new(),
        })
        .collect();

    let mut failures = 0usize;
    let mut fill = |dst: &mut [u8]| -> reseau::Result<usize> {
        match events.pop_front() {
            None => Ok(0),
            Some(Event::Fail) => {
                failures += 1;
                Err(Error::DeadlineExceeded)
            }
            Some(Event::Chunk(mut c)) => {
                let n = c.len().min(dst.len());
                dst[..n].copy_from_slice(&c[..n]);
                if n < c.len() {
                    events.push_front(Event::Chunk(c.split_off(n)));
                }
                Ok(n)
            }
        }
    };

    let mut rb = ReadBuf::new(cap);
    let mut pos = 0usize; // the model: bytes of `stream` consumed so far
    let mut errors = 0usize;
    let mut invalid = 0usize;
    // A failure must be the injected one; that it consumed nothing is checked by the
    // buffer/stream comparison after each operation and by the final drain.
    let mut failed = |e: Error| {
        assert!(matches!(e, Error::DeadlineExceeded), "{e:?}");
        errors += 1;
    };
    for (op, arg) in ops {
        let rest = &stream[pos..];
        let keep = op & 1 == 1;
        match (op >> 1) % 6 {
            0 | 1 => {
                let delim = if (op >> 1) % 6 == 0 { b'\n' } else { arg };
                match rb.read_until(delim, keep, &mut fill) {
                    Ok(got) => {
                        let end = rest.iter().position(|&b| b == delim).map(|i| i + 1);
                        let taken = end.unwrap_or(rest.len());
                        let mut want = rest[..taken].to_vec();
                        if !keep && end.is_some() {
                            want.pop();
                        }
                        assert_eq!(got, want, "read_until({delim}, {keep}) at {pos}");
                        pos += taken;
                    }
                    Err(e) => failed(e),
                }
            }
            2 => {
                let before = rb.buffered().to_vec();
                match rb.read_line(keep, &mut fill) {
                    Ok(got) => {
                        let end = rest.iter().position(|&b| b == b'\n').map(|i| i + 1);
                        let taken = end.unwrap_or(rest.len());
                        let line = std::str::from_utf8(&rest[..taken]).expect("valid UTF-8");
                        let want = if keep {
                            line
                        } else {
                            let l = line.strip_suffix('\n').unwrap_or(line);
                            if line.ends_with('\n') {
                                l.strip_suffix('\r').unwrap_or(l)
                            } else {
                                l
                            }
                        };
                        assert_eq!(got, want, "read_line({keep}) at {pos}");
                        pos += taken;
                    }
                    Err(Error::InvalidArgument(_)) => {
                        let end = rest
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(rest.len(), |i| i + 1);
                        assert!(std::str::from_utf8(&rest[..end]).is_err(), "at {pos}");
                        // Nothing consumed: the buffer starts with the bad line.
                        assert!(rb.buffered().starts_with(&rest[..end]));
                        assert!(rb.buffered().len() >= before.len());
                        invalid += 1;
                    }
                    Err(e) => failed(e),
                }
            }
            3 => {
                let mut out = vec![0u8; usize::from(arg % 48)];
                match rb.read(&mut out, &mut fill) {
                    Ok(n) => {
                        assert!(n <= out.len());
                        assert_eq!(&out[..n], &rest[..n], "read at {pos}");
                        assert!(n > 0 || out.is_empty() || rest.is_empty(), "early EOF");
                        pos += n;
                    }
                    Err(e) => failed(e),
                }
            }
            4 => match rb.fill_buf(&mut fill) {
                Ok(avail) => {
                    assert!(rest.starts_with(avail), "fill_buf at {pos}");
                    assert!(!avail.is_empty() || rest.is_empty(), "early EOF");
                    assert!(avail.len() <= cap.max(rest.len()));
                    let n = usize::from(arg).min(avail.len());
                    rb.consume(n);
                    pos += n;
                }
                Err(e) => failed(e),
            },
            _ => {
                let got = rb.take();
                assert_eq!(&got[..], &rest[..got.len()], "take at {pos}");
                pos += got.len();
            }
        }
        assert_eq!(
            rb.buffered(),
            &stream[pos..pos + rb.len()],
            "buffer mirrors the stream"
        );
    }
    // Drain: whatever is left comes out exactly once, across any remaining failures.
    let mut tail = Vec::new();
    loop {
        match rb.read_until(0xff, true, &mut fill) {
            Ok(v) if v.is_empty() => break,
            Ok(v) => tail.extend_from_slice(&v),
            Err(e) => failed(e),
        }
    }
    assert_eq!(tail, &stream[pos..], "drain");
    assert_eq!(
        errors, failures,
        "every source failure reported once, no others"
    );
    // A give-back larger than the storage grows it once and shrinks it back once.
    assert!(
        rb.allocations() <= 1 + 2 * (failures + invalid),
        "storage reused"
    );
}

// ---------------------------------------------------------------------------------
// (e) a TLS server fed arbitrary client bytes

/// One loopback listener and one server config for the whole process.
fn tls_setup() -> &'static (tcp::Listener, tls::Config) {
    static SETUP: OnceLock<(tcp::Listener, tls::Config)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::path::Path::new(super::CERTS_DIR);
        let cfg = tls::Config {
            cert_file: Some(dir.join("server.pem")),
            key_file: Some(dir.join("server.key")),
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..tls::Config::default()
        };
        let ln = tcp::listen(tcp::loopback_addr(0)).expect("loopback listener");
        (ln, cfg)
    })
}

/// The input is everything a client sends before closing its write side. The server's
/// handshake must fail with an error (random bytes cannot complete one), promptly and
/// not by a timeout, and later calls must fail too.
pub fn tls_server(data: &[u8]) {
    const LIMIT: Duration = Duration::from_secs(20);
    let (ln, cfg) = tls_setup();
    let client = tcp::connect(ln.local_addr().unwrap()).expect("connect");
    ln.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let accepted = ln.accept().expect("accept");
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    client.write(data).expect("client write");
    client.close_write().unwrap();

    let conn = tls::server(accepted, cfg).expect("server conn");
    conn.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let t0 = Instant::now();
    let err = conn
        .handshake()
        .expect_err("arbitrary client bytes completed a TLS handshake");
    assert!(
        !err.is_timeout(),
        "handshake hung until the deadline: {err}"
    );
    assert!(t0.elapsed() < LIMIT);
    assert!(!conn.is_handshake_complete());
    let mut buf = [0u8; 16];
    assert!(
        conn.read(&mut buf).is_err(),
        "read after a failed handshake"
    );
    assert!(conn.write(b"x").is_err(), "write after a failed handshake");
    let _ = conn.close();
    // RST: no TIME_WAIT left behind by a million connections.
    let _ = client.abort();
}
