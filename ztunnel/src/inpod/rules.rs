//! The nftables rules ztunnel installs inside each pod's network namespace.
//!
//! - outbound: TCP leaving the pod is redirected to 15001, except loopback
//!   traffic and ztunnel's own sockets (marked with [`ZTUNNEL_MARK`](crate::ports::ZTUNNEL_MARK));
//! - inbound: all TCP arriving from outside is redirected to 15006, where
//!   mTLS mode and policy decide; no TCP port is exempt (the tunnel is UDP
//!   and never redirected; TCP to 15008 would otherwise bypass policy).
//!
//! The whole table is replaced atomically (one `nft -f` transaction), so
//! applying twice is harmless and a restarted ztunnel converges.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::ports::{INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT, ZTUNNEL_MARK};

pub const TABLE: &str = "quicmesh";

/// The ruleset text. Pure, so tests can read it.
pub fn ruleset() -> String {
    format!(
        "table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"lo\" return
    meta mark {ZTUNNEL_MARK:#x} return
    meta l4proto tcp redirect to :{INBOUND_PLAINTEXT_PORT}
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    meta mark {ZTUNNEL_MARK:#x} return
    oifname \"lo\" return
    ip daddr 127.0.0.0/8 return
    ip6 daddr ::1 return
    meta l4proto tcp redirect to :{OUTBOUND_PORT}
  }}
}}
"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the rules: {0}")]
    Nft(String),
}

fn nft(script: &str) -> Result<(), RulesError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RulesError::Spawn)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(RulesError::Spawn)?;
    let out = child.wait_with_output().map_err(RulesError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RulesError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Installs the rules in the current thread's network namespace (call it on
/// the pod's netns worker).
pub fn install() -> Result<(), RulesError> {
    nft(&ruleset())
}

/// Removes the rules from the current thread's network namespace; no error
/// if they are not there.
pub fn remove() -> Result<(), RulesError> {
    nft(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_excludes_loopback_and_own_sockets_only() {
        let r = ruleset();
        // No TCP port escapes inbound redirection (and so policy).
        assert!(!r.contains("dport"), "{r}");
        assert!(r.contains("redirect to :15001"));
        assert!(r.contains("redirect to :15006"));
        assert!(r.contains("meta mark 0x1508 return"));
        assert!(r.contains("ip daddr 127.0.0.0/8 return"));
        // The mark check comes before the redirect in both chains.
        for chain in ["chain prerouting", "chain output"] {
            let body = &r[r.find(chain).unwrap()..];
            let body = &body[..body.find('}').unwrap()];
            assert!(body.find("meta mark").unwrap() < body.find("redirect").unwrap());
        }
    }
}
