"""Many short timers on one thread: the local API bounds every connection's reads with one.

A `threading.Timer` per connection starts a thread per connection (and another allocation
arena's worth of churn); here one daemon thread sleeps until the nearest deadline. Callbacks
run on that thread and must be quick (the API's shuts a socket down).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("nanobot")


class Deadline:
    """An armed timer; `cancel()` is True when it had not fired (and now never will)."""

    __slots__ = ("_owner", "_id")

    def __init__(self, owner: Deadlines, ident: int) -> None:
        self._owner, self._id = owner, ident

    def cancel(self) -> bool:
        return self._owner._cancel(self._id)


class Deadlines:
    def __init__(self, name: str = "nanobot-deadlines") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []  # (monotonic deadline, id); cancelled ones linger
        self._live: dict[int, tuple[Callable[[Deadline], None], Deadline]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[Deadline], None]) -> Deadline:
        """Call callback(the returned Deadline) in `seconds` unless cancelled first."""
        with self._cond:
            ident = next(self._ids)
            handle = Deadline(self, ident)
            heapq.heappush(self._heap, (time.monotonic() + seconds, ident))
            self._live[ident] = (callback, handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][1] == ident:
                self._cond.notify()  # sooner than what the thread sleeps for
        return handle

    def pending(self) -> int:
        with self._cond:
            return len(self._live)

    def _cancel(self, ident: int) -> bool:
        with self._cond:
            return self._live.pop(ident, None) is not None

    def _next(self) -> tuple[Callable[[Deadline], None], Deadline]:
        """Wait for the nearest live deadline to pass; its callback and handle (now not live)."""
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # cancelled
                if not self._heap:
                    self._cond.wait()
                    continue
                when, ident = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                return self._live.pop(ident)

    def _run(self) -> None:
        while True:
            callback, handle = self._next()
            try:
                callback(handle)
            except Exception:  # boundary: one failing callback must not stop the others' timers
                log.exception("%s: a deadline callback failed", self.name)
