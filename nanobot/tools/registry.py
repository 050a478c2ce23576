"""The tool registry: every call is validated, limited, executed, timed and audited here."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from nanobot.security.redact import redact
from nanobot.tools.base import (
    INVALID_ARGUMENTS,
    RATE_LIMITED,
    Tool,
    ToolContext,
    ToolResult,
    cap,
    validate_args,
)

log = logging.getLogger("nanobot.tools")
AUDIT_ARGS_CHARS = 300


class Approver(Protocol):
    """security.approval.Approvals: None = run the call now, else the refusal to return."""

    async def check(
        self, tool: str, args: dict[str, Any], ctx: ToolContext
    ) -> ToolResult | None: ...


class ToolRegistry:
    """Name → tool; `call` is the one path from a model's tool call to a tool."""

    def __init__(self, tool_limiter=None, approvals: Approver | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self._definitions: list[dict[str, Any]] | None = None
        self.tool_limiter = tool_limiter  # security.ratelimit.ToolCallLimiter or None
        self.approvals = approvals  # asked before a call runs; None = tools.approval.mode off

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool
        self._definitions = None

    def sibling(self) -> ToolRegistry:
        """An empty registry with the same limiter and approvals (one person's own tools)."""
        return ToolRegistry(self.tool_limiter, self.approvals)

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def definitions(self) -> list[dict[str, Any]]:
        """Tool definitions in the OpenAI function-calling shape: the same list (do not modify
        it) until a tool is registered, so a provider can encode it once, not every call."""
        if self._definitions is None:
            self._definitions = self._build_definitions()
        return self._definitions

    def _build_definitions(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in self._tools.values()
        ]

    async def call(self, name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        started = time.monotonic()
        result = await self._call(name, args, ctx)
        result.text = redact(cap(result.text))  # no secret ever reaches the model
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        from nanobot.security.audit import get_audit

        get_audit().record(
            "tool_call",
            tool=name,
            args=json.dumps(args, ensure_ascii=False, default=str)[:AUDIT_ARGS_CHARS],
            decision=result.decision,
            duration_ms=duration_ms,
            exit_code=result.exit_code,
            session=ctx.session_key,
            sender=ctx.sender_id,
        )
        return result

    async def _call(self, name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.error(
                f"unknown tool '{name}'. Available tools: {', '.join(self._tools)}",
                INVALID_ARGUMENTS,
            )
        if "_raw" in args and len(args) == 1:
            return ToolResult.error(
                "the tool arguments were not valid JSON; send a JSON object", INVALID_ARGUMENTS
            )
        problems = validate_args(tool.parameters, args)
        if problems:
            return ToolResult.error(
                f"invalid arguments for {name}: {'; '.join(problems)}", INVALID_ARGUMENTS
            )
        limiter = self.tool_limiter
        if limiter is not None and not limiter.allow(f"{ctx.channel}:{ctx.sender_id}"):
            log.warning("tool call limit reached for %s:%s (%s)", ctx.channel, ctx.sender_id, name)
            from nanobot.security.audit import get_audit

            get_audit().record("rate_limit", channel=ctx.channel, sender=ctx.sender_id, kind="tool")
            return ToolResult.error(
                "the hourly tool-call limit (security.rateLimit.toolCallsPerHour) is reached; "
                "answer without tools or try again later",
                RATE_LIMITED,
            )
        if self.approvals is not None:
            # A matching call waits for a person's answer; the tool's own checks (the guard's
            # hard deny, the path policy) still run afterwards, whatever the answer.
            refusal = await self.approvals.check(name, args, ctx)
            if refusal is not None:
                return refusal
        try:
            return await tool.execute(ctx, **args)
        except Exception:  # boundary: a broken tool must not end the turn
            log.exception("tool %s failed", name)
            return ToolResult.error(f"the {name} tool failed unexpectedly; try another approach")
