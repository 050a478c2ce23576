"""`nanobot agent`: one message with -m, or an interactive conversation on the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
import sys

from nanobot import paths, workers
from nanobot.agent.loop import turn_failed
from nanobot.agent.progress import TurnProgress
from nanobot.commands.console import Console, TerminalProgress, route_logs
from nanobot.config.loader import load_config
from nanobot.logs import setup_logging
from nanobot.security.audit import get_audit
from nanobot.security.privileges import refuse_root

EXIT_WORDS = {"exit", "quit", ":q", "/exit", "/quit"}
PROMPT, MORE_PROMPT = "You: ", "...  "
BANNER = "nanobot — type your message; /help for commands, 'exit' or Ctrl-D to leave.\n"
HELP = """Commands:
  /reset      start a new conversation (the old one is kept on disk)
  /help       this list
  exit        leave (also quit, Ctrl-D, or Ctrl-C at the prompt)
Several lines: end a line with \\ to continue on the next, or paste them (one message).
Ctrl-C while nanobot works cancels that reply; the message is not kept."""


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
        self.route, self.dispatcher = build_route(
            cfg, agent.handle, self.channels, self.state / self.session, compact=False
        )
        self.channel = TerminalChannel(None, self.route)
        self.channels[self.channel.name] = self.channel
        if agent.tools.approvals is not None:  # risky calls ask y/N here (security.approval)
            agent.tools.approvals.attach([self.channel])
        self.cancelled = False  # a reply was cancelled with Ctrl-C
        self._lock = os.open(self.state / ".lock", os.O_RDONLY | os.O_CREAT, paths.FILE_MODE)
        fcntl.flock(self._lock, fcntl.LOCK_SH)  # "a terminal runs here"

    async def recover(self) -> None:
        """Answer what an earlier terminal left unanswered (only when no other one runs)."""
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another terminal is running: what is pending may be its own
        if self.route.store is not None:
            await asyncio.to_thread(self.route.store.compact)
        resent, queued = await self.dispatcher.recover()
        if resent or queued:
            print(f"(answering {resent + queued} message(s) left by an interrupted session)")
            await self.dispatcher.drain(600)
            self.dispatcher.accepting = True
        fcntl.flock(self._lock, fcntl.LOCK_SH)

    async def ask(self, text: str, progress: TurnProgress | None = None) -> str:
        from nanobot.channels.request import Refused

        try:
            return await self.channel.ask("local-user", self.session, text, progress=progress)
        except Refused as r:
            wait = r.verdict.retry_after or 60
            return f"(too many messages: wait {wait:.0f} s — security.rateLimit)"

    async def settle(self) -> None:
        """Let cancelled turns end (their messages retire) before the terminal goes."""
        await self.dispatcher.drain(2.0)

    def close(self) -> None:
        store = self.route.store
        if store is not None:
            if self.cancelled:  # Ctrl-C: the user withdrew the message; nobody answers it later
                for msg in store.own_pending():
                    store.retire(msg)
            store.close()
        os.close(self._lock)


def _setup_readline():
    try:
        import readline
    except ImportError:
        return None
    hist = paths.history_file()
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(hist)
    readline.set_history_length(1000)
    readline.parse_and_bind("set enable-bracketed-paste on")  # a paste is one message
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


def _read_message() -> str:
    """One message: a line, several lines joined by a trailing backslash, or a paste (readline
    takes a bracketed paste as one input, newlines and all)."""
    lines, prompt = [], PROMPT
    while True:
        line = input(prompt)
        if not line.endswith("\\"):
            lines.append(line)
            return "\n".join(lines)
        lines.append(line[:-1])
        prompt = MORE_PROMPT


def _turn(loop: asyncio.AbstractEventLoop, terminal: Terminal, console: Console, text: str):
    """Run one turn; Ctrl-C cancels it (nothing stored) and returns to the prompt at once."""
    task = loop.create_task(console.run(terminal.ask(text, TerminalProgress(console))))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        terminal.cancelled = True
        console.note("(cancelled — Ctrl-C again to leave)")
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _interactive(terminal: Terminal, console: Console) -> int:
    readline = _setup_readline()
    print(BANNER)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(workers.pool("io", 8))  # its threads leave Ctrl-C to this one
    try:
        loop.run_until_complete(terminal.recover())
        while True:
            text = _read_message()
            command = text.strip().lower()
            if command in EXIT_WORDS:
                break
            if command in ("/help", "help", "?"):
                print(HELP)
            elif command:
                _turn(loop, terminal, console, text)
    except (EOFError, KeyboardInterrupt):  # Ctrl-D, or Ctrl-C at the prompt
        print()
    finally:
        _save_history(readline)
        loop.run_until_complete(terminal.settle())
        loop.close()
    return 0


def _one_shot(terminal: Terminal, console: Console, text: str) -> int:
    """-m: the reply on stdout; exit 1 when the turn failed, 130 on Ctrl-C."""
    try:
        reply = asyncio.run(console.run(terminal.ask(text, TerminalProgress(console))))
    except KeyboardInterrupt:
        terminal.cancelled = True
        print(file=sys.stderr)
        return 130
    return 1 if turn_failed(reply) else 0


def run(args: argparse.Namespace) -> int:
    refuse_root(args.allow_root)
    setup_logging(verbose=args.verbose, stderr=args.logs)
    cfg, info = load_config(args.config)
    from nanobot.runtime import build_agent

    agent = build_agent(cfg, info)
    terminal = Terminal(cfg, agent, args.session)
    console = Console()
    route_logs(console)
    try:
        if args.message is not None:
            code = _one_shot(terminal, console, args.message)
        else:
            code = _interactive(terminal, console)
    finally:
        terminal.close()
        workers.shutdown()
        get_audit().flush()  # a decision a cut-off event loop still held
    if terminal.cancelled or args.message is not None:
        # Everything is on disk (journal, session, audit flush as they write). A cancelled reply
        # may leave a model call blocked in a worker thread until its first token, which the
        # interpreter would wait for; and a one-shot gains nothing from the interpreter's
        # teardown of ~200 modules (a tenth of its run time). Leave now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
