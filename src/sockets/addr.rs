//! IP address types of the Julia facade: [`IPv4`], [`IPv6`], [`IPAddr`], [`InetAddr`],
//! the [`ip!`](crate::ip) literal macro and [`ipv6_field`].
//!
//! The types mirror Julia's `Sockets.IPv4`/`IPv6`/`IPAddr`/`InetAddr`: an address is a
//! plain integer in host byte order (most significant byte = first octet), text is
//! parsed with the Julia 1.12 rules (made strict where Julia silently accepted garbage)
//! and printed the way Julia prints it. Conversions to and from the `std::net` types
//! are free.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::{Error, Result};

/// An IPv4 address: a `u32` in host byte order (`IPv4(0x7f00_0001)` is 127.0.0.1),
/// Julia's `Sockets.IPv4`.
///
/// Ordered by value (Julia's `isless`); ordering never mixes families, see
/// [`IPAddr`]. `Display` prints the dotted quad, `Debug` prints Julia's `ip"…"` form.
///
/// ```
/// use reseau::sockets::IPv4;
/// let ip = IPv4::new(127, 0, 0, 1);
/// assert_eq!(ip, IPv4(0x7f00_0001));
/// assert_eq!(u32::from(ip), 0x7f00_0001);
/// assert_eq!(ip.to_string(), "127.0.0.1");
/// assert_eq!(format!("{ip:?}"), r#"ip"127.0.0.1""#);
/// assert_eq!("127.1".parse::<IPv4>()?, ip); // Julia 1.12 shorthand
/// assert!(IPv4::new(1, 2, 3, 4) < IPv4::new(1, 2, 3, 7));
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IPv4(pub u32);

/// An IPv6 address: a `u128` in host byte order (`IPv6(1)` is `::1`), Julia's
/// `Sockets.IPv6`. No scope (zone) id: like Julia, the facade drops it.
///
/// Ordered by value; `Display` follows RFC 5952 **without** a dotted IPv4 tail (as
/// Julia does), `Debug` prints `ip"…"`.
///
/// ```
/// use reseau::sockets::IPv6;
/// let ip: IPv6 = "2001:0db8::0001".parse()?;
/// assert_eq!(ip, IPv6::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
/// assert_eq!(ip.to_string(), "2001:db8::1");
/// assert_eq!("::ffff:1.2.3.4".parse::<IPv6>()?.to_string(), "::ffff:102:304");
/// assert_eq!(u128::from(IPv6(1)), 1);
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IPv6(pub u128);

/// An IPv4 or IPv6 address (Julia's abstract `IPAddr`).
///
/// Equality and hashing are structural: an IPv4 address never equals an IPv6 one, not
/// even its IPv4-mapped form. **Ordering exists only within one family**, as in Julia
/// (where sorting a mixed vector is a `MethodError`): `partial_cmp` across families is
/// `None`, so `<` is `false` both ways and `IPAddr` is not `Ord` (a `Vec<IPAddr>` has
/// no `sort()`). This differs from `std::net::IpAddr`, which orders every V4 before
/// every V6.
///
/// `FromStr` picks IPv6 when the text contains a `:`, IPv4 otherwise (as Julia's
/// `parse(IPAddr, s)`), so the error names the right family's rule.
///
/// ```
/// use reseau::ip;
/// use reseau::sockets::{IPAddr, IPv4, IPv6};
/// let a = ip!("1.2.3.4");
/// assert_eq!(a, IPAddr::V4(IPv4::new(1, 2, 3, 4)));
/// assert_eq!(a, IPv4::new(1, 2, 3, 4)); // compares with the concrete types too
/// assert!(a < ip!("2.3.4.5"));
/// assert_eq!(a.partial_cmp(&ip!("::1")), None);
/// assert_eq!([a < ip!("::1"), a > ip!("::1")], [false, false]);
/// assert_ne!(ip!("::ffff:1.2.3.4"), a);
/// assert_eq!("::1".parse::<IPAddr>()?, IPv6(1));
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum IPAddr {
    /// An IPv4 address.
    V4(IPv4),
    /// An IPv6 address.
    V6(IPv6),
}

/// An IP address and a port (Julia's `Sockets.InetAddr`).
///
/// `Display` is `127.0.0.1:80` / `[::1]:80` (the `std::net::SocketAddr` and Go form;
/// Julia prints only its `show` form), `Debug` is Julia's `show` without the module
/// prefix: `InetAddr{IPv4}(ip"127.0.0.1", 80)`. `FromStr` takes the `Display` form.
///
/// ```
/// use reseau::sockets::{InetAddr, IPv4, LOCALHOST};
/// let a = InetAddr::new(IPv4::new(127, 0, 0, 1), 1024);
/// assert_eq!(a.host, LOCALHOST);
/// assert_eq!(a.port, 1024);
/// assert_eq!(a.to_string(), "127.0.0.1:1024");
/// assert_eq!(format!("{a:?}"), r#"InetAddr{IPv4}(ip"127.0.0.1", 1024)"#);
/// assert_eq!(InetAddr::parse("127.0.0.1", 1024)?, a);
/// assert_eq!("[::1]:80".parse::<InetAddr>()?.to_string(), "[::1]:80");
/// let std_addr: std::net::SocketAddr = a.into();
/// assert_eq!(InetAddr::from(std_addr), a);
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InetAddr {
    /// The address.
    pub host: IPAddr,
    /// The port.
    pub port: u16,
}

/// 127.0.0.1, Julia's `Sockets.localhost` (IPv4 only, as in Julia).
///
/// ```
/// assert_eq!(reseau::sockets::LOCALHOST.to_string(), "127.0.0.1");
/// ```
pub const LOCALHOST: IPv4 = IPv4::new(127, 0, 0, 1);

/// `::1`, the IPv6 loopback address (Julia's `IPv6(1)`).
///
/// ```
/// assert_eq!(reseau::sockets::LOCALHOST6.to_string(), "::1");
/// ```
pub const LOCALHOST6: IPv6 = IPv6(1);

/// Parses an IP literal into an [`IPAddr`] (Julia's `ip"…"` string macro).
///
/// The argument is any expression giving a `&str`; it is parsed at run time with
/// [`IPAddr`]'s `FromStr` (Julia 1.12 rules, see [`IPv4`]'s and [`IPv6`]'s
/// `from_str`). Unlike Julia, which parses at compile time, an invalid literal is found
/// when the macro runs.
///
/// # Panics
/// If the text is not a valid IPv4 or IPv6 literal; the message contains the parse
/// error. Use `str::parse::<IPAddr>()` to handle bad input.
///
/// ```
/// use reseau::ip;
/// use reseau::sockets::{IPAddr, IPv4, IPv6};
/// assert_eq!(ip!("127.0.0.1"), IPAddr::V4(IPv4::new(127, 0, 0, 1)));
/// assert_eq!(ip!("::1"), IPAddr::V6(IPv6(1)));
/// ```
///
/// ```should_panic
/// let _ = reseau::ip!("01.2.3.4"); // leading zero: rejected
/// ```
#[macro_export]
macro_rules! ip {
    ($text:expr) => {{
        let text: &str = $text;
        match <$crate::sockets::IPAddr as ::core::str::FromStr>::from_str(text) {
            ::core::result::Result::Ok(ip) => ip,
            ::core::result::Result::Err(e) => {
                ::core::panic!("ip!: invalid IP literal {:?}: {}", text, e)
            }
        }
    }};
}

// ---------------------------------------------------------------------------------
// Constructors and conversions

impl IPv4 {
    /// 0.0.0.0 (Julia's `IPv4(0)`: listen on every IPv4 interface).
    pub const ANY: IPv4 = IPv4(0);

    /// The address `a.b.c.d`.
    ///
    /// ```
    /// assert_eq!(reseau::sockets::IPv4::new(10, 0, 0, 1).to_string(), "10.0.0.1");
    /// ```
    pub const fn new(a: u8, b: u8, c: u8, d: u8) -> IPv4 {
        IPv4(u32::from_be_bytes([a, b, c, d]))
    }

    /// `a.b.c.d` from integers of any size, as Julia's `IPv4(a, b, c, d)`.
    ///
    /// ```
    /// use reseau::sockets::IPv4;
    /// assert_eq!(IPv4::try_new(192, 255, 255, 1)?, IPv4::new(192, 255, 255, 1));
    /// assert!(IPv4::try_new(192, 255, 255, 256).is_err());
    /// # Ok::<(), reseau::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] `IPv4 field out of range (must be 0-255)` when a field
    /// is negative or above 255.
    pub fn try_new(a: i64, b: i64, c: i64, d: i64) -> Result<IPv4> {
        let mut octets = [0u8; 4];
        for (o, v) in octets.iter_mut().zip([a, b, c, d]) {
            *o = u8::try_from(v).map_err(|_| {
                Error::InvalidArgument("IPv4 field out of range (must be 0-255)".to_string())
            })?;
        }
        Ok(IPv4(u32::from_be_bytes(octets)))
    }

    /// The four octets, first octet first.
    ///
    /// ```
    /// assert_eq!(reseau::sockets::IPv4::new(1, 2, 3, 4).octets(), [1, 2, 3, 4]);
    /// ```
    pub const fn octets(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl IPv6 {
    /// `::` (Julia's `IPv6(0)`: listen on every IPv6 interface).
    pub const ANY: IPv6 = IPv6(0);

    /// The address with the eight 16-bit groups `a:b:c:d:e:f:g:h`.
    ///
    /// ```
    /// use reseau::sockets::IPv6;
    /// assert_eq!(IPv6::new(0, 0, 0, 0, 0, 0, 0, 1), IPv6(1));
    /// assert_eq!(IPv6::new(1, 1, 1, 1, 1, 1, 1, 1).to_string(), "1:1:1:1:1:1:1:1");
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub const fn new(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> IPv6 {
        let groups = [a, b, c, d, e, f, g, h];
        let mut host = 0u128;
        let mut i = 0;
        while i < 8 {
            host = (host << 16) | groups[i] as u128;
            i += 1;
        }
        IPv6(host)
    }

    /// The address from eight integer groups of any size, as Julia's `IPv6(a, …, h)`.
    ///
    /// ```
    /// use reseau::sockets::IPv6;
    /// assert_eq!(IPv6::try_new([0, 0, 0, 0, 0, 0, 0, 1])?, IPv6(1));
    /// assert!(IPv6::try_new([1, 1, 1, 1, 1, 1, 1, 65536]).is_err());
    /// # Ok::<(), reseau::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] `IPv6 field out of range (must be 0-65535)` when a
    /// group is negative or above 0xffff.
    pub fn try_new(groups: [i64; 8]) -> Result<IPv6> {
        let mut host = 0u128;
        for v in groups {
            let g = u16::try_from(v).map_err(|_| {
                Error::InvalidArgument("IPv6 field out of range (must be 0-65535)".to_string())
            })?;
            host = (host << 16) | u128::from(g);
        }
        Ok(IPv6(host))
    }

    /// The eight 16-bit groups, first group first (see also [`ipv6_field`], which
    /// counts from the last group).
    ///
    /// ```
    /// use reseau::sockets::IPv6;
    /// assert_eq!(IPv6(1).segments(), [0, 0, 0, 0, 0, 0, 0, 1]);
    /// ```
    pub const fn segments(self) -> [u16; 8] {
        let mut out = [0u16; 8];
        let mut i = 0;
        while i < 8 {
            out[i] = (self.0 >> (16 * (7 - i))) as u16;
            i += 1;
        }
        out
    }
}

/// Group `i` of `ip`, counting from the **least** significant group: `i = 0` is the
/// last group, `i = 7` the first (Julia's `Sockets.ipv6_field`).
///
/// ```
/// use reseau::sockets::{ipv6_field, IPv6};
/// let ip: IPv6 = "1:2:3:4:5:6:7:8".parse()?;
/// assert_eq!(ipv6_field(&ip, 0)?, 8);
/// assert_eq!(ipv6_field(&ip, 7)?, 1);
/// assert!(ipv6_field(&ip, 8).is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] when `i > 7` (Julia: `BoundsError`).
pub fn ipv6_field(ip: &IPv6, i: usize) -> Result<u16> {
    if i > 7 {
        return Err(Error::InvalidArgument(format!(
            "ipv6_field: index {i} out of range 0..=7"
        )));
    }
    Ok((ip.0 >> (16 * i)) as u16)
}

impl From<u32> for IPv4 {
    fn from(host: u32) -> IPv4 {
        IPv4(host)
    }
}

impl From<IPv4> for u32 {
    fn from(ip: IPv4) -> u32 {
        ip.0
    }
}

/// Julia's `IPv4(::Integer)`.
///
/// ```
/// use reseau::sockets::IPv4;
/// assert_eq!(IPv4::try_from(0x0102_0304_i64)?, IPv4::new(1, 2, 3, 4));
/// assert!(IPv4::try_from(-1_i64).is_err());
/// assert!(IPv4::try_from(u32::MAX as i64 + 1).is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
impl TryFrom<i64> for IPv4 {
    type Error = Error;

    /// # Errors
    /// [`Error::InvalidArgument`] `IPv4 address must be positive` or
    /// `IPv4 address must fit within 32 bits`.
    fn try_from(host: i64) -> Result<IPv4> {
        if host < 0 {
            return Err(Error::InvalidArgument(
                "IPv4 address must be positive".to_string(),
            ));
        }
        u32::try_from(host)
            .map(IPv4)
            .map_err(|_| Error::InvalidArgument("IPv4 address must fit within 32 bits".to_string()))
    }
}

impl From<u128> for IPv6 {
    fn from(host: u128) -> IPv6 {
        IPv6(host)
    }
}

impl From<IPv6> for u128 {
    fn from(ip: IPv6) -> u128 {
        ip.0
    }
}

/// Julia's `IPv6(::Integer)` for signed input.
///
/// ```
/// use reseau::sockets::IPv6;
/// assert_eq!(IPv6::try_from(1_i128)?, IPv6(1));
/// assert!(IPv6::try_from(-1_i128).is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
impl TryFrom<i128> for IPv6 {
    type Error = Error;

    /// # Errors
    /// [`Error::InvalidArgument`] `IPv6 address must be positive`.
    fn try_from(host: i128) -> Result<IPv6> {
        u128::try_from(host)
            .map(IPv6)
            .map_err(|_| Error::InvalidArgument("IPv6 address must be positive".to_string()))
    }
}

impl From<Ipv4Addr> for IPv4 {
    fn from(ip: Ipv4Addr) -> IPv4 {
        IPv4(u32::from(ip))
    }
}

impl From<IPv4> for Ipv4Addr {
    fn from(ip: IPv4) -> Ipv4Addr {
        Ipv4Addr::from(ip.0)
    }
}

impl From<Ipv6Addr> for IPv6 {
    fn from(ip: Ipv6Addr) -> IPv6 {
        IPv6(u128::from(ip))
    }
}

impl From<IPv6> for Ipv6Addr {
    fn from(ip: IPv6) -> Ipv6Addr {
        Ipv6Addr::from(ip.0)
    }
}

impl From<IPv4> for IPAddr {
    fn from(ip: IPv4) -> IPAddr {
        IPAddr::V4(ip)
    }
}

impl From<IPv6> for IPAddr {
    fn from(ip: IPv6) -> IPAddr {
        IPAddr::V6(ip)
    }
}

impl From<Ipv4Addr> for IPAddr {
    fn from(ip: Ipv4Addr) -> IPAddr {
        IPAddr::V4(ip.into())
    }
}

impl From<Ipv6Addr> for IPAddr {
    fn from(ip: Ipv6Addr) -> IPAddr {
        IPAddr::V6(ip.into())
    }
}

/// Keeps the family: an IPv4-mapped `std` V6 address stays an [`IPv6`] (as in Julia).
impl From<IpAddr> for IPAddr {
    fn from(ip: IpAddr) -> IPAddr {
        match ip {
            IpAddr::V4(v4) => IPAddr::V4(v4.into()),
            IpAddr::V6(v6) => IPAddr::V6(v6.into()),
        }
    }
}

impl From<IPAddr> for IpAddr {
    fn from(ip: IPAddr) -> IpAddr {
        match ip {
            IPAddr::V4(v4) => IpAddr::V4(v4.into()),
            IPAddr::V6(v6) => IpAddr::V6(v6.into()),
        }
    }
}

impl TryFrom<IPAddr> for IPv4 {
    type Error = Error;

    /// # Errors
    /// [`Error::InvalidArgument`] for an IPv6 address.
    fn try_from(ip: IPAddr) -> Result<IPv4> {
        match ip {
            IPAddr::V4(v4) => Ok(v4),
            IPAddr::V6(v6) => Err(Error::InvalidArgument(format!(
                "{v6} is not an IPv4 address"
            ))),
        }
    }
}

impl TryFrom<IPAddr> for IPv6 {
    type Error = Error;

    /// # Errors
    /// [`Error::InvalidArgument`] for an IPv4 address.
    fn try_from(ip: IPAddr) -> Result<IPv6> {
        match ip {
            IPAddr::V6(v6) => Ok(v6),
            IPAddr::V4(v4) => Err(Error::InvalidArgument(format!(
                "{v4} is not an IPv6 address"
            ))),
        }
    }
}

impl IPAddr {
    /// True for an IPv4 address.
    ///
    /// ```
    /// assert!(reseau::ip!("10.0.0.1").is_ipv4());
    /// ```
    pub const fn is_ipv4(&self) -> bool {
        matches!(self, IPAddr::V4(_))
    }

    /// True for an IPv6 address.
    ///
    /// ```
    /// assert!(reseau::ip!("::1").is_ipv6());
    /// ```
    pub const fn is_ipv6(&self) -> bool {
        matches!(self, IPAddr::V6(_))
    }
}

impl PartialEq<IPv4> for IPAddr {
    fn eq(&self, other: &IPv4) -> bool {
        *self == IPAddr::V4(*other)
    }
}

impl PartialEq<IPAddr> for IPv4 {
    fn eq(&self, other: &IPAddr) -> bool {
        IPAddr::V4(*self) == *other
    }
}

impl PartialEq<IPv6> for IPAddr {
    fn eq(&self, other: &IPv6) -> bool {
        *self == IPAddr::V6(*other)
    }
}

impl PartialEq<IPAddr> for IPv6 {
    fn eq(&self, other: &IPAddr) -> bool {
        IPAddr::V6(*self) == *other
    }
}

/// Within one family by value; `None` across families (Julia has no cross-family
/// `isless`).
impl PartialOrd for IPAddr {
    fn partial_cmp(&self, other: &IPAddr) -> Option<Ordering> {
        match (self, other) {
            (IPAddr::V4(a), IPAddr::V4(b)) => Some(a.cmp(b)),
            (IPAddr::V6(a), IPAddr::V6(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::IPv4 {}
    impl Sealed for super::IPv6 {}
    impl Sealed for super::IPAddr {}
}

/// An address family usable as the type parameter of the `_of` functions
/// ([`getaddrinfo_of`](crate::sockets::getaddrinfo_of),
/// [`getipaddrs_of`](crate::sockets::getipaddrs_of),
/// [`getipaddr_of`](crate::sockets::getipaddr_of)) — Julia's `T::Type{<:IPAddr}`
/// argument. Implemented by [`IPv4`], [`IPv6`] and [`IPAddr`] (= either family);
/// sealed.
///
/// ```
/// use reseau::sockets::{IpFamily, IPAddr, IPv4, IPv6};
/// assert_eq!(IPv4::from_ipaddr(reseau::ip!("1.2.3.4")), Some(IPv4::new(1, 2, 3, 4)));
/// assert_eq!(IPv6::from_ipaddr(reseau::ip!("1.2.3.4")), None);
/// assert_eq!(<IPv6 as IpFamily>::NAME, "IPv6");
/// assert!(IPAddr::from_ipaddr(reseau::ip!("::1")).is_some());
/// ```
pub trait IpFamily:
    sealed::Sealed + Copy + Into<IPAddr> + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static
{
    /// The Julia type name: `"IPv4"`, `"IPv6"` or `"IPAddr"`.
    const NAME: &'static str;

    /// `ip` if it belongs to this family.
    fn from_ipaddr(ip: IPAddr) -> Option<Self>;
}

impl IpFamily for IPv4 {
    const NAME: &'static str = "IPv4";
    fn from_ipaddr(ip: IPAddr) -> Option<IPv4> {
        match ip {
            IPAddr::V4(v4) => Some(v4),
            IPAddr::V6(_) => None,
        }
    }
}

impl IpFamily for IPv6 {
    const NAME: &'static str = "IPv6";
    fn from_ipaddr(ip: IPAddr) -> Option<IPv6> {
        match ip {
            IPAddr::V6(v6) => Some(v6),
            IPAddr::V4(_) => None,
        }
    }
}

impl IpFamily for IPAddr {
    const NAME: &'static str = "IPAddr";
    fn from_ipaddr(ip: IPAddr) -> Option<IPAddr> {
        Some(ip)
    }
}

impl InetAddr {
    /// `host:port` (Julia's `InetAddr(ip, port)`).
    ///
    /// ```
    /// use reseau::sockets::{InetAddr, IPv6};
    /// assert_eq!(InetAddr::new(IPv6(1), 80).to_string(), "[::1]:80");
    /// ```
    pub fn new(host: impl Into<IPAddr>, port: u16) -> InetAddr {
        InetAddr {
            host: host.into(),
            port,
        }
    }

    /// As [`new`](InetAddr::new) with a port of any integer size, checked (Julia's
    /// `InetAddr(ip, port)` with a non-`UInt16` port).
    ///
    /// ```
    /// use reseau::sockets::{InetAddr, LOCALHOST};
    /// assert_eq!(InetAddr::try_new(LOCALHOST, 80)?.port, 80);
    /// assert!(matches!(InetAddr::try_new(LOCALHOST, 65536), Err(reseau::Error::InvalidArgument(_))));
    /// # Ok::<(), reseau::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] `port out of range, must be 0 ≤ port ≤ 65535, got
    /// <port>` (Julia's text for `connect`; its `InetAddr` raises `InexactError`).
    pub fn try_new(host: impl Into<IPAddr>, port: i64) -> Result<InetAddr> {
        Ok(InetAddr::new(host, check_port(port)?))
    }

    /// Parses `host` as an IP literal (Julia's `InetAddr(str, port)`, no DNS).
    ///
    /// ```
    /// use reseau::sockets::{InetAddr, LOCALHOST};
    /// assert_eq!(InetAddr::parse("127.0.0.1", 1024)?, InetAddr::new(LOCALHOST, 1024));
    /// assert!(InetAddr::parse("localhost", 1024).is_err()); // not a literal
    /// # Ok::<(), reseau::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Address`] when `host` is not a valid literal (see [`IPAddr`]'s
    /// `FromStr`).
    pub fn parse(host: &str, port: u16) -> Result<InetAddr> {
        Ok(InetAddr::new(host.parse::<IPAddr>()?, port))
    }
}

/// Checks a port given as a wide integer (`0..=65535`).
pub(crate) fn check_port(port: i64) -> Result<u16> {
    u16::try_from(port).map_err(|_| {
        Error::InvalidArgument(format!(
            "port out of range, must be 0 ≤ port ≤ 65535, got {port}"
        ))
    })
}

impl From<SocketAddr> for InetAddr {
    /// Drops an IPv6 scope id and flow info (as Julia does).
    fn from(sa: SocketAddr) -> InetAddr {
        InetAddr::new(sa.ip(), sa.port())
    }
}

impl From<InetAddr> for SocketAddr {
    /// IPv6 addresses get scope id 0 and flow info 0.
    fn from(a: InetAddr) -> SocketAddr {
        SocketAddr::new(a.host.into(), a.port)
    }
}

impl<I: Into<IPAddr>> From<(I, u16)> for InetAddr {
    fn from((host, port): (I, u16)) -> InetAddr {
        InetAddr::new(host, port)
    }
}

// ---------------------------------------------------------------------------------
// Parsing

fn addr_err(msg: impl Into<String>, addr: &str) -> Error {
    Error::Address {
        msg: msg.into(),
        addr: addr.to_string(),
    }
}

const LEADING_ZERO: &str = "Leading zeros in IPv4 addresses are disallowed due to ambiguity. \
     If the address is in octal or hexadecimal, convert it to decimal, otherwise remove the \
     leading zero.";

/// Julia 1.12's `parse(IPv4, s)`, strict about characters. `quad_only` demands exactly
/// four fields (the tail of an IPv6 address). The error message only; the caller adds
/// the address.
fn parse_v4(s: &str, quad_only: bool) -> std::result::Result<u32, String> {
    let n = s.split('.').count();
    if n > 4 {
        return Err("too many fields in IPv4 address".into());
    }
    if quad_only && n != 4 {
        return Err("IPv4 part of an IPv6 address must be a dotted quad".into());
    }
    let mut ret: u32 = 0;
    for (i, f) in s.split('.').enumerate() {
        if f.is_empty() {
            return Err("empty field in IPv4 address".into());
        }
        if f.len() > 1 && f.starts_with('0') {
            return Err(LEADING_ZERO.into());
        }
        let mut v: u64 = 0;
        for c in f.chars() {
            let Some(d) = c.to_digit(10) else {
                return Err(format!("invalid base 10 digit {c:?} in IPv4 address"));
            };
            // Saturate: anything past 2^32 is too large whatever the position.
            v = (v * 10 + u64::from(d)).min(1 << 40);
        }
        if i + 1 < n {
            if v > 255 {
                return Err("IPv4 field out of range (must be 0-255)".into());
            }
            ret |= (v as u32) << ((3 - i) * 8);
        } else {
            // The last field fills the remaining (5 - n) bytes.
            let max = (1u64 << ((5 - n) * 8)) - 1;
            if v > max {
                return Err("IPv4 field too large".into());
            }
            ret |= v as u32;
        }
    }
    Ok(ret)
}

/// Parses a run of `:`-separated hex groups (no `::` inside) into `out`; an IPv4 tail
/// is allowed when `tail_ok` and the run is the end of the address.
fn parse_groups(
    s: &str,
    tail_ok: bool,
    out: &mut Vec<u16>,
) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        return Ok(());
    }
    let pieces: Vec<&str> = s.split(':').collect();
    for (i, p) in pieces.iter().enumerate() {
        if p.contains('.') {
            if !(tail_ok && i + 1 == pieces.len()) {
                return Err("an IPv4 part may only end an IPv6 address");
            }
            let v4 = parse_v4(p, true).map_err(|_| "invalid IPv4 part in IPv6 address")?;
            out.push((v4 >> 16) as u16);
            out.push(v4 as u16);
            continue;
        }
        if p.is_empty() {
            return Err("empty field in IPv6 address");
        }
        if p.len() > 4 {
            return Err("IPv6 field too wide (at most 4 hex digits)");
        }
        let g = u16::from_str_radix(p, 16).map_err(|_| "invalid hex digit in IPv6 address")?;
        if !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            // from_str_radix tolerates a leading '+'.
            return Err("invalid hex digit in IPv6 address");
        }
        out.push(g);
    }
    Ok(())
}

fn parse_v6(s: &str) -> std::result::Result<u128, &'static str> {
    if s.contains('%') {
        return Err("zone identifiers are not supported in IPv6 addresses");
    }
    if s.is_empty() {
        return Err("empty IPv6 address");
    }
    let mut head = Vec::with_capacity(8);
    let mut tail = Vec::with_capacity(8);
    let compressed = match s.split_once("::") {
        Some((h, t)) => {
            if t.contains("::") {
                return Err("multiple '::' in IPv6 address");
            }
            parse_groups(h, false, &mut head)?;
            parse_groups(t, true, &mut tail)?;
            true
        }
        None => {
            parse_groups(s, true, &mut head)?;
            false
        }
    };
    let n = head.len() + tail.len();
    if n > 8 || (compressed && n > 7) {
        return Err("too many fields in IPv6 address");
    }
    if !compressed && n < 8 {
        return Err("too few fields in IPv6 address");
    }
    let mut groups = [0u16; 8];
    groups[..head.len()].copy_from_slice(&head);
    groups[8 - tail.len()..].copy_from_slice(&tail);
    Ok(groups
        .iter()
        .fold(0u128, |acc, &g| (acc << 16) | u128::from(g)))
}

/// Julia 1.12's `parse(IPv4, s)`: decimal fields, the last one absorbing the remaining
/// bytes (`"127.1"` = 127.0.0.1, `"1.2.3"` = 1.2.0.3, `"1"` = 0.0.0.1,
/// `"4294967295"` = 255.255.255.255).
///
/// **Version drift:** newer Julia (after 1.12) accepts only dotted quads, so
/// `"192.0"` is an error there; this crate follows 1.12, where it is 192.0.0.0.
/// Stricter than Julia 1.12 (which used `parse(Int, field)`): only ASCII digits, so a
/// sign or whitespace is an error, and more than four fields is an error.
///
/// ```
/// use reseau::sockets::IPv4;
/// assert_eq!("127.1".parse::<IPv4>()?, IPv4::new(127, 0, 0, 1));
/// assert_eq!("1.2.3".parse::<IPv4>()?, IPv4::new(1, 2, 0, 3));
/// assert_eq!("192.0".parse::<IPv4>()?, IPv4::new(192, 0, 0, 0));
/// let err = "022.0.0.1".parse::<IPv4>().unwrap_err();
/// assert!(err.to_string().contains("Leading zeros"));
/// assert!("192.0xFFF".parse::<IPv4>().is_err()); // no hex
/// assert!("256.1.1.1".parse::<IPv4>().is_err());
/// assert!("1.2.65536".parse::<IPv4>().is_err()); // last field too large
/// # Ok::<(), reseau::Error>(())
/// ```
impl FromStr for IPv4 {
    type Err = Error;

    /// # Errors
    /// [`Error::Address`] with `addr` = the input and `msg` one of Julia's texts:
    /// `empty field in IPv4 address`, `Leading zeros in IPv4 addresses are disallowed
    /// …`, `IPv4 field out of range (must be 0-255)`, `IPv4 field too large`, plus
    /// `invalid base 10 digit …` and `too many fields in IPv4 address`.
    fn from_str(s: &str) -> Result<IPv4> {
        parse_v4(s, false).map(IPv4).map_err(|m| addr_err(m, s))
    }
}

/// RFC 4291 text form, strict: one to four hex digits per group, at most one `::`
/// (which may stand for a single zero group), an optional dotted-quad IPv4 tail
/// (`::ffff:1.2.3.4`, `0:0:0:0:0:ffff:127.0.0.1`; its fields follow the IPv4 rules but
/// all four must be present). Zones (`%eth0`) are errors, as in Julia.
///
/// Julia accepts several malformed forms silently (over-wide groups, repeated `::`);
/// this parser rejects them.
///
/// ```
/// use reseau::sockets::IPv6;
/// let a: IPv6 = "2001:db8:0:0:0:0:2:1".parse()?;
/// assert_eq!(a, "2001:db8::2:1".parse::<IPv6>()?);
/// assert_eq!(a, "2001:db8::0:2:1".parse::<IPv6>()?);
/// assert_eq!("0:0:0:0:0:ffff:127.0.0.1".parse::<IPv6>()?, IPv6(0xffff_7f00_0001));
/// for bad in ["1::2::3", "12345::1", "fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "1:2:3", "::1.2.3"] {
///     assert!(bad.parse::<IPv6>().is_err(), "{bad}");
/// }
/// # Ok::<(), reseau::Error>(())
/// ```
impl FromStr for IPv6 {
    type Err = Error;

    /// # Errors
    /// [`Error::Address`] with `addr` = the input and `msg` naming the problem
    /// (`too many fields in IPv6 address` as in Julia, `multiple '::' in IPv6
    /// address`, `IPv6 field too wide …`, `zone identifiers are not supported …`, …).
    fn from_str(s: &str) -> Result<IPv6> {
        parse_v6(s).map(IPv6).map_err(|m| addr_err(m, s))
    }
}

/// IPv6 when the text contains `:`, else IPv4 (Julia's `parse(IPAddr, s)`).
///
/// ```
/// use reseau::sockets::{IPAddr, IPv4};
/// assert_eq!("127.0.0.1".parse::<IPAddr>()?, IPAddr::V4(IPv4::new(127, 0, 0, 1)));
/// assert!("::1".parse::<IPAddr>()?.is_ipv6());
/// assert!(matches!("1.2.3.4.5".parse::<IPAddr>(), Err(reseau::Error::Address { .. })));
/// # Ok::<(), reseau::Error>(())
/// ```
impl FromStr for IPAddr {
    type Err = Error;

    /// # Errors
    /// [`Error::Address`], see [`IPv4`]'s and [`IPv6`]'s `from_str`.
    fn from_str(s: &str) -> Result<IPAddr> {
        if s.contains(':') {
            s.parse().map(IPAddr::V6)
        } else {
            s.parse().map(IPAddr::V4)
        }
    }
}

/// `"host:port"` or `"[v6host]:port"` with a decimal port; the host must be an IP
/// literal (no zone).
///
/// ```
/// use reseau::sockets::{InetAddr, IPv6};
/// assert_eq!("[::1]:8080".parse::<InetAddr>()?, InetAddr::new(IPv6(1), 8080));
/// assert!("::1:8080".parse::<InetAddr>().is_err()); // needs brackets
/// assert!("127.0.0.1:65536".parse::<InetAddr>().is_err());
/// # Ok::<(), reseau::Error>(())
/// ```
impl FromStr for InetAddr {
    type Err = Error;

    /// # Errors
    /// [`Error::Address`]: Go's `split_host_port` texts (`missing port in address`,
    /// `too many colons in address`, …), `invalid port`, or the literal's parse error.
    fn from_str(s: &str) -> Result<InetAddr> {
        let (host, port) = crate::resolve::split_host_port(s)?;
        let port = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            port.parse::<u16>().ok()
        } else {
            None
        };
        let port = port.ok_or_else(|| addr_err("invalid port", s))?;
        let host = host.parse::<IPAddr>().map_err(|e| match e {
            Error::Address { msg, .. } => addr_err(msg, s),
            other => other,
        })?;
        Ok(InetAddr::new(host, port))
    }
}

// ---------------------------------------------------------------------------------
// Printing

/// A fixed buffer for the longest text form (`[ffff:…:ffff]:65535` is 47 bytes), so
/// `Display` honours width/fill without allocating.
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole UTF-8 strings.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn write_v4(w: &mut impl fmt::Write, ip: IPv4) -> fmt::Result {
    let [a, b, c, d] = ip.octets();
    write!(w, "{a}.{b}.{c}.{d}")
}

/// RFC 5952 §4: lowercase, no leading zeros, the longest run (≥ 2) of zero groups
/// becomes `::` (the first on ties), never a dotted IPv4 tail.
fn write_v6(w: &mut impl fmt::Write, ip: IPv6) -> fmt::Result {
    let g = ip.segments();
    let (mut best_start, mut best_len) = (0, 0);
    let mut i = 0;
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_len = 0;
        best_start = 8;
    }
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            w.write_str("::")?;
            i += best_len;
            continue;
        }
        if i > 0 && i != best_start + best_len {
            w.write_str(":")?;
        }
        write!(w, "{:x}", g[i])?;
        i += 1;
    }
    Ok(())
}

impl fmt::Display for IPv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = Buf::new();
        write_v4(&mut b, *self)?;
        f.pad(b.as_str())
    }
}

impl fmt::Display for IPv6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = Buf::new();
        write_v6(&mut b, *self)?;
        f.pad(b.as_str())
    }
}

impl fmt::Display for IPAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IPAddr::V4(ip) => fmt::Display::fmt(ip, f),
            IPAddr::V6(ip) => fmt::Display::fmt(ip, f),
        }
    }
}

impl fmt::Display for InetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = Buf::new();
        match self.host {
            IPAddr::V4(ip) => write_v4(&mut b, ip)?,
            IPAddr::V6(ip) => {
                fmt::Write::write_str(&mut b, "[")?;
                write_v6(&mut b, ip)?;
                fmt::Write::write_str(&mut b, "]")?;
            }
        }
        fmt::Write::write_fmt(&mut b, format_args!(":{}", self.port))?;
        f.pad(b.as_str())
    }
}

impl fmt::Debug for IPv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip\"{self}\"")
    }
}

impl fmt::Debug for IPv6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip\"{self}\"")
    }
}

impl fmt::Debug for IPAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip\"{self}\"")
    }
}

impl fmt::Debug for InetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = match self.host {
            IPAddr::V4(_) => "IPv4",
            IPAddr::V6(_) => "IPv6",
        };
        write!(f, "InetAddr{{{family}}}({:?}, {})", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_display_vectors() {
        for (input, want) in [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("1:0:0:0:0:0:0:0", "1::"),
            ("0:1:0:0:0:0:0:0", "0:1::"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("ABCD::EF", "abcd::ef"),
        ] {
            assert_eq!(input.parse::<IPv6>().unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn display_padding() {
        assert_eq!(format!("{:>10}", IPv4::new(1, 2, 3, 4)), "   1.2.3.4");
        assert_eq!(format!("{:<6}|", IPv6(1)), "::1   |");
    }

    #[test]
    fn v4_edge_cases() {
        for bad in [
            "",
            ".",
            "1..2",
            "1.2.3.4.",
            "+1.2.3.4",
            " 1.2.3.4",
            "1.2.3.4.5",
            "1.2.3.-4",
        ] {
            assert!(bad.parse::<IPv4>().is_err(), "{bad:?}");
        }
        assert_eq!("0".parse::<IPv4>().unwrap(), IPv4(0));
        assert_eq!("0.0.0.0".parse::<IPv4>().unwrap(), IPv4(0));
        assert!("99999999999999999999999".parse::<IPv4>().is_err());
        assert!("1.99999999999999999999999".parse::<IPv4>().is_err());
    }

    #[test]
    fn v6_edge_cases() {
        for bad in [
            "",
            ":",
            ":::",
            "1:",
            ":1",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "1:::2",
            "+1::",
            "::g",
            "1.2.3.4::",
            "::1.2.3.4:1",
            "::01.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
        ] {
            assert!(bad.parse::<IPv6>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "1:2:3:4:5:6:7::".parse::<IPv6>().unwrap(),
            IPv6::new(1, 2, 3, 4, 5, 6, 7, 0)
        );
        assert_eq!(
            "::2:3:4:5:6:7:8".parse::<IPv6>().unwrap(),
            IPv6::new(0, 2, 3, 4, 5, 6, 7, 8)
        );
        assert_eq!(
            "1:2:3:4:5:6:1.2.3.4".parse::<IPv6>().unwrap(),
            IPv6::new(1, 2, 3, 4, 5, 6, 0x102, 0x304)
        );
        assert_eq!("::1.2.3.4".parse::<IPv6>().unwrap(), IPv6(0x0102_0304));
    }

    #[test]
    fn agrees_with_std_on_valid_v6() {
        for s in [
            "::",
            "::1",
            "2001:db8::1",
            "fe80::1:2",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
        ] {
            let ours: IPv6 = s.parse().unwrap();
            let std: Ipv6Addr = s.parse().unwrap();
            assert_eq!(Ipv6Addr::from(ours), std, "{s}");
        }
    }
}
