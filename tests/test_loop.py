"""The agent turn against a scripted model server: streaming to a channel's progress, empty
answers, repeated calls, tool calls written as text, provider errors and cancellation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, context_exceeded, error, reply, tool_call
from nanobot import workers
from nanobot.agent.loop import (
    CANCELLED,
    EMPTY_NUDGE,
    EMPTY_REPLY,
    FAILURE_PREFIX,
    FINAL_NUDGE,
    STUCK_REPLY,
    turn_failed,
)
from nanobot.agent.progress import TurnProgress
from nanobot.config.loader import load_config
from nanobot.route.message import InboundMessage
from nanobot.runtime import build_agent
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import ToolContext

KEY = "sk-test-loop-0000000000000000"


class Recorder(TurnProgress):
    """A channel's view of the turn, as events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, object]] = []

    def text(self, delta):
        self.events.append(("text", delta))

    def discard(self):
        self.events.append(("discard", None))

    def step(self, hint):
        self.events.append(("step", hint))

    def usage(self, counts):
        self.events.append(("usage", counts))

    def shown(self) -> str:
        """The text a channel shows at the end (interim text dropped at each discard)."""
        out = ""
        for kind, value in self.events:
            out = "" if kind == "discard" else out + value if kind == "text" else out
        return out

    def all_text(self) -> str:
        return "".join(v for k, v in self.events if k == "text")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    with ScriptedLLMServer("openai") as llm:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        monkeypatch.setenv("NANOBOT_RETRY_BASE_DELAY", "0.01")
        (tmp_path / "config.json").write_text(json.dumps({"tools": {"exec": {"sandbox": "none"}}}))
        cfg, info = load_config()
        yield build_agent(cfg, info), llm, tmp_path
    workers.shutdown()
    REDACTOR.clear()


def turn(agent, text, progress=None, chat="7"):
    ctx = ToolContext("telegram", chat, "7", f"telegram:{chat}", progress=progress)
    return asyncio.run(agent.handle(InboundMessage("telegram", "7", chat, text), ctx))


def stored(agent, chat="7") -> list[dict]:
    path = agent.sessions.path(f"telegram:{chat}")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answer_streams_to_the_progress_and_is_stored(env):
    agent, llm, _ = env
    llm.script([reply("The answer is forty two, as always.")])
    rec = Recorder()
    assert turn(agent, "question", rec) == "The answer is forty two, as always."
    pieces = [v for k, v in rec.events if k == "text"]
    assert len(pieces) > 3 and rec.all_text() == "The answer is forty two, as always."
    assert any(k == "usage" and v.get("completion_tokens") for k, v in rec.events)
    assert [m["role"] for m in stored(agent)] == ["user", "assistant"]


def test_an_empty_answer_is_asked_again_then_reported_in_one_line(env):
    agent, llm, _ = env
    llm.script([reply(""), reply("here it is")])
    assert turn(agent, "first") == "here it is"
    assert llm.requests[1].json["messages"][-1]["content"] == EMPTY_NUDGE
    assert [m["content"] for m in stored(agent)] == ["first", "here it is"]  # no nudge stored

    llm.script([reply(""), reply("   ")])
    rec = Recorder()
    answer = turn(agent, "second", rec)
    assert answer == EMPTY_REPLY and "\n" not in answer and turn_failed(answer)
    assert len(llm.requests) == 4
    # Nothing of the failed turn is stored: no empty assistant turn, no unanswered message.
    assert [m["content"] for m in stored(agent)] == ["first", "here it is"]
    llm.script([reply("fine")])
    turn(agent, "third")
    sent = [m["content"] for m in llm.requests[4].json["messages"][1:]]
    assert sent == ["first", "here it is", "third"]


def test_the_third_identical_call_gets_the_earlier_result_and_a_note(env):
    agent, llm, home = env
    same = tool_call("exec", {"command": "echo run >> runs.txt; echo ran"})
    llm.script([same, same, same, reply("done")])
    rec = Recorder()
    assert turn(agent, "go", rec) == "done"
    runs = (home / "workspace" / "runs.txt").read_text().splitlines()
    assert runs == ["run", "run"]  # the third call did not run
    third = llm.requests[3].json["messages"][-1]
    assert third["role"] == "tool" and "ran" in third["content"]
    assert "Do not call it again" in third["content"]
    hints = [v for k, v in rec.events if k == "step"]
    assert hints == ["⚙ exec: echo run >> runs.txt; echo ran"] * 3


def test_a_model_that_persists_is_stopped_cleanly(env):
    agent, llm, home = env
    same = tool_call("exec", {"command": "echo run >> runs.txt"})
    llm.script([same] * 8)
    answer = turn(agent, "go")
    assert answer == STUCK_REPLY.format(name="exec")
    assert len(llm.requests) == 5  # 2 ran, 3rd noted, 4th noted + told to stop, 5th: stop
    assert llm.requests[4].json["messages"][-1]["content"] == FINAL_NUDGE
    assert len((home / "workspace" / "runs.txt").read_text().splitlines()) == 2
    assert stored(agent) == []


@pytest.mark.parametrize(
    "written",
    [
        '{"name": "write_file", "arguments": {"path": "a.txt", "content": "hi"}}',
        'I will save it.\n<tool_call>\n{"name": "write_file", "arguments": '
        '{"path": "a.txt", "content": "hi"}}\n</tool_call>',
        '```json\n{"name": "write_file", "arguments": "{\\"path\\": \\"a.txt\\", '
        '\\"content\\": \\"hi\\"}"}\n```',
        '<function=write_file>{"path": "a.txt", "content": "hi"}</function>',
    ],
)
def test_tool_calls_written_as_text_run_and_are_never_shown(env, written):
    agent, llm, home = env
    llm.script([reply(written), reply("Saved a.txt.")])
    rec = Recorder()
    assert turn(agent, "save hi to a.txt", rec) == "Saved a.txt."
    assert (home / "workspace" / "a.txt").read_text() == "hi"
    for needle in ('"name"', "tool_call", "function=", "```"):
        assert needle not in rec.all_text()
    assert rec.shown() == "Saved a.txt."
    second = llm.requests[1].json["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "write_file"
    assert second[-1]["role"] == "tool" and "a.txt" in second[-1]["content"]
    assert all('"arguments"' not in (m.get("content") or "") for m in stored(agent))


def test_a_text_call_of_an_unknown_tool_is_not_shown_and_the_model_is_told(env):
    agent, llm, _ = env
    llm.script([reply('{"name": "web_search", "arguments": {"q": "x"}}'), reply("I can't.")])
    rec = Recorder()
    assert turn(agent, "search", rec) == "I can't."
    nudge = llm.requests[1].json["messages"][-1]["content"]
    assert "web_search" in nudge and "write_file" in nudge
    assert "web_search" not in rec.all_text()


def test_context_overflow_trims_and_retries_once(env):
    agent, llm, _ = env
    llm.script([reply("a1"), context_exceeded("openai"), reply("short answer")])
    turn(agent, "earlier")
    assert turn(agent, "now") == "short answer"
    retry = [m["content"] for m in llm.requests[2].json["messages"][1:]]
    assert retry == ["now"]  # the earlier history was dropped for the retry


def test_context_overflow_twice_says_so_and_keeps_the_breaking_message_out(env):
    agent, llm, _ = env
    llm.script([reply("a1"), context_exceeded("llamacpp"), context_exceeded("llamacpp")])
    turn(agent, "earlier")
    answer = turn(agent, "x" * 5000)
    assert answer.startswith(FAILURE_PREFIX) and "too long" in answer and "/reset" in answer
    assert "could not reach" not in answer.lower()
    assert [m["content"] for m in stored(agent)] == ["earlier", "a1"]


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        (error(401), "refused the key"),
        (error(402, {"error": {"message": "insufficient_quota"}}), "credit"),
        (error(400, {"error": {"message": "bad field"}}), "HTTP 400"),
    ],
)
def test_provider_errors_are_named_honestly_and_not_stored(env, step, needle):
    agent, llm, _ = env
    llm.script([step])
    answer = turn(agent, "hello")
    assert answer.startswith(FAILURE_PREFIX) and needle in answer
    assert KEY not in answer and llm.url not in answer
    assert stored(agent) == []
    llm.script([reply("fine")])
    turn(agent, "again")
    assert [m["content"] for m in llm.requests[-1].json["messages"][1:]] == ["again"]


async def streaming_turn(agent, rec: Recorder) -> asyncio.Task:
    """A turn started in a task, returned once its answer has begun to stream."""
    ctx = ToolContext("telegram", "7", "7", "telegram:7", progress=rec)
    task = asyncio.ensure_future(agent.handle(InboundMessage("telegram", "7", "7", "q"), ctx))
    while not rec.events:
        await asyncio.sleep(0.01)
    return task


def test_cancel_ends_the_turn_at_once_and_stores_nothing(env):
    agent, llm, _ = env
    llm.script([reply("word " * 200, chunk_delay=0.05)])
    rec = Recorder()

    async def go():
        task = await streaming_turn(agent, rec)
        started = time.monotonic()
        rec.cancel.set()
        result = await task
        return result, time.monotonic() - started

    answer, took = asyncio.run(go())
    assert answer == CANCELLED and took < 1.0
    assert stored(agent) == []


def test_cancelling_the_turns_task_is_not_a_cancelled_turn(env):
    """A gateway stopping cancels the turn's task: that propagates as CancelledError (the
    dispatcher's drain sees it), it is not swallowed as the user's cancel."""
    agent, llm, _ = env
    llm.script([reply("word " * 200, chunk_delay=0.05)])
    rec = Recorder()

    async def go():
        task = await streaming_turn(agent, rec)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return rec.cancel._callbacks

    assert asyncio.run(go()) == []  # the call's callback was forgotten with it
    assert stored(agent) == []


def test_the_cancel_flag_runs_its_callbacks_once_and_forgets_on_request():
    from nanobot.agent.progress import Cancel

    async def go():
        flag, seen = Cancel(), []
        forget = flag.on_set(lambda: seen.append("a"))
        flag.on_set(lambda: seen.append("b"))
        forget()
        flag.set()
        flag.set()
        await flag.wait()
        return seen

    assert asyncio.run(go()) == ["b"]


def test_reset_and_help_are_answered_without_the_model(env):
    agent, llm, _ = env
    assert "/reset" in turn(agent, "/help")
    assert turn(agent, "/reset").startswith("Done")
    assert llm.requests == []
