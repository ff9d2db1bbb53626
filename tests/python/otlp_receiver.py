"""An OTLP trace receiver for the tracing tests: the published OTLP protos
(the `opentelemetry-proto` package) served over gRPC (TraceService/Export)
and over HTTP/protobuf (POST /v1/traces), as a collector would. Every span
received is appended to OUT as one JSON object per line:

    {"via": "grpc", "service": "ztunnel", "trace_id": "4bf9...", "span_id": "00f0...",
     "parent_span_id": "", "name": "tunnel outbound", "kind": "SPAN_KIND_CLIENT",
     "status": "STATUS_CODE_UNSET", "attributes": {"server.port": 8080, ...},
     "links": [{"trace_id": "...", "span_id": "..."}], "events": ["..."]}

Usage: otlp_receiver.py OUT [--bind ADDR] [--grpc PORT] [--http PORT]
(port 0: not served). Prints "ready" once both listen.
"""
import argparse
import http.server
import json
import socketserver
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

LOCK = threading.Lock()
MAX_BODY = 8 * 1024 * 1024


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def record(out, request, via):
    lines = []
    for rs in request.resource_spans:
        resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                lines.append(
                    json.dumps(
                        {
                            "via": via,
                            "service": resource.get("service.name", ""),
                            "resource": resource,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                            "status": trace_pb2.Status.StatusCode.Name(s.status.code),
                            "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                            "links": [
                                {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                                for l in s.links
                            ],
                            "events": [e.name for e in s.events],
                        }
                    )
                )
    with LOCK, open(out, "a") as f:
        for line in lines:
            f.write(line + "\n")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out):
        self.out = out

    def Export(self, request, context):
        record(self.out, request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def http_handler(out):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("content-length", "0") or "0")
            if self.path != "/v1/traces" or not 0 < length <= MAX_BODY:
                self.send_error(404 if self.path != "/v1/traces" else 400)
                return
            if self.headers.get("content-type", "") != "application/x-protobuf":
                self.send_error(415)
                return
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(self.rfile.read(length))
            record(out, request, "http")
            body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    return Handler


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--grpc", type=int, default=4317)
    p.add_argument("--http", type=int, default=4318)
    a = p.parse_args()
    open(a.out, "a").close()
    if a.grpc:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(a.out), server)
        server.add_insecure_port(f"{a.bind}:{a.grpc}")
        server.start()
    if a.http:
        httpd = Server((a.bind, a.http), http_handler(a.out))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
