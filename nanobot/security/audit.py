"""The audit trail: logs/audit.jsonl, one JSON event per line, hash-chained, numbered, sealed.

Every line is {"ts": ISO-8601 UTC, "seq": n, "event": name, …fields, "prev": sha256 hex} and,
once `nanobot audit init` has run, "epoch" and "mac" (see nanobot.security.auditseal for the
keys, the seals and the anchor kept outside the file). "prev" is the SHA-256 of the previous
line's bytes; the first line ever carries 64 zeros; seq counts 1, 2, 3 … across files.
Rotation (audit.jsonl → audit.jsonl.1 → … → audit.jsonl.<backup_count>) keeps the chain: the
first line of a new file points at the last line of the file rotated away, and the anchor's
"floor" records the first seq still kept when the oldest file is dropped. Field values are
redacted (nanobot.security.redact) and long strings cut, so no secret reaches the trail.

Events used across the project:
  access            channel, sender, decision ("allowed" | "denied"), reason
  rate_limit        channel, sender, kind ("message" | "tool")
  tool_call         tool, args (redacted, cut), decision, duration_ms, exit_code, session
  config_warning    message
  permission_warning  path, mode (or message)
  workspace_file_refused  path, reason (nanobot.security.wsread)
  gateway_start, gateway_stop
  http_request      path, status, client, decision
  audit_init        epoch_seconds — written by `nanobot audit init`
  audit_seal        next_epoch — the last line of an epoch, written by this module
  chain_repair      torn_bytes — written by this module, see below

Torn lines: a crash in the middle of a write can leave a last line without its newline. The
next writer ends that line with a newline and records a `chain_repair` event whose "prev" is
the hash of the torn bytes, so the chain stays whole and `verify` names the torn line in its
notes. An unparseable line is accepted only when a `chain_repair` line follows it, or when it
is the last line of the newest file (a crash nobody has written after yet).

Writers: threads of one process share the instance lock; processes (gateway and a CLI run at
once) serialise on an flock of audit.jsonl.lock and re-read the last line, the sealing state
and the anchor when they changed under them, so concurrent writers never fork the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from nanobot import paths
from nanobot.security.auditevent import event_fields, now_stamp
from nanobot.security.auditfile import first_seq, last_seq, stat_key
from nanobot.security.auditseal import (
    GENESIS,
    Anchor,
    SealState,
    SyslogSender,
    anchor_path,
    evolve,
    iter_lines_reversed,
    last_line,
    line_hash,
    load_anchor,
    load_seal,
    save_anchor,
    save_seal,
    seal_path,
    sealed_line,
)

log = logging.getLogger("nanobot.audit")


class AuditLog:
    """Appends chained, numbered (and, once initialised, sealed) events to one file.

    anchor: where the head is kept outside the file (None: no anchor); seal: the sealing state
    written by `audit init` (None or absent: lines carry no MAC); syslog: where the anchor is
    also sent at intervals (None: nowhere). Thread- and process-safe; never raises OSError.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 10_000_000,
        backup_count: int = 5,
        enabled: bool = True,
        *,
        anchor: Path | None = None,
        seal: Path | None = None,
        syslog: SyslogSender | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.enabled = enabled
        self.anchor_path = anchor
        self.seal_path = seal
        self.syslog = syslog
        self._lock = threading.Lock()
        self._fh = None
        self._lock_fd: int | None = None
        self._known: tuple[int, int] | None = None  # (inode, size) right after our last write
        self._prev = GENESIS
        self._seq = 0
        self._floor = 1
        self._seal: tuple[tuple[int, int, int] | None, SealState | None] = (None, None)
        self._anchor_dir_ok = False  # made once per process, not per event
        self._soon: list[tuple[str, dict]] = []  # record_soon()'s events, not yet written
        self._soon_lock = threading.Lock()

    def record(self, event: str, **fields) -> None:
        """Append one event. A write failure is logged, never raised into the caller."""
        self.record_many([(event, fields)])

    def record_soon(self, event: str, **fields) -> None:
        """Append one event from the event loop's thread: the events of one pass of the loop
        (a batch of updates admitted together) are written together — one lock, one anchor —
        before the loop runs anything scheduled after the first of them. Code that makes a
        decision durable calls flush() first. Without a running loop: record()."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.record(event, **fields)
            return
        with self._soon_lock:
            self._soon.append((event, fields))
            first = len(self._soon) == 1
        if first:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the events record_soon() holds, now."""
        self.record_many([])

    def record_many(self, events: list[tuple[str, dict]]) -> None:
        """Append events in order under one lock, moving the anchor once, after the last;
        the events record_soon() still holds go first."""
        if not self.enabled:
            return
        with self._soon_lock:
            if self._soon:
                events, self._soon = [*self._soon, *events], []
        if not events:
            return
        objs = [event_fields(event, fields) for event, fields in events]
        with self._lock:
            try:
                self._append(objs)
            except OSError as e:
                self._discard()  # a half-flushed buffer must not be retried; re-read the disk
                log.error(
                    "audit: cannot write %s (%s); check logs/ ownership and disk space",
                    self.path,
                    e.strerror,
                )

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._close_file()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- internals (called with self._lock held) --

    def tick(self) -> None:
        """Close the current epoch when it is due even if nothing happened, so a quiet trail's
        key still moves on (the gateway calls this every minute). Failures are logged."""
        if not self.enabled or self.seal_path is None:
            return
        with self._lock:
            try:
                self._append([])
            except OSError as e:
                self._discard()
                log.error("audit: cannot seal %s (%s)", self.path, e.strerror)

    def _append(self, objs: list[dict]) -> None:
        """Write objs after what is due (a repair line, an epoch's seal); [] = only that."""
        if self._lock_fd is None:
            paths.ensure_dir(self.path.parent)
            lock_path = self.path.with_name(self.path.name + ".lock")
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, paths.FILE_MODE)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            torn = self._sync()
            state = self._seal_state()
            if torn is not None:
                self._emit({"event": "chain_repair", "torn_bytes": torn}, state)
                log.warning(
                    "audit: %s ended in a torn line (crash mid-write); chain repaired", self.path
                )
            if state is not None and time.time() >= state.epoch_started + state.interval:
                state = self._advance(state)
            for i, obj in enumerate(objs):
                self._emit(obj, state, last=i == len(objs) - 1)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _emit(
        self, obj: dict, state: SealState | None, force_syslog: bool = False, last: bool = True
    ) -> None:
        """Number, chain and seal obj, rotate when full, write it, then (`last` of a batch)
        move the anchor."""
        obj = {"ts": now_stamp(), "seq": self._seq + 1, **obj}  # stamped under the lock

        def line() -> bytes:
            full = {**obj, "prev": self._prev}
            if state is not None:
                full["epoch"] = state.epoch
            return sealed_line(full, state.key_bytes if state is not None else None)

        data = line()
        size = self._known[1]
        if size and size + len(data) + 1 > self.max_bytes:
            self._rotate()
            data = line()
        self._write(data)
        self._seq += 1
        if not last:
            return
        anchor = Anchor(self._seq, self._prev, state.epoch if state else None, self._floor)
        if self.anchor_path is not None:
            if not self._anchor_dir_ok:
                paths.ensure_dir(self.anchor_path.parent)
                self._anchor_dir_ok = True
            save_anchor(self.anchor_path, anchor)
        if self.syslog is not None:
            self.syslog.anchor(anchor, force=force_syslog)

    def _advance(self, state: SealState) -> SealState:
        """Close epoch i with a seal line under k_i, then store k_{i+1} in place of k_i."""
        self._emit({"event": "audit_seal", "next_epoch": state.epoch + 1}, state, True)
        new = SealState(state.epoch + 1, evolve(state.key_bytes).hex(), time.time(), state.interval)
        save_seal(self.seal_path, new)
        self._seal = (stat_key(self.seal_path), new)
        return new

    def _seal_state(self) -> SealState | None:
        if self.seal_path is None:
            return None
        key = stat_key(self.seal_path)
        if key != self._seal[0]:
            try:
                state = load_seal(self.seal_path)
            except ValueError as e:
                log.error("audit: %s; events are written without seals until it is fixed", e)
                state = None
            self._seal = (key, state)
        return self._seal[1]

    def _sync(self) -> int | None:
        """Make sure our handle is the current file and _prev/_seq its last line's; returns
        the length of a torn last line (which it ends with a newline), else None."""
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if self._fh is None or current != os.fstat(self._fh.fileno()).st_ino:
            self._close_file()  # rotated or removed by another process
            self._open()
        st = os.fstat(self._fh.fileno())
        if self._known == (st.st_ino, st.st_size):
            return None
        self._known = (st.st_ino, st.st_size)
        anchor = load_anchor(self.anchor_path) if self.anchor_path is not None else None
        self._floor = anchor.floor if anchor is not None else 1
        last, torn = last_line(self.path)
        if last is None:  # a new file: carry on from the anchor (another process rotated)
            self._prev = anchor.head if anchor is not None else GENESIS
            self._seq = anchor.seq if anchor is not None else 0
            return None
        self._prev = line_hash(last)
        self._seq = last_seq(self.path)
        if anchor is not None and self._seq == 0:
            self._seq = anchor.seq  # a file of old lines without seq
        if not torn:
            return None
        self._fh.write("\n")
        self._fh.flush()
        self._known = (st.st_ino, st.st_size + 1)
        return len(last)

    def _write(self, line: bytes) -> None:
        self._fh.write(line.decode() + "\n")
        self._fh.flush()
        self._prev = line_hash(line)
        ino, size = self._known
        self._known = (ino, size + len(line) + 1)

    def _rotate(self) -> None:
        self._close_file()
        if self.backup_count > 0:
            oldest = self.path.with_name(f"{self.path.name}.{self.backup_count}")
            if oldest.exists():  # it is dropped now: the trail starts with the next file
                keep = self.path.with_name(f"{self.path.name}.{self.backup_count - 1}")
                self._floor = first_seq(self.path if self.backup_count == 1 else keep) or 1
            for i in range(self.backup_count - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.unlink(self.path)
            self._floor = self._seq + 1
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


_AUDIT = AuditLog(Path(os.devnull), enabled=False)


def get_audit() -> AuditLog:
    """The process's audit log; a disabled no-op until configure_audit() is called."""
    return _AUDIT


def configure_audit(cfg) -> AuditLog:
    """Open NANOBOT_HOME/logs/audit.jsonl per cfg.security.audit, anchored in
    state/audit-anchor.json and the system log, sealed when credentials/audit-seal.json exists
    (`nanobot audit init`), and make it get_audit()'s."""
    global _AUDIT
    a = cfg.security.audit
    new = AuditLog(
        audit_path(),
        a.max_bytes,
        a.backup_count,
        a.enabled,
        anchor=anchor_path(),
        seal=seal_path(),
        syslog=SyslogSender(),
    )
    old, _AUDIT = _AUDIT, new
    old.close()
    return _AUDIT


def audit_path() -> Path:
    return paths.logs_dir() / "audit.jsonl"


# -- verification lives in auditverify; these names stay importable from here --

from nanobot.security.auditverify import VerifyResult, rotation_files, verify  # noqa: E402

__all__ = [
    "GENESIS",
    "AuditLog",
    "VerifyResult",
    "audit_path",
    "configure_audit",
    "get_audit",
    "iter_lines_reversed",
    "line_hash",
    "rotation_files",
    "verify",
]
