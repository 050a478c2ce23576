"""Per-person isolation (agents.defaults.isolation = "sender"): each person their own agent.

A person is a channel plus a sender id (Telegram's "id|username" counts by its id); an internal
turn (cron, heartbeat, subagent report) belongs to the chat it answers, which in a private chat
is that person. Each person gets NANOBOT_HOME/people/<id>/workspace (bootstrap files, memory,
skills overrides, files) and NANOBOT_HOME/people/<id>/sessions, and an Agent whose path policy,
exec sandbox, file/memory/skill tools and prompt are bound to that workspace only. Another
person's folder lies under NANOBOT_HOME outside the workspace, which the path policy refuses
and the sandbox hides, so one person's turn can read nothing of another's.
The provider, settings and worker threads are shared; background tasks (spawn) are not offered
to isolated persons, since subagents run in the shared workspace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path

from nanobot.agent.context import ContextBuilder
from nanobot.agent.loop import Agent
from nanobot.agent.sessions import SessionStore
from nanobot.agent.workspace import ensure_workspace
from nanobot.config.schema import Config
from nanobot.errors import ConfigError
from nanobot.route.message import InboundMessage
from nanobot.security.pathpolicy import PathPolicy
from nanobot.services.internal import is_internal
from nanobot.tools.base import ToolContext
from nanobot.tools.table import TOOLS, Services

FOLDER = "people"
MAX_CACHED = 64  # agents kept built; others are rebuilt on their next message
NOT_ISOLATED = frozenset({"spawn"})


def person_of(ctx: ToolContext) -> str:
    """channel:who for a turn — the sender, or for an internal turn the chat it answers."""
    who = ctx.chat_id if is_internal(ctx.sender_id) else ctx.sender_id.split("|", 1)[0]
    return f"{ctx.channel}:{who}"


def folder_name(person: str) -> str:
    """A file-system-safe, collision-free folder name for a person."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", person)[:60]
    return f"{safe}-{hashlib.sha256(person.encode()).hexdigest()[:10]}"


class People:
    """Builds and caches one Agent per person from the shared one's provider and settings."""

    def __init__(self, cfg: Config, home: Path, shared: Agent) -> None:
        self.cfg = cfg
        self.home = home
        self.shared = shared
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self._lock = threading.Lock()

    def folder(self, person: str) -> Path:
        return self.home / FOLDER / folder_name(person)

    def agent_for(self, person: str) -> Agent:
        """The person's Agent (built on first use: creates their workspace). Blocks."""
        with self._lock:
            agent = self._agents.get(person)
            if agent is not None:
                self._agents.move_to_end(person)
                return agent
        agent = self._build(person)
        with self._lock:
            agent = self._agents.setdefault(person, agent)
            while len(self._agents) > MAX_CACHED:
                self._agents.popitem(last=False)
        return agent

    def _build(self, person: str) -> Agent:
        from nanobot.runtime import LazySandbox  # runtime imports this module

        root = self.folder(person)
        ws = root / "workspace"
        ensure_workspace(ws)
        restrict = self.cfg.tools.restrict_to_workspace
        # bubblewrap is required: without it a command could read every person's folder
        exec_cfg = dataclasses.replace(self.cfg.tools.exec, sandbox="bwrap")
        services = Services(
            self.cfg,
            PathPolicy(ws, restrict, self.home),
            LazySandbox(exec_cfg, ws, self.home),
        )
        # The shared registry's settings (tool-call limiter, approvals), with this person's tools.
        tools = self.shared.tools.sibling()
        for name, factory in TOOLS.items():
            tool = None if name in NOT_ISOLATED else factory(services)
            if tool is not None:
                tools.register(tool)
        s = self.shared
        return Agent(
            settings=s.settings,
            provider=s.provider,
            model=s.model,
            tools=tools,
            sessions=SessionStore(root / "sessions"),
            context=ContextBuilder(ws, restrict, s.context.sandbox_name),
        )


@dataclass
class IsolatedAgent(Agent):
    """The gateway's Agent when isolation is "sender": every turn runs in the person's Agent."""

    people: People | None = None

    async def handle(self, msg: InboundMessage, ctx: ToolContext) -> str:
        assert self.people is not None
        agent = await asyncio.to_thread(self.people.agent_for, person_of(ctx))
        return await agent.handle(msg, ctx)


def isolate(agent: Agent, cfg: Config, home: Path) -> IsolatedAgent:
    """agent, turned into one that runs each person's turns in their own workspace.
    Raises ConfigError when commands would run without the sandbox."""
    if cfg.tools.exec.sandbox == "none":
        raise ConfigError(
            'agents.defaults.isolation is "sender" but tools.exec.sandbox is "none", so a '
            'command could read every person\'s files; set tools.exec.sandbox to "bwrap" '
            '(or "auto") with bubblewrap installed'
        )
    shared = {f.name: getattr(agent, f.name) for f in fields(Agent)}
    return IsolatedAgent(**shared, people=People(cfg, home, agent))
