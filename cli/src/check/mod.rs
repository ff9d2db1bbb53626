//! `quicmesh check`: whether this host can run quicmesh (kernel, network
//! namespaces, veth, nftables, the binaries and their versions, the tools
//! the lab uses), and, when a local mesh runs, whether its controller
//! answers and every proxy took its config. Each check says what to do
//! when it fails; the exit status is 1 when one did.

use std::process::Command;

use anyhow::Result;
use serde_json::json;

use crate::inspect::{controller_status, proxy_row, str_of, Output};
use crate::kube::KubeArgs;
use crate::target::Mesh;

mod cluster;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    /// Works, with a caveat (shown, never fails the run).
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    /// What to do next (failures and warnings).
    hint: String,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
        hint: String::new(),
    }
}

fn bad(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        hint: hint.into(),
    }
}

/// `cmd args` (bounded by the commands themselves: none of these wait on
/// anything); its stdout, or why it failed.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("{cmd}: {e}")),
    }
}

/// `major.minor` of a kernel release such as `6.1.0-27-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The oldest kernel tested: nftables' inet family with the socket
/// expressions the capture rules use, and UDP GSO (5.0).
const MIN_KERNEL: (u32, u32) = (5, 10);

fn host_checks() -> Vec<Check> {
    let mut out = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    out.push(if root {
        ok("root", "running as root")
    } else {
        bad(
            "root",
            Level::Fail,
            "not root",
            "`quicmesh local` builds network namespaces and nftables rules: run as root, or use ./quicmesh, which re-runs itself through sudo",
        )
    });
    out.push(match run("uname", &["-r"]) {
        Ok(r) => match kernel_version(&r) {
            Some(v) if v >= MIN_KERNEL => ok("kernel", format!("Linux {r}")),
            Some(_) => bad(
                "kernel",
                Level::Fail,
                format!("Linux {r}"),
                format!(
                    "quicmesh needs Linux {}.{} or newer",
                    MIN_KERNEL.0, MIN_KERNEL.1
                ),
            ),
            None => bad(
                "kernel",
                Level::Warn,
                format!("unrecognised release {r}"),
                "expected e.g. 6.1.0",
            ),
        },
        Err(e) => bad("kernel", Level::Fail, e, "uname is missing: is this Linux?"),
    });
    for (name, tool, args, hint) in [
        (
            "iproute2",
            "ip",
            &["-V"][..],
            "install iproute2 (scripts/setup.sh does)",
        ),
        (
            "nftables",
            "nft",
            &["--version"][..],
            "install nftables (scripts/setup.sh does)",
        ),
        (
            "curl",
            "curl",
            &["--version"][..],
            "install curl: the demo's client uses it",
        ),
        (
            "python3",
            "python3",
            &["--version"][..],
            "install python3: the lab's example apps use it",
        ),
    ] {
        out.push(match run(tool, args) {
            // The first line, without curl's list of libraries.
            Ok(v) => ok(
                name,
                v.lines()
                    .next()
                    .unwrap_or_default()
                    .split(" (")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            Err(e) => bad(name, Level::Fail, e, hint),
        });
    }
    if root {
        out.push(kernel_features());
    }
    out.extend(binaries());
    out
}

/// A throwaway network namespace with a veth pair and an nftables table:
/// what the lab and ztunnel's capture need from the kernel.
fn kernel_features() -> Check {
    let ns = format!("qmcheck-{}", std::process::id());
    let steps: [&[&str]; 4] = [
        &["ip", "netns", "add", &ns],
        &[
            "ip", "netns", "exec", &ns, "ip", "link", "add", "qmc0", "type", "veth", "peer",
            "name", "qmc1",
        ],
        &[
            "ip", "netns", "exec", &ns, "nft", "add", "table", "inet", "qmcheck",
        ],
        &[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "add",
            "chain",
            "inet",
            "qmcheck",
            "out",
            "{ type nat hook output priority -100 ; }",
        ],
    ];
    let mut failed = None;
    for step in steps {
        if let Err(e) = run(step[0], &step[1..]) {
            failed = Some((step.join(" "), e));
            break;
        }
    }
    let _ = run("ip", &["netns", "delete", &ns]);
    match failed {
        None => ok("kernel features", "network namespaces, veth, nftables nat hooks"),
        Some((step, e)) => bad(
            "kernel features",
            Level::Fail,
            format!("`{step}` failed: {e}"),
            "load the modules (modprobe veth nf_tables nft_chain_nat) or run on a host, not an unprivileged container",
        ),
    }
}

/// The mesh's binaries beside this one, each at this version.
fn binaries() -> Vec<Check> {
    let want = env!("CARGO_PKG_VERSION");
    ["ztunnel", "controller", "waypoint", "quicmesh-cni"]
        .into_iter()
        .map(|name| match quicmesh_lab::ztunnels::find_binary(name) {
            Err(e) => bad(
                "binaries",
                Level::Fail,
                format!("{name}: {e:#}"),
                "build them: cargo build --release --bins",
            ),
            Ok(path) => match run(&path.to_string_lossy(), &["--version"]) {
                Ok(v) if v.split_whitespace().last() == Some(want) => {
                    ok("binaries", format!("{name} {want}"))
                }
                Ok(v) => bad(
                    "binaries",
                    Level::Fail,
                    format!("{name} is `{v}`, this CLI {want}"),
                    "rebuild: cargo build --release --bins",
                ),
                Err(e) => bad(
                    "binaries",
                    Level::Fail,
                    format!("{name}: {e}"),
                    "rebuild: cargo build --release --bins",
                ),
            },
        })
        .collect()
}

/// The running local mesh, when there is one.
async fn mesh_checks() -> Vec<Check> {
    match crate::manifests::running_status() {
        Ok(Some(_)) => {}
        Ok(None) => {
            return vec![ok(
                "local mesh",
                "none running (quicmesh local up -f DIR starts one)",
            )]
        }
        Err(e) => {
            return vec![bad(
                "local mesh",
                Level::Fail,
                format!("{e:#}"),
                "quicmesh local down, then up again",
            )]
        }
    }
    match Mesh::local(None) {
        Ok(mesh) => proxy_checks(&mesh).await,
        Err(e) => vec![bad(
            "local mesh",
            Level::Fail,
            format!("{e:#}"),
            "quicmesh local down, then up again",
        )],
    }
}

/// Whether each cluster's controller answers and every proxy took the
/// config sent to it.
async fn proxy_checks(mesh: &Mesh) -> Vec<Check> {
    let mut out = Vec::new();
    for c in &mesh.clusters {
        let named = match c["cluster"].as_u64() {
            Some(n) => format!("cluster {n}: "),
            None => String::new(),
        };
        let (version, proxies, errors) = match controller_status(mesh, c).await {
            Ok(s) => s,
            Err(e) => {
                out.push(bad(
                    "controller",
                    Level::Fail,
                    format!("{named}{e:#}"),
                    "its log says why",
                ));
                continue;
            }
        };
        out.push(if errors.is_empty() {
            ok("controller", format!("{named}config version {version}"))
        } else {
            bad(
                "controller",
                Level::Warn,
                format!("{named}config version {version}; {}", errors.join("; ")),
                "a replica does not answer: its log says why",
            )
        });
        let behind: Vec<String> = proxies
            .iter()
            .map(|(n, p)| (n, proxy_row(n, p, version)))
            .filter(|(_, r)| r["status"] != "SYNCED")
            .map(|(n, r)| format!("{n} ({})", str_of(&r["status"])))
            .collect();
        out.push(if proxies.is_empty() {
            bad(
                "proxies",
                Level::Fail,
                "no proxy is connected",
                "the ztunnels' logs say why (quicmesh local logs ztunnel/node1; kubectl -n <ns> logs ds/ztunnel)",
            )
        } else if behind.is_empty() {
            ok(
                "proxies",
                format!("{} connected, each took its config", proxies.len()),
            )
        } else {
            bad(
                "proxies",
                Level::Fail,
                format!("not synced: {}", behind.join(", ")),
                "quicmesh proxy-status shows why (NACK reasons); then the proxy's log",
            )
        });
    }
    out
}

/// This host and its local mesh; or, when `kube` names one, a
/// Kubernetes cluster's mesh.
pub async fn run_all(output: Output, kube: &KubeArgs) -> Result<bool> {
    let checks = if kube.named() {
        cluster::checks(kube).await
    } else {
        let mut checks = host_checks();
        checks.extend(mesh_checks().await);
        checks
    };
    let failed = checks.iter().any(|c| c.level == Level::Fail);
    match output {
        Output::Table => {
            for c in &checks {
                let mark = match c.level {
                    Level::Ok => "ok  ",
                    Level::Warn => "warn",
                    Level::Fail => "FAIL",
                };
                println!("[{mark}] {:<16} {}", c.name, c.detail);
                if !c.hint.is_empty() {
                    println!("       {:<16} -> {}", "", c.hint);
                }
            }
            println!(
                "\n{}",
                if failed {
                    "quicmesh check: some checks failed (see -> for what to do)"
                } else {
                    "quicmesh check: all checks passed"
                }
            );
        }
        Output::Json | Output::Yaml => {
            let rows: Vec<serde_json::Value> = checks
                .iter()
                .map(|c| {
                    json!({"check": c.name, "result": match c.level { Level::Ok => "ok", Level::Warn => "warn", Level::Fail => "fail" },
                        "detail": c.detail, "hint": c.hint})
                })
                .collect();
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", serde_yaml::to_string(&rows)?);
            }
        }
    }
    Ok(!failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(kernel_version("6.1.0-27-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10.0"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("5.4.0").unwrap() < MIN_KERNEL);
    }
}
