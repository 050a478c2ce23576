"""`nanobot onboard`: NANOBOT_HOME (0700), config.json (0600) and the workspace files."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import shutil
import sys
import time

from nanobot import paths
from nanobot.agent.workspace import write_templates
from nanobot.config.loader import ENV_KEYS, load_config, save_config, workspace_path

PROVIDER_CHOICES = ("openai", "anthropic", "openrouter", "deepseek", "groq", "gemini")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--yes", action="store_true", help="no questions; keep an existing config")
    p.add_argument(
        "--force", action="store_true", help="replace an existing config (a backup is kept)"
    )


def _credential(name: str, value: str) -> str:
    """Store a secret in NANOBOT_HOME/credentials/<name> (0600) and return its file: reference."""
    cred_dir = paths.ensure_dir(paths.home() / "credentials")
    path = cred_dir / name
    paths.atomic_write(path, value + "\n")
    return f"file:{path}"


def default_config(provider: str = "", key_ref: str = "") -> dict:
    providers = {name: {"apiKey": ""} for name in PROVIDER_CHOICES}
    if provider:
        providers[provider]["apiKey"] = key_ref
    return {
        "agents": {
            "defaults": {
                "workspace": "~/.nanobot/workspace",
                "model": "",
                "maxTokens": 8192,
                "temperature": 0.7,
                "maxToolIterations": 20,
                "sessionIdleMinutes": 0,
            }
        },
        "tools": {
            "restrictToWorkspace": True,
            "exec": {"timeout": 60, "sandbox": "auto", "network": True},
        },
        "providers": providers,
        "channels": {
            "telegram": {"enabled": False, "token": "", "allowFrom": []},
            "whatsapp": {
                "enabled": False,
                "bridgeUrl": "ws://127.0.0.1:3001",
                "bridgeToken": _credential("whatsapp-bridge-token", secrets.token_urlsafe(32)),
                "allowFrom": [],
            },
            "email": {"enabled": False, "consentGranted": False, "allowFrom": []},
        },
        "gateway": {"host": "127.0.0.1", "port": 18790},
        "security": {"rateLimit": {"messagesPerMinute": 20, "burst": 5, "toolCallsPerHour": 0}},
    }


def _ask(question: str, default: str = "") -> str:
    try:
        answer = input(f"{question} ").strip()
    except EOFError:
        return default
    return answer or default


def _ask_provider() -> tuple[str, str]:
    have = [n for n, var in ENV_KEYS.items() if n in PROVIDER_CHOICES and os.environ.get(var)]
    if have:
        print(f"Found an API key in the environment for: {', '.join(have)} (used automatically).")
    name = _ask(f"Provider to store a key for [{'/'.join(PROVIDER_CHOICES)}, Enter to skip]:")
    if not name:
        return "", ""
    if name not in PROVIDER_CHOICES:
        print(f"Unknown provider '{name}'; skipped. Edit providers.<name>.apiKey later.")
        return "", ""
    key = getpass.getpass(
        f"{name} API key (hidden; stored 0600 under {paths.home()}/credentials): "
    )
    return (name, _credential(name, key.strip())) if key.strip() else ("", "")


def run(args: argparse.Namespace) -> int:
    cfg_path = args.config or paths.config_path()
    interactive = not args.yes and sys.stdin.isatty()
    paths.ensure_dir(paths.home())
    write_config = True
    if cfg_path.exists() and not args.force:
        if interactive:
            write_config = _ask(f"{cfg_path} exists. Overwrite it? [y/N]").lower() in ("y", "yes")
        else:
            write_config = False
        if not write_config:
            print(f"Kept the existing config at {cfg_path}")
    if write_config:
        if cfg_path.exists():
            backup = cfg_path.with_name(f"config.json.bak-{time.strftime('%Y%m%dT%H%M%S')}")
            shutil.copy2(cfg_path, backup)
            backup.chmod(paths.FILE_MODE)
            print(f"Backed up the old config to {backup}")
        provider, key_ref = _ask_provider() if interactive else ("", "")
        save_config(default_config(provider, key_ref), cfg_path)
        print(f"Wrote {cfg_path} (mode 0600)")
    cfg, _ = load_config(cfg_path)
    workspace = workspace_path(cfg)
    paths.ensure_dir(workspace)
    for f in write_templates(workspace):
        print(f"Created {f}")
    print(f"Workspace: {workspace}")
    print("Next: set an API key (e.g. export OPENAI_API_KEY=…), then run: nanobot agent")
    return 0
