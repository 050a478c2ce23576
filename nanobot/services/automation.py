"""The gateway's automation: the scheduler, the heartbeat and the subagents around one route.

`Automation.turn` is the turn function the gateway gives its route. It sends each message to
the one place that answers it, by origin:
  "cron"      → CronService.turn (the job's own session; sent only when worth sending)
  "heartbeat" → Heartbeat.turn (its bounded session; HEARTBEAT_OK sends nothing)
  anything else (a user, a subagent's report) → `/tasks` and `/stop ID`, else Agent.handle in
  the chat's own session; a final answer that only repeats what the message tool already
  sent to the chat comes back empty, and an empty reply is sent as nothing.
An internal run's reply is only ever an outgoing message: it never re-enters as a new turn.
"""

from __future__ import annotations

import logging

from nanobot import paths
from nanobot.agent.loop import Agent
from nanobot.agent.subagents import Subagents
from nanobot.config.schema import Config
from nanobot.errors import ConfigError
from nanobot.route.message import InboundMessage
from nanobot.security.wsread import WorkspaceReader
from nanobot.services import cronexpr, heartbeat
from nanobot.services.cron import CronService
from nanobot.services.heartbeat import Heartbeat
from nanobot.services.internal import Sender, Submitter
from nanobot.services.jobs import JobStore
from nanobot.tools.base import ToolContext
from nanobot.tools.message import already_sent

log = logging.getLogger("nanobot.gateway")


class Automation:
    """Built before the route (it is the route's turn function), started once the route is."""

    def __init__(self, cfg: Config, agent: Agent, workspace) -> None:
        try:
            cronexpr.zone(cfg.agents.defaults.timezone)
        except ValueError as e:
            raise ConfigError(f"agents.defaults.timezone: {e}") from None
        self.cfg = cfg
        self.agent = agent
        self.workspace = workspace
        spawn = agent.tools.get("spawn")
        self.subagents: Subagents | None = getattr(spawn, "manager", None)
        self.cron: CronService | None = None
        self.heartbeat: Heartbeat | None = None

    async def turn(self, msg: InboundMessage, ctx: ToolContext) -> str:
        origin = msg.metadata.get("origin")
        if origin == "cron" and self.cron is not None:
            return await self.cron.turn(msg, ctx)
        if origin == "heartbeat":
            if self.heartbeat is None:
                log.info("heartbeat: a stored beat from an earlier run dropped (heartbeat is off)")
                return ""
            return await self.heartbeat.turn(msg, ctx)
        if origin is None and self.subagents is not None:
            answer = self.subagents.command(msg.channel, msg.chat_id, msg.content)
            if answer is not None:
                return answer
        text = await self.agent.handle(msg, ctx)
        if already_sent(ctx, text):
            return ""
        return text

    async def start(self, route: Submitter, sender: Sender) -> None:
        """Start the scheduler and the heartbeat; attach the subagents; tell chats whose
        background task an earlier run cut off."""
        cfg = self.cfg
        self.cron = CronService(cfg, JobStore(), route, self.agent)
        self.cron.start()
        every = heartbeat.interval_seconds(cfg)
        where, why = heartbeat.target(cfg)
        if every and where is not None:
            reader = WorkspaceReader(self.workspace, heartbeat.MAX_BYTES)
            self.heartbeat = Heartbeat(cfg, route, self.agent, reader, where)
            self.heartbeat.start()
            log.info("heartbeat: every %d s, findings to %s:%s", every, *where)
        elif every:
            log.warning("heartbeat: off — no chat to report to: %s", why)
        else:
            log.info("heartbeat: off (agents.defaults.heartbeatMinutes is 0)")
        if self.subagents is not None:
            self.subagents.attach(cfg, self.agent, route, sender, paths.state_dir())
            told = await self.subagents.report_interrupted()
            if told:
                log.warning("%d background task(s) were cut off by the last stop; chats told", told)

    async def stop(self) -> None:
        """No new runs or beats; running subagents are cancelled (and reported at next start)."""
        if self.cron is not None:
            await self.cron.stop()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.subagents is not None and self.subagents.attached:
            await self.subagents.shutdown()
