//! The config stream server. Each proxy, named by its certificate, gets a
//! full snapshot and then every delta; it ACKs or NACKs each update by
//! nonce. A NACK is logged with its reason and counted; the stream goes on.
//! A subscriber too slow to keep up with the deltas gets a fresh snapshot.
//!
//! A node's ztunnel gets every resource; a waypoint only its namespace's
//! Services, routes and workloads ([`Subscriber::sees`]), and removals only
//! of what it was sent.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use quicmesh_proto::config::config_stream_server::ConfigStream;
use quicmesh_proto::config::{Ack, Update};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::config::{resource, Resource};

use crate::ca::peer_identity;
use crate::model::{FetchReport, Object, ProxyReport};
use crate::store::Store;

/// The metric label: the subscriber's [`Subscriber::name`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    pub proxy: String,
}

/// Who follows the config stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscriber {
    /// A node's ztunnel (a node certificate).
    Node(String),
    /// A waypoint (its own workload certificate).
    Waypoint { namespace: String, name: String },
}

impl Subscriber {
    /// The subscriber a verified client identity stands for.
    pub fn from_identity(id: &SpiffeId, store: &Store) -> Result<Self, String> {
        if let Some(n) = id.node_name() {
            return Ok(Subscriber::Node(n.to_string()));
        }
        if id.trust_domain() != store.trust_domain() {
            return Err(format!(
                "{id} is not in trust domain {}",
                store.trust_domain()
            ));
        }
        let (ns, sa) = id
            .namespace_and_service_account()
            .map_err(|e| format!("{id}: {e}"))?;
        store
            .with_index(|ix| {
                crate::waypoint::all(ix).into_iter().find(|w| {
                    w.namespace == ns && w.service_account() == sa && crate::waypoint::usable(ix, w)
                })
            })
            .map(|w| Subscriber::Waypoint {
                namespace: w.namespace,
                name: w.name,
            })
            .ok_or_else(|| format!("{id} is neither a node's nor a waypoint's identity"))
    }

    /// `r` as this subscriber is sent it. `viaWaypoint` has one value at
    /// each kind of proxy (false at a ztunnel, true at a waypoint), so it is
    /// decided here: a source that requires the value this proxy does not
    /// have is sent as one that matches no address (it can never match),
    /// and one that requires the value it has is sent without the field.
    /// A proxy that predates the field then decides as a new one does.
    pub fn adapt(&self, mut r: Resource) -> Resource {
        let here = matches!(self, Subscriber::Waypoint { .. });
        if let Some(resource::Kind::Authorization(a)) = &mut r.kind {
            for source in a.rules.iter_mut().flat_map(|rule| rule.from.iter_mut()) {
                match source.via_waypoint.take() {
                    Some(v) if v != here => {
                        source
                            .not_ip_blocks
                            .extend(["0.0.0.0/0".into(), "::/0".into()]);
                    }
                    _ => {}
                }
            }
        }
        r
    }

    /// Its name on the status page and in metrics: the node name, or
    /// `waypoint/<namespace>/<name>`.
    pub fn name(&self) -> String {
        match self {
            Subscriber::Node(n) => n.clone(),
            Subscriber::Waypoint { namespace, name } => format!("waypoint/{namespace}/{name}"),
        }
    }

    /// Whether it is sent `r`. A waypoint decides its namespace's
    /// policies, and the mesh's (in `root`, the root namespace).
    pub fn sees(&self, r: &Resource, root: &str) -> bool {
        let Subscriber::Waypoint { namespace, .. } = self else {
            // JWT checks are a waypoint's: nodes are not sent them.
            return !matches!(&r.kind, Some(resource::Kind::Authentication(_)));
        };
        match &r.kind {
            Some(resource::Kind::Service(s)) => &s.namespace == namespace,
            // Its own routes, and consumer routes of other namespaces
            // whose parents are its Services.
            Some(resource::Kind::HttpRoute(h)) => {
                &h.namespace == namespace || h.parents.iter().any(|p| &p.namespace == namespace)
            }
            Some(resource::Kind::Workload(w)) => &w.namespace == namespace,
            // TrafficPolicies attach to Services of their own namespace.
            Some(resource::Kind::TrafficPolicy(t)) => &t.namespace == namespace,
            Some(resource::Kind::Authorization(a)) => {
                &a.namespace == namespace || a.namespace == root
            }
            Some(resource::Kind::Authentication(a)) => {
                &a.namespace == namespace || a.namespace == root
            }
            // Every proxy verifies peers.
            Some(resource::Kind::TrustBundle(_)) => true,
            None => false,
        }
    }
}

/// What one subscriber was sent, so that deltas carry only its part.
struct View {
    subscriber: Subscriber,
    /// The mesh's root namespace (its policies reach every workload).
    root: String,
    sent: std::collections::HashSet<String>,
}

impl View {
    /// A snapshot for it; what it holds becomes exactly that.
    fn snapshot(&mut self, resources: Vec<Resource>) -> Vec<Resource> {
        let mine: Vec<Resource> = resources
            .into_iter()
            .filter(|r| self.subscriber.sees(r, &self.root))
            .map(|r| self.subscriber.adapt(r))
            .collect();
        self.sent = mine.iter().map(|r| r.name.clone()).collect();
        mine
    }

    /// Its part of a delta (None: nothing of it changed).
    fn delta(&mut self, d: &crate::store::Delta) -> Option<(Vec<Resource>, Vec<String>)> {
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        for r in &d.upserts {
            if self.subscriber.sees(r, &self.root) {
                self.sent.insert(r.name.clone());
                upserts.push(self.subscriber.adapt(r.clone()));
            } else if self.sent.remove(&r.name) {
                removed.push(r.name.clone());
            }
        }
        for name in &d.removed {
            if self.sent.remove(name) {
                removed.push(name.clone());
            }
        }
        (!upserts.is_empty() || !removed.is_empty()).then_some((upserts, removed))
    }
}

#[derive(Default)]
pub struct PushMetrics {
    pub updates_sent: Family<ProxyLabels, Counter>,
    pub nacks: Family<ProxyLabels, Counter>,
    pub subscribers: Gauge,
    /// Subscriptions refused (no or wrong certificate).
    pub refused: Counter,
    /// Proxy reports refused (too many, too large, or from a node).
    pub refused_reports: Counter,
    /// From an update sent to its ACK or NACK, by kind of proxy.
    pub push_durations: Family<KindLabels, quicmesh_core::metrics::Seconds>,
    /// Updates sent and not yet answered, all proxies together.
    pub unanswered: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `ztunnel` or `waypoint`.
    pub kind: &'static str,
}

/// Updates a stream remembers the sending time of, awaiting their
/// answers (a proxy answers each at once; older ones are forgotten).
const MAX_UNANSWERED: usize = 64;

/// The updates sent on one stream and not yet answered, for the push
/// duration and the unanswered gauge (given back when the stream ends).
struct InFlight<'a> {
    metrics: &'a PushMetrics,
    kind: KindLabels,
    sent: std::collections::VecDeque<(String, std::time::Instant)>,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a PushMetrics, subscriber: &Subscriber) -> Self {
        let kind = match subscriber {
            Subscriber::Node(_) => "ztunnel",
            Subscriber::Waypoint { .. } => "waypoint",
        };
        InFlight {
            metrics,
            kind: KindLabels { kind },
            sent: Default::default(),
        }
    }

    fn sent(&mut self, nonce: &str) {
        if self.sent.len() == MAX_UNANSWERED {
            self.sent.pop_front();
            self.metrics.unanswered.dec();
        }
        self.sent
            .push_back((nonce.to_string(), std::time::Instant::now()));
        self.metrics.unanswered.inc();
    }

    fn answered(&mut self, nonce: &str) {
        if let Some(i) = self.sent.iter().position(|(n, _)| n == nonce) {
            let (_, at) = self.sent.remove(i).expect("found");
            self.metrics.unanswered.dec();
            self.metrics
                .push_durations
                .get_or_create(&self.kind)
                .observe(at.elapsed());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.unanswered.dec_by(self.sent.len() as i64);
    }
}

/// Numbers config streams, so that replicas of one waypoint report apart.
static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Reports a proxy may make at once (a waypoint's jwksUri count is far
/// smaller), and the bounds of each.
pub const MAX_REPORTS: usize = 256;
pub const MAX_REPORT_SUBJECT: usize = 2048;
/// Longer errors are cut to this (at a character boundary).
pub const MAX_REPORT_ERROR: usize = 512;

/// What `subscriber` reported on its stream number `stream`, checked:
/// None for an empty report, an error for one a waypoint never sends.
pub fn proxy_report(
    subscriber: &Subscriber,
    stream: u64,
    reports: Vec<quicmesh_proto::config::Report>,
) -> Result<Option<ProxyReport>, String> {
    let Subscriber::Waypoint { namespace, name } = subscriber else {
        return Err("node proxies report nothing".into());
    };
    if reports.len() > MAX_REPORTS {
        return Err(format!("{} reports, at most {MAX_REPORTS}", reports.len()));
    }
    let mut out = Vec::with_capacity(reports.len());
    for r in reports {
        if r.subject.is_empty() || r.subject.len() > MAX_REPORT_SUBJECT {
            return Err(format!(
                "a report subject of {} bytes (1 to {MAX_REPORT_SUBJECT})",
                r.subject.len()
            ));
        }
        let mut error = r.error;
        if error.len() > MAX_REPORT_ERROR {
            let mut cut = MAX_REPORT_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push('…');
        }
        out.push(FetchReport {
            subject: r.subject,
            ok: r.ok,
            error,
            last_good_kept: r.last_good_kept,
        });
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(ProxyReport {
        namespace: namespace.clone(),
        name: format!("{name}#{stream}"),
        waypoint: name.clone(),
        reports: out,
    }))
}

/// What the controller knows about each connected proxy (status page).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProxyStatus {
    pub connected: bool,
    /// The newest version sent to it: a proxy is sent only the changes
    /// that concern it, so this trails the controller's version when
    /// nothing newer was for it.
    pub sent_version: u64,
    pub acked_version: u64,
    pub last_nack: Option<String>,
}

/// Notes on the status page that `version` was sent to `node`.
fn sent(proxies: &Mutex<BTreeMap<String, ProxyStatus>>, node: &str, version: u64) {
    if let Some(st) = proxies.lock().expect("not poisoned").get_mut(node) {
        st.sent_version = st.sent_version.max(version);
    }
}

pub struct ConfigService {
    pub store: Arc<Store>,
    pub metrics: Arc<PushMetrics>,
    pub proxies: Arc<Mutex<BTreeMap<String, ProxyStatus>>>,
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;

fn full(
    store: &Store,
    view: &mut View,
    nonce: u64,
) -> (Update, broadcast::Receiver<Arc<crate::store::Delta>>) {
    let snap = store.subscribe();
    (
        Update {
            nonce: nonce.to_string(),
            version: snap.version,
            full: true,
            resources: view.snapshot(snap.resources),
            removed: vec![],
        },
        snap.changes,
    )
}

/// Holds a new subscriber until every source has given its full view: a
/// snapshot without, say, the AuthorizationPolicies would let through what
/// they deny. Returns false if the subscriber went away meanwhile. Its
/// first snapshot is taken after this, together with its change receiver
/// ([`Store::subscribe`]), so no change is lost.
async fn wait_for_sources(
    store: &Store,
    tx: &mpsc::Sender<Result<Update, Status>>,
    node: &str,
) -> bool {
    if store.is_synced() {
        return true;
    }
    tracing::info!(
        %node,
        pending = ?store.pending_sources(),
        "config held until sources have synced"
    );
    tokio::select! {
        () = store.synced() => {
            tracing::info!(%node, "sources synced; sending config");
            true
        }
        () = tx.closed() => false,
    }
}

/// Marks `node` gone (status page, subscriber gauge).
fn unsubscribed(proxies: &Mutex<BTreeMap<String, ProxyStatus>>, metrics: &PushMetrics, node: &str) {
    proxies
        .lock()
        .expect("not poisoned")
        .entry(node.to_string())
        .or_default()
        .connected = false;
    metrics.subscribers.dec();
    tracing::info!(%node, "proxy unsubscribed");
}

#[tonic::async_trait]
impl ConfigStream for ConfigService {
    type StreamStream = UpdateStream;

    async fn stream(&self, req: Request<Streaming<Ack>>) -> Result<Response<UpdateStream>, Status> {
        let subscriber = peer_identity(&req, "the config stream needs a client certificate")
            .and_then(|id| {
                Subscriber::from_identity(&id, &self.store).map_err(Status::permission_denied)
            });
        let subscriber = match subscriber {
            Ok(s) => s,
            Err(s) => {
                tracing::warn!(reason = %s.message(), "config stream refused");
                self.metrics.refused.inc();
                return Err(s);
            }
        };
        let node = subscriber.name();
        let mut view = View {
            subscriber,
            root: self.store.with_index(|ix| ix.root_namespace().to_string()),
            sent: Default::default(),
        };
        let mut acks = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<Update, Status>>(16);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let proxies = self.proxies.clone();
        let stream = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let labels = ProxyLabels {
                proxy: node.clone(),
            };
            // What this stream last reported (in the store until it ends).
            let mut reported: Option<ProxyReport> = None;
            metrics.subscribers.inc();
            proxies
                .lock()
                .expect("not poisoned")
                .entry(node.clone())
                .or_default()
                .connected = true;
            tracing::info!(%node, "proxy subscribed");
            if !wait_for_sources(&store, &tx, &node).await {
                unsubscribed(&proxies, &metrics, &node);
                return;
            }
            let mut nonce = 1u64;
            let mut in_flight = InFlight::new(&metrics, &view.subscriber);
            let (first, mut changes) = full(&store, &mut view, nonce);
            let mut sent_version = first.version;
            sent(&proxies, &node, sent_version);
            in_flight.sent(&first.nonce);
            let mut ok = tx.send(Ok(first)).await.is_ok();
            metrics.updates_sent.get_or_create(&labels).inc();
            while ok {
                tokio::select! {
                    change = changes.recv() => {
                        let update = match change {
                            Ok(d) if d.version <= sent_version => continue,
                            Ok(d) => {
                                let Some((resources, removed)) = view.delta(&d) else {
                                    continue;
                                };
                                nonce += 1;
                                Update {
                                    nonce: nonce.to_string(),
                                    version: d.version,
                                    full: false,
                                    resources,
                                    removed,
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::info!(%node, missed = n, "proxy fell behind; sending a snapshot");
                                nonce += 1;
                                let (u, rx) = full(&store, &mut view, nonce);
                                changes = rx;
                                u
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        };
                        sent_version = update.version;
                        sent(&proxies, &node, sent_version);
                        in_flight.sent(&update.nonce);
                        ok = tx.send(Ok(update)).await.is_ok();
                        metrics.updates_sent.get_or_create(&labels).inc();
                    }
                    ack = acks.next() => match ack {
                        Some(Ok(a)) if a.report_only => {
                            match proxy_report(&view.subscriber, stream, a.reports) {
                                Ok(r) if r != reported => {
                                    tracing::debug!(%node, reports = r.as_ref().map_or(0, |r| r.reports.len()), "proxy reported what it fetches");
                                    match (&r, reported.take()) {
                                        (Some(r), _) => store.apply(|ix| ix.upsert(Object::ProxyReport(r.clone()))),
                                        (None, Some(gone)) => store.apply(|ix| ix.delete(&Object::ProxyReport(gone).key())),
                                        (None, None) => None,
                                    };
                                    reported = r;
                                }
                                Ok(_) => {}
                                Err(why) => {
                                    tracing::warn!(%node, reason = %why, "proxy report refused");
                                    metrics.refused_reports.inc();
                                }
                            }
                        }
                        Some(Ok(a)) => {
                            in_flight.answered(&a.nonce);
                            let mut p = proxies.lock().expect("not poisoned");
                            let st = p.entry(node.clone()).or_default();
                            if a.error.is_empty() {
                                st.acked_version = st.acked_version.max(a.version);
                            } else {
                                tracing::warn!(%node, nonce = %a.nonce, reason = %a.error, "proxy rejected a config update (NACK)");
                                metrics.nacks.get_or_create(&labels).inc();
                                st.last_nack = Some(a.error);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::info!(%node, error = %e, "config stream broke");
                            break;
                        }
                        None => break,
                    }
                }
            }
            if let Some(r) = reported {
                store.apply(|ix| ix.delete(&Object::ProxyReport(r).key()));
            }
            unsubscribed(&proxies, &metrics, &node);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use quicmesh_proto::config::{Authorization, HttpRoute, Service, Workload};

    use super::*;
    use crate::store::Delta;

    fn res(name: &str, kind: resource::Kind) -> Resource {
        Resource {
            name: name.into(),
            version: 1,
            kind: Some(kind),
        }
    }

    fn svc(ns: &str, name: &str) -> Resource {
        res(
            &format!("service/{ns}/{name}"),
            resource::Kind::Service(Service {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
        )
    }

    fn workload(ns: &str, uid: &str) -> Resource {
        res(
            &format!("workload/{uid}"),
            resource::Kind::Workload(Workload {
                uid: uid.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn a_waypoint_is_sent_its_namespace_only_and_removals_of_what_it_has() {
        let mut view = View {
            subscriber: Subscriber::Waypoint {
                namespace: "shop".into(),
                name: "waypoint".into(),
            },
            root: "quicmesh-system".into(),
            sent: Default::default(),
        };
        let all = vec![
            svc("shop", "web"),
            svc("bank", "ledger"),
            workload("shop", "w1"),
            workload("bank", "b1"),
            res(
                "httproute/shop/r",
                resource::Kind::HttpRoute(HttpRoute {
                    namespace: "shop".into(),
                    name: "r".into(),
                    ..Default::default()
                }),
            ),
            res(
                "httproute/front/consumer",
                resource::Kind::HttpRoute(HttpRoute {
                    namespace: "front".into(),
                    name: "consumer".into(),
                    parents: vec![quicmesh_proto::config::RouteParent {
                        namespace: "shop".into(),
                        name: "web".into(),
                        port: 80,
                    }],
                    ..Default::default()
                }),
            ),
            res(
                "httproute/front/own",
                resource::Kind::HttpRoute(HttpRoute {
                    namespace: "front".into(),
                    name: "own".into(),
                    ..Default::default()
                }),
            ),
            res(
                "authorization/shop/p",
                resource::Kind::Authorization(Authorization {
                    namespace: "shop".into(),
                    ..Default::default()
                }),
            ),
            res(
                "authorization/bank/p",
                resource::Kind::Authorization(Authorization {
                    namespace: "bank".into(),
                    ..Default::default()
                }),
            ),
            res(
                "authorization/quicmesh-system/mesh",
                resource::Kind::Authorization(Authorization {
                    namespace: "quicmesh-system".into(),
                    ..Default::default()
                }),
            ),
        ];
        let names = |rs: &[Resource]| rs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let snap = view.snapshot(all.clone());
        assert_eq!(
            names(&snap),
            [
                "service/shop/web",
                "workload/w1",
                "httproute/shop/r",
                "httproute/front/consumer",
                "authorization/shop/p",
                "authorization/quicmesh-system/mesh"
            ]
        );
        // Another namespace's change is no update at all.
        let other = Delta {
            version: 2,
            upserts: vec![svc("bank", "ledger")],
            removed: vec!["workload/b1".into()],
        };
        assert!(view.delta(&other).is_none());
        let mine = Delta {
            version: 3,
            upserts: vec![svc("shop", "cart"), svc("bank", "teller")],
            removed: vec!["workload/w1".into(), "workload/b2".into()],
        };
        let (up, rm) = view.delta(&mine).unwrap();
        assert_eq!(names(&up), ["service/shop/cart"]);
        assert_eq!(rm, ["workload/w1"]);
        // A node sees everything.
        let mut node = View {
            subscriber: Subscriber::Node("node1".into()),
            root: "quicmesh-system".into(),
            sent: Default::default(),
        };
        assert_eq!(node.snapshot(all.clone()).len(), all.len());
    }

    #[test]
    fn via_waypoint_is_decided_for_each_kind_of_proxy() {
        use quicmesh_core::authz::set::{decide, Destination, MtlsMode, PolicySet};
        use quicmesh_core::authz::Connection;
        use quicmesh_proto::config::{AuthorizationRule, AuthorizationSource};
        let deny_direct = |via| {
            res(
                "authorization/shop/p",
                resource::Kind::Authorization(Authorization {
                    name: "p".into(),
                    namespace: "shop".into(),
                    scope: 2,
                    action: 2,
                    rules: vec![AuthorizationRule {
                        from: vec![AuthorizationSource {
                            via_waypoint: Some(via),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            )
        };
        let node = Subscriber::Node("n".into());
        let waypoint = Subscriber::Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
        };
        // What a proxy that ignores the field decides with what it is sent.
        let allowed = |s: &Subscriber, r: Resource| {
            let Some(resource::Kind::Authorization(mut a)) = s.adapt(r).kind else {
                panic!()
            };
            assert!(
                a.rules[0].from[0].via_waypoint.is_none(),
                "never sent: old proxies ignore it"
            );
            a.rules[0].from[0].via_waypoint = None;
            let mut set = PolicySet::default();
            set.insert(&a);
            let ps = set.for_workload("shop", &[]);
            let dst = Destination {
                configured: true,
                namespace: "shop",
                policies: Some(&ps),
                mtls: MtlsMode::Permissive,
                waypoints: &[],
            };
            let c = Connection::new(None, "cluster.local", "10.0.0.1".parse().unwrap(), 80);
            decide(&set, &dst, &c).allowed()
        };
        // DENY viaWaypoint=false: denies at ztunnels, not at waypoints.
        assert!(!allowed(&node, deny_direct(false)));
        assert!(allowed(&waypoint, deny_direct(false)));
        // DENY viaWaypoint=true: the reverse.
        assert!(allowed(&node, deny_direct(true)));
        assert!(!allowed(&waypoint, deny_direct(true)));
    }

    #[test]
    fn only_nodes_and_waypoints_subscribe() {
        let store = Store::new("cluster.local");
        store.apply(|ix| {
            ix.upsert(crate::model::Object::Namespace(crate::model::Namespace {
                name: "shop".into(),
                labels: [(
                    crate::waypoint::USE_WAYPOINT_LABEL.to_string(),
                    "waypoint".to_string(),
                )]
                .into(),
            }))
        });
        let id = |ns: &str, sa: &str| SpiffeId::workload("cluster.local", ns, sa).unwrap();
        assert_eq!(
            Subscriber::from_identity(&id("shop", "waypoint"), &store).unwrap(),
            Subscriber::Waypoint {
                namespace: "shop".into(),
                name: "waypoint".into()
            }
        );
        let e = Subscriber::from_identity(&id("shop", "web"), &store).unwrap_err();
        assert!(e.contains("neither"), "{e}");
        let node = SpiffeId::node("cluster.local", "node1").unwrap();
        assert_eq!(
            Subscriber::from_identity(&node, &store).unwrap(),
            Subscriber::Node("node1".into())
        );
        let foreign = SpiffeId::workload("other.example", "shop", "waypoint").unwrap();
        assert!(Subscriber::from_identity(&foreign, &store).is_err());
    }

    #[test]
    fn a_waypoints_reports_are_bounded_and_a_nodes_refused() {
        use quicmesh_proto::config::Report;
        let w = Subscriber::Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
        };
        let r = |subject: &str, error: &str| Report {
            subject: subject.into(),
            ok: error.is_empty(),
            error: error.into(),
            last_good_kept: true,
        };
        let got = proxy_report(&w, 7, vec![r("jwks/https://i.example/k", "answered 503")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                got.namespace.as_str(),
                got.name.as_str(),
                got.waypoint.as_str()
            ),
            ("shop", "waypoint#7", "waypoint")
        );
        assert_eq!(got.reports[0].error, "answered 503");
        assert!(got.reports[0].last_good_kept);
        // An empty set: nothing (what was reported before goes).
        assert_eq!(proxy_report(&w, 7, vec![]), Ok(None));
        // Long errors are cut at a character boundary.
        let long = "é".repeat(MAX_REPORT_ERROR);
        let got = proxy_report(&w, 7, vec![r("jwks/u", &long)])
            .unwrap()
            .unwrap();
        assert!(got.reports[0].error.len() <= MAX_REPORT_ERROR + '…'.len_utf8());
        assert!(got.reports[0].error.ends_with('…'));
        // Refused whole: too many, an empty or oversize subject, a node.
        let many = vec![r("jwks/u", ""); MAX_REPORTS + 1];
        assert!(proxy_report(&w, 7, many).unwrap_err().contains("at most"));
        assert!(proxy_report(&w, 7, vec![r("", "")]).is_err());
        let huge = "x".repeat(MAX_REPORT_SUBJECT + 1);
        assert!(proxy_report(&w, 7, vec![r(&huge, "")]).is_err());
        assert!(
            proxy_report(&Subscriber::Node("node-1".into()), 7, vec![r("jwks/u", "")]).is_err()
        );
    }

    #[test]
    fn updates_in_flight_are_timed_to_their_answer_and_given_back_at_the_end() {
        let m = PushMetrics::default();
        let node = Subscriber::Node("node-1".into());
        let durations = |kind| {
            let mut reg = prometheus_client::registry::Registry::default();
            reg.register("d", "", m.push_durations.clone());
            let text = quicmesh_core::metrics::encode(&reg);
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("d_count{{kind=\"{kind}\"}} ")))
                .map(|v| v.trim().parse::<u64>().unwrap())
        };
        {
            let mut f = InFlight::new(&m, &node);
            f.sent("1");
            f.sent("2");
            assert_eq!(m.unanswered.get(), 2);
            f.answered("1");
            f.answered("unknown");
            assert_eq!(m.unanswered.get(), 1);
            assert_eq!(durations("ztunnel"), Some(1));
            for n in 3..100 {
                f.sent(&n.to_string());
            }
            assert_eq!(
                m.unanswered.get(),
                MAX_UNANSWERED as i64,
                "the oldest forgotten"
            );
        }
        assert_eq!(
            m.unanswered.get(),
            0,
            "a stream's unanswered updates go with it"
        );
        let w = Subscriber::Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
        };
        let mut f = InFlight::new(&m, &w);
        f.sent("1");
        f.answered("1");
        assert_eq!(durations("waypoint"), Some(1));
    }
}
