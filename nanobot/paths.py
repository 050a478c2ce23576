"""Where nanobot keeps its state: NANOBOT_HOME (default ~/.nanobot) and everything under it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600

# Folders under NANOBOT_HOME that no tool may ever read or write, restricted or not.
SECRET_NAMES = ("config.json", "credentials", "whatsapp-auth", "auth", "logs", "sessions", "state")


def home() -> Path:
    """NANOBOT_HOME, or ~/.nanobot. Not created here; see ensure_dir."""
    env = os.environ.get("NANOBOT_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".nanobot"


def config_path() -> Path:
    return home() / "config.json"


def default_workspace() -> Path:
    return home() / "workspace"


def logs_dir() -> Path:
    return home() / "logs"


def sessions_dir() -> Path:
    return home() / "sessions"


def media_dir() -> Path:
    return home() / "media"


def state_dir() -> Path:
    """Small persisted state (Telegram offsets, handled e-mail UIDs, …)."""
    return home() / "state"


def history_file() -> Path:
    return home() / "history"


def ensure_dir(path: Path, mode: int = HOME_MODE) -> Path:
    """Create path (and parents) and give the leaf `mode`; NANOBOT_HOME itself always gets 0700."""
    h = home()
    if path != h and h in path.parents and not h.exists():
        ensure_dir(h)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def atomic_write(path: Path, data: str | bytes | Iterable[bytes], mode: int = FILE_MODE) -> None:
    """Replace path with data: temp file in the same folder, fsync, rename; mode set before rename.
    `data` may be an iterable of byte chunks, written as they come (no copy of the whole)."""
    if isinstance(data, str):
        data = data.encode()
    chunks = [data] if isinstance(data, bytes) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        for chunk in chunks:
            write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written: a short write (a file-size limit, a nearly full
    disk) goes on, so the next attempt raises the error instead of silently dropping the tail."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_private_append(path: Path):
    """Open path for appending text, creating it with mode 0600 (never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


def free_bytes(path: Path) -> int:
    """Bytes free for us on path's filesystem (-1 when it cannot be asked), for error messages."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1
