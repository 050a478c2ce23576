"""A channel's live view of one turn: the answer as it is written, tool steps, cancellation.

A channel that can show progress returns a TurnProgress from its `progress(msg)` hook; the
dispatcher puts it on the turn's ToolContext. The agent loop calls the hooks on the event
loop thread, never from a worker thread, so a channel needs no locking.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nanobot.security.redact import redact


class Cancel(asyncio.Event):
    """The turn's cancel flag: an asyncio.Event that also runs callbacks when set, so the model
    call in flight is cancelled at once without a task waiting on the event."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], object]] = []

    def set(self) -> None:
        super().set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run callback when the flag is set; returns the function that forgets it."""
        self._callbacks.append(callback)

        def forget() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return forget


class TurnProgress:
    """Hooks of one turn; the base class shows nothing. Subclass and override what you show.

    text(delta)   answer text as it streams: redacted, tool calls written as text held back
    discard()     the text since the last discard was not the answer (the model went on to
                  call tools); a channel that can take text back may drop it
    step(hint)    a tool step starts; `hint` is one short line such as "⚙ exec: uname -a"
    usage(counts) token counts of one model call (prompt_tokens, completion_tokens, …)

    `cancel` is set by whoever wants the turn stopped (Ctrl-C, a client that hung up): the
    turn then ends at once with CANCELLED and stores nothing.
    """

    def __init__(self) -> None:
        self.cancel = Cancel()

    def text(self, delta: str) -> None:
        """Answer text as it arrives."""

    def discard(self) -> None:
        """The text shown since the last discard was interim."""

    def step(self, hint: str) -> None:
        """A tool step starts."""

    def usage(self, counts: dict) -> None:
        """Token counts of one model call."""


class UsageTotal(TurnProgress):
    """Adds up the token counts of a turn's model calls (for the local API's `usage`)."""

    def __init__(self) -> None:
        super().__init__()
        self.total: dict[str, int] = {}

    def usage(self, counts: dict) -> None:
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = counts.get(key)
            if isinstance(value, int):
                self.total[key] = self.total.get(key, 0) + value


def rest_to_show(final: str, shown: str) -> str | None:
    """What is left to show of `final` after `shown` was streamed: the unshown tail, or None
    when what was shown is not the start of the final text (show `final` afresh)."""
    if final.startswith(shown):
        return final[len(shown) :]
    if final.strip() and final.strip() == shown.strip():
        return ""
    return None


_ICONS = {"write_file": "✎", "edit_file": "✎", "read_file": "📄", "list_dir": "📁"}
_MAIN_ARG = ("command", "path", "url", "query", "name")
HINT_CHARS = 60


def tool_hint(name: str, args: dict[str, Any]) -> str:
    """One short line for a tool step: "⚙ exec: uname -a", "✎ write_file notes.txt"."""
    icon = _ICONS.get(name, "⚙")
    value = next((args[k] for k in _MAIN_ARG if isinstance(args.get(k), str)), None)
    if value is None and args:
        value = json.dumps(args, ensure_ascii=False)
    if not value:
        return f"{icon} {name}"
    first = " ".join(redact(str(value)).split())
    if len(first) > HINT_CHARS:
        first = first[: HINT_CHARS - 1] + "…"
    sep = ": " if name == "exec" or icon == "⚙" else " "
    return f"{icon} {name}{sep}{first}"
