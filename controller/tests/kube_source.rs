//! The Kubernetes source against a mock API server: the client's requests go
//! to a `tower_test` mock, and each scenario answers them with responses
//! recorded from a real API server (tests/fixtures/). Every request is
//! checked against the RBAC rules the chart grants the controller (or, for
//! the CNI node agent's watchers, the agent) ([`rbac`]): a call it does not
//! grant fails the scenario that makes it.

#[path = "support/rbac.rs"]
mod rbac;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::client::Body;
use kube::Client;
use quicmesh_controller::ca::rotation::CurrentCa;
use quicmesh_controller::model::{Kind, Object};
use quicmesh_controller::sources::kube::{
    pod, run, run_for_node, sync_name, token_review, watch_authorization_policies,
    watch_federations, watch_kind, watch_traffic_policies, Caller, KINDS, NODE_KINDS,
};
use quicmesh_controller::store::Store;
use quicmesh_proto::config::{resource, Authorization, AuthorizationAction, AuthorizationScope};
use tower_test::mock::{self, SendResponse};

/// Every scenario ends within this.
const SCENARIO: Duration = Duration::from_secs(15);

const WEB_1: &str = "3f6c1d2a-8b4e-4c71-9e0a-5a2d7f1b9c01";
const WEB_2: &str = "8a1e4b7c-2d3f-4e56-a789-0b1c2d3e4f02";
const WEB_3: &str = "e9f0a1b2-c3d4-4e5f-8607-182930a4b504";
const WEB_4: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c05";
const DB_0: &str = "c4d5e6f7-0819-4a2b-bc3d-4e5f60718203";

/// Where AuthorizationPolicies are listed and watched (all namespaces).
const POLICIES: &str = "/apis/quicmesh.io/v1alpha1/authorizationpolicies";

/// Where TrafficPolicies are listed and watched (all namespaces).
const TRAFFIC: &str = "/apis/quicmesh.io/v1alpha1/trafficpolicies";

/// Where the Gateway API kinds are listed and watched.
const GATEWAY_API: [&str; 3] = [
    "/apis/gateway.networking.k8s.io/v1/gateways",
    "/apis/gateway.networking.k8s.io/v1/httproutes",
    "/apis/gateway.networking.k8s.io/v1/grpcroutes",
];

/// What `run` lists, by path, and the answers (in a real API server's
/// format; the Gateway API ones written by hand in that format).
const LISTS: [(&str, &str); 14] = [
    ("/api/v1/namespaces", "namespaces-list.json"),
    ("/api/v1/pods", "pods-list.json"),
    ("/api/v1/services", "services-list.json"),
    (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "endpointslices-list.json",
    ),
    ("/api/v1/serviceaccounts", "serviceaccounts-list.json"),
    (POLICIES, "authorizationpolicies-list.json"),
    (GATEWAY_API[0], "gateways-list.json"),
    (GATEWAY_API[1], "httproutes-list.json"),
    (GATEWAY_API[2], "grpcroutes-list.json"),
    (REQUEST_AUTHENTICATIONS, "requestauthentications-list.json"),
    ("/api/v1/secrets", "secrets-list.json"),
    (TRAFFIC, "trafficpolicies-list.json"),
    (
        "/apis/quicmesh.io/v1alpha1/workloadentries",
        "workloadentries-list.json",
    ),
    (FEDERATIONS, "trustdomainfederations-list.json"),
];

/// Where TrustDomainFederations (cluster-scoped) are listed and watched.
const FEDERATIONS: &str = "/apis/quicmesh.io/v1alpha1/trustdomainfederations";

/// Where RequestAuthentications are listed and watched (all namespaces).
const REQUEST_AUTHENTICATIONS: &str = "/apis/quicmesh.io/v1alpha1/requestauthentications";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The mock API server: the test answers each request the client makes,
/// which the chart must allow `subject`.
struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
    subject: rbac::Subject,
}

type Responder = SendResponse<Response<Body>>;

/// A client with the controller's rights.
fn mock_client() -> (Client, ApiServer) {
    mock_client_as(rbac::Subject::Controller)
}

fn mock_client_as(subject: rbac::Subject) -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, "default"),
        ApiServer { handle, subject },
    )
}

impl ApiServer {
    /// The next request, which the chart's RBAC rules must allow.
    async fn next(&mut self) -> (Request<Body>, Responder) {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .expect("the client is gone");
        rbac::check_as(self.subject, &req);
        (req, send)
    }

    /// The next request, which must be `method path` with every one of
    /// `query` in its query string (and no `watch=true` unless asked).
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        query: &[&str],
    ) -> (Request<Body>, Responder) {
        let (req, send) = self.next().await;
        let q = req.uri().query().unwrap_or_default().to_string();
        assert_eq!(
            (req.method(), req.uri().path()),
            (&method, path),
            "unexpected request {}",
            req.uri()
        );
        for part in query {
            assert!(
                q.split('&').any(|p| p == *part),
                "{} lacks {part}",
                req.uri()
            );
        }
        if !query.contains(&"watch=true") {
            assert!(
                !q.split('&').any(|p| p == "watch=true"),
                "unexpected watch {}",
                req.uri()
            );
        }
        (req, send)
    }

    /// Answers the next request, which must be `method path ?query`, with
    /// `status` and the fixture `body`.
    async fn answer(
        &mut self,
        method: Method,
        path: &str,
        query: &[&str],
        status: StatusCode,
        body: &str,
    ) {
        let (_, send) = self.expect(method, path, query).await;
        send.send_response(respond(status, body));
    }

    /// Answers the next request, which must be `method path`, with `body`.
    async fn answer_json(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        body: &serde_json::Value,
    ) {
        let (_, send) = self.expect(method, path, &[]).await;
        send.send_response(respond_json(status, body));
    }

    /// Answers the next request, `method path ?query`, with its own body
    /// (as an API server answers a create or an update), and returns it.
    async fn echo(
        &mut self,
        method: Method,
        path: &str,
        query: &[&str],
        status: StatusCode,
    ) -> serde_json::Value {
        let (req, send) = self.expect(method, path, query).await;
        let body = json_body(req).await;
        send.send_response(respond_json(status, &body));
        body
    }

    async fn list_pods(&mut self, body: &str) {
        self.answer(Method::GET, "/api/v1/pods", &[], StatusCode::OK, body)
            .await;
    }

    /// The next request is a pod watch from `rv`: returns its responder.
    async fn watch_pods(&mut self, rv: &str) -> Responder {
        self.watch("/api/v1/pods", rv).await
    }

    /// The next request is a watch of `path` from `rv`: returns its responder.
    async fn watch(&mut self, path: &str, rv: &str) -> Responder {
        let rv = format!("resourceVersion={rv}");
        self.expect(Method::GET, path, &["watch=true", &rv]).await.1
    }

    /// Answers the next request, a policy list, with the recorded one (two
    /// policies, at 2107), and returns the responder of the watch that must
    /// follow from the list's resourceVersion.
    async fn list_then_watch_policies(&mut self) -> Responder {
        self.answer(
            Method::GET,
            POLICIES,
            &[],
            StatusCode::OK,
            "authorizationpolicies-list.json",
        )
        .await;
        self.watch(POLICIES, "2107").await
    }

    /// Plays the API server for [`run`]: answers each list with
    /// `answer(path)` and holds each watch open (a watch must follow a
    /// successful list of its path), until `done(paths watched)`.
    async fn serve_run(
        &mut self,
        answer: impl Fn(&str) -> (StatusCode, &'static str),
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<Responder> {
        let mut listed = Vec::new();
        let mut watched = Vec::new();
        let mut held = Vec::new();
        while !done(&watched) {
            let (req, send) = self.next().await;
            let path = req.uri().path().to_string();
            assert_eq!(req.method(), Method::GET);
            if is_watch(&req) {
                assert!(listed.contains(&path), "watch before list: {}", req.uri());
                watched.push(path);
                held.push(send);
            } else {
                let (status, body) = answer(&path);
                if status.is_success() {
                    listed.push(path);
                }
                send.send_response(respond(status, body));
            }
        }
        held
    }
}

fn is_watch(req: &Request<Body>) -> bool {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "watch=true")
}

/// The recorded answer to a list of `path` (the API server's paths, as [`LISTS`]).
fn recorded_list(path: &str) -> (StatusCode, &'static str) {
    let (_, body) = LISTS
        .iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("unexpected list {path}"));
    (StatusCode::OK, body)
}

/// A fixture as the API server sends it: JSON, or (`.txt`) the plain text
/// of its catch-all 404 handler.
fn respond(status: StatusCode, body: &str) -> Response<Body> {
    let content_type = if body.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(fixture(body)))
        .unwrap()
}

/// Runs the pod watcher alone, feeding `store`.
fn watch_pods(client: Client, store: Arc<Store>) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(watch_kind(Api::<Pod>::all(client), store, Kind::Pod, |p| {
        pod(p).map(Object::Pod)
    }))
}

fn resource_names(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = store
        .subscribe()
        .resources
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    names
}

fn workload(uid: &str) -> String {
    format!("workload/{uid}")
}

/// The compiled policy `namespace/name` the store publishes, if any.
fn authorization(store: &Store, namespace: &str, name: &str) -> Option<Authorization> {
    let r = store
        .resources()
        .remove(&format!("authorization/{namespace}/{name}"))?;
    match r.kind {
        Some(resource::Kind::Authorization(a)) => Some(a),
        other => panic!("authorization/{namespace}/{name} is {other:?}"),
    }
}

/// Runs the AuthorizationPolicy watcher alone, feeding `store`.
fn watch_policies(
    client: Client,
    store: Arc<Store>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(watch_authorization_policies(client, store))
}

/// (name, ready) of the pods the store knows, sorted.
fn pods(store: &Store) -> Vec<(String, bool)> {
    let mut v: Vec<_> =
        store.with_index(|ix| ix.pods().map(|p| (p.name.clone(), p.ready)).collect());
    v.sort();
    v
}

async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(SCENARIO, scenario)
        .await
        .expect("scenario timed out");
}

/// Waits (a while) for every source of `store` to be synced.
async fn synced(store: &Store) {
    tokio::time::timeout(Duration::from_secs(5), store.synced())
        .await
        .unwrap_or_else(|_| panic!("still pending: {:?}", store.pending_sources()));
}

#[tokio::test]
async fn initial_list_then_watch_events() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_pods(client, store.clone());

        api.list_pods("pods-list.json").await;
        // The watch starts from the list's resourceVersion, once the list is in.
        let watch = api.watch_pods("1000").await;
        assert_eq!(
            pods(&store),
            [
                ("db-0".to_string(), true),
                ("web-7d4b9c6f5d-2xkqp".to_string(), true),
                ("web-7d4b9c6f5d-9tlzm".to_string(), true),
            ]
        );
        let mut want = vec![workload(DB_0), workload(WEB_1), workload(WEB_2)];
        want.sort();
        assert_eq!(resource_names(&store), want);
        let p = store
            .with_index(|ix| ix.pod_by_uid(WEB_1).cloned())
            .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.service_account.as_str()),
            ("shop", "web")
        );
        assert_eq!(
            (p.node.as_deref(), p.ips[0].to_string().as_str()),
            (Some("kind-worker"), "10.244.1.5")
        );
        assert_eq!(p.named_port("http"), Some(8080));
        assert_eq!(
            p.containers[0].env,
            [("LOG_LEVEL".to_string(), "info".to_string())]
        );

        // ADDED web-3, MODIFIED web-1 (not ready), DELETED web-2, BOOKMARK 1005.
        let before = store.version();
        watch.send_response(respond(StatusCode::OK, "pods-watch.jsonl"));
        // The stream ended: the watch resumes from the bookmark.
        let _held = api.watch_pods("1005").await;
        assert_eq!(
            pods(&store),
            [
                ("db-0".to_string(), true),
                ("web-7d4b9c6f5d-2xkqp".to_string(), false),
                ("web-7d4b9c6f5d-q8wvn".to_string(), true),
            ]
        );
        let mut want = vec![workload(DB_0), workload(WEB_1), workload(WEB_3)];
        want.sort();
        assert_eq!(resource_names(&store), want);
        assert_eq!(store.version(), before + 3, "one version per event");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn gone_in_the_watch_stream_relists_and_drops_what_vanished() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_pods(client, store.clone());

        api.list_pods("pods-list.json").await;
        let watch = api.watch_pods("1000").await;
        assert!(resource_names(&store).contains(&workload(WEB_2)));
        // The watch is answered with an ERROR event: 410 Gone (Expired).
        watch.send_response(respond(StatusCode::OK, "pods-watch-gone.jsonl"));
        // Meanwhile web-2 went away and web-4 came: the re-list says so.
        api.list_pods("pods-relist.json").await;
        let _held = api.watch_pods("1600").await;
        let mut want = vec![workload(DB_0), workload(WEB_1), workload(WEB_4)];
        want.sort();
        assert_eq!(resource_names(&store), want);
        assert!(store.with_index(|ix| ix.pod_by_uid(WEB_2).is_none()));
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn gone_as_http_status_relists_and_drops_what_vanished() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_pods(client, store.clone());

        api.list_pods("pods-list.json").await;
        let watch = api.watch_pods("1000").await;
        // The watch itself is refused: HTTP 410.
        watch.send_response(respond(StatusCode::GONE, "status-gone.json"));
        api.list_pods("pods-relist.json").await;
        let _held = api.watch_pods("1600").await;
        let mut want = vec![workload(DB_0), workload(WEB_1), workload(WEB_4)];
        want.sort();
        assert_eq!(resource_names(&store), want);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn server_errors_and_broken_connections_are_retried() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_pods(client, store.clone());

        // The first list fails with a 500; the watcher lists again.
        api.answer(
            Method::GET,
            "/api/v1/pods",
            &[],
            StatusCode::INTERNAL_SERVER_ERROR,
            "status-500.json",
        )
        .await;
        assert!(store.with_index(|ix| ix.is_empty()));
        api.list_pods("pods-list.json").await;
        // The watch cannot connect; it is retried from the same version.
        let watch = api.watch_pods("1000").await;
        watch.send_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        let watch = api.watch_pods("1000").await;
        assert_eq!(pods(&store).len(), 3);
        watch.send_response(respond(StatusCode::OK, "pods-watch.jsonl"));
        let _held = api.watch_pods("1005").await;
        assert!(resource_names(&store).contains(&workload(WEB_3)));
        assert!(!task.is_finished(), "errors never stop the source");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn run_watches_every_kind() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let source = run(client, store.clone());
        // Every kind is awaited from the moment the source is made.
        let mut kinds: Vec<_> = KINDS.into_iter().map(sync_name).collect();
        kinds.sort();
        assert_eq!(store.pending_sources(), kinds);
        let task = tokio::spawn(source);

        // A list per kind, then a watch per kind (held open), in whatever order.
        let _held = api
            .serve_run(recorded_list, |watched| watched.len() == LISTS.len())
            .await;
        // Each list marked its kind synced.
        synced(&store).await;
        // All watches are open, so all lists are in.
        let (namespaces, accounts, ambient) = store.with_index(|ix| {
            let n = ix
                .objects()
                .filter(|o| matches!(o, Object::Namespace(_)))
                .count();
            let sa = ix
                .objects()
                .filter(|o| matches!(o, Object::ServiceAccount(_)))
                .count();
            (n, sa, ix.namespace("shop").is_some_and(|n| n.ambient()))
        });
        assert_eq!((namespaces, accounts, ambient), (3, 4, true));
        let web = store
            .with_index(|ix| ix.service("shop", "web").cloned())
            .unwrap();
        assert_eq!(
            web.vips,
            ["10.96.14.20".parse::<std::net::IpAddr>().unwrap()]
        );
        let db = store
            .with_index(|ix| ix.service("shop", "db").cloned())
            .unwrap();
        assert!(db.vips.is_empty(), "headless");
        let slice = store
            .with_index(|ix| ix.slices_for("shop", "web").next().cloned())
            .unwrap();
        assert_eq!(
            slice.ports,
            [("http".to_string(), 8080), ("metrics".to_string(), 9090)]
        );
        assert_eq!(
            slice.endpoints[0].pod.as_deref(),
            Some("web-7d4b9c6f5d-2xkqp")
        );
        let names = resource_names(&store);
        for want in [
            "service/default/kubernetes",
            "service/shop/db",
            "service/shop/web",
            &workload(WEB_1),
            &workload(WEB_2),
            &workload(DB_0),
            "authorization/shop/db-allow-batch",
            "authorization/shop/web-allow-frontend",
            "httproute/shop/web-split",
            "grpcroute/shop/db-methods",
            "authentication/shop/web-jwt",
            "authentication/shop/broken",
            "trafficpolicy/shop/web-resilience",
            "workload/workloadentry/shop/west-web",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        // db-typo (a TrafficPolicy) is invalid: not sent; nor is the
        // WorkloadEntry without an identity.
        assert_eq!(names.len(), 14, "{names:?}");
        // The entry is an endpoint of the Service that selects it.
        let web_endpoints = match &store.resources()["service/shop/web"].kind {
            Some(resource::Kind::Service(s)) => s.endpoints.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            web_endpoints
                .iter()
                .any(|e| e.ip == "10.245.3.7" && e.workload_uid == "workloadentry/shop/west-web"),
            "{web_endpoints:?}"
        );
        // The waypoint Gateway is ours; another class's is not.
        let waypoints: Vec<String> = store.with_index(|ix| {
            quicmesh_controller::waypoint::all(ix)
                .iter()
                .map(|w| format!("{}/{}:{}", w.namespace, w.name, w.implied))
                .collect()
        });
        assert_eq!(waypoints, ["shop/waypoint:false"]);
        task.abort();
    })
    .await;
}

/// The compiled RequestAuthentication `namespace/name` the store publishes.
fn authentication(
    store: &Store,
    namespace: &str,
    name: &str,
) -> Option<quicmesh_proto::config::Authentication> {
    let r = store
        .resources()
        .remove(&format!("authentication/{namespace}/{name}"))?;
    match r.kind {
        Some(resource::Kind::Authentication(a)) => Some(a),
        other => panic!("authentication/{namespace}/{name} is {other:?}"),
    }
}

/// RequestAuthentications are read raw (a malformed one is kept, invalid);
/// only Secrets labeled quicmesh.io/jwks are listed (a label selector on
/// the list and the watch), and a secretKeyRef resolves to one.
#[tokio::test]
async fn request_authentications_resolve_jwks_secrets_selected_by_label() {
    use quicmesh_controller::sources::kube::{watch_jwks_secrets, watch_request_authentications};
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let secrets = tokio::spawn(watch_jwks_secrets(client.clone(), store.clone()));
        let (_, send) = api
            .expect(
                Method::GET,
                "/api/v1/secrets",
                &["labelSelector=quicmesh.io%2Fjwks%3Dtrue"],
            )
            .await;
        send.send_response(respond(StatusCode::OK, "secrets-list.json"));
        let _secret_watch = api
            .expect(
                Method::GET,
                "/api/v1/secrets",
                &[
                    "watch=true",
                    "labelSelector=quicmesh.io%2Fjwks%3Dtrue",
                    "resourceVersion=3102",
                ],
            )
            .await;
        let ras = tokio::spawn(watch_request_authentications(client, store.clone()));
        api.answer(
            Method::GET,
            REQUEST_AUTHENTICATIONS,
            &[],
            StatusCode::OK,
            "requestauthentications-list.json",
        )
        .await;
        let _ra_watch = api.watch(REQUEST_AUTHENTICATIONS, "3101").await;
        synced(&store).await;
        let web = authentication(&store, "shop", "web-jwt").unwrap();
        assert_eq!(web.invalid, "", "valid");
        assert!(
            web.rules[0].jwks.contains("\"kid\": \"k1\""),
            "the Secret's JWKS: {:?}",
            web.rules[0]
        );
        assert_eq!(web.targets[0].name, "web");
        let broken = authentication(&store, "shop", "broken").unwrap();
        assert!(
            broken.invalid.contains("spec.jwtRules[0].issuerr"),
            "{:?}",
            broken.invalid
        );
        assert_eq!(broken.targets[0].name, "db", "still targets what it names");
        let status = store.with_index(quicmesh_controller::status::authentications);
        let generation: Vec<_> = status
            .iter()
            .map(|a| (a.name.as_str(), a.generation, a.conditions()[0].status))
            .collect();
        assert_eq!(generation, [("broken", 1, false), ("web-jwt", 2, true)]);
        secrets.abort();
        ras.abort();
    })
    .await;
}

/// Whether the store's index puts each of `uids` in the mesh.
fn in_mesh(store: &Store, uids: &[&str]) -> Vec<bool> {
    store.with_index(|ix| {
        uids.iter()
            .map(|u| ix.in_mesh(ix.pod_by_uid(u).expect("a pod of the node")))
            .collect()
    })
}

#[tokio::test]
async fn the_node_agent_sees_its_pods_join_and_leave_the_mesh_with_their_namespace() {
    bounded(async {
        let (client, mut api) = mock_client_as(rbac::Subject::CniAgent);
        let store = Store::new("cluster.local");
        let source = run_for_node(client, store.clone(), "kind-worker".into());
        let mut kinds: Vec<_> = NODE_KINDS.into_iter().map(sync_name).collect();
        kinds.sort();
        assert_eq!(store.pending_sources(), kinds);
        let task = tokio::spawn(source);

        // The pods of the node only, selected by the API server, on the list
        // and on every watch (kube-rs encodes the `=`).
        const NODE: &str = "fieldSelector=spec.nodeName%3Dkind-worker";
        // Two lists, then two watches held open, in whatever order; `shop`
        // is not ambient yet.
        let mut namespaces = None;
        let mut pods_watch = None;
        while namespaces.is_none() || pods_watch.is_none() {
            let (req, send) = api.next().await;
            let q = req.uri().query().unwrap_or_default().to_string();
            let has = |part: &str| q.split('&').any(|p| p == part);
            match (req.uri().path(), is_watch(&req)) {
                ("/api/v1/namespaces", false) => {
                    assert!(!has(NODE), "{}", req.uri());
                    send.send_response(respond(StatusCode::OK, "namespaces-list-no-ambient.json"));
                }
                ("/api/v1/namespaces", true) => {
                    assert!(has("resourceVersion=900"), "{}", req.uri());
                    namespaces = Some(send);
                }
                ("/api/v1/pods", false) => {
                    assert!(has(NODE), "the pod list selects the node: {}", req.uri());
                    send.send_response(respond(StatusCode::OK, "node-pods-list.json"));
                }
                ("/api/v1/pods", true) => {
                    assert!(has(NODE), "the pod watch selects the node: {}", req.uri());
                    assert!(has("resourceVersion=1000"), "{}", req.uri());
                    pods_watch = Some(send);
                }
                _ => panic!("the node agent asked for {}", req.uri()),
            }
        }
        synced(&store).await;
        assert_eq!(
            pods(&store),
            [
                ("db-0".to_string(), true),
                ("web-7d4b9c6f5d-2xkqp".to_string(), true)
            ]
        );
        let node_pods = [DB_0, WEB_1];
        assert_eq!(in_mesh(&store, &node_pods), [false, false]);

        // `shop` is labeled ambient: its running pods are in the mesh.
        namespaces.take().unwrap().send_response(respond(
            StatusCode::OK,
            "namespace-shop-ambient-watch.jsonl",
        ));
        // The stream ended after the event: the watch resumes from it, so
        // the event has been applied.
        let watch = api.watch("/api/v1/namespaces", "905").await;
        assert_eq!(in_mesh(&store, &node_pods), [true, true]);

        // The label is removed: out of the mesh again.
        watch.send_response(respond(
            StatusCode::OK,
            "namespace-shop-unlabeled-watch.jsonl",
        ));
        let _held = api.watch("/api/v1/namespaces", "911").await;
        assert_eq!(in_mesh(&store, &node_pods), [false, false]);
        assert!(!task.is_finished());
        drop(pods_watch);
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn policy_list_compiles_valid_and_malformed_policies() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_policies(client, store.clone());

        let _held = api.list_then_watch_policies().await;
        let names = resource_names(&store);
        assert_eq!(
            names,
            [
                "authorization/shop/db-allow-batch",
                "authorization/shop/web-allow-frontend"
            ]
        );

        let web = authorization(&store, "shop", "web-allow-frontend").unwrap();
        assert_eq!(web.invalid, "", "valid");
        assert_eq!(
            (web.scope(), web.action()),
            (AuthorizationScope::Workload, AuthorizationAction::Allow)
        );
        assert_eq!(web.rules.len(), 1);
        assert_eq!(
            web.rules[0].from[0].principals,
            ["cluster.local/ns/frontend/sa/storefront"]
        );
        assert_eq!(web.rules[0].to[0].ports, [8080]);

        // ipBlocks[1] is 10.250.0.0/33: kept, but invalid (it fails closed),
        // still scoped by its selector, and says why.
        let db = authorization(&store, "shop", "db-allow-batch").unwrap();
        assert!(
            db.invalid
                .contains("spec.rules[0].from[0].source.ipBlocks[1]"),
            "{:?}",
            db.invalid
        );
        assert_eq!(db.scope(), AuthorizationScope::Workload);
        assert!(store.with_index(|ix| ix
            .policy("shop", "db-allow-batch")
            .is_some_and(|p| p.policy.invalid.is_some())));
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn policy_watch_events_modify_and_delete() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = watch_policies(client, store.clone());

        let watch = api.list_then_watch_policies().await;
        assert!(authorization(&store, "shop", "db-allow-batch").is_some());

        // MODIFIED web-allow-frontend (port 9090 added), DELETED
        // db-allow-batch, BOOKMARK 2115.
        let before = store.version();
        watch.send_response(respond(StatusCode::OK, "authorizationpolicies-watch.jsonl"));
        // The stream ended: the watch resumes from the bookmark.
        let _held = api.watch(POLICIES, "2115").await;
        assert_eq!(
            resource_names(&store),
            ["authorization/shop/web-allow-frontend"]
        );
        assert!(authorization(&store, "shop", "db-allow-batch").is_none());
        assert!(store.with_index(|ix| ix.policy("shop", "db-allow-batch").is_none()));
        let web = authorization(&store, "shop", "web-allow-frontend").unwrap();
        assert_eq!(web.rules[0].to[0].ports, [8080, 9090]);
        assert_eq!(store.version(), before + 2, "one version per event");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn missing_policy_crd_does_not_stop_other_kinds() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = tokio::spawn(run(client, store.clone()));

        // No CRD: the API server's catch-all answers 404 (plain text) to
        // every policy list, while the other five kinds list and watch.
        let refused = Cell::new(0);
        let _held = api
            .serve_run(
                |path| {
                    if path == POLICIES {
                        refused.set(refused.get() + 1);
                        (StatusCode::NOT_FOUND, "not-found.txt")
                    } else {
                        recorded_list(path)
                    }
                },
                |watched| watched.len() == LISTS.len() - 1 && refused.get() > 0,
            )
            .await;
        assert!(pods(&store).len() == 3, "{:?}", pods(&store));
        assert!(store.with_index(|ix| ix.namespace("shop").is_some_and(|n| n.ambient())));
        assert!(store.with_index(|ix| ix.service("shop", "web").is_some()));
        assert!(store.with_index(|ix| ix.policies().next().is_none()));
        assert!(!task.is_finished(), "a missing CRD never stops the source");
        // No CRD, so no policy can exist: config is served.
        synced(&store).await;

        // The policy watcher keeps trying (with backoff); once the CRD is
        // installed, its list goes through and its watch starts.
        let _policy_watch = api.list_then_watch_policies().await;
        assert!(authorization(&store, "shop", "web-allow-frontend").is_some());
        assert_eq!(pods(&store).len(), 3, "the other kinds are untouched");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn forbidden_policy_list_holds_the_config() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = tokio::spawn(run(client, store.clone()));

        // No RBAC for policies: 403 to every policy list, while the other
        // five kinds list and watch. Two refusals: the first one has been
        // handled when the watcher retries.
        let refused = Cell::new(0);
        let _held = api
            .serve_run(
                |path| {
                    if path == POLICIES {
                        refused.set(refused.get() + 1);
                        (StatusCode::FORBIDDEN, "status-forbidden-policies.json")
                    } else {
                        recorded_list(path)
                    }
                },
                |watched| watched.len() == LISTS.len() - 1 && refused.get() >= 2,
            )
            .await;
        // The other kinds are in and synced, but policies may exist that
        // the controller cannot see: the store is not synced.
        assert_eq!(pods(&store).len(), 3);
        assert_eq!(
            store.pending_sources(),
            [sync_name(Kind::AuthorizationPolicy)]
        );
        assert!(!store.is_synced());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), store.synced())
                .await
                .is_err(),
            "synced without the policies"
        );
        assert!(!task.is_finished(), "a 403 never stops the source");

        // Once the controller may read them, the next list syncs the store.
        let _policy_watch = api.list_then_watch_policies().await;
        synced(&store).await;
        assert!(authorization(&store, "shop", "web-allow-frontend").is_some());
        task.abort();
    })
    .await;
}

/// Answers one TokenReview with `body` and returns the token it carried.
async fn review(api: &mut ApiServer, body: &str) -> String {
    let (req, send) = api
        .expect(
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &[],
        )
        .await;
    let sent = req.into_body().collect_bytes().await.unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["kind"], "TokenReview");
    assert_eq!(sent["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(sent["spec"]["audiences"], serde_json::json!(["quicmesh"]));
    send.send_response(respond(StatusCode::CREATED, body));
    sent["spec"]["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn token_review_authenticated() {
    bounded(async {
        let (client, mut api) = mock_client();
        let (caller, token) = tokio::join!(
            token_review(&client, "eyJhbGciOiJSUzI1NiJ9.bound-token"),
            review(&mut api, "tokenreview-authenticated.json")
        );
        assert_eq!(token, "eyJhbGciOiJSUzI1NiJ9.bound-token");
        assert_eq!(
            caller.unwrap(),
            Caller {
                namespace: "shop".into(),
                service_account: "web".into(),
                node: Some("kind-worker".into()),
                pod: Some("web-7d4b9c6f5d-2xkqp".into()),
                pod_uid: Some(WEB_1.into()),
            }
        );
    })
    .await;
}

#[tokio::test]
async fn token_review_unauthenticated() {
    bounded(async {
        let (client, mut api) = mock_client();
        let (caller, _) = tokio::join!(
            token_review(&client, "expired-token"),
            review(&mut api, "tokenreview-unauthenticated.json")
        );
        let e = caller.unwrap_err().to_string();
        assert!(
            e.contains("not authenticated") && e.contains("has expired"),
            "{e}"
        );
    })
    .await;
}

/// A cluster without the Gateway API CRDs: those three kinds answer 404,
/// which is a full view of none; config is not held back for them.
#[tokio::test]
async fn missing_gateway_api_crds_do_not_hold_config() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = tokio::spawn(run(client, store.clone()));
        let _held = api
            .serve_run(
                |path| {
                    if GATEWAY_API.contains(&path) {
                        (StatusCode::NOT_FOUND, "not-found.txt")
                    } else {
                        recorded_list(path)
                    }
                },
                |watched| watched.len() == LISTS.len() - GATEWAY_API.len(),
            )
            .await;
        synced(&store).await;
        assert!(store.with_index(|ix| ix.routes().next().is_none()));
        task.abort();
    })
    .await;
}

/// The body of a request the client sent, as JSON.
async fn json_body(req: Request<Body>) -> serde_json::Value {
    use http_body_util::BodyExt;
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn provision_settings() -> quicmesh_controller::provision::Settings {
    quicmesh_controller::provision::Settings {
        image: "ghcr.io/quicmesh/waypoint:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        controller: "quicmesh-controller.quicmesh-system.svc:15012".into(),
        controller_identity: "spiffe://cluster.local/ns/quicmesh-system/sa/controller".into(),
        trust_domain: "cluster.local".into(),
        cluster_domain: "cluster.local".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        env: Vec::new(),
    }
}

/// The Gateway the API server returned (gateway-applied.json), as the
/// Gateway watch hands it to the store.
fn applied_gateway() -> Object {
    let o: kube::api::DynamicObject =
        serde_json::from_slice(&fixture("gateway-applied.json")).unwrap();
    Object::Gateway(quicmesh_controller::sources::kube::gateway(&o).unwrap())
}

fn shop(use_waypoint: Option<&str>) -> Object {
    Object::Namespace(quicmesh_controller::model::Namespace {
        name: "shop".into(),
        labels: use_waypoint
            .map(|v| {
                [(
                    quicmesh_controller::waypoint::USE_WAYPOINT_LABEL.to_string(),
                    v.to_string(),
                )]
                .into()
            })
            .unwrap_or_default(),
    })
}

#[tokio::test]
async fn a_waypoint_label_is_provisioned_by_server_side_apply_and_undone_with_it() {
    use quicmesh_controller::provision::kube::{run, ProvisionMetrics};
    let (client, mut api) = mock_client();
    let store = Store::new("cluster.local");
    store.apply(|ix| ix.upsert(shop(Some("waypoint"))));
    let metrics = ProvisionMetrics::default();
    tokio::spawn(run(
        client,
        store.clone(),
        provision_settings(),
        metrics.clone(),
    ));
    let apply = ["fieldManager=quicmesh-controller", "force=true"];
    bounded(async {
        // The label names no Gateway: the controller creates it.
        let gateways = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint";
        let (req, send) = api.expect(Method::PATCH, gateways, &apply).await;
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body = json_body(req).await;
        assert_eq!(body["spec"]["gatewayClassName"], "quicmesh-waypoint");
        assert_eq!(
            body["metadata"]["labels"]["quicmesh.io/created-for-label"],
            "true"
        );
        send.send_response(respond(StatusCode::CREATED, "gateway-applied.json"));
        // The watch brings it back, with its uid: what runs it, owned by it.
        store.apply(|ix| ix.upsert(applied_gateway()));
        let owned = [
            "/api/v1/namespaces/shop/serviceaccounts/waypoint",
            "/api/v1/namespaces/shop/configmaps/waypoint-ca-root",
            "/api/v1/namespaces/shop/services/waypoint",
            "/apis/apps/v1/namespaces/shop/deployments/waypoint",
        ];
        for path in owned {
            // Each is read first: an object of that name that is not the
            // waypoint's is never taken over.
            if path.ends_with("services/waypoint") {
                api.answer(
                    Method::GET,
                    path,
                    &[],
                    StatusCode::OK,
                    "service-user-owned.json",
                )
                .await;
                continue;
            }
            api.answer(
                Method::GET,
                path,
                &[],
                StatusCode::NOT_FOUND,
                "status-not-found.json",
            )
            .await;
            let (req, send) = api.expect(Method::PATCH, path, &apply).await;
            let body = json_body(req).await;
            assert_eq!(
                body["metadata"]["ownerReferences"][0]["uid"],
                "7c1e9a52-4b3d-4f8e-9a61-2d5c8b0e3f14",
                "{path}"
            );
            if path.ends_with("deployments/waypoint") {
                // Refused (say, an admission webhook): retried later alone.
                send.send_response(respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "status-invalid-deployment.json",
                ));
            } else {
                let echo = Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(echo);
            }
        }
        // Any change: only what was not applied is tried again (the user's
        // Service is read again, and left alone again).
        store.apply(|ix| {
            ix.upsert(Object::Namespace(quicmesh_controller::model::Namespace {
                name: "other".into(),
                labels: Default::default(),
            }))
        });
        api.answer(
            Method::GET,
            owned[2],
            &[],
            StatusCode::OK,
            "service-user-owned.json",
        )
        .await;
        api.answer(
            Method::GET,
            owned[3],
            &[],
            StatusCode::NOT_FOUND,
            "status-not-found.json",
        )
        .await;
        let (req, send) = api.expect(Method::PATCH, owned[3], &apply).await;
        let body = json_body(req).await;
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["image"],
            "ghcr.io/quicmesh/waypoint:test"
        );
        send.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        // The label goes: the Gateway the controller created goes (its
        // objects with it, by Kubernetes' garbage collection).
        store.apply(|ix| ix.upsert(shop(None)));
        let (_, send) = api.expect(Method::DELETE, gateways, &[]).await;
        send.send_response(respond(StatusCode::OK, "gateway-deleted.json"));
    })
    .await;
    let text = {
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("p", "p", metrics);
        quicmesh_core::metrics::encode(&reg)
    };
    for series in [
        "p_total{kind=\"Gateway\",result=\"applied\"} 1",
        "p_total{kind=\"Deployment\",result=\"error\"} 1",
        "p_total{kind=\"Deployment\",result=\"applied\"} 1",
        "p_total{kind=\"ServiceAccount\",result=\"applied\"} 1",
        "p_total{kind=\"Service\",result=\"not_ours\"} 2",
    ] {
        assert!(text.contains(series), "{series}\n{text}");
    }
}

#[tokio::test]
async fn status_is_written_back_keeping_other_controllers_entries() {
    use quicmesh_controller::model::{Route, RouteKind, Service, ServicePort, TargetPort};
    use quicmesh_controller::status::kube::{run, StatusMetrics};
    let (client, mut api) = mock_client();
    let store = Store::new("cluster.local");
    let route: kube::api::DynamicObject =
        serde_json::from_slice(&fixture("httproute-with-status.json")).unwrap();
    store.apply(|ix| {
        let mut d = ix.upsert(shop(None));
        d.extend(ix.upsert(applied_gateway()));
        d.extend(ix.upsert(Object::Service(Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target: TargetPort::Number(8080),
                app_protocol: None,
            }],
            selector: None,
            labels: Default::default(),
        })));
        let r: Route = quicmesh_controller::sources::kube::route(RouteKind::Http, &route).unwrap();
        d.extend(ix.upsert(Object::Route(r)));
        d
    });
    tokio::spawn(run(client, store.clone(), StatusMetrics::default()));
    let gateway_status =
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint/status";
    let conditions = |body: &serde_json::Value| {
        body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_string(),
                    c["status"].as_str().unwrap().to_string(),
                    c["lastTransitionTime"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    bounded(async {
        // The Gateway: server-side apply of our conditions.
        let (req, send) = api
            .expect(
                Method::PATCH,
                gateway_status,
                &["fieldManager=quicmesh-controller", "force=true"],
            )
            .await;
        let first = json_body(req).await;
        let c = conditions(&first);
        assert_eq!((c[0].0.as_str(), c[0].1.as_str()), ("Accepted", "True"));
        assert_eq!((c[1].0.as_str(), c[1].1.as_str()), ("Programmed", "False"));
        assert_eq!(first["status"]["conditions"][1]["observedGeneration"], 1);
        send.send_response(respond(StatusCode::OK, "gateway-applied.json"));
        // The route: read, ours added beside the edge controller's entry,
        // written with the resourceVersion read.
        let routes = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r";
        api.answer(
            Method::GET,
            routes,
            &[],
            StatusCode::OK,
            "httproute-with-status.json",
        )
        .await;
        let (req, send) = api
            .expect(Method::PATCH, &format!("{routes}/status"), &[])
            .await;
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let body = json_body(req).await;
        assert_eq!(body["metadata"]["resourceVersion"], "4242");
        let parents = body["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2, "{body}");
        assert_eq!(parents[0]["controllerName"], "example.com/edge-controller");
        assert_eq!(
            parents[1]["controllerName"],
            quicmesh_controller::status::CONTROLLER_NAME
        );
        assert_eq!(parents[1]["parentRef"]["name"], "web");
        assert_eq!(parents[1]["conditions"][0]["type"], "Accepted");
        assert_eq!(parents[1]["conditions"][0]["status"], "True");
        assert_eq!(parents[1]["conditions"][0]["observedGeneration"], 2);
        send.send_response(respond(StatusCode::OK, "httproute-with-status.json"));
        // A waypoint pod becomes ready: the Gateway is written again (its
        // Accepted condition keeps its transition time); the route, the
        // same, is not.
        store.apply(|ix| {
            let w = quicmesh_controller::waypoint::find(ix, "shop", "waypoint").unwrap();
            ix.upsert(Object::Pod(quicmesh_controller::model::Pod {
                uid: "wp-1".into(),
                name: "waypoint-6c9f7-abcde".into(),
                namespace: "shop".into(),
                labels: quicmesh_controller::waypoint::provision(&w).pod_labels,
                annotations: Default::default(),
                service_account: "waypoint".into(),
                node: Some("kind-worker".into()),
                ips: vec!["10.244.1.20".parse().unwrap()],
                ready: true,
                containers: vec![],
            }))
        });
        let (req, send) = api
            .expect(
                Method::PATCH,
                gateway_status,
                &["fieldManager=quicmesh-controller", "force=true"],
            )
            .await;
        let second = json_body(req).await;
        let c2 = conditions(&second);
        assert_eq!(c2[1].1, "True", "Programmed");
        assert!(!c2[0].2.is_empty() && !c2[1].2.is_empty(), "timestamps");
        send.send_response(respond(StatusCode::OK, "gateway-applied.json"));
        // Nothing else follows within a settle period.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            futures::FutureExt::now_or_never(api.handle.next_request()).is_none(),
            "an unchanged route is not read again"
        );
    })
    .await;
}

#[tokio::test]
async fn a_policys_conditions_are_written_to_its_status() {
    use quicmesh_controller::status::kube::{run, StatusMetrics};
    let (client, mut api) = mock_client();
    let store = Store::new("cluster.local");
    store.apply(|ix| {
        let broken = quicmesh_controller::model::AuthorizationPolicy {
            generation: 3,
            ..quicmesh_controller::policy::compile(
                "shop",
                "broken",
                &serde_json::json!({"rules": [{"to": [{"operation": {"methods": ["get"]}}]}]}),
            )
        };
        ix.upsert(Object::AuthorizationPolicy(broken))
    });
    tokio::spawn(run(client, store.clone(), StatusMetrics::default()));
    let path = "/apis/quicmesh.io/v1alpha1/namespaces/shop/authorizationpolicies/broken/status";
    bounded(async {
        // Server-side apply of ours: Accepted False, Invalid, the field named.
        let body = api
            .echo(
                Method::PATCH,
                path,
                &["fieldManager=quicmesh-controller", "force=true"],
                StatusCode::OK,
            )
            .await;
        assert_eq!(body["apiVersion"], "quicmesh.io/v1alpha1");
        assert_eq!(body["kind"], "AuthorizationPolicy");
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["status"].as_str()),
            (Some("Accepted"), Some("False"))
        );
        assert_eq!(c["reason"], "Invalid");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("spec.rules[0].to[0].operation.methods[0]"),
            "{c}"
        );
        assert_eq!(c["observedGeneration"], 3);
        // Fixed: written again, now accepted.
        store.apply(|ix| {
            let fixed = quicmesh_controller::model::AuthorizationPolicy {
                generation: 4,
                ..quicmesh_controller::policy::compile(
                    "shop",
                    "broken",
                    &serde_json::json!({"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
                )
            };
            ix.upsert(Object::AuthorizationPolicy(fixed))
        });
        let body = api
            .echo(
                Method::PATCH,
                path,
                &["fieldManager=quicmesh-controller", "force=true"],
                StatusCode::OK,
            )
            .await;
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("Accepted"))
        );
        assert_eq!(c["observedGeneration"], 4);
    })
    .await;
}

/// The uid of the ztunnel pod the recorded ztunnel token is bound to.
const ZTUNNEL_POD: &str = "7b2e4f10-3c5d-4e6f-8a9b-0c1d2e3f4a11";

/// A store with the recorded tokens' pods: ztunnel's in quicmesh-system and
/// shop's web, both on kind-worker.
fn store_with_token_pods() -> Arc<Store> {
    use quicmesh_controller::model::{Labels, Pod};
    let store = Store::new("cluster.local");
    let pod = |uid: &str, ns: &str, name: &str, sa: &str, ip: &str| {
        Object::Pod(Pod {
            uid: uid.into(),
            name: name.into(),
            namespace: ns.into(),
            labels: Labels::new(),
            annotations: Labels::new(),
            service_account: sa.into(),
            node: Some("kind-worker".into()),
            ips: vec![ip.parse().unwrap()],
            ready: true,
            containers: vec![],
        })
    };
    store.apply(|ix| {
        let mut d = ix.upsert(pod(
            ZTUNNEL_POD,
            "quicmesh-system",
            "ztunnel-5xk2q",
            "ztunnel",
            "10.244.1.3",
        ));
        d.extend(ix.upsert(pod(
            WEB_1,
            "shop",
            "web-7d4b9c6f5d-2xkqp",
            "web",
            "10.244.1.2",
        )));
        d
    });
    store
}

/// The CA with TokenReview, as the controller runs in Kubernetes: a CSR
/// with a bearer token is answered through the mock API server.
fn kube_ca(client: Client, store: Arc<Store>) -> quicmesh_controller::ca::CaService {
    use quicmesh_controller::ca::{kube::TokenReviewer, CaService, NodeAgent};
    CaService {
        ca: Arc::new(
            CurrentCa::new(
                quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap(),
                store.clone(),
                Duration::from_secs(3600),
            )
            .unwrap(),
        ),
        system_namespace: "quicmesh-system".into(),
        auth: Arc::new(TokenReviewer {
            client,
            store: store.clone(),
            agent: NodeAgent {
                namespace: "quicmesh-system".into(),
                service_account: "ztunnel".into(),
            },
        }),
        store,
        default_ttl: Duration::from_secs(3600),
        max_ttl: Duration::from_secs(86400),
        metrics: Arc::default(),
    }
}

/// A CSR for `sa` in `ns`, with `token` as its bearer credential.
fn csr(
    ns: &str,
    sa: &str,
    token: &str,
) -> tonic::Request<quicmesh_proto::ca::CreateCertificateRequest> {
    let id = quicmesh_core::identity::SpiffeId::workload("cluster.local", ns, sa).unwrap();
    let (csr, _key) = quicmesh_core::identity::ca::new_csr(&id).unwrap();
    let mut req = tonic::Request::new(quicmesh_proto::ca::CreateCertificateRequest {
        csr,
        ttl_seconds: 0,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Issue 12's first hole: any pod's bound token used to act for its node
/// (and so get every co-scheduled workload's SVID). Now only the ztunnel
/// service account's token bound to a ztunnel pod does; an app's token, a
/// token for another audience and an unbound ztunnel token are refused,
/// each counted with its reason.
#[tokio::test]
async fn only_the_ztunnels_bound_token_gets_certificates_for_its_node() {
    use quicmesh_proto::ca::certificate_authority_server::CertificateAuthority;
    bounded(async {
        let (client, mut api) = mock_client();
        let ca = kube_ca(client, store_with_token_pods());
        let cases = [
            ("tokenreview-ztunnel.json", Ok(())),
            ("tokenreview-authenticated.json", Err("not_a_node_agent")),
            (
                "tokenreview-wrong-audience.json",
                Err("token_not_authenticated"),
            ),
            (
                "tokenreview-ztunnel-unbound.json",
                Err("not_bound_to_its_pod"),
            ),
        ];
        for (fixture, expected) in cases {
            // Each caller asks for web's SVID (web runs on kind-worker).
            let (answer, _) = tokio::join!(
                ca.create_certificate(csr("shop", "web", "a-token")),
                review(&mut api, fixture)
            );
            match (answer, expected) {
                (Ok(issued), Ok(())) => assert_eq!(issued.into_inner().cert_chain.len(), 1),
                (Err(status), Err(reason)) => {
                    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{fixture}");
                    let n = ca
                        .metrics
                        .requests
                        .get_or_create(&quicmesh_controller::ca::CaLabels {
                            result: "unauthenticated".into(),
                            reason: reason.into(),
                        })
                        .get();
                    assert_eq!(n, 1, "{fixture}: {}", status.message());
                }
                (answer, expected) => panic!("{fixture}: {answer:?}, expected {expected:?}"),
            }
        }
        // The ztunnel's node gets no identity of the install namespace
        // (the controller's, ztunnel's own), though a pod of it runs there.
        let (answer, _) = tokio::join!(
            ca.create_certificate(csr("quicmesh-system", "ztunnel", "a-token")),
            review(&mut api, "tokenreview-ztunnel.json")
        );
        let status = answer.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("reserved"),
            "{}",
            status.message()
        );
    })
    .await;
}

fn respond_json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

const CA_SECRET: &str = "/api/v1/namespaces/quicmesh-system/secrets";

/// The Secret the API server answers with, holding `ca`.
fn ca_secret(ca: &quicmesh_core::identity::ca::Ca) -> serde_json::Value {
    let bytes = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
    let data: std::collections::BTreeMap<_, _> = [
        ("ca.pem".to_string(), bytes(ca.cert_pem())),
        ("ca-key.pem".to_string(), bytes(ca.key_pem())),
    ]
    .into();
    let mut v = serde_json::json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "quicmesh-ca", "namespace": "quicmesh-system", "uid": "s-1",
            "resourceVersion": "4242", "creationTimestamp": "2026-12-02T00:00:00Z"},
        "type": "Opaque",
    });
    v["data"] = serde_json::to_value(data).unwrap();
    v
}

/// A Secret's `data[key]` as text (the API sends it base64-encoded).
fn secret_text(secret: &serde_json::Value, key: &str) -> String {
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone()).unwrap();
    String::from_utf8(s.data.unwrap()[key].0.clone()).unwrap()
}

/// The CA is kept in a Secret: read when there; created when not (and what
/// was created is what is used); a lost race to create reads the winner's.
#[tokio::test]
async fn the_ca_is_kept_in_a_secret_created_once() {
    use quicmesh_controller::ca::kube::load_or_create;
    bounded(async {
        // There: read.
        let (client, mut api) = mock_client();
        let stored = quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap();
        let (ca, _) = tokio::join!(
            load_or_create(&client, "quicmesh-system", "quicmesh-ca", "cluster.local"),
            async {
                api.answer_json(
                    Method::GET,
                    &format!("{CA_SECRET}/quicmesh-ca"),
                    StatusCode::OK,
                    &ca_secret(&stored),
                )
                .await;
            }
        );
        assert_eq!(ca.unwrap().cert_pem(), stored.cert_pem());

        // Absent: generated and created; the one created is the one used.
        let (client, mut api) = mock_client();
        let (ca, created) = tokio::join!(
            load_or_create(&client, "quicmesh-system", "quicmesh-ca", "cluster.local"),
            async {
                api.answer(
                    Method::GET,
                    &format!("{CA_SECRET}/quicmesh-ca"),
                    &[],
                    StatusCode::NOT_FOUND,
                    "status-secret-not-found.json",
                )
                .await;
                api.echo(Method::POST, CA_SECRET, &[], StatusCode::CREATED)
                    .await
            }
        );
        let ca = ca.unwrap();
        assert_eq!(created["metadata"]["name"], "quicmesh-ca");
        assert_eq!(created["type"], "Opaque");
        assert_eq!(secret_text(&created, "ca.pem"), ca.cert_pem());
        assert_eq!(secret_text(&created, "ca-key.pem"), ca.key_pem());

        // Created by another replica meanwhile (409): theirs is read.
        let (client, mut api) = mock_client();
        let winner = quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap();
        let (ca, _) = tokio::join!(
            load_or_create(&client, "quicmesh-system", "quicmesh-ca", "cluster.local"),
            async {
                api.answer(
                    Method::GET,
                    &format!("{CA_SECRET}/quicmesh-ca"),
                    &[],
                    StatusCode::NOT_FOUND,
                    "status-secret-not-found.json",
                )
                .await;
                api.answer(
                    Method::POST,
                    CA_SECRET,
                    &[],
                    StatusCode::CONFLICT,
                    "status-secret-exists.json",
                )
                .await;
                api.answer_json(
                    Method::GET,
                    &format!("{CA_SECRET}/quicmesh-ca"),
                    StatusCode::OK,
                    &ca_secret(&winner),
                )
                .await;
            }
        );
        assert_eq!(ca.unwrap().cert_pem(), winner.cert_pem());

        // A Secret without the key: a clear error, nothing generated over it.
        let (client, mut api) = mock_client();
        let mut broken = ca_secret(&winner);
        broken["data"].as_object_mut().unwrap().remove("ca-key.pem");
        let (ca, _) = tokio::join!(
            load_or_create(&client, "quicmesh-system", "quicmesh-ca", "cluster.local"),
            async {
                api.answer_json(
                    Method::GET,
                    &format!("{CA_SECRET}/quicmesh-ca"),
                    StatusCode::OK,
                    &broken,
                )
                .await;
            }
        );
        let e = format!("{:#}", ca.expect_err("refused"));
        assert!(
            e.contains("quicmesh-system/quicmesh-ca") && e.contains("ca-key.pem"),
            "{e}"
        );
    })
    .await;
}

/// The root goes to a ConfigMap by server-side apply, for ztunnels'
/// bootstrap trust bundle.
#[tokio::test]
async fn the_ca_root_is_published_in_a_configmap() {
    bounded(async {
        let (client, mut api) = mock_client();
        let (done, body) = tokio::join!(
            quicmesh_controller::ca::kube::publish_root(
                &client,
                "quicmesh-system",
                "quicmesh-ca-root",
                "-----BEGIN CERTIFICATE-----\n"
            ),
            async {
                api.echo(
                    Method::PATCH,
                    "/api/v1/namespaces/quicmesh-system/configmaps/quicmesh-ca-root",
                    &["fieldManager=quicmesh-controller", "force=true"],
                    StatusCode::OK,
                )
                .await
            }
        );
        done.unwrap();
        assert_eq!(body["kind"], "ConfigMap");
        assert_eq!(body["data"]["ca.pem"], "-----BEGIN CERTIFICATE-----\n");
    })
    .await;
}

/// A CA Secret holding `pem` (the optional keys when it has them).
fn ca_secret_of(pem: &quicmesh_core::identity::ca::CaPem) -> serde_json::Value {
    let bytes = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
    let mut data = std::collections::BTreeMap::new();
    data.insert("ca.pem".to_string(), bytes(&pem.cert));
    data.insert("ca-key.pem".to_string(), bytes(&pem.key));
    if let Some(c) = &pem.chain {
        data.insert("ca-chain.pem".to_string(), bytes(c));
    }
    if let Some(r) = &pem.roots {
        data.insert("roots.pem".to_string(), bytes(r));
    }
    let mut v = ca_secret(&quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap());
    v["data"] = serde_json::to_value(data).unwrap();
    v
}

/// The own trust bundle's roots pushed to proxies.
fn pushed_roots(store: &Store) -> usize {
    let r = store.resources();
    match &r["bundle/cluster.local"].kind {
        Some(resource::Kind::TrustBundle(b)) => b.roots.len(),
        other => panic!("{other:?}"),
    }
}

/// The CA Secret is read again (every interval) and each rotation stage
/// written to it takes effect; a Secret that makes a bad CA is refused and
/// the last good CA signs on. The root ConfigMap follows the bundle.
#[tokio::test]
async fn the_ca_secret_is_followed_through_a_rotation() {
    use quicmesh_core::identity::ca::Ca;
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let old = Ca::generate("cluster.local").unwrap();
        let current = Arc::new(
            CurrentCa::new(
                Ca::from_parts("cluster.local", old.parts()).unwrap(),
                store.clone(),
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let c = client.clone();
        let follow = tokio::spawn(quicmesh_controller::ca::rotation::follow(
            current.clone(),
            "Secret quicmesh-system/quicmesh-ca".into(),
            Duration::from_millis(10),
            move || {
                let c = c.clone();
                async move {
                    quicmesh_controller::ca::kube::read_secret(&c, "quicmesh-system", "quicmesh-ca")
                        .await
                }
            },
        ));
        let path = format!("{CA_SECRET}/quicmesh-ca");
        // Each change is read twice (a change is taken once two reads agree).
        let new_root = Ca::generate("cluster.local").unwrap();
        let mut add = old.parts().clone();
        add.roots = Some(format!("{}{}", old.cert_pem(), new_root.cert_pem()));
        for _ in 0..2 {
            api.answer_json(Method::GET, &path, StatusCode::OK, &ca_secret_of(&add))
                .await;
        }
        // The next read comes after the change was applied.
        api.answer_json(Method::GET, &path, StatusCode::OK, &ca_secret_of(&add))
            .await;
        assert_eq!(pushed_roots(&store), 2);

        // The new intermediate with the old key: refused.
        let mid = new_root
            .issue_intermediate(Duration::from_secs(86400))
            .unwrap();
        let mut switch = mid.parts().clone();
        switch.roots = add.roots.clone();
        let mut bad = switch.clone();
        bad.key = old.key_pem().into();
        for _ in 0..3 {
            api.answer_json(Method::GET, &path, StatusCode::OK, &ca_secret_of(&bad))
                .await;
        }
        assert_eq!(current.signer().cert_der(), old.cert_der());
        assert!(current.status()["lastRefusal"]
            .as_str()
            .unwrap()
            .contains("ca-key.pem"));
        // An API error: the CA stays.
        api.answer(
            Method::GET,
            &path,
            &[],
            StatusCode::INTERNAL_SERVER_ERROR,
            "status-500.json",
        )
        .await;
        // The switch: the intermediate (root offline) signs, chained.
        for _ in 0..3 {
            api.answer_json(Method::GET, &path, StatusCode::OK, &ca_secret_of(&switch))
                .await;
        }
        let signer = current.signer();
        assert_eq!(signer.cert_der(), mid.cert_der());
        assert_eq!(signer.intermediates(), [mid.cert_der().clone()]);
        follow.abort();

        // The ConfigMap holds every root, and follows a change at once.
        let publisher = tokio::spawn(quicmesh_controller::ca::kube::keep_root_published(
            client.clone(),
            "quicmesh-system".into(),
            "quicmesh-ca-root".into(),
            current.clone(),
        ));
        let cm = "/api/v1/namespaces/quicmesh-system/configmaps/quicmesh-ca-root";
        let body = api.echo(Method::PATCH, cm, &[], StatusCode::OK).await;
        assert_eq!(body["data"]["ca.pem"], current.roots_pem());
        assert_eq!(current.roots_pem().matches("BEGIN CERTIFICATE").count(), 2);
        let mut drop = switch.clone();
        drop.roots = Some(new_root.cert_pem().into());
        current.offer(&drop).unwrap();
        let body = api.echo(Method::PATCH, cm, &[], StatusCode::OK).await;
        // The old root retires once this run's SVIDs of it may have expired.
        let published = body["data"]["ca.pem"].as_str().unwrap().to_string();
        assert!(
            published.contains(new_root.cert_pem().trim()),
            "{published}"
        );
        publisher.abort();
    })
    .await;
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/quicmesh-system/leases";

fn election(identity: &str) -> quicmesh_controller::leader::Election {
    quicmesh_controller::leader::Election {
        namespace: "quicmesh-system".into(),
        name: "quicmesh-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        retry: Duration::from_secs(3),
    }
}

/// The Lease as the API server has it: held by `holder`, renewed
/// `renewed_ago` before now.
fn lease(holder: &str, renewed_ago: Duration, transitions: i32) -> serde_json::Value {
    let at = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::try_from(renewed_ago).unwrap())
        .unwrap();
    let t = at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    serde_json::json!({
        "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": "quicmesh-controller", "namespace": "quicmesh-system",
            "uid": "l-1", "resourceVersion": "777", "creationTimestamp": "2026-12-02T00:00:00Z"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": "2026-12-02T00:00:00.000000Z", "renewTime": t,
            "leaseTransitions": transitions}
    })
}

/// Leader election on a Lease: created when absent; a live one of another
/// replica is left alone (no write); an expired one is taken over with the
/// resourceVersion read (so a concurrent taker loses with 409) and one
/// more transition; our own is renewed.
#[tokio::test]
async fn replicas_elect_one_leader_on_a_lease() {
    use quicmesh_controller::leader::Outcome;
    let lease_path = format!("{LEASES}/quicmesh-controller");
    let me = election("controller-a");
    bounded(async {
        // Absent: created, held by us.
        let (client, mut api) = mock_client();
        let (got, created) = tokio::join!(me.try_acquire(&client), async {
            api.answer(
                Method::GET,
                &lease_path,
                &[],
                StatusCode::NOT_FOUND,
                "status-not-found.json",
            )
            .await;
            api.echo(Method::POST, LEASES, &[], StatusCode::CREATED)
                .await
        });
        assert_eq!(got.unwrap(), Outcome::Leading);
        assert_eq!(created["spec"]["holderIdentity"], "controller-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 15);

        // Another's, renewed 3 s ago: we follow and write nothing (the
        // mock would fail on any further request).
        let (client, mut api) = mock_client();
        let (got, _) = tokio::join!(me.try_acquire(&client), async {
            api.answer_json(
                Method::GET,
                &lease_path,
                StatusCode::OK,
                &lease("controller-b", Duration::from_secs(3), 4),
            )
            .await;
        });
        assert_eq!(got.unwrap(), Outcome::Following);

        // Another's, not renewed for 20 s: taken over.
        let (client, mut api) = mock_client();
        let (got, put) = tokio::join!(me.try_acquire(&client), async {
            api.answer_json(
                Method::GET,
                &lease_path,
                StatusCode::OK,
                &lease("controller-b", Duration::from_secs(20), 4),
            )
            .await;
            api.echo(Method::PUT, &lease_path, &[], StatusCode::OK)
                .await
        });
        assert_eq!(got.unwrap(), Outcome::Leading);
        assert_eq!(put["metadata"]["resourceVersion"], "777");
        assert_eq!(put["spec"]["holderIdentity"], "controller-a");
        assert_eq!(put["spec"]["leaseTransitions"], 5);

        // The same, but another replica took it first: 409, not leading.
        let (client, mut api) = mock_client();
        let (got, _) = tokio::join!(me.try_acquire(&client), async {
            api.answer_json(
                Method::GET,
                &lease_path,
                StatusCode::OK,
                &lease("controller-b", Duration::from_secs(20), 4),
            )
            .await;
            api.answer(
                Method::PUT,
                &lease_path,
                &[],
                StatusCode::CONFLICT,
                "status-lease-conflict.json",
            )
            .await;
        });
        assert!(got.is_err());

        // Ours: renewed, same transitions.
        let (client, mut api) = mock_client();
        let (got, put) = tokio::join!(me.try_acquire(&client), async {
            api.answer_json(
                Method::GET,
                &lease_path,
                StatusCode::OK,
                &lease("controller-a", Duration::from_secs(3), 5),
            )
            .await;
            api.echo(Method::PUT, &lease_path, &[], StatusCode::OK)
                .await
        });
        assert_eq!(got.unwrap(), Outcome::Leading);
        assert_eq!(put["spec"]["leaseTransitions"], 5);
        assert_eq!(put["spec"]["acquireTime"], "2026-12-02T00:00:00.000000Z");
    })
    .await;
}

/// The writers run only while leading, and stop when leadership is lost.
#[tokio::test]
async fn writers_run_only_while_leading() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    /// Counts the writers alive: one more while its task lives.
    struct Alive(Arc<AtomicUsize>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }
    bounded(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (started, alive) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, a) = (started.clone(), alive.clone());
        tokio::spawn(quicmesh_controller::leader::while_leading(rx, move || {
            s.fetch_add(1, SeqCst);
            a.fetch_add(1, SeqCst);
            let guard = Alive(a.clone());
            vec![tokio::spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            })]
        }));
        let wait = |want: usize| {
            let alive = alive.clone();
            async move {
                while alive.load(SeqCst) != want {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        tx.send(true).unwrap();
        wait(1).await;
        tx.send(false).unwrap();
        wait(0).await;
        tx.send(true).unwrap();
        wait(1).await;
        assert_eq!(started.load(SeqCst), 2);
    })
    .await;
}

/// The TrafficPolicy the store publishes for `name`, if any.
fn traffic_policy(store: &Store, name: &str) -> Option<quicmesh_proto::config::TrafficPolicy> {
    match store
        .resources()
        .remove(&format!("trafficpolicy/shop/{name}"))?
        .kind
    {
        Some(resource::Kind::TrafficPolicy(p)) => Some(p),
        other => panic!("{other:?}"),
    }
}

/// Services shop/web (ports http, metrics) and shop/db, as the recorded
/// list has them.
fn store_with_services() -> Arc<Store> {
    let store = Store::new("cluster.local");
    let services: serde_json::Value =
        serde_json::from_slice(&fixture("services-list.json")).unwrap();
    store.apply(|ix| {
        let mut d = quicmesh_controller::index::Dirty::new();
        for item in services["items"].as_array().unwrap() {
            let s: k8s_openapi::api::core::v1::Service =
                serde_json::from_value(item.clone()).unwrap();
            let s = quicmesh_controller::sources::kube::service(&s).unwrap();
            d.extend(ix.upsert(Object::Service(s)));
        }
        d
    });
    store
}

/// Listed: the valid policy is sent with both its targets (the Service,
/// and its port `metrics`); the one with a typo is kept, invalid, and not
/// sent. Watched: the typo fixed, it is sent; the other deleted, it goes.
#[tokio::test]
async fn traffic_policies_are_listed_watched_and_compiled() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = store_with_services();
        let task = tokio::spawn(watch_traffic_policies(client, store.clone()));
        api.answer(
            Method::GET,
            TRAFFIC,
            &[],
            StatusCode::OK,
            "trafficpolicies-list.json",
        )
        .await;
        let watch = api.watch(TRAFFIC, "48510").await;
        let web = traffic_policy(&store, "web-resilience").expect("sent");
        let ports: Vec<u32> = web.targets.iter().map(|t| t.port).collect();
        assert_eq!(ports, [0, 9090], "the Service, and its port named metrics");
        assert_eq!(web.rate_limit.unwrap().requests, 100);
        assert_eq!(web.outlier_detection.unwrap().base_ejection_time_ms, 30_000);
        assert_eq!(web.created, 1_747_042_731);
        assert!(traffic_policy(&store, "db-typo").is_none());
        let why =
            store.with_index(|ix| ix.traffic_policy("shop", "db-typo").unwrap().parts.clone());
        assert!(why
            .unwrap_err()
            .contains("spec.connectionPool.maxConections: unknown field"));

        watch.send_response(respond(StatusCode::OK, "trafficpolicies-watch.jsonl"));
        let _held = api.watch(TRAFFIC, "48540").await;
        let db = traffic_policy(&store, "db-typo").expect("fixed, sent");
        assert_eq!(db.connection_pool.unwrap().max_connections, 10);
        assert!(
            traffic_policy(&store, "web-resilience").is_none(),
            "deleted"
        );
        task.abort();
    })
    .await;
}

/// A controller that may not list TrafficPolicies serves config all the
/// same (they only take resilience away); one without the CRD too.
#[tokio::test]
async fn traffic_policies_that_cannot_be_listed_do_not_hold_the_config() {
    for (status, body) in [
        (
            StatusCode::FORBIDDEN,
            "status-forbidden-trafficpolicies.json",
        ),
        (StatusCode::NOT_FOUND, "not-found.txt"),
    ] {
        bounded(async {
            let (client, mut api) = mock_client();
            let store = Store::new("cluster.local");
            let task = tokio::spawn(run(client, store.clone()));
            let refused = Cell::new(0);
            let _held = api
                .serve_run(
                    |path| {
                        if path == TRAFFIC {
                            refused.set(refused.get() + 1);
                            (status, body)
                        } else {
                            recorded_list(path)
                        }
                    },
                    |watched| watched.len() == LISTS.len() - 1 && refused.get() > 0,
                )
                .await;
            synced(&store).await;
            assert!(store.with_index(|ix| ix.traffic_policies().next().is_none()));
            task.abort();
        })
        .await;
    }
}

/// A TrafficPolicy's status: read, ours (one entry per target: web
/// accepted, api not found) merged beside another controller's entry, and
/// written with the resourceVersion read.
#[tokio::test]
async fn traffic_policy_status_is_written_back_keeping_other_controllers_entries() {
    use quicmesh_controller::status::kube::{run, StatusMetrics};
    let (client, mut api) = mock_client();
    let store = store_with_services();
    let object: kube::api::DynamicObject =
        serde_json::from_slice(&fixture("trafficpolicy-with-status.json")).unwrap();
    store.apply(|ix| {
        ix.upsert(Object::TrafficPolicy(
            quicmesh_controller::sources::kube::traffic_policy(&object).unwrap(),
        ))
    });
    tokio::spawn(run(client, store.clone(), StatusMetrics::default()));
    bounded(async {
        let path = "/apis/quicmesh.io/v1alpha1/namespaces/shop/trafficpolicies/web-resilience";
        api.answer(
            Method::GET,
            path,
            &[],
            StatusCode::OK,
            "trafficpolicy-with-status.json",
        )
        .await;
        let (req, send) = api
            .expect(Method::PATCH, &format!("{path}/status"), &[])
            .await;
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let body = json_body(req).await;
        assert_eq!(body["metadata"]["resourceVersion"], "5151");
        let ancestors = body["status"]["ancestors"].as_array().unwrap();
        assert_eq!(ancestors.len(), 3, "{body}");
        assert_eq!(
            ancestors[0]["controllerName"],
            "example.com/edge-controller"
        );
        let ours = |i: usize, name: &str, status: &str, reason: &str| {
            let a = &ancestors[i];
            assert_eq!(
                a["controllerName"],
                quicmesh_controller::status::CONTROLLER_NAME
            );
            assert_eq!(a["ancestorRef"]["kind"], "Service");
            assert_eq!(a["ancestorRef"]["name"], name);
            assert_eq!(a["conditions"][0]["type"], "Accepted");
            assert_eq!(a["conditions"][0]["status"], status, "{a}");
            assert_eq!(a["conditions"][0]["reason"], reason, "{a}");
            assert_eq!(a["conditions"][0]["observedGeneration"], 3);
        };
        ours(1, "web", "True", "Accepted");
        ours(2, "api", "False", "TargetNotFound");
        send.send_response(respond(StatusCode::OK, "trafficpolicy-with-status.json"));
        // Unchanged: not written again within a settle period.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            futures::FutureExt::now_or_never(api.handle.next_request()).is_none(),
            "an unchanged policy is not read again"
        );
    })
    .await;
}

/// Listed: a valid federation and one that lacks what its profile needs
/// (kept, invalid, saying why); watched: one deleted goes. Cluster-scoped:
/// no namespace in paths or keys.
#[tokio::test]
async fn federations_are_listed_watched_and_checked() {
    bounded(async {
        let (client, mut api) = mock_client();
        let store = Store::new("cluster.local");
        let task = tokio::spawn(watch_federations(client, store.clone()));
        api.answer(
            Method::GET,
            FEDERATIONS,
            &[],
            StatusCode::OK,
            "trustdomainfederations-list.json",
        )
        .await;
        let watch = api.watch(FEDERATIONS, "50220").await;
        let names = |store: &Store| {
            store.with_index(|ix| {
                ix.federations()
                    .map(|f| {
                        (
                            f.name.clone(),
                            f.generation,
                            f.spec.clone().map(|s| s.trust_domain),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        let fs = names(&store);
        assert_eq!(fs[0], ("partner".into(), 2, Ok("partner.example".into())));
        assert_eq!(fs[1].0, "staging");
        assert!(
            fs[1]
                .2
                .as_ref()
                .unwrap_err()
                .contains("spec.trustDomainBundle: required"),
            "{fs:?}"
        );
        watch.send_response(respond(
            StatusCode::OK,
            "trustdomainfederations-watch.jsonl",
        ));
        let _held = api.watch(FEDERATIONS, "50231").await;
        assert_eq!(names(&store).len(), 1);
        task.abort();
    })
    .await;
}

/// A federation's conditions are server-side applied on its (cluster-scoped)
/// status subresource.
#[tokio::test]
async fn a_federations_conditions_are_written_to_its_status() {
    use quicmesh_controller::status::kube::{run, StatusMetrics};
    let (client, mut api) = mock_client();
    let store = Store::new("cluster.local");
    let list: serde_json::Value =
        serde_json::from_slice(&fixture("trustdomainfederations-list.json")).unwrap();
    let object: kube::api::DynamicObject =
        serde_json::from_value(list["items"][0].clone()).unwrap();
    store.apply(|ix| {
        ix.upsert(Object::TrustDomainFederation(
            quicmesh_controller::sources::kube::federation(&object).unwrap(),
        ))
    });
    tokio::spawn(run(client, store.clone(), StatusMetrics::default()));
    bounded(async {
        let path = "/apis/quicmesh.io/v1alpha1/trustdomainfederations/partner/status";
        let (req, send) = api
            .expect(Method::PATCH, path, &["fieldManager=quicmesh-controller"])
            .await;
        let body = json_body(req).await;
        assert!(body["metadata"].get("namespace").is_none(), "{body}");
        let conds = body["status"]["conditions"].as_array().unwrap();
        let kinds: Vec<_> = conds
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Accepted", "True"),
                ("BundleAvailable", "False"),
                ("Fetched", "False")
            ]
        );
        assert_eq!(conds[0]["observedGeneration"], 2);
        send.send_response(respond_json(StatusCode::OK, &body));
    })
    .await;
}
