//! Following the controller's config stream: updates in, ACK or NACK out,
//! for any proxy and whatever state it builds ([`ConfigSink`]).
//!
//! The stream is authenticated with the caller's certificate (a node's
//! ztunnel: `spiffe://<td>/quicmesh/node/<node>`). Each update carries the
//! resources that changed (or all of them, `full`); the proxy's state is
//! rebuilt from the complete set, and an update it cannot build from is
//! refused whole (NACK with the reason) while the previous state stays.
//! When the stream breaks the proxy keeps serving its last good config and
//! reconnects with backoff (200 ms doubling to 10 s, reset once connected).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quicmesh_proto::config::config_stream_client::ConfigStreamClient;
use quicmesh_proto::config::{Ack, Report, Resource, Update};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use super::client::ControllerClient;
use crate::identity::bundles::{streamed, Streamed};
use crate::identity::certs::CertManager;
use crate::identity::SpiffeId;

/// What a proxy does with the config stream.
pub trait ConfigSink: Send + Sync + 'static {
    /// The version of the config in effect (the first ACK of every session
    /// tells the controller where the proxy stands).
    fn version(&self) -> u64;

    /// Builds the proxy's state from the complete resource set of
    /// `version` and puts it in effect; an error (the NACK's reason) leaves
    /// the state as it was.
    fn apply(&self, version: u64, resources: &BTreeMap<String, Resource>) -> Result<(), String>;

    /// The stream is up (`true`) or broke (`false`), for a gauge.
    fn connected(&self, up: bool);

    /// An update was taken (`"ack"`) or refused (`"nack"`), for a counter.
    fn update_result(&self, result: &'static str);

    /// The bundles of `trust_domains` were withdrawn by the update just
    /// applied (their federations removed): a proxy cuts what their peers
    /// still hold open.
    fn trust_domains_withdrawn(&self, _trust_domains: &[String]) {}

    /// What the proxy fetches on its own and how it went (a waypoint's
    /// jwksUri key sets), the whole set each time it changes: sent to the
    /// controller in report-only messages, at most once per
    /// [`REPORT_EVERY`]. None: the proxy reports nothing.
    fn reports(&self) -> Option<watch::Receiver<Vec<Report>>> {
        None
    }
}

/// Reports go out at most this often (changes in between are coalesced).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Follows the config stream forever, authenticated as `identity` (its
/// SVID from `certs`): applies updates to `sink`, ACKs or NACKs them,
/// reconnects with backoff.
pub async fn follow<S: ConfigSink>(
    client: Arc<ControllerClient>,
    certs: Arc<CertManager>,
    identity: SpiffeId,
    sink: Arc<S>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
    let mut bundles = Streamed::new(certs.bundles(), identity.trust_domain());
    loop {
        let mut connected = false;
        let session = Session {
            client: &client,
            certs: &certs,
            identity: &identity,
            sink: &*sink,
        };
        match session
            .run(&mut resources, &mut bundles, &mut connected)
            .await
        {
            Ok(()) => tracing::info!("config stream closed by the controller"),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "config stream failed; serving the last good config")
            }
        }
        sink.connected(false);
        if connected {
            backoff = Duration::from_millis(200);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

struct Session<'a, S> {
    client: &'a ControllerClient,
    certs: &'a CertManager,
    identity: &'a SpiffeId,
    sink: &'a S,
}

impl<S: ConfigSink> Session<'_, S> {
    async fn run(
        &self,
        resources: &mut BTreeMap<String, Resource>,
        bundles: &mut Streamed,
        connected: &mut bool,
    ) -> Result<(), String> {
        let svid = self
            .certs
            .svid(self.identity)
            .await
            .map_err(|e| e.to_string())?;
        let mut grpc = ConfigStreamClient::new(self.client.channel(Some(&svid))?);
        let (tx, rx) = mpsc::channel::<Ack>(16);
        tx.send(Ack {
            version: self.sink.version(),
            ..Ack::default()
        })
        .await
        .map_err(|_| "ack channel closed")?;
        let mut updates = grpc
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        tracing::info!(controller = %self.client.addr, "config stream connected");
        *connected = true;
        self.sink.connected(true);
        let mut reports = self.sink.reports();
        // A report is due (every session starts by sending the current
        // set), and when the last one went out.
        let mut due = reports.is_some();
        let hold = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(hold);
        loop {
            tokio::select! {
                u = updates.next() => {
                    let Some(u) = u else { return Ok(()) };
                    let u = u.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
                    let ack = apply(u, self.sink, resources, bundles);
                    tx.send(ack).await.map_err(|_| "ack channel closed")?;
                }
                changed = changed(&mut reports), if !due => {
                    if changed {
                        due = true;
                    } else {
                        reports = None;
                    }
                }
                () = &mut hold, if due => {
                    due = false;
                    let current = reports.as_mut().map(|r| r.borrow_and_update().clone()).unwrap_or_default();
                    tx.send(Ack {
                        version: self.sink.version(),
                        report_only: true,
                        reports: current,
                        ..Ack::default()
                    })
                    .await
                    .map_err(|_| "ack channel closed")?;
                    hold.as_mut().reset(tokio::time::Instant::now() + REPORT_EVERY);
                }
            }
        }
    }
}

/// Waits for `reports` to change: false once its sender is gone (never
/// returns without reports).
async fn changed(reports: &mut Option<watch::Receiver<Vec<Report>>>) -> bool {
    match reports {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Applies one update; a bad one is rejected whole and the state stays.
/// Trust bundles in it are checked first and put in effect with the rest.
pub fn apply<S: ConfigSink>(
    u: Update,
    sink: &S,
    resources: &mut BTreeMap<String, Resource>,
    bundles: &mut Streamed,
) -> Ack {
    let mut next = if u.full {
        BTreeMap::new()
    } else {
        resources.clone()
    };
    for name in &u.removed {
        next.remove(name);
    }
    for r in u.resources {
        next.insert(r.name.clone(), r);
    }
    let applied = streamed(&next).and_then(|b| sink.apply(u.version, &next).map(|()| b));
    match applied {
        Ok(b) => {
            let withdrawn = bundles.install(b);
            if !withdrawn.is_empty() {
                sink.trust_domains_withdrawn(&withdrawn);
            }
            *resources = next;
            sink.update_result("ack");
            tracing::debug!(version = u.version, full = u.full, "config applied");
            Ack {
                nonce: u.nonce,
                version: u.version,
                ..Ack::default()
            }
        }
        Err(e) => {
            tracing::warn!(version = u.version, reason = %e, "config update rejected (NACK); keeping the previous config");
            sink.update_result("nack");
            Ack {
                nonce: u.nonce,
                error: e,
                version: sink.version(),
                ..Ack::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ca::Ca;
    use crate::identity::SharedBundles;
    use quicmesh_proto::config::{resource, TrustBundle};
    use std::sync::Mutex;

    /// A sink whose state is the resource names; a resource named `bad`
    /// cannot be built from.
    #[derive(Default)]
    struct Names {
        state: Mutex<(u64, Vec<String>)>,
        results: Mutex<Vec<&'static str>>,
    }

    impl ConfigSink for Names {
        fn version(&self) -> u64 {
            self.state.lock().unwrap().0
        }
        fn apply(&self, version: u64, r: &BTreeMap<String, Resource>) -> Result<(), String> {
            if r.contains_key("bad") {
                return Err("bad resource".into());
            }
            *self.state.lock().unwrap() = (version, r.keys().cloned().collect());
            Ok(())
        }
        fn connected(&self, _: bool) {}
        fn update_result(&self, result: &'static str) {
            self.results.lock().unwrap().push(result);
        }
    }

    fn update(version: u64, full: bool, add: &[&str], removed: &[&str]) -> Update {
        Update {
            version,
            full,
            nonce: format!("n{version}"),
            resources: add
                .iter()
                .map(|n| Resource {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            removed: removed.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn increments_build_on_the_last_good_set_and_a_bad_one_is_refused_whole() {
        let sink = Names::default();
        let mut held = BTreeMap::new();
        let mut b = bundles();
        let ack = apply(update(1, true, &["a", "b"], &[]), &sink, &mut held, &mut b);
        assert_eq!(
            (ack.version, ack.error.as_str(), ack.nonce.as_str()),
            (1, "", "n1")
        );
        let ack = apply(update(2, false, &["c"], &["a"]), &sink, &mut held, &mut b);
        assert_eq!(ack.version, 2);
        assert_eq!(sink.state.lock().unwrap().1, ["b", "c"]);
        // Refused: the state and the held set stay at version 2.
        let ack = apply(
            update(3, false, &["bad", "d"], &["b"]),
            &sink,
            &mut held,
            &mut b,
        );
        assert_eq!((ack.version, ack.error.as_str()), (2, "bad resource"));
        assert_eq!(sink.state.lock().unwrap().1, ["b", "c"]);
        // The next increment builds on version 2, not on the refused one.
        apply(update(4, false, &["e"], &[]), &sink, &mut held, &mut b);
        assert_eq!(sink.state.lock().unwrap().1, ["b", "c", "e"]);
        // A full update replaces everything.
        apply(update(5, true, &["z"], &[]), &sink, &mut held, &mut b);
        assert_eq!(sink.state.lock().unwrap().1, ["z"]);
        assert_eq!(
            *sink.results.lock().unwrap(),
            ["ack", "ack", "nack", "ack", "ack"]
        );
    }

    fn bundles() -> Streamed {
        Streamed::new(SharedBundles::default(), "cluster.local")
    }

    fn bundle(td: &str, roots: &[&Ca]) -> Resource {
        Resource {
            name: format!("bundle/{td}"),
            kind: Some(resource::Kind::TrustBundle(TrustBundle {
                trust_domain: td.into(),
                roots: roots.iter().map(|c| c.cert_der().to_vec()).collect(),
                sequence: 1,
            })),
            ..Default::default()
        }
    }

    fn with(version: u64, full: bool, resources: Vec<Resource>, removed: &[&str]) -> Update {
        Update {
            version,
            full,
            nonce: format!("n{version}"),
            resources,
            removed: removed.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn pushed_bundles_replace_their_domains_and_withdrawn_federations_are_forgotten() {
        let sink = Names::default();
        let mut held = BTreeMap::new();
        let shared = SharedBundles::default();
        let mut b = Streamed::new(shared.clone(), "cluster.local");
        let (own, own2, other) = (
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("cluster.local").unwrap(),
            Ca::generate("other.example").unwrap(),
        );
        let roots = |td: &str| shared.load().get(td).map(|a| a.len());
        let ack = apply(
            with(
                1,
                true,
                vec![
                    bundle("cluster.local", &[&own]),
                    bundle("other.example", &[&other]),
                ],
                &[],
            ),
            &sink,
            &mut held,
            &mut b,
        );
        assert_eq!(ack.error, "");
        assert_eq!(
            (roots("cluster.local"), roots("other.example")),
            (Some(1), Some(1))
        );
        // The own domain rotates: two roots during the overlap.
        apply(
            with(2, false, vec![bundle("cluster.local", &[&own, &own2])], &[]),
            &sink,
            &mut held,
            &mut b,
        );
        assert_eq!(roots("cluster.local"), Some(2));
        // The federation is removed: its peers are no longer trusted; the
        // own domain is never forgotten, even when no longer pushed.
        apply(
            with(
                3,
                false,
                vec![],
                &["bundle/other.example", "bundle/cluster.local"],
            ),
            &sink,
            &mut held,
            &mut b,
        );
        assert_eq!(
            (roots("cluster.local"), roots("other.example")),
            (Some(2), None)
        );
    }

    #[test]
    fn a_bad_bundle_refuses_the_update_and_changes_nothing() {
        let sink = Names::default();
        let mut held = BTreeMap::new();
        let shared = SharedBundles::default();
        let mut b = Streamed::new(shared.clone(), "cluster.local");
        let other = Ca::generate("other.example").unwrap();
        apply(
            with(1, true, vec![bundle("other.example", &[&other])], &[]),
            &sink,
            &mut held,
            &mut b,
        );
        let mut garbage = bundle("other.example", &[]);
        let mut misnamed = bundle("other.example", &[&other]);
        misnamed.name = "bundle/cluster.local".into();
        let Some(resource::Kind::TrustBundle(t)) = &mut garbage.kind else {
            unreachable!()
        };
        t.roots = vec![b"not DER".to_vec()];
        let mut bad_domain = bundle("Not A Domain", &[&other]);
        bad_domain.name = "bundle/Not A Domain".into();
        for (i, (bad, want)) in [
            (bundle("other.example", &[]), "0 roots"),
            (garbage, "bundle/other.example"),
            (misnamed, "holds the bundle of"),
            (bad_domain, "trust domain"),
        ]
        .into_iter()
        .enumerate()
        {
            let ack = apply(
                with(2 + i as u64, false, vec![bad], &[]),
                &sink,
                &mut held,
                &mut b,
            );
            assert!(ack.error.contains(want), "{}: {}", want, ack.error);
            assert_eq!(ack.version, 1);
            assert_eq!(shared.load().get("other.example").map(|a| a.len()), Some(1));
        }
    }
}
