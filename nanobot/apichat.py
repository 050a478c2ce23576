"""The local API's OpenAI shapes: the chat.completions request, the answer object, the
streamed chunks ("stream": true, server-sent events), the model list, errors and the bearer
token."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import queue
import re
import secrets
import time
from dataclasses import dataclass

from nanobot.agent.progress import TurnProgress, UsageTotal, rest_to_show
from nanobot.channels.request import Refused

log = logging.getLogger("nanobot.api")

TIMED_OUT = "(The turn took too long and was cancelled; try again.)"
MODEL_ID = "nanobot"  # what the API serves: the agent, whatever model is behind it
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_SESSION_RE = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9_.-]{1,64}")


class BadChat(ValueError):
    """The body is not a chat.completions request we can answer; str(e) says why."""


@dataclass
class ChatRequest:
    session: str
    text: str
    model: str
    stream: bool = False
    include_usage: bool = False


def parse_chat(body: dict) -> ChatRequest:
    """The session (from "user"), the last user message's text, the model, streaming options.

    Only the last user message is used: the session's history lives on the server.
    """
    session = "default" if body.get("user") is None else body["user"]
    if not isinstance(session, str) or not _SESSION_RE.fullmatch(session):
        raise BadChat('"user" names the session: 1-64 characters of A-Z a-z 0-9 _ . -')
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadChat('"messages" must be a list holding a message with "role": "user"')
    text = _text_of(users[-1].get("content"))
    if not text.strip():
        raise BadChat("the last user message has no text")
    model = body.get("model")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise BadChat('"stream" must be true or false')
    options = body.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    model = model if isinstance(model, str) and model else MODEL_ID
    return ChatRequest(session, text, model, bool(stream), usage)


def _text_of(content) -> str:
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    if not parts or len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        raise BadChat(
            'message content must be a string or a list of {"type": "text", "text": …} parts'
        )
    return "\n".join(texts)


def usage_of(total: dict) -> dict:
    """OpenAI's usage object: the provider's counts where it reported them, else zeros."""
    usage = {k: int(total.get(k, 0)) for k in ("prompt_tokens", "completion_tokens")}
    usage["total_tokens"] = int(total.get("total_tokens", sum(usage.values())))
    return usage


def completion(reply: str, model: str, usage: dict) -> dict:
    """An OpenAI chat.completion object carrying `reply`."""
    message = {"role": "assistant", "content": reply}
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage_of(usage),
    }


def models_list() -> dict:
    """GET /v1/models: the one model this API serves."""
    entry = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "nanobot"}
    return {"object": "list", "data": [entry]}


class StreamSink(UsageTotal):
    """A turn's progress for a streamed request: hooks run on the event loop and put events
    on a thread-safe queue that the request's thread turns into chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()

    def text(self, delta: str) -> None:
        self.events.put(("text", delta))

    def discard(self) -> None:
        self.events.put(("discard", ""))

    def next(self, fut, deadline: float) -> tuple[str, str] | None:
        """The next event ("text", piece) / ("discard", ""); None once the turn is done and
        every event was taken, or at the deadline."""
        while time.monotonic() < deadline:
            try:
                return self.events.get(timeout=0.05)
            except queue.Empty:
                if fut.done() and self.events.empty():
                    return None
        return None


def stream_answer(out, chunks: Chunks, first, next_event, final_reply) -> None:
    """Write the role chunk, each piece of text as it comes, then what the final reply holds
    beyond what was shown (all of it, after a blank line, when the shown text was interim).
    Raises OSError when the client hung up."""
    out.write(chunks.role())
    shown, sent_any, event = "", False, first
    while event is not None:
        kind, text = event
        if kind == "discard":
            shown = ""
        else:
            lead = "\n\n" if sent_any and not shown else ""
            out.write(chunks.text(lead + text))
            out.flush()
            shown, sent_any = shown + text, True
        event = next_event()
    reply = final_reply()
    rest = rest_to_show(reply, shown)
    if rest is None:
        rest = ("\n\n" if sent_any else "") + reply
    if rest:
        out.write(chunks.text(rest))


class Chunks:
    """chat.completion.chunk events of one streamed answer, as bytes to write."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.model = model
        self.created = int(time.time())

    def _event(self, choices: list, **extra) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

    def role(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": 0, "delta": delta, "finish_reason": None}])

    def text(self, piece: str) -> bytes:
        return self._event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])

    def end(self, usage: dict | None) -> bytes:
        out = self._event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            out += self._event([], usage=usage_of(usage))
        return out + b"data: [DONE]\n\n"


def bearer(values: list[str]) -> bytes | None:
    """The token bytes of exactly one "Authorization: Bearer <token>" header, else None."""
    scheme, _, token = values[0].strip().partition(" ") if len(values) == 1 else ("", "", "")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # http.server decoded the header as latin-1; encoding back gives the bytes as sent.
    return token.strip().encode("latin-1", "replace")


def error_body(status: int, message: str) -> dict:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind}}


class Refusal(Exception):
    """A request answered with an error: HTTP status, message for the client, audit decision."""

    def __init__(self, status: int, message: str, decision: str = "rejected", headers=()):
        super().__init__(message)
        self.status, self.message, self.decision, self.headers = status, message, decision, headers


class ChatEndpoints:
    """GET /v1/models and POST /v1/chat/completions for api._Handler, which provides
    server.api, _authorize, _read_json, _respond and _audit."""

    def _models(self) -> None:
        self._authorize(self.server.api.cfg.token)
        self._respond(200, models_list(), "allowed")

    def _chat(self) -> None:
        self._authorize(self.server.api.cfg.token)
        try:
            req = parse_chat(self._read_json())
        except BadChat as e:
            raise Refusal(400, str(e)) from None
        if req.stream:
            self._stream(req)
            return
        usage = UsageTotal()
        reply = self._result(self._submit(req.session, req.text, usage))
        self._respond(200, completion(reply, req.model, usage.total), "allowed")

    def _submit(self, session: str, text: str, progress: TurnProgress):
        """Start the turn on the gateway's loop; the future gives its reply."""
        api = self.server.api
        coro = api.channel.ask(session, session, text, progress=progress)
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, api.loop)
        except RuntimeError:  # the loop is closed: the gateway is going away
            coro.close()
            raise Refusal(503, "the gateway is shutting down; retry later", "allowed") from None
        fut.session = session
        return fut

    def _result(self, fut, timeout: float | None = None) -> str:
        """The turn's reply; the turn is cancelled when it takes longer than the timeout."""
        api = self.server.api
        wait = api.turn_timeout if timeout is None else timeout
        if not concurrent.futures.wait([fut], timeout=max(wait, 0)).done:
            fut.cancel()
            log.warning("local API: turn for http:%s took over %.0f s", fut.session, wait)
            raise Refusal(504, "the turn took too long and was cancelled; try again", "allowed")
        try:
            return fut.result()
        except Refused as r:
            raise _rate_limited(r) from None
        except Exception:  # boundary: a failing turn must answer, not kill the thread
            log.exception("local API: turn for http:%s failed", fut.session)
            raise Refusal(500, "the turn failed; see the gateway log", "allowed") from None

    def _stream(self, req: ChatRequest) -> None:
        """Server-sent chat.completion.chunk events as the answer is written.

        The response starts with the first piece of text (or the reply), so that a refusal
        before the turn (rate limit) is still an HTTP error. A client that hangs up cancels
        the turn."""
        sink = StreamSink()
        fut = self._submit(req.session, req.text, sink)
        deadline = time.monotonic() + self.server.api.turn_timeout
        first = sink.next(fut, deadline)
        if first is None:
            self._result(fut, deadline - time.monotonic())  # raises the refusal, if any

        def final() -> str:
            try:
                return self._result(fut, deadline - time.monotonic())
            except Refusal as r:
                return TIMED_OUT if r.status == 504 else f"({r.message})"

        chunks = Chunks(req.model)
        self._audit(200, "allowed")
        self.close_connection = True
        self.send_response(200)
        for key, value in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")):
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            stream_answer(self.wfile, chunks, first, lambda: sink.next(fut, deadline), final)
            self.wfile.write(chunks.end(sink.total if req.include_usage else None))
            self.wfile.flush()
        except OSError:
            fut.cancel()
            log.info("local API: the client of http:%s hung up; turn cancelled", req.session)


def _rate_limited(r: Refused) -> Refusal:
    if r.verdict.reason != "rate_limited":
        return Refusal(503, f"the message was not taken ({r.verdict.reason})", "rejected")
    wait = max(1, math.ceil(r.verdict.retry_after or 1))
    message = f"too many requests for this user; retry after {wait} s (security.rateLimit)"
    return Refusal(429, message, "rate_limited", [("Retry-After", str(wait))])
