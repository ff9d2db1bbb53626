//! `quicmesh local exec POD -- CMD` and `quicmesh local logs POD`: a
//! command inside a lab pod's network namespace (with the pod's
//! `/etc/hosts`, so Service names resolve as in the pod), and the log of a
//! pod or a mesh process.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// What a name given on the command line stands for.
struct Found {
    netns: String,
    log: PathBuf,
}

/// `NAMESPACE/POD`, `POD` (when one namespace has it), `node<N>` or
/// `ztunnel/node<N>` (that node's ztunnel), `cni/node<N>` (its CNI agent;
/// its node's namespace), `controller`.
fn find(name: &str) -> Result<Found> {
    let Some(status) = crate::manifests::running_status()? else {
        return demo(name);
    };
    let clusters = status.as_array().cloned().unwrap_or_default();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut known = Vec::new();
    let mut hits = Vec::new();
    for c in &clusters {
        if name == "controller" {
            hits.push(Found {
                netns: s(&c["controller_netns"]),
                log: PathBuf::from(s(&c["controller_log"])),
            });
        }
        for n in c["nodes"].as_array().into_iter().flatten() {
            let node = s(&n["name"]);
            known.push(format!("ztunnel/{node}"));
            let (netns, log) = (s(&n["netns"]), s(&n["cni_log"]));
            if name == node || name == format!("ztunnel/{node}") {
                hits.push(Found {
                    netns: netns.clone(),
                    log: PathBuf::from(s(&n["log"])),
                });
            } else if name == format!("cni/{node}") {
                hits.push(Found {
                    netns,
                    log: PathBuf::from(log),
                });
            }
        }
        for p in c["pods"].as_array().into_iter().flatten() {
            let full = format!("{}/{}", s(&p["namespace"]), s(&p["name"]));
            known.push(full.clone());
            if name == full || name == s(&p["name"]) {
                hits.push(Found {
                    netns: s(&p["netns"]),
                    log: PathBuf::from(s(&p["log"])),
                });
            }
        }
    }
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => bail!(
            "no pod or process {name} in the local mesh; it has: controller, {}",
            known.join(", ")
        ),
        _ => bail!(
            "{name} is in several namespaces or clusters: name it NAMESPACE/POD (and --cluster)"
        ),
    }
}

/// The built-in demo (`quicmesh local up` without `-f`): its pods are
/// `client` and `server`, its ztunnels `node1` and `node2`.
fn demo(name: &str) -> Result<Found> {
    let dir = crate::state_dir();
    let name = name
        .trim_start_matches("demo/")
        .trim_start_matches("ztunnel/");
    let (netns, log) = match name {
        "client" | "server" => (
            format!("{}-{name}", crate::PREFIX),
            dir.join(format!("{name}.log")),
        ),
        "node1" | "node2" => (
            format!("{}-n{}", crate::PREFIX, &name[4..]),
            dir.join(format!("ztunnel-n{}.log", &name[4..])),
        ),
        _ => bail!(
            "no local mesh with manifests is running, and the built-in demo has only \
             demo/client, demo/server, node1 and node2 (start one: `quicmesh local up`)"
        ),
    };
    if !quicmesh_lab::Lab::netns_path(&netns).exists() {
        bail!("no local mesh is running (start one with `quicmesh local up`)");
    }
    Ok(Found { netns, log })
}

/// Runs `cmd` inside the network namespace of `name`, as `ip netns exec`
/// does (it also mounts the pod's `/etc/netns/<ns>/hosts`). Returns only
/// on failure: the command replaces this process.
pub fn exec(name: &str, cmd: &[String]) -> Result<()> {
    if cmd.is_empty() {
        bail!("no command: quicmesh local exec {name} -- CMD [ARGS...]");
    }
    let found = find(name)?;
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("ip")
            .args(["netns", "exec", &found.netns])
            .args(cmd),
    );
    Err(err).context("running ip netns exec (is iproute2 installed? scripts/setup.sh installs it)")
}

/// Prints the log of `name`: its last `tail` lines (all when `None`),
/// then, with `follow`, what is appended until the mesh goes away.
pub fn logs(name: &str, tail: Option<usize>, follow: bool) -> Result<()> {
    let found = find(name)?;
    let mut f = std::fs::File::open(&found.log)
        .with_context(|| format!("the log of {name} ({})", found.log.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for l in &lines[from..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut at = f.stream_position()?;
    while quicmesh_lab::Lab::netns_path(&found.netns).exists() {
        std::thread::sleep(Duration::from_millis(250));
        let len = f.metadata()?.len();
        if len < at {
            // Truncated or replaced: start over.
            at = 0;
        }
        if len > at {
            f.seek(SeekFrom::Start(at))?;
            let mut chunk = Vec::new();
            (&mut f).take(len - at).read_to_end(&mut chunk)?;
            out.write_all(&chunk)?;
            out.flush()?;
            at = len;
        }
    }
    Ok(())
}
