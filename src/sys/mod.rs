//! Thin syscall facade (Reseau's `SocketOps`).
//!
//! Backend contract: everything above this module is portable Rust. This module (with
//! [`crate::poll`]) is the only place with `unsafe`; each block says why it is sound.
//! Every descriptor it creates is non-blocking and close-on-exec, and writes never raise
//! `SIGPIPE`, so no call can block a thread outside [`crate::poll`]'s waits.
//!
//! Two backends, one of which is compiled (`backend`), behind the same names:
//! - `linux.rs` (the default on Linux): `SOCK_NONBLOCK | SOCK_CLOEXEC` at creation,
//!   `accept4`, `ppoll` with nanosecond timeouts, one `eventfd` per wake, `dup3`,
//!   `MSG_NOSIGNAL`, `TCP_QUICKACK`, abstract unix names, accepted sockets inheriting
//!   the listener's options;
//! - `portable.rs`: only POSIX calls that macOS and the BSDs have: `socket` + `fcntl`,
//!   `accept` + `fcntl`, `poll` with millisecond timeouts rounded up (never early), a
//!   self-pipe per wake, `dup2` + `fcntl`, `SO_NOSIGPIPE` where it exists (Apple) and
//!   `MSG_NOSIGNAL` elsewhere; no option inheritance. Linux builds it with
//!   `RUSTFLAGS="--cfg reseau_portable"` so CI proves every behaviour on it too.
//!
//! Everything else here (addresses, options through socket2, `recv`/`send`, `FIONREAD`,
//! the dead placeholder behind closed descriptors) is POSIX and shared.

use std::io::{self, IoSlice};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, SockAddr, SockRef, Type};

/// Retries a libc call on `EINTR`; `-1` becomes `io::Error::last_os_error()`.
///
/// The macro does not hide `unsafe`: the caller writes `unsafe { syscall!(..) }` with a
/// `// SAFETY:` line for the call's arguments, as for any other unsafe call.
macro_rules! syscall {
    ($e:expr) => {
        loop {
            let r = $e;
            if r == -1 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break Err(err);
            }
            break Ok(r);
        }
    };
}

#[cfg(all(target_os = "linux", not(reseau_portable)))]
#[path = "linux.rs"]
mod backend;
#[cfg(not(all(target_os = "linux", not(reseau_portable))))]
#[path = "portable.rs"]
mod backend;

pub(crate) use backend::{
    ABSTRACT_NAMES, ACCEPT_INHERITS_TCP_OPTIONS, BACKEND, BLOCKING_DGRAM_RECV, WakeFd, accept,
    netns, set_quickack,
};

/// Which network namespace a socket lives in ([`netns`]), comparable between sockets of
/// this process: by `SO_NETNS_COOKIE`, or (older kernels) by the `(device, inode)` of a
/// thread's `/proc/thread-self/ns/net`. One process uses one kind throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(target_os = "linux", not(reseau_portable))),
    allow(dead_code, reason = "only the Linux backend tells namespaces apart")
)]
pub(crate) enum NetNs {
    /// The kernel's cookie for the namespace.
    Cookie(u64),
    /// The namespace file's device and inode.
    Inode(u64, u64),
}

/// Opens a non-blocking, close-on-exec stream socket.
pub(crate) fn stream_socket(domain: Domain) -> io::Result<OwnedFd> {
    backend::socket(domain, Type::STREAM)
}

/// Opens a non-blocking, close-on-exec datagram socket.
pub(crate) fn dgram_socket(domain: Domain) -> io::Result<OwnedFd> {
    backend::socket(domain, Type::DGRAM)
}

/// One datagram into `buf`: how many bytes were stored, whether the datagram was longer
/// than `buf` (the rest is lost), and the sender (`backend::recv_dgram`: `recvfrom` with
/// `MSG_TRUNC` on Linux, `recvmsg`'s `msg_flags` elsewhere). Never waits unless `block`
/// (only where [`BLOCKING_DGRAM_RECV`], on a description made blocking: it then sleeps
/// up to `SO_RCVTIMEO` and returns `EINTR` instead of retrying it).
pub(crate) fn recv_from(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    block: bool,
) -> io::Result<(usize, bool, SockAddr)> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    unsafe { backend::recv_dgram(fd, buf.as_mut_ptr(), buf.len(), block) }
}

/// One whole datagram (up to 64 KiB) as a new `Vec` of exactly its length, whether it
/// was longer (cut), and the sender; `block` as for [`recv_from`].
pub(crate) fn recv_datagram(
    fd: BorrowedFd<'_>,
    block: bool,
) -> io::Result<(Vec<u8>, bool, SockAddr)> {
    const MAX: usize = 65_536;
    let mut buf = [mem::MaybeUninit::<u8>::uninit(); MAX];
    // SAFETY: `buf` is valid for writes of MAX bytes for the whole call.
    let (n, cut, addr) = unsafe { backend::recv_dgram(fd, buf.as_mut_ptr().cast(), MAX, block) }?;
    // SAFETY: the receive initialised the first `n` bytes (`n <= MAX`).
    let data = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) }.to_vec();
    Ok((data, cut, addr))
}

/// `sendto(2)` of one datagram to `addr`; never waits, even on a description made
/// blocking for receives (`MSG_DONTWAIT`).
pub(crate) fn send_to(fd: BorrowedFd<'_>, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `addr` owns a sockaddr of
    // `addr.len()` bytes, both for the whole call.
    unsafe {
        syscall!(libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            backend::SEND_FLAGS | backend::DONTWAIT,
            addr.as_ptr().cast(),
            addr.len()
        ))
    }
    .map(|n| n as usize)
}

/// Borrows `fd` as a socket2 reference for option calls.
pub(crate) fn sock<'a>(fd: &'a BorrowedFd<'_>) -> SockRef<'a> {
    SockRef::from(fd)
}

/// `connect(2)` on a non-blocking socket: `EINPROGRESS` comes back as an error for the
/// caller to wait out.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr` owns a valid sockaddr of `addr.len()` bytes; fd is open (borrowed).
    unsafe {
        syscall!(libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len()
        ))
    }
    .map(drop)
}

/// `recv(2)` into `buf` with `flags` (`0` or `MSG_PEEK`).
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    unsafe {
        syscall!(libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags
        ))
    }
    .map(|n| n as usize)
}

/// `send(2)` that never raises `SIGPIPE` (`MSG_NOSIGNAL`, or `SO_NOSIGPIPE` set at
/// creation where that is the platform's way): a reset peer is `EPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
    unsafe {
        syscall!(libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            backend::SEND_FLAGS
        ))
    }
    .map(|n| n as usize)
}

/// One gathered `sendmsg(2)` (not `writev`, which cannot take `MSG_NOSIGNAL`).
pub(crate) fn sendmsg(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is a C struct of integers and raw pointers: all-zero is a valid
    // (empty) value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: msg points at `bufs`, which outlive the call; no control data.
    unsafe { syscall!(libc::sendmsg(fd.as_raw_fd(), &msg, backend::SEND_FLAGS)) }
        .map(|n| n as usize)
}

/// Bytes queued for reading (`FIONREAD`).
pub(crate) fn bytes_readable(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    unsafe { syscall!(libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n)) }?;
    Ok(n.max(0) as usize)
}

/// What [`wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The socket is ready (or in error/hang-up: the next syscall will say).
    Ready,
    /// The wake descriptor was signalled (or a signal interrupted): re-check state.
    Signalled,
    /// The timeout passed.
    TimedOut,
}

/// Readiness a waiter asks for.
pub(crate) const READABLE: i16 = libc::POLLIN;
/// Writability (also what a connecting socket waits for).
pub(crate) const WRITABLE: i16 = libc::POLLOUT;

/// Parks the calling thread until `fd` has `events`, `wake` is readable (signalled), or
/// `timeout_ns` passes (`None` = no timeout). One `ppoll`/`poll`: the kernel wakes
/// exactly this thread. `wake < 0` waits on `fd` alone (`poll` ignores negative
/// entries).
pub(crate) fn wait(
    fd: RawFd,
    events: i16,
    wake: RawFd,
    timeout_ns: Option<u64>,
) -> io::Result<Woken> {
    let mut fds = [
        libc::pollfd {
            fd,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` holds descriptors open for the call (the socket is held by the
    // caller's operation reference, the wake descriptor is checked out to it).
    match unsafe { backend::poll_fds(&mut fds, timeout_ns) } {
        Ok(_) => {}
        // EINTR is not retried here: the caller loops and recomputes its timeout.
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => return Ok(Woken::Signalled),
        Err(e) => return Err(e),
    }
    if fds[1].revents != 0 {
        Ok(Woken::Signalled)
    } else if fds[0].revents != 0 {
        Ok(Woken::Ready)
    } else {
        Ok(Woken::TimedOut)
    }
}

/// `close(2)`. Errors other than `EBADF` mean the descriptor is gone anyway (Linux), so
/// they are not reported; `EBADF` would be a bug in the caller's ownership.
///
/// # Safety
/// The caller owns `fd`, and nothing uses the number after this call (it may be reused
/// by the next `open`).
pub(crate) unsafe fn close(fd: RawFd) {
    // SAFETY: forwarded to the caller.
    let r = unsafe { libc::close(fd) };
    debug_assert!(r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EBADF));
}

/// A descriptor that stands in for closed sockets (an unconnected unix stream socket:
/// every read or write on it fails with `ENOTCONN`, option calls answer for a unix
/// socket). `None` if it could not be created (out of descriptors); the caller then
/// closes outright and retries the placeholder next time.
fn dead_placeholder() -> Option<BorrowedFd<'static>> {
    static DEAD: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = DEAD.get() {
        return Some(fd.as_fd());
    }
    let fd = stream_socket(Domain::UNIX).ok()?;
    Some(DEAD.get_or_init(|| fd).as_fd())
}

/// The dead placeholder, lent by values that have no descriptor yet (a never-connected
/// facade socket, an unbound server): the same file closed sockets' numbers name, so
/// I/O through it fails (`ENOTCONN`) rather than reaching some other file.
///
/// # Panics
/// If the placeholder cannot be created (out of descriptors) the first time it is needed;
/// [`prepare_placeholder`] runs at every socket value's creation so that this, and
/// `close` keeping numbers reserved, do not depend on descriptors being free later.
pub(crate) fn placeholder() -> BorrowedFd<'static> {
    dead_placeholder().expect("the placeholder descriptor (out of descriptors?)")
}

/// Makes the dead placeholder now if it does not exist yet (a cached check after the
/// first success); failure is left for later users to see.
pub(crate) fn prepare_placeholder() {
    let _ = dead_placeholder();
}

/// Closes the socket behind `fd` but keeps the number allocated: the number is made to
/// name a dead placeholder socket (`dup3`/`dup2` close the old file atomically), so a value
/// that still hands the number out through `AsFd` can never name a file opened later.
/// Returns false if the placeholder was unavailable and the number was closed outright.
///
/// # Safety
/// The caller owns `fd` and no other thread uses it during the call (poll's refcount);
/// on `true` the caller still owns the number and must [`close`] it later.
pub(crate) unsafe fn retire(fd: RawFd) -> bool {
    if let Some(dead) = dead_placeholder().map(|d| d.as_raw_fd()) {
        loop {
            // SAFETY: `dead` lives for the whole process; `fd` is owned by the caller, so
            // replacing what it names cannot affect anybody else's descriptor.
            match unsafe { backend::dup_onto(dead, fd) } {
                Ok(()) => return true,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    // SAFETY: forwarded to the caller; on `false` the number is released here.
    unsafe { close(fd) };
    false
}

/// The soft `RLIMIT_NOFILE`: one more than the highest descriptor number `open` can
/// return (`u64::MAX` when unlimited or unknown).
pub(crate) fn nofile_limit() -> u64 {
    // SAFETY: rlimit is two integers, all-zero is a valid value.
    let mut lim: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: getrlimit writes one rlimit through the pointer, which outlives the call.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 if lim.rlim_cur != libc::RLIM_INFINITY => lim.rlim_cur,
        _ => u64::MAX,
    }
}

/// TCP keep-alive timing: `SO_KEEPALIVE` on plus `TCP_KEEPIDLE` (`TCP_KEEPALIVE` on
/// Apple), `TCP_KEEPINTVL` and `TCP_KEEPCNT` where the platform has them (tcp(7) on
/// Linux, tcp(4) on macOS and FreeBSD); elsewhere a requested interval or count is
/// `Unsupported`.
pub(crate) fn set_keepalive_timing(
    s: &SockRef<'_>,
    idle: Option<std::time::Duration>,
    interval: Option<std::time::Duration>,
    count: Option<u32>,
) -> io::Result<()> {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = idle {
        ka = ka.with_time(t);
    }
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ))]
    {
        if let Some(t) = interval {
            ka = ka.with_interval(t);
        }
        if let Some(n) = count {
            ka = ka.with_retries(n);
        }
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )))]
    if interval.is_some() || count.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "keep-alive interval and count are not settable on this platform",
        ));
    }
    s.set_tcp_keepalive(&ka)
}

/// `TCP_USER_TIMEOUT` (tcp(7), Linux only; macOS and the BSDs have no equivalent that
/// bounds unacknowledged data, so it is `Unsupported` there).
pub(crate) fn set_user_timeout(s: &SockRef<'_>, t: Option<std::time::Duration>) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return s.set_tcp_user_timeout(t);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (s, t);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP_USER_TIMEOUT exists only on Linux",
        ))
    }
}

/// The socket's address family, from `getsockname` (POSIX; `SO_DOMAIN` is Linux's).
pub(crate) fn socket_domain(s: &SockRef<'_>) -> io::Result<Domain> {
    Ok(s.local_addr()?.domain())
}

/// Whether the socket is listening (`SO_ACCEPTCONN`: POSIX, on Linux, macOS and the
/// BSDs; read with getsockopt(2) directly because socket2 offers it on Linux only).
pub(crate) fn is_listener(s: &SockRef<'_>) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live c_int `v` and updates
    // `len`; the descriptor is borrowed, so open for the call.
    unsafe {
        syscall!(libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut v).cast(),
            &mut len
        ))
    }?;
    Ok(v != 0)
}

/// The index of the network interface called `name` (`if_nametoindex(3)`), `None` if
/// there is none (or the name cannot be a C string).
pub(crate) fn if_nametoindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; the function only
    // reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i > 0).then_some(i)
}

/// Turns a borrowed raw descriptor into a `BorrowedFd`.
///
/// # Safety
/// `fd` must stay open for `'a` (poll's refcount or the owner's lifetime guarantees it).
pub(crate) unsafe fn borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: forwarded to the caller.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Makes the file description blocking (`on`) or non-blocking again (`O_NONBLOCK`
/// through socket2's `fcntl`). Every other holder of the description sees the change.
pub(crate) fn set_blocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    sock(&fd).set_nonblocking(!on)
}

/// `SO_RCVTIMEO` (socket(7)): how long a blocking receive sleeps before `EAGAIN`. The
/// kernel counts it in jiffies, rounded up; `ns` is at least 1 µs here, because 0 would
/// mean "forever".
pub(crate) fn set_recv_timeout(fd: BorrowedFd<'_>, ns: u64) -> io::Result<()> {
    sock(&fd).set_read_timeout(Some(std::time::Duration::from_nanos(ns.max(1_000))))
}

/// `shutdown(SHUT_RD)`, errors ignored: on an unconnected Linux UDP socket it fails
/// with `ENOTCONN` but still marks the receive side shut and wakes a receiver blocked in
/// the kernel, which then returns at once (what `close` needs of it). Not `SHUT_RDWR`:
/// a send racing the close would fail with `EPIPE` instead of going out or seeing
/// [`crate::Error::Closed`].
pub(crate) fn shutdown_wake(fd: BorrowedFd<'_>) {
    let _ = sock(&fd).shutdown(std::net::Shutdown::Read);
}

/// `SO_LINGER` with a zero timeout, so `close` sends RST instead of FIN.
pub(crate) fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    sock(&fd).set_linger(Some(std::time::Duration::ZERO))
}

/// The socket's pending error (`SO_ERROR`), cleared by reading it.
pub(crate) fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    sock(&fd).take_error()
}

/// The `SockAddr` for a unix path; a leading `@` names a Linux abstract socket, and is
/// `InvalidInput` where the kernel has none ([`ABSTRACT_NAMES`] is false).
pub(crate) fn unix_addr(path: &Path) -> io::Result<SockAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) if ABSTRACT_NAMES => abstract_addr(name),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "abstract unix socket names (\"@name\") exist only on Linux",
        )),
        None => SockAddr::unix(path),
    }
}

/// An abstract socket address: socket2 takes a path whose first byte is NUL as one.
fn abstract_addr(name: &[u8]) -> io::Result<SockAddr> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(name);
    SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
}

/// The path (or `@name` for an abstract socket) in a unix `SockAddr`.
pub(crate) fn unix_path(addr: &SockAddr) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(p) = addr.as_pathname() {
        return Some(p.to_path_buf());
    }
    addr.as_abstract_namespace().map(|name| {
        let mut s = b"@".to_vec();
        s.extend_from_slice(name);
        std::ffi::OsStr::from_bytes(&s).into()
    })
}

/// The `SockAddr` of an IP socket address (V6 keeps `scope_id`).
pub(crate) fn ip_addr(addr: SocketAddr) -> SockAddr {
    SockAddr::from(addr)
}

/// `SSL_has_pending` (OpenSSL >= 1.1.0; `openssl-sys` does not bind it): whether `ssl`
/// holds record data not yet returned to the caller, decrypted or not. `SSL_pending`
/// counts only the current decrypted record, not the ones `read_ahead` buffered.
pub(crate) fn ssl_has_pending(ssl: &openssl::ssl::SslRef) -> bool {
    unsafe extern "C" {
        fn SSL_has_pending(s: *const libc::c_void) -> libc::c_int;
    }
    // SAFETY: an `SslRef` lives at the address of the `SSL` it wraps (the foreign-types
    // opaque-reference pattern), which the borrow keeps alive; the call only reads it.
    unsafe { SSL_has_pending((ssl as *const openssl::ssl::SslRef).cast()) != 0 }
}

/// Waits until at least one of `fds` is writable or in error/hang-up (how a
/// non-blocking connect reports that it finished) or `timeout_ns` has passed (`None` =
/// no timeout). Writes each descriptor's `revents` into `revents` (0 = not ready;
/// exactly [`WRITABLE`] = writable with no error or hang-up, which for a TCP socket
/// means its connect succeeded) and returns how many are ready (0 = the timeout
/// passed). One `ppoll`/`poll`, whose timeout never ends the wait before the time
/// asked; `EINTR` waits again for the time left.
///
/// `revents` must be as long as `fds`. Callers keep `fds` short: the dialer closes an
/// attempt as soon as it fails, so only connects still in flight are polled.
pub(crate) fn poll_writable(
    fds: &[BorrowedFd<'_>],
    timeout_ns: Option<u64>,
    revents: &mut [i16],
) -> io::Result<usize> {
    assert_eq!(
        fds.len(),
        revents.len(),
        "poll_writable: one revents slot per descriptor"
    );
    const UNUSED: libc::pollfd = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    // A dial has one or two connects in flight most of the time: no allocation then.
    let mut small = [UNUSED; 4];
    let mut big = Vec::new();
    let pfds: &mut [libc::pollfd] = if fds.len() <= small.len() {
        &mut small[..fds.len()]
    } else {
        big.resize(fds.len(), UNUSED);
        &mut big
    };
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLOUT;
    }
    let end = timeout_ns.map(|ns| {
        (
            std::time::Instant::now(),
            std::time::Duration::from_nanos(ns),
        )
    });
    let mut left = timeout_ns;
    loop {
        pfds.iter_mut().for_each(|p| p.revents = 0);
        // SAFETY: every descriptor in `pfds` is borrowed, so open for the call.
        match unsafe { backend::poll_fds(pfds, left) } {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        if let Some((start, total)) = end {
            let spent = start.elapsed();
            if spent >= total {
                break;
            }
            left = Some((total - spent).as_nanos().min(u64::MAX as u128) as u64);
        }
    }
    let mut n = 0;
    for (r, p) in revents.iter_mut().zip(pfds.iter()) {
        *r = p.revents;
        n += usize::from(p.revents != 0);
    }
    Ok(n)
}

/// `SSL_set_session` for a session that `from` produced: refused (`false`) unless `ssl`
/// belongs to that same context, which is the condition `SslRef::set_session` leaves to
/// its caller (a session is only meaningful to the context, method and verify settings
/// that made it). `true` when OpenSSL took the session (the handshake then offers it).
pub(crate) fn ssl_set_session(
    ssl: &mut openssl::ssl::SslRef,
    session: &openssl::ssl::SslSessionRef,
    from: &openssl::ssl::SslContextRef,
) -> bool {
    if !std::ptr::eq(ssl.ssl_context(), from) {
        return false;
    }
    // SAFETY: the session was created by a connection of `from`, and `ssl` was created
    // from `from` too (checked above); the call takes its own reference on the session.
    unsafe { ssl.set_session(session).is_ok() }
}

/// `SSL_key_update` (TLS 1.3; `openssl-sys` does not bind it): schedules a KeyUpdate,
/// sent by the next `SSL_write` or `SSL_do_handshake`; `request_peer` asks the peer to
/// update its sending keys too.
pub(crate) fn ssl_key_update<S>(
    stream: &mut openssl::ssl::SslStream<S>,
    request_peer: bool,
) -> std::result::Result<(), openssl::error::ErrorStack> {
    unsafe extern "C" {
        fn SSL_key_update(s: *mut libc::c_void, updatetype: libc::c_int) -> libc::c_int;
    }
    // SSL_KEY_UPDATE_REQUESTED / SSL_KEY_UPDATE_NOT_REQUESTED.
    let kind = if request_peer { 1 } else { 0 };
    let ssl: *const openssl::ssl::SslRef = stream.ssl();
    // SAFETY: an `SslRef` lives at the address of the `SSL` it wraps; the stream owns
    // that `SSL`, and the exclusive borrow of the stream keeps it alive and keeps every
    // other call on it out for the duration, as OpenSSL requires of an `SSL`.
    let ok = unsafe { SSL_key_update(ssl.cast_mut().cast(), kind) };
    if ok == 1 {
        Ok(())
    } else {
        Err(openssl::error::ErrorStack::get())
    }
}

/// `SSL_CTX_set_timeout` (a macro-free function `openssl-sys` does not bind): the
/// lifetime of sessions made by the context, which TLS 1.3 also sends as the ticket
/// lifetime hint.
pub(crate) fn ctx_set_session_timeout(b: &mut openssl::ssl::SslContextBuilder, secs: u32) {
    unsafe extern "C" {
        fn SSL_CTX_set_timeout(ctx: *mut libc::c_void, t: libc::c_long) -> libc::c_long;
    }
    // SAFETY: the builder owns a live `SSL_CTX` for the call's duration; the call only
    // stores a number in it.
    unsafe {
        SSL_CTX_set_timeout(b.as_ptr().cast(), libc::c_long::from(secs));
    }
}

/// `getsockopt(SOL_SOCKET, SO_ACCEPTCONN)`-free check used by tests: the fd's flags.
#[cfg(test)]
fn fd_flags(fd: RawFd) -> (bool, bool) {
    // SAFETY: F_GETFD/F_GETFL only read descriptor flags.
    let fdf = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (fdf & libc::FD_CLOEXEC != 0, fl & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn sockets_are_nonblocking_and_cloexec() {
        let l = stream_socket(Domain::IPV4).unwrap();
        let lfd = l.as_fd();
        let sl = sock(&lfd);
        sl.bind(&ip_addr("127.0.0.1:0".parse().unwrap())).unwrap();
        sl.listen(8).unwrap();
        let addr = sl.local_addr().unwrap();
        assert_eq!(fd_flags(l.as_raw_fd()), (true, true));
        let c = stream_socket(Domain::IPV4).unwrap();
        match connect(c.as_fd(), &addr) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINPROGRESS)),
        }
        let mut tries = 0;
        let (a, peer) = loop {
            match accept(l.as_fd()) {
                Ok(x) => break x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 1000 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(fd_flags(a.as_raw_fd()), (true, true));
        assert_eq!(
            peer.as_socket(),
            sock(&c.as_fd()).local_addr().unwrap().as_socket()
        );
        assert_eq!(take_error(c.as_fd()).unwrap().map(|e| e.kind()), None);
    }

    #[test]
    fn eventfd_latches() {
        let e = WakeFd::new().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: `e` is open for the whole test.
        unsafe { WakeFd::signal(e.signal_fd()) };
        assert_eq!(
            wait(a.as_raw_fd(), READABLE, e.poll_fd(), Some(5_000_000_000)).unwrap(),
            Woken::Signalled
        );
        // SAFETY: as above.
        unsafe { WakeFd::drain(e.poll_fd()) };
        assert_eq!(
            wait(a.as_raw_fd(), READABLE, e.poll_fd(), Some(1_000_000)).unwrap(),
            Woken::TimedOut
        );
    }

    #[test]
    fn datagram_sends_never_wait_even_on_a_blocking_description() {
        if !BLOCKING_DGRAM_RECV {
            return; // this backend never makes a description blocking
        }
        // A unix datagram receiver's queue fills (UDP on loopback never does): a send on
        // a blocking description must still answer EAGAIN, not sleep.
        let dir = std::env::temp_dir().join(format!("reseau-sys-dontwait-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = std::os::unix::net::UnixDatagram::bind(&dir).unwrap();
        let addr = unix_addr(&dir).unwrap();
        let tx = dgram_socket(Domain::UNIX).unwrap();
        set_blocking(tx.as_fd(), true).unwrap();
        assert!(!fd_flags(tx.as_raw_fd()).1, "the description is blocking");
        let (done, res) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = 0;
            let r = loop {
                match send_to(tx.as_fd(), &[0u8; 512], &addr) {
                    Ok(_) => sent += 1,
                    Err(e) => break e,
                }
                if sent > 100_000 {
                    panic!("the receiver's queue never filled");
                }
            };
            let _ = done.send(r.kind());
        });
        let kind = res
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("send_to slept on a full queue");
        assert_eq!(kind, io::ErrorKind::WouldBlock);
        drop(rx);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn abstract_names_round_trip() {
        let addr = unix_addr(Path::new("@reseau-sys-test")).unwrap();
        assert_eq!(unix_path(&addr).unwrap(), Path::new("@reseau-sys-test"));
        let p = unix_addr(Path::new("/tmp/x.sock")).unwrap();
        assert_eq!(unix_path(&p).unwrap(), Path::new("/tmp/x.sock"));
    }
}
