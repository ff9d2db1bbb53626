//! The rest of the HTTP/3 layer a peer feeds: frame headers and varints,
//! SETTINGS and GOAWAY payloads (control stream), and a QPACK field
//! section judged as a response head (what our client reads back). The
//! first byte picks which; the rest is the input.
//!
//! Holds: no panic; everything decoded re-encodes and decodes to the same
//! value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicmesh_core::tunnel::http3::frame::{self, Settings};
use quicmesh_core::tunnel::http3::{message, qpack};

const LIMIT: u64 = 16 << 10;

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("h3_frames", quicmesh_fuzz::seeds::h3_frames),
    |data: &[u8]| {
        let Some((&which, input)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                if let Ok(s) = Settings::decode(input) {
                    let mut out = Vec::new();
                    s.encode(&mut out);
                    assert_eq!(Settings::decode(&out), Ok(s));
                }
            }
            1 => {
                if let Ok(id) = frame::decode_goaway(input) {
                    let mut out = Vec::new();
                    frame::put_varint(&mut out, id);
                    assert_eq!(frame::decode_goaway(&out), Ok(id));
                }
            }
            2 => {
                let mut buf = input;
                match frame::get_header(&mut buf) {
                    None => assert_eq!(buf.len(), input.len(), "nothing consumed"),
                    Some(h) => {
                        let mut out = Vec::new();
                        frame::put_header(&mut out, h.ty, h.len);
                        assert!(input.len() - buf.len() >= out.len());
                        assert_eq!(frame::get_header(&mut &out[..]), Some(h));
                    }
                }
                let mut buf = input;
                if let Some(v) = frame::get_varint(&mut buf) {
                    assert!(v <= frame::VARINT_MAX);
                    assert!(input.len() - buf.len() >= frame::varint_len(v));
                }
            }
            _ => {
                let Ok(fields) = qpack::decode(input, LIMIT) else {
                    return;
                };
                let block = qpack::encode(fields.iter().map(|f| (&f.name[..], &f.value[..])));
                assert_eq!(qpack::decode(&block, LIMIT).as_ref(), Ok(&fields));
                if let Ok(head) = message::response(&fields) {
                    let ours = qpack::encode(message::status_fields(&head.status));
                    let again = qpack::decode(&ours, LIMIT).expect("our response decodes");
                    assert_eq!(message::response(&again).map(|h| h.status), Ok(head.status));
                }
            }
        }
    }
);
