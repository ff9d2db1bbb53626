//! Where a proxy's SVIDs come from, cached per identity and renewed at
//! half-life (halfway through the validity left when it arrived: see
//! `Svid::refresh_at`).
//!
//! Sources: the controller's CA (production), a SPIFFE Workload API (a
//! SPIRE agent, `--svid-source workload-api:PATH`), PEM files on disk
//! (`--svid-dir`), or — development only — a CA the proxy holds itself
//! (`--dev-ca-dir`). A failed fetch is retried with backoff; while a cached
//! SVID is still valid it keeps being used.
//!
//! The Workload API pushes its SVIDs ([`super::workload_api`]): for it
//! there is nothing to fetch, renew or back off from. Each ask reads the
//! last answer the agent sent (a lock and a map look-up), so a rotated SVID
//! serves from the next ask on, and an identity the agent does not offer
//! is unavailable at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::ca::Ca;
use super::workload_api::WorkloadApi;
use super::{SharedBundles, SpiffeId, Svid};
use crate::control::client::ControllerClient;

pub enum SvidSource {
    Files {
        dir: PathBuf,
    },
    DevCa {
        ca: Box<Ca>,
        lifetime: Duration,
    },
    Controller(Arc<ControllerClient>),
    /// Its [`WorkloadApi::run`] is the caller's to spawn; its bundles
    /// should be the cert manager's.
    WorkloadApi(Arc<WorkloadApi>),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} is not a workload identity")]
    NotWorkload(SpiffeId),
    #[error("getting an SVID for {id}: {reason}")]
    Load { id: SpiffeId, reason: String },
    #[error("SVID for {want} holds {got}")]
    Mismatch { want: SpiffeId, got: SpiffeId },
    #[error("SVID for {id} unavailable; next attempt in {retry_in:?} (last error: {reason})")]
    Backoff {
        id: SpiffeId,
        retry_in: Duration,
        reason: String,
    },
}

/// The last SVID issued for an identity, and the last fetch error.
#[derive(Default, Clone)]
struct Held {
    svid: Option<Arc<Svid>>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Entry {
    svid: Option<Arc<Svid>>,
    /// When `svid` is to be replaced.
    refresh_at: Option<SystemTime>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

pub struct CertManager {
    source: SvidSource,
    bundles: SharedBundles,
    /// One lock per identity: concurrent first uses wait for one fetch.
    entries: Mutex<HashMap<SpiffeId, Arc<tokio::sync::Mutex<Entry>>>>,
    /// What each identity holds, readable while a fetch is under way
    /// (readiness asks without waiting for the CA).
    held: Mutex<HashMap<SpiffeId, Held>>,
    pub on_fetch: Box<dyn Fn(&str) + Send + Sync>,
}

impl CertManager {
    pub fn new(source: SvidSource, bundles: impl Into<SharedBundles>) -> Self {
        CertManager {
            source,
            bundles: bundles.into(),
            entries: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            on_fetch: Box::new(|_| {}),
        }
    }

    /// The proxy's trust bundles (shared: clones see replacements).
    pub fn bundles(&self) -> SharedBundles {
        self.bundles.clone()
    }

    /// The current SVID of `id`: fetched on first use, renewed once past
    /// half its lifetime, with exponential backoff (200 ms to 60 s) on failure.
    pub async fn svid(&self, id: &SpiffeId) -> Result<Arc<Svid>, IdentityError> {
        if let SvidSource::WorkloadApi(w) = &self.source {
            return self.pushed(w, id);
        }
        let slot = self
            .entries
            .lock()
            .expect("not poisoned")
            .entry(id.clone())
            .or_default()
            .clone();
        let mut e = slot.lock().await;
        let now = SystemTime::now();
        if let (Some(s), Some(at)) = (&e.svid, e.refresh_at) {
            if now < at {
                return Ok(s.clone());
            }
        }
        let usable = e.svid.clone().filter(|s| now < s.not_after);
        if let Some(at) = e.retry_at {
            if Instant::now() < at {
                return usable.ok_or_else(|| IdentityError::Backoff {
                    id: id.clone(),
                    retry_in: at - Instant::now(),
                    reason: e.last_error.clone(),
                });
            }
        }
        match self.fetch(id).await {
            Ok(s) => {
                let s = Arc::new(s);
                tracing::info!(identity = %id, expires = ?s.not_after, "SVID issued");
                (self.on_fetch)("ok");
                self.hold(id, |h| {
                    h.svid = Some(s.clone());
                    h.last_error = None;
                });
                *e = Entry {
                    refresh_at: Some(s.refresh_at(SystemTime::now())),
                    svid: Some(s.clone()),
                    ..Entry::default()
                };
                Ok(s)
            }
            Err(err) => {
                e.failures += 1;
                let wait = backoff(e.failures);
                e.retry_at = Some(Instant::now() + wait);
                e.last_error = err.to_string();
                tracing::warn!(identity = %id, error = %err, retry_in = ?wait, "SVID fetch failed");
                (self.on_fetch)("error");
                self.hold(id, |h| h.last_error = Some(err.to_string()));
                usable.ok_or(err)
            }
        }
    }

    /// The SVID the Workload API last sent for `id`; what is held follows
    /// it (a withdrawn SVID is no longer held).
    fn pushed(&self, w: &WorkloadApi, id: &SpiffeId) -> Result<Arc<Svid>, IdentityError> {
        match w.svid(id, SystemTime::now()) {
            Ok(s) => {
                self.hold(id, |h| {
                    h.svid = Some(s.clone());
                    h.last_error = None;
                });
                Ok(s)
            }
            Err(reason) => {
                self.hold(id, |h| {
                    h.svid = None;
                    h.last_error = Some(reason.clone());
                });
                Err(IdentityError::Load {
                    id: id.clone(),
                    reason,
                })
            }
        }
    }

    fn hold(&self, id: &SpiffeId, f: impl FnOnce(&mut Held)) {
        f(self
            .held
            .lock()
            .expect("not poisoned")
            .entry(id.clone())
            .or_default());
    }

    /// Every SVID held now, for the admin endpoint: identity, validity,
    /// the issuer of each certificate of the chain (by fingerprint) and the
    /// chain in PEM. No keys.
    pub fn dump(&self) -> Vec<serde_json::Value> {
        let held = self.held.lock().expect("not poisoned");
        let mut out: Vec<_> = held
            .iter()
            .filter_map(|(id, h)| h.svid.as_ref().map(|s| (id, s)))
            .map(|(id, s)| {
                let secs = |t: SystemTime| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                };
                serde_json::json!({
                    "identity": id.as_str(),
                    "notBefore": secs(s.not_before),
                    "notAfter": secs(s.not_after),
                    "chain": s.chain.iter().map(|c| super::ca::fingerprint(c)).collect::<Vec<_>>(),
                    "chainPem": s.chain.iter().map(|c| super::ca::certificate_pem(c)).collect::<String>(),
                })
            })
            .collect();
        out.sort_by(|a, b| a["identity"].as_str().cmp(&b["identity"].as_str()));
        out
    }

    /// Each identity held and when its SVID expires, sorted (for the
    /// expiry gauge).
    pub fn expiries(&self) -> Vec<(String, SystemTime)> {
        let held = self.held.lock().expect("not poisoned");
        let mut out: Vec<_> = held
            .iter()
            .filter_map(|(id, h)| Some((id.as_str().to_string(), h.svid.as_ref()?.not_after)))
            .collect();
        out.sort();
        out
    }

    /// `quicmesh_svid_expiration_timestamp_seconds{identity}`, read from
    /// the SVIDs held at each scrape.
    pub fn register_expiry(self: &Arc<Self>, reg: &mut prometheus_client::registry::Registry) {
        reg.register_collector(Box::new(Expiries(self.clone())));
    }

    /// The SVID of `id` held now (maybe due for renewal, maybe expired),
    /// without asking the source or waiting for a fetch under way.
    pub fn cached(&self, id: &SpiffeId) -> Option<Arc<Svid>> {
        self.held
            .lock()
            .expect("not poisoned")
            .get(id)
            .and_then(|h| h.svid.clone())
    }

    /// Whether `id` holds an SVID valid at `now`; if not, why (for
    /// readiness: no SVID issued yet, or the one held expired, with the
    /// last fetch error).
    pub fn check_valid(&self, id: &SpiffeId, now: SystemTime) -> Result<(), String> {
        let held = self
            .held
            .lock()
            .expect("not poisoned")
            .get(id)
            .cloned()
            .unwrap_or_default();
        let why = match &held.svid {
            Some(s) if now < s.not_after => return Ok(()),
            Some(_) => format!("the SVID of {id} has expired"),
            None => format!("no SVID for {id} yet"),
        };
        Err(match held.last_error {
            // Bounded: the reason ends up in a probe's answer.
            Some(e) => format!("{why}; last error: {}", truncate(&e, 200)),
            None => why,
        })
    }

    /// When the cached SVID of `id` is due for renewal (None if there is none).
    pub async fn refresh_time(&self, id: &SpiffeId) -> Option<SystemTime> {
        let slot = self
            .entries
            .lock()
            .expect("not poisoned")
            .get(id)
            .cloned()?;
        let e = slot.lock().await;
        e.refresh_at
    }

    /// Keeps the SVID of `id` renewed at half-life until `stop`, for an
    /// identity nothing else asks for on a schedule (a node's own: it
    /// authenticates the config stream only when that reconnects, and
    /// must be valid then). Failures are logged and backed off by
    /// [`svid`](Self::svid); the SVID held serves until it expires.
    pub async fn keep_renewed(&self, id: &SpiffeId, stop: &tokio_util::sync::CancellationToken) {
        loop {
            let _ = tokio::select! {
                r = self.svid(id) => r,
                _ = stop.cancelled() => return,
            };
            let wait = self
                .refresh_time(id)
                .await
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Lets the next [`svid`](Self::svid) call for `id` ask the source at
    /// once instead of waiting out the backoff: for when there is news that
    /// the source may now answer (the controller is reachable again, or
    /// pushed config that may name the pod it refused to sign for). A fetch
    /// already under way is left alone. The failure count is kept, so a
    /// source that still fails backs off as long as before.
    pub fn expedite(&self, id: &SpiffeId) {
        let slot = self.entries.lock().expect("not poisoned").get(id).cloned();
        if let Some(slot) = slot {
            if let Ok(mut e) = slot.try_lock() {
                e.retry_at = None;
            }
        }
    }

    async fn fetch(&self, id: &SpiffeId) -> Result<Svid, IdentityError> {
        let load_err = |reason: String| IdentityError::Load {
            id: id.clone(),
            reason,
        };
        let svid = match &self.source {
            SvidSource::Files { dir } => {
                let (ns, sa) = id
                    .namespace_and_service_account()
                    .map_err(|_| IdentityError::NotWorkload(id.clone()))?;
                let d = dir.join(ns).join(sa);
                Svid::load(&d.join("cert.pem"), &d.join("key.pem"))
                    .map_err(|e| load_err(e.to_string()))?
            }
            SvidSource::DevCa { ca, lifetime } => ca
                .mint(id, *lifetime)
                .map_err(|e| load_err(e.to_string()))?,
            SvidSource::Controller(c) => c.sign(id, None).await.map_err(load_err)?,
            // Pushed, never fetched: `svid` reads it before it gets here.
            SvidSource::WorkloadApi(_) => {
                return Err(load_err(
                    "the Workload API's SVIDs are pushed, never fetched".into(),
                ))
            }
        };
        if &svid.id != id {
            return Err(IdentityError::Mismatch {
                want: id.clone(),
                got: svid.id,
            });
        }
        Ok(svid)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How long to wait after the `failures`-th failure in a row: 200 ms,
/// 400 ms, ... doubling up to 60 s.
fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * (1u32 << failures.clamp(1, 10))).min(Duration::from_secs(60))
}

/// The expiry gauge of every SVID a [`CertManager`] holds.
struct Expiries(Arc<CertManager>);

impl std::fmt::Debug for Expiries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expiries")
    }
}

impl prometheus_client::collector::Collector for Expiries {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut family = encoder.encode_descriptor(
            "quicmesh_svid_expiration_timestamp_seconds",
            "When each SVID held expires (seconds since the epoch), by identity; alert on time() getting close",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (identity, at) in self.0.expiries() {
            let secs = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            let labels = [("identity", identity.as_str())];
            ConstGauge::new(secs).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_200ms_to_a_minute() {
        let secs: Vec<f64> = (1..=12).map(|n| backoff(n).as_secs_f64()).collect();
        assert_eq!(
            secs,
            [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60.0, 60.0, 60.0]
        );
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }

    /// An identity source that fails until its files appear: the failure
    /// backs off, `expedite` lets the next call try at once, and a success
    /// clears the backoff.
    #[tokio::test]
    async fn a_failed_fetch_backs_off_until_expedited() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("cluster.local").unwrap();
        let id = SpiffeId::workload("cluster.local", "shop", "web").unwrap();
        let certs = CertManager::new(
            SvidSource::Files {
                dir: dir.path().to_path_buf(),
            },
            crate::identity::TrustBundles::new(),
        );
        let e = certs.svid(&id).await.unwrap_err();
        assert!(matches!(e, IdentityError::Load { .. }), "{e}");
        let why = certs.check_valid(&id, SystemTime::now()).unwrap_err();
        assert!(
            why.starts_with("no SVID for spiffe://cluster.local/ns/shop/sa/web yet; last error:"),
            "{why}"
        );
        assert!(certs.cached(&id).is_none());
        // Within the backoff the source is not asked again.
        let e = certs.svid(&id).await.unwrap_err();
        assert!(matches!(e, IdentityError::Backoff { .. }), "{e}");

        let svid = ca.mint(&id, Duration::from_secs(3600)).unwrap();
        let d = dir.path().join("shop/web");
        std::fs::create_dir_all(&d).unwrap();
        let (cert, key) = crate::identity::ca::svid_to_pem(&svid);
        std::fs::write(d.join("cert.pem"), cert).unwrap();
        std::fs::write(d.join("key.pem"), key).unwrap();
        let e = certs.svid(&id).await.unwrap_err();
        assert!(
            matches!(e, IdentityError::Backoff { .. }),
            "asked again within the backoff: {e}"
        );

        certs.expedite(&id);
        let got = certs.svid(&id).await.unwrap();
        assert_eq!(got.id, id);
        assert!(Arc::ptr_eq(&got, &certs.cached(&id).unwrap()));
        assert_eq!(certs.check_valid(&id, SystemTime::now()), Ok(()));
        let later = got.not_after + Duration::from_secs(1);
        let why = certs.check_valid(&id, later).unwrap_err();
        assert!(why.contains("has expired"), "{why}");
        // Cached from now on, even though the files go away.
        std::fs::remove_dir_all(&d).unwrap();
        assert!(Arc::ptr_eq(&got, &certs.svid(&id).await.unwrap()));
        // Expediting an identity never asked for is harmless.
        certs.expedite(&SpiffeId::workload("cluster.local", "shop", "other").unwrap());
    }
}
