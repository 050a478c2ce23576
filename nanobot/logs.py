"""Logging: NANOBOT_HOME/logs/nanobot.log (0600, rotating) and optional stderr, all redacted."""

from __future__ import annotations

import logging
import os
import sys

from nanobot import paths
from nanobot.security.redact import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats the whole record (message, arguments, traceback) and then redacts it."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class PrivateRotatingFileHandler(logging.FileHandler):
    """nanobot.log, created 0600 whatever the umask, renamed to .1 … .`backups` once it holds
    `max_bytes` (the stdlib's RotatingFileHandler would bring logging.handlers, pickle and
    friends into every command's start-up)."""

    def __init__(self, path: os.PathLike | str, max_bytes: int, backups: int) -> None:
        self.max_bytes, self.backups = max_bytes, backups
        super().__init__(path, encoding="utf-8")

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, paths.FILE_MODE)
        os.fchmod(fd, paths.FILE_MODE)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:
            try:
                if self.stream.tell() >= self.max_bytes:
                    self._rotate()
            except OSError:
                self.handleError(record)
                return
        super().emit(record)

    def _rotate(self) -> None:
        self.stream.close()
        self.stream = None  # FileHandler.emit opens a new, empty file
        base = self.baseFilename
        for i in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{base}.{i}"):
                os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        os.replace(base, f"{base}.1")


def setup_logging(verbose: bool = False, stderr: bool = False, file: bool = True) -> None:
    """Send records to the log file (nanobot.* at INFO, DEBUG when verbose) and stderr when asked.

    Handlers sit on the root logger so that third-party records (urllib3 prints request paths,
    which hold the Telegram token) pass the same redacting formatter. Without `stderr`, only
    WARNING and above reach the terminal, as one short line each.
    """
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    ours = logging.getLogger("nanobot")
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours.propagate = True
    for h in list(ours.handlers):
        ours.removeHandler(h)
        h.close()
    if file:
        paths.ensure_dir(paths.logs_dir())
        fh = PrivateRotatingFileHandler(paths.logs_dir() / "nanobot.log", 5_000_000, 5)
        fh.setFormatter(RedactingFormatter(FORMAT))
        root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    if stderr or verbose:
        sh.setFormatter(RedactingFormatter(FORMAT))
    else:
        sh.setLevel(logging.WARNING)
        sh.setFormatter(RedactingFormatter("%(levelname)s: %(message)s"))
    root.addHandler(sh)
