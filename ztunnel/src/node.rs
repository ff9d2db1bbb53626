//! What the data path of every pod on the node shares ([`Shared`]: the
//! mesh state, certificates, metrics, tunnel settings, the balancer, the
//! live connections) and what one enrolled pod's data path holds
//! ([`PodCtx`]). Below the proxy and the enrollment code, above the state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use quicmesh_core::control::stream::ConfigSink;
use quicmesh_core::health::Flag;
use quicmesh_core::identity::certs::CertManager;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::lb::Balancer;
use quicmesh_core::netns::NetnsWorker;
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config::TunnelSettings;
use quicmesh_core::tunnel::server::ServerCtx;
use quicmesh_proto::config::Resource;
use quicmesh_proto::enrollment::Pod;

use crate::live::LiveConns;
use crate::metrics::Metrics;
use crate::state::State;

/// What every pod's data path shares.
pub struct Shared {
    pub node: String,
    pub(crate) state: RwLock<Arc<State>>,
    pub certs: Arc<CertManager>,
    pub metrics: Arc<Metrics>,
    pub settings: TunnelSettings,
    /// What every pod's tunnel server shares (metrics, limits, handshake
    /// admission: its caps bound all pods together).
    pub server: ServerCtx,
    pub drain_deadline: Duration,
    pub balancer: Arc<Balancer>,
    /// Live inbound connections, re-checked on every state change.
    pub live: Arc<LiveConns>,
    /// Readiness: a config is in effect (the workload file's, or the
    /// controller's since its first update applied).
    pub config_ready: Flag,
}

impl Shared {
    pub fn state(&self) -> Arc<State> {
        self.state.read().expect("not poisoned").clone()
    }

    /// Installs a new state, then re-checks live inbound connections
    /// against it (cutting those no longer allowed).
    pub fn set_state(&self, state: State) {
        let state = Arc::new(state);
        *self.state.write().expect("not poisoned") = state.clone();
        self.recheck_live(&state, "config change closed live connections");
    }

    fn recheck_live(&self, state: &State, what: &'static str) {
        let cut = self
            .live
            .recheck(state, &self.certs.bundles().load(), &self.metrics);
        if cut > 0 {
            tracing::info!(cut, live = self.live.len(), "{what}");
        }
    }
}

/// One enrolled pod, as its data path sees it.
pub struct PodCtx {
    pub pod: Pod,
    pub ips: Vec<IpAddr>,
    pub identity: SpiffeId,
    pub worker: NetnsWorker,
    pub pool: Arc<Pool>,
    pub shared: Arc<Shared>,
}

/// The controller's config stream builds the node's [`State`].
impl ConfigSink for Shared {
    fn version(&self) -> u64 {
        self.state().version
    }

    fn apply(&self, version: u64, resources: &BTreeMap<String, Resource>) -> Result<(), String> {
        let trust_domain = self.state().trust_domain.clone();
        self.set_state(State::from_resources(&trust_domain, version, resources)?);
        Ok(())
    }

    fn connected(&self, up: bool) {
        self.metrics.config_connected.set(i64::from(up));
    }

    fn trust_domains_withdrawn(&self, trust_domains: &[String]) {
        tracing::info!(
            ?trust_domains,
            "federated trust domains withdrawn; re-checking live connections"
        );
        self.recheck_live(
            &self.state(),
            "federation removed: closed live connections of its peers",
        );
    }

    fn update_result(&self, result: &'static str) {
        self.metrics.config_updates(result);
        self.metrics.config.updated(result, self.version());
        match result {
            "ack" => self.config_ready.set_ready(),
            // Once a config is in effect a refused update changes nothing:
            // the last good config serves on.
            _ if !self.config_ready.is_ready() => self
                .config_ready
                .set_not_ready("every update from the controller so far was refused (NACK)"),
            _ => {}
        }
    }
}
