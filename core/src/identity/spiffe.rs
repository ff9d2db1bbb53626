//! SPIFFE IDs, parsed and validated per the SPIFFE-ID specification
//! (`spiffe://<trust-domain>/<path>`), plus the workload form quicmesh uses:
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Our own type rather than the `spiffe` crate's [`spiffe::SpiffeId`]
//! (docs/architecture.md, "Standard SPIFFE parts"): ours is one string,
//! so [`SpiffeId::as_str`] (policy matching, metric labels, logs on every
//! connection) costs nothing, where the crate's keeps the trust domain and
//! the path apart and formats them anew; and ours is stricter where a
//! peer's certificate is concerned: an upper-case trust domain is refused
//! (the crate folds it to lower case, so `spiffe://Cluster.local/...` in a
//! certificate would pass as `cluster.local`), as is an upper-case scheme
//! (`SPIFFE://`, which the crate takes), the 2,048-byte limit holds
//! for parsing too, and each refusal names the offending character. Every
//! ID we accept the crate accepts with the same trust domain and path (a
//! property test below); the conversions both ways are for the crate's
//! Workload API types.

use std::fmt;
use std::str::FromStr;

/// Longest URI the SPIFFE specification allows.
pub const MAX_LEN: usize = 2048;
/// Longest trust domain name the SPIFFE specification allows.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid SPIFFE ID. Each variant names one rule of the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("SPIFFE ID must start with the scheme \"spiffe://\" (lower case)")]
    WrongScheme,
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    #[error("trust domain has the character {0:?}; only a-z, 0-9, '.', '-' and '_' are allowed (no upper case, port or user info)")]
    BadTrustDomainChar(char),
    #[error("path has an empty segment (\"//\" or a trailing \"/\")")]
    EmptySegment,
    #[error("path has a \".\" or \"..\" segment")]
    DotSegment,
    #[error("path has the character {0:?}; only a-z, A-Z, 0-9, '.', '-' and '_' are allowed (no query or fragment)")]
    BadPathChar(char),
    #[error("not a workload identity: expected path /ns/<namespace>/sa/<service-account>")]
    NotWorkload,
}

/// A valid SPIFFE ID. Cheap to clone and compare; displays as its URI.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte offset where the path starts (== uri.len() when there is no path).
    path_start: usize,
}

const SCHEME: &str = "spiffe://";
/// Where a node identity's path starts, before the node's name.
const NODE_PATH: &str = "/quicmesh/node/";

impl SpiffeId {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(SpiffeId {
            uri: s.to_owned(),
            path_start: SCHEME.len() + td.len(),
        })
    }

    /// The identity of a Kubernetes service account.
    pub fn workload(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!(
            "{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))
    }

    /// The identity of a node's ztunnel, `spiffe://<td>/quicmesh/node/<node>`.
    /// Not a workload identity: it authenticates a node to the control plane
    /// (and no workload can be issued it: no namespace is called `quicmesh`
    /// with a service account path of this shape).
    pub fn node(trust_domain: &str, node: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!("{SCHEME}{trust_domain}{NODE_PATH}{node}"))
    }

    /// The node this identity names, when it is a node identity.
    pub fn node_name(&self) -> Option<&str> {
        self.path()
            .strip_prefix(NODE_PATH)
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }

    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.path_start]
    }

    /// The path, with its leading '/', or "" when there is none.
    pub fn path(&self) -> &str {
        &self.uri[self.path_start..]
    }

    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// `(namespace, service account)` when this is a workload identity.
    pub fn namespace_and_service_account(&self) -> Result<(&str, &str), SpiffeIdError> {
        let mut segs = self.path().split('/').skip(1);
        match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Ok((ns, sa)),
            _ => Err(SpiffeIdError::NotWorkload),
        }
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    match td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(c) => Err(SpiffeIdError::BadTrustDomainChar(c)),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split item is "" and is skipped.
    for seg in path.split('/').skip(1) {
        match seg {
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
        {
            return Err(SpiffeIdError::BadPathChar(c));
        }
    }
    Ok(())
}

impl SpiffeId {
    /// This ID as the `spiffe` crate's type. Every ID valid for us is valid
    /// for the crate (ours are the stricter rules); `None` would be a bug
    /// in one of the two parsers.
    pub fn to_crate(&self) -> Option<spiffe::SpiffeId> {
        spiffe::SpiffeId::new(&self.uri).ok()
    }
}

/// One of the crate's IDs under our rules (its trust domain is already
/// lower case; what remains is our length limit).
impl TryFrom<&spiffe::SpiffeId> for SpiffeId {
    type Error = SpiffeIdError;
    fn try_from(id: &spiffe::SpiffeId) -> Result<Self, Self::Error> {
        Self::parse(&id.to_string())
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpiffeId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_identities_name_their_node_and_nothing_else_does() {
        let own = SpiffeId::node("cluster.local", "node1").unwrap();
        assert_eq!(own.as_str(), "spiffe://cluster.local/quicmesh/node/node1");
        assert_eq!(own.node_name(), Some("node1"));
        assert!(own.namespace_and_service_account().is_err());
        for not_node in [
            "spiffe://cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/quicmesh/node",
            "spiffe://cluster.local/quicmesh/node/a/b",
            "spiffe://cluster.local/quicmesh/nodes/a",
        ] {
            assert_eq!(
                SpiffeId::parse(not_node).unwrap().node_name(),
                None,
                "{not_node}"
            );
        }
        assert!(SpiffeId::node("cluster.local", "a/").is_err());
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_ids() {
        for s in [
            "spiffe://cluster.local",
            "spiffe://cluster.local/ns/default/sa/web",
            "spiffe://a-b_c.9/x/Y.z-_",
        ] {
            SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn names_each_violation() {
        use SpiffeIdError::*;
        let cases = [
            ("", Empty),
            ("http://cluster.local/x", WrongScheme),
            ("SPIFFE://cluster.local/x", WrongScheme),
            ("spiffe://", MissingTrustDomain),
            ("spiffe:///ns/a", MissingTrustDomain),
            ("spiffe://Cluster.local", BadTrustDomainChar('C')),
            ("spiffe://cluster.local:8080/x", BadTrustDomainChar(':')),
            ("spiffe://user@cluster.local/x", BadTrustDomainChar('@')),
            ("spiffe://td/", EmptySegment),
            ("spiffe://td/a//b", EmptySegment),
            ("spiffe://td/a/./b", DotSegment),
            ("spiffe://td/a/..", DotSegment),
            ("spiffe://td/a?b=c", BadPathChar('?')),
            ("spiffe://td/a#frag", BadPathChar('#')),
            ("spiffe://td/a%20b", BadPathChar('%')),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "{input:?}");
        }
        let long_td = format!("spiffe://{}", "a".repeat(256));
        assert_eq!(SpiffeId::parse(&long_td), Err(TrustDomainTooLong));
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(TooLong));
    }

    #[test]
    fn workload_parts() {
        let id = SpiffeId::workload("cluster.local", "ns1", "sa1").unwrap();
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/ns1/sa/sa1");
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "/ns/ns1/sa/sa1");
        assert_eq!(id.namespace_and_service_account().unwrap(), ("ns1", "sa1"));
        let other = SpiffeId::parse("spiffe://td/ns/a/sa/b/extra").unwrap();
        assert_eq!(
            other.namespace_and_service_account(),
            Err(SpiffeIdError::NotWorkload)
        );
        assert!(
            SpiffeId::workload("td", "bad/ns", "sa").is_err() || {
                // "bad/ns" splits into more segments: parses, but is not a workload ID.
                SpiffeId::workload("td", "bad/ns", "sa")
                    .unwrap()
                    .namespace_and_service_account()
                    .is_err()
            }
        );
    }

    proptest! {
        #[test]
        fn valid_ids_roundtrip(
            td in "[a-z0-9._-]{1,40}",
            segs in proptest::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,10}", 0..5),
        ) {
            let mut s = format!("spiffe://{td}");
            for seg in &segs { s.push('/'); s.push_str(seg); }
            let id = SpiffeId::parse(&s).unwrap();
            prop_assert_eq!(id.trust_domain(), td.as_str());
            prop_assert_eq!(id.to_string(), s);
        }

        /// The crate's parser accepts every ID ours does, with the same
        /// parts; beyond what the crate refuses, ours refuses only what
        /// the crate would case-fold (scheme, trust domain).
        #[test]
        fn ours_is_a_subset_of_the_crates(s in "(spiffe|SPIFFE|http)://[a-zA-Z0-9./:_@%-]{0,30}") {
            let theirs = spiffe::SpiffeId::new(&s);
            match SpiffeId::parse(&s) {
                Ok(ours) => {
                    let theirs = theirs.expect("the crate accepts what we accept");
                    prop_assert_eq!(theirs.trust_domain_name(), ours.trust_domain());
                    prop_assert_eq!(theirs.path(), ours.path());
                    prop_assert_eq!(ours.to_crate(), Some(theirs.clone()));
                    prop_assert_eq!(SpiffeId::try_from(&theirs), Ok(ours));
                }
                // Case folded by the crate, refused by us.
                Err(SpiffeIdError::BadTrustDomainChar(c)) if c.is_ascii_uppercase() => {}
                Err(SpiffeIdError::WrongScheme) if s[..6].eq_ignore_ascii_case("spiffe") => {}
                Err(e) => prop_assert!(theirs.is_err(), "{s:?}: we refuse ({e}), the crate accepts"),
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = SpiffeId::parse(&s);
        }

        #[test]
        fn parsed_ids_satisfy_the_rules(s in "spiffe://[a-zA-Z0-9./:_@%-]{0,30}") {
            if let Ok(id) = SpiffeId::parse(&s) {
                prop_assert!(!id.trust_domain().is_empty());
                prop_assert!(id.trust_domain().chars().all(|c| !c.is_ascii_uppercase()));
                prop_assert!(!id.path().ends_with('/'));
                prop_assert!(!id.path().contains("//"));
            }
        }
    }
}
