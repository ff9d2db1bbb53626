//! What every quicmesh proxy shares, written once: SPIFFE identity and TLS
//! verification ([`identity`]), the QUIC/HTTP3 CONNECT tunnel ([`tunnel`]),
//! network-namespace plumbing ([`netns`]), node-local seqpacket sockets
//! with descriptors ([`seqpacket`]), L4 authorization evaluation
//! ([`authz`], pure), route matching ([`route`], pure), TrafficPolicy
//! settings ([`traffic`], pure), readiness ([`health`]), metrics and
//! logging.
//!
//! Nothing here knows about pods, nodes or config sources; those belong to
//! the proxies and the controller.

pub mod authz;
pub mod control;
pub mod duration;
pub mod enrollment;
pub mod health;
pub mod identity;
pub mod jwt;
pub mod lb;
pub mod memory;
pub mod metrics;
pub mod netns;
pub mod route;
pub mod runtime;
pub mod seqpacket;
pub mod telemetry;
pub mod trace;
pub mod traffic;
pub mod tunnel;

/// The crypto provider every TLS config in quicmesh uses: ring, or aws-lc-rs
/// in a build with the `aws-lc-rs` feature (measured side by side in
/// docs/performance.md). Its key exchange groups begin with X25519; the
/// aws-lc-rs provider also accepts the X25519MLKEM768 hybrid from a peer that
/// prefers it ([`tunnel::config::KeyExchange`]).
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = rustls::crypto::ring::default_provider();
    std::sync::Arc::new(provider)
}

/// Makes [`crypto_provider`] the process's default, for the TLS configs
/// that libraries build themselves (the Kubernetes client, tonic's servers):
/// every binary calls it first. Without it, a build with both ring and
/// aws-lc-rs in rustls (the `aws-lc-rs` feature) has no implicit default
/// and those libraries panic at their first TLS config. Calling it again
/// changes nothing.
pub fn install_crypto_provider() {
    // Err only when a default is already installed, which is then kept.
    let _ = rustls::crypto::CryptoProvider::install_default((*crypto_provider()).clone());
}

/// The library behind [`crypto_provider`], as logged at start.
pub const CRYPTO_LIBRARY: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

#[cfg(test)]
mod tests {
    use rustls::crypto::CryptoProvider;

    fn groups(p: &CryptoProvider) -> Vec<rustls::NamedGroup> {
        p.kx_groups.iter().map(|g| g.name()).collect()
    }

    #[test]
    fn libraries_building_their_own_tls_configs_get_quicmesh_s_provider() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        let installed = CryptoProvider::get_default().expect("a process default");
        let ours = super::crypto_provider();
        assert_eq!(groups(installed), groups(&ours));
        let suites = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(installed), suites(&ours));
        // What the Kubernetes client and tonic do: the implicit builder,
        // which panics when rustls has two providers and no default.
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert_eq!(groups(config.crypto_provider()), groups(&ours));
    }
}
