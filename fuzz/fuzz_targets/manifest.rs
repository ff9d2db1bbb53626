//! Manifest files as the controller's file source and `quicmesh local`
//! read them (`controller/src/sources/manifest.rs`: multi-document YAML),
//! then the rest of the controller's path: every object into the index,
//! the index translated to proxy resources, and those resources applied as
//! ztunnel applies a full config update.
//!
//! Holds: no panic; errors name their document; translation is
//! deterministic; ztunnel accepts whatever the controller sends (a resource
//! it refused would NACK the whole update, on every node).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicmesh_controller::index::Index;
use quicmesh_controller::sources::manifest::parse_file;
use quicmesh_controller::translate::{self, Mesh};
use ztunnel::state::State;

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("manifest", quicmesh_fuzz::seeds::manifest),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(parsed) = parse_file(text, "fuzz.yaml") else {
            return;
        };
        let mut index = Index::new();
        for (i, doc) in parsed.docs.into_iter().enumerate() {
            match doc {
                Ok(Some(obj)) => {
                    index.upsert(obj);
                }
                Ok(None) => {}
                Err(e) => assert_eq!(e.doc, i, "{e}"),
            }
        }
        let mesh = Mesh::new("cluster.local");
        let resources = translate::all(&index, &mesh);
        assert_eq!(translate::all(&index, &mesh), resources, "deterministic");
        if let Err(e) = State::from_resources(&mesh.trust_domain, 1, &resources) {
            panic!("ztunnel refuses what the controller sends: {e}");
        }
    }
);
