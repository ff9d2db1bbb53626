//! ztunnel, quicmesh's node proxy.
//!
//! - [`inpod`]: enrollment API, and redirection rules inside pod namespaces;
//! - [`proxy`]: the per-pod data path (outbound, inbound, passthrough);
//! - [`authz`]: which policies apply to an inbound connection, and the decision (pure);
//! - [`identity`]: where workload SVIDs come from;
//! - [`state`]: what ztunnel knows about the mesh (pure);
//! - [`config`]: flags and the static workload file;
//! - [`app`]: wiring, admin and metrics endpoints.

pub mod app;
pub mod authz;
pub mod config;
pub mod controller;
pub mod identity;
pub mod inpod;
pub mod metrics;
pub mod proxy;
pub mod state;
