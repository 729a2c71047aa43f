//! The Julia `Sockets`-shaped facade: names follow Julia so code ports line by line.
//!
//! - Addresses: [`IPv4`], [`IPv6`], [`IPAddr`], [`InetAddr`], [`LOCALHOST`], the
//!   [`ip!`](crate::ip) literal macro, [`ipv6_field`]. Text follows Julia 1.12: IPv4
//!   shorthand such as `"127.1"` parses, leading zeros do not, and IPv6 prints per
//!   RFC 5952 without a dotted tail. Ordering never mixes families.
//! - DNS and interfaces: [`getalladdrinfo`], [`getaddrinfo`], [`getaddrinfo_of`],
//!   [`getnameinfo`], [`getipaddrs`], [`getipaddrs_of`], [`getipaddr`],
//!   [`getipaddr_of`], [`islinklocaladdr`]. They block the calling thread, as in
//!   Julia; failures are [`Error::Dns`](crate::Error::Dns) with the `EAI_*` code.
//! - Streams: [`TcpSocket`] (TCP, unix or TLS behind one `Read + BufRead + Write` type)
//!   from [`connect`] / [`connect_with`] / [`accept`]; [`TcpServer`] from [`listen`] /
//!   [`listen_with`] / [`listenany`] or [`TcpServer::new`] + [`bind`] +
//!   [`TcpServer::listen`]; [`accept_loop`]; [`getsockname`], [`getpeername`].
//!   Every form of address Julia takes is an [`Endpoint`]: a bare port is 127.0.0.1, a
//!   path is a unix socket. `tls: true` in [`ConnectOptions`] / [`ListenOptions`], and
//!   STARTTLS with [`TcpSocket::tls_upgrade`] / [`TcpSocket::tls_accept_upgrade`].
//! - Datagrams: [`UdpSocket`] with [`bind`] / [`bind_with`], [`send`], [`recv`],
//!   [`recvfrom`], [`join_multicast_group`], [`leave_multicast_group`], [`setopt`] —
//!   Julia's `UDPSocket`, shareable across threads, with deadlines and `close` that
//!   wakes a blocked receive.
//!
//! | Julia | reseau |
//! |---|---|
//! | `server = listen(8080)` | `let server = listen(8080u16)?;` |
//! | `port, server = listenany(0)` | `let (port, server) = listenany(0)?;` |
//! | `sock = connect("localhost", port)` | `let mut sock = connect(("localhost", port))?;` |
//! | `sock = connect("/tmp/x.sock")` | `let mut sock = connect(Path::new("/tmp/x.sock"))?;` |
//! | `sock = accept(server)` | `let mut sock = accept(&server)?;` |
//! | `write(sock, "hi"); readline(sock)` | `sock.write_all(b"hi")?; sock.read_line(&mut s)?;` |
//! | `closewrite(sock)` | `sock.closewrite()?` |
//! | `getsockname(sock)` | `getsockname(&sock)?` |
//! | `accept(server) do sock … end` | `accept_loop(Arc::new(server), \|sock\| …)` |
//!
//! ```
//! use reseau::ip;
//! use reseau::sockets::{self, IPv4, InetAddr};
//! let lo = ip!("127.0.0.1");
//! assert_eq!(lo, sockets::LOCALHOST);
//! assert_eq!(sockets::getaddrinfo("127.0.0.1")?, lo);
//! assert_eq!(ip!("::ffff:1.2.3.4").to_string(), "::ffff:102:304");
//! assert_eq!(InetAddr::new(IPv4::new(127, 0, 0, 1), 80).to_string(), "127.0.0.1:80");
//! assert!(sockets::getipaddrs(true)?.contains(&lo));
//! # Ok::<(), reseau::Error>(())
//! ```

mod addr;
mod dns;
pub(crate) mod readbuf;
mod server;
mod socket;
mod udp;

pub use addr::*;
pub use dns::*;
pub use server::{
    BACKLOG_DEFAULT, Bind, ListenOptions, SockName, TcpServer, accept, accept_loop, bind,
    getpeername, getsockname, listen, listen_with, listenany, listenany_on,
};
pub use socket::{ConnectOptions, Endpoint, Family, Target, TcpSocket, connect, connect_with};
pub use udp::{
    BindOptions, MAX_DATAGRAM, UdpOptions, UdpSocket, bind_with, join_multicast_group,
    join_multicast_group_on, leave_multicast_group, leave_multicast_group_on, recv, recvfrom, send,
    setopt,
};
