"""The control side of the deployment test's fakes: JSON over HTTP on 127.0.0.1, which the
live tests use to push a message, deliver a mail or read what was sent. Copied into the
container beside fake_telegram.py and mail_host.py; standard library only."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class JSONControl(BaseHTTPRequestHandler):
    """A handler whose subclasses answer with reply() and read a request with body()."""

    def log_message(self, format, *args):  # noqa: A002 — the journal keeps to the fake's side
        pass

    def reply(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> dict:
        """The request's JSON object; raises ValueError when it is not JSON."""
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")
