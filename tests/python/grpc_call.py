"""A real gRPC client (grpcio) for the waypoint tests: calls each method
given on the command line once, as a unary call with a bytes payload, and
prints each answer on its own line.

    python3 grpc_call.py TARGET [--canary] /pkg.Service/Method ...
"""
import sys

import grpc

target, args = sys.argv[1], sys.argv[2:]
metadata = ()
if args and args[0] == "--canary":
    metadata = (("x-canary", "yes"),)
    args = args[1:]
with grpc.insecure_channel(target) as channel:
    for method in args:
        reply = channel.unary_unary(method)(b"hi", metadata=metadata, timeout=10)
        print(reply.decode(), flush=True)
