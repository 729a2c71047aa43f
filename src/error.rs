//! The crate's one error type.
//!
//! Every inherent method returns [`Result`]. The `std::io` trait impls return an
//! [`io::Error`] built with `From<Error> for io::Error`, which keeps the [`Error`]
//! as its inner error so [`Error::from_io`] can get it back.

use std::fmt;
use std::io;
use std::time::Duration;

/// `Result<T, reseau::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in this crate.
///
/// The variant names and their `io::ErrorKind` mapping (see [`Error::kind`]) are part of
/// the public contract; match on them, not on Display texts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A read, write, accept or connect deadline passed (Go's `os.ErrDeadlineExceeded`).
    #[error("i/o timeout")]
    DeadlineExceeded,
    /// Use of a closed socket, or the socket was closed while the call was blocked
    /// (Go's `net.ErrClosed`).
    #[error("use of closed network connection")]
    Closed,
    /// An OS call failed; `op` names it (`"connect"`, `"accept"`, `"read"`, …) and the
    /// errno is kept in `source`.
    ///
    /// Display is `"<op>: <source>"`, or `"<op> <address>: <os error>"` when the call
    /// names an address: [`tcp::listen`](crate::tcp::listen) and
    /// [`unix::listen`](crate::unix::listen) give e.g.
    /// `bind 127.0.0.1:80: Address already in use (os error 98)`. The address then sits
    /// in `source` as a payload around the OS error (`source.raw_os_error()` is `None`;
    /// `source.source()` is the OS error): read the errno with
    /// [`Error::raw_os_error`], which looks through it; `kind()` is the OS error's.
    #[error("{}", SysText(op, source))]
    Sys {
        /// The failed operation.
        op: &'static str,
        /// The OS error, errno kept.
        #[source]
        source: io::Error,
    },
    /// A bad argument found before any I/O.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A host:port or literal address did not parse.
    #[error("address {addr}: {msg}")]
    Address {
        /// What is wrong (Go's texts: `missing port in address`, …).
        msg: String,
        /// The address as given.
        addr: String,
    },
    /// Name resolution failed or left no usable address.
    #[error("lookup {name}: {msg}")]
    Lookup {
        /// What went wrong.
        msg: String,
        /// The name looked up.
        name: String,
    },
    /// A network name other than `tcp`, `tcp4`, `tcp6` (or `unix` where relevant).
    #[error("unknown network {0}")]
    UnknownNetwork(String),
    /// The dial budget ran out (resolution + connect + TLS handshake).
    #[error("{0}")]
    DialTimeout(String),
    /// Context wrapper used by every string-address entry point.
    #[error("{0}")]
    Op(Box<OpError>),
    /// The Julia facade's DNS error.
    #[error("{0}")]
    Dns(DnsError),
    /// An invalid TLS configuration, found before any I/O.
    #[error("tls config: {0}")]
    TlsConfig(String),
    /// A TLS failure.
    #[error("{0}")]
    Tls(TlsError),
    /// The TLS `handshake_timeout` elapsed.
    #[error("tls: handshake timed out after {0:?}")]
    TlsHandshakeTimeout(Duration),
    /// STARTTLS was refused (unread buffered bytes, already TLS, not connected, …).
    #[error("tls upgrade not ready: {0}")]
    TlsUpgradeNotReady(String),
}

/// The address an OS call was about, kept around its [`io::Error`] (see
/// [`Error::Sys`]): wrapped as `io::Error::new(source.kind(), AddrContext { .. })`.
#[derive(Debug)]
pub(crate) struct AddrContext {
    addr: String,
    source: io::Error,
}

impl fmt::Display for AddrContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.source)
    }
}

impl std::error::Error for AddrContext {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl AddrContext {
    /// The payload of `e`, if it is one.
    fn of(e: &io::Error) -> Option<&AddrContext> {
        e.get_ref()?.downcast_ref::<AddrContext>()
    }
}

/// `Error::Sys`'s Display: `op: source`, or `op addr: os error` with an address.
struct SysText<'a>(&'a str, &'a io::Error);

impl fmt::Display for SysText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match AddrContext::of(self.1) {
            Some(c) => write!(f, "{} {}: {}", self.0, c.addr, c.source),
            None => write!(f, "{}: {}", self.0, self.1),
        }
    }
}

/// The context a string-address entry point adds to an error (Go's `net.OpError`).
///
/// Display is `"<op> <net> [<source> ->] <addr>: <err>"`, e.g.
/// `dial tcp 127.0.0.1:1: connect: Connection refused (os error 111)`.
#[derive(Debug)]
pub struct OpError {
    /// The operation: `"dial"`, `"listen"`, …
    pub op: String,
    /// The network: `"tcp"`, `"tcp4"`, `"tcp6"`, `"unix"`.
    pub net: String,
    /// The local address, when one was involved.
    pub source: Option<String>,
    /// The remote (dial) or local (listen) address as given or resolved.
    pub addr: String,
    /// The error that ended the operation (for a failed dial: the first attempt's).
    pub err: Error,
    attempts: Vec<Error>,
}

impl OpError {
    /// A wrapper with no extra attempts recorded.
    pub fn new(op: &str, net: &str, source: Option<String>, addr: &str, err: Error) -> OpError {
        OpError {
            op: op.to_string(),
            net: net.to_string(),
            source,
            addr: addr.to_string(),
            err,
            attempts: Vec::new(),
        }
    }

    /// Records every attempt's error (in order); `err` stays the one to report.
    pub fn with_attempts(mut self, attempts: Vec<Error>) -> OpError {
        self.attempts = attempts;
        self
    }

    /// Every connect attempt's error, in the order the attempts were started.
    /// Empty when the operation failed before any attempt.
    pub fn attempts(&self) -> &[Error] {
        &self.attempts
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.op, self.net)?;
        if let Some(src) = &self.source {
            write!(f, "{src}->")?;
        }
        write!(f, "{}: {}", self.addr, self.err)
    }
}

/// A DNS failure in the Julia facade: `code` is the libc `EAI_*` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsError {
    /// The host that was looked up.
    pub host: String,
    /// The `EAI_*` code returned by `getaddrinfo`/`getnameinfo`.
    pub code: i32,
}

impl DnsError {
    /// The symbolic name of `code`, e.g. `"EAI_NONAME"`.
    pub fn name(&self) -> &'static str {
        match self.code {
            libc::EAI_AGAIN => "EAI_AGAIN",
            libc::EAI_BADFLAGS => "EAI_BADFLAGS",
            libc::EAI_FAIL => "EAI_FAIL",
            libc::EAI_FAMILY => "EAI_FAMILY",
            libc::EAI_MEMORY => "EAI_MEMORY",
            libc::EAI_NONAME => "EAI_NONAME",
            libc::EAI_SERVICE => "EAI_SERVICE",
            libc::EAI_SOCKTYPE => "EAI_SOCKTYPE",
            libc::EAI_SYSTEM => "EAI_SYSTEM",
            libc::EAI_OVERFLOW => "EAI_OVERFLOW",
            _ => "EAI_UNKNOWN",
        }
    }

    fn message(&self) -> &'static str {
        match self.code {
            libc::EAI_AGAIN => "temporary failure in name resolution",
            libc::EAI_BADFLAGS => "invalid value for ai_flags",
            libc::EAI_FAIL => "non-recoverable failure in name resolution",
            libc::EAI_FAMILY => "ai_family not supported",
            libc::EAI_MEMORY => "memory allocation failure",
            libc::EAI_NONAME => "unknown node or service",
            libc::EAI_SERVICE => "service not available for socket type",
            libc::EAI_SOCKTYPE => "socket type not supported",
            libc::EAI_SYSTEM => "system error",
            libc::EAI_OVERFLOW => "argument buffer overflow",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DNSError: {}, {} ({})",
            self.host,
            self.message(),
            self.name()
        )
    }
}

/// A TLS failure: `code` is OpenSSL's `SSL_get_error` value (0 for errors raised by
/// this crate's wrapper itself).
#[derive(Debug)]
pub struct TlsError {
    /// The operation: `"handshake"`, `"read"`, `"write"`, `"close"`.
    pub op: &'static str,
    /// `SSL_get_error`, or 0.
    pub code: i32,
    /// What OpenSSL (or the wrapper) said.
    pub message: String,
    /// The underlying transport error, when there is one.
    pub cause: Option<Box<Error>>,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tls {}: {}", self.op, self.message)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl Error {
    /// Wraps an [`io::Error`] from the OS, tagged with `op`.
    pub(crate) fn sys(op: &'static str, source: io::Error) -> Error {
        Error::Sys { op, source }
    }

    /// Names `addr` in a `Sys` error's Display (`bind 127.0.0.1:80: …`); op, errno and
    /// kind stay as they are. Other variants, and a `Sys` already naming an address,
    /// come back unchanged.
    pub(crate) fn with_addr(self, addr: impl fmt::Display) -> Error {
        match self {
            Error::Sys { op, source } if AddrContext::of(&source).is_none() => {
                let kind = source.kind();
                let ctx = AddrContext {
                    addr: addr.to_string(),
                    source,
                };
                Error::Sys {
                    op,
                    source: io::Error::new(kind, ctx),
                }
            }
            other => other,
        }
    }

    /// A copy of this error for one more receiver (every caller sharing one lookup,
    /// a dial's attempt list): [`Error`] is not `Clone` because [`io::Error`] is not.
    ///
    /// The copy has the same variant and fields, so the same kind, `Display`,
    /// [`is_timeout`](Error::is_timeout) and [`raw_os_error`](Error::raw_os_error).
    /// An `io::Error` keeps its errno, or else its kind and message (an [`Error`]
    /// inside it, see [`from_io`](Error::from_io), is copied as an [`Error`]).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::DeadlineExceeded => Error::DeadlineExceeded,
            Error::Closed => Error::Closed,
            Error::Sys { op, source } => Error::Sys {
                op,
                source: duplicate_io(source),
            },
            Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
            Error::Address { msg, addr } => Error::Address {
                msg: msg.clone(),
                addr: addr.clone(),
            },
            Error::Lookup { msg, name } => Error::Lookup {
                msg: msg.clone(),
                name: name.clone(),
            },
            Error::UnknownNetwork(s) => Error::UnknownNetwork(s.clone()),
            Error::DialTimeout(s) => Error::DialTimeout(s.clone()),
            Error::Op(op) => Error::Op(Box::new(OpError {
                op: op.op.clone(),
                net: op.net.clone(),
                source: op.source.clone(),
                addr: op.addr.clone(),
                err: op.err.duplicate(),
                attempts: op.attempts.iter().map(Error::duplicate).collect(),
            })),
            Error::Dns(d) => Error::Dns(d.clone()),
            Error::TlsConfig(s) => Error::TlsConfig(s.clone()),
            Error::Tls(t) => Error::Tls(TlsError {
                op: t.op,
                code: t.code,
                message: t.message.clone(),
                cause: t.cause.as_ref().map(|c| Box::new(c.duplicate())),
            }),
            Error::TlsHandshakeTimeout(d) => Error::TlsHandshakeTimeout(*d),
            Error::TlsUpgradeNotReady(s) => Error::TlsUpgradeNotReady(s.clone()),
        }
    }

    /// The `io::ErrorKind` this error maps to:
    ///
    /// | variant | kind |
    /// |---|---|
    /// | `DeadlineExceeded`, `DialTimeout`, `TlsHandshakeTimeout` | `TimedOut` |
    /// | `Closed` | `NotConnected` |
    /// | `Sys { source, .. }` | `source.kind()` (from the errno) |
    /// | `InvalidArgument`, `Address`, `UnknownNetwork`, `TlsConfig`, `TlsUpgradeNotReady` | `InvalidInput` |
    /// | `Lookup` | `NotFound` |
    /// | `Dns` | `NotFound` for `EAI_NONAME`, `EAI_FAMILY`, `EAI_SERVICE`; else `Other` |
    /// | `Op(op)` | the kind of `op.err` |
    /// | `Tls(t)` | the kind of `t.cause`, else `Other` |
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::DeadlineExceeded | Error::DialTimeout(_) | Error::TlsHandshakeTimeout(_) => {
                K::TimedOut
            }
            Error::Closed => K::NotConnected,
            Error::Sys { source, .. } => source.kind(),
            Error::InvalidArgument(_)
            | Error::Address { .. }
            | Error::UnknownNetwork(_)
            | Error::TlsConfig(_)
            | Error::TlsUpgradeNotReady(_) => K::InvalidInput,
            Error::Lookup { .. } => K::NotFound,
            Error::Op(op) => op.err.kind(),
            Error::Dns(d) => match d.code {
                libc::EAI_NONAME | libc::EAI_FAMILY | libc::EAI_SERVICE => K::NotFound,
                _ => K::Other,
            },
            Error::Tls(t) => t.cause.as_ref().map_or(K::Other, |c| c.kind()),
        }
    }

    /// True for [`Error::DeadlineExceeded`], [`Error::DialTimeout`],
    /// [`Error::TlsHandshakeTimeout`] and any wrapper around them.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::DeadlineExceeded | Error::DialTimeout(_) | Error::TlsHandshakeTimeout(_) => true,
            Error::Op(op) => op.err.is_timeout(),
            Error::Tls(t) => t.cause.as_ref().is_some_and(|c| c.is_timeout()),
            _ => false,
        }
    }

    /// The OS errno behind this error, looking through `Op` and `Tls` wrappers.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source
                .raw_os_error()
                .or_else(|| AddrContext::of(source).and_then(|c| c.source.raw_os_error())),
            Error::Op(op) => op.err.raw_os_error(),
            Error::Tls(t) => t.cause.as_ref().and_then(|c| c.raw_os_error()),
            _ => None,
        }
    }

    /// The outermost operation: an `Op` wrapper's op, else a `Sys` op.
    pub fn op(&self) -> Option<&str> {
        match self {
            Error::Op(op) => Some(&op.op),
            Error::Sys { op, .. } => Some(op),
            _ => None,
        }
    }

    /// The [`Error`] inside an `io::Error` made by `From<Error> for io::Error`.
    ///
    /// ```
    /// use std::io;
    /// let e: io::Error = reseau::Error::DeadlineExceeded.into();
    /// assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    /// assert!(matches!(reseau::Error::from_io(&e), Some(reseau::Error::DeadlineExceeded)));
    /// ```
    pub fn from_io(err: &io::Error) -> Option<&Error> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
    }
}

/// [`Error::duplicate`] for an `io::Error`.
fn duplicate_io(e: &io::Error) -> io::Error {
    if let Some(code) = e.raw_os_error() {
        return io::Error::from_raw_os_error(code);
    }
    if let Some(c) = AddrContext::of(e) {
        let ctx = AddrContext {
            addr: c.addr.clone(),
            source: duplicate_io(&c.source),
        };
        return io::Error::new(e.kind(), ctx);
    }
    match Error::from_io(e) {
        Some(inner) => io::Error::new(e.kind(), inner.duplicate()),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}

/// Lets `?` mix `std::io` calls and reseau calls in one function returning
/// [`Result`]. An `io::Error` made from a reseau [`Error`] (by `From<Error> for
/// io::Error`, as every `Read`/`Write` impl of this crate returns) gives that error back
/// unchanged; any other becomes `Sys { op: "io", source }`, errno and kind kept.
///
/// ```
/// use std::io::Write;
/// fn send(port: u16) -> reseau::Result<()> {
///     let mut sock = reseau::sockets::connect(port)?; // a reseau call
///     sock.write_all(b"hi\n")?; // a std::io call
///     Ok(())
/// }
/// let (port, server) = reseau::sockets::listenany(0)?;
/// send(port)?;
/// server.close()?;
/// let err = send(port).unwrap_err();
/// assert_eq!(err.op(), Some("connect"), "the reseau error, not re-wrapped");
/// let io = std::io::Error::from_raw_os_error(libc::EPIPE);
/// let back = reseau::Error::from(io);
/// assert_eq!((back.op(), back.raw_os_error()), (Some("io"), Some(libc::EPIPE)));
/// # Ok::<(), reseau::Error>(())
/// ```
impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        err.downcast::<Error>()
            .unwrap_or_else(|source| Error::Sys { op: "io", source })
    }
}

impl From<OpError> for Error {
    fn from(op: OpError) -> Error {
        Error::Op(Box::new(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_spec_table() {
        use io::ErrorKind as K;
        let tls = |cause: Option<Error>| {
            Error::Tls(TlsError {
                op: "read",
                code: 0,
                message: "x".into(),
                cause: cause.map(Box::new),
            })
        };
        let dns = |code| {
            Error::Dns(DnsError {
                host: "h".into(),
                code,
            })
        };
        let table = [
            (Error::DeadlineExceeded, K::TimedOut, true),
            (Error::Closed, K::NotConnected, false),
            (
                Error::sys("read", io::Error::from_raw_os_error(libc::ECONNRESET)),
                K::ConnectionReset,
                false,
            ),
            (Error::InvalidArgument("p".into()), K::InvalidInput, false),
            (
                Error::Address {
                    msg: "m".into(),
                    addr: "a".into(),
                },
                K::InvalidInput,
                false,
            ),
            (
                Error::Lookup {
                    msg: "m".into(),
                    name: "n".into(),
                },
                K::NotFound,
                false,
            ),
            (Error::UnknownNetwork("udp".into()), K::InvalidInput, false),
            (Error::DialTimeout("i/o timeout".into()), K::TimedOut, true),
            (dns(libc::EAI_NONAME), K::NotFound, false),
            (dns(libc::EAI_AGAIN), K::Other, false),
            (Error::TlsConfig("c".into()), K::InvalidInput, false),
            (tls(None), K::Other, false),
            (tls(Some(Error::DeadlineExceeded)), K::TimedOut, true),
            (
                Error::TlsHandshakeTimeout(Duration::from_millis(1)),
                K::TimedOut,
                true,
            ),
            (
                Error::TlsUpgradeNotReady("b".into()),
                K::InvalidInput,
                false,
            ),
        ];
        for (err, kind, timeout) in table {
            assert_eq!(err.kind(), kind, "{err:?}");
            assert_eq!(err.is_timeout(), timeout, "{err:?}");
            let wrapped = Error::from(OpError::new("dial", "tcp", None, "x:1", err));
            assert_eq!(wrapped.kind(), kind, "{wrapped:?}");
            assert_eq!(wrapped.is_timeout(), timeout, "{wrapped:?}");
        }
        let reset = tls(Some(Error::sys(
            "read",
            io::Error::from_raw_os_error(libc::ECONNRESET),
        )));
        assert_eq!(reset.raw_os_error(), Some(libc::ECONNRESET));
        assert_eq!(
            Error::sys("bind", io::Error::from_raw_os_error(libc::EACCES)).op(),
            Some("bind")
        );
        assert_eq!(Error::Closed.op(), None);
    }

    #[test]
    fn helpers_look_through_wrappers() {
        let refused = Error::sys("connect", io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let op = Error::from(OpError::new("dial", "tcp", None, "127.0.0.1:1", refused));
        assert_eq!(op.op(), Some("dial"));
        assert_eq!(op.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(op.kind(), io::ErrorKind::ConnectionRefused);
        assert!(!op.is_timeout());
        assert!(
            op.to_string()
                .starts_with("dial tcp 127.0.0.1:1: connect: "),
            "{op}"
        );
        let t = Error::from(OpError::new(
            "dial",
            "tcp",
            None,
            "x:1",
            Error::DeadlineExceeded,
        ));
        assert!(t.is_timeout());
        assert_eq!(
            Error::Closed.to_string(),
            "use of closed network connection"
        );
        assert_eq!(Error::DeadlineExceeded.to_string(), "i/o timeout");
    }

    #[test]
    fn io_round_trip_keeps_the_error() {
        let e: io::Error = Error::Closed.into();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert!(matches!(Error::from_io(&e), Some(Error::Closed)));
        let plain = io::Error::other("x");
        assert!(Error::from_io(&plain).is_none());
    }

    #[test]
    fn dns_error_display() {
        let d = DnsError {
            host: "nope.invalid".into(),
            code: libc::EAI_NONAME,
        };
        assert_eq!(d.name(), "EAI_NONAME");
        assert_eq!(
            d.to_string(),
            "DNSError: nope.invalid, unknown node or service (EAI_NONAME)"
        );
    }

    #[test]
    fn duplicate_keeps_variant_kind_text_and_errno() {
        let sys = |code| Error::sys("read", io::Error::from_raw_os_error(code));
        let tls = |cause: Option<Error>| {
            Error::Tls(TlsError {
                op: "read",
                code: 5,
                message: "x".into(),
                cause: cause.map(Box::new),
            })
        };
        let op = OpError::new("dial", "tcp", Some("127.0.0.1:9".into()), "h:1", sys(111))
            .with_attempts(vec![sys(111), Error::DeadlineExceeded]);
        let all = [
            Error::DeadlineExceeded,
            Error::Closed,
            sys(libc::ECONNRESET),
            Error::sys("poll", io::Error::new(io::ErrorKind::WouldBlock, "later")),
            Error::sys("read", io::Error::from(io::ErrorKind::UnexpectedEof)),
            Error::sys("wrap", Error::DeadlineExceeded.into()),
            sys(libc::EADDRINUSE).with_addr("127.0.0.1:80"),
            Error::InvalidArgument("p".into()),
            Error::Address {
                msg: "m".into(),
                addr: "a".into(),
            },
            Error::Lookup {
                msg: "m".into(),
                name: "n".into(),
            },
            Error::UnknownNetwork("udp".into()),
            Error::DialTimeout("i/o timeout".into()),
            Error::from(op),
            Error::Dns(DnsError {
                host: "h".into(),
                code: libc::EAI_AGAIN,
            }),
            Error::TlsConfig("c".into()),
            tls(None),
            tls(Some(sys(libc::EPIPE))),
            Error::TlsHandshakeTimeout(Duration::from_millis(3)),
            Error::TlsUpgradeNotReady("b".into()),
        ];
        for e in &all {
            let d = e.duplicate();
            assert_eq!(
                std::mem::discriminant(e),
                std::mem::discriminant(&d),
                "{e:?}"
            );
            assert_eq!(d.to_string(), e.to_string());
            assert_eq!(d.kind(), e.kind(), "{e:?}");
            assert_eq!(d.is_timeout(), e.is_timeout(), "{e:?}");
            assert_eq!(d.raw_os_error(), e.raw_os_error(), "{e:?}");
            assert_eq!(d.op(), e.op(), "{e:?}");
        }
        let Error::Op(op) = all[12].duplicate() else {
            unreachable!()
        };
        assert_eq!(op.attempts().len(), 2);
        assert_eq!(op.attempts()[0].raw_os_error(), Some(111));
        assert_eq!(op.source.as_deref(), Some("127.0.0.1:9"));
        let Error::Sys { source, .. } = all[5].duplicate() else {
            unreachable!()
        };
        assert!(matches!(
            Error::from_io(&source),
            Some(Error::DeadlineExceeded)
        ));
    }

    #[test]
    fn with_addr_names_the_address_and_keeps_op_errno_kind() {
        let bind = Error::sys("bind", io::Error::from_raw_os_error(libc::EADDRINUSE));
        let plain = bind.to_string();
        let e = bind.with_addr("127.0.0.1:80");
        assert!(matches!(e, Error::Sys { op: "bind", .. }), "{e:?}");
        assert_eq!(e.op(), Some("bind"));
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            e.to_string(),
            plain.replacen("bind: ", "bind 127.0.0.1:80: ", 1)
        );
        let again = e.with_addr("other");
        assert!(
            again.to_string().starts_with("bind 127.0.0.1:80: "),
            "{again}"
        );
        let src = std::error::Error::source(&again).and_then(|s| s.source());
        let os = src.and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(os.and_then(io::Error::raw_os_error), Some(libc::EADDRINUSE));
        assert!(matches!(Error::Closed.with_addr("x"), Error::Closed));
        let d = again.duplicate();
        assert_eq!(
            (d.to_string(), d.raw_os_error()),
            (again.to_string(), again.raw_os_error())
        );
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
