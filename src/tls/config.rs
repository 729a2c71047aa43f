//! [`Config`], its validation and the shared `SSL_CTX` cache.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::ex_data::Index;
use openssl::ssl::{
    AlpnError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions,
    SslSession, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::X509Name;

use crate::{Error, Result};

/// A TLS protocol version. TLS 1.0 and 1.1 are not offered (as in Go since 1.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn openssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }
    }
}

/// What a server asks of client certificates (Go's `tls.ClientAuthType`).
///
/// | mode | OpenSSL verify flags | certificate checked against `client_ca_file` |
/// |---|---|---|
/// | `NoClientCert` | `NONE` | – |
/// | `RequestClientCert` | `PEER`, accept-all callback | no |
/// | `RequireAnyClientCert` | `PEER \| FAIL_IF_NO_PEER_CERT`, accept-all callback | no |
/// | `VerifyClientCertIfGiven` | `PEER` | yes, if one is sent |
/// | `RequireAndVerifyClientCert` | `PEER \| FAIL_IF_NO_PEER_CERT` | yes |
///
/// With TLS 1.3 the client finishes its handshake before the server judges its
/// certificate, so a rejected client often sees the failure on its first read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ClientAuthMode {
    /// Do not ask for a client certificate.
    #[default]
    NoClientCert,
    /// Ask; accept anything or nothing.
    RequestClientCert,
    /// Require a certificate; do not verify it.
    RequireAnyClientCert,
    /// Verify a certificate if the client sends one.
    VerifyClientCertIfGiven,
    /// Require and verify a certificate.
    RequireAndVerifyClientCert,
}

/// TLS settings for clients and servers (Go's `tls.Config`, Reseau's `TLS.Config`).
///
/// A plain struct with public fields and `Default`; it is validated when used
/// ([`Error::TlsConfig`], before any I/O). Equivalent configurations share one
/// OpenSSL `SSL_CTX`.
///
/// The files are loaded when a connection (or listener) is set up, and loaded again
/// for later connections once one of them has changed (a different size, mtime, ctime
/// or inode: renewed in place or replaced by a rename), so a renewed certificate is
/// picked up without a restart. Connections made before keep what they were made with.
///
/// ```
/// use reseau::tls::{Config, TlsVersion};
/// let client = Config {
///     server_name: Some("localhost".into()),
///     ca_file: Some("certs/ca.pem".into()),
///     alpn_protocols: vec!["h2".into(), "http/1.1".into()],
///     min_version: Some(TlsVersion::Tls13),
///     ..Config::default()
/// };
/// assert!(client.verify_peer);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The name to verify the server's certificate against and to send as SNI (SNI only
    /// for host names, not IP literals). `connect`/`dial` infer it from the address.
    pub server_name: Option<String>,
    /// Client: verify the server's chain and name (default `true`).
    pub verify_peer: bool,
    /// Server: what to ask of client certificates.
    pub client_auth: ClientAuthMode,
    /// Certificate chain (PEM). Required for servers; a client presents it for mTLS.
    ///
    /// Renewing the file (in place or by rename) takes effect for new connections; a
    /// [`Listener`](super::Listener) whose renewed pair does not load yet (the key not
    /// written, say) keeps serving the previous one.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) for `cert_file`; reloaded with it when either changes.
    pub key_file: Option<PathBuf>,
    /// Client: CA bundle to trust (default: `SSL_CERT_FILE`, else the system bundle).
    /// A changed file (or `SSL_CERT_FILE`'s) is reloaded for new connections.
    pub ca_file: Option<PathBuf>,
    /// Server: CAs that client certificates must chain to (the two `Verify*` modes);
    /// a changed file is reloaded for new connections.
    pub client_ca_file: Option<PathBuf>,
    /// ALPN protocols in preference order.
    pub alpn_protocols: Vec<String>,
    /// Cap on the handshake's duration, overlaid on the TCP deadlines during the
    /// handshake only.
    pub handshake_timeout: Option<Duration>,
    /// Lowest version offered (default TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// Highest version offered (default: the highest OpenSSL supports, TLS 1.3).
    pub max_version: Option<TlsVersion>,
    /// Turns session resumption off (Go's `SessionTicketsDisabled`). A server then
    /// issues no TLS 1.2 tickets and no TLS 1.3 PSK tickets (and keeps no session-ID
    /// cache), so every handshake is a full one; a client neither offers nor stores
    /// sessions.
    ///
    /// Default `false`: servers issue tickets, as Go's do. Ticket lifetime and keys: see
    /// [`ClientSessionCache`].
    pub session_tickets_disabled: bool,
    /// Client: where sessions are kept for resumption (Go's `ClientSessionCache`).
    /// `None` (the default, as in Go) means no resumption. A cache is shared by every
    /// clone of the `Config` that holds it (and can be shared between configs).
    pub client_session_cache: Option<ClientSessionCache>,
    /// Called on both sides after OpenSSL's own verification, on every handshake,
    /// resumed ones included (Go's `VerifyConnection`; the DER chain it sees is Go's
    /// `VerifyPeerCertificate` argument). An `Err(reason)` fails the handshake with an
    /// [`Error::Tls`] whose message carries the reason; so does a panic in the hook
    /// (`verify_connection panicked: <message>`), which does not reach the caller.
    pub verify_connection: Option<VerifyConnection>,
}

/// A user check run on every completed handshake; see [`Config::verify_connection`].
///
/// Compared by identity: two configs are equal when they hold the same hook.
///
/// ```
/// use reseau::tls::{Config, VerifyConnection};
/// // A SPIFFE-style check: the client certificate must be present.
/// let server = Config {
///     verify_connection: Some(VerifyConnection::new(|state| {
///         if state.peer_certificates.is_empty() {
///             return Err("no client certificate".into());
///         }
///         Ok(())
///     })),
///     ..Config::default()
/// };
/// assert!(server.verify_connection.is_some());
/// ```
#[derive(Clone)]
pub struct VerifyConnection(Arc<VerifyFn>);

type VerifyFn = dyn Fn(&super::ConnectionState) -> std::result::Result<(), String> + Send + Sync;

impl VerifyConnection {
    /// Wraps `check`; it gets the negotiated [`ConnectionState`](super::ConnectionState)
    /// (peer chain as DER, verified chain, server name, resumption) and returns the
    /// reason to reject.
    pub fn new(
        check: impl Fn(&super::ConnectionState) -> std::result::Result<(), String>
        + Send
        + Sync
        + 'static,
    ) -> VerifyConnection {
        VerifyConnection(Arc::new(check))
    }

    pub(crate) fn check(&self, state: &super::ConnectionState) -> std::result::Result<(), String> {
        (self.0)(state)
    }
}

impl fmt::Debug for VerifyConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyConnection(..)")
    }
}

impl PartialEq for VerifyConnection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for VerifyConnection {}

/// Lifetime of a session, and so of a ticket (TLS 1.3 sends it as the ticket lifetime
/// hint): 7 days, Go's (and TLS 1.3's) maximum.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a server's ticket keys change: daily, as Go rotates its keys.
pub(crate) const TICKET_KEY_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// A bounded LRU cache of client sessions (Go's `tls.NewLRUClientSessionCache`),
/// keyed by `server_name:port`, or by the peer's `ip:port` when there is no name.
///
/// Put one in [`Config::client_session_cache`]; every connection made with that config
/// (or a clone) offers the session cached for its peer — a TLS 1.3 PSK ticket or a
/// TLS 1.2 session ticket — and stores the one the server issues. With TLS 1.3 the
/// server sends tickets after the handshake, so they arrive with the first bytes read:
/// a connection that is closed before reading anything leaves nothing to resume.
///
/// A session is only offered on a connection of the same OpenSSL context that made it
/// (same config, same unchanged files).
///
/// Servers (see [`Config::session_tickets_disabled`]): tickets carry a 7-day lifetime
/// (Go's); the keys that seal them are OpenSSL's random per-context keys, and the
/// context is rebuilt (fresh keys) every 24 hours (Go rotates daily too). Unlike Go,
/// which keeps decrypting with the previous keys for the rest of the week, a ticket
/// sealed before a rotation is no longer accepted after it: that handshake is a full
/// one and issues a new ticket.
///
/// ```
/// use reseau::tls::{ClientSessionCache, Config};
/// let client = Config {
///     ca_file: Some("certs/ca.pem".into()),
///     client_session_cache: Some(ClientSessionCache::new(0)), // 0: Go's default, 64
///     ..Config::default()
/// };
/// assert!(client.client_session_cache.as_ref().unwrap().is_empty());
/// ```
#[derive(Clone)]
pub struct ClientSessionCache(Arc<Mutex<Lru>>);

struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, SslContext, SslSession)>,
}

impl ClientSessionCache {
    /// A cache of at most `capacity` sessions (the least recently used goes first);
    /// 0 means 64, as in Go.
    pub fn new(capacity: usize) -> ClientSessionCache {
        let capacity = if capacity == 0 { 64 } else { capacity };
        ClientSessionCache(Arc::new(Mutex::new(Lru {
            capacity,
            tick: 0,
            entries: HashMap::new(),
        })))
    }

    /// How many sessions are cached.
    pub fn len(&self) -> usize {
        crate::util::lock(&self.0).entries.len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every session.
    pub fn clear(&self) {
        crate::util::lock(&self.0).entries.clear();
    }

    /// The session for `key` made by `ctx`, marked recently used.
    pub(crate) fn get(&self, key: &str, ctx: &SslContext) -> Option<SslSession> {
        let mut lru = crate::util::lock(&self.0);
        lru.tick += 1;
        let tick = lru.tick;
        let (used, made_by, session) = lru.entries.get_mut(key)?;
        if !std::ptr::eq::<openssl::ssl::SslContextRef>(&**made_by, &**ctx) {
            return None;
        }
        *used = tick;
        Some(session.clone())
    }

    fn put(&self, key: &str, ctx: &openssl::ssl::SslContextRef, session: SslSession) {
        let mut lru = crate::util::lock(&self.0);
        lru.tick += 1;
        let tick = lru.tick;
        if !lru.entries.contains_key(key) && lru.entries.len() >= lru.capacity {
            // O(capacity), only when full: small caches are the norm (Go's default is 64).
            if let Some(oldest) = lru
                .entries
                .iter()
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(k, _)| k.clone())
            {
                lru.entries.remove(&oldest);
            }
        }
        lru.entries
            .insert(key.to_string(), (tick, ctx.to_owned(), session));
    }
}

impl fmt::Debug for ClientSessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lru = crate::util::lock(&self.0);
        write!(
            f,
            "ClientSessionCache({}/{})",
            lru.entries.len(),
            lru.capacity
        )
    }
}

impl PartialEq for ClientSessionCache {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClientSessionCache {}

/// What a client connection's new-session callback needs: where to store, and under
/// which key (the session belongs to the connection's own context).
pub(crate) struct SessionSlot {
    pub(crate) cache: ClientSessionCache,
    pub(crate) key: String,
}

/// Where a server connection keeps the SNI name its client sent.
pub(crate) fn sni_slot() -> Index<Ssl, String> {
    static INDEX: OnceLock<Index<Ssl, String>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("SSL ex_data index"))
}

pub(crate) fn session_slot() -> Index<Ssl, SessionSlot> {
    static INDEX: OnceLock<Index<Ssl, SessionSlot>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("SSL ex_data index"))
}

impl Default for Config {
    fn default() -> Config {
        Config {
            server_name: None,
            verify_peer: true,
            client_auth: ClientAuthMode::NoClientCert,
            cert_file: None,
            key_file: None,
            ca_file: None,
            client_ca_file: None,
            alpn_protocols: Vec::new(),
            handshake_timeout: None,
            min_version: Some(TlsVersion::Tls12),
            max_version: None,
            session_tickets_disabled: false,
            client_session_cache: None,
            verify_connection: None,
        }
    }
}

fn cfg_err(msg: impl Into<String>) -> Error {
    Error::TlsConfig(msg.into())
}

/// Go's `os.Open` text for a missing file: `open <path>: no such file or directory`.
/// `stamp` is the file's (`None`: it cannot be `stat`ed), so validation costs no
/// `stat` of its own.
fn must_exist(path: &Path, stamp: &Option<FileStamp>) -> Result<()> {
    if stamp.is_some() {
        Ok(())
    } else {
        Err(cfg_err(format!(
            "open {}: no such file or directory",
            path.display()
        )))
    }
}

/// Go's text for a key that is not the certificate's, naming the key file; OpenSSL's
/// text follows.
fn mismatch_err(key: &Path, e: &openssl::error::ErrorStack) -> Error {
    cfg_err(format!(
        "tls: private key does not match public key ({}): {e}",
        key.display()
    ))
}

/// A PEM file OpenSSL could not load, in Go's words where Go has them: no PEM block at
/// all (an empty or non-PEM file; OpenSSL's `no start line`) is `tls: failed to find
/// any PEM data in <input> input (<path>)`. OpenSSL's own text follows after `: `.
/// The file itself is looked at (no `-----BEGIN` line): OpenSSL's reasons differ by
/// version and by loader (`no start line` for certificates, a decoder's `unsupported`
/// for keys in 3.x).
fn pem_err(input: &str, setting: &str, path: &Path, e: &openssl::error::ErrorStack) -> Error {
    let no_pem = std::fs::read(path).is_ok_and(|body| {
        !body
            .windows(b"-----BEGIN".len())
            .any(|w| w == b"-----BEGIN")
    });
    // Loading a key after its certificate already compares the two.
    let mismatch = e.errors().iter().any(|r| {
        r.reason()
            .is_some_and(|t| t.contains("key values mismatch"))
    });
    if no_pem {
        cfg_err(format!(
            "tls: failed to find any PEM data in {input} input ({}): {e}",
            path.display()
        ))
    } else if mismatch {
        mismatch_err(path, e)
    } else {
        cfg_err(format!("{setting} {}: {e}", path.display()))
    }
}

/// Strips brackets, an IPv6 zone and trailing dots: `"[fe80::1%lo]"` → `"fe80::1"`,
/// `"example.com."` → `"example.com"` (case kept).
pub(crate) fn normalize_name(name: &str) -> String {
    trim_name(name).to_string()
}

/// [`normalize_name`] without copying.
pub(crate) fn trim_name(name: &str) -> &str {
    let n = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let n = match n.split_once('%') {
        Some((ip, _)) if ip.parse::<IpAddr>().is_ok() => ip,
        _ => n,
    };
    n.trim_end_matches('.')
}

impl Config {
    /// Checks everything that does not depend on the role; `stamps` are the files'
    /// (see [`KeyView::stamps`]).
    fn validate_common(&self, stamps: &Stamps) -> Result<()> {
        let [cert_stamp, key_stamp, ca_stamp, client_ca_stamp, ..] = stamps;
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                must_exist(c, cert_stamp)?;
                must_exist(k, key_stamp)?;
            }
            (None, None) => {}
            _ => {
                return Err(cfg_err(
                    "both `cert_file` and `key_file` must be set together",
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            must_exist(ca, ca_stamp)?;
        }
        if let Some(ca) = &self.client_ca_file {
            must_exist(ca, client_ca_stamp)?;
        }
        if let (Some(min), Some(max)) = (self.min_version, self.max_version)
            && min > max
        {
            return Err(cfg_err(format!(
                "`min_version` {min:?} is above `max_version` {max:?}"
            )));
        }
        for p in &self.alpn_protocols {
            if p.is_empty() || p.len() > 255 {
                return Err(cfg_err(format!(
                    "ALPN protocol names must be 1 to 255 bytes, got {p:?}"
                )));
            }
        }
        Ok(())
    }

    /// Validates for a client; `inferred` is the name used when `server_name` is unset.
    fn validate_client(&self, stamps: &Stamps, inferred: Option<&str>) -> Result<()> {
        self.validate_common(stamps)?;
        let name = self.server_name.as_deref().or(inferred);
        if let Some(n) = name.filter(|n| n.contains('\0')) {
            // SNI and the host check take C strings: it would panic in `new_ssl`.
            return Err(cfg_err(format!(
                "`server_name` must not contain NUL bytes, got {n:?}"
            )));
        }
        if self.verify_peer && name.is_none_or(str::is_empty) {
            return Err(cfg_err(
                "client TLS with `verify_peer = true` requires `server_name`",
            ));
        }
        Ok(())
    }

    /// Validates for a server.
    fn validate_server(&self, stamps: &Stamps) -> Result<()> {
        self.validate_common(stamps)?;
        if self.cert_file.is_none() {
            return Err(cfg_err("server TLS requires `cert_file` and `key_file`"));
        }
        let verifies = matches!(
            self.client_auth,
            ClientAuthMode::VerifyClientCertIfGiven | ClientAuthMode::RequireAndVerifyClientCert
        );
        if verifies && self.client_ca_file.is_none() {
            return Err(cfg_err(format!(
                "client_auth {:?} requires `client_ca_file`",
                self.client_auth
            )));
        }
        Ok(())
    }

    /// The ALPN list in wire format (length-prefixed names).
    fn alpn_wire(&self) -> Vec<u8> {
        let mut wire = Vec::new();
        for p in &self.alpn_protocols {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        wire
    }

    /// The shared `SSL_CTX` for this config and role (built on first use, and again
    /// when one of its files has changed since).
    pub(crate) fn context(&self, server: bool) -> Result<SslContext> {
        self.context_at(server, None, SystemTime::now())
    }

    /// A client's [`context`](Self::context) for connections that use `inferred` (already
    /// normalized) as the server name when `server_name` is unset: it takes part in
    /// validation only, so one config serves every host without a copy per connection.
    pub(crate) fn client_context(&self, inferred: Option<&str>) -> Result<SslContext> {
        self.context_at(false, inferred, SystemTime::now())
    }

    /// [`context`](Self::context) as of `now` (the ticket key period's clock).
    fn context_at(
        &self,
        server: bool,
        inferred: Option<&str>,
        now: SystemTime,
    ) -> Result<SslContext> {
        let env = cert_env(self, server);
        let key = KeyView::new(self, server, env.as_deref());
        // Stamped before the build: a file changed during it looks changed next time,
        // never the other way round. A server context is also rebuilt when the ticket
        // key period turns, which is how its ticket keys rotate. One `stat` per file per
        // call: validation reads existence from the stamps.
        let stamps = key.stamps();
        if server {
            self.validate_server(&stamps)?
        } else {
            self.validate_client(&stamps, inferred)?
        }
        let seen = Seen {
            stamps,
            ticket_period: (server && !self.session_tickets_disabled).then(|| ticket_period(now)),
        };
        let hash = key.hash64();
        let hit = |cache: &Cache| {
            cache
                .get(&hash)
                .filter(|e| e.seen == seen && e.key.view() == key)
                .map(|e| e.ctx.clone())
        };
        if let Some(ctx) = hit(&lock_cache()) {
            return Ok(ctx);
        }
        let ctx = self.build(server, hash)?;
        let mut cache = lock_cache();
        // Built outside the lock, so another thread may have stored the same context
        // meanwhile: the first one stored is the one everybody gets. A client session
        // only resumes on the context that made it, so two contexts handed out for one
        // config would lose the sessions cached through the one that is not kept.
        if let Some(ctx) = hit(&cache) {
            return Ok(ctx);
        }
        if cache.len() >= CTX_CACHE_MAX && !cache.contains_key(&hash) {
            // Bounded: configs built per request (distinct ALPN lists, say) must not leak.
            cache.clear();
        }
        let entry = Entry {
            key: key.owned(),
            seen,
            ctx: ctx.clone(),
        };
        cache.insert(hash, entry);
        Ok(ctx)
    }

    /// `key_hash`: the context's [`KeyView::hash64`].
    fn build(&self, server: bool, key_hash: u64) -> Result<SslContext> {
        let ossl = |what: &str, e: openssl::error::ErrorStack| cfg_err(format!("{what}: {e}"));
        let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(|e| ossl("SSL_CTX_new", e))?;
        b.set_min_proto_version(Some(
            self.min_version.unwrap_or(TlsVersion::Tls12).openssl(),
        ))
        .map_err(|e| ossl("min_version", e))?;
        b.set_max_proto_version(self.max_version.map(TlsVersion::openssl))
            .map_err(|e| ossl("max_version", e))?;
        // Renegotiation would let SSL_write need reads mid-stream; Go refuses it too.
        b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
        b.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
        // Read as much as the socket has, not a 5-byte header then a record body: half
        // the `recv` calls on a busy stream.
        b.set_read_ahead(true);
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            b.set_certificate_chain_file(cert)
                .map_err(|e| pem_err("certificate", "cert_file", cert, &e))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| pem_err("key", "key_file", key, &e))?;
            b.check_private_key().map_err(|e| mismatch_err(key, &e))?;
        }
        if server {
            self.build_server(&mut b)?;
        } else {
            self.build_client(&mut b)?;
        }
        self.build_resumption(&mut b, server, key_hash)?;
        Ok(b.build())
    }

    fn build_resumption(
        &self,
        b: &mut SslContextBuilder,
        server: bool,
        key_hash: u64,
    ) -> Result<()> {
        let ossl = |what: &str, e: openssl::error::ErrorStack| cfg_err(format!("{what}: {e}"));
        if self.session_tickets_disabled {
            b.set_options(SslOptions::NO_TICKET);
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
            // With NO_TICKET, TLS 1.3 would fall back to stateful tickets: none at all.
            b.set_num_tickets(0).map_err(|e| ossl("num_tickets", e))?;
            return Ok(());
        }
        if server {
            // Stateless tickets only, as in Go: no session-ID cache growing per client.
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
            // One TLS 1.3 ticket per handshake (Go's count; OpenSSL's default is two).
            b.set_num_tickets(1).map_err(|e| ossl("num_tickets", e))?;
            crate::sys::ctx_set_session_timeout(b, SESSION_LIFETIME.as_secs() as u32);
            // A session only resumes under the configuration that made it (OpenSSL also
            // refuses to resume without one when it verifies client certificates).
            b.set_session_id_context(&key_hash.to_be_bytes())
                .map_err(|e| ossl("session_id_context", e))?;
        } else {
            // Sessions go to the config's `ClientSessionCache` (found through the
            // connection's ex_data), not to OpenSSL's per-context store.
            b.set_session_cache_mode(
                SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL,
            );
            b.set_new_session_callback(|ssl, session| {
                if let Some(slot) = ssl.ex_data(session_slot()) {
                    slot.cache.put(&slot.key, ssl.ssl_context(), session);
                }
            });
        }
        Ok(())
    }

    fn build_client(&self, b: &mut SslContextBuilder) -> Result<()> {
        if self.verify_peer {
            match &self.ca_file {
                Some(ca) => b
                    .set_ca_file(ca)
                    .map_err(|e| cfg_err(format!("ca_file: {e}")))?,
                // Honours SSL_CERT_FILE / SSL_CERT_DIR, else the system bundle.
                None => b
                    .set_default_verify_paths()
                    .map_err(|e| cfg_err(format!("system CA bundle: {e}")))?,
            }
            b.set_verify(SslVerifyMode::PEER);
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        if !self.alpn_protocols.is_empty() {
            b.set_alpn_protos(&self.alpn_wire())
                .map_err(|e| cfg_err(format!("alpn: {e}")))?;
        }
        Ok(())
    }

    fn build_server(&self, b: &mut SslContextBuilder) -> Result<()> {
        use ClientAuthMode::*;
        let peer = SslVerifyMode::PEER;
        let require = SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        match self.client_auth {
            NoClientCert => b.set_verify(SslVerifyMode::NONE),
            RequestClientCert => b.set_verify_callback(peer, |_, _| true),
            RequireAnyClientCert => b.set_verify_callback(require, |_, _| true),
            VerifyClientCertIfGiven | RequireAndVerifyClientCert => {
                let ca = self.client_ca_file.as_ref().expect("validated");
                b.set_ca_file(ca)
                    .map_err(|e| cfg_err(format!("client_ca_file: {e}")))?;
                if let Ok(names) = X509Name::load_client_ca_file(ca) {
                    b.set_client_ca_list(names);
                }
                b.set_verify(if self.client_auth == VerifyClientCertIfGiven {
                    peer
                } else {
                    require
                });
            }
        }
        // The SNI name as this ClientHello carried it: OpenSSL reports the resumed
        // session's (none, with TLS 1.3 tickets) once the handshake is over.
        b.set_servername_callback(|ssl, _alert| {
            if let Some(name) = ssl
                .servername(openssl::ssl::NameType::HOST_NAME)
                .map(str::to_string)
            {
                ssl.set_ex_data(sni_slot(), name);
            }
            Ok(())
        });
        if !self.alpn_protocols.is_empty() {
            let ours = self.alpn_wire();
            b.set_alpn_select_callback(move |_, client| select_alpn(&ours, client));
        }
        Ok(())
    }
}

/// Go's ALPN rule: the server's first protocol the client also offers; no overlap is a
/// fatal `no_application_protocol` alert (120), except that a server offering `h2` to
/// a client offering `http/1.1` goes on with no protocol (golang/go#46310).
fn select_alpn<'a>(server: &[u8], client: &'a [u8]) -> std::result::Result<&'a [u8], AlpnError> {
    let names = |wire: &'a [u8]| {
        let mut out = Vec::new();
        let mut rest = wire;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            out.push(&tail[..len]);
            rest = &tail[len..];
        }
        out
    };
    let offered = names(client);
    let mut rest = server;
    let mut server_has_h2 = false;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let proto = &tail[..len];
        server_has_h2 |= proto == b"h2";
        if let Some(hit) = offered.iter().find(|c| **c == proto) {
            return Ok(hit);
        }
        rest = &tail[len..];
    }
    if server_has_h2 && offered.iter().any(|c| *c == b"http/1.1") {
        Err(AlpnError::NOACK)
    } else {
        Err(AlpnError::ALERT_FATAL)
    }
}

/// Everything that makes two contexts different (`server_name` does not: it is set per
/// connection), borrowed from the [`Config`]: every connection looks its context up, and
/// a hit must not copy paths and ALPN names (see [`Cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KeyView<'a> {
    server: bool,
    verify_peer: bool,
    client_auth: ClientAuthMode,
    cert_file: Option<&'a Path>,
    key_file: Option<&'a Path>,
    ca_file: Option<&'a Path>,
    client_ca_file: Option<&'a Path>,
    alpn: &'a [String],
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    tickets_disabled: bool,
    /// The default trust store can change with the environment between calls. Only
    /// set when the context loads it (a verifying client without `ca_file`): otherwise
    /// it would cost an environment lookup and a `stat` per connection for nothing.
    cert_env: Option<&'a OsStr>,
}

/// The owned form of a [`KeyView`], kept in the cache beside its context (made only
/// when a context is built).
#[derive(Debug)]
struct CtxKey {
    server: bool,
    verify_peer: bool,
    client_auth: ClientAuthMode,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    alpn: Vec<String>,
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    tickets_disabled: bool,
    cert_env: Option<OsString>,
}

/// A context's file stamps: `cert_file`, `key_file`, `ca_file`, `client_ca_file`, the
/// default store's `SSL_CERT_FILE`.
type Stamps = [Option<FileStamp>; 5];

/// What a cached context was built from: its files' stamps and, for a server with
/// tickets, the ticket key period (a new period rebuilds it, rotating the keys).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    stamps: Stamps,
    ticket_period: Option<u64>,
}

/// What `stat` says of a file's current version; `None` if it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            // ctime too: it changes on every write and cannot be set back by `touch`.
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The `SSL_CERT_FILE` a context for `c` in this role loads, if it loads the default
/// store (see [`KeyView::cert_env`]).
fn cert_env(c: &Config, server: bool) -> Option<OsString> {
    (!server && c.verify_peer && c.ca_file.is_none())
        .then(|| std::env::var_os("SSL_CERT_FILE"))
        .flatten()
}

impl<'a> KeyView<'a> {
    /// `cert_env`: see [`cert_env`].
    fn new(c: &'a Config, server: bool, cert_env: Option<&'a OsStr>) -> KeyView<'a> {
        KeyView {
            server,
            verify_peer: c.verify_peer,
            client_auth: c.client_auth,
            cert_file: c.cert_file.as_deref(),
            key_file: c.key_file.as_deref(),
            ca_file: c.ca_file.as_deref(),
            client_ca_file: c.client_ca_file.as_deref(),
            alpn: &c.alpn_protocols,
            min: c.min_version,
            max: c.max_version,
            tickets_disabled: c.session_tickets_disabled,
            cert_env,
        }
    }

    /// The stamps of every file the context loads (see [`Stamps`]).
    fn stamps(&self) -> Stamps {
        let stamp = |p: Option<&Path>| p.and_then(FileStamp::of);
        [
            stamp(self.cert_file),
            stamp(self.key_file),
            stamp(self.ca_file),
            stamp(self.client_ca_file),
            stamp(self.cert_env.map(Path::new)),
        ]
    }

    /// The cache's key: this view's hash, with fixed SipHash keys (also the server's
    /// session ID context, which must not change while a context lives).
    fn hash64(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    fn owned(self) -> CtxKey {
        CtxKey {
            server: self.server,
            verify_peer: self.verify_peer,
            client_auth: self.client_auth,
            cert_file: self.cert_file.map(Path::to_path_buf),
            key_file: self.key_file.map(Path::to_path_buf),
            ca_file: self.ca_file.map(Path::to_path_buf),
            client_ca_file: self.client_ca_file.map(Path::to_path_buf),
            alpn: self.alpn.to_vec(),
            min: self.min,
            max: self.max,
            tickets_disabled: self.tickets_disabled,
            cert_env: self.cert_env.map(OsStr::to_os_string),
        }
    }
}

impl CtxKey {
    fn view(&self) -> KeyView<'_> {
        KeyView {
            server: self.server,
            verify_peer: self.verify_peer,
            client_auth: self.client_auth,
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
            ca_file: self.ca_file.as_deref(),
            client_ca_file: self.client_ca_file.as_deref(),
            alpn: &self.alpn,
            min: self.min,
            max: self.max,
            tickets_disabled: self.tickets_disabled,
            cert_env: self.cert_env.as_deref(),
        }
    }
}

const CTX_CACHE_MAX: usize = 128;

/// The number of the ticket key period `now` falls in.
fn ticket_period(now: SystemTime) -> u64 {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    secs / TICKET_KEY_PERIOD.as_secs()
}

/// A cached context, with the key and the stamps it was built from.
struct Entry {
    key: CtxKey,
    seen: Seen,
    ctx: SslContext,
}

/// The contexts by [`KeyView::hash64`]: a lookup hashes the borrowed view and compares
/// the entry's key field by field, so a hit allocates nothing. Two keys with one hash
/// (never seen in practice) would take turns in the slot: each miss rebuilds, which is
/// slower but still correct. The key is already a SipHash, so the map uses it as is
/// rather than hashing it a second time per lookup.
type Cache = HashMap<u64, Entry, std::hash::BuildHasherDefault<KeyHashed>>;

/// A [`Hasher`](std::hash::Hasher) that passes a [`KeyView::hash64`] through.
#[derive(Default)]
struct KeyHashed(u64);

impl std::hash::Hasher for KeyHashed {
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys go in (`write_u64`); fold anything else rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn lock_cache() -> std::sync::MutexGuard<'static, Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    crate::util::lock(CACHE.get_or_init(Default::default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(names: &[&str]) -> Vec<u8> {
        Config {
            alpn_protocols: names.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
        .alpn_wire()
    }

    #[test]
    fn alpn_follows_go() {
        let pick = |s: &[&str], c: &[&str]| select_alpn(&wire(s), &wire(c)).map(|p| p.to_vec());
        assert_eq!(
            pick(&["proto1", "proto2"], &["proto2", "proto1"]).unwrap(),
            b"proto1"
        );
        assert_eq!(
            pick(&["proto3"], &["proto1"]).unwrap_err(),
            AlpnError::ALERT_FATAL
        );
        assert_eq!(
            pick(&["proto1", "h2", "proto2"], &["proto3", "http/1.1"]).unwrap_err(),
            AlpnError::NOACK
        );
    }

    #[test]
    fn server_ticket_keys_rotate_with_the_period() {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let server = |tickets_disabled| Config {
            cert_file: Some(format!("{certs}/server.pem").into()),
            key_file: Some(format!("{certs}/server.key").into()),
            session_tickets_disabled: tickets_disabled,
            alpn_protocols: vec!["rotation-test".into()],
            ..Config::default()
        };
        let same = |x: &SslContext, y: &SslContext| {
            std::ptr::eq::<openssl::ssl::SslContextRef>(&**x, &**y)
        };
        let now = SystemTime::now();
        let later = now + TICKET_KEY_PERIOD;
        // Tickets on: the same period shares the context, the next one rebuilds it (new
        // ticket keys); going on in that period shares again.
        let a = server(false).context_at(true, None, now).unwrap();
        assert!(same(
            &a,
            &server(false).context_at(true, None, now).unwrap()
        ));
        let b = server(false).context_at(true, None, later).unwrap();
        assert!(
            !same(&a, &b),
            "a new period must rebuild the server context"
        );
        assert!(same(
            &b,
            &server(false).context_at(true, None, later).unwrap()
        ));
        // Tickets off: nothing to rotate.
        let c = server(true).context_at(true, None, now).unwrap();
        assert!(same(
            &c,
            &server(true).context_at(true, None, later).unwrap()
        ));
    }

    #[test]
    fn equivalent_configs_share_one_context() {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let client = |name: &str| Config {
            server_name: Some(name.into()),
            ca_file: Some(format!("{certs}/ca.pem").into()),
            ..Config::default()
        };
        // server_name is per connection, so it does not split the cache.
        let a = client("localhost").context(false).unwrap();
        let b = client("127.0.0.1").context(false).unwrap();
        // A context's `Ref` lives at the address of the OpenSSL object itself.
        let same = |x: &SslContext, y: &SslContext| {
            std::ptr::eq::<openssl::ssl::SslContextRef>(&**x, &**y)
        };
        assert!(same(&a, &b));
        let alpn = Config {
            alpn_protocols: vec!["h2".into()],
            ..client("localhost")
        };
        assert!(!same(&alpn.context(false).unwrap(), &a));
        let server = Config {
            cert_file: Some(format!("{certs}/server.pem").into()),
            key_file: Some(format!("{certs}/server.key").into()),
            ..Config::default()
        };
        assert!(same(
            &server.context(true).unwrap(),
            &server.clone().context(true).unwrap()
        ));
    }

    #[test]
    fn changed_files_rebuild_the_context() {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let dir = std::env::temp_dir().join(format!(
            "reseau-ctx-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("c.key"));
        let put = |name: &str| {
            std::fs::copy(format!("{certs}/{name}.pem"), &cert).unwrap();
            std::fs::copy(format!("{certs}/{name}.key"), &key).unwrap();
        };
        put("server");
        let cfg = Config {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..Config::default()
        };
        let same = |x: &SslContext, y: &SslContext| {
            std::ptr::eq::<openssl::ssl::SslContextRef>(&**x, &**y)
        };
        let subject = |c: &SslContext| {
            let cert = c.certificate().expect("a certificate").to_owned();
            let cn = cert
                .subject_name()
                .entries()
                .last()
                .unwrap()
                .data()
                .as_slice();
            String::from_utf8_lossy(cn).into_owned()
        };
        let a = cfg.context(true).unwrap();
        assert!(
            same(&a, &cfg.context(true).unwrap()),
            "unchanged files: cached"
        );
        assert_eq!(subject(&a), "localhost");
        put("wronghost");
        let b = cfg.context(true).unwrap();
        assert!(!same(&a, &b), "renewed in place: rebuilt");
        assert_eq!(subject(&b), "wrong.example");
        assert_eq!(subject(&a), "localhost", "the old context is untouched");
        assert!(same(&b, &cfg.context(true).unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_contexts_that_load_the_default_store_watch_ssl_cert_file() {
        // A server, or a client with its own `ca_file`, never reads SSL_CERT_FILE: no
        // environment lookup or `stat` of it per connection, and one shared context
        // whatever the environment says.
        let env = std::env::var_os("SSL_CERT_FILE");
        let with_ca = Config {
            ca_file: Some("certs/ca.pem".into()),
            ..Config::default()
        };
        assert_eq!(cert_env(&with_ca, false), None);
        assert_eq!(cert_env(&with_ca, true), None);
        let unverified = Config {
            verify_peer: false,
            ..Config::default()
        };
        assert_eq!(cert_env(&unverified, false), None);
        assert_eq!(cert_env(&Config::default(), false), env);
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("example.com."), "example.com");
        assert_eq!(normalize_name("[::1]"), "::1");
        assert_eq!(normalize_name("fe80::1%lo0"), "fe80::1");
        assert_eq!(normalize_name("Example.com"), "Example.com");
    }
}
