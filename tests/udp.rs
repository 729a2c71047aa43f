//! `reseau::sockets::UdpSocket` (SPEC §7c) beyond Julia's own cases (those are in
//! compat-tests/julia_sockets.rs): deadlines, close from another thread, errors, the
//! allocation-free receive, zero-length datagrams, IPv4 multicast (in a network
//! namespace of the test's own). Loopback only; every wait is bounded.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reseau::sockets::{
    self, BindOptions, IPv4, LOCALHOST, UdpOptions, UdpSocket, bind, bind_with, getsockname,
    join_multicast_group, leave_multicast_group, recv, recvfrom, send, setopt,
};
use reseau::{Error, ip};

const SAFETY: Duration = Duration::from_secs(20);

fn after(d: Duration) -> Option<Instant> {
    Some(Instant::now() + d)
}

fn bound(host: impl Into<sockets::IPAddr>) -> (UdpSocket, u16) {
    let mut s = UdpSocket::new();
    assert!(bind(&mut s, host, 0).unwrap());
    s.set_deadline(after(SAFETY)).unwrap();
    let port = getsockname(&s).unwrap().1;
    (s, port)
}

const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<UdpSocket>();
};

#[test]
fn zero_length_datagrams_are_datagrams() {
    let (a, port) = bound(LOCALHOST);
    let (b, _) = bound(LOCALHOST);
    send(&b, LOCALHOST, port, b"").unwrap();
    send(&b, LOCALHOST, port, b"x").unwrap();
    assert_eq!(recv(&a).unwrap(), b"");
    assert_eq!(recv(&a).unwrap(), b"x");
}

#[test]
fn send_binds_an_unbound_socket_and_it_can_then_receive() {
    let (a, port) = bound(LOCALHOST);
    let b = UdpSocket::new();
    assert_eq!(format!("{b:?}"), "UdpSocket(init)");
    send(&b, LOCALHOST, port, b"hi").unwrap();
    let (from, data) = recvfrom(&a).unwrap();
    assert_eq!(data, b"hi");
    let (ip, bport) = getsockname(&b).unwrap();
    assert_eq!(ip, ip!("0.0.0.0"));
    assert_eq!(from.port, bport);
    send(&a, LOCALHOST, bport, b"back").unwrap();
    b.set_read_deadline(after(SAFETY)).unwrap();
    assert_eq!(recv(&b).unwrap(), b"back");
    assert!(format!("{b:?}").starts_with("UdpSocket(open, 0.0.0.0:"));
}

#[test]
fn receiving_on_an_unbound_socket_is_invalid_argument() {
    let s = UdpSocket::new();
    for r in [
        recv(&s).map(drop),
        recvfrom(&s).map(drop),
        s.recv_into(&mut [0u8; 4]).map(drop),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    assert!(matches!(
        setopt(&s, &UdpOptions::default()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(getsockname(&s), Err(Error::InvalidArgument(_))));
}

#[test]
fn bind_twice_and_busy_ports() {
    let (a, port) = bound(LOCALHOST);
    let mut b = UdpSocket::new();
    assert!(!bind(&mut b, LOCALHOST, port).unwrap(), "port in use");
    let mut a = a;
    assert!(matches!(
        bind(&mut a, LOCALHOST, 0),
        Err(Error::InvalidArgument(_))
    ));
    // reuseaddr on both lets a second socket share the port (Julia's reuseaddr=true).
    let opts = BindOptions {
        reuseaddr: true,
        ..BindOptions::default()
    };
    let mut c = UdpSocket::new();
    assert!(bind_with(&mut c, LOCALHOST, 0, &opts).unwrap());
    let cport = getsockname(&c).unwrap().1;
    let mut d = UdpSocket::new();
    assert!(bind_with(&mut d, LOCALHOST, cport, &opts).unwrap());
}

#[test]
fn ipv6only_and_mapped_sends() {
    let mut v6 = UdpSocket::new();
    let opts = BindOptions::default();
    if !bind_with(&mut v6, ip!("::"), 0, &opts).unwrap_or(false) {
        eprintln!("skipped: no IPv6");
        return;
    }
    v6.set_deadline(after(SAFETY)).unwrap();
    let port = getsockname(&v6).unwrap().1;
    // A dual-stack socket receives IPv4 traffic and can send to IPv4 destinations.
    let (v4, v4port) = bound(LOCALHOST);
    send(&v4, LOCALHOST, port, b"to dual").unwrap();
    let (from, data) = recvfrom(&v6).unwrap();
    assert_eq!(data, b"to dual");
    assert_eq!(from.port, v4port);
    send(&v6, LOCALHOST, v4port, b"from dual").unwrap();
    assert_eq!(recv(&v4).unwrap(), b"from dual");
    // An IPv4 socket cannot send to an IPv6 address.
    assert!(matches!(
        send(&v4, ip!("::1"), port, b"x"),
        Err(Error::InvalidArgument(_))
    ));
    // ipv6only: IPv4 traffic does not arrive.
    let mut only = UdpSocket::new();
    let o = BindOptions {
        ipv6only: true,
        ..BindOptions::default()
    };
    assert!(bind_with(&mut only, ip!("::"), 0, &o).unwrap());
    let oport = getsockname(&only).unwrap().1;
    only.set_read_deadline(after(Duration::from_millis(100)))
        .unwrap();
    send(&v4, LOCALHOST, oport, b"lost").unwrap();
    assert!(matches!(recv(&only), Err(Error::DeadlineExceeded)));
}

#[test]
fn read_deadlines_past_moved_and_cleared() {
    let (a, port) = bound(LOCALHOST);
    let (b, _) = bound(LOCALHOST);
    // A passed deadline fails even with a datagram queued (Go's rule).
    send(&b, LOCALHOST, port, b"queued").unwrap();
    thread::sleep(Duration::from_millis(10));
    a.set_read_deadline(Some(Instant::now() - Duration::from_millis(1)))
        .unwrap();
    assert!(matches!(recv(&a), Err(Error::DeadlineExceeded)));
    a.set_read_deadline(None).unwrap();
    assert_eq!(recv(&a).unwrap(), b"queued");
    // A deadline moved earlier while blocked takes effect for that call.
    let a = Arc::new(a);
    let a2 = a.clone();
    let t = Instant::now();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(recv(&a2)));
    thread::sleep(Duration::from_millis(50));
    a.set_read_deadline(after(Duration::from_millis(50)))
        .unwrap();
    let r = rx.recv_timeout(SAFETY).unwrap();
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[test]
fn deadlines_set_before_binding_apply() {
    let mut a = UdpSocket::new();
    a.set_read_deadline(after(Duration::from_millis(50)))
        .unwrap();
    assert!(bind(&mut a, LOCALHOST, 0).unwrap());
    let t = Instant::now();
    assert!(matches!(recv(&a), Err(Error::DeadlineExceeded)));
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn close_from_another_thread_wakes_a_blocked_recv() {
    let (a, _) = bound(LOCALHOST);
    a.set_deadline(None).unwrap();
    let a = Arc::new(a);
    let a2 = a.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(recv(&a2)));
    thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "recv returned with nothing sent");
    let t = Instant::now();
    a.close().unwrap();
    let r = rx.recv_timeout(SAFETY).unwrap();
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!a.is_open());
    assert!(matches!(send(&a, LOCALHOST, 9, b"x"), Err(Error::Closed)));
    assert!(matches!(recv(&a), Err(Error::Closed)));
    assert_eq!(format!("{a:?}"), "UdpSocket(closed)");
    a.close().unwrap();
}

#[test]
fn closing_an_unbound_socket_then_using_it() {
    let s = UdpSocket::new();
    s.close().unwrap();
    assert!(matches!(send(&s, LOCALHOST, 9, b"x"), Err(Error::Closed)));
    assert!(matches!(recv(&s), Err(Error::Closed)));
    let mut s = s;
    assert!(matches!(bind(&mut s, LOCALHOST, 0), Err(Error::Closed)));
}

#[test]
fn recv_into_reports_a_datagram_too_large_for_the_buffer() {
    let (a, port) = bound(LOCALHOST);
    let (b, bport) = bound(LOCALHOST);
    send(&b, LOCALHOST, port, b"0123456789").unwrap();
    let mut small = [0u8; 4];
    let e = a.recv_into(&mut small).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
    assert_eq!(e.op(), Some("recv"));
    assert_eq!(&small, b"0123");
    send(&b, LOCALHOST, port, b"fits").unwrap();
    let (n, from) = a.recvfrom_into(&mut small).unwrap();
    assert_eq!((n, &small[..n]), (4, &b"fits"[..]));
    assert_eq!(from.port, bport);
}

#[test]
fn datagrams_keep_their_order() {
    let (a, port) = bound(LOCALHOST);
    let (b, _) = bound(LOCALHOST);
    let a = Arc::new(a);
    let a2 = a.clone();
    let n = 2000u32;
    let reader = thread::spawn(move || {
        let mut last = None;
        let mut got = 0;
        let mut buf = [0u8; 4];
        a2.set_read_deadline(after(Duration::from_millis(500)))
            .unwrap();
        while let Ok(len) = a2.recv_into(&mut buf) {
            assert_eq!(len, 4);
            let v = u32::from_le_bytes(buf);
            assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
            last = Some(v);
            got += 1;
            a2.set_read_deadline(after(Duration::from_millis(500)))
                .unwrap();
        }
        got
    });
    for i in 0..n {
        send(&b, LOCALHOST, port, &i.to_le_bytes()).unwrap();
        if i % 64 == 0 {
            // Loopback drops when the receive buffer is full; pacing keeps the test about
            // order, not loss.
            thread::sleep(Duration::from_micros(200));
        }
    }
    let got = reader.join().unwrap();
    assert!(got > n / 2, "only {got} of {n} datagrams arrived");
}

#[test]
fn unicast_groups_and_family_mismatches_are_errors() {
    let (a, _) = bound(LOCALHOST);
    for g in [ip!("127.0.0.1"), ip!("10.0.0.1"), ip!("::1")] {
        let r = join_multicast_group(&a, g);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{g}: {r:?}");
    }
    let r = join_multicast_group(&a, ip!("ff02::1"));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let unbound = UdpSocket::new();
    assert!(join_multicast_group(&unbound, ip!("239.1.2.3")).is_err());
    assert!(leave_multicast_group(&unbound, ip!("239.1.2.3")).is_err());
}

#[test]
fn setopt_applies_each_option() {
    let (a, _) = bound(LOCALHOST);
    setopt(
        &a,
        &UdpOptions {
            multicast_loop: Some(false),
            multicast_ttl: Some(3),
            enable_broadcast: Some(true),
            ttl: Some(17),
        },
    )
    .unwrap();
    let e = setopt(
        &a,
        &UdpOptions {
            ttl: Some(100_000),
            ..UdpOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    // Broadcast needs SO_BROADCAST: turning it off makes the send fail with EACCES.
    setopt(
        &a,
        &UdpOptions {
            enable_broadcast: Some(false),
            ..UdpOptions::default()
        },
    )
    .unwrap();
    let e = send(&a, IPv4::new(127, 255, 255, 255), 9, b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
}

#[test]
fn ipv4_multicast_join_receive_leave() {
    if !netns::enter_or_skip("ipv4_multicast_join_receive_leave") {
        return;
    }
    let group = ip!("239.255.77.1");
    let opts = BindOptions {
        reuseaddr: true,
        ..BindOptions::default()
    };
    let mut a = UdpSocket::new();
    assert!(bind_with(&mut a, IPv4::new(0, 0, 0, 0), 0, &opts).unwrap());
    let port = getsockname(&a).unwrap().1;
    let mut b = UdpSocket::new();
    assert!(bind_with(&mut b, IPv4::new(0, 0, 0, 0), port, &opts).unwrap());
    join_multicast_group(&a, group).unwrap();
    join_multicast_group(&b, group).unwrap();
    let c = UdpSocket::new();
    send(&c, group, port, b"hello").unwrap();
    for s in [&a, &b] {
        s.set_read_deadline(after(Duration::from_secs(3))).unwrap();
        assert_eq!(recv(s).unwrap(), b"hello");
    }
    // Linux delivers a group's traffic to every socket on the port while any socket
    // there is a member (IP_MULTICAST_ALL), so both leave before nothing arrives.
    leave_multicast_group(&a, group).unwrap();
    leave_multicast_group(&b, group).unwrap();
    send(&c, group, port, b"after leave").unwrap();
    for s in [&a, &b] {
        s.set_read_deadline(after(Duration::from_millis(200)))
            .unwrap();
        assert!(matches!(recv(s), Err(Error::DeadlineExceeded)));
    }
    // Leaving a group not joined is the OS's error, not a silent success.
    assert!(leave_multicast_group(&a, group).is_err());
}

#[path = "support/netns.rs"]
mod netns;

#[test]
fn careless_calls_get_clear_answers() {
    let (a, port) = bound(LOCALHOST);
    let (b, _) = bound(LOCALHOST);
    // An empty buffer: a zero-length datagram fits, a longer one is EMSGSIZE (not lost
    // silently, not a panic).
    send(&b, LOCALHOST, port, b"").unwrap();
    assert_eq!(a.recv_into(&mut []).unwrap(), 0);
    send(&b, LOCALHOST, port, b"x").unwrap();
    let e = a.recv_into(&mut []).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
    // Port 0 is no destination: the OS's error, named as a send.
    let e = send(&b, LOCALHOST, 0, b"x").unwrap_err();
    assert_eq!(e.op(), Some("send"), "{e}");
    // Everything after close is Closed.
    a.close().unwrap();
    assert!(matches!(
        send(&a, LOCALHOST, port, b"x"),
        Err(Error::Closed)
    ));
    assert!(matches!(
        setopt(&a, &UdpOptions::default()),
        Err(Error::Closed)
    ));
    assert!(matches!(
        join_multicast_group(&a, ip!("239.1.2.3")),
        Err(Error::Closed)
    ));
    assert!(matches!(a.set_read_deadline(None), Err(Error::Closed)));
    assert!(matches!(getsockname(&a), Err(Error::Closed)));
    // The unspecified interface address means "the default interface", as no iface.
    let mut v6 = UdpSocket::new();
    if !bind(&mut v6, ip!("::1"), 0).unwrap_or(false) {
        return eprintln!("skipped the rest: no ::1");
    }
    let r = sockets::join_multicast_group_on(&v6, ip!("ff02::1:3"), ip!("::"));
    assert!(
        !matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("no interface")),
        "{r:?}"
    );
}

/// Sockets a receive can block on in each way the crate binds them: to loopback, to the
/// unspecified address (wakes then go to loopback), and by a first `send`; IPv6 ones
/// too where `::1` exists.
fn receivers() -> Vec<(&'static str, UdpSocket)> {
    let mut v = Vec::new();
    for (name, host) in [
        ("127.0.0.1", ip!("127.0.0.1")),
        ("0.0.0.0", ip!("0.0.0.0")),
        ("::1", ip!("::1")),
        ("::", ip!("::")),
    ] {
        let mut s = UdpSocket::new();
        if bind(&mut s, host, 0).unwrap_or(false) {
            v.push((name, s));
        }
    }
    let s = UdpSocket::new();
    let (sink, port) = bound(LOCALHOST);
    send(&s, LOCALHOST, port, b"bind me").unwrap();
    assert_eq!(recv(&sink).unwrap(), b"bind me");
    v.push(("bound by send", s));
    v
}

/// Where a datagram to `s` itself goes: its address, loopback for an unspecified one.
fn self_address(s: &UdpSocket) -> (sockets::IPAddr, u16) {
    let (ip, port) = getsockname(s).unwrap();
    let to = if ip == ip!("0.0.0.0") {
        ip!("127.0.0.1")
    } else if ip == ip!("::") {
        ip!("::1")
    } else {
        ip
    };
    (to, port)
}

/// A `recv` on its own thread; its result arrives on the returned channel.
fn spawn_recv(s: &Arc<UdpSocket>) -> mpsc::Receiver<reseau::Result<Vec<u8>>> {
    let (s2, (tx, rx)) = (s.clone(), mpsc::channel());
    thread::spawn(move || {
        let _ = tx.send(recv(&s2));
    });
    rx
}

/// Blocks a deadline-free `recv` on `s` (long enough to be asleep in the kernel), then
/// sets a deadline 50 ms ahead from this thread: the receive must fail with
/// `DeadlineExceeded`, not before the deadline and well before the kernel timeout it
/// would sleep to if it missed the change (up to 1.5 s).
fn assert_deadline_set_while_blocked_wakes(s: &Arc<UdpSocket>, name: &str) {
    s.set_read_deadline(None).unwrap();
    let rx = spawn_recv(s);
    thread::sleep(Duration::from_millis(150));
    assert!(
        rx.try_recv().is_err(),
        "{name}: recv returned with nothing sent"
    );
    let set = Instant::now();
    s.set_read_deadline(Some(set + Duration::from_millis(50)))
        .unwrap();
    let r = rx.recv_timeout(SAFETY).unwrap();
    let took = set.elapsed();
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{name}: {r:?}");
    assert!(took >= Duration::from_millis(50), "{name}: early, {took:?}");
    assert!(took < Duration::from_secs(1), "{name}: late, {took:?}");
}

#[test]
fn close_wakes_a_deadline_free_blocked_recv_and_later_receives_fail() {
    for (name, s) in receivers() {
        let s = Arc::new(s);
        let (tx, rx) = mpsc::channel();
        let s2 = s.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 16];
            let _ = tx.send(s2.recv_into(&mut buf));
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            rx.try_recv().is_err(),
            "{name}: recv returned with nothing sent"
        );
        let t = Instant::now();
        s.close().unwrap();
        let r = rx.recv_timeout(SAFETY).unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{name}: {r:?}");
        // A receive that missed the wake-up would sleep on to its kernel timeout (up
        // to 1.5 s): this bound fails then.
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            t.elapsed()
        );
        assert!(matches!(recv(&s), Err(Error::Closed)), "{name}");
        assert!(
            matches!(s.recv_into(&mut [0u8; 4]), Err(Error::Closed)),
            "{name}"
        );
    }
}

#[test]
fn a_deadline_set_from_another_thread_wakes_a_deadline_free_recv_on_time() {
    for (name, s) in receivers() {
        let s = Arc::new(s);
        assert_deadline_set_while_blocked_wakes(&s, name);
        // A deadline in the past, set while blocked: at once.
        s.set_read_deadline(None).unwrap();
        let rx = spawn_recv(&s);
        thread::sleep(Duration::from_millis(150));
        let set = Instant::now();
        s.set_read_deadline(Some(set - Duration::from_millis(1)))
            .unwrap();
        let r = rx.recv_timeout(SAFETY).unwrap();
        assert!(matches!(r, Err(Error::DeadlineExceeded)), "{name}: {r:?}");
        assert!(
            set.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            set.elapsed()
        );
        // The socket still receives after all that.
        s.set_read_deadline(after(SAFETY)).unwrap();
        let (to, port) = self_address(&s);
        send(&s, to, port, b"still here").unwrap();
        assert_eq!(recv(&s).unwrap(), b"still here", "{name}");
    }
}

#[test]
fn a_sockets_own_empty_datagrams_are_delivered_once_each() {
    for (name, s) in receivers() {
        let (to, port) = self_address(&s);
        s.set_read_deadline(None).unwrap();
        let s = Arc::new(s);
        // Wake the blocked receive with deadline changes first, so wake datagrams and
        // the socket's own empty datagrams cross.
        let (tx, rx) = mpsc::channel();
        let s2 = s.clone();
        thread::spawn(move || {
            let _ = tx.send(recvfrom(&s2));
        });
        thread::sleep(Duration::from_millis(100));
        for _ in 0..3 {
            s.set_read_deadline(after(SAFETY)).unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            rx.try_recv().is_err(),
            "{name}: a wake was returned as a datagram"
        );
        send(&s, to, port, b"").unwrap();
        let (from, data) = rx.recv_timeout(SAFETY).unwrap().unwrap();
        assert_eq!(data, b"", "{name}");
        assert_eq!((from.host, from.port), (to, port), "{name}");
        // Two more, and exactly two arrive.
        send(&s, to, port, b"").unwrap();
        s.set_read_deadline(after(SAFETY)).unwrap();
        send(&s, to, port, b"").unwrap();
        assert_eq!(recv(&s).unwrap(), b"", "{name}");
        assert_eq!(recv(&s).unwrap(), b"", "{name}");
        s.set_read_deadline(after(Duration::from_millis(100)))
            .unwrap();
        let r = recv(&s);
        assert!(matches!(r, Err(Error::DeadlineExceeded)), "{name}: {r:?}");
    }
}

#[test]
fn sends_from_a_socket_whose_receive_is_blocked_do_not_wait() {
    // The description may be blocking (receives sleep in the kernel): a send made while
    // a receive sleeps must neither block nor be held up by it.
    let (a, port) = bound(LOCALHOST);
    let (b, bport) = bound(LOCALHOST);
    a.set_read_deadline(None).unwrap();
    let a = Arc::new(a);
    let a2 = a.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(recv(&a2));
    });
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for i in 0..1000u32 {
        send(&a, LOCALHOST, bport, &i.to_le_bytes()).unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(recv(&b).unwrap(), 0u32.to_le_bytes());
    // A write deadline in the past still fails a send at once.
    a.set_write_deadline(Some(Instant::now() - Duration::from_millis(1)))
        .unwrap();
    assert!(matches!(
        send(&a, LOCALHOST, bport, b"x"),
        Err(Error::DeadlineExceeded)
    ));
    send(&b, LOCALHOST, port, b"done").unwrap();
    assert_eq!(rx.recv_timeout(SAFETY).unwrap().unwrap(), b"done");
}

const CHILD_ENV: &str = "RESEAU_UDP_TEST_CHILD";

/// Runs `test` alone in a child process (descriptor counts must not see other tests'
/// sockets); true in the child.
fn in_child(test: &str) -> bool {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        return true;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("child {test} still running after 60 s; killed");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {test}: {}\n{text}", out.status);
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    false
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn blocking_receives_leak_no_descriptors() {
    if !in_child("blocking_receives_leak_no_descriptors") {
        return;
    }
    let round = || {
        for (name, s) in receivers() {
            s.set_read_deadline(None).unwrap();
            let s = Arc::new(s);
            let s2 = s.clone();
            let h = thread::spawn(move || recv(&s2));
            thread::sleep(Duration::from_millis(20));
            s.set_read_deadline(after(SAFETY)).unwrap();
            s.close().unwrap();
            let r = h.join().unwrap();
            assert!(matches!(r, Err(Error::Closed)), "{name}: {r:?}");
        }
    };
    // The first round may open the process-wide wake sockets, the placeholder and wake
    // descriptors.
    round();
    let base = open_fds();
    for _ in 0..5 {
        round();
    }
    let now = open_fds();
    assert!(now <= base, "{now} open after, {base} before");
}

#[test]
fn sends_racing_close_succeed_or_see_closed() {
    // `close` wakes a receive asleep in the kernel with shutdown(2): that must not turn
    // a send in flight into an OS error (SHUT_RDWR would make it EPIPE).
    let (sink, port) = bound(LOCALHOST);
    for round in 0..300 {
        let (s, _) = bound(LOCALHOST);
        let s = Arc::new(s);
        let (s2, go) = (s.clone(), Arc::new(std::sync::Barrier::new(2)));
        let go2 = go.clone();
        let sender = thread::spawn(move || {
            go2.wait();
            let t = Instant::now();
            loop {
                match send(&s2, LOCALHOST, port, b"x") {
                    Ok(()) if t.elapsed() < SAFETY => {}
                    r => return r,
                }
            }
        });
        let s3 = s.clone();
        let receiver = thread::spawn(move || recv(&s3));
        go.wait();
        thread::sleep(Duration::from_millis(2));
        s.close().unwrap();
        let r = sender.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "round {round}: {r:?}");
        let r = receiver.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "round {round}: {r:?}");
    }
    drop(sink);
}

#[test]
fn a_socket_in_another_network_namespace_is_woken_and_wakes_nobody_else() {
    // A process may make sockets in several network namespaces (a thread that
    // unshares or setns'es). The first bind here makes the process's wake sockets in
    // this namespace; a socket made in another one must still see a deadline change
    // at once, and no socket of this namespace that holds the same port may get a
    // datagram meant for it.
    let _here = bound(LOCALHOST);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only moves this thread (which ends after making
        // the socket) to a new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let _ = tx.send(None);
            return;
        }
        // `lo` is down there: the unspecified address still binds.
        let mut s = UdpSocket::new();
        assert!(bind(&mut s, ip!("0.0.0.0"), 0).unwrap());
        let _ = tx.send(Some(s));
    });
    let Some(s) = rx.recv_timeout(SAFETY).unwrap() else {
        eprintln!("skipped: cannot unshare a network namespace here");
        return;
    };
    let port = getsockname(&s).unwrap().1;
    // Same port on this namespace's loopback (skipped if taken here).
    let foreign = std::net::UdpSocket::bind(("127.0.0.1", port)).ok();
    let s = Arc::new(s);
    assert_deadline_set_while_blocked_wakes(&s, "other namespace");
    if let Some(f) = foreign {
        f.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let r = f.recv_from(&mut [0u8; 16]);
        assert!(r.is_err(), "a socket of another namespace got {r:?}");
    }
    s.close().unwrap();
}

#[test]
fn a_blocked_receive_never_fails_before_its_deadline() {
    // Deadlines long enough that the wait is mostly kernel timeouts (SO_RCVTIMEO), then
    // `ppoll` for the last stretch: DeadlineExceeded only once the deadline has passed.
    for (name, s) in receivers() {
        for ms in [45, 300] {
            let at = Instant::now() + Duration::from_millis(ms);
            s.set_read_deadline(Some(at)).unwrap();
            let r = recv(&s);
            let now = Instant::now();
            assert!(matches!(r, Err(Error::DeadlineExceeded)), "{name}: {r:?}");
            assert!(
                now >= at,
                "{name}: {ms} ms deadline fired {:?} early",
                at - now
            );
            // A wait that slept to the kernel timeout's cap (1.5 s) fails this.
            assert!(
                now - at < Duration::from_secs(1),
                "{name}: {:?} late",
                now - at
            );
        }
    }
}

#[test]
fn a_blocked_receive_gets_what_arrives_while_it_sleeps() {
    // The datagram comes after the receive is asleep in the kernel: a too-long one is
    // still EMSGSIZE (never silently cut), an empty one from another socket is data.
    for (name, s) in receivers() {
        s.set_read_deadline(after(SAFETY)).unwrap();
        let (to, port) = self_address(&s);
        let s = Arc::new(s);
        let mut senders = vec![UdpSocket::new()];
        // A dual-stack socket also takes IPv4 senders (as ::ffff:127.0.0.1).
        if name == "::" {
            senders.push(UdpSocket::new());
        }
        for (i, peer) in senders.iter().enumerate() {
            let to = if i == 1 { ip!("127.0.0.1") } else { to };
            for (data, want) in [(&b"0123456789"[..], None), (&b""[..], Some(0))] {
                let s2 = s.clone();
                let (tx, rx) = mpsc::channel();
                thread::spawn(move || {
                    let mut small = [0u8; 4];
                    let _ = tx.send(s2.recvfrom_into(&mut small));
                });
                thread::sleep(Duration::from_millis(60));
                assert!(rx.try_recv().is_err(), "{name}: recv returned early");
                send(peer, to, port, data).unwrap();
                let r = rx.recv_timeout(SAFETY).unwrap();
                match want {
                    None => {
                        let e = r.unwrap_err();
                        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{name}: {e}");
                    }
                    Some(n) => {
                        let (got, from) = r.unwrap();
                        assert_eq!(got, n, "{name}");
                        assert_eq!(from.port, getsockname(peer).unwrap().1, "{name}");
                    }
                }
            }
        }
    }
}

#[test]
fn two_receivers_on_one_socket_both_see_a_deadline_change_and_close() {
    for (name, s) in receivers() {
        s.set_read_deadline(None).unwrap();
        let s = Arc::new(s);
        let (a, b) = (spawn_recv(&s), spawn_recv(&s));
        thread::sleep(Duration::from_millis(150));
        let set = Instant::now();
        s.set_read_deadline(Some(set + Duration::from_millis(50)))
            .unwrap();
        for rx in [a, b] {
            let r = rx.recv_timeout(SAFETY).unwrap();
            assert!(matches!(r, Err(Error::DeadlineExceeded)), "{name}: {r:?}");
        }
        assert!(
            set.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            set.elapsed()
        );
        s.set_read_deadline(None).unwrap();
        let (a, b) = (spawn_recv(&s), spawn_recv(&s));
        thread::sleep(Duration::from_millis(150));
        let t = Instant::now();
        s.close().unwrap();
        for rx in [a, b] {
            let r = rx.recv_timeout(SAFETY).unwrap();
            assert!(matches!(r, Err(Error::Closed)), "{name}: {r:?}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            t.elapsed()
        );
    }
}
