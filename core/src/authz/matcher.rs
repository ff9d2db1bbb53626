//! The value matchers policies are made of: principal/namespace patterns
//! (exact, `prefix*`, `*suffix`, `*`) and IP blocks (CIDR, IPv4 and IPv6).
//! Parsing is strict: a pattern that is not one of these forms is an error,
//! never a guess.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A string pattern: exact, prefix (`abc*`), suffix (`*abc`) or any (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: any value that is present.
    Any,
}

impl StringMatch {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty pattern".into());
        }
        if pattern == "*" {
            return Ok(StringMatch::Any);
        }
        let stars = pattern.matches('*').count();
        match (stars, pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
            (0, _, _) => Ok(StringMatch::Exact(pattern.to_string())),
            (1, Some(rest), _) => Ok(StringMatch::Suffix(rest.to_string())),
            (1, _, Some(rest)) => Ok(StringMatch::Prefix(rest.to_string())),
            _ => Err(format!(
                "{pattern:?}: '*' is allowed only alone, at the start or at the end"
            )),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Any => true,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(s) => f.write_str(s),
            StringMatch::Prefix(p) => write!(f, "{p}*"),
            StringMatch::Suffix(s) => write!(f, "*{s}"),
            StringMatch::Any => f.write_str("*"),
        }
    }
}

/// Serialized as written in policies (config dumps).
macro_rules! serialize_as_display {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
serialize_as_display!(StringMatch);
serialize_as_display!(IpNet);

const SPIFFE_SCHEME: &str = "spiffe://";

/// A principal pattern. Principals are written with or without the
/// `spiffe://` scheme (`cluster.local/ns/shop/sa/web` or
/// `spiffe://cluster.local/ns/shop/sa/web`); both mean the same identity.
/// An exact principal must be a valid SPIFFE ID; a wildcard form may only
/// hold characters a SPIFFE ID can (a pattern that can never match, such as
/// `Cluster.local/...` or `SPIFFE://...`, is an error, not a silent no-op).
pub fn parse_principal(pattern: &str) -> Result<StringMatch, String> {
    let m = StringMatch::parse(pattern.strip_prefix(SPIFFE_SCHEME).unwrap_or(pattern))?;
    match &m {
        StringMatch::Exact(id) => {
            crate::identity::SpiffeId::parse(&format!("{SPIFFE_SCHEME}{id}"))
                .map_err(|e| format!("{pattern:?}: {e}"))?;
        }
        StringMatch::Prefix(part) | StringMatch::Suffix(part) => {
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
            {
                return Err(format!(
                    "{pattern:?}: {c:?} cannot appear in a SPIFFE ID (letters, digits, '.', '-', '_', '/')"
                ));
            }
        }
        StringMatch::Any => {}
    }
    Ok(m)
}

/// A namespace pattern: a Kubernetes namespace name (lower-case letters,
/// digits, '-'), possibly with one `*` as for [`StringMatch`].
pub fn parse_namespace(pattern: &str) -> Result<StringMatch, String> {
    let m = StringMatch::parse(pattern)?;
    let part = match &m {
        StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Suffix(s) => s.as_str(),
        StringMatch::Any => "",
    };
    if part.len() > 63 {
        return Err(format!(
            "{pattern:?}: a namespace name has at most 63 characters"
        ));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{pattern:?}: {c:?} cannot appear in a namespace name (a-z, 0-9, '-')"
        ));
    }
    Ok(m)
}

/// The form principal patterns are matched against: the ID without its scheme.
pub fn principal_key(id: &str) -> &str {
    id.strip_prefix(SPIFFE_SCHEME).unwrap_or(id)
}

/// An IP block: an address and a prefix length (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) becomes the IPv4
    /// block it stands for (`10.0.0.0/8`): sources are matched in their
    /// IPv4 form, so the mapped form would otherwise never match.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max} bits"));
        }
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(IpNet {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a,
                Some(
                    p.parse::<u8>()
                        .map_err(|_| format!("{s:?}: {p:?} is not a prefix length"))?,
                ),
            ),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        let net = IpNet::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))?;
        if net.masked(net.addr) != net.addr {
            return Err(format!(
                "{s:?}: has bits set beyond the /{prefix} prefix (did you mean {}/{prefix}?)",
                net.masked(net.addr)
            ));
        }
        Ok(net)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) counts as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn string_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("cluster.local/ns/a/sa/b", "cluster.local/ns/a/sa/b", true),
            ("cluster.local/ns/a/sa/b", "cluster.local/ns/a/sa/bb", false),
            ("cluster.local/ns/a/*", "cluster.local/ns/a/sa/x", true),
            ("cluster.local/ns/a/*", "cluster.local/ns/ab/sa/x", false),
            ("*/sa/web", "other.example/ns/x/sa/web", true),
            ("*/sa/web", "other.example/ns/x/sa/web2", false),
            ("*", "anything", true),
            ("prod-*", "prod-eu", true),
            ("prod-*", "dev-eu", false),
        ];
        for (pattern, value, want) in cases {
            let m = StringMatch::parse(pattern).unwrap();
            assert_eq!(m.matches(value), *want, "{pattern} ~ {value}");
            assert_eq!(m.to_string(), *pattern);
        }
        for bad in ["", "a*b", "**", "*a*", "a**"] {
            assert!(StringMatch::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn principal_and_namespace_patterns_are_checked() {
        for ok in [
            "cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b",
            "cluster.local/ns/a/*",
            "*/sa/web",
            "*",
        ] {
            assert!(parse_principal(ok).is_ok(), "{ok}");
        }
        for bad in [
            "SPIFFE://cluster.local/ns/a/sa/b",
            "spiffe://Cluster.local/ns/a/sa/b",
            "cluster.local/ns/a/sa/b/",
            "cluster.local/ns/a b/*",
            "*/sa/we:b",
        ] {
            assert!(parse_principal(bad).is_err(), "{bad} accepted");
        }
        for ok in ["shop", "sh*", "*-prod", "*"] {
            assert!(parse_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["Shop", "shop_1", "a.b", &"x".repeat(64)] {
            assert!(parse_namespace(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn principals_with_or_without_scheme() {
        let a = parse_principal("spiffe://cluster.local/ns/a/sa/b").unwrap();
        let b = parse_principal("cluster.local/ns/a/sa/b").unwrap();
        assert_eq!(a, b);
        assert!(a.matches(principal_key("spiffe://cluster.local/ns/a/sa/b")));
    }

    #[test]
    fn ip_blocks() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("0.0.0.0/0", "192.168.1.1", true),
            ("0.0.0.0/0", "fd00::1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.0.0.1", false),
            ("2001:db8::1", "2001:db8::1", true),
        ];
        for (net, ip, want) in cases {
            let n = IpNet::parse(net).unwrap();
            assert_eq!(n.contains(ip.parse().unwrap()), *want, "{net} ∋ {ip}");
        }
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.1/8",
            "10.0.0",
            "x/8",
            "10.0.0.0/x",
            "",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn v4_block_contains_iff_prefix_bits_equal(a: u32, b: u32, prefix in 0u8..=32) {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let net = IpNet::parse(&format!("{}/{prefix}", std::net::Ipv4Addr::from(a & mask))).unwrap();
            prop_assert!(net.contains(IpAddr::V4(Ipv4Addr::from(a))));
            prop_assert_eq!(net.contains(IpAddr::V4(Ipv4Addr::from(b))), a & mask == b & mask);
            // Never matches the other family, except through the mapped form.
            prop_assert!(!net.contains(IpAddr::V6(Ipv6Addr::from(u128::from(b) | (1u128 << 127)))));
            prop_assert_eq!(
                net.contains(IpAddr::V6(std::net::Ipv4Addr::from(b).to_ipv6_mapped())),
                a & mask == b & mask
            );
        }

        #[test]
        fn v6_block_contains_iff_prefix_bits_equal(a: u128, b: u128, prefix in 0u8..=128) {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let net = IpNet::parse(&format!("{}/{prefix}", std::net::Ipv6Addr::from(a & mask))).unwrap();
            let b_ip = std::net::Ipv6Addr::from(b);
            prop_assume!(b_ip.to_ipv4_mapped().is_none());
            prop_assert!(net.contains(IpAddr::V6(Ipv6Addr::from(a))) || std::net::Ipv6Addr::from(a).to_ipv4_mapped().is_some());
            prop_assert_eq!(net.contains(IpAddr::V6(b_ip)), a & mask == b & mask);
        }

        #[test]
        fn prefix_and_suffix_patterns_match_their_value(s in "[a-z./]{1,30}", cut in 0usize..30) {
            let cut = cut.min(s.len());
            let (head, tail) = s.split_at(cut);
            let prefix = StringMatch::parse(&format!("{head}*")).unwrap();
            let suffix = StringMatch::parse(&format!("*{tail}")).unwrap();
            let exact = StringMatch::parse(&s).unwrap();
            let longer = format!("{s}x");
            prop_assert!(prefix.matches(&s));
            prop_assert!(suffix.matches(&s));
            prop_assert!(exact.matches(&s));
            prop_assert!(!exact.matches(&longer));
        }
    }
}
