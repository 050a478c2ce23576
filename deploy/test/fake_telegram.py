#!/usr/bin/env python3
"""The project's fake Telegram Bot API (tests/fakes/telegram_server.py, copied next to this
file) as a server inside the deployment test's container, plus a control port for the tests.

    fake_telegram.py --port 18798 --control-port 18797 --token-hex HEX

The Bot API side answers on 127.0.0.1:PORT exactly as in the project's own tests (long
polling, sendMessage checks, a wrong token gets 401). The token arrives hex-encoded so that
no plaintext copy of it lands in the transient unit file (the deployment test searches the
whole filesystem for it). The control side, also on 127.0.0.1:
  POST /push   {"user_id": N, "text": "...", "username": "..."} -> {"update_id": N}
  GET  /state  -> {"sent": [sendMessage params], "edits": [editMessageText params],
                   "calls": [method names], "pending": N}
Standard library only: the container has nothing but Debian's python3.
"""

from __future__ import annotations

import argparse
import threading
from http.server import ThreadingHTTPServer

from control import JSONControl
from telegram_server import FakeTelegram, _Handler, _QuietServer


def serve_bot_api(fake: FakeTelegram, port: int) -> ThreadingHTTPServer:
    """FakeTelegram.__enter__ on a fixed port (config.json names it before the fake starts)."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = _QuietServer(("127.0.0.1", port), handler)
    fake._server = server
    fake.api_base = f"http://127.0.0.1:{port}"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


def control_handler(fake: FakeTelegram) -> type[JSONControl]:
    class Control(JSONControl):
        def do_POST(self) -> None:
            if self.path != "/push":
                return self.reply(404, {"error": "POST /push only"})
            try:
                req = self.body()
                uid = fake.push_message(int(req["user_id"]), req["text"], req.get("username"))
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(400, {"error": f"{type(e).__name__}: {e}"})
            self.reply(200, {"update_id": uid})

        def do_GET(self) -> None:
            if self.path != "/state":
                return self.reply(404, {"error": "GET /state only"})
            with fake._cond:
                state = {
                    "sent": list(fake.sent),
                    "edits": list(fake.edits),
                    "calls": list(fake.calls),
                }
            state["pending"] = len(fake.pending_updates())
            self.reply(200, state)

    return Control


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--token-hex", required=True)
    args = ap.parse_args()
    fake = FakeTelegram(token=bytes.fromhex(args.token_hex).decode())
    serve_bot_api(fake, args.port)
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), control_handler(fake))
    control.daemon_threads = True
    print(f"fake Telegram Bot API on {fake.api_base}, control on :{args.control_port}", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
