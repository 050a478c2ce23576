"""The heartbeat: every interval, the tasks in the workspace's HEARTBEAT.md get a turn.

HEARTBEAT.md is read with the safe workspace reader (no links, regular file, size-capped). A
file with no tasks — only headings, HTML comments, blank lines — costs no model call. The
agent can write HEARTBEAT.md, so its tasks are treated as the user's instructions only within
the limits every turn has (same tools, guard, sandbox, path policy; no cron, no spawn).
The turn runs in the session "heartbeat", cut to its last few exchanges before every beat;
an answer containing HEARTBEAT_OK sends nothing, any other goes to the configured chat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time

from nanobot.agent.loop import Agent, turn_failed
from nanobot.config.schema import Config
from nanobot.route.message import InboundMessage
from nanobot.security.audit import get_audit
from nanobot.security.wsread import WorkspaceReader
from nanobot.services import targets
from nanobot.services.internal import Submitter, keep_last
from nanobot.tools.base import ToolContext

log = logging.getLogger("nanobot.heartbeat")

FILE = "HEARTBEAT.md"
MAX_BYTES = 64 * 1024
OK = "HEARTBEAT_OK"
SESSION = "heartbeat"
PROMPT = (
    "[Heartbeat: a periodic check, not a message from the user. Below are the tasks from "
    f"{FILE} in the workspace, which the user keeps (the agent can edit it too). Do what is due "
    f"within your usual limits. If nothing needs the user's attention, answer exactly {OK}; "
    "otherwise answer with what the user should know.]\n\n{tasks}"
)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def tasks_in(text: str | None) -> str:
    """The task lines of HEARTBEAT.md ("" when it holds only headings, comments, blanks)."""
    if not text:
        return ""
    lines = [ln.rstrip() for ln in _COMMENT.sub("", text).splitlines()]
    return "\n".join(ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def interval_seconds(cfg: Config) -> int:
    """gateway.heartbeat.intervalS (nanobot's key) when set, else heartbeatMinutes; 0 = off."""
    hb = cfg.gateway.heartbeat
    if not hb.enabled:
        return 0
    return hb.interval_s or cfg.agents.defaults.heartbeat_minutes * 60


def target(cfg: Config) -> tuple[tuple[str, str] | None, str]:
    """(channel, chat) the heartbeat reports to, or (None, why not and the fix)."""
    hb = cfg.gateway.heartbeat
    if not hb.channel and not hb.chat_id:
        found = targets.default_target(cfg)
        if found is None:
            return None, "set gateway.heartbeat.channel and gateway.heartbeat.chatId"
        return found, ""
    chans = targets.push_channels(cfg)
    channel = hb.channel or (chans[0] if len(chans) == 1 else "")
    problem = targets.target_error(cfg, channel, hb.chat_id)
    return (None, f"gateway.heartbeat: {problem}") if problem else ((channel, hb.chat_id), "")


class Heartbeat:
    """Owns the beat loop; `turn` is the heartbeat branch of the gateway's turn function."""

    def __init__(
        self, cfg: Config, route: Submitter, agent: Agent, reader: WorkspaceReader, where
    ) -> None:
        self.route = route
        self.agent = agent
        self.reader = reader
        self.where: tuple[str, str] = where
        self.every = interval_seconds(cfg)
        self.beats = 0
        self.skipped = 0  # beats without tasks: no model call
        self._busy = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.beat()
            except OSError as e:  # disk full: the next beat tries again
                log.error("heartbeat: could not queue a beat: %s", e)

    async def beat(self) -> bool:
        """One beat: True when a turn was queued."""
        if self._busy:
            log.info("heartbeat: the previous beat is still running; this one is skipped")
            return False
        tasks = tasks_in(await asyncio.to_thread(self.reader.read_text, FILE))
        if not tasks:
            self.skipped += 1
            log.debug("heartbeat: %s has no tasks; no model call", FILE)
            return False
        channel, chat = self.where
        msg = InboundMessage(
            channel=channel,
            sender_id="heartbeat:gateway",
            chat_id=chat,
            content=PROMPT.format(tasks=tasks),
            metadata={"origin": "heartbeat", "dedupe_key": f"heartbeat-{time.time_ns()}"},
        )
        self._busy = True  # before the turn can start (and end)
        try:
            verdict = await self.route.submit(msg)
        except OSError:
            self._busy = False
            raise
        self._busy = bool(verdict)
        self.beats += 1
        return bool(verdict)

    async def turn(self, msg: InboundMessage, ctx: ToolContext) -> str:
        """The beat's turn in the bounded heartbeat session; "" when there is nothing to say."""
        try:
            await asyncio.to_thread(keep_last, self.agent.sessions, SESSION)
            # progress=None: nothing streams to the chat before we know whether to send it
            inner = dataclasses.replace(ctx, session_key=SESSION, progress=None)
            text = await self.agent.handle(msg, inner)
        except Exception:  # boundary: a failed beat is logged, never sent to the user
            log.exception("heartbeat: the beat's turn failed")
            text, status = "", "failed"
        else:
            failed = turn_failed(text)
            quiet = failed or OK in text or not text.strip()
            status = "failed" if failed else "quiet" if quiet else "sent"
            text = "" if quiet else text
        finally:
            self._busy = False
        log.info("heartbeat: beat finished: %s", status)
        get_audit().record("heartbeat", status=status, chat=msg.chat_id)
        return text
