//! What the integration tests share.

pub mod workload_api;
