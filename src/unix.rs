//! Unix-domain stream sockets (Julia's LOCAL endpoints / `PipeEndpoint`).
//!
//! The same I/O, close, half-close and deadline surface as [`crate::tcp`]. A path that
//! starts with `@` names a Linux abstract socket (no file is created).
//!
//! ```
//! use std::io::Read;
//! # fn main() -> reseau::Result<()> {
//! let dir = std::env::temp_dir().join(format!("reseau-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("echo.sock");
//! let ln = reseau::unix::listen(&path)?;
//! let client = reseau::unix::connect(&path)?;
//! let server = ln.accept()?;
//! server.write(b"hi")?;
//! server.close_write()?;
//! let mut got = String::new();
//! (&client).read_to_string(&mut got).unwrap();
//! assert_eq!(got, "hi");
//! ln.close()?;
//! assert!(!path.exists(), "the listener removes its socket file");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use socket2::Domain;

use crate::poll::{Dir, Fd};
use crate::{Error, Result, sys};

fn new_fd() -> Result<Fd> {
    Ok(Fd::new(
        sys::stream_socket(Domain::UNIX).map_err(|e| Error::sys("socket", e))?,
    ))
}

fn sockaddr(path: &Path) -> Result<socket2::SockAddr> {
    sys::unix_addr(path)
        .map_err(|e| Error::InvalidArgument(format!("unix path {}: {e}", path.display())))
}

/// Connects to the unix socket at `path` (`@name` = abstract).
///
/// # Errors
/// [`Error::InvalidArgument`] for a path too long for `sockaddr_un`, empty, or with a
/// NUL byte (before any syscall); `Sys { op:
/// "connect" }` (`ENOENT` when nothing is there, `ECONNREFUSED` when nobody listens).
pub fn connect(path: impl AsRef<Path>) -> Result<Conn> {
    let path = path.as_ref();
    check_path(path)?;
    let addr = sockaddr(path)?;
    let fd = new_fd()?;
    fd.connect(&addr)?;
    let local = fd.control("getsockname", |fd| sys::sock(&fd).local_addr())?;
    Ok(Conn {
        fd,
        local: sys::unix_path(&local),
        peer: Some(path.to_path_buf()),
    })
}

/// Binds and listens on `path` (`@name` = abstract). The listener removes the file when
/// it closes.
///
/// # Errors
/// `Sys { op: "bind" }` with `EADDRINUSE` if `path` exists (a stale file is not
/// removed for you: it may belong to a live server); [`Error::InvalidArgument`] for a
/// path too long, empty, or with a NUL byte (before any syscall); `Sys { op: "listen" }`.
/// A `Sys` error's Display names the path (`bind /run/app.sock: Address already in
/// use (os error 98)`, see [`Error::Sys`]).
pub fn listen(path: impl AsRef<Path>) -> Result<Listener> {
    let path = path.as_ref();
    listen_bare(path).map_err(|e| e.with_addr(path.display()))
}

/// [`listen`] without the path in its errors, for callers that add their own context
/// (the facade's `listen unix <path>: …`).
pub(crate) fn listen_bare(path: &Path) -> Result<Listener> {
    check_path(path)?;
    let addr = sockaddr(path)?;
    let fd = new_fd()?;
    fd.control("bind", |fd| sys::sock(&fd).bind(&addr))?;
    let ln = Listener {
        fd,
        file: SocketFile::new(path, addr.as_pathname().is_some()),
    };
    ln.fd.control("listen", |fd| {
        sys::sock(&fd).listen(crate::tcp::default_backlog())
    })?;
    Ok(ln)
}

/// A connected unix-domain stream. `Send + Sync`; one reader plus one writer may run
/// concurrently. Dropping closes.
pub struct Conn {
    fd: Fd,
    local: Option<PathBuf>,
    peer: Option<PathBuf>,
}

stream_io!(Conn);

impl Conn {
    /// The bound path of this end (`None` for an unnamed client socket).
    pub fn local_addr(&self) -> Option<PathBuf> {
        self.local.clone()
    }

    /// The peer's path (the listener's path, on the client side).
    pub fn peer_addr(&self) -> Option<PathBuf> {
        self.peer.clone()
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() { "open" } else { "closed" };
        write!(
            f,
            "unix::Conn({:?} => {:?}, {state})",
            self.local, self.peer
        )
    }
}

/// A listening unix-domain socket. `close` (or drop) wakes a blocked `accept` and
/// removes the socket file.
pub struct Listener {
    // Declared before `file`: dropping closes the socket before removing its file.
    fd: Fd,
    /// The path listened on, and whether its file is ours to remove.
    file: SocketFile,
}

/// A listener's path; the socket file, when the listener created it, is removed once,
/// by the first `close` or on drop.
/// Kept apart from [`Listener`] so `Listener` has no `Drop` and its descriptor can be
/// moved out (`From<Listener> for OwnedFd`).
struct SocketFile {
    path: PathBuf,
    owned: std::sync::atomic::AtomicBool,
}

impl SocketFile {
    fn new(path: &Path, owned: bool) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            owned: std::sync::atomic::AtomicBool::new(owned),
        }
    }

    /// Removes the file if this listener still owns it; later calls do nothing (a
    /// second close must not delete a socket a new server has since bound there).
    fn remove(&self) {
        if self.owned.swap(false, std::sync::atomic::Ordering::AcqRel) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn disown(&self) {
        self.owned
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

fd_traits!(Listener);

impl Listener {
    /// Waits for and returns the next connection.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::DeadlineExceeded`], `Sys { op: "accept" }` (`EMFILE`
    /// returns at once; the connection stays queued).
    pub fn accept(&self) -> Result<Conn> {
        let (fd, peer) = self.fd.accept()?;
        Ok(Conn {
            fd: Fd::new(fd),
            local: Some(self.file.path.clone()),
            peer: sys::unix_path(&peer),
        })
    }

    /// Accepts one queued connection without waiting; `Ok(None)` when none is queued.
    pub(crate) fn try_accept(&self) -> Result<Option<Conn>> {
        Ok(self.fd.try_accept()?.map(|(fd, peer)| Conn {
            fd: Fd::new(fd),
            local: Some(self.file.path.clone()),
            peer: sys::unix_path(&peer),
        }))
    }

    /// Sets the accept deadline.
    ///
    /// # Errors
    /// [`Error::Closed`] on a closed listener.
    pub fn set_deadline(&self, at: Option<Instant>) -> Result<()> {
        self.fd.set_deadline(Dir::Read, at)
    }

    /// The path listened on.
    pub fn local_addr(&self) -> Option<PathBuf> {
        Some(self.file.path.clone())
    }

    /// Closes, wakes a blocked `accept`, and removes the socket file. Idempotent.
    ///
    /// # Errors
    /// None today.
    pub fn close(&self) -> Result<()> {
        // Only the call that closed the socket removes the file: a second close must not
        // delete a socket a new server has since bound at the same path.
        if self.fd.close() {
            self.file.remove();
        }
        Ok(())
    }

    /// False once [`close`](Self::close) has started.
    pub fn is_open(&self) -> bool {
        self.fd.is_open()
    }
}

// No `Drop`: the fields do it, `fd` closing the socket and then `file` removing the file.

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_open() { "active" } else { "closed" };
        write!(f, "unix::Listener({}, {state})", self.file.path.display())
    }
}

// ---------------------------------------------------------------------------------------
// Path checks and conversions (SPEC §7b).

/// Refuses what the kernel would silently truncate or reject late: a NUL byte (C strings
/// end there, so `"/tmp/a\0b"` would bind `/tmp/a`) and the empty path.
fn check_path(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Error::InvalidArgument("unix socket path is empty".into()));
    }
    if bytes.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "unix socket path {:?} contains a NUL byte",
            path
        )));
    }
    Ok(())
}

/// Adopts a connected `std` unix stream (made non-blocking).
impl From<std::os::unix::net::UnixStream> for Conn {
    fn from(stream: std::os::unix::net::UnixStream) -> Conn {
        let _ = stream.set_nonblocking(true);
        let fd = Fd::new(std::os::fd::OwnedFd::from(stream));
        let (local, peer) = {
            let b = fd.as_fd();
            let s = sys::sock(&b);
            (
                s.local_addr().ok().and_then(|a| sys::unix_path(&a)),
                s.peer_addr().ok().and_then(|a| sys::unix_path(&a)),
            )
        };
        Conn { fd, local, peer }
    }
}

/// Adopts a listening `std` unix listener (made non-blocking). The socket file is not
/// removed on close: it belongs to whoever created it (as Go's `FileListener`).
impl From<std::os::unix::net::UnixListener> for Listener {
    fn from(ln: std::os::unix::net::UnixListener) -> Listener {
        let _ = ln.set_nonblocking(true);
        let path = ln
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_default();
        Listener {
            fd: Fd::new(std::os::fd::OwnedFd::from(ln)),
            file: SocketFile::new(&path, false),
        }
    }
}

/// The socket as an owned descriptor: the same number as `as_raw_fd()`, released
/// without being closed, in blocking mode (as `std` types and child processes expect).
/// A closed `Conn` gives a duplicate of the dead placeholder its number names; see
/// [`tcp::Conn`](crate::tcp::Conn)'s conversion.
impl From<Conn> for std::os::fd::OwnedFd {
    fn from(conn: Conn) -> std::os::fd::OwnedFd {
        crate::tcp::release_fd(conn.fd)
    }
}

/// As for [`Conn`]; the socket file stays (the descriptor still listens on it).
impl From<Listener> for std::os::fd::OwnedFd {
    fn from(ln: Listener) -> std::os::fd::OwnedFd {
        let Listener { fd, file, .. } = ln;
        file.disown();
        crate::tcp::release_fd(fd)
    }
}

impl Conn {
    /// The descriptor, for a TLS transport over this socket.
    pub(crate) fn into_fd(self) -> Fd {
        self.fd
    }
}
