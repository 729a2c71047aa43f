//! Unix-domain stream sockets (SPEC §4): `unix::{connect, listen, Conn, Listener}`.
//!
//! Paths live under `std::env::temp_dir()` with the pid and a counter in the name;
//! abstract names are `@reseau-test-<pid>-<n>`. Every wait is bounded.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::unix::{self, Conn, Listener};

/// How late a woken call may return (generous: noisy CI).
const SLACK: Duration = Duration::from_secs(1);
/// Hang guard for whole phases of a test.
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// helpers

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique socket path in the temp dir; the file (if any) is removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("reseau-test-{}-{n}-{tag}.sock", std::process::id());
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// A unique Linux abstract name.
fn abstract_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("@reseau-test-{}-{n}", std::process::id())
}

/// Listener, client, accepted server side.
fn pair(path: impl AsRef<Path>) -> (Listener, Conn, Conn) {
    let ln = unix::listen(&path).expect("listen");
    let client = unix::connect(&path).expect("connect");
    let server = ln.accept().expect("accept");
    (ln, client, server)
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn wait_for<T>(rx: &Receiver<T>, limit: Duration, what: &str) -> T {
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

fn assert_blocked<T: std::fmt::Debug>(rx: &Receiver<T>, d: Duration, what: &str) {
    match rx.recv_timeout(d) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(v) => panic!("{what}: returned {v:?} but must still be blocked after {d:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

fn past() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(5)).unwrap_or(now)
}

/// Bytes queued for reading (`FIONREAD` on the raw descriptor).
fn queued(conn: &Conn) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; the descriptor is open while `conn` lives.
    let r = unsafe { libc::ioctl(conn.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", io::Error::last_os_error());
    n as usize
}

fn wait_readable(conn: &Conn, n: usize) {
    let start = Instant::now();
    while queued(conn) < n {
        assert!(start.elapsed() < LIMIT, "{n} bytes never arrived");
        thread::sleep(Duration::from_millis(1));
    }
}

fn assert_sys<T: std::fmt::Debug>(r: reseau::Result<T>, op: &str, errno: i32) -> Error {
    let e = r.expect_err("want an error");
    assert!(
        matches!(&e, Error::Sys { op: o, .. } if *o == op),
        "want Sys {{ op: {op:?} }}, got {e:?}"
    );
    assert_eq!(e.op(), Some(op));
    assert_eq!(e.raw_os_error(), Some(errno), "{e}");
    e
}

// ---------------------------------------------------------------------------------------
// round trips and addresses

#[test]
fn echo_round_trip() {
    let path = TempPath::new("echo");
    let ln = unix::listen(&path).unwrap();
    let server = spawn(move || -> reseau::Result<usize> {
        let conn = ln.accept()?;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                conn.close_write()?;
                return Ok(total);
            }
            total += n;
            assert_eq!(conn.write(&buf[..n])?, n);
        }
    });
    let client = unix::connect(&path).unwrap();
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut sent = 0;
    for i in 0..100u32 {
        let msg = format!("message {i} {}", "x".repeat(i as usize * 10));
        assert_eq!(client.write(msg.as_bytes()).unwrap(), msg.len());
        let mut got = vec![0u8; msg.len()];
        assert_eq!(client.read_full(&mut got).unwrap(), msg.len());
        assert_eq!(got, msg.as_bytes());
        sent += msg.len();
    }
    // A large message both ways (more than the socket buffers), through std::io.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
    let writer = {
        let client = Arc::new(client);
        let c2 = client.clone();
        let big = big.clone();
        (spawn(move || (&*c2).write_all(&big)), client)
    };
    let (wrx, client) = writer;
    let mut echoed = vec![0u8; big.len()];
    (&*client).read_exact(&mut echoed).unwrap();
    wait_for(&wrx, LIMIT, "big write").unwrap();
    assert!(echoed == big, "large echo corrupted");
    sent += big.len();
    client.close_write().unwrap();
    assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0, "EOF after the echo");
    assert_eq!(wait_for(&server, LIMIT, "server").unwrap(), sent);
}

#[test]
fn local_and_peer_addresses() {
    let path = TempPath::new("addr");
    let (ln, client, server) = pair(&path);
    assert_eq!(ln.local_addr().as_deref(), Some(path.as_ref()));
    assert_eq!(client.peer_addr().as_deref(), Some(path.as_ref()));
    assert_eq!(server.local_addr().as_deref(), Some(path.as_ref()));
    // The client socket is unnamed.
    assert_eq!(client.local_addr(), None);
    assert_eq!(server.peer_addr(), None);
    // Still readable after close.
    client.close().unwrap();
    assert_eq!(client.peer_addr().as_deref(), Some(path.as_ref()));
}

// ---------------------------------------------------------------------------------------
// listen / connect errors and the socket file

#[test]
fn listen_on_existing_path_is_eaddrinuse() {
    let path = TempPath::new("inuse");
    let ln = unix::listen(&path).unwrap();
    let e = assert_sys(unix::listen(&path), "bind", libc::EADDRINUSE);
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    // The failed listen must not have removed the live listener's file.
    assert!(
        path.0.exists(),
        "a failed listen removed someone else's socket"
    );
    let c = unix::connect(&path).expect("the first listener still works");
    let s = ln.accept().unwrap();
    c.write(b"ok").unwrap();
    let mut b = [0u8; 2];
    s.read_full(&mut b).unwrap();
    assert_eq!(&b, b"ok");

    // A plain file in the way is not removed for you either.
    let file = TempPath::new("file");
    std::fs::write(&file.0, b"not a socket").unwrap();
    assert_sys(unix::listen(&file), "bind", libc::EADDRINUSE);
    assert_eq!(std::fs::read(&file.0).unwrap(), b"not a socket");
}

#[test]
fn listen_errors_name_the_path() {
    // Path exists.
    let path = TempPath::new("named");
    let _ln = unix::listen(&path).unwrap();
    let e = assert_sys(unix::listen(&path), "bind", libc::EADDRINUSE);
    let want = format!("bind {}: ", path.0.display());
    assert!(e.to_string().starts_with(&want), "{e} / {want}");
    assert!(e.to_string().contains("(os error 98)"), "{e}");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    // Directory missing.
    let missing = path.0.with_file_name("no-such-dir-reseau").join("x.sock");
    let e = assert_sys(unix::listen(&missing), "bind", libc::ENOENT);
    let want = format!("bind {}: ", missing.display());
    assert!(e.to_string().starts_with(&want), "{e} / {want}");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    // The facade names the path once, in its own `listen unix <path>` context.
    let f = reseau::sockets::listen(path.0.as_path()).unwrap_err();
    assert_eq!(f.raw_os_error(), Some(libc::EADDRINUSE));
    let text = f.to_string();
    assert_eq!(
        text.matches(&*path.0.display().to_string()).count(),
        1,
        "{text}"
    );
}

#[test]
fn listener_close_and_drop_remove_the_socket_file() {
    let path = TempPath::new("close");
    let ln = unix::listen(&path).unwrap();
    assert!(path.0.exists());
    assert!(ln.is_open());
    ln.close().unwrap();
    assert!(!ln.is_open());
    assert!(!path.0.exists(), "close must remove the socket file");
    ln.close().unwrap(); // idempotent
    assert!(matches!(ln.accept(), Err(Error::Closed)));
    assert!(matches!(ln.set_deadline(None), Err(Error::Closed)));
    // The path is free again.
    let again = unix::listen(&path).expect("listen after close");
    assert!(path.0.exists());
    drop(again);
    assert!(!path.0.exists(), "drop must remove the socket file");
    // Connections accepted earlier survive the listener.
    let (ln, client, server) = pair(&path);
    drop(ln);
    client.write(b"still").unwrap();
    let mut b = [0u8; 5];
    server.read_full(&mut b).unwrap();
    assert_eq!(&b, b"still");
}

#[test]
fn abstract_name_end_to_end() {
    let name = abstract_name();
    let ln = unix::listen(&name).expect("listen on an abstract name");
    assert!(
        !Path::new(&name).exists(),
        "an abstract name must not create a file"
    );
    assert_eq!(ln.local_addr().as_deref(), Some(Path::new(&name)));
    let client = unix::connect(&name).unwrap();
    let server = ln.accept().unwrap();
    assert_eq!(client.peer_addr().as_deref(), Some(Path::new(&name)));
    assert_eq!(server.local_addr().as_deref(), Some(Path::new(&name)));
    client.write(b"abstract").unwrap();
    let mut b = [0u8; 8];
    server.read_full(&mut b).unwrap();
    assert_eq!(&b, b"abstract");
    server.write(b"back").unwrap();
    let mut b = [0u8; 4];
    client.read_full(&mut b).unwrap();
    assert_eq!(&b, b"back");
    // In use while the listener lives; free once it is closed.
    assert_sys(unix::listen(&name), "bind", libc::EADDRINUSE);
    ln.close().unwrap();
    assert!(!Path::new(&name).exists());
    assert_sys(unix::connect(&name), "connect", libc::ECONNREFUSED);
    let again = unix::listen(&name).expect("abstract name reusable after close");
    drop(again);
}

#[test]
fn connect_errors() {
    let missing = TempPath::new("missing");
    let e = assert_sys(unix::connect(&missing), "connect", libc::ENOENT);
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    // A stale socket file with nobody listening: ECONNREFUSED.
    let stale = TempPath::new("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale.0).unwrap());
    assert!(stale.0.exists());
    let e = assert_sys(unix::connect(&stale), "connect", libc::ECONNREFUSED);
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn too_long_path_is_invalid_argument() {
    let long = std::env::temp_dir().join("x".repeat(200));
    let r = unix::listen(&long);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert!(!long.exists());
    let r = unix::connect(&long);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let long_abstract = format!("@{}", "y".repeat(200));
    let r = unix::listen(&long_abstract);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = unix::connect(&long_abstract);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

/// Connecting to a listener whose accept queue is full must not spin or hang: Go returns
/// `EAGAIN` from the non-blocking `connect(2)` at once.
#[test]
fn connect_to_full_backlog_returns_promptly() {
    let path = TempPath::new("backlog");
    // A listener with backlog 0 made by hand: one queued connection fills it.
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    sock.bind(&socket2::SockAddr::unix(&path.0).unwrap())
        .unwrap();
    sock.listen(0).unwrap();
    let p = path.0.clone();
    let rx = spawn(move || {
        let mut held = Vec::new();
        for _ in 0..8 {
            match unix::connect(&p) {
                Ok(c) => held.push(c),
                Err(e) => return (held.len(), Some(e)),
            }
        }
        (held.len(), None)
    });
    let (ok, err) = wait_for(&rx, Duration::from_secs(5), "connect to a full backlog");
    let e = err.expect("a full accept queue must refuse some connect");
    assert!(ok >= 1, "the first connections fit in the queue");
    assert_eq!(e.op(), Some("connect"), "{e:?}");
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e:?}");
    drop(sock);
}

// ---------------------------------------------------------------------------------------
// deadlines and close wake-ups

#[test]
fn read_write_and_accept_deadlines() {
    let path = TempPath::new("deadline");
    let (ln, client, server) = pair(&path);
    // Read deadline: not before, within SLACK.
    let deadline = Instant::now() + Duration::from_millis(50);
    client.set_read_deadline(Some(deadline)).unwrap();
    let r = client.read(&mut [0u8; 8]);
    let at = Instant::now();
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(at >= deadline && at - deadline < SLACK);
    // Past read deadline with data ready.
    server.write(b"d").unwrap();
    wait_readable(&client, 1);
    client.set_read_deadline(Some(past())).unwrap();
    assert!(matches!(
        client.read(&mut [0u8; 8]),
        Err(Error::DeadlineExceeded)
    ));
    client.set_read_deadline(None).unwrap();
    assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 1);
    // Write deadline against a peer that never reads.
    let deadline = Instant::now() + Duration::from_millis(50);
    client.set_write_deadline(Some(deadline)).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let r = loop {
        match client.write(&chunk) {
            Ok(n) if n < chunk.len() => break client.write(&chunk),
            Ok(_) => assert!(start.elapsed() < LIMIT, "writes never blocked"),
            Err(e) => break Err(e),
        }
    };
    let at = Instant::now();
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(at >= deadline && at - deadline < SLACK);
    // set_deadline covers both; the io error is TimedOut.
    client.set_deadline(Some(past())).unwrap();
    let e = Read::read(&mut &client, &mut [0u8; 1]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    let e = Write::write(&mut &client, b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // Accept deadline.
    let deadline = Instant::now() + Duration::from_millis(50);
    ln.set_deadline(Some(deadline)).unwrap();
    let r = ln.accept();
    let at = Instant::now();
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(at >= deadline && at - deadline < SLACK);
}

#[test]
fn deadline_moved_while_read_blocked() {
    let path = TempPath::new("moved");
    let (_ln, client, _server) = pair(&path);
    let client = Arc::new(client);
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_secs(10)))
        .unwrap();
    let rx = {
        let c = client.clone();
        spawn(move || (c.read(&mut [0u8; 8]), Instant::now()))
    };
    assert_blocked(&rx, Duration::from_millis(50), "read");
    let set_at = Instant::now();
    client.set_read_deadline(Some(past())).unwrap();
    let (r, at) = wait_for(&rx, LIMIT, "read");
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(at - set_at < SLACK);
}

#[test]
fn close_from_another_thread_wakes_blocked_read_write_and_accept() {
    let path = TempPath::new("wake");
    let (ln, client, _server) = pair(&path);
    let (ln, client) = (Arc::new(ln), Arc::new(client));
    let reader = {
        let c = client.clone();
        spawn(move || c.read(&mut [0u8; 8]))
    };
    let acceptor = {
        let ln = ln.clone();
        spawn(move || ln.accept().map(drop))
    };
    assert_blocked(&reader, Duration::from_millis(100), "read");
    assert_blocked(&acceptor, Duration::from_millis(1), "accept");
    let t = Instant::now();
    client.close().unwrap();
    let r = wait_for(&reader, SLACK, "read after close");
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    ln.close().unwrap();
    let r = wait_for(&acceptor, SLACK, "accept after close");
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(t.elapsed() < 2 * SLACK);
    assert!(!path.0.exists());

    // A writer blocked on a full buffer.
    let path = TempPath::new("wakew");
    let (_ln, client, _server) = pair(&path);
    let client = Arc::new(client);
    let writer = {
        let c = client.clone();
        spawn(move || {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = c.write(&chunk) {
                    return e;
                }
            }
        })
    };
    assert_blocked(&writer, Duration::from_millis(200), "write loop");
    client.close().unwrap();
    let e = wait_for(&writer, SLACK, "write after close");
    assert!(matches!(e, Error::Closed), "{e:?}");
    assert!(!client.is_open());
    assert!(matches!(client.read(&mut [0u8; 1]), Err(Error::Closed)));
    assert!(matches!(client.write(b"x"), Err(Error::Closed)));
    assert!(matches!(client.eof(), Err(Error::Closed)));
    client.close().unwrap(); // idempotent
}

// ---------------------------------------------------------------------------------------
// half-close, eof, read_available

/// Julia "Unix domain socket half-close preserves writeability" (socat replaced by a
/// client doing write, shutdown(Write), read to end).
#[test]
fn close_write_half_close() {
    let path = TempPath::new("half");
    let ln = unix::listen(&path).unwrap();
    let server = spawn(move || -> reseau::Result<String> {
        let c = ln.accept()?;
        c.set_deadline(Some(Instant::now() + LIMIT))?;
        let mut got = String::new();
        (&c).read_to_string(&mut got).expect("server read to EOF");
        // Reading EOF must not shut our write side.
        assert_eq!(c.write(b"pong\n")?, 5);
        c.close()?;
        Ok(got)
    });
    let client = unix::connect(&path).unwrap();
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    client.write(b"ping\n").unwrap();
    client.close_write().unwrap();
    // Writing after our own half-close fails (EPIPE), without SIGPIPE.
    let r = client.write(b"late");
    assert_eq!(r.as_ref().err().and_then(Error::op), Some("write"), "{r:?}");
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPIPE));
    let mut reply = String::new();
    (&client).read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "pong\n");
    assert_eq!(wait_for(&server, LIMIT, "server").unwrap(), "ping\n");
}

#[test]
fn eof_blocks_peeks_and_reports_end() {
    let path = TempPath::new("eof");
    let (_ln, client, server) = pair(&path);
    let server = Arc::new(server);
    let rx = {
        let s = server.clone();
        spawn(move || s.eof())
    };
    assert_blocked(&rx, Duration::from_millis(100), "eof with nothing to read");
    client.write(b"e").unwrap();
    assert!(!wait_for(&rx, SLACK, "eof").unwrap());
    let mut b = [0u8; 1];
    assert_eq!(server.read(&mut b).unwrap(), 1, "eof must not consume");
    assert_eq!(&b, b"e");
    // Read deadline applies to eof.
    let deadline = Instant::now() + Duration::from_millis(30);
    server.set_read_deadline(Some(deadline)).unwrap();
    assert!(matches!(server.eof(), Err(Error::DeadlineExceeded)));
    assert!(Instant::now() >= deadline);
    server.set_read_deadline(None).unwrap();
    client.write(b"z").unwrap();
    client.close().unwrap();
    assert!(!server.eof().unwrap(), "a byte is still queued");
    assert_eq!(server.read(&mut b).unwrap(), 1);
    assert!(server.eof().unwrap());
    assert!(server.eof().unwrap(), "eof stays true");
    server.close().unwrap();
    assert!(matches!(server.eof(), Err(Error::Closed)));
}

#[test]
fn read_available_returns_everything_queued() {
    let path = TempPath::new("avail");
    let (_ln, client, server) = pair(&path);
    client.write(b"hello").unwrap();
    assert_eq!(server.read_available().unwrap(), b"hello");
    // More than one internal chunk, all queued before the call.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
    client.write(&data).unwrap();
    wait_readable(&server, data.len());
    assert_eq!(server.read_available().unwrap(), data);
    // Waits for the first byte.
    let server = Arc::new(server);
    let rx = {
        let s = server.clone();
        spawn(move || s.read_available())
    };
    assert_blocked(&rx, Duration::from_millis(50), "read_available");
    client.write(b"late").unwrap();
    assert_eq!(wait_for(&rx, SLACK, "read_available").unwrap(), b"late");
    // Empty at EOF.
    client.close().unwrap();
    assert_eq!(server.read_available().unwrap(), b"");
}

// ---------------------------------------------------------------------------------------
// SIGPIPE

/// Whether SIGPIPE is pending for this thread (it is blocked by the caller).
fn sigpipe_pending() -> bool {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigpending.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        assert_eq!(libc::sigpending(&mut set), 0);
        libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}

/// Consumes a pending SIGPIPE of this thread, if any.
fn clear_sigpipe() {
    // SAFETY: plain-data sigset and timespec; a zero timeout makes sigtimedwait poll.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) == libc::SIGPIPE {}
    }
}

/// Writing to a closed peer is an error (`EPIPE`), never a SIGPIPE. The test harness
/// ignores SIGPIPE, so the check blocks it on a dedicated thread and looks for it among
/// that thread's pending signals (Linux keeps a blocked, ignored signal pending); a raw
/// `write(2)` on a std socket serves as the control that the check can fail.
#[test]
fn write_to_closed_peer_is_error_not_sigpipe() {
    let rx = spawn(|| {
        // SAFETY: blocks SIGPIPE for this thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                0
            );
        }
        clear_sigpipe();
        // Control: a plain write(2) to a closed peer raises SIGPIPE.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        // SAFETY: writes one byte from a live buffer to an open descriptor.
        let r = unsafe { libc::write(a.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(r, -1);
        let control = sigpipe_pending();
        clear_sigpipe();

        let path = TempPath::new("pipe");
        let (_ln, client, server) = pair(&path);
        server.close().unwrap();
        let mut results = Vec::new();
        for _ in 0..3 {
            results.push(client.write(b"into the void"));
        }
        let v = client.write_vectored(&[io::IoSlice::new(b"v")]);
        let pending = sigpipe_pending();
        clear_sigpipe();
        (control, pending, results, v)
    });
    let (control, pending, results, v) = wait_for(&rx, LIMIT, "sigpipe thread");
    assert!(control, "control: raw write(2) should have raised SIGPIPE");
    assert!(!pending, "a reseau write raised SIGPIPE");
    for r in results {
        let e = r.expect_err("write to a closed peer");
        assert_eq!(e.op(), Some("write"), "{e:?}");
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e:?}");
    }
    let e = v.expect_err("write_vectored to a closed peer");
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// Debug

#[test]
fn debug_strings() {
    let path = TempPath::new("debug");
    let (ln, client, server) = pair(&path);
    let p = path.0.display().to_string();
    let d = format!("{ln:?}");
    assert!(d.starts_with("unix::Listener("), "{d}");
    assert!(d.contains(&p) && d.contains("active"), "{d}");
    let d = format!("{client:?}");
    assert!(d.starts_with("unix::Conn("), "{d}");
    assert!(d.contains(&p) && d.contains("open"), "{d}");
    let d = format!("{server:?}");
    assert!(d.contains(&p) && d.contains("open"), "{d}");
    client.close().unwrap();
    let d = format!("{client:?}");
    assert!(d.contains("closed"), "{d}");
    ln.close().unwrap();
    let d = format!("{ln:?}");
    assert!(d.contains("closed"), "{d}");
    let name = abstract_name();
    let ln = unix::listen(&name).unwrap();
    let d = format!("{ln:?}");
    assert!(d.contains(&name), "{d}");
}
