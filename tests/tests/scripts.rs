//! The README's commands need root; `scripts/root.sh` is how they get it:
//! root goes on at once, a user is re-run through the real `sudo` (here
//! `nobody`, whom sudo then asks for a password it cannot give), and a user
//! on a machine without sudo is told what to do. Each case runs a real
//! shell as that user.

use std::path::Path;
use std::process::{Command, Output};

use quicmesh_e2e::require_root;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `bash -c` sourcing root.sh and calling `as_root` on a script that
/// would print its arguments, as `user` (None: as ourselves) with `path`.
fn as_root_from(user: Option<&str>, path: &str) -> Output {
    let script =
        format!(". {REPO}/scripts/root.sh; as_root /nonexistent/test.sh --one two; echo went on");
    let bash = which("bash");
    let mut cmd = match user {
        Some(u) => {
            // No controlling terminal: sudo cannot prompt on one.
            let mut c = Command::new(which("setsid"));
            c.arg(which("runuser")).args(["-u", u, "--"]);
            c.arg(&bash);
            c
        }
        None => Command::new(&bash),
    };
    cmd.args(["-c", &script])
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/nonexistent")
        .current_dir("/");
    cmd.output().expect("bash runs")
}

fn which(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .unwrap();
    let p = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        !p.is_empty(),
        "{cmd} is not installed (scripts/setup.sh installs it)"
    );
    p
}

/// A PATH of one directory holding only `tools` (links to the real ones).
fn path_with(dir: &Path, tools: &[&str]) -> String {
    for t in tools {
        std::os::unix::fs::symlink(which(t), dir.join(t)).unwrap();
    }
    // nobody must be able to look in.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir.display().to_string()
}

#[test]
fn root_goes_on_a_user_goes_through_sudo_and_without_sudo_is_told_what_to_do() {
    require_root();
    let text = |o: &Output| {
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    // Root: as_root returns and the script goes on.
    let out = as_root_from(None, "/usr/sbin:/usr/bin:/sbin:/bin");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "went on\n", "{stderr}");

    // A user without sudo on the PATH: a clear refusal, nothing run.
    let bare = tempfile::tempdir().unwrap();
    let path = path_with(bare.path(), &["id", "basename"]);
    let out = as_root_from(Some("nobody"), &path);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("went on"), "{stdout}");
    assert!(
        stderr.contains("test.sh: needs root")
            && stderr.contains("there is no sudo here: run it as root"),
        "{stderr}"
    );

    // A user with sudo: the script is handed to the real sudo (which
    // asks nobody for a password it does not have, and says so), never
    // run on without root.
    let with_sudo = tempfile::tempdir().unwrap();
    let path = path_with(with_sudo.path(), &["id", "basename", "sudo"]);
    let out = as_root_from(Some("nobody"), &path);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("went on"), "{stdout}");
    assert!(
        stderr.contains("test.sh: needs root") && stderr.contains("running it through sudo"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sudo"),
        "sudo itself said nothing: {stderr}"
    );
}
