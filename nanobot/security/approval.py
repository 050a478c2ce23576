"""Approvals: a risky tool call waits until a person in the origin chat approves it.

One `Approvals` object serves the whole process (the tool table's Services holds it; the
registry asks it before every call; channels hand it the answers). The contract:

  * A request goes to the chat the turn came from, showing exactly what will run and a short
    code. Telegram shows buttons (channels/telegram/approve.py); other chats answer with
    `/approve CODE` or `/deny CODE` (BaseChannel.handle_inbound, after admission); the terminal
    asks y/N (TerminalChannel.ask_approval).
  * A code is single-use, bound to its chat and to a hash of the tool name and arguments; the
    call that runs is hashed again and must match. No answer within timeoutSeconds = denied.
  * Who may answer: tools.approval.approvers[channel], else that channel's allowFrom, else
    (an open channel) only the requester; with requireOtherApprover the requester's own answer
    never counts.
  * Nothing is persisted: after a restart every waiting request is void, its call never runs,
    and the turn that retries it needs a fresh approval.
  * Every request, answer (and who gave it), refused answer and expiry is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nanobot.config.schema import Config
from nanobot.route.admission import printable
from nanobot.security.access import is_allowed
from nanobot.security.approval_rules import READ_ONLY, Rules
from nanobot.security.audit import get_audit
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.redact import redact
from nanobot.tools.base import ToolContext, ToolResult

log = logging.getLogger("nanobot.approval")

DENIED_BY_USER = "denied by user"
EXPIRED = "approval expired"
UNAVAILABLE = "approval unavailable"
ONCE, SESSION, DENY = "once", "session", "deny"
MAX_SHOWN = 3000  # characters of a call a request may show; longer calls are refused
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
_CODE_LEN = 6
_COMMAND = re.compile(r"^/(approve|deny)(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)


class Prompter(Protocol):
    """A channel that asks its one local user directly (the terminal's y/N)."""

    async def ask_approval(self, text: str) -> bool: ...


@dataclass
class _Pending:
    rid: str  # the audit trail's name for the request (never the code)
    code: str
    call_hash: str
    tool: str
    channel: str
    chat_id: str
    requester: str
    session_key: str
    text: str
    future: asyncio.Future


def call_hash(tool: str, args: dict[str, Any]) -> str:
    """The call's identity: tool name and arguments, canonically serialised."""
    blob = json.dumps([tool, args], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_answer(content: str) -> tuple[str, str] | None:
    """(ONCE or DENY, code) for "/approve CODE" / "/deny CODE", else None. A bare "/approve"
    gives code ""."""
    m = _COMMAND.match(content.strip())
    if m is None:
        return None
    return (ONCE if m.group(1).lower() == "approve" else DENY), (m.group(2) or "").upper()


def _person(sender: str) -> str:
    """The stable part of a sender id ("123|alice" → "123")."""
    return sender.split("|", 1)[0].strip().lower()


class Approvals:
    """Pending approval requests of this process (in memory only) and the rules that make them."""

    def __init__(self, cfg: Config, policy: PathPolicy) -> None:
        self.cfg = cfg
        self.settings = cfg.tools.approval
        self.mode = self.settings.mode
        self.rules = Rules(policy, self.settings.rules)
        self._pending: dict[str, _Pending] = {}  # code → request
        self._session_ok: set[tuple[str, str]] = set()  # (session_key, call hash)
        self._channels: dict[str, Any] = {}  # name → channel that can carry a request
        self._prompters: dict[str, Prompter] = {}

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, channels: Iterable[Any]) -> None:
        """Let these channels carry requests and answers: each gets `.approvals = self`.
        A channel with ask_approval() is asked directly; one with answers_approvals False
        (the local API) cannot carry a request, so calls from it that need one are denied."""
        for ch in channels:
            ch.approvals = self
            if hasattr(ch, "ask_approval"):
                self._prompters[ch.name] = ch
            elif getattr(ch, "answers_approvals", True):
                self._channels[ch.name] = ch

    # -- the registry's side -----------------------------------------------------------------

    async def check(self, tool: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult | None:
        """None when the call may run now; otherwise the refusal to return to the model.
        Waits (only this turn) while a person decides."""
        if self.mode == "off" or tool in READ_ONLY or self.rules.hard_denied(tool, args):
            return None  # (a hard deny: the tool refuses it, whatever anyone would answer)
        if self.mode == "always":
            reason = "tools.approval.mode is always"
        else:
            reason = self.rules.reason_for(tool, args, (ctx.channel, ctx.chat_id))
        if reason is None:
            return None
        digest = call_hash(tool, args)
        if (ctx.session_key, digest) in self._session_ok:
            get_audit().record(
                "approval_reused", tool=tool, call=digest[:12], session=ctx.session_key
            )
            return None
        shown = self._describe(tool, args)
        if len(shown) > MAX_SHOWN:
            return self._unavailable(
                tool, ctx, "the call is too long to show for approval; split it into smaller steps"
            )
        prompter = self._prompters.get(ctx.channel)
        if prompter is None and (ctx.channel not in self._channels or ctx.outbox is None):
            return self._unavailable(
                tool, ctx, f"the {ctx.channel} channel cannot ask a person to approve it"
            )
        pending = self._new(tool, digest, ctx, reason, shown, prompter is not None)
        answer = await self._wait(pending, ctx, prompter)
        if answer is None:
            return ToolResult.error(
                f"nobody approved this call within {self.settings.timeout_seconds} s, so it did "
                "not run (the approval request expired). Do not retry it in another form; tell "
                "the user it needs their approval and ask how to proceed.",
                EXPIRED,
            )
        scope, by = answer
        if scope == DENY:
            return ToolResult.error(
                "the user refused this call; it did not run. Do not try the same action again "
                "in another form; ask the user what they want instead.",
                DENIED_BY_USER,
            )
        if call_hash(tool, args) != digest:  # the approved call is the one that runs
            return self._unavailable(tool, ctx, "the call changed after it was approved")
        if scope == SESSION:
            self._session_ok.add((ctx.session_key, digest))
        return None

    def _describe(self, tool: str, args: dict[str, Any]) -> str:
        if tool == "exec":
            ex = self.cfg.tools.exec
            network = {True: "on", False: "off"}.get(ex.network, f"{ex.network} only")
            sandbox = "off" if ex.sandbox == "none" else ex.sandbox
            lines = [
                f"Command: {args.get('command', '')}",
                f"Working directory: {args.get('working_dir') or 'the workspace'}",
                f"Sandbox: {sandbox} · network: {network}",
            ]
            return redact("\n".join(lines))
        shown = json.dumps(args, ensure_ascii=False, indent=1, default=str)
        return redact(f"Tool: {tool}\nArguments: {shown}")

    def _new(
        self, tool: str, digest: str, ctx: ToolContext, reason: str, shown: str, local: bool
    ) -> _Pending:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LEN))
        while code in self._pending:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LEN))
        how = (
            "Answer y or n." if local else f"Reply /approve {code} to run it once, or /deny {code}."
        )
        text = (
            f"Approval needed ({reason}):\n{shown}\n"
            f"Code {code} — expires in {self.settings.timeout_seconds} s. {how}"
        )
        pending = _Pending(
            rid=secrets.token_hex(4),
            code=code,
            call_hash=digest,
            tool=tool,
            channel=ctx.channel,
            chat_id=ctx.chat_id,
            requester=ctx.sender_id,
            session_key=ctx.session_key,
            text=text,
            future=asyncio.get_running_loop().create_future(),
        )
        get_audit().record(
            "approval_request",
            request=pending.rid,
            tool=tool,
            call=digest[:12],
            reason=reason,
            channel=ctx.channel,
            chat=ctx.chat_id,
            requester=ctx.sender_id,
        )
        return pending

    async def _wait(
        self, p: _Pending, ctx: ToolContext, prompter: Prompter | None
    ) -> tuple[str, str] | None:
        """(scope, who answered), or None when the request expired."""
        timeout = self.settings.timeout_seconds
        if prompter is not None:
            try:
                ok = await asyncio.wait_for(prompter.ask_approval(p.text), timeout)
            except TimeoutError:
                return self._expired(p)
            self._audit_answer(p, ONCE if ok else DENY, ctx.sender_id)
            return (ONCE if ok else DENY), ctx.sender_id
        self._pending[p.code] = p
        try:
            await ctx.outbox.send(p.text)
            return await asyncio.wait_for(asyncio.shield(p.future), timeout)
        except TimeoutError:
            self._pending.pop(p.code, None)
            await self._tell(ctx, f"Approval request {p.code} expired; it did not run.")
            return self._expired(p)
        except OSError as exc:
            log.warning("could not send an approval request to %s: %s", p.channel, exc)
            return self._expired(p)
        finally:
            self._pending.pop(p.code, None)  # single use, whatever happened

    def _expired(self, p: _Pending) -> None:
        get_audit().record("approval_expired", request=p.rid, tool=p.tool, call=p.call_hash[:12])
        log.info("approval request %s for %s expired", p.rid, p.tool)
        return None

    async def _tell(self, ctx: ToolContext, text: str) -> None:
        try:
            await ctx.outbox.send(text)
        except OSError as exc:
            log.warning("could not tell %s that a request expired: %s", ctx.channel, exc)

    def _unavailable(self, tool: str, ctx: ToolContext, why: str) -> ToolResult:
        get_audit().record(
            "approval_unavailable", tool=tool, channel=ctx.channel, chat=ctx.chat_id, reason=why
        )
        return ToolResult.error(
            f"this call needs a person's approval (tools.approval.mode is {self.mode}) but "
            f"{why}; it did not run. Tell the user, and do not retry it in another form.",
            UNAVAILABLE,
        )

    # -- the channels' side ------------------------------------------------------------------

    def answer(
        self,
        channel: str,
        chat_id: str,
        sender_id: str,
        code: str,
        scope: str,
        call_prefix: str | None = None,
    ) -> tuple[bool, str]:
        """Apply one answer from an admitted sender: (taken, the text to show them).

        `call_prefix` (Telegram buttons) must match the start of the request's call hash.
        """
        code = code.strip().upper()
        p = self._pending.get(code)
        problem = None
        if p is None or (p.channel, p.chat_id) != (channel, str(chat_id)):
            problem = "unknown code"  # also: another chat's code (not revealed as such)
        elif call_prefix is not None and (
            len(call_prefix) < 8 or not p.call_hash.startswith(call_prefix)
        ):
            problem = "code and call do not match"
        elif p.future.done():
            problem = "already answered"
        elif not self._may_approve(p, sender_id):
            problem = "not an approver"
        elif self.settings.require_other_approver and _person(sender_id) == _person(p.requester):
            problem = "requester may not approve (requireOtherApprover)"
        if problem is not None:
            get_audit().record(
                "approval_refused",
                channel=channel,
                chat=str(chat_id),
                sender=sender_id,
                reason=problem,
                request=p.rid if p else "",
            )
            log.warning(
                "approval answer refused (%s) from %s:%s", problem, channel, printable(sender_id)
            )
            if problem in ("unknown code", "already answered", "code and call do not match"):
                text = f"No request with code {code[:12]} waits in this chat (answered or expired)."
            elif problem == "not an approver":
                text = "Only an approver can answer this request (tools.approval.approvers)."
            else:
                text = "Another approver has to answer this request (requireOtherApprover)."
            return False, text
        self._pending.pop(code, None)
        p.future.set_result((scope, sender_id))
        self._audit_answer(p, scope, sender_id)
        return True, {
            ONCE: f"Approved {code} once; running it.",
            SESSION: f"Approved {code} for this session; running it.",
        }.get(scope, f"Denied {code}; it will not run.")

    def _may_approve(self, p: _Pending, sender_id: str) -> bool:
        approvers = self.settings.approvers.get(p.channel)
        if not approvers:
            ch = self._channels.get(p.channel)
            approvers = ch.allow_list() if ch is not None else None
        if not approvers:  # an open channel: nobody but the requester is known
            return _person(sender_id) == _person(p.requester)
        return is_allowed(p.channel, sender_id, list(approvers))

    def _audit_answer(self, p: _Pending, scope: str, by: str) -> None:
        get_audit().record(
            "approval_answer",
            request=p.rid,
            tool=p.tool,
            call=p.call_hash[:12],
            decision={ONCE: "approved once", SESSION: "approved for session"}.get(scope, "denied"),
            by=by,
            channel=p.channel,
            chat=p.chat_id,
        )

    def buttons_for(self, channel: str, chat_id: str, text: str) -> tuple[str, str] | None:
        """(code, call-hash prefix) when `text` is a waiting request for this chat (Telegram
        attaches buttons to it), else None."""
        for p in self._pending.values():
            if (p.channel, p.chat_id, p.text) == (channel, str(chat_id), text):
                return p.code, p.call_hash[:12]
        return None

    def waiting(self) -> int:
        return len(self._pending)
