"""The provider seam: ToolCall, LLMResponse and the Provider protocol the agent loop calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nanobot.errors import ProviderError

log = logging.getLogger("nanobot.providers")


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
    """What the agent loop needs from an LLM API. `chat` is a coroutine: it runs on the event
    loop, and cancelling it closes its connection.

    messages and tools are in OpenAI Chat Completions shape whatever the provider speaks;
    `model` may carry a routing prefix ("anthropic/claude-x"), the provider strips it as needed.
    max_tokens is an upper bound: a provider that knows the model's context window lowers it
    so that prompt + answer fit.

    on_delta: when given, the answer is streamed and on_delta(text) is called on the
    event loop with each piece of answer text as it arrives (never with "");
    tool-call arguments are not passed to it. A server without streaming gets one plain
    request and on_delta receives the whole text at once. An exception raised by on_delta
    closes the connection and propagates unchanged (a way to cancel a reply).

    Always returns the complete LLMResponse: content, tool_calls, finish_reason normalised
    to "stop" / "tool_calls" / "length", usage when the server reported it.
    Raises nanobot.errors.ProviderError (with .kind and .user_message) when the call fails.
    """

    name: str

    async def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
        on_delta: Callable[[str], None] | None = None,
    ) -> LLMResponse: ...


class ByIdentity:
    """fn(obj) computed once per object — for the tool list, the same list on every call of a
    session (ToolRegistry.definitions). Keeps up to `size` objects alive while cached."""

    def __init__(self, fn: Callable[[Any], Any], size: int = 64) -> None:
        self._fn = fn
        self._size = size
        self._cache: dict[int, tuple[Any, Any]] = {}

    def __call__(self, obj: Any) -> Any:
        hit = self._cache.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if len(self._cache) >= self._size:
            self._cache.clear()
        value = self._fn(obj)
        self._cache[id(obj)] = (obj, value)
        return value


def normalise_finish(raw: object, has_calls: bool) -> str:
    """ "stop", "tool_calls" or "length" from any API's finish/stop reason."""
    if has_calls:
        return "tool_calls"  # some servers report "stop" alongside tool calls
    if raw in ("length", "max_tokens", "model_context_window_exceeded"):
        return "length"
    return "stop"


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
    """What the API kinds share: settings, context budgeting, and `chat` = body → POST → parse,
    streamed when asked (falling back to one plain request when the server cannot stream).

    post_options go to http.open_request (timeout=(connect, read), max_attempts, sleep, …)
    except these, which are the provider's own:
      stream          False never streams (on_delta then gets the whole text at once)
      context_window  the model's context in tokens (0 = unknown, or ask the server)
      probe_context   ask the server for the context window on first use (local servers)
    """

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
        from nanobot.providers.budget import TokenBudget

        options = dict(post_options)
        self.name = name
        self.url = url
        self._api_key = api_key
        self._extra_headers = dict(extra_headers or {})
        self._strip_prefix = strip_prefix
        self._keeps_vendor = keeps_vendor
        self._stream = bool(options.pop("stream", True))
        context_window = int(options.pop("context_window", 0) or 0)
        probe = self.probe_context if options.pop("probe_context", False) else None
        self._post_options = options
        self.budget = TokenBudget(context_window, probe)

    @property
    def context_window(self) -> int | None:
        """The model's context window in tokens when configured or already reported by the
        server (it is asked on the first call), else None."""
        return self.budget.known

    def model_name(self, model: str) -> str:
        """The model id this endpoint expects (routing prefix stripped as configured)."""
        return api_model(model, self.name, self._strip_prefix, self._keeps_vendor)

    def probe_context(self, model: str) -> int | None:
        """Ask the server for model's context window; None when it does not say."""
        return None

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

    def stream_body(self, body: dict) -> dict:
        """The request body asking for a streamed answer."""
        return {**body, "stream": True}

    def stream_refused(self, error: ProviderError) -> bool:
        """Whether a refused streamed request should be sent again (after adjusting)."""
        if error.kind == "bad_request" and "stream" in str(error).lower():
            log.info("%s: the server refused streaming; using plain requests", self.name)
            self._stream = False
            return True
        return False

    def parse(self, data: dict) -> LLMResponse:
        raise NotImplementedError

    def accumulator(self, on_delta: Callable[[str], None]):
        """A fresh stream accumulator: .feed(event, data) per SSE event, .result()."""
        raise NotImplementedError

    async def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        model: str,
        max_tokens: int,
        temperature: float,
        on_delta: Callable[[str], None] | None = None,
    ) -> LLMResponse:
        """One call (see Provider.chat); raises ProviderError after retries or on a bad answer."""
        from nanobot.providers import http

        args = (max_tokens, messages, tools, self.model_name(model))
        if self.budget.probing:  # the first call may ask the server (blocking, with requests)
            import asyncio

            max_tokens = await asyncio.to_thread(self.budget.max_tokens, *args)
        else:
            max_tokens = self.budget.max_tokens(*args)
        body = self.request_body(messages, tools, model, max_tokens, temperature)
        options = dict(self._post_options, label=self.name)
        while on_delta is not None and self._stream:
            acc = self.accumulator(on_delta)
            try:
                data = await http.stream_events(
                    self.url, self.headers(), self.stream_body(body), acc.feed, **options
                )
            except ProviderError as e:
                if self.stream_refused(e):
                    continue
                raise
            if data is None:
                return acc.result()
            break  # the server ignored "stream": it answered with one JSON object
        else:
            data = await http.post_json(self.url, self.headers(), body, **options)
        reply = self.parse(data)
        if on_delta is not None and reply.content:
            on_delta(reply.content)
        return reply
