//! ztunnel, quicmesh's node proxy.
//!
//! Modules from the top down; each uses only those below it (and
//! `quicmesh_core`, which holds what the waypoint shares: policy sets, SVIDs
//! and the CA client, the config stream, the tunnel, the balancer, the
//! enrollment protocol):
//! - [`app`]: wiring, admin and metrics endpoints;
//! - [`inpod`]: enrolled pods: redirection rules inside their namespaces,
//!   their listeners, their SVIDs;
//! - [`proxy`]: the per-pod data path (outbound, inbound, passthrough);
//! - [`node`]: what every pod's data path shares, and one pod's context;
//! - [`live`]: live inbound connections, re-checked when policy changes;
//! - [`state`]: what ztunnel knows about the mesh (pure);
//! - [`config`], [`metrics`], [`ports`]: flags and the static workload file,
//!   counters, ztunnel's ports and socket mark.

pub mod app;
pub mod config;
pub mod inpod;
pub mod live;
pub mod metrics;
pub mod node;
pub mod ports;
pub mod proxy;
pub mod state;
