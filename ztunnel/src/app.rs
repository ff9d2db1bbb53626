//! Wiring: shared state, the enrolled pods and their tasks, the admin and
//! metrics endpoints, and the enrollment server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, TrustBundles};
use quicmesh_core::netns::NetnsWorker;
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config::{self as tconfig, TunnelSettings};
use quicmesh_core::tunnel::TUNNEL_PORT;
use quicmesh_proto::enrollment::Pod;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Args, WorkloadFile};
use crate::identity::{CertManager, SvidSource};
use crate::inpod::enroll::PodRegistry;
use crate::inpod::rules::{self, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
use crate::metrics::Metrics;
use crate::proxy::inbound::{plaintext, PodInbound};
use crate::proxy::outbound::outbound;
use crate::proxy::socket::listen;
use crate::state::State;

/// What every pod's data path shares.
pub struct Shared {
    pub node: String,
    state: RwLock<Arc<State>>,
    pub certs: CertManager,
    pub metrics: Arc<Metrics>,
    pub settings: TunnelSettings,
    pub drain_deadline: Duration,
}

impl Shared {
    pub fn state(&self) -> Arc<State> {
        self.state.read().expect("not poisoned").clone()
    }
}

/// One enrolled pod, as its data path sees it.
pub struct PodCtx {
    pub pod: Pod,
    pub ips: Vec<IpAddr>,
    pub identity: SpiffeId,
    pub worker: NetnsWorker,
    pub pool: Arc<Pool>,
    pub shared: Arc<Shared>,
}

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
        let svid = s.certs.svid(&identity).map_err(|e| e.to_string())?;

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
        let endpoint = tconfig::endpoint(udp, Some(server_cfg)).map_err(|e| e.to_string())?;
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
        renew_loop(ctx, endpoint.clone(), &tracker, &drain);
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
) {
    let drain = drain.clone();
    tracker.spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match ctx.shared.certs.svid(&ctx.identity) {
                Ok(svid) => svid.refresh_at().duration_since(SystemTime::now()).unwrap_or_default(),
                Err(_) => backoff,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(100))) => {}
                _ = drain.cancelled() => return,
            }
            let s = &ctx.shared;
            let renewed = s.certs.svid(&ctx.identity).map_err(|e| e.to_string()).and_then(|svid| {
                tconfig::server_config(&svid, s.certs.bundles(), Box::new(|_| true), &s.metrics.tunnel, &s.settings)
                    .map_err(|e| e.to_string())
            });
            match renewed {
                Ok(cfg) => {
                    endpoint.set_server_config(Some(cfg));
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(identity = %ctx.identity, error = %e, retry_in = ?backoff, "SVID renewal failed");
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    });
}

/// Builds the identity source from the flags.
fn cert_manager(args: &Args, trust_domain: &str) -> anyhow::Result<CertManager> {
    let mut bundles = TrustBundles::new();
    let source = match (&args.dev_ca_dir, &args.svid_dir) {
        (Some(dir), _) => {
            tracing::warn!(
                dir = %dir.display(),
                "DEVELOPMENT MODE: ztunnel mints workload SVIDs from a local CA; never use this in production"
            );
            let ca = Ca::load_or_generate(trust_domain, dir).context("development CA")?;
            bundles.insert(trust_domain, &[ca.cert_der().clone()])?;
            SvidSource::DevCa {
                ca: Box::new(ca),
                lifetime: args.svid_lifetime,
            }
        }
        (None, Some(dir)) => {
            let bundle = args
                .trust_bundle
                .as_ref()
                .context("--svid-dir needs --trust-bundle")?;
            let pem = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
            bundles.insert_pem(trust_domain, &pem)?;
            SvidSource::Files { dir: dir.clone() }
        }
        (None, None) => anyhow::bail!("no identity source: pass --svid-dir and --trust-bundle (or, for development only, --dev-ca-dir)"),
    };
    Ok(CertManager::new(source, Arc::new(bundles)))
}

/// Runs ztunnel until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let file = WorkloadFile::load(&args.workloads)?;
    let certs = cert_manager(&args, &file.trust_domain)?;
    let settings = TunnelSettings {
        socket_buffer: args.udp_buffer,
        ..TunnelSettings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let shared = Arc::new(Shared {
        node: args.node.clone(),
        state: RwLock::new(Arc::new(State::from_file(&file))),
        certs,
        metrics: metrics.clone(),
        settings,
        drain_deadline: args.drain_deadline,
    });
    let pods = Pods::new(shared.clone());
    let shutdown = CancellationToken::new();

    // Metrics and health.
    let registry = Arc::new(registry);
    let m = metrics.clone();
    let reg = registry.clone();
    let metrics_l = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_addr))?;
    let rt = tokio::runtime::Handle::current();
    tokio::spawn(quicmesh_core::metrics::serve_http(
        metrics_l,
        vec![
            (
                "/metrics",
                Arc::new(move || {
                    m.alive_tasks.set(rt.metrics().num_alive_tasks() as i64);
                    quicmesh_core::metrics::encode(&reg)
                }),
            ),
            ("/healthz/ready", Arc::new(|| "ready\n".to_string())),
        ],
        shutdown.clone(),
    ));

    // Admin: config dump.
    let admin_l = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", args.admin_addr))?;
    let dump = Arc::new(Mutex::new(serde_json::Value::Null));
    let d2 = dump.clone();
    tokio::spawn(quicmesh_core::metrics::serve_http(
        admin_l,
        vec![(
            "/config_dump",
            Arc::new(move || {
                serde_json::to_string_pretty(&*d2.lock().expect("not poisoned")).expect("json")
            }),
        )],
        shutdown.clone(),
    ));
    refresh_dump(&args, &shared, &pods, &dump).await;

    // Workload file: reloaded when it changes; a bad edit keeps the last good one.
    let (a2, s2, p2, d3, stop) = (
        args.clone(),
        shared.clone(),
        pods.clone(),
        dump.clone(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        let mut seen = mtime(&a2.workloads);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            let now = mtime(&a2.workloads);
            if now == seen {
                continue;
            }
            seen = now;
            match WorkloadFile::load(&a2.workloads) {
                Ok(f) => {
                    *s2.state.write().expect("not poisoned") = Arc::new(State::from_file(&f));
                    tracing::info!(workloads = f.workloads.len(), "workload file reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "workload file rejected; keeping the previous one")
                }
            }
            refresh_dump(&a2, &s2, &p2, &d3).await;
        }
    });

    let enroll = {
        let (path, pods, stop) = (args.enroll_socket.clone(), pods.clone(), shutdown.clone());
        tokio::spawn(async move { crate::inpod::enroll::serve(&path, pods, stop).await })
    };
    // Keep the dump current as pods come and go.
    let (a4, s4, p4, d4, stop) = (
        args.clone(),
        shared.clone(),
        pods.clone(),
        dump.clone(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => refresh_dump(&a4, &s4, &p4, &d4).await,
                _ = stop.cancelled() => return,
            }
        }
    });
    tracing::info!(node = %args.node, metrics = %args.metrics_addr, "ztunnel started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = enroll => { r??; }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    pods.shutdown().await;
    Ok(())
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

async fn refresh_dump(args: &Args, shared: &Shared, pods: &Pods, dump: &Mutex<serde_json::Value>) {
    let v = serde_json::json!({
        "node": shared.node,
        "args": args,
        "tunnel": shared.settings,
        "state": &*shared.state(),
        "enrolledPods": pods.dump().await,
    });
    *dump.lock().expect("not poisoned") = v;
}
