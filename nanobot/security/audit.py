"""The audit trail: logs/audit.jsonl, one JSON event per line, each line hash-chained to the last.

Every line is {"ts": ISO-8601 UTC, "event": name, …fields, "prev": sha256 hex}, where "prev" is
the SHA-256 of the previous line's bytes (without its newline); the first line ever carries 64
zeros. Rotation (audit.jsonl → audit.jsonl.1 → … → audit.jsonl.<backup_count>) keeps the chain:
the first line of a new file points at the last line of the file rotated away. Field values are
redacted (nanobot.security.redact) and long strings cut, so no secret reaches the trail.

Events used across the project:
  access            channel, sender, decision ("allowed" | "denied"), reason
  rate_limit        channel, sender, kind ("message" | "tool")
  tool_call         tool, args (redacted, cut), decision, duration_ms, exit_code, session
  config_warning    message
  permission_warning  path, mode (or message)
  gateway_start, gateway_stop
  http_request      path, status, client, decision
  chain_repair      torn_bytes — written by this module, see below

Torn lines: a crash in the middle of a write can leave a last line without its newline. The
next writer ends that line with a newline and records a `chain_repair` event whose "prev" is
the hash of the torn bytes, so the chain stays whole and `verify` names the torn line in its
notes. An unparseable line is accepted only when a `chain_repair` line follows it, or when it
is the last line of the newest file (a crash nobody has written after yet).

Writers: threads of one process share the instance lock; processes (gateway and a CLI run at
once) serialise on an flock of audit.jsonl.lock and re-read the last line when the file changed
under them, so concurrent writers never fork the chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nanobot import paths
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.audit")

GENESIS = "0" * 64
MAX_FIELD_CHARS = 500
MAX_ITEMS = 50  # per dict/list, so one event stays a few KiB
_RESERVED = ("ts", "event", "prev")
_BLOCK = 8192


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _clean(value, limit: int = MAX_FIELD_CHARS):
    """Redact strings (recursively) before cutting them, so a cut never leaves half a secret;
    anything not JSON-native becomes a string."""
    if isinstance(value, str):
        text = redact(value)
        return text if len(text) <= limit else f"{text[:limit]}…[+{len(text) - limit} chars]"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        items = list(value.items())
        out = {_clean(str(k), 100): _clean(v, limit) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"+{len(items) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out = [_clean(v, limit) for v in items[:MAX_ITEMS]]
        return out + [f"…+{len(items) - MAX_ITEMS} more"] if len(items) > MAX_ITEMS else out
    return _clean(str(value), limit)


def iter_lines_reversed(path: Path) -> Iterator[bytes]:
    """The lines of path, last first, read backwards in blocks (never the whole file).

    A final piece without a newline is yielded too (it is a torn line).
    """
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        first = True
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]
            tail = parts[1:]
            if first and tail:
                first = False
                if tail[-1] == b"":
                    tail.pop()  # the file ends with a newline
            yield from reversed(tail)
        if rest or not first:
            yield rest


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """(last line or None when the file is empty, whether it is torn = lacks its newline)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None, False
        f.seek(size - 1)
        torn = f.read(1) != b"\n"
    return next(iter_lines_reversed(path)), torn


class AuditLog:
    """Appends hash-chained events to one file; thread- and process-safe; never raises OSError."""

    def __init__(
        self, path: Path, max_bytes: int = 10_000_000, backup_count: int = 5, enabled: bool = True
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.enabled = enabled
        self._lock = threading.Lock()
        self._fh = None
        self._lock_fd: int | None = None
        self._known: tuple[int, int] | None = None  # (inode, size) right after our last write
        self._prev = GENESIS

    def record(self, event: str, **fields) -> None:
        """Append one event. A write failure is logged, never raised into the caller."""
        if not self.enabled:
            return
        obj = {"event": event}
        for key, value in fields.items():
            obj[f"_{key}" if key in _RESERVED else key] = _clean(value)
        with self._lock:
            try:
                self._append(obj)
            except OSError as e:
                self._discard()  # a half-flushed buffer must not be retried; re-read the disk
                log.error(
                    "audit: cannot write %s (%s); check logs/ ownership and disk space",
                    self.path,
                    e.strerror,
                )

    def close(self) -> None:
        with self._lock:
            self._close_file()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- internals (called with self._lock held) --

    def _append(self, obj: dict) -> None:
        if self._lock_fd is None:
            paths.ensure_dir(self.path.parent)
            lock_path = self.path.with_name(self.path.name + ".lock")
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, paths.FILE_MODE)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._sync()
            obj = {"ts": _now(), **obj}  # stamped under the lock, so ts never goes backwards
            line = json.dumps({**obj, "prev": self._prev}).encode()
            size = self._known[1]
            if size and size + len(line) + 1 > self.max_bytes:
                self._rotate()
                line = json.dumps({**obj, "prev": self._prev}).encode()
            self._write(line)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync(self) -> None:
        """Make sure our handle is the current file and self._prev its last line's hash."""
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if self._fh is None or current != os.fstat(self._fh.fileno()).st_ino:
            self._close_file()  # rotated or removed by another process
            self._open()
        st = os.fstat(self._fh.fileno())
        if self._known == (st.st_ino, st.st_size):
            return
        self._known = (st.st_ino, st.st_size)
        last, torn = _last_line(self.path)
        self._prev = GENESIS if last is None else line_hash(last)
        if torn:
            self._fh.write("\n")
            self._known = (st.st_ino, st.st_size + 1)
            repair = {"ts": _now(), "event": "chain_repair", "torn_bytes": len(last)}
            self._write(json.dumps({**repair, "prev": self._prev}).encode())
            log.warning(
                "audit: %s ended in a torn line (crash mid-write); chain repaired", self.path
            )

    def _write(self, line: bytes) -> None:
        self._fh.write(line.decode() + "\n")
        self._fh.flush()
        self._prev = line_hash(line)
        ino, size = self._known
        self._known = (ino, size + len(line) + 1)

    def _rotate(self) -> None:
        self._close_file()
        if self.backup_count > 0:
            for i in range(self.backup_count - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.unlink(self.path)
        self._open()
        self._known = (os.fstat(self._fh.fileno()).st_ino, 0)  # self._prev carries over

    def _open(self) -> None:
        self._fh = paths.open_private_append(self.path)
        # An existing file may be looser; if it is not ours to chmod, `nanobot doctor` says so.
        with contextlib.suppress(PermissionError):
            os.fchmod(self._fh.fileno(), paths.FILE_MODE)

    def _discard(self) -> None:
        fh, self._fh, self._known = self._fh, None, None
        if fh is not None:
            with contextlib.suppress(OSError):  # the fd is closed anyway
                fh.close()

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._known = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_AUDIT = AuditLog(Path(os.devnull), enabled=False)


def get_audit() -> AuditLog:
    """The process's audit log; a disabled no-op until configure_audit() is called."""
    return _AUDIT


def configure_audit(cfg) -> AuditLog:
    """Open NANOBOT_HOME/logs/audit.jsonl per cfg.security.audit and make it get_audit()'s."""
    global _AUDIT
    a = cfg.security.audit
    old, _AUDIT = _AUDIT, AuditLog(audit_path(), a.max_bytes, a.backup_count, a.enabled)
    old.close()
    return _AUDIT


def audit_path() -> Path:
    return paths.logs_dir() / "audit.jsonl"


# -- verification --


@dataclass
class VerifyResult:
    """ok, how many lines were read, where the chain first breaks, and notes (torn lines …)."""

    ok: bool
    lines_checked: int
    first_bad: tuple[str, int, str] | None = None
    files: int = 0
    notes: list[str] = field(default_factory=list)


def rotation_files(path: Path) -> tuple[list[Path], set[Path]]:
    """(every file of the rotation oldest first — backups up to the highest number, then path
    when it exists —, the backups missing among them)."""
    numbers = set()
    for p in path.parent.glob(f"{path.name}.*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit() and not suffix.startswith("0"):
            numbers.add(int(suffix))
    top = max(numbers, default=0)
    seq = [path.with_name(f"{path.name}.{i}") for i in range(top, 0, -1)]
    missing = {p for i, p in zip(range(top, 0, -1), seq, strict=True) if i not in numbers}
    if path.exists():
        seq.append(path)
    return seq, missing


def _parse(line: bytes) -> dict | None:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("prev"), str):
        return None
    return obj if len(obj["prev"]) == 64 else None


def verify(path: Path) -> VerifyResult:
    """Check the chain through every file of the rotation, oldest backup first.

    Reports the first line whose "prev" does not match the line before it (an edited line, a
    deleted or inserted line), an unparseable line that no chain_repair follows, and a missing
    backup between two present ones. Lines cut away at the very start (rotated-away backups)
    or at the very end cannot be detected by a hash chain; the notes say where the chain starts.
    """
    seq, missing = rotation_files(path)
    res = VerifyResult(True, 0, files=len(seq) - len(missing))

    def bad(where: Path, n: int, reason: str) -> VerifyResult:
        res.ok, res.first_bad = False, (str(where), n, reason)
        return res

    expected: str | None = None
    gap: Path | None = None
    last_file: Path | None = None
    for p in seq:
        if p in missing:
            gap = gap or p
            continue
        pending: int | None = None  # line number of an unparseable line awaiting chain_repair
        complete = True
        with open(p, "rb") as f:
            for n, raw in enumerate(f, 1):
                res.lines_checked += 1
                complete = raw.endswith(b"\n")
                line = raw[:-1] if complete else raw
                obj = _parse(line)
                if pending is not None:
                    if obj is None or obj.get("event") != "chain_repair":
                        return bad(
                            p, pending, "line is not a valid audit event (edited or corrupted)"
                        )
                    res.notes.append(
                        f"{p}:{pending}: torn line (crash mid-write), repaired by line {n}"
                    )
                    pending = None
                if gap is not None:
                    return bad(p, n, f"the file before it, {gap.name}, is missing (deleted?)")
                if obj is None:
                    pending, expected = n, line_hash(line)
                    continue
                if expected is None:
                    if obj["prev"] != GENESIS:
                        res.notes.append(f"the chain starts at {p}:{n} (older files rotated away)")
                elif obj["prev"] != expected:
                    before = f"line {n - 1}" if n > 1 else f"the last line of {last_file}"
                    return bad(
                        p,
                        n,
                        f"prev hash does not match {before}: that line was edited, "
                        f"or lines were deleted or inserted before line {n}",
                    )
                expected = line_hash(line)
        if pending is not None:
            if p is not seq[-1] or complete:
                return bad(p, pending, "line is not a valid audit event (edited or corrupted)")
            res.notes.append(
                f"{p}:{pending}: torn last line (crash mid-write); the next event repairs it"
            )
        last_file = p
    if gap is not None:
        return bad(gap, 0, "backup file is missing (deleted?)")
    return res
