use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::UnixTime;

use crate::identity::ca::{svid_to_pem, Ca, CaError, CaPem};
use crate::identity::svid::TrustBundles;
use crate::identity::verify::{verify_peer_chain, Side};
use crate::identity::SpiffeId;

const TD: &str = "cluster.local";

fn id() -> SpiffeId {
    SpiffeId::workload(TD, "shop", "web").unwrap()
}

fn bundle(roots: &[&Ca]) -> TrustBundles {
    let mut b = TrustBundles::new();
    let certs: Vec<_> = roots.iter().map(|r| r.cert_der().clone()).collect();
    b.insert(TD, &certs).unwrap();
    b
}

fn verifies(b: &TrustBundles, chain: &[rustls_pki_types::CertificateDer<'static>]) -> bool {
    let algs = crate::crypto_provider().signature_verification_algorithms;
    verify_peer_chain(
        b,
        &chain[0],
        &chain[1..],
        UnixTime::now(),
        Side::Server,
        &algs,
    )
    .is_ok()
}

fn refused(pem: &CaPem) -> String {
    match Ca::from_parts(TD, pem) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

/// An SVID of an intermediate carries the intermediate and verifies
/// against the root alone; without it, it does not.
#[test]
fn an_intermediates_svids_verify_against_the_root_only() {
    let root = Ca::generate(TD).unwrap();
    let mid = root.issue_intermediate(Duration::from_secs(86400)).unwrap();
    assert_eq!(mid.intermediates(), [mid.cert_der().clone()]);
    assert_eq!(mid.roots(), [root.cert_der().clone()]);
    assert_eq!(mid.signing_roots(), [root.cert_der().clone()]);
    let svid = mid.mint(&id(), Duration::from_secs(600)).unwrap();
    assert_eq!(svid.chain.len(), 2);
    assert!(verifies(&bundle(&[&root]), &svid.chain));
    assert!(!verifies(&bundle(&[&root]), &svid.chain[..1]));
    assert!(!verifies(
        &bundle(&[&Ca::generate(TD).unwrap()]),
        &svid.chain
    ));
    // Two levels: both intermediates go with the leaf, the root does not.
    let lower = mid.issue_intermediate(Duration::from_secs(3600)).unwrap();
    assert_eq!(lower.intermediates().len(), 2);
    let svid = lower.mint(&id(), Duration::from_secs(600)).unwrap();
    assert_eq!(svid.chain.len(), 3);
    assert!(verifies(&bundle(&[&root]), &svid.chain));
    // No SVID outlives the chain.
    let svid = lower.mint(&id(), Duration::from_secs(7200)).unwrap();
    assert!(svid.not_after <= lower.valid_until());
    assert!(lower.valid_until() <= SystemTime::now() + Duration::from_secs(3600));
}

#[test]
fn a_bundle_of_two_roots_verifies_the_svids_of_both() {
    let (old, new) = (Ca::generate(TD).unwrap(), Ca::generate(TD).unwrap());
    let new_mid = new.issue_intermediate(Duration::from_secs(86400)).unwrap();
    let both = bundle(&[&old, &new]);
    for ca in [&old, &new, &new_mid] {
        assert!(verifies(
            &both,
            &ca.mint(&id(), Duration::from_secs(600)).unwrap().chain
        ));
    }
    // A CA whose bundle holds both signs for the root it reaches.
    let signing = new_mid
        .with_roots(&[old.cert_der().clone(), new.cert_der().clone()])
        .unwrap();
    assert_eq!(signing.roots().len(), 2);
    assert_eq!(signing.signing_roots(), [new.cert_der().clone()]);
}

#[test]
fn files_round_trip_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    // The single-file layout: ca.pem and ca-key.pem only.
    let root = Ca::load_or_generate(TD, dir.path()).unwrap();
    assert!(!dir.path().join("roots.pem").exists());
    let again = Ca::load(TD, dir.path()).unwrap();
    assert_eq!(again.roots(), [root.cert_der().clone()]);
    // An intermediate with an offline root: four files.
    let mid = root.issue_intermediate(Duration::from_secs(86400)).unwrap();
    mid.save(dir.path()).unwrap();
    let loaded = Ca::load(TD, dir.path()).unwrap();
    assert_eq!(loaded.cert_der(), mid.cert_der());
    assert_eq!(loaded.roots(), [root.cert_der().clone()]);
    assert_eq!(loaded.intermediates(), mid.intermediates());
    // ca-chain.pem alone is enough when it ends at the root.
    std::fs::remove_file(dir.path().join("roots.pem")).unwrap();
    assert_eq!(
        Ca::load(TD, dir.path()).unwrap().roots(),
        [root.cert_der().clone()]
    );
}

#[test]
fn a_leaf_is_no_signing_certificate() {
    let root = Ca::generate(TD).unwrap();
    let leaf = root.mint(&id(), Duration::from_secs(600)).unwrap();
    let (cert, key) = svid_to_pem(&leaf);
    let e = refused(&CaPem {
        cert,
        key,
        chain: None,
        roots: Some(root.roots_pem()),
    });
    assert!(e.contains("ca.pem") && e.contains("not a CA"), "{e}");
}

#[test]
fn a_key_must_be_the_signing_certificates() {
    let (a, b) = (Ca::generate(TD).unwrap(), Ca::generate(TD).unwrap());
    let e = refused(&CaPem {
        cert: a.cert_pem().into(),
        key: b.key_pem().into(),
        ..CaPem::default()
    });
    assert!(e.contains("ca-key.pem") && e.contains("not the key"), "{e}");
    let e = refused(&CaPem {
        cert: a.cert_pem().into(),
        key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        ..CaPem::default()
    });
    assert!(e.contains("ca-key.pem"), "{e}");
}

#[test]
fn a_chain_must_reach_a_root_of_the_bundle() {
    let (root, other) = (Ca::generate(TD).unwrap(), Ca::generate(TD).unwrap());
    let mid = root.issue_intermediate(Duration::from_secs(86400)).unwrap();
    let mut pem = mid.parts().clone();
    pem.roots = Some(other.roots_pem());
    let e = refused(&pem);
    assert!(e.contains("does not reach a root"), "{e}");
    // No chain and no bundle: nothing to reach.
    pem.chain = None;
    pem.roots = None;
    let e = refused(&pem);
    assert!(e.contains("roots.pem") && e.contains("no root"), "{e}");
    // A chain with its intermediate missing (a CA signed by mid, sent
    // with the root only) does not reach it either.
    let lower = mid.issue_intermediate(Duration::from_secs(3600)).unwrap();
    let mut pem = lower.parts().clone();
    pem.chain = Some(root.cert_pem().into());
    let e = refused(&pem);
    assert!(e.contains("does not reach a root"), "{e}");
    // Garbage in any part: named.
    let mut pem = mid.parts().clone();
    pem.roots = Some("not pem".into());
    assert!(refused(&pem).contains("roots.pem"));
    let mut pem = mid.parts().clone();
    pem.chain = Some("not pem".into());
    assert!(refused(&pem).contains("ca-chain.pem"));
}

#[test]
fn an_expired_signing_certificate_is_refused() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(7200)).into();
    params.not_after = (now - Duration::from_secs(60)).into();
    let cert = params.self_signed(&key).unwrap();
    let e = refused(&CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        ..CaPem::default()
    });
    assert!(e.contains("ca.pem") && e.contains("expired"), "{e}");
    // The same for an intermediate above a valid signing certificate is
    // covered by webpki's path check, which item 5 runs.
    assert!(matches!(
        Ca::from_parts("not a trust domain!", Ca::generate(TD).unwrap().parts()),
        Err(CaError::Invalid { .. })
    ));
}
