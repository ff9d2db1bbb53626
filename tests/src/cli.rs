//! Running the real `quicmesh` command in tests: a temporary directory of
//! its own (the local agent's status files live in `$TMPDIR`), bounded
//! waits, `local down` when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Cli {
    bin: PathBuf,
    tmp: tempfile::TempDir,
}

impl Cli {
    /// The `quicmesh` binary beside the tests, with a temporary directory
    /// of its own.
    pub fn new() -> Self {
        Cli {
            bin: quicmesh_lab::ztunnels::find_binary("quicmesh").unwrap(),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// `quicmesh local up -f dir`, which must succeed; its stdout.
    pub fn up(&self, dir: &Path) -> String {
        let up = self.run_for(
            &["local", "up", "-f", dir.to_str().unwrap()],
            Duration::from_secs(240),
        );
        let (o, e) = text(&up);
        assert!(up.status.success(), "local up: {o}{e}");
        o
    }

    /// `TMPDIR` of its commands.
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }
    /// Runs `quicmesh args`, killed after `limit`.
    pub fn run_for(&self, args: &[&str], limit: Duration) -> Output {
        self.run_env(args, &[], limit)
    }

    /// [`Self::run_for`] with `env` set. No kubeconfig is found unless
    /// `env` names one (`KUBECONFIG`): a local mesh or none is the default.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("TMPDIR", self.tmp.path())
            .env("KUBECONFIG", self.tmp.path().join("no-kubeconfig"))
            .envs(env.iter().copied())
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running quicmesh");
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("waiting").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("its output")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_for(args, Duration::from_secs(60))
    }

    /// stdout of a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = text(&out);
        assert!(out.status.success(), "quicmesh {args:?}: {o}{e}");
        o
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let o = self.ok(&args);
        serde_json::from_str(&o).unwrap_or_else(|e| panic!("{args:?}: {e}: {o}"))
    }

    /// stderr of a command that must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (o, e) = text(&out);
        assert!(!out.status.success(), "quicmesh {args:?} succeeded: {o}");
        assert!(e.starts_with("error: "), "{e}");
        assert!(!e.contains("Stack backtrace"), "{e}");
        e
    }
}

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.run(&["local", "down"]);
    }
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A loopback address no one listens on (for a command's `--addr`).
pub fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

pub fn rows(v: &Value) -> &Vec<Value> {
    v.as_array().expect("an array of rows")
}
