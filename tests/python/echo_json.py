"""An echo backend for the conformance tests: answers every HTTP request
200 with JSON describing the request as it arrived, the way the Gateway
API conformance echo server does, so a test can see which pod a request
reached and with which path, host, method and headers.

    {"path": "/a?b=c", "host": "echo", "method": "GET",
     "headers": {"x-a": ["1", "2"]}, "namespace": "ns", "pod": "echo-v1-0"}

Header names are lowercased; a header sent on several lines keeps one
value per line, in order. HTTP/1.1 with keep-alive (every answer has a
content-length; a request body, sized or chunked, is read and dropped).
Stdlib only. The port is $PORT (default 8080).
"""
import http.server
import json
import os
import socketserver

PORT = int(os.environ.get("PORT", "8080"))
NAMESPACE = os.environ.get("POD_NAMESPACE", "")
POD = os.environ.get("POD_NAME", "")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __getattr__(self, name):
        # BaseHTTPRequestHandler dispatches to do_<METHOD>: answer them all.
        if name.startswith("do_"):
            return self.echo
        raise AttributeError(name)

    def drain_body(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, up to the empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        length = int(self.headers.get("content-length", "0") or "0")
        if length > 0:
            self.rfile.read(length)

    def echo(self):
        self.drain_body()
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        body = (
            json.dumps(
                {
                    "path": self.path,
                    "host": self.headers.get("host", ""),
                    "method": self.command,
                    "headers": headers,
                    "namespace": NAMESPACE,
                    "pod": POD,
                }
            )
            + "\n"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.client_address[0]} {fmt % args}", flush=True)


# TCPServer, not HTTPServer: HTTPServer looks up its own host name at start.
class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("0.0.0.0", PORT), Handler).serve_forever()
