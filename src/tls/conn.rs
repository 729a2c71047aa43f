//! The TLS connection: OpenSSL driven over a non-blocking [`tcp::Conn`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::ssl::{ErrorCode, ShutdownResult, Ssl, SslContext, SslStream};
use openssl::x509::X509VerifyResult;
use openssl::x509::verify::X509CheckFlags;

use super::config::Config;
use crate::poll::{Dir, IoBuf};
use crate::tcp;
use crate::util::lock;
use crate::{Error, Result, TlsError};

/// OpenSSL's view of the socket: one non-blocking syscall per call, `WouldBlock` on
/// `EAGAIN` for reads. Waiting happens in [`Conn`], outside OpenSSL and outside the
/// `SSL` lock.
///
/// Writes never block OpenSSL: what the socket does not take now is queued in `out`
/// (in the order OpenSSL produced it) and sent by [`Conn::flush_out`]. So OpenSSL never
/// holds a half-written record, and a reader's `SSL_read` that has to answer the peer
/// (a TLS 1.3 KeyUpdate asking for ours) cannot collide with a writer parked mid-record
/// (OpenSSL would fail it with "bad write retry").
#[derive(Debug)]
struct Transport {
    tcp: Arc<tcp::Conn>,
    out: Arc<Mutex<Vec<u8>>>,
    /// Queue every write (the handshake): a flight of several handshake messages then
    /// leaves in one `send`, so the peer wakes once for it, not once per message.
    batch: bool,
}

#[cfg(test)]
thread_local! {
    /// This thread's socket sends and receives on TLS connections (tests count flights).
    static IO_COUNTS: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

#[inline]
fn count_io(send: bool) {
    #[cfg(test)]
    IO_COUNTS.with(|c| {
        let (s, r) = c.get();
        c.set(if send { (s + 1, r) } else { (s, r + 1) });
    });
    let _ = send;
}

fn would_block<T>(res: Result<Option<T>>) -> io::Result<T> {
    match res {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e.into()),
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A handshake flight still queued here has not reached the peer, so its answer
        // cannot be on the socket yet: skip the `recv` that would only say `EAGAIN`
        // (one per flight). The handshake sends the flight, then parks for the answer.
        if self.batch && !lock(&self.out).is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        count_io(false);
        would_block(self.tcp.fd().try_io(IoBuf::Read(buf)))
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = lock(&self.out);
        if out.is_empty() && !self.batch {
            // The common case: straight to the socket, no copy.
            count_io(true);
            match self.tcp.fd().try_io(IoBuf::Write(buf))? {
                Some(n) => out.extend_from_slice(&buf[n..]),
                None => out.extend_from_slice(buf),
            }
        } else {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a TLS session negotiated (Go's `tls.ConnectionState`, the fields OpenSSL gives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionState {
    /// Whether the handshake has completed.
    pub handshake_complete: bool,
    /// `"TLSv1.3"`, `"TLSv1.2"`; empty before the handshake.
    pub version: String,
    /// The ALPN protocol agreed on, if any.
    pub alpn_protocol: Option<String>,
    /// The cipher suite's OpenSSL name; empty before the handshake.
    pub cipher_suite: String,
    /// Whether the session was resumed.
    pub did_resume: bool,
    /// The SNI name: as the server saw it, or as the client requested it (host names
    /// only; `None` for IP literals).
    pub server_name: Option<String>,
    /// The peer's certificate chain as DER, leaf first, as the peer sent it (Go's
    /// `PeerCertificates`). Also present on resumed sessions (the session carries the
    /// leaf; a server resuming a TLS 1.3 ticket may have only the leaf). Empty when the
    /// peer sent none.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The chain OpenSSL built and verified, leaf first, up to the trust anchor (Go's
    /// `VerifiedChains[0]`), when this side verified the peer in this handshake: a
    /// client with `verify_peer`, a server in a `Verify*` client-auth mode that got a
    /// certificate. `None` otherwise, and on resumed sessions (OpenSSL keeps the peer
    /// certificate in the session, not the verified chain; the original handshake
    /// verified it).
    pub verified_chain: Option<Vec<Vec<u8>>>,
    /// Server: whether the client authenticated with a certificate (in this handshake
    /// or in the session it resumed). Client: whether a certificate was configured and
    /// the handshake was a full one — OpenSSL does not tell a client whether the server
    /// asked, so this is an upper bound; the server's view is authoritative.
    pub client_certificate_used: bool,
}

/// A failure remembered so it can be returned again (handshake and write failures are
/// sticky, as in Go), in the shape [`Fault::of`] gives it; each return is a
/// [`Error::duplicate`] of it (`io::Error`s cannot be cloned).
#[derive(Debug)]
struct Fault(Error);

/// `TlsError::message` when the transport failed: the cause says how, and the Display
/// (`tls <op>: <message>: <cause>`) should say it once.
const TRANSPORT: &str = "transport error";

/// Go's text for a peer that answered (or opened) with something that is not TLS.
const NOT_TLS: &str = "tls: first record does not look like a TLS handshake";

/// The crate's error for a failed OpenSSL call, as Go words them: a failed
/// verification names the reason, a TCP FIN without close_notify is "unexpected EOF", a
/// peer that does not speak TLS is "first record does not look like a TLS handshake"
/// (OpenSSL's text kept as the cause), a transport error is wrapped with its cause.
/// Shared by the blocking `Conn` and the event layer's sessions.
pub(crate) fn ssl_error(
    op: &'static str,
    err: openssl::ssl::Error,
    verify: Option<X509VerifyResult>,
) -> Error {
    let code = err.code().as_raw();
    if let Some(v) = verify.filter(|v| *v != X509VerifyResult::OK) {
        return tls_err(
            op,
            code,
            &format!("certificate verify failed: {}", v.error_string()),
            None,
        );
    }
    match err.into_io_error() {
        Ok(io_err) => match io_err.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(inner)) if matches!(*inner, Error::Closed) => Error::Closed,
            Some(Ok(inner)) => tls_err(op, code, TRANSPORT, Some(*inner)),
            Some(Err(other)) => tls_err(op, code, &other.to_string(), None),
            None => tls_err(op, code, "unexpected EOF", None),
        },
        Err(e) if e.code() == ErrorCode::SYSCALL => tls_err(op, code, "unexpected EOF", None),
        Err(e) => {
            let text = e.to_string();
            // OpenSSL 3 reports a TCP FIN without close_notify as an SSL error.
            if text.contains("unexpected eof") {
                return tls_err(op, code, "unexpected EOF", None);
            }
            if not_tls(&e) {
                // Go's words; OpenSSL's text stays as the cause.
                let cause = Error::Sys {
                    op: "openssl",
                    source: io::Error::other(text),
                };
                return tls_err(op, code, NOT_TLS, Some(cause));
            }
            tls_err(op, code, &text, None)
        }
    }
}

/// True when OpenSSL's reasons say the peer's first bytes were not a TLS record: a
/// plaintext server answering a ClientHello (`wrong version number`, or `packet length
/// too long` when its text parses as a huge length), a plaintext client talking to a
/// TLS server (`http request`, `https proxy request` for `CONNECT`, `wrong version
/// number`, `unknown protocol` for other text).
fn not_tls(e: &openssl::ssl::Error) -> bool {
    const REASONS: [&str; 5] = [
        "wrong version number",
        "packet length too long",
        "http request",
        "https proxy request",
        "unknown protocol",
    ];
    e.ssl_error().is_some_and(|stack| {
        stack.errors().iter().any(|r| {
            r.reason()
                .is_some_and(|t| REASONS.iter().any(|w| t.eq_ignore_ascii_case(w)))
        })
    })
}

/// Go's text for an exporter on a TLS 1.2 session without Extended Master Secret.
const NO_EMS: &str = "tls: ExportKeyingMaterial is unavailable when neither TLS 1.3 nor \
                      Extended Master Secret are negotiated";

/// The TLS 1.2 PRF labels RFC 5705 reserves (the handshake's own uses of the PRF).
const RESERVED_LABELS: [&str; 4] = [
    "client finished",
    "server finished",
    "master secret",
    "key expansion",
];

/// The TLS error for a deadline that passed during `op`.
fn timeout_err(op: &'static str) -> Error {
    tls_err(op, 0, TRANSPORT, Some(Error::DeadlineExceeded))
}

impl Fault {
    fn replay(&self) -> Error {
        self.0.duplicate()
    }

    /// `err`, failing `op`, as a sticky error: a deadline (bare, or the cause of a TLS
    /// error) is [`timeout_err`]; another error that is not TLS-shaped yet is wrapped as
    /// a transport failure (kept as the cause when it carries an errno).
    fn of(err: &Error, op: &'static str) -> Fault {
        Fault(match err {
            Error::DeadlineExceeded => timeout_err(op),
            Error::Tls(t) if t.cause.as_deref().is_some_and(Error::is_timeout) => timeout_err(t.op),
            Error::Tls(_)
            | Error::TlsHandshakeTimeout(_)
            | Error::DialTimeout(_)
            | Error::Closed => err.duplicate(),
            other if other.raw_os_error().is_some() => {
                tls_err(op, 0, TRANSPORT, Some(other.duplicate()))
            }
            other => tls_err(op, 0, &other.to_string(), None),
        })
    }
}

/// A new session from `ctx` for `config` (client: SNI, name or IP verification,
/// session cache), with its state set to connect or accept; no I/O. A client uses
/// `inferred` as its server name when `config.server_name` is unset. Also returns the
/// SNI name a client requested. Shared with the event layer.
pub(crate) fn new_ssl(
    ctx: &SslContext,
    config: &Config,
    server: bool,
    remote: Option<SocketAddr>,
    inferred: Option<&str>,
) -> Result<(Ssl, Option<String>)> {
    let server_name = config.server_name.as_deref().or(inferred);
    let ossl =
        |what: &'static str, e: openssl::error::ErrorStack| tls_err(what, 0, &e.to_string(), None);
    let mut ssl = Ssl::new(ctx).map_err(|e| ossl("SSL_new", e))?;
    let mut sni = None;
    if server {
        ssl.set_accept_state();
    } else {
        if let Some(cache) = config
            .client_session_cache
            .as_ref()
            .filter(|_| !config.session_tickets_disabled)
        {
            let key = session_key(server_name, remote);
            if let Some(session) = cache.get(&key, ctx) {
                crate::sys::ssl_set_session(&mut ssl, &session, ctx);
            }
            ssl.set_ex_data(
                super::config::session_slot(),
                super::config::SessionSlot {
                    cache: cache.clone(),
                    key,
                },
            );
        }
        ssl.set_connect_state();
        // An empty name is no name, as in Go: no SNI (OpenSSL refuses an empty one).
        if let Some(name) = server_name
            .map(super::config::trim_name)
            .filter(|n| !n.is_empty())
        {
            match name.parse::<IpAddr>() {
                // SNI carries host names only (RFC 6066); IPs are checked against IP SANs.
                Ok(ip) if config.verify_peer => {
                    ssl.param_mut().set_ip(ip).map_err(|e| ossl("set_ip", e))?
                }
                Ok(_) => {}
                Err(_) => {
                    ssl.set_hostname(name)
                        .map_err(|e| ossl("SSL_set_tlsext_host_name", e))?;
                    if config.verify_peer {
                        // Go parity: a certificate without SANs does not match on its CN.
                        ssl.param_mut()
                            .set_hostflags(X509CheckFlags::NEVER_CHECK_SUBJECT);
                        ssl.param_mut()
                            .set_host(name)
                            .map_err(|e| ossl("SSL_set1_host", e))?;
                    }
                    sni = Some(name.to_string());
                }
            }
        }
    }
    Ok((ssl, sni))
}

pub(crate) fn tls_err(op: &'static str, code: i32, message: &str, cause: Option<Error>) -> Error {
    Error::Tls(TlsError {
        op,
        code,
        message: message.to_string(),
        cause: cause.map(Box::new),
    })
}

#[derive(Debug, Default)]
struct WriteState {
    fault: Option<Fault>,
    shut: bool,
    /// `write_vectored`'s staging buffer, kept between calls (no allocation per call).
    stage: Vec<u8>,
}

/// Most plaintext one TLS record carries.
const MAX_RECORD: usize = 16 * 1024;

/// When [`Conn::drive`] sends what an OpenSSL call queued (see [`Transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// All of it, parking until sent (writers, `close_write`, `key_update`).
    Wait,
    /// One non-blocking attempt, and only before parking or on a failure: output
    /// produced by a read that returned data (a TLS 1.3 ticket, a KeyUpdate answer)
    /// rides with the next write instead of costing a `send` and a peer wake-up of its
    /// own. It still leaves before this side waits for anything, or with `close`.
    Reader,
    /// The handshake: as `Wait`, except the last flight of a TLS 1.3 handshake, which is
    /// left queued when nothing waits for it yet: a server's session ticket (the client
    /// never waits for one), and a client's Finished when a write is about to follow
    /// (the write sends both in one `send`).
    Handshake {
        /// The handshake runs inside a write of at least one byte.
        write_follows: bool,
    },
}

/// A TLS stream over a [`tcp::Conn`] (Go's `tls.Conn`).
///
/// `Send + Sync`; one reader and one writer may run at once (`Read`/`Write` for `&Conn`).
/// Each OpenSSL call runs under one short lock and never while parked: a blocked read
/// does not hold up a write. The handshake runs on first I/O (or [`handshake`]) for
/// `client`/`server`/`accept`, and before returning for `connect`/`dial`.
///
/// Each handshake flight leaves in one `send`. The last one of a TLS 1.3 handshake waits
/// for the first record written when nothing depends on it yet, so a resumed request /
/// response exchange costs each side one `send` and the peer one wake-up fewer: a
/// client's Finished goes with its first record when that write started the handshake
/// (an explicit [`handshake`], `connect` or `dial` sends it at once), and a server's
/// session ticket with its first reply. Output a read produces (tickets, answers to
/// key updates) goes with the next write, or before this side next waits, or at close.
///
/// Deadlines are the TCP connection's; a write cut by a deadline leaves the TLS
/// record stream corrupt, so every later write fails with the same error (Go).
///
/// [`handshake`]: Conn::handshake
pub struct Conn {
    tcp: Arc<tcp::Conn>,
    ssl: Mutex<SslStream<Transport>>,
    /// Ciphertext OpenSSL produced that the socket has not taken yet (see [`Transport`]).
    out: Arc<Mutex<Vec<u8>>>,
    server: bool,
    /// Whether this side verifies the peer's chain (for `verified_chain`).
    verifies: bool,
    has_cert: bool,
    /// Client: the SNI name it requested (OpenSSL forgets it on resumed sessions).
    sni: Option<String>,
    verify_connection: Option<super::VerifyConnection>,
    handshake_timeout: Option<Duration>,
    done: AtomicBool,
    closed: AtomicBool,
    /// The handshake lock; holds a failed handshake's fault.
    hs: Mutex<Option<Fault>>,
    read_lock: Mutex<()>,
    write: Mutex<WriteState>,
}

impl Conn {
    /// Wraps `tcp` with a session from `ctx`; no I/O. `inferred`: as in [`new_ssl`].
    pub(crate) fn new(
        tcp: tcp::Conn,
        ctx: &SslContext,
        config: &Config,
        server: bool,
        inferred: Option<&str>,
    ) -> Result<Conn> {
        let verifies = if server {
            matches!(
                config.client_auth,
                super::ClientAuthMode::VerifyClientCertIfGiven
                    | super::ClientAuthMode::RequireAndVerifyClientCert
            )
        } else {
            config.verify_peer
        };
        let (ssl, sni) = new_ssl(ctx, config, server, tcp.remote_addr(), inferred)?;
        let ossl = |what: &'static str, e: openssl::error::ErrorStack| {
            tls_err(what, 0, &e.to_string(), None)
        };
        let tcp = Arc::new(tcp);
        let out = Arc::new(Mutex::new(Vec::new()));
        let transport = Transport {
            tcp: tcp.clone(),
            out: out.clone(),
            batch: false,
        };
        let stream = SslStream::new(ssl, transport).map_err(|e| ossl("SSL_set_bio", e))?;
        Ok(Conn {
            tcp,
            ssl: Mutex::new(stream),
            out,
            server,
            verifies,
            has_cert: config.cert_file.is_some(),
            sni,
            verify_connection: config.verify_connection.clone(),
            handshake_timeout: config.handshake_timeout,
            done: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            hs: Mutex::new(None),
            read_lock: Mutex::new(()),
            write: Mutex::new(WriteState::default()),
        })
    }

    /// Sends the queued ciphertext. `wait`: park (write deadline) until all is sent —
    /// only the handshake and the holder of the write lock do, so there is one writer
    /// parked at most; otherwise one non-blocking attempt whose failures are left to
    /// the next writer.
    fn flush_out(&self, op: &'static str, wait: bool) -> Result<()> {
        loop {
            {
                let mut out = lock(&self.out);
                while !out.is_empty() {
                    count_io(true);
                    match self.tcp.fd().try_io(IoBuf::Write(&out)) {
                        Ok(Some(n)) => {
                            out.drain(..n);
                        }
                        Ok(None) => break,
                        Err(_) if !wait => return Ok(()),
                        Err(e) => return Err(self.transport_err(op, e)),
                    }
                }
                if out.is_empty() || !wait {
                    return Ok(());
                }
            }
            self.tcp
                .fd()
                .wait_ready(Dir::Write)
                .map_err(|e| self.transport_err(op, e))?;
        }
    }

    /// A transport failure while sending queued records, shaped like the ones OpenSSL
    /// reports (deadlines and `Closed` stay bare, for the callers' mapping).
    fn transport_err(&self, op: &'static str, e: Error) -> Error {
        if self.closed.load(Ordering::Acquire) {
            return Error::Closed;
        }
        match e {
            Error::DeadlineExceeded | Error::Closed => e,
            // SSL_ERROR_SYSCALL, as when OpenSSL's own write fails.
            other => tls_err(op, 5, TRANSPORT, Some(other)),
        }
    }

    /// Runs one OpenSSL call until it completes, parking on the socket (outside the
    /// `SSL` lock) while OpenSSL wants input. What it wrote is sent as `flush` says.
    /// `Ok(None)` is a clean close_notify.
    fn drive<T>(
        &self,
        op: &'static str,
        flush: Flush,
        mut call: impl FnMut(&mut SslStream<Transport>) -> std::result::Result<T, openssl::ssl::Error>,
    ) -> Result<Option<T>> {
        loop {
            let (res, verify, hold) = {
                let mut s = lock(&self.ssl);
                let res = call(&mut s);
                let verify = res.is_err().then(|| s.ssl().verify_result());
                let hold = res.is_ok()
                    && match flush {
                        Flush::Wait => false,
                        Flush::Reader => true,
                        Flush::Handshake { write_follows } => {
                            (self.server || write_follows)
                                && s.ssl().version2() == Some(openssl::ssl::SslVersion::TLS1_3)
                        }
                    };
                (res, verify, hold)
            };
            if !hold {
                self.flush_out(op, flush != Flush::Reader)?;
            }
            let err = match res {
                Ok(v) => return Ok(Some(v)),
                Err(e) => e,
            };
            match err.code() {
                ErrorCode::WANT_READ => self.tcp.fd().wait_ready(Dir::Read)?,
                ErrorCode::WANT_WRITE => self.tcp.fd().wait_ready(Dir::Write)?,
                ErrorCode::ZERO_RETURN => return Ok(None),
                _ => return Err(self.ssl_error(op, err, verify)),
            }
        }
    }

    /// Turns an OpenSSL failure into this crate's error: `Closed` after `close`, Go's
    /// texts for the common cases (a certificate that does not verify, an EOF without
    /// close_notify, a peer that does not speak TLS: see [`not_tls`]).
    fn ssl_error(
        &self,
        op: &'static str,
        err: openssl::ssl::Error,
        verify: Option<X509VerifyResult>,
    ) -> Error {
        if self.closed.load(Ordering::Acquire) {
            return Error::Closed;
        }
        ssl_error(op, err, verify)
    }

    /// Runs the handshake if it has not run yet; idempotent and thread-safe. A failed
    /// handshake fails every later call the same way.
    ///
    /// `handshake_timeout` caps the handshake's TCP deadlines for its duration only; the
    /// caller's deadlines are restored exactly afterwards, except one set by another
    /// thread during the handshake, which stays.
    ///
    /// # Errors
    /// [`Error::Tls`] (verification, protocol, ALPN `no_application_protocol` alert, a
    /// peer that closes), [`Error::TlsHandshakeTimeout`], an `Error::Tls` wrapping
    /// [`Error::DeadlineExceeded`] when the caller's own deadline passed, [`Error::Closed`].
    pub fn handshake(&self) -> Result<()> {
        self.handshake_with(None, false)
    }

    /// The handshake with an extra cap (the dial budget); hitting it is a `DialTimeout`.
    pub(crate) fn handshake_until(&self, budget: Option<Instant>) -> Result<()> {
        self.handshake_with(budget, false)
    }

    /// `write_follows`: the caller writes at least one byte right after (see [`Flush`]).
    fn handshake_with(&self, budget: Option<Instant>, write_follows: bool) -> Result<()> {
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut hs = lock(&self.hs);
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(f) = hs.as_ref() {
            return Err(f.replay());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let fd = self.tcp.fd();
        let timeout_at = self
            .handshake_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let cap = match (timeout_at, budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Only what the overlay installed is undone: a deadline set by another thread
        // meanwhile is the caller's newer wish and stays.
        let overlay = cap.map(|c| fd.cap_deadlines(c));
        let res = self.drive("handshake", Flush::Handshake { write_follows }, |s| {
            s.get_mut().batch = true;
            let r = s.do_handshake();
            s.get_mut().batch = false;
            r
        });
        if let Some(o) = overlay {
            fd.restore_deadline_words(o);
        }
        let err = match res {
            Ok(Some(())) => match self.check_connection() {
                Ok(()) => {
                    self.done.store(true, Ordering::Release);
                    return Ok(());
                }
                Err(e) => {
                    // The peer sees the connection end: no alert fits a user's reason.
                    let _ = self.tcp.close();
                    e
                }
            },
            Ok(None) => tls_err(
                "handshake",
                6,
                "peer closed the connection during the handshake",
                None,
            ),
            Err(Error::DeadlineExceeded) => {
                let now = Instant::now();
                match (budget, timeout_at) {
                    (Some(b), _) if now >= b && cap == Some(b) => {
                        Error::DialTimeout("i/o timeout".into())
                    }
                    (_, Some(t)) if now >= t && cap == timeout_at => {
                        Error::TlsHandshakeTimeout(self.handshake_timeout.unwrap_or_default())
                    }
                    _ => timeout_err("handshake"),
                }
            }
            Err(e) => e,
        };
        // The first return is the same shape every later one replays.
        let fault = Fault::of(&err, "handshake");
        let err = fault.replay();
        *hs = Some(fault);
        Err(err)
    }

    /// Decrypted bytes that can be read without waiting for the socket: the current
    /// record's (`SSL_pending`), or else the next record's if OpenSSL already holds it
    /// whole (read ahead with an earlier one; it is decrypted here). 0 before the
    /// handshake has completed.
    pub fn bytes_available(&self) -> usize {
        // A reader parked on the socket must be the one to take the rest of a partial
        // record off it, or its wake-up is lost: only peek while no read runs.
        match self.read_lock.try_lock() {
            Ok(_g) => self.buffered(),
            Err(std::sync::TryLockError::Poisoned(_g)) => self.buffered(),
            Err(std::sync::TryLockError::WouldBlock) => lock(&self.ssl).ssl().pending(),
        }
    }

    /// See [`bytes_available`](Self::bytes_available). `SSL_pending` alone misses
    /// records that `read_ahead` pulled off the socket with an earlier one; those are
    /// readable without the socket too, even past the deadline (as in Go). The caller
    /// holds `read_lock`.
    fn buffered(&self) -> usize {
        let mut s = lock(&self.ssl);
        let n = s.ssl().pending();
        if n > 0 || !self.done.load(Ordering::Acquire) || !crate::sys::ssl_has_pending(s.ssl()) {
            return n;
        }
        // Never parks: a partial record (or one with no application data) is WANT_READ,
        // and any other failure is the next read's to report.
        match s.ssl_peek(&mut [0u8; 1]) {
            Ok(_) => s.ssl().pending(),
            Err(_) => 0,
        }
    }

    /// Whether the handshake has completed.
    pub fn is_handshake_complete(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// What was negotiated; never forces a handshake (all empty before it).
    pub fn connection_state(&self) -> ConnectionState {
        let complete = self.done.load(Ordering::Acquire);
        self.state(complete)
    }

    /// Runs the config's `verify_connection` hook on the finished handshake. A hook
    /// that panics rejects the peer: the panic stays in this connection's handshake
    /// error instead of unwinding through the caller (an accept loop, say).
    fn check_connection(&self) -> Result<()> {
        let Some(hook) = &self.verify_connection else {
            return Ok(());
        };
        let state = self.state(true);
        let message =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.check(&state))) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(reason)) => format!("verify_connection rejected the peer: {reason}"),
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("a non-string payload");
                    format!("verify_connection panicked: {text}")
                }
            };
        Err(tls_err("handshake", 0, &message, None))
    }

    fn state(&self, complete: bool) -> ConnectionState {
        let s = lock(&self.ssl);
        let ssl = s.ssl();
        let sni = if self.server {
            ssl.ex_data(super::config::sni_slot()).cloned().or_else(|| {
                ssl.servername(openssl::ssl::NameType::HOST_NAME)
                    .map(str::to_string)
            })
        } else {
            self.sni.clone()
        };
        if !complete {
            return ConnectionState {
                server_name: sni,
                ..ConnectionState::default()
            };
        }
        let der = |c: &openssl::x509::X509Ref| c.to_der().unwrap_or_default();
        let mut peer: Vec<Vec<u8>> = ssl
            .peer_certificate()
            .map(|c| der(&c))
            .into_iter()
            .collect();
        // A client's chain starts with the leaf; a server's leaves it out.
        for (i, c) in ssl.peer_cert_chain().into_iter().flatten().enumerate() {
            let d = der(c);
            if i > 0 || peer.first() != Some(&d) {
                peer.push(d);
            }
        }
        let resumed = ssl.session_reused();
        let verified_chain = (self.verifies
            && !resumed
            && !peer.is_empty()
            && ssl.verify_result() == X509VerifyResult::OK)
            .then(|| ssl.verified_chain().map(|c| c.iter().map(der).collect()))
            .flatten();
        let client_certificate_used = if self.server {
            !peer.is_empty()
        } else {
            self.has_cert && !resumed
        };
        ConnectionState {
            peer_certificates: peer,
            verified_chain,
            client_certificate_used,
            handshake_complete: true,
            version: ssl.version_str().to_string(),
            alpn_protocol: ssl
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            cipher_suite: ssl
                .current_cipher()
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            did_resume: resumed,
            server_name: sni,
        }
    }

    /// Derives `len` bytes of keying material from the session (RFC 5705 for TLS 1.2,
    /// RFC 8446 §7.5 for TLS 1.3; Go's `ConnectionState.ExportKeyingMaterial`). Both
    /// ends get the same bytes for the same `label` and `context`. With TLS 1.2,
    /// `None` and `Some(&[])` are different contexts; with TLS 1.3 they are the same.
    ///
    /// ```
    /// # use reseau::tls::{self, Config};
    /// # fn main() -> reseau::Result<()> {
    /// # let ln = tls::listen(reseau::tcp::loopback_addr(0), Config {
    /// #     cert_file: Some("certs/server.pem".into()), key_file: Some("certs/server.key".into()),
    /// #     ..Config::default() })?;
    /// # let addr = ln.local_addr().unwrap();
    /// let server = std::thread::spawn(move || {
    ///     let conn = ln.accept()?;
    ///     conn.handshake()?;
    ///     conn.export_keying_material("EXPORTER-demo", Some(b"ctx"), 32)
    /// });
    /// let conn = tls::connect(addr, &Config { ca_file: Some("certs/ca.pem".into()), ..Config::default() })?;
    /// let ours = conn.export_keying_material("EXPORTER-demo", Some(b"ctx"), 32)?;
    /// assert_eq!(ours, server.join().unwrap()?);
    /// # Ok(()) }
    /// ```
    ///
    /// `len` 0 gives an empty vector (as Go). At most 65535 bytes, and with TLS 1.3 at
    /// most 255 × the cipher suite's hash length (8160 or 12240): HKDF stops there.
    ///
    /// With TLS 1.2 it needs Extended Master Secret (RFC 7627; OpenSSL peers negotiate
    /// it by default), and the labels RFC 5705 reserves are refused, as in Go.
    ///
    /// # Errors
    /// `Error::Tls` before the handshake has completed (this never runs it), on a TLS
    /// 1.2 session without Extended Master Secret (`"tls: ExportKeyingMaterial is
    /// unavailable when neither TLS 1.3 nor Extended Master Secret are negotiated"`), or
    /// when OpenSSL refuses; [`Error::InvalidArgument`] for a `len` above the limit or,
    /// with TLS 1.2, a reserved label (`"client finished"`, `"server finished"`,
    /// `"master secret"`, `"key expansion"`: `"tls: reserved ExportKeyingMaterial
    /// label: …"`) or a `context` of 64 KiB or more (RFC 5705 sends its length in 16
    /// bits); [`Error::Closed`].
    pub fn export_keying_material(
        &self,
        label: &str,
        context: Option<&[u8]>,
        len: usize,
    ) -> Result<Vec<u8>> {
        self.check_open()?;
        if !self.done.load(Ordering::Acquire) {
            return Err(tls_err(
                "export_keying_material",
                0,
                "tls: ExportKeyingMaterial is unavailable before the handshake completes",
                None,
            ));
        }
        const MAX: usize = u16::MAX as usize;
        let s = lock(&self.ssl);
        let ssl = s.ssl();
        let tls13 = ssl.version2() == Some(openssl::ssl::SslVersion::TLS1_3);
        if !tls13 {
            // Without EMS the TLS 1.2 master secret is not bound to the handshake
            // transcript (RFC 7627: a triple-handshake attacker can share it with both
            // ends), so neither is anything exported from it. Go refuses; so do we.
            if ssl.extms_support() != Some(true) {
                return Err(tls_err("export_keying_material", 0, NO_EMS, None));
            }
            // RFC 5705 §4: these would reproduce the handshake's own PRF outputs.
            if RESERVED_LABELS.contains(&label) {
                return Err(Error::InvalidArgument(format!(
                    "tls: reserved ExportKeyingMaterial label: {label}"
                )));
            }
        }
        if len == 0 {
            // OpenSSL's TLS 1.2 PRF refuses an empty output; TLS 1.3 and Go give one.
            return Ok(Vec::new());
        }
        let limit = ssl
            .current_cipher()
            .and_then(|c| c.handshake_digest())
            .filter(|_| tls13)
            .map_or(MAX, |d| (255 * d.size()).min(MAX));
        if len > limit {
            return Err(Error::InvalidArgument(format!(
                "tls: ExportKeyingMaterial length {len} is above {limit}"
            )));
        }
        if !tls13 && context.is_some_and(|c| c.len() > MAX) {
            return Err(Error::InvalidArgument(
                "tls: ExportKeyingMaterial context too long".into(),
            ));
        }
        let mut out = vec![0u8; len];
        ssl.export_keying_material(&mut out, label, context)
            .map_err(|e| tls_err("export_keying_material", 0, &e.to_string(), None))?;
        Ok(out)
    }

    /// Updates this side's sending keys (a TLS 1.3 KeyUpdate, RFC 8446 §4.6.3); with
    /// `request_peer` the peer is asked to update its sending keys too, which it does
    /// when it next reads. Traffic goes on in both directions: the update is
    /// serialised with writes (it waits for a write in progress), and a reader running
    /// meanwhile answers a peer's request by itself.
    ///
    /// Runs the handshake first if needed.
    ///
    /// # Errors
    /// `Error::Tls` `"tls: key update requires TLS 1.3"` on a TLS 1.2 session; the
    /// errors of [`write`](Self::write) (sticky faults, `protocol is shutdown`, the
    /// write deadline, [`Error::Closed`]).
    pub fn key_update(&self, request_peer: bool) -> Result<()> {
        self.handshake()?;
        let mut w = self.writer("key_update")?;
        {
            let mut s = lock(&self.ssl);
            if s.ssl().version2() != Some(openssl::ssl::SslVersion::TLS1_3) {
                return Err(tls_err(
                    "key_update",
                    0,
                    "tls: key update requires TLS 1.3",
                    None,
                ));
            }
            crate::sys::ssl_key_update(&mut s, request_peer)
                .map_err(|e| tls_err("key_update", 0, &e.to_string(), None))?;
        }
        // SSL_do_handshake sends the scheduled KeyUpdate (a reader may have sent it
        // already; then this returns at once).
        let res = self.tcp.fd().check_deadline(Dir::Write).and_then(|()| {
            match self.drive("key_update", Flush::Wait, |s| s.do_handshake())? {
                Some(()) => Ok(()),
                None => Err(tls_err("key_update", 6, "peer closed the session", None)),
            }
        });
        Self::written(&mut w, res, 0).map(drop)
    }

    /// Writes all the slices as if concatenated, packing consecutive small slices into
    /// one TLS record (up to 16 KiB of plaintext) instead of one record per slice: 8
    /// slices of 64 bytes make one record and one `send`, not eight. OpenSSL has no
    /// gather write, so small slices are copied once into a per-connection staging
    /// buffer (reused, no allocation per call); a slice of 16 KiB or more is encrypted
    /// straight from the caller's memory. Otherwise as [`write`](Self::write): the
    /// count is of bytes sent, and a failure is sticky.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> Result<usize> {
        self.handshake_with(None, bufs.iter().any(|b| !b.is_empty()))?;
        let mut w = self.writer("write")?;
        let mut stage = std::mem::take(&mut w.stage);
        let mut done = 0;
        let res = self.write_deadline().and_then(|()| {
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                if stage.len() + b.len() > MAX_RECORD && !stage.is_empty() {
                    self.send(&stage, &mut done)?;
                    stage.clear();
                }
                if b.len() >= MAX_RECORD {
                    self.send(b, &mut done)?;
                } else {
                    stage.extend_from_slice(b);
                }
            }
            if !stage.is_empty() {
                self.send(&stage, &mut done)?;
            }
            Ok(())
        });
        stage.clear();
        w.stage = stage;
        Self::written(&mut w, res, done)
    }

    /// The write lock, unless a write failed before (its sticky error), the conn is
    /// closed, or [`close_write`](Self::close_write) ran (`op` fails with `"tls:
    /// protocol is shutdown"`).
    fn writer(&self, op: &'static str) -> Result<std::sync::MutexGuard<'_, WriteState>> {
        let w = lock(&self.write);
        if let Some(f) = &w.fault {
            return Err(f.replay());
        }
        self.check_open()?;
        if w.shut {
            return Err(tls_err(op, 0, "tls: protocol is shutdown", None));
        }
        Ok(w)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// One read of decrypted bytes (short reads allowed); `Ok(0)` once the peer's
    /// close_notify arrived. Runs the handshake first if needed.
    ///
    /// # Errors
    /// [`Error::DeadlineExceeded`] (read deadline passed with nothing decrypted waiting),
    /// [`Error::Closed`], [`Error::Tls`] — `"unexpected EOF"` when the TCP stream ended
    /// without close_notify (a truncation attack looks exactly like this).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.handshake()?;
        let _g = lock(&self.read_lock);
        self.check_open()?;
        if buf.is_empty() {
            return Ok(0);
        }
        // Records already off the socket are returned even past the deadline, as in Go;
        // anything that needs the socket honours it. Deadline first: without one, the
        // common case, this costs no extra `SSL` lock per read.
        if let Err(e) = self.tcp.fd().check_deadline(Dir::Read)
            && self.buffered() == 0
        {
            return Err(e);
        }
        Ok(self
            .drive("read", Flush::Reader, |s| s.ssl_read(buf))?
            .unwrap_or(0))
    }

    /// Reads until `buf` is full or EOF; returns the count (short = EOF).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_full(&self, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..])? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }

    /// Waits for at least one decrypted byte, then returns all that are decrypted and
    /// waiting; empty at EOF.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_available(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = self.read(&mut buf)?;
        loop {
            let pending = self.buffered();
            if n == 0 || pending == 0 {
                buf.truncate(n);
                return Ok(buf);
            }
            buf.resize(n + pending, 0);
            n += self.read(&mut buf[n..])?;
        }
    }

    /// True once the peer's close_notify has been read and no decrypted bytes are left;
    /// blocks (honouring the read deadline) until that or a byte is known.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn eof(&self) -> Result<bool> {
        self.handshake()?;
        let _g = lock(&self.read_lock);
        self.check_open()?;
        if self.buffered() > 0 {
            return Ok(false);
        }
        self.tcp.fd().check_deadline(Dir::Read)?;
        let mut b = [0u8; 1];
        Ok(self
            .drive("peek", Flush::Reader, |s| s.ssl_peek(&mut b))?
            .is_none_or(|n| n == 0))
    }

    /// Encrypts and writes all of `buf`; runs the handshake first if needed. A write cut
    /// by the deadline after some bytes returns `Ok(sent)`; the error is then sticky.
    ///
    /// # Errors
    /// `Error::Tls` wrapping [`Error::DeadlineExceeded`] (permanent: the record stream is
    /// corrupt), `Error::Tls` `"tls: protocol is shutdown"` after
    /// [`close_write`](Self::close_write), [`Error::Closed`], `Error::Tls` for OpenSSL or
    /// transport failures.
    pub fn write(&self, buf: &[u8]) -> Result<usize> {
        self.handshake_with(None, !buf.is_empty())?;
        let mut w = self.writer("write")?;
        let mut done = 0;
        let res = self
            .write_deadline()
            .and_then(|()| self.send(buf, &mut done));
        Self::written(&mut w, res, done)
    }

    /// Whether the write deadline still allows a write. When it does not, a client's
    /// Finished that the handshake left for this write (see [`Flush`]) is still sent,
    /// without waiting: the server must not wait for it until we close.
    fn write_deadline(&self) -> Result<()> {
        self.tcp.fd().check_deadline(Dir::Write).inspect_err(|_| {
            let _ = self.flush_out("write", false);
        })
    }

    /// Encrypts all of `buf` (one record per `SSL_write`, partial writes on), counting
    /// in `done` what reached the socket.
    fn send(&self, buf: &[u8], done: &mut usize) -> Result<()> {
        let mut at = 0;
        while at < buf.len() {
            match self.drive("write", Flush::Wait, |s| s.ssl_write(&buf[at..]))? {
                Some(n) => {
                    at += n;
                    *done += n;
                }
                None => return Err(tls_err("write", 6, "peer closed the session", None)),
            }
        }
        Ok(())
    }

    /// A write's outcome: a failure is remembered (sticky); bytes already sent win.
    fn written(w: &mut WriteState, res: Result<()>, done: usize) -> Result<usize> {
        match res {
            Ok(()) => Ok(done),
            Err(Error::Closed) => Err(Error::Closed),
            Err(e) => {
                let fault = Fault::of(&e, "write");
                let err = fault.replay();
                w.fault = Some(fault);
                if done > 0 { Ok(done) } else { Err(err) }
            }
        }
    }

    /// Sends close_notify (a TLS half-close) and keeps the read side open; later writes
    /// fail with `"tls: protocol is shutdown"`. The TCP stream stays open (Go's
    /// `CloseWrite`).
    ///
    /// # Errors
    /// `Error::Tls` `"tls: CloseWrite called before handshake complete"`; the sticky
    /// error of an earlier failed [`write`](Self::write) (the record stream is corrupt);
    /// [`Error::Closed`], transport errors.
    pub fn close_write(&self) -> Result<()> {
        if !self.done.load(Ordering::Acquire) {
            return Err(tls_err(
                "close_write",
                0,
                "tls: CloseWrite called before handshake complete",
                None,
            ));
        }
        let mut w = lock(&self.write);
        // A cut write left a partial record: no close_notify can follow it.
        if let Some(f) = &w.fault {
            return Err(f.replay());
        }
        self.check_open()?;
        if w.shut {
            return Ok(());
        }
        self.drive("close_write", Flush::Wait, |s| s.shutdown().map(drop))?;
        w.shut = true;
        Ok(())
    }

    /// Closes: sends close_notify if the handshake completed and no write is in flight
    /// (best effort, never waits for the peer), then closes the TCP connection, which
    /// wakes blocked calls ([`Error::Closed`]). Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.done.load(Ordering::Acquire)
            && let Ok(w) = self.write.try_lock()
            && w.fault.is_none()
        {
            if !w.shut {
                let _ = lock(&self.ssl).shutdown().map(|_: ShutdownResult| ());
            }
            // One non-blocking attempt: a full send buffer just skips the alert. It also
            // takes what reads left queued (see `Flush::Reader`).
            let _ = self.flush_out("close", false);
        }
        self.tcp.close()
    }

    /// False once [`close`](Self::close) has run.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.tcp.is_open()
    }

    /// Sets both TCP deadlines (they also govern handshake I/O).
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.tcp.set_deadline(at)
    }

    /// Sets the TCP read deadline.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_read_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.tcp.set_read_deadline(at)
    }

    /// Sets the TCP write deadline.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn set_write_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.tcp.set_write_deadline(at)
    }

    /// The underlying TCP connection.
    pub fn net_conn(&self) -> &tcp::Conn {
        &self.tcp
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr()
    }

    /// Whether this is the server end.
    pub fn is_server(&self) -> bool {
        self.server
    }
}

/// The client session cache's key: `server_name:port`, else the peer's `ip:port`.
fn session_key(server_name: Option<&str>, remote: Option<SocketAddr>) -> String {
    let port = remote.map_or(0, |a| a.port());
    match server_name.filter(|n| !n.is_empty()) {
        Some(name) => format!("{}:{port}", super::config::trim_name(name)),
        None => remote.map_or_else(String::new, |a| a.to_string()),
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "?".into(), |a| a.to_string());
        let role = if self.server { "server" } else { "client" };
        let state = if !self.is_open() {
            "closed".to_string()
        } else if !self.is_handshake_complete() {
            "handshake pending".to_string()
        } else {
            let st = self.connection_state();
            match st.alpn_protocol {
                Some(p) => format!("{}, {p}", st.version),
                None => st.version,
            }
        };
        write!(
            f,
            "tls::Conn({} => {}, {role}, {state})",
            show(self.local_addr()),
            show(self.remote_addr())
        )
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(Conn::read(self, buf)?)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(Conn::read(self, buf)?)
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(Conn::write(self, buf)?)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(Conn::write_vectored(self, bufs)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(Conn::write(self, buf)?)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(Conn::write_vectored(self, bufs)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{self, ClientSessionCache};

    fn tls_tests_enabled() -> bool {
        std::env::var("RESEAU_RUN_TLS_TESTS").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }

    /// (sends, receives) on this thread since the last call.
    fn io_counts() -> (usize, usize) {
        IO_COUNTS.with(|c| c.replace((0, 0)))
    }

    #[test]
    fn tls13_last_flights_ride_with_the_first_write() {
        // Client writes first, server answers: the client's Finished leaves with its
        // first record and the server's ticket with its reply, one `send` each; a
        // handshake does not `recv` while its own flight is still unsent. Counted per
        // thread, so timing cannot change the counts asserted.
        if !tls_tests_enabled() {
            return;
        }
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let safety = || Some(Instant::now() + Duration::from_secs(20));
        let server_cfg = Config {
            cert_file: Some(format!("{certs}/server.pem").into()),
            key_file: Some(format!("{certs}/server.key").into()),
            ..Config::default()
        };
        let ln = tls::listen(tcp::loopback_addr(0), server_cfg).unwrap();
        let addr = ln.local_addr().unwrap();
        ln.set_deadline(safety()).unwrap();
        let server = std::thread::spawn(move || {
            let mut sends = Vec::new();
            for _ in 0..2 {
                let c = ln.accept().unwrap();
                c.set_deadline(safety()).unwrap();
                io_counts();
                let mut b = [0u8; 1];
                assert_eq!(c.read_full(&mut b).unwrap(), 1);
                c.write(&b).unwrap();
                sends.push(io_counts().0);
                // The client's close_notify: the client has read our reply.
                assert_eq!(c.read(&mut b).unwrap(), 0);
            }
            sends
        });
        let cfg = Config {
            server_name: Some("localhost".into()),
            ca_file: Some(format!("{certs}/ca.pem").into()),
            client_session_cache: Some(ClientSessionCache::new(0)),
            ..Config::default()
        };
        for resumed in [false, true] {
            let c = tls::client(tcp::connect(addr).unwrap(), &cfg).unwrap();
            c.set_deadline(safety()).unwrap();
            io_counts();
            c.write(b"x").unwrap();
            // ClientHello; Finished + "x". One `recv`: the server's flight.
            assert_eq!(io_counts(), (2, 1), "client, resumed: {resumed}");
            let mut b = [0u8; 1];
            assert_eq!(c.read_full(&mut b).unwrap(), 1);
            let st = c.connection_state();
            assert_eq!((st.version.as_str(), st.did_resume), ("TLSv1.3", resumed));
            c.close().unwrap();
        }
        // Server: its flight; ticket + reply.
        assert_eq!(server.join().unwrap(), [2, 2]);
    }

    #[test]
    fn replayed_faults_read_like_the_original_once() {
        let reset = || Error::Sys {
            op: "read",
            source: io::Error::from_raw_os_error(libc::ECONNRESET),
        };
        let errno_text = reset().to_string();
        for (original, cause_text) in [
            (timeout_err("write"), "i/o timeout"),
            (Error::DeadlineExceeded, "i/o timeout"),
            (
                tls_err("read", 5, TRANSPORT, Some(reset())),
                errno_text.as_str(),
            ),
            (reset(), errno_text.as_str()),
            // A cause without an errno (OpenSSL's text under Go's words) is kept too.
            (
                tls_err(
                    "handshake",
                    1,
                    NOT_TLS,
                    Some(Error::Sys {
                        op: "openssl",
                        source: io::Error::other("wrong version number"),
                    }),
                ),
                "openssl: wrong version number",
            ),
        ] {
            let replayed = Fault::of(&original, "write").replay();
            let text = replayed.to_string();
            assert_eq!(text.matches(cause_text).count(), 1, "{text:?}");
            assert_eq!(replayed.kind(), original.kind(), "{text:?}");
            assert_eq!(replayed.is_timeout(), original.is_timeout(), "{text:?}");
            assert_eq!(replayed.raw_os_error(), original.raw_os_error(), "{text:?}");
            if matches!(original, Error::Tls(_)) {
                assert_eq!(text, original.to_string());
            }
        }
        assert_eq!(
            timeout_err("write").to_string(),
            "tls write: transport error: i/o timeout"
        );
    }
}
