"""Assembles an Agent from a loaded config: provider, tools, sandbox, sessions, audit."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from nanobot import paths
from nanobot.agent.context import ContextBuilder
from nanobot.agent.loop import Agent
from nanobot.agent.sessions import SessionStore
from nanobot.config.loader import LoadInfo, workspace_path
from nanobot.config.schema import Config
from nanobot.tools.registry import ToolRegistry

log = logging.getLogger("nanobot")


def ensure_workspace(cfg: Config):
    """The workspace folder exists (0700 when we create it) and has its bootstrap files."""
    ws = workspace_path(cfg)
    if not ws.exists():
        from nanobot.commands.onboard import write_templates

        paths.ensure_dir(ws)
        write_templates(ws)
    return ws


def record_start_warnings(info: LoadInfo) -> None:
    """Config and permission warnings go to the log, stderr and the audit trail."""
    from nanobot.security.audit import get_audit

    for w in info.warnings:
        log.warning("%s", w)
        kind = "permission_warning" if w in info.permission_warnings else "config_warning"
        get_audit().record(kind, message=w)


def build_agent(cfg: Config, info: LoadInfo) -> Agent:
    from nanobot.providers.registry import make_provider, select
    from nanobot.security.audit import configure_audit
    from nanobot.security.pathpolicy import PathPolicy
    from nanobot.security.ratelimit import ToolCallLimiter
    from nanobot.security.sandbox import make_sandbox
    from nanobot.tools.files import EditFileTool, ListDirTool, ReadFileTool, WriteFileTool
    from nanobot.tools.shell import ExecTool

    configure_audit(cfg)
    record_start_warnings(info)
    selection = select(cfg)
    log.info("provider: %s", selection.reason)
    ws = ensure_workspace(cfg)
    restrict = cfg.tools.restrict_to_workspace
    home = paths.home()
    policy = PathPolicy(ws, restrict, home)
    sandbox = make_sandbox(cfg.tools.exec, ws, home)
    per_hour = cfg.security.rate_limit.tool_calls_per_hour
    registry = ToolRegistry(ToolCallLimiter(per_hour) if per_hour else None)
    for tool in (
        ReadFileTool(policy),
        WriteFileTool(policy),
        EditFileTool(policy),
        ListDirTool(policy),
    ):
        registry.register(tool)
    registry.register(ExecTool(ws, cfg.tools.exec, restrict, home, sandbox=sandbox))
    d = cfg.agents.defaults
    return Agent(
        settings=d,
        provider=make_provider(selection),
        model=selection.model,
        tools=registry,
        sessions=SessionStore(paths.sessions_dir()),
        context=ContextBuilder(ws, restrict, getattr(sandbox, "name", "none")),
        executor=ThreadPoolExecutor(
            max_workers=d.max_concurrent_turns + 2, thread_name_prefix="llm"
        ),
    )
