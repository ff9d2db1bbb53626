"""The demo's server: answers every HTTP request with the pod's name."""
import http.server
import os
import socketserver

NAME = os.environ.get("POD_NAME", "unknown")
PORT = int(os.environ.get("PORT", "8080"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer()

    def do_HEAD(self):
        self.answer(with_body=False)

    def do_POST(self):
        # The request's body is read and dropped (up to 1 MiB).
        length = int(self.headers.get("content-length") or 0)
        if length > 1 << 20:
            self.close_connection = True
            self.send_error(413)
            return
        self.rfile.read(length)
        self.answer()

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    def answer(self, with_body=True):
        body = f"hello from {os.environ.get('POD_NAMESPACE', '?')}/{NAME}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.client_address[0]} {fmt % args}", flush=True)


# TCPServer, not HTTPServer: HTTPServer looks up its own host name at start.
class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("0.0.0.0", PORT), Handler).serve_forever()
