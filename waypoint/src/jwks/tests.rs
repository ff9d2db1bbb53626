//! The fetcher against a real HTTP server on loopback: keys fetched, the
//! last good ones kept through garbage, errors and an oversize answer,
//! the early refresh rate-limited, and a URI no longer wanted forgotten.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

/// An issuer: answers every GET with the current (status, body).
struct Issuer {
    addr: std::net::SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

async fn issuer() -> Issuer {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let answer = Arc::new(Mutex::new((200, JWKS.to_string())));
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, h) = (answer.clone(), hits.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (a, h) = (a.clone(), h.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = a.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Issuer { addr, answer, hits }
}

fn uri(i: &Issuer) -> String {
    format!("http://{}/jwks", i.addr)
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 5 s: {what}");
}

fn fetches(f: &Fetcher, result: &str) -> u64 {
    f.metrics
        .fetches
        .get_or_create(&vec![("result".into(), result.into())])
        .get()
}

#[tokio::test]
async fn keys_are_fetched_and_the_last_good_ones_kept() {
    let i = issuer().await;
    let f = Fetcher::with_roots(rustls::RootCertStore::empty(), Duration::from_millis(200));
    let u = uri(&i);
    assert!(f.keys(&u).is_none(), "unknown URI");
    f.sync(&[(u.clone(), 3600)].into());
    until("first fetch", || f.keys(&u).is_some()).await;
    assert_eq!(f.keys(&u).unwrap().kids(), ["k1"]);
    assert_eq!(fetches(&f, "ok"), 1);
    let reports = f.reports();
    let ok = Report {
        subject: format!("jwks/{u}"),
        ok: true,
        ..Report::default()
    };
    assert_eq!(
        *reports.borrow(),
        std::slice::from_ref(&ok),
        "reported for the controller"
    );

    // The issuer sends garbage, then an error, then too much: each early
    // refresh fails and the keys stay.
    for (status, body, label) in [
        (200, "{not json".to_string(), "invalid"),
        (
            200,
            r#"{"keys":[{"kty":"oct","k":"AA"}]}"#.to_string(),
            "invalid",
        ),
        (503, "down".to_string(), "bad_status"),
        (
            200,
            format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_BYTES)),
            "too_large",
        ),
    ] {
        *i.answer.lock().unwrap() = (status, body);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!f.refresh(&u).await, "{label}: the refresh failed");
        assert!(fetches(&f, label) >= 1, "{label} counted");
        assert_eq!(
            f.keys(&u).unwrap().kids(),
            ["k1"],
            "{label}: last good kept"
        );
        let r = reports.borrow()[0].clone();
        assert!(
            !r.ok && r.last_good_kept && !r.error.is_empty(),
            "{label}: {r:?}"
        );
    }
    let dump = f.dump();
    assert!(
        dump[&u]["lastError"].as_str().unwrap().contains("larger"),
        "{dump}"
    );
    // Back: the next refresh brings keys again.
    *i.answer.lock().unwrap() = (200, JWKS.to_string());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(f.refresh(&u).await);
    assert!(f.dump()[&u]["lastError"].is_null());
    assert_eq!(*reports.borrow(), [ok]);
}

#[tokio::test]
async fn early_refreshes_are_rate_limited_and_gone_uris_stop() {
    let i = issuer().await;
    let f = Fetcher::with_roots(rustls::RootCertStore::empty(), Duration::from_secs(3600));
    let u = uri(&i);
    f.sync(&[(u.clone(), 3600)].into());
    until("first fetch", || f.keys(&u).is_some()).await;
    let before = i.hits.load(Ordering::SeqCst);
    assert!(f.refresh(&u).await, "the first early refresh fetches");
    assert_eq!(i.hits.load(Ordering::SeqCst), before + 1);
    for _ in 0..10 {
        assert!(!f.refresh(&u).await, "then not again within the limit");
    }
    assert_eq!(i.hits.load(Ordering::SeqCst), before + 1, "no fetch made");
    assert_eq!(f.reports().borrow().len(), 1);
    f.sync(&BTreeMap::new());
    assert!(f.keys(&u).is_none(), "a URI no rule names is forgotten");
    assert!(f.reports().borrow().is_empty(), "and so is its report");
}

#[tokio::test]
async fn an_issuer_that_is_down_leaves_no_keys_and_is_retried() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let u = format!("http://{}/jwks", l.local_addr().unwrap());
    drop(l);
    let f = Fetcher::with_roots(rustls::RootCertStore::empty(), Duration::from_millis(1));
    f.sync(&[(u.clone(), 3600)].into());
    until("a failed fetch counted", || {
        fetches(&f, "connect_error") >= 1
    })
    .await;
    assert!(f.keys(&u).is_none(), "no keys before a fetch succeeds");
    let r = f.reports().borrow()[0].clone();
    assert!(
        !r.ok && !r.last_good_kept && r.error.starts_with("cannot connect"),
        "{r:?}"
    );
    let tls = f.tls.clone();
    assert!(matches!(
        fetch("ftp://x/y", &tls).await,
        Err(FetchError::Http(_))
    ));
    // HTTPS to a server that answers in plain HTTP: refused, not read as HTTP.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        }
    });
    let e = fetch(&format!("https://{addr}/jwks"), &tls)
        .await
        .unwrap_err();
    assert_eq!(e.label(), "tls_error", "{e}");
    // One that never answers: given up after the timeout.
    let i = issuer().await;
    let started = Instant::now();
    let e = fetch(&format!("https://{}/jwks", i.addr), &tls)
        .await
        .unwrap_err();
    assert_eq!(e.label(), "timeout", "{e}");
    assert!(started.elapsed() < FETCH_TIMEOUT + Duration::from_secs(2));
}
