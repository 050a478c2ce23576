"""The cron tool is bound to the turn's chat; a job's run is quiet unless there is news."""

from __future__ import annotations

import asyncio
import time

import pytest
from autoenv import ALICE, BOB, make_env, settle

from fakes.llm_server import ScriptedLLMServer, reply
from nanobot import workers
from nanobot.route.message import InboundMessage
from nanobot.security.redact import REDACTOR
from nanobot.services.cron import QUIET
from nanobot.services.jobs import JobStore


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        yield server
    workers.shutdown()
    REDACTOR.clear()


def cron(env, chat: str, channel: str = "telegram", sender: str | None = None, **args):
    async def go():
        env.wire()
        ctx = env.dispatcher.context_for(InboundMessage(channel, sender or chat, chat, "x"))
        return (await env.agent.tools.call("cron", args, ctx)).text

    return asyncio.run(go())


def test_jobs_are_listed_and_removed_only_in_their_chat(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    out = cron(env, ALICE, action="add", message="water", every_seconds=3600)
    assert out.startswith("Scheduled")
    (job,) = JobStore().load()
    assert (job.channel, job.chat_id, job.bound) == ("telegram", ALICE, "chat")
    assert cron(env, BOB, action="list") == "No scheduled jobs in this chat."
    assert job.id in cron(env, ALICE, action="list")
    assert "no job" in cron(env, BOB, action="remove", job_id=job.id)
    assert len(JobStore().load()) == 1
    assert "Removed" in cron(env, ALICE, action="remove", job_id=job.id)
    assert JobStore().load() == []


def test_refused_from_background_runs_and_the_terminal(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    out = cron(env, ALICE, sender="cron:abc", action="add", message="again", every_seconds=60)
    assert "cannot add or remove jobs" in out
    out = cron(env, "default", channel="cli", action="add", message="x", every_seconds=60)
    assert "cannot receive messages later" in out
    assert "exactly one of" in cron(env, ALICE, action="add", message="x")
    assert "in the past" in cron(env, ALICE, action="add", message="x", at="2001-01-01T00:00")
    assert JobStore().load() == []


@pytest.mark.parametrize(
    ("deliver", "answer", "sent"),
    [
        (False, f"Nothing changed. {QUIET}", []),
        (False, "The price dropped to 10.", ["The price dropped to 10."]),
        (True, "Time to stretch!", ["Time to stretch!"]),
    ],
)
def test_a_run_sends_only_what_is_worth_sending(tmp_path, monkeypatch, llm, deliver, answer, sent):
    env = make_env(tmp_path, monkeypatch, llm)
    cron(env, ALICE, action="add", message="check", every_seconds=60, deliver=deliver)
    llm.script([reply(answer)])

    async def go():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        await auto.cron.check(time.time() + 61)
        await settle(env.dispatcher)
        await auto.cron.check(time.time() + 62)  # recorded: not due again
        await settle(env.dispatcher)
        await auto.stop()

    asyncio.run(go())
    assert env.sink.texts(ALICE) == sent and env.sink.texts(BOB) == []
    assert len(llm.requests) == 1
    assert env.agent.sessions.path(f"telegram:{ALICE}").exists() == bool(sent)
