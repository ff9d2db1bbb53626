//! The Helm chart (`helm/quicmesh`) with the real `helm` binary and the
//! Kubernetes OpenAPI schemas of two Kubernetes versions
//! (kubernetes-validate, strict: no field Kubernetes does not know), for
//! the default values and every value set in `helm/quicmesh/ci/`. Both
//! tools are installed by scripts/setup.sh. Needs no root and no cluster,
//! only the `controller`, `ztunnel` and `quicmesh-cni` binaries (they parse
//! the arguments the chart passes them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Kubernetes versions every rendered object is validated against:
/// the oldest the chart supports (Chart.yaml's kubeVersion) and the one
/// the controller is built for (k8s-openapi's `v1_33`).
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.33.0"];

/// The release namespace of every rendering.
const NAMESPACE: &str = "quicmesh-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("helm/quicmesh")
}

/// The value sets: the defaults (`None`) and each file of the chart's ci/.
fn value_sets() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("helm/quicmesh/ci")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "at least four value sets besides the defaults: {files:?}"
    );
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

fn name(set: &Option<PathBuf>) -> String {
    set.as_ref()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .unwrap_or_else(|| "default values".into())
}

/// Runs `helm args...`; Ok(stdout) or Err(stderr).
fn helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new("helm")
        .args(args)
        .output()
        .expect("running helm (scripts/setup.sh installs it)");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout))
    }
}

/// `helm template` of the chart with the value set and `extra` arguments.
fn template(set: &Option<PathBuf>, extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "quicmesh",
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    if let Some(f) = set {
        args.extend(["-f", f.to_str().unwrap()]);
    }
    args.extend(extra);
    helm(&args)
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn render(set: &Option<PathBuf>) -> Vec<Value> {
    let text = template(set, &[]).unwrap_or_else(|e| panic!("{}: {e}", name(set)));
    docs(&text)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn get<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The values the chart used: the set's file over values.yaml (the keys
/// the tests need are at most two levels deep).
fn values(set: &Option<PathBuf>) -> Value {
    let read =
        |p: &Path| -> Value { serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let mut v = read(&chart().join("values.yaml"));
    if let Some(f) = set {
        merge(&mut v, read(f));
    }
    v
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The containers of a workload's pod template.
fn containers(workload: &Value) -> &Vec<Value> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
}

/// `--flag=value` arguments of a container, as (flag, value).
fn flags(container: &Value) -> Vec<(String, String)> {
    strs(&container["args"])
        .into_iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| match a.split_once('=') {
            Some((f, v)) => (f.to_string(), v.to_string()),
            None => (a, String::new()),
        })
        .collect()
}

fn flag(container: &Value, name: &str) -> Option<String> {
    flags(container)
        .into_iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v)
}

/// The volume of `workload`'s pod that a container mounts `file` from, and
/// the file's path inside it.
fn mounted<'a>(workload: &'a Value, container: &Value, file: &str) -> Option<(&'a Value, String)> {
    let (name, path) = container["volumeMounts"].as_array()?.iter().find_map(|m| {
        let dir = m["mountPath"].as_str().unwrap();
        file.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| (m["name"].clone(), rest.to_string()))
    })?;
    let volume = workload["spec"]["template"]["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?;
    Some((volume, path))
}

/// The chart's value sets disable the bundle endpoint nowhere; these
/// renderings do, over the defaults and over the https_web set (whose
/// certificate and Service must then go too).
const BUNDLE_ENDPOINT_OFF: &[&str] = &["--set", "controller.bundleEndpoint.enabled=false"];

fn federation_web() -> Option<PathBuf> {
    Some(chart().join("ci/federation-web-values.yaml"))
}

/// Every value set, and the ones with the bundle endpoint disabled:
/// (name, values, rendered objects).
fn renderings() -> Vec<(String, Value, Vec<Value>)> {
    let mut out: Vec<(String, Value, Vec<Value>)> = value_sets()
        .into_iter()
        .map(|set| (name(&set), values(&set), render(&set)))
        .collect();
    for set in [None, federation_web()] {
        let what = format!("{}, bundle endpoint disabled", name(&set));
        let text = template(&set, BUNDLE_ENDPOINT_OFF).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut v = values(&set);
        v["controller"]["bundleEndpoint"]["enabled"] = Value::Bool(false);
        out.push((what, v, docs(&text)));
    }
    out
}

#[test]
fn every_value_set_lints_renders_and_validates_against_two_kubernetes_versions() {
    let dir = tempfile::tempdir().unwrap();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let chart = chart();
    for set in value_sets() {
        let mut lint = vec!["lint", chart.to_str().unwrap()];
        if let Some(f) = &set {
            lint.extend(["-f", f.to_str().unwrap()]);
        }
        helm(&lint).unwrap_or_else(|e| panic!("helm lint, {}: {e}", name(&set)));
        lint.push("--strict");
        helm(&lint).unwrap_or_else(|e| panic!("helm lint --strict, {}: {e}", name(&set)));

        // The CRDs too: they are what `helm install` applies first.
        let text = template(&set, &["--include-crds"])
            .unwrap_or_else(|e| panic!("helm template, {}: {e}", name(&set)));
        let n = docs(&text).len();
        assert!(n >= 10, "{}: only {n} objects", name(&set));
        let path = dir
            .path()
            .join(format!("{}.yaml", name(&set).replace(' ', "-")));
        std::fs::write(&path, &text).unwrap();
        for k in KUBE_VERSIONS {
            let out = Command::new(&python)
                .args(["-m", "kubernetes_validate", "-k", k, "--strict"])
                .arg(&path)
                .output()
                .expect("kubernetes-validate (scripts/setup.sh installs it)");
            let report = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{}, Kubernetes {k}:\n{report}",
                name(&set)
            );
            assert_eq!(
                report.matches(" passed ").count(),
                n,
                "{}, Kubernetes {k}: every object validated:\n{report}",
                name(&set)
            );
        }
    }
}

/// The validator is not vacuous: a field Kubernetes does not know fails.
#[test]
fn the_validator_refuses_an_unknown_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let text = template(&None, &["--show-only", "templates/ztunnel.yaml"]).unwrap();
    std::fs::write(&path, text.replace("hostPath:", "hostPaht:")).unwrap();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-m",
            "kubernetes_validate",
            "-k",
            KUBE_VERSIONS[1],
            "--strict",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hostPaht"));
}

#[test]
fn the_values_schema_refuses_typos_and_wrong_types() {
    for (set, why) in [
        (
            "controler.replicas=2",
            "additional properties 'controler' not allowed",
        ),
        (
            "controller.replica=2",
            "additional properties 'replica' not allowed",
        ),
        (
            "ztunnel.resources.request.cpu=1",
            "additional properties 'request' not allowed",
        ),
        (
            "cni.enabeld=false",
            "additional properties 'enabeld' not allowed",
        ),
        (
            "image.registy=x",
            "additional properties 'registy' not allowed",
        ),
        ("controller.replicas=two", "/controller/replicas"),
        ("controller.replicas=0", "/controller/replicas"),
        ("cni.enabled=maybe", "/cni/enabled"),
        (
            "controller.defaultMtlsMode=strikt",
            "/controller/defaultMtlsMode",
        ),
        ("controller.svidTtl=1d", "/controller/svidTtl"),
        ("cni.binDir=opt/cni/bin", "/cni/binDir"),
        ("log.format=xml", "/log/format"),
        (
            "controller.bundleEndpoint.prot=8443",
            "additional properties 'prot' not allowed",
        ),
        (
            "controller.bundleEndpoint.service.loadBalancerIP=1.2.3.4",
            "additional properties 'loadBalancerIP' not allowed",
        ),
        (
            "controller.federation.webRoots=roots",
            "additional properties 'webRoots' not allowed",
        ),
        (
            "controller.bundleEndpoint.enabled=yes",
            "/controller/bundleEndpoint/enabled",
        ),
        (
            "controller.bundleEndpoint.port=0",
            "/controller/bundleEndpoint/port",
        ),
        (
            "controller.bundleEndpoint.port=65536",
            "/controller/bundleEndpoint/port",
        ),
        (
            "controller.bundleEndpoint.profile=https",
            "/controller/bundleEndpoint/profile",
        ),
        (
            "controller.bundleEndpoint.refreshHint=5d",
            "/controller/bundleEndpoint/refreshHint",
        ),
        (
            "controller.bundleEndpoint.certSecret=My_Secret",
            "/controller/bundleEndpoint/certSecret",
        ),
        (
            "controller.bundleEndpoint.service.type=ExternalName",
            "/controller/bundleEndpoint/service/type",
        ),
        (
            "controller.bundleEndpoint.service.loadBalancerSourceRanges={10.0.0.1}",
            "/controller/bundleEndpoint/service/loadBalancerSourceRanges",
        ),
        (
            "controller.federation.webRootsConfigMap=Roots",
            "/controller/federation/webRootsConfigMap",
        ),
    ] {
        let e = template(&None, &["--set", set]).expect_err(set);
        assert!(e.contains("schema"), "{set}: {e}");
        assert!(e.contains(why), "{set}: {e}");
    }
    let e = template(
        &None,
        &[
            "--set-json",
            r#"ztunnel.tolerations=[{"operater":"Exists"}]"#,
        ],
    )
    .unwrap_err();
    assert!(e.contains("'operater' not allowed"), "{e}");
    // And what is right passes.
    template(
        &None,
        &[
            "--set",
            "controller.replicas=3",
            "--set",
            "cni.enabled=false",
        ],
    )
    .unwrap();
}

/// One access rule: (scope, group, resource, verb, resource name).
type Access = (String, String, String, String, Option<String>);

fn accesses(scope: &str, rules: &Value) -> BTreeSet<Access> {
    let mut out = BTreeSet::new();
    for r in rules.as_array().unwrap() {
        let names = strs(&r["resourceNames"]);
        let names: Vec<Option<String>> = if names.is_empty() {
            vec![None]
        } else {
            names.into_iter().map(Some).collect()
        };
        for g in strs(&r["apiGroups"]) {
            for res in strs(&r["resources"]) {
                for v in strs(&r["verbs"]) {
                    for n in &names {
                        out.insert((scope.into(), g.clone(), res.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The rules of helm/quicmesh/rbac-expected.yaml that hold with `values`,
/// from its lists `keys` (with the scope each is granted in).
fn expected_rbac(values: &Value, keys: &[(&str, &str)]) -> BTreeSet<Access> {
    let path = chart().join("rbac-expected.yaml");
    let list: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let provision = values["controller"]["waypoints"]["provision"]
        .as_bool()
        .unwrap();
    let leader = values["controller"]["replicas"].as_u64().unwrap() > 1;
    let mut out = BTreeSet::new();
    for &(key, scope) in keys {
        let rules: Vec<Value> = list[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| match r["when"].as_str() {
                None => true,
                Some("waypointProvisioning") => provision,
                Some("leaderElection") => leader,
                Some(other) => panic!("{}: unknown when: {other}", path.display()),
            })
            .cloned()
            .collect();
        out.extend(accesses(scope, &Value::Array(rules)));
    }
    out
}

fn assert_same_rbac(what: &str, rendered: &BTreeSet<Access>, want: &BTreeSet<Access>) {
    assert!(
        rendered == want,
        "{what}: the chart grants {:#?}\nbeyond rbac-expected.yaml, and lacks {:#?}",
        rendered.difference(want).collect::<Vec<_>>(),
        want.difference(rendered).collect::<Vec<_>>()
    );
}

/// A binding of the role of that name to the ServiceAccount of that name.
fn assert_bound_to_its_account(d: &[Value], kind: &str, name: &str) {
    let b = get(d, kind, name);
    assert_eq!(
        b["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]),
        "{kind} {name}"
    );
    assert_eq!(b["roleRef"]["name"], name, "{kind} {name}");
    assert_eq!(
        b["roleRef"]["kind"],
        kind.trim_end_matches("Binding"),
        "{kind} {name}"
    );
}

#[test]
fn the_rendered_rbac_is_exactly_the_api_calls_the_controller_and_the_agent_make() {
    for set in value_sets() {
        let d = render(&set);
        let v = values(&set);
        let what = name(&set);
        let mut rendered = accesses(
            "cluster",
            &get(&d, "ClusterRole", "quicmesh-controller")["rules"],
        );
        let role = get(&d, "Role", "quicmesh-controller");
        assert_eq!(role["metadata"]["namespace"], NAMESPACE);
        rendered.extend(accesses("namespace", &role["rules"]));
        let want = expected_rbac(&v, &[("clusterRole", "cluster"), ("role", "namespace")]);
        assert_same_rbac(&format!("{what}: controller"), &rendered, &want);
        // The CNI agent's, when it is installed.
        let cni = v["cni"]["enabled"].as_bool().unwrap();
        if cni {
            let mut rendered =
                accesses("cluster", &get(&d, "ClusterRole", "quicmesh-cni")["rules"]);
            let role = get(&d, "Role", "quicmesh-cni");
            assert_eq!(role["metadata"]["namespace"], NAMESPACE);
            rendered.extend(accesses("namespace", &role["rules"]));
            let want = expected_rbac(
                &v,
                &[("cniClusterRole", "cluster"), ("cniRole", "namespace")],
            );
            assert_same_rbac(&format!("{what}: CNI agent"), &rendered, &want);
        }
        // Those are the only rights the chart grants, each to its own
        // service account only.
        let cluster: &[&str] = if cni {
            &["quicmesh-cni", "quicmesh-controller"]
        } else {
            &["quicmesh-controller"]
        };
        for (kind, want) in [
            ("ClusterRole", cluster),
            ("ClusterRoleBinding", cluster),
            ("Role", cluster),
            ("RoleBinding", cluster),
        ] {
            let mut names: Vec<&str> = d
                .iter()
                .filter(|o| o["kind"] == kind)
                .map(|o| o["metadata"]["name"].as_str().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, want, "{what}: {kind}");
        }
        for name in cluster {
            assert_bound_to_its_account(&d, "ClusterRoleBinding", name);
            assert_bound_to_its_account(&d, "RoleBinding", name);
        }
    }
}

/// The workspace version (Cargo.toml's `[workspace.package]`).
fn workspace_version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let section = &text[text.find("[workspace.package]").unwrap()..];
    let line = section.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// The Dockerfile's stages: (target name, the stage's text).
fn dockerfile_stages() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut stages: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let target = match words.as_slice() {
                [_, _, as_, t] if as_.eq_ignore_ascii_case("AS") => t.to_string(),
                _ => panic!("Dockerfile: a stage without a target name: {line}"),
            };
            stages.push((target, String::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    stages
}

#[test]
fn the_images_are_the_dockerfiles_targets() {
    let version = workspace_version();
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        chart_yaml["appVersion"],
        version.as_str(),
        "Chart.yaml appVersion"
    );
    assert_eq!(
        chart_yaml["version"],
        version.as_str(),
        "Chart.yaml version"
    );
    let stages = dockerfile_stages();
    let header = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let d = render(&None);
    let controller = &containers(get(&d, "Deployment", "quicmesh-controller"))[0];
    let images = [
        (
            "controller",
            controller["image"].as_str().unwrap().to_string(),
            "controller",
        ),
        (
            "ztunnel",
            containers(get(&d, "DaemonSet", "ztunnel"))[0]["image"]
                .as_str()
                .unwrap()
                .to_string(),
            "ztunnel",
        ),
        (
            "cni",
            containers(get(&d, "DaemonSet", "quicmesh-cni"))[0]["image"]
                .as_str()
                .unwrap()
                .to_string(),
            "quicmesh-cni",
        ),
        (
            "waypoint",
            flag(controller, "--waypoint-image").unwrap(),
            "waypoint",
        ),
    ];
    for (target, image, binary) in &images {
        assert_eq!(*image, format!("ghcr.io/quicmesh/{target}:{version}"));
        let (_, body) = stages
            .iter()
            .find(|(t, _)| t == target)
            .unwrap_or_else(|| panic!("the Dockerfile has no target {target} for {image}"));
        assert!(
            body.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "the {target} image runs {binary} (the chart passes only args)"
        );
        assert!(
            header.contains(&format!("--target {target} "))
                && header.contains(&format!("-t ghcr.io/quicmesh/{target}:{version} ")),
            "the Dockerfile documents how to build {image}"
        );
    }
    // ztunnel runs `nft` (ztunnel/src/inpod/rules.rs).
    let (_, ztunnel) = stages.iter().find(|(t, _)| t == "ztunnel").unwrap();
    assert!(ztunnel.contains("nftables"), "the ztunnel image has nft");
    // The controller's own default is the same image.
    let main = std::fs::read_to_string(repo().join("controller/src/main.rs")).unwrap();
    assert!(main.contains(r#"concat!("ghcr.io/quicmesh/waypoint:", env!("CARGO_PKG_VERSION"))"#));

    // Another registry and tag move every image, the controller's waypoint
    // image included unless it is given.
    let custom = Some(chart().join("ci/custom-values.yaml"));
    let d = render(&custom);
    for (kind, name) in [
        ("Deployment", "quicmesh-controller"),
        ("DaemonSet", "ztunnel"),
        ("DaemonSet", "quicmesh-cni"),
    ] {
        let c = &containers(get(&d, kind, name))[0];
        let image = c["image"].as_str().unwrap();
        assert!(
            image.starts_with("registry.example.com/mesh/") && image.ends_with(":1.2.3-rc.1"),
            "{image}"
        );
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(
            get(&d, kind, name)["spec"]["template"]["spec"]["imagePullSecrets"],
            serde_json::json!([{"name": "registry-example-com"}])
        );
    }
    let c = &containers(get(&d, "Deployment", "quicmesh-controller"))[0];
    assert_eq!(
        flag(c, "--waypoint-image").unwrap(),
        "registry.example.com/mesh/waypoint-debug:1.2.3"
    );
}

/// A container's plain `env` values by name.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn traces_are_off_by_default_and_the_tracing_values_become_the_standard_variables() {
    let traced = ["Deployment/quicmesh-controller", "DaemonSet/ztunnel"];
    let d = render(&None);
    for w in traced {
        let (kind, name) = w.split_once('/').unwrap();
        let env = env_of(&containers(get(&d, kind, name))[0]);
        assert!(!env.keys().any(|k| k.starts_with("OTEL_")), "{w}: {env:?}");
    }
    let d = render(&Some(chart().join("ci/custom-values.yaml")));
    for w in traced {
        let (kind, name) = w.split_once('/').unwrap();
        let env = env_of(&containers(get(&d, kind, name))[0]);
        let want = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://otel-collector.observability:4317",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{w}: {k}");
        }
    }
    // A value the binaries would refuse fails at render time instead.
    for bad in [
        "tracing.endpoint=https://collector:4317",
        "tracing.samplerArg=2",
        "tracing.sampler=sometimes",
    ] {
        assert!(
            template(&None, &["--set", bad]).is_err(),
            "{bad} was accepted"
        );
    }
}

#[test]
fn the_grafana_dashboard_is_a_configmap_for_the_sidecar_only_when_asked() {
    let d = render(&None);
    assert!(
        find(&d, "ConfigMap", "quicmesh-grafana-dashboards").is_none(),
        "rendered by default"
    );
    let d = render(&Some(chart().join("ci/custom-values.yaml")));
    let cm = get(&d, "ConfigMap", "quicmesh-grafana-dashboards");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "quicmesh");
    // The chart's file, byte for byte, and JSON.
    let want = std::fs::read_to_string(chart().join("dashboards/quicmesh.json")).unwrap();
    let got = cm["data"]["quicmesh.json"].as_str().unwrap();
    assert_eq!(got.trim_end(), want.trim_end());
    let v: serde_json::Value = serde_json::from_str(got).unwrap();
    assert_eq!(v["uid"], "quicmesh-overview");
    for bad in [
        "grafana.dashboards.enabled=yes",
        "grafana.dashboards.namespace=Not_A_Namespace",
        "grafana.dashboards.folder=x",
    ] {
        assert!(
            template(&None, &["--set", bad]).is_err(),
            "{bad} was accepted"
        );
    }
}

#[test]
fn containers_run_with_only_the_capabilities_they_need() {
    for set in value_sets() {
        let d = render(&set);
        let v = values(&set);
        let mut workloads = vec![
            (get(&d, "Deployment", "quicmesh-controller"), vec![]),
            (
                get(&d, "DaemonSet", "ztunnel"),
                vec!["NET_ADMIN", "SYS_ADMIN"],
            ),
        ];
        if v["cni"]["enabled"].as_bool().unwrap() {
            workloads.push((get(&d, "DaemonSet", "quicmesh-cni"), vec!["SYS_PTRACE"]));
        } else {
            assert!(
                find(&d, "DaemonSet", "quicmesh-cni").is_none(),
                "{}",
                name(&set)
            );
        }
        for (w, caps) in workloads {
            let what = format!("{}: {}", name(&set), w["metadata"]["name"]);
            let pod = &w["spec"]["template"]["spec"];
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(pod[host].is_null(), "{what}: {host}");
            }
            assert_eq!(
                w["spec"]["template"]["metadata"]["labels"]["quicmesh.io/dataplane-mode"], "none",
                "{what}: never captured itself"
            );
            for c in containers(w) {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert!(
                    sc["privileged"].is_null() || sc["privileged"] == false,
                    "{what}"
                );
                assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
                assert_eq!(strs(&sc["capabilities"]["add"]), caps, "{what}");
                let seccomp = if pod["securityContext"]["seccompProfile"].is_null() {
                    &sc["seccompProfile"]
                } else {
                    &pod["securityContext"]["seccompProfile"]
                };
                assert_eq!(seccomp["type"], "RuntimeDefault", "{what}");
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{what}: cpu request"
                );
                assert!(
                    c["resources"]["requests"]["memory"].is_string(),
                    "{what}: memory request"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{what}: memory limit"
                );
                assert_eq!(
                    c["readinessProbe"]["httpGet"]["path"], "/healthz/ready",
                    "{what}"
                );
            }
        }
        // Root only where the kernel interfaces need it.
        let controller = get(&d, "Deployment", "quicmesh-controller");
        assert_eq!(
            controller["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        // The node agents' tokens: none by default; ztunnel's is projected
        // for the controller only; the CNI agent's pod (alone) mounts its
        // API server token, for its list and watch.
        if let Some(cni) = find(&d, "DaemonSet", "quicmesh-cni") {
            assert_eq!(
                cni["spec"]["template"]["spec"]["automountServiceAccountToken"],
                true
            );
            assert_eq!(
                get(&d, "ServiceAccount", "quicmesh-cni")["automountServiceAccountToken"],
                false
            );
        }
        let ztunnel = get(&d, "DaemonSet", "ztunnel");
        let pod = &ztunnel["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(
            get(&d, "ServiceAccount", "ztunnel")["automountServiceAccountToken"],
            false
        );
        let token = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v["projected"]["sources"][0]["serviceAccountToken"].as_object())
            .expect("a projected token");
        assert_eq!(token["audience"], "quicmesh");
        assert!(token["expirationSeconds"].as_u64().unwrap() <= 3600 * 24);
    }
}

/// Runs `<binary> [subcommand] --help` and returns the flags it lists.
fn help_flags(binary: &str, subcommand: Option<&str>) -> BTreeSet<String> {
    let path = quicmesh_lab::ztunnels::find_binary(binary).unwrap();
    let out = Command::new(&path)
        .args(subcommand)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{} --help", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Every flag the chart passes to a binary exists (it is in the binary's
/// `--help`), and the binary parses the whole command line: clap reads
/// every argument before it acts on a trailing `--help`, so a value it
/// refuses (a duration, an address, a profile) fails this, while
/// requirements it checks only at the end (and the program itself) do not
/// come into it.
#[test]
fn every_flag_the_chart_passes_exists_and_parses() {
    let known = [
        ("controller", help_flags("controller", None)),
        ("ztunnel", help_flags("ztunnel", None)),
        ("quicmesh-cni", help_flags("quicmesh-cni", Some("agent"))),
    ];
    for (what, _, d) in renderings() {
        let mut workloads = vec![
            ("controller", get(&d, "Deployment", "quicmesh-controller")),
            ("ztunnel", get(&d, "DaemonSet", "ztunnel")),
        ];
        if let Some(cni) = find(&d, "DaemonSet", "quicmesh-cni") {
            let args = strs(&containers(cni)[0]["args"]);
            assert_eq!(args.first().map(String::as_str), Some("agent"), "{what}");
            workloads.push(("quicmesh-cni", cni));
        }
        for (binary, workload) in workloads {
            let have = &known.iter().find(|(b, _)| *b == binary).unwrap().1;
            let container = &containers(workload)[0];
            for (f, _) in flags(container) {
                assert!(
                    have.contains(&f),
                    "{what}: the chart passes {f} to {binary}, which has no such flag"
                );
            }
            let path = quicmesh_lab::ztunnels::find_binary(binary).unwrap();
            let out = Command::new(&path)
                .args(strs(&container["args"]))
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what}: {binary} refuses the chart's arguments {:?}:\n{}",
                strs(&container["args"]),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The SPIFFE bundle endpoint (docs/federation.md): with it, the port,
/// the Service in front of it and the flags that serve what the values
/// say, the certificate and the peers' web roots mounted from what they
/// name; without it, `--no-bundle-endpoint` and nothing else of it.
#[test]
fn the_bundle_endpoint_is_served_and_exposed_as_the_values_say() {
    for (what, v, d) in renderings() {
        let b = &v["controller"]["bundleEndpoint"];
        let deployment = get(&d, "Deployment", "quicmesh-controller");
        let controller = &containers(deployment)[0];
        let ports = controller["ports"].as_array().unwrap();
        let port = ports.iter().find(|p| p["name"] == "spiffe-bundle");
        let service = find(&d, "Service", "quicmesh-bundle-endpoint");
        let bundle_flags: Vec<String> = flags(controller)
            .into_iter()
            .map(|(f, _)| f)
            .filter(|f| f.starts_with("--bundle-"))
            .collect();
        let web = b["profile"] == "https_web";
        if !b["enabled"].as_bool().unwrap() {
            assert!(port.is_none(), "{what}: {ports:?}");
            assert!(service.is_none(), "{what}");
            assert_eq!(
                flag(controller, "--no-bundle-endpoint").as_deref(),
                Some(""),
                "{what}"
            );
            assert_eq!(bundle_flags, Vec::<String>::new(), "{what}");
            assert!(
                !serde_json::to_string(deployment)
                    .unwrap()
                    .contains("bundle-endpoint-cert"),
                "{what}: no certificate mounted"
            );
        } else {
            let n = b["port"].as_u64().unwrap();
            assert!(flag(controller, "--no-bundle-endpoint").is_none(), "{what}");
            let port = port.unwrap_or_else(|| panic!("{what}: no port spiffe-bundle: {ports:?}"));
            assert_eq!(port["containerPort"], n, "{what}");
            assert_eq!(port["protocol"], "TCP", "{what}");
            assert_eq!(
                flag(controller, "--bundle-endpoint-addr"),
                Some(format!("0.0.0.0:{n}")),
                "{what}"
            );
            assert_eq!(
                flag(controller, "--bundle-endpoint-profile").as_deref(),
                b["profile"].as_str(),
                "{what}"
            );
            assert_eq!(
                flag(controller, "--bundle-refresh-hint").as_deref(),
                b["refreshHint"].as_str(),
                "{what}"
            );

            // The Service: the controller pods, on that port.
            let svc =
                service.unwrap_or_else(|| panic!("{what}: no Service quicmesh-bundle-endpoint"));
            let spec = &svc["spec"];
            assert_eq!(
                spec["selector"], deployment["spec"]["selector"]["matchLabels"],
                "{what}: the Service selects the controller"
            );
            assert_eq!(spec["type"], b["service"]["type"], "{what}");
            let sp = spec["ports"].as_array().unwrap();
            assert_eq!(sp.len(), 1, "{what}");
            assert_eq!(sp[0]["port"], n, "{what}");
            assert_eq!(sp[0]["targetPort"], "spiffe-bundle", "{what}");
            assert_eq!(sp[0]["nodePort"], b["service"]["nodePort"], "{what}");
            let ranges = strs(&b["service"]["loadBalancerSourceRanges"]);
            assert_eq!(strs(&spec["loadBalancerSourceRanges"]), ranges, "{what}");
            let annotations = &b["service"]["annotations"];
            if annotations.as_object().unwrap().is_empty() {
                assert!(svc["metadata"]["annotations"].is_null(), "{what}");
            } else {
                assert_eq!(&svc["metadata"]["annotations"], annotations, "{what}");
            }

            // https_web: the certificate and key of the Secret, mounted
            // whole (a subPath mount would never see a renewal).
            let cert = flag(controller, "--bundle-endpoint-cert");
            let key = flag(controller, "--bundle-endpoint-key");
            assert_eq!(cert.is_some(), web, "{what}");
            assert_eq!(key.is_some(), web, "{what}");
            for (file, item) in [(cert, "tls.crt"), (key, "tls.key")] {
                let Some(file) = file else { continue };
                let (vol, path) = mounted(deployment, controller, &file)
                    .unwrap_or_else(|| panic!("{what}: {file} is not mounted"));
                assert_eq!(vol["secret"]["secretName"], b["certSecret"], "{what}");
                let items = vol["secret"]["items"].as_array().unwrap();
                assert!(
                    items
                        .iter()
                        .any(|i| i["key"] == item && i["path"] == path.as_str()),
                    "{what}: {file} is {item} of the Secret: {items:?}"
                );
            }
        }
        for m in controller["volumeMounts"].as_array().into_iter().flatten() {
            assert!(m["subPath"].is_null(), "{what}: {m}");
        }

        // Peers' https_web roots: key ca.crt of the ConfigMap, whether we
        // serve our own bundle or not.
        let roots = v["controller"]["federation"]["webRootsConfigMap"]
            .as_str()
            .unwrap();
        let file = flag(controller, "--federation-web-roots");
        assert_eq!(file.is_some(), !roots.is_empty(), "{what}");
        if let Some(file) = file {
            let (vol, path) = mounted(deployment, controller, &file)
                .unwrap_or_else(|| panic!("{what}: {file} is not mounted"));
            assert_eq!(vol["configMap"]["name"], roots, "{what}");
            assert_eq!(
                vol["configMap"]["items"],
                serde_json::json!([{"key": "ca.crt", "path": path}]),
                "{what}"
            );
        }
    }

    // The defaults serve it (https_spiffe, 8443) behind a ClusterIP Service.
    let d = render(&None);
    let controller = &containers(get(&d, "Deployment", "quicmesh-controller"))[0];
    assert!(controller["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "spiffe-bundle" && p["containerPort"] == 8443));
    assert_eq!(
        get(&d, "Service", "quicmesh-bundle-endpoint")["spec"]["type"],
        "ClusterIP"
    );
    assert!(flag(controller, "--no-bundle-endpoint").is_none());
    assert_eq!(
        flag(controller, "--bundle-endpoint-profile").as_deref(),
        Some("https_spiffe")
    );
    // The value set that federates over Web PKI has every part of it.
    let d = render(&federation_web());
    let controller = &containers(get(&d, "Deployment", "quicmesh-controller"))[0];
    assert_eq!(
        flag(controller, "--bundle-endpoint-profile").as_deref(),
        Some("https_web")
    );
    assert!(flag(controller, "--federation-web-roots").is_some());
    assert_eq!(
        get(&d, "Service", "quicmesh-bundle-endpoint")["spec"]["type"],
        "LoadBalancer"
    );
}

/// What the schema cannot see (relations between keys) fails the render
/// with a message that says what to set.
#[test]
fn bundle_endpoint_values_that_do_not_fit_together_fail_with_the_reason() {
    for (set, why) in [
        (
            vec!["controller.bundleEndpoint.profile=https_web"],
            "controller.bundleEndpoint.profile=https_web needs controller.bundleEndpoint.certSecret: the name of a kubernetes.io/tls Secret",
        ),
        (
            vec!["controller.bundleEndpoint.certSecret=bundle-tls"],
            "controller.bundleEndpoint.certSecret is used only with profile https_web",
        ),
        (
            vec!["controller.bundleEndpoint.service.nodePort=30443"],
            "controller.bundleEndpoint.service.nodePort needs service.type NodePort or LoadBalancer",
        ),
        (
            vec![
                "controller.bundleEndpoint.service.type=NodePort",
                "controller.bundleEndpoint.service.loadBalancerSourceRanges={10.0.0.0/8}",
            ],
            "controller.bundleEndpoint.service.loadBalancerSourceRanges needs service.type LoadBalancer (it is NodePort)",
        ),
    ] {
        let args: Vec<&str> = set.iter().flat_map(|s| ["--set", s]).collect();
        let e = template(&None, &args).expect_err(&set.join(" "));
        assert!(e.contains(why), "{set:?}: {e}");
    }
    // Disabled, the endpoint's settings are not looked at.
    template(
        &None,
        &[
            "--set",
            "controller.bundleEndpoint.enabled=false",
            "--set",
            "controller.bundleEndpoint.profile=https_web",
        ],
    )
    .unwrap();
    // A NodePort with its port fixed renders.
    template(
        &None,
        &[
            "--set",
            "controller.bundleEndpoint.service.type=NodePort",
            "--set",
            "controller.bundleEndpoint.service.nodePort=30443",
        ],
    )
    .unwrap();
}

#[test]
fn the_parts_find_each_other() {
    for set in value_sets() {
        let d = render(&set);
        let v = values(&set);
        let what = name(&set);
        let td = v["trustDomain"].as_str().unwrap();
        let deployment = get(&d, "Deployment", "quicmesh-controller");
        let controller = &containers(deployment)[0];
        let pod = &deployment["spec"]["template"]["spec"];
        let sa = pod["serviceAccountName"].as_str().unwrap();
        get(&d, "ServiceAccount", sa);
        assert_eq!(
            flag(controller, "--controller-service-account").as_deref(),
            Some(sa)
        );
        assert_eq!(
            flag(controller, "--system-namespace").as_deref(),
            Some(NAMESPACE)
        );
        assert_eq!(flag(controller, "--trust-domain").as_deref(), Some(td));
        assert_eq!(flag(controller, "--source").as_deref(), Some("kube"));

        // ztunnel reaches the controller's Service and expects its identity.
        let ds = get(&d, "DaemonSet", "ztunnel");
        let ztunnel = &containers(ds)[0];
        let zsa = ds["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap();
        assert_eq!(
            flag(controller, "--ztunnel-service-account").as_deref(),
            Some(zsa),
            "{what}"
        );
        let svc = get(&d, "Service", "quicmesh-controller");
        let address = format!("quicmesh-controller.{NAMESPACE}.svc:15012");
        assert!(svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == 15012));
        assert_eq!(
            svc["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
            "{what}: the Service selects the controller"
        );
        assert_eq!(
            flag(ztunnel, "--controller"),
            Some(address.clone()),
            "{what}"
        );
        assert_eq!(
            flag(ztunnel, "--controller-identity"),
            Some(format!("spiffe://{td}/ns/{NAMESPACE}/sa/{sa}")),
            "{what}"
        );
        assert_eq!(flag(ztunnel, "--trust-domain").as_deref(), Some(td));
        // The trust bundle is the ConfigMap the controller writes.
        let root = flag(controller, "--ca-root-configmap").unwrap();
        let bundle = flag(ztunnel, "--trust-bundle").unwrap();
        let vols = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        let mounts = ztunnel["volumeMounts"].as_array().unwrap();
        let mounted = |file: &str| {
            mounts.iter().find_map(|m| {
                let dir = m["mountPath"].as_str().unwrap();
                file.strip_prefix(dir)
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| (m["name"].as_str().unwrap(), rest[1..].to_string()))
            })
        };
        let (vol, key) = mounted(&bundle).expect("the trust bundle is mounted");
        let vol = vols.iter().find(|x| x["name"] == vol).unwrap();
        assert_eq!(vol["configMap"]["name"], root.as_str(), "{what}");
        assert_eq!(key, "ca.pem");
        let (vol, key) = mounted(&flag(ztunnel, "--bootstrap-token").unwrap()).unwrap();
        let vol = vols.iter().find(|x| x["name"] == vol).unwrap();
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["path"],
            key.as_str()
        );
        // The enrollment socket is on the host, where the CNI agent finds it.
        let socket = flag(ztunnel, "--enroll-socket").unwrap();
        let dir = v["ztunnel"]["socketDir"].as_str().unwrap();
        assert_eq!(socket, format!("{dir}/ztunnel.sock"));
        let (vol, _) = mounted(&socket).unwrap();
        let vol = vols.iter().find(|x| x["name"] == vol).unwrap();
        assert_eq!(vol["hostPath"]["path"], dir);
        assert_eq!(
            ztunnel["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "NODE_NAME")
                .unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "spec.nodeName"
        );

        // Waypoints: provisioned with the controller's address, or not at all.
        let provision = v["controller"]["waypoints"]["provision"].as_bool().unwrap();
        assert_eq!(
            flag(controller, "--no-waypoint-provisioning").is_some(),
            !provision,
            "{what}"
        );
        assert_eq!(
            flag(controller, "--waypoint-image").is_some(),
            provision,
            "{what}"
        );
        if provision {
            assert_eq!(
                flag(controller, "--waypoint-controller-address"),
                Some(address),
                "{what}"
            );
        }

        // Leader election, the Lease's holder and the disruption budget
        // follow the replica count.
        let replicas = v["controller"]["replicas"].as_u64().unwrap();
        assert_eq!(deployment["spec"]["replicas"], replicas);
        assert_eq!(
            flag(controller, "--leader-elect").is_some(),
            replicas > 1,
            "{what}"
        );
        let pod_name = controller["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "POD_NAME");
        assert_eq!(
            pod_name.unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        let pdb = find(&d, "PodDisruptionBudget", "quicmesh-controller");
        let want_pdb = replicas > 1
            && v["controller"]["podDisruptionBudget"]["enabled"]
                .as_bool()
                .unwrap();
        assert_eq!(pdb.is_some(), want_pdb, "{what}");
        if let Some(pdb) = pdb {
            assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);
        }

        // The CNI agent shares ztunnel's socket directory.
        if let Some(cni) = find(&d, "DaemonSet", "quicmesh-cni") {
            let c = &containers(cni)[0];
            assert!(
                strs(&c["args"]).contains(&format!("--ztunnel-socket={socket}")),
                "{what}"
            );
            let host: Vec<&str> = cni["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x["hostPath"]["path"].as_str())
                .collect();
            for dir in [
                dir,
                v["cni"]["binDir"].as_str().unwrap(),
                v["cni"]["confDir"].as_str().unwrap(),
            ] {
                assert!(host.contains(&dir), "{what}: {dir} not mounted in {host:?}");
            }
        }
    }
}
