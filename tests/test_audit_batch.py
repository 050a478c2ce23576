"""The audit trail written in batches: the decisions of one pass of the event loop together,
one anchor for them, never out of order with events recorded directly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nanobot.security.audit import AuditLog, verify
from nanobot.security.auditseal import load_anchor


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_decisions_of_one_loop_pass_are_written_together_before_the_next(tmp_path):
    """record_soon: a burst of admissions costs one lock and one anchor write, and every event
    is on disk before anything the loop scheduled after the first of them runs."""
    path, anchor = tmp_path / "logs" / "audit.jsonl", tmp_path / "state" / "anchor.json"
    log = AuditLog(path, anchor=anchor)
    seen: dict[str, int] = {}

    async def burst() -> None:
        for i in range(5):
            log.record_soon("access", sender=str(i), decision="allowed")
        seen["held"] = len(path.read_bytes().splitlines()) if path.exists() else 0
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(lambda: done.set_result(lines_of(path)))
        seen["after"] = len(await done)

    asyncio.run(burst())
    assert seen == {"held": 0, "after": 5}
    events = [json.loads(x) for x in lines_of(path)]
    assert [e["sender"] for e in events] == ["0", "1", "2", "3", "4"]
    assert load_anchor(anchor).seq == 5  # one anchor, for the last of them
    assert verify(path, anchor=anchor).ok


def test_an_event_recorded_directly_never_overtakes_held_ones(tmp_path):
    """Another thread's record() (the API's http_request) writes the held events first."""
    log_path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(log_path)

    async def mixed() -> None:
        log.record_soon("access", sender="held")
        await asyncio.to_thread(log.record, "http_request", status=200)

    asyncio.run(mixed())
    log.record_soon("access", sender="no loop: written at once")
    assert [json.loads(x)["event"] for x in lines_of(log_path)] == [
        "access",
        "http_request",
        "access",
    ]
    log.close()
