//! Address-family policy and RFC 8305 interleaving.

use std::net::IpAddr;

use crate::{Error, Result};

/// Which address families a dial may use, and in what order.
///
/// The default (`prefer_ipv6: false`, both allowed) keeps the resolver's order, which
/// for the system resolver is already RFC 6724's (IPv6 first where it is routable):
/// `prefer_ipv6` is a switch to force IPv6 first, not "prefer IPv4" when off. This is
/// Reseau's `ResolverPolicy` default and Go's behaviour.
///
/// ```
/// use std::net::IpAddr;
/// use reseau::resolve::Policy;
/// let v4: IpAddr = "127.0.0.1".parse().unwrap();
/// let v6: IpAddr = "::1".parse().unwrap();
/// let p = Policy { prefer_ipv6: true, ..Policy::default() };
/// assert_eq!(p.apply("h", vec![v4, v6])?, vec![v6, v4]);
/// let v4_only = Policy { allow_ipv6: false, ..Policy::default() };
/// assert_eq!(v4_only.apply("h", vec![v6, v4])?, vec![v4]);
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Move IPv6 addresses before IPv4 ones (stable: each family keeps its order).
    pub prefer_ipv6: bool,
    /// Keep IPv4 addresses.
    pub allow_ipv4: bool,
    /// Keep IPv6 addresses.
    pub allow_ipv6: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            prefer_ipv6: false,
            allow_ipv4: true,
            allow_ipv6: true,
        }
    }
}

impl Policy {
    /// Checks that at least one family is allowed (call before any I/O).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when both `allow_ipv4` and `allow_ipv6` are false.
    pub fn validate(&self) -> Result<()> {
        if !self.allow_ipv4 && !self.allow_ipv6 {
            return Err(Error::InvalidArgument(
                "policy allows neither IPv4 nor IPv6".to_string(),
            ));
        }
        Ok(())
    }

    /// Whether `ip`'s family is allowed.
    pub fn allows(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.allow_ipv4,
            IpAddr::V6(_) => self.allow_ipv6,
        }
    }

    /// Filters `addrs` (the answer for `host`) by family and orders them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] as [`validate`](Policy::validate);
    /// [`Error::Lookup`] `no suitable address` (name = `host`) when nothing is left.
    pub fn apply(&self, host: &str, addrs: Vec<IpAddr>) -> Result<Vec<IpAddr>> {
        self.validate()?;
        let mut out: Vec<IpAddr> = addrs.into_iter().filter(|ip| self.allows(ip)).collect();
        if out.is_empty() {
            return Err(Error::Lookup {
                msg: "no suitable address".to_string(),
                name: host.to_string(),
            });
        }
        if self.prefer_ipv6 {
            // Stable: false (IPv6) sorts before true (IPv4).
            out.sort_by_key(|ip| ip.is_ipv4());
        }
        Ok(out)
    }
}

/// Interleaves address families as RFC 8305 §4 asks: one address of the first
/// address's family, then one of the other, and so on; when one family runs out the
/// rest of the other follows. Each family keeps its relative order.
///
/// ```
/// use std::net::IpAddr;
/// use reseau::resolve::interleave;
/// let ips: Vec<IpAddr> = ["::1", "fe80::1", "127.0.0.1", "127.0.0.2"]
///     .iter().map(|s| s.parse().unwrap()).collect();
/// let got: Vec<String> = interleave(&ips).iter().map(|ip| ip.to_string()).collect();
/// assert_eq!(got, ["::1", "127.0.0.1", "fe80::1", "127.0.0.2"]);
/// ```
pub fn interleave(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let v4_first = first.is_ipv4();
    let (mut a, mut b) = (
        addrs.iter().filter(|ip| ip.is_ipv4() == v4_first),
        addrs.iter().filter(|ip| ip.is_ipv4() != v4_first),
    );
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y).copied()),
        }
    }
}
