"""Telegram shows the reply growing while it is written, and short tool hints, with the real
agent (scripted model server) and the real route behind FakeTelegram; the command menu."""

from __future__ import annotations

import asyncio

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from fakes.telegram_server import FakeTelegram
from nanobot import workers
from nanobot.channels.telegram.channel import TelegramChannel
from nanobot.channels.telegram.live import EDIT_INTERVAL
from nanobot.config.loader import load_config
from nanobot.config.schema import TelegramConfig
from nanobot.route.admission import Admission
from nanobot.route.dispatcher import Dispatcher
from nanobot.route.route import Route
from nanobot.route.store import Store
from nanobot.runtime import build_agent
from nanobot.security.redact import REDACTOR

FAST = {"backoff_base": 0.02, "backoff_max": 0.1, "send_budget": 5.0, "typing_delay": 0}
ANSWER = "Here is a **long** answer that keeps coming for a while so the draft grows."


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tgprogress-00000000000")
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        cfg, info = load_config()
        yield build_agent(cfg, info), llm, tg, tmp_path
    workers.shutdown()
    REDACTOR.clear()


async def converse(agent, tg, home, text, until, **channel_kw):
    """Run the channel with the real route and dispatcher until `until()` holds."""
    channels: dict = {}
    dispatcher = Dispatcher(agent.handle, Store(home / "state"), channels, 8)
    route = Route(Admission(None), dispatcher.store, dispatcher.submit)
    cfg = TelegramConfig(
        enabled=True, token=tg.token, allow_from=["42"], api_base=tg.api_base, poll_timeout=1
    )
    ch = channels["telegram"] = TelegramChannel(cfg, route, **FAST, **channel_kw)
    task = asyncio.create_task(ch.start())
    try:
        tg.push_message(42, text)
        for _ in range(400):
            if until():
                break
            await asyncio.sleep(0.05)
        assert until(), (tg.sent, tg.edits)
        await dispatcher.drain(5)
    finally:
        await ch.stop()
        await asyncio.wait_for(task, 5)


def test_the_reply_grows_in_one_message_then_becomes_the_final_reply(setup):
    agent, llm, tg, home = setup
    llm.script([reply(ANSWER, chunk_delay=0.2)])  # ~3 s of writing
    asyncio.run(
        converse(agent, tg, home, "tell me", lambda: any("</b>" in e["text"] for e in tg.edits))
    )
    assert len(tg.sent) == 1  # the draft: the final reply is an edit of it, not a new message
    draft = tg.sent[0]
    assert "parse_mode" not in draft and draft["text"].endswith("…")
    assert draft["reply_to_message_id"] == 1
    growing = [e for e in tg.edits if "parse_mode" not in e]
    assert growing and all(
        len(a["text"]) <= len(b["text"]) for a, b in zip(growing, growing[1:], strict=False)
    )
    gaps = [b["at"] - a["at"] for a, b in zip([draft, *tg.edits], tg.edits, strict=False)]
    assert all(gap >= EDIT_INTERVAL - 0.1 for gap in gaps), gaps  # within Telegram's limits
    final = tg.edits[-1]
    assert final["parse_mode"] == "HTML" and "<b>long</b>" in final["text"]
    assert final["visible"] == ANSWER.replace("**", "")


def test_tool_hints_show_when_switched_on(setup):
    agent, llm, tg, home = setup
    llm.script(
        [tool_call("write_file", {"path": "notes.txt", "content": "x"}), reply("Saved.", delay=2)]
    )
    asyncio.run(
        converse(
            agent,
            tg,
            home,
            "save",
            lambda: any(e["visible"] == "Saved." for e in tg.edits),
            send_progress=False,
            send_tool_hints=True,
        )
    )
    assert tg.sent[0]["text"] == "✎ write_file notes.txt"
    assert tg.edits[-1]["visible"] == "Saved."
    assert tg.commands and {c["command"] for c in tg.commands} >= {"start", "help", "reset"}


def test_no_progress_when_switched_off(setup):
    agent, llm, tg, home = setup
    llm.script([tool_call("list_dir", {}), reply(ANSWER, chunk_delay=0.05)])
    asyncio.run(
        converse(
            agent,
            tg,
            home,
            "tell me",
            lambda: bool(tg.sent),
            send_progress=False,
            send_tool_hints=False,
        )
    )
    assert len(tg.sent) == 1 and tg.edits == []
    assert tg.sent[0]["parse_mode"] == "HTML" and "<b>long</b>" in tg.sent[0]["text"]


def test_a_draft_that_cannot_be_edited_is_replaced_by_a_new_message(setup):
    agent, llm, tg, home = setup
    llm.script([reply(ANSWER, chunk_delay=0.1)])
    tg.fail_next("editMessageText", 400, "Bad Request: message to edit not found", count=20)
    asyncio.run(
        converse(agent, tg, home, "tell me", lambda: any("</b>" in s["text"] for s in tg.sent))
    )
    assert len(tg.sent) == 2 and tg.deleted  # the stale draft went away
    final = tg.sent[-1]
    assert final["visible"] == ANSWER.replace("**", "") and final["reply_to_message_id"] == 1


def test_the_gateway_passes_the_progress_switches_to_telegram(nb):
    from harness import GatewayProcess

    with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
        llm.script([reply(ANSWER, chunk_delay=0.25)])
        nb.write_config(
            {
                "providers": {
                    "openai": {"apiKey": "sk-test-gw-progress-0000000", "apiBase": llm.url}
                },
                "channels": {
                    "sendToolHints": True,
                    "telegram": {
                        "enabled": True,
                        "token": tg.token,
                        "apiBase": tg.api_base,
                        "allowFrom": ["42"],
                        "pollTimeout": 1,
                    },
                },
                "gateway": {"port": 0},
            }
        )
        gw = GatewayProcess(nb)
        try:
            gw.wait_ready()
            tg.push_message(42, "tell me")
            tg.wait_for(lambda: any("</b>" in e["text"] for e in tg.edits), 20, "final edit")
            assert tg.sent[0]["text"].endswith("…") and len(tg.sent) == 1
            assert {c["command"] for c in tg.commands} >= {"reset"}
        finally:
            gw.stop()
