"""Repeat detection: the same tool call with the same arguments, again and again, in one turn."""

from __future__ import annotations

import json

from nanobot.providers.base import ToolCall

REPEAT_LIMIT = 3  # the third identical call is answered from the first, not run
REPEAT_NOTE = (
    "\n\n[nanobot: you already called {name} with exactly these arguments {times} times in "
    "this turn; above is the earlier result. Do not call it again: answer the user now.]"
)


class RepeatGuard:
    """Counts identical calls (name + canonical arguments) within one turn.

    The first REPEAT_LIMIT - 1 calls run. From the REPEAT_LIMIT-th on, `answer` gives the
    earlier result with a note to answer now instead of running it again; a call that comes
    once more after that note sets `persisting`, and the loop stops asking for tools.
    """

    def __init__(self, limit: int = REPEAT_LIMIT) -> None:
        self.limit = limit
        self._seen: dict[str, tuple[int, str]] = {}  # key → (times called, first result)
        self.persisting: str | None = None  # the tool the model kept calling after the note

    @staticmethod
    def _key(call: ToolCall) -> str:
        return call.name + "\0" + json.dumps(call.arguments, sort_keys=True, default=str)

    def answer(self, call: ToolCall) -> str | None:
        """The earlier result with the note when this call must not run again, else None."""
        count, first = self._seen.get(self._key(call), (0, ""))
        if count + 1 < self.limit:
            return None
        if count + 1 > self.limit:
            self.persisting = call.name
        self._seen[self._key(call)] = (count + 1, first)
        return first + REPEAT_NOTE.format(name=call.name, times=count)

    def record(self, call: ToolCall, result: str) -> None:
        """Remember a call that ran (the result of its first run is what repeats get)."""
        key = self._key(call)
        count, first = self._seen.get(key, (0, result))
        self._seen[key] = (count + 1, first)
