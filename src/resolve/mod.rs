//! Name resolution (Reseau's `HostResolvers`, Go's `net` address helpers).
//!
//! - `host:port` strings: [`split_host_port`], [`join_host_port`], [`parse_port`],
//!   [`lookup_port`], IP literals with IPv6 zones: [`parse_literal`], [`scope_id`]
//!   (Go's texts and edge cases).
//! - [`Resolver`]s: [`SystemResolver`] (`getaddrinfo` on a worker pool, so a deadline
//!   can abandon it), [`StaticResolver`] (a host map for tests), [`CachingResolver`]
//!   (TTL, stale-while-refresh, negative caching, LRU, single-flight).
//! - [`Policy`] (families allowed and preferred) and [`interleave`] (RFC 8305 §4).
//!
//! IP literals never reach a resolver: callers try [`parse_literal`] first.
//!
//! ```
//! use std::net::IpAddr;
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use reseau::resolve::{self, Policy, Resolver, StaticResolver};
//!
//! let (host, port) = resolve::split_host_port("api.test:https")?;
//! assert_eq!(resolve::lookup_port("tcp", &port)?, 443);
//! assert_eq!(resolve::parse_literal(&host)?, None); // a name: ask a resolver
//!
//! let map = Arc::new(StaticResolver::new());
//! map.insert("api.test", ["::1".parse::<IpAddr>().unwrap(), "127.0.0.1".parse().unwrap()]);
//! let r: Arc<dyn Resolver> = map;
//! let addrs = r.lookup_until(&host, Some(Instant::now() + Duration::from_secs(1)))?;
//! let v4 = Policy { allow_ipv6: false, ..Policy::default() };
//! assert_eq!(v4.apply(&host, addrs)?, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
//! # Ok::<(), reseau::Error>(())
//! ```

mod cache;
mod dial;
mod hostport;
pub(crate) use hostport::split;
mod policy;
pub(crate) mod pool;
mod resolver;

pub use cache::{CacheStats, CachingResolver};
pub use dial::{DEFAULT_ATTEMPT_DELAY, Dialer, ListenConfig};
pub(crate) use dial::{Net, literal_target, usable, wrap};
pub use hostport::{
    join_host_port, lookup_port, parse_literal, parse_port, scope_id, split_host_port,
};
pub use policy::{Policy, interleave};
pub use resolver::{Resolver, StaticResolver, SystemResolver};
pub(crate) use resolver::{check_host, getaddrinfo};
