//! Where ztunnel's SVIDs come from, cached per identity and renewed at
//! half-life.
//!
//! Sources: the controller's CA (production), PEM files on disk
//! (`--svid-dir`), or — development only — a CA ztunnel holds itself
//! (`--dev-ca-dir`). A failed fetch is retried with backoff; while a cached
//! SVID is still valid it keeps being used.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};

use crate::controller::ControllerClient;

pub enum SvidSource {
    Files { dir: PathBuf },
    DevCa { ca: Box<Ca>, lifetime: Duration },
    Controller(Arc<ControllerClient>),
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

#[derive(Default)]
struct Entry {
    svid: Option<Arc<Svid>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

pub struct CertManager {
    source: SvidSource,
    bundles: Arc<TrustBundles>,
    /// One lock per identity: concurrent first uses wait for one fetch.
    entries: Mutex<HashMap<SpiffeId, Arc<tokio::sync::Mutex<Entry>>>>,
    pub on_fetch: Box<dyn Fn(&str) + Send + Sync>,
}

impl CertManager {
    pub fn new(source: SvidSource, bundles: Arc<TrustBundles>) -> Self {
        CertManager {
            source,
            bundles,
            entries: Mutex::new(HashMap::new()),
            on_fetch: Box::new(|_| {}),
        }
    }

    pub fn bundles(&self) -> Arc<TrustBundles> {
        self.bundles.clone()
    }

    /// The current SVID of `id`: fetched on first use, renewed once past
    /// half its lifetime, with exponential backoff (200 ms to 60 s) on failure.
    pub async fn svid(&self, id: &SpiffeId) -> Result<Arc<Svid>, IdentityError> {
        let slot = self
            .entries
            .lock()
            .expect("not poisoned")
            .entry(id.clone())
            .or_default()
            .clone();
        let mut e = slot.lock().await;
        let now = SystemTime::now();
        if let Some(s) = &e.svid {
            if now < s.refresh_at() {
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
                *e = Entry {
                    svid: Some(s.clone()),
                    ..Entry::default()
                };
                Ok(s)
            }
            Err(err) => {
                e.failures += 1;
                // 200 ms, 400 ms, ... up to 60 s.
                let wait = (Duration::from_millis(100) * (1 << e.failures.min(10)))
                    .min(Duration::from_secs(60));
                e.retry_at = Some(Instant::now() + wait);
                e.last_error = err.to_string();
                tracing::warn!(identity = %id, error = %err, retry_in = ?wait, "SVID fetch failed");
                (self.on_fetch)("error");
                usable.ok_or(err)
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
