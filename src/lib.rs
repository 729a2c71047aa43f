//! # reseau
//!
//! Blocking, `std::io`-shaped TCP, unix-domain and TLS sockets with the networking
//! model of Go's `net` + `crypto/tls` and Julia's `Sockets`: absolute read/write/accept
//! deadlines that can be moved while a call is blocked, a `close()` from another thread
//! that wakes every blocked call, and a descriptor lifetime that never lets a reused fd
//! number reach the wrong connection.
//!
//! ```
//! use std::time::{Duration, Instant};
//! # fn main() -> reseau::Result<()> {
//! let ln = reseau::tcp::listen(reseau::tcp::loopback_addr(0))?;
//! let client = reseau::tcp::connect(ln.local_addr().unwrap())?;
//! let server = ln.accept()?;
//! client.write(b"ping")?;
//! let mut buf = [0u8; 4];
//! server.read_full(&mut buf)?;
//! assert_eq!(&buf, b"ping");
//! // Go-style deadline: absolute, fails fast once passed.
//! server.set_read_deadline(Some(Instant::now() + Duration::from_millis(10)))?;
//! assert!(matches!(server.read(&mut buf), Err(reseau::Error::DeadlineExceeded)));
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up: `sys` (syscalls, the only `unsafe` besides `poll`), `poll`
//! (waiting, deadlines, descriptor lifetime), [`tcp`] and [`unix`] (streams and
//! listeners), [`resolve`] (host:port parsing, resolvers, the RFC 8305 [`Dialer`](resolve::Dialer)),
//! [`tls`] (OpenSSL with Go's semantics) and [`sockets`] (the Julia `Sockets` facade).
//! [`event`] serves many connections on a few `mio` loop threads through lifecycle
//! callbacks (lori's `TCPConnection`).
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

#[macro_use]
mod macros;

mod error;
mod poll;
mod sys;
mod util;

pub mod event;
pub mod resolve;
pub mod sockets;
pub mod tcp;
pub mod tls;
pub mod unix;

pub use error::{DnsError, Error, OpError, Result, TlsError};

/// Which syscall backend this build uses: `"linux"` (the default on Linux: `ppoll`,
/// `eventfd`, `accept4`, …) or `"portable"` (POSIX calls only, as on macOS and the BSDs;
/// on Linux selected with `RUSTFLAGS="--cfg reseau_portable"`).
pub const BACKEND: &str = sys::BACKEND;

/// Internals exposed for the fuzz targets (`fuzz/`) and their corpus replay test; not
/// part of the public API, no stability promise.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::sockets::readbuf::ReadBuf;
}
