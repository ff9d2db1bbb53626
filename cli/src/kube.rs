//! A mesh in Kubernetes, found through a kubeconfig: its controller,
//! ztunnel and waypoint pods listed from the API server by the labels the
//! chart and the controller put on them, and their admin pages (loopback
//! port 15000 in each pod) read through the API server's port-forward, as
//! `kubectl port-forward` does. What the CLI needs from the cluster: `get`
//! and `list` on pods, `create` on `pods/portforward` (docs/cli.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The chart's names (helm/quicmesh/templates/_helpers.tpl) and the
/// controller's waypoint pod labels (controller/src/waypoint.rs).
const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=quicmesh-controller";
const ZTUNNEL_SELECTOR: &str = "app.kubernetes.io/name=ztunnel";
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Waypoint pods: a Gateway's, never captured (other implementations'
/// Gateway pods carry the first label too; the container name tells).
const WAYPOINT_SELECTOR: &str =
    "gateway.networking.k8s.io/gateway-name,quicmesh.io/dataplane-mode=none";
const WAYPOINT_CONTAINER: &str = "waypoint";

/// Each API request, and each admin page read through a port-forward.
const API_TIMEOUT: Duration = Duration::from_secs(15);
/// An admin page larger than this is refused (a whole mesh's config dump
/// is far smaller).
const MAX_PAGE: u64 = 64 << 20;
/// A response head larger than this is not an admin page.
const MAX_HEAD: usize = 16 << 10;

#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// The kubeconfig of a Kubernetes cluster running quicmesh (default:
    /// a running local mesh; without one, $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace quicmesh is installed in (`helm install -n ...`).
    #[arg(
        long,
        global = true,
        default_value = "quicmesh-system",
        value_name = "NS"
    )]
    pub mesh_namespace: String,
}

impl KubeArgs {
    /// Whether the user named a Kubernetes cluster.
    pub fn named(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }
}

/// Whether a kubeconfig would be read without flags: a file `KUBECONFIG`
/// lists, or `~/.kube/config`.
pub fn default_kubeconfig_exists() -> bool {
    match std::env::var_os("KUBECONFIG") {
        Some(list) => std::env::split_paths(&list).any(|p| p.is_file()),
        None => std::env::var_os("HOME")
            .is_some_and(|h| PathBuf::from(h).join(".kube/config").is_file()),
    }
}

pub struct Kube {
    client: Client,
    namespace: String,
    /// The API server, for messages.
    url: String,
}

/// The API server's answer to a failed call, as one line.
fn api_error(url: &str, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow!("the Kubernetes API at {url} refused: {}", s.message),
        other => {
            // The causes too: "client error (Connect)" alone says little.
            let mut why = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(s) = source {
                let text = s.to_string();
                if !why.contains(&text) {
                    why = format!("{why}: {text}");
                }
                source = s.source();
            }
            anyhow!("cannot reach the Kubernetes API at {url}: {why} (is the kubeconfig's context the cluster you mean? --context picks another)")
        }
    }
}

/// `fut`, or an error after [`API_TIMEOUT`].
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(API_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("{what}: no answer within {}s", API_TIMEOUT.as_secs()))?
}

impl Kube {
    pub async fn connect(args: &KubeArgs) -> Result<Kube> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let mut config = match &args.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .context("the kubeconfig names no usable cluster (kubectl config get-contexts lists its contexts)")?;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(API_TIMEOUT);
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config).context("a client for the kubeconfig's cluster")?;
        Ok(Kube {
            client,
            namespace: args.mesh_namespace.clone(),
            url,
        })
    }

    /// The API server's address, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The namespace quicmesh is installed in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// GET `path` of the API server as JSON; None when it is not found.
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .context("an API request")?;
        bounded(&format!("GET {path}"), async {
            match self.client.request::<Value>(req).await {
                Ok(v) => Ok(Some(v)),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(e) => Err(api_error(&self.url, e)),
            }
        })
        .await
    }

    async fn list(&self, api: Api<Pod>, selector: &str) -> Result<Vec<Pod>> {
        let params = ListParams::default().labels(selector);
        let list = bounded("listing pods", async {
            api.list(&params).await.map_err(|e| api_error(&self.url, e))
        })
        .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect())
    }

    /// The mesh as the inspect commands see a cluster: its controllers,
    /// nodes (each node's ztunnel pod) and waypoint pods, each with the
    /// pod to read (`pod`: namespace and name).
    pub async fn cluster(&self) -> Result<Value> {
        let ns = &self.namespace;
        let here = Api::<Pod>::namespaced(self.client.clone(), ns);
        let controllers = self.list(here.clone(), CONTROLLER_SELECTOR).await?;
        if controllers.is_empty() {
            bail!(
                "no running quicmesh controller in namespace {ns} of the cluster at {}: is quicmesh installed \
                 (`helm install quicmesh helm/quicmesh -n {ns} --create-namespace`), or in another namespace \
                 (--mesh-namespace)?",
                self.url
            );
        }
        let trust_domain = controllers
            .iter()
            .flat_map(|p| p.spec.iter().flat_map(|s| &s.containers))
            .flat_map(|c| c.args.iter().flatten())
            .find_map(|a| a.strip_prefix("--trust-domain="))
            .unwrap_or("cluster.local")
            .to_string();
        let mut nodes: Vec<Value> = self
            .list(here, ZTUNNEL_SELECTOR)
            .await?
            .iter()
            .map(|p| {
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                json!({"name": node.unwrap_or_default(), "pod": pod_ref(p)})
            })
            .collect();
        nodes.sort_by_key(|n| n["name"].as_str().unwrap_or_default().to_string());
        let everywhere = Api::<Pod>::all(self.client.clone());
        let pods: Vec<Value> = self
            .list(everywhere, WAYPOINT_SELECTOR)
            .await?
            .iter()
            .filter(|p| {
                p.spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .any(|c| c.name == WAYPOINT_CONTAINER)
            })
            .map(|p| {
                let r = pod_ref(p);
                let gateway = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(GATEWAY_NAME_LABEL))
                    .cloned()
                    .unwrap_or_default();
                let sa = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                json!({"namespace": r["namespace"], "name": r["name"], "waypoint": true,
                    "gateway": format!("{}/{gateway}", r["namespace"].as_str().unwrap_or_default()),
                    "identity": format!("spiffe://{trust_domain}/ns/{}/sa/{sa}", r["namespace"].as_str().unwrap_or_default()),
                    "pod": r})
            })
            .collect();
        let controllers: Vec<Value> = controllers
            .iter()
            .map(|p| {
                let r = pod_ref(p);
                json!({"name": r["name"], "pod": r})
            })
            .collect();
        Ok(json!({"kubernetes": self.url, "trust_domain": trust_domain,
            "controllers": controllers, "nodes": nodes, "pods": pods}))
    }

    /// GET `path` from `port` on the pod's loopback (`pod`: namespace and
    /// name), through a port-forward; the body of a 200.
    pub async fn get(&self, pod: &Value, port: u16, path: &str) -> Result<String> {
        let (ns, name) = (
            pod["namespace"].as_str().unwrap_or_default(),
            pod["name"].as_str().unwrap_or_default(),
        );
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        bounded(&format!("reading {path} from pod {ns}/{name}"), async {
            let mut forward = api
                .portforward(name, &[port])
                .await
                .map_err(|e| api_error(&self.url, e))?;
            let stream = forward
                .take_stream(port)
                .context("the port-forward has no stream")?;
            let refused = forward
                .take_error(port)
                .context("the port-forward has no error channel")?;
            let page = tokio::select! {
                page = http_get(stream, path) => page,
                Some(why) = refused => Err(anyhow!("port {port} of pod {ns}/{name}: {why}")),
            };
            forward.abort();
            page.with_context(|| format!("reading {path} from pod {ns}/{name} port {port}"))
        })
        .await
    }
}

fn pod_ref(p: &Pod) -> Value {
    json!({"namespace": p.metadata.namespace, "name": p.metadata.name})
}

/// One HTTP/1.0 GET over `stream`: the body of a 200, read to its
/// `content-length` (the forward may stay open after it) or to the end,
/// at most [`MAX_PAGE`] bytes.
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
) -> Result<String> {
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    stream.flush().await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            bail!("the response head is over {MAX_HEAD} bytes");
        }
        if stream.read(&mut byte).await? == 0 {
            bail!("the connection closed before a response (nothing listens on the port?)");
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    let length: Option<u64> = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    if length.is_some_and(|l| l > MAX_PAGE) {
        bail!("the page is over {MAX_PAGE} bytes");
    }
    let mut body = Vec::new();
    let limited = (&mut stream).take(length.unwrap_or(MAX_PAGE));
    tokio::pin!(limited);
    limited.read_to_end(&mut body).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if code != "200" {
        bail!("answered {status}: {body:.200}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_page_is_read_to_its_length_and_errors_are_said() {
        let (mut server, client) = tokio::io::duplex(1 << 16);
        let serve = tokio::spawn(async move {
            let mut req = [0u8; 256];
            let n = server.read(&mut req).await.unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /status HTTP/1.0\r\n"));
            // More bytes than the length, and the stream left open.
            server
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA")
                .await
                .unwrap();
            server
        });
        assert_eq!(http_get(client, "/status").await.unwrap(), "hello");
        drop(serve.await.unwrap());

        let (mut server, client) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut req = [0u8; 256];
            let _ = server.read(&mut req).await;
            let _ = server
                .write_all(b"HTTP/1.1 404 Not Found\r\n\r\nno such page")
                .await;
        });
        let e = http_get(client, "/nope").await.unwrap_err().to_string();
        assert!(e.contains("404") && e.contains("no such page"), "{e}");

        let (server, client) = tokio::io::duplex(1 << 16);
        drop(server);
        let e = format!("{:#}", http_get(client, "/x").await.unwrap_err());
        assert!(!e.is_empty());

        let (mut server, client) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut req = [0u8; 256];
            let _ = server.read(&mut req).await;
            let _ = server
                .write_all(format!("HTTP/1.1 200 OK\r\n{}\r\n", "x: y\r\n".repeat(4000)).as_bytes())
                .await;
        });
        let e = http_get(client, "/big").await.unwrap_err().to_string();
        assert!(e.contains("head is over"), "{e}");
    }
}
