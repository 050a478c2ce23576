"""The gateway: channels, the message route and the local HTTP API under one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from nanobot import paths
from nanobot.bus import InboundMessage, MessageBus, OutboundMessage
from nanobot.config.loader import LoadInfo
from nanobot.config.schema import Config

log = logging.getLogger("nanobot.gateway")


class Gateway:
    """Owns the bus, the channels' supervisors, the dispatcher and the local API."""

    def __init__(self, cfg: Config, info: LoadInfo) -> None:
        self.cfg = cfg
        self.info = info
        self.channels: dict[str, object] = {}
        self.supervisors: list = []
        self._stop = asyncio.Event()

    def health(self) -> dict:
        states = {name: getattr(ch, "status", "unknown") for name, ch in self.channels.items()}
        ok = all(s == "running" for s in states.values())
        return {"status": "ok" if ok else "degraded", "channels": states}

    async def _deliver(self, msg: InboundMessage, reply: str) -> None:
        channel = self.channels.get(msg.channel)
        if channel is None:
            log.warning(
                "no %s channel to answer %s; dropping the reply", msg.channel, msg.session_key
            )
        else:
            try:
                await channel.send(OutboundMessage(msg.channel, msg.chat_id, reply))
            finally:
                stop_typing = getattr(channel, "stop_typing", None)
                if stop_typing:
                    stop_typing(msg.chat_id)
        await self.bus.ack(msg)

    async def _consume(self) -> None:
        while True:
            msg = await self.bus.inbound.get()
            channel = self.channels.get(msg.channel)
            start_typing = getattr(channel, "start_typing", None)
            if start_typing:
                start_typing(msg.chat_id)
            self.dispatcher.submit(msg, self._deliver)

    async def _api_turn(self, session: str, text: str) -> str:
        msg = InboundMessage(channel="http", sender_id="local-api", chat_id=session, content=text)
        return await self.dispatcher.turn(msg)

    async def serve(self) -> int:
        from nanobot import sdnotify
        from nanobot.api import LocalAPI
        from nanobot.channels.manager import Supervisor, build_channels
        from nanobot.dispatcher import Dispatcher
        from nanobot.runtime import build_agent
        from nanobot.security.access import open_channels
        from nanobot.security.audit import get_audit
        from nanobot.security.ratelimit import RateLimiter

        cfg = self.cfg
        loop = asyncio.get_running_loop()
        # Session and inbox file I/O runs in threads; size the pool to the turns that may run.
        turns = cfg.agents.defaults.max_concurrent_turns
        io_pool = ThreadPoolExecutor(turns + 8, thread_name_prefix="io")
        loop.set_default_executor(io_pool)
        agent = build_agent(cfg, self.info)
        from nanobot.providers.http import warm_up
        from nanobot.threadpool import prestart

        # Not during the first burst of messages, where it would hold the GIL for ~70 ms.
        await asyncio.to_thread(warm_up)
        # Threads for file I/O and model calls exist before the first burst of messages.
        await asyncio.to_thread(prestart, io_pool, min(turns, 64))
        await asyncio.to_thread(prestart, agent.executor, min(turns, 64))
        for name in open_channels(cfg):
            log.warning(
                "channel %s is enabled with an empty allowFrom: it is open to everyone — "
                "set channels.%s.allowFrom",
                name,
                name,
            )
        self.bus = MessageBus(paths.state_dir() / "inbox")
        rl = cfg.security.rate_limit
        limiter = RateLimiter(rl.messages_per_minute, rl.burst)
        self.channels = build_channels(cfg, self.bus, limiter, **self._channel_extras())
        self.dispatcher = Dispatcher(agent, cfg.agents.defaults.max_concurrent_turns)
        api = LocalAPI(cfg.gateway, loop, run_turn=self._api_turn, health=self.health)
        api.start()
        log.info("local API listening on http://%s:%d", cfg.gateway.host, api.port)
        for name, channel in self.channels.items():
            sup = Supervisor(name, channel)
            sup.start()
            self.supervisors.append(sup)
        requeued = await self.bus.requeue_pending()
        if requeued:
            log.info("re-queued %d message(s) left unanswered by the last run", requeued)
        consumer = asyncio.create_task(self._consume())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        get_audit().record("gateway_start", channels=sorted(self.channels), pid=os.getpid())
        watchdog = sdnotify.Watchdog()
        watchdog.start(loop)
        sdnotify.ready()
        log.info("gateway ready: channels %s", ", ".join(self.channels) or "none")

        await self._stop.wait()
        log.info("shutting down: no new turns; waiting up to %.0f s", cfg.gateway.shutdown_timeout)
        sdnotify.stopping()
        consumer.cancel()
        finished = await self.dispatcher.drain(cfg.gateway.shutdown_timeout)
        if not finished:
            log.warning("some turns did not finish in time; their messages stay in the inbox")
        for sup in self.supervisors:
            await sup.stop()
        api.stop()
        watchdog.stop()
        get_audit().record("gateway_stop", turns=self.dispatcher.turns_done, clean=finished)
        agent.executor.shutdown(wait=False, cancel_futures=True)
        log.info("gateway stopped")
        return 0

    def _channel_extras(self) -> dict:
        from nanobot.channels.telegram.botapi import transcriber_from_config

        return {"telegram": {"transcriber": transcriber_from_config(self.cfg)}}
