//! The enrolled pods of this node: for each, the data path's sockets and
//! tasks inside its network namespace, its redirection rules, and its SVID
//! task ([`svid`](super::svid)); started on enrollment, drained on removal.
//!
//! Enrollment is all or nothing: listeners first, then the rules that send
//! traffic to them; if any step fails, nothing stays behind. It does not
//! depend on the CA: a pod whose SVID is not issued yet is enrolled
//! identity-pending, and the answer says so after at most
//! [`IDENTITY_GRACE`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quicmesh_core::identity::SpiffeId;
use quicmesh_core::netns::{Netns, NetnsWorker};
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config as tconfig;
use quicmesh_core::tunnel::TUNNEL_PORT;
use quicmesh_proto::enrollment::Pod;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::inpod::rules;
use crate::inpod::svid::{self, Phase};
use crate::node::{PodCtx, Shared};
use crate::ports::{INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
use crate::proxy::inbound::{plaintext, PodInbound};
use crate::proxy::outbound::outbound;
use crate::proxy::socket::listen;
use quicmesh_core::enrollment::{Enrolled, Grace, Mark, PodRegistry, Refusal};

/// How long an enrollment answer waits for a new pod's SVID before
/// reporting it identity-pending. Long enough for a CA that answers at
/// once; short enough that a node agent enrolling many pods while the CA is
/// away is not held up (a snapshot waits this once for all its pods).
pub const IDENTITY_GRACE: Duration = Duration::from_secs(1);

/// What an enrollment must carry before ztunnel touches the pod's network
/// namespace: a uid, a namespace and service account that form a SPIFFE ID
/// in `trust_domain`, and at least one IP address. Pure (fuzzed).
pub fn check_pod(trust_domain: &str, pod: &Pod) -> Result<(SpiffeId, Vec<IpAddr>), String> {
    if pod.uid.is_empty() {
        return Err("pod has no uid".into());
    }
    let identity = SpiffeId::workload(trust_domain, &pod.namespace, &pod.service_account)
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
    Ok((identity, ips))
}

struct Running {
    pod: Pod,
    /// Its network namespace, as the node agent handed it over: held while
    /// the pod is enrolled, so it names the same namespace throughout.
    netns: Netns,
    /// When it was last added (the registry's order of adds; snapshots
    /// sweep what was not added since they began).
    added: u64,
    /// Where its SVID stands.
    svid: watch::Receiver<Phase>,
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
    /// The order of adds and snapshot marks.
    seq: AtomicU64,
}

#[derive(Debug, serde::Serialize)]
struct PodDump<'a> {
    uid: &'a str,
    namespace: &'a str,
    name: &'a str,
    identity: String,
    /// `ready`, or `pending` while the CA has not issued the SVID.
    svid: &'static str,
    /// Why the SVID is still pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    svid_error: Option<String>,
    ips: &'a [String],
    /// `net:[<inode>]`, as `/proc/<pid>/ns/net` shows it.
    netns: String,
}

impl Pods {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Pods {
            shared,
            running: tokio::sync::Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    async fn start(&self, pod: Pod, netns: Netns) -> Result<Running, String> {
        let s = &self.shared;
        let state = s.state();
        let (identity, ips) = check_pod(&state.trust_domain, &pod)?;
        let worker = NetnsWorker::enter(&netns, &pod.name).map_err(|e| e.to_string())?;

        let Sockets {
            outbound: out_l,
            plaintext: in_l,
            tunnel: endpoint,
        } = match capture(&worker, s).await {
            Ok(x) => x,
            Err(e) => {
                // Nothing stays behind: no rules (a previous ztunnel's, after
                // a restart) capturing traffic into listeners that are not there.
                if let Ok(Err(re)) = worker.run(rules::remove).await {
                    tracing::warn!(error = %re, "removing redirection rules after a failed enrollment failed");
                }
                return Err(e);
            }
        };

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
                s.server.clone(),
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
        let svid = svid::spawn(ctx, endpoint.clone(), &tracker, &drain, span.clone());
        tracing::info!(parent: &span, ips = ?pod.ips, netns = %netns.id(), "pod enrolled");
        Ok(Running {
            pod,
            netns,
            added: 0,
            svid,
            endpoint,
            worker,
            drain,
            kill,
            tracker,
        })
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
                let phase = r.svid.borrow().clone();
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
                    svid: if phase.is_ready() { "ready" } else { "pending" },
                    svid_error: match phase {
                        Phase::Pending(e) => Some(e),
                        Phase::Ready => None,
                    },
                    ips: &r.pod.ips,
                    netns: r.netns.id().to_string(),
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

impl Pods {
    /// Enrolls `pod` in `netns` (idempotent: the same pod in the same
    /// namespace again changes nothing; a changed one is re-enrolled).
    /// Returns its SVID phase and whether it was already enrolled as it is.
    async fn enroll(
        &self,
        pod: Pod,
        netns: Netns,
    ) -> Result<(watch::Receiver<Phase>, bool), String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.get_mut(&pod.uid) {
            if r.pod == pod && r.netns.id() == netns.id() {
                // The new descriptor names the namespace already held; it
                // is closed here.
                r.added = self.seq.fetch_add(1, Ordering::SeqCst);
                return Ok((r.svid.clone(), true));
            }
            let old = running.remove(&pod.uid).expect("present");
            self.stop(old).await;
            self.count(running.len());
        }
        let uid = pod.uid.clone();
        match self.start(pod, netns).await {
            Ok(mut r) => {
                let phase = r.svid.clone();
                r.added = self.seq.fetch_add(1, Ordering::SeqCst);
                running.insert(uid, r);
                self.count(running.len());
                Ok((phase, false))
            }
            Err(e) => {
                self.shared.metrics.enrollment_failures.inc();
                Err(e)
            }
        }
    }
}

impl PodRegistry for Pods {
    async fn add(&self, pod: Pod, netns: Netns, grace: Grace) -> Result<Enrolled, String> {
        let uid = pod.uid.clone();
        let (mut phase, known) = self.enroll(pod, netns).await?;
        // A new pod gets the grace; asking about a known one is answered at
        // once, and so is an add within a snapshot (its end waits once).
        let wait = !known && grace == Grace::Wait;
        let until =
            tokio::time::Instant::now() + if wait { IDENTITY_GRACE } else { Duration::ZERO };
        let pending = svid::pending_at(&mut phase, until).await;
        Ok(Enrolled {
            pending: if pending { vec![uid] } else { vec![] },
        })
    }

    async fn remove(&self, uid: &str) -> Result<(), String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.remove(uid) {
            self.stop(r).await;
        }
        self.count(running.len());
        Ok(())
    }

    fn mark(&self) -> Mark {
        Mark(self.seq.fetch_add(1, Ordering::SeqCst))
    }

    async fn sweep(&self, mark: Mark, uids: Vec<String>) -> Result<Enrolled, String> {
        {
            // Under one lock, so a pod added meanwhile is not taken for stale.
            let mut running = self.running.lock().await;
            let gone: Vec<String> = running
                .iter()
                .filter(|(_, r)| r.added < mark.0)
                .map(|(k, _)| k.clone())
                .collect();
            if !gone.is_empty() {
                tracing::info!(pods = ?gone, "removing pods the snapshot did not name");
            }
            for uid in gone {
                if let Some(r) = running.remove(&uid) {
                    self.stop(r).await;
                }
            }
            self.count(running.len());
        }
        let phases: Vec<_> = {
            let running = self.running.lock().await;
            uids.into_iter()
                .filter_map(|uid| Some((running.get(&uid)?.svid.clone(), uid)))
                .collect()
        };
        // One grace for all the snapshot's pods.
        let until = tokio::time::Instant::now() + IDENTITY_GRACE;
        let mut pending = Vec::new();
        for (mut phase, uid) in phases {
            if svid::pending_at(&mut phase, until).await {
                pending.push(uid);
            }
        }
        Ok(Enrolled { pending })
    }

    fn refused(&self, reason: Refusal) {
        self.shared.metrics.enrollment_refused(reason.as_str());
    }
}

/// A pod's listeners inside its network namespace.
struct Sockets {
    /// 15001/tcp
    outbound: tokio::net::TcpListener,
    /// 15006/tcp
    plaintext: tokio::net::TcpListener,
    /// 15008/udp
    tunnel: quinn::Endpoint,
}

/// Opens the pod's listeners, then installs the rules that send its traffic
/// to them.
async fn capture(worker: &NetnsWorker, s: &Shared) -> Result<Sockets, String> {
    let any = |port| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
    let out_l = listen(worker, any(OUTBOUND_PORT))
        .await
        .map_err(|e| format!("listening on {OUTBOUND_PORT}: {e}"))?;
    let in_l = listen(worker, any(INBOUND_PLAINTEXT_PORT))
        .await
        .map_err(|e| format!("listening on {INBOUND_PLAINTEXT_PORT}: {e}"))?;
    let settings = s.settings.clone();
    let udp = worker
        .run(move || tconfig::bind_udp(any(TUNNEL_PORT), &settings))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("binding udp/{TUNNEL_PORT}: {e}"))?;
    // No server certificate until the SVID task installs one: until then
    // handshakes to the pod are refused.
    let endpoint = tconfig::endpoint(udp, None, &s.settings).map_err(|e| e.to_string())?;
    worker
        .run(rules::install)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Sockets {
        outbound: out_l,
        plaintext: in_l,
        tunnel: endpoint,
    })
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

#[cfg(test)]
mod tests;
