"""The demo's server: answers every HTTP request with the pod's name."""
import http.server
import os
import socketserver

NAME = os.environ.get("POD_NAME", "unknown")
PORT = int(os.environ.get("PORT", "8080"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.environ.get('POD_NAMESPACE', '?')}/{NAME}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.client_address[0]} {fmt % args}", flush=True)


# TCPServer, not HTTPServer: HTTPServer looks up its own host name at start.
class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("0.0.0.0", PORT), Handler).serve_forever()
