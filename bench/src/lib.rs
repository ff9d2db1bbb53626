//! quicmesh's benchmark harness: the same figures measured *direct* (pods
//! outside the mesh, plain TCP across the node link) and through the *mesh*
//! (enrolled pods on two nodes, traffic through both ztunnels), on the lab's
//! real network namespaces, repeated and reported as median (min–max).
//!
//! - [`bench`]: the lab, the scenarios and the figures;
//! - [`load`]: the open-loop (constant rate), closed-loop and churn load
//!   generator run inside the client pod;
//! - [`http`]: the 1 KiB request/response wire format and the small server
//!   run inside the server pod;
//! - [`procstat`]: ztunnel's CPU time and memory from `/proc`;
//! - [`report`]: the markdown table and the JSON document.

pub mod bench;
pub mod http;
pub mod load;
pub mod procstat;
pub mod report;
