//! Messages on the node-local enrollment socket (`core/src/enrollment.rs`):
//! each piece of the input (`quicmesh_fuzz::pieces`) is one seqpacket
//! message. Its first byte says what came with it: bits 0-1 how many
//! descriptors (0-3), bit 2 that the kernel had more than fit
//! (`MSG_CTRUNC`); the rest is the message, cut at `MAX_REQUEST` as
//! `recvmsg` cuts it (`MSG_TRUNC`). Each is read with
//! `enrollment::parse`, as the server reads it, then what ztunnel checks
//! of a pod before touching its namespace (`inpod::pods::check_pod`).
//!
//! Holds: no panic; a message read as a request decodes and re-encodes to
//! itself, came whole, and carried exactly one descriptor if it is an
//! `AddPod` and none otherwise; every answer fits `MAX_RESPONSE` and
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quicmesh_core::enrollment::{parse, Incoming, Op, MAX_REQUEST, MAX_RESPONSE};
use quicmesh_proto::enrollment::{Request, Response};

fn answer(id: u64, result: Result<(), String>) -> Response {
    let (ok, error) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    Response {
        id,
        ok,
        error,
        identity_pending: vec![],
    }
}

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("enrollment", quicmesh_fuzz::seeds::enrollment),
    |data: &[u8]| {
        for piece in quicmesh_fuzz::pieces(data, 64) {
            let Some((&head, message)) = piece.split_first() else {
                continue;
            };
            let fds = usize::from(head & 3);
            let fds_truncated = head & 4 != 0;
            let truncated = message.len() > MAX_REQUEST;
            let bytes = &message[..message.len().min(MAX_REQUEST)];
            let parsed = parse(Incoming {
                bytes,
                truncated,
                fds: vec![(); fds],
                fds_truncated,
            });
            let resp = match parsed {
                Ok(p) => {
                    assert!(!truncated && !fds_truncated);
                    let req = Request::decode(bytes).expect("parsed, so it decodes");
                    assert_eq!(Request::decode(&req.encode_to_vec()[..]).as_ref(), Ok(&req));
                    assert_eq!(p.id, req.id);
                    let check = match &p.op {
                        Op::Add { pod, .. } => {
                            assert_eq!(fds, 1);
                            ztunnel::inpod::pods::check_pod("cluster.local", pod).map(|_| ())
                        }
                        Op::Remove { .. } | Op::BeginSnapshot | Op::EndSnapshot => {
                            assert_eq!(fds, 0);
                            Ok(())
                        }
                    };
                    answer(p.id, check)
                }
                Err(r) => answer(r.id, Err(r.error)),
            };
            let sent = resp.encode_to_vec();
            assert!(sent.len() <= MAX_RESPONSE);
            assert_eq!(Response::decode(&sent[..]).as_ref(), Ok(&resp));
        }
    }
);
