"""The `spawn` tool: start a background task that reports back to this chat when done."""

from __future__ import annotations

from typing import Any

from nanobot.agent.subagents import Subagents
from nanobot.services.internal import is_internal
from nanobot.tools.base import RATE_LIMITED, ToolContext, ToolResult


class SpawnTool:
    name = "spawn"
    description = (
        "Start a background task (research, a long job) that works on its own and reports "
        "its result to this chat when done, so you can answer the user now. Give it a "
        "complete, self-contained `task`. The user sees running tasks with /tasks and "
        "stops one with /stop ID."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "minLength": 1, "maxLength": 8000},
            "label": {"type": "string", "maxLength": 80},
        },
        "required": ["task"],
        "additionalProperties": False,
    }

    def __init__(self, manager: Subagents) -> None:
        self.manager = manager

    async def execute(self, ctx: ToolContext, **kw: Any) -> ToolResult:
        if is_internal(ctx.sender_id):
            return ToolResult.error("a background run cannot start background tasks")
        try:
            rec = await self.manager.spawn(ctx, kw["task"], kw.get("label", ""))
        except LookupError as e:
            return ToolResult.error(str(e), RATE_LIMITED)
        except RuntimeError as e:
            return ToolResult.error(str(e))
        return ToolResult(
            f"Started background task {rec.id} ('{rec.label}'); its result will come to this "
            "chat. Tell the user it is running."
        )
