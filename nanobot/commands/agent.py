"""`nanobot agent`: one message with -m, or an interactive conversation on the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import sys

from nanobot import paths
from nanobot.agent.loop import APOLOGY
from nanobot.config.loader import load_config
from nanobot.logs import setup_logging
from nanobot.security.privileges import refuse_root
from nanobot.tools.base import ToolContext

EXIT_WORDS = {"exit", "quit", ":q", "/exit", "/quit"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--message", help="send one message, print the reply and exit")
    p.add_argument("-s", "--session", default="default", help="session name (default: default)")
    p.add_argument("--logs", action="store_true", help="also print the log on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (implies --logs)")
    p.add_argument("--allow-root", action="store_true", help="run even as root (not recommended)")


def _context(session: str) -> ToolContext:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", session)[:64] or "default"
    return ToolContext(
        channel="cli", chat_id=name, sender_id="local-user", session_key=f"cli:{name}"
    )


async def _with_spinner(coro):
    """Show a 'thinking…' spinner on stderr while coro runs (only on a terminal)."""
    if not sys.stderr.isatty():
        return await coro
    task = asyncio.ensure_future(coro)
    for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
        done, _ = await asyncio.wait({task}, timeout=0.1)
        if done:
            break
        sys.stderr.write(f"\r{frame} thinking…")
        sys.stderr.flush()
    sys.stderr.write("\r\033[K")
    return task.result()


def _setup_readline():
    try:
        import readline
    except ImportError:
        return None
    hist = paths.history_file()
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(hist)
    readline.set_history_length(1000)
    return readline


def _save_history(readline) -> None:
    if readline is None:
        return
    hist = paths.history_file()
    try:
        hist.touch(mode=paths.FILE_MODE, exist_ok=True)
        hist.chmod(paths.FILE_MODE)
        readline.write_history_file(hist)
    except OSError:
        pass


async def _interactive(agent, ctx: ToolContext) -> int:
    readline = _setup_readline()
    print("nanobot — type your message; 'exit', 'quit' or Ctrl-D to leave.\n")
    try:
        while True:
            try:
                text = await asyncio.to_thread(input, "You: ")
            except EOFError:
                print()
                break
            if text.strip().lower() in EXIT_WORDS:
                break
            if not text.strip():
                continue
            reply = await _with_spinner(agent.handle(text, ctx))
            print(f"\nnanobot: {reply}\n")
    finally:
        _save_history(readline)
    return 0


def run(args: argparse.Namespace) -> int:
    refuse_root(args.allow_root)
    from nanobot.security.sandbox import start_probe

    start_probe()  # a subprocess: runs while the config loads and the agent is assembled
    setup_logging(verbose=args.verbose, stderr=args.logs)
    cfg, info = load_config(args.config)
    from nanobot.runtime import build_agent

    agent = build_agent(cfg, info)
    ctx = _context(args.session)
    try:
        if args.message is not None:
            reply = asyncio.run(_with_spinner(agent.handle(args.message, ctx)))
            print(reply)
            return 1 if reply is APOLOGY else 0
        return asyncio.run(_interactive(agent, ctx))
    finally:
        agent.executor.shutdown(wait=False, cancel_futures=True)
