//! quicmesh's CNI plugin and its node agent, in one binary
//! (`quicmesh-cni`):
//!
//! - [`plugin`]: run by the container runtime with `CNI_COMMAND` set, a
//!   chained plugin (spec 1.0/1.1: ADD, DEL, CHECK, STATUS, GC, VERSION)
//!   that hands each new pod's network namespace, as a descriptor, to the
//!   node agent and passes `prevResult` through. It decides nothing itself;
//!   [`spec`] is the CNI side of it (environment, config, errors), pure.
//! - [`protocol`]: what the plugin and the agent say to each other on the
//!   agent's socket (pure).
//! - [`agent`]: `quicmesh-cni agent`, the node agent: learns the pods of
//!   its node from the cluster, enrolls those in the mesh in ztunnel (new
//!   ones from the plugin, running ones when their namespace's label
//!   flips), and replays them when ztunnel restarts; in Kubernetes it
//!   installs the plugin and chains it ([`install`]) and finds the
//!   network namespaces of pods that predate it ([`procfs`]).
//!
//! What this crate must not do: talk to ztunnel other than through the
//! enrollment API (`quicmesh_core::enrollment`), or decide mesh membership
//! other than by the controller's rule (`Index::in_mesh`).

pub mod agent;
pub mod install;
pub mod plugin;
pub mod procfs;
pub mod protocol;
pub mod spec;
