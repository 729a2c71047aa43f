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

pub use addr::*;
pub use dns::*;
