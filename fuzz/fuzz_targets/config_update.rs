//! Config-stream updates as ztunnel applies them
//! (`ztunnel/src/controller.rs` `apply`): each update decoded, merged into
//! the resources held so far (a full update replaces them, an incremental
//! one removes then adds), and the result validated by
//! `State::from_resources`, which either builds the new state or says why
//! the update is NACKed (the previous state stays). The input is a stream
//! of updates (`quicmesh_fuzz::pieces`).
//!
//! Holds: no panic; an accepted state indexes every workload it was given
//! by uid and by each of its addresses; authorization over it decides
//! without panicking, and a workload reached by an invalid ALLOW or DENY
//! policy is refused everything.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quicmesh_core::authz::{Action, Connection};
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::config::{resource, Resource, Update};
use quicmesh_core::authz::set::decide;
use ztunnel::state::State;

const TRUST_DOMAIN: &str = "cluster.local";

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("config_update", quicmesh_fuzz::seeds::config_update),
    |data: &[u8]| {
        let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
        let peer = SpiffeId::parse("spiffe://cluster.local/ns/client/sa/default").expect("ID");
        for piece in quicmesh_fuzz::pieces(data, 8) {
            let Ok(u) = Update::decode(piece) else {
                // The gRPC stream would fail; nothing is applied.
                continue;
            };
            let mut next = if u.full { BTreeMap::new() } else { resources.clone() };
            for name in &u.removed {
                next.remove(name);
            }
            for r in u.resources {
                next.insert(r.name.clone(), r);
            }
            let Ok(state) = State::from_resources(TRUST_DOMAIN, u.version, &next) else {
                continue;
            };
            assert_eq!(state.version, u.version);
            assert!(state.configured);
            for r in next.values() {
                if let Some(resource::Kind::Workload(w)) = &r.kind {
                    assert!(state.workload(&w.uid).is_some(), "workload {} indexed", w.uid);
                    for ip in &w.ips {
                        let ip: IpAddr = ip.parse().expect("accepted IPs parse");
                        assert!(state.workload_at(ip).is_some(), "{ip} indexed");
                    }
                }
            }
            for w in state.workloads().iter().take(8) {
                let dst = state.destination(&w.workload.uid, &w.workload.namespace);
                let poisoned = w
                    .policies
                    .iter()
                    .any(|p| p.invalid.is_some() && p.action != Action::Audit);
                for principal in [Some(peer.clone()), None] {
                    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
                    let conn = Connection::new(principal, TRUST_DOMAIN, src, 8080);
                    let d = decide(&state.authorization, &dst, &conn);
                    if poisoned && state.workload(&w.workload.uid).is_some_and(|x| std::sync::Arc::ptr_eq(x, w)) {
                        assert!(!d.allowed(), "invalid policy fails closed for {}", w.workload.uid);
                    }
                }
            }
            resources = next;
        }
    }
);
