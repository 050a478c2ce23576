"""The terminal's screen during a turn: spinner, streamed answer, one line per tool step, and
log records — each on a line of its own, never sharing one with another.

On a TTY the answer appears as it is written (Markdown rendered); otherwise only the final
reply is printed, plain, and tool steps go to stderr, so that scripts get just the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
from typing import TextIO

from nanobot.agent.progress import TurnProgress, rest_to_show
from nanobot.commands.termrender import DIM, RESET, MarkdownStream

SPIN_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
PREFIX = "nanobot: "


class Console:
    """Writes to stdout/stderr under one lock; `col0` is False while a line is unfinished."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.out.isatty()  # stream the answer, render Markdown
        self.spin = self.err.isatty()
        self._lock = threading.Lock()
        self._spinner_shown = False
        self._mid_line = False  # stdout holds an unfinished line of the answer
        self._spinning = False
        self._md = MarkdownStream(self.live)
        self._shown = ""  # answer text shown since the last tool step
        self._started = False

    # -- lines that must not share a line ----------------------------------------------------

    def _clear_spinner(self) -> None:
        if self._spinner_shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._spinner_shown = False

    def _own_line(self) -> None:
        """Make sure the next write starts a fresh line."""
        self._clear_spinner()
        if self._mid_line:
            self.out.write(self._md.end() + "\n")
            self.out.flush()
            self._mid_line = False
            self._md = MarkdownStream(self.live)

    def log_write(self, text: str) -> None:
        """A log record for stderr: on its own line, the spinner and the answer resume after."""
        with self._lock:
            self._own_line()
            self.err.write(text)
            self.err.flush()

    # -- the turn ----------------------------------------------------------------------------

    async def run(self, coro) -> str:
        """Await coro (the turn) with the spinner running; returns its reply, shown."""
        self._shown, self._started = "", False
        self._spinning = True
        spinner = asyncio.ensure_future(self._spin()) if self.spin else None
        try:
            reply = await coro
        finally:
            self._spinning = False
            if spinner is not None:
                spinner.cancel()
            with self._lock:
                self._clear_spinner()
        self.finish(reply)
        return reply

    async def _spin(self) -> None:
        for frame in itertools.cycle(SPIN_FRAMES):
            await asyncio.sleep(0.1)
            with self._lock:
                if self._spinning and not self._mid_line:
                    self.err.write(f"\r{frame} thinking…")
                    self.err.flush()
                    self._spinner_shown = True

    def text(self, delta: str) -> None:
        if not self.live:
            return
        with self._lock:
            self._clear_spinner()
            if not self._started:
                self.out.write("\n" + PREFIX)
                self._started = True
            self.out.write(self._md.feed(delta))
            self.out.flush()
            self._mid_line = True
            self._shown += delta

    def step(self, hint: str) -> None:
        with self._lock:
            self._own_line()
            if self.live:
                self.out.write(f"{DIM}{hint}{RESET}\n")
                self.out.flush()
            else:
                self.err.write(hint + "\n")
                self.err.flush()
            self._shown = ""

    def finish(self, reply: str) -> None:
        """After the turn: show what the stream did not (all of it when not streaming)."""
        with self._lock:
            if not self.live:
                self.out.write(reply + "\n")
                self.out.flush()
                return
            rest = rest_to_show(reply, self._shown)
            if rest is None or not self._started:
                self._own_line()
                self.out.write(("" if self._started else "\n") + PREFIX)
                self._md = MarkdownStream(True)
                rest = reply
            self.out.write(self._md.feed(rest) + self._md.end() + "\n\n")
            self.out.flush()
            self._mid_line = False
            self._md = MarkdownStream(True)

    def note(self, text: str) -> None:
        """A line of the terminal's own (cancelled, help)."""
        with self._lock:
            self._own_line()
            self.out.write(text + "\n")
            self.out.flush()


class TerminalProgress(TurnProgress):
    """The turn's progress, shown on the console."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def text(self, delta: str) -> None:
        self.console.text(delta)

    def step(self, hint: str) -> None:
        self.console.step(hint)


class _ConsoleStream:
    """A stderr for logging handlers that keeps records off the spinner's and answer's line."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> None:
        self.console.log_write(text)

    def flush(self) -> None:
        pass


def route_logs(console: Console) -> None:
    """Point the stderr logging handlers at the console."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(_ConsoleStream(console))
