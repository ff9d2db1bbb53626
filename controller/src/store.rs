//! The controller's state: the index, the translated resources, and the
//! stream of changes the config server pushes.
//!
//! Sources call [`Store::apply`] with a change to the index; the store
//! re-translates only the resources the change touched, keeps the ones that
//! really changed, bumps the version and broadcasts the delta. The cost of a
//! change is proportional to what it touched, not to the size of the mesh.
//!
//! The store also knows which sources have given their first full view
//! ([`Store::expect_sync`], [`Store::mark_synced`]): until all have, what
//! it holds may lack objects that exist (an AuthorizationPolicy not listed
//! yet would let through what it denies), so the config stream waits for
//! [`Store::synced`] before sending a proxy its first snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use quicmesh_proto::config::Resource;
use tokio::sync::{broadcast, watch};

use crate::index::{Dirty, Index, DEFAULT_ROOT_NAMESPACE};
use crate::translate::{self, Mesh};

/// Says, once per change, what is wrong with a policy the sources handed in.
fn report_policy(r: &Resource) {
    if let Some(quicmesh_proto::config::resource::Kind::Authentication(a)) = &r.kind {
        if !a.invalid.is_empty() {
            let object = format!("{}/{}", a.namespace, a.name);
            tracing::warn!(%object, reason = %a.invalid, "RequestAuthentication is invalid: waypoints refuse (401) every request it targets");
        }
        return;
    }
    let Some(quicmesh_proto::config::resource::Kind::Authorization(a)) = &r.kind else {
        return;
    };
    let policy = format!("{}/{}", a.namespace, a.name);
    if !a.invalid.is_empty() {
        tracing::warn!(%policy, reason = %a.invalid, "AuthorizationPolicy is invalid: it denies all traffic it targets");
    }
    for w in &a.warnings {
        tracing::warn!(%policy, warning = %w, "AuthorizationPolicy has L7 parts a ztunnel cannot decide");
    }
}

/// Says, once per change touching it, what keeps an HTTPRoute (or some of
/// its backends) from being used: the status conditions that are false.
fn report_route(index: &Index, name: &str) {
    let Some(r) = index.route_by_resource(name) else {
        return;
    };
    let (ns, route) = (&r.namespace, &r.name);
    let compiled = r.compile(index);
    for ((pns, pname, port), conditions) in &compiled.parents {
        for c in conditions.iter().filter(|c| !c.status) {
            tracing::warn!(
                route = %format!("{ns}/{route}"),
                parent = %format!("Service {pns}/{pname}{}", port.map(|p| format!(":{p}")).unwrap_or_default()),
                condition = c.kind,
                reason = c.reason,
                message = %c.message,
                kind = r.kind.api_kind(),
                "route not fully usable"
            );
        }
    }
}

/// One step of the config: resources added or changed, and names removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub version: u64,
    pub upserts: Vec<Resource>,
    pub removed: Vec<String>,
}

struct Inner {
    index: Index,
    resources: BTreeMap<String, Resource>,
    version: u64,
}

/// Which sources have given their first full view, and which are awaited.
#[derive(Debug, Default)]
struct SyncState {
    pending: BTreeSet<String>,
    synced: BTreeSet<String>,
}

pub struct Store {
    mesh: Mesh,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Delta>>,
    sync: watch::Sender<SyncState>,
    /// The index's generation, for what follows objects rather than
    /// resources (waypoint provisioning).
    objects: watch::Sender<u64>,
    /// 1 when every source registered with [`Store::expect_sync`] is synced.
    sources_synced: Gauge,
}

/// The passes of a loop that follows the objects (waypoint provisioning,
/// status write-back): the first once every source has synced (a partial
/// view would undo what it has not seen yet), then one per change (changes
/// arriving together make one pass), and a full one every `resync`.
pub struct Passes {
    changes: watch::Receiver<u64>,
    resync: tokio::time::Interval,
}

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Changed,
    /// A failed object's retry is due ([`Retries`]).
    Retry,
    /// Everything again, changed or not (what someone changed by hand is
    /// put back).
    Resync,
}

impl Passes {
    /// Changes arriving within this of each other make one pass.
    const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

    /// Waits for the sources to sync.
    pub async fn start(store: &Store, resync: std::time::Duration) -> Self {
        store.synced().await;
        let mut every = tokio::time::interval(resync);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        Passes {
            changes: store.object_changes(),
            resync: every,
        }
    }

    /// Waits for the next pass (a change, a resync, or the earliest retry
    /// `retries` has due); None when the store is gone.
    pub async fn next(&mut self, retries: &Retries) -> Option<Pass> {
        let retry = async {
            match retries.next_due() {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.changes.changed() => {
                r.ok()?;
                tokio::time::sleep(Self::SETTLE).await;
                self.changes.borrow_and_update();
                Some(Pass::Changed)
            }
            _ = self.resync.tick() => Some(Pass::Resync),
            _ = retry => Some(Pass::Retry),
        }
    }
}

/// The objects a loop failed to write, each retried after a delay that
/// doubles from [`Retries::FIRST`] to [`Retries::MAX`], not on every pass:
/// an object the API server keeps refusing costs a request now and then,
/// however busy the store. A success forgets the object.
#[derive(Debug, Default)]
pub struct Retries {
    due: HashMap<String, (std::time::Instant, std::time::Duration)>,
}

impl Retries {
    pub const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(300);

    /// Whether `key` may be tried at `now`: it has not failed, or its
    /// delay is over.
    pub fn ready(&self, key: &str, now: std::time::Instant) -> bool {
        self.due.get(key).is_none_or(|(at, _)| *at <= now)
    }

    /// `key` failed at `now`: the delay before it is tried again.
    pub fn failed(&mut self, key: &str, now: std::time::Instant) -> std::time::Duration {
        let delay = match self.due.get(key) {
            Some((_, d)) => (*d * 2).min(Self::MAX),
            None => Self::FIRST,
        };
        self.due.insert(key.to_string(), (now + delay, delay));
        delay
    }

    pub fn succeeded(&mut self, key: &str) {
        self.due.remove(key);
    }

    /// Forgets the objects that are no longer to be written.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.due.retain(|k, _| keep(k));
    }

    /// When the earliest retry is due.
    pub fn next_due(&self) -> Option<std::time::Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }
}

/// What a new subscriber starts from.
pub struct Snapshot {
    pub version: u64,
    pub resources: Vec<Resource>,
    pub changes: broadcast::Receiver<Arc<Delta>>,
}

impl Store {
    /// A store with default mesh settings (root namespace
    /// `quicmesh-system`, permissive by default).
    pub fn new(trust_domain: &str) -> Arc<Self> {
        Self::with_settings(Mesh::new(trust_domain), DEFAULT_ROOT_NAMESPACE)
    }

    pub fn with_settings(mesh: Mesh, root_namespace: &str) -> Arc<Self> {
        let (changes, _) = broadcast::channel(1024);
        let (sync, _) = watch::channel(SyncState::default());
        let sources_synced = Gauge::default();
        sources_synced.set(1);
        Arc::new(Store {
            mesh,
            inner: Mutex::new(Inner {
                index: Index::with_root_namespace(root_namespace),
                resources: BTreeMap::new(),
                version: 0,
            }),
            changes,
            sync,
            objects: watch::channel(0).0,
            sources_synced,
        })
    }

    /// Registers a source whose first full view the config stream must
    /// wait for. Sources call it before they start (a subscriber arriving
    /// in between would otherwise get a snapshot without them). A source
    /// already synced stays synced; registering twice is registering once.
    pub fn expect_sync(&self, source: &str) {
        self.sync.send_if_modified(|s| {
            let added = !s.synced.contains(source) && s.pending.insert(source.to_string());
            self.sources_synced.set(i64::from(s.pending.is_empty()));
            added
        });
    }

    /// Records that `source` has applied its first full view (for the
    /// Kubernetes source: a kind's first successful list). Later calls do
    /// nothing; a source never goes back to unsynced. Returns whether this
    /// was the first call for `source`.
    pub fn mark_synced(&self, source: &str) -> bool {
        let mut all = false;
        let first = self.sync.send_if_modified(|s| {
            let was_pending = s.pending.remove(source);
            let first = s.synced.insert(source.to_string());
            all = was_pending && s.pending.is_empty();
            self.sources_synced.set(i64::from(s.pending.is_empty()));
            first
        });
        if all {
            tracing::info!(last = source, "all sources synced: config is served");
        }
        first
    }

    /// Whether every registered source has given its first full view.
    pub fn is_synced(&self) -> bool {
        self.sync.borrow().pending.is_empty()
    }

    /// The registered sources not synced yet, sorted.
    pub fn pending_sources(&self) -> Vec<String> {
        self.sync.borrow().pending.iter().cloned().collect()
    }

    /// Waits until every registered source is synced (at once if they
    /// are). Take [`Store::subscribe`] after this, not before: the snapshot
    /// and its change receiver are taken together, so nothing is lost.
    pub async fn synced(&self) {
        let mut rx = self.sync.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = rx.wait_for(|s| s.pending.is_empty()).await;
    }

    /// `quicmesh_controller_sources_synced`: 1 when every source is synced,
    /// else 0 (register it; it follows the store).
    pub fn sources_synced_gauge(&self) -> Gauge {
        self.sources_synced.clone()
    }

    pub fn trust_domain(&self) -> &str {
        &self.mesh.trust_domain
    }

    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Applies a change to the index and publishes what it changed.
    /// Returns the delta when anything changed.
    pub fn apply(&self, change: impl FnOnce(&mut Index) -> Dirty) -> Option<Arc<Delta>> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let dirty = change(&mut inner.index);
        self.objects.send_if_modified(|g| {
            let now = inner.index.generation();
            std::mem::replace(g, now) != now
        });
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        let version = inner.version + 1;
        for name in dirty {
            report_route(&inner.index, &name);
            crate::traffic::report(&inner.index, &name);
            match translate::resource(&inner.index, &name, &self.mesh) {
                Some(mut r) => {
                    let same = inner.resources.get(&name).is_some_and(|old| {
                        Resource {
                            version: 0,
                            ..old.clone()
                        } == r
                    });
                    if !same {
                        report_policy(&r);
                        r.version = version;
                        inner.resources.insert(name, r.clone());
                        upserts.push(r);
                    }
                }
                None => {
                    if inner.resources.remove(&name).is_some() {
                        removed.push(name);
                    }
                }
            }
        }
        if upserts.is_empty() && removed.is_empty() {
            return None;
        }
        inner.version = version;
        let delta = Arc::new(Delta {
            version,
            upserts,
            removed,
        });
        tracing::debug!(
            version,
            upserts = delta.upserts.len(),
            removed = delta.removed.len(),
            "config changed"
        );
        // No subscriber is fine.
        let _ = self.changes.send(delta.clone());
        Some(delta)
    }

    /// The current resources and a receiver of every later change, taken
    /// atomically.
    pub fn subscribe(&self) -> Snapshot {
        let inner = self.inner.lock().expect("not poisoned");
        Snapshot {
            version: inner.version,
            resources: inner.resources.values().cloned().collect(),
            changes: self.changes.subscribe(),
        }
    }

    pub fn version(&self) -> u64 {
        self.inner.lock().expect("not poisoned").version
    }

    /// Changes to the objects (any kind), whether or not they change the
    /// proxies' config.
    pub fn object_changes(&self) -> watch::Receiver<u64> {
        self.objects.subscribe()
    }

    /// Reads the index (status, authorization decisions).
    pub fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.inner.lock().expect("not poisoned").index)
    }

    /// The translated resources (admin dump).
    pub fn resources(&self) -> BTreeMap<String, Resource> {
        self.inner.lock().expect("not poisoned").resources.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_object_waits_longer_each_time_and_a_success_forgets_it() {
        let mut r = Retries::default();
        let t0 = std::time::Instant::now();
        assert!(r.ready("a", t0));
        assert_eq!(r.next_due(), None);
        assert_eq!(r.failed("a", t0), Retries::FIRST);
        assert!(!r.ready("a", t0));
        assert!(r.ready("b", t0), "others are not held back");
        assert!(r.ready("a", t0 + Retries::FIRST));
        assert_eq!(r.next_due(), Some(t0 + Retries::FIRST));
        let mut delays = Vec::new();
        for _ in 0..12 {
            delays.push(r.failed("a", t0).as_secs());
        }
        assert_eq!(&delays[..4], [2, 4, 8, 16]);
        assert_eq!(*delays.last().unwrap(), Retries::MAX.as_secs());
        r.succeeded("a");
        assert!(r.ready("a", t0));
        assert_eq!(r.failed("a", t0), Retries::FIRST, "starts over");
        r.retain(|k| k != "a");
        assert_eq!(r.next_due(), None);
    }

    /// A retry due wakes the loop even when nothing changes.
    #[tokio::test(start_paused = true)]
    async fn a_due_retry_is_a_pass_of_its_own() {
        let store = Store::new("cluster.local");
        let mut passes = Passes::start(&store, std::time::Duration::from_secs(300)).await;
        let mut r = Retries::default();
        r.failed("a", std::time::Instant::now());
        let pass = tokio::time::timeout(std::time::Duration::from_secs(5), passes.next(&r))
            .await
            .expect("woken by the retry");
        assert_eq!(pass, Some(Pass::Retry));
    }
    use crate::model::*;

    fn pod(name: &str, ip: &str) -> Object {
        Object::Pod(Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "a".into(),
            labels: Labels::new(),
            annotations: Default::default(),
            service_account: "sa".into(),
            node: Some("n1".into()),
            ips: vec![ip.parse().unwrap()],
            ready: true,
            containers: vec![],
        })
    }

    #[test]
    fn deltas_carry_only_what_changed() {
        let store = Store::new("td");
        let mut sub = store.subscribe();
        assert_eq!(sub.version, 0);
        let d = store.apply(|ix| ix.upsert(pod("p1", "10.0.0.1"))).unwrap();
        assert_eq!(d.version, 1);
        assert_eq!(d.upserts.len(), 1);
        assert_eq!(d.upserts[0].version, 1);
        assert_eq!(*sub.changes.try_recv().unwrap(), *d);
        // Re-applying the same object publishes nothing.
        assert!(store.apply(|ix| ix.upsert(pod("p1", "10.0.0.1"))).is_none());
        // Adding 100 pods, then changing one: the delta has one resource.
        for i in 0..100 {
            store.apply(|ix| ix.upsert(pod(&format!("q{i}"), &format!("10.0.1.{i}"))));
        }
        let d = store.apply(|ix| ix.upsert(pod("q7", "10.0.2.7"))).unwrap();
        assert_eq!((d.upserts.len(), d.removed.len()), (1, 0));
        let d = store
            .apply(|ix| {
                ix.delete(&Key {
                    kind: Kind::Pod,
                    namespace: "a".into(),
                    name: "q7".into(),
                })
            })
            .unwrap();
        assert_eq!(d.removed, ["workload/uid-q7"]);
        let snap = store.subscribe();
        assert_eq!(snap.resources.len(), 100);
        assert_eq!(snap.version, store.version());
    }

    /// Whether `store.synced()` has resolved, after letting it run.
    async fn resolves(store: &Arc<Store>) -> bool {
        let s = store.clone();
        let wait = tokio::spawn(async move { s.synced().await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let done = wait.is_finished();
        wait.abort();
        done
    }

    #[tokio::test]
    async fn a_store_without_sources_is_synced() {
        let store = Store::new("td");
        assert!(store.is_synced());
        assert!(store.pending_sources().is_empty());
        assert_eq!(store.sources_synced_gauge().get(), 1);
        assert!(resolves(&store).await);
    }

    #[tokio::test]
    async fn synced_waits_for_every_registered_source() {
        let store = Store::new("td");
        let gauge = store.sources_synced_gauge();
        store.expect_sync("kube/Pod");
        store.expect_sync("kube/AuthorizationPolicy");
        store.expect_sync("kube/Pod");
        assert!(!store.is_synced());
        assert_eq!(
            store.pending_sources(),
            ["kube/AuthorizationPolicy", "kube/Pod"]
        );
        assert_eq!(gauge.get(), 0);

        let s = store.clone();
        let wait = tokio::spawn(async move { s.synced().await });
        assert!(store.mark_synced("kube/Pod"));
        assert!(!store.mark_synced("kube/Pod"), "only the first call counts");
        tokio::task::yield_now().await;
        assert!(!wait.is_finished());
        assert_eq!(store.pending_sources(), ["kube/AuthorizationPolicy"]);
        assert_eq!(gauge.get(), 0);

        assert!(store.mark_synced("kube/AuthorizationPolicy"));
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("synced() resolves once all are synced")
            .unwrap();
        assert!(store.is_synced());
        assert_eq!(gauge.get(), 1);

        // A synced source stays synced; a new one makes the store wait again.
        store.expect_sync("kube/Pod");
        assert!(store.is_synced());
        store.expect_sync("files");
        assert!(!store.is_synced() && !resolves(&store).await);
        assert_eq!(gauge.get(), 0);
        // Marked before registered: registering it later is a no-op.
        store.mark_synced("files");
        store.expect_sync("files");
        assert!(store.is_synced() && resolves(&store).await);
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn subscribing_after_the_wait_loses_nothing() {
        // Changes applied while unsynced are in the snapshot taken after.
        let store = Store::new("td");
        store.expect_sync("s");
        store.apply(|ix| ix.upsert(pod("p1", "10.0.0.1")));
        store.mark_synced("s");
        let mut snap = store.subscribe();
        assert_eq!((snap.version, snap.resources.len()), (1, 1));
        let d = store.apply(|ix| ix.upsert(pod("p2", "10.0.0.2"))).unwrap();
        assert_eq!(*snap.changes.try_recv().unwrap(), *d);
    }
}
