//! Routing, filters, mirrors, retries and header hygiene.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use quicmesh_core::tunnel::client::TunnelError;

use crate::lab::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_are_routed_filtered_and_forwarded() {
    let s = setup(1).await;
    let mut c = s.http1().await;
    // Header match first, with its header filter.
    let (status, _, body) = get(&mut c, "/api/items", &[("x-canary", "yes")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "v2 GET /api/items host=shop.shop.svc.cluster.local x-added=canary"
    );
    // A redirect answered by the waypoint itself.
    let (status, location, _) = get(&mut c, "/old/page?x=1", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (301, "http://shop.example/new/page?x=1")
    );
    // A rewrite of host and path prefix.
    let (status, _, body) = get(&mut c, "/v1-only/a?q=2", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "v1 GET /inner/a?q=2 host=rewritten.example x-added=");
    // A request timeout answers 504 while the backend is still working.
    let (status, _, body) = get(&mut c, "/slow", &[]).await;
    assert_eq!((status, body.as_str()), (504, "timeout\n"));
    // No rule matches: 404; a backend with no endpoint: 503.
    let (status, _, body) = get(&mut c, "/elsewhere", &[]).await;
    assert_eq!((status, body.as_str()), (404, "no_route\n"));
    let (status, _, body) = get(&mut c, "/empty", &[]).await;
    assert_eq!((status, body.as_str()), (503, "no_healthy_endpoint\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ninety_ten_split_holds_over_a_thousand_requests() {
    let s = setup(2).await;
    let mut c = s.http1().await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..1_000 {
        let (status, _, body) = get(&mut c, &format!("/api/{i}"), &[]).await;
        assert_eq!(status, 200, "{body}");
        *seen
            .entry(body.split(' ').next().unwrap().to_string())
            .or_default() += 1;
    }
    // Binomial(1000, 0.9): mean 900, sd 9.5; 5 sd either side.
    let v1 = seen.get("v1").copied().unwrap_or(0);
    assert!((852..=948).contains(&v1), "{seen:?}");
    assert_eq!(v1 + seen.get("v2").copied().unwrap_or(0), 1_000, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_multiplex_through_the_waypoint() {
    let s = setup(3).await;
    let (client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let requests = (0..50).map(|i| {
        let mut client = client.clone();
        async move {
            let req = http::Request::get(format!("http://shop.shop.svc.cluster.local/v1-only/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                String::from_utf8_lossy(&body),
                format!("v1 GET /inner/{i} host=rewritten.example x-added=")
            );
        }
    });
    futures::future::join_all(requests).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_routes_goes_to_its_endpoints_and_strangers_are_refused() {
    let s = setup(4).await;
    let (mut c, conn) = hyper::client::conn::http1::handshake(
        s.open("10.96.0.11:80".parse().unwrap()).await.unwrap(),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut c, "/anything", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "v1 GET /anything host=shop.shop.svc.cluster.local x-added="
        )
    );
    // A destination the waypoint does not serve: the tunnel is refused.
    match s.open("10.96.0.99:80".parse().unwrap()).await {
        Err(TunnelError::Status { status, .. }) => assert_eq!(status, 403),
        Err(e) => panic!("refused with {e}"),
        Ok(_) => panic!("the waypoint took a destination it does not serve"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stop_at_the_waypoint() {
    let s = setup(6).await;
    let mut c = s.http1().await;
    // `Connection` names a header as hop-by-hop: neither goes on.
    let (status, _, body) = get(
        &mut c,
        "/v1-only/h",
        &[("connection", "x-hop"), ("x-hop", "1")],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/h host=rewritten.example x-added=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_learns_the_source_from_the_waypoint_only() {
    let s = setup(11).await;
    let mut c = s.http1().await;
    let forged = "By=spiffe://cluster.local/ns/x/sa/y;URI=spiffe://cluster.local/ns/bank/sa/admin";
    let (status, _, body) = get(&mut c, "/api/xfcc", &[("x-forwarded-client-cert", forged)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("By={};URI={}", id("ns/shop/sa/waypoint"), s.client_svid.id),
        "exactly one header, the waypoint's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_a_copy_of_every_request_and_its_answers_are_dropped() {
    use std::sync::atomic::Ordering;
    let s = setup(13).await;
    let mut c = s.http1().await;
    for i in 0..10 {
        let (status, _, body) = get(&mut c, &format!("/mirrored/{i}"), &[("x-added", "no")]).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with(&format!("v1 GET /mirrored/{i} ")),
            "{body}"
        );
    }
    let mut seen = 0;
    for _ in 0..100 {
        seen = s.shadow_hits.load(Ordering::Relaxed);
        if seen >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 10, "the mirror got every copy (and no more)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_make_a_flaky_backend_succeed_and_a_budget_stops_a_storm() {
    use std::sync::atomic::Ordering;
    let s = setup(12).await;
    let mut c = s.http1().await;
    // Every fourth answer fails; a retry makes each request succeed.
    for i in 0..20 {
        let (status, _, body) = get(&mut c, &format!("/flaky/{i}"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "flaky ok"), "request {i}");
    }
    // 20 answers, and the 7 failures (1st, 5th, ... 25th) retried.
    assert_eq!(s.flaky_hits.load(Ordering::Relaxed), 27);
    // A backend that always fails, with 3 retries allowed per request: the
    // budget (20 % of requests, plus 10 a second) stops most of them.
    s.flaky_hits.store(0, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let n = 300u64;
    for i in 0..n {
        let (status, _, _) = get(&mut c, &format!("/down/{i}"), &[]).await;
        assert_eq!(status, 503);
    }
    let hits = s.flaky_hits.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64().ceil() as u64;
    // Requests, their 20 %, the floor's 10 and its refill while it ran; the
    // budget also holds what the /flaky requests above deposited (4).
    let allowed = n + n / 5 + 10 + 10 * elapsed + 4;
    assert!(
        (n + 1..=allowed).contains(&hits),
        "{hits} backend requests for {n} requests (at most {allowed}); without a budget: {}",
        n * 4
    );
    let mut reg = prometheus_client::registry::Registry::default();
    s.waypoint.metrics.register(&mut reg);
    let text = quicmesh_core::metrics::encode(&reg);
    assert!(
        text.lines().any(|l| l.starts_with(
            "quicmesh_waypoint_retries_total{route=\"shop/shop-routes\",result=\"budget_exhausted\"}"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_matched_and_forwarded_in_canonical_form() {
    let s = setup(9).await;
    let mut c = s.http1().await;
    // Each of these is the redirecting /old prefix in disguise.
    for path in ["/x/../old/p", "//old/p", "/%6Fld/p", "/./old/p"] {
        let (status, location, _) = get(&mut c, path, &[]).await;
        assert_eq!(
            (status, location.as_str()),
            (301, "http://shop.example/new/p"),
            "{path}"
        );
    }
    // Forwarded canonical: the backend sees what was matched.
    let (status, _, body) = get(&mut c, "/v1-only//a/./b", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/a/b host=rewritten.example x-added=")
    );
    // Ambiguous: refused before routing.
    let (status, _, body) = get(&mut c, "/old%2Fp", &[]).await;
    assert_eq!((status, body.as_str()), (400, "bad_path\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_closing_kept_connections_cost_no_request() {
    let s = setup(10).await;
    let mut c = s.http1().await;
    for i in 0..50 {
        let (status, _, body) = get(&mut c, &format!("/closer/{i}"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "closer"), "request {i}");
    }
}
