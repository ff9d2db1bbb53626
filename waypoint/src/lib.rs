//! The waypoint: quicmesh's per-namespace L7 proxy. A namespace that opts in
//! (`quicmesh.io/use-waypoint`) has its traffic tunnelled to its waypoint,
//! which routes each HTTP request by the Gateway API routes (GAMMA:
//! `HTTPRoute`/`GRPCRoute` whose `parentRefs` name a Service) and forwards it
//! over the mesh's tunnel.
//!
//! The routing decision itself (Gateway API precedence, weights, filters)
//! is [`quicmesh_core::route`], shared with the controller, which checks
//! routes with the same code before it sends them.
//!
//! - [`authn`]: RequestAuthentication: each request's JWT checked before
//!   routing (401 when invalid), the verified result kept for the request;
//! - [`jwks`]: the key sets of `jwksUri` rules, fetched and refreshed off
//!   the request path;
//! - [`authz`]: the destination's AuthorizationPolicies, decided for each
//!   request's client;
//! - [`config`]: the mesh as the waypoint sees it, built from the
//!   controller's resources (Service ports with their routes, endpoints,
//!   the workloads whose own addresses it serves);
//! - [`proxy`]: the data path: tunnelled connections served as HTTP/1.1 or
//!   HTTP/2, each request routed and forwarded;
//! - [`upstream`]: HTTP to endpoints over the waypoint's own tunnels;
//! - [`response`]: every failure turned into a status and a response flag;
//! - [`sniff`]: HTTP or opaque TCP, from a connection's first bytes;
//! - [`retry`]: retry budgets, so retries cannot multiply a route's load;
//! - [`resilience`]: TrafficPolicy enforcement (rate limits, faults,
//!   circuit breaking, outlier detection, body limits);
//! - [`metrics`]: requests by Service, status and flag; retries;
//! - [`app`]: the binary's wiring (identity, tunnel server, config stream,
//!   metrics and admin endpoints, drain).

pub mod app;
pub mod authn;
pub mod authz;
pub mod config;
pub mod jwks;
pub mod metrics;
pub mod proxy;
pub mod resilience;
pub mod response;
pub mod retry;
pub mod sniff;
pub mod upstream;
