//! Did a load take its path? The counters that tell (the waypoint's
//! request, JWT and denial counters, the tunnel streams HAProxy's ztunnel
//! opened for it), read from the metrics' text, and the checks on what a
//! load moved them by. Pure: fetching the metrics is the caller's.

use anyhow::{bail, Result};
use quicmesh_lab::mesh::sum_metric;

use super::setup::{ALLOW_POLICY, AUTHZ_SERVICE, DENY_POLICY, MESH_NS, PROXY_NS};
use super::Path;
use crate::load::LoadReport;

/// The counters at one moment (or, from [`Counters::since`], how much
/// they grew).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Counters {
    /// `quicmesh_waypoint_requests_total` for `srv` on the port.
    pub srv: f64,
    /// ... for `srv-authz` on the port, and those of them answered 200.
    pub authz: f64,
    pub authz_ok: f64,
    /// All the waypoint's requests.
    pub all: f64,
    /// `quicmesh_waypoint_jwt_requests_total`: verified tokens, and every request a
    /// RequestAuthentication applied to (no token, refused too).
    pub jwt_authenticated: f64,
    pub jwt_all: f64,
    /// `quicmesh_waypoint_authz_denials_total`: by the ALLOW policy of `srv-authz`
    /// matching nothing, by its DENY policy, and all of them.
    pub no_allow_match: f64,
    pub deny_policy: f64,
    pub denials: f64,
    /// Tunnel streams HAProxy's ztunnel opened as HAProxy.
    pub haproxy_out: f64,
}

impl Counters {
    /// From the waypoint's metrics and those of HAProxy's ztunnel, for the
    /// Services' `port`.
    pub fn parse(waypoint: &str, haproxy_ztunnel: &str, port: u16) -> Counters {
        let w = |name: &str, labels: &[(&str, &str)]| sum_metric(waypoint, name, labels);
        let srv = format!("{MESH_NS}/srv:{port}");
        let authz = format!("{MESH_NS}/{AUTHZ_SERVICE}:{port}");
        let (allow, deny) = (
            format!("{MESH_NS}/{ALLOW_POLICY}"),
            format!("{MESH_NS}/{DENY_POLICY}"),
        );
        let principal = format!("spiffe://cluster.local/ns/{PROXY_NS}/sa/haproxy");
        Counters {
            srv: w("quicmesh_waypoint_requests_total", &[("service", &srv)]),
            authz: w("quicmesh_waypoint_requests_total", &[("service", &authz)]),
            authz_ok: w(
                "quicmesh_waypoint_requests_total",
                &[("service", &authz), ("code", "200")],
            ),
            all: w("quicmesh_waypoint_requests_total", &[]),
            jwt_authenticated: w(
                "quicmesh_waypoint_jwt_requests_total",
                &[("result", "authenticated")],
            ),
            jwt_all: w("quicmesh_waypoint_jwt_requests_total", &[]),
            no_allow_match: w(
                "quicmesh_waypoint_authz_denials_total",
                &[("policy", &allow), ("reason", "no_allow_match")],
            ),
            deny_policy: w(
                "quicmesh_waypoint_authz_denials_total",
                &[("policy", &deny), ("reason", "deny_policy")],
            ),
            denials: w("quicmesh_waypoint_authz_denials_total", &[]),
            haproxy_out: sum_metric(
                haproxy_ztunnel,
                "quicmesh_tunnel_streams_opened_total",
                &[("direction", "outbound"), ("src_principal", &principal)],
            ),
        }
    }

    /// How much each counter grew since `before`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            srv: self.srv - before.srv,
            authz: self.authz - before.authz,
            authz_ok: self.authz_ok - before.authz_ok,
            all: self.all - before.all,
            jwt_authenticated: self.jwt_authenticated - before.jwt_authenticated,
            jwt_all: self.jwt_all - before.jwt_all,
            no_allow_match: self.no_allow_match - before.no_allow_match,
            deny_policy: self.deny_policy - before.deny_policy,
            denials: self.denials - before.denials,
            haproxy_out: self.haproxy_out - before.haproxy_out,
        }
    }
}

/// That the load `rep` on `path` went where it should, from the counters
/// `before` and `after` it:
///
/// - no path: any request refused by a policy at the waypoint;
/// - L4 mesh, HAProxy: none of the waypoint's requests grew; HAProxy's
///   ztunnel has opened streams as HAProxy (its upstream is captured;
///   streams are per connection and HAProxy keeps its connections, so any
///   stream of its own proves it);
/// - waypoint: it counted at least the load's requests for `srv`, and no
///   JWT check ran (nothing applies to `srv`);
/// - waypoint + JWT + policy: it counted at least the load's requests for
///   `srv-authz`, all answered 200, and verified at least as many tokens,
///   none refused; the load saw no error.
pub(super) fn check(
    path: Path,
    rep: &LoadReport,
    before: &Counters,
    after: &Counters,
) -> Result<()> {
    let d = after.since(before);
    let n = rep.requests as f64;
    let via = path.name();
    if d.denials > 0.0 {
        bail!(
            "via {via}: the waypoint refused {} requests by policy",
            d.denials
        );
    }
    match path {
        Path::Mesh | Path::Haproxy if d.all > 0.0 => {
            bail!("via {via}: the waypoint served {} requests", d.all)
        }
        Path::Haproxy if after.haproxy_out < 1.0 => {
            bail!("via {via}: its ztunnel never opened a stream for it (not captured?)")
        }
        Path::Waypoint if d.srv < n => bail!(
            "via {via}: it counted {} requests for srv, the load {n}",
            d.srv
        ),
        Path::Waypoint if d.jwt_all > 0.0 => bail!(
            "via {via}: {} requests went through a JWT check (none applies to srv)",
            d.jwt_all
        ),
        Path::Authz if d.authz < n => bail!(
            "via {via}: it counted {} requests for {AUTHZ_SERVICE}, the load {n}",
            d.authz
        ),
        Path::Authz if d.authz_ok < d.authz => bail!(
            "via {via}: {} of its {} requests for {AUTHZ_SERVICE} were not answered 200",
            d.authz - d.authz_ok,
            d.authz
        ),
        Path::Authz if d.jwt_authenticated < n || d.jwt_authenticated < d.jwt_all => bail!(
            "via {via}: {} tokens verified of {} requests checked, the load {n} \
             (quicmesh_waypoint_jwt_requests_total)",
            d.jwt_authenticated,
            d.jwt_all
        ),
        Path::Authz if rep.errors > 0 => bail!(
            "via {via}: {} requests failed (a non-200 answer is a failed load)",
            rep.errors
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waypoint's metrics after `srv` served `srv_n` requests on port
    /// 80 and `srv-authz` `ok` (200) and `refused` (403) requests, with
    /// `jwt` tokens verified and `denied` refused by the ALLOW policy.
    fn waypoint(srv_n: u64, ok: u64, refused: u64, jwt: u64, denied: u64) -> String {
        format!(
            "# TYPE quicmesh_waypoint_requests counter\n\
             quicmesh_waypoint_requests_total{{service=\"bench-mesh/srv:80\",code=\"200\",flag=\"\"}} {srv_n}\n\
             quicmesh_waypoint_requests_total{{service=\"bench-mesh/srv:81\",code=\"200\",flag=\"\"}} 7\n\
             quicmesh_waypoint_requests_total{{service=\"bench-mesh/srv-authz:80\",code=\"200\",flag=\"\"}} {ok}\n\
             quicmesh_waypoint_requests_total{{service=\"bench-mesh/srv-authz:80\",code=\"403\",flag=\"authz_denied\"}} {refused}\n\
             quicmesh_waypoint_jwt_requests_total{{result=\"authenticated\",reason=\"\"}} {jwt}\n\
             quicmesh_waypoint_jwt_requests_total{{result=\"no_token\",reason=\"\"}} {denied}\n\
             quicmesh_waypoint_authz_denials_total{{policy=\"bench-mesh/bench-authz-allow\",reason=\"no_allow_match\"}} {denied}\n\
             # EOF\n"
        )
    }

    const ZTUNNEL: &str = "quicmesh_tunnel_streams_opened_total{direction=\"outbound\",\
        src_principal=\"spiffe://cluster.local/ns/bench-proxy/sa/haproxy\"} 3\n";

    fn rep(requests: u64, errors: u64) -> LoadReport {
        LoadReport {
            requests,
            errors,
            ..LoadReport::default()
        }
    }

    #[test]
    fn counters_tell_the_services_apart() {
        let c = Counters::parse(&waypoint(10, 20, 3, 20, 3), ZTUNNEL, 80);
        assert_eq!(
            c,
            Counters {
                srv: 10.0,
                authz: 23.0,
                authz_ok: 20.0,
                all: 40.0,
                jwt_authenticated: 20.0,
                jwt_all: 23.0,
                no_allow_match: 3.0,
                deny_policy: 0.0,
                denials: 3.0,
                haproxy_out: 3.0,
            }
        );
        let c81 = Counters::parse(&waypoint(10, 20, 3, 20, 3), "", 81);
        assert_eq!((c81.srv, c81.authz, c81.haproxy_out), (7.0, 0.0, 0.0));
    }

    #[test]
    fn each_path_must_move_its_own_counters() {
        let at = |srv, ok, refused, jwt, denied| {
            Counters::parse(&waypoint(srv, ok, refused, jwt, denied), ZTUNNEL, 80)
        };
        let before = at(100, 100, 0, 100, 0);
        let ok = |path, after: &Counters, r: &LoadReport| check(path, r, &before, after);
        // Each path's own load passes.
        assert!(ok(Path::Mesh, &before, &rep(50, 0)).is_ok());
        assert!(ok(Path::Haproxy, &before, &rep(50, 0)).is_ok());
        assert!(ok(Path::Waypoint, &at(150, 100, 0, 100, 0), &rep(50, 0)).is_ok());
        assert!(ok(Path::Authz, &at(100, 160, 0, 160, 0), &rep(50, 0)).is_ok());
        // The waypoint served what should not have reached it.
        let e = ok(Path::Mesh, &at(101, 100, 0, 100, 0), &rep(50, 0)).unwrap_err();
        assert!(e.to_string().contains("served 1 requests"), "{e}");
        assert!(ok(Path::Haproxy, &at(150, 100, 0, 100, 0), &rep(50, 0)).is_err());
        // HAProxy not captured.
        let none = Counters {
            haproxy_out: 0.0,
            ..before
        };
        assert!(check(Path::Haproxy, &rep(5, 0), &none, &none).is_err());
        // The plain waypoint: fewer requests than the load, or a JWT check.
        assert!(ok(Path::Waypoint, &at(140, 100, 0, 100, 0), &rep(50, 0)).is_err());
        let e = ok(Path::Waypoint, &at(150, 100, 0, 101, 0), &rep(50, 0)).unwrap_err();
        assert!(e.to_string().contains("JWT check"), "{e}");
        // Authz: requests for srv instead, refusals, unverified, load errors.
        assert!(ok(Path::Authz, &at(160, 100, 0, 100, 0), &rep(50, 0)).is_err());
        let e = ok(Path::Authz, &at(100, 160, 2, 160, 2), &rep(50, 0)).unwrap_err();
        assert!(
            e.to_string().contains("refused 2 requests by policy"),
            "{e}"
        );
        let not_200 = Counters {
            authz: 162.0,
            ..at(100, 160, 0, 160, 0)
        };
        let e = ok(Path::Authz, &not_200, &rep(50, 0)).unwrap_err();
        assert!(e.to_string().contains("not answered 200"), "{e}");
        let e = ok(Path::Authz, &at(100, 160, 0, 140, 0), &rep(50, 0)).unwrap_err();
        assert!(e.to_string().contains("tokens verified"), "{e}");
        let e = ok(Path::Authz, &at(100, 160, 0, 160, 0), &rep(50, 1)).unwrap_err();
        assert!(e.to_string().contains("1 requests failed"), "{e}");
    }
}
