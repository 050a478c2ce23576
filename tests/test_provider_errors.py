"""Provider failures classified by kind, with a user message that names the fix and no secret."""

from __future__ import annotations

import asyncio
import socket

import pytest

from nanobot.errors import PROVIDER_ERROR_KINDS, ProviderError
from nanobot.providers.anthropic import AnthropicProvider
from nanobot.providers.openai import OpenAIProvider
from tests.fakes.llm_server import ScriptedLLMServer, context_exceeded, error, reply

KEY = "sk-err-test-5b7c9d1e3f"


async def no_sleep(seconds: float) -> None:
    pass


def make(server, name=None, **kw):
    kw.setdefault("sleep", no_sleep)
    if server.kind == "anthropic":
        return AnthropicProvider(name or "anthropic", server.url, KEY, **kw)
    return OpenAIProvider(name or "openai", server.url, KEY, **kw)


def fail(server, steps, name=None, stream=False, **kw) -> ProviderError:
    server.script(steps)
    provider = make(server, name, **kw)
    with pytest.raises(ProviderError) as exc:
        asyncio.run(
            provider.chat(
                [{"role": "user", "content": "hi"}],
                None,
                "m",
                64,
                0.0,
                on_delta=(lambda t: None) if stream else None,
            )
        )
    err = exc.value
    assert err.kind in PROVIDER_ERROR_KINDS
    assert KEY not in err.user_message and KEY not in str(err)
    assert "\n" not in err.user_message and len(err.user_message) < 300
    return err


@pytest.mark.parametrize("style", ["openai", "llamacpp", "vllm"])
@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_context_length_not_unreachable(style, stream):
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [context_exceeded(style), reply("unused")], stream=stream)
        assert len(llm.requests) == 1  # a 400 is not retried
    assert err.kind == "context_length"
    assert "conversation is too long for this model" in err.user_message


def test_anthropic_prompt_too_long_is_context_length():
    with ScriptedLLMServer("anthropic") as llm:
        err = fail(llm, [context_exceeded("anthropic")], stream=True)
    assert err.kind == "context_length"


@pytest.mark.parametrize(
    ("kind", "env"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_refused_key_is_auth_naming_the_key_and_env_var(kind, env):
    with ScriptedLLMServer(kind) as llm:
        body = {"error": {"message": f"Incorrect API key provided: {KEY}"}}
        err = fail(llm, [error(401, body)])
    assert err.kind == "auth"
    assert f"providers.{kind}.apiKey" in err.user_message and env in err.user_message


def test_custom_provider_auth_message_has_no_env_var():
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(403)], name="custom")
    assert err.kind == "auth" and "providers.custom.apiKey" in err.user_message
    assert "_API_KEY" not in err.user_message


def test_exhausted_quota_is_not_retried():
    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(429, body, headers={"Retry-After": "0"}), reply("no")])
        assert len(llm.requests) == 1
    assert err.kind == "quota"


def test_payment_required_is_quota():
    with ScriptedLLMServer("openai") as llm:
        assert fail(llm, [error(402)]).kind == "quota"


@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_busy_server_after_retries_is_overloaded(status):
    with ScriptedLLMServer("anthropic") as llm:
        err = fail(llm, [error(status, headers={"Retry-After": "0"})] * 3, max_attempts=3)
        assert len(llm.requests) == 3
    assert err.kind == "overloaded" and "try again" in err.user_message


def test_other_400_is_bad_request_with_a_short_redacted_excerpt():
    body = {"error": {"message": f"unknown field 'foo' (key {KEY}) " + "x" * 500}}
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(400, body)])
    assert err.kind == "bad_request"
    assert "unknown field 'foo'" in err.user_message and "agents.defaults.model" in err.user_message


def test_too_large_max_tokens_names_max_tokens():
    body = {"error": {"message": "max_tokens is too large: 8192. This model supports at most 4096"}}
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(400, body)])
    assert err.kind == "bad_request" and "agents.defaults.maxTokens" in err.user_message


def test_unknown_model_404_is_bad_request():
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(404)], name="custom")
    assert err.kind == "bad_request" and "providers.custom.apiBase" in err.user_message


def test_nothing_listening_is_unreachable_naming_host_and_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = OpenAIProvider("vllm", f"http://127.0.0.1:{port}/v1", sleep=no_sleep, max_attempts=2)
    with pytest.raises(ProviderError) as exc:
        asyncio.run(provider.chat([{"role": "user", "content": "hi"}], None, "m", 64, 0.0))
    assert exc.value.kind == "unreachable"
    assert f"127.0.0.1:{port}" in exc.value.user_message
    assert "providers.vllm.apiBase" in exc.value.user_message


def test_unreadable_answer_is_bad_request():
    with ScriptedLLMServer("openai") as llm:
        err = fail(llm, [error(200, body="<html>captive portal</html>")])
    assert err.kind == "bad_request" and "could not read" in err.user_message


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        ProviderError("x", kind="cosmic_rays")
