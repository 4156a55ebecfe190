#!/usr/bin/env python3
"""A python3 http.server that also accepts PUT: stores the request body
under the served directory (t_http.sh's upload case). Unmodified by and
unaware of psinterpose.

    http_put_server.py PORT DIR [REQUESTS]

Serves REQUESTS requests (default 1), then exits normally (so the
interposer's exit-time PSI_STATS line is written).
"""
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):
        n = int(self.headers["Content-Length"])
        path = os.path.join(self.directory, os.path.basename(self.path))
        left = n
        with open(path + ".part", "wb") as f:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                f.write(chunk)
                left -= len(chunk)
        if left:
            self.send_error(400, "short body: %d of %d bytes" % (n - left, n))
            return
        os.rename(path + ".part", path)
        body = b"stored %d bytes\n" % n
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("put-server: " + fmt % args + "\n")


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    handler = lambda *a, **k: Handler(*a, directory=root, **k)  # noqa: E731
    with http.server.HTTPServer(("127.0.0.1", port), handler) as srv:
        for _ in range(count):
            srv.handle_request()


if __name__ == "__main__":
    main()
