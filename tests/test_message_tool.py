"""The message tool: the current chat by default, other chats only when allowed twice
(allowedTargets and allowFrom), caps per turn and per hour, and no second copy of the answer."""

from __future__ import annotations

import asyncio

import pytest
from autoenv import ALICE, BOB, make_env, settle

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot import workers
from nanobot.route.message import InboundMessage
from nanobot.security.redact import REDACTOR


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        yield server
    workers.shutdown()
    REDACTOR.clear()


def call(env, text: str, chat: str = ALICE, sender: str | None = None, **kw):
    """Run the message tool once in a turn of `chat`; returns the tool's result text."""

    async def go():
        env.wire()
        msg = InboundMessage("telegram", sender or chat, chat, "hi")
        ctx = env.dispatcher.context_for(msg)
        result = await env.agent.tools.call("message", {"content": text, **kw}, ctx)
        return result.text

    return asyncio.run(go())


def test_sends_to_the_current_chat_now(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    assert call(env, "halfway there").startswith("Sent to telegram:111")
    assert env.sink.texts(ALICE) == ["halfway there"]


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        ([], "not in tools.message.allowedTargets"),
        (["telegram:999"], "not in channels.telegram.allowFrom"),
        (["whatsapp:222"], "not an enabled chat channel"),
    ],
)
def test_other_chats_need_allowed_targets_and_allow_from(
    tmp_path, monkeypatch, llm, targets, words
):
    env = make_env(tmp_path, monkeypatch, llm, tools={"message": {"allowedTargets": targets}})
    chat_id = targets[0].split(":")[1] if targets else BOB
    channel = targets[0].split(":")[0] if targets else "telegram"
    out = call(env, "psst", channel=channel, chat_id=chat_id)
    assert out.startswith("Error:") and words in out
    assert env.sink.sent == []


def test_a_listed_and_allowed_target_gets_it(tmp_path, monkeypatch, llm):
    env = make_env(
        tmp_path, monkeypatch, llm, tools={"message": {"allowedTargets": ["telegram:222"]}}
    )
    assert call(env, "for bob", chat_id=BOB).startswith("Sent")
    assert env.sink.texts(BOB) == ["for bob"] and env.sink.texts(ALICE) == []


def test_background_runs_reach_only_their_own_chat(tmp_path, monkeypatch, llm):
    env = make_env(
        tmp_path, monkeypatch, llm, tools={"message": {"allowedTargets": ["telegram:222"]}}
    )
    out = call(env, "x", sender="cron:abc", chat_id=BOB)
    assert "only its own chat" in out and env.sink.sent == []


def test_caps_per_turn_and_per_hour(tmp_path, monkeypatch, llm):
    env = make_env(
        tmp_path, monkeypatch, llm, tools={"message": {"maxPerTurn": 2, "maxPerHour": 3}}
    )

    async def go():
        env.wire()
        results = []
        for turn in range(2):
            ctx = env.dispatcher.context_for(InboundMessage("telegram", ALICE, ALICE, "hi"))
            for i in range(3):
                r = await env.agent.tools.call("message", {"content": f"t{turn} m{i}"}, ctx)
                results.append(r)
        return results

    results = asyncio.run(go())
    assert [r.text.startswith("Sent") for r in results] == [True, True, False, True, False, False]
    assert "maxPerTurn" in results[2].text and "maxPerHour" in results[4].text
    assert len(env.sink.texts(ALICE)) == 3


def test_final_answer_is_not_sent_twice(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    llm.script(
        [
            tool_call("message", {"content": "Here is the full answer."}),
            reply("Here is the full answer."),
            tool_call("message", {"content": "Part one."}),
            reply("Part two."),
        ]
    )

    async def go():
        env.wire()
        await env.user(ALICE, "question")
        await env.user(ALICE, "another")
        await settle(env.dispatcher)

    asyncio.run(go())
    assert env.sink.texts(ALICE) == ["Here is the full answer.", "Part one.", "Part two."]


def test_a_workspace_file_goes_to_the_current_chat_and_nothing_outside_is_sent(
    tmp_path, monkeypatch, llm
):
    env = make_env(tmp_path, monkeypatch, llm)
    ws = env.agent.tools.get("message").policy.workspace
    (ws / "report.txt").write_text("figures")
    assert call(env, "here it is", file="report.txt").startswith("Sent to telegram:111")
    [out] = env.sink.sent
    assert out.content == "here it is" and out.media == [str((ws / "report.txt").resolve())]
    for bad, words in (
        ("../config.json", "Error:"),
        ("missing.txt", "no file"),
        ("memory", "not a regular file"),
    ):
        assert words in call(env, "x", file=bad)
    assert "current chat" in call(env, "x", file="report.txt", channel="telegram", chat_id=BOB)
    assert len(env.sink.sent) == 1


def test_a_channel_that_cannot_carry_files_is_told_to_the_model(tmp_path, monkeypatch, llm):
    env = make_env(tmp_path, monkeypatch, llm)
    env.sink.sends_files = False
    ws = env.agent.tools.get("message").policy.workspace
    (ws / "a.txt").write_text("x")
    out = call(env, "file", file="a.txt")
    assert out.startswith("Error:") and "cannot send files" in out
    assert env.sink.sent == []
