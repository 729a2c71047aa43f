//! Echo server for the shared benchmark harness (`../shared/tools/netbench`).
//!
//! ```text
//! echo_server [--addr HOST:PORT] [--tls --cert CERT.pem --key KEY.pem] [--unix PATH]
//!             [--facade] [--buf BYTES] [--event [--threads N]] [--bare-mio [--threads N]]
//! ```
//! `--event` serves through the event layer (`reseau::event`): N loop threads
//! (default one per core) instead of a thread per connection.
//! `--bare-mio` serves through `examples/bare_mio_echo.rs`, the featureless mio floor
//! the event layer is measured against (plain TCP only).
//! `--facade` serves through the Julia-style `sockets::TcpSocket` instead of
//! `tcp::Conn`/`tls::Conn`, to measure what the facade costs.
//! Prints exactly `listening on IP:PORT` (or `listening on PATH`) as its first stdout
//! line, then echoes every connection, one thread each, until killed. With `--tls` each
//! connection's handshake runs on its own thread (on first read).

use std::io::Write;
use std::process::exit;
use std::thread;

#[path = "bare_mio_echo.rs"]
mod bare_mio_echo;

struct Opts {
    addr: String,
    unix: Option<String>,
    tls: bool,
    facade: bool,
    cert: Option<String>,
    key: Option<String>,
    buf: usize,
    event: bool,
    bare_mio: bool,
    threads: Option<usize>,
}

fn usage() -> ! {
    eprintln!(
        "usage: echo_server [--addr HOST:PORT] [--tls --cert CERT --key KEY] [--unix PATH] [--buf BYTES] [--event [--threads N]] [--bare-mio]"
    );
    exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:0".into(),
        unix: None,
        tls: false,
        facade: false,
        cert: None,
        key: None,
        buf: 64 * 1024,
        event: false,
        bare_mio: false,
        threads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => o.addr = val(),
            "--unix" => o.unix = Some(val()),
            "--tls" => o.tls = true,
            "--facade" => o.facade = true,
            "--cert" => o.cert = Some(val()),
            "--key" => o.key = Some(val()),
            "--buf" => o.buf = val().parse().unwrap_or_else(|_| usage()),
            "--event" => o.event = true,
            "--bare-mio" => o.bare_mio = true,
            "--threads" => o.threads = Some(val().parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    if o.tls && (o.cert.is_none() || o.key.is_none()) {
        usage();
    }
    o
}

/// Echoes until EOF or an error; errors just end the connection.
fn echo<C>(conn: C, bufsize: usize)
where
    C: EchoConn,
{
    let mut buf = vec![0u8; bufsize];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The two calls the echo loop needs, for both socket kinds.
trait EchoConn {
    fn read(&self, buf: &mut [u8]) -> reseau::Result<usize>;
    fn write(&self, buf: &[u8]) -> reseau::Result<usize>;
}

impl EchoConn for reseau::tcp::Conn {
    fn read(&self, buf: &mut [u8]) -> reseau::Result<usize> {
        reseau::tcp::Conn::read(self, buf)
    }
    fn write(&self, buf: &[u8]) -> reseau::Result<usize> {
        reseau::tcp::Conn::write(self, buf)
    }
}

impl EchoConn for reseau::tls::Conn {
    fn read(&self, buf: &mut [u8]) -> reseau::Result<usize> {
        reseau::tls::Conn::read(self, buf)
    }
    fn write(&self, buf: &[u8]) -> reseau::Result<usize> {
        reseau::tls::Conn::write(self, buf)
    }
}

impl EchoConn for reseau::unix::Conn {
    fn read(&self, buf: &mut [u8]) -> reseau::Result<usize> {
        reseau::unix::Conn::read(self, buf)
    }
    fn write(&self, buf: &[u8]) -> reseau::Result<usize> {
        reseau::unix::Conn::write(self, buf)
    }
}

fn announce(what: impl std::fmt::Display) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {what}");
    let _ = out.flush();
}

fn serve<C: Send + 'static>(
    accept: impl Fn() -> reseau::Result<C>,
    handle: impl Fn(C) + Send + Clone + 'static,
) -> ! {
    loop {
        match accept() {
            Ok(c) => {
                let handle = handle.clone();
                if let Err(e) = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || handle(c))
                {
                    eprintln!("echo_server: spawn: {e}");
                }
            }
            Err(e) => {
                eprintln!("echo_server: accept: {e}");
                thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// The same echo loop over the facade's buffered `TcpSocket`.
fn serve_facade(o: &Opts) -> ! {
    use reseau::sockets::{ListenOptions, TcpSocket, listen_with};
    use std::io::{Read, Write};
    let (host, port) = reseau::resolve::split_host_port(&o.addr).unwrap_or_else(|_| usage());
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    let opts = ListenOptions {
        tls: o.tls,
        cert_file: o.cert.as_ref().map(Into::into),
        key_file: o.key.as_ref().map(Into::into),
        ..ListenOptions::default()
    };
    let server = listen_with((host.as_str(), port), &opts).unwrap_or_else(|e| {
        eprintln!("echo_server: listen {}: {e}", o.addr);
        exit(1)
    });
    let (ip, port) = reseau::sockets::getsockname(&server).expect("bound address");
    announce(std::net::SocketAddr::new(ip.into(), port));
    let bufsize = o.buf;
    let echo = move |mut s: TcpSocket| {
        let mut buf = vec![0u8; bufsize];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    };
    serve(|| server.accept(), echo)
}

/// The echo protocol as event handler: what arrives goes back; a peer that does not
/// read pauses our reading (back-pressure) instead of growing the queue.
struct EventEcho;

impl reseau::event::Handler for EventEcho {
    fn connected(&mut self, conn: &mut reseau::event::Conn<'_>) {
        // Room for a bulk stream's worth in flight before reading pauses: fewer
        // mute/unmute round trips through epoll.
        let _ = conn.set_watermarks(1 << 20, 256 << 10);
    }
    fn received(&mut self, conn: &mut reseau::event::Conn<'_>, data: &[u8]) {
        let _ = conn.send(data);
    }
    fn throttled(&mut self, conn: &mut reseau::event::Conn<'_>) {
        conn.mute();
    }
    fn unthrottled(&mut self, conn: &mut reseau::event::Conn<'_>) {
        conn.unmute();
    }
}

fn serve_event(o: &Opts) -> ! {
    use reseau::event::{Runtime, ServerOptions};
    let fail = |e: reseau::Error| -> ! {
        eprintln!("echo_server: listen {}: {e}", o.addr);
        exit(1)
    };
    // HOST:PORT as the other modes take it (names resolved, `:0` dual-stack), then
    // handed to the event loops.
    let ln = reseau::tcp::listen_on("tcp", &o.addr).unwrap_or_else(|e| fail(e));
    let ln = std::net::TcpListener::from(std::os::fd::OwnedFd::from(ln));
    let mut b = Runtime::builder();
    if let Some(n) = o.threads {
        b = b.threads(n);
    }
    let rt = b.build().unwrap_or_else(|e| {
        eprintln!("echo_server: event runtime: {e}");
        exit(1)
    });
    let server = rt
        .serve(
            ln,
            ServerOptions {
                // Handshakes advance on readiness on the loops, like the data.
                tls: o.tls.then(|| reseau::tls::Config {
                    cert_file: o.cert.as_ref().map(Into::into),
                    key_file: o.key.as_ref().map(Into::into),
                    ..reseau::tls::Config::default()
                }),
                ..ServerOptions::default()
            },
            |_| EventEcho,
        )
        .unwrap_or_else(|e| fail(e));
    announce(server.local_addr());
    loop {
        thread::park();
    }
}

fn main() {
    let o = parse();
    let bufsize = o.buf;
    if let Some(path) = &o.unix {
        let ln = reseau::unix::listen(path).unwrap_or_else(|e| {
            eprintln!("echo_server: listen {path}: {e}");
            exit(1)
        });
        announce(path);
        serve(|| ln.accept(), move |c| echo(c, bufsize));
    }
    if o.facade {
        serve_facade(&o);
    }
    if o.event {
        serve_event(&o);
    }
    if o.bare_mio {
        if o.tls {
            usage();
        }
        let ln = std::net::TcpListener::bind(&o.addr).unwrap_or_else(|e| {
            eprintln!("echo_server: listen {}: {e}", o.addr);
            exit(1)
        });
        announce(ln.local_addr().expect("bound address"));
        let n = o
            .threads
            .unwrap_or_else(|| thread::available_parallelism().map_or(2, |n| n.get()));
        bare_mio_echo::serve(ln, n);
    }
    let fail = |e: reseau::Error| -> ! {
        eprintln!("echo_server: listen {}: {e}", o.addr);
        exit(1)
    };
    if o.tls {
        let config = reseau::tls::Config {
            cert_file: o.cert.as_ref().map(Into::into),
            key_file: o.key.as_ref().map(Into::into),
            ..reseau::tls::Config::default()
        };
        let ln = reseau::tls::listen_on("tcp", &o.addr, config).unwrap_or_else(|e| fail(e));
        announce(ln.local_addr().expect("bound address"));
        serve(|| ln.accept(), move |c| echo(c, bufsize));
    }
    let ln = reseau::tcp::listen_on("tcp", &o.addr).unwrap_or_else(|e| fail(e));
    announce(ln.local_addr().expect("bound address"));
    serve(|| ln.accept(), move |c| echo(c, bufsize));
}
