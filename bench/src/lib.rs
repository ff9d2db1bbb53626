//! quicmesh's benchmark harness: the same figures measured *direct* (pods
//! outside the mesh, plain TCP across the node link) and through the *mesh*
//! (enrolled pods on two nodes, traffic through both ztunnels), on the lab's
//! real network namespaces, repeated and reported as median (min–max).
//!
//! - [`bench`]: the lab, the scenarios and the figures;
//! - [`l7`]: the L7 rows — HTTP/1.1 and HTTP/2 through the waypoint (plain,
//!   and with a JWT check and L7 policies), beside the L4 mesh and HAProxy
//!   as the L7 hop, on a cluster from manifests;
//! - [`load`]: the open-loop (constant rate), closed-loop and churn load
//!   generator run inside the client pod;
//! - [`http`]: the 1 KiB request/response wire format and the small server
//!   run inside the server pod;
//! - [`ceiling`]: the tunnel's QUIC alone between two pods (the ceiling
//!   row);
//! - [`http2`]: the same exchange over HTTP/2 (h2c): the server's HTTP/2
//!   side and the HTTP/2 load generator;
//! - [`procstat`]: a process's CPU time and memory from `/proc`;
//! - [`report`]: the markdown tables and the JSON document;
//! - [`tls`]: the tunnel's TLS per crypto library, in memory (`tls`
//!   subcommand).

pub mod bench;
pub mod ceiling;
pub mod http;
pub mod http2;
pub mod l7;
pub mod load;
pub mod peer;
pub mod procstat;
pub mod report;
pub mod tls;
