"""Streaming, liveness, fallbacks and context budgeting against scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from nanobot.errors import ProviderError
from nanobot.providers.anthropic import AnthropicProvider, AnthropicStream
from nanobot.providers.budget import MIN_ANSWER_TOKENS
from nanobot.providers.openai import OpenAIProvider
from tests.fakes.llm_server import ScriptedLLMServer, reply, tool_call, tool_calls

KEY = "stream-key-8d2e1f0a"
TOOLS = [{"type": "function", "function": {"name": "exec", "parameters": {"type": "object"}}}]
LONG = "one two three four five six seven eight nine ten"


async def no_sleep(seconds: float) -> None:
    pass


def make(server, **kw):
    kw.setdefault("sleep", no_sleep)
    if server.kind == "anthropic":
        return AnthropicProvider("anthropic", server.url, KEY, **kw)
    return OpenAIProvider("openai", server.url, KEY, **kw)


def ask(provider, deltas=None, model="m", max_tokens=256, text="hi"):
    on_delta = deltas.append if deltas is not None else None
    messages = [{"role": "user", "content": text}]
    return asyncio.run(provider.chat(messages, TOOLS, model, max_tokens, 0.2, on_delta=on_delta))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_text_streams_word_by_word_and_returns_the_whole_answer(kind):
    with ScriptedLLMServer(kind) as llm:
        llm.script([reply(LONG)])
        deltas: list[str] = []
        resp = ask(make(llm), deltas)
        body = llm.requests[0].json
    assert len(deltas) == len(LONG.split()) and "".join(deltas) == LONG
    assert (resp.content, resp.finish_reason, resp.tool_calls) == (LONG, "stop", [])
    assert resp.usage["prompt_tokens"] > 0 and resp.usage["completion_tokens"] > 0
    assert body["stream"] is True
    if kind == "openai":
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_parallel_tool_calls_stream_in_fragments(kind):
    with ScriptedLLMServer(kind) as llm:
        llm.script(
            [
                tool_calls(
                    tool_call("exec", {"command": "uname -a"}, id="c1"),
                    tool_call("write_file", {"path": "notes.txt", "content": "x" * 40}, id="c2"),
                    text="Let me check.",
                )
            ]
        )
        deltas: list[str] = []
        resp = ask(make(llm), deltas)
    assert "".join(deltas) == "Let me check."  # arguments never reach on_delta
    assert resp.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        ("c1", "exec", {"command": "uname -a"}),
        ("c2", "write_file", {"path": "notes.txt", "content": "x" * 40}),
    ]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_length_finish_is_normalised(kind):
    with ScriptedLLMServer(kind) as llm:
        llm.script([reply("cut sho", finish_reason="length"), reply("cut", finish_reason="length")])
        assert ask(make(llm), []).finish_reason == "length"
        assert ask(make(llm)).finish_reason == "length"


def test_no_on_delta_means_a_plain_request():
    with ScriptedLLMServer("openai") as llm:
        assert ask(make(llm)).content == "ok"
        assert "stream" not in llm.requests[0].json


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_server_that_ignores_stream_gets_the_whole_text_at_once(kind):
    with ScriptedLLMServer(kind, streaming=False) as llm:
        llm.script([reply(LONG)])
        deltas: list[str] = []
        resp = ask(make(llm), deltas)
    assert deltas == [LONG] and resp.content == LONG


def test_server_that_refuses_stream_is_asked_plainly_from_then_on():
    with ScriptedLLMServer("openai", refuse_stream=True) as llm:
        provider = make(llm)
        deltas: list[str] = []
        assert ask(provider, deltas).content == "ok" and deltas == ["ok"]
        assert [bool(r.json.get("stream")) for r in llm.requests] == [True, False]
        ask(provider, deltas)
        assert len(llm.requests) == 3 and "stream" not in llm.requests[2].json


def test_stream_config_false_never_streams():
    with ScriptedLLMServer("openai") as llm:
        deltas: list[str] = []
        ask(make(llm, stream=False), deltas)
        assert deltas == ["ok"] and "stream" not in llm.requests[0].json


def test_liveness_is_the_gap_between_chunks_not_the_whole_answer():
    with ScriptedLLMServer("openai") as llm:
        llm.script([reply(LONG, chunk_delay=0.12)])  # ~1.4 s in all, 0.12 s gaps
        started = time.monotonic()
        resp = ask(make(llm, timeout=(2.0, 0.6)), [])
        assert time.monotonic() - started > 0.6  # longer than the read timeout overall
        assert resp.content == LONG and len(llm.requests) == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stalled_stream_times_out_and_is_not_retried(kind):
    with ScriptedLLMServer(kind) as llm:
        llm.script([reply(LONG, chunk_delay=1.5), reply("a retry would get this")])
        deltas: list[str] = []
        with pytest.raises(ProviderError) as exc:
            ask(make(llm, timeout=(2.0, 0.4)), deltas)
        assert len(llm.requests) == 1 and llm.pending == 1
    assert exc.value.kind == "timeout"
    assert "0.4 s" in exc.value.user_message and f"providers.{kind}.timeout" in (
        exc.value.user_message
    )


def test_read_timeout_against_a_single_slot_server_is_not_retried():
    """llama.cpp with one slot: a retry would queue behind the generation still running."""
    with ScriptedLLMServer("openai", slots=1) as llm:
        llm.script([reply("slow answer", delay=1.0), reply("second")])
        started = time.monotonic()
        with pytest.raises(ProviderError) as exc:
            ask(make(llm, timeout=(2.0, 0.3)))
        assert time.monotonic() - started < 0.9
        time.sleep(0.9)  # let the slow generation finish
        assert len(llm.requests) == 1
    assert exc.value.kind == "timeout" and "providers.openai.timeout" in exc.value.user_message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_cut_mid_answer_is_unreachable_not_retried(kind):
    with ScriptedLLMServer(kind) as llm:
        llm.script([reply(LONG, cut_after=4), reply("unused")])
        deltas: list[str] = []
        with pytest.raises(ProviderError) as exc:
            ask(make(llm), deltas)
        assert len(llm.requests) == 1
    assert exc.value.kind == "unreachable" and deltas  # part of the answer had arrived


def test_an_exception_in_on_delta_cancels_and_propagates():
    class Cancelled(Exception):
        pass

    def on_delta(text: str) -> None:
        raise Cancelled(text)

    with ScriptedLLMServer("openai") as llm:
        llm.script([reply(LONG, chunk_delay=0.05), reply("next")])
        provider = make(llm)
        with pytest.raises(Cancelled):
            asyncio.run(
                provider.chat([{"role": "user", "content": "x"}], None, "m", 64, 0.0, on_delta)
            )
        assert ask(provider, []).content == "next"  # the provider is still usable


def test_anthropic_error_event_mid_stream_is_classified():
    stream = AnthropicStream(lambda text: None)
    stream.feed("message_start", json.dumps({"type": "message_start", "message": {"usage": {}}}))
    event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(ProviderError) as exc:
        stream.feed("error", json.dumps(event))
    assert exc.value.kind == "overloaded"


# --- max_tokens sized from the context window ---------------------------------------------


def test_llama_cpp_props_n_ctx_caps_max_tokens():
    with ScriptedLLMServer("openai", n_ctx=4096) as llm:
        provider = make(llm, probe_context=True)
        ask(provider, max_tokens=8192, text="hello " * 300)
        sent = llm.requests[0].json["max_tokens"]
        assert MIN_ANSWER_TOKENS <= sent < 4096 - 300
        assert provider.context_window == 4096
        ask(provider, max_tokens=100)
        assert llm.requests[1].json["max_tokens"] == 100  # a smaller setting is kept


def test_vllm_max_model_len_caps_max_tokens():
    with ScriptedLLMServer("openai", model_info={"max_model_len": 2048}) as llm:
        ask(make(llm, probe_context=True), max_tokens=8192, model="scripted")
        assert MIN_ANSWER_TOKENS <= llm.requests[0].json["max_tokens"] < 2048


def test_unknown_context_keeps_max_tokens_and_configured_window_wins():
    with ScriptedLLMServer("openai", n_ctx=4096) as llm:
        ask(make(llm), max_tokens=8192)  # hosted providers are not probed
        assert llm.requests[0].json["max_tokens"] == 8192
        ask(make(llm, probe_context=True, context_window=1000), max_tokens=8192)
        assert 800 < llm.requests[1].json["max_tokens"] < 1000  # the window, less the prompt
    with ScriptedLLMServer("openai") as llm:  # neither /props nor a context in /v1/models
        ask(make(llm, probe_context=True), max_tokens=8192)
        assert llm.requests[0].json["max_tokens"] == 8192
