//! The node loop: the one task that holds the pods of this node (each
//! one's network namespace, and whether it is enrolled) and the connection
//! to ztunnel, and changes both. Everything that touches ztunnel goes
//! through it, one operation at a time (ztunnel applies them one at a time
//! too), so the plugin's requests, the cluster's changes and a ztunnel
//! restart never race each other.
//!
//! - **Plugin requests** ([`Call`]): ADD takes the namespace and enrolls
//!   the pod if it is in the mesh; a failure to enroll lets go of it and
//!   removes the pod from ztunnel, so nothing stays half-enrolled. DEL lets
//!   go and removes. CHECK re-asserts.
//! - **Cluster changes** (the store's): [`plan`] says what to enroll,
//!   remove or forget; carried out at once (no pod restart).
//! - **ztunnel**: connected with backoff until its socket answers; when the
//!   connection closes (ztunnel exited or restarted) it is re-established
//!   and ztunnel re-synced: a snapshot of every held pod that should be
//!   enrolled when ztunnel's enrolled set is known to be the agent's (the
//!   agent has snapshotted it before, ztunnel restarted, or every pod that
//!   should be enrolled is held); otherwise adds only, so that pods the
//!   agent cannot see (enrolled before it started, their namespaces not
//!   found) are not swept.
//! - **Identity pending**: pods enrolled without their SVID are asked
//!   about again every second (the same `AddPod`, answered at once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicmesh_controller::store::Store;
use quicmesh_core::enrollment::{Client, ClientError, Enrolled};
use quicmesh_core::health::Flag;
use quicmesh_core::netns::Netns;
use quicmesh_proto::enrollment::Pod as Enroll;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::plan::{self, Action, Held};
use crate::protocol::{Request, Response};
use crate::spec::{code, CniError};

/// Finds the network namespace of a pod (by uid) that the agent was not
/// handed: one that predates it. In Kubernetes, from the host's `/proc`.
pub type NetnsOf = Box<dyn Fn(&str) -> std::io::Result<Option<std::fs::File>> + Send + Sync>;

/// A plugin request, for the node loop, with where to answer.
pub enum Call {
    /// ADD or CHECK of the pod `uid` (found in the store), with its netns.
    Add {
        uid: String,
        req: Request,
        netns: Netns,
        deadline: Instant,
        check: bool,
        reply: oneshot::Sender<Response>,
    },
    Del {
        req: Request,
        deadline: Instant,
        reply: oneshot::Sender<Response>,
    },
}

/// Bound of one ztunnel operation the plugin does not wait for (a remove
/// waits for the pod's connections to drain: ztunnel's drain deadline, 5 s
/// by default, and a little more).
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Reconnect backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often pods whose SVID is pending are asked about.
const PENDING_POLL: Duration = Duration::from_secs(1);
/// How often a pod whose namespace is not held is looked for.
const FIND_RETRY: Duration = Duration::from_secs(10);

struct Entry {
    held: Held,
    netns: Netns,
    container_id: String,
    pending: bool,
}

enum ZtError {
    /// ztunnel answered no; the connection is fine.
    Refused(String),
    /// No connection, or it broke (now closed).
    Down(String),
}

impl std::fmt::Display for ZtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZtError::Refused(e) => write!(f, "ztunnel refused: {e}"),
            ZtError::Down(e) => write!(f, "ztunnel not reachable: {e}"),
        }
    }
}

/// The connection to ztunnel's enrollment socket.
struct Link {
    socket: PathBuf,
    client: Option<Client>,
    /// The socket file last connected to (device, inode): ztunnel creates
    /// a new one when it starts, so another one is a restarted ztunnel.
    socket_id: Option<(u64, u64)>,
    /// ztunnel's enrolled set is known to be what the agent sent it.
    exact: bool,
    syncs: u64,
    retry_at: Instant,
    backoff: Duration,
    last_error: String,
    metrics: Arc<Metrics>,
    ready: Flag,
}

impl Link {
    fn down(&mut self, why: String) {
        if self.client.take().is_some() {
            tracing::warn!(socket = %self.socket.display(), error = %why, "lost ztunnel's enrollment socket; reconnecting");
        }
        self.metrics.ztunnel_connected.set(0);
        self.ready.set_not_ready(format!(
            "ztunnel not reachable at {}: {why}",
            self.socket.display()
        ));
        self.last_error = why;
    }

    /// Connects; returns whether it is another ztunnel than last time.
    async fn connect(&mut self) -> Result<bool, String> {
        let attempt = async {
            let m = std::fs::metadata(&self.socket).map_err(|e| e.to_string())?;
            let client = tokio::time::timeout(OP_TIMEOUT, Client::connect(&self.socket))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((client, (m.dev(), m.ino())))
        };
        match attempt.await {
            Ok((client, id)) => {
                let restarted = self.socket_id.is_some_and(|old| old != id);
                self.socket_id = Some(id);
                self.client = Some(client);
                self.backoff = BACKOFF_MIN;
                self.metrics.ztunnel_connected.set(1);
                Ok(restarted)
            }
            Err(e) => {
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.down(e.clone());
                Err(e)
            }
        }
    }

    fn result<T>(
        &mut self,
        op: &str,
        r: Result<Result<T, ClientError>, tokio::time::error::Elapsed>,
    ) -> Result<T, ZtError> {
        match r {
            Ok(Ok(v)) => {
                self.metrics.operation(op, "ok");
                Ok(v)
            }
            Ok(Err(ClientError::Refused(e))) => {
                self.metrics.operation(op, "refused");
                Err(ZtError::Refused(e))
            }
            Ok(Err(e)) => {
                self.metrics.operation(op, "unreachable");
                self.down(e.to_string());
                Err(ZtError::Down(e.to_string()))
            }
            Err(_) => {
                self.metrics.operation(op, "unreachable");
                let e = format!("no answer to {op} within its deadline");
                self.down(e.clone());
                Err(ZtError::Down(e))
            }
        }
    }

    async fn add(
        &mut self,
        pod: Enroll,
        netns: &Netns,
        within: Duration,
    ) -> Result<Enrolled, ZtError> {
        let Some(client) = self.client.as_mut() else {
            return Err(ZtError::Down(self.last_error.clone()));
        };
        let r = tokio::time::timeout(within, client.add(pod, netns)).await;
        self.result("add", r)
    }

    async fn remove(&mut self, uid: &str, within: Duration) -> Result<(), ZtError> {
        let Some(client) = self.client.as_mut() else {
            return Err(ZtError::Down(self.last_error.clone()));
        };
        let r = tokio::time::timeout(within, client.remove(uid)).await;
        self.result("remove", r)
    }
}

/// Waits until ztunnel closes `client` (never, without one).
async fn closed(client: Option<&Client>) {
    match client {
        Some(c) => c.closed().await,
        None => std::future::pending().await,
    }
}

pub struct Node {
    name: String,
    store: Arc<Store>,
    entries: BTreeMap<String, Entry>,
    /// Pods ztunnel may still hold that the agent let go of while it could
    /// not tell ztunnel: removed at the next sync.
    removals: BTreeSet<String>,
    link: Link,
    find_netns: Option<NetnsOf>,
    looked_for: HashMap<String, Instant>,
    next_poll: Instant,
    metrics: Arc<Metrics>,
    status: watch::Sender<serde_json::Value>,
}

/// What [`Node::new`] needs.
pub struct Setup {
    pub name: String,
    pub store: Arc<Store>,
    pub ztunnel_socket: PathBuf,
    pub find_netns: Option<NetnsOf>,
    pub metrics: Arc<Metrics>,
    /// The readiness condition "ztunnel reachable".
    pub ztunnel_ready: Flag,
    /// Where the node's state is published (the admin `/pods`).
    pub status: watch::Sender<serde_json::Value>,
}

impl Node {
    pub fn new(s: Setup) -> Self {
        let now = Instant::now();
        Node {
            name: s.name,
            store: s.store,
            entries: BTreeMap::new(),
            removals: BTreeSet::new(),
            link: Link {
                socket: s.ztunnel_socket,
                client: None,
                socket_id: None,
                exact: false,
                syncs: 0,
                retry_at: now,
                backoff: BACKOFF_MIN,
                last_error: "not connected yet".into(),
                metrics: s.metrics.clone(),
                ready: s.ztunnel_ready,
            },
            find_netns: s.find_netns,
            looked_for: HashMap::new(),
            next_poll: now,
            metrics: s.metrics,
            status: s.status,
        }
    }

    /// Runs until `shutdown` (or until nothing can send it calls).
    pub async fn run(mut self, mut calls: mpsc::Receiver<Call>, shutdown: CancellationToken) {
        let mut changes = self.store.object_changes();
        self.publish();
        loop {
            let wake = self.next_wake();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                call = calls.recv() => match call {
                    Some(c) => self.call(c).await,
                    None => return,
                },
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    self.reconcile().await;
                }
                _ = closed(self.link.client.as_ref()) => {
                    self.link.down("ztunnel closed the connection".into());
                    self.link.retry_at = Instant::now();
                }
                _ = tokio::time::sleep_until(wake.into()) => self.tick().await,
            }
            self.publish();
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        if !self.store.is_synced() {
            now + Duration::from_millis(100)
        } else if self.link.client.is_none() {
            self.link.retry_at.max(now)
        } else {
            self.next_poll.max(now)
        }
    }

    async fn tick(&mut self) {
        if !self.store.is_synced() {
            return;
        }
        if self.link.client.is_none() {
            if Instant::now() >= self.link.retry_at {
                self.connect_and_sync().await;
            }
            return;
        }
        self.next_poll = Instant::now() + PENDING_POLL;
        self.find_unheld();
        self.reconcile().await;
        let pending: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.held.enrolled && e.pending)
            .map(|(u, _)| u.clone())
            .collect();
        for uid in pending {
            let Some(e) = self.entries.get_mut(&uid) else {
                continue;
            };
            if let Ok(done) = self
                .link
                .add(e.held.sent.clone(), &e.netns, OP_TIMEOUT)
                .await
            {
                e.pending = done.pending.contains(&uid);
                if !e.pending {
                    tracing::info!(pod = %format!("{}/{}", e.held.sent.namespace, e.held.sent.name), "SVID issued: no longer identity-pending");
                }
            }
        }
    }

    /// Looks for the namespaces of pods that should be enrolled but are not
    /// held (with a finder: Kubernetes' `/proc`), each at most every
    /// [`FIND_RETRY`].
    fn find_unheld(&mut self) {
        let Some(find) = &self.find_netns else {
            return;
        };
        let entries = &self.entries;
        let unheld = self
            .store
            .with_index(|ix| plan::unheld(ix, &self.name, |u| entries.contains_key(u)));
        let now = Instant::now();
        self.looked_for.retain(|uid, _| unheld.contains(uid));
        for uid in unheld {
            if self
                .looked_for
                .get(&uid)
                .is_some_and(|t| now.duration_since(*t) < FIND_RETRY)
            {
                continue;
            }
            self.looked_for.insert(uid.clone(), now);
            let found = match find(&uid) {
                Ok(Some(f)) => Netns::from_fd(f.into()).map_err(|e| e.to_string()),
                Ok(None) => continue,
                Err(e) => Err(e.to_string()),
            };
            let netns = match found {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(pod_uid = %uid, error = %e, "cannot take the network namespace of a running pod");
                    continue;
                }
            };
            let Some(pod) = self.store.with_index(|ix| ix.pod_by_uid(&uid).cloned()) else {
                continue;
            };
            tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), netns = %netns.id(), "found the network namespace of a running pod");
            self.entries.insert(
                uid.clone(),
                Entry {
                    held: Held {
                        uid,
                        sent: plan::message(&pod, &[]),
                        cni_ips: vec![],
                        enrolled: false,
                    },
                    netns,
                    container_id: String::new(),
                    pending: false,
                },
            );
        }
    }

    async fn connect_and_sync(&mut self) {
        match self.link.connect().await {
            Ok(restarted) => self.sync(restarted).await,
            Err(e) => tracing::debug!(error = %e, "ztunnel not reachable yet"),
        }
    }

    /// Brings a (re)connected ztunnel up to date (see the module's doc).
    async fn sync(&mut self, restarted: bool) {
        let entries = &self.entries;
        let (unheld, wants) = self.store.with_index(|ix| {
            let unheld = plan::unheld(ix, &self.name, |u| entries.contains_key(u));
            let wants: BTreeMap<String, Option<Enroll>> = entries
                .iter()
                .map(|(uid, e)| {
                    let m = ix
                        .pod_by_uid(uid)
                        .filter(|p| plan::wanted(ix, &self.name, p))
                        .map(|p| plan::message(p, &e.held.cni_ips));
                    (uid.clone(), m)
                })
                .collect();
            (unheld, wants)
        });
        let snapshot = self.link.exact || restarted || unheld.is_empty();
        if snapshot {
            let pods: Vec<(Enroll, &Netns)> = wants
                .iter()
                .filter_map(|(uid, m)| Some((m.clone()?, &self.entries[uid].netns)))
                .collect();
            let n = pods.len();
            let Some(client) = self.link.client.as_mut() else {
                return;
            };
            let within = OP_TIMEOUT + Duration::from_millis(10 * n as u64);
            let r = tokio::time::timeout(within, client.snapshot(pods)).await;
            let (refused, done) = match r {
                Ok(Ok(done)) => (vec![], done),
                Ok(Err(ClientError::Snapshot { refused, done })) => {
                    for (uid, e) in &refused {
                        tracing::warn!(pod_uid = %uid, error = %e, "ztunnel refused a pod of the snapshot");
                    }
                    (refused.into_iter().map(|(u, _)| u).collect(), done)
                }
                Ok(Err(e)) => return self.link.down(format!("snapshot: {e}")),
                Err(_) => {
                    return self
                        .link
                        .down("snapshot: no answer within its deadline".into())
                }
            };
            for (uid, e) in self.entries.iter_mut() {
                match &wants[uid] {
                    Some(m) if !refused.contains(uid) => {
                        e.held.enrolled = true;
                        e.held.sent = m.clone();
                        e.pending = done.pending.contains(uid);
                    }
                    _ => e.held.enrolled = false,
                }
            }
            self.removals.clear();
            self.link.exact = true;
            self.metrics.synced("snapshot");
            tracing::info!(pods = n, restarted, "ztunnel re-synced with a snapshot");
        } else {
            tracing::warn!(unheld = ?unheld, "ztunnel re-synced by adds only: it may hold pods enrolled before this agent started, whose network namespaces it does not hold, so nothing is swept");
            for (uid, m) in wants {
                let Some(e) = self.entries.get_mut(&uid) else {
                    continue;
                };
                let r = match &m {
                    Some(m) => self
                        .link
                        .add(m.clone(), &e.netns, OP_TIMEOUT)
                        .await
                        .map(|done| {
                            e.held.enrolled = true;
                            e.held.sent = m.clone();
                            e.pending = done.pending.contains(&uid);
                        }),
                    None => self.link.remove(&uid, OP_TIMEOUT).await.map(|()| {
                        e.held.enrolled = false;
                    }),
                };
                match r {
                    Err(ZtError::Down(_)) => return,
                    Err(ZtError::Refused(err)) => {
                        e.held.enrolled = false;
                        tracing::warn!(pod_uid = %uid, error = %err, "ztunnel refused a pod while re-syncing");
                    }
                    Ok(()) => {}
                }
            }
            for uid in std::mem::take(&mut self.removals) {
                if let Err(ZtError::Down(_)) = self.link.remove(&uid, OP_TIMEOUT).await {
                    self.removals.insert(uid);
                    return;
                }
            }
            self.metrics.synced("adds");
        }
        self.link.syncs += 1;
        self.link.ready.set_ready();
    }

    /// Carries out what the cluster's changes call for.
    async fn reconcile(&mut self) {
        let entries = &self.entries;
        let actions = self
            .store
            .with_index(|ix| plan::plan(ix, &self.name, entries.values().map(|e| &e.held)));
        let up = self.link.client.is_some();
        for action in actions {
            match action {
                // Once reconnected, the sync enrolls it.
                Action::Enroll(_) if !up => {}
                Action::Enroll(m) => {
                    let uid = m.uid.clone();
                    let Some(e) = self.entries.get_mut(&uid) else {
                        continue;
                    };
                    match self.link.add(m.clone(), &e.netns, OP_TIMEOUT).await {
                        Ok(done) => {
                            tracing::info!(pod = %format!("{}/{}", m.namespace, m.name), "enrolled (the cluster changed)");
                            e.held.enrolled = true;
                            e.held.sent = m;
                            e.pending = done.pending.contains(&uid);
                        }
                        Err(err) => {
                            tracing::warn!(pod = %format!("{}/{}", m.namespace, m.name), error = %err, "enrolling failed");
                            e.held.enrolled = false;
                        }
                    }
                }
                Action::Remove(uid) => {
                    if let Some(e) = self.entries.get_mut(&uid) {
                        e.held.enrolled = false;
                        e.pending = false;
                        tracing::info!(pod = %format!("{}/{}", e.held.sent.namespace, e.held.sent.name), "leaving the mesh (the cluster changed)");
                    }
                    self.remove(&uid, OP_TIMEOUT).await;
                }
                Action::Forget { uid, enrolled } => {
                    self.entries.remove(&uid);
                    if enrolled {
                        self.remove(&uid, OP_TIMEOUT).await;
                    }
                }
            }
        }
    }

    /// Removes `uid` from ztunnel, or remembers to.
    async fn remove(&mut self, uid: &str, within: Duration) {
        match self.link.remove(uid, within).await {
            Ok(()) => {}
            Err(ZtError::Down(_)) => {
                self.removals.insert(uid.to_string());
            }
            Err(ZtError::Refused(e)) => {
                tracing::warn!(pod_uid = %uid, error = %e, "ztunnel refused to remove a pod");
            }
        }
    }

    async fn call(&mut self, call: Call) {
        let (command, reply, resp) = match call {
            Call::Add {
                uid,
                req,
                netns,
                deadline,
                check,
                reply,
            } => {
                let command = if check { "CHECK" } else { "ADD" };
                (
                    command,
                    reply,
                    self.add(uid, req, netns, deadline, check).await,
                )
            }
            Call::Del {
                req,
                deadline,
                reply,
            } => ("DEL", reply, self.del(req, deadline).await),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(command, error = %e, "plugin request failed");
                Response::error(&e)
            }
        };
        // The plugin may have given up; nothing to do then.
        let _ = reply.send(resp);
    }

    async fn add(
        &mut self,
        uid: String,
        req: Request,
        netns: Netns,
        deadline: Instant,
        check: bool,
    ) -> Result<Response, CniError> {
        let left = || deadline.saturating_duration_since(Instant::now());
        if left().is_zero() {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "the agent could not take the request before the plugin's deadline",
            ));
        }
        let found = self.store.with_index(|ix| {
            ix.pod_by_uid(&uid)
                .map(|p| (plan::wanted(ix, &self.name, p), p.clone()))
        });
        let Some((want, pod)) = found else {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                format!("pod {uid} left the agent's view of the cluster"),
            ));
        };
        let name = format!("{}/{}", pod.namespace, pod.name);
        if pod.node.as_deref() != Some(self.name.as_str()) {
            return Err(CniError::new(
                code::REFUSED,
                format!(
                    "pod {name} is scheduled on {}, not on this agent's node {}",
                    pod.node.as_deref().unwrap_or("no node"),
                    self.name
                ),
            ));
        }
        let msg = plan::message(&pod, &req.ips);
        match self.entries.get(&uid) {
            Some(e) if check && e.netns.id() != netns.id() => {
                return Err(CniError::new(
                    code::REFUSED,
                    format!(
                        "CHECK of {name} names network namespace {}, but ADD handed over {}",
                        netns.id(),
                        e.netns.id()
                    ),
                ))
            }
            // CHECK of what ADD handed over: keep the held descriptor.
            Some(_) if check => drop(netns),
            _ => {
                let was = self.entries.insert(
                    uid.clone(),
                    Entry {
                        held: Held {
                            uid: uid.clone(),
                            sent: msg.clone(),
                            cni_ips: req.ips.clone(),
                            enrolled: false,
                        },
                        netns,
                        container_id: req.container_id.clone(),
                        pending: false,
                    },
                );
                // A new sandbox of an enrolled pod: enrolled until re-added.
                if let (Some(was), Some(e)) = (was, self.entries.get_mut(&uid)) {
                    e.held.enrolled = was.held.enrolled;
                }
            }
        }
        if !want {
            let enrolled = self.entries.get(&uid).is_some_and(|e| e.held.enrolled);
            if enrolled {
                if let Some(e) = self.entries.get_mut(&uid) {
                    e.held.enrolled = false;
                }
                self.remove(&uid, left()).await;
            }
            tracing::info!(pod = %name, command = if check { "CHECK" } else { "ADD" }, "not in the mesh: nothing to enroll (its network namespace is kept for a label change)");
            return Ok(Response::ok());
        }
        if self.link.client.is_none() {
            // ztunnel may have just come back: try now rather than at the
            // next backoff step.
            self.connect_and_sync().await;
        }
        let Some(e) = self.entries.get_mut(&uid) else {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "pod forgotten meanwhile",
            ));
        };
        match self.link.add(msg.clone(), &e.netns, left()).await {
            Ok(done) => {
                e.held.enrolled = true;
                e.held.sent = msg;
                e.pending = done.pending.contains(&uid);
                tracing::info!(pod = %name, netns = %e.netns.id(), identity_pending = e.pending, command = if check { "CHECK" } else { "ADD" }, "enrolled");
                Ok(Response {
                    enrolled: true,
                    identity_pending: e.pending,
                    ..Response::ok()
                })
            }
            Err(err) => {
                // Nothing stays half-done: a failed ADD lets go of the
                // namespace (the runtime deletes the sandbox, then retries),
                // and ztunnel is told to drop whatever it has of the pod.
                if check {
                    e.held.enrolled = false;
                } else {
                    self.entries.remove(&uid);
                }
                self.remove(&uid, OP_TIMEOUT.min(left().max(Duration::from_secs(1))))
                    .await;
                Err(CniError::new(
                    code::TRY_AGAIN_LATER,
                    format!("ztunnel did not enroll {name}"),
                )
                .details(err.to_string()))
            }
        }
    }

    async fn del(&mut self, req: Request, deadline: Instant) -> Result<Response, CniError> {
        let Some(pod) = &req.pod else {
            return Ok(Response::ok());
        };
        let uid = if !pod.uid.is_empty() {
            Some(pod.uid.clone())
        } else {
            self.entries
                .iter()
                .find(|(_, e)| !req.container_id.is_empty() && e.container_id == req.container_id)
                .or_else(|| {
                    self.entries.iter().find(|(_, e)| {
                        e.held.sent.namespace == pod.namespace && e.held.sent.name == pod.name
                    })
                })
                .map(|(u, _)| u.clone())
                .or_else(|| {
                    self.store
                        .with_index(|ix| ix.pod(&pod.namespace, &pod.name).map(|p| p.uid.clone()))
                })
        };
        let Some(uid) = uid else {
            return Ok(Response::ok());
        };
        let name = format!("{}/{}", pod.namespace, pod.name);
        if let Some(e) = self.entries.get(&uid) {
            if !e.container_id.is_empty()
                && !req.container_id.is_empty()
                && e.container_id != req.container_id
            {
                tracing::info!(pod = %name, container = %req.container_id, held = %e.container_id, "DEL of an older sandbox of the pod: nothing to do");
                return Ok(Response::ok());
            }
        }
        // Not held: a previous agent may have enrolled it.
        let maybe_enrolled = self.entries.remove(&uid).is_none_or(|e| e.held.enrolled);
        if maybe_enrolled {
            let within = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            self.remove(&uid, within).await;
        }
        tracing::info!(pod = %name, "deleted");
        Ok(Response::ok())
    }

    /// Publishes the node's state (the admin `/pods`) and the pod gauges.
    fn publish(&self) {
        let enrolled = self
            .entries
            .values()
            .filter(|e| e.held.enrolled && self.link.client.is_some())
            .count();
        self.metrics
            .set_pods(enrolled, self.entries.len() - enrolled);
        self.metrics.identity_pending.set(
            self.entries
                .values()
                .filter(|e| e.held.enrolled && e.pending)
                .count() as i64,
        );
        let up = self.link.client.is_some();
        let pods: Vec<_> = self
            .entries
            .values()
            .map(|e| {
                json!({
                    "uid": e.held.uid,
                    "namespace": e.held.sent.namespace,
                    "name": e.held.sent.name,
                    "serviceAccount": e.held.sent.service_account,
                    "ips": e.held.sent.ips,
                    "netns": e.netns.id().to_string(),
                    "containerId": e.container_id,
                    "enrolled": e.held.enrolled && up,
                    "identityPending": e.held.enrolled && up && e.pending,
                })
            })
            .collect();
        let status = json!({
            "node": self.name,
            "storeSynced": self.store.is_synced(),
            "ztunnel": {
                "socket": self.link.socket,
                "connected": up,
                "syncs": self.link.syncs,
                "exact": self.link.exact,
                "lastError": if up { "" } else { self.link.last_error.as_str() },
            },
            "pendingRemovals": self.removals,
            "pods": pods,
        });
        self.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }
}
