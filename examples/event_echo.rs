//! A short tour of the event API (`reseau::event`): an echo server with back-pressure,
//! an idle timeout and a connection limit, and an event-driven client that sends a
//! few lines, counts the echoes and closes.
//!
//! ```text
//! cargo run --example event_echo
//! ```

use std::sync::mpsc;
use std::time::Duration;

use reseau::event::{Conn, ConnectOptions, Handler, Runtime, SendToken, ServerOptions};

/// Server side: echo; stop reading while the peer does not keep up; drop silent peers.
struct Echo;

impl Handler for Echo {
    fn connected(&mut self, conn: &mut Conn<'_>) {
        conn.set_idle_timeout(Some(Duration::from_secs(30)));
    }
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        let _ = conn.send(data);
    }
    fn throttled(&mut self, conn: &mut Conn<'_>) {
        conn.mute();
    }
    fn unthrottled(&mut self, conn: &mut Conn<'_>) {
        conn.unmute();
    }
    fn idle_timeout(&mut self, conn: &mut Conn<'_>) {
        conn.close();
    }
}

/// Client side: three framed lines out, wait for all echoed bytes, then close.
struct Client {
    want: usize,
    got: usize,
    done: mpsc::Sender<String>,
}

impl Handler for Client {
    fn connected(&mut self, conn: &mut Conn<'_>) {
        let lines: [&[u8]; 3] = [b"one\n", b"two\n", b"three\n"];
        self.want = lines.iter().map(|l| l.len()).sum();
        // One writev for all three.
        let _ = conn.send_vectored(&lines);
    }
    fn connect_failed(&mut self, err: reseau::Error) {
        let _ = self.done.send(format!("connect failed: {err}"));
    }
    fn received(&mut self, conn: &mut Conn<'_>, data: &[u8]) {
        print!("echo: {}", String::from_utf8_lossy(data));
        self.got += data.len();
        if self.got == self.want {
            conn.close();
        }
    }
    fn sent(&mut self, _conn: &mut Conn<'_>, token: SendToken) {
        println!("send #{} reached the kernel", token.id());
    }
    fn closed(&mut self) {
        let _ = self.done.send(format!("closed after {} bytes", self.got));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().threads(2).build()?;
    let server = rt.listen(
        "127.0.0.1:0".parse()?,
        ServerOptions {
            tls: None,
            max_connections: 1000,
        },
        |_peer| Echo,
    )?;
    println!("listening on {}", server.local_addr());

    let (tx, rx) = mpsc::channel();
    let opts = ConnectOptions {
        connection_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    };
    let client = Client {
        want: 0,
        got: 0,
        done: tx,
    };
    rt.connect("localhost", server.local_addr().port(), opts, client)?;
    println!("{}", rx.recv_timeout(Duration::from_secs(10))?);
    Ok(())
}
