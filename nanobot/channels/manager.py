"""Builds the enabled channels and keeps each one running under its own supervisor."""

from __future__ import annotations

import asyncio
import importlib
import logging
import random

from nanobot.config.schema import Config
from nanobot.errors import ConfigError

log = logging.getLogger("nanobot.channels")

# channel name → "module:Class"; a channel missing here cannot be enabled.
CHANNELS = {
    "telegram": "nanobot.channels.telegram.channel:TelegramChannel",
    "whatsapp": "nanobot.channels.whatsapp:WhatsAppChannel",
}


def build_channels(cfg: Config, bus, limiter, **extras) -> dict[str, object]:
    """Instantiate every enabled channel; an enabled channel this build lacks is a config error."""
    out = {}
    for name in ("telegram", "whatsapp", "email"):
        section = getattr(cfg.channels, name)
        if not section.enabled:
            continue
        target = CHANNELS.get(name)
        if target is None:
            raise ConfigError(
                f"channels.{name}.enabled is true but this version of nanobot has no {name} "
                f"channel yet — set channels.{name}.enabled to false"
            )
        module, cls = target.split(":")
        channel_cls = getattr(importlib.import_module(module), cls)
        out[name] = channel_cls(section, bus, limiter=limiter, **extras.get(name, {}))
    return out


class Supervisor:
    """Runs channel.start() and restarts it with exponential backoff when it fails."""

    def __init__(
        self, name: str, channel, base_delay: float = 1.0, max_delay: float = 60.0
    ) -> None:
        self.name = name
        self.channel = channel
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.restarts = 0
        self._stopping = False
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"channel-{self.name}")

    async def _run(self) -> None:
        delay = self.base_delay
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self.channel.start()
                if self._stopping:
                    return
                log.warning("channel %s stopped by itself; restarting", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — boundary: one failing channel never stops the others
                log.error("channel %s failed: %s; restarting in %.0f s", self.name, e, delay)
            if loop.time() - started > 60:
                delay = self.base_delay  # it ran for a while: start counting again
            self.restarts += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.max_delay)

    async def stop(self) -> None:
        self._stopping = True
        try:
            await asyncio.wait_for(self.channel.stop(), timeout=5)
        except (TimeoutError, OSError) as e:
            log.warning("channel %s did not stop cleanly: %s", self.name, e)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
