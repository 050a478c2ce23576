"""Worker threads started ahead of a burst: starting one blocks the event loop for milliseconds."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor


def prestart(executor: ThreadPoolExecutor, count: int) -> None:
    """Make `executor` start `count` threads now (they then wait idle for work)."""
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        executor.submit(barrier.wait, 5)
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(5)
