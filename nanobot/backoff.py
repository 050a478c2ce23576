"""The one backoff policy: exponential with jitter, used by every retry loop in nanobot."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """base·2^attempt seconds (attempt counts from 0), capped at `cap`, times 0.5–1.0.

    The jitter keeps many clients that failed together from retrying together; the 0.5 floor
    keeps a retry from coming at once (which a server that just said 503 would not welcome).
    """

    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(attempt, 30)) * (0.5 + random.random() / 2)
