"""The channel table: builds the enabled channels and keeps each running under a supervisor."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
from typing import Any

from nanobot.backoff import Backoff
from nanobot.channels import CHANNELS
from nanobot.channels.base import Channel
from nanobot.config.schema import Config
from nanobot.errors import ConfigError
from nanobot.route.route import Route

log = logging.getLogger("nanobot.channels")


def build_channels(
    cfg: Config, route: Route, extras: dict[str, dict[str, Any]]
) -> dict[str, Channel]:
    """Instantiate every enabled channel; an enabled channel this build lacks is a config error.

    `extras` holds per-channel constructor arguments built from shared services (the Whisper
    transcriber for Telegram, …).
    """
    out: dict[str, Channel] = {}
    for field in dataclasses.fields(cfg.channels):
        name, section = field.name, getattr(cfg.channels, field.name)
        if not getattr(section, "enabled", False):
            continue
        target = CHANNELS.get(name)
        if target is None:
            raise ConfigError(
                f"channels.{name}.enabled is true but this version of nanobot has no {name} "
                f"channel — set channels.{name}.enabled to false"
            )
        module, cls = target.split(":")
        channel_cls = getattr(importlib.import_module(module), cls)
        out[name] = channel_cls(section, route, **extras.get(name, {}))
    return out


class Supervisor:
    """Runs channel.start() and restarts it with exponential backoff when it fails;
    `restarts` is shown by /healthz."""

    def __init__(self, name: str, channel: Channel, backoff: Backoff | None = None) -> None:
        self.name = name
        self.channel = channel
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.restarts = 0
        self._stopping = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"channel-{self.name}")

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self.channel.start()
                if self._stopping:
                    return
                failures = 0 if loop.time() - started > 60 else failures
                delay = self.backoff.delay(failures)
                log.warning("channel %s stopped by itself; restarting in %.0f s", self.name, delay)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — boundary: one failing channel never stops the others
                failures = 0 if loop.time() - started > 60 else failures  # it ran for a while
                delay = self.backoff.delay(failures)
                log.error("channel %s failed: %s; restarting in %.0f s", self.name, e, delay)
            self.restarts += 1
            failures += 1
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        try:
            await asyncio.wait_for(self.channel.stop(), timeout=5)
        except (TimeoutError, OSError) as e:
            log.warning("channel %s did not stop cleanly: %s", self.name, e)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
