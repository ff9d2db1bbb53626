//! Identity strings from peers and users: SPIFFE IDs (certificate SANs,
//! config resources, CSRs) and the principal, namespace and IP-block
//! patterns of authorization policies.
//!
//! Holds: no panic; an accepted ID is exactly its input, obeys the
//! specification's limits, and round-trips through `Display`, serde and
//! (for workload IDs) `SpiffeId::workload`; an accepted pattern round-trips
//! through `Display`, the form in which the controller sends it to proxies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicmesh_core::authz::{parse_namespace, parse_principal, principal_key, IpNet};
use quicmesh_core::identity::spiffe::{MAX_LEN, MAX_TRUST_DOMAIN_LEN};
use quicmesh_core::identity::SpiffeId;

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("spiffe_id", quicmesh_fuzz::seeds::spiffe_id),
    |data: &[u8]| {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(id) = SpiffeId::parse(s) {
            assert_eq!(id.as_str(), s);
            assert!(s.len() <= MAX_LEN);
            let td = id.trust_domain();
            assert!(!td.is_empty() && td.len() <= MAX_TRUST_DOMAIN_LEN);
            assert_eq!(format!("spiffe://{td}{}", id.path()), s);
            assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
            let json = serde_json::to_string(&id).expect("serializes");
            assert_eq!(serde_json::from_str::<SpiffeId>(&json).ok().as_ref(), Some(&id));
            if let Ok((ns, sa)) = id.namespace_and_service_account() {
                assert_eq!(SpiffeId::workload(td, ns, sa).as_ref(), Ok(&id));
            }
            // A proven ID is matched by its own exact principal pattern.
            if let Ok(m) = parse_principal(s) {
                assert!(m.matches(principal_key(id.as_str())), "{m} vs {id}");
            }
        }
        if let Ok(m) = parse_principal(s) {
            assert_eq!(parse_principal(&m.to_string()), Ok(m));
        }
        if let Ok(m) = parse_namespace(s) {
            assert_eq!(parse_namespace(&m.to_string()), Ok(m));
        }
        if let Ok(n) = IpNet::parse(s) {
            assert_eq!(IpNet::parse(&n.to_string()), Ok(n));
        }
    }
);
