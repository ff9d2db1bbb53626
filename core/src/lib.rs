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

/// The library behind [`crypto_provider`], as logged at start.
pub const CRYPTO_LIBRARY: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};
