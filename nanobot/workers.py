"""The one place that owns worker threads: the pools for blocking calls and detached threads.

Blocking work (file I/O, requests calls: uploads, downloads, the web tools) runs in threads so
the event loop never waits on it; model and Bot API calls need none (nanobot.ahttp).
Pools are created on first use and can be warmed before a burst, because starting a thread
in the middle of one blocks the event loop for milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

SHORT_CALLS = 32  # threads for short network calls (sends, chat actions, downloads)
_pools: dict[str, ThreadPoolExecutor] = {}


def quiet_signals() -> None:
    """Keep SIGINT and SIGTERM away from this (worker) thread. The kernel may deliver a signal to
    any thread that does not block it; delivered to a worker, it would not interrupt the main
    thread's blocking read (the terminal's input(), waiting for Ctrl-C), which then never sees
    it. Blocked in every worker, they always reach the main thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def pool(name: str, size: int = SHORT_CALLS) -> ThreadPoolExecutor:
    """The named pool ("io": file I/O, the loop's default executor; "net": short network calls;
    "web": the web tools), created with `size` threads on first use."""
    executor = _pools.get(name)
    if executor is None:
        executor = _pools[name] = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix=name, initializer=quiet_signals
        )
    return executor


def prestart(executor: ThreadPoolExecutor, count: int) -> None:
    """Make `executor` start `count` threads now, or as many as it may have (they then wait
    idle for work)."""
    count = min(count, executor._max_workers)  # more would wait at the barrier for ever
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        executor.submit(barrier.wait, 5)
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(5)


def shutdown() -> None:
    """Stop every pool without waiting for calls still blocked (a long poll, a slow model)."""
    for executor in _pools.values():
        executor.shutdown(wait=False, cancel_futures=True)
    _pools.clear()


async def run_pooled(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short blocking network call on the shared "net" threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool("net"), functools.partial(fn, *args, **kwargs))


async def run_detached(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in its own daemon thread and await its result.

    Unlike asyncio.to_thread, a cancelled caller leaves the thread behind instead of making
    shutdown wait for it (a long poll can block for pollTimeout + 10 s).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def worker() -> None:
        quiet_signals()
        try:
            outcome = (True, fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - boundary: every error goes to the awaiting task
            outcome = (False, e)
        # RuntimeError: the loop closed while we were blocked; nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=worker, daemon=True, name="detached").start()
    return await fut
