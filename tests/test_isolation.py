"""agents.defaults.isolation = "sender": two people in one group chat, each with their own
workspace, memory and sessions; Bob's exec and file tools try to read Alice's memory."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot import workers
from nanobot.agent.people import IsolatedAgent, folder_name
from nanobot.config.loader import load_config
from nanobot.errors import ConfigError
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import ToolContext

KEY = "sk-test-isolation-0000000000000"
SECRET = "Alice-private-fact-4242"


def configure(tmp_path, monkeypatch, llm, sandbox):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    config = {
        "tools": {"exec": {"sandbox": sandbox}},
        "agents": {"defaults": {"isolation": "sender"}},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    return load_config()


def test_isolation_refuses_to_run_commands_without_the_sandbox(tmp_path, monkeypatch):
    with ScriptedLLMServer("openai") as llm:
        cfg, info = configure(tmp_path, monkeypatch, llm, "none")
        with pytest.raises(ConfigError, match="tools.exec.sandbox"):
            build_agent(cfg, info)
    workers.shutdown()
    REDACTOR.clear()


@pytest.fixture(params=["bwrap", "auto"])
def env(request, tmp_path, monkeypatch):
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    with ScriptedLLMServer("openai") as llm:
        cfg, info = configure(tmp_path, monkeypatch, llm, request.param)
        yield build_agent(cfg, info), llm, tmp_path
    workers.shutdown()
    REDACTOR.clear()


def say(agent, sender, text, chat="-100"):
    ctx = ToolContext("telegram", chat, sender, f"telegram:{chat}")
    return asyncio.run(agent.handle(InboundMessage("telegram", sender, chat, text), ctx))


def tool_results(body):
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_one_persons_turn_reads_nothing_of_anothers(env):
    agent, llm, home = env
    assert isinstance(agent, IsolatedAgent)
    alice_ws = home / "people" / folder_name("telegram:1") / "workspace"
    bob_ws = home / "people" / folder_name("telegram:2") / "workspace"
    llm.script(
        [
            tool_call("memory", {"action": "remember", "target": "long_term", "text": SECRET}),
            reply("noted"),
        ]
    )
    assert say(agent, "1|alice", "remember my secret fact") == "noted"
    assert SECRET in (alice_ws / "memory" / "MEMORY.md").read_text()

    alice_memory = alice_ws / "memory" / "MEMORY.md"
    attempts = [
        f"cat {alice_memory}",
        f"cat ../../{folder_name('telegram:1')}/workspace/memory/MEMORY.md",
        f"grep -r {SECRET} {home} 2>&1 | head -5",
        f"cat {home}/people/*/workspace/memory/MEMORY.md",
    ]
    steps = [tool_call("exec", {"command": c}, id=f"e{i}") for i, c in enumerate(attempts)]
    steps += [
        tool_call("read_file", {"path": str(alice_memory)}, id="r1"),
        tool_call("list_dir", {"path": str(home / "people")}, id="r2"),
        reply("done"),
    ]
    llm.script(steps)
    assert say(agent, "2|bob", "what did alice say?") == "done"
    bob_requests = [r.json for r in llm.requests[2:]]
    for body in bob_requests:
        assert SECRET not in body["messages"][0]["content"], "Alice's memory in Bob's prompt"
        assert not any(SECRET in r for r in tool_results(body)), "a tool of Bob's read it"
        assert "remember my secret fact" not in json.dumps(body)  # nor her session
    results = tool_results(bob_requests[-1])
    assert len(results) == len(attempts) + 2
    assert "No such file" in results[0]  # the command ran, in a sandbox without her folder
    assert results[-2].startswith("Error:") and results[-1].startswith("Error:")
    assert bob_ws.is_dir() and (bob_ws / "AGENTS.md").exists()  # Bob's own bootstrap files

    llm.script([reply("your fact is safe")])
    time.sleep(1.1)  # the prompt looks at a workspace file again at most once a second
    say(agent, "1|alice", "what do you remember?")
    assert SECRET in llm.requests[-1].json["messages"][0]["content"]


def test_internal_turns_belong_to_the_chat_they_answer(env):
    agent, llm, home = env
    llm.script([reply("hi alice")])
    say(agent, "1|alice", "hello", chat="1")
    llm.script([reply("reminder")])
    ctx = ToolContext("telegram", "1", "cron:abc", "cron:abc")
    msg = InboundMessage(
        "telegram", "cron:abc", "1", "time to stretch", metadata={"origin": "cron"}
    )
    asyncio.run(agent.handle(msg, ctx))
    assert (home / "people" / folder_name("telegram:1") / "sessions").is_dir()
    assert not (home / "people" / folder_name("telegram:cron:abc")).exists()
