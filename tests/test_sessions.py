"""Session files: append-only JSONL, torn lines, tail-only reads, reset and idle expiry."""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply
from nanobot import workers
from nanobot.agent import sessions
from nanobot.agent.sessions import SessionStore
from nanobot.config.loader import load_config
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import ToolContext


def msgs(n, start=0):
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"}
        for i in range(start, start + n)
    ]


def test_append_is_0600_and_tail_respects_both_bounds(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    store.append("telegram:42", *msgs(30))
    path = store.path("telegram:42")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    tail = store.tail("telegram:42", max_messages=10, max_chars=10_000)
    assert [m["content"] for m in tail] == [f"m{i}" for i in range(20, 30)]
    assert all("ts" not in m for m in tail)
    short = store.tail("telegram:42", max_messages=10, max_chars=12)
    assert [m["content"] for m in short] == ["m26", "m27", "m28", "m29"]


def test_tail_never_starts_with_an_orphan_tool_result(tmp_path):
    store = SessionStore(tmp_path)
    store.append(
        "k",
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "exec", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "out"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "next"},
        {"role": "assistant", "content": "ok"},
    )
    tail = store.tail("k", max_messages=5, max_chars=100_000)
    assert tail[0] == {"role": "user", "content": "next"}


def test_torn_and_corrupt_lines_are_skipped_not_fatal(tmp_path, caplog):
    store = SessionStore(tmp_path)
    store.append("k", *msgs(4))
    path = store.path("k")
    with open(path, "a") as f:
        f.write('{"role": "user", "content": "torn mid-wr')  # a crash mid-write
    lines = path.read_text().splitlines()
    lines.insert(1, "\x00\x00garbage{{{")
    path.write_text("\n".join(lines))
    tail = store.tail("k", max_messages=50, max_chars=100_000)
    assert [m["content"] for m in tail] == ["m0", "m1", "m2", "m3"]
    assert "torn or corrupt" in caplog.text
    store.append("k", {"role": "user", "content": "after the crash"})
    assert store.tail("k", 50, 100_000)[-1]["content"] == "after the crash"


def test_tail_reads_only_the_end_of_a_huge_file(tmp_path):
    store = SessionStore(tmp_path)
    path = store.path("big")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(8 * 1024**3)  # 8 GiB of holes: reading it whole would take minutes
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + b"\n".join(json.dumps(m).encode() for m in msgs(6)) + b"\n")
    started = time.monotonic()
    tail = store.tail("big", max_messages=4, max_chars=10_000)
    assert [m["content"] for m in tail] == ["m2", "m3", "m4", "m5"]
    assert time.monotonic() - started < 5


def test_keys_are_sanitised_and_stay_distinct(tmp_path):
    store = SessionStore(tmp_path)
    a, b = store.path("http:../../etc"), store.path("http:.._.._etc")
    assert a.parent == tmp_path and b.parent == tmp_path and a != b


def test_reset_sets_history_aside(tmp_path):
    store = SessionStore(tmp_path)
    store.append("k", *msgs(2))
    aside = store.reset("k")
    assert aside is not None and aside.exists() and not store.path("k").exists()
    assert store.tail("k", 10, 1000) == []


def test_secrets_are_redacted_in_session_lines(tmp_path):
    REDACTOR.add("sk-session-secret-123456")
    try:
        store = SessionStore(tmp_path)
        store.append("k", {"role": "user", "content": "my key is sk-session-secret-123456"})
        assert "sk-session-secret-123456" not in store.path("k").read_text()
    finally:
        REDACTOR.clear()


@pytest.fixture
def agent_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    with ScriptedLLMServer("openai") as llm:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-idle-000000000000")
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        (tmp_path / "config.json").write_text(
            json.dumps({"agents": {"defaults": {"sessionIdleMinutes": 1}}})
        )
        yield tmp_path, llm
    REDACTOR.clear()


def test_idle_session_starts_afresh_and_keeps_the_old_history(agent_home):
    home, llm = agent_home
    cfg, info = load_config()
    agent = build_agent(cfg, info)
    ctx = ToolContext(channel="telegram", chat_id="7", sender_id="7", session_key="telegram:7")
    llm.script([reply("one"), reply("two"), reply("three")])
    asyncio.run(agent.handle(InboundMessage("telegram", "7", "7", "first"), ctx))
    asyncio.run(agent.handle(InboundMessage("telegram", "7", "7", "second"), ctx))
    assert [m["content"] for m in llm.requests[1].json["messages"][1:]] == [
        "first",
        "one",
        "second",
    ]
    path = agent.sessions.path("telegram:7")
    old = time.time() - 120
    os.utime(path, (old, old))
    asyncio.run(agent.handle(InboundMessage("telegram", "7", "7", "after a break"), ctx))
    assert [m["content"] for m in llm.requests[2].json["messages"][1:]] == ["after a break"]
    assert list(path.parent.glob("*.idle-*.jsonl.old"))
    workers.shutdown()


def test_system_prompt_carries_workspace_files_memory_and_time(agent_home):
    home, llm = agent_home
    cfg, info = load_config()
    agent = build_agent(cfg, info)
    (home / "workspace" / "memory" / "MEMORY.md").write_text("The user's cat is called Miso.")
    (home / "workspace" / "USER.md").write_text("Name: Ada. Time zone: UTC.")
    llm.script([reply("hi")])
    asyncio.run(agent.handle(InboundMessage("cli", "user", "direct", "hello"), ToolContext()))
    system = llm.requests[0].json["messages"][0]["content"]
    assert "Miso" in system and "Ada" in system and time.strftime("%Y-%m-%d") in system
    assert "AGENTS.md" in system and str(home / "workspace") in system
    workers.shutdown()


def test_the_first_append_makes_a_private_directory_and_file(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    store.append("k", {"role": "user", "content": "hi"})
    assert (tmp_path / "sessions").stat().st_mode & 0o777 == 0o700
    assert store.path("k").stat().st_mode & 0o777 == 0o600
    assert store.tail("k", 5, 1000) == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("block", [1, 5, 64, 16 * 1024])
def test_the_tail_reader_finds_the_last_lines_across_block_edges(tmp_path, monkeypatch, block):
    """The fixed read buffer may cut a line (and a UTF-8 character) anywhere."""
    monkeypatch.setattr(sessions, "_BLOCK", block)
    rng = random.Random(block)
    path = tmp_path / "s.jsonl"
    for _ in range(300):
        parts = [rng.choice(["", " ", "é", "猫"]) + "x" * rng.randint(0, 30) for _ in range(40)]
        text = "".join(p + rng.choice(["\n", "\n", "\n\n", ""]) for p in parts)
        path.write_bytes(text.encode())
        want = rng.randint(1, 12)
        lines = [line for line in text.split("\n") if line.strip()]
        assert sessions._read_tail_lines(path, want, 10**9) == lines[-want:]
        bounded = sessions._read_tail_lines(path, want, rng.randint(1, 200))
        assert bounded == lines[len(lines) - len(bounded) :] if bounded else True
