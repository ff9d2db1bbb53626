//! The config messages in the protobuf JSON mapping (what the admin config
//! dumps show): lowerCamelCase names, a oneof as its one field, 64-bit
//! integers and bytes as strings (bytes in base64), defaults left out.

use quicmesh_proto::config::{resource, Resource, TrustBundle, Workload};

#[test]
fn resources_read_as_the_protobuf_json_mapping() {
    let w = Resource {
        name: "workload/u1".into(),
        version: 7,
        kind: Some(resource::Kind::Workload(Workload {
            uid: "u1".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            ips: vec!["10.244.1.5".into()],
            in_mesh: true,
            ..Workload::default()
        })),
    };
    assert_eq!(
        serde_json::to_value(&w).unwrap(),
        serde_json::json!({
            "name": "workload/u1",
            "version": "7",
            "workload": {"uid": "u1", "namespace": "shop", "serviceAccount": "web",
                         "ips": ["10.244.1.5"], "inMesh": true}
        })
    );
    let b = Resource {
        name: "bundle/cluster.local".into(),
        version: 1,
        kind: Some(resource::Kind::TrustBundle(TrustBundle {
            trust_domain: "cluster.local".into(),
            roots: vec![vec![0x30, 0x82, 0x01]],
            sequence: 0,
        })),
    };
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["trustBundle"]["roots"], serde_json::json!(["MIIB"]));
    // And back.
    let back: Resource = serde_json::from_value(v).unwrap();
    assert_eq!(back, b);
}
