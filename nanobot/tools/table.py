"""The tool table: tool name → factory from the config and the shared services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nanobot.agent.memory import MemoryTool
from nanobot.agent.skills import MAX_SKILL_BYTES, ReadSkillTool, Skills
from nanobot.agent.subagents import Subagents
from nanobot.config.schema import Config
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.ratelimit import ToolCallLimiter
from nanobot.security.sandbox import Sandbox
from nanobot.security.wsread import WorkspaceReader
from nanobot.tools.base import Tool
from nanobot.tools.cron import CronTool
from nanobot.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
from nanobot.tools.message import MessageTool
from nanobot.tools.registry import ToolRegistry
from nanobot.tools.shell import ExecTool
from nanobot.tools.spawn import SpawnTool
from nanobot.tools.web import make_web_fetch, make_web_search

if TYPE_CHECKING:  # loaded only when tools.approval is on
    from nanobot.security.approval import Approvals


@dataclass
class Services:
    """What tools share: one path policy (file tools and exec alike), one sandbox, and the
    subagents (started empty; the gateway attaches them to its route)."""

    cfg: Config
    policy: PathPolicy
    sandbox: Sandbox
    subagents: Subagents = field(default_factory=Subagents)
    # Pending approvals of the whole process (None: built from cfg when tools.approval is on).
    approvals: Approvals | None = None


# A factory returns None when the config leaves its tool off.
TOOLS: dict[str, Callable[[Services], Tool | None]] = {
    "read_file": lambda s: ReadFileTool(s.policy),
    "write_file": lambda s: WriteFileTool(s.policy, s.cfg.tools.write_reserve_mb),
    "edit_file": lambda s: EditFileTool(s.policy, s.cfg.tools.write_reserve_mb),
    "list_dir": lambda s: ListDirTool(s.policy),
    "exec": lambda s: ExecTool(s.policy, s.cfg.tools.exec, s.sandbox),
    "message": lambda s: MessageTool(s.cfg, s.policy),
    "cron": lambda s: CronTool(s.cfg),
    "spawn": lambda s: SpawnTool(s.subagents) if _subagent_limit(s.cfg) else None,
    "web_search": lambda s: make_web_search(s.cfg.tools.web),
    "web_fetch": lambda s: make_web_fetch(s.cfg.tools.web),
    "memory": lambda s: MemoryTool(s.policy),
    "read_skill": lambda s: ReadSkillTool(
        Skills(WorkspaceReader(s.policy.workspace, MAX_SKILL_BYTES))
    ),
}


def _subagent_limit(cfg: Config) -> int:
    d = cfg.agents.defaults
    return d.max_concurrent_subagents or d.max_subagents


def build_tools(services: Services) -> ToolRegistry:
    per_hour = services.cfg.security.rate_limit.tool_calls_per_hour
    if services.approvals is None and services.cfg.tools.approval.mode != "off":
        from nanobot.security.approval import Approvals

        services.approvals = Approvals(services.cfg, services.policy)
    registry = ToolRegistry(ToolCallLimiter(per_hour) if per_hour else None, services.approvals)
    for factory in TOOLS.values():
        tool = factory(services)
        if tool is not None:
            registry.register(tool)
    return registry
