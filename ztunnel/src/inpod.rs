//! In-pod capture: for each enrolled pod, ztunnel enters the pod's network
//! namespace, installs redirection rules there ([`rules`]), and opens the
//! pod's listeners there ([`pods`]), and gets and renews its SVID
//! ([`svid`]). Pods arrive over the enrollment API
//! ([`quicmesh_core::enrollment`]).

pub mod pods;
pub mod rules;
pub mod svid;
