"""The real Node.js bridge (nanobot/bridge) with its WhatsApp side faked (BRIDGE_FAKE_WHATSAPP).

The fake WhatsApp takes injected messages on a small HTTP control port and writes what the
bridge sends to <dir>/sent.jsonl, so the record survives a bridge restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parent.parent.parent / "nanobot" / "bridge"
NODE = shutil.which("node")


def require_bridge() -> None:
    if NODE is None or not (BRIDGE / "node_modules").is_dir():
        pytest.skip("the WhatsApp bridge needs node and `npm ci` in nanobot/bridge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_message(msg_id: str, sender: str, text: str, chat: str | None = None, **key) -> dict:
    """A Baileys-shaped incoming text message; for a group pass chat=…@g.us."""
    k = {"remoteJid": chat or sender, "fromMe": False, "id": msg_id, **key}
    if chat:
        k["participant"] = sender
    return {"key": k, "message": {"conversation": text}, "messageTimestamp": 1700000000}


class BridgeProcess:
    """`node src/index.js` on a fixed port with a fake WhatsApp; restartable, same state dir."""

    def __init__(self, token: str, port: int | None = None, home: Path | None = None) -> None:
        require_bridge()
        self.token = token
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="nbwa-"))
        os.chmod(self.dir, 0o755)
        self.home = home or self.dir / "home"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "bridge.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> BridgeProcess:
        (self.dir / "control-port").unlink(missing_ok=True)
        starts = self.log().count("WhatsApp connected")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NANOBOT_HOME": str(self.home),
            "BRIDGE_PORT": str(self.port),
            "BRIDGE_TOKEN": self.token,
            "BRIDGE_FAKE_WHATSAPP": str(self.dir),
        }
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [NODE, str(BRIDGE / "src" / "index.js")],
                env=env,
                cwd=str(BRIDGE),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.dir / "control-port").exists() and self.log().count(
                "WhatsApp connected"
            ) > starts:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"bridge not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _post(self, path: str, body) -> None:
        port = int((self.dir / "control-port").read_text())
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def inject(self, *messages: dict) -> None:
        self._post("/inject", list(messages))

    def event(self, name: str, payload) -> None:
        self._post("/event", {"name": name, "payload": payload})

    def sent(self) -> list[dict]:
        path = self.dir / "sent.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_sent(self, n: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.sent()) >= n:
                return self.sent()
            time.sleep(0.05)
        raise AssertionError(f"expected {n} sent messages, got {self.sent()}\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
