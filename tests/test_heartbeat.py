"""The heartbeat: no tasks → no model call, HEARTBEAT_OK → nothing sent, findings → the
configured chat, HEARTBEAT.md read safely, and a session that stays small over 1,000 beats."""

from __future__ import annotations

import asyncio
import os

import pytest
from autoenv import ALICE, BOB, make_env, settle

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from nanobot import workers
from nanobot.security.redact import REDACTOR
from nanobot.services import heartbeat
from nanobot.services.internal import KEEP_MESSAGES

HB = {"gateway": {"heartbeat": {"channel": "telegram", "chatId": ALICE, "intervalS": 3600}}}


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        yield server
    workers.shutdown()
    REDACTOR.clear()


def test_tasks_are_what_is_not_headings_comments_or_blank():
    assert heartbeat.tasks_in("# Tasks\n\n<!-- later:\n- a -->\n  \n## More\n") == ""
    assert heartbeat.tasks_in("# T\n- water plants\n<!-- x -->\n") == "- water plants"
    assert heartbeat.tasks_in(None) == ""


def test_target_must_be_a_real_chat(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)  # two chats in allowFrom: no default
    where, why = heartbeat.target(env.cfg)
    assert where is None and "gateway.heartbeat.chatId" in why
    env = make_env(tmp_path, monkeypatch, llm, gateway={"heartbeat": {"chatId": "999"}})
    where, why = heartbeat.target(env.cfg)
    assert where is None and "allowFrom" in why
    env = make_env(tmp_path, monkeypatch, llm, **HB)
    assert heartbeat.target(env.cfg) == (("telegram", ALICE), "")


def beats(env, n: int, text: str | None):
    async def go():
        auto = env.wire()
        if text is not None:
            ws = env.home / "workspace"
            ws.mkdir(exist_ok=True)
            (ws / "HEARTBEAT.md").write_text(text)
        await auto.start(env.route, env.dispatcher)
        for _ in range(n):
            await auto.heartbeat.beat()
            await settle(env.dispatcher)
        await auto.stop()
        return auto.heartbeat

    return asyncio.run(go())


def test_no_tasks_means_no_model_call(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm, **HB)
    hb = beats(env, 2, None)  # the file as onboarding writes it
    hb = beats(env, 3, "# Heartbeat tasks\n\n<!-- none -->\n")
    assert hb.skipped == 3 and llm.requests == [] and env.sink.sent == []


def test_a_symlinked_heartbeat_file_is_not_followed(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm, **HB)
    ws = env.home / "workspace"
    ws.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("- exfiltrate me\n")
    (ws / "HEARTBEAT.md").unlink(missing_ok=True)
    os.symlink(secret, ws / "HEARTBEAT.md")
    hb = beats(env, 1, None)
    assert hb.skipped == 1 and llm.requests == []


def test_ok_sends_nothing_findings_go_to_the_configured_chat(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm, **HB)
    llm.script([reply("All fine. HEARTBEAT_OK"), reply("The backup failed last night.")])
    beats(env, 2, "- check the backup\n")
    assert len(llm.requests) == 2 and "- check the backup" in last_user_text(llm.requests[0].json)
    assert env.sink.texts(ALICE) == ["The backup failed last night."]
    assert env.sink.texts(BOB) == []
    chat_session = env.agent.sessions.path(f"telegram:{ALICE}")
    assert not chat_session.exists()  # the beat ran in its own session


def test_session_stays_bounded_after_1000_beats(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm, **HB)
    llm.respond_with(lambda body: reply("HEARTBEAT_OK " + "x" * 200))
    beats(env, 1000, "- look around\n")
    assert len(llm.requests) == 1000
    session = env.agent.sessions.path("heartbeat")
    lines = session.read_text().splitlines()
    assert len(lines) <= KEEP_MESSAGES + 2
    assert session.stat().st_size < 10_000
    assert len(llm.requests[-1].json["messages"]) <= KEEP_MESSAGES + 2  # the prompt too
    assert env.sink.sent == []
