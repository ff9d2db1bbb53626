use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::ca::{Ca, CaPem};
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::config::resource;

use super::*;
use crate::store::Store;

const TD: &str = "cluster.local";

/// The roots of the own bundle pushed to proxies, and its sequence.
fn pushed(store: &Store) -> (Vec<Vec<u8>>, u64) {
    let r = store.resources();
    let Some(resource::Kind::TrustBundle(b)) = &r[&format!("bundle/{TD}")].kind else {
        panic!("{r:?}")
    };
    (b.roots.clone(), b.sequence)
}

fn der(ca: &Ca) -> Vec<u8> {
    ca.cert_der().to_vec()
}

fn reloads(c: &CurrentCa, result: &str) -> u64 {
    c.metrics
        .reloads
        .get_or_create(&vec![("result".into(), result.into())])
        .get()
}

/// `pem` with `roots` as its bundle.
fn with_roots(pem: &CaPem, roots: &[&Ca]) -> CaPem {
    let mut p = pem.clone();
    p.roots = Some(roots.iter().map(|r| r.cert_pem()).collect());
    p
}

#[test]
fn a_dropped_root_stays_while_svids_chain_to_it() {
    let (a, b) = (Ca::generate(TD).unwrap(), Ca::generate(TD).unwrap());
    let now = SystemTime::now();
    let live: HashMap<_, _> = [(der(&a), now + Duration::from_secs(60))].into();
    let (ra, rb) = (a.cert_der().clone(), b.cert_der().clone());
    let (both, only_a, only_b) = (
        vec![ra.clone(), rb.clone()],
        vec![ra.clone()],
        vec![rb.clone()],
    );
    // Still in the bundle: nothing retiring.
    let (roots, retiring) = roots_to_publish(&both, &only_a, &live, now);
    assert_eq!((roots.len(), retiring.len()), (2, 0));
    // Dropped with a live SVID: kept, after the CA's own.
    let (roots, retiring) = roots_to_publish(&only_b, &both, &live, now);
    assert_eq!(roots, [rb, ra]);
    assert_eq!(retiring[0].until, now + Duration::from_secs(60));
    // Once it expired, or never issued: gone.
    let later = now + Duration::from_secs(61);
    let (roots, _) = roots_to_publish(&only_b, &both, &live, later);
    assert_eq!(roots, only_b);
    let (roots, _) = roots_to_publish(&only_b, &both, &HashMap::new(), now);
    assert_eq!(roots, only_b);
}

/// The three stages, each taking effect: published (config stream,
/// client verification, CA answers), signer switched, old root retired
/// after its last SVID; a bad CA changes nothing and is counted.
#[tokio::test]
async fn the_three_stages_take_effect_and_a_bad_ca_changes_nothing() {
    let store = Store::new(TD);
    let old = Ca::generate(TD).unwrap();
    let ttl = Duration::from_secs(2);
    let current = Arc::new(
        CurrentCa::new(Ca::from_parts(TD, old.parts()).unwrap(), store.clone(), ttl).unwrap(),
    );
    let mut changes = current.subscribe();
    assert_eq!(pushed(&store), (vec![der(&old)], 1));

    // (a) the new root (offline; its intermediate signs later) joins the bundle.
    let new_root = Ca::generate(TD).unwrap();
    let next = new_root
        .issue_intermediate(Duration::from_secs(86400))
        .unwrap();
    assert!(current
        .offer(&with_roots(old.parts(), &[&old, &new_root]))
        .unwrap());
    assert_eq!(pushed(&store), (vec![der(&old), der(&new_root)], 2));
    assert_eq!(
        current.roots_pem(),
        format!("{}{}", old.cert_pem(), new_root.cert_pem())
    );
    assert!(current.bundles().load().get(TD).unwrap().len() == 2);
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(!current
        .offer(&with_roots(old.parts(), &[&old, &new_root]))
        .unwrap());

    // A bad CA (the new intermediate's certificate with the old key):
    // refused, counted once, nothing changes.
    let mut bad = with_roots(next.parts(), &[&old, &new_root]);
    bad.key = old.key_pem().into();
    assert!(current.offer(&bad).is_err());
    assert!(current.offer(&bad).is_err());
    assert_eq!(reloads(&current, "refused"), 1);
    assert_eq!(current.signer().cert_der(), old.cert_der());
    assert!(!changes.has_changed().unwrap());

    // An SVID from the old signer, live for a while.
    let id = SpiffeId::workload(TD, "shop", "web").unwrap();
    let svid = current.signer().mint(&id, ttl * 10).unwrap();
    current.issued(&old, svid.not_after);

    // (b) switch: the intermediate signs, the bundle is the same.
    assert!(current
        .offer(&with_roots(next.parts(), &[&old, &new_root]))
        .unwrap());
    assert_eq!(current.signer().cert_der(), next.cert_der());
    assert_eq!(
        current.signer().signing_roots(),
        [new_root.cert_der().clone()]
    );
    assert_eq!(pushed(&store).1, 2);
    assert!(changes.has_changed().unwrap());

    // (c) drop the old root: kept while the old SVID is valid.
    assert!(current
        .offer(&with_roots(next.parts(), &[&new_root]))
        .unwrap());
    assert_eq!(pushed(&store).0, vec![der(&new_root), der(&old)]);
    assert_eq!(current.metrics.retiring.get(), 1);
    // Past what this run's start assumed, the SVID issued since still holds it.
    assert!(!current.expire_retiring(SystemTime::now() + ttl * 2));
    assert!(current.expire_retiring(svid.not_after + Duration::from_secs(1)));
    assert_eq!(pushed(&store), (vec![der(&new_root)], 4));
    assert_eq!(current.metrics.retiring.get(), 0);
    assert_eq!(current.metrics.roots.get(), 1);
    assert_eq!(reloads(&current, "applied"), 3);
    let status = current.status();
    assert_eq!(status["roots"].as_array().unwrap().len(), 1);
    assert_eq!(status["intermediates"], 1);
}

/// Waits (bounded) for `f`.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--ca-dir` is followed: each stage written as files takes effect;
/// files that make a bad CA keep the last good one, counted.
#[tokio::test]
async fn the_ca_dir_is_followed_and_a_bad_edit_keeps_the_last_good_ca() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(TD);
    let old = Ca::load_or_generate(TD, dir.path()).unwrap();
    let current = Arc::new(
        CurrentCa::new(
            Ca::load(TD, dir.path()).unwrap(),
            store.clone(),
            Duration::from_secs(1),
        )
        .unwrap(),
    );
    let path = dir.path().to_path_buf();
    let task = tokio::spawn(follow(
        current.clone(),
        path.display().to_string(),
        Duration::from_millis(20),
        move || {
            let path = path.clone();
            async move { Ok(CaPem::read(&path)?) }
        },
    ));
    let new_root = Ca::generate(TD).unwrap();
    // (a)
    with_roots(old.parts(), &[&old, &new_root])
        .write(dir.path())
        .unwrap();
    until("the new root published", || pushed(&store).0.len() == 2).await;
    // A key that is not the certificate's: refused, the old CA signs on.
    std::fs::write(dir.path().join("ca-key.pem"), new_root.key_pem()).unwrap();
    until("the bad key refused", || reloads(&current, "refused") == 1).await;
    assert_eq!(current.signer().cert_der(), old.cert_der());
    // A missing file: unreadable, counted.
    std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    until("the missing key counted", || {
        reloads(&current, "unreadable") == 1
    })
    .await;
    // (b) and (c) at once: the new root signs; the old root stays while
    // the SVIDs of this run's old signer may live, then goes.
    let next = new_root.with_roots(&[new_root.cert_der().clone()]).unwrap();
    next.save(dir.path()).unwrap();
    until("the new signer", || {
        current.signer().cert_der() == new_root.cert_der()
    })
    .await;
    assert_eq!(pushed(&store).0.len(), 2, "the old root retires later");
    until("the old root retired", || {
        pushed(&store).0 == vec![der(&new_root)]
    })
    .await;
    task.abort();
}
