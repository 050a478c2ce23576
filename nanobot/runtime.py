"""Assembles an Agent from a loaded config: provider, tools, sandbox, sessions, audit."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from nanobot import paths
from nanobot.agent.context import ContextBuilder
from nanobot.agent.loop import Agent
from nanobot.agent.sessions import SessionStore
from nanobot.agent.workspace import ensure_workspace
from nanobot.config.loader import LoadInfo, workspace_path
from nanobot.config.schema import Config, ExecConfig
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.sandbox import Sandbox, make_sandbox
from nanobot.tools.table import Services, build_tools

log = logging.getLogger("nanobot")


class LazySandbox:
    """The configured sandbox, chosen on the first command: probing bubblewrap starts
    processes, which a conversation that never runs a command should not pay for."""

    def __init__(self, exec_cfg: ExecConfig, workspace: Path, home: Path) -> None:
        self._args = (exec_cfg, workspace, home)
        self._real: Sandbox | None = None

    @property
    def real(self) -> Sandbox:
        if self._real is None:
            self._real = make_sandbox(*self._args)
        return self._real

    @property
    def name(self) -> str:
        return self.real.name

    def wrap(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]):
        return self.real.wrap(argv, cwd, env)

    def explain(self, returncode: int | None, output: str) -> str | None:
        return self.real.explain(returncode, output)


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

    configure_audit(cfg)
    record_start_warnings(info)
    selection = select(cfg)
    log.info("provider: %s", selection.reason)
    ws = workspace_path(cfg)
    ensure_workspace(ws)
    home = paths.home()
    restrict = cfg.tools.restrict_to_workspace
    sandbox = LazySandbox(cfg.tools.exec, ws, home)
    tools = build_tools(Services(cfg, PathPolicy(ws, restrict, home), sandbox))
    d = cfg.agents.defaults
    agent = Agent(
        settings=d,
        provider=make_provider(selection),
        model=selection.model,
        tools=tools,
        sessions=SessionStore(paths.sessions_dir()),
        context=ContextBuilder(ws, restrict, f"tools.exec.sandbox = {cfg.tools.exec.sandbox}"),
    )
    if d.isolation == "sender":  # every person their own workspace and sessions
        from nanobot.agent.people import isolate

        return isolate(agent, cfg, home)
    return agent
