"""The scripted LLM server's vocabulary: one Step per answer (see tests/fakes/llm_server.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakes.llm_wire import CONTEXT_EXCEEDED


@dataclass
class Step:
    """One scripted answer. kind: "reply", "tool_calls", "error" or "drop"."""

    kind: str
    text: str | None = None
    calls: list[tuple[str | None, str, dict | str]] = field(default_factory=list)
    status: int = 200
    body: dict | str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str | None = None
    chunk_delay: float = 0.0  # streamed: seconds between events
    cut_after: int | None = None  # streamed: close the connection after this many events

    def __add__(self, other: Step) -> Step:
        return tool_calls(self, other)


def reply(
    text: str = "ok",
    *,
    delay: float = 0.0,
    finish_reason: str = "stop",
    chunk_delay: float = 0.0,
    cut_after: int | None = None,
) -> Step:
    """A text answer; finish_reason uses OpenAI names ("stop", "length")."""
    return Step(
        "reply",
        text=text,
        delay=delay,
        finish_reason=finish_reason,
        chunk_delay=chunk_delay,
        cut_after=cut_after,
    )


def tool_call(
    name: str,
    args: dict | str | None = None,
    id: str | None = None,
    *,
    text: str | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
) -> Step:
    """One tool call (id generated when None); a str args is sent verbatim (invalid JSON tests)."""
    call = (id, name, {} if args is None else args)
    return Step("tool_calls", text=text, calls=[call], delay=delay, chunk_delay=chunk_delay)


def tool_calls(*steps: Step, text: str | None = None, delay: float = 0.0) -> Step:
    """Several tool calls in one response, from tool_call() steps."""
    calls = [c for s in steps for c in s.calls]
    text = text if text is not None else next((s.text for s in steps if s.text), None)
    delay = max([delay, *(s.delay for s in steps)])
    chunk_delay = max(s.chunk_delay for s in steps) if steps else 0.0
    return Step("tool_calls", text=text, calls=calls, delay=delay, chunk_delay=chunk_delay)


def error(
    status: int = 500,
    body: dict | str | bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    delay: float = 0.0,
) -> Step:
    """An HTTP answer with this status; body None → the API's own error JSON shape."""
    return Step("error", status=status, body=body, headers=dict(headers or {}), delay=delay)


def context_exceeded(style: str = "openai") -> Step:
    """HTTP 400 for a prompt over the context, worded as `style` (openai, anthropic, llamacpp,
    vllm) words it."""
    return error(400, CONTEXT_EXCEEDED[style])


def drop(*, delay: float = 0.0) -> Step:
    """Read the request, then close the connection without a response."""
    return Step("drop", delay=delay)
