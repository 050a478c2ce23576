"""A scripted OpenAI / Anthropic API on 127.0.0.1 for tests: replays replies, tool calls, faults.

It stands in for the far side of the network only; nanobot's real providers talk to it over HTTP.

    from tests.fakes.llm_server import ScriptedLLMServer, reply, tool_call, error, drop

    with ScriptedLLMServer("openai") as llm:            # or "anthropic"
        llm.script([tool_call("exec", {"command": "ls"}), reply("done")])
        cfg.providers.custom.api_base = llm.url          # http://127.0.0.1:PORT/v1
        ...                                              # run nanobot against it
        assert llm.requests[0].json["messages"][-1]["content"] == "hi"

Steps (each takes delay=seconds, slept before answering):
    reply(text)                       a final answer (finish_reason "stop" / stop_reason "end_turn")
    tool_call(name, args, id=None)    one tool call; args may be a dict or a raw arguments string
    tool_call(...) + tool_call(...)   several calls in one response (also tool_calls(a, b, text=))
    error(status, body=None, headers={"Retry-After": "1"})   an HTTP error in the API's shape
    drop()                            close the connection without answering
    context_exceeded(style)           HTTP 400 "prompt too long" as openai/anthropic/llamacpp/vllm say it
Steps are consumed in order; when the script is empty the responder set by respond_with(fn)
answers (fn(request_json) -> Step or str), else `default` (reply("ok") unless given).
`requests` lists RecordedRequest(path, headers, body, json); `max_concurrent` is the most
requests ever in flight at once (for the gateway benchmark).

Streaming: a request with "stream": true gets server-sent events in the API's own format
(tests/fakes/llm_wire.py), text word by word and tool-call arguments in fragments;
reply()/tool_call() take chunk_delay=seconds between events and cut_after=N to drop the
connection after N events. Server options, like the servers people run:
    ScriptedLLMServer(kind, streaming=False)      ignores "stream" and answers plain JSON
    ScriptedLLMServer(kind, refuse_stream=True)   HTTP 400 for a streamed request
    ScriptedLLMServer(kind, slots=1)              one generation at a time (llama.cpp -np 1):
                                                  later requests wait for the slot
    ScriptedLLMServer(kind, n_ctx=4096)           llama.cpp GET /props reports n_ctx
    ScriptedLLMServer(kind, model_info={...})     merged into the GET /v1/models entry
                                                  (e.g. {"max_model_len": 4096} like vLLM)
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.llm_steps import (  # noqa: F401  (re-exported: tests import them from here)
    Step,
    context_exceeded,
    drop,
    error,
    reply,
    tool_call,
    tool_calls,
)
from tests.fakes.llm_wire import (
    anthropic_body,
    anthropic_events,
    error_body,
    openai_body,
    openai_events,
)

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@dataclass
class RecordedRequest:
    """A received request; headers keep the case the client sent (use header() to look up)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: dict | None
    time: float = field(default_factory=time.monotonic)  # when it arrived

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


def last_user_text(body: dict | None) -> str:
    """The text of the last user message of an OpenAI or Anthropic request body ("" if none)."""
    for message in reversed((body or {}).get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
        if texts:
            return "".join(texts)
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # the default 5 drops SYNs when many chats call at once
    llm: ScriptedLLMServer

    def handle_error(self, request, client_address) -> None:
        # A client that timed out and hung up is a scripted scenario, not a server bug.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    disable_nagle_algorithm = True  # no delayed-ACK stall between headers and body
    server_version = "ScriptedLLM/1.0"
    timeout = 60  # an idle keep-alive connection frees its thread eventually
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        self.server.llm._handle(self)

    def do_GET(self) -> None:
        llm = self.server.llm
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            entry = {"id": "scripted", "object": "model", **llm.model_info}
            llm._send(self, 200, {}, {"object": "list", "data": [entry]})
        elif path == "/props" and llm.n_ctx:
            settings = {"n_ctx": llm.n_ctx, "params": {"n_predict": -1}}
            props = {"default_generation_settings": settings, "total_slots": llm.slots or 1}
            llm._send(self, 200, {}, props)
        else:
            llm._send(self, 404, {}, {"error": {"message": f"no GET {self.path}"}})


class ScriptedLLMServer:
    """The scripted API server; use as a context manager (or start()/stop())."""

    def __init__(
        self,
        kind: str = "openai",
        *,
        default: Step | None = None,
        steps: list[Step] | None = None,
        streaming: bool = True,
        refuse_stream: bool = False,
        slots: int = 0,
        n_ctx: int = 0,
        model_info: dict | None = None,
        keep_requests: bool = True,
    ) -> None:
        if kind not in PATHS:
            raise ValueError(f"kind must be one of {sorted(PATHS)}, not {kind!r}")
        self.kind = kind
        self.default = default or reply("ok")
        self.streaming = streaming
        self.refuse_stream = refuse_stream
        self.slots = slots
        self.n_ctx = n_ctx
        self.model_info = dict(model_info or {})
        self._slot = threading.Semaphore(slots) if slots else None
        self.errors: list[str] = []  # exceptions raised by a respond_with callable
        self.max_concurrent = 0
        self.in_flight = 0
        self._cond = threading.Condition()
        self._local = threading.local()
        self._queue: deque[Step] = deque(steps or [])
        self._requests: list[RecordedRequest] = []
        self.keep_requests = keep_requests  # False: count them only (a long benchmark)
        self.request_count = 0
        self._responder: Callable[[dict | None], Step | str] | None = None
        self._ids = itertools.count(1)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> ScriptedLLMServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.llm = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ScriptedLLMServer is not started; use it in a with block")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The apiBase to configure: …/v1 for the OpenAI kind, the bare origin for Anthropic."""
        origin = f"http://127.0.0.1:{self.port}"
        return origin + "/v1" if self.kind == "openai" else origin

    # scripting -----------------------------------------------------------------------------
    def script(self, steps: list[Step]) -> ScriptedLLMServer:
        """Append steps to the script (answered in order, one per request)."""
        with self._cond:
            self._queue.extend(steps)
        return self

    def respond_with(self, fn: Callable[[dict | None], Step | str] | None) -> ScriptedLLMServer:
        """Answer requests beyond the script with fn(request_json); a str means reply(str)."""
        self._responder = fn
        return self

    @property
    def pending(self) -> int:
        """Scripted steps not yet consumed."""
        with self._cond:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived; AssertionError after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.request_count >= count, timeout):
                raise AssertionError(
                    f"ScriptedLLMServer got {self.request_count} requests, expected {count}"
                )
            return list(self._requests)

    # serving -------------------------------------------------------------------------------
    def _next_step(self, data: dict | None) -> Step:
        with self._cond:
            if self._queue:
                return self._queue.popleft()
        if self._responder is None:
            return self.default
        try:
            step = self._responder(data)
        except Exception as e:  # a broken test callable must not hang the client
            self.errors.append(f"{type(e).__name__}: {e}")
            return error(500, {"error": {"message": f"respond_with raised {type(e).__name__}"}})
        return reply(step) if isinstance(step, str) else step

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        record = RecordedRequest("POST", handler.path, dict(handler.headers.items()), raw, data)
        self._local.current = record
        with self._cond:
            self.request_count += 1
            if self.keep_requests:
                self._requests.append(record)
            self.in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self.in_flight)
            self._cond.notify_all()
        try:
            if handler.path.split("?")[0] != PATHS[self.kind]:
                message = (
                    f"ScriptedLLMServer({self.kind}) serves POST {PATHS[self.kind]}, "
                    f"got {handler.path}; configure apiBase = server.url"
                )
                self._send(handler, 404, {}, {"error": {"message": message}})
                return
            streamed = bool((data or {}).get("stream"))
            if streamed and self.refuse_stream:
                message = "stream is not supported by this server"
                self._send(handler, 400, {}, {"error": {"message": message, "code": 400}})
                return
            if self._slot is not None:
                self._slot.acquire()  # a single-slot server: wait behind the running answer
            try:
                self._answer(handler, self._next_step(data), data or {}, len(raw), streamed)
            finally:
                if self._slot is not None:
                    self._slot.release()
        finally:
            self._leave()

    def _answer(
        self, handler: _Handler, step: Step, data: dict, request_bytes: int, streamed: bool
    ) -> None:
        if step.delay:
            time.sleep(step.delay)
        if step.kind == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if streamed and self.streaming and step.kind in ("reply", "tool_calls"):
            self._leave()
            self._send_stream(handler, step, self._events(step, data, request_bytes))
            return
        body = self._body(step, data, request_bytes)
        self._leave()  # before answering: the client may look at in_flight as soon as it reads
        self._send(handler, step.status, step.headers, body)

    def _events(self, step: Step, request: dict, request_bytes: int) -> list[bytes]:
        model = request.get("model") or "scripted"
        usage = (request_bytes // 4, len(step.text or "") // 4 + 10 * len(step.calls))
        n = next(self._ids)
        if self.kind == "anthropic":
            return anthropic_events(step, model, usage, n)
        with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        return openai_events(step, model, usage, n, with_usage)

    def _send_stream(self, handler: _Handler, step: Step, events: list[bytes]) -> None:
        """Events as a chunked text/event-stream, chunk_delay apart; cut_after drops the line."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        for name, value in step.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        for i, event in enumerate(events):
            if step.cut_after is not None and i >= step.cut_after:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if i and step.chunk_delay:
                time.sleep(step.chunk_delay)
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _leave(self) -> None:
        """Mark this request as no longer in flight (once, however often it is called)."""
        left = getattr(self._local, "left", None)
        if left is self._local.current:
            return
        self._local.left = self._local.current
        with self._cond:
            self.in_flight -= 1

    def _send(
        self, handler: _Handler, status: int, headers: dict, body: dict | str | bytes
    ) -> None:
        if isinstance(body, dict):
            payload, ctype = json.dumps(body).encode(), "application/json"
        else:
            payload = body.encode() if isinstance(body, str) else body
            ctype = "text/plain; charset=utf-8"
        handler.send_response(status)
        sent = {k.lower() for k in headers}
        if "content-type" not in sent:
            handler.send_header("Content-Type", ctype)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _body(self, step: Step, request: dict, request_bytes: int) -> dict | str | bytes:
        if step.kind == "error":
            return step.body if step.body is not None else error_body(self.kind, step.status)
        model = request.get("model") or "scripted"
        usage = (request_bytes // 4, len(step.text or "") // 4 + 10 * len(step.calls))
        n = next(self._ids)
        if self.kind == "anthropic":
            return anthropic_body(step, model, usage, n)
        return openai_body(step, model, usage, n)
