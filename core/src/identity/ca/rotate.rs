//! The staged rotation of a CA kept in a directory (`quicmesh ca rotate`;
//! the procedure is in `docs/ca.md`). Each stage rewrites the CA's files
//! by atomic renames, checking the CA it writes whole first, so the
//! controller following the directory only ever sees a good CA or the
//! previous one:
//!
//! 1. [`add_root`]: the next CA is kept in `DIR/next/` and the roots it
//!    chains to join `roots.pem`; the signer is unchanged;
//! 2. [`switch`]: the next CA signs (refused unless its roots are in the
//!    bundle already); the previous one is kept in `DIR/previous/`;
//! 3. [`drop_old`]: the bundle is cut to the roots the signer chains to.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use super::{fingerprint, Ca, CaError};

/// Where the next CA waits between [`add_root`] and [`switch`].
pub fn next_dir(dir: &Path) -> PathBuf {
    dir.join("next")
}

/// Where [`switch`] keeps the CA it replaced.
pub fn previous_dir(dir: &Path) -> PathBuf {
    dir.join("previous")
}

/// What a stage did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub signer: String,
    pub roots: Vec<String>,
    pub removed: Vec<String>,
}

fn done(ca: &Ca, removed: Vec<String>) -> Done {
    Done {
        signer: fingerprint(ca.cert_der()),
        roots: ca.roots().iter().map(|r| fingerprint(r)).collect(),
        removed,
    }
}

/// Stage 1: `next` (a new root, or an intermediate with its chain and
/// roots) is staged and its roots added to the bundle of the CA in `dir`.
pub fn add_root(trust_domain: &str, dir: &Path, next: &Ca) -> Result<Done, CaError> {
    let current = Ca::load(trust_domain, dir)?;
    let mut roots: Vec<CertificateDer<'static>> = current.roots().to_vec();
    for r in next.signing_roots() {
        if !roots.contains(r) {
            roots.push(r.clone());
        }
    }
    let updated = current.with_roots(&roots)?;
    next.save(&next_dir(dir))?;
    updated.save(dir)?;
    Ok(done(&updated, vec![]))
}

/// Stage 2: the staged CA signs, with the bundle as it is.
pub fn switch(trust_domain: &str, dir: &Path) -> Result<Done, CaError> {
    let current = Ca::load(trust_domain, dir)?;
    let next = Ca::load(trust_domain, &next_dir(dir)).map_err(|e| {
        CaError::invalid(
            "the next CA (next/)",
            format!("{e}: run the add-root stage first"),
        )
    })?;
    if let Some(r) = next
        .signing_roots()
        .iter()
        .find(|r| !current.roots().contains(r))
    {
        return Err(CaError::invalid(
            "the next CA (next/)",
            format!(
                "it chains to root {}, which is not in the trust bundle yet: run the add-root stage first, and let it reach every proxy",
                fingerprint(r)
            ),
        ));
    }
    let switched = next.with_roots(current.roots())?;
    current.save(&previous_dir(dir))?;
    switched.save(dir)?;
    Ok(done(&switched, vec![]))
}

/// Stage 3: the bundle keeps only the roots the signer chains to.
pub fn drop_old(trust_domain: &str, dir: &Path) -> Result<Done, CaError> {
    let current = Ca::load(trust_domain, dir)?;
    let keep = current.signing_roots().to_vec();
    let removed = current
        .roots()
        .iter()
        .filter(|r| !keep.contains(r))
        .map(|r| fingerprint(r))
        .collect();
    let dropped = current.with_roots(&keep)?;
    dropped.save(dir)?;
    match std::fs::remove_dir_all(next_dir(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CaError::Io {
                path: next_dir(dir).display().to_string(),
                source: e,
            })
        }
        _ => {}
    }
    Ok(done(&dropped, removed))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TD: &str = "cluster.local";

    #[test]
    fn the_three_stages_rewrite_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old = Ca::load_or_generate(TD, d).unwrap();
        let new_root = Ca::generate(TD).unwrap();
        let mid = new_root
            .issue_intermediate(Duration::from_secs(86400))
            .unwrap();
        // Switching before adding the root is refused.
        mid.save(&next_dir(d)).unwrap();
        let e = switch(TD, d).unwrap_err().to_string();
        assert!(e.contains("add-root"), "{e}");

        let a = add_root(TD, d, &mid).unwrap();
        assert_eq!(a.signer, fingerprint(old.cert_der()));
        assert_eq!(a.roots.len(), 2);
        assert_eq!(Ca::load(TD, d).unwrap().cert_der(), old.cert_der());

        let b = switch(TD, d).unwrap();
        let now = Ca::load(TD, d).unwrap();
        assert_eq!(now.cert_der(), mid.cert_der());
        assert_eq!(now.roots().len(), 2);
        assert_eq!(b.signer, fingerprint(mid.cert_der()));
        assert_eq!(
            Ca::load(TD, &previous_dir(d)).unwrap().cert_der(),
            old.cert_der()
        );

        let c = drop_old(TD, d).unwrap();
        assert_eq!(c.removed, [fingerprint(old.cert_der())]);
        let now = Ca::load(TD, d).unwrap();
        assert_eq!(now.roots(), [new_root.cert_der().clone()]);
        assert!(!next_dir(d).exists());
        // Nothing left to drop: the same again.
        assert!(drop_old(TD, d).unwrap().removed.is_empty());
    }
}
