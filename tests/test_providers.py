"""Providers end-to-end against scripted OpenAI / Anthropic servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from nanobot.errors import ProviderError
from nanobot.providers import http
from nanobot.providers.anthropic import AnthropicProvider, convert_messages
from nanobot.providers.base import LLMResponse, ToolCall, parse_arguments
from nanobot.providers.openai import OpenAIProvider
from tests.fakes.llm_server import (
    ScriptedLLMServer,
    drop,
    error,
    last_user_text,
    reply,
    tool_call,
    tool_calls,
)

KEY = "test-key-4f1c9a7e2b"  # not token-shaped: only the header masking can hide it
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def oai():
    with ScriptedLLMServer("openai") as server:
        yield server


@pytest.fixture
def ant():
    with ScriptedLLMServer("anthropic") as server:
        yield server


class Sleeps(list):
    """Backoff waits recorded instead of slept: asserts on the retry policy, not on clocks."""

    async def record(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def openai_provider(server, sleeps, key=KEY, headers=None, **kw) -> OpenAIProvider:
    kw.setdefault("strip_prefix", True)
    return OpenAIProvider("openai", server.url, key, headers, sleep=sleeps.record, **kw)


def anthropic_provider(server, sleeps, key=KEY, headers=None, **kw) -> AnthropicProvider:
    return AnthropicProvider("anthropic", server.url, key, headers, sleep=sleeps.record, **kw)


def txt(text: str) -> dict:
    return {"type": "text", "text": text}


def oa_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def ask(provider, text="hi", tools=None, model="openai/gpt-4o") -> LLMResponse:
    return asyncio.run(provider.chat([{"role": "user", "content": text}], tools, model, 256, 0.2))


# --- OpenAI-compatible ------------------------------------------------------------------------


def test_openai_text_reply_and_request_shape(oai, sleeps):
    oai.script([reply("hello there")])
    resp = ask(openai_provider(oai, sleeps), tools=[])
    assert resp.content == "hello there"
    assert resp.tool_calls == []
    assert resp.finish_reason == "stop"
    assert (
        resp.usage["total_tokens"] == resp.usage["prompt_tokens"] + resp.usage["completion_tokens"]
    )
    (req,) = oai.requests
    assert req.path == "/v1/chat/completions"
    assert req.header("Authorization") == f"Bearer {KEY}"
    assert req.json["model"] == "gpt-4o"  # routing prefix stripped for the native API
    assert req.json["max_tokens"] == 256 and req.json["temperature"] == 0.2
    assert req.json["messages"] == [{"role": "user", "content": "hi"}]
    assert "tools" not in req.json


def test_openai_tool_calls_parsed(oai, sleeps):
    oai.script(
        [
            tool_calls(
                tool_call("read_file", {"path": "a.txt"}, id="call_A"),
                tool_call("exec", '{"command": "ls", "timeout": 5}'),
                tool_call("broken", "{not json"),
            )
        ]
    )
    resp = ask(openai_provider(oai, sleeps), tools=TOOLS)
    assert resp.finish_reason == "tool_calls"
    assert resp.content is None
    assert [(c.name, c.arguments) for c in resp.tool_calls] == [
        ("read_file", {"path": "a.txt"}),
        ("exec", {"command": "ls", "timeout": 5}),
        ("broken", {"_raw": "{not json"}),
    ]
    assert resp.tool_calls[0].id == "call_A"
    assert len({c.id for c in resp.tool_calls}) == 3
    assert oai.requests[0].json["tools"] == TOOLS


def test_openai_history_with_tool_messages_is_sent_as_given(oai, sleeps):
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "list", "timestamp": "2024-01-01T00:00:00"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "exec", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "exec", "content": "a b"},
    ]
    oai.script([reply("done")])
    asyncio.run(openai_provider(oai, sleeps).chat(history, TOOLS, "gpt-4o", 100, 0.0))
    sent = oai.requests[0].json["messages"]
    assert sent[1] == {"role": "user", "content": "list"}  # session metadata stays local
    assert sent[2]["tool_calls"][0]["id"] == "c1"
    assert sent[3] == {"role": "tool", "tool_call_id": "c1", "name": "exec", "content": "a b"}


def test_openai_reasoning_model_uses_max_completion_tokens(oai, sleeps):
    ask(openai_provider(oai, sleeps), model="o3-mini")
    body = oai.requests[0].json
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body and "temperature" not in body


def test_extra_headers_keep_their_case_and_no_key_means_no_authorization(oai, sleeps):
    headers = {"X-Custom-Thing": "v1", "HTTP-Referer": "https://example.org"}
    ask(openai_provider(oai, sleeps, key="", headers=headers))
    sent = oai.requests[0].headers
    assert sent["X-Custom-Thing"] == "v1"
    assert sent["HTTP-Referer"] == "https://example.org"
    assert oai.requests[0].header("Authorization") is None


# --- Anthropic ----------------------------------------------------------------------------------


def test_anthropic_text_reply_and_headers(ant, sleeps):
    ant.script([reply("bonjour")])
    resp = ask(anthropic_provider(ant, sleeps), model="anthropic/claude-sonnet-4-5")
    assert (resp.content, resp.finish_reason, resp.tool_calls) == ("bonjour", "stop", [])
    assert resp.usage["total_tokens"] >= 0
    (req,) = ant.requests
    assert req.path == "/v1/messages"
    assert req.header("x-api-key") == KEY
    assert req.header("anthropic-version") == "2023-06-01"
    assert req.header("Authorization") is None
    assert req.json["model"] == "claude-sonnet-4-5"
    assert req.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert "system" not in req.json and "tools" not in req.json


def test_anthropic_tool_use_becomes_tool_calls(ant, sleeps):
    ant.script([tool_call("read_file", {"path": "x"}, id="toolu_1", text="Let me look.")])
    resp = ask(anthropic_provider(ant, sleeps), tools=TOOLS, model="claude-x")
    assert resp.finish_reason == "tool_calls"
    assert resp.content == "Let me look."
    assert resp.tool_calls == [ToolCall("toolu_1", "read_file", {"path": "x"})]
    assert ant.requests[0].json["tools"] == [
        {
            "name": "read_file",
            "description": "Read a file",
            "input_schema": TOOLS[0]["function"]["parameters"],
        }
    ]


def test_anthropic_receives_converted_conversation(ant, sleeps):
    history = [
        {"role": "system", "content": "You are nanobot."},
        {"role": "system", "content": "Memory: likes tea."},
        {"role": "user", "content": "read a and b"},
        {
            "role": "assistant",
            "content": "Reading.",
            "tool_calls": [
                oa_call("t1", "read_file", '{"path": "a"}'),
                oa_call("t2", "read_file", '{"path": "b"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "A-text"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: no such file b"},
        {"role": "user", "content": "and?"},
    ]
    ant.script([reply("A says A-text")])
    asyncio.run(anthropic_provider(ant, sleeps).chat(history, TOOLS, "claude-x", 512, 1.5))
    body = ant.requests[0].json
    assert body["system"] == "You are nanobot.\n\nMemory: likes tea."
    assert body["temperature"] == 1.0  # Anthropic's maximum
    assert body["messages"] == [
        {"role": "user", "content": [txt("read a and b")]},
        {
            "role": "assistant",
            "content": [
                txt("Reading."),
                {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a"}},
                {"type": "tool_use", "id": "t2", "name": "read_file", "input": {"path": "b"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "A-text"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": "Error: no such file b",
                    "is_error": True,
                },
                txt("and?"),
            ],
        },
    ]


def test_anthropic_conversion_merges_roles_and_starts_with_user():
    system, messages = convert_messages(
        [
            {"role": "assistant", "content": "left over from a cut history"},
            {"role": "tool", "tool_call_id": "gone", "content": "orphan"},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": "four"},
        ]
    )
    assert system == ""
    assert messages == [
        {"role": "user", "content": [txt("one"), txt("two")]},
        {"role": "assistant", "content": [txt("three"), txt("four")]},
    ]


def test_anthropic_api_base_with_v1_suffix_is_not_doubled(ant, sleeps):
    provider = AnthropicProvider("anthropic", ant.url + "/v1/", KEY, sleep=sleeps.record)
    assert ask(provider, model="claude-x").content == "ok"
    assert ant.requests[0].path == "/v1/messages"


# --- retries and failures (both kinds) ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_429_with_retry_after_then_success(kind, sleeps, caplog):
    with ScriptedLLMServer(kind) as server:
        server.script(
            [
                error(429, headers={"Retry-After": "0"}),
                error(503, headers={"Retry-After": "7"}),
                reply("made it"),
            ]
        )
        make = openai_provider if kind == "openai" else anthropic_provider
        with caplog.at_level(logging.WARNING, logger="nanobot.providers"):
            resp = ask(make(server, sleeps, base_delay=30.0), model="claude-x")
        assert resp.content == "made it"
        assert len(server.requests) == 3
    assert sleeps == [0.0, 7.0]  # Retry-After wins over the 30 s base backoff
    warnings = [r.getMessage() for r in caplog.records if r.name == "nanobot.providers"]
    assert len(warnings) == 2
    assert "HTTP 429" in warnings[0] and "attempt 1/5" in warnings[0]
    assert "HTTP 503" in warnings[1] and "7.00 s" in warnings[1]
    assert not any(KEY in w for w in warnings)


def test_retry_after_is_capped_at_max_delay(oai, sleeps):
    oai.script([error(429, headers={"Retry-After": "3600"}), reply("ok")])
    ask(openai_provider(oai, sleeps, max_delay=2.5))
    assert sleeps == [2.5]


def test_five_500s_raise_provider_error_without_secrets(oai, sleeps, caplog):
    body = {"error": {"message": f"upstream broke while using key {KEY}"}}
    oai.script([error(500, body=body)] * 5 + [reply("too late")])
    with (
        caplog.at_level(logging.WARNING, logger="nanobot.providers"),
        pytest.raises(ProviderError) as exc,
    ):
        ask(openai_provider(oai, sleeps, base_delay=0.5))
    message = str(exc.value)
    assert len(oai.requests) == 5 and oai.pending == 1
    assert "HTTP 500" in message and "after 5 attempts" in message
    assert "upstream broke" in message and "[REDACTED]" in message
    assert KEY not in message and "Bearer" not in message
    assert KEY not in caplog.text
    assert len(sleeps) == 4  # no wait after the last attempt
    assert all(0 <= s <= 0.5 * 2**i for i, s in enumerate(sleeps))  # full jitter, doubling cap


def test_query_string_never_appears_in_errors_or_logs(oai, sleeps, caplog):
    url = oai.url + "/chat/completions?key=QUERYSECRET123"
    oai.script([error(502), error(502)])
    with (
        caplog.at_level(logging.WARNING, logger="nanobot.providers"),
        pytest.raises(ProviderError) as exc,
    ):
        asyncio.run(http.post_json(url, {}, {"model": "m"}, max_attempts=2, sleep=sleeps.record))
    assert "QUERYSECRET123" not in str(exc.value) and "QUERYSECRET123" not in caplog.text
    assert "127.0.0.1" in str(exc.value)  # the host is there to point at the culprit


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_fail_at_once(oai, sleeps, status):
    oai.script([error(status), reply("unused")])
    with pytest.raises(ProviderError) as exc:
        ask(openai_provider(oai, sleeps))
    assert len(oai.requests) == 1 and sleeps == []
    assert f"HTTP {status}" in str(exc.value)
    if status == 401:
        assert "providers.openai.apiKey" in str(exc.value)


def test_dropped_connection_is_retried(ant, sleeps):
    ant.script([drop(), reply("second time lucky")])
    resp = ask(anthropic_provider(ant, sleeps), model="claude-x")
    assert resp.content == "second time lucky"
    assert len(ant.requests) == 2 and len(sleeps) == 1


def test_read_timeout_is_not_retried(oai, sleeps):
    """The server may still be generating; asking again would only queue behind it."""
    oai.script([reply("slow", delay=1.0), reply("fast")])
    with pytest.raises(ProviderError) as exc:
        ask(openai_provider(oai, sleeps, timeout=(2.0, 0.2)))
    assert exc.value.kind == "timeout" and sleeps == []
    assert len(oai.requests) == 1 and oai.pending == 1


def test_connection_refused_exhausts_attempts(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = OpenAIProvider(
        "vllm", f"http://127.0.0.1:{port}/v1", sleep=sleeps.record, max_attempts=3
    )
    with pytest.raises(ProviderError) as exc:
        ask(provider)
    assert "after 3 attempts" in str(exc.value) and "providers.vllm.apiBase" in str(exc.value)
    assert len(sleeps) == 2


@pytest.mark.parametrize("base", ["localhost:8000/v1", "ftp://127.0.0.1/v1"])
def test_unusable_api_base_fails_at_once_naming_the_key(sleeps, base):
    provider = OpenAIProvider("ollama", base, sleep=sleeps.record)
    with pytest.raises(ProviderError, match=r"providers\.ollama\.apiBase") as exc:
        ask(provider)
    assert "after" not in str(exc.value) and sleeps == []


def test_non_json_success_is_an_error_not_a_retry(oai, sleeps):
    oai.script([error(200, body="<html>captive portal</html>")])
    with pytest.raises(ProviderError, match="without a JSON object"):
        ask(openai_provider(oai, sleeps))
    assert len(oai.requests) == 1


def test_answer_without_choices_is_a_provider_error(oai, sleeps):
    oai.script([error(200, body={"error": {"message": "model overloaded"}})])
    with pytest.raises(ProviderError, match="without choices: model overloaded"):
        ask(openai_provider(oai, sleeps))


def test_env_base_delay_drives_backoff(oai, sleeps, monkeypatch):
    monkeypatch.setenv(http.BASE_DELAY_ENV, "0")
    oai.script([error(500), error(500), reply("ok")])
    ask(openai_provider(oai, sleeps))
    assert sleeps == [0.0, 0.0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.05", 0.05), ("", 1.0), ("fast", 1.0), ("-1", 1.0), ("nan", 1.0), ("2", 2.0)],
)
def test_env_base_delay_parsing(monkeypatch, raw, expected):
    monkeypatch.setenv(http.BASE_DELAY_ENV, raw)
    assert http.env_base_delay() == expected


def test_parse_retry_after_forms():
    assert http.parse_retry_after("12") == 12.0
    assert http.parse_retry_after("0") == 0.0
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("soon") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 80 <= http.parse_retry_after(future) <= 90
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=90), usegmt=True)
    assert http.parse_retry_after(past) == 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('{"a": 1}', {"a": 1}), ("", {}), (None, {}), ({"b": 2}, {"b": 2}), ("[1]", {"_raw": "[1]"}), ("{x", {"_raw": "{x"})],
)  # fmt: skip
def test_parse_arguments(raw, expected):
    assert parse_arguments(raw) == expected


# --- the fake itself: what other tests rely on ------------------------------------------------


def test_concurrent_calls_are_counted_and_echo_responder(oai, sleeps):
    barrier = threading.Barrier(4, timeout=10)

    def echo(body):
        barrier.wait()  # all four requests are inside the server at once
        return reply(f"echo: {last_user_text(body)}")

    oai.respond_with(echo)
    provider = openai_provider(oai, sleeps)
    results: dict[int, str] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, ask(provider, f"m{i}").content))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert results == {i: f"echo: m{i}" for i in range(4)}
    assert oai.max_concurrent == 4 and oai.in_flight == 0
    assert oai.wait_for_requests(4, timeout=1)[0].json["model"] == "gpt-4o"


def test_wrong_path_is_answered_with_a_hint(oai, sleeps):
    provider = OpenAIProvider("custom", oai.url.removesuffix("/v1"), sleep=sleeps.record)
    with pytest.raises(ProviderError) as exc:
        ask(provider)
    assert "HTTP 404" in str(exc.value) and "apiBase" in str(exc.value)


def test_wire_format_matches_the_apis(oai, ant, sleeps):
    import requests

    oai.script([tool_call("exec", {"command": "ls"})])
    data = requests.post(
        oai.url + "/chat/completions", json={"model": "m", "messages": []}, timeout=5
    ).json()
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "command": "ls"
    }
    ant.script([tool_call("exec", {"command": "ls"})])
    data = requests.post(
        ant.url + "/v1/messages", json={"model": "m", "messages": []}, timeout=5
    ).json()
    assert (data["type"], data["stop_reason"]) == ("message", "tool_use")
    assert data["content"][0] == {
        "type": "tool_use",
        "id": data["content"][0]["id"],
        "name": "exec",
        "input": {"command": "ls"},
    }


def test_encoded_body_is_the_body_with_the_tool_list_encoded_once():
    body = {"model": "m", "messages": [{"role": "user", "content": 'é "q"'}], "tools": TOOLS}
    assert json.loads(http.encode_body(body)) == body
    again = {**body, "messages": [{"role": "user", "content": "next"}]}
    assert json.loads(http.encode_body(again)) == again  # the cached tools, new messages
    assert json.loads(http.encode_body({"model": "m"})) == {"model": "m"}
    with pytest.raises(ValueError):
        http.encode_body({"model": "m", "temperature": float("nan"), "tools": TOOLS})


def test_registry_definitions_are_one_list_until_a_tool_is_registered():
    from nanobot.tools.registry import ToolRegistry

    class Echo:
        name, description, parameters = "echo", "Echo", {"type": "object"}

        async def execute(self, args, ctx):
            raise AssertionError("not called")

    reg = ToolRegistry()
    first = reg.definitions()
    assert reg.definitions() is first and first == []
    reg.register(Echo())
    assert reg.definitions() is not first and reg.definitions()[0]["function"]["name"] == "echo"
