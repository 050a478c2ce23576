"""Per-sender limits: a token bucket for messages, a one-hour window for tool calls."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# Hard ceiling on tracked keys whatever the traffic; the least recently seen go first.
MAX_KEYS = 50_000


@dataclass(frozen=True)
class RateDecision:
    """allowed: handle the message. notify: tell the sender once (first rejection since their
    last allowed message); stay silent otherwise. retry_after: seconds until one token is back."""

    allowed: bool
    notify: bool = False
    retry_after: float = 0.0


_ALLOW = RateDecision(True)


class _Bucket:
    __slots__ = ("tokens", "last", "notified")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last
        self.notified = False


class RateLimiter:
    """Token bucket per key: `burst` messages at once, refilled at per_minute/60 a second.

    per_minute <= 0 switches the limit off (always allowed); a burst below 1 counts as 1.
    Memory stays bounded: a bucket untouched long enough to be full again is dropped (losing
    nothing, a new bucket starts full), and at most max_keys buckets are kept.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rate = max(per_minute, 0) / 60.0
        self.capacity = float(max(burst, 1))
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: Hashable) -> RateDecision:
        """Take one token for key, or say how long until one is back."""
        if self.rate <= 0:
            return _ALLOW
        with self._lock:
            now = self.clock()
            self._prune(now)
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(self.capacity, now)
            else:
                self._buckets.move_to_end(key)
                b.tokens = min(self.capacity, b.tokens + max(0.0, now - b.last) * self.rate)
                b.last = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                b.notified = False
                return _ALLOW
            notify = not b.notified
            b.notified = True
            return RateDecision(False, notify, (1.0 - b.tokens) / self.rate)

    def _prune(self, now: float) -> None:
        # Buckets are ordered by last use, so every bucket older than a full refill sits in front.
        refill = self.capacity / self.rate
        while self._buckets:
            key, b = next(iter(self._buckets.items()))
            if now - b.last < refill and len(self._buckets) < self.max_keys:
                break
            del self._buckets[key]


class ToolCallLimiter:
    """At most per_hour tool calls per key in any rolling hour, counted in one-minute slots.

    per_hour <= 0 switches the limit off. A call leaves the window 59–60 minutes after it was
    made (minute granularity keeps memory at ≤ 60 counters per key, whatever per_hour is).
    Refused calls are not counted. Idle keys are dropped; at most max_keys are kept.
    """

    SLOT = 60.0
    SLOTS = 60

    def __init__(
        self,
        per_hour: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._keys: OrderedDict[Hashable, deque[list[int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def allow(self, key: Hashable) -> bool:
        """Count one call for key and return True, or return False when the hour is full."""
        if self.per_hour <= 0:
            return True
        with self._lock:
            slot = math.floor(self.clock() / self.SLOT)
            self._prune(slot)
            slots = self._keys.get(key)
            if slots is None:
                slots = self._keys[key] = deque()
            else:
                self._keys.move_to_end(key)
            while slots and slots[0][0] <= slot - self.SLOTS:
                slots.popleft()
            if sum(count for _, count in slots) >= self.per_hour:
                return False
            if slots and slots[-1][0] == slot:
                slots[-1][1] += 1
            else:
                slots.append([slot, 1])
            return True

    def _prune(self, slot: int) -> None:
        while self._keys:
            key, slots = next(iter(self._keys.items()))
            idle = not slots or slots[-1][0] <= slot - self.SLOTS
            if not idle and len(self._keys) < self.max_keys:
                break
            del self._keys[key]
