//! A server that takes its listening socket from systemd socket activation: the
//! listener arrives as descriptor 3, announced by `LISTEN_FDS=1` and `LISTEN_PID=<our
//! pid>` (`sd_listen_fds(3)`), and is adopted with `TcpServer::try_from(OwnedFd)`, which
//! checks that it really is a listening stream socket and makes it non-blocking.
//!
//! `cargo run --example systemd_listener` plays both parts on loopback: it binds
//! 127.0.0.1:0, starts itself as the "service" with the listener on fd 3 (through
//! `sh -c 'LISTEN_PID=$$ … exec'`, so the variable names the service's own pid, as
//! systemd does), connects, and checks the echo. Under systemd, a `.socket` unit with
//! `ListenStream=` and this binary run with `--serve` in the matching `.service` unit
//! do the same.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use reseau::sockets::{self, TcpServer};

/// The first socket systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The inherited listener, if the activation variables are meant for this process.
fn inherited() -> reseau::Result<Option<TcpServer>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !ours || count < 1 {
        return Ok(None);
    }
    // SAFETY: the socket-activation protocol hands descriptors 3..3+LISTEN_FDS to this
    // process (LISTEN_PID checked above); nothing else in it owns descriptor 3.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    Ok(Some(TcpServer::try_from(fd)?))
}

/// The service: echo lines on the inherited listener, one connection, then exit.
fn serve() -> reseau::Result<()> {
    let Some(server) = inherited()? else {
        eprintln!("systemd_listener: no LISTEN_FDS for this process");
        std::process::exit(2);
    };
    let (ip, port) = sockets::getsockname(&server)?;
    println!("service: adopted the listener on {ip}:{port} (fd {LISTEN_FDS_START})");
    server.set_deadline(Some(Instant::now() + Duration::from_secs(20)))?;
    let conn = server.accept()?;
    conn.set_deadline(Some(Instant::now() + Duration::from_secs(20)))?;
    let line = conn.readline(true)?;
    std::io::Write::write_all(&mut &conn, format!("echo: {line}").as_bytes())?;
    conn.close()?;
    Ok(())
}

/// The "systemd" side: bind, start the service with the socket on fd 3, talk to it.
fn launch() -> reseau::Result<()> {
    let ln = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = ln.local_addr()?;
    let listener_fd = ln.as_raw_fd();
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --serve")
        .arg(exe);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec. The
    // copy on 3 must not be close-on-exec: dup2 clears the flag; if the listener
    // already is 3, fcntl does.
    unsafe {
        cmd.pre_exec(move || {
            let r = if listener_fd == LISTEN_FDS_START {
                libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, 0)
            } else {
                libc::dup2(listener_fd, LISTEN_FDS_START)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(ln); // the service owns the listener now
    let sock = sockets::connect(addr)?;
    sock.set_deadline(Some(Instant::now() + Duration::from_secs(20)))?;
    std::io::Write::write_all(&mut &sock, b"hello from the launcher\n")?;
    let reply = sock.readline(false)?;
    println!("launcher: {reply}");
    assert_eq!(reply, "echo: hello from the launcher");
    let status = child.wait()?;
    assert!(status.success(), "service failed: {status}");
    println!("launcher: the service exited cleanly");
    Ok(())
}

fn main() -> reseau::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        serve()
    } else {
        launch()
    }
}
