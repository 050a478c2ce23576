#!/usr/bin/env python3
"""A scripted OpenAI-compatible model server for the deployment test (runs inside the container).

POST /v1/chat/completions: while the current turn has no tool result yet, answer with one
`exec` tool call; once it has one, answer with a final text that quotes the tool result, so
the caller sees what the command printed inside the service's sandbox. The command is the
text after "exec: " when the user's message contains it, else PROBE_COMMAND.
Standard library only: the container has nothing but Debian's python3.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROBE_COMMAND = "echo sandboxed > probe.txt && cat probe.txt && echo pid1=$(cat /proc/1/comm)"
FINAL_PREFIX = "probe finished: "
EXEC_PREFIX = "exec: "


def _tool_result(messages: list[dict]) -> str | None:
    """The last tool result of the current turn (after the last user message), else None.

    Earlier turns of the same session are in the history too; their results must not count.
    """
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return None
        if msg.get("role") == "tool":
            content = msg.get("content")
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return None


def _command(messages: list[dict]) -> str:
    """The command the last user message asks for ("exec: CMD"), else PROBE_COMMAND."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            text = msg.get("content")
            if isinstance(text, list):
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
            text = str(text or "")
            at = text.find(EXEC_PREFIX)
            return text[at + len(EXEC_PREFIX) :] if at >= 0 else PROBE_COMMAND
    return PROBE_COMMAND


def reply_for(body: dict) -> dict:
    """The scripted chat.completion for one request body."""
    messages = body.get("messages", [])
    result = _tool_result(messages)
    if result is None:
        call = {
            "id": "call_probe_1",
            "type": "function",
            "function": {"name": "exec", "arguments": json.dumps({"command": _command(messages)})},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": FINAL_PREFIX + result}
        finish = "stop"
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "invalid JSON"}})
            return
        self._send(200, reply_for(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18799)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"scripted model listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
