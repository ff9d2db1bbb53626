//! The tunnel: each TCP connection carried as one HTTP/3 `CONNECT` stream
//! (RFC 9114 §4.4) over mutually authenticated QUIC.
//!
//! - [`config`]: QUIC transport settings, UDP socket sizing, TLS configs.
//! - [`admission`]: which connection attempts the server spends a handshake
//!   on (caps, QUIC Retry under load), before anyone is authenticated.
//! - [`server`]: accepts CONNECT streams and hands them to an [`server::Inbound`].
//! - [`certificate`]: a server's certificate replaced as its SVID renews.
//! - [`client`]: a pool of QUIC connections, one CONNECT stream per TCP connection.
//! - [`connect`]: an answered CONNECT stream, pumped into TCP or used as a
//!   byte stream (`AsyncRead + AsyncWrite`, for hyper).
//! - [`pump`]: copies bytes between a TCP socket and a stream, with half-close
//!   and reset mapped both ways.

pub mod admission;
pub mod certificate;
pub mod client;
pub mod config;
pub mod connect;
pub mod http3;
pub mod pump;
pub mod server;

/// The UDP port of the tunnel on every pod and waypoint.
pub const TUNNEL_PORT: u16 = 15008;
/// ALPN of the tunnel.
pub const ALPN: &[u8] = b"h3";
