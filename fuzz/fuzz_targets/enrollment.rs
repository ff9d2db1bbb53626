//! Bytes on the node-local enrollment socket (`ztunnel/src/inpod/enroll.rs`):
//! 4-byte big-endian length frames of at most `MAX_FRAME`, each a protobuf
//! `Request`, then what ztunnel checks before enrolling a pod (an
//! operation, a pod in an add, a uid, a SPIFFE ID from namespace and
//! service account, IP addresses; `inpod/pods.rs`).
//!
//! The codec is built here as `enroll.rs` builds its private one (same
//! length field and limit); the pod checks are ztunnel's own
//! (`inpod::pods::check_pod`).
//!
//! Holds: no panic; no frame over `MAX_FRAME` is ever handed out; every
//! decoded request and its answer re-encode and decode to themselves.
#![no_main]

use std::net::IpAddr;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::enrollment::{request, Pod, Request, Response};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};
use quicmesh_core::enrollment::MAX_FRAME;

/// What ztunnel checks of a pod before touching its network namespace.
fn check_pod(pod: &Pod) -> Result<(SpiffeId, Vec<IpAddr>), String> {
    ztunnel::inpod::pods::check_pod("cluster.local", pod)
}

fn answer(frame: &[u8]) -> Response {
    let req = match Request::decode(frame) {
        Ok(r) => r,
        Err(e) => {
            return Response {
                id: 0,
                ok: false,
                error: format!("malformed request: {e}"),
                identity_pending: vec![],
            }
        }
    };
    assert_eq!(Request::decode(&req.encode_to_vec()[..]).as_ref(), Ok(&req));
    let result = match &req.op {
        None => Err("request has no operation".to_string()),
        Some(request::Op::Add(add)) => match &add.pod {
            Some(pod) => check_pod(pod).map(|_| ()),
            None => Err("add without a pod".to_string()),
        },
        Some(request::Op::Remove(_)) => Ok(()),
        Some(request::Op::Snapshot(s)) => s.pods.iter().try_for_each(|p| check_pod(p).map(|_| ())),
    };
    let (ok, error) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    Response {
        id: req.id,
        ok,
        error,
        identity_pending: vec![],
    }
}

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("enrollment", quicmesh_fuzz::seeds::enrollment),
    |data: &[u8]| {
        let mut codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(MAX_FRAME)
            .new_codec();
        let mut buf = BytesMut::from(data);
        // A session: frames until the bytes run out or the codec refuses.
        for _ in 0..64 {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
            };
            assert!(frame.len() <= MAX_FRAME);
            let resp = answer(&frame);
            let sent = resp.encode_to_vec();
            assert_eq!(Response::decode(&sent[..]).as_ref(), Ok(&resp));
        }
    }
);
