//! The data path of one enrolled pod: outbound capture (15001), the tunnel
//! server (15008/udp), plaintext inbound (15006), and passthrough for
//! destinations outside the mesh. Sockets are opened inside the pod's network
//! namespace ([`socket`]).

pub mod inbound;
pub mod outbound;
pub mod socket;
