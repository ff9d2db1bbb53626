//! A proxy's side of the controller: the TLS channel and the CA
//! ([`client`]), and the config stream with ACK/NACK ([`stream`]); and the
//! controller's side of that channel ([`incoming`]).

pub mod client;
pub mod incoming;
pub mod stream;
