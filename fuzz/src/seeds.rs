//! The seed corpus of each target: real messages, as quicmesh sends them
//! or as the repository's examples write them.

use quicmesh_core::tunnel::http3::{frame, message, qpack};

pub type Seeds = Vec<(String, Vec<u8>)>;

fn named(v: Vec<(&str, Vec<u8>)>) -> Seeds {
    v.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// A request stream: one HEADERS frame, then DATA.
fn request_stream(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let block = qpack::encode(fields.iter().copied());
    let mut s = frame::frame(frame::HEADERS, &block);
    s.extend(frame::frame(frame::DATA, b"hello"));
    s
}

pub fn h3_request() -> Seeds {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "forwarded",
        http::HeaderValue::from_static("for=10.244.1.2"),
    );
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    let ours = qpack::encode(message::connect_fields("10.244.2.3:8080", &headers));
    let mut ours_stream = frame::frame(frame::HEADERS, &ours);
    ours_stream.extend(frame::frame(frame::DATA, b"GET / HTTP/1.1\r\n\r\n"));
    let mut greased = frame::frame(0x21, b"grease");
    greased.extend(&ours_stream);
    named(vec![
        ("our_connect", ours_stream),
        ("grease_first", greased),
        (
            "connect_v6",
            request_stream(&[(b":method", b"CONNECT"), (b":authority", b"[fd00::1]:80")]),
        ),
        (
            "get",
            request_stream(&[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":path", b"/"),
                (b":authority", b"a"),
            ]),
        ),
        (
            "extended_connect",
            request_stream(&[
                (b":method", b"CONNECT"),
                (b":protocol", b"connect-udp"),
                (b":scheme", b"https"),
                (b":path", b"/x"),
                (b":authority", b"a"),
            ]),
        ),
        (
            "host_mismatch",
            request_stream(&[
                (b":method", b"CONNECT"),
                (b":authority", b"10.0.0.1:80"),
                (b"host", b"10.0.0.2:80"),
            ]),
        ),
        // Encoded by ls-qpack (Huffman literals, literal names); the
        // vector of core's qpack tests.
        (
            "independent_encoder",
            frame::frame(
                frame::HEADERS,
                &[
                    0x00, 0x00, 0xcf, 0x50, 0x8a, 0x08, 0x17, 0x0a, 0xe2, 0x5d, 0x9b, 0x8f, 0x01,
                    0xe0, 0x7f, 0x5f, 0x50, 0x85, 0x19, 0x8f, 0xda, 0xd3, 0x13, 0x2e, 0xf2, 0xb1,
                    0x2d, 0x42, 0x4f, 0x4f, 0x01, 0x76, 0x2b, 0x9c, 0xe8, 0x4f, 0x8a, 0x08, 0x17,
                    0x0a, 0xe2, 0x5d, 0x9b, 0x8f, 0x01, 0xe0, 0x7f,
                ],
            ),
        ),
    ])
}

pub fn h3_frames() -> Seeds {
    use frame::Settings;
    let settings = Settings {
        qpack_max_table_capacity: 0,
        qpack_blocked_streams: 0,
        max_field_section_size: Some(16 << 10),
    };
    let mut s = vec![0u8];
    settings.encode(&mut s);
    let mut greased = s.clone();
    frame::put_varint(&mut greased, 0x1f * 7 + 0x21);
    frame::put_varint(&mut greased, 12345);
    let mut goaway = vec![1u8];
    frame::put_varint(&mut goaway, 400);
    let mut header = vec![2u8];
    frame::put_header(&mut header, frame::HEADERS, 70_000);
    let mut response = vec![3u8];
    response.extend(qpack::encode(message::status_fields(&http::StatusCode::OK)));
    let mut refused = vec![3u8];
    refused.extend(qpack::encode([
        (&b":status"[..], &b"403"[..]),
        (b"server", b"quicmesh"),
    ]));
    named(vec![
        ("settings_ours", s),
        ("settings_grease", greased),
        ("goaway", goaway),
        ("frame_header", header),
        ("response_200", response),
        ("response_403", refused),
    ])
}

pub fn spiffe_id() -> Seeds {
    [
        ("workload", "spiffe://cluster.local/ns/demo-server/sa/hello"),
        ("node", "spiffe://cluster.local/quicmesh/node/node-1"),
        ("trust_domain_only", "spiffe://other.example"),
        ("principal_pattern", "cluster.local/ns/demo-client/sa/*"),
        ("namespace_pattern", "demo-*"),
        ("ip_block", "10.244.0.0/16"),
        ("ip_block_v6", "fd00::/8"),
        ("dot_segment", "spiffe://td/ns/../sa/x"),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec()))
    .collect()
}

pub fn peer_certificate() -> Seeds {
    use quicmesh_core::identity::ca::Ca;
    use quicmesh_core::identity::SpiffeId;
    use std::time::{Duration, SystemTime};

    let fx = crate::fixture::fixture();
    let leaf = fx.svid.chain[0].to_vec();
    let day = Duration::from_secs(86400);
    let now = SystemTime::now();
    let id = SpiffeId::parse(crate::fixture::PEER).expect("ID");
    let expired = fx
        .ca
        .mint_window(&id, now - 30 * day, now - day)
        .expect("SVID");
    let other_id = SpiffeId::parse("spiffe://other.example/ns/a/sa/b").expect("ID");
    let federated = fx.federated.mint(&other_id, day).expect("SVID");
    let stranger = Ca::generate("cluster.local").expect("CA");
    let forged = stranger.mint(&id, day).expect("SVID");
    let with = |flags: u8, rest: Vec<u8>| {
        let mut v = vec![flags];
        v.extend(rest);
        v
    };
    named(vec![
        ("svid_der", with(0, crate::join(&[&leaf]))),
        (
            "svid_der_with_ca",
            with(0, crate::join(&[&leaf, fx.ca.cert_der()])),
        ),
        ("minted_unedited", with(1, Vec::new())),
        ("minted_one_edit", with(1, vec![0x00, 0x40, 0x01])),
        ("minted_with_ca", with(3, Vec::new())),
        ("expired", with(0, crate::join(&[&expired.chain[0]]))),
        ("federated", with(0, crate::join(&[&federated.chain[0]]))),
        ("other_ca", with(0, crate::join(&[&forged.chain[0]]))),
        (
            "ca_bundle_pem",
            with(4, fx.ca.cert_pem().as_bytes().to_vec()),
        ),
    ])
}

/// Enrollment messages: each piece a head byte (descriptors that came
/// with it) and one encoded `Request` (see the target).
pub fn enrollment() -> Seeds {
    use prost::Message;
    use quicmesh_proto::enrollment::{request, AddPod, BeginSnapshot, EndSnapshot, Pod};
    use quicmesh_proto::enrollment::{RemovePod, Request};
    let pod = |uid: &str, ip: &str| Pod {
        uid: uid.into(),
        namespace: "demo-server".into(),
        name: format!("hello-{uid}"),
        service_account: "hello".into(),
        ips: vec![ip.into()],
    };
    let req = |id, op| Request { id, op: Some(op) };
    let add = |id, uid, ip| {
        req(
            id,
            request::Op::Add(AddPod {
                pod: Some(pod(uid, ip)),
            }),
        )
    };
    let remove = req(9, request::Op::Remove(RemovePod { uid: "a".into() }));
    let begin = req(1, request::Op::BeginSnapshot(BeginSnapshot {}));
    let end = req(4, request::Op::EndSnapshot(EndSnapshot {}));
    // A message: its head byte (descriptors), then the request.
    let msg = |fds: u8, r: &Request| {
        let mut m = vec![fds];
        m.extend(r.encode_to_vec());
        m
    };
    let messages = |ms: &[Vec<u8>]| crate::join(&ms.iter().map(Vec::as_slice).collect::<Vec<_>>());
    named(vec![
        (
            "snapshot_session",
            messages(&[
                msg(0, &begin),
                msg(1, &add(2, "a", "10.244.1.2")),
                msg(1, &add(3, "b", "fd00::2")),
                msg(0, &end),
                msg(0, &remove),
            ]),
        ),
        ("add", messages(&[msg(1, &add(5, "c", "10.244.1.3"))])),
        (
            "add_without_fd",
            messages(&[msg(0, &add(6, "c", "10.244.1.3"))]),
        ),
        (
            "add_two_fds",
            messages(&[msg(2, &add(7, "c", "10.244.1.3"))]),
        ),
        (
            "add_fds_truncated",
            messages(&[msg(4 | 3, &add(8, "c", "10.244.1.3"))]),
        ),
        ("remove_with_fd", messages(&[msg(1, &remove)])),
        ("no_op", messages(&[msg(0, &Request { id: 9, op: None })])),
        ("garbage", messages(&[vec![0, 0xff, 0xff, 0xff]])),
    ])
}

/// The resources the controller makes of the cluster seed manifest.
fn cluster_resources() -> std::collections::BTreeMap<String, quicmesh_proto::config::Resource> {
    use quicmesh_controller::index::Index;
    use quicmesh_controller::sources::manifest::parse_file;
    use quicmesh_controller::translate::{self, Mesh};
    let mut index = Index::new();
    for text in [CLUSTER, DEMO_SERVER, ALLOW_ONLY_CLIENT, DENY_DEMO_CLIENT] {
        for doc in parse_file(text, "seed.yaml").expect("seed parses").docs {
            if let Some(obj) = doc.expect("seed document") {
                index.upsert(obj);
            }
        }
    }
    translate::all(&index, &Mesh::new("cluster.local"))
}

pub fn config_update() -> Seeds {
    use prost::Message;
    use quicmesh_proto::config::Update;
    let resources = cluster_resources();
    let full = Update {
        nonce: "1".into(),
        version: 1,
        full: true,
        resources: resources.values().cloned().collect(),
        removed: vec![],
    };
    let first = resources.keys().next().cloned().expect("a resource");
    let incremental = Update {
        nonce: "2".into(),
        version: 2,
        full: false,
        resources: resources.values().rev().take(1).cloned().collect(),
        removed: vec![first],
    };
    let (f, i) = (full.encode_to_vec(), incremental.encode_to_vec());
    named(vec![
        ("full", crate::join(&[&f])),
        ("full_then_incremental", crate::join(&[&f, &i])),
    ])
}

const CLUSTER: &str = include_str!("../seeds/cluster.yaml");
const DEMO_CLIENT: &str = include_str!("../../examples/demo/client.yaml");
const DEMO_SERVER: &str = include_str!("../../examples/demo/server.yaml");
const ALLOW_ONLY_CLIENT: &str = include_str!("../../examples/policy/allow-only-client.yaml");
const DENY_DEMO_CLIENT: &str = include_str!("../../examples/policy/deny-demo-client.yaml");

pub fn manifest() -> Seeds {
    [
        ("cluster.yaml", CLUSTER),
        ("demo-client.yaml", DEMO_CLIENT),
        ("demo-server.yaml", DEMO_SERVER),
        ("allow-only-client.yaml", ALLOW_ONLY_CLIENT),
        ("deny-demo-client.yaml", DENY_DEMO_CLIENT),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec()))
    .collect()
}

pub fn policy() -> Seeds {
    let mut out = Vec::new();
    let names = ["cluster", "allow-only-client", "deny-demo-client"];
    for (name, text) in names
        .into_iter()
        .zip([CLUSTER, ALLOW_ONLY_CLIENT, DENY_DEMO_CLIENT])
    {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("seed YAML");
            if v.get("kind").and_then(serde_yaml::Value::as_str) != Some("AuthorizationPolicy") {
                continue;
            }
            let spec = v.get("spec").expect("spec");
            let mut yaml = vec![0u8];
            yaml.extend(serde_yaml::to_string(spec).expect("YAML").into_bytes());
            let mut json = vec![1u8];
            let j = serde_json::to_value(spec).expect("JSON");
            json.extend(serde_json::to_vec(&j).expect("JSON"));
            out.push((format!("{name}.yaml"), yaml));
            out.push((format!("{name}.json"), json));
        }
    }
    let mut root = vec![2u8];
    root.extend(b"action: DENY\nrules:\n- to:\n  - operation: {ports: [22]}\n");
    out.push(("mesh_deny_ssh.yaml".into(), root));
    let mut l7 = vec![0u8];
    l7.extend(
        b"action: ALLOW\nrules:\n- to:\n  - operation: {methods: [GET], paths: [/api/*]}\n  when:\n  - {key: request.headers[x], values: [y]}\n",
    );
    out.push(("l7_allow.yaml".into(), l7));
    let mut typo = vec![0u8];
    typo.extend(b"rules:\n- from:\n  - source: {principal: [x]}\n");
    out.push(("unknown_field.yaml".into(), typo));
    out
}
