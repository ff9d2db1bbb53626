//! RequestAuthentication end to end: the waypoint of `shop` checks JWTs
//! signed by PyJWT (with cryptography's keys) against a JWKS served by a
//! Python HTTP server on the lab's control-plane host (`jwksUri`), and a
//! backend that echoes its request's headers shows what reaches it. Real
//! curl in the client pod of `front`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quicmesh_e2e::waypoint::*;
use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::CONTROLLER_IP;
use quicmesh_lab::mesh::sum_metric;

/// Keys and tokens, by PyJWT and cryptography: `keys DIR` makes an RSA
/// key `a`, an EC P-256 key `b` and an RSA key `c` (never published), and
/// writes jwks-a.json (a's public key), jwks-b.json (b's) into DIR;
/// `sign DIR KEY KID ALG CLAIMS` prints a token; `none CLAIMS` an unsigned one.
const TOOL: &str = r#"
import base64, json, sys, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "keys":
    d = args[0]
    keys = {"a": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "b": ec.generate_private_key(ec.SECP256R1()),
            "c": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    for name, k in keys.items():
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        open(f"{d}/{name}.pem", "wb").write(pem)
        alg = jwt.algorithms.RSAAlgorithm if name != "b" else jwt.algorithms.ECAlgorithm
        jwk = json.loads(alg.to_jwk(k.public_key()))
        jwk["kid"] = name
        open(f"{d}/jwks-{name}.json", "w").write(json.dumps({"keys": [jwk]}))
elif cmd == "sign":
    d, key, kid, alg, claims = args
    pem = open(f"{d}/{key}.pem", "rb").read()
    print(jwt.encode(json.loads(claims), pem, algorithm=alg, headers={"kid": kid}))
elif cmd == "none":
    b = lambda s: base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()
    print(b(json.dumps({"alg": "none", "kid": "a"})) + "." + b(args[0]) + ".")
"#;

const ISSUER: &str = "https://issuer.example";
const JWKS_PORT: u16 = 18080;

fn tool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(dir.join("jwt_tool.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "jwt_tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token of `key` (kid `kid`) for `aud`, expiring in `exp_in` seconds.
fn token(keys: &Path, key: &str, kid: &str, aud: &str, exp_in: i64) -> String {
    token_of(keys, key, kid, aud, exp_in, ("alice", &["shop", "admin"]))
}

/// The same for subject `who` in `groups`.
fn token_of(
    keys: &Path,
    key: &str,
    kid: &str,
    aud: &str,
    exp_in: i64,
    (who, groups): (&str, &[&str]),
) -> String {
    let alg = if key == "b" { "ES256" } else { "RS256" };
    let claims = serde_json::json!({"iss": ISSUER, "sub": who, "aud": aud,
        "exp": now() + exp_in, "iat": now(), "groups": groups});
    tool(
        keys,
        &[
            "sign",
            &keys.display().to_string(),
            key,
            kid,
            alg,
            &claims.to_string(),
        ],
    )
}

/// Requests to whoami need a token of the issuer with the `admin` group.
const ADMINS_ONLY: &str = r#"
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: whoami-admins, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: whoami}]
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admin"]}]
"#;

fn authn_yaml() -> String {
    format!(
        r#"
apiVersion: quicmesh.io/v1alpha1
kind: RequestAuthentication
metadata: {{name: whoami-jwt, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: whoami}}]
  jwtRules:
  - issuer: {ISSUER}
    audiences: [shop]
    jwksUri: http://{CONTROLLER_IP}:{JWKS_PORT}/jwks.json
    jwksRefreshSeconds: 5
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
    - {{header: x-jwt-groups, claim: groups}}
---
# Malformed (a typo: issuerr): it refuses every request to web-v2.
apiVersion: quicmesh.io/v1alpha1
kind: RequestAuthentication
metadata: {{name: broken, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web-v2}}]
  jwtRules:
  - issuerr: {ISSUER}
    jwksUri: http://{CONTROLLER_IP}:{JWKS_PORT}/jwks.json
"#
    )
}

/// (status, body, headers) of a GET of `url` from the client pod with `token`.
fn get(cluster: &quicmesh_lab::local::Cluster, url: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-i", url];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    let out = curl_from(cluster, "client", &args).unwrap_or_default();
    let code = out
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// The conditions of shop/whoami-jwt in the controller's /status.
async fn whoami_conditions(cluster: &quicmesh_lab::local::Cluster) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&cluster.controller_http("/status").await.unwrap_or_default())
            .unwrap_or_default();
    status["requestAuthentications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == "whoami-jwt")
        .map(|a| a["conditions"].clone())
        .unwrap_or_default()
}

/// Whether shop/whoami-jwt's `KeysFetched` condition comes to satisfy `ok`.
async fn keys_fetched(
    cluster: &quicmesh_lab::local::Cluster,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    eventually(Duration::from_secs(40), || async {
        whoami_conditions(cluster)
            .await
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "KeysFetched" && ok(c))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_authentication_at_the_waypoint() {
    require_root();
    let (mut cluster, dir) = start_with(&[("whoami.yaml", WHOAMI), ("echo.py", ECHO)]).await;
    // The issuer: keys made with cryptography, its JWKS served over HTTP
    // from the control-plane host, which the waypoint reaches.
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("jwt_tool.py"), TOOL).unwrap();
    tool(keys.path(), &["keys", &keys.path().display().to_string()]);
    let served = keys.path().join("www");
    std::fs::create_dir(&served).unwrap();
    std::fs::copy(keys.path().join("jwks-a.json"), served.join("jwks.json")).unwrap();
    let netns = cluster.lab.external(1).netns.clone();
    let port = JWKS_PORT.to_string();
    let bind = CONTROLLER_IP.to_string();
    let start_issuer = |cluster: &quicmesh_lab::local::Cluster| {
        cluster
            .lab
            .spawn_in_dir(
                &netns,
                "python3",
                &["-m", "http.server", &port, "--bind", &bind],
                &[],
                Some(&keys.path().join("issuer.log")),
                Some(&served),
            )
            .unwrap()
    };
    let issuer = start_issuer(&cluster);
    std::fs::write(dir.path().join("authn.yaml"), authn_yaml()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && cluster.pods.values().any(|p| !p.ready) {
        cluster.reconcile().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.reconcile().await.unwrap();

    let whoami = "http://whoami.shop/";
    let a = token(keys.path(), "a", "a", "shop", 600);
    // Valid: 200, the claims reach the backend (once the object is in
    // effect at the waypoint), the token does not.
    let ok = eventually(Duration::from_secs(60), || async {
        let (code, body) = get(&cluster, whoami, Some(&a));
        code == 200 && body.contains("x-jwt-sub: alice")
    })
    .await;
    assert!(
        ok,
        "a valid token was never accepted: {:?}\n{}",
        get(&cluster, whoami, Some(&a)),
        cluster.pod_log("shop", "waypoint-0")
    );
    let (_, body) = get(&cluster, whoami, Some(&a));
    assert!(body.contains("x-jwt-sub: alice"), "{body}");
    assert!(body.contains("x-jwt-groups: shop,admin"), "{body}");
    assert!(
        !body.to_lowercase().contains("authorization:"),
        "the token was forwarded: {body}"
    );

    // No token: unauthenticated, passes (authorization decides).
    assert_eq!(get(&cluster, whoami, None).0, 200);
    // A client's own claim header never reaches the backend.
    let (_, body) = get(&cluster, whoami, None);
    assert!(!body.contains("x-jwt-sub"), "{body}");

    // Authorization on what the token proved: a policy that wants the
    // issuer's tokens with the admin group refuses (403) a request
    // without one, and a valid token of another group.
    std::fs::write(dir.path().join("admins.yaml"), ADMINS_ONLY).unwrap();
    cluster.reconcile().await.unwrap();
    let enforced = eventually(Duration::from_secs(30), || async {
        get(&cluster, whoami, None).0 == 403
    })
    .await;
    assert!(enforced, "{}", cluster.pod_log("shop", "waypoint-0"));
    assert_eq!(get(&cluster, whoami, Some(&a)).0, 200);
    let bob = token_of(keys.path(), "a", "a", "shop", 600, ("bob", &["shop"]));
    let (code, out) = get(&cluster, whoami, Some(&bob));
    assert_eq!(code, 403, "{out}");
    assert!(out.trim_end().ends_with("authz_denied"), "{out}");
    assert!(
        sum_metric(
            &waypoint_metrics(&cluster).await,
            "quicmesh_waypoint_authz_denials_total",
            &[
                ("policy", "shop/whoami-admins"),
                ("reason", "no_allow_match")
            ]
        ) >= 2.0
    );

    // Refusals: 401 with the challenge, and nothing of why in the body.
    let refused = [
        ("expired", token(keys.path(), "a", "a", "shop", -120)),
        ("wrong audience", token(keys.path(), "a", "a", "bank", 600)),
        ("wrong key", token(keys.path(), "c", "a", "shop", 600)),
        (
            "alg none",
            tool(
                keys.path(),
                &["none", &serde_json::json!({"iss": ISSUER, "sub": "alice", "aud": "shop", "exp": now() + 600}).to_string()],
            ),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, t) in &refused {
        let (code, out) = get(&cluster, whoami, Some(t));
        assert_eq!(code, 401, "{what}: {out}");
        assert!(
            out.to_lowercase().contains(
                "www-authenticate: bearer realm=\"whoami.shop\", error=\"invalid_token\""
            ),
            "{what}: {out}"
        );
        assert!(out.trim_end().ends_with("invalid_token"), "{what}: {out}");
    }
    let m = waypoint_metrics(&cluster).await;
    for reason in [
        "expired",
        "wrong_audience",
        "bad_signature",
        "algorithm",
        "malformed",
    ] {
        assert!(
            sum_metric(
                &m,
                "quicmesh_waypoint_jwt_requests_total",
                &[("result", "refused"), ("reason", reason)]
            ) >= 1.0,
            "{reason} not counted:\n{m}"
        );
    }
    assert!(
        sum_metric(
            &m,
            "quicmesh_waypoint_jwt_requests_total",
            &[("result", "authenticated")]
        ) >= 2.0
    );
    assert!(
        sum_metric(
            &m,
            "quicmesh_waypoint_jwt_requests_total",
            &[("result", "no_token")]
        ) >= 2.0
    );

    // The malformed object: its Service refuses everything, another
    // Service's traffic works, its status says why.
    assert_eq!(get(&cluster, "http://web-v2.shop/", None).0, 401);
    assert_eq!(get(&cluster, "http://web-v1.shop/", None).0, 200);
    let status: serde_json::Value =
        serde_json::from_str(&cluster.controller_http("/status").await.unwrap()).unwrap();
    let broken = status["requestAuthentications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "broken")
        .cloned()
        .unwrap_or_default();
    let c = &broken["conditions"][0];
    assert_eq!(
        (&c["type"], &c["status"], &c["reason"]),
        (&"Accepted".into(), &false.into(), &"Invalid".into()),
        "{broken}"
    );
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("spec.jwtRules[0].issuerr"),
        "{broken}"
    );

    // The issuer rotates to key b: once the waypoint has refreshed, b's
    // tokens are accepted and a's (removed) refused.
    std::fs::copy(
        keys.path().join("jwks-b.json"),
        served.join("jwks.json.tmp"),
    )
    .unwrap();
    std::fs::rename(served.join("jwks.json.tmp"), served.join("jwks.json")).unwrap();
    let b = token(keys.path(), "b", "b", "shop", 600);
    let rotated = eventually(Duration::from_secs(40), || async {
        get(&cluster, whoami, Some(&b)).0 == 200 && get(&cluster, whoami, Some(&a)).0 == 401
    })
    .await;
    assert!(
        rotated,
        "rotation: b {:?}, a {:?}",
        get(&cluster, whoami, Some(&b)).0,
        get(&cluster, whoami, Some(&a)).0
    );

    // The waypoint reports its fetches: the object's KeysFetched is True.
    assert!(
        keys_fetched(&cluster, |c| c["status"] == true
            && c["reason"] == "Fetched")
        .await,
        "{:?}",
        whoami_conditions(&cluster).await
    );

    // The issuer serves garbage: the fetch is refused, b's keys stay in
    // use, and the status says so.
    std::fs::write(served.join("jwks.json.tmp"), "{not json").unwrap();
    std::fs::rename(served.join("jwks.json.tmp"), served.join("jwks.json")).unwrap();
    let said = keys_fetched(&cluster, |c| {
        c["status"] == false
            && c["reason"] == "FetchFailed"
            && c["message"].as_str().is_some_and(|m| {
                m.starts_with("waypoint shop/waypoint: http://")
                    && m.contains("not a usable key set")
                    && m.ends_with("the last good keys are in use")
            })
    })
    .await;
    assert!(said, "{:?}", whoami_conditions(&cluster).await);
    assert_eq!(
        get(&cluster, whoami, Some(&b)).0,
        200,
        "last good keys kept"
    );

    // The issuer goes down: fetches fail, the last good keys stay in use.
    issuer.kill().unwrap();
    let failed = eventually(Duration::from_secs(40), || async {
        let m = waypoint_metrics(&cluster).await;
        sum_metric(
            &m,
            "quicmesh_waypoint_jwks_fetches_total",
            &[("result", "connect_error")],
        ) >= 1.0
    })
    .await;
    assert!(
        failed,
        "no failed fetch counted:\n{}",
        waypoint_metrics(&cluster).await
    );
    assert_eq!(
        get(&cluster, whoami, Some(&b)).0,
        200,
        "last good keys kept"
    );
    assert_eq!(get(&cluster, whoami, Some(&a)).0, 401);
    let said = keys_fetched(&cluster, |c| {
        c["status"] == false
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot connect"))
    })
    .await;
    assert!(said, "{:?}", whoami_conditions(&cluster).await);
    // The config dump names the rule and the key ids in use.
    let p = cluster.pod("shop", "waypoint-0");
    let dump = quicmesh_lab::mesh::netns_http_get(
        &p.netns,
        std::net::SocketAddr::from(([127, 0, 0, 1], 15000)),
        "/config_dump",
    )
    .await
    .unwrap();
    assert!(
        dump.contains("shop/whoami-jwt") && dump.contains("\"b\""),
        "{dump}"
    );
}
