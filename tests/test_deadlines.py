"""Deadlines: callbacks fire in deadline order on one thread, cancelled ones never fire, a
sooner deadline armed later wakes the thread, and a failing callback stops nothing."""

from __future__ import annotations

import threading
import time

from nanobot.deadlines import Deadlines


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_fire_in_order_on_one_thread_and_cancel_wins():
    d = Deadlines("test-deadlines")
    fired, threads = [], set()

    def note(name):
        def cb(handle):
            fired.append(name)
            threads.add(threading.current_thread().name)

        return cb

    d.arm(0.30, note("late"))
    cancelled = d.arm(0.10, note("cancelled"))
    d.arm(0.05, note("soon"))  # sooner than the thread sleeps for: it must wake
    assert cancelled.cancel() is True
    _wait(lambda: len(fired) == 2)
    time.sleep(0.05)
    assert fired == ["soon", "late"]
    assert threads == {"test-deadlines"}
    assert d.pending() == 0


def test_cancel_after_firing_says_so_and_the_handle_is_passed():
    d = Deadlines()
    seen = []
    handle = d.arm(0.01, seen.append)
    _wait(lambda: seen)
    assert seen == [handle] and handle.cancel() is False


def test_a_failing_callback_does_not_stop_the_rest(caplog):
    d = Deadlines()
    fired = []

    def boom(handle):
        raise RuntimeError("boom")

    d.arm(0.01, boom)
    d.arm(0.03, lambda h: fired.append("after"))
    _wait(lambda: fired)
    assert "a deadline callback failed" in caplog.text


def test_many_timers_one_thread():
    d = Deadlines("test-many")
    before = threading.active_count()
    handles = [d.arm(30, lambda h: None) for _ in range(500)]
    assert threading.active_count() <= before + 1
    assert all(h.cancel() for h in handles) and d.pending() == 0
