//! SPIFFE identity: IDs, SVIDs, trust bundles, a CA, and the TLS verifiers
//! that make every tunnel mutually authenticated.

pub mod bundle_doc;
pub mod bundles;
pub mod ca;
pub mod certs;
pub mod spiffe;
pub mod svid;
pub mod verify;
pub mod workload_api;

pub use bundles::SharedBundles;
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use svid::{Svid, TrustBundles};
