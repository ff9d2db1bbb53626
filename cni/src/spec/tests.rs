use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234";

#[test]
fn the_environment_each_command_needs_is_read_and_every_missing_variable_named() {
    let full = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/p"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", ARGS),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    let e = Env::read(env(&full)).unwrap();
    assert_eq!(e.command, Command::Add);
    assert_eq!(
        e.pod,
        Some(PodRef {
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "1234".into()
        })
    );

    let e = Env::read(env(&[("CNI_COMMAND", "ADD")])).unwrap_err();
    assert_eq!(e.code, code::INVALID_ENV);
    assert!(
        e.msg.contains("CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"),
        "{e}"
    );
    // DEL may come without a namespace (it may be gone).
    let del = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    assert!(Env::read(env(&del)).unwrap().netns.is_empty());
    // CHECK needs it.
    let check = [
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    let e = Env::read(env(&check)).unwrap_err();
    assert!(
        e.msg.contains("CNI_NETNS") && !e.msg.contains("CNI_IFNAME"),
        "{e}"
    );
    for bare in ["VERSION", "STATUS", "GC"] {
        assert!(Env::read(env(&[("CNI_COMMAND", bare)])).is_ok(), "{bare}");
    }
    for bad in ["", "add", "UP"] {
        let e = Env::read(env(&[("CNI_COMMAND", bad)])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV, "{bad}");
    }
}

#[test]
fn cni_args_name_a_pod_only_with_its_namespace_and_name() {
    assert_eq!(pod_ref(ARGS).unwrap().uid, "1234");
    let no_uid = pod_ref("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b").unwrap();
    assert_eq!((no_uid.namespace.as_str(), no_uid.uid.as_str()), ("a", ""));
    for none in [
        "",
        "IgnoreUnknown=1",
        "K8S_POD_NAMESPACE=a",
        "K8S_POD_NAMESPACE=;K8S_POD_NAME=b",
        "garbage;;=",
    ] {
        assert_eq!(pod_ref(none), None, "{none}");
    }
}

fn conf(extra: Value) -> Vec<u8> {
    let mut v = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "quicmesh-cni"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_config_is_read_with_defaults_and_every_bad_one_gets_its_code() {
    let c = NetConf::parse(&conf(json!({}))).unwrap();
    assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_AGENT_SOCKET));
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.prev_result, None);
    let c = NetConf::parse(&conf(
        json!({"agentSocket": "/run/x.sock", "timeout": "3s"}),
    ))
    .unwrap();
    assert_eq!(
        (c.agent_socket, c.timeout),
        ("/run/x.sock".into(), Duration::from_secs(3))
    );
    assert_eq!(
        NetConf::parse(&conf(json!({"timeout": 2.5})))
            .unwrap()
            .timeout,
        Duration::from_millis(2500)
    );

    let cases: Vec<(Vec<u8>, u32, &str)> = vec![
        (b"".to_vec(), code::DECODE, "not JSON"),
        (b"{\"cniVersion\":".to_vec(), code::DECODE, "not JSON"),
        (b"[1]".to_vec(), code::DECODE, "not a JSON object"),
        (
            br#"{"name":"n","type":"t"}"#.to_vec(),
            code::INVALID_CONFIG,
            "cniVersion is missing",
        ),
        (
            conf(json!({"cniVersion": "0.2.0"})),
            code::INCOMPATIBLE_VERSION,
            "not supported",
        ),
        (
            conf(json!({"cniVersion": 1})),
            code::INVALID_CONFIG,
            "not a string",
        ),
        (
            conf(json!({"name": ""})),
            code::INVALID_CONFIG,
            "name is empty",
        ),
        (
            conf(json!({"type": null})),
            code::INVALID_CONFIG,
            "type is missing",
        ),
        (
            conf(json!({"prevResult": []})),
            code::INVALID_CONFIG,
            "prevResult is not an object",
        ),
        (
            conf(json!({"agentSocket": "rel.sock"})),
            code::INVALID_CONFIG,
            "not an absolute path",
        ),
        (
            conf(json!({"timeout": "soon"})),
            code::INVALID_CONFIG,
            "timeout",
        ),
        (
            conf(json!({"timeout": "0s"})),
            code::INVALID_CONFIG,
            "timeout is zero",
        ),
        (
            conf(json!({"timeout": -1})),
            code::INVALID_CONFIG,
            "timeout",
        ),
        (
            conf(json!({"timeout": true})),
            code::INVALID_CONFIG,
            "timeout",
        ),
    ];
    for (bytes, want, text) in cases {
        let e = NetConf::parse(&bytes).unwrap_err();
        assert_eq!(e.code, want, "{}: {e}", String::from_utf8_lossy(&bytes));
        assert!(e.msg.contains(text), "{e}");
    }
    for v in SUPPORTED_VERSIONS {
        assert!(
            NetConf::parse(&conf(json!({"cniVersion": v}))).is_ok(),
            "{v}"
        );
    }
}

/// A prevResult as the bridge plugin writes it: a host veth, the pod's
/// eth0 (in the sandbox), and its addresses.
fn prev() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "veth1", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/p"}
        ],
        "ips": [
            {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1},
            {"address": "fd00::5/64", "interface": 1},
            {"address": "192.168.0.1/32", "interface": 0},
            {"address": "10.9.9.9/32"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    })
}

#[test]
fn add_passes_prev_result_through_with_the_configs_version_and_reads_the_pods_ips() {
    let c = NetConf::parse(&conf(json!({"cniVersion": "1.1.0", "prevResult": prev()}))).unwrap();
    let out = c.add_result().unwrap();
    let mut want = prev();
    want["cniVersion"] = json!("1.1.0");
    assert_eq!(out, want);
    let ips: Vec<String> = c.pod_ips().unwrap().iter().map(|i| i.to_string()).collect();
    // The host-side address (interface 0, no sandbox) is not the pod's.
    assert_eq!(ips, ["10.244.1.5", "fd00::5", "10.9.9.9"]);

    let e = NetConf::parse(&conf(json!({})))
        .unwrap()
        .add_result()
        .unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains("chained"), "{e}");
    for bad in [
        json!({"ips": [{"address": "nope/24"}]}),
        json!({"ips": [{"gateway": "10.0.0.1"}]}),
        json!({"ips": "10.0.0.1"}),
    ] {
        let c = NetConf::parse(&conf(json!({"prevResult": bad}))).unwrap();
        assert_eq!(c.pod_ips().unwrap_err().code, code::INVALID_CONFIG, "{bad}");
    }
}

#[test]
fn errors_and_version_answers_are_the_specs_objects() {
    let e = CniError::new(code::TRY_AGAIN_LATER, "agent down").details("connect: ENOENT");
    assert_eq!(
        e.to_json("1.0.0"),
        json!({"cniVersion": "1.0.0", "code": 11, "msg": "agent down", "details": "connect: ENOENT"})
    );
    assert_eq!(
        CniError::new(code::DECODE, "x").to_json(LATEST),
        json!({"cniVersion": "1.1.0", "code": 6, "msg": "x"})
    );
    assert_eq!(
        version_answer(),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    assert_eq!(
        error_version(&conf(json!({"cniVersion": "0.4.0"}))),
        "0.4.0"
    );
    assert_eq!(error_version(&conf(json!({"cniVersion": "7.0.0"}))), LATEST);
    assert_eq!(error_version(b"junk"), LATEST);
}
