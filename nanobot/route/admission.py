"""Admission: allowFrom (or the API token, checked by its channel) → rate limit → audit event."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nanobot.security.access import is_allowed
from nanobot.security.audit import get_audit
from nanobot.security.ratelimit import RateLimiter

log = logging.getLogger("nanobot.channels")


def printable(value: str) -> str:
    """A user-supplied value made safe for one log line (control characters become '?')."""
    return "".join(c if c.isprintable() else "?" for c in value)


@dataclass(frozen=True)
class Verdict:
    """The admission decision: `admitted`, or why not; truthy when admitted."""

    admitted: bool
    reason: str = ""  # "denied", "rate_limited", "duplicate"
    retry_after: float | None = None
    notify: bool = False  # tell the sender (first refusal of a rate-limit window)

    def __bool__(self) -> bool:
        return self.admitted


ADMITTED = Verdict(True)
DENIED = Verdict(False, "denied")
DUPLICATE = Verdict(False, "duplicate")


class Admission:
    """The checks every inbound message passes, in this order, whatever produced it."""

    def __init__(self, limiter: RateLimiter | None) -> None:
        self.limiter = limiter

    def check(
        self,
        channel: str,
        sender_id: str,
        allow_from: list[str] | None,
        *,
        exempt: str = "authenticated",
    ) -> Verdict:
        """allow_from None = an internal producer or a channel that authenticated the sender
        itself (the API's token): exempt from allowFrom only; `exempt` is the audited reason."""
        if allow_from is not None and not is_allowed(channel, sender_id, allow_from):
            log.warning("Access denied for sender %s on channel %s", printable(sender_id), channel)
            self._audit(channel, sender_id, "denied", "not in allowFrom")
            return DENIED
        if self.limiter is not None:
            decision = self.limiter.check(f"{channel}:{sender_id}")
            if not decision.allowed:
                log.warning(
                    "Rate limit exceeded for sender %s on channel %s (retry after %.0f s)",
                    printable(sender_id),
                    channel,
                    decision.retry_after or 0,
                )
                get_audit().record_soon(
                    "rate_limit", channel=channel, sender=sender_id, kind="message"
                )
                return Verdict(False, "rate_limited", decision.retry_after, decision.notify)
        reason = exempt if allow_from is None else "allowFrom" if allow_from else "allowFrom empty"
        self._audit(channel, sender_id, "allowed", reason)
        return ADMITTED

    @staticmethod
    def _audit(channel: str, sender_id: str, decision: str, reason: str) -> None:
        # Written with the other decisions of this pass of the event loop, before any of
        # their messages is stored (Route flushes first).
        get_audit().record_soon(
            "access", channel=channel, sender=sender_id, decision=decision, reason=reason
        )
