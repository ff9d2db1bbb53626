//! ztunnel's ports inside every pod and the mark of its own sockets
//! (DESIGN.md's contract with the redirection rules and the tunnel).

/// SO_MARK of every socket ztunnel opens inside a pod: never redirected.
pub const ZTUNNEL_MARK: u32 = 0x1508;
/// Where the pod's outbound TCP is redirected.
pub const OUTBOUND_PORT: u16 = 15001;
/// Where inbound TCP from outside the mesh is redirected.
pub const INBOUND_PLAINTEXT_PORT: u16 = 15006;

/// Ports of ztunnel itself: never a valid destination for delivery to an app
/// (delivering there would loop a connection back into ztunnel).
pub const ZTUNNEL_PORTS: [u16; 5] = [15000, 15001, 15006, 15008, 15020];
