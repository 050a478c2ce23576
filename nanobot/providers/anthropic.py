"""Anthropic Messages provider: converts OpenAI-shaped messages and tools both ways."""

from __future__ import annotations

import json
from collections.abc import Callable

from nanobot.providers.base import (
    ByIdentity,
    HTTPProvider,
    LLMResponse,
    ToolCall,
    normalise_finish,
    parse_arguments,
    usage_dict,
)
from nanobot.providers.failures import malformed, stream_error, unreachable_midway
from nanobot.security.redact import redact

API_VERSION = "2023-06-01"
DEFAULT_BASE = "https://api.anthropic.com"


def _content_blocks(content: object) -> list[dict]:
    """OpenAI message content (text or parts) as Anthropic blocks; empty text is dropped
    because the API refuses empty text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and str(part.get("text", "")).strip():
            blocks.append({"type": "text", "text": str(part["text"])})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
    return blocks


def _tool_use_blocks(tool_calls: list[dict] | None) -> list[dict]:
    blocks = []
    for call in tool_calls or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def _tool_result_block(message: dict) -> dict:
    text = message.get("content")
    text = text if isinstance(text, str) else str(text or "")
    block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", "")}
    if text:
        block["content"] = text
    if text.startswith("Error:"):
        block["is_error"] = True
    return block


def convert_messages(messages: list[dict]) -> tuple[str, list[dict]]:
    """(system text, Anthropic messages) from OpenAI-shaped messages.

    System messages are joined into `system`; tool results become user tool_result blocks;
    consecutive messages of one role are merged (tool results first, as the API requires);
    the list starts at a user message with no orphan tool results.
    """
    system: list[str] = []
    out: list[dict] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            text = message.get("content")
            if isinstance(text, str) and text.strip():
                system.append(text)
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result_block(message)]
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"))
            blocks += _tool_use_blocks(message.get("tool_calls"))
        else:
            role, blocks = "user", _content_blocks(message.get("content"))
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for message in out:
        if message["role"] == "user":
            message["content"].sort(key=lambda b: b["type"] != "tool_result")
    # A history cut mid-exchange may begin with an answer or with results of calls now gone.
    while out:
        if out[0]["role"] == "user":
            out[0]["content"] = [b for b in out[0]["content"] if b["type"] != "tool_result"]
            if out[0]["content"]:
                break
        out.pop(0)
    return "\n\n".join(system), out


def convert_tools(tools: list[dict] | None) -> list[dict]:
    """OpenAI function tools as Anthropic {name, description, input_schema}."""
    out = []
    for tool in tools or []:
        function = tool.get("function") or {}
        out.append(
            {
                "name": function.get("name", ""),
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return out


_converted_tools = ByIdentity(convert_tools)  # the session's tool list, converted once


def parse_response(data: dict) -> LLMResponse:
    """An Anthropic message as an LLMResponse; anything else is a ProviderError."""
    blocks = data.get("content")
    if data.get("type") == "error" or not isinstance(blocks, list):
        error = data.get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        raise malformed(
            "anthropic answered without content"
            + (f": {redact(str(detail))[:200]}" if detail else "")
            + " — fix: check providers.anthropic.apiBase and agents.defaults.model",
            "anthropic",
        )
    texts, calls = [], []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(
                ToolCall(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    arguments=parse_arguments(block.get("input")),
                )
            )
    usage = data.get("usage") or {}
    return LLMResponse(
        content="".join(texts) if texts else None,
        tool_calls=calls,
        finish_reason=normalise_finish(data.get("stop_reason"), bool(calls)),
        usage=usage_dict(usage.get("input_tokens"), usage.get("output_tokens")),
    )


class AnthropicStream:
    """Builds an LLMResponse from Messages stream events, passing text deltas to on_delta.

    message_start (input usage) → content_block_start/delta/stop per text or tool_use block
    (tool input arrives as input_json_delta fragments) → message_delta (stop_reason, output
    usage) → message_stop; ping is ignored; an error event raises ProviderError.
    """

    def __init__(self, on_delta: Callable[[str], None]) -> None:
        self._on_delta = on_delta
        self._blocks: dict[int, dict] = {}
        self._stop: str | None = None
        self._input_tokens: object = None
        self._output_tokens: object = None
        self._done = False

    def feed(self, event: str, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type") or event
        if kind == "error":
            raise stream_error(message, "anthropic")
        if kind == "message_start":
            usage = (message.get("message") or {}).get("usage") or {}
            self._input_tokens = usage.get("input_tokens")
        elif kind == "content_block_start":
            block = dict(message.get("content_block") or {})
            block.setdefault("text", "")
            block["json"] = ""
            self._blocks[int(message.get("index", len(self._blocks)))] = block
            if block.get("type") == "text" and block["text"]:
                self._on_delta(block["text"])
        elif kind == "content_block_delta":
            self._delta(message)
        elif kind == "message_delta":
            self._stop = (message.get("delta") or {}).get("stop_reason") or self._stop
            usage = message.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._output_tokens = usage["output_tokens"]
            if usage.get("input_tokens") is not None:
                self._input_tokens = usage["input_tokens"]
        elif kind == "message_stop":
            self._done = True

    def _delta(self, message: dict) -> None:
        index = int(message.get("index", 0))
        block = self._blocks.setdefault(index, {"type": "text", "text": "", "json": ""})
        delta = message.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            block["text"] += delta["text"]
            self._on_delta(delta["text"])
        elif delta.get("type") == "input_json_delta":
            block["json"] += str(delta.get("partial_json") or "")

    def result(self) -> LLMResponse:
        if not self._done and self._stop is None:
            raise unreachable_midway("anthropic")
        texts, calls = [], []
        for _, block in sorted(self._blocks.items()):
            if block.get("type") == "text":
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                raw = block["json"] if block["json"].strip() else block.get("input")
                calls.append(
                    ToolCall(
                        id=str(block.get("id", "")),
                        name=str(block.get("name", "")),
                        arguments=parse_arguments(raw),
                    )
                )
        return LLMResponse(
            content="".join(texts) if texts else None,
            tool_calls=calls,
            finish_reason=normalise_finish(self._stop, bool(calls)),
            usage=usage_dict(self._input_tokens, self._output_tokens),
        )


class AnthropicProvider(HTTPProvider):
    """POST {api_base or https://api.anthropic.com}/v1/messages with x-api-key."""

    def __init__(
        self,
        name: str = "anthropic",
        api_base: str = "",
        api_key: str = "",
        extra_headers: dict[str, str] | None = None,
        *,
        strip_prefix: bool = True,
        keeps_vendor: bool = False,
        **post_options,
    ) -> None:
        base = (api_base or DEFAULT_BASE).rstrip("/")
        url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        super().__init__(
            name, url, api_key, extra_headers, strip_prefix, keeps_vendor, post_options
        )

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
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
        """The JSON body for one call, in Anthropic's shape."""
        system, converted = convert_messages(messages)
        body: dict = {
            "model": self.model_name(model),
            "max_tokens": max_tokens,
            "temperature": min(temperature, 1.0),  # Anthropic's range is 0..1, config allows 2
            "messages": converted,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = _converted_tools(tools)
        return body

    def parse(self, data: dict) -> LLMResponse:
        return parse_response(data)

    def accumulator(self, on_delta: Callable[[str], None]) -> AnthropicStream:
        return AnthropicStream(on_delta)
