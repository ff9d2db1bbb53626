//! quicmesh-cni: the chained CNI plugin that hands each new pod's network
//! namespace to its node's ztunnel, and the node agent that installs it and
//! enrolls the pods that were running before it.

pub mod install;
pub mod procfs;
