//! A CONNECT request stream as a peer sends it: frames, then the HEADERS
//! frame decoded (QPACK) and judged as the tunnel server judges it
//! (`core/src/tunnel/server/requests.rs`: the head within the size limit,
//! a well-formed request, then a plain CONNECT to `ip:port`).
//!
//! Holds: no panic; a decoded section fits the limit; decoded fields
//! re-encode to the same fields; an accepted CONNECT, sent again the way
//! our client sends it, is accepted as the same request.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use quicmesh_core::tunnel::http3::{frame, message, qpack, stream};

/// The server's default `max_header_bytes`.
const LIMIT: u64 = 16 << 10;

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("h3_request", quicmesh_fuzz::seeds::h3_request),
    |data: &[u8]| {
        let mut rest = data;
        let Ok(fields) = stream::decode_head(&mut rest, LIMIT) else {
            return;
        };
        assert!(rest.len() < data.len(), "a head consumes its frames");
        let size: u64 = fields.iter().map(qpack::Field::size).sum();
        assert!(size <= LIMIT, "section of {size} bytes over the limit");

        // Decoded fields re-encode (our encoder) to the same fields.
        let block = qpack::encode(fields.iter().map(|f| (&f.name[..], &f.value[..])));
        assert_eq!(qpack::decode(&block, LIMIT).as_ref(), Ok(&fields));

        // The server's judgement: a well-formed request...
        let Ok(head) = message::request(&fields) else {
            return;
        };
        // ...that is a plain CONNECT to ip:port.
        if head.method != http::Method::CONNECT || head.protocol.is_some() {
            return;
        }
        let authority = head.authority.as_deref().expect("CONNECT has :authority");
        if authority.parse::<SocketAddr>().is_err() {
            return;
        }
        // Our client's form of the same request is accepted as the same.
        let again = qpack::encode(message::connect_fields(authority, &head.headers));
        let mut stream = frame::frame(frame::HEADERS, &again);
        let fields = stream::decode_head(&mut &stream[..], u64::MAX).expect("our CONNECT decodes");
        assert_eq!(message::request(&fields).as_ref(), Ok(&head));
        stream.clear();
    }
);
