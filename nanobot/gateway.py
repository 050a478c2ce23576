"""The gateway: channels, the message route and the local HTTP API under one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from nanobot import memtune, paths, sdnotify, workers
from nanobot.api import CONNECTIONS, LocalAPI
from nanobot.channels.base import Channel
from nanobot.channels.manager import Supervisor, build_channels
from nanobot.channels.request import LocalAPIChannel
from nanobot.config.loader import LoadInfo, workspace_path
from nanobot.config.schema import Config
from nanobot.route.route import build_route
from nanobot.runtime import build_agent
from nanobot.security.access import open_channels
from nanobot.security.audit import get_audit
from nanobot.services.automation import Automation

log = logging.getLogger("nanobot.gateway")


def io_threads(turns: int) -> int:
    """Threads for file I/O: enough for every turn's writes to overlap, capped (each thread
    costs a stack and a malloc arena, and the disk does not get faster)."""
    return min(turns + 8, 32)


class Gateway:
    """Owns the channels and their supervisors, the route and the local API."""

    def __init__(self, cfg: Config, info: LoadInfo) -> None:
        self.cfg = cfg
        self.info = info
        self.channels: dict[str, Channel] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self._stop = asyncio.Event()

    def health(self) -> dict:
        states = {name: sup.channel.status for name, sup in self.supervisors.items()}
        # "running" or "running: <detail>" (e-mail adds IDLE/polling and its last mail)
        ok = all(s == "running" or s.startswith("running:") for s in states.values())
        restarts = {name: sup.restarts for name, sup in self.supervisors.items() if sup.restarts}
        out: dict = {"status": "ok" if ok else "degraded", "channels": states}
        if restarts:
            out["restarts"] = restarts
        return out

    def _extras(self) -> dict:
        from nanobot.providers.transcribe import transcriber_from_config

        transcriber = transcriber_from_config(self.cfg)
        ch = self.cfg.channels
        progress = {"send_progress": ch.send_progress, "send_tool_hints": ch.send_tool_hints}
        return {
            "telegram": {"transcriber": transcriber, **progress},
            "whatsapp": {"transcriber": transcriber},
        }

    async def _warm_up(self, turns: int) -> None:
        # Threads for file I/O exist before the first burst of messages.
        # (min(turns, 16) < the pool: this call itself takes one of its threads)
        await asyncio.to_thread(
            workers.prestart, workers.pool("io", io_threads(turns)), min(turns, 16)
        )

    async def serve(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        turns = cfg.agents.defaults.max_concurrent_turns
        # Session and inbox file I/O runs in threads, a bounded number of them.
        loop.set_default_executor(workers.pool("io", io_threads(turns)))
        agent = build_agent(cfg, self.info)
        await self._warm_up(turns)
        for name in open_channels(cfg):
            log.warning(
                "channel %s is enabled with an empty allowFrom: it is open to everyone — "
                "set channels.%s.allowFrom",
                name,
                name,
            )
        # -- automation (cron, heartbeat, subagents): its turn function wraps agent.handle --
        automation = Automation(cfg, agent, workspace_path(cfg))
        route, dispatcher = build_route(cfg, automation.turn, self.channels, paths.state_dir())
        self.channels.update(build_channels(cfg, route, self._extras()))
        api_channel = LocalAPIChannel(cfg.gateway, route)
        self.channels[api_channel.name] = api_channel
        # -- approvals (tools.approval): the chat channels carry requests and answers --
        if agent.tools.approvals is not None:
            agent.tools.approvals.attach(self.channels.values())
        # Every turn may be an API request waiting for its answer, with room for /healthz.
        connections = max(CONNECTIONS, turns + 16)
        api = LocalAPI(cfg.gateway, loop, api_channel, self.health, connections=connections)
        api.start()
        if cfg.gateway.token:
            log.info("local API listening on http://%s:%d", cfg.gateway.host, api.port)
        else:
            log.info(
                "local API on http://%s:%d serves /healthz only: the chat API is off until "
                "gateway.token is set",
                cfg.gateway.host,
                api.port,
            )
        for name, channel in self.channels.items():
            if channel is api_channel:
                continue
            self.supervisors[name] = Supervisor(name, channel)
            self.supervisors[name].start()
        # -- automation: internal producers submit to the route from here on --
        await automation.start(route, dispatcher)
        resent, queued = await dispatcher.recover()
        if resent or queued:
            log.info(
                "after the last run: %d stored repl(ies) sent again (possible duplicates), "
                "%d unanswered message(s) queued",
                resent,
                queued,
            )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        get_audit().record("gateway_start", channels=sorted(self.supervisors), pid=os.getpid())
        watchdog = sdnotify.Watchdog()
        watchdog.start(loop)
        ticker = asyncio.create_task(_every_minute())
        sdnotify.ready()
        log.info("gateway ready: channels %s", ", ".join(self.supervisors) or "none")

        await self._stop.wait()
        log.info("shutting down: no new turns; waiting up to %.0f s", cfg.gateway.shutdown_timeout)
        sdnotify.stopping()
        # -- automation: no new jobs, beats or background tasks (cut-off tasks are reported
        # at the next start) --
        await automation.stop()
        finished = await dispatcher.drain(cfg.gateway.shutdown_timeout)
        if not finished:
            log.warning("some turns did not finish in time; their messages stay in the inbox")
        for sup in self.supervisors.values():
            await sup.stop()
        api.stop()
        watchdog.stop()
        ticker.cancel()
        if route.store is not None:
            route.store.close()
        get_audit().record("gateway_stop", turns=dispatcher.turns_done, clean=finished)
        workers.shutdown()
        log.info("gateway stopped")
        return 0


async def _every_minute(every: float = 60.0) -> None:
    """Close due sealing epochs of the audit trail even while nothing is recorded; give the
    kernel back the memory pages the last minute's messages left free."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(_minute_work)


def _minute_work() -> None:
    get_audit().tick()
    memtune.release()
