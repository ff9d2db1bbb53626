#!/usr/bin/env python3
"""An independent HTTP/3 client (aioquic) that opens a tunnel the way
RFC 9114 section 4.4 says: a CONNECT with only :method and :authority.

It presents a SPIFFE SVID, checks the server's SVID itself (the peer's
certificate must carry exactly the expected SPIFFE ID and be signed by the
CA), sends a payload, half-closes, and prints a JSON summary of what came back.
"""
import argparse
import asyncio
import json
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.events = asyncio.Queue()

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            self.events.put_nowait(("reset", event.error_code))
        for ev in self.http.handle_event(event):
            self.events.put_nowait(("h3", ev))


def check_peer(cert, expected_id, ca_path):
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [expected_id]:
        raise SystemExit(f"server identity {uris} is not {expected_id}")
    with open(ca_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    ca.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )


async def run(args):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_cert_chain(args.cert, args.key)
    # The server's SVID carries a SPIFFE URI, not a host name: checked below.
    config.verify_mode = ssl.CERT_NONE
    config.server_name = "tunnel.quicmesh"
    async with connect(args.host, args.port, configuration=config, create_protocol=Client) as client:
        check_peer(client._quic.tls._peer_certificate, args.expect_id, args.ca)
        stream_id = client._quic.get_next_available_stream_id()
        # RFC 9114 4.4: no :scheme, no :path.
        client.http.send_headers(
            stream_id, [(b":method", b"CONNECT"), (b":authority", args.authority.encode())]
        )
        client.transmit()
        status = None
        body = b""
        sent = False
        ended = False
        while not ended:
            kind, ev = await asyncio.wait_for(client.events.get(), timeout=10)
            if kind == "reset":
                raise SystemExit(f"stream reset by the server: {ev}")
            if isinstance(ev, HeadersReceived) and ev.stream_id == stream_id:
                status = dict(ev.headers)[b":status"].decode()
                if status != "200":
                    break
                if not sent:
                    client.http.send_data(stream_id, args.payload.encode(), end_stream=True)
                    client.transmit()
                    sent = True
                ended = ev.stream_ended
            elif isinstance(ev, DataReceived) and ev.stream_id == stream_id:
                body += ev.data
                ended = ev.stream_ended
        print(json.dumps({"status": status, "body": body.decode(errors="replace")}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=15008)
    p.add_argument("--authority", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--expect-id", required=True)
    p.add_argument("--payload", default="hello over a compliant CONNECT")
    args = p.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
