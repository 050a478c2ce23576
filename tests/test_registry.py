"""The tool registry: argument validation, unknown tools, the hourly cap, redaction, audit."""

from __future__ import annotations

import asyncio
import json

import pytest

from nanobot.config.schema import Config
from nanobot.security.audit import configure_audit
from nanobot.security.ratelimit import ToolCallLimiter
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import (
    ALLOWED,
    INVALID_ARGUMENTS,
    RATE_LIMITED,
    ToolContext,
    ToolResult,
    validate_args,
)
from nanobot.tools.registry import ToolRegistry


class EchoTool:
    """A real tool of this test: returns its arguments, or text it was given."""

    name = "echo"
    description = "echo the arguments"
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 50},
            "count": {"type": "integer", "minimum": 1, "maximum": 3},
            "loud": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["text"],
        "additionalProperties": False,
    }

    async def execute(self, ctx, **kw):
        return ToolResult(json.dumps(kw))


class BrokenTool:
    name = "broken"
    description = "always fails"
    parameters = {"type": "object", "properties": {}}

    async def execute(self, ctx, **kw):
        raise RuntimeError("boom")


@pytest.fixture
def audit(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    configure_audit(Config())
    yield tmp_path / "logs" / "audit.jsonl"
    off = Config()
    off.security.audit.enabled = False
    configure_audit(off)


def call(reg, name, args, ctx=None):
    return asyncio.run(reg.call(name, args, ctx or ToolContext()))


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({}, "missing required argument 'text'"),
        ({"text": 5}, "text must be string"),
        ({"text": "x", "count": True}, "count must be integer, got bool"),
        ({"text": "x", "count": 1.5}, "count must be integer"),
        ({"text": "x", "count": 9}, "count must be <= 3"),
        ({"text": "x", "loud": 1}, "loud must be boolean"),
        ({"text": "x" * 51}, "at most 50 characters"),
        ({"text": "x", "tags": ["a", 2]}, "tags[1] must be string"),
        ({"text": "x", "extra": 1}, "unknown argument 'extra'"),
    ],
)
def test_invalid_arguments_never_reach_the_tool(args, problem):
    errors = validate_args(EchoTool.parameters, args)
    assert any(problem in e for e in errors), errors
    reg = ToolRegistry()
    reg.register(EchoTool())
    result = call(reg, "echo", args)
    assert result.text.startswith("Error: invalid arguments for echo")
    assert result.decision == INVALID_ARGUMENTS


def test_valid_call_and_definitions():
    reg = ToolRegistry()
    reg.register(EchoTool())
    result = call(reg, "echo", {"text": "hi", "count": 2, "loud": False})
    assert json.loads(result.text) == {"text": "hi", "count": 2, "loud": False}
    assert result.decision == ALLOWED
    (d,) = reg.definitions()
    assert d["type"] == "function" and d["function"]["name"] == "echo"


def test_unknown_tool_and_unparseable_arguments_are_errors_for_the_model():
    reg = ToolRegistry()
    reg.register(EchoTool())
    unknown = call(reg, "rm_everything", {})
    assert unknown.text.startswith("Error: unknown tool") and "echo" in unknown.text
    raw = call(reg, "echo", {"_raw": "{not json"})
    assert raw.text.startswith("Error:") and "JSON" in raw.text


def test_a_crashing_tool_does_not_end_the_turn():
    reg = ToolRegistry()
    reg.register(BrokenTool())
    result = call(reg, "broken", {})
    assert result.text.startswith("Error:") and "boom" not in result.text


def test_results_are_redacted_before_the_model_sees_them():
    REDACTOR.add("super-secret-value-42")
    try:
        reg = ToolRegistry()
        reg.register(EchoTool())
        result = call(reg, "echo", {"text": "super-secret-value-42"})
        assert "super-secret-value-42" not in result.text and "[REDACTED]" in result.text
    finally:
        REDACTOR.clear()


def test_hourly_tool_cap_per_sender_is_enforced_and_audited(audit):
    now = [1000.0]
    reg = ToolRegistry(ToolCallLimiter(2, clock=lambda: now[0]))
    reg.register(EchoTool())
    alice = ToolContext(channel="telegram", sender_id="1|alice", session_key="telegram:1")
    bob = ToolContext(channel="telegram", sender_id="2|bob", session_key="telegram:2")
    assert call(reg, "echo", {"text": "a"}, alice).decision == ALLOWED
    assert call(reg, "echo", {"text": "b"}, alice).decision == ALLOWED
    third = call(reg, "echo", {"text": "c"}, alice)
    assert third.decision == RATE_LIMITED and "toolCallsPerHour" in third.text
    assert call(reg, "echo", {"text": "d"}, bob).decision == ALLOWED
    now[0] += 3700
    assert call(reg, "echo", {"text": "e"}, alice).decision == ALLOWED
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["decision"] for e in events if e["event"] == "tool_call"] == [
        ALLOWED, ALLOWED, RATE_LIMITED, ALLOWED, ALLOWED,
    ]  # fmt: skip
    assert any(e["event"] == "rate_limit" and e["kind"] == "tool" for e in events)
    tool_events = [e for e in events if e["event"] == "tool_call"]
    assert all("duration_ms" in e and e["session"].startswith("telegram:") for e in tool_events)
