//! TLS on a loop: an OpenSSL session over in-memory buffers, driven only by readiness.
//!
//! The session never touches the socket. The loop reads ciphertext from the socket
//! (into its shared read buffer) and appends it to the session's input; OpenSSL's
//! output (handshake flights, records, alerts) collects in `wr` and goes through the
//! connection's ordinary write path (direct `write`, the queue, write interest). So a
//! handshake step runs only when bytes arrived, OpenSSL never sees `EAGAIN` from a
//! write, and a whole handshake flight leaves in one `write`. The cost is one copy of
//! the ciphertext each way; the plain path is unchanged.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use openssl::ssl::{ErrorCode, SslContext, SslStream};

use crate::tls::{self, Config};
use crate::{Error, Result};

/// Plaintext bytes one `SSL_read` may return (a record's maximum payload).
pub(crate) const RECORD: usize = 16 * 1024;

/// OpenSSL's transport: ciphertext in (`rd` from `rd_head`), ciphertext out (`wr`).
#[derive(Debug, Default)]
pub(crate) struct MemIo {
    pub(crate) rd: Vec<u8>,
    rd_head: usize,
    pub(crate) wr: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.rd[self.rd_head..];
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.rd_head += n;
        if self.rd_head == self.rd.len() {
            self.rd.clear();
            self.rd_head = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wr.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Which handshake a connection is in, and what its failure reports.
#[derive(Debug)]
pub(crate) enum Role {
    /// A client's first handshake: failures go to `connect_failed`, wrapped like a
    /// dial's (`dial tcp <addr>: ...`).
    Client {
        addr: String,
        local: Option<SocketAddr>,
    },
    /// An accepted connection's first handshake: failures go to `tls_failed`.
    Server,
    /// `start_tls` on an open connection: `tls_ready`, or `tls_failed` then `closed`.
    Upgrade,
}

/// The TLS session of one connection.
pub(crate) struct Session {
    pub(crate) ssl: SslStream<MemIo>,
    /// The handshake has completed.
    pub(crate) done: bool,
    /// close_notify was written.
    pub(crate) notify_sent: bool,
    /// The peer's close_notify arrived.
    pub(crate) peer_closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A prepared context for one side: built (and validated) once, before any I/O.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) ctx: SslContext,
    pub(crate) config: Arc<Config>,
    pub(crate) server: bool,
    /// A client's server name when `config.server_name` is unset: the dialed host,
    /// normalized (passed beside the config, as by `tls::connect`, not copied into it).
    pub(crate) inferred: Option<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Validates `config` and builds (or reuses) its context. A client's
    /// `server_name` defaults to `host` when given.
    ///
    /// # Errors
    /// [`Error::TlsConfig`] for an invalid configuration.
    pub(crate) fn new(config: Config, server: bool, host: Option<&str>) -> Result<Prepared> {
        let inferred = host
            .filter(|_| !server && config.server_name.is_none())
            .map(tls::normalize_name);
        let ctx = if server {
            config.context(true)?
        } else {
            config.client_context(inferred.as_deref())?
        };
        Ok(Prepared {
            ctx,
            config: Arc::new(config),
            server,
            inferred,
        })
    }

    /// A new session, in connect or accept state; no I/O.
    ///
    /// # Errors
    /// [`Error::Tls`] when OpenSSL cannot create the session.
    pub(crate) fn session(&self, remote: Option<SocketAddr>) -> Result<Session> {
        let (ssl, _sni) = tls::new_ssl(
            &self.ctx,
            &self.config,
            self.server,
            remote,
            self.inferred.as_deref(),
        )?;
        let ssl = SslStream::new(ssl, MemIo::default())
            .map_err(|e| tls::tls_err("SSL_set_bio", 0, &e.to_string(), None))?;
        Ok(Session {
            ssl,
            done: false,
            notify_sent: false,
            peer_closed: false,
        })
    }
}

/// What one step of the session did.
pub(crate) enum Step {
    /// Needs more ciphertext.
    WantRead,
    /// The handshake just completed.
    Ready,
    /// Failed: the connection ends with this error.
    Failed(Error),
}

impl Session {
    /// Appends ciphertext from the socket.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.ssl.get_mut().rd.extend_from_slice(data);
    }

    /// Whether records wait in the session (held back by a mute or a yield): decrypted
    /// plaintext inside OpenSSL, or ciphertext not handed to it yet.
    pub(crate) fn has_pending(&self) -> bool {
        let io = self.ssl.get_ref();
        io.rd_head < io.rd.len() || self.ssl.ssl().pending() > 0
    }

    /// Advances the handshake as far as the buffered ciphertext allows.
    pub(crate) fn handshake(&mut self) -> Step {
        if self.done {
            return Step::Ready;
        }
        match self.ssl.do_handshake() {
            Ok(()) => {
                self.done = true;
                Step::Ready
            }
            Err(e) if e.code() == ErrorCode::WANT_READ => Step::WantRead,
            Err(e) => {
                let verify = self.ssl.ssl().verify_result();
                Step::Failed(tls::ssl_error("handshake", e, Some(verify)))
            }
        }
    }

    /// Decrypts into `buf`: `Ok(Some(n))` plaintext, `Ok(None)` nothing more now
    /// (needs ciphertext, or the peer's close_notify arrived: see `peer_closed`).
    ///
    /// # Errors
    /// A broken record stream (bad MAC, unexpected message, alert).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        if self.peer_closed {
            return Ok(None);
        }
        match self.ssl.ssl_read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.code() == ErrorCode::WANT_READ => Ok(None),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                self.peer_closed = true;
                Ok(None)
            }
            Err(e) => Err(tls::ssl_error("read", e, None)),
        }
    }

    /// Encrypts `data` into the output buffer (never blocks: the output is memory).
    ///
    /// # Errors
    /// OpenSSL refused (the session failed earlier).
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            match self.ssl.ssl_write(&data[done..]) {
                Ok(n) => done += n,
                Err(e) => return Err(tls::ssl_error("write", e, None)),
            }
        }
        Ok(())
    }

    /// Writes close_notify into the output buffer (once).
    pub(crate) fn close_notify(&mut self) {
        if !self.notify_sent {
            self.notify_sent = true;
            let _ = self.ssl.shutdown();
        }
    }

    /// Ciphertext OpenSSL produced, for the write path.
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.ssl.get_mut().wr
    }
}

/// The error a handshake reports when the peer closed the TCP stream first.
pub(crate) fn eof_error() -> Error {
    tls::tls_err("handshake", 0, "unexpected EOF", None)
}
