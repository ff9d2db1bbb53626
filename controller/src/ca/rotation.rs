//! The CA in effect, replaced while the controller runs: the staged
//! rotation of `docs/ca.md`.
//!
//! [`CurrentCa`] holds the signing CA and the trust bundle published to
//! proxies. A new CA (from `--ca-dir` or the CA Secret, [`follow`]) is
//! checked whole ([`Ca::from_parts`]); a bad one is refused, logged and
//! counted, and the last good CA keeps signing. A good one takes effect at
//! once:
//!
//! 1. its roots are published: over the config stream
//!    ([`crate::trust::publish`], the one way the own bundle changes), in
//!    every CA answer, and in the controller's TLS client verification;
//! 2. SVIDs are issued by its signing certificate from then on (the
//!    controller's own serving certificate is reissued at once by
//!    [`crate::server::OwnCert`], which follows [`CurrentCa::subscribe`]);
//! 3. a root the new bundle no longer holds is kept published while an
//!    SVID that chains to it is still valid ([`roots_to_publish`]), and
//!    dropped once the last one has expired: removing a root too early
//!    never breaks live connections, it only takes effect later (logged
//!    with the time, and the `quicmesh_ca_retiring_roots` gauge).
//!
//! What was issued is known for this run of the controller; for SVIDs of
//! a previous run, a root its first CA signs for is assumed to have SVIDs
//! valid for `--svid-ttl` after the start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use quicmesh_core::identity::ca::{certificate_pem, fingerprint, Ca, CaError, CaPem};
use quicmesh_core::identity::{SharedBundles, TrustBundles};
use rustls_pki_types::CertificateDer;

use crate::store::Store;

/// A root no longer in the CA's bundle, still published until `until`
/// (when the last SVID that chains to it expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retiring {
    pub root: CertificateDer<'static>,
    pub until: SystemTime,
}

/// The roots to publish at `now`: those of the CA's bundle, then each root
/// of `published` it dropped that an SVID still valid chains to
/// (`live_until`: the last expiry issued per root, by DER).
pub fn roots_to_publish(
    ca_roots: &[CertificateDer<'static>],
    published: &[CertificateDer<'static>],
    live_until: &HashMap<Vec<u8>, SystemTime>,
    now: SystemTime,
) -> (Vec<CertificateDer<'static>>, Vec<Retiring>) {
    let mut roots = ca_roots.to_vec();
    let mut retiring = Vec::new();
    for r in published {
        if roots.contains(r) {
            continue;
        }
        if let Some(&until) = live_until.get(r.as_ref()) {
            if until > now {
                roots.push(r.clone());
                retiring.push(Retiring {
                    root: r.clone(),
                    until,
                });
            }
        }
    }
    (roots, retiring)
}

/// `quicmesh_ca_*`: what the rotation did.
#[derive(Default, Clone)]
pub struct RotationMetrics {
    /// Reloads by result: applied, refused (a bad CA: the last good one
    /// kept), unreadable (the files or Secret could not be read).
    pub reloads: Family<Vec<(String, String)>, Counter>,
    pub roots: Gauge,
    pub retiring: Gauge,
}

impl RotationMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "quicmesh_ca_reloads",
            "CA reloads by result: applied, refused (bad CA, the last good one kept), unreadable",
            self.reloads.clone(),
        );
        registry.register(
            "quicmesh_ca_trust_bundle_roots",
            "Roots of the own trust domain published to proxies",
            self.roots.clone(),
        );
        registry.register(
            "quicmesh_ca_retiring_roots",
            "Roots removed from the CA's bundle, still published while SVIDs that chain to them are valid",
            self.retiring.clone(),
        );
    }

    fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }
}

struct State {
    signer: Arc<Ca>,
    published: Vec<CertificateDer<'static>>,
    retiring: Vec<Retiring>,
    sequence: u64,
    last_refusal: Option<String>,
}

/// The CA in effect and the bundle published (see the module doc).
pub struct CurrentCa {
    store: Arc<Store>,
    state: RwLock<State>,
    /// The last expiry issued, per root (DER) it chains to.
    issued: Mutex<HashMap<Vec<u8>, SystemTime>>,
    bundles: SharedBundles,
    changed: tokio::sync::watch::Sender<u64>,
    pub metrics: RotationMetrics,
}

impl CurrentCa {
    /// `ca` in effect, its bundle published; SVIDs of a previous run are
    /// assumed valid for `svid_ttl` more.
    pub fn new(ca: Ca, store: Arc<Store>, svid_ttl: Duration) -> Result<Self, CaError> {
        let until = SystemTime::now() + svid_ttl;
        let issued = ca
            .signing_roots()
            .iter()
            .map(|r| (r.to_vec(), until))
            .collect();
        let mut bundles = TrustBundles::new();
        bundles.insert(ca.trust_domain(), ca.roots())?;
        let current = CurrentCa {
            store,
            state: RwLock::new(State {
                published: Vec::new(),
                signer: Arc::new(ca),
                retiring: Vec::new(),
                sequence: 0,
                last_refusal: None,
            }),
            issued: Mutex::new(issued),
            bundles: SharedBundles::new(bundles),
            changed: tokio::sync::watch::channel(0).0,
            metrics: RotationMetrics::default(),
        };
        current.republish(SystemTime::now(), true);
        Ok(current)
    }

    /// The CA that signs now.
    pub fn signer(&self) -> Arc<Ca> {
        self.state.read().expect("not poisoned").signer.clone()
    }

    /// The roots published now (the CA's, and those retiring).
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.state.read().expect("not poisoned").published.clone()
    }

    /// The published roots in PEM: the trust bundle of every CA answer
    /// and of the root ConfigMap.
    pub fn roots_pem(&self) -> String {
        self.roots().iter().map(|r| certificate_pem(r)).collect()
    }

    /// The bundles the controller verifies its clients with (follows the
    /// published roots).
    pub fn bundles(&self) -> SharedBundles {
        self.bundles.clone()
    }

    /// Changes with every change of signer or published roots.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Records an SVID valid until `not_after`, issued by `by`.
    pub fn issued(&self, by: &Ca, not_after: SystemTime) {
        let mut issued = self.issued.lock().expect("not poisoned");
        for r in by.signing_roots() {
            let e = issued.entry(r.to_vec()).or_insert(not_after);
            *e = (*e).max(not_after);
        }
    }

    /// Puts the CA of `pem` in effect if it differs from the one in effect
    /// and passes every check; returns whether it changed anything. A bad
    /// one is refused (logged and counted once per distinct CA) and the CA
    /// in effect stays.
    pub fn offer(&self, pem: &CaPem) -> Result<bool, CaError> {
        let td = {
            let s = self.state.read().expect("not poisoned");
            if s.signer.parts() == pem {
                return Ok(false);
            }
            s.signer.trust_domain().to_string()
        };
        match Ca::from_parts(&td, pem) {
            Ok(ca) => {
                self.install(ca);
                Ok(true)
            }
            Err(e) => {
                let msg = e.to_string();
                let mut s = self.state.write().expect("not poisoned");
                if s.last_refusal.as_deref() != Some(&msg) {
                    tracing::error!(error = %msg, signer = %fingerprint(s.signer.cert_der()), "new CA refused; the current one keeps signing");
                    self.metrics.reload("refused");
                    s.last_refusal = Some(msg);
                }
                Err(e)
            }
        }
    }

    /// Puts `ca` (checked) in effect.
    pub fn install(&self, ca: Ca) {
        let old = self.signer();
        let new_root = ca.signing_roots().iter().any(|r| !self.roots().contains(r));
        tracing::info!(
            signer = %fingerprint(ca.cert_der()),
            previous_signer = %fingerprint(old.cert_der()),
            intermediates = ca.intermediates().len(),
            roots = ca.roots().len(),
            signing_roots = ?ca.signing_roots().iter().map(|r| fingerprint(r)).collect::<Vec<_>>(),
            "CA reloaded"
        );
        if new_root {
            tracing::warn!(signer = %fingerprint(ca.cert_der()), "the new signing CA chains to a root proxies were not given before: proxies refuse its SVIDs until the bundle reaches them; add the root first (docs/ca.md)");
        }
        {
            let mut s = self.state.write().expect("not poisoned");
            s.signer = Arc::new(ca);
            s.last_refusal = None;
        }
        self.metrics.reload("applied");
        self.republish(SystemTime::now(), true);
    }

    /// Drops retiring roots whose last SVID expired by `now`; returns
    /// whether it dropped any. Called periodically.
    pub fn expire_retiring(&self, now: SystemTime) -> bool {
        let due = self
            .state
            .read()
            .expect("not poisoned")
            .retiring
            .iter()
            .any(|r| r.until <= now);
        due && self.republish(now, false)
    }

    /// Publishes the roots due at `now`; returns whether they changed.
    fn republish(&self, now: SystemTime, signer_changed: bool) -> bool {
        let issued = self.issued.lock().expect("not poisoned").clone();
        let mut s = self.state.write().expect("not poisoned");
        let (roots, retiring) = roots_to_publish(s.signer.roots(), &s.published, &issued, now);
        for r in &retiring {
            if !s.retiring.iter().any(|o| o.root == r.root) {
                tracing::warn!(root = %fingerprint(&r.root), until = ?r.until, "root removed from the CA's bundle is kept published until the last SVID that chains to it expires");
            }
        }
        for r in &s.published {
            if !roots.contains(r) {
                tracing::info!(root = %fingerprint(r), "root retired: no longer trusted by proxies");
            }
        }
        let changed = roots != s.published;
        if changed {
            s.sequence += 1;
            let td = s.signer.trust_domain().to_string();
            if let Err(e) = self.bundles.replace_domain(&td, &roots) {
                // Checked as trust anchors when the CA was built.
                tracing::error!(error = %e, "trust bundle not usable for client verification");
            }
            crate::trust::publish(&self.store, &td, &roots, s.sequence);
            tracing::info!(
                trust_domain = %td,
                roots = roots.len(),
                retiring = retiring.len(),
                sequence = s.sequence,
                fingerprints = ?roots.iter().map(|r| fingerprint(r)).collect::<Vec<_>>(),
                "trust bundle published"
            );
        }
        self.metrics.roots.set(roots.len() as i64);
        self.metrics.retiring.set(retiring.len() as i64);
        s.published = roots;
        s.retiring = retiring;
        let sequence = s.sequence;
        drop(s);
        if changed || signer_changed {
            self.changed
                .send_modify(|v| *v = v.wrapping_add(1).max(sequence));
        }
        changed
    }

    /// What /status shows.
    pub fn status(&self) -> serde_json::Value {
        let s = self.state.read().expect("not poisoned");
        serde_json::json!({
            "signer": fingerprint(s.signer.cert_der()),
            "signerValidUntil": humantime_secs(s.signer.valid_until()),
            "intermediates": s.signer.intermediates().len(),
            "signingRoots": s.signer.signing_roots().iter().map(|r| fingerprint(r)).collect::<Vec<_>>(),
            "roots": s.published.iter().map(|r| fingerprint(r)).collect::<Vec<_>>(),
            "retiring": s.retiring.iter().map(|r| serde_json::json!({
                "root": fingerprint(&r.root),
                "until": humantime_secs(r.until),
            })).collect::<Vec<_>>(),
            "bundleSequence": s.sequence,
            "lastRefusal": s.last_refusal,
        })
    }
}

/// Seconds since the Unix epoch.
fn humantime_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Follows the CA kept in `what` (read by `read`, every `interval`): a
/// change is offered to `current` once two reads in a row agree (a
/// writer midway through its files is not taken for a bad CA). Retiring
/// roots are expired on the same tick. Runs for ever.
pub async fn follow<F, Fut>(current: Arc<CurrentCa>, what: String, interval: Duration, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<CaPem>>,
{
    let mut previous: Option<CaPem> = None;
    let mut read_error: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        current.expire_retiring(SystemTime::now());
        let pem = match read().await {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{e:#}");
                if read_error.as_deref() != Some(&msg) {
                    tracing::warn!(source = %what, error = %msg, "CA not readable; the current one keeps signing");
                    current.metrics.reload("unreadable");
                    read_error = Some(msg);
                }
                continue;
            }
        };
        read_error = None;
        if previous.as_ref() == Some(&pem) {
            // Errors are logged and counted by `offer`.
            let _ = current.offer(&pem);
        }
        previous = Some(pem);
    }
}

#[cfg(test)]
mod tests;
