//! Two threads talking over a unix-domain socket with the Julia-style facade:
//! `cargo run --example unix_ipc`.
//!
//! Julia:
//! ```julia
//! server = listen("/tmp/ipc.sock")
//! @async begin
//!     sock = accept(server)
//!     while !eof(sock)
//!         write(sock, uppercase(readline(sock)) * "\n")
//!     end
//! end
//! sock = connect("/tmp/ipc.sock")
//! ```

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use reseau::sockets::{accept_loop, connect, listen};

fn main() -> reseau::Result<()> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("reseau-ipc-{}.sock", std::process::id()));
    let server = Arc::new(listen(path.clone())?);
    let serving = accept_loop(server.clone(), |mut sock| {
        std::thread::spawn(move || {
            let mut line = String::new();
            while sock.read_line(&mut line).is_ok_and(|n| n > 0) {
                if sock.write_all(line.to_uppercase().as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        });
    });

    let mut sock = connect(path.clone())?;
    for msg in ["hello", "over a unix socket", "bye"] {
        writeln!(sock, "{msg}").map_err(|source| reseau::Error::Sys {
            op: "write",
            source,
        })?;
        let mut reply = String::new();
        sock.read_line(&mut reply)
            .map_err(|source| reseau::Error::Sys { op: "read", source })?;
        println!("{msg:?} -> {:?}", reply.trim_end());
    }
    sock.close()?;
    server.close()?;
    serving.join().expect("accept loop")?;
    println!("socket file removed: {}", !path.exists());
    Ok(())
}
