//! A peer's certificate chain as the TLS handshake hands it to our
//! verifiers (`core/src/identity/verify.rs`), both directions, against a
//! real trust bundle (a CA from `Ca::generate`); and `cert_info` on its
//! leaf. The first byte picks the form of the rest:
//! - bit 0 clear: the chain as DER pieces (`quicmesh_fuzz::pieces`), leaf
//!   first, then up to four intermediates;
//! - bit 0 set: an SVID freshly minted by the CA, with byte edits (pairs of
//!   a 2-byte offset and an XOR mask) applied, so that mutations stay near a
//!   certificate that chains;
//! - bit 1 set: the CA's own certificate is added as an intermediate;
//! - bit 2 set: the rest is also read as a PEM trust bundle.
//!
//! Holds: no panic; a chain the verifier accepts has a leaf whose
//! `cert_info` names the accepted identity, valid now; each rustls
//! verifier accepts exactly what `verify_peer_chain` accepts for its side
//! and its identity rule; an unedited SVID is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicmesh_core::identity::svid::cert_info;
use quicmesh_core::identity::verify::{self, verify_peer_chain};
use quicmesh_core::identity::TrustBundles;
use quicmesh_fuzz::fixture::fixture;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName};

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("peer_certificate", quicmesh_fuzz::seeds::peer_certificate),
    |data: &[u8]| {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let fx = fixture();
        let mut chain: Vec<Vec<u8>> = if flags & 1 == 0 {
            quicmesh_fuzz::pieces(rest, 5).into_iter().map(<[u8]>::to_vec).collect()
        } else {
            let mut leaf = fx.svid.chain[0].to_vec();
            let mut edited = false;
            for e in rest.chunks_exact(3).take(16) {
                let at = usize::from(u16::from_be_bytes([e[0], e[1]])) % leaf.len();
                leaf[at] ^= e[2];
                edited |= e[2] != 0;
            }
            if !edited {
                assert_eq!(
                    verify_peer_chain(
                        &fx.bundles,
                        &CertificateDer::from(&leaf[..]),
                        &[],
                        fx.now,
                        verify::Side::Client,
                        &fx.provider.signature_verification_algorithms,
                    )
                    .as_ref(),
                    Ok(&fx.svid.id),
                    "an unedited SVID verifies"
                );
            }
            vec![leaf]
        };
        if flags & 2 != 0 {
            chain.push(fx.ca.cert_der().to_vec());
        }
        if flags & 4 != 0 {
            let _ = TrustBundles::new().insert_pem("fuzz.example", rest);
        }
        let Some((leaf, intermediates)) = chain.split_first() else {
            return;
        };
        let leaf = CertificateDer::from(&leaf[..]);
        let intermediates: Vec<_> = intermediates.iter().map(|c| CertificateDer::from(&c[..])).collect();

        let info = cert_info(&leaf);
        if let Ok(i) = &info {
            assert_eq!(
                quicmesh_core::identity::SpiffeId::parse(i.id.as_str()).as_ref(),
                Ok(&i.id)
            );
        }
        let algs = &fx.provider.signature_verification_algorithms;
        for side in [verify::Side::Client, verify::Side::Server] {
            let got = verify_peer_chain(&fx.bundles, &leaf, &intermediates, fx.now, side, algs);
            if let Ok(id) = &got {
                let i = info.as_ref().expect("an accepted leaf is an SVID");
                assert_eq!(&i.id, id);
                assert!(i.not_before <= fx.now_system && fx.now_system <= i.not_after);
                assert!(fx.bundles.get(id.trust_domain()).is_some());
            }
            match side {
                verify::Side::Client => {
                    let name = ServerName::try_from("peer.fuzz").expect("name");
                    let ok = fx
                        .server_verifier
                        .verify_server_cert(&leaf, &intermediates, &name, &[], fx.now)
                        .is_ok();
                    assert_eq!(ok, got.as_ref().is_ok_and(|id| *id == fx.svid.id));
                }
                verify::Side::Server => {
                    let ok = fx
                        .client_verifier
                        .verify_client_cert(&leaf, &intermediates, fx.now)
                        .is_ok();
                    assert_eq!(ok, got.as_ref().is_ok_and(fixture_allows));
                }
            }
        }
    }
);

/// The client verifier's rule in the fixture.
fn fixture_allows(id: &quicmesh_core::identity::SpiffeId) -> bool {
    id.trust_domain() == quicmesh_fuzz::fixture::TRUST_DOMAIN
}
