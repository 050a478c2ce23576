"""Fakes for what sits on the far side of the network (LLM APIs, …), served on 127.0.0.1."""

from .llm_server import (
    RecordedRequest,
    ScriptedLLMServer,
    Step,
    drop,
    error,
    last_user_text,
    reply,
    tool_call,
    tool_calls,
)

__all__ = [
    "RecordedRequest",
    "ScriptedLLMServer",
    "Step",
    "drop",
    "error",
    "last_user_text",
    "reply",
    "tool_call",
    "tool_calls",
]
