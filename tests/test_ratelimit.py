"""Token bucket per sender and the hourly tool-call window, driven by a fake clock."""

import threading

from nanobot.security.ratelimit import RateLimiter, ToolCallLimiter


class Clock:
    """A settable time source: a plain callable, like time.monotonic."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_burst_then_refused_with_one_notice():
    clock = Clock()
    rl = RateLimiter(per_minute=6, burst=3, clock=clock)  # one token every 10 s
    assert [rl.check("a").allowed for _ in range(3)] == [True, True, True]
    first = rl.check("a")
    assert not first.allowed and first.notify
    assert 9.9 < first.retry_after <= 10.0
    later = [rl.check("a") for _ in range(5)]
    assert not any(d.allowed for d in later)
    assert not any(d.notify for d in later)  # silence after the one notice


def test_refill_allows_again_and_rearms_the_notice():
    clock = Clock()
    rl = RateLimiter(per_minute=6, burst=1, clock=clock)
    assert rl.check("a").allowed
    assert rl.check("a").notify
    clock.advance(5)
    d = rl.check("a")
    assert not d.allowed and not d.notify
    assert 4.9 < d.retry_after <= 5.0
    clock.advance(5)
    assert rl.check("a").allowed
    assert rl.check("a").notify  # a new notice after an allowed message


def test_refill_is_capped_at_burst():
    clock = Clock()
    rl = RateLimiter(per_minute=60, burst=2, clock=clock)
    rl.check("a")
    clock.advance(3600)
    assert [rl.check("a").allowed for _ in range(3)] == [True, True, False]


def test_senders_are_independent():
    clock = Clock()
    rl = RateLimiter(per_minute=1, burst=1, clock=clock)
    assert rl.check("a").allowed
    assert not rl.check("a").allowed
    assert rl.check("b").allowed


def test_zero_per_minute_is_off():
    rl = RateLimiter(per_minute=0, burst=0, clock=Clock())
    assert all(rl.check("a").allowed for _ in range(1000))
    assert len(rl) == 0


def test_burst_zero_counts_as_one():
    rl = RateLimiter(per_minute=1, burst=0, clock=Clock())
    assert rl.check("a").allowed
    assert not rl.check("a").allowed


def test_clock_going_backwards_does_not_add_tokens():
    clock = Clock()
    rl = RateLimiter(per_minute=6, burst=1, clock=clock)
    rl.check("a")
    clock.advance(-100)
    assert not rl.check("a").allowed


def test_idle_senders_are_pruned():
    clock = Clock()
    rl = RateLimiter(per_minute=60, burst=5, clock=clock)  # full again 5 s after last use
    for i in range(10_000):
        rl.check(f"sender-{i}")
        clock.advance(0.01)
    # Only senders seen within the last refill time (5 s = 500 senders) can be tracked.
    assert len(rl) <= 501
    clock.advance(10)
    rl.check("late")
    assert len(rl) == 1


def test_pruning_loses_nothing():
    clock = Clock()
    rl = RateLimiter(per_minute=60, burst=2, clock=clock)
    rl.check("a"), rl.check("a")
    assert not rl.check("a").allowed
    clock.advance(0.5)
    rl.check("b")  # prunes nothing: a is not full yet
    assert not rl.check("a").allowed
    clock.advance(2.0)
    rl.check("c")  # a is full again and may be dropped
    assert [rl.check("a").allowed for _ in range(3)] == [True, True, False]


def test_max_keys_bounds_a_flood_of_new_senders():
    clock = Clock()
    rl = RateLimiter(per_minute=1, burst=1, clock=clock, max_keys=1000)
    for i in range(10_000):
        rl.check(i)  # all at the same instant: nothing is idle
    assert len(rl) == 1000


def test_threads_share_one_budget():
    rl = RateLimiter(per_minute=1, burst=50, clock=Clock())
    results = []
    lock = threading.Lock()

    def worker():
        got = [rl.check("a").allowed for _ in range(100)]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 50


def test_tool_calls_per_hour():
    clock = Clock(0.0)
    tl = ToolCallLimiter(per_hour=3, clock=clock)
    assert [tl.allow("s") for _ in range(4)] == [True, True, True, False]
    assert tl.allow("other")
    clock.advance(30 * 60)
    assert not tl.allow("s")
    clock.advance(30 * 60)  # an hour after the first calls
    assert [tl.allow("s") for _ in range(4)] == [True, True, True, False]


def test_tool_call_window_is_rolling():
    clock = Clock(0.0)
    tl = ToolCallLimiter(per_hour=2, clock=clock)
    assert tl.allow("s")  # minute 0
    clock.advance(40 * 60)
    assert tl.allow("s")  # minute 40
    assert not tl.allow("s")
    clock.advance(20 * 60)  # minute 60: the first call has left the window
    assert tl.allow("s")
    assert not tl.allow("s")  # the minute-40 call still counts


def test_refused_tool_calls_do_not_count():
    clock = Clock(0.0)
    tl = ToolCallLimiter(per_hour=1, clock=clock)
    assert tl.allow("s")
    for _ in range(100):
        clock.advance(30)
        tl.allow("s")
    clock.advance(3600)
    assert tl.allow("s")


def test_tool_limiter_off_and_pruned():
    assert all(ToolCallLimiter(0).allow("s") for _ in range(100))
    clock = Clock(0.0)
    tl = ToolCallLimiter(per_hour=5, clock=clock)
    for i in range(10_000):
        tl.allow(f"s{i}")
    assert len(tl) == 10_000
    clock.advance(3600)
    tl.allow("new")
    assert len(tl) == 1


def test_tool_limiter_max_keys():
    tl = ToolCallLimiter(per_hour=5, clock=Clock(), max_keys=100)
    for i in range(1000):
        tl.allow(i)
    assert len(tl) == 100
