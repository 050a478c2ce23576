"""Subagents: fewer tools, a limit, the result reported into the spawning chat through the
route, /tasks and /stop scoped to the chat, and tasks cut off by a restart reported."""

from __future__ import annotations

import asyncio
import json

import pytest
from autoenv import ALICE, BOB, make_env, settle

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from nanobot import workers
from nanobot.route.message import InboundMessage
from nanobot.security.redact import REDACTOR


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        yield server
    workers.shutdown()
    REDACTOR.clear()


def worker_model(body):
    text = last_user_text(body)
    if text.startswith("[You are a background worker"):
        return reply("found 3 papers", delay=2.0 if "slow" in text else 0.0)
    if text.startswith("[Background task"):
        return reply("Your research is done: found 3 papers.")
    return reply("ok")


async def spawn(env, chat: str, task: str):
    ctx = env.dispatcher.context_for(InboundMessage("telegram", chat, chat, "go"))
    return await env.agent.tools.call("spawn", {"task": task}, ctx)


def test_result_is_reported_into_the_spawning_chat(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    llm.respond_with(worker_model)

    async def go():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        started = await spawn(env, ALICE, "find papers")
        assert "Started background task" in started.text
        for _ in range(100):
            await asyncio.sleep(0.05)
            await settle(env.dispatcher)
            if env.sink.sent:
                break
        await auto.stop()

    asyncio.run(go())
    assert env.sink.texts(ALICE) == ["Your research is done: found 3 papers."]
    assert env.sink.texts(BOB) == []
    worker_req = next(r for r in llm.requests if "background worker" in last_user_text(r.json))
    tools = {t["function"]["name"] for t in worker_req.json.get("tools", [])}
    assert "spawn" not in tools and "cron" not in tools and "exec" in tools
    assert not list((env.home / "sessions").glob("subagent*"))  # its scratch session is gone


def test_limit_tasks_and_stop_are_per_chat(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm, defaults={"maxSubagents": 1})
    llm.respond_with(worker_model)

    async def go():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        first = await spawn(env, ALICE, "slow search")
        second = await spawn(env, ALICE, "another")
        assert "maxSubagents" in second.text and second.text.startswith("Error")
        (rec,) = auto.subagents.running.values()
        assert auto.subagents.command("telegram", BOB, "/tasks").startswith("No background")
        assert rec.id in auto.subagents.command("telegram", ALICE, "/tasks")
        assert "No background task" in auto.subagents.command("telegram", BOB, f"/stop {rec.id}")
        assert "Stopping" in auto.subagents.command("telegram", ALICE, f"/stop {rec.id}")
        await asyncio.sleep(0.2)
        await settle(env.dispatcher)
        await auto.stop()
        return first

    first = asyncio.run(go())
    assert "Started" in first.text
    assert any("was stopped" in t for t in env.sink.texts(ALICE))
    assert not any("found 3 papers" in t for t in env.sink.texts(ALICE))


def test_internal_runs_cannot_spawn(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)

    async def go():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        ctx = env.dispatcher.context_for(InboundMessage("telegram", "cron:x", ALICE, "go"))
        out = await env.agent.tools.call("spawn", {"task": "loop"}, ctx)
        await auto.stop()
        return out

    assert "cannot start background tasks" in asyncio.run(go()).text


def test_a_task_cut_off_by_shutdown_is_reported_at_the_next_start(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    llm.respond_with(worker_model)

    async def first_run():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        await spawn(env, ALICE, "slow crawl")
        await asyncio.sleep(0.3)
        await auto.stop()  # the gateway stops while the task runs

    asyncio.run(first_run())
    state = json.loads((env.home / "state" / "subagents.json").read_text())
    assert len(state) == 1 and env.sink.sent == []

    env = make_env(tmp_path, monkeypatch, llm)  # a new gateway process

    async def second_run():
        auto = env.wire()
        await auto.start(env.route, env.dispatcher)
        await settle(env.dispatcher)
        await auto.stop()

    asyncio.run(second_run())
    (text,) = env.sink.texts(ALICE)
    assert "interrupted by a gateway restart" in text
    assert json.loads((env.home / "state" / "subagents.json").read_text()) == {}
