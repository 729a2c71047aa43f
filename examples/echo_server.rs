//! Echo server for the shared benchmark harness (`../shared/tools/netbench`).
//!
//! ```text
//! echo_server [--addr HOST:PORT] [--unix PATH] [--buf BYTES]
//! ```
//! Prints exactly `listening on IP:PORT` (or `listening on PATH`) as its first stdout
//! line, then echoes every connection, one thread each, until killed. `HOST` must be an
//! IP literal until the resolver lands.

use std::io::Write;
use std::net::SocketAddr;
use std::process::exit;
use std::thread;

struct Opts {
    addr: String,
    unix: Option<String>,
    buf: usize,
}

fn usage() -> ! {
    eprintln!("usage: echo_server [--addr IP:PORT] [--unix PATH] [--buf BYTES]");
    exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:0".into(),
        unix: None,
        buf: 64 * 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => o.addr = val(),
            "--unix" => o.unix = Some(val()),
            "--buf" => o.buf = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
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

fn serve<C: EchoConn + Send + 'static>(
    accept: impl Fn() -> reseau::Result<C>,
    bufsize: usize,
) -> ! {
    loop {
        match accept() {
            Ok(c) => {
                if let Err(e) = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || echo(c, bufsize))
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

fn main() {
    let o = parse();
    if let Some(path) = &o.unix {
        let ln = reseau::unix::listen(path).unwrap_or_else(|e| {
            eprintln!("echo_server: listen {path}: {e}");
            exit(1)
        });
        announce(path);
        serve(|| ln.accept(), o.buf);
    }
    let addr: SocketAddr = o.addr.parse().unwrap_or_else(|_| usage());
    let ln = reseau::tcp::listen(addr).unwrap_or_else(|e| {
        eprintln!("echo_server: listen {addr}: {e}");
        exit(1)
    });
    announce(ln.local_addr().expect("bound address"));
    serve(|| ln.accept(), o.buf);
}
