//! STARTTLS on loopback, SMTP-style: a plaintext greeting, `STARTTLS`, then the same
//! connection continues under TLS. `cargo run --example starttls`.
//!
//! The client refuses to upgrade while unread plaintext is buffered: bytes an attacker
//! injected before the handshake would otherwise be read as if they came over TLS
//! (CVE-2021-23222).

use std::io::{BufRead, Write};

use reseau::sockets::{accept, connect, listenany};
use reseau::{Error, tls};

fn io(source: std::io::Error) -> Error {
    Error::Sys { op: "io", source }
}

fn main() -> reseau::Result<()> {
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let server_cfg = tls::Config {
        cert_file: Some(format!("{certs}/server.pem").into()),
        key_file: Some(format!("{certs}/server.key").into()),
        ..tls::Config::default()
    };
    let client_cfg = tls::Config {
        ca_file: Some(format!("{certs}/ca.pem").into()),
        ..tls::Config::default()
    };

    let (port, server) = listenany(0)?;
    let srv = std::thread::spawn(move || -> reseau::Result<()> {
        let mut sock = accept(&server)?;
        sock.write_all(b"220 ready\r\n").map_err(io)?;
        let mut line = String::new();
        sock.read_line(&mut line).map_err(io)?;
        assert_eq!(line, "STARTTLS\r\n");
        sock.write_all(b"220 go ahead\r\n").map_err(io)?;
        sock.tls_accept_upgrade(&server_cfg)?;
        line.clear();
        sock.read_line(&mut line).map_err(io)?;
        sock.write_all(format!("250 got {} over TLS\r\n", line.trim_end()).as_bytes())
            .map_err(io)?;
        Ok(())
    });

    let mut sock = connect(("localhost", port))?;
    let mut line = String::new();
    sock.read_line(&mut line).map_err(io)?;
    print!("S: {line}");
    sock.write_all(b"STARTTLS\r\n").map_err(io)?;
    line.clear();
    sock.read_line(&mut line).map_err(io)?;
    print!("S: {line}");
    sock.tls_upgrade(&client_cfg)?; // server_name "localhost", from the connect
    let st = sock.connection_state().expect("tls");
    println!("-- upgraded: {} {}", st.version, st.cipher_suite);
    sock.write_all(b"MAIL FROM:<a@example.test>\r\n")
        .map_err(io)?;
    line.clear();
    sock.read_line(&mut line).map_err(io)?;
    print!("S: {line}");
    srv.join().expect("server")?;
    Ok(())
}
