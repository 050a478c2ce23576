"""One turn's state (messages sent, messages to store, repeat guard, what the user saw) and the
streamed model call that feeds a channel's TurnProgress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nanobot.agent.guards import RepeatGuard
from nanobot.agent.progress import TurnProgress
from nanobot.agent.textcalls import visible_prefix
from nanobot.providers.base import LLMResponse, ToolCall
from nanobot.security.redact import redact

TRIMMED_RESULT_CHARS = 2000  # a tool result's size after a context overflow


class TurnCancelled(Exception):
    """The turn's TurnProgress.cancel was set: stop now and store nothing."""


@dataclass
class Turn:
    """messages: what the model is sent (system, history, user, this turn's steps, nudges).
    added: what is stored when the turn succeeds (user, steps, answer) — nothing otherwise.
    shown: the answer text streamed to the channel since the last discard."""

    key: str
    messages: list[dict[str, Any]]
    added: list[dict[str, Any]]
    progress: TurnProgress
    first_own: int  # index in messages of this turn's user message
    guard: RepeatGuard = field(default_factory=RepeatGuard)
    shown: str = ""
    trimmed: bool = False
    nudged: bool = False
    refused: list[str] = field(default_factory=list)  # text calls that could not run

    def add(self, *messages: dict[str, Any]) -> None:
        """Messages of this turn: sent from now on, stored if the turn succeeds."""
        self.messages.extend(messages)
        self.added.extend(messages)

    def nudge(self, text: str) -> None:
        """A note to the model for the next call only (never stored)."""
        self.messages.append({"role": "user", "content": text})

    def discard_shown(self) -> None:
        if self.shown:
            self.progress.discard()
        self.shown = ""

    def trim(self) -> None:
        """After a context overflow: drop the earlier history and shorten this turn's tool
        results, so that one retry has a chance to fit."""
        self.trimmed = True
        own = self.messages[self.first_own :]
        for m in own:
            content = m.get("content")
            if m.get("role") == "tool" and len(str(content)) > TRIMMED_RESULT_CHARS:
                m["content"] = str(content)[:TRIMMED_RESULT_CHARS] + "\n... (cut to fit)"
        self.messages[:] = [self.messages[0], *own]
        self.first_own = 1

    def check_cancelled(self) -> None:
        if self.progress.cancel.is_set():
            raise TurnCancelled


class _Gate:
    """Between the provider's on_delta (via the event loop) and TurnProgress.text: shows only
    text that cannot be a tool call written as text, redacted, a whole word at a time."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.raw = ""
        self.sent = ""

    def feed(self, delta: str) -> None:
        self.raw += delta
        head = self.raw[: visible_prefix(self.raw)]
        safe = redact(head)
        if len(safe) > len(self.sent) and safe.startswith(self.sent):
            piece = safe[len(self.sent) :]
            self.sent = safe
            self.turn.shown += piece
            self.turn.progress.text(piece)


async def stream_chat(
    turn: Turn,
    definitions: list[dict[str, Any]] | None,
    call: Callable[..., Awaitable[LLMResponse]],
) -> LLMResponse:
    """One model call for `turn`, streamed through a gate to its progress; `call(messages,
    definitions, on_delta)` is the provider's coroutine. Returns as soon as the turn is
    cancelled: the call is cancelled with it, which closes its connection."""
    turn.check_cancelled()
    gate = _Gate(turn)
    cancel = turn.progress.cancel
    task = asyncio.ensure_future(call(list(turn.messages), definitions, gate.feed))
    forget = cancel.on_set(task.cancel)
    try:
        reply = await task
    except asyncio.CancelledError:
        if cancel.is_set() and not asyncio.current_task().cancelling():
            raise TurnCancelled from None  # the turn's cancel, not the gateway stopping us
        raise
    finally:
        forget()
    if reply.usage:
        turn.progress.usage(reply.usage)
    return reply


def assistant_with_calls(content: str, calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant message carrying tool calls, in OpenAI's shape."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": json.dumps(c.arguments, ensure_ascii=False),
                },
            }
            for c in calls
        ],
    }
