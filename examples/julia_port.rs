//! The README's porting-guide example, compiled and run: a Julia `Sockets` program
//! (an uppercasing line server, a client, a TLS client) ported line by line, in a
//! `main` that returns `reseau::Result` so `?` takes reseau and `std::io` errors alike.
//!
//! `cargo run --example julia_port` (TLS uses the test PKI in `certs/`).

use std::io::Write;
use std::sync::Arc;

use reseau::sockets::{
    ConnectOptions, ListenOptions, accept, accept_loop, connect, connect_with, getpeername,
    listen_with, listenany,
};

fn main() -> reseau::Result<()> {
    let (port, server) = listenany(8000)?;
    let server = Arc::new(server);
    accept_loop(server.clone(), |sock| {
        std::thread::spawn(move || {
            while let Ok(line) = sock.readline(true) {
                if line.is_empty() || (&sock).write_all(line.to_uppercase().as_bytes()).is_err() {
                    break;
                }
            }
        });
    });
    let mut sock = connect(("localhost", port))?; // every address, RFC 8305 Happy Eyeballs
    writeln!(sock, "hello")?; // a std::io call: `?` converts its io::Error
    let reply = sock.readline(false)?; // "HELLO"
    let (ip, p) = getpeername(&sock)?; // (ip"127.0.0.1", port)
    println!("readline(sock) = {reply:?}; getpeername(sock) = ({ip}, {p})");
    assert_eq!(reply, "HELLO");

    // tls = connect("localhost", tls_port; tls=true, cacert=…)
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let tls_server = listen_with(
        0u16,
        &ListenOptions {
            tls: true,
            cert_file: Some(format!("{certs}/server.pem").into()),
            key_file: Some(format!("{certs}/server.key").into()),
            ..ListenOptions::default()
        },
    )?;
    let (_, tls_port) = reseau::sockets::getsockname(&tls_server)?;
    let t = std::thread::spawn(move || -> reseau::Result<String> {
        let conn = accept(&tls_server)?;
        conn.readline(false)
    });
    let opts = ConnectOptions {
        tls: true,
        ca_file: Some(format!("{certs}/ca.pem").into()),
        ..ConnectOptions::default()
    };
    let mut tls = connect_with(("localhost", tls_port), &opts)?;
    writeln!(tls, "over TLS")?;
    let got = t.join().expect("TLS server thread")?;
    println!(
        "the TLS server read {got:?} ({:?})",
        tls.connection_state().map(|s| s.version)
    );
    server.close()?;
    Ok(())
}
