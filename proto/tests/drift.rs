//! The generated code is checked in; this test fails when it no longer matches
//! the `.proto` files. Regenerate with `QUICMESH_BLESS=1 cargo test -p quicmesh-proto`.

use std::path::Path;

#[test]
fn generated_code_matches_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let protos = [
        "enrollment.proto",
        "config.proto",
        "ca.proto",
        "workload.proto",
    ];
    let fds = protox::compile(protos, [root.join("proto")]).expect("proto files compile");
    let out = tempfile::tempdir().unwrap();
    // The config messages' serde impls (the protobuf JSON mapping), for
    // the admin config dumps: quicmesh.config.v1.serde.rs.
    // Only its file: pbjson-build wants a package in every file it is
    // given, and the Workload API's has none.
    let mut config = fds.clone();
    config
        .file
        .retain(|f| f.package.as_deref() == Some("quicmesh.config.v1"));
    let descriptors = prost::Message::encode_to_vec(&config);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)
        .expect("descriptors")
        .out_dir(out.path())
        .build(&[".quicmesh.config"])
        .expect("serde generation");
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let entry = entry.unwrap();
        let fresh = std::fs::read_to_string(entry.path()).unwrap();
        // The Workload API has no package (its gRPC paths are the spec's),
        // so prost names its file "_.rs".
        let name = match entry.file_name().to_str() {
            Some("_.rs") => "spiffe.workload.rs".into(),
            _ => entry.file_name(),
        };
        let checked_in = root.join("src/gen").join(name);
        if std::fs::read_to_string(&checked_in).ok().as_deref() != Some(fresh.as_str()) {
            if std::env::var_os("QUICMESH_BLESS").is_some() {
                std::fs::write(&checked_in, &fresh).unwrap();
            } else {
                stale.push(checked_in.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; run QUICMESH_BLESS=1 cargo test -p quicmesh-proto"
    );
}
