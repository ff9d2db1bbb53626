//! The file source: directories of Kubernetes YAML manifests, re-read when
//! they change. One bad document never takes the rest down: its error is
//! logged (file, document, object, field) and counted, and the last good
//! version of that document — or of the whole file, for a YAML syntax error
//! — stays in force.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

use super::manifest::{parse_file, ManifestError};
use crate::model::{Kind, Object};
use crate::store::Store;

/// Kinds the file source owns: a re-read replaces exactly these.
pub const KINDS: [Kind; 14] = [
    Kind::Namespace,
    Kind::ServiceAccount,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Deployment,
    Kind::AuthorizationPolicy,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::Gateway,
    Kind::RequestAuthentication,
    Kind::TrafficPolicy,
    Kind::WorkloadEntry,
    Kind::TrustDomainFederation,
];

/// Reads directories and remembers the last good parse of each document.
#[derive(Default)]
pub struct FileSource {
    dirs: Vec<PathBuf>,
    /// file -> per-document last good object
    last_good: BTreeMap<PathBuf, Vec<Option<Object>>>,
    fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)>,
    /// Files that could never be read or parsed: what they hold is unknown
    /// (maybe a policy), so the view is not complete.
    unread: Vec<PathBuf>,
    /// The JWKS files RequestAuthentications name (`jwksFrom.file`): a
    /// change to one is a change too.
    referenced: Vec<PathBuf>,
    pub errors: Counter,
}

impl FileSource {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        FileSource {
            dirs,
            ..Default::default()
        }
    }

    /// Files whose content has never been read successfully.
    pub fn unread(&self) -> &[PathBuf] {
        &self.unread
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in &self.dirs {
            collect(d, &mut out);
        }
        out.sort();
        out
    }

    /// Re-reads everything if any file changed. Returns the objects now in
    /// force and the errors found, or None when nothing changed.
    pub fn poll(&mut self) -> Option<(Vec<Object>, Vec<ManifestError>)> {
        let files = self.files();
        let fp: Vec<_> = files
            .iter()
            .chain(&self.referenced)
            .map(|f| {
                let m = std::fs::metadata(f).ok();
                (
                    f.clone(),
                    m.as_ref().and_then(|m| m.modified().ok()),
                    m.map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect();
        if fp == self.fingerprint {
            return None;
        }
        self.fingerprint = fp;
        let mut errors = Vec::new();
        let mut current = BTreeMap::new();
        for f in &files {
            let name = f.display().to_string();
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(ManifestError {
                        file: name,
                        doc: 0,
                        object: None,
                        field: String::new(),
                        reason: format!("cannot read: {e}"),
                    });
                    if let Some(prev) = self.last_good.get(f) {
                        current.insert(f.clone(), prev.clone());
                    }
                    continue;
                }
            };
            match parse_file(&text, &name) {
                Err(e) => {
                    errors.push(e);
                    if let Some(prev) = self.last_good.get(f) {
                        current.insert(f.clone(), prev.clone());
                    }
                }
                Ok(parsed) => {
                    let prev = self.last_good.get(f);
                    let docs = parsed
                        .docs
                        .into_iter()
                        .enumerate()
                        .map(|(i, d)| match d {
                            Ok(o) => o,
                            Err(e) => {
                                errors.push(e);
                                prev.and_then(|p| p.get(i).cloned()).flatten()
                            }
                        })
                        .collect();
                    current.insert(f.clone(), docs);
                }
            }
        }
        self.unread = files
            .iter()
            .filter(|f| !current.contains_key(*f))
            .cloned()
            .collect();
        // JWKS files are read on every re-read, relative to the directory
        // of the manifest that names them.
        let mut referenced = Vec::new();
        for (f, docs) in current.iter_mut() {
            for o in docs.iter_mut().flatten() {
                if let Object::RequestAuthentication(ra) = o {
                    read_jwks_files(ra, f, &mut referenced);
                }
            }
        }
        if referenced != self.referenced {
            self.referenced = referenced;
            // Fingerprinted from the next poll on.
            self.fingerprint.clear();
        }
        self.last_good = current;
        self.errors.inc_by(errors.len() as u64);
        let mut objects: BTreeMap<_, Object> = BTreeMap::new();
        for o in self.last_good.values().flatten().flatten() {
            // The first definition of a name wins, as files sort.
            objects.entry(o.key()).or_insert_with(|| o.clone());
        }
        Some((objects.into_values().collect(), errors))
    }
}

/// Makes each `jwksFrom.file` of `ra` absolute (relative to `manifest`'s
/// directory) and reads it, at most [`quicmesh_core::jwt::MAX_JWKS_BYTES`].
fn read_jwks_files(
    ra: &mut crate::model::RequestAuthentication,
    manifest: &Path,
    referenced: &mut Vec<PathBuf>,
) {
    let base = manifest.parent().unwrap_or(Path::new(""));
    let mut files = BTreeMap::new();
    for rule in ra
        .spec
        .get_mut("jwtRules")
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(file) = rule.pointer_mut("/jwksFrom/file") else {
            continue;
        };
        let Some(name) = file.as_str() else {
            continue;
        };
        let path = std::path::absolute(base.join(name)).unwrap_or_else(|_| base.join(name));
        let text = read_bounded(&path, quicmesh_core::jwt::MAX_JWKS_BYTES);
        let key = path.display().to_string();
        *file = serde_json::Value::String(key.clone());
        referenced.push(path);
        files.insert(key, text);
    }
    ra.files = Some(files);
}

fn read_bounded(path: &Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(text)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The file source's name in the store's sync gate.
pub const SYNC_NAME: &str = "files";

/// Feeds the store from `source` until the process ends, re-reading every
/// `interval` when something changed.
///
/// Registers with the store's sync gate ([`SYNC_NAME`]) when called, before
/// the returned future first runs, and is synced once a read (even of no
/// files) has been applied in which every file could be parsed at least
/// once: a file never parsed might hold an AuthorizationPolicy, and serving
/// config without it would fail open.
pub fn run(
    source: FileSource,
    store: Arc<Store>,
    interval: Duration,
) -> impl Future<Output = ()> + Send {
    store.expect_sync(SYNC_NAME);
    feed(source, store, interval)
}

async fn feed(mut source: FileSource, store: Arc<Store>, interval: Duration) {
    loop {
        if let Some((objects, errors)) = source.poll() {
            for e in &errors {
                tracing::warn!(error = %e, "manifest rejected");
            }
            let n = objects.len();
            let delta = store.apply(|ix| ix.replace(&KINDS, objects));
            tracing::info!(
                objects = n,
                errors = errors.len(),
                version = delta.as_ref().map(|d| d.version),
                "manifests read"
            );
        }
        if source.unread().is_empty() {
            store.mark_synced(SYNC_NAME);
        } else if !store.is_synced() {
            tracing::warn!(files = ?source.unread(), "config held: these manifests were never parsed, and might hold policies");
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_edit_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("app.yaml");
        std::fs::write(&f, "kind: Namespace\nmetadata: {name: a}\n---\nkind: ServiceAccount\nmetadata: {name: s, namespace: a}\n").unwrap();
        let mut src = FileSource::new(vec![dir.path().to_path_buf()]);
        let (objs, errs) = src.poll().unwrap();
        assert_eq!((objs.len(), errs.len()), (2, 0));
        assert!(src.poll().is_none(), "nothing changed");

        // The second document turns bad: its last good version stays.
        std::fs::write(&f, "kind: Namespace\nmetadata: {name: a}\n---\nkind: ServiceAccount\nmetadata: {name: Bad!, namespace: a}\n#changed\n").unwrap();
        let (objs, errs) = src.poll().unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains("app.yaml: document 1"),
            "{}",
            errs[0]
        );
        assert!(errs[0].to_string().contains("metadata.name"), "{}", errs[0]);

        // Broken YAML: the whole file's last good version stays.
        std::fs::write(&f, "kind: [\n").unwrap();
        let (objs, errs) = src.poll().unwrap();
        assert_eq!((objs.len(), errs.len()), (2, 1));

        // A removed file removes its objects.
        std::fs::remove_file(&f).unwrap();
        let (objs, _) = src.poll().unwrap();
        assert!(objs.is_empty());
        assert_eq!(src.errors.get(), 2);
    }

    #[tokio::test]
    async fn a_file_that_never_parsed_holds_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "kind: [unclosed\n").unwrap();
        let store = Store::new("td");
        let task = tokio::spawn(run(
            FileSource::new(vec![dir.path().to_path_buf()]),
            store.clone(),
            Duration::from_millis(20),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !store.is_synced(),
            "synced without knowing what p.yaml holds"
        );
        std::fs::write(&f, "kind: Namespace\nmetadata: {name: a}\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), store.synced())
            .await
            .expect("synced once the file parsed");
        task.abort();
    }

    #[tokio::test]
    async fn synced_once_the_first_read_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ns.yaml"),
            "kind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        let empty = tempfile::tempdir().unwrap();
        for (dir, objects) in [(dir.path(), 1), (empty.path(), 0)] {
            let store = Store::new("td");
            let feeding = run(
                FileSource::new(vec![dir.to_path_buf()]),
                store.clone(),
                Duration::from_secs(3600),
            );
            // Registered before it runs.
            assert_eq!(store.pending_sources(), [SYNC_NAME]);
            let task = tokio::spawn(feeding);
            tokio::time::timeout(Duration::from_secs(5), store.synced())
                .await
                .expect("synced after the first read");
            assert_eq!(store.with_index(|ix| ix.len()), objects);
            task.abort();
        }
    }
}
