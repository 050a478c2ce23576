"""The Node.js WhatsApp bridge as a child of the gateway (channels.whatsapp.manageBridge).

The bridge gets the token in its environment (never on the command line), listens on the
loopback port of bridgeUrl, keeps its auth state in NANOBOT_HOME/whatsapp-auth, and is
restarted with backoff when it exits. Its log lines go to the gateway's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from nanobot import paths
from nanobot.errors import ConfigError

log = logging.getLogger("nanobot.channels.whatsapp.bridge")

BRIDGE_DIR = Path(__file__).resolve().parent.parent / "bridge"
# Settings a test or an operator may hand through to the bridge (never the token).
PASSTHROUGH = ("BRIDGE_FAKE_WHATSAPP", "BRIDGE_LOG_LEVEL", "BRIDGE_QUEUE_MAX", "BRIDGE_BAILEYS_LOG")


def loopback_port(url: str) -> int:
    """The port of a ws://localhost or ws://127.x URL; ConfigError for anything else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "ws" or not loopback:
        raise ConfigError(
            f"channels.whatsapp.manageBridge needs a ws://127.0.0.1:PORT bridgeUrl, not {url!r}; "
            "set manageBridge to false to use a bridge run elsewhere (e.g. by systemd)"
        )
    return parts.port or 80


def node_binary() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise ConfigError(
            "WhatsApp needs Node.js >= 18 for its bridge: install it (apt install nodejs npm)"
        )
    return node


def check_built(bridge_dir: Path = BRIDGE_DIR) -> None:
    if not (bridge_dir / "node_modules").is_dir():
        raise ConfigError(
            f"the WhatsApp bridge in {bridge_dir} is not built: run `nanobot channels login "
            "whatsapp` (or `npm ci --ignore-scripts` there)"
        )


def bridge_env(token: str, port: int) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(paths.home())),
        "NANOBOT_HOME": str(paths.home()),
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(port),
        "BRIDGE_TOKEN": token,
        "NODE_ENV": "production",
    }
    env.update({k: os.environ[k] for k in PASSTHROUGH if k in os.environ})
    return env


class ManagedBridge:
    """Runs `node src/index.js` until stop(), restarting it with backoff when it exits."""

    def __init__(self, url: str, token: str, *, base_delay: float = 1.0, max_delay: float = 30.0):
        self.port = loopback_port(url)
        self.token = token
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.restarts = 0

    def start(self) -> None:
        """Check Node.js and the build (ConfigError naming the fix), then supervise the child."""
        node = node_binary()
        check_built()
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(node), name="whatsapp-bridge")

    async def _run(self, node: str) -> None:
        delay = self.base_delay
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    node,
                    str(BRIDGE_DIR / "src" / "index.js"),
                    cwd=str(BRIDGE_DIR),
                    env=bridge_env(self.token, self.port),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                log.error("could not start the WhatsApp bridge (%s)", e)
            else:
                log.info("WhatsApp bridge started (pid %d, port %d)", self.proc.pid, self.port)
                await self._pump(self.proc)
                code = await self.proc.wait()
                if self._stopping:
                    return
                log.warning("WhatsApp bridge exited with %s; restarting", code)
            if loop.time() - started > 60:
                delay = self.base_delay
            self.restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            level, _, text = line.partition(" ")
            lvl = {"warn": logging.WARNING, "error": logging.ERROR, "fatal": logging.ERROR}
            log.log(lvl.get(level, logging.INFO), "bridge: %s", text if level in lvl else line)

    async def stop(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
