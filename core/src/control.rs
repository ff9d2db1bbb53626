//! A proxy's side of the controller: the TLS channel and the CA
//! ([`client`]), and the config stream with ACK/NACK ([`stream`]).

pub mod client;
pub mod stream;
