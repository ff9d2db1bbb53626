//! The trust bundles the controller pushes to every proxy over the config
//! stream (`bundle/<trust-domain>` resources): the mesh's own (the roots
//! the CA's certificates chain to; several while it rotates) and those of
//! federated trust domains. Proxies verify a peer against its own trust
//! domain's bundle only.

use rustls_pki_types::CertificateDer;

use crate::model::{Key, Kind, Object, TrustBundle};
use crate::store::Store;

/// Makes `roots` the bundle of `trust_domain` pushed to proxies; returns
/// whether that changed anything.
pub fn publish(
    store: &Store,
    trust_domain: &str,
    roots: &[CertificateDer<'_>],
    sequence: u64,
) -> bool {
    let bundle = TrustBundle {
        trust_domain: trust_domain.to_string(),
        roots: roots.iter().map(|r| r.to_vec()).collect(),
        sequence,
    };
    store
        .apply(|ix| ix.upsert(Object::TrustBundle(bundle)))
        .is_some()
}

/// Stops pushing `trust_domain`'s bundle: proxies forget it (a federated
/// domain's peers are refused from their next handshake on).
pub fn withdraw(store: &Store, trust_domain: &str) -> bool {
    let key = Key {
        kind: Kind::TrustBundle,
        namespace: String::new(),
        name: trust_domain.to_string(),
    };
    store.apply(|ix| ix.delete(&key)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::identity::ca::Ca;
    use quicmesh_proto::config::resource;

    #[test]
    fn bundles_are_resources_until_withdrawn() {
        let store = Store::new("cluster.local");
        let (own, other) = (
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("other.example").unwrap(),
        );
        assert!(publish(
            &store,
            "cluster.local",
            &[own.cert_der().clone()],
            0
        ));
        assert!(!publish(
            &store,
            "cluster.local",
            &[own.cert_der().clone()],
            0
        ));
        assert!(publish(
            &store,
            "other.example",
            &[other.cert_der().clone()],
            7
        ));
        let r = store.resources();
        let Some(resource::Kind::TrustBundle(b)) = &r["bundle/other.example"].kind else {
            panic!("{r:?}")
        };
        assert_eq!(
            (b.trust_domain.as_str(), b.sequence, b.roots.len()),
            ("other.example", 7, 1)
        );
        assert_eq!(b.roots[0], other.cert_der().to_vec());
        assert!(withdraw(&store, "other.example"));
        assert!(!withdraw(&store, "other.example"));
        let r = store.resources();
        assert!(r.contains_key("bundle/cluster.local") && !r.contains_key("bundle/other.example"));
    }
}
