"""The gateway's automation wired as the gateway wires it — real agent, route, dispatcher and
store — with a recording channel as the far side and the scripted model server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from fakes.llm_server import ScriptedLLMServer
from nanobot import paths
from nanobot.config.loader import load_config, workspace_path
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.route.route import build_route
from nanobot.runtime import build_agent
from nanobot.services.automation import Automation

KEY = "sk-test-automation-unit-000000000"
ALICE, BOB = "111", "222"


class Sink:
    """Telegram's delivering end: records what it was asked to send."""

    name = "telegram"
    sends_files = True

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    async def send(self, out: OutboundMessage) -> None:
        if out.content.strip():  # like the real channel: a blank reply sends nothing
            self.sent.append(out)

    def turn_started(self, m: InboundMessage) -> None: ...
    def turn_finished(self, m: InboundMessage) -> None: ...

    def texts(self, chat: str) -> list[str]:
        return [o.content for o in self.sent if o.chat_id == chat]


@dataclass
class Env:
    cfg: object
    agent: object
    llm: ScriptedLLMServer
    sink: Sink
    home: Path
    auto: Automation | None = None
    route: object = None
    dispatcher: object = None

    def wire(self) -> Automation:
        """Build the route around Automation.turn; call inside the event loop."""
        self.auto = Automation(self.cfg, self.agent, workspace_path(self.cfg))
        self.route, self.dispatcher = build_route(
            self.cfg, self.auto.turn, {"telegram": self.sink}, paths.state_dir()
        )
        return self.auto

    async def user(self, chat: str, text: str) -> None:
        """A message from `chat` through the route; returns once its reply was delivered."""
        msg = InboundMessage("telegram", chat, chat, text)
        assert await self.route.accept(msg)
        await settle(self.dispatcher)


async def settle(dispatcher, timeout: float = 20) -> None:
    """Wait until the dispatcher has no turn or delivery left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while dispatcher.tasks:
        if loop.time() > deadline:
            raise AssertionError("turns did not finish")
        await asyncio.wait(set(dispatcher.tasks), timeout=0.5)


def make_env(tmp_path: Path, monkeypatch, llm: ScriptedLLMServer, **extra) -> Env:
    home = tmp_path / "home"
    monkeypatch.setenv("NANOBOT_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("NANOBOT_RETRY_BASE_DELAY", "0.01")
    data = {
        "tools": {"exec": {"sandbox": "none"}, **extra.pop("tools", {})},
        "channels": {"telegram": {"enabled": True, "token": "1:x", "allowFrom": [ALICE, BOB]}},
        "agents": {"defaults": {"heartbeatMinutes": 0, **extra.pop("defaults", {})}},
        "security": {"rateLimit": {"messagesPerMinute": 0}},
        **extra,
    }
    paths.ensure_dir(home)
    (home / "config.json").write_text(json.dumps(data))
    (home / "config.json").chmod(0o600)
    cfg, info = load_config()
    return Env(cfg, build_agent(cfg, info), llm, Sink(), home)
