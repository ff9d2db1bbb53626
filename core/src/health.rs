//! Readiness: the named conditions a proxy must meet before it is given
//! traffic, answered on `/healthz/ready` and exported as one gauge per
//! condition (`quicmesh_ready{condition}`).
//!
//! A condition is a check run whenever readiness is asked for (a probe, a
//! scrape), never a remembered verdict: one that lapses (a certificate
//! expiring, a drain starting) makes the proxy not ready at the next ask.
//! Conditions that events decide (the first config applied, a socket
//! bound) are [`Flag`]s the event sets.
//!
//! The answer: 200 `ready`, or 503 `not ready: ` and each condition that
//! does not hold with its reason, e.g. `not ready: config (no update from
//! the controller yet), certificates (no certificate for … yet)`.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::Reply;

/// Whether one condition holds now; the error says why not.
pub type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A proxy's readiness conditions, in the order they are reported.
#[derive(Default)]
pub struct Readiness {
    conditions: Vec<(&'static str, Check)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.conditions.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the condition `name`, decided by `check` whenever asked.
    pub fn with(
        mut self,
        name: &'static str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.conditions.push((name, Box::new(check)));
        self
    }

    /// Adds the condition `name`, decided by `flag`.
    pub fn with_flag(self, name: &'static str, flag: &Flag) -> Self {
        let flag = flag.clone();
        self.with(name, move || flag.get())
    }

    /// Each condition, in order, and why it does not hold.
    pub fn status(&self) -> Vec<(&'static str, Result<(), String>)> {
        self.conditions
            .iter()
            .map(|(name, check)| (*name, check()))
            .collect()
    }

    /// The `/healthz/ready` answer now.
    pub fn reply(&self) -> Reply {
        render(&self.status())
    }

    /// Exports `quicmesh_ready{condition}` (1: holds), evaluated at each
    /// scrape.
    pub fn register(self: &Arc<Self>, reg: &mut Registry) {
        reg.register_collector(Box::new(Gauges(self.clone())));
    }
}

/// The HTTP answer for a status: 200 `ready`, or 503 naming what is not.
pub fn render(status: &[(&str, Result<(), String>)]) -> Reply {
    let not: Vec<String> = status
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name} ({why})")))
        .collect();
    if not.is_empty() {
        Reply::from("ready\n".to_string())
    } else {
        Reply::text(503, format!("not ready: {}\n", not.join(", ")))
    }
}

/// A condition set by events: not ready (with a reason) until set ready,
/// and back when set not ready. Clones share the state.
#[derive(Clone, Debug)]
pub struct Flag(Arc<Mutex<Result<(), String>>>);

impl Flag {
    /// Not ready, for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Flag(Arc::new(Mutex::new(Err(reason.into()))))
    }

    /// Ready from the start.
    pub fn ready() -> Self {
        Flag(Arc::new(Mutex::new(Ok(()))))
    }

    pub fn set_ready(&self) {
        *self.0.lock().expect("not poisoned") = Ok(());
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.0.lock().expect("not poisoned") = Err(reason.into());
    }

    pub fn get(&self) -> Result<(), String> {
        self.0.lock().expect("not poisoned").clone()
    }

    pub fn is_ready(&self) -> bool {
        self.get().is_ok()
    }
}

#[derive(Debug)]
struct Gauges(Arc<Readiness>);

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "quicmesh_ready",
            "1 while the readiness condition holds (all of them: /healthz/ready answers 200)",
            None,
            gauge.metric_type(),
        )?;
        for (name, r) in self.0.status() {
            let labels = [("condition", name)];
            ConstGauge::new(i64::from(r.is_ok())).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds_and_says_which_do_not() {
        let (config, socket) = (Flag::new("no update yet"), Flag::ready());
        let expired = Arc::new(Mutex::new(true));
        let e2 = expired.clone();
        let r = Readiness::new()
            .with_flag("config", &config)
            .with("certificates", move || match *e2.lock().unwrap() {
                true => Err("expired".into()),
                false => Ok(()),
            })
            .with_flag("enrollment", &socket);
        let reply = r.reply();
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.body,
            "not ready: config (no update yet), certificates (expired)\n"
        );
        config.set_ready();
        assert_eq!(r.reply().body, "not ready: certificates (expired)\n");
        *expired.lock().unwrap() = false;
        assert_eq!(r.reply(), Reply::text(200, "ready\n".into()));
        // And back: a condition may lapse.
        socket.set_not_ready("closed");
        assert_eq!(r.reply().status, 503);
        assert_eq!(r.reply().body, "not ready: enrollment (closed)\n");
        let names: Vec<_> = r.status().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["config", "certificates", "enrollment"]);
    }

    #[test]
    fn no_conditions_is_ready() {
        assert_eq!(Readiness::new().reply().status, 200);
    }

    #[test]
    fn one_gauge_per_condition_evaluated_at_scrape() {
        let flag = Flag::new("not yet");
        let r = Arc::new(
            Readiness::new()
                .with_flag("config", &flag)
                .with("certificates", || Ok(())),
        );
        let mut reg = Registry::default();
        r.register(&mut reg);
        let text = crate::metrics::encode(&reg);
        assert!(text.contains("# TYPE quicmesh_ready gauge"), "{text}");
        assert!(
            text.contains("quicmesh_ready{condition=\"config\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("quicmesh_ready{condition=\"certificates\"} 1"),
            "{text}"
        );
        flag.set_ready();
        let text = crate::metrics::encode(&reg);
        assert!(
            text.contains("quicmesh_ready{condition=\"config\"} 1"),
            "{text}"
        );
    }
}
