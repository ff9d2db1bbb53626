//! Integration tests of `quicmesh_lab::net`: real namespaces, so they need root.

use quicmesh_lab::net::{self, Lab, PodSpec, TopologySpec};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

const SERVER: &str = "import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(16)
while True:
    c,_=s.accept(); c.settimeout(5); d=c.recv(1024); c.sendall(d); c.close()
";

const CLIENT: &str = "import socket,sys,time
end=time.time()+5
while True:
    try:
        c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2); break
    except OSError:
        if time.time()>end: raise
        time.sleep(0.05)
c.settimeout(5); c.sendall(b'hello'); print(c.recv(1024).decode())
";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "quicmesh-lab net tests create network namespaces and must run as root"
    );
}

fn pod(name: &str, node: usize) -> PodSpec {
    PodSpec {
        name: name.into(),
        node,
    }
}

/// Namespaces on the host belonging to the lab with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

fn serve(lab: &Lab, netns: &str, port: u16) -> net::ProcHandle {
    let handle = lab
        .spawn(
            netns,
            "python3",
            &["-c", SERVER, &port.to_string()],
            &[],
            None,
        )
        .unwrap();
    assert!(handle.is_running());
    handle
}

fn round_trip(lab: &Lab, netns: &str, dst: Ipv4Addr, port: u16) {
    let out = lab
        .exec(
            netns,
            &["python3", "-c", CLIENT, &dst.to_string(), &port.to_string()],
        )
        .unwrap_or_else(|e| panic!("{netns} -> {dst}:{port}: {e:#}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}

fn pid_gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Missing, or a zombie awaiting its reaper.
    stat.is_empty() || stat.contains(") Z ")
}

#[test]
fn topology_connectivity_counters_and_teardown() {
    require_root();
    let spec = TopologySpec {
        nodes: 2,
        pods: vec![pod("a", 1), pod("b", 2)],
        externals: 1,
        ..Default::default()
    };
    let lab = Lab::new(&spec).unwrap();
    let prefix = lab.prefix().to_string();
    assert!(prefix.starts_with(&format!("qm{}x", std::process::id())));
    assert_eq!(lab.nodes().len(), 2);
    assert_eq!(lab.node(2).netns, format!("{prefix}-n2"));
    assert_eq!(lab.node(2).link_ip, Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(lab.node(1).pod_cidr, "10.244.1.0/24");
    assert_eq!(lab.pod("a").ip, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(lab.pod("b").ip, Ipv4Addr::new(10, 244, 2, 2));
    assert_eq!(lab.pod("b").netns, format!("{prefix}-b"));
    assert_eq!(lab.external(1).ip, Ipv4Addr::new(10, 99, 0, 101));
    assert!(Lab::netns_path(&lab.pod("a").netns).exists());

    for node in 1..=2 {
        lab.add_link_counter(node, "tcp8080", "tcp dport 8080")
            .unwrap();
        assert_eq!(lab.link_counter(node, "tcp8080").unwrap(), (0, 0));
    }

    let b = lab.pod("b").clone();
    let server = serve(&lab, &b.netns, 8080);
    round_trip(&lab, &lab.pod("a").netns, b.ip, 8080);
    for node in 1..=2 {
        let (packets, bytes) = lab.link_counter(node, "tcp8080").unwrap();
        assert!(packets >= 3, "node {node}: {packets} packets");
        assert!(bytes > packets * 40, "node {node}: {bytes} bytes");
    }

    let ext = lab.external(1).clone();
    let ext_server = serve(&lab, &ext.netns, 9090);
    round_trip(&lab, &lab.pod("a").netns, ext.ip, 9090);
    round_trip(&lab, &ext.netns, b.ip, 8080);

    let started = std::time::Instant::now();
    let err = lab
        .exec_timeout(&b.netns, &["sleep", "30"], Duration::from_millis(300))
        .unwrap_err();
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let err = lab.exec(&b.netns, &["ls", "/nonexistent-qm"]).unwrap_err();
    assert!(format!("{err:#}").contains("nonexistent-qm"), "{err:#}");

    lab.set_link_mtu(1400).unwrap();
    let out = lab
        .exec(&lab.node(1).netns, &["ip", "link", "show", "dev", "link"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("mtu 1400"));
    // Pod veths too, both ends.
    let out = lab
        .exec(&lab.pod("a").netns, &["ip", "link", "show", "dev", "eth0"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("mtu 1400"));
    round_trip(&lab, &lab.pod("a").netns, b.ip, 8080);

    lab.set_link_gro(true).unwrap();
    let out = lab
        .exec(&lab.pod("a").netns, &["ethtool", "-k", "eth0"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("generic-receive-offload: on"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    round_trip(&lab, &lab.pod("a").netns, b.ip, 8080);

    match lab.netem(1, Some("delay 1ms")) {
        Ok(()) => {
            let out = lab.exec(&lab.node(1).netns, &["tc", "qdisc", "show", "dev", "link"]);
            assert!(String::from_utf8_lossy(&out.unwrap().stdout).contains("netem"));
            lab.netem(1, None).unwrap();
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("netem not supported by kernel"), "{msg}");
            eprintln!("NOTE: netem unavailable here: {msg}");
        }
    }
    lab.netem(1, None).unwrap();

    let pids = [server.pid(), ext_server.pid()];
    drop(lab);
    assert!(namespaces_with(&prefix).is_empty(), "leaked namespaces");
    assert!(!server.is_running() && !ext_server.is_running());
    assert!(pids.iter().all(|&p| pid_gone(p)));
}

#[test]
fn pods_added_and_removed_at_run_time() {
    require_root();
    let spec = TopologySpec {
        nodes: 2,
        pods: vec![],
        externals: 0,
        ..Default::default()
    };
    let mut lab = Lab::new(&spec).unwrap();
    let prefix = lab.prefix().to_string();
    let c = lab.add_pod(&pod("c", 2)).unwrap();
    let d = lab.add_pod(&pod("d", 1)).unwrap();
    assert_eq!(c.ip, Ipv4Addr::new(10, 244, 2, 2));
    assert_eq!(d.ip, Ipv4Addr::new(10, 244, 1, 2));
    assert!(lab.add_pod(&pod("c", 1)).is_err(), "duplicate name");
    assert!(lab.add_pod(&pod("e", 3)).is_err(), "no node 3");
    assert!(lab.add_pod(&pod("n1", 1)).is_err(), "reserved name");

    let _server = serve(&lab, &d.netns, 7000);
    round_trip(&lab, &c.netns, d.ip, 7000);

    let sleeper = lab.spawn(&c.netns, "sleep", &["300"], &[], None).unwrap();
    lab.remove_pod("c").unwrap();
    assert!(!Lab::netns_path(&c.netns).exists());
    assert!(!sleeper.is_running());
    assert_eq!(lab.pods().len(), 1);
    let node2 = lab.node(2).netns.clone();
    assert!(lab.exec(&node2, &["ip", "link", "show", "p2"]).is_err());
    let routes = lab.exec(&node2, &["ip", "route", "show"]).unwrap();
    assert!(!String::from_utf8_lossy(&routes.stdout).contains("10.244.2.2"));
    assert!(lab.remove_pod("c").is_err());

    // Host numbers are never reused within a lab.
    let e = lab.add_pod(&pod("e", 2)).unwrap();
    assert_eq!(e.ip, Ipv4Addr::new(10, 244, 2, 3));
    round_trip(&lab, &e.netns, d.ip, 7000);
    drop(lab);
    assert!(namespaces_with(&prefix).is_empty());
}

#[test]
fn lab_dropped_during_panic_leaves_nothing() {
    require_root();
    let mut prefix = String::new();
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let spec = TopologySpec {
            nodes: 1,
            pods: vec![pod("p", 1)],
            externals: 1,
            ..Default::default()
        };
        let lab = Lab::new(&spec).unwrap();
        prefix = lab.prefix().to_string();
        let sleeper = lab
            .spawn(&lab.pod("p").netns, "sleep", &["300"], &[], None)
            .unwrap();
        pid = sleeper.pid();
        panic!("deliberate test panic");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert!(namespaces_with(&prefix).is_empty(), "leaked namespaces");
    assert!(pid_gone(pid));
}

#[test]
fn stale_and_fixed_prefix_labs_are_destroyed() {
    require_root();
    // A namespace named after a dead owner is swept.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("qm{dead}x7-f");
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    net::sweep_stale().unwrap();
    assert!(!Lab::netns_path(&stale).exists());

    // A fixed-prefix lab forgotten by its owner is found and destroyed by prefix.
    let prefix = format!("qmt{}", std::process::id());
    let spec = TopologySpec {
        nodes: 1,
        pods: vec![pod("web", 1)],
        externals: 0,
        ..Default::default()
    };
    let lab = Lab::with_prefix(&spec, &prefix).unwrap();
    assert!(Lab::with_prefix(&spec, &prefix).is_err(), "prefix in use");
    let sleeper = lab
        .spawn(&lab.pod("web").netns, "sleep", &["300"], &[], None)
        .unwrap();
    std::mem::forget(lab);
    assert_eq!(net::destroy_prefix(&prefix).unwrap(), 3);
    assert!(namespaces_with(&prefix).is_empty());
    assert!(sleeper
        .wait_timeout(Duration::from_secs(2))
        .unwrap()
        .is_some());
}

#[test]
fn lab_and_handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Lab>();
    check::<net::ProcHandle>();
}

#[test]
fn link_loss_rules_are_set_replaced_and_cleared() {
    require_root();
    let lab = Lab::new(&TopologySpec {
        nodes: 2,
        pods: vec![],
        externals: 0,
        ..Default::default()
    })
    .unwrap();
    let ns = &lab.node(1).netns;
    let rules = || {
        let out = lab
            .exec(ns, &["nft", "list", "table", "inet", "qmloss"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    lab.set_link_loss(1, Some(1)).unwrap();
    assert!(
        rules().contains("numgen random mod 100 < 1 counter name \"dropped\" drop"),
        "{}",
        rules()
    );
    assert_eq!(lab.link_loss_dropped(1).unwrap(), 0);
    lab.set_link_loss(1, Some(100)).unwrap();
    assert!(
        rules().contains("oifname \"link\" counter name \"dropped\" drop"),
        "{}",
        rules()
    );
    lab.set_link_loss(1, None).unwrap();
    assert!(lab
        .exec(ns, &["nft", "list", "table", "inet", "qmloss"])
        .is_err());
    assert!(lab.set_link_loss(1, Some(101)).is_err());
}

/// Two clusters of the address plan side by side: disjoint addresses, a
/// pod at the address it asked for, and every pod, node and external of
/// one reaching the pods and externals of the other once connected.
#[test]
fn two_clusters_connected_with_a_pinned_pod() {
    require_root();
    let east = Lab::new(&TopologySpec {
        nodes: 2,
        pods: vec![pod("a", 2)],
        externals: 1,
        cluster: 1,
    })
    .unwrap();
    let mut west = Lab::new(&TopologySpec {
        nodes: 2,
        pods: vec![],
        externals: 1,
        cluster: 2,
    })
    .unwrap();
    assert_eq!(west.cluster(), 2);
    assert_eq!(west.node(1).link_ip, Ipv4Addr::new(10, 99, 0, 11));
    assert_eq!(west.node(2).pod_cidr, "10.244.12.0/24");
    assert_eq!(west.external(1).ip, Ipv4Addr::new(10, 99, 0, 111));
    assert_eq!(east.pod("a").ip, Ipv4Addr::new(10, 244, 2, 2));

    let pinned = Ipv4Addr::new(10, 244, 12, 200);
    let b = west.add_pod_at(&pod("b", 2), Some(pinned)).unwrap();
    assert_eq!(b.ip, pinned);
    // Taken, or outside the node's CIDR: refused, saying why.
    let taken = west.add_pod_at(&pod("c", 2), Some(pinned)).unwrap_err();
    assert!(format!("{taken:#}").contains("taken by pod b"), "{taken:#}");
    let elsewhere = Ipv4Addr::new(10, 244, 11, 200);
    let wrong = west.add_pod_at(&pod("c", 2), Some(elsewhere)).unwrap_err();
    assert!(
        format!("{wrong:#}").contains("not a pod address of node2"),
        "{wrong:#}"
    );
    // Automatic addresses skip it.
    assert_eq!(
        west.add_pod(&pod("c", 2)).unwrap().ip,
        Ipv4Addr::new(10, 244, 12, 2)
    );

    // A lab cannot be connected to one of its own cluster number.
    let same = Lab::new(&TopologySpec {
        nodes: 1,
        externals: 0,
        ..Default::default()
    })
    .unwrap();
    assert!(east.connect(&same).is_err());
    drop(same);

    east.connect(&west).unwrap();
    let server = serve(&west, &b.netns, 8080);
    round_trip(&east, &east.pod("a").netns, pinned, 8080);
    round_trip(&east, &east.external(1).netns, pinned, 8080);
    let west_ext = west.external(1).clone();
    let ext_server = serve(&west, &west_ext.netns, 9090);
    round_trip(&east, &east.pod("a").netns, west_ext.ip, 9090);
    let a = east.pod("a").clone();
    let back = serve(&east, &a.netns, 7070);
    round_trip(&west, &west.pod("c").netns, a.ip, 7070);

    let (ep, wp) = (east.prefix().to_string(), west.prefix().to_string());
    let pids = [server.pid(), ext_server.pid(), back.pid()];
    drop(west);
    // East's end of the link goes with west's fabric (the kernel cleans
    // a deleted namespace up asynchronously).
    let link_left = || {
        let out = east.exec(&format!("{ep}-f"), &["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.unwrap().stdout).contains("c2@")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while link_left() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!link_left(), "east's end of the link to west outlived west");
    drop(east);
    assert!(namespaces_with(&ep).is_empty() && namespaces_with(&wp).is_empty());
    assert!(pids.iter().all(|&p| pid_gone(p)));
}
