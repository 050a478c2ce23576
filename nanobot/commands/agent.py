"""`nanobot agent`: one message with -m, or an interactive conversation on the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import itertools
import os
import re
import sys

from nanobot import paths, workers
from nanobot.agent.loop import turn_failed
from nanobot.config.loader import load_config
from nanobot.logs import setup_logging
from nanobot.security.privileges import refuse_root

EXIT_WORDS = {"exit", "quit", ":q", "/exit", "/quit"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--message", help="send one message, print the reply and exit")
    p.add_argument("-s", "--session", default="default", help="session name (default: default)")
    p.add_argument("--logs", action="store_true", help="also print the log on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (implies --logs)")
    p.add_argument("--allow-root", action="store_true", help="run even as root (not recommended)")


def _session_name(session: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", session)[:64] or "default"


class Terminal:
    """The terminal's end of the one route: the agent behind admission, inbox and dispatcher.

    The inbox lives in NANOBOT_HOME/state/terminal. An interactive session that finds
    messages left by a terminal that died mid-turn answers them first; a shared lock keeps it
    from taking messages of a terminal that is still running.
    """

    def __init__(self, cfg, agent, session: str) -> None:
        from nanobot.channels.request import TerminalChannel
        from nanobot.route.route import build_route

        self.session = _session_name(session)
        self.state = paths.ensure_dir(paths.state_dir() / "terminal")
        self.channels: dict = {}
        self.route, self.dispatcher = build_route(cfg, agent.handle, self.channels, self.state)
        self.channel = TerminalChannel(None, self.route)
        self.channels[self.channel.name] = self.channel
        self._lock = os.open(self.state / ".lock", os.O_RDONLY | os.O_CREAT, paths.FILE_MODE)
        fcntl.flock(self._lock, fcntl.LOCK_SH)  # "a terminal runs here"

    async def recover(self) -> None:
        """Answer what an earlier terminal left unanswered (only when no other one runs)."""
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another terminal is running: what is pending may be its own
        resent, queued = await self.dispatcher.recover()
        if resent or queued:
            print(f"(answering {resent + queued} message(s) left by an interrupted session)")
            await self.dispatcher.drain(600)
            self.dispatcher.accepting = True
        fcntl.flock(self._lock, fcntl.LOCK_SH)

    async def ask(self, text: str) -> str:
        from nanobot.channels.request import Refused

        try:
            return await self.channel.ask("local-user", self.session, text)
        except Refused as r:
            wait = r.verdict.retry_after or 60
            return f"(too many messages: wait {wait:.0f} s — security.rateLimit)"

    def close(self) -> None:
        if self.route.store is not None:
            self.route.store.close()
        os.close(self._lock)


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


async def _interactive(terminal: Terminal) -> int:
    readline = _setup_readline()
    print("nanobot — type your message; 'exit', 'quit' or Ctrl-D to leave.\n")
    await terminal.recover()
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
            reply = await _with_spinner(terminal.ask(text))
            print(f"\nnanobot: {reply}\n")
    finally:
        _save_history(readline)
    return 0


def run(args: argparse.Namespace) -> int:
    refuse_root(args.allow_root)
    setup_logging(verbose=args.verbose, stderr=args.logs)
    cfg, info = load_config(args.config)
    from nanobot.runtime import build_agent

    agent = build_agent(cfg, info)
    terminal = Terminal(cfg, agent, args.session)
    try:
        if args.message is not None:
            reply = asyncio.run(_with_spinner(terminal.ask(args.message)))
            print(reply)
            return 1 if turn_failed(reply) else 0
        return asyncio.run(_interactive(terminal))
    finally:
        terminal.close()
        workers.shutdown()
