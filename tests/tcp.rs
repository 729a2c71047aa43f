//! Integration tests for `reseau::tcp`, on loopback only (127.0.0.1 and ::1).
//!
//! Every wait is bounded: conns get far-off safety deadlines, and calls that must block
//! run on helper threads read through `recv_timeout`, so a regression fails instead of
//! hanging the suite.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::tcp::{self, Conn, Listener};

/// Bound for what should finish soon; far above normal, so only a real hang trips it.
const SAFETY: Duration = Duration::from_secs(20);
/// Bound for a wake-up that should be immediate; generous for a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(1);

const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Conn>();
    send_sync::<Listener>();
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn after(d: Duration) -> Option<Instant> {
    Some(Instant::now() + d)
}

fn listener() -> Listener {
    let ln = tcp::listen(tcp::loopback_addr(0)).expect("listen on 127.0.0.1");
    ln.set_deadline(after(SAFETY)).unwrap();
    ln
}

/// A connected (client, server) pair whose safety deadlines turn a hang into a failure.
fn pair() -> (Conn, Conn) {
    let ln = listener();
    let c = tcp::connect(ln.addr().unwrap()).unwrap();
    let s = ln.accept().unwrap();
    c.set_deadline(after(SAFETY)).unwrap();
    s.set_deadline(after(SAFETY)).unwrap();
    (c, s)
}

fn spawn<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Receiver<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(f()));
    rx
}

/// Runs `f` on a shared value in another thread.
fn bg<T, R>(x: &Arc<T>, f: impl FnOnce(&T) -> R + Send + 'static) -> Receiver<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let x = x.clone();
    spawn(move || f(&x))
}

fn wait<R>(rx: &Receiver<R>, limit: Duration, what: &str) -> R {
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: no result within {limit:?} ({e})"))
}

/// The call must still be running after 100 ms, i.e. it really parked.
fn assert_blocked<R: std::fmt::Debug>(rx: &Receiver<R>, what: &str) {
    match rx.recv_timeout(ms(100)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("{what} should block, got {other:?}"),
    }
}

/// Closes `x` from another thread (close waits for the calls it wakes, so it could hang
/// too) and expects `rx`'s blocked call to fail with `Closed` within `PROMPT`.
fn close_wakes<T, R>(x: Arc<T>, close: fn(&T) -> reseau::Result<()>, rx: &Receiver<R>, what: &str)
where
    T: Send + Sync + 'static,
    R: Into<Option<Error>>,
{
    let t = Instant::now();
    let closed = spawn(move || close(&x));
    let err: Option<Error> = wait(rx, PROMPT, what).into();
    wait(&closed, PROMPT, "close()").unwrap();
    assert!(t.elapsed() < PROMPT, "{what}: woke after {:?}", t.elapsed());
    assert!(matches!(err, Some(Error::Closed)), "{what}: {err:?}");
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Writes until the kernel send buffer is full (the peer must not be reading).
fn fill_send_buffer(c: &Conn) {
    let chunk = vec![0xAB; 256 * 1024];
    c.set_write_deadline(after(ms(200))).unwrap();
    for _ in 0..4096 {
        match c.write(&chunk) {
            Ok(_) => {}
            Err(Error::DeadlineExceeded) => return c.set_write_deadline(None).unwrap(),
            Err(e) => panic!("filling the send buffer: {e:?}"),
        }
    }
    panic!("send buffer never filled");
}

fn assert_sys(err: &Error, op: &str, errno: i32) {
    let ok = matches!(err, Error::Sys { op: o, .. } if *o == op);
    assert!(ok, "want Sys {{ op: {op:?} }}, got {err:?}");
    assert_eq!(err.raw_os_error(), Some(errno), "{err:?}");
}

macro_rules! assert_closed {
    ($e:expr) => {
        let r = $e;
        assert!(matches!(r, Err(Error::Closed)), "{}: {r:?}", stringify!($e));
    };
}

#[test]
fn connect_accept_addresses_and_debug() {
    let ln = listener();
    let addr = ln.addr().unwrap();
    assert_eq!(ln.local_addr(), Some(addr));
    assert!(addr.ip().is_loopback() && addr.is_ipv4() && addr.port() != 0);
    let c = tcp::connect(addr).unwrap();
    let s = ln.accept().unwrap();
    assert_eq!(c.remote_addr(), Some(addr));
    assert_eq!(s.local_addr().unwrap().port(), addr.port());
    assert_eq!(s.remote_addr(), c.local_addr());
    assert!(c.is_open() && s.is_open() && ln.is_open());
    for d in [format!("{c:?}"), format!("{s:?}")] {
        assert!(d.contains("open") && !d.contains("closed"), "{d}");
    }
    let d = format!("{ln:?}");
    assert!(d.contains("active") && d.contains(&addr.to_string()), "{d}");

    let addrs = |x: &Conn| (x.local_addr(), x.remote_addr());
    let open = (addrs(&c), addrs(&s));
    c.close().unwrap();
    s.close().unwrap();
    ln.close().unwrap();
    // Cached at connect/accept, so still there after the descriptor is gone.
    assert_eq!((addrs(&c), addrs(&s)), open);
    assert_eq!(ln.addr(), Some(addr));
    for d in [format!("{c:?}"), format!("{s:?}"), format!("{ln:?}")] {
        let closed = d.contains("closed") && !d.contains("open") && !d.contains("active");
        assert!(closed, "{d}");
    }
}

#[test]
fn connect_from_binds_the_local_address() {
    let ln = listener();
    let c = tcp::connect_from(ln.addr().unwrap(), tcp::loopback_addr(0)).unwrap();
    assert_eq!(ln.accept().unwrap().remote_addr(), c.local_addr());

    // A concrete port: borrow a free one, release it, bind to it. Another test could grab
    // it in between, so retry a few times on EADDRINUSE only.
    let mut last = None;
    for _ in 0..5 {
        let local = tcp::loopback_addr(listener().addr().unwrap().port());
        match tcp::connect_from(ln.addr().unwrap(), local) {
            Ok(c) => {
                assert_eq!(c.local_addr(), Some(local));
                assert_eq!(ln.accept().unwrap().remote_addr(), Some(local));
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => last = Some(e),
            Err(e) => panic!("connect_from {local}: {e:?}"),
        }
    }
    panic!("no free port to bind: {last:?}");
}

#[test]
fn connect_from_family_mismatch_is_invalid_argument() {
    // Nothing listens on port 1: had a connect been attempted we would see ECONNREFUSED.
    let (v4, v6) = (tcp::loopback_addr(1), tcp::loopback_addr6(1, 0));
    for (remote, local) in [(v4, tcp::loopback_addr6(0, 0)), (v6, tcp::loopback_addr(0))] {
        match tcp::connect_from(remote, local) {
            Err(e @ Error::InvalidArgument(_)) => {
                assert_eq!((e.kind(), e.op()), (io::ErrorKind::InvalidInput, None));
            }
            other => panic!("{remote} from {local}: {other:?}"),
        }
    }
}

#[test]
fn refused_connect_reports_connect_econnrefused() {
    let ln = listener();
    let addr = ln.addr().unwrap();
    ln.close().unwrap();
    let err = tcp::connect(addr).unwrap_err();
    assert_sys(&err, "connect", libc::ECONNREFUSED);
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn listen_on_a_port_in_use_fails_in_bind() {
    let ln = listener();
    let _c = tcp::connect(ln.addr().unwrap()).unwrap();
    let err = tcp::listen(ln.addr().unwrap()).unwrap_err();
    assert_eq!(err.op(), Some("bind"));
    assert_sys(&err, "bind", libc::EADDRINUSE);
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // The text names the address (the errno and op above are unchanged by it).
    let text = err.to_string();
    let want = format!("bind {}: ", ln.addr().unwrap());
    assert!(
        text.starts_with(&want),
        "{text:?} should start with {want:?}"
    );
    assert!(text.contains("(os error 98)"), "{text}");
}

#[test]
fn listen_errors_name_the_address() {
    // An address this host does not have: EADDRNOTAVAIL, named in the text.
    let addr: std::net::SocketAddr = "192.0.2.1:0".parse().unwrap();
    let err = tcp::listen(addr).unwrap_err();
    assert_sys(&err, "bind", libc::EADDRNOTAVAIL);
    assert!(err.to_string().starts_with("bind 192.0.2.1:0: "), "{err}");
    let v6: std::net::SocketAddr = "[2001:db8::1]:7".parse().unwrap();
    let err = tcp::listen(v6).unwrap_err();
    // "socket" on a host without IPv6, else "bind": named either way.
    let op = err.op().unwrap_or_default().to_string();
    assert!(
        err.to_string()
            .starts_with(&format!("{op} [2001:db8::1]:7: ")),
        "{err}"
    );
}

#[test]
fn nodelay_and_keepalive_default_on_and_toggle() {
    let (c, s) = pair();
    for conn in [&c, &s] {
        assert!(conn.nodelay().unwrap(), "{conn:?}: TCP_NODELAY off");
        assert!(conn.keepalive().unwrap(), "{conn:?}: SO_KEEPALIVE off");
        for on in [false, true] {
            conn.set_nodelay(on).unwrap();
            conn.set_keepalive(on).unwrap();
            let got = (conn.nodelay().unwrap(), conn.keepalive().unwrap());
            assert_eq!(got, (on, on));
            conn.set_quickack(on).unwrap();
        }
    }
}

#[test]
fn sockets_are_nonblocking_and_cloexec() {
    let ln = listener();
    let c = tcp::connect(ln.addr().unwrap()).unwrap();
    let s = ln.accept().unwrap();
    for (what, fd) in [
        ("ln", ln.as_raw_fd()),
        ("c", c.as_raw_fd()),
        ("s", s.as_raw_fd()),
    ] {
        // SAFETY: F_GETFL/F_GETFD only read flags of a descriptor the values keep open.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        let fdf = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(fl >= 0 && fdf >= 0, "{what}: fcntl failed");
        assert_ne!(fl & libc::O_NONBLOCK, 0, "{what} is blocking");
        assert_ne!(fdf & libc::FD_CLOEXEC, 0, "{what} lacks FD_CLOEXEC");
    }
}

#[test]
fn reads_are_short_and_zero_means_eof() {
    let (c, s) = pair();
    c.write(b"hello").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 5 {
        let n = s.read(&mut buf).unwrap();
        assert!((1..=5).contains(&n), "read {n} of 5 pending bytes");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello");
    c.close_write().unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert_eq!(s.read(&mut buf).unwrap(), 0, "EOF is sticky");
}

#[test]
fn read_full_and_read_exact_at_eof() {
    let (c, s) = pair();
    let c = Arc::new(c);
    // Separate, spaced writes, so read_full has to loop over several reads.
    let writer = bg(&c, |c| {
        for part in [&b"abc"[..], b"defg", b"hij"] {
            c.write(part).unwrap();
            thread::sleep(ms(10));
        }
    });
    let mut buf = [0u8; 10];
    assert_eq!(s.read_full(&mut buf).unwrap(), 10);
    assert_eq!(&buf, b"abcdefghij");
    wait(&writer, SAFETY, "writer");
    c.write(b"xyz").unwrap();
    c.close_write().unwrap();
    let mut big = [0u8; 100];
    assert_eq!(s.read_full(&mut big).unwrap(), 3, "short count at EOF");
    assert_eq!(&big[..3], b"xyz");

    let (c, s) = pair();
    c.write(b"12345").unwrap();
    let mut four = [0u8; 4];
    (&s).read_exact(&mut four).unwrap();
    assert_eq!(&four, b"1234");
    c.close().unwrap();
    let err = (&s).read_exact(&mut four).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn read_available_waits_then_returns_what_is_ready() {
    let (c, s) = pair();
    let s = Arc::new(s);
    let rx = bg(&s, |s| s.read_available());
    assert_blocked(&rx, "read_available with nothing sent");
    c.write(b"abc").unwrap();
    assert_eq!(wait(&rx, PROMPT, "read_available").unwrap(), b"abc");

    c.write(b"defg").unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let v = s.read_available().unwrap();
        assert!(!v.is_empty(), "empty before EOF");
        got.extend(v);
    }
    assert_eq!(got, b"defg");
    assert_eq!(s.bytes_available().unwrap(), 0);
    c.close().unwrap();
    assert_eq!(s.read_available().unwrap(), b"", "EOF is an empty Vec");
}

#[test]
fn read_available_drains_a_large_stream() {
    const LEN: usize = 1 << 20;
    let (c, s) = pair();
    let data = pattern(LEN, 7);
    let sent = data.clone();
    let writer = spawn(move || c.write(&sent).and_then(|n| c.close().map(|_| n)));
    let mut got = Vec::with_capacity(LEN);
    loop {
        let v = s.read_available().unwrap();
        if v.is_empty() {
            break;
        }
        got.extend(v);
        assert!(got.len() <= LEN, "more bytes than were sent");
    }
    assert_eq!(wait(&writer, SAFETY, "writer").unwrap(), LEN);
    assert!(got == data, "stream corrupted ({} bytes)", got.len());
}

/// The most a receive queue can hold: autotuning stops at `tcp_rmem[2]`, an explicit
/// `SO_RCVBUF` at twice `rmem_max`.
fn max_receive_queue() -> usize {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let rmem = read("/proc/sys/net/ipv4/tcp_rmem");
    let tcp_max = rmem.split_whitespace().nth(2).and_then(|v| v.parse().ok());
    let core_max: Option<usize> = read("/proc/sys/net/core/rmem_max").trim().parse().ok();
    tcp_max.unwrap_or(32 << 20).max(2 * core_max.unwrap_or(0))
}

#[test]
fn read_available_returns_only_what_was_ready() {
    let bound = max_receive_queue();
    let total = 8 * bound;
    let (c, s) = pair();
    // A sender that never lets the queue drain, capped so a buggy reader still ends.
    let writer = spawn(move || {
        let chunk = vec![3u8; 1 << 20];
        let mut sent = 0;
        while sent < total {
            sent += c.write(&chunk).unwrap();
        }
    });
    let mut got = 0;
    while got < total {
        let t = Instant::now();
        let n = s.read_available().unwrap().len();
        let took = t.elapsed();
        assert!(n > 0, "EOF after {got} of {total} bytes");
        assert!(n <= bound, "got {n} bytes in {took:?}; queue max {bound}");
        got += n;
    }
    wait(&writer, SAFETY, "writer");
}

#[test]
fn eof_peeks_without_consuming() {
    let (c, s) = pair();
    c.write(b"x").unwrap();
    assert!(!s.eof().unwrap());
    assert!(!s.eof().unwrap(), "eof consumed the pending byte");
    let mut b = [0u8; 4];
    assert_eq!((s.read(&mut b).unwrap(), b[0]), (1, b'x'));
    c.close_write().unwrap();
    assert!(s.eof().unwrap());
    // Half-closed, not closed: the other direction still works.
    s.write(b"back").unwrap();
    assert_eq!(c.read_full(&mut b).unwrap(), 4);
}

#[test]
fn eof_blocks_until_data_or_deadline() {
    let (c, s) = pair();
    let start = Instant::now();
    s.set_read_deadline(Some(start + ms(150))).unwrap();
    assert!(matches!(s.eof(), Err(Error::DeadlineExceeded)));
    let took = start.elapsed();
    assert!(
        took >= ms(150) && took < ms(150) + PROMPT,
        "deadline fired after {took:?}"
    );

    s.set_read_deadline(after(SAFETY)).unwrap();
    let s = Arc::new(s);
    let rx = bg(&s, |s| s.eof());
    assert_blocked(&rx, "eof with nothing sent");
    c.write(b"z").unwrap();
    assert!(!wait(&rx, PROMPT, "eof").unwrap());
    let mut b = [0u8; 1];
    assert_eq!((s.read(&mut b).unwrap(), b[0]), (1, b'z'));
}

#[test]
fn write_sends_whole_large_buffers() {
    const LEN: usize = 8 << 20;
    let (c, s) = pair();
    let data = pattern(LEN, 1);
    let reader = spawn(move || {
        let mut got = vec![0u8; LEN + 1];
        let n = s.read_full(&mut got).unwrap();
        got.truncate(n);
        got
    });
    assert_eq!(c.write(&data).unwrap(), LEN, "write must not return short");
    c.close().unwrap();
    let got = wait(&reader, SAFETY, "reader");
    assert!(got == data, "stream corrupted ({} bytes)", got.len());
}

#[test]
fn write_vectored_is_one_gathered_write() {
    let (c, s) = pair();
    let bufs = [b"ab", &b""[..], b"cde", b"fgh"].map(IoSlice::new);
    assert_eq!(c.write_vectored(&bufs).unwrap(), 8);
    let mut got = [0u8; 8];
    assert_eq!(s.read_full(&mut got).unwrap(), 8);
    assert_eq!(&got, b"abcdefgh");

    // Against a peer that does not read, one sendmsg takes only what fits; a loop until
    // done would block instead of returning this partial count.
    let big = vec![1u8; 32 << 20];
    let n = c
        .write_vectored(&[IoSlice::new(&big), IoSlice::new(&big)])
        .unwrap();
    assert!(n > 0 && n < 2 * big.len(), "one sendmsg took {n} bytes");

    let (c, s) = pair();
    (&c).write_all(b"via ").unwrap();
    Write::write_vectored(&mut &c, &[IoSlice::new(b"Write")]).unwrap();
    (&c).flush().unwrap();
    c.close().unwrap();
    let mut text = String::new();
    (&s).read_to_string(&mut text).unwrap();
    assert_eq!(text, "via Write");
}

#[test]
fn zero_length_io() {
    let (c, _s) = pair();
    assert_eq!(c.read(&mut []).unwrap(), 0);
    assert_eq!(c.write(&[]).unwrap(), 0);
    assert_eq!(c.write_vectored(&[]).unwrap(), 0);
    assert_eq!(c.write_vectored(&[IoSlice::new(b"")]).unwrap(), 0);
    c.close().unwrap();
    assert_closed!(c.read(&mut []));
    assert_closed!(c.write(&[]));
    assert_closed!(c.write_vectored(&[]));
}

#[test]
fn close_is_idempotent_and_everything_after_fails_closed() {
    let (c, _s) = pair();
    c.close().unwrap();
    c.close().unwrap();
    assert!(!c.is_open());
    let mut b = [0u8; 8];
    assert_closed!(c.read(&mut b));
    assert_closed!(c.read_full(&mut b));
    assert_closed!(c.read_available());
    assert_closed!(c.eof());
    assert_closed!(c.write(b"x"));
    assert_closed!(c.write_vectored(&[IoSlice::new(b"x")]));
    assert_closed!(c.close_read());
    assert_closed!(c.close_write());
    assert_closed!(c.set_deadline(None));
    assert_closed!(c.set_read_deadline(None));
    assert_closed!(c.set_write_deadline(None));
    assert_closed!(c.set_nodelay(true));
    assert_closed!(c.nodelay());
    assert_closed!(c.set_keepalive(true));
    assert_closed!(c.keepalive());
    assert_closed!(c.set_quickack(true));
    assert_closed!(c.bytes_available());
    c.abort().unwrap();

    let ln = listener();
    ln.close().unwrap();
    ln.close().unwrap();
    assert!(!ln.is_open());
    assert_closed!(ln.accept());
    assert_closed!(ln.set_deadline(None));
}

#[test]
fn close_write_is_a_half_close() {
    let (c, s) = pair();
    c.write(b"last").unwrap();
    c.close_write().unwrap();
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last");
    s.write(b"pong").unwrap();
    let mut b = [0u8; 4];
    assert_eq!(c.read_full(&mut b).unwrap(), 4);
    assert_eq!(&b, b"pong");
    assert_sys(&c.write(b"more").unwrap_err(), "write", libc::EPIPE);
}

#[test]
fn close_read_makes_later_reads_eof() {
    let (_c, s) = pair();
    s.close_read().unwrap();
    let s = Arc::new(s);
    let rx = bg(&s, |s| s.read(&mut [0u8; 8]));
    assert_eq!(wait(&rx, PROMPT, "read after close_read").unwrap(), 0);
}

#[test]
fn close_wakes_a_blocked_read() {
    let (c, _s) = pair();
    c.set_deadline(None).unwrap();
    let c = Arc::new(c);
    let rx = bg(&c, |c| c.read(&mut [0u8; 16]).err());
    assert_blocked(&rx, "read with nothing sent");
    close_wakes(c, Conn::close, &rx, "blocked read");
}

#[test]
fn close_wakes_a_blocked_write() {
    let (c, _s) = pair();
    fill_send_buffer(&c);
    c.set_deadline(None).unwrap();
    let c = Arc::new(c);
    // Partial progress legitimately returns Ok(n), so keep writing until the error.
    let rx = bg(&c, |c| {
        let chunk = vec![0xCD; 64 * 1024];
        std::iter::repeat_with(|| c.write(&chunk)).find_map(Result::err)
    });
    assert_blocked(&rx, "write into a full send buffer");
    close_wakes(c, Conn::close, &rx, "blocked write");
}

#[test]
fn close_wakes_a_blocked_accept() {
    let ln = Arc::new(listener());
    ln.set_deadline(None).unwrap();
    let rx = bg(&ln, |ln| ln.accept().err());
    assert_blocked(&rx, "accept with no client");
    close_wakes(ln, Listener::close, &rx, "blocked accept");
}

#[test]
fn abort_resets_the_peer() {
    let (c, s) = pair();
    c.write(b"dropped?").unwrap();
    c.abort().unwrap();
    assert!(!c.is_open());
    let mut buf = [0u8; 64];
    // Bytes that arrived before the RST may still be delivered; the reset comes after.
    let mut early = 0;
    let err = loop {
        match s.read(&mut buf) {
            Ok(n) if n > 0 && early + n <= 8 => early += n,
            Ok(n) => panic!("read {n} after {early} bytes instead of the reset"),
            Err(e) => break e,
        }
    };
    assert_sys(&err, "read", libc::ECONNRESET);
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

    let (c, s) = pair();
    c.abort().unwrap();
    let ioerr = Read::read(&mut &s, &mut buf).unwrap_err();
    assert_eq!(ioerr.kind(), io::ErrorKind::ConnectionReset);
    let inner = Error::from_io(&ioerr).expect("reseau::Error inside io::Error");
    assert_eq!(inner.raw_os_error(), Some(libc::ECONNRESET));
}

#[test]
fn ipv6_loopback_echo() {
    let ln = match tcp::listen(tcp::loopback_addr6(0, 0)) {
        Ok(ln) => ln,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
            ) =>
        {
            println!("skipped: ::1 unavailable here ({e})");
            return;
        }
        Err(e) => panic!("listen [::1]: {e:?}"),
    };
    ln.set_deadline(after(SAFETY)).unwrap();
    let addr = ln.addr().unwrap();
    assert!(addr.is_ipv6() && addr.ip().is_loopback() && addr.port() != 0);
    let c = tcp::connect(addr).unwrap();
    c.set_deadline(after(SAFETY)).unwrap();
    let echo = spawn(move || -> reseau::Result<Conn> {
        let s = ln.accept()?;
        let mut b = [0u8; 5];
        s.read_full(&mut b)?;
        s.write(&b)?;
        Ok(s)
    });
    c.write(b"hello").unwrap();
    let mut b = [0u8; 5];
    assert_eq!(c.read_full(&mut b).unwrap(), 5);
    assert_eq!(&b, b"hello");
    let s = wait(&echo, SAFETY, "echo server").unwrap();
    assert_eq!(c.remote_addr(), Some(addr));
    assert!(c.local_addr().unwrap().is_ipv6());
    assert_eq!(s.remote_addr(), c.local_addr());
    let d = format!("{c:?}");
    assert!(d.contains("[::1]") && d.contains("open"), "{d}");
}

#[test]
fn accept_deadline() {
    let ln = listener();
    let start = Instant::now();
    ln.set_deadline(Some(start + ms(100))).unwrap();
    assert!(matches!(ln.accept(), Err(Error::DeadlineExceeded)));
    let took = start.elapsed();
    assert!(
        took >= ms(100) && took < ms(100) + PROMPT,
        "deadline fired after {took:?}"
    );

    // A passed deadline fails even though a connection is waiting (Go semantics)...
    let c = tcp::connect(ln.addr().unwrap()).unwrap();
    ln.set_deadline(Some(Instant::now() - ms(1))).unwrap();
    let err = ln.accept().unwrap_err();
    assert!(
        matches!(err, Error::DeadlineExceeded) && err.is_timeout(),
        "{err:?}"
    );
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // ...and the connection is still queued once the deadline is cleared.
    ln.set_deadline(None).unwrap();
    let rx = bg(&Arc::new(ln), |ln| ln.accept().map(|s| s.remote_addr()));
    assert_eq!(wait(&rx, PROMPT, "accept").unwrap(), c.local_addr());
}

#[test]
fn io_errors_carry_the_reseau_error() {
    let (mut c, _s) = pair();
    c.close().unwrap();
    let mut b = [0u8; 4];
    let errs = [
        Read::read(&mut &c, &mut b).unwrap_err(),
        Write::write(&mut &c, b"x").unwrap_err(),
        Read::read(&mut c, &mut b).unwrap_err(),
    ];
    for e in errs {
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert!(matches!(Error::from_io(&e), Some(Error::Closed)), "{e:?}");
    }
}

// ---- tests that need a process of their own -------------------------------------------

/// Set (to the test's name) in a child process run by [`run_in_child`].
const CHILD_ENV: &str = "RESEAU_TCP_TEST_CHILD";

/// In the parent, runs this test binary again with only `test` selected and `CHILD_ENV`
/// set, and returns false; in that child, returns true. For tests that change
/// process-wide state (rlimits, signal dispositions).
fn in_child(test: &str) -> bool {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        return true;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let rx = spawn(move || child.wait_with_output());
    let Ok(out) = rx.recv_timeout(Duration::from_secs(30)) else {
        // SAFETY: kill(2) on the pid of the child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("child {test} still running after 30 s; killed");
    };
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {test}: {}\n{text}", out.status);
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    false
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed plain-data struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Opens `/dev/null` until the descriptor table is full.
fn exhaust_fds() -> Vec<std::fs::File> {
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return files,
            Err(e) => panic!("filling fds: {e}"),
        }
        assert!(files.len() < 4096, "RLIMIT_NOFILE did not take effect");
    }
}

/// Runs `f`, which must end in an accept failing with EMFILE at once and without
/// burning CPU (checked first: a spinning accept shows up there).
fn timed_emfile(f: impl FnOnce() -> reseau::Result<Conn>) {
    let (t, cpu) = (Instant::now(), cpu_time());
    let r = f();
    let (took, burned) = (t.elapsed(), cpu_time() - cpu);
    assert!(
        burned < ms(250),
        "accept burned {burned:?} of CPU in {took:?}, then {r:?}"
    );
    assert_sys(
        &r.expect_err("accept worked without a free fd"),
        "accept",
        libc::EMFILE,
    );
    assert!(took < PROMPT, "EMFILE took {took:?}");
}

#[test]
fn accept_under_emfile_fails_fast_and_keeps_the_connection() {
    if !in_child("accept_under_emfile_fails_fast_and_keeps_the_connection") {
        return;
    }
    let ln = Arc::new(listener());
    let queued = tcp::connect(ln.addr().unwrap()).unwrap();
    // Parking needs this thread's wake eventfd; make it now, while descriptors are free.
    queued.set_read_deadline(after(ms(5))).unwrap();
    assert!(matches!(
        queued.read(&mut [0u8; 1]),
        Err(Error::DeadlineExceeded)
    ));
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    // SAFETY: getrlimit/setrlimit on a plain struct; only this child process is affected.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = open + 16;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }

    // 1. A connection already queued: accept must report EMFILE at once, not spin.
    let mut files = exhaust_fds();
    // A spinning accept runs into this deadline instead of hanging the child.
    ln.set_deadline(after(3 * PROMPT)).unwrap();
    timed_emfile(|| ln.accept());
    files.clear();
    ln.set_deadline(after(SAFETY)).unwrap();
    let s = ln.accept().expect("queued connection lost after EMFILE");
    assert_eq!(s.remote_addr(), queued.local_addr());

    // 2. An accept already parked when the connection arrives at EMFILE.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let rx = bg(&ln, move |ln| {
        ln.set_deadline(after(ms(5))).unwrap();
        assert!(matches!(ln.accept(), Err(Error::DeadlineExceeded)));
        go_rx.recv().unwrap();
        ln.set_deadline(after(3 * PROMPT)).unwrap();
        ln.accept()
    });
    go_tx.send(()).unwrap();
    assert_blocked(&rx, "accept with no client");
    let mut files = exhaust_fds();
    files.pop();
    let mut late = None;
    timed_emfile(|| {
        late = Some(tcp::connect(ln.addr().unwrap()).unwrap());
        wait(&rx, 4 * PROMPT, "parked accept at EMFILE")
    });
    files.clear();
    ln.set_deadline(after(SAFETY)).unwrap();
    let s = ln.accept().expect("queued connection lost after EMFILE");
    assert_eq!(s.remote_addr(), late.unwrap().local_addr());
}

#[test]
fn write_to_a_reset_peer_errors_without_sigpipe() {
    if !in_child("write_to_a_reset_peer_errors_without_sigpipe") {
        return;
    }
    // Rust ignores SIGPIPE before main; restore the default so a send without
    // MSG_NOSIGNAL kills this child (the parent reports the signal).
    // SAFETY: installing SIG_DFL for SIGPIPE in this single-test child process.
    let prev = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_eq!(prev, libc::SIG_IGN);
    let (c, s) = pair();
    s.abort().unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let errors: Vec<Error> = (0..10_000)
        .filter_map(|_| c.write(&chunk).err())
        .take(3)
        .collect();
    assert_eq!(errors.len(), 3, "writes to a reset peer kept succeeding");
    for e in &errors {
        assert_eq!(e.op(), Some("write"), "{e:?}");
        let errno = e.raw_os_error();
        assert!(
            matches!(errno, Some(libc::EPIPE | libc::ECONNRESET)),
            "{e:?}"
        );
    }
    let e = (&c).write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");
    let e = c.write_vectored(&[IoSlice::new(b"x")]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
}
