"""The jobs store: 0600, atomic under kill -9, corrupt files set aside, changes merged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanobot.services import jobs
from nanobot.services.cron import ran
from nanobot.services.jobs import Job, JobStore

REPO = Path(__file__).resolve().parent.parent


def job(job_id: str) -> Job:
    return Job(job_id, job_id, "hi", jobs.every(60), "telegram", "42")


def test_store_is_private_and_round_trips(tmp_path):
    store = JobStore(tmp_path / "cron")
    store.update(lambda cur: cur.append(job("a")) or True)
    assert oct(store.path.stat().st_mode)[-3:] == "600"
    assert oct(store.dir.stat().st_mode)[-3:] == "700"
    (loaded,) = store.load()
    assert loaded.id == "a" and loaded.chat_id == "42"
    assert loaded.schedule == jobs.every(60)


def test_corrupt_store_is_set_aside_not_emptied(tmp_path, caplog):
    store = JobStore(tmp_path / "cron")
    store.dir.mkdir(parents=True)
    store.path.write_text('{"jobs": [ {"id": "half')
    assert store.load() == []
    aside = list(store.dir.glob("jobs.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"jobs": [ {"id": "half'
    assert "unreadable" in caplog.text and "moved aside" in caplog.text


def test_a_change_made_elsewhere_is_never_undone(tmp_path):
    """The gateway recording a run works on the file as it is now: a job the CLI removed in
    the meantime stays removed, a job it added stays added."""
    gateway = JobStore(tmp_path / "cron")
    cli = JobStore(tmp_path / "cron")
    gateway.update(lambda cur: cur.extend([job("a"), job("b")]) or True)
    seen_by_gateway = gateway.load()
    cli.update(lambda cur: cur.pop(0) and cur.append(job("c")) or True)  # remove a, add c
    gateway.update(ran("a", 100.0, "started"))  # the run of a job that is gone
    gateway.update(ran("b", 100.0, "started"))
    ids = [j.id for j in gateway.load()]
    assert ids == ["b", "c"] and [j.id for j in seen_by_gateway] == ["a", "b"]
    assert gateway.load()[0].state.runs == 1


WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from nanobot.services import jobs
from nanobot.services.jobs import Job, JobStore
store = JobStore(Path(sys.argv[2]))
n = 0
while True:
    n += 1
    # big enough that a write takes a while: many chances to be killed mid-write
    store.update(lambda cur: cur.append(
        Job(f"j{n}", "x" * 2000, "m" * 2000, jobs.every(60), "telegram", "42")) or True)
    print(n, flush=True)
"""


def test_store_survives_kill_9_during_writes(tmp_path):
    root = tmp_path / "cron"
    for round_ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(REPO), str(root)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one write done
        time.sleep(0.05 + 0.03 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = json.loads((root / "jobs.json").read_text())  # always whole, never torn
        loaded = JobStore(root).load()
        assert len(loaded) == len(data["jobs"]) >= 1
        assert not list(root.glob("jobs.json.corrupt-*"))
