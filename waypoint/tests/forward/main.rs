//! The waypoint's data path over real tunnels on loopback: a client tunnels
//! to the waypoint (as ztunnel will), the waypoint routes each request and
//! forwards it over its own tunnel to a destination tunnel server that
//! delivers to a real HTTP server, as a destination ztunnel does.
//!
//! Every hop is real: QUIC with SVIDs from one CA, HTTP/3 CONNECT, hyper on
//! both sides of the waypoint, TCP to the apps.

#[path = "../support/mod.rs"]
mod support;

mod lab;

mod conduct;
mod policy;
mod routing;
mod streams;
