//! In-pod capture: for each enrolled pod, ztunnel enters the pod's network
//! namespace, installs redirection rules there ([`rules`]), and opens the
//! pod's listeners there ([`pods`]). Pods arrive over the enrollment API
//! ([`enroll`]).

pub mod enroll;
pub mod pods;
pub mod rules;
