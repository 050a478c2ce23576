"""The provider seam: ToolCall, LLMResponse and the Provider protocol the agent loop calls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ToolCall:
    """One function call requested by the model; `arguments` is always a dict.

    Arguments that are not a JSON object arrive as {"_raw": text} so the tool layer can answer
    the model with an "Error:" result instead of the loop crashing.
    """

    id: str
    name: str
    arguments: dict


@dataclass
class LLMResponse:
    """A normalised reply: finish_reason is "stop", "tool_calls" or "length";
    usage uses OpenAI names (prompt_tokens, completion_tokens, total_tokens)."""

    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str = "stop"
    usage: dict = field(default_factory=dict)


class Provider(Protocol):
    """What the agent loop needs from an LLM API. `chat` blocks (run it in a thread).

    messages and tools are in OpenAI Chat Completions shape whatever the provider speaks;
    `model` may carry a routing prefix ("anthropic/claude-x"), the provider strips it as needed.
    Raises nanobot.errors.ProviderError when the call fails after its retries.
    """

    name: str

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
    ) -> LLMResponse: ...


def parse_arguments(raw: object) -> dict:
    """Tool-call arguments as a dict: JSON text parsed, a dict kept, anything else {"_raw": text}."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def api_model(model: str, own_prefix: str, strip_any: bool, keeps_vendor: bool = False) -> str:
    """The model name to send: routing prefixes the endpoint does not understand removed.

    "<own_prefix>/x" → "x" always ("deepseek/deepseek-chat" on deepseek). With strip_any, any
    first "vendor/" segment goes too (native APIs take bare names: "anthropic/claude-x" →
    "claude-x"). keeps_vendor marks gateways whose ids are "vendor/model" (OpenRouter), where
    "openrouter/auto" is itself an id, so the own prefix goes only when a vendor segment follows.
    """
    head, sep, rest = model.partition("/")
    if not sep or not rest:
        return model
    if head == own_prefix:
        if keeps_vendor and "/" not in rest:
            return model
        return rest
    if strip_any:
        return rest
    return model


def usage_dict(prompt: object, completion: object) -> dict:
    """Token counts in OpenAI names; missing counts are left out rather than guessed."""
    out: dict = {}
    if isinstance(prompt, int):
        out["prompt_tokens"] = prompt
    if isinstance(completion, int):
        out["completion_tokens"] = completion
    if len(out) == 2:
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


class HTTPProvider:
    """What the API kinds share: their settings, and `chat` = request_body → POST → parse."""

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str,
        extra_headers: dict[str, str] | None,
        strip_prefix: bool,
        keeps_vendor: bool,
        post_options: dict,
    ) -> None:
        self.name = name
        self.url = url
        self._api_key = api_key
        self._extra_headers = dict(extra_headers or {})
        self._strip_prefix = strip_prefix
        self._keeps_vendor = keeps_vendor
        self._post_options = post_options

    def model_name(self, model: str) -> str:
        """The model id this endpoint expects (routing prefix stripped as configured)."""
        return api_model(model, self.name, self._strip_prefix, self._keeps_vendor)

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def request_body(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
    ) -> dict:
        raise NotImplementedError

    def parse(self, data: dict) -> LLMResponse:
        raise NotImplementedError

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
    ) -> LLMResponse:
        """One call; raises ProviderError after retries or on a malformed answer."""
        from nanobot.providers.http import post_json

        body = self.request_body(messages, tools, model, max_tokens, temperature)
        data = post_json(self.url, self.headers(), body, label=self.name, **self._post_options)
        return self.parse(data)
