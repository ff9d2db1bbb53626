//! The data path of one enrolled pod: outbound capture (15001), the tunnel
//! server (15008/udp), plaintext inbound (15006), and passthrough for
//! destinations outside the mesh. Sockets are opened inside the pod's network
//! namespace ([`socket`]).

pub mod inbound;
pub mod lb;
pub mod live;
pub mod outbound;
pub mod socket;

/// Ports of ztunnel itself: never a valid destination for delivery to an app
/// (delivering there would loop a connection back into ztunnel).
pub const ZTUNNEL_PORTS: [u16; 5] = [15000, 15001, 15006, 15008, 15020];
