//! The controller's state: the index, the translated resources, and the
//! stream of changes the config server pushes.
//!
//! Sources call [`Store::apply`] with a change to the index; the store
//! re-translates only the resources the change touched, keeps the ones that
//! really changed, bumps the version and broadcasts the delta. The cost of a
//! change is proportional to what it touched, not to the size of the mesh.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use quicmesh_proto::config::Resource;
use tokio::sync::broadcast;

use crate::index::{Dirty, Index};
use crate::translate;

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

pub struct Store {
    trust_domain: String,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Delta>>,
}

/// What a new subscriber starts from.
pub struct Snapshot {
    pub version: u64,
    pub resources: Vec<Resource>,
    pub changes: broadcast::Receiver<Arc<Delta>>,
}

impl Store {
    pub fn new(trust_domain: &str) -> Arc<Self> {
        let (changes, _) = broadcast::channel(1024);
        Arc::new(Store {
            trust_domain: trust_domain.to_string(),
            inner: Mutex::new(Inner {
                index: Index::new(),
                resources: BTreeMap::new(),
                version: 0,
            }),
            changes,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Applies a change to the index and publishes what it changed.
    /// Returns the delta when anything changed.
    pub fn apply(&self, change: impl FnOnce(&mut Index) -> Dirty) -> Option<Arc<Delta>> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let dirty = change(&mut inner.index);
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        let version = inner.version + 1;
        for name in dirty {
            match translate::resource(&inner.index, &name, &self.trust_domain) {
                Some(mut r) => {
                    let same = inner.resources.get(&name).is_some_and(|old| {
                        Resource {
                            version: 0,
                            ..old.clone()
                        } == r
                    });
                    if !same {
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
    use crate::model::*;

    fn pod(name: &str, ip: &str) -> Object {
        Object::Pod(Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "a".into(),
            labels: Labels::new(),
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
}
