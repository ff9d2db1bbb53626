//! The trust bundles a running proxy verifies peers with, replaceable while
//! it runs ([`SharedBundles`]), and the check of a bundle the CA hands out
//! before it replaces ours ([`roots_from_ca`]).
//!
//! Every verifier (tunnel client and server, the controller client's
//! channel) holds a clone of one [`SharedBundles`] and reads the current
//! [`TrustBundles`] once per handshake: a replacement reaches the next
//! handshake of every existing pool, server endpoint and channel, while
//! handshakes under way finish on the bundles they started with. Reading
//! costs an uncontended read lock and one `Arc` clone (two atomic
//! operations), nothing beside the handshake's signature checks; a
//! replacement copies the per-domain map (one `Arc` per domain) under the
//! write lock.
//!
//! Replacing one trust domain's roots is one function,
//! [`SharedBundles::replace_domain`], used by the CA's answer and by the
//! bundles pushed over the config stream ([`Streamed`]: the mesh's own,
//! several roots while the CA rotates, and federated domains').
//! A source that owns several domains at once (a SPIFFE Workload API: the
//! own domain and every federated one in each answer) replaces them all in
//! one step with [`SharedBundles::replace_domains`], which also drops the
//! domains it no longer names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use quicmesh_proto::config::{resource, Resource};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::svid::{certs_from_pem, SvidError, TrustBundles};
use super::verify::{verify_peer_chain, Refusal, Side};

/// The largest trust bundle taken from the CA: a PEM bundle of a few
/// roots is a few KiB; more than this is garbage or abuse.
pub const MAX_CA_BUNDLE: usize = 1 << 20;

/// One proxy's trust bundles, shared by all its verifiers and replaceable
/// while they run. Clones share the same bundles.
#[derive(Clone, Default)]
pub struct SharedBundles(Arc<RwLock<Arc<TrustBundles>>>);

impl std::fmt::Debug for SharedBundles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.load();
        let mut domains: Vec<&str> = b.trust_domains().collect();
        domains.sort_unstable();
        f.debug_tuple("SharedBundles").field(&domains).finish()
    }
}

impl SharedBundles {
    pub fn new(bundles: TrustBundles) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(bundles))))
    }

    /// The bundles in effect now (for one handshake).
    pub fn load(&self) -> Arc<TrustBundles> {
        self.0.read().expect("not poisoned").clone()
    }

    /// Makes `roots` the whole bundle of `trust_domain` (added if it had
    /// none). Returns whether anything changed; on an error (a certificate
    /// that is no trust anchor) the bundles stay as they were.
    pub fn replace_domain(
        &self,
        trust_domain: &str,
        roots: &[CertificateDer<'_>],
    ) -> Result<bool, SvidError> {
        let mut domain = TrustBundles::new();
        domain.insert(trust_domain, roots)?;
        let mut current = self.0.write().expect("not poisoned");
        if current.get(trust_domain) == domain.get(trust_domain) {
            return Ok(false);
        }
        let mut next = (**current).clone();
        next.insert(trust_domain, roots)?;
        *current = Arc::new(next);
        Ok(true)
    }
}

impl SharedBundles {
    /// Makes each of `domains` the whole bundle of its trust domain and
    /// drops the bundles of `remove` (the domains a source sent before and
    /// no longer does), in one replacement: a handshake sees all of it or
    /// none. Returns the domains that changed (added, replaced or removed),
    /// sorted; on an error (a certificate that is no trust anchor) nothing
    /// changes.
    pub fn replace_domains<'a>(
        &self,
        domains: &[(String, Vec<CertificateDer<'static>>)],
        remove: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<String>, SvidError> {
        let mut fresh = TrustBundles::new();
        for (domain, roots) in domains {
            fresh.insert(domain, roots)?;
        }
        let mut current = self.0.write().expect("not poisoned");
        let mut next = (**current).clone();
        let mut changed = Vec::new();
        for (domain, _) in domains {
            if current.get(domain) != fresh.get(domain) {
                changed.push(domain.clone());
            }
        }
        for domain in remove {
            if fresh.get(domain).is_none() && next.remove(domain) {
                changed.push(domain.to_string());
            }
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        for (domain, roots) in domains {
            next.insert(domain, roots)?;
        }
        *current = Arc::new(next);
        changed.sort_unstable();
        Ok(changed)
    }
}

/// The most roots one trust domain's pushed bundle may hold (a couple
/// while a CA rotates; dozens would be garbage or abuse).
pub const MAX_STREAMED_ROOTS: usize = 64;

/// The trust bundles of a config-stream resource set (`bundle/<trust
/// domain>` resources), checked: a valid trust domain named as the
/// resource is, 1 to [`MAX_STREAMED_ROOTS`] roots, each a usable trust
/// anchor. An error names the resource; the update is then refused whole.
pub fn streamed(
    resources: &BTreeMap<String, Resource>,
) -> Result<BTreeMap<String, Vec<CertificateDer<'static>>>, String> {
    let mut out = BTreeMap::new();
    for (name, r) in resources {
        let Some(resource::Kind::TrustBundle(b)) = &r.kind else {
            continue;
        };
        if name.strip_prefix("bundle/") != Some(b.trust_domain.as_str()) {
            return Err(format!("{name}: holds the bundle of {:?}", b.trust_domain));
        }
        super::SpiffeId::parse(&format!("spiffe://{}", b.trust_domain))
            .map_err(|e| format!("{name}: trust domain: {e}"))?;
        if b.roots.is_empty() || b.roots.len() > MAX_STREAMED_ROOTS {
            return Err(format!(
                "{name}: {} roots (1 to {MAX_STREAMED_ROOTS} expected)",
                b.roots.len()
            ));
        }
        let roots: Vec<CertificateDer<'static>> = b
            .roots
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        TrustBundles::new()
            .insert(&b.trust_domain, &roots)
            .map_err(|e| format!("{name}: {e}"))?;
        out.insert(b.trust_domain.clone(), roots);
    }
    Ok(out)
}

/// What the config stream put in a proxy's [`SharedBundles`]: each pushed
/// bundle replaces its domain's; a federated domain no longer pushed is
/// forgotten. The proxy's own trust domain is never forgotten (the CA's
/// answer and `--trust-bundle` hold it too).
pub struct Streamed {
    shared: SharedBundles,
    own: String,
    installed: BTreeSet<String>,
}

impl Streamed {
    pub fn new(shared: SharedBundles, own_trust_domain: &str) -> Self {
        Streamed {
            shared,
            own: own_trust_domain.to_string(),
            installed: BTreeSet::new(),
        }
    }

    /// Puts `bundles` (from [`streamed`]) in effect, in one step. Returns
    /// the trust domains withdrawn (federations removed): their peers,
    /// authenticated before, are no longer to be trusted.
    pub fn install(
        &mut self,
        bundles: BTreeMap<String, Vec<CertificateDer<'static>>>,
    ) -> Vec<String> {
        let withdrawn: Vec<&str> = self
            .installed
            .iter()
            .filter(|td| !bundles.contains_key(*td) && **td != self.own)
            .map(String::as_str)
            .collect();
        let gone: Vec<String> = withdrawn.iter().map(|td| td.to_string()).collect();
        let domains: Vec<(String, Vec<CertificateDer<'static>>)> = bundles.into_iter().collect();
        match self.shared.replace_domains(&domains, withdrawn) {
            Ok(changed) => {
                for td in changed {
                    match domains.iter().find(|(d, _)| *d == td) {
                        Some((_, roots)) => tracing::info!(
                            trust_domain = %td,
                            roots = roots.len(),
                            federated = td != self.own,
                            "trust bundle replaced from the config stream"
                        ),
                        None => {
                            tracing::info!(trust_domain = %td, "federated trust bundle withdrawn: its peers are refused from now on")
                        }
                    }
                }
            }
            // Checked by `streamed`: not reached.
            Err(e) => tracing::warn!(error = %e, "trust bundles not taken"),
        }
        self.installed = domains.into_iter().map(|(td, _)| td).collect();
        gone
    }
}

impl From<TrustBundles> for SharedBundles {
    fn from(b: TrustBundles) -> Self {
        Self::new(b)
    }
}

/// A fixed set of bundles (tests, and callers that never replace theirs).
impl From<Arc<TrustBundles>> for SharedBundles {
    fn from(b: Arc<TrustBundles>) -> Self {
        Self(Arc::new(RwLock::new(b)))
    }
}

/// Why a trust bundle from the CA was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// Too large, not PEM, or a certificate that is no trust anchor: the
    /// bundle is ignored (the certificate it came with may still serve).
    #[error("the CA's trust bundle is unusable: {0}")]
    Malformed(String),
    /// Well-formed, but the certificate the CA issued in the same answer
    /// does not chain to it: the CA contradicts itself, and neither is
    /// taken.
    #[error("the certificate the CA issued does not verify against the trust bundle it sent: {0}")]
    DoesNotVouch(Refusal),
}

/// The roots of the PEM `bundle` the CA sent with `chain` (leaf first), if
/// they are usable and the chain verifies against them (as a peer's would:
/// for the chain's own trust domain, at `now`).
pub fn roots_from_ca(
    bundle: &[u8],
    chain: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<Vec<CertificateDer<'static>>, CaBundleError> {
    if bundle.len() > MAX_CA_BUNDLE {
        return Err(CaBundleError::Malformed(format!(
            "{} bytes, over the {MAX_CA_BUNDLE}-byte limit",
            bundle.len()
        )));
    }
    let roots = certs_from_pem(bundle, "the CA's trust bundle")
        .map_err(|e| CaBundleError::Malformed(e.to_string()))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| CaBundleError::DoesNotVouch(Refusal::NotSvid("empty chain".into())))?;
    let domain = super::svid::cert_info(leaf)
        .map_err(|e| CaBundleError::DoesNotVouch(Refusal::NotSvid(e.to_string())))?
        .id
        .trust_domain()
        .to_string();
    let mut candidate = TrustBundles::new();
    candidate
        .insert(&domain, &roots)
        .map_err(|e| CaBundleError::Malformed(e.to_string()))?;
    let provider = crate::crypto_provider();
    // An SVID serves both ways; checked as a client certificate.
    verify_peer_chain(
        &candidate,
        leaf,
        intermediates,
        now,
        Side::Server,
        &provider.signature_verification_algorithms,
    )
    .map_err(CaBundleError::DoesNotVouch)?;
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::ca::Ca;
    use crate::identity::verify::ClientVerifier;
    use crate::identity::SpiffeId;
    use crate::metrics::TlsMetrics;
    use rustls::server::danger::ClientCertVerifier;

    fn id(ns: &str) -> SpiffeId {
        SpiffeId::workload("cluster.local", ns, "sa").unwrap()
    }

    fn pem(cas: &[&Ca]) -> String {
        cas.iter().map(|c| c.cert_pem()).collect()
    }

    #[test]
    fn a_replaced_domain_reaches_verifiers_built_before() {
        let (old, new) = (
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("cluster.local").unwrap(),
        );
        let fed = Ca::generate("other.example").unwrap();
        let mut b = TrustBundles::new();
        b.insert("cluster.local", &[old.cert_der().clone()])
            .unwrap();
        b.insert("other.example", &[fed.cert_der().clone()])
            .unwrap();
        let shared = SharedBundles::new(b);
        let metrics = Arc::new(TlsMetrics::default());
        let v = ClientVerifier::new(
            shared.clone(),
            Box::new(|_| true),
            crate::crypto_provider(),
            metrics.clone(),
        );
        let life = Duration::from_secs(600);
        let by_new = new.mint(&id("a"), life).unwrap();
        let by_old = old.mint(&id("b"), life).unwrap();
        let now = UnixTime::now();
        assert!(v.verify_client_cert(&by_new.chain[0], &[], now).is_err());

        let both = [old.cert_der().clone(), new.cert_der().clone()];
        assert!(shared.replace_domain("cluster.local", &both).unwrap());
        assert!(!shared.replace_domain("cluster.local", &both).unwrap());
        v.verify_client_cert(&by_new.chain[0], &[], now).unwrap();
        v.verify_client_cert(&by_old.chain[0], &[], now).unwrap();
        // Other domains are left alone.
        let other = fed
            .mint(
                &SpiffeId::workload("other.example", "x", "y").unwrap(),
                life,
            )
            .unwrap();
        v.verify_client_cert(&other.chain[0], &[], now).unwrap();

        // The old root retired: its certificates are refused from the next
        // handshake on.
        assert!(shared
            .replace_domain("cluster.local", &[new.cert_der().clone()])
            .unwrap());
        assert!(v.verify_client_cert(&by_old.chain[0], &[], now).is_err());
        assert_eq!(metrics.count("server", "untrusted_chain"), 2);
    }

    #[test]
    fn several_domains_are_replaced_and_dropped_in_one_step() {
        let (own, fed, gone) = (
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("other.example").unwrap(),
            Ca::generate("gone.example").unwrap(),
        );
        let mut b = TrustBundles::new();
        b.insert("gone.example", &[gone.cert_der().clone()])
            .unwrap();
        b.insert("kept.example", &[gone.cert_der().clone()])
            .unwrap();
        let shared = SharedBundles::new(b);
        let before = shared.load();
        let set = vec![
            ("cluster.local".to_string(), vec![own.cert_der().clone()]),
            ("other.example".to_string(), vec![fed.cert_der().clone()]),
        ];
        let changed = shared
            .replace_domains(&set, ["gone.example", "never.example"])
            .unwrap();
        assert_eq!(changed, ["cluster.local", "gone.example", "other.example"]);
        let now = shared.load();
        let mut domains: Vec<&str> = now.trust_domains().collect();
        domains.sort_unstable();
        // A domain the caller does not name stays.
        assert_eq!(domains, ["cluster.local", "kept.example", "other.example"]);
        // Handshakes already holding the old bundles keep them.
        assert!(before.get("gone.example").is_some());
        assert!(shared.replace_domains(&set, []).unwrap().is_empty());
        // A certificate that is no trust anchor changes nothing.
        let bad = vec![(
            "cluster.local".to_string(),
            vec![CertificateDer::from(vec![1u8, 2, 3])],
        )];
        assert!(shared.replace_domains(&bad, ["other.example"]).is_err());
        assert!(shared.load().get("other.example").is_some());
    }

    #[test]
    fn a_bundle_from_the_ca_must_hold_the_root_of_what_it_issued() {
        let (old, new) = (
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("cluster.local").unwrap(),
        );
        let issued = new.mint(&id("a"), Duration::from_secs(600)).unwrap();
        let now = UnixTime::now();
        let roots = roots_from_ca(pem(&[&old, &new]).as_bytes(), &issued.chain, now).unwrap();
        assert_eq!(roots, [old.cert_der().clone(), new.cert_der().clone()]);

        let e = roots_from_ca(old.cert_pem().as_bytes(), &issued.chain, now).unwrap_err();
        assert!(matches!(e, CaBundleError::DoesNotVouch(_)), "{e}");

        for garbage in [
            &b"not a bundle"[..],
            b"",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            let e = roots_from_ca(garbage, &issued.chain, now).unwrap_err();
            assert!(matches!(e, CaBundleError::Malformed(_)), "{e}");
        }
        let huge = pem(&[&new]).repeat(MAX_CA_BUNDLE / new.cert_pem().len() + 1);
        let e = roots_from_ca(huge.as_bytes(), &issued.chain, now).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        // The issued certificate is no root for itself.
        let (leaf_pem, _) = crate::identity::ca::svid_to_pem(&issued);
        assert!(roots_from_ca(leaf_pem.as_bytes(), &issued.chain, now).is_err());
    }
}
