//! quicmesh's controller: the control plane.
//!
//! - [`model`]: the domain types (no Kubernetes or protobuf types);
//! - [`sources`]: where objects come from — a directory of manifests, or the
//!   Kubernetes API;
//! - [`index`] and [`store`]: what is known, and what changed;
//! - [`policy`]: the `AuthorizationPolicy` CRD and its compilation;
//! - [`authn`]: the `RequestAuthentication` CRD (JWT at waypoints) and its compilation;
//! - [`gamma`]: Gateway API routes attached to Services, and their status;
//! - [`traffic`]: the `TrafficPolicy` CRD (resilience), its compilation,
//!   targets and conflicts;
//! - [`federation`]: the `TrustDomainFederation` CRD, the fetcher of
//!   peers' bundles, and our SPIFFE bundle endpoint;
//! - [`waypoint`]: which Services go through which waypoint, and what runs one;
//! - [`translate`]: index → proxy config (pure);
//! - [`push`]: the config stream server;
//! - [`ca`]: the certificate authority;
//! - [`leader`]: leader election among replicas (Kubernetes);
//! - [`admin`]: the reports of /status and the state gauges.

pub mod admin;
pub mod attach;
pub mod authn;
pub mod ca;
pub mod federation;
pub mod gamma;
pub mod index;
pub mod leader;
pub mod model;
pub mod policy;
pub mod provision;
pub mod push;
pub mod server;
pub mod sources;
pub mod status;
pub mod store;
pub mod traffic;
pub mod translate;
pub mod trust;
pub mod waypoint;
pub mod workload_entry;
