//! The lab: real quicmesh clusters on one Linux host.
//!
//! - [`net`]: the topology — nodes and pods as network namespaces, veth links,
//!   a fabric bridge, nftables counters and tc on the node links;
//! - [`mesh`]: quicmesh on top — a ztunnel per node, pods enrolled, a
//!   development CA — and helpers to act as an app inside a pod.
//!
//! The e2e tests, `quicmesh local up` and the benchmarks all use this crate.

pub mod local;
pub mod mesh;
pub mod net;

pub use mesh::{Mesh, MeshPod, MeshSpec};
pub use net::{Lab, PodSpec, TopologySpec};
