"""`nanobot channels login whatsapp | status`: link WhatsApp, and see whether channels can work."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess

from nanobot import paths
from nanobot.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="channels_command", metavar="ACTION", required=True)
    login = sub.add_parser(
        "login", help="link a channel account (WhatsApp: builds the bridge, shows a QR code)"
    )
    login.add_argument("channel", choices=["whatsapp"])
    sub.add_parser("status", help="show each enabled channel; WhatsApp: bridge and link state")


def run(args: argparse.Namespace) -> int:
    from nanobot.config.loader import load_config

    cfg, _ = load_config(args.config)
    if args.channels_command == "login":
        return _login_whatsapp()
    return _status(cfg)


def _login_whatsapp() -> int:
    """Build the bridge if needed (npm ci), then run it in the foreground in link mode."""
    from nanobot.channels.whatsapp_bridge import BRIDGE_DIR, node_binary

    node = node_binary()
    if not (BRIDGE_DIR / "node_modules").is_dir():
        print(f"Building the WhatsApp bridge in {BRIDGE_DIR} (npm ci) …")
        try:
            subprocess.run(
                ["npm", "ci", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund"],
                cwd=BRIDGE_DIR,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as e:
            raise ConfigError(
                f"could not build the WhatsApp bridge ({e}); install npm and run "
                f"`npm ci --ignore-scripts` in {BRIDGE_DIR}"
            ) from None
    paths.ensure_dir(paths.home())
    print("Stop the gateway first if it runs the bridge: one linked session at a time.")
    env = {k: v for k, v in os.environ.items() if k != "BRIDGE_TOKEN"}
    env["NANOBOT_HOME"] = str(paths.home())
    proc = subprocess.run([node, str(BRIDGE_DIR / "src" / "index.js"), "--login"], env=env)
    return proc.returncode


def _status(cfg) -> int:
    any_enabled = False
    for name in ("telegram", "whatsapp", "email"):
        section = getattr(cfg.channels, name)
        if not section.enabled:
            continue
        any_enabled = True
        who = f"{len(section.allow_from)} allowed senders" if section.allow_from else "OPEN"
        print(f"{name}: enabled, {who}")
        if name == "whatsapp":
            print(f"  bridge:  {section.bridge_url}")
            print(f"  {asyncio.run(whatsapp_state(section.bridge_url, section.bridge_token))}")
    if not any_enabled:
        print("No channel is enabled (channels.*.enabled in config.json).")
    return 0


async def whatsapp_state(url: str, token: str, timeout: float = 5.0) -> str:
    """One line: whether the bridge answers, accepts the token, and the WhatsApp link state."""
    from nanobot.channels.ws import ConnectionClosed, HandshakeError, WebSocket

    if not token:
        return "link:    unknown — channels.whatsapp.bridgeToken is empty"
    try:
        ws = await WebSocket.connect(url, timeout=timeout)
    except (OSError, HandshakeError, TimeoutError) as e:
        return f"link:    bridge unreachable ({e}) — start the gateway or the bridge service"
    try:
        await ws.send_text(json.dumps({"type": "auth", "token": token, "role": "observer"}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        status = ready.get("status") or {}
    except ConnectionClosed as e:
        return f"link:    the bridge refused the token ({e.code}) — check bridgeToken"
    except (TimeoutError, ValueError, AttributeError) as e:
        return f"link:    no answer from the bridge ({e})"
    finally:
        await ws.close(wait=0.5)
    state = status.get("state", "unknown")
    me = f" as +{str(status['me']).split('@')[0]}" if status.get("me") else ""
    hint = {
        "qr": " — run `nanobot channels login whatsapp`",
        "logged_out": " — run `nanobot channels login whatsapp`",
    }.get(state, "")
    return f"link:    {state}{me}{hint}"
