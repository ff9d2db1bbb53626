//! What the L7 cluster runs: its manifests (the namespaces, the server,
//! the Services of the four paths, the JWT check and the policies of the
//! `srv-authz` path, HAProxy's pod), HAProxy's config, and finding the
//! proxies' processes in `/proc` once they run.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The client pod's namespace (ambient).
pub(super) const CLIENT_NS: &str = "bench-client";
/// The server's namespace, with a waypoint.
pub(super) const MESH_NS: &str = "bench-mesh";
/// HAProxy's namespace (ambient, no waypoint).
pub(super) const PROXY_NS: &str = "bench-proxy";
/// The server's port (HTTP/1.1 and h2c).
pub(super) const APP_PORT: u16 = 8080;
/// One node for the client, the server and each proxy.
pub(super) const NODES: usize = 4;

/// A directory removed when dropped (the manifests).
pub(super) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `haproxy` executable: on PATH or in the sbin directories.
pub(super) fn find_haproxy() -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .context("haproxy not found (scripts/setup.sh installs the Debian package)")
}

/// The `srv-authz` Service: `srv` with a JWT check and two L7 policies.
pub(super) const AUTHZ_SERVICE: &str = "srv-authz";
/// The policies attached to it (`namespace/name` in the waypoint's metrics).
pub(super) const ALLOW_POLICY: &str = "bench-authz-allow";
pub(super) const DENY_POLICY: &str = "bench-authz-deny";

/// The cluster's manifests; `exe` serves, `haproxy` runs with `cfg`;
/// `jwks` (JSON text) holds the keys tokens for `srv-authz` are checked
/// against.
pub(super) fn manifests(exe: &str, haproxy: &str, cfg: &str, jwks: &str) -> String {
    let ports = "[{name: http, port: 80, targetPort: 8080, appProtocol: http}, \
                 {name: http2, port: 81, targetPort: 8080, appProtocol: http2}]";
    // A JSON string is a YAML double-quoted scalar.
    let jwks = serde_json::to_string(jwks).expect("a string serializes");
    let (iss, aud, group) = (super::jwt::ISSUER, super::jwt::AUDIENCE, super::jwt::GROUP);
    let target = format!(r#"[{{group: "", kind: Service, name: {AUTHZ_SERVICE}}}]"#);
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {CLIENT_NS}, labels: {{quicmesh.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {CLIENT_NS}}}
spec:
  serviceAccountName: client
  containers: [{{name: load}}]
---
apiVersion: v1
kind: Namespace
metadata:
  name: {MESH_NS}
  labels: {{quicmesh.io/dataplane-mode: ambient, quicmesh.io/use-waypoint: waypoint}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: server, namespace: {MESH_NS}}}
spec:
  replicas: 1
  template:
    metadata: {{labels: {{app: server}}}}
    spec:
      serviceAccountName: server
      containers:
      - name: serve
        command: ["{exe}", "serve", "--port", "{APP_PORT}", "--threads", "2"]
        ports: [{{name: http, containerPort: {APP_PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: srv, namespace: {MESH_NS}}}
spec:
  selector: {{app: server}}
  ports: {ports}
---
apiVersion: v1
kind: Service
metadata:
  name: srv-l4
  namespace: {MESH_NS}
  labels: {{quicmesh.io/use-waypoint: none}}
spec:
  selector: {{app: server}}
  ports: {ports}
---
# srv through the same waypoint, with a JWT check and L7 policies on it.
apiVersion: v1
kind: Service
metadata: {{name: {AUTHZ_SERVICE}, namespace: {MESH_NS}}}
spec:
  selector: {{app: server}}
  ports: {ports}
---
apiVersion: quicmesh.io/v1alpha1
kind: RequestAuthentication
metadata: {{name: bench-jwt, namespace: {MESH_NS}}}
spec:
  targetRefs: {target}
  jwtRules:
  - issuer: {iss}
    audiences: [{aud}]
    jwks: {jwks}
---
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {ALLOW_POLICY}, namespace: {MESH_NS}}}
spec:
  targetRefs: {target}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{iss}/*"]}}}}]
    to: [{{operation: {{methods: [POST], paths: ["/echo"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: ["{group}"]}}]
---
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {DENY_POLICY}, namespace: {MESH_NS}}}
spec:
  targetRefs: {target}
  action: DENY
  rules:
  - when: [{{key: "request.headers[x-debug]", values: ["*"]}}]
---
apiVersion: v1
kind: Namespace
metadata: {{name: {PROXY_NS}, labels: {{quicmesh.io/dataplane-mode: ambient}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: haproxy, namespace: {PROXY_NS}}}
spec:
  replicas: 1
  template:
    metadata: {{labels: {{app: haproxy}}}}
    spec:
      serviceAccountName: haproxy
      containers:
      - name: haproxy
        command: ["{haproxy}", "-f", "{cfg}", "-db"]
        ports: [{{name: http, containerPort: 8080}}, {{name: http2, containerPort: 8081}}]
---
apiVersion: v1
kind: Service
metadata: {{name: haproxy, namespace: {PROXY_NS}}}
spec:
  selector: {{app: haproxy}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, appProtocol: http}}
  - {{name: http2, port: 81, targetPort: 8081, appProtocol: http2}}
"#
    )
}

/// HAProxy as one would run it as an L7 hop: two threads (as the
/// waypoint's runtime), keep-alive both ways, no logging, the server
/// reached by its `none` Service (so through the mesh, like the waypoint).
pub(super) fn haproxy_cfg() -> String {
    let upstream = format!("srv-l4.{MESH_NS}.svc.cluster.local");
    format!(
        "global
    nbthread 2
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend h1
    bind :8080
    default_backend h1

frontend h2
    bind :8081 proto h2
    default_backend h2

backend h1
    server srv {upstream}:80

backend h2
    server srv {upstream}:81 proto h2
"
    )
}

/// The argv of every process, by pid.
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(e.path().join("cmdline")).ok()?;
        let argv = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some((pid, argv))
    })
    .collect()
}

/// The one process whose argv satisfies `pred`.
pub(super) fn find_pid(what: &str, pred: impl Fn(&[String]) -> bool) -> Result<u32> {
    let found: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, argv)| pred(argv))
        .map(|(pid, _)| pid)
        .collect();
    match found[..] {
        [pid] => Ok(pid),
        [] => bail!("no {what} process found"),
        _ => bail!("several {what} processes: {found:?}"),
    }
}

/// `flag value` appears in `argv`.
pub(super) fn has_arg(argv: &[String], flag: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_name_every_path() {
        let jwks = r#"{"keys":[{"kty":"EC","kid":"k"}]}"#;
        let m = manifests(
            "/x/quicmesh-bench",
            "/usr/sbin/haproxy",
            "/t/haproxy.cfg",
            jwks,
        );
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&m)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 13);
        let find = |kind: &str, ns: &str, name: &str| {
            docs.iter()
                .find(|d| {
                    d["kind"] == kind
                        && d["metadata"]["name"].as_str() == Some(name)
                        && d["metadata"]["namespace"].as_str() == Some(ns)
                })
                .unwrap_or_else(|| panic!("{kind} {ns}/{name}"))
        };
        for (ns, name) in [
            (MESH_NS, "srv"),
            (MESH_NS, "srv-l4"),
            (MESH_NS, AUTHZ_SERVICE),
            (PROXY_NS, "haproxy"),
        ] {
            find("Service", ns, name);
        }
        // srv-authz is srv under another name: same pods, same ports.
        let (srv, authz) = (
            find("Service", MESH_NS, "srv"),
            find("Service", MESH_NS, AUTHZ_SERVICE),
        );
        assert_eq!(srv["spec"], authz["spec"]);
        assert!(authz["metadata"].get("labels").is_none());

        let target: serde_yaml::Value =
            serde_yaml::from_str(r#"[{group: "", kind: Service, name: srv-authz}]"#).unwrap();
        let ra = &find("RequestAuthentication", MESH_NS, "bench-jwt")["spec"];
        assert_eq!(ra["targetRefs"], target);
        let rule = &ra["jwtRules"][0];
        assert_eq!(rule["issuer"].as_str(), Some(super::super::jwt::ISSUER));
        assert_eq!(rule["audiences"][0].as_str(), Some("bench"));
        assert_eq!(rule["jwks"].as_str(), Some(jwks), "the JWKS survives YAML");

        let allow = &find("AuthorizationPolicy", MESH_NS, ALLOW_POLICY)["spec"];
        assert_eq!(allow["targetRefs"], target);
        assert_eq!(allow["action"].as_str(), Some("ALLOW"));
        let r = &allow["rules"][0];
        assert_eq!(
            r["from"][0]["source"]["requestPrincipals"][0].as_str(),
            Some("https://bench.quicmesh.example/*")
        );
        assert_eq!(r["to"][0]["operation"]["methods"][0].as_str(), Some("POST"));
        assert_eq!(r["to"][0]["operation"]["paths"][0].as_str(), Some("/echo"));
        assert_eq!(
            r["when"][0]["key"].as_str(),
            Some("request.auth.claims[groups]")
        );
        assert_eq!(r["when"][0]["values"][0].as_str(), Some("bench"));
        let deny = &find("AuthorizationPolicy", MESH_NS, DENY_POLICY)["spec"];
        assert_eq!(deny["targetRefs"], target);
        assert_eq!(deny["action"].as_str(), Some("DENY"));
        assert_eq!(
            deny["rules"][0]["when"][0]["key"].as_str(),
            Some("request.headers[x-debug]")
        );

        assert!(m.contains(r#"command: ["/x/quicmesh-bench", "serve""#));
        assert!(haproxy_cfg().contains("srv-l4.bench-mesh.svc.cluster.local:81 proto h2"));
    }
}
