//! `quicmesh-bench`: runs the benchmark (`--smoke`, `--quick` or the full
//! run; `--l7` for the L7 rows alone), printing the markdown tables on
//! stdout and writing the JSON under `bench/results/`. Its `serve` and
//! `load` subcommands are the server and the load generator it starts
//! inside the lab's pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use quicmesh_bench::bench::{Bench, Plan};
use quicmesh_bench::http::Headers;
use quicmesh_bench::l7::L7Bench;
use quicmesh_bench::load::{self, LoadSpec, Mode};
use quicmesh_bench::report;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmarks quicmesh on the lab: direct vs mesh L4, and the waypoint's L7 hop")]
struct Args {
    /// Seconds: one scenario (mesh L4), one run, short loads; for CI.
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// Three runs of shorter loads (about two minutes).
    #[arg(long)]
    quick: bool,
    /// Number of runs (default 3; smoke 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Set every lab link (node links and pod veths) to this MTU first.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1280..=9000))]
    mtu: Option<u32>,
    /// Turn GRO on or off on every lab link first (needs ethtool).
    #[arg(long)]
    gro: Option<bool>,
    /// Skip the lossy-link figures (for quick tuning comparisons).
    #[arg(long)]
    no_lossy: bool,
    /// Only the L7 rows (waypoint, waypoint + JWT + policy, HAProxy, the L4 mesh, on a cluster
    /// from manifests), with the durations of the mode (full by default).
    #[arg(long, conflicts_with = "no_l7")]
    l7: bool,
    /// Leave the L7 rows out of the full run.
    #[arg(long)]
    no_l7: bool,
    /// Measure nothing: build the lab, start the servers, print where
    /// everything is, and hold it up until Ctrl-C (for profiling by hand).
    #[arg(long, conflicts_with_all = ["smoke", "quick", "runs"])]
    hold: bool,
    /// Also measure every L4 row through a peer's node proxies in the same
    /// lab, with a column of its own and quicmesh / peer: `istio=PATH` (a
    /// build of Istio's ztunnel with its `testing` feature, e.g.
    /// ../shared/peers/istio-ztunnel). See docs/performance.md.
    #[arg(long, value_name = "KIND=PATH")]
    peer: Option<String>,
    /// Where the JSON goes.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The 1 KiB request/response server (run inside the server pod).
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The load generator (run inside the client pod); prints a JSON report.
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum)]
        mode: Mode,
        /// Requests per second (open mode).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        /// HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1 (open, closed).
        #[arg(long)]
        http2: bool,
        /// HTTP/2 closed loop: requests in flight per connection.
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// A header sent on every request, `name: value` (repeatable; at
        /// most 16, 8 KiB of names and values).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// The tunnel's TLS per crypto library, in memory: handshakes per
    /// second, the ClientHello, QUIC packet protection (ring; aws-lc-rs too
    /// in a build with `--features aws-lc-rs`). Needs no root.
    Tls {
        /// Seconds per figure.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

/// Raises the soft open-files limit to the hard one (the idle-connections
/// figure holds a thousand sockets here, in the server and in ztunnel, which
/// inherit the limit).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    raise_nofile();
    match args.cmd {
        Some(Cmd::Serve { port, threads }) => {
            quicmesh_bench::http::serve(SocketAddr::from(([0, 0, 0, 0], port)), threads)
        }
        Some(Cmd::Load {
            addr,
            mode,
            rate,
            conns,
            http2,
            streams,
            duration,
            warmup,
            headers,
        }) => {
            if !(0.0..=3600.0).contains(&duration) || !(0.0..=600.0).contains(&warmup) {
                bail!("duration must be 0..=3600 s and warmup 0..=600 s");
            }
            let spec = LoadSpec {
                addr,
                mode,
                rate,
                conns,
                streams,
                http2,
                headers: Headers::parse(&headers)?,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(warmup),
            };
            println!("{}", serde_json::to_string(&load::run(&spec)?)?);
            Ok(())
        }
        Some(Cmd::Tls { seconds }) => {
            if !(0.01..=60.0).contains(&seconds) {
                bail!("--seconds must be 0.01..=60");
            }
            let (date, load) = (report::now_utc(), report::loadavg());
            let rows = quicmesh_bench::tls::run(Duration::from_secs_f64(seconds))?;
            let table = quicmesh_bench::tls::table(&rows);
            let doc = json!({
                "date": date,
                "mode": "tls",
                "seconds_per_figure": seconds,
                "machine": report::machine("-", &load),
                "versions": report::versions(),
                "rows": rows,
                "table": table,
            });
            let path = report::write_json(&args.out_dir, "tls", &date, &doc)?;
            print!("{table}");
            eprintln!("[bench] JSON: {}", path.display());
            Ok(())
        }
        None => benchmark(args),
    }
}

/// Prints where everything is and waits for Ctrl-C.
async fn hold(describe: &str) -> Result<()> {
    println!("{describe}");
    eprintln!("[bench] holding the lab up; Ctrl-C tears it down");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn benchmark(args: Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark builds network namespaces: run it as root (sudo ./scripts/bench.sh)");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut plan = if args.smoke {
        Plan::smoke()
    } else if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(r) = args.runs {
        if !(1..=20).contains(&r) {
            bail!("--runs must be 1..=20");
        }
        plan.runs = r;
    }
    plan.mtu = args.mtu;
    plan.gro = args.gro;
    plan.lossy = !args.no_lossy;
    plan.peer = args
        .peer
        .as_deref()
        .map(quicmesh_bench::peer::PeerSpec::parse)
        .transpose()?;
    if args.l7 {
        plan = plan.l7_only();
    } else if args.no_l7 {
        plan.l7 = None;
    }
    let date = report::now_utc();
    let load_at_start = report::loadavg();
    eprintln!(
        "[bench] {} mode, {} run(s); load average {load_at_start}",
        plan.mode, plan.runs
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.hold {
        return rt.block_on(async {
            // The lab stays up while its bench lives.
            if args.l7 {
                let b = L7Bench::start(&plan).await?;
                hold(&b.describe()).await
            } else {
                let b = Bench::start(plan).await?;
                hold(&b.describe()).await
            }
        });
    }
    let (tables, doc) = rt.block_on(async {
        // One lab at a time: the L4 lab is gone before the L7 cluster starts.
        let mut l4 = None;
        if plan.l4 {
            let mut b = Bench::start(plan.clone()).await?;
            b.run_all().await?;
            let peer = b.peer_json();
            l4 = Some((b.table.markdown(), b.table.json(), b.raw, b.mtu, peer));
        }
        let mut l7 = None;
        if plan.l7.is_some() {
            let mut b = L7Bench::start(&plan).await?;
            b.run_all().await?;
            l7 = Some(b.finish());
        }
        let mtu = match (&l4, &l7) {
            (Some(l4), _) => l4.3.clone(),
            (None, Some(l7)) => l7.mtu.clone(),
            (None, None) => "unknown".into(),
        };
        let l7_table = l7.as_ref().map(|r| r.grid.markdown());
        let tables: Vec<String> = l4
            .as_ref()
            .map(|l4| l4.0.clone())
            .into_iter()
            .chain(l7_table.clone())
            .collect();
        let (l4_table, l4_rows, l4_raw, peer) = match l4 {
            Some((t, rows, raw, _, peer)) => (json!(t), rows, json!(raw), peer),
            None => (json!(null), json!(null), json!(null), json!(null)),
        };
        let doc = json!({
            "date": date,
            "mode": plan.mode,
            "plan": plan,
            "machine": report::machine(&mtu, &load_at_start),
            "versions": report::versions(),
            "ztunnel_log_level": std::env::var("QUICMESH_LAB_LOG").unwrap_or_else(|_| "info".into()),
            // Its directory names the cargo profile it was built with
            // (scripts/bench.sh: `dist`).
            "ztunnel_binary": quicmesh_lab::mesh::find_binary("ztunnel")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.to_string()),
            "ztunnel_extra_args": std::env::var("QUICMESH_ZTUNNEL_ARGS").unwrap_or_default(),
            "ztunnel_worker_threads": std::env::var("ZTUNNEL_WORKER_THREADS").unwrap_or_else(|_| "2 (default)".into()),
            "peer": peer,
            "rows": l4_rows,
            "raw": l4_raw,
            "table": l4_table,
            "l7": l7.map(|r| json!({
                "rows": r.grid.json(),
                "table": l7_table,
                "setup": r.setup,
                "raw": r.raw,
            })),
        });
        anyhow::Ok((tables, doc))
    })?;
    let path = report::write_json(
        &args.out_dir,
        doc["mode"].as_str().unwrap_or("run"),
        &date,
        &doc,
    )?;
    println!("{}", tables.join("\n"));
    eprintln!("[bench] JSON: {}", path.display());
    Ok(())
}
