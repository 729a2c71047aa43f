//! A self-contained tour of reseau on loopback: `cargo run --release --example tour`.
//!
//! Each step prints what it does and what it saw. Grows with each layer (resolver and
//! Happy Eyeballs, TLS, the Julia `Sockets` facade).

use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reseau::resolve::{Dialer, StaticResolver};
use reseau::{Error, tcp, tls, unix};

fn main() -> reseau::Result<()> {
    tcp_echo()?;
    deadlines()?;
    close_wakes_blocked_calls()?;
    unix_socket()?;
    happy_eyeballs()?;
    tls_exchange()?;
    julia_facade()?;
    julia_udp()?;
    event_layer()?;
    println!("\ntour done");
    Ok(())
}

/// Julia: `server = listen(0)`, `sock = connect(port)`; Go: `net.Listen`, `net.Dial`.
fn tcp_echo() -> reseau::Result<()> {
    println!("== TCP echo on loopback");
    let ln = tcp::listen(tcp::loopback_addr(0))?;
    let addr = ln.local_addr().expect("bound");
    println!("listening on {addr}  ({ln:?})");
    let server = thread::spawn(move || -> reseau::Result<()> {
        let conn = ln.accept()?;
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            conn.write(&buf[..n])?;
        }
    });
    let conn = tcp::connect(addr)?;
    println!(
        "connected: {conn:?}, nodelay={} keepalive={}",
        conn.nodelay()?,
        conn.keepalive()?
    );
    conn.write(b"hello, reseau")?;
    conn.close_write()?; // half-close: the server sees EOF, we keep reading
    let mut echoed = String::new();
    (&conn)
        .read_to_string(&mut echoed)
        .map_err(|source| Error::Sys { op: "read", source })?;
    println!("echoed back: {echoed:?}");
    server.join().expect("server thread")?;
    Ok(())
}

/// Go: `conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))`.
fn deadlines() -> reseau::Result<()> {
    println!("\n== Go-style absolute deadlines");
    let ln = tcp::listen(tcp::loopback_addr(0))?;
    let conn = tcp::connect(ln.local_addr().expect("bound"))?;
    let peer = ln.accept()?;
    let start = Instant::now();
    conn.set_read_deadline(Some(start + Duration::from_millis(50)))?;
    let err = conn.read(&mut [0u8; 16]).unwrap_err();
    println!(
        "read with a 50 ms deadline: {err} after {:?} (is_timeout={})",
        start.elapsed(),
        err.is_timeout()
    );
    // The deadline is sticky: even with data ready, reads fail until it is reset.
    peer.write(b"x")?;
    println!(
        "read again with data ready: {}  (the passed deadline is sticky: it fails every \
         read, ready or not, until it is moved or cleared, as in Go)",
        conn.read(&mut [0u8; 16]).unwrap_err()
    );
    conn.set_read_deadline(None)?;
    let mut b = [0u8; 16];
    let n = conn.read(&mut b)?;
    println!(
        "after clearing the deadline: read {:?}",
        String::from_utf8_lossy(&b[..n])
    );

    // Moving the deadline while a read is blocked takes effect for that read.
    conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(60)))?;
    let conn = Arc::new(conn);
    let c2 = conn.clone();
    let blocked = thread::spawn(move || {
        let t = Instant::now();
        (c2.read(&mut [0u8; 1]).map(drop), t.elapsed())
    });
    thread::sleep(Duration::from_millis(30));
    conn.set_read_deadline(Some(Instant::now()))?;
    let (res, took) = blocked.join().expect("reader");
    println!(
        "blocked read (deadline moved from +60 s to now): {} after {took:?}",
        res.unwrap_err()
    );
    Ok(())
}

/// Go: `ln.Close()` unblocks `Accept`; `conn.Close()` unblocks `Read`.
fn close_wakes_blocked_calls() -> reseau::Result<()> {
    println!("\n== close() from another thread");
    let ln = Arc::new(tcp::listen(tcp::loopback_addr(0))?);
    let l2 = ln.clone();
    let acceptor = thread::spawn(move || l2.accept().map(drop));
    thread::sleep(Duration::from_millis(30));
    ln.close()?;
    println!(
        "blocked accept after close: {}",
        acceptor.join().expect("acceptor").unwrap_err()
    );

    let ln = tcp::listen(tcp::loopback_addr(0))?;
    let conn = Arc::new(tcp::connect(ln.local_addr().expect("bound"))?);
    let _peer = ln.accept()?;
    let c2 = conn.clone();
    let reader = thread::spawn(move || c2.read(&mut [0u8; 8]).map(drop));
    thread::sleep(Duration::from_millis(30));
    conn.close()?;
    println!(
        "blocked read after close: {}",
        reader.join().expect("reader").unwrap_err()
    );
    Ok(())
}

/// Julia: `listen("/tmp/x.sock")`, `connect("/tmp/x.sock")`.
fn unix_socket() -> reseau::Result<()> {
    println!("\n== unix-domain socket");
    let path = std::env::temp_dir().join(format!("reseau-tour-{}.sock", std::process::id()));
    let ln = unix::listen(&path)?;
    let client = unix::connect(&path)?;
    let server = ln.accept()?;
    client.write(b"over a unix socket")?;
    let mut buf = [0u8; 64];
    let n = server.read(&mut buf)?;
    println!(
        "{} got {:?} from {}",
        path.display(),
        String::from_utf8_lossy(&buf[..n]),
        client.local_addr().map_or_else(
            || "an unnamed peer (a connecting unix socket has no path of its own: \
                local_addr() is None)"
                .to_string(),
            |p| p.display().to_string()
        )
    );
    ln.close()?;
    println!("socket file removed on close: {}", !path.exists());
    Ok(())
}

/// Go: `net.Dial("tcp", "service.test:PORT")` racing IPv6 and IPv4 (RFC 8305 here).
fn happy_eyeballs() -> reseau::Result<()> {
    println!("\n== Happy Eyeballs: a dead IPv6 address falls back to IPv4");
    let ln = tcp::listen(tcp::loopback_addr(0))?;
    let port = ln.local_addr().expect("bound").port();
    // `service.test` resolves to ::1 first, where nothing listens on this port, then to
    // the live IPv4 listener. (A resolver map keeps the tour on loopback.)
    let hosts = StaticResolver::new();
    hosts.insert(
        "service.test",
        ["::1".parse().expect("ip"), "127.0.0.1".parse().expect("ip")],
    );
    let dialer = Dialer {
        resolver: Arc::new(hosts),
        timeout: Some(Duration::from_secs(5)),
        ..Dialer::default()
    };
    let start = Instant::now();
    let conn = dialer.dial("tcp", &format!("service.test:{port}"))?;
    println!(
        "dialed service.test:{port} -> {} in {:?} (the IPv6 attempt was refused, so IPv4 started at once)",
        conn.remote_addr().expect("peer"),
        start.elapsed()
    );
    let refused = Dialer {
        serial: true,
        ..dialer.clone()
    };
    drop(conn);
    drop(ln);
    let err = refused
        .dial("tcp", &format!("service.test:{port}"))
        .unwrap_err();
    if let Error::Op(op) = &err {
        println!(
            "with both down: {err}\n  every attempt's error: {:?}",
            op.attempts()
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Go: `tls.Listen` / `tls.Dial`; Julia: `connect(host, port; tls=true)`.
fn tls_exchange() -> reseau::Result<()> {
    println!("\n== TLS on OpenSSL with the test PKI in certs/");
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let server_cfg = tls::Config {
        cert_file: Some(format!("{certs}/server.pem").into()),
        key_file: Some(format!("{certs}/server.key").into()),
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        ..tls::Config::default()
    };
    let ln = tls::listen(tcp::loopback_addr(0), server_cfg)?;
    let port = ln.local_addr().expect("bound").port();
    let server = thread::spawn(move || -> reseau::Result<String> {
        let conn = ln.accept()?; // lazy: the handshake runs on first read
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf)?;
        conn.write(&buf[..n].to_ascii_uppercase())?;
        conn.close_write()?; // close_notify: a TLS half-close
        Ok(format!("{conn:?}"))
    });
    let client_cfg = tls::Config {
        ca_file: Some(format!("{certs}/ca.pem").into()),
        alpn_protocols: vec!["http/1.1".into(), "h2".into()],
        ..tls::Config::default()
    };
    let conn = tls::dial("tcp", &format!("localhost:{port}"), &client_cfg)?;
    let st = conn.connection_state();
    println!(
        "handshaken with localhost: {} {} alpn={:?}",
        st.version, st.cipher_suite, st.alpn_protocol
    );
    conn.write(b"hello over tls")?;
    let mut reply = String::new();
    (&conn)
        .read_to_string(&mut reply)
        .map_err(|source| Error::Sys { op: "read", source })?;
    println!(
        "reply {reply:?}, then close_notify read as EOF; server side was {}",
        server.join().expect("server")?
    );
    Ok(())
}

/// Julia's `Sockets`, line by line: `listenany`, `accept`, `connect(port)`,
/// `getpeername`, a unix path, and `tls=true`.
fn julia_facade() -> reseau::Result<()> {
    use reseau::sockets::{
        ConnectOptions, LOCALHOST, ListenOptions, accept, connect, connect_with, getpeername,
        getsockname, listen, listen_with, listenany,
    };
    use std::io::{BufRead, Write};
    let io = |source| Error::Sys { op: "io", source };
    println!("\n== the Julia Sockets facade");

    // port, server = listenany(0); sock = connect(port); conn = accept(server)
    let (port, server) = listenany(0)?;
    let mut sock = connect(port)?;
    let mut conn = accept(&server)?;
    println!(
        "listenany(0) -> port {port}; getpeername(sock) = {:?}; getsockname(conn) = {:?}",
        getpeername(&sock)?,
        getsockname(&conn)?
    );
    sock.write_all(b"hello julia\n").map_err(io)?;
    let mut line = String::new();
    conn.read_line(&mut line).map_err(io)?;
    println!("readline(conn) = {line:?}");

    // server = listen("/tmp/x.sock"); sock = connect("/tmp/x.sock")
    let path = std::env::temp_dir().join(format!("reseau-tour-facade-{}.sock", std::process::id()));
    let unix_server = listen(path.clone())?;
    let mut a = connect(path.clone())?;
    let mut b = accept(&unix_server)?;
    a.write_all(b"over a path\n").map_err(io)?;
    line.clear();
    b.read_line(&mut line).map_err(io)?;
    println!("unix {}: {line:?}", path.display());
    unix_server.close()?;

    // listen(port; tls=true, …); connect("localhost", port; tls=true, …)
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let opts = ListenOptions {
        tls: true,
        cert_file: Some(format!("{certs}/server.pem").into()),
        key_file: Some(format!("{certs}/server.key").into()),
        ..ListenOptions::default()
    };
    let tls_server = listen_with((LOCALHOST, 0), &opts)?;
    let (_, tls_port) = getsockname(&tls_server)?;
    let echo = thread::spawn(move || -> reseau::Result<()> {
        let mut c = accept(&tls_server)?;
        let mut l = String::new();
        c.read_line(&mut l).map_err(io)?;
        c.write_all(l.to_uppercase().as_bytes()).map_err(io)
    });
    let copts = ConnectOptions {
        tls: true,
        ca_file: Some(format!("{certs}/ca.pem").into()),
        ..ConnectOptions::default()
    };
    let mut t = connect_with(("localhost", tls_port), &copts)?;
    t.write_all(b"tls=true echo\n").map_err(io)?;
    line.clear();
    t.read_line(&mut line).map_err(io)?;
    println!(
        "tls=true: {line:?} ({})",
        t.connection_state().map(|s| s.version).unwrap_or_default()
    );
    echo.join().expect("echo")?;
    Ok(())
}

/// Julia's `UDPSocket`: `bind`, `send`, `recvfrom`, a deadline, and `close` waking a
/// blocked `recv` in another thread.
fn julia_udp() -> reseau::Result<()> {
    use reseau::sockets::{LOCALHOST, UdpSocket, bind, getsockname, recv, recvfrom, send};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    println!("\n== UDP (Julia's UDPSocket)");

    // a = UDPSocket(); bind(a, ip"127.0.0.1", 0); b = UDPSocket()
    let mut a = UdpSocket::new();
    assert!(bind(&mut a, LOCALHOST, 0)?);
    let (_, port) = getsockname(&a)?;
    let b = UdpSocket::new();
    // send(b, ip"127.0.0.1", port, "hello udp"): b is bound to 0.0.0.0:<os port> first
    send(&b, LOCALHOST, port, b"hello udp")?;
    let (from, data) = recvfrom(&a)?;
    println!(
        "recvfrom(a) = ({from}, {:?}); b was bound implicitly: {:?}",
        String::from_utf8_lossy(&data),
        getsockname(&b)?
    );

    // A read deadline (Go's SetReadDeadline) on a socket nobody sends to.
    a.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)))?;
    println!("recv with a 30 ms deadline: {:?}", recv(&a).map(|_| ()));

    // close(a) from another task wakes the blocked recv.
    a.set_read_deadline(None)?;
    let a = Arc::new(a);
    let a2 = a.clone();
    let blocked = thread::spawn(move || recv(&a2));
    thread::sleep(Duration::from_millis(30));
    a.close()?;
    println!(
        "close(a) from another thread: blocked recv -> {:?}",
        blocked.join().expect("recv thread").map(|_| ())
    );
    Ok(())
}

/// The event layer (lori's `TCPConnection`): one loop thread serves connections through
/// callbacks; a plain blocking client talks to it.
fn event_layer() -> reseau::Result<()> {
    use reseau::event::{Conn, Handler, Runtime, ServerOptions};
    println!("\n== the event layer (callbacks on a loop thread)");
    struct Upper;
    impl Handler for Upper {
        fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
            let _ = conn.send(&data.to_ascii_uppercase());
        }
    }
    let rt = Runtime::builder().threads(1).build()?;
    let server = rt.listen(
        reseau::tcp::loopback_addr(0),
        ServerOptions {
            tls: None,
            max_connections: 100,
        },
        |_peer| Upper,
    )?;
    let c = reseau::tcp::connect(server.local_addr())?;
    c.set_read_deadline(Some(
        std::time::Instant::now() + std::time::Duration::from_secs(5),
    ))?;
    c.write(b"served by a loop thread")?;
    let mut buf = [0u8; 23];
    c.read_full(&mut buf)?;
    println!(
        "blocking client -> event server: {:?}",
        String::from_utf8_lossy(&buf)
    );
    Ok(())
}
