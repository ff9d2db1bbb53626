#!/usr/bin/env python3
"""A hostile but authenticated HTTP/3 peer (aioquic): it presents a valid
SPIFFE SVID, then sends request streams a compliant server must refuse
(RFC 9114 sections 4.1.2, 4.2.2, 4.3.1, 4.4), each on its own stream of one
connection, and prints a JSON object: case -> what the server did
("status:<code>", "reset:<code>", or "timeout" when it did nothing within
--wait seconds).

Cases:
  dup_authority  CONNECT with :authority twice
  scheme_path    CONNECT carrying :scheme and :path
  host_only      CONNECT with a Host header and no :authority
  oversize       a HEADERS frame claiming 4 MiB, 256 KiB of it sent, never finished
  stall          a HEADERS frame of 100 bytes of which 10 are sent
  compliant      the RFC 9114 4.4 form, as a control (expected status:200)
"""
import argparse
import asyncio
import json
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StopSendingReceived, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.outcome = {}
        self.changed = asyncio.Event()

    def note(self, stream_id, what):
        # The first thing the server did on a stream is its answer.
        self.outcome.setdefault(stream_id, what)
        self.changed.set()

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            self.note(event.stream_id, f"reset:{event.error_code:#x}")
        elif isinstance(event, StopSendingReceived):
            self.note(event.stream_id, f"stop:{event.error_code:#x}")
        for ev in self.http.handle_event(event):
            if isinstance(ev, HeadersReceived):
                status = dict(ev.headers).get(b":status", b"?").decode()
                # A status beats a STOP_SENDING that raced ahead of it.
                self.outcome[ev.stream_id] = f"status:{status}"
                self.changed.set()


def headers_frame_header(length):
    return encode_uint_var(0x01) + encode_uint_var(length)


async def run(args):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_cert_chain(args.cert, args.key)
    # The server's SVID carries a SPIFFE URI, not a host name; the peer is
    # not what this test is about.
    config.verify_mode = ssl.CERT_NONE
    config.server_name = "tunnel.quicmesh"
    authority = args.authority.encode()
    async with connect(args.host, args.port, configuration=config, create_protocol=Client) as client:
        quic = client._quic
        streams = {}

        def new_stream(case):
            sid = quic.get_next_available_stream_id()
            streams[case] = sid
            return sid

        for case, headers in [
            ("dup_authority", [(b":method", b"CONNECT"), (b":authority", authority), (b":authority", authority)]),
            ("scheme_path", [(b":method", b"CONNECT"), (b":scheme", b"https"), (b":authority", authority), (b":path", b"/")]),
            ("host_only", [(b":method", b"CONNECT"), (b"host", authority)]),
            ("compliant", [(b":method", b"CONNECT"), (b":authority", authority)]),
        ]:
            client.http.send_headers(new_stream(case), headers)
        # Raw frames the H3 layer would never write.
        quic.send_stream_data(new_stream("oversize"), headers_frame_header(4 << 20) + b"A" * (256 << 10))
        quic.send_stream_data(new_stream("stall"), headers_frame_header(100) + b"\0" * 10)
        client.transmit()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.wait
        while len(client.outcome.keys() & set(streams.values())) < len(streams):
            left = deadline - loop.time()
            if left <= 0:
                break
            client.changed.clear()
            try:
                await asyncio.wait_for(client.changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                break
        # A status that follows a STOP_SENDING by a moment still counts.
        await asyncio.sleep(0.2)
        print(json.dumps({case: client.outcome.get(sid, "timeout") for case, sid in streams.items()}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=15008)
    p.add_argument("--authority", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--wait", type=float, default=20.0)
    args = p.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
