"""`nanobot onboard`: NANOBOT_HOME (0700), config.json (0600), the workspace files and the
language model (a local server or a hosted API); `--import PATH` takes over an existing nanobot
home; `--check` says in one line whether a model is usable (for `make run`)."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from pathlib import Path

from nanobot import paths
from nanobot.agent.workspace import write_templates
from nanobot.commands.onboard_model import ModelChoice, ask_model, check_local, store_key
from nanobot.config.loader import load_config, save_config, workspace_path
from nanobot.errors import ConfigError

EXIT_NO_MODEL = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--yes", action="store_true", help="no questions; keep an existing config")
    p.add_argument(
        "--force", action="store_true", help="replace an existing config (a backup is kept)"
    )
    p.add_argument(
        "--api-base",
        metavar="URL",
        help="use a local OpenAI-compatible server at URL (checked; no questions)",
    )
    p.add_argument(
        "--provider",
        choices=("custom", "ollama", "vllm"),
        default="custom",
        help="which kind of local server --api-base is (default: custom)",
    )
    p.add_argument("--model", default="", help="the model to use (with --api-base)")
    p.add_argument(
        "--import",
        dest="import_path",
        metavar="PATH",
        type=Path,
        help="take over an existing nanobot home (its config.json, keys and workspace)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help=f"only say whether a language model is usable (exit {EXIT_NO_MODEL} if not)",
    )


def default_config(choice: ModelChoice | None = None) -> dict:
    """The starter config: only settings that work, plus the chosen model if any."""
    choice = choice or ModelChoice()
    providers: dict = {}
    if choice.provider:
        section = providers[choice.provider] = {}
        if choice.api_base:
            section["apiBase"] = choice.api_base
        if choice.key_ref:
            section["apiKey"] = choice.key_ref
    return {
        "agents": {
            "defaults": {
                "workspace": "~/.nanobot/workspace",
                "model": choice.model,
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
                "bridgeToken": store_key("whatsapp-bridge-token", secrets.token_urlsafe(32)),
                "allowFrom": [],
            },
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


def model_status(cfg_path: Path) -> tuple[bool, str]:
    """(usable, one line): which model nanobot will use and where, or what to set."""
    from nanobot.providers.registry import select

    try:
        cfg, _ = load_config(cfg_path)
        sel = select(cfg)
    except ConfigError as e:
        return False, f"Not ready: {e}"
    base = sel.provider_cfg.api_base or sel.spec.default_api_base
    where = f"your server at {base}" if sel.spec.is_local else sel.spec.name
    return True, f"Ready: nanobot will use {sel.model} via {where}. Run: nanobot agent"


def run(args: argparse.Namespace) -> int:
    cfg_path = args.config or paths.config_path()
    if args.check:
        ok, line = model_status(cfg_path)
        if not ok:
            print(line)
        return 0 if ok else EXIT_NO_MODEL
    if args.import_path:
        from nanobot.commands.onboard_import import import_home

        return import_home(args.import_path, cfg_path)
    interactive = not args.yes and not args.api_base and sys.stdin.isatty()
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
        if args.api_base:
            choice = check_local(args.provider, args.api_base, args.model)
        elif interactive:
            choice = ask_model(_ask)
        else:
            choice = ModelChoice()
        for note in choice.notes:
            print(note)
        save_config(default_config(choice), cfg_path)
        print(f"Wrote {cfg_path} (mode 0600)")
    cfg, _ = load_config(cfg_path)
    workspace = workspace_path(cfg)
    paths.ensure_dir(workspace)
    for f in write_templates(workspace):
        print(f"Created {f}")
    print(f"Workspace: {workspace}")
    print(model_status(cfg_path)[1])  # the last line says what was done, or what to set
    return 0
