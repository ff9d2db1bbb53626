use std::os::unix::fs::MetadataExt;

use serde_json::json;

use super::*;

fn ours(log: &str) -> Value {
    json!({"type": "quicmesh-cni", "socket": "/var/run/quicmesh/ztunnel.sock", "logLevel": log})
}

fn calico() -> Value {
    json!({
        "name": "k8s-pod-network",
        "cniVersion": "0.3.1",
        "disableCheck": true,
        "plugins": [
            {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
            {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
        ]
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

fn types(v: &Value) -> Vec<&str> {
    v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect()
}

/// The names in `dir`, sorted (temporary files would show).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn refusal(e: &anyhow::Error) -> &ChainError {
    e.downcast_ref::<ChainError>()
        .unwrap_or_else(|| panic!("not a refusal: {e:#}"))
}

#[test]
fn a_fresh_chain_appends_to_the_lexically_first_config_keeping_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let primary = write(dir.path(), "10-calico.conflist", &calico());
    // Later in the runtime's order, or not configs at all: untouched.
    let later = write(dir.path(), "20-other.conflist", &calico());
    fs::write(dir.path().join("05-notes.txt"), "x").unwrap();
    fs::write(dir.path().join("00-backup.conflist.bak"), "x").unwrap();
    fs::create_dir(dir.path().join("00-dir.conf")).unwrap();
    fs::set_permissions(&primary, fs::Permissions::from_mode(0o600)).unwrap();

    let written = chain(dir.path(), &ours("info")).unwrap();
    assert_eq!(written, primary);
    let v = read(&primary);
    assert_eq!(types(&v), ["calico", "portmap", "quicmesh-cni"]);
    let mut want = calico();
    want["plugins"].as_array_mut().unwrap().push(ours("info"));
    assert_eq!(v, want, "every other key and plugin as it was");
    assert_eq!(read(&later), calico());
    assert_eq!(
        fs::metadata(&primary).unwrap().permissions().mode() & 0o777,
        0o600,
        "the primary's mode is kept"
    );
    assert_eq!(
        names(dir.path()),
        [
            "00-backup.conflist.bak",
            "00-dir.conf",
            "05-notes.txt",
            "10-calico.conflist",
            "20-other.conflist"
        ],
        "no temporary file left"
    );
}

#[test]
fn chaining_again_replaces_our_entry_in_place_and_rewrites_nothing_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let primary = write(dir.path(), "10-calico.conflist", &calico());
    chain(dir.path(), &ours("info")).unwrap();
    let inode = fs::metadata(&primary).unwrap().ino();
    // The same entry again: nothing to write (a rename would change the inode).
    assert_eq!(chain(dir.path(), &ours("info")).unwrap(), primary);
    assert_eq!(fs::metadata(&primary).unwrap().ino(), inode);
    // Something appended after us (another chained plugin), and a stray
    // second entry of ours: ours is replaced where it stands, once.
    let mut v = read(&primary);
    let plugins = v["plugins"].as_array_mut().unwrap();
    plugins.push(json!({"type": "bandwidth"}));
    plugins.push(ours("stale"));
    write(dir.path(), "10-calico.conflist", &v);
    chain(dir.path(), &ours("debug")).unwrap();
    let v = read(&primary);
    assert_eq!(
        types(&v),
        ["calico", "portmap", "quicmesh-cni", "bandwidth"]
    );
    assert_eq!(v["plugins"][2], ours("debug"));
}

#[test]
fn a_single_plugin_conf_becomes_a_conflist_as_libcni_would_make_it() {
    let dir = tempfile::tempdir().unwrap();
    let flannel = json!({
        "name": "cbr0", "cniVersion": "0.3.1", "type": "flannel",
        "delegate": {"hairpinMode": true, "isDefaultGateway": true}
    });
    let conf = write(dir.path(), "10-flannel.conf", &flannel);
    write(dir.path(), "99-loopback.conf", &json!({"type": "loopback"}));

    let written = chain(dir.path(), &ours("info")).unwrap();
    assert_eq!(written, dir.path().join("10-flannel.conflist"));
    assert!(!conf.exists(), "the .conf is removed");
    assert_eq!(
        read(&written),
        json!({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [flannel, ours("info")]})
    );
    // Idempotent from then on.
    assert_eq!(chain(dir.path(), &ours("info")).unwrap(), written);
    assert_eq!(
        names(dir.path()),
        ["10-flannel.conflist", "99-loopback.conf"]
    );
    // The primary writes its .conf again (it restarted): it sorts first,
    // so it is what the runtime reads; converted again, over our old list.
    write(dir.path(), "10-flannel.conf", &flannel);
    assert_eq!(chain(dir.path(), &ours("debug")).unwrap(), written);
    assert_eq!(types(&read(&written)), ["flannel", "quicmesh-cni"]);
    assert_eq!(read(&written)["plugins"][1], ours("debug"));
    assert!(!conf.exists());
}

#[test]
fn a_config_rewritten_by_the_primary_is_chained_again() {
    let dir = tempfile::tempdir().unwrap();
    let primary = write(dir.path(), "10-calico.conflist", &calico());
    chain(dir.path(), &ours("info")).unwrap();
    // Calico restarts and writes its config as it knows it: ours is gone.
    write(dir.path(), "10-calico.conflist", &calico());
    assert_eq!(types(&read(&primary)), ["calico", "portmap"]);
    chain(dir.path(), &ours("info")).unwrap();
    assert_eq!(
        types(&read(&primary)),
        ["calico", "portmap", "quicmesh-cni"]
    );
    // A new primary sorting first (another CNI installed): chained there.
    let cilium =
        json!({"cniVersion": "0.3.1", "name": "cilium", "plugins": [{"type": "cilium-cni"}]});
    let first = write(dir.path(), "05-cilium.conflist", &cilium);
    assert_eq!(chain(dir.path(), &ours("info")).unwrap(), first);
    assert_eq!(types(&read(&first)), ["cilium-cni", "quicmesh-cni"]);
}

#[test]
fn what_is_not_a_config_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // No config yet (and no dir at all): retry later.
    let e = chain(&dir.path().join("absent"), &ours("info")).unwrap_err();
    assert!(matches!(refusal(&e), ChainError::NoConfig(_)), "{e:#}");
    let e = chain(dir.path(), &ours("info")).unwrap_err();
    assert!(matches!(refusal(&e), ChainError::NoConfig(_)), "{e:#}");
    assert!(e.to_string().contains("yet"), "{e}");

    let cases: [(&str, &[u8]); 6] = [
        ("10-x.conflist", b"{\"plugins\": [ {\"type\": \"calico\" "),
        ("10-x.conflist", b"\x00\x01garbage"),
        ("10-x.conflist", br#"{"name": "x", "plugins": []}"#),
        ("10-x.conflist", br#"{"name": "x"}"#),
        ("10-x.conf", br#"{"name": "x"}"#),
        (
            "10-x.conf",
            br#"{"name": "x", "plugins": [{"type": "calico"}]}"#,
        ),
    ];
    for (name, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        let e = chain(dir.path(), &ours("info")).unwrap_err();
        let what = match refusal(&e) {
            ChainError::NotJson { .. } => "json",
            ChainError::NoPlugins(_) => "plugins",
            ChainError::NoType(_) => "type",
            other => panic!("{other}"),
        };
        assert!(
            e.to_string().contains("left untouched"),
            "{name} {what}: {e}"
        );
        assert_eq!(fs::read(&p).unwrap(), text, "{name} untouched");
        assert_eq!(names(dir.path()), [name], "nothing else written");
    }
    // Our entry must be a plugin.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "10-calico.conflist", &calico());
    for bad in [
        json!({"socket": "x"}),
        json!("quicmesh-cni"),
        json!({"type": ""}),
    ] {
        let e = chain(dir.path(), &bad).unwrap_err();
        assert!(matches!(refusal(&e), ChainError::BadEntry(_)), "{e:#}");
    }
    assert_eq!(read(&dir.path().join("10-calico.conflist")), calico());
}

#[test]
fn unchain_takes_our_entries_out_of_every_config() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        unchain(&dir.path().join("absent"), PLUGIN_TYPE).unwrap(),
        None
    );
    let primary = write(dir.path(), "10-calico.conflist", &calico());
    chain(dir.path(), &ours("info")).unwrap();
    // An old entry in a file that is not the primary now, and garbage.
    let mut old = calico();
    old["plugins"].as_array_mut().unwrap().push(ours("old"));
    let other = write(dir.path(), "20-old.conflist", &old);
    fs::write(dir.path().join("30-garbage.conf"), "nope").unwrap();

    assert_eq!(
        unchain(dir.path(), PLUGIN_TYPE).unwrap(),
        Some(primary.clone())
    );
    assert_eq!(read(&primary), calico());
    assert_eq!(read(&other), calico());
    assert_eq!(
        fs::read(dir.path().join("30-garbage.conf")).unwrap(),
        b"nope"
    );
    // Nothing left to take out.
    assert_eq!(unchain(dir.path(), PLUGIN_TYPE).unwrap(), None);
}

#[test]
fn the_plugin_is_installed_atomically_and_only_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let exe = dir.path().join("agent");
    fs::write(&exe, b"\x7fELF version 1").unwrap();
    // Another plugin beside ours is untouched.
    fs::write(bin.join("bridge"), b"bridge").unwrap();

    install_plugin(&bin, &exe).unwrap();
    let dest = bin.join(PLUGIN_TYPE);
    assert_eq!(fs::read(&dest).unwrap(), b"\x7fELF version 1");
    let meta = fs::metadata(&dest).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    // The same binary again: not rewritten.
    install_plugin(&bin, &exe).unwrap();
    assert_eq!(fs::metadata(&dest).unwrap().ino(), meta.ino());
    // A new version replaces it by rename (a new file, never the old one
    // written in place).
    fs::write(&exe, b"\x7fELF version 2").unwrap();
    install_plugin(&bin, &exe).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"\x7fELF version 2");
    assert_ne!(fs::metadata(&dest).unwrap().ino(), meta.ino());
    // The right content with the wrong mode is fixed.
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).unwrap();
    install_plugin(&bin, &exe).unwrap();
    assert_eq!(
        fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(names(&bin), ["bridge", "quicmesh-cni"]);
    // A missing source is an error, and installs nothing.
    let e = install_plugin(&bin, &dir.path().join("absent")).unwrap_err();
    assert!(format!("{e:#}").contains("absent"), "{e:#}");
}
