//! Finding a running pod's network namespace through the host's `/proc`,
//! for pods the plugin never saw being created: those that predate the
//! agent, and those whose namespace joins the mesh later.
//!
//! The kubelet puts every container of a pod in a cgroup under the pod's
//! own, named after the pod's uid, in one of two forms by cgroup driver:
//!
//! - cgroupfs: `/kubepods/besteffort/pod<uid>/<container>` (the uid as
//!   written, with dashes; Guaranteed pods sit directly under `/kubepods`);
//! - systemd: `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
//!   (systemd reserves `-` in slice names, so the kubelet writes `_`).
//!
//! [`netns_of_pod`] reads `<proc>/<pid>/cgroup` of every process, once, and
//! opens `<proc>/<pid>/ns/net` of the first one in the pod's cgroup. Any
//! process will do (every container of a pod shares the pause container's
//! network namespace), except one in the host's own network namespace
//! (`<proc>/1/ns/net`): a `hostNetwork` pod has no namespace of its own to
//! hand to ztunnel, and redirecting the host's traffic must never happen.
//!
//! `/proc/<pid>/cgroup` shows paths relative to the *reader's* cgroup
//! namespace (the agent's container has its own): other pods' paths then
//! start with `/../..`, which keeps the pod's segment, which is all that is
//! matched. Opening another user's `ns/net` needs `CAP_SYS_PTRACE` (the
//! agent's one capability). Processes that exit mid-scan, zombies (no
//! namespaces) and unreadable entries are skipped.
//!
//! This module must not enroll the namespace (the agent hands the open
//! file to ztunnel) nor keep any state.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The network namespace of a process of the pod whose uid is `pod_uid`,
/// opened, from the proc filesystem mounted at `proc` (the host's, e.g.
/// `/host/proc`). `None` when no process of the pod runs (yet, or any
/// more), or only in the host's network namespace (`hostNetwork`).
///
/// Scans `proc` once, however many processes it lists. Errors only if
/// `proc` cannot be listed, the host's namespace (`<proc>/1/ns/net`)
/// cannot be read (without it a host-network process could not be told
/// apart), or `pod_uid` is not a uid (empty, or other than hex digits and
/// dashes).
pub fn netns_of_pod(proc: &Path, pod_uid: &str) -> io::Result<Option<File>> {
    if pod_uid.is_empty() || !pod_uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a pod uid: {pod_uid:?}"),
        ));
    }
    let cgroupfs = format!("pod{pod_uid}");
    let systemd = format!("pod{}", pod_uid.replace('-', "_"));
    let host = fs::metadata(proc.join("1/ns/net")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "reading the host's network namespace {}: {e}",
                proc.join("1/ns/net").display()
            ),
        )
    })?;
    let host = (host.dev(), host.ino());
    for entry in fs::read_dir(proc)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let dir = entry.path();
        let Ok(cgroup) = fs::read_to_string(dir.join("cgroup")) else {
            continue;
        };
        if !names_pod(&cgroup, &cgroupfs) && !names_pod(&cgroup, &systemd) {
            continue;
        }
        let Ok(netns) = File::open(dir.join("ns/net")) else {
            continue;
        };
        let Ok(meta) = netns.metadata() else { continue };
        if (meta.dev(), meta.ino()) == host {
            continue;
        }
        return Ok(Some(netns));
    }
    Ok(None)
}

/// Whether a cgroup file names the pod's cgroup `segment` (`pod<uid>`) as
/// a whole: after a `/` (cgroupfs) or a `-` (a systemd slice's parent
/// prefix), and before a `/`, a `.` (`.slice`) or the line's end.
fn names_pod(cgroup: &str, segment: &str) -> bool {
    cgroup.match_indices(segment).any(|(at, _)| {
        let before = cgroup[..at].chars().next_back();
        let after = cgroup[at + segment.len()..].chars().next();
        matches!(before, Some('/' | '-')) && matches!(after, None | Some('/' | '.' | '\n'))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use super::*;

    const UID: &str = "3f6c1d2a-8b4e-4c71-9e0a-5a2d7f1b9c01";
    const OTHER: &str = "8a1e4b7c-2d3f-4e56-a789-0b1c2d3e4f02";

    /// A real network namespace to open: this process's.
    const A_NETNS: &str = "/proc/self/ns/net";

    fn systemd(uid: &str) -> String {
        let uid = uid.replace('-', "_");
        format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-4b1f.scope\n"
        )
    }

    fn cgroupfs(uid: &str) -> String {
        // cgroup v1: one line per hierarchy.
        format!(
            "12:memory:/kubepods/burstable/pod{uid}/9a8b\n11:cpu,cpuacct:/kubepods/burstable/pod{uid}/9a8b\n0::/\n"
        )
    }

    /// A fake proc tree. Its host namespace (`1/ns/net`) is a plain file
    /// unless `host_is` names one; `ns/net` of a process is a symlink to
    /// what it is given.
    struct Proc(tempfile::TempDir);

    impl Proc {
        fn new(host_is: Option<&str>) -> Proc {
            let p = Proc(tempfile::tempdir().unwrap());
            p.process(1, Some("0::/init.scope\n"), None);
            let host = p.path().join("1/ns/net");
            match host_is {
                Some(target) => symlink(target, host).unwrap(),
                None => fs::write(host, "the host's netns").unwrap(),
            }
            // Not processes.
            fs::create_dir_all(p.path().join("sys/net")).unwrap();
            fs::write(p.path().join("uptime"), "1.0 1.0").unwrap();
            p
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        fn process(&self, pid: u32, cgroup: Option<&str>, netns: Option<&str>) -> PathBuf {
            let dir = self.path().join(pid.to_string());
            fs::create_dir_all(dir.join("ns")).unwrap();
            if let Some(c) = cgroup {
                fs::write(dir.join("cgroup"), c).unwrap();
            }
            if let Some(n) = netns {
                symlink(n, dir.join("ns/net")).unwrap();
            }
            dir
        }
    }

    fn inode(f: &File) -> u64 {
        f.metadata().unwrap().ino()
    }

    fn netns_inode() -> u64 {
        fs::metadata(A_NETNS).unwrap().ino()
    }

    #[test]
    fn a_pod_is_found_by_its_cgroup_in_either_drivers_form() {
        for cgroup in [systemd(UID), cgroupfs(UID)] {
            let proc = Proc::new(None);
            proc.process(40, Some(&systemd(OTHER)), Some("/nonexistent"));
            proc.process(
                41,
                Some("0::/system.slice/containerd.service\n"),
                Some(A_NETNS),
            );
            proc.process(42, Some(&cgroup), Some(A_NETNS));
            let f = netns_of_pod(proc.path(), UID).unwrap().expect(&cgroup);
            assert_eq!(inode(&f), netns_inode(), "{cgroup}");
            assert!(netns_of_pod(proc.path(), OTHER).unwrap().is_none());
        }
    }

    #[test]
    fn a_pod_without_processes_or_only_in_the_hosts_netns_is_none() {
        let proc = Proc::new(Some(A_NETNS));
        assert!(netns_of_pod(proc.path(), UID).unwrap().is_none());
        // hostNetwork: its processes share the host's namespace.
        proc.process(42, Some(&systemd(UID)), Some(A_NETNS));
        assert!(netns_of_pod(proc.path(), UID).unwrap().is_none());
        // Another process of the pod with a namespace of its own is taken.
        let own = proc.path().join("pod-netns");
        fs::write(&own, "").unwrap();
        proc.process(43, Some(&systemd(UID)), Some(own.to_str().unwrap()));
        let f = netns_of_pod(proc.path(), UID).unwrap().unwrap();
        assert_eq!(inode(&f), fs::metadata(&own).unwrap().ino());
    }

    #[test]
    fn unreadable_and_vanished_processes_are_skipped() {
        let proc = Proc::new(None);
        // No cgroup file (exited mid-scan), no ns/net (a zombie), a dangling
        // ns/net: skipped; the one readable process is found.
        proc.process(50, None, Some(A_NETNS));
        proc.process(51, Some(&cgroupfs(UID)), None);
        proc.process(52, Some(&cgroupfs(UID)), Some("/nonexistent/ns/net"));
        assert!(netns_of_pod(proc.path(), UID).unwrap().is_none());
        proc.process(53, Some(&cgroupfs(UID)), Some(A_NETNS));
        let f = netns_of_pod(proc.path(), UID).unwrap().unwrap();
        assert_eq!(inode(&f), netns_inode());
    }

    #[test]
    fn only_the_whole_uid_matches() {
        let proc = Proc::new(None);
        let longer = format!("0::/kubepods/besteffort/pod{UID}0/x\n");
        let prefixed = format!("0::/kubepods/besteffort/xpod{UID}/x\n");
        proc.process(60, Some(&longer), Some(A_NETNS));
        proc.process(61, Some(&prefixed), Some(A_NETNS));
        assert!(netns_of_pod(proc.path(), UID).unwrap().is_none());
        // A process at the pod's own cgroup (the line ends there), seen
        // from another cgroup namespace.
        proc.process(
            62,
            Some(&format!("0::/../../kubepods/pod{UID}")),
            Some(A_NETNS),
        );
        assert!(netns_of_pod(proc.path(), UID).unwrap().is_some());
        assert!(names_pod(
            &systemd(UID),
            &format!("pod{}", UID.replace('-', "_"))
        ));
        assert!(!names_pod(&systemd(UID), &format!("pod{UID}")));
    }

    #[test]
    fn refusals() {
        let proc = Proc::new(None);
        for bad in ["", "../1", "pod*", "3f6c1d2a_8b4e"] {
            let e = netns_of_pod(proc.path(), bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        // Without the host's namespace, a hostNetwork pod could be handed over.
        fs::remove_file(proc.path().join("1/ns/net")).unwrap();
        let e = netns_of_pod(proc.path(), UID).unwrap_err();
        assert!(e.to_string().contains("host's network namespace"), "{e}");
        let e = netns_of_pod(&proc.path().join("absent"), UID).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
