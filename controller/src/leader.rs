//! Kubernetes: leader election on a `coordination.k8s.io/v1` Lease, so that
//! of several controller replicas exactly one writes to the API server
//! (waypoint provisioning, status, the CA root ConfigMap). Every replica
//! serves the CA and the config stream: they all read the same objects and
//! sign with the same CA, so proxies may use any of them.
//!
//! The holder renews the Lease every [`Election::retry`]; a replica takes
//! it over only when its `renewTime` is older than `leaseDurationSeconds`.
//! Every write is an update with the resourceVersion read, so two replicas
//! that try at once cannot both win (the loser gets 409). A holder that
//! could not renew for the lease duration steps down by itself, before
//! another can take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Which Lease, and who we are.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and the others check.
    pub retry: Duration,
}

/// What one look at the Lease decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// We hold it (created, renewed or taken over).
    Leading,
    /// Another replica holds it, and renewed it in time.
    Following,
}

impl Election {
    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: create the Lease, renew ours, take over an expired one,
    /// or leave a live one alone. An error (including losing a race, 409)
    /// means "not leading now".
    pub async fn try_acquire(&self, client: &kube::Client) -> kube::Result<Outcome> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let now = Timestamp::now();
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            api.create(&PostParams::default(), &lease).await?;
            return Ok(Outcome::Leading);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = if spec.holder_identity.as_deref() == Some(&self.identity) {
            self.spec(now, spec.acquire_time, transitions)
        } else if expired(&spec, now) {
            tracing::info!(lease = %self.name, previous = ?spec.holder_identity, "taking over the expired lease");
            self.spec(now, None, transitions + 1)
        } else {
            return Ok(Outcome::Following);
        };
        lease.spec = Some(next);
        // resourceVersion is kept from the read: a concurrent write wins.
        api.replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(Outcome::Leading)
    }

    /// Runs the election for ever, publishing whether we lead.
    pub async fn run(self, client: kube::Client, leading: watch::Sender<bool>) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let lead = match self.try_acquire(&client).await {
                Ok(Outcome::Leading) => {
                    last_renewed = Some(Instant::now());
                    true
                }
                Ok(Outcome::Following) => {
                    last_renewed = None;
                    false
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election round failed");
                    // Still leading until the lease could have expired.
                    last_renewed.is_some_and(|t| t.elapsed() < self.lease_duration)
                }
            };
            leading.send_if_modified(|was| {
                if *was != lead {
                    tracing::info!(lease = %self.name, identity = %self.identity, leading = lead, "leadership changed");
                    *was = lead;
                    true
                } else {
                    false
                }
            });
            tokio::time::sleep(self.retry).await;
        }
    }
}

/// Whether the holder has not renewed within the lease duration (a Lease
/// without a holder or times is free).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    if spec
        .holder_identity
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return true;
    }
    let age = now.duration_since(renewed.0);
    age.as_secs_f64() > f64::from(secs.max(0))
}

/// Runs `start()`'s tasks while we lead; aborts them when we stop leading.
pub async fn while_leading<F>(mut leading: watch::Receiver<bool>, start: F)
where
    F: Fn() -> Vec<tokio::task::JoinHandle<()>>,
{
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let lead = *leading.borrow_and_update();
        if lead && running.is_empty() {
            running = start();
        } else if !lead {
            for t in running.drain(..) {
                t.abort();
            }
        }
        if leading.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(
                now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                    renewed_secs_ago,
                ))
                .unwrap(),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_expired_only_after_its_duration_without_renewal() {
        let now = Timestamp::now();
        assert!(!expired(&spec("a", 3, 15), now));
        assert!(expired(&spec("a", 20, 15), now));
        assert!(expired(&spec("", 1, 15), now), "no holder");
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }
}
