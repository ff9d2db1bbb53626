//! A stand-in Kubernetes API server for the CLI's tests, on loopback over
//! plain HTTP: it answers pod lists from a recorded `GET /api/v1/pods`
//! (filtered by namespace and label selector as the API server does),
//! refuses a request without the kubeconfig's bearer token (401, a
//! `Status` as the API server writes it), and serves
//! `pods/NAME/portforward` as the API server does (and any other object
//! it is given, by path: `/version`, CRDs, Deployments...): a WebSocket upgrade with
//! subprotocol `v4.channel.k8s.io`, two channels per port (data, error),
//! each opened by a frame carrying the port. Each forward is connected to a
//! real process: `127.0.0.1:PORT` inside the network namespace the test
//! maps the pod to. Every request is recorded (method, path and query).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use quicmesh_core::netns::NetnsWorker;
use quicmesh_lab::Lab;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const TOKEN: &str = "quicmesh-cli-test-token";
const PROTOCOL: &str = "v4.channel.k8s.io";

pub struct FakeApi {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    /// The recorded pod list.
    pods: Value,
    /// Other recorded objects, by path.
    objects: HashMap<String, Value>,
    /// (namespace, pod) → the network namespace its process runs in.
    netns: HashMap<(String, String), String>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    /// Serves `pods` (a recorded PodList) and `objects` (by path),
    /// forwarding each pod named in `netns` to its network namespace.
    pub async fn start(
        pods: Value,
        objects: HashMap<String, Value>,
        netns: HashMap<(String, String), String>,
    ) -> Result<FakeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            pods,
            objects,
            netns,
            requests: requests.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(FakeApi {
            addr,
            requests,
            task,
        })
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// A kubeconfig for this server: context `lab` (the right token),
    /// `wrong-token`, and `gone` (an API server that does not listen).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\n\
             clusters:\n\
             - {{name: lab, cluster: {{server: \"http://{a}\"}}}}\n\
             - {{name: gone, cluster: {{server: \"http://127.0.0.1:1\"}}}}\n\
             users:\n\
             - {{name: admin, user: {{token: {TOKEN}}}}}\n\
             - {{name: stranger, user: {{token: not-the-token}}}}\n\
             contexts:\n\
             - {{name: lab, context: {{cluster: lab, user: admin}}}}\n\
             - {{name: wrong-token, context: {{cluster: lab, user: stranger}}}}\n\
             - {{name: gone, context: {{cluster: gone, user: admin}}}}\n",
            a = self.addr
        )
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `Status` as the API server answers a failed call.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Whether `labels` match the equality/existence `selector` (`a=b,c`).
fn selects(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|t| match t.split_once('=') {
            Some((k, v)) => labels[k] == v,
            None => !labels[t].is_null(),
        })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            v.replace("%2C", ",")
                .replace("%3D", "=")
                .replace("%2F", "/")
        })
    })
}

fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {path}?{query}", req.method()));
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", "pods"] => list(state, None, &query),
        ["api", "v1", "namespaces", ns, "pods"] => list(state, Some(ns), &query),
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            forward(state, ns, name, &query, req)
        }
        _ if state.objects.contains_key(&path) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(state.objects[&path].to_string())))
            .unwrap(),
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn list(state: &State, ns: Option<&str>, query: &str) -> Response<Full<Bytes>> {
    let selector = query_param(query, "labelSelector").unwrap_or_default();
    let mut out = state.pods.clone();
    let items: Vec<Value> = state.pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| ns.is_none_or(|ns| p["metadata"]["namespace"] == ns))
        .filter(|p| selects(&selector, &p["metadata"]["labels"]))
        .cloned()
        .collect();
    out["items"] = json!(items);
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap()
}

fn forward(
    state: &State,
    ns: &str,
    name: &str,
    query: &str,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(netns) = state
        .netns
        .get(&(ns.to_string(), name.to_string()))
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
        );
    };
    let port: Option<u16> = query_param(query, "ports").and_then(|p| p.parse().ok());
    let key = req.headers().get("sec-websocket-key").cloned();
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == PROTOCOL));
    let (Some(port), Some(key), true) = (port, key, offered) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "one port, a WebSocket key and the v4 channel protocol are needed",
        );
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let _ = pump(ws, &netns, port).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", PROTOCOL)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One forwarded connection: channel 0 carries the bytes, channel 1 an
/// error (as the kubelet writes when nothing listens).
async fn pump<S>(mut ws: WebSocketStream<S>, netns: &str, port: u16) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let p = port.to_le_bytes();
    ws.send(Message::binary(vec![0, p[0], p[1]])).await?;
    ws.send(Message::binary(vec![1, p[0], p[1]])).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let worker = NetnsWorker::start(&Lab::netns_path(netns))?;
    let tcp = match worker
        .run(move || std::net::TcpStream::connect(addr))
        .await?
    {
        Ok(tcp) => tcp,
        Err(e) => {
            let mut msg = vec![1u8];
            msg.extend(format!("error forwarding port {port} to pod: {e}").into_bytes());
            ws.send(Message::binary(msg)).await?;
            ws.close(None).await?;
            return Ok(());
        }
    };
    tcp.set_nonblocking(true)?;
    let mut tcp = tokio::net::TcpStream::from_std(tcp).context("the forwarded socket")?;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        tokio::select! {
            n = tcp.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    ws.close(None).await?;
                    return Ok(());
                }
                let mut msg = Vec::with_capacity(n + 1);
                msg.push(0);
                msg.extend_from_slice(&buf[..n]);
                ws.send(Message::binary(msg)).await?;
            }
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&0) => tcp.write_all(&b[1..]).await?,
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
}
