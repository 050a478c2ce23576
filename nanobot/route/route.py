"""The public way in: `Route.accept` for channels (after their admission), `Route.submit` for
internal producers (cron, heartbeat, subagent reports), which skip allowFrom and nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from nanobot.config.schema import Config
from nanobot.route.admission import DUPLICATE, Admission, Verdict
from nanobot.route.dispatcher import Deliverer, Dispatcher, TurnFn
from nanobot.route.message import InboundMessage
from nanobot.route.store import Store
from nanobot.security.audit import get_audit
from nanobot.security.ratelimit import RateLimiter

log = logging.getLogger("nanobot.route")


class Route:
    """admission → durable inbox → `dispatch` (the dispatcher's submit, or a test's queue)."""

    def __init__(
        self,
        admission: Admission,
        store: Store | None,
        dispatch: Callable[[InboundMessage], object],
    ) -> None:
        self.admission = admission
        self.store = store
        self.dispatch = dispatch
        # Messages accepted in one turn of the event loop (a Telegram batch) go to disk
        # together: one thread hop and one write for all of them.
        self._intake: list[tuple[InboundMessage, asyncio.Future[bool]]] = []
        self._flushers: set[asyncio.Task] = set()

    async def accept(self, msg: InboundMessage) -> Verdict:
        """Make an admitted message durable and hand it on; DUPLICATE when already accepted.

        Returns once the message is on disk: the caller may then advance its cursor. Raises
        OSError when it cannot be stored (nothing was accepted).
        """
        if self.store is not None:
            loop = asyncio.get_running_loop()
            stored: asyncio.Future[bool] = loop.create_future()
            self._intake.append((msg, stored))
            if len(self._intake) == 1:
                task = loop.create_task(self._store_intake())
                self._flushers.add(task)
                task.add_done_callback(self._flushers.discard)
            if not await stored:
                return DUPLICATE
        self.dispatch(msg)
        return Verdict(True)

    async def _store_intake(self) -> None:
        """Journal what accept() queued, in one write; each waiter learns its own verdict."""
        await asyncio.sleep(0)  # the rest of this batch joins first
        batch, self._intake = self._intake, []
        get_audit().flush()  # the admission records of these messages come first
        try:
            verdicts = await asyncio.to_thread(self.store.accept_many, [m for m, _ in batch])
        except OSError as e:
            for _, stored in batch:
                if not stored.done():
                    stored.set_exception(e)
            return
        for (_, stored), ok in zip(batch, verdicts, strict=True):
            if not stored.done():
                stored.set_result(ok)

    async def submit(self, msg: InboundMessage) -> Verdict:
        """An internal producer's message: rate limit, audit and inbox like any other."""
        origin = str(msg.metadata.get("origin") or "internal")
        verdict = self.admission.check(msg.channel, msg.sender_id, None, exempt=origin)
        if not verdict:
            return verdict
        return await self.accept(msg)


def build_route(
    cfg: Config,
    run_turn: TurnFn,
    channels: Mapping[str, Deliverer],
    state: Path,
    *,
    compact: bool = True,
) -> tuple[Route, Dispatcher]:
    """The route with its store under `state`, delivering through `channels` (which the caller
    may fill in afterwards: channels need the route to be built). `compact`: the caller owns
    the state alone and may rewrite the journal at once."""
    store = Store(state, compact=compact)
    dispatcher = Dispatcher(run_turn, store, channels, cfg.agents.defaults.max_concurrent_turns)
    rl = cfg.security.rate_limit
    limiter = RateLimiter(rl.messages_per_minute, rl.burst)
    return Route(Admission(limiter), store, dispatcher.submit), dispatcher
