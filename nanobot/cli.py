"""`nanobot` command line: a table of subcommands, each imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from nanobot import __version__
from nanobot.errors import NanobotError

# name → (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "onboard": ("nanobot.commands.onboard", "create NANOBOT_HOME, config.json and the workspace"),
    "agent": ("nanobot.commands.agent", "talk to the agent: one message with -m, or interactively"),
    "status": (
        "nanobot.commands.status",
        "show config, workspace, model, provider keys and sandbox",
    ),
    "gateway": ("nanobot.commands.gateway", "run the channels, the agent and the local HTTP API"),
    "doctor": ("nanobot.commands.doctor", "run the security checklist (--fix repairs modes)"),
    "audit": ("nanobot.commands.audit", "verify the audit trail or show recent events"),
    "channels": ("nanobot.commands.channels", "link WhatsApp (login) and show channel status"),
    "sessions": ("nanobot.commands.sessions", "list, show or remove stored conversations"),
    "cron": ("nanobot.commands.cron", "scheduled jobs: list, add, remove, enable, disable, run"),
    "skills": (
        "nanobot.commands.skills",
        "list skills: origin (workspace or built-in), usable or not",
    ),
}


def _chosen(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in COMMANDS:
            return a
        if a in ("-c", "--config"):
            continue
        if not a.startswith("-") and (i == 0 or argv[i - 1] not in ("-c", "--config")):
            return None
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanobot", description="A personal AI assistant that is safe to run on a server."
    )
    parser.add_argument("--version", action="version", version=f"nanobot {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="config file (default: NANOBOT_HOME/config.json)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "this user"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    try:
        return args._run(args)
    except NanobotError as e:
        print(f"nanobot: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the filesystem said no: one line with the path, never a traceback
        where = f" {e.filename}" if e.filename else ""
        print(
            f"nanobot: {e.strerror or e}:{where} — fix: make sure this user ({_user()}) can "
            "write there, or point NANOBOT_HOME at a folder it owns",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
