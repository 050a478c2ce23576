"""The loop's iteration cap: a model that calls tools forever is stopped, and says so."""

from __future__ import annotations

import asyncio
import json

from fakes.llm_server import ScriptedLLMServer, last_user_text, tool_call
from nanobot import workers
from nanobot.config.loader import load_config
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.tools.base import ToolContext


def test_a_model_that_never_stops_calling_tools_is_cut_at_max_tool_iterations(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    with ScriptedLLMServer("openai") as llm:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cap-000000000000")
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        (tmp_path / "config.json").write_text(
            json.dumps({"agents": {"defaults": {"model": "gpt-test", "maxToolIterations": 4}}})
        )
        n = iter(range(100))

        def forever(body):
            i = next(n)
            return tool_call("list_dir", {"path": f"dir{i}"})

        llm.respond_with(forever)
        cfg, info = load_config()
        agent = build_agent(cfg, info)
        msg = InboundMessage("cli", "me", "cap", "list everything")
        try:
            answer = asyncio.run(agent.handle(msg, ToolContext(session_key="cli:cap")))
        finally:
            workers.shutdown()
    assert "maxToolIterations" in answer
    assert len(llm.requests) == 4
    assert last_user_text(llm.requests[0].json) == "list everything"
