//! The Linux backend: the calls that make each operation one syscall (see the parent
//! module for the portable one beside it). Man pages: socket(2) `SOCK_NONBLOCK |
//! SOCK_CLOEXEC`, accept4(2), ppoll(2), eventfd(2), dup3(2), send(2) `MSG_NOSIGNAL`,
//! tcp(7) `TCP_QUICKACK`, unix(7) abstract names.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, SockAddr, Type};

use super::NetNs;

/// This backend's name, for docs and test output.
pub(crate) const BACKEND: &str = "linux";

/// Linux copies the listener's socket state (`TCP_NODELAY`, `SO_KEEPALIVE`) into an
/// accepted socket, so they are set once on the listener instead of per connection.
pub(crate) const ACCEPT_INHERITS_TCP_OPTIONS: bool = true;

/// unix(7): a name starting with a NUL byte lives in the abstract namespace.
pub(crate) const ABSTRACT_NAMES: bool = true;

/// send(2): `MSG_NOSIGNAL` turns `SIGPIPE` into `EPIPE` per call.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Datagram receives may block in the kernel (see [`crate::poll`]'s blocking receives):
/// a UDP socket's description is made blocking, every call that must not wait passes
/// `MSG_DONTWAIT` (recv(2), send(2)), `SO_RCVTIMEO` bounds the one that may (socket(7)),
/// and shutdown(2) (`SHUT_RD`) wakes it for `close` (Linux's `inet_shutdown` wakes sleepers of an
/// unconnected UDP socket too, returning `ENOTCONN`).
pub(crate) const BLOCKING_DGRAM_RECV: bool = true;

/// recv(2)/send(2): "this call does not wait", whatever the description's mode.
pub(crate) const DONTWAIT: libc::c_int = libc::MSG_DONTWAIT;

/// socket(7) `SO_NETNS_COOKIE` (Linux 5.14; the asm-generic number, which libc does not
/// name yet; sparc numbers it otherwise and takes the fallback below).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_NETNS_COOKIE: Option<libc::c_int> = Some(71);
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_NETNS_COOKIE: Option<libc::c_int> = None;

/// The network namespace the socket `fd` lives in: its `SO_NETNS_COOKIE`, or on a
/// kernel without it the calling thread's namespace (`/proc/thread-self/ns/net`, the
/// socket's when this thread made it and has not moved since). `None`: neither is known.
pub(crate) fn netns(fd: BorrowedFd<'_>) -> Option<NetNs> {
    if let Some(opt) = SO_NETNS_COOKIE {
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the live u64 `cookie` and
        // updates `len`; `fd` is borrowed, so open for the call.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw mut cookie).cast(),
                &mut len,
            )
        };
        if r == 0 && len as usize == std::mem::size_of::<u64>() {
            return Some(NetNs::Cookie(cookie));
        }
    }
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some(NetNs::Inode(m.dev(), m.ino()))
}

/// A non-blocking, close-on-exec socket in one call.
pub(crate) fn socket(domain: Domain, ty: Type) -> io::Result<OwnedFd> {
    Ok(socket2::Socket::new(domain, ty.nonblocking().cloexec(), None)?.into())
}

/// accept4(2) with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the new descriptor is born ready.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SockAddr)> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket2 hands us a zeroed sockaddr_storage and its length, both writable
    // for the whole call; accept4 writes at most `*len` bytes and updates `*len`, which
    // is the contract `try_init` asks of the closure.
    let (raw, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            syscall!(libc::accept4(fd.as_raw_fd(), storage.cast(), len, flags))
        })
    }?;
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(raw) }, addr))
}

/// ppoll(2) with the timeout in nanoseconds (`None` = none), so a deadline is met to the
/// nanosecond the kernel's timers allow. Returns the number of ready entries; `EINTR`
/// comes back as an error for the caller to handle.
///
/// # Safety
/// Every non-negative descriptor in `fds` must be open for the whole call.
pub(crate) unsafe fn poll_fds(
    fds: &mut [libc::pollfd],
    timeout_ns: Option<u64>,
) -> io::Result<usize> {
    let ts;
    let ts_ptr = match timeout_ns {
        Some(ns) => {
            ts = libc::timespec {
                tv_sec: (ns / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            };
            &raw const ts
        }
        None => std::ptr::null(),
    };
    // SAFETY: `fds` (of `fds.len()` entries) and `ts` live across the call; the caller
    // vouches for the descriptors; a null sigmask keeps the current one.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A latched wake-up: one `eventfd` (eventfd(2)), polled and signalled through the same
/// number, so a wake sent before the waiter parks is not lost.
#[derive(Debug)]
pub(crate) struct WakeFd(OwnedFd);

impl WakeFd {
    /// A new non-blocking, close-on-exec eventfd.
    pub(crate) fn new() -> io::Result<WakeFd> {
        // SAFETY: plain syscall with constant flags; returns a new fd or -1.
        let raw = unsafe { syscall!(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)) }?;
        // SAFETY: eventfd returned a fresh descriptor that nothing else owns.
        Ok(WakeFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// The number a waiter polls for readability.
    pub(crate) fn poll_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The number a waker signals (the same one).
    pub(crate) fn signal_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Latches a wake-up. Cannot fail short of the counter overflowing, which a
    /// non-blocking eventfd reports as `EAGAIN`; an already-latched wake is enough then.
    ///
    /// # Safety
    /// `fd` must be an open [`signal_fd`](Self::signal_fd) for the whole call (a stale
    /// number could write into another file).
    pub(crate) unsafe fn signal(fd: RawFd) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the caller's open eventfd.
        let _ = unsafe { syscall!(libc::write(fd, (&raw const one).cast(), 8)) };
    }

    /// Clears a latched wake-up.
    ///
    /// # Safety
    /// `fd` must be an open [`poll_fd`](Self::poll_fd) for the whole call.
    pub(crate) unsafe fn drain(fd: RawFd) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from the caller's open eventfd.
        let _ = unsafe { syscall!(libc::read(fd, (&raw mut v).cast(), 8)) };
    }
}

/// dup3(2) `src` onto `dst` with `O_CLOEXEC`: `dst`'s old file is closed atomically and
/// the number stays allocated, close-on-exec.
///
/// # Safety
/// `src` must be open; the caller owns `dst` and nothing else uses it during the call.
pub(crate) unsafe fn dup_onto(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    match unsafe { libc::dup3(src, dst, libc::O_CLOEXEC) } {
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// tcp(7) `TCP_QUICKACK`.
pub(crate) fn set_quickack(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    socket2::SockRef::from(&fd).set_tcp_quickack(on)
}

/// One datagram with recvfrom(2) and `MSG_TRUNC`, which on Linux (udp(7), recv(2))
/// returns the datagram's real length even when it was cut: one syscall, no msghdr.
/// Returns `(bytes stored, was cut, sender)`. `block`: without `MSG_DONTWAIT`, so on a
/// blocking description it sleeps up to `SO_RCVTIMEO` (then `EAGAIN`); `EINTR` is then
/// returned, not retried, so the caller re-checks its deadline (a retry would restart
/// the kernel's timeout). Without `block` it never waits and retries `EINTR`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the whole call.
pub(crate) unsafe fn recv_dgram(
    fd: BorrowedFd<'_>,
    ptr: *mut u8,
    len: usize,
    block: bool,
) -> io::Result<(usize, bool, SockAddr)> {
    let flags = libc::MSG_TRUNC | if block { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: the caller vouches for `ptr`/`len`; socket2 hands a zeroed, writable
    // address buffer and its length, which recvfrom fills and updates as `try_init`
    // requires.
    let (n, addr) = unsafe {
        SockAddr::try_init(|storage, alen| {
            loop {
                let r =
                    libc::recvfrom(fd.as_raw_fd(), ptr.cast(), len, flags, storage.cast(), alen);
                if r >= 0 {
                    break Ok(r);
                }
                let e = io::Error::last_os_error();
                if block || e.raw_os_error() != Some(libc::EINTR) {
                    break Err(e);
                }
            }
        })
    }?;
    let n = n as usize;
    Ok((n.min(len), n > len, addr))
}
