"""OpenAI-compatible Chat Completions provider (OpenAI, OpenRouter, DeepSeek, vLLM, Ollama, …)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from nanobot.errors import ProviderError
from nanobot.providers.base import (
    HTTPProvider,
    LLMResponse,
    ToolCall,
    normalise_finish,
    parse_arguments,
    usage_dict,
)
from nanobot.providers.budget import context_from_models, context_from_props
from nanobot.providers.failures import malformed, stream_error, unreachable_midway
from nanobot.providers.http import DEFAULT_TIMEOUT, get_json
from nanobot.security.redact import redact

PROBE_READ_TIMEOUT = 5.0

# OpenAI's reasoning models refuse max_tokens and a non-default temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# Keys of a Chat Completions message; anything else the session stored stays local.
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


class OpenAIProvider(HTTPProvider):
    """POST {api_base}/chat/completions; messages and tools are sent in their OpenAI shape.

    The Authorization header is sent only when there is a key (local vLLM/Ollama need none);
    extra_headers are merged last with their keys exactly as the user wrote them.
    """

    def __init__(
        self,
        name: str,
        api_base: str,
        api_key: str = "",
        extra_headers: dict[str, str] | None = None,
        *,
        strip_prefix: bool = False,
        keeps_vendor: bool = False,
        **post_options,
    ) -> None:
        if not api_base:
            raise ValueError(f"provider {name!r} needs an api_base")
        url = api_base.rstrip("/") + "/chat/completions"
        super().__init__(
            name, url, api_key, extra_headers, strip_prefix, keeps_vendor, post_options
        )
        self._stream_usage = True

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(self._extra_headers)
        return headers

    def request_body(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
    ) -> dict:
        """The JSON body for one call (model prefix stripped as this endpoint needs)."""
        name = self.model_name(model)
        sent = [{k: m[k] for k in _MESSAGE_KEYS if k in m} for m in messages]
        body: dict = {"model": name, "messages": sent}
        if self.name == "openai" and name.startswith(_REASONING_PREFIXES):
            body["max_completion_tokens"] = max_tokens
        else:
            body["max_tokens"] = max_tokens
            body["temperature"] = temperature
        if tools:
            body["tools"] = tools
        return body

    def parse(self, data: dict) -> LLMResponse:
        return parse_response(data, self.name)

    def stream_body(self, body: dict) -> dict:
        body = {**body, "stream": True}
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def stream_refused(self, error: ProviderError) -> bool:
        # A few compatible servers refuse stream_options; try once more without it.
        if self._stream_usage and error.kind == "bad_request" and "stream_options" in str(error):
            self._stream_usage = False
            return True
        return super().stream_refused(error)

    def accumulator(self, on_delta: Callable[[str], None]) -> OpenAIStream:
        return OpenAIStream(on_delta, self.name)

    def probe_context(self, model: str) -> int | None:
        """llama.cpp's /props n_ctx (the context it actually runs with), else /v1/models."""
        connect = self._post_options.get("timeout", DEFAULT_TIMEOUT)[0]
        timeout = (connect, PROBE_READ_TIMEOUT)
        headers = self.headers()
        base = self.url.removesuffix("/chat/completions")
        origin = base.removesuffix("/v1")
        window = context_from_props(get_json(origin + "/props", headers, timeout))
        return window or context_from_models(get_json(base + "/models", headers, timeout), model)


def _text(content: object) -> str | None:
    """Message content as text; some servers send a list of {"type": "text"} parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return str(content)


def parse_response(data: dict, name: str = "openai") -> LLMResponse:
    """A chat.completion object as an LLMResponse; an answer without choices is a ProviderError."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = data.get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        raise malformed(
            f"{name} answered without choices"
            + (f": {redact(str(detail))[:200]}" if detail else "")
            + f" — fix: check providers.{name}.apiBase and agents.defaults.model",
            name,
        )
    message = choices[0].get("message") or {}
    calls = []
    for raw in message.get("tool_calls") or []:
        if not isinstance(raw, dict):
            continue
        function = raw.get("function") or {}
        calls.append(
            ToolCall(
                id=str(raw.get("id") or f"call_{os.urandom(6).hex()}"),
                name=str(function.get("name", "")),
                arguments=parse_arguments(function.get("arguments")),
            )
        )
    usage = data.get("usage") or {}
    return LLMResponse(
        content=_text(message.get("content")),
        tool_calls=calls,
        finish_reason=normalise_finish(choices[0].get("finish_reason"), bool(calls)),
        usage=usage_dict(usage.get("prompt_tokens"), usage.get("completion_tokens")),
    )


class OpenAIStream:
    """Builds an LLMResponse from chat.completion.chunk events, passing text to on_delta.

    Tool calls arrive as fragments keyed by "index" (id and name in the first, arguments
    spread over many); a fragment without an index is a whole call (some servers send that).
    """

    def __init__(self, on_delta: Callable[[str], None], name: str) -> None:
        self._on_delta = on_delta
        self._name = name
        self._text: list[str] = []
        self._calls: dict[int, dict] = {}
        self._finish: str | None = None
        self._usage: dict = {}
        self._done = False

    def feed(self, event: str, data: str) -> None:
        if data.strip() == "[DONE]":
            self._done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return  # a keep-alive or a line we do not understand
        if not isinstance(chunk, dict):
            return
        if event == "error" or (chunk.get("error") and not chunk.get("choices")):
            raise stream_error(chunk, self._name)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = _text(delta.get("content"))
        if text:
            self._text.append(text)
            self._on_delta(text)
        for fragment in delta.get("tool_calls") or []:
            if isinstance(fragment, dict):
                self._add_fragment(fragment)
        if choice.get("finish_reason"):
            self._finish = str(choice["finish_reason"])

    def _add_fragment(self, fragment: dict) -> None:
        index = fragment.get("index")
        if not isinstance(index, int):
            index = len(self._calls)
        slot = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if fragment.get("id"):
            slot["id"] = str(fragment["id"])
        function = fragment.get("function") or {}
        if function.get("name") and not slot["name"]:
            slot["name"] = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            slot["arguments"] += arguments
        elif arguments is not None:
            slot["arguments"] = arguments

    def result(self) -> LLMResponse:
        if not self._done and self._finish is None:
            raise unreachable_midway(self._name)
        calls = [
            ToolCall(
                id=slot["id"] or f"call_{os.urandom(6).hex()}",
                name=slot["name"],
                arguments=parse_arguments(slot["arguments"]),
            )
            for _, slot in sorted(self._calls.items())
            if slot["name"]
        ]
        usage = self._usage
        return LLMResponse(
            content="".join(self._text) if self._text else None,
            tool_calls=calls,
            finish_reason=normalise_finish(self._finish, bool(calls)),
            usage=usage_dict(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        )
