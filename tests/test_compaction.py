"""Long conversations against a scripted model server: older history becomes a summary record
appended to the session, the prompt is summary + recent tail, /compact, failures that lose
nothing, torn summary lines, and a budget from the model's context window."""

from __future__ import annotations

import asyncio
import json

import pytest

from fakes.llm_server import ScriptedLLMServer, error, reply, tool_call
from nanobot import workers
from nanobot.agent import compaction
from nanobot.agent.compaction import SUMMARISER, SUMMARY_INTRO, SUMMARY_ROLE
from nanobot.config.loader import load_config
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import ToolContext

KEY = "sk-test-compaction-00000000000"
SUMMARY = "- The user's cat is called Miso.\n- They prefer answers in French."


def is_summary_request(body: dict | None) -> bool:
    return bool(body) and body["messages"][0]["content"] == SUMMARISER


@pytest.fixture
def env(tmp_path, monkeypatch):
    def start(defaults=None, providers=None):
        monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        monkeypatch.setenv("NANOBOT_RETRY_BASE_DELAY", "0.01")
        cfg = {"tools": {"exec": {"sandbox": "none"}}, "agents": {"defaults": defaults or {}}}
        if providers:
            cfg["providers"] = providers
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        cfg, info = load_config()
        return build_agent(cfg, info)

    with ScriptedLLMServer("openai") as llm:
        llm.respond_with(lambda body: SUMMARY if is_summary_request(body) else "ok")
        yield start, llm, tmp_path
    workers.shutdown()
    REDACTOR.clear()


def say(agent, text, chat="7"):
    ctx = ToolContext("telegram", chat, "7", f"telegram:{chat}")
    return asyncio.run(agent.handle(InboundMessage("telegram", "7", chat, text), ctx))


def records(agent, chat="7"):
    path = agent.sessions.path(f"telegram:{chat}")
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def turn_requests(llm):
    return [r.json for r in llm.requests if r.json and not is_summary_request(r.json)]


def test_older_history_becomes_a_summary_and_keeps_its_meaning(env):
    start, llm, home = env
    agent = start({"maxHistoryChars": 3000})
    say(agent, "My cat is called Miso. " + "Tell me about cats. " * 20)
    for i in range(12):
        say(agent, f"question {i}: " + "more words here " * 15)
    summaries = [r for r in records(agent) if r["role"] == SUMMARY_ROLE]
    assert summaries, "the history passed its budget but was never summarised"
    asked = [r.json for r in llm.requests if is_summary_request(r.json)]
    assert "My cat is called Miso" in asked[0]["messages"][1]["content"]
    # the last turn's prompt: system, the summary as an exchange, then the recent tail
    last = turn_requests(llm)[-1]["messages"]
    assert last[1]["content"].startswith(SUMMARY_INTRO) and "Miso" in last[1]["content"]
    assert not any("My cat is called Miso" in str(m.get("content")) for m in last)
    assert last[3]["role"] == "user" and last[-1]["content"].startswith("question 11")
    assert sum(len(str(m.get("content") or "")) for m in last[3:]) <= 3000
    # nothing was lost: every message is still in the session file, in order
    users = [r["content"] for r in records(agent) if r["role"] == "user"]
    assert len(users) == 13 and users[0].startswith("My cat is called Miso")


def test_a_later_summary_folds_in_the_earlier_one(env):
    start, llm, home = env
    agent = start({"maxHistoryChars": 2000})
    for i in range(20):
        say(agent, f"turn {i} " + "words " * 60)
    asked = [r.json for r in llm.requests if is_summary_request(r.json)]
    assert len(asked) >= 2
    assert f"Earlier summary:\n{SUMMARY}" in asked[-1]["messages"][1]["content"]
    # each later prompt carries one summary, never two
    for body in turn_requests(llm)[-3:]:
        intros = [m for m in body["messages"] if str(m.get("content")).startswith(SUMMARY_INTRO)]
        assert len(intros) == 1


def test_a_tool_call_and_its_result_are_never_split(env):
    start, llm, home = env
    agent = start({"maxHistoryChars": 2500})
    ids = iter(range(1000))

    def answer(body):
        if is_summary_request(body):
            return SUMMARY
        if body["messages"][-1]["role"] == "user":  # a new turn: call a tool first
            return tool_call("list_dir", {"path": "."}, id=f"call_{next(ids)}")
        return reply("listed")

    llm.respond_with(answer)
    for i in range(8):
        assert say(agent, f"list the workspace, round {i} " + "please " * 40) == "listed"
    for body in turn_requests(llm):
        msgs = body["messages"]
        ids = {c["id"] for m in msgs for c in m.get("tool_calls") or []}
        for m in msgs:
            if m["role"] == "tool":
                assert m["tool_call_id"] in ids, "a tool result without its call was sent"
    assert any(r["role"] == SUMMARY_ROLE for r in records(agent))


def test_a_failing_summary_loses_nothing_and_does_not_block_the_reply(env):
    start, llm, home = env
    agent = start({"maxHistoryChars": 2000})
    llm.respond_with(lambda body: error(500) if is_summary_request(body) else "fine")
    for i in range(10):
        assert say(agent, f"turn {i} " + "words " * 60) == "fine"
    assert not any(r["role"] == SUMMARY_ROLE for r in records(agent))
    assert len([r for r in records(agent) if r["role"] == "user"]) == 10
    last = turn_requests(llm)[-1]["messages"]
    assert last[-1]["content"].startswith("turn 9")  # the plain tail, as before compaction


def test_compact_on_demand(env):
    start, llm, home = env
    agent = start()
    assert say(agent, "/compact").startswith("Nothing to compact yet")
    for i in range(4):
        say(agent, f"fact {i}: the sky is colour {i}")
    answer = say(agent, "/compact")
    assert answer.startswith("Compacted: 6 earlier messages") and "kept on disk" in answer
    summary = [r for r in records(agent) if r["role"] == SUMMARY_ROLE]
    assert len(summary) == 1 and summary[0]["kept"] == 2 and summary[0]["content"] == SUMMARY
    say(agent, "and now?")
    msgs = turn_requests(llm)[-1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[3]["content"] == "fact 3: the sky is colour 3"
    assert "/compact" in say(agent, "/help")


def test_a_torn_summary_line_is_skipped(env):
    start, llm, home = env
    agent = start()
    for i in range(3):
        say(agent, f"message {i}")
    path = agent.sessions.path("telegram:7")
    with open(path, "a") as f:  # a crash in the middle of writing a summary record
        f.write('{"role": "summary", "content": "half a summ')
    say(agent, "after the crash")
    msgs = turn_requests(llm)[-1]["messages"]
    assert [m["content"] for m in msgs if m["role"] == "user"] == [
        "message 0",
        "message 1",
        "message 2",
        "after the crash",
    ]


def test_the_budget_follows_a_known_context_window(env):
    start, llm, home = env
    agent = start(
        {"maxHistoryChars": 60_000, "maxTokens": 1000}, {"openai": {"contextWindow": 4000}}
    )
    b = compaction.budget(agent)
    assert b.chars == (4000 - 1000) * 3 // 2 and b.messages == 50
    agent = start({"maxHistoryChars": 60_000})
    assert compaction.budget(agent).chars == 60_000  # hosted model, window unknown
