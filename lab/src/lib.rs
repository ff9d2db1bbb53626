//! placeholder
pub mod net;
