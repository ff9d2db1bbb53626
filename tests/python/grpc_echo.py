"""A gRPC server for the waypoint tests (grpcio, no generated code): every
unary method answers `<pod> <method> <request> canary=<x-canary metadata>`,
so a test sees which backend, method and headers a call reached."""
import os
from concurrent import futures

import grpc

NAME = os.environ.get("POD_NAME", "unknown")
PORT = int(os.environ.get("PORT", "9090"))


def answer(method):
    def call(request, context):
        meta = dict(context.invocation_metadata())
        canary = meta.get("x-canary", "")
        return f"{NAME} {method} {request.decode()} canary={canary}".encode()

    return call


class AnyMethod(grpc.GenericRpcHandler):
    def service(self, details):
        return grpc.unary_unary_rpc_method_handler(answer(details.method))


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[AnyMethod()])
server.add_insecure_port(f"0.0.0.0:{PORT}")
server.start()
print(f"gRPC echo on :{PORT}", flush=True)
server.wait_for_termination()
