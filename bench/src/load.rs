//! The load generator (`quicmesh-bench load`), run as a process inside the
//! client pod so that its sockets are captured exactly like an app's.
//!
//! Three modes, each over a fixed number of client threads with blocking
//! sockets (precise sleeps, no async timer wheel rounding to milliseconds):
//!
//! - **open**: constant rate, open loop. Request `i` is *scheduled* at
//!   `start + i / rate`; a free connection of the pool takes the next slot,
//!   sleeps until its scheduled time and sends it. Latency is measured from
//!   the scheduled time, so when every connection is busy the wait counts
//!   (no coordinated omission).
//! - **closed**: every connection sends its next request as soon as the
//!   previous answer is in; the rate reached is the maximum.
//! - **churn**: a new TCP connection per request (connect, request,
//!   response; the server closes), closed loop.
//!
//! Every loop ends at a deadline; sockets have read/write timeouts. An
//! answer other than a 200 counts as an error. [`LoadSpec::headers`] are
//! sent on every request (the request's bytes are built once).
//!
//! This module speaks HTTP/1.1 (the bench's own wire format,
//! [`crate::http`]); with [`LoadSpec::http2`] the open and closed loops run
//! over HTTP/2 instead ([`crate::http2`]).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::http::{exchange, read_message, request, Headers};

/// Socket read/write timeout: a request that takes longer is an error.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors after which a thread gives up.
const MAX_ERRORS: u64 = 100;
/// Open loop at or below this rate wakes early and spins the last [`SPIN`]
/// before each send (at most `rate × SPIN` of a core: 5% at 1,000 rps).
/// Above it, spinning would take CPU from what is measured; plain sleeps.
const SPIN_MAX_RATE: f64 = 2000.0;
const SPIN: Duration = Duration::from_micros(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Open,
    Closed,
    Churn,
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub mode: Mode,
    /// Requests per second (open mode).
    pub rate: f64,
    pub conns: usize,
    /// HTTP/2 closed loop: requests in flight on each connection.
    pub streams: usize,
    /// Speak HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// Sent on every request (`--header`).
    pub headers: Headers,
    pub duration: Duration,
    /// Not measured at the start (connections warm up).
    pub warmup: Duration,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From samples in nanoseconds (sorted here).
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub mode: String,
    /// HTTP version spoken: `1.1` or `2`.
    #[serde(default)]
    pub http: String,
    /// Requested rate (open mode), 0 otherwise.
    pub target_rps: f64,
    pub conns: usize,
    /// Requests in flight per connection (HTTP/2 closed loop; else 1).
    #[serde(default)]
    pub streams: usize,
    /// Measured window, seconds.
    pub seconds: f64,
    /// Completed requests in the measured window.
    pub requests: u64,
    pub errors: u64,
    /// Completed requests (or connections, in churn mode) per second.
    pub achieved_rps: f64,
    /// Latency from scheduled send (open) or from send/connect (closed, churn).
    pub latency_us: Percentiles,
    /// How late the generator itself sent (open mode): actual − scheduled.
    pub send_lag_us: Percentiles,
}

impl LoadReport {
    /// The report of a load described by `spec` that measured `out`.
    pub(crate) fn new(spec: &LoadSpec, http: &str, streams: usize, out: ThreadOut) -> Self {
        let (mut lat, mut lag) = (out.lat, out.lag);
        let seconds = spec.duration.as_secs_f64();
        let requests = lat.len() as u64;
        LoadReport {
            mode: format!("{:?}", spec.mode).to_lowercase(),
            http: http.into(),
            target_rps: if spec.mode == Mode::Open {
                spec.rate
            } else {
                0.0
            },
            conns: spec.conns,
            streams,
            seconds,
            requests,
            errors: out.errors,
            achieved_rps: requests as f64 / seconds,
            latency_us: Percentiles::of(&mut lat),
            send_lag_us: Percentiles::of(&mut lag),
        }
    }
}

/// What one load thread (or task) measured.
#[derive(Default)]
pub(crate) struct ThreadOut {
    pub lat: Vec<u64>,
    pub lag: Vec<u64>,
    pub errors: u64,
}

/// Runs the load described by `spec` and reports it.
pub fn run(spec: &LoadSpec) -> Result<LoadReport> {
    if spec.http2 {
        return crate::http2::run(spec);
    }
    if spec.conns == 0 || spec.conns > 1024 {
        bail!("conns must be 1..=1024");
    }
    if spec.mode == Mode::Open && !(spec.rate > 0.0 && spec.rate <= 1e6) {
        bail!("rate must be in (0, 1e6]");
    }
    // Pool first, so connection setup is not part of any measurement.
    let mut pool = Vec::new();
    if spec.mode != Mode::Churn {
        for _ in 0..spec.conns {
            pool.push(Some(open(spec.addr)?));
        }
    }
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let next = Arc::new(AtomicU64::new(0));
    // The request's bytes, built once: every loop sends the same ones.
    let req: Arc<[u8]> = request(spec.mode == Mode::Churn, &spec.headers).into();
    let handles: Vec<_> = (0..spec.conns)
        .map(|k| {
            let conn = pool.get_mut(k).and_then(Option::take);
            let (spec, next, req) = (spec.clone(), next.clone(), req.clone());
            std::thread::spawn(move || {
                set_timer_slack();
                match spec.mode {
                    Mode::Open => open_loop(&spec, &req, conn, &next, start, measure_from, end),
                    Mode::Closed => closed_loop(&spec, &req, conn, start, measure_from, end),
                    Mode::Churn => churn_loop(&spec, &req, start, measure_from, end),
                }
            })
        })
        .collect();
    let (mut lat, mut lag, mut errors) = (Vec::new(), Vec::new(), 0);
    for h in handles {
        let out = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        lat.extend(out.lat);
        lag.extend(out.lag);
        errors += out.errors;
    }
    Ok(LoadReport::new(
        spec,
        "1.1",
        1,
        ThreadOut { lat, lag, errors },
    ))
}

fn open(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Lets `sleep` wake within microseconds (default slack is 50 µs).
pub(crate) fn set_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Sleeps until [`SPIN`] before `t`, then spins until `t`: a sleeping
/// thread wakes tens of µs late on a busy 2-core VM, which would count as
/// latency. Bounded by `t`.
fn wait_precisely(t: Instant) {
    sleep_until(t.checked_sub(SPIN).unwrap_or(t));
    while Instant::now() < t {
        std::hint::spin_loop();
    }
}

/// Waits for a slot of an open loop at `rate`: [`wait_precisely`] at or
/// below [`SPIN_MAX_RATE`], a plain sleep above it.
pub(crate) fn wait_for_slot(t: Instant, rate: f64) {
    if rate <= SPIN_MAX_RATE {
        wait_precisely(t);
    } else {
        sleep_until(t);
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

fn open_loop(
    spec: &LoadSpec,
    req: &[u8],
    mut conn: Option<TcpStream>,
    next: &AtomicU64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> ThreadOut {
    let mut out = ThreadOut::default();
    let interval = 1.0 / spec.rate;
    let mut buf = Vec::with_capacity(4096);
    // At most one slot per scheduled request of the whole run.
    let max_slots = ((spec.warmup + spec.duration).as_secs_f64() * spec.rate).ceil() as u64 + 1;
    while out.errors < MAX_ERRORS {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= max_slots {
            break;
        }
        let scheduled = start + Duration::from_secs_f64(i as f64 * interval);
        if scheduled >= end {
            break;
        }
        wait_for_slot(scheduled, spec.rate);
        let sent = Instant::now();
        let ok = match conn.as_mut() {
            Some(s) => exchange(s, req, &mut buf).is_ok(),
            None => false,
        };
        let done = Instant::now();
        if !ok {
            out.errors += 1;
            conn = open(spec.addr).ok();
            continue;
        }
        if scheduled >= measure_from {
            out.lat.push(nanos(done - scheduled));
            out.lag.push(nanos(sent - scheduled));
        }
    }
    out
}

fn closed_loop(
    spec: &LoadSpec,
    req: &[u8],
    mut conn: Option<TcpStream>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> ThreadOut {
    let mut out = ThreadOut::default();
    let mut buf = Vec::with_capacity(4096);
    sleep_until(start);
    while out.errors < MAX_ERRORS {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let ok = match conn.as_mut() {
            Some(s) => exchange(s, req, &mut buf).is_ok(),
            None => false,
        };
        let done = Instant::now();
        if !ok {
            out.errors += 1;
            conn = open(spec.addr).ok();
            continue;
        }
        if sent >= measure_from && done <= end {
            out.lat.push(nanos(done - sent));
        }
    }
    out
}

fn churn_loop(
    spec: &LoadSpec,
    req: &[u8],
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> ThreadOut {
    let mut out = ThreadOut::default();
    let mut buf = Vec::with_capacity(4096);
    sleep_until(start);
    while out.errors < MAX_ERRORS {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let res = open(spec.addr).and_then(|mut s| {
            exchange(&mut s, req, &mut buf)?;
            let done = Instant::now();
            // The server closes after answering: wait for it (not timed).
            let mut rest = Vec::new();
            if read_message(&mut s, &mut rest)? {
                bail!("unexpected data after the response");
            }
            Ok(done)
        });
        match res {
            Ok(done) if t0 >= measure_from && done <= end => out.lat.push(nanos(done - t0)),
            Ok(_) => {}
            Err(_) => out.errors += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<u64> = (1..=1000).map(|x| x * 1000).collect();
        let p = Percentiles::of(&mut s);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(Percentiles::of(&mut []).p50, 0.0);
    }

    #[test]
    fn all_modes_run_against_the_server_on_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        std::thread::spawn(move || crate::http::serve(addr, 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (mode, rate) in [(Mode::Open, 500.0), (Mode::Closed, 0.0), (Mode::Churn, 0.0)] {
            let spec = LoadSpec {
                addr,
                mode,
                rate,
                conns: 2,
                streams: 1,
                http2: false,
                headers: Headers::default(),
                duration: Duration::from_millis(300),
                warmup: Duration::from_millis(50),
            };
            let r = run(&spec).unwrap();
            assert_eq!(r.errors, 0, "{mode:?}");
            assert!(r.requests > 10, "{mode:?}: {r:?}");
            assert!(r.latency_us.p50 > 0.0);
        }
    }

    /// A server on loopback that answers 200 only to requests carrying
    /// `x-bench: yes`, 403 to the others.
    fn gatekeeper() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    use std::io::Write;
                    let mut buf = Vec::new();
                    while let Ok(true) = read_message(&mut s, &mut buf) {
                        let allowed = buf.windows(16).any(|w| w == b"\r\nx-bench: yes\r\n");
                        let answer = if allowed {
                            crate::http::response()
                        } else {
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()
                        };
                        let close = matches!(crate::http::parse_head(&buf), Ok(Some((_, true))));
                        if s.write_all(&answer).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn headers_go_on_every_request_and_refusals_are_errors() {
        let addr = gatekeeper();
        for (headers, allowed) in [(&["X-Bench: yes"][..], true), (&["x-bench: no"][..], false)] {
            for mode in [Mode::Open, Mode::Closed, Mode::Churn] {
                let spec = LoadSpec {
                    addr,
                    mode,
                    rate: 500.0,
                    conns: 2,
                    streams: 1,
                    http2: false,
                    headers: Headers::parse(headers).unwrap(),
                    duration: Duration::from_millis(200),
                    warmup: Duration::from_millis(50),
                };
                let r = run(&spec).unwrap();
                if allowed {
                    assert_eq!(r.errors, 0, "{mode:?}");
                    assert!(r.requests > 10, "{mode:?}: {r:?}");
                } else {
                    assert_eq!(r.requests, 0, "{mode:?}: {r:?}");
                    assert!(r.errors > 0, "{mode:?}: {r:?}");
                }
            }
        }
    }
}
