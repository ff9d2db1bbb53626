//! Protobuf messages for the APIs between quicmesh's parts.
//!
//! The `.proto` files under `proto/` are the contract; the Rust code under
//! `src/gen/` is generated from them and checked in (the `drift` test fails
//! when the two disagree), so building quicmesh needs no `protoc`.

/// Pod enrollment between the node agent (CNI plugin or lab) and ztunnel.
pub mod enrollment {
    include!("gen/quicmesh.enrollment.v1.rs");
}

/// The config stream from the controller to the proxies. Its messages
/// are also `serde` values in the protobuf JSON mapping (lowerCamelCase
/// fields, bytes in base64, defaults left out), for config dumps.
pub mod config {
    include!("gen/quicmesh.config.v1.rs");
    include!("gen/quicmesh.config.v1.serde.rs");
}

/// The controller's certificate authority.
pub mod ca {
    include!("gen/quicmesh.ca.v1.rs");
}

/// The SPIFFE Workload API (a SPIRE agent's): our own copy of the public
/// definitions, wire-compatible. ztunnel's client is the `spiffe` crate's;
/// this serves the test servers.
pub mod workload {
    include!("gen/spiffe.workload.rs");
}
