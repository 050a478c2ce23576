"""OpenAI-compatible Chat Completions provider (OpenAI, OpenRouter, DeepSeek, vLLM, Ollama, …)."""

from __future__ import annotations

import os

from nanobot.errors import ProviderError
from nanobot.providers.base import HTTPProvider, LLMResponse, ToolCall, parse_arguments, usage_dict
from nanobot.security.redact import redact

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
        raise ProviderError(
            f"{name} answered without choices"
            + (f": {redact(str(detail))[:200]}" if detail else "")
            + f" — fix: check providers.{name}.apiBase and agents.defaults.model"
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
    finish = choices[0].get("finish_reason") or ("tool_calls" if calls else "stop")
    if calls and finish == "stop":
        finish = "tool_calls"  # some servers report "stop" alongside tool calls
    usage = data.get("usage") or {}
    return LLMResponse(
        content=_text(message.get("content")),
        tool_calls=calls,
        finish_reason=str(finish),
        usage=usage_dict(usage.get("prompt_tokens"), usage.get("completion_tokens")),
    )
