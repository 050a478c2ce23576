"""Wire formats of the scripted LLM server: plain and streamed answers as the real APIs send them.

OpenAI-compatible: chat.completion.chunk objects (text word by word, tool calls as an id/name
fragment then argument fragments, a final chunk with finish_reason, an optional usage chunk
with empty choices) and "data: [DONE]". Anthropic: message_start, content_block_start /
content_block_delta (text_delta, input_json_delta) / content_block_stop, ping,
message_delta (stop_reason, usage), message_stop — each with its "event:" line.

Also the error bodies real servers send when the prompt does not fit the context.
"""

from __future__ import annotations

import json
import re
import time

_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}

# 400 bodies for a prompt larger than the model's context, by server.
CONTEXT_EXCEEDED = {
    "openai": {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, your "
            "messages resulted in 5120 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    "anthropic": {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 210000 tokens > 200000 maximum",
        },
    },
    "llamacpp": {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 5120,
            "n_ctx": 4096,
        }
    },
    "vllm": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "8292 tokens (100 in the messages, 8192 in the completion). Please reduce the length "
        "of the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
}


def openai_body(step, model: str, usage: tuple[int, int], n: int) -> dict:
    message: dict = {"role": "assistant", "content": step.text}
    if step.calls:
        message["tool_calls"] = [
            {
                "id": cid or f"call_{n}_{i}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for i, (cid, name, args) in enumerate(step.calls)
        ]
    finish = "tool_calls" if step.calls else (step.finish_reason or "stop")
    return {
        "id": f"chatcmpl-scripted{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def anthropic_body(step, model: str, usage: tuple[int, int], n: int) -> dict:
    content: list[dict] = []
    if step.text is not None:
        content.append({"type": "text", "text": step.text})
    for i, (cid, name, args) in enumerate(step.calls):
        content.append(
            {"type": "tool_use", "id": cid or f"toolu_{n}_{i}", "name": name, "input": args}
        )
    finish = "tool_calls" if step.calls else (step.finish_reason or "stop")
    return {
        "id": f"msg_scripted{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(finish, finish),
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def error_body(kind: str, status: int) -> dict:
    message = f"scripted error {status}"
    if kind == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def pieces(text: str) -> list[str]:
    """Text cut the way models stream it: a word with its trailing space per piece."""
    return re.findall(r"\s*\S+\s*|\s+", text) or ([text] if text else [])


def fragments(arguments: str, parts: int = 3) -> list[str]:
    """A tool call's argument JSON cut into a few fragments (never splitting nothing)."""
    size = max(1, -(-len(arguments) // parts))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def _sse(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def openai_events(step, model: str, usage: tuple[int, int], n: int, with_usage: bool):
    """The SSE events of one scripted step in OpenAI's chunk format."""
    base = {"id": f"chatcmpl-scripted{n}", "object": "chat.completion.chunk"}
    base |= {"created": int(time.time()), "model": model}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in pieces(step.text or "")]
    for i, (cid, name, args) in enumerate(step.calls):
        arguments = args if isinstance(args, str) else json.dumps(args)
        first = {"index": i, "id": cid or f"call_{n}_{i}", "type": "function"}
        first["function"] = {"name": name, "arguments": ""}
        out.append(chunk({"tool_calls": [first]}))
        for frag in fragments(arguments):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
    finish = "tool_calls" if step.calls else (step.finish_reason or "stop")
    out.append(chunk({}, finish))
    if with_usage:
        counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        out.append(_sse({**base, "choices": [], "usage": counts | {"total_tokens": sum(usage)}}))
    out.append(_sse("[DONE]"))
    return out


def anthropic_events(step, model: str, usage: tuple[int, int], n: int):
    """The SSE events of one scripted step in Anthropic's Messages stream format."""
    message = {"id": f"msg_scripted{n}", "type": "message", "role": "assistant"}
    message |= {"model": model, "content": [], "stop_reason": None, "stop_sequence": None}
    message["usage"] = {"input_tokens": usage[0], "output_tokens": 1}
    out = [_sse({"type": "message_start", "message": message}, "message_start")]
    index = 0
    if step.text is not None:
        start = {"type": "content_block_start", "index": 0}
        out.append(_sse(start | {"content_block": {"type": "text", "text": ""}}, start["type"]))
        out.append(_sse({"type": "ping"}, "ping"))
        for p in pieces(step.text):
            delta = {"type": "content_block_delta", "index": 0}
            delta["delta"] = {"type": "text_delta", "text": p}
            out.append(_sse(delta, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        index = 1
    for i, (cid, name, args) in enumerate(step.calls, start=index):
        block = {"type": "tool_use", "id": cid or f"toolu_{n}_{i}", "name": name, "input": {}}
        start = {"type": "content_block_start", "index": i, "content_block": block}
        out.append(_sse(start, "content_block_start"))
        arguments = args if isinstance(args, str) else json.dumps(args)
        for frag in fragments(arguments):
            delta = {"type": "content_block_delta", "index": i}
            delta["delta"] = {"type": "input_json_delta", "partial_json": frag}
            out.append(_sse(delta, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    finish = "tool_calls" if step.calls else (step.finish_reason or "stop")
    end = {"type": "message_delta", "usage": {"output_tokens": usage[1]}}
    end["delta"] = {"stop_reason": _ANTHROPIC_STOP.get(finish, finish), "stop_sequence": None}
    out.append(_sse(end, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out
