"""`nanobot audit verify`: check the audit trail's chain, numbering, seals and anchor.

What a failure names (VerifyResult.first_bad = (file, line, reason); line 0 = the file itself):
  - a line whose "prev" does not match the line before it (edited, deleted, inserted, swapped);
  - a gap in seq (lines deleted, even with the chain recomputed), or a missing backup file;
  - a trail that starts later than the anchor's floor (the oldest file, or its first lines,
    deleted), or ends before the anchor's seq (the tail cut off, the file deleted or emptied);
  - with the verification key: the first line whose MAC fails under its epoch's key (a line
    rewritten after the fact), a line without a MAC after sealing started, an epoch that ends
    without its audit_seal line, and an epoch number that goes backwards.
What it cannot see: see SECURITY.md §8 ("What the seal does and does not detect").
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

from nanobot.security.auditseal import (
    GENESIS,
    Anchor,
    advance,
    epoch_key,
    line_hash,
    load_anchor,
    load_seal,
    mac_of,
    split_mac,
)

_BAD_EVENT = "line is not a valid audit event (edited or corrupted)"


@dataclass
class VerifyResult:
    """ok, lines read, where the trail first fails, and notes (torn lines, what was checked)."""

    ok: bool
    lines_checked: int
    first_bad: tuple[str, int, str] | None = None
    files: int = 0
    notes: list[str] = field(default_factory=list)
    last_seq: int = 0
    epochs_checked: int = 0  # epochs whose MACs were checked with the key


class _Broken(Exception):
    def __init__(self, where: Path | str, line: int, reason: str) -> None:
        self.where, self.line, self.reason = str(where), line, reason


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


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Walker:
    """State carried from line to line across the files of the rotation."""

    def __init__(self, res: VerifyResult, key: bytes | None, floor: int | None) -> None:
        self.res, self.key, self.floor = res, key, floor
        self.expected: str | None = None  # the hash the next "prev" must equal
        self.seq: int | None = None  # the last seq seen
        self.epoch: int | None = None
        self.last_event: str | None = None
        self.sealed = False  # a line with a MAC has been seen
        self.legacy = 0  # lines without seq (written before numbering existed)
        self.keys: dict[int, bytes] = {}
        self.head: str | None = None

    def line(self, p: Path, n: int, line: bytes, obj: dict, last_file: Path | None) -> None:
        if self.expected is None:
            if obj["prev"] != GENESIS and self.floor is None:
                self.res.notes.append(f"the chain starts at {p}:{n} (older files rotated away)")
        elif obj["prev"] != self.expected:
            before = f"line {n - 1}" if n > 1 else f"the last line of {last_file}"
            raise _Broken(
                p,
                n,
                f"prev hash does not match {before}: that line was edited, "
                f"or lines were deleted or inserted before line {n}",
            )
        self._seq(p, n, obj)
        self._seal(p, n, line, obj)
        self.expected = self.head = line_hash(line)
        self.last_event = obj.get("event")

    def _seq(self, p: Path, n: int, obj: dict) -> None:
        seq = _int(obj.get("seq"))
        if seq is None:
            if self.seq is not None:
                raise _Broken(p, n, "line has no seq after numbered lines (inserted?)")
            self.legacy += 1
            return
        if self.seq is None:  # the first numbered line: where must the trail start?
            if self.legacy:
                first = seq  # numbering began in the middle of an older trail
            elif self.floor is not None:
                first = self.floor  # the anchor knows what rotation dropped
            else:
                first = 1 if obj["prev"] == GENESIS else seq
            if seq != first:
                if seq > first:
                    raise _Broken(
                        p,
                        n,
                        f"events {first}..{seq - 1} are missing before this line: the oldest "
                        "file or its first lines were deleted",
                    )
                raise _Broken(p, n, f"seq {seq} is below the first kept event {first}")
        elif seq != self.seq + 1:
            if seq > self.seq + 1:
                raise _Broken(p, n, f"events {self.seq + 1}..{seq - 1} are missing before it")
            raise _Broken(p, n, f"seq {seq} repeats or goes back (after {self.seq})")
        self.seq = seq

    def _seal(self, p: Path, n: int, line: bytes, obj: dict) -> None:
        has_mac = "mac" in obj
        if not has_mac:
            if self.sealed:
                raise _Broken(p, n, "line has no seal after sealing started (inserted or forged)")
            return
        epoch = _int(obj.get("epoch"))
        split = split_mac(line)
        if epoch is None or epoch < 0 or split is None:
            raise _Broken(p, n, "sealed line is malformed (edited)")
        if self.epoch is not None and epoch != self.epoch:
            if epoch < self.epoch:
                raise _Broken(p, n, f"epoch goes back from {self.epoch} to {epoch}")
            if self.last_event != "audit_seal":
                raise _Broken(
                    p, n, f"epoch {self.epoch} ends without its audit_seal line (removed?)"
                )
        self.sealed = True
        if self.key is not None:
            body, mac = split
            want = mac_of(self._key(epoch), body)
            if not hmac.compare_digest(want, mac):
                raise _Broken(
                    p,
                    n,
                    f"the seal of epoch {epoch} fails on this line: it was rewritten after it "
                    "was written (or the key is not this trail's)",
                )
        self.epoch = epoch

    def _key(self, epoch: int) -> bytes:
        if epoch not in self.keys:
            below = [e for e in self.keys if e < epoch]
            if below:
                start = max(below)
                self.keys[epoch] = advance(self.keys[start], epoch - start)
            else:
                self.keys[epoch] = epoch_key(self.key, epoch)
        return self.keys[epoch]


def verify(
    path: Path,
    *,
    anchor: Path | None = None,
    seal: Path | None = None,
    key: bytes | None = None,
    expect: tuple[int, str] | None = None,
) -> VerifyResult:
    """Check every file of the rotation, oldest first, against the anchor file (when given),
    the sealing state (when given: it proves sealing was set up), the verification key (when
    given: every MAC), and expect = (seq, head) copied from the system log (when given)."""
    seq_files, missing = rotation_files(path)
    res = VerifyResult(True, 0, files=len(seq_files) - len(missing))
    anc = load_anchor(anchor) if anchor is not None else None
    state_exists = seal is not None and seal.exists()
    try:
        state = load_seal(seal) if state_exists else None
    except ValueError as e:
        res.notes.append(str(e))
        state = None
    walker = _Walker(res, key, anc.floor if anc else None)
    try:
        _walk(seq_files, missing, walker)
        _check_end(path, walker, anc, anchor, state_exists, expect)
    except _Broken as b:
        res.ok, res.first_bad = False, (b.where, b.line, b.reason)
        return res
    res.last_seq = walker.seq or 0
    if key is not None:
        res.epochs_checked = len(walker.keys)
    if walker.legacy and walker.seq is not None:
        res.notes.append(f"{walker.legacy} older lines carry no seq (written before numbering)")
    if not walker.sealed and state is not None:
        res.notes.append("no sealed line yet")
    if walker.sealed and key is None:
        res.notes.append("seals not checked: give the verification key (--key)")
    elif walker.sealed:
        res.notes.append(f"seals checked in {res.epochs_checked} epoch(s) with the key")
    elif res.lines_checked:
        res.notes.append("the trail is not sealed: run `nanobot audit init` to seal it")
    if state is not None and walker.epoch is not None and state.epoch < walker.epoch:
        res.notes.append(f"the sealing state is at epoch {state.epoch}, behind the trail")
    return res


def _walk(seq_files: list[Path], missing: set[Path], w: _Walker) -> None:
    gap: Path | None = None
    last_file: Path | None = None
    for p in seq_files:
        if p in missing:
            gap = gap or p
            continue
        pending: int | None = None  # line number of an unparseable line awaiting chain_repair
        complete = True
        with open(p, "rb") as f:
            for n, raw in enumerate(f, 1):
                w.res.lines_checked += 1
                complete = raw.endswith(b"\n")
                line = raw[:-1] if complete else raw
                obj = _parse(line)
                if pending is not None:
                    if obj is None or obj.get("event") != "chain_repair":
                        raise _Broken(p, pending, _BAD_EVENT)
                    w.res.notes.append(
                        f"{p}:{pending}: torn line (crash mid-write), repaired by line {n}"
                    )
                    pending = None
                if gap is not None:
                    raise _Broken(p, n, f"the file before it, {gap.name}, is missing (deleted?)")
                if obj is None:
                    pending, w.expected = n, line_hash(line)
                    continue
                w.line(p, n, line, obj, last_file)
        if pending is not None:
            if p is not seq_files[-1] or complete:
                raise _Broken(p, pending, _BAD_EVENT)
            w.res.notes.append(
                f"{p}:{pending}: torn last line (crash mid-write); the next event repairs it"
            )
        last_file = p
    if gap is not None:
        raise _Broken(gap, 0, "backup file is missing (deleted?)")


def _check_end(
    path: Path,
    w: _Walker,
    anc: Anchor | None,
    anchor_file: Path | None,
    state_exists: bool,
    expect: tuple[int, str] | None,
) -> None:
    last = w.seq or 0
    if expect is not None:
        seq, head = expect
        _compare(path, last, w.head, seq, head, "the logged anchor")
    if anc is not None:
        _compare(path, last, w.head, anc.seq, anc.head, f"the anchor ({anchor_file})")
    elif anchor_file is not None and (state_exists or last > 0):
        raise _Broken(
            anchor_file,
            0,
            "the anchor is missing (deleted?): truncation cannot be ruled out; compare with "
            "the last `nanobot-audit: anchor` line in the system log (verify --anchor)",
        )


def _compare(path: Path, last: int, head: str | None, seq: int, want: str, what: str) -> None:
    if last < seq:
        if last == 0:
            raise _Broken(
                path, 0, f"the trail is gone: {what} records {seq} events (file deleted?)"
            )
        raise _Broken(
            path,
            0,
            f"events {last + 1}..{seq} are missing at the end: {what} records {seq} events "
            "(the tail was cut off or the file deleted)",
        )
    if last == seq and head != want:
        raise _Broken(path, 0, f"the last event differs from {what}: the tail was rewritten")
