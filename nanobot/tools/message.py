"""The `message` tool: send text to the current chat now, without ending the turn.

For progress notes and answers in several parts. Another chat only when it is listed in
tools.message.allowedTargets ("channel:chat_id") and named in that channel's allowFrom;
never from a background run (cron, heartbeat, subagent) to anything but its own chat. Caps:
tools.message.maxPerTurn per turn, maxPerHour per chat. What was sent to the current chat is
remembered for the turn (by its context, forgotten with it) so that the final answer is not
sent a second time when it adds nothing (`already_sent`).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from nanobot.config.schema import Config
from nanobot.route.admission import printable
from nanobot.security.pathpolicy import PathPolicy, PathRefused
from nanobot.services import targets
from nanobot.services.internal import is_internal
from nanobot.tools.base import RATE_LIMITED, REFUSED_BY_PATH_POLICY, ToolContext, ToolResult

log = logging.getLogger("nanobot.tools")

MAX_CHARS = 8000
MAX_FILE = 45_000_000  # Telegram bots may upload up to 50 MB
_CHATS_REMEMBERED = 10_000  # per-hour windows kept (least recently used dropped)


class MessageTool:
    name = "message"
    description = (
        "Send a message to the user now, while you keep working (progress, or a long answer "
        "in parts). Without channel/chat_id it goes to the current chat. Do not repeat in "
        "your final answer what you already sent."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "content": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS},
            "file": {
                "type": "string",
                "description": "A file from the workspace to send along (the content is its "
                "caption); only to the current chat.",
            },
            "channel": {"type": "string"},
            "chat_id": {"type": "string"},
        },
        "required": ["content"],
        "additionalProperties": False,
    }

    def __init__(self, cfg: Config, policy: PathPolicy | None = None) -> None:
        self.cfg = cfg
        self.policy = policy  # where `file` may come from (None: no files)
        self.limits = cfg.tools.message
        self._hours: OrderedDict[str, deque[float]] = OrderedDict()

    async def execute(self, ctx: ToolContext, **kw: Any) -> ToolResult:
        text = kw["content"]
        channel = kw.get("channel") or ctx.channel
        chat_id = kw.get("chat_id") or ctx.chat_id
        here = (channel, chat_id) == (ctx.channel, ctx.chat_id)
        if ctx.outbox is None:
            return ToolResult.error("this conversation cannot send extra messages; just answer")
        if not here:
            problem = self._target_problem(ctx, channel, chat_id)
            if problem:
                log.warning("message tool: refused target %s:%s", channel, printable(chat_id))
                return ToolResult.error(problem)
        limit = self._over_limit(ctx)
        if limit:
            return ToolResult.error(limit, RATE_LIMITED)
        media: list[str] = []
        if kw.get("file"):
            if not here:
                return ToolResult.error(
                    "a file goes only to the current chat; omit channel/chat_id"
                )
            path = self._file(kw["file"])
            if isinstance(path, ToolResult):
                return path
            media.append(str(path))
        try:
            await ctx.outbox.send(
                text,
                channel=None if here else channel,
                chat_id=None if here else chat_id,
                media=media,
            )
        except ValueError as e:  # this chat's channel cannot carry files
            return ToolResult.error(f"{e}")
        self._count(ctx, text if here else "")
        return ToolResult(f"Sent to {channel}:{chat_id}.")

    def _file(self, raw: str) -> Path | ToolResult:
        """The real path of a regular workspace file the path policy allows, within MAX_FILE."""
        if self.policy is None:
            return ToolResult.error("sending files is not available here")
        try:
            path = self.policy.resolve(raw)
        except PathRefused as e:
            return ToolResult.error(str(e), REFUSED_BY_PATH_POLICY)
        try:
            st = os.stat(path)
        except OSError:
            return ToolResult.error(
                f"no file {raw!r} in the workspace; check the name with list_dir"
            )
        if not stat.S_ISREG(st.st_mode):
            return ToolResult.error(f"{raw!r} is not a regular file")
        if st.st_size > MAX_FILE:
            return ToolResult.error(
                f"{raw!r} is over {MAX_FILE // 1_000_000} MB; send a smaller file"
            )
        return path

    def _target_problem(self, ctx: ToolContext, channel: str, chat_id: str) -> str | None:
        if is_internal(ctx.sender_id):
            return "a background run may message only its own chat"
        if f"{channel}:{chat_id}" not in self.limits.allowed_targets:
            return (
                f"{channel}:{chat_id} is not in tools.message.allowedTargets; "
                "send to the current chat instead (omit channel and chat_id)"
            )
        return targets.target_error(self.cfg, channel, chat_id)

    def _over_limit(self, ctx: ToolContext) -> str | None:
        sent = ctx.sent_here
        if len(sent) >= self.limits.max_per_turn:
            return (
                f"already {len(sent)} messages in this turn (tools.message.maxPerTurn); "
                "put the rest in your final answer"
            )
        window = self._hours.get(ctx.session_key)
        now = time.monotonic()
        while window and now - window[0] > 3600:
            window.popleft()
        if window is not None and len(window) >= self.limits.max_per_hour:
            return (
                f"already {len(window)} messages to this chat in the last hour "
                "(tools.message.maxPerHour); put the rest in your final answer"
            )
        return None

    def _count(self, ctx: ToolContext, text: str) -> None:
        ctx.sent_here.append(text)
        window = self._hours.setdefault(ctx.session_key, deque())
        self._hours.move_to_end(ctx.session_key)
        window.append(time.monotonic())
        while len(self._hours) > _CHATS_REMEMBERED:
            self._hours.popitem(last=False)


def already_sent(ctx: ToolContext, final: str) -> bool:
    """Whether `final` adds nothing to what this turn already sent to its own chat."""
    sent = [t.strip() for t in ctx.sent_here if t.strip()]
    if not sent:
        return False
    body = final.strip()
    return not body or any(body in t for t in sent) or body == "\n\n".join(sent)
