//! Regression tests for the outside review's findings on descriptor lifetime and waiting:
//! `AsFd` after `close` (I/O safety), waits in thread-local destructors, the budget of
//! wake descriptors, and waiting when the process is out of descriptors.
//!
//! Tests that change process-wide state (rlimits) or count the process's descriptors run
//! in a child process of their own (see [`in_child`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::tcp::{self, Conn};

const SAFETY: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn after(d: Duration) -> Option<Instant> {
    Some(Instant::now() + d)
}

fn pair() -> (Conn, Conn) {
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    ln.set_deadline(after(SAFETY)).unwrap();
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

const CHILD_ENV: &str = "RESEAU_HARDENING_TEST_CHILD";

/// In the parent, runs this test binary again with only `test` selected and returns
/// false; in that child, returns true.
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
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        // SAFETY: kill(2) on the pid of the child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("child {test} still running after 60 s; killed");
    };
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {test}: {}\n{text}", out.status);
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    false
}

/// Descriptors the crate may keep for idle wake-ups (SPEC §2 allows 128): 64 wakes of
/// one eventfd each on the Linux backend, of two pipe ends each on the portable one.
const IDLE_WAKE_FDS: usize = if matches!(reseau::BACKEND.as_bytes(), b"portable") {
    128
} else {
    64
};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `(device, inode)` of what `fd` names, via /proc (no unsafe needed).
fn identity(fd: RawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn set_nofile(n: u64) {
    // SAFETY: getrlimit/setrlimit on a plain struct; only this child process is affected.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

fn exhaust_fds() -> Vec<File> {
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return files,
            Err(e) => panic!("filling fds: {e}"),
        }
        assert!(files.len() < 4096, "RLIMIT_NOFILE did not take effect");
    }
}

/// After `close`, `as_fd` must not name anything opened later: files opened right after
/// (which get the lowest free numbers) never share the number, and the number is not
/// the socket any more.
fn assert_number_reserved(name: &str, close: impl FnOnce(), fd: impl Fn() -> RawFd) {
    let before = identity(fd()).expect("open socket has a /proc entry");
    assert!(before.starts_with("socket:"), "{name}: {before}");
    close();
    let files: Vec<File> = (0..32).map(|_| File::open("/dev/null").unwrap()).collect();
    let raw = fd();
    for f in &files {
        assert_ne!(
            f.as_raw_fd(),
            raw,
            "{name}: a new file got the closed number"
        );
    }
    let after = identity(raw).expect("closed value's number is still allocated");
    assert_ne!(after, before, "{name}: the socket was not closed");
    assert!(!after.contains("null"), "{name}: number names {after}");
}

#[test]
fn as_fd_after_close_never_names_a_reused_number() {
    let (c, s) = pair();
    assert_number_reserved("tcp::Conn", || c.close().unwrap(), || c.as_fd().as_raw_fd());
    // The peer sees the close: the socket itself is really gone.
    s.set_read_deadline(after(SAFETY)).unwrap();
    assert_eq!(s.read(&mut [0u8; 8]).unwrap(), 0);
    // I/O through the kept number fails instead of reaching another file.
    let mut f = File::from(c.as_fd().try_clone_to_owned().unwrap());
    assert!(f.write(b"x").is_err());
    assert!(f.read(&mut [0u8; 1]).is_err() || f.read(&mut [0u8; 1]).unwrap() == 0);

    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    assert_number_reserved(
        "tcp::Listener",
        || ln.close().unwrap(),
        || ln.as_fd().as_raw_fd(),
    );

    let dir = std::env::temp_dir().join(format!("reseau-hard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let uln = reseau::unix::listen(&path).unwrap();
    let uc = reseau::unix::connect(&path).unwrap();
    assert_number_reserved("unix::Conn", || uc.close().unwrap(), || uc.as_raw_fd());
    assert_number_reserved(
        "unix::Listener",
        || uln.close().unwrap(),
        || uln.as_raw_fd(),
    );
    assert!(!path.exists(), "listener file left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn close_from_another_thread_keeps_the_number_reserved() {
    // The blocked reader's value outlives the close; a busy process opens files at once.
    for _ in 0..50 {
        let (c, _s) = pair();
        let c = Arc::new(c);
        let c2 = c.clone();
        let reader = spawn(move || c2.read(&mut [0u8; 8]));
        thread::sleep(ms(2));
        let raw = c.as_raw_fd();
        c.close().unwrap();
        let f = File::open("/dev/null").unwrap();
        assert_ne!(f.as_raw_fd(), raw);
        assert!(matches!(
            reader.recv_timeout(SAFETY).unwrap(),
            Err(Error::Closed)
        ));
        assert_eq!(c.as_raw_fd(), raw);
    }
}

#[test]
fn dropping_a_closed_value_releases_its_number() {
    if !in_child("dropping_a_closed_value_releases_its_number") {
        return;
    }
    let base = open_fds();
    let conns: Vec<(Conn, Conn)> = (0..20).map(|_| pair()).collect();
    for (c, s) in &conns {
        c.close().unwrap();
        s.close().unwrap();
    }
    // Closed but alive: the numbers stay reserved (no socket behind them).
    assert!(open_fds() >= base + 40);
    drop(conns);
    // Back to the baseline, give or take the placeholder and idle wake descriptors.
    let now = open_fds();
    assert!(
        now <= base + 1 + IDLE_WAKE_FDS,
        "{now} open after drop, {base} before"
    );
}

struct ParkOnDrop(Option<(Conn, Conn)>, mpsc::Sender<String>);

impl Drop for ParkOnDrop {
    fn drop(&mut self) {
        let (c, _s) = self.0.take().unwrap();
        c.set_read_deadline(after(ms(30))).unwrap();
        let res = c.read(&mut [0u8; 4]);
        let _ = self.1.send(format!("{res:?}"));
    }
}

thread_local! {
    static PARKER: std::cell::RefCell<Option<ParkOnDrop>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn a_wait_in_a_thread_local_destructor_works() {
    // A failure here aborts the process (exit 134), so it runs in a child.
    if !in_child("a_wait_in_a_thread_local_destructor_works") {
        return;
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // The user's value is registered first, then this thread parks (which, with a
        // per-thread wake descriptor, registered the crate's own thread-local after it):
        // destructors run in reverse order, so the crate's is gone when the user's waits.
        PARKER.with(|p| *p.borrow_mut() = Some(ParkOnDrop(Some(pair()), tx)));
        let (c, _s) = pair();
        c.set_read_deadline(after(ms(5))).unwrap();
        assert!(matches!(
            c.read(&mut [0u8; 1]),
            Err(Error::DeadlineExceeded)
        ));
    })
    .join()
    .unwrap();
    let got = rx.recv_timeout(SAFETY).unwrap();
    assert_eq!(got, "Err(DeadlineExceeded)");
}

#[test]
fn threads_that_parked_keep_no_wake_descriptors() {
    if !in_child("threads_that_parked_keep_no_wake_descriptors") {
        return;
    }
    let base = open_fds();
    let n = 200;
    let pairs: Vec<(Conn, Conn)> = (0..n).map(|_| pair()).collect();
    let with_conns = open_fds();
    let pairs = Arc::new(pairs);
    let parked = Arc::new(Barrier::new(n + 1));
    let release = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (pairs, parked, release) = (pairs.clone(), parked.clone(), release.clone());
            thread::spawn(move || {
                let c = &pairs[i].0;
                c.set_read_deadline(after(ms(20))).unwrap();
                assert!(matches!(
                    c.read(&mut [0u8; 1]),
                    Err(Error::DeadlineExceeded)
                ));
                parked.wait();
                // Alive but not parked: holds no wake descriptor.
                release.wait();
            })
        })
        .collect();
    parked.wait();
    let alive = open_fds();
    release.wait();
    for t in threads {
        t.join().unwrap();
    }
    let exited = open_fds();
    drop(pairs);
    assert!(
        alive <= with_conns + IDLE_WAKE_FDS,
        "{n} live threads that parked hold {} descriptors",
        alive - with_conns
    );
    assert!(
        exited <= with_conns + IDLE_WAKE_FDS,
        "{n} exited threads left {} descriptors",
        exited - with_conns
    );
    assert!(open_fds() <= base + IDLE_WAKE_FDS + 1);
}

#[test]
fn waits_work_when_the_process_is_out_of_descriptors() {
    if !in_child("waits_work_when_the_process_is_out_of_descriptors") {
        return;
    }
    let pairs: Vec<(Conn, Conn)> = (0..3).map(|_| pair()).collect();
    let pairs = Arc::new(pairs);
    set_nofile(open_fds() as u64 + 8);
    let files = exhaust_fds();

    // Three threads wait at once: at most the idle wake descriptors from connecting can
    // be reused, so at least two wait without one. Each must end the right way.
    let p = pairs.clone();
    let data = spawn(move || {
        let mut b = [0u8; 4];
        p[0].0.read(&mut b).map(|n| b[..n].to_vec())
    });
    let p = pairs.clone();
    let deadline = spawn(move || {
        p[1].0.set_read_deadline(after(ms(100))).unwrap();
        p[1].0.read(&mut [0u8; 4])
    });
    let p = pairs.clone();
    let closed = spawn(move || p[2].0.read(&mut [0u8; 4]));
    thread::sleep(ms(50));
    pairs[0].1.write(b"ping").unwrap();
    let t = Instant::now();
    pairs[2].0.close().unwrap();
    assert_eq!(data.recv_timeout(SAFETY).unwrap().unwrap(), b"ping");
    let d = deadline.recv_timeout(SAFETY).unwrap();
    assert!(matches!(d, Err(Error::DeadlineExceeded)), "{d:?}");
    let c = closed.recv_timeout(SAFETY).unwrap();
    assert!(matches!(c, Err(Error::Closed)), "{c:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close seen after {:?}",
        t.elapsed()
    );
    // Moving a deadline while a blind waiter is parked takes effect too.
    pairs[1].0.set_read_deadline(None).unwrap();
    let p = pairs.clone();
    let moved = spawn(move || p[1].0.read(&mut [0u8; 4]));
    thread::sleep(ms(50));
    let t = Instant::now();
    pairs[1].0.set_read_deadline(after(ms(10))).unwrap();
    let m = moved.recv_timeout(SAFETY).unwrap();
    assert!(matches!(m, Err(Error::DeadlineExceeded)), "{m:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(files);
}

#[test]
fn waiters_leave_the_last_descriptors_to_sockets() {
    if !in_child("waiters_leave_the_last_descriptors_to_sockets") {
        return;
    }
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    ln.set_deadline(after(SAFETY)).unwrap();
    let pairs: Vec<(Conn, Conn)> = (0..4)
        .map(|_| {
            let c = tcp::connect(ln.addr().unwrap()).unwrap();
            (c, ln.accept().unwrap())
        })
        .collect();
    let pairs = Arc::new(pairs);
    // Ten free numbers: all inside the reserve kept for sockets.
    set_nofile(open_fds() as u64 + 10);
    let before = open_fds();
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let p = pairs.clone();
            spawn(move || {
                let mut b = [0u8; 8];
                p[i].0.read(&mut b).map(|n| b[..n].to_vec())
            })
        })
        .collect();
    thread::sleep(ms(100));
    let parked = open_fds();
    // Four parked readers took no new descriptor (an idle one may have been reused)...
    assert!(
        parked <= before,
        "{parked} open while parked, {before} before"
    );
    // ...so a new connection still gets its sockets, while they wait.
    let c = tcp::connect(ln.addr().unwrap()).unwrap();
    let s = ln.accept().unwrap();
    s.write(b"new").unwrap();
    let mut b = [0u8; 3];
    c.set_read_deadline(after(SAFETY)).unwrap();
    c.read_full(&mut b).unwrap();
    assert_eq!(&b, b"new");
    for (i, r) in readers.into_iter().enumerate() {
        pairs[i].1.write(&[b'a' + i as u8]).unwrap();
        assert_eq!(
            r.recv_timeout(SAFETY).unwrap().unwrap(),
            vec![b'a' + i as u8]
        );
    }
}

#[test]
fn a_closed_value_becomes_an_owned_fd_without_new_descriptors() {
    // Converting a closed value used to duplicate its placeholder, which panicked when
    // the process was out of descriptors; it now hands over its own reserved number.
    if !in_child("a_closed_value_becomes_an_owned_fd_without_new_descriptors") {
        return;
    }
    let (c, _s) = pair();
    let ln = tcp::listen(tcp::loopback_addr(0)).unwrap();
    c.close().unwrap();
    ln.close().unwrap();
    let (craw, lraw) = (c.as_raw_fd(), ln.as_raw_fd());
    set_nofile(open_fds() as u64 + 8);
    let files = exhaust_fds();
    let c = std::os::fd::OwnedFd::from(c);
    let ln = std::os::fd::OwnedFd::from(ln);
    assert_eq!((c.as_raw_fd(), ln.as_raw_fd()), (craw, lraw));
    let mut f = File::from(c);
    assert!(f.write(b"x").is_err());
    drop(files);
}

#[test]
fn close_keeps_the_number_reserved_even_out_of_descriptors() {
    // The dead placeholder used to be made at the first close; under EMFILE that failed
    // and the number was closed outright, so `as_fd` named whatever opened next.
    if !in_child("close_keeps_the_number_reserved_even_out_of_descriptors") {
        return;
    }
    let (c, _s) = pair();
    let raw = c.as_raw_fd();
    set_nofile(open_fds() as u64 + 8);
    let files = exhaust_fds();
    c.close().unwrap();
    let named = identity(raw).expect("the closed value's number is still allocated");
    assert!(named.starts_with("socket:"), "{named}");
    drop(files);
    let f = File::open("/dev/null").unwrap();
    assert_ne!(f.as_raw_fd(), raw);
}
