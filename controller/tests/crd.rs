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
