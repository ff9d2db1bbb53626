//! Where the controller's objects come from. Each source feeds the one
//! [`crate::store::Store`]; translation does not know which source it was.

pub mod files;
pub mod kube;
pub mod manifest;
