//! Where ztunnel's workload SVIDs come from, cached per identity and renewed
//! at half-life.
//!
//! Sources: PEM files on disk (`--svid-dir`), or — development only — a CA
//! ztunnel holds itself (`--dev-ca-dir`). The controller's CA is the
//! production source (its own issue).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};

pub enum SvidSource {
    Files { dir: PathBuf },
    DevCa { ca: Box<Ca>, lifetime: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} is not a workload identity")]
    NotWorkload(SpiffeId),
    #[error("loading SVID for {id}: {reason}")]
    Load { id: SpiffeId, reason: String },
    #[error("SVID file for {want} holds {got}")]
    Mismatch { want: SpiffeId, got: SpiffeId },
}

pub struct CertManager {
    source: SvidSource,
    bundles: Arc<TrustBundles>,
    cache: Mutex<HashMap<SpiffeId, Arc<Svid>>>,
}

impl CertManager {
    pub fn new(source: SvidSource, bundles: Arc<TrustBundles>) -> Self {
        CertManager {
            source,
            bundles,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn bundles(&self) -> Arc<TrustBundles> {
        self.bundles.clone()
    }

    /// The current SVID of `id`, fetched on first use and renewed once past
    /// half its lifetime.
    pub fn svid(&self, id: &SpiffeId) -> Result<Arc<Svid>, IdentityError> {
        if let Some(s) = self.cache.lock().expect("not poisoned").get(id) {
            if SystemTime::now() < s.refresh_at() {
                return Ok(s.clone());
            }
        }
        let fresh = Arc::new(self.fetch(id)?);
        tracing::info!(identity = %id, expires = ?fresh.not_after, "SVID issued");
        self.cache
            .lock()
            .expect("not poisoned")
            .insert(id.clone(), fresh.clone());
        Ok(fresh)
    }

    fn fetch(&self, id: &SpiffeId) -> Result<Svid, IdentityError> {
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
