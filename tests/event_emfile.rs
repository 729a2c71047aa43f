//! EMFILE at accept: the event listener backs off instead of spinning or dropping, and
//! the queued connection is served once descriptors are free again. Its own test
//! binary: it exhausts this process's descriptors.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use reseau::event::{Conn, Handler, Runtime, ServerOptions};

struct Echo;
impl Handler for Echo {
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        let _ = conn.send(data);
    }
}

/// The loop thread's `stat` file (`/proc/self/task/<tid>/stat` of the one thread named
/// `reseau-event-N`), opened while descriptors are plentiful: rewound and read again,
/// it gives fresh numbers without taking a descriptor.
fn loop_thread_stat() -> File {
    let mut stats = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("reseau-event-") {
            stats.push(File::open(dir.join("stat")).unwrap());
        }
    }
    assert_eq!(stats.len(), 1, "one loop thread");
    stats.pop().unwrap()
}

/// The thread's state letter (`R` running or runnable, `S` sleeping, …) and the CPU
/// time (user + system, in clock ticks) it has used.
fn thread_stat(f: &mut File) -> (char, u64) {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut text).unwrap();
    // The fields after the parenthesised name (which may hold spaces): the state
    // first, utime and stime 12th and 13th (proc_pid_stat(5) fields 3, 14 and 15).
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<u64>().unwrap();
    (fields[0].chars().next().unwrap(), ticks(11) + ticks(12))
}

#[test]
fn emfile_at_accept_backs_off_and_keeps_the_connection() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let srv = rt
        .listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions::default(),
            |_| Echo,
        )
        .unwrap();
    // Warm the loop (first events, slot table) while descriptors are plentiful.
    let mut warm = TcpStream::connect(srv.local_addr()).unwrap();
    warm.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    warm.write_all(b"w").unwrap();
    warm.read_exact(&mut [0u8; 1]).unwrap();

    let mut stat = loop_thread_stat();
    // Clock ticks per second (USER_HZ), for the `stat` times.
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    let hz: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(hz > 0);

    let mut hog = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
        assert!(hog.len() < 1_000_000, "no descriptor limit");
    }
    // One descriptor free: the client's socket takes it, so the server's accept of
    // this connection (complete in the kernel's backlog) finds none.
    drop(hog.pop());
    let c = TcpStream::connect(srv.local_addr()).ok();
    let mut c = c.expect("client connected");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.write_all(b"queued").unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 6];
    // Not served while the server cannot accept...
    assert!(c.read(&mut buf).is_err(), "served without a descriptor?");
    // ...and the loop is not spinning: it still serves the warm connection.
    warm.write_all(b"x").unwrap();
    warm.read_exact(&mut [0u8; 1]).unwrap();
    assert_eq!(srv.connections(), 1);
    // ...nor busy: over half a second with the connection waiting in the backlog and
    // still no descriptor, the loop thread is seldom runnable and uses well under the
    // window's CPU time. A loop retrying at once is always runnable (running, or
    // waiting for a core on a loaded machine) and, unless starved, uses all of it.
    let (_, ticks0) = thread_stat(&mut stat);
    let w0 = Instant::now();
    let (mut samples, mut runnable) = (0, 0);
    while w0.elapsed() < Duration::from_millis(500) {
        samples += 1;
        runnable += usize::from(thread_stat(&mut stat).0 == 'R');
        thread::sleep(Duration::from_millis(5));
    }
    let took = w0.elapsed();
    let used = Duration::from_millis((thread_stat(&mut stat).1 - ticks0) * 1000 / hz);
    assert!(
        runnable * 10 < samples * 3 && used * 10 < took * 3,
        "the loop thread was runnable in {runnable} of {samples} samples and used \
         {used:?} of CPU in {took:?} while it could not accept"
    );
    assert!(c.read(&mut buf).is_err(), "served without a descriptor?");
    drop(hog);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"queued");
    assert!(t0.elapsed() < Duration::from_secs(10));
    thread::sleep(Duration::from_millis(10));
    assert_eq!(srv.connections(), 2);
}
