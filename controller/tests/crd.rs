//! The CRD YAML checked in under controller/crds/ (what the chart installs)
//! must be the one the Rust types generate. `QUICMESH_BLESS=1` rewrites it.

#[test]
fn checked_in_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crds/authorizationpolicies.quicmesh.io.yaml");
    let want = format!(
        "# Generated from controller/src/policy.rs; do not edit.\n# Regenerate: QUICMESH_BLESS=1 cargo test -p quicmesh-controller --test crd\n{}",
        quicmesh_controller::policy::crd_yaml()
    );
    if std::env::var_os("QUICMESH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with QUICMESH_BLESS=1", path.display()));
    assert!(
        have == want,
        "{} is stale; regenerate with QUICMESH_BLESS=1 cargo test -p quicmesh-controller --test crd",
        path.display()
    );
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
