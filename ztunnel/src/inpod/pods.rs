//! The enrolled pods of this node: for each, the data path's sockets and
//! tasks inside its network namespace, its redirection rules, and its
//! certificate renewal; started on enrollment, drained on removal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::SpiffeId;
use quicmesh_core::netns::NetnsWorker;
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config as tconfig;
use quicmesh_core::tunnel::TUNNEL_PORT;
use quicmesh_proto::enrollment::Pod;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{PodCtx, Shared};
use crate::inpod::enroll::PodRegistry;
use crate::inpod::rules::{self, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
use crate::proxy::inbound::{plaintext, PodInbound};
use crate::proxy::outbound::outbound;
use crate::proxy::socket::listen;

struct Running {
    pod: Pod,
    endpoint: quinn::Endpoint,
    worker: NetnsWorker,
    /// Stops accepting (listeners close, tunnel server refuses new connections).
    drain: CancellationToken,
    /// Cuts connections still open after the drain deadline.
    kill: CancellationToken,
    tracker: TaskTracker,
}

/// The enrolled pods of this node.
pub struct Pods {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

#[derive(Debug, serde::Serialize)]
struct PodDump<'a> {
    uid: &'a str,
    namespace: &'a str,
    name: &'a str,
    identity: String,
    ips: &'a [String],
    netns: &'a str,
}

impl Pods {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Pods {
            shared,
            running: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn start(&self, pod: Pod) -> Result<Running, String> {
        let s = &self.shared;
        let state = s.state();
        let identity =
            SpiffeId::workload(&state.trust_domain, &pod.namespace, &pod.service_account)
                .map_err(|e| format!("namespace/service account do not form a SPIFFE ID: {e}"))?;
        let ips = pod
            .ips
            .iter()
            .map(|ip| {
                ip.parse::<IpAddr>()
                    .map_err(|_| format!("ip {ip:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() {
            return Err("pod has no IP".into());
        }
        let worker =
            NetnsWorker::start(std::path::Path::new(&pod.netns_path)).map_err(|e| e.to_string())?;
        let svid = self.first_svid(&identity).await?;

        // Listeners first, then the rules that send traffic to them.
        let any = |port| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
        let out_l = listen(&worker, any(OUTBOUND_PORT))
            .await
            .map_err(|e| format!("listening on {OUTBOUND_PORT}: {e}"))?;
        let in_l = listen(&worker, any(INBOUND_PLAINTEXT_PORT))
            .await
            .map_err(|e| format!("listening on {INBOUND_PLAINTEXT_PORT}: {e}"))?;
        let settings = s.settings.clone();
        let udp = worker
            .run(move || tconfig::bind_udp(any(TUNNEL_PORT), &settings))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("binding udp/{TUNNEL_PORT}: {e}"))?;
        let server_cfg = tconfig::server_config(
            &svid,
            s.certs.bundles(),
            // L4 authorization policy is its own part; any identity proven
            // by a trusted bundle is accepted here.
            Box::new(|_| true),
            &s.metrics.tunnel,
            &s.settings,
        )
        .map_err(|e| e.to_string())?;
        let endpoint =
            tconfig::endpoint(udp, Some(server_cfg), &s.settings).map_err(|e| e.to_string())?;
        worker
            .run(rules::install)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;

        let pool = Pool::new(
            endpoint.clone(),
            s.certs.bundles(),
            s.settings.clone(),
            s.metrics.tunnel.clone(),
        );
        let ctx = Arc::new(PodCtx {
            pod: pod.clone(),
            ips,
            identity: identity.clone(),
            worker: worker.clone(),
            pool,
            shared: s.clone(),
        });
        let drain = CancellationToken::new();
        let kill = CancellationToken::new();
        let tracker = TaskTracker::new();
        let span = tracing::info_span!("pod", pod = %format!("{}/{}", pod.namespace, pod.name), identity = %identity);

        tracker.spawn(tracing::Instrument::instrument(
            quicmesh_core::tunnel::server::serve(
                endpoint.clone(),
                Arc::new(PodInbound(ctx.clone())),
                s.metrics.tunnel.clone(),
                s.settings.max_header_bytes,
                drain.clone(),
                s.drain_deadline,
            ),
            span.clone(),
        ));
        accept_loop(
            out_l,
            ctx.clone(),
            &tracker,
            &drain,
            &kill,
            span.clone(),
            outbound,
        );
        accept_loop(
            in_l,
            ctx.clone(),
            &tracker,
            &drain,
            &kill,
            span.clone(),
            plaintext,
        );
        renew_loop(ctx, endpoint.clone(), &tracker, &drain, svid);
        tracing::info!(parent: &span, ips = ?pod.ips, netns = %pod.netns_path, "pod enrolled");
        Ok(Running {
            pod,
            endpoint,
            worker,
            drain,
            kill,
            tracker,
        })
    }

    /// The pod's SVID, waiting up to 10 s: the CA may not have heard of a
    /// pod that was just scheduled.
    async fn first_svid(
        &self,
        id: &SpiffeId,
    ) -> Result<Arc<quicmesh_core::identity::Svid>, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.shared.certs.svid(id).await {
                Ok(s) => return Ok(s),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.to_string()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn stop(&self, r: Running) {
        let name = format!("{}/{}", r.pod.namespace, r.pod.name);
        r.drain.cancel();
        if let Err(e) = r
            .worker
            .run(rules::remove)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(pod = %name, error = %e, "removing redirection rules failed");
        }
        r.tracker.close();
        if tokio::time::timeout(self.shared.drain_deadline, r.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(pod = %name, remaining = r.tracker.len(), "drain deadline passed; cutting connections");
            r.kill.cancel();
            r.endpoint.close(0u32.into(), b"pod removed");
            let _ = tokio::time::timeout(Duration::from_secs(2), r.tracker.wait()).await;
        }
        r.endpoint.close(0u32.into(), b"pod removed");
        // The UDP socket closes once the closed connections have drained.
        let _ = tokio::time::timeout(Duration::from_secs(2), r.endpoint.wait_idle()).await;
        tracing::info!(pod = %name, "pod removed");
    }

    pub async fn dump(&self) -> serde_json::Value {
        let running = self.running.lock().await;
        let mut pods: Vec<_> = running
            .values()
            .map(|r| {
                serde_json::to_value(PodDump {
                    uid: &r.pod.uid,
                    namespace: &r.pod.namespace,
                    name: &r.pod.name,
                    identity: format!(
                        "spiffe://{}/ns/{}/sa/{}",
                        self.shared.state().trust_domain,
                        r.pod.namespace,
                        r.pod.service_account
                    ),
                    ips: &r.pod.ips,
                    netns: &r.pod.netns_path,
                })
                .expect("serializable")
            })
            .collect();
        pods.sort_by_key(|p| p["uid"].as_str().unwrap_or_default().to_string());
        serde_json::Value::Array(pods)
    }

    /// Drains every pod (ztunnel shutting down). Rules are left in place so
    /// the pods' traffic fails closed until ztunnel is back.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            r.drain.cancel();
            r.tracker.close();
            let _ = tokio::time::timeout(self.shared.drain_deadline, r.tracker.wait()).await;
            r.kill.cancel();
            r.endpoint.close(0u32.into(), b"ztunnel shutting down");
        }
    }

    fn count(&self, n: usize) {
        self.shared.metrics.enrolled_pods.set(n as i64);
    }
}

impl PodRegistry for Pods {
    async fn add(&self, pod: Pod) -> Result<(), String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.get(&pod.uid) {
            if r.pod == pod {
                return Ok(());
            }
            let old = running.remove(&pod.uid).expect("present");
            self.stop(old).await;
        }
        let uid = pod.uid.clone();
        if uid.is_empty() {
            self.shared.metrics.enrollment_failures.inc();
            return Err("pod has no uid".into());
        }
        match self.start(pod).await {
            Ok(r) => {
                running.insert(uid, r);
                self.count(running.len());
                Ok(())
            }
            Err(e) => {
                self.shared.metrics.enrollment_failures.inc();
                Err(e)
            }
        }
    }

    async fn remove(&self, uid: &str) -> Result<(), String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.remove(uid) {
            self.stop(r).await;
        }
        self.count(running.len());
        Ok(())
    }

    async fn snapshot(&self, pods: Vec<Pod>) -> Result<(), String> {
        let keep: std::collections::HashSet<_> = pods.iter().map(|p| p.uid.clone()).collect();
        let gone: Vec<String> = self
            .running
            .lock()
            .await
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid).await?;
        }
        let mut errors = Vec::new();
        for pod in pods {
            let uid = pod.uid.clone();
            if let Err(e) = self.add(pod).await {
                errors.push(format!("{uid}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    ctx: Arc<PodCtx>,
    tracker: &TaskTracker,
    drain: &CancellationToken,
    kill: &CancellationToken,
    span: tracing::Span,
    handle: F,
) where
    F: Fn(Arc<PodCtx>, tokio::net::TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (t, d, k) = (tracker.clone(), drain.clone(), kill.clone());
    tracker.spawn(tracing::Instrument::instrument(
        async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = d.cancelled() => return,
                };
                let conn = handle(ctx.clone(), tcp, peer);
                let k = k.clone();
                t.spawn(tracing::Instrument::in_current_span(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = k.cancelled() => {}
                    }
                }));
            }
        },
        span,
    ));
}

/// Replaces the pod's server certificate at half-life. Client connections
/// pick up the new SVID on their next handshake; live connections continue.
fn renew_loop(
    ctx: Arc<PodCtx>,
    endpoint: quinn::Endpoint,
    tracker: &TaskTracker,
    drain: &CancellationToken,
    mut current: Arc<quicmesh_core::identity::Svid>,
) {
    let drain = drain.clone();
    tracker.spawn(async move {
        loop {
            let wait = current
                .refresh_at()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
                _ = drain.cancelled() => return,
            }
            let s = &ctx.shared;
            // Failures are logged and backed off by the cert manager.
            let Ok(svid) = s.certs.svid(&ctx.identity).await else {
                continue;
            };
            if Arc::ptr_eq(&svid, &current) {
                continue;
            }
            match tconfig::server_config(
                &svid,
                s.certs.bundles(),
                Box::new(|_| true),
                &s.metrics.tunnel,
                &s.settings,
            ) {
                Ok(cfg) => {
                    endpoint.set_server_config(Some(cfg));
                    tracing::info!(identity = %ctx.identity, "tunnel server certificate rotated");
                    current = svid;
                }
                Err(e) => {
                    tracing::warn!(identity = %ctx.identity, error = %e, "rotated SVID unusable")
                }
            }
        }
    });
}
