//! TLS on OpenSSL (Go's `crypto/tls` semantics over this crate's sockets).
//!
//! ```
//! use std::io::Read;
//! use reseau::tls::{self, Config};
//! # fn main() -> reseau::Result<()> {
//! let server_cfg = Config {
//!     cert_file: Some("certs/server.pem".into()),
//!     key_file: Some("certs/server.key".into()),
//!     ..Config::default()
//! };
//! let ln = tls::listen(reseau::tcp::loopback_addr(0), server_cfg)?;
//! let addr = ln.local_addr().unwrap();
//! let server = std::thread::spawn(move || -> reseau::Result<()> {
//!     let conn = ln.accept()?; // lazy: the handshake runs on first I/O
//!     conn.write(b"hello over TLS")?;
//!     conn.close_write() // close_notify; the client reads EOF
//! });
//! let client_cfg = Config { ca_file: Some("certs/ca.pem".into()), ..Config::default() };
//! // `connect` infers server_name "127.0.0.1", checked against the certificate's IP SAN.
//! let conn = tls::connect(addr, &client_cfg)?;
//! let mut got = String::new();
//! (&conn).read_to_string(&mut got).unwrap();
//! assert_eq!(got, "hello over TLS");
//! assert_eq!(conn.connection_state().version, "TLSv1.3");
//! server.join().unwrap()?;
//! # Ok(()) }
//! ```

mod config;
mod conn;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use openssl::ssl::SslContext;

pub use config::{ClientAuthMode, ClientSessionCache, Config, TlsVersion, VerifyConnection};
pub use conn::{Conn, ConnectionState};

use crate::resolve::{Dialer, ListenConfig};
use crate::{Result, tcp};

pub(crate) use config::normalize_name;
use config::trim_name;
pub(crate) use conn::{new_ssl, ssl_error, tls_err};

/// Wraps a connected TCP stream as a TLS client; the handshake runs on first I/O or
/// [`Conn::handshake`]. `server_name` is used as given (never inferred here).
///
/// # Errors
/// [`Error::TlsConfig`](crate::Error::TlsConfig) (e.g. `verify_peer` without `server_name`), before any I/O.
pub fn client(tcp: tcp::Conn, config: &Config) -> Result<Conn> {
    let ctx = config.context(false)?;
    Conn::new(tcp, &ctx, config, false, None)
}

/// Wraps an accepted TCP stream as a TLS server; the handshake runs on first I/O.
///
/// # Errors
/// [`Error::TlsConfig`](crate::Error::TlsConfig) (no certificate, `Verify*` modes without `client_ca_file`, …).
pub fn server(tcp: tcp::Conn, config: &Config) -> Result<Conn> {
    let ctx = config.context(true)?;
    Conn::new(tcp, &ctx, config, true, None)
}

/// Handshakes, closing the connection if it fails.
fn finish(conn: Conn, budget: Option<Instant>) -> Result<Conn> {
    match conn.handshake_until(budget) {
        Ok(()) => Ok(conn),
        Err(e) => {
            let _ = conn.close();
            Err(e)
        }
    }
}

/// Connects to `remote` and completes the handshake. `server_name` defaults to the
/// address's IP, which is then verified against the certificate's IP SANs.
///
/// # Errors
/// [`Error::TlsConfig`](crate::Error::TlsConfig) before any I/O; the errors of [`tcp::connect`] and
/// [`Conn::handshake`].
pub fn connect(remote: SocketAddr, config: &Config) -> Result<Conn> {
    // The inferred name goes down beside the config: no copy of the config per connection.
    let ip = config
        .server_name
        .is_none()
        .then(|| remote.ip().to_string());
    let ctx = config.client_context(ip.as_deref())?;
    finish(
        Conn::new(tcp::connect(remote)?, &ctx, config, false, ip.as_deref())?,
        None,
    )
}

/// Dials `address` with [`Dialer::default()`] and completes the handshake;
/// `server_name` defaults to the address's host.
///
/// # Errors
/// As [`Dialer::dial_tls`].
pub fn dial(network: &str, address: &str, config: &Config) -> Result<Conn> {
    Dialer::default().dial_tls(network, address, config)
}

impl Dialer {
    /// Dials and completes a TLS handshake, all within the dialer's one budget
    /// (resolution, connect attempts and handshake). `server_name` defaults to the
    /// address's host (brackets, zone and trailing dots stripped).
    ///
    /// # Errors
    /// [`Error::TlsConfig`](crate::Error::TlsConfig) unwrapped, before any I/O; otherwise one [`Error::Op`](crate::Error::Op)
    /// (`op == "dial"`) around the dial's or handshake's error ([`Error::DialTimeout`](crate::Error::DialTimeout)
    /// when the budget ran out during the handshake).
    pub fn dial_tls(&self, network: &str, address: &str, config: &Config) -> Result<Conn> {
        let host = config
            .server_name
            .is_none()
            .then(|| {
                crate::resolve::split(address)
                    .ok()
                    .map(|(h, _)| trim_name(h))
            })
            .flatten();
        let ctx = config.client_context(host)?;
        let (tcp, budget) = self.dial_budget(network, address)?;
        Conn::new(tcp, &ctx, config, false, host)
            .and_then(|c| finish(c, budget))
            .map_err(|e| crate::resolve::wrap("dial", network, self.local_addr, address, e))
    }
}

/// Listens on `local` for TLS connections (TCP listener with this crate's defaults).
///
/// # Errors
/// [`Error::TlsConfig`](crate::Error::TlsConfig) before any I/O; the errors of [`tcp::listen`].
pub fn listen(local: SocketAddr, config: Config) -> Result<Listener> {
    let ctx = Mutex::new(config.context(true)?);
    Ok(Listener {
        tcp: tcp::listen(local)?,
        ctx,
        config: Box::new(config),
    })
}

/// Listens on `address` (`host:port`) for `network` with [`ListenConfig::default()`].
///
/// # Errors
/// [`Error::TlsConfig`](crate::Error::TlsConfig) unwrapped, before any I/O; otherwise as [`ListenConfig::listen`].
pub fn listen_on(network: &str, address: &str, config: Config) -> Result<Listener> {
    let ctx = Mutex::new(config.context(true)?);
    Ok(Listener {
        tcp: ListenConfig::default().listen(network, address)?,
        ctx,
        config: Box::new(config),
    })
}

/// A TLS listener: accepts TCP connections and wraps them as lazy server [`Conn`]s.
///
/// Certificate files renewed while it runs serve the connections accepted after (see
/// [`Config`]).
pub struct Listener {
    tcp: tcp::Listener,
    /// The last context that loaded: kept when renewed files do not load (yet).
    ctx: Mutex<SslContext>,
    /// Boxed: the listener sits in enums beside plain TCP listeners.
    config: Box<Config>,
}

impl Listener {
    /// Serves TLS on an existing TCP listener.
    ///
    /// # Errors
    /// [`Error::TlsConfig`](crate::Error::TlsConfig) for an unusable server config.
    pub fn new(tcp: tcp::Listener, config: Config) -> Result<Listener> {
        let ctx = Mutex::new(config.context(true)?);
        Ok(Listener {
            tcp,
            ctx,
            config: Box::new(config),
        })
    }

    /// Accepts the next connection; its handshake runs on first I/O (so one slow client
    /// cannot hold up the accept loop). It gets the certificate files as they are now;
    /// if they no longer load (a renewal half written), the last set that did.
    ///
    /// # Errors
    /// As [`tcp::Listener::accept`].
    pub fn accept(&self) -> Result<Conn> {
        let tcp = self.tcp.accept()?;
        Conn::new(tcp, &self.context(), &self.config, true, None)
    }

    /// The current context, or the last one that loaded.
    fn context(&self) -> SslContext {
        let mut last = crate::util::lock(&self.ctx);
        if let Ok(ctx) = self.config.context(true) {
            *last = ctx;
        }
        last.clone()
    }

    /// Sets the accept deadline.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.tcp.set_deadline(at)
    }

    /// The bound address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.tcp.addr()
    }

    /// Alias of [`addr`](Self::addr).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.addr()
    }

    /// Closes; a blocked `accept` fails with [`Error::Closed`](crate::Error::Closed). Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        self.tcp.close()
    }

    /// False once closed.
    pub fn is_open(&self) -> bool {
        self.tcp.is_open()
    }

    /// The TCP listener underneath.
    pub fn net_listener(&self) -> &tcp::Listener {
        &self.tcp
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() { "active" } else { "closed" };
        let addr = self.addr().map_or_else(|| "?".into(), |a| a.to_string());
        write!(f, "tls::Listener({addr}, {state})")
    }
}
