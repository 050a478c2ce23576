"""The one safe reader for files the program itself reads from the workspace.

The workspace is writable by commands the model runs, so every file in it is hostile input: it
may be a symlink (to config.json, another chat's session, /proc/self/environ), sit below a
symlinked folder, be a hard link to a file elsewhere, a FIFO that blocks an open or a read, a
device (/dev/zero never ends), a socket, or a sparse file of a terabyte.

WorkspaceReader.read(rel) walks rel one component at a time from a descriptor of the workspace
folder, with O_NOFOLLOW on every component (O_DIRECTORY for folders), so no symlink is followed
anywhere in the path. The last component is lstat'ed first (a FIFO or device is never opened),
then opened O_NONBLOCK and fstat'ed: it must be the same inode, a regular file with one link and
at most max_bytes long; then at most max_bytes + 1 bytes are read, whatever the size said.

A refused file reads as absent (None) and is reported once — one WARNING naming the file and
why, and one `workspace_file_refused` audit event — until it changes. The calls block: callers
on an event loop run them in a thread.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("nanobot.security")

DEFAULT_MAX_BYTES = 256 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 65536


class Refused(Exception):
    """A workspace file that must not be read; str() says why in words for the operator."""


@dataclass(frozen=True)
class Stamp:
    """What identifies one version of a file: a change to any field means "read it again"."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


class WorkspaceReader:
    """Reads regular files inside one workspace without following links; thread-safe."""

    def __init__(self, workspace: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # The operator chose the workspace path (it may itself be a link they made); only what
        # lies below it is the agent's.
        self.root = Path(workspace).expanduser().resolve()
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._reported: dict[str, tuple[str, Stamp | None]] = {}

    def stamp(self, rel: str) -> Stamp | None:
        """The file's identity without opening it, or None when it (or a folder) is absent.

        Raises Refused when a path component is a symlink or not a folder.
        """
        parts = self._parts(rel)
        dir_fd = self._open_dir(parts[:-1], rel)
        if dir_fd is None:
            return None
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(dir_fd)
        return Stamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def read_bytes(self, rel: str) -> bytes | None:
        """The file's bytes, or None when absent. Raises Refused (see the module docstring)."""
        parts = self._parts(rel)
        dir_fd = self._open_dir(parts[:-1], rel)
        if dir_fd is None:
            return None
        try:
            return self._read_leaf(dir_fd, parts[-1], rel)
        finally:
            os.close(dir_fd)

    def read_text(self, rel: str) -> str | None:
        """UTF-8 text (bad bytes replaced), None when absent or refused — a refusal is reported
        once per version of the file (WARNING and audit event) and otherwise reads as absent."""
        try:
            data = self.read_bytes(rel)
        except Refused as exc:
            self._report(rel, str(exc))
            return None
        except OSError as exc:
            self._report(rel, f"it cannot be read ({exc.strerror or exc})")
            return None
        with self._lock:
            self._reported.pop(rel, None)
        return None if data is None else data.decode("utf-8", "replace")

    # -- internals --

    def _parts(self, rel: str) -> list[str]:
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or rel.startswith("/"):
            raise ValueError(f"{rel!r} is not a plain path relative to the workspace")
        return parts

    def _open_dir(self, folders: list[str], rel: str) -> int | None:
        """A descriptor of workspace/folders, every step without following links (None: absent)."""
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            return None
        for i, name in enumerate(folders):
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                return None
            except (NotADirectoryError, OSError) as exc:
                # ELOOP: the component is a symlink (O_NOFOLLOW); ENOTDIR: a file or device.
                where = "/".join(folders[: i + 1])
                try:
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                    what = _kind(mode)
                except OSError:
                    what = exc.strerror or "unreadable"
                os.close(fd)
                raise Refused(f"its folder {where} is {what}, not a plain folder") from None
            os.close(fd)
            fd = nxt
        return fd

    def _read_leaf(self, dir_fd: int, name: str, rel: str) -> bytes | None:
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._check(before)  # a FIFO or device is refused before anything opens it
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Refused(f"it cannot be opened safely ({exc.strerror or exc})") from None
        try:
            st = os.fstat(fd)
            self._check(st)
            if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
                raise Refused("it was replaced while being opened")
            chunks, size = [], 0
            while size <= self.max_bytes:  # the size may lie (a growing file): count as we go
                chunk = os.read(fd, min(_CHUNK, self.max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        if size > self.max_bytes:
            raise Refused(f"it grew past {self.max_bytes} bytes while being read")
        return b"".join(chunks)

    def _check(self, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"it is {_kind(st.st_mode)}, not a regular file")
        if st.st_nlink != 1:
            raise Refused(f"it is a hard link ({st.st_nlink} names), possibly to a file elsewhere")
        if st.st_size > self.max_bytes:
            raise Refused(f"it is {st.st_size} bytes, over the limit of {self.max_bytes}")

    def _report(self, rel: str, reason: str) -> None:
        try:
            stamp = self.stamp(rel)
        except (Refused, OSError, ValueError):
            stamp = None
        with self._lock:
            if self._reported.get(rel) == (reason, stamp):
                return
            self._reported[rel] = (reason, stamp)
        log.warning("workspace file %s skipped: %s", self.root / rel, reason)
        from nanobot.security.audit import get_audit

        get_audit().record("workspace_file_refused", path=rel, reason=reason)
