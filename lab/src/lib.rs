//! The lab: real quicmesh clusters on one Linux host.
//!
//! - [`net`]: the topology — nodes and pods as network namespaces, veth links,
//!   a fabric bridge, nftables counters and tc on the node links;
//! - [`ztunnels`]: the node proxies — a real ztunnel process per node,
//!   started, stopped and re-synced in one place;
//! - [`cni`]: the container runtime's side of CNI — a real node agent per
//!   node, and the real plugin run for each pod as a kubelet runs it;
//! - [`mesh`]: quicmesh on a static config — a development CA, pods
//!   enrolled — and helpers to act as an app inside a pod;
//! - [`local`]: quicmesh driven by the real controller from manifests
//!   (`quicmesh local up`).
//!
//! The e2e tests, `quicmesh local up` and the benchmarks all use this crate.

pub mod cni;
pub mod local;
pub mod mesh;
pub mod net;
pub mod ztunnels;

pub use mesh::{Mesh, MeshPod, MeshSpec};
pub use net::{Lab, LogFormat, PodSpec, TopologySpec};

/// The metrics and health port of every quicmesh proxy (ztunnel, waypoint).
pub const WAYPOINT_METRICS_PORT: u16 = 15020;
