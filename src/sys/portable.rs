//! The portable backend: only calls that POSIX, macOS and the BSDs share, so the same
//! code that runs here (Linux, with `--cfg reseau_portable`) is what those platforms
//! compile. Each platform-specific choice names its man page.
//!
//! What it costs against the Linux backend: two `fcntl`s after each `socket`/`accept`
//! (and a window in which a concurrent `fork` + `exec` in another thread could inherit
//! the descriptor: macOS has no `SOCK_CLOEXEC`/`accept4`), `poll(2)` with millisecond
//! timeouts (rounded up, so deadlines are never early, at most ~1 ms late), two
//! descriptors per wake (a self-pipe instead of an eventfd), and no option inheritance
//! from listeners (`TCP_NODELAY`/`SO_KEEPALIVE` set on every accepted socket).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, SockAddr, Type};

use super::NetNs;

/// This backend's name, for docs and test output.
pub(crate) const BACKEND: &str = "portable";

/// POSIX does not say an accepted socket inherits its listener's options (BSD derived
/// stacks copy some, not all): set them on each.
pub(crate) const ACCEPT_INHERITS_TCP_OPTIONS: bool = false;

/// unix(7): the abstract namespace is Linux's; elsewhere `"@name"` is refused. The
/// portable backend on Linux keeps it, since the kernel has it.
pub(crate) const ABSTRACT_NAMES: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// send(2) on Apple platforms has no `MSG_NOSIGNAL`: `SO_NOSIGPIPE` is set on every
/// socket instead (setsockopt(2), macOS). Linux and the BSDs take `MSG_NOSIGNAL` per call
/// (send(2): FreeBSD, OpenBSD, NetBSD, Linux).
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Datagram receives always wait in `poll` here: whether shutdown(2) wakes a receiver
/// blocked on an unconnected UDP socket is not portable (it is a Linux quirk), so
/// descriptions stay non-blocking.
pub(crate) const BLOCKING_DGRAM_RECV: bool = false;

/// Nothing to add: every description of this backend is non-blocking.
pub(crate) const DONTWAIT: libc::c_int = 0;

/// Not needed here (no blocking receives, so no wake datagrams to keep in a namespace).
pub(crate) fn netns(_fd: BorrowedFd<'_>) -> Option<NetNs> {
    None
}

/// fcntl(2): `O_NONBLOCK` on the file, `FD_CLOEXEC` on the descriptor.
fn set_nonblocking_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL/F_GETFD/F_SETFD only read and set flags of `fd`, which the
    // caller owns and keeps open.
    unsafe {
        let fl = syscall!(libc::fcntl(fd, libc::F_GETFL))?;
        if fl & libc::O_NONBLOCK == 0 {
            syscall!(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
        }
        let fdf = syscall!(libc::fcntl(fd, libc::F_GETFD))?;
        if fdf & libc::FD_CLOEXEC == 0 {
            syscall!(libc::fcntl(fd, libc::F_SETFD, fdf | libc::FD_CLOEXEC))?;
        }
    }
    Ok(())
}

/// Where writes must be told not to raise `SIGPIPE` per socket (Apple: `SO_NOSIGPIPE`).
#[cfg(target_vendor = "apple")]
fn no_sigpipe(fd: &OwnedFd) -> io::Result<()> {
    socket2::SockRef::from(fd).set_nosigpipe(true)
}
#[cfg(not(target_vendor = "apple"))]
fn no_sigpipe(_fd: &OwnedFd) -> io::Result<()> {
    Ok(())
}

/// socket(2), then fcntl(2) for non-blocking and close-on-exec.
pub(crate) fn socket(domain: Domain, ty: Type) -> io::Result<OwnedFd> {
    let fd: OwnedFd = socket2::Socket::new(domain, ty, None)?.into();
    set_nonblocking_cloexec(fd.as_raw_fd())?;
    no_sigpipe(&fd)?;
    Ok(fd)
}

/// accept(2), then fcntl(2) (the accepted socket's flags are not inherited on Linux and
/// are on some BSDs: set them either way).
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SockAddr)> {
    // SAFETY: socket2 hands us a zeroed sockaddr_storage and its length, both writable
    // for the whole call; accept writes at most `*len` bytes and updates `*len`, which is
    // the contract `try_init` asks of the closure.
    let (raw, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            syscall!(libc::accept(fd.as_raw_fd(), storage.cast(), len))
        })
    }?;
    // SAFETY: accept returned a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    set_nonblocking_cloexec(raw)?;
    no_sigpipe(&owned)?;
    Ok((owned, addr))
}

/// poll(2) with the timeout rounded up to whole milliseconds (never early; a wait that
/// needs more than `i32::MAX` ms waits that long and the caller loops).
///
/// # Safety
/// Every non-negative descriptor in `fds` must be open for the whole call.
pub(crate) unsafe fn poll_fds(
    fds: &mut [libc::pollfd],
    timeout_ns: Option<u64>,
) -> io::Result<usize> {
    let ms = match timeout_ns {
        None => -1,
        Some(ns) => ns.div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int,
    };
    // SAFETY: `fds` (of `fds.len()` entries) lives across the call; the caller vouches
    // for the descriptors.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A latched wake-up: a self-pipe (pipe(2)), non-blocking and close-on-exec on both ends.
/// A waiter polls the read end; a waker writes a byte to the write end; a wake sent
/// before the waiter parks stays in the pipe.
#[derive(Debug)]
pub(crate) struct WakeFd {
    read: OwnedFd,
    write: OwnedFd,
}

impl WakeFd {
    /// A new self-pipe.
    pub(crate) fn new() -> io::Result<WakeFd> {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: pipe writes two descriptors into the live two-element array.
        unsafe { syscall!(libc::pipe(fds.as_mut_ptr())) }?;
        // SAFETY: pipe returned two fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        set_nonblocking_cloexec(read.as_raw_fd())?;
        set_nonblocking_cloexec(write.as_raw_fd())?;
        Ok(WakeFd { read, write })
    }

    /// The number a waiter polls for readability (the read end).
    pub(crate) fn poll_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The number a waker signals (the write end).
    pub(crate) fn signal_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Latches a wake-up: one byte into the pipe. A full pipe (`EAGAIN`) already holds
    /// a wake, which is enough.
    ///
    /// # Safety
    /// `fd` must be an open [`signal_fd`](Self::signal_fd) for the whole call.
    pub(crate) unsafe fn signal(fd: RawFd) {
        let one = 1u8;
        // SAFETY: writes one byte from a live u8 to the caller's open pipe.
        let _ = unsafe { syscall!(libc::write(fd, (&raw const one).cast(), 1)) };
    }

    /// Clears latched wake-ups: reads the pipe empty.
    ///
    /// # Safety
    /// `fd` must be an open [`poll_fd`](Self::poll_fd) for the whole call.
    pub(crate) unsafe fn drain(fd: RawFd) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads at most 64 bytes into a live buffer from the caller's open pipe.
            match unsafe { syscall!(libc::read(fd, buf.as_mut_ptr().cast(), buf.len())) } {
                Ok(n) if n as usize == buf.len() => {}
                _ => return,
            }
        }
    }
}

/// dup2(2) `src` onto `dst`, then fcntl(2) `FD_CLOEXEC` (dup2 clears it; there is no
/// dup3 on macOS): `dst`'s old file is closed atomically and the number stays allocated.
///
/// # Safety
/// `src` must be open; the caller owns `dst` and nothing else uses it during the call.
pub(crate) unsafe fn dup_onto(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    unsafe { syscall!(libc::dup2(src, dst)) }?;
    // SAFETY: F_SETFD only sets the flag on `dst`, which the caller owns.
    unsafe { syscall!(libc::fcntl(dst, libc::F_SETFD, libc::FD_CLOEXEC)) }?;
    Ok(())
}

/// `TCP_QUICKACK` exists only on Linux (tcp(7)); elsewhere delayed ACKs are the stack's
/// business, so this is a documented no-op. On Linux the portable backend still sets it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn set_quickack(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    socket2::SockRef::from(&fd).set_tcp_quickack(on)
}
/// `TCP_QUICKACK` exists only on Linux (tcp(7)); elsewhere delayed ACKs are the stack's
/// business, so this is a documented no-op.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn set_quickack(_fd: BorrowedFd<'_>, _on: bool) -> io::Result<()> {
    Ok(())
}

/// One datagram with recvmsg(2): POSIX reports a cut datagram in `msg_flags`
/// (`MSG_TRUNC`); the returned length is what was stored.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the whole call.
pub(crate) unsafe fn recv_dgram(
    fd: BorrowedFd<'_>,
    ptr: *mut u8,
    len: usize,
    block: bool,
) -> io::Result<(usize, bool, SockAddr)> {
    debug_assert!(!block, "the portable backend never blocks a receive");
    let mut iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    let mut cut = false;
    // SAFETY: socket2 hands a zeroed, writable address buffer and its length; msghdr
    // points at it, at `iov` (the caller's buffer) and at no control data, all live for
    // the call; recvmsg fills the address and updates its length, as `try_init` needs.
    let (n, addr) = unsafe {
        SockAddr::try_init(|storage, alen| {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *alen;
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            let n = syscall!(libc::recvmsg(fd.as_raw_fd(), &mut msg, 0))?;
            *alen = msg.msg_namelen;
            cut = msg.msg_flags & libc::MSG_TRUNC != 0;
            Ok(n)
        })
    }?;
    Ok((n as usize, cut, addr))
}
