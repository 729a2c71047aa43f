//! EMFILE at accept: the event listener backs off instead of spinning or dropping, and
//! the queued connection is served once descriptors are free again. Its own test
//! binary: it exhausts this process's descriptors.

use std::fs::File;
use std::io::{Read, Write};
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
    drop(hog);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"queued");
    assert!(t0.elapsed() < Duration::from_secs(10));
    thread::sleep(Duration::from_millis(10));
    assert_eq!(srv.connections(), 2);
}
