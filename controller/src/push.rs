//! The config stream server. Each proxy, named by its node certificate,
//! gets a full snapshot and then every delta; it ACKs or NACKs each update by
//! nonce. A NACK is logged with its reason and counted; the stream goes on.
//! A subscriber too slow to keep up with the deltas gets a fresh snapshot.

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

use crate::ca::node_from_peer_cert;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Default)]
pub struct PushMetrics {
    pub updates_sent: Family<NodeLabels, Counter>,
    pub nacks: Family<NodeLabels, Counter>,
    pub subscribers: Gauge,
    /// Subscriptions refused (no or wrong certificate).
    pub refused: Counter,
}

/// What the controller knows about each connected proxy (status page).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProxyStatus {
    pub connected: bool,
    pub acked_version: u64,
    pub last_nack: Option<String>,
}

pub struct ConfigService {
    pub store: Arc<Store>,
    pub metrics: Arc<PushMetrics>,
    pub proxies: Arc<Mutex<BTreeMap<String, ProxyStatus>>>,
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;

fn full(store: &Store, nonce: u64) -> (Update, broadcast::Receiver<Arc<crate::store::Delta>>) {
    let snap = store.subscribe();
    (
        Update {
            nonce: nonce.to_string(),
            version: snap.version,
            full: true,
            resources: snap.resources,
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
        let node = match node_from_peer_cert(&req, "the config stream needs a node certificate") {
            Ok(n) => n,
            Err(s) => {
                tracing::warn!(reason = %s.message(), "config stream refused");
                self.metrics.refused.inc();
                return Err(s);
            }
        };
        let mut acks = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<Update, Status>>(16);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let proxies = self.proxies.clone();
        tokio::spawn(async move {
            let labels = NodeLabels { node: node.clone() };
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
            let (first, mut changes) = full(&store, nonce);
            let mut sent_version = first.version;
            let mut ok = tx.send(Ok(first)).await.is_ok();
            metrics.updates_sent.get_or_create(&labels).inc();
            while ok {
                tokio::select! {
                    change = changes.recv() => {
                        let update = match change {
                            Ok(d) if d.version <= sent_version => continue,
                            Ok(d) => {
                                nonce += 1;
                                Update {
                                    nonce: nonce.to_string(),
                                    version: d.version,
                                    full: false,
                                    resources: d.upserts.clone(),
                                    removed: d.removed.clone(),
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                tracing::info!(%node, missed = n, "proxy fell behind; sending a snapshot");
                                nonce += 1;
                                let (u, rx) = full(&store, nonce);
                                changes = rx;
                                u
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        };
                        sent_version = update.version;
                        ok = tx.send(Ok(update)).await.is_ok();
                        metrics.updates_sent.get_or_create(&labels).inc();
                    }
                    ack = acks.next() => match ack {
                        Some(Ok(a)) => {
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
            unsubscribed(&proxies, &metrics, &node);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
