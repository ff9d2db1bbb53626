//! The CRD YAML checked in under controller/crds/ and the chart's copy
//! under helm/quicmesh/crds/ (what `helm install` applies) must both be the
//! one the Rust types generate, byte for byte. `QUICMESH_BLESS=1` rewrites
//! both.

use std::path::{Path, PathBuf};

/// Where the CRDs are kept: beside the controller, and in the chart.
fn crd_dirs() -> [PathBuf; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("crds"), root.join("../helm/quicmesh/crds")]
}

/// Each CRD: its file name, the Rust source it is generated from, and the YAML.
fn crds() -> [(&'static str, &'static str, String); 5] {
    [
        (
            "authorizationpolicies.quicmesh.io.yaml",
            "controller/src/policy.rs",
            quicmesh_controller::policy::crd_yaml(),
        ),
        (
            "requestauthentications.quicmesh.io.yaml",
            "controller/src/authn.rs",
            quicmesh_controller::authn::crd_yaml(),
        ),
        (
            "trafficpolicies.quicmesh.io.yaml",
            "controller/src/traffic.rs",
            quicmesh_controller::traffic::crd_yaml(),
        ),
        (
            "workloadentries.quicmesh.io.yaml",
            "controller/src/workload_entry.rs",
            quicmesh_controller::workload_entry::crd_yaml(),
        ),
        (
            "trustdomainfederations.quicmesh.io.yaml",
            "controller/src/federation.rs",
            quicmesh_controller::federation::crd_yaml(),
        ),
    ]
}

#[test]
fn checked_in_crd_matches_the_types() {
    for (file, source, yaml) in crds() {
        let want = format!(
            "# Generated from {source}; do not edit.\n# Regenerate: QUICMESH_BLESS=1 cargo test -p quicmesh-controller --test crd\n{yaml}"
        );
        for dir in crd_dirs() {
            let path = dir.join(file);
            if std::env::var_os("QUICMESH_BLESS").is_some() {
                std::fs::write(&path, &want).unwrap();
                continue;
            }
            let have = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run with QUICMESH_BLESS=1", path.display()));
            assert!(
                have == want,
                "{} is stale; regenerate with QUICMESH_BLESS=1 cargo test -p quicmesh-controller --test crd",
                path.display()
            );
        }
    }
}

/// The chart installs exactly the controller's CRDs: the same files, the
/// same bytes (a CRD added to one directory only, or edited in one, fails).
#[test]
fn the_charts_crds_are_the_controllers() {
    let [ours, chart] = crd_dirs();
    let read = |dir: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    };
    let (ours, chart) = (read(&ours), read(&chart));
    assert!(!ours.is_empty());
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "controller/crds/ and helm/quicmesh/crds/ hold different files"
    );
    for (name, bytes) in &ours {
        assert!(
            chart[name] == *bytes,
            "helm/quicmesh/crds/{name} differs from controller/crds/{name}; copy it (or QUICMESH_BLESS=1 cargo test -p quicmesh-controller --test crd)"
        );
    }
}

/// The example policies users copy (examples/policy/) are valid.
#[test]
fn example_policies_are_valid() {
    use quicmesh_controller::model::Object;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed =
            quicmesh_controller::sources::manifest::parse_file(&text, &path.display().to_string())
                .unwrap();
        for doc in parsed.docs {
            match doc.unwrap() {
                Some(Object::AuthorizationPolicy(p)) => {
                    assert_eq!(p.policy.invalid, None, "{}", path.display());
                    assert!(
                        p.warnings.is_empty(),
                        "{}: {:?}",
                        path.display(),
                        p.warnings
                    );
                    seen += 1;
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }
    assert!(seen >= 2, "no example policies found in {}", dir.display());
}

/// The RequestAuthentication example (examples/waypoint/) is valid as the
/// file source reads it: its jwksFrom.file found beside it, its keys usable.
#[test]
fn the_request_authentication_example_is_valid() {
    use quicmesh_controller::model::Object;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/waypoint");
    let mut source = quicmesh_controller::sources::files::FileSource::new(vec![dir.clone()]);
    let (objects, errors) = source.poll().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let ras: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            Object::RequestAuthentication(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(ras.len(), 1, "{}", dir.display());
    let c =
        quicmesh_controller::authn::compile(
            ras[0],
            "quicmesh-system",
            &std::collections::BTreeMap::<
                (String, String),
                std::collections::BTreeMap<String, Vec<u8>>,
            >::new(),
        );
    assert_eq!(c.invalid(), None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.resource.rules[0].output_claim_to_headers.len(), 2);
    assert!(c.resource.rules[0].jwks.contains("demo-2026"));
}

/// The example TrafficPolicy users copy (examples/waypoint/) is valid.
#[test]
fn the_example_traffic_policy_is_valid() {
    use quicmesh_controller::model::Object;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/waypoint/traffic-policy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed =
        quicmesh_controller::sources::manifest::parse_file(&text, &path.display().to_string())
            .unwrap();
    let mut seen = 0;
    for doc in parsed.docs {
        if let Some(Object::TrafficPolicy(p)) = doc.unwrap() {
            assert!(p.parts.is_ok(), "{}: {:?}", p.name, p.parts);
            assert!(
                p.targets.iter().all(|t| t.target.is_ok()),
                "{:?}",
                p.targets
            );
            seen += 1;
        }
    }
    assert!(seen >= 1, "no TrafficPolicy in {}", path.display());
}
