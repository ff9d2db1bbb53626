//! What ztunnel knows about the mesh: workloads by address. Pure data, no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use quicmesh_core::identity::SpiffeId;

use crate::config::{Workload, WorkloadFile};

/// A workload with its identity resolved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshWorkload {
    #[serde(flatten)]
    pub workload: Workload,
    pub identity: SpiffeId,
}

/// Workloads indexed by IP.
#[derive(Debug, Default, serde::Serialize)]
pub struct State {
    pub trust_domain: String,
    #[serde(skip)]
    by_ip: HashMap<IpAddr, Arc<MeshWorkload>>,
    workloads: Vec<Arc<MeshWorkload>>,
}

impl State {
    pub fn from_file(file: &WorkloadFile) -> Self {
        let mut by_ip = HashMap::new();
        let mut workloads = Vec::new();
        for w in &file.workloads {
            let identity = SpiffeId::workload(&file.trust_domain, &w.namespace, &w.service_account)
                .expect("validated when the file was loaded");
            let mw = Arc::new(MeshWorkload {
                workload: w.clone(),
                identity,
            });
            for ip in &w.ips {
                by_ip.insert(*ip, mw.clone());
            }
            workloads.push(mw);
        }
        State {
            trust_domain: file.trust_domain.clone(),
            by_ip,
            workloads,
        }
    }

    /// The mesh workload at `ip`, if any: traffic to it is tunnelled.
    pub fn workload_at(&self, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        self.by_ip.get(&ip)
    }

    pub fn workloads(&self) -> &[Arc<MeshWorkload>] {
        &self.workloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_workloads_by_any_ip() {
        let f = WorkloadFile::parse(
            "trustDomain: td.example\nworkloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1, 'fd00::1']}\n",
            "x",
        )
        .unwrap();
        let s = State::from_file(&f);
        let w = s.workload_at("fd00::1".parse().unwrap()).unwrap();
        assert_eq!(w.identity.as_str(), "spiffe://td.example/ns/ns/sa/sa");
        assert!(s.workload_at("10.0.0.1".parse().unwrap()).is_some());
        assert!(s.workload_at("10.0.0.2".parse().unwrap()).is_none());
    }
}
