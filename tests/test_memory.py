"""Memory the agent writes, against a scripted model: a fact told in one session reaches the
prompt of another, notes are bounded and capped in the prompt, links are refused, and every
write is audited."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot import workers
from nanobot.agent.memory import (
    DAILY_MAX_BYTES,
    LONG_TERM,
    LONG_TERM_PROMPT_CHARS,
    MemoryTool,
    daily_note,
    memory_section,
)
from nanobot.config.loader import load_config
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import ToolContext

KEY = "sk-test-memory-000000000000000"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    with ScriptedLLMServer("openai") as llm:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        (tmp_path / "config.json").write_text(json.dumps({"tools": {"exec": {"sandbox": "none"}}}))
        cfg, info = load_config()
        yield build_agent(cfg, info), llm, tmp_path
    workers.shutdown()
    REDACTOR.clear()


def say(agent, text, chat):
    ctx = ToolContext("telegram", chat, chat, f"telegram:{chat}")
    return asyncio.run(agent.handle(InboundMessage("telegram", chat, chat, text), ctx))


def test_a_fact_told_in_one_session_is_used_in_another(env):
    agent, llm, home = env
    llm.script(
        [
            tool_call(
                "memory",
                {"action": "remember", "target": "long_term", "text": "The user's cat is Miso."},
            ),
            reply("I'll remember Miso."),
            reply("Your cat is Miso."),
        ]
    )
    assert say(agent, "my cat is called Miso", chat="1") == "I'll remember Miso."
    time.sleep(1.1)  # the prompt looks at a workspace file again at most once a second
    assert say(agent, "what is my cat called?", chat="2") == "Your cat is Miso."
    system = llm.requests[-1].json["messages"][0]["content"]
    assert f"### {LONG_TERM}" in system and "The user's cat is Miso." in system
    assert "## Memory" in system and "not chit-chat" in system
    # the other session's messages were not in the prompt: only the memory carried it
    assert all(
        "my cat is called Miso" not in str(m["content"]) for m in llm.requests[-1].json["messages"]
    )
    audit = (home / "logs" / "audit.jsonl").read_text()
    assert '"tool": "memory"' in audit or '"tool":"memory"' in audit


def tool(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return MemoryTool(PathPolicy(ws, True, tmp_path / "home")), ws


def call(t, **kw):
    return asyncio.run(t.execute(ToolContext(), **kw)).text


def test_daily_notes_append_and_are_bounded(tmp_path):
    t, ws = tool(tmp_path)
    assert call(t, action="remember", text="Decided: move to Lyon in May").startswith("Saved to")
    call(t, action="remember", target="today", text="Prefers tea")
    note = (ws / daily_note()).read_text()
    assert (
        note.startswith("# Notes of") and "- Decided: move to Lyon in May\n- Prefers tea\n" in note
    )
    assert oct((ws / daily_note()).stat().st_mode)[-3:] == "600"
    assert "at most 2000 characters" in call(t, action="remember", text="x" * 2001)
    for _ in range(DAILY_MAX_BYTES // 1400 + 2):
        text = call(t, action="remember", text="y" * 1400)
    assert "over its limit" in text and "long_term" in text
    assert len((ws / daily_note()).read_bytes()) <= DAILY_MAX_BYTES


def test_rewrite_replaces_long_term_memory(tmp_path):
    t, ws = tool(tmp_path)
    call(t, action="remember", target="long_term", text="Lives in Paris")
    call(t, action="rewrite", text="# Memory\n- Lives in Lyon")
    assert (ws / LONG_TERM).read_text() == "# Memory\n- Lives in Lyon\n"


def test_links_are_refused(tmp_path):
    t, ws = tool(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "memory").symlink_to(outside)
    assert call(t, action="remember", text="x").startswith("Error:")
    assert list(outside.iterdir()) == []
    (ws / "memory").unlink()
    (ws / "memory").mkdir()
    target = outside / "victim.md"
    target.write_text("keep me")
    os.link(target, ws / LONG_TERM)  # a hard link to a file elsewhere
    assert "hard link" in call(t, action="remember", target="long_term", text="x")
    assert target.read_text() == "keep me"


def test_the_prompt_caps_each_file_with_a_marker():
    files = {LONG_TERM: "a" * (LONG_TERM_PROMPT_CHARS + 50), daily_note(): "today's note"}
    section = memory_section(lambda rel: files.get(rel, ""))
    assert f"… (cut here: {LONG_TERM} is longer" in section
    assert (
        "a" * LONG_TERM_PROMPT_CHARS in section
        and "a" * (LONG_TERM_PROMPT_CHARS + 1) not in section
    )
    assert f"### {daily_note()}\ntoday's note" in section
