"""The route in process: store (dedupe, corrupt files, recovery), dispatcher (order, bound, lock
clean-up, stored replies), admission, the supervisor's backoff and the loop's iteration cap."""

from __future__ import annotations

import asyncio
import json
import resource
import signal

import pytest

from nanobot.backoff import Backoff
from nanobot.channels.manager import Supervisor
from nanobot.config.schema import Config
from nanobot.route.admission import Admission
from nanobot.route.dispatcher import FAILURE_REPLY, Dispatcher
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.route.route import Route
from nanobot.route.store import Store
from nanobot.security import audit
from nanobot.security.ratelimit import RateLimiter


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(audit, "_AUDIT", audit.get_audit())
    log = audit.configure_audit(Config())
    yield tmp_path / "home"
    log.close()


def msg(chat="1", text="hi", key=None, **meta) -> InboundMessage:
    metadata = {"message_id": meta.pop("message_id", 7), **meta}
    if key:
        metadata["dedupe_key"] = key
    return InboundMessage("telegram", chat, chat, text, metadata=metadata)


class Sink:
    """A channel's delivering end: records what it was asked to send; can fail on demand."""

    name = "telegram"

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[OutboundMessage] = []
        self.started: list[str] = []
        self.finished: list[str] = []
        self.fail = fail

    async def send(self, out: OutboundMessage) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("channel down")
        self.sent.append(out)

    def turn_started(self, m: InboundMessage) -> None:
        self.started.append(m.content)

    def turn_finished(self, m: InboundMessage) -> None:
        self.finished.append(m.content)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


# ---- dispatcher -------------------------------------------------------------------------------


def test_one_chat_in_order_chats_concurrently_within_the_bound_locks_cleaned(tmp_path):
    active, peak, order = 0, 0, []

    async def turn(m, ctx):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        order.append(m.content)
        return f"re: {m.content}"

    async def go():
        sink = Sink()
        d = Dispatcher(turn, Store(tmp_path / "state"), {"telegram": sink}, max_concurrent=3)
        for chat in "abcdef":
            for i in range(3):
                d.submit(msg(chat=chat, text=f"{chat}{i}"))
        await asyncio.wait(set(d.tasks))
        return d, sink

    d, sink = run(go())
    assert peak == 3
    for chat in "abcdef":
        assert [t for t in order if t[0] == chat] == [f"{chat}0", f"{chat}1", f"{chat}2"]
    assert len(sink.sent) == 18 and d.turns_done == 18
    assert d._locks == {}
    assert sorted(sink.started) == sorted(sink.finished)


def test_reply_is_threaded_to_the_inbound_message(tmp_path):
    async def turn(m, ctx):
        assert (ctx.message_id, ctx.channel, ctx.chat_id) == ("55", "telegram", "9")
        return "threaded"

    async def go():
        sink = Sink()
        d = Dispatcher(turn, None, {"telegram": sink}, 2)
        await d.submit(msg(chat="9", message_id=55, thread_id=3))
        return sink.sent

    [out] = run(go())
    assert (out.reply_to, out.metadata["thread_id"], out.content) == ("55", 3, "threaded")


def test_a_failed_send_keeps_the_stored_reply_and_recover_sends_it_without_a_turn(tmp_path):
    turns = []

    async def turn(m, ctx):
        turns.append(m.content)
        return "answer"

    async def go():
        store = Store(tmp_path / "state")
        m = msg(key="k")
        store.accept(m)
        d = Dispatcher(turn, store, {"telegram": Sink(fail=1)}, 2)
        await d.submit(m)  # the channel is down: the reply stays stored
        sink = Sink()
        d2 = Dispatcher(turn, Store(tmp_path / "state"), {"telegram": sink}, 2)
        resent, queued = await d2.recover()
        await asyncio.wait(set(d2.tasks))
        return turns, sink.sent, (resent, queued)

    turns, sent, counts = run(go())
    assert turns == ["hi"]
    assert [o.content for o in sent] == ["answer"]
    assert counts == (1, 0)


def test_a_turn_that_raises_answers_the_generic_apology(tmp_path):
    async def turn(m, ctx):
        raise RuntimeError("boom")

    async def go():
        sink = Sink()
        await Dispatcher(turn, None, {"telegram": sink}, 1).submit(msg())
        return sink.sent

    assert [o.content for o in run(go())] == [FAILURE_REPLY]


def test_outbox_sends_to_the_origin_chat_now(tmp_path):
    async def turn(m, ctx):
        await ctx.outbox.send("working on it…")
        return "done"

    async def go():
        sink = Sink()
        await Dispatcher(turn, Store(tmp_path / "state"), {"telegram": sink}, 1).submit(msg())
        return sink.sent

    sent = run(go())
    assert [(o.chat_id, o.content) for o in sent] == [("1", "working on it…"), ("1", "done")]
    assert Store(tmp_path / "state").unsent() == []


# ---- route and admission ----------------------------------------------------------------------


def test_internal_producers_skip_allow_from_but_not_the_limit_or_the_audit(tmp_path, home):
    got = []
    route = Route(Admission(RateLimiter(per_minute=1, burst=1)), Store(tmp_path / "s"), got.append)

    def cron(n):
        return InboundMessage(
            "telegram", "cron:daily", "42", "remind", metadata={"origin": "cron", "dedupe_key": n}
        )

    assert run(route.submit(cron("a")))
    assert run(route.submit(cron("b"))).reason == "rate_limited"
    assert len(got) == 1
    events = [json.loads(line) for line in (home / "logs" / "audit.jsonl").read_text().splitlines()]
    access = [e for e in events if e["event"] == "access"]
    assert access[0]["reason"] == "cron" and access[0]["decision"] == "allowed"


def test_a_full_disk_accepts_nothing_and_recovers(tmp_path):
    got = []
    store = Store(tmp_path / "s")
    route = Route(Admission(None), store, got.append)
    size = store.path.stat().st_size
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))  # root or not: EFBIG
    try:
        with pytest.raises(OSError):
            run(route.accept(msg(key="x")))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert got == []
    assert store.path.read_bytes().endswith(b"\n") or store.path.stat().st_size == 0
    assert run(route.accept(msg(key="x")))  # the key was not burnt by the failed write
    assert len(got) == 1
    store.close()
    assert [m.metadata["dedupe_key"] for m in Store(tmp_path / "s").pending()] == ["x"]


def test_a_batch_accepted_at_once_is_journaled_together_with_a_verdict_each(tmp_path):
    """Messages accepted in one turn of the loop share one write; a repeated key among them
    and one accepted earlier are duplicates; each accepted message is dispatched once."""
    got = []
    store = Store(tmp_path / "s")
    route = Route(Admission(None), store, got.append)
    assert run(route.accept(msg(key="early")))
    keys = [f"k{i % 40}" for i in range(50)] + ["early"]  # k0…k9 twice, "early" again

    async def burst():
        return await asyncio.gather(
            *(route.accept(msg(chat=str(i), key=k)) for i, k in enumerate(keys))
        )

    verdicts = run(burst())
    assert [bool(v) for v in verdicts] == [True] * 40 + [False] * 11
    assert sorted(m.metadata["dedupe_key"] for m in got) == sorted({"early", *keys})
    store.close()
    lines = [json.loads(x) for x in store.path.read_text().splitlines()]
    assert sorted(r["key"] for r in lines if r["op"] == "in") == sorted({"early", *keys})


# ---- supervisor -------------------------------------------------------------------------------


class Flaky:
    name = "flaky"
    status = "running"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.done = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise ConnectionError(f"down #{self.starts}")
        self.done.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        pass


def test_supervisor_restarts_with_growing_jittered_backoff(monkeypatch):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds):
        slept.append(seconds)
        await real_sleep(0)

    async def go():
        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        ch = Flaky(failures=4)
        sup = Supervisor("flaky", ch, Backoff(1.0, 5.0))
        sup.start()
        await asyncio.wait_for(ch.done.wait(), 5)
        await sup.stop()
        return sup, ch

    sup, ch = run(go())
    assert (ch.starts, sup.restarts) == (5, 4)
    bounds = [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.5, 5.0)]
    assert all(lo <= s <= hi for s, (lo, hi) in zip(slept, bounds, strict=True)), slept


def test_an_empty_reply_sends_nothing_and_is_retired(tmp_path):
    async def turn(m, ctx):
        return "   "

    async def go():
        sink = Sink()
        d = Dispatcher(turn, Store(tmp_path / "state"), {"telegram": sink}, 1)
        m = msg(key="quiet")
        d.store.accept(m)
        await d.submit(m)
        return sink.sent, d.turns_done

    assert run(go()) == ([], 1)
    store = Store(tmp_path / "state")
    assert (store.pending(), store.unsent()) == ([], [])


def test_internal_runs_show_no_typing(tmp_path):
    async def turn(m, ctx):
        return "reminder"

    async def go():
        sink = Sink()
        d = Dispatcher(turn, None, {"telegram": sink}, 1)
        await d.submit(msg(text="job", origin="cron"))
        await d.submit(msg(text="user"))
        return sink

    sink = run(go())
    assert sink.started == ["user"] and len(sink.sent) == 2


def test_a_withdrawn_message_is_retired_without_a_reply(tmp_path):
    store = Store(tmp_path / "state")
    m = msg(key="cancelled")
    store.accept(m)
    assert store.own_pending() == [m]
    store.retire(m)
    store.close()
    again = Store(tmp_path / "state")
    assert (again.pending(), again.unsent()) == ([], [])
    assert not again.accept(msg(key="cancelled"))


def test_a_full_disk_during_the_turn_tells_the_user_keeps_the_message_and_retries(tmp_path, caplog):
    import errno

    calls = []

    async def turn(m, ctx):
        calls.append(m.content)
        if len(calls) == 1:  # the session append found no space left
            raise OSError(errno.ENOSPC, "No space left on device", "sessions/telegram_1.jsonl")
        return "the real answer"

    async def go():
        sink = Sink()
        store = Store(tmp_path / "state")
        d = Dispatcher(turn, store, {"telegram": sink}, 1)
        d.disk_retry = 0.05
        m = msg(key="k-disk")
        store.accept(m)
        await d.submit(m)
        still_kept = [p.content for p in store.pending()]
        for _ in range(100):
            if len(sink.sent) == 2:
                break
            await asyncio.sleep(0.02)
        return sink.sent, still_kept, store

    sent, kept, store = run(go())
    from nanobot.route.dispatcher import DISK_FULL_REPLY

    assert [o.content for o in sent] == [DISK_FULL_REPLY, "the real answer"]
    assert kept == ["hi"]  # not acknowledged while the disk was full
    assert calls == ["hi", "hi"] and store.pending() == []
    assert "sessions/telegram_1.jsonl" in caplog.text and "bytes free" in caplog.text


def test_other_os_errors_of_a_turn_get_the_generic_apology_and_an_empty_reply_is_no_disk_notice(
    tmp_path,
):
    async def broken(m, ctx):
        raise PermissionError(13, "Permission denied", "/somewhere")

    async def quiet(m, ctx):
        return ""

    async def go(turn):
        sink = Sink()
        await Dispatcher(turn, Store(tmp_path / "s"), {"telegram": sink}, 1).submit(msg())
        return [o.content for o in sink.sent]

    assert run(go(broken)) == [FAILURE_REPLY]
    assert run(go(quiet)) == []


def test_message_dicts_match_dataclasses_asdict():
    """The journal's fast to_dict() must stay what asdict() gives when a field is added."""
    from dataclasses import asdict

    inbound = InboundMessage("telegram", "7", "8", "hi", ["/m/a.jpg"], {"message_id": 3})
    outbound = OutboundMessage("telegram", "8", "hello", "3", {"thread": 1}, ["/m/b.png"])
    for msg in (inbound, outbound):
        assert msg.to_dict() == asdict(msg)
        assert list(msg.to_dict()) == list(asdict(msg))
