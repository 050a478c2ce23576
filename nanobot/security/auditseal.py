"""What makes the audit trail tamper-evident beyond its hash chain: keyed seals, the anchor.

Line format (one JSON object per line):
  {"ts", "seq", "event", …fields, "prev"[, "epoch", "mac"]}
  seq    1, 2, 3 … across rotations: a gap is a deleted line, whatever the hashes say.
  prev   SHA-256 of the previous line's bytes (64 zeros for the first line ever).
  epoch  the sealing epoch whose key made "mac" (only once `nanobot audit init` has run).
  mac    HMAC-SHA256 under that epoch's key of the line's bytes without the mac field,
         always the last field: the line ends with `, "mac": "<64 hex>"}`.

Forward-secure keys (in the spirit of journald's Forward Secure Sealing): `audit init` draws a
random 32-byte verification key V, prints it once and never stores it; epoch i's sealing key
is k_i = E^(i+1)(V) with E(k) = SHA-256("nanobot-audit-evolve" ‖ k). Only the current k_i is
kept, in credentials/audit-seal.json (0600, hidden from exec and the file tools). At the first
event after each interval the writer appends an `audit_seal` line (MAC'ed with k_i), then
replaces the stored key with k_{i+1} = E(k_i): k_i is gone from the machine, and since E cannot
be inverted, whoever steals k_{i+1} later cannot make a valid MAC for any line of epoch i or
before. V derives every k_i.

The anchor — latest seq, head hash, epoch, and the first seq that must still exist (older lines
were rotated away on purpose) — lives outside the trail in state/audit-anchor.json, rewritten
after every event, and is sent to the system log (journal) at each seal and at most every few
minutes as `nanobot-audit: anchor seq=… head=… epoch=…`. It is what turns a shortened, emptied
or deleted trail into a failure instead of a shorter chain that still links.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from nanobot import paths

GENESIS = "0" * 64
KEY_BYTES = 32
_EVOLVE = b"nanobot-audit-evolve\x00"
_MAC_HEAD = b', "mac": "'
_MAC_TAIL_LEN = len(_MAC_HEAD) + 64 + 2  # , "mac": "<64 hex>"}
SYSLOG_TAG = "nanobot-audit"
_BLOCK = 8192


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def evolve(key: bytes) -> bytes:
    """The next epoch's key; one-way, so the old key cannot be recomputed from the new one."""
    return hashlib.sha256(_EVOLVE + key).digest()


def advance(key: bytes, steps: int) -> bytes:
    for _ in range(steps):
        key = evolve(key)
    return key


def epoch_key(verification_key: bytes, epoch: int) -> bytes:
    """Epoch e's sealing key: the verification key evolved e + 1 times (so the verification
    key itself is never stored on the machine, not even during epoch 0)."""
    return advance(verification_key, epoch + 1)


def mac_of(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sealed_line(obj: dict, key: bytes | None) -> bytes:
    """The line for obj: plain JSON, or with "mac" appended as its last field under key."""
    body = json.dumps(obj).encode()
    if key is None:
        return body
    return body[:-1] + _MAC_HEAD + mac_of(key, body).encode() + b'"}'


def split_mac(line: bytes) -> tuple[bytes, str] | None:
    """(the line as it was MAC'ed, the MAC) — None when the line carries no MAC at its end."""
    if len(line) <= _MAC_TAIL_LEN or not line.endswith(b'"}'):
        return None
    if line[-_MAC_TAIL_LEN : -_MAC_TAIL_LEN + len(_MAC_HEAD)] != _MAC_HEAD:
        return None
    return line[:-_MAC_TAIL_LEN] + b"}", line[-66:-2].decode("ascii", "replace")


def parse_key(text: str) -> bytes:
    """A verification key as printed by `audit init` (64 hex digits); ValueError otherwise."""
    raw = bytes.fromhex(text.strip())
    if len(raw) != KEY_BYTES:
        raise ValueError("an audit verification key is 64 hexadecimal digits")
    return raw


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


def last_line(path: Path) -> tuple[bytes | None, bool]:
    """(last line or None when the file is empty, whether it is torn = lacks its newline)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None, False
        f.seek(size - 1)
        torn = f.read(1) != b"\n"
    return next(iter_lines_reversed(path)), torn


# -- the sealing key on disk --


@dataclass
class SealState:
    """credentials/audit-seal.json: the current epoch's key (the old ones are destroyed)."""

    epoch: int
    key: str  # hex
    epoch_started: float  # unix time
    interval: float  # seconds per epoch

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


def seal_path() -> Path:
    return paths.home() / "credentials" / "audit-seal.json"


def anchor_path() -> Path:
    return paths.state_dir() / "audit-anchor.json"


def init_seal(path: Path, interval: float) -> bytes:
    """Create the sealing state at epoch 0 and return the verification key (never stored)."""
    key = secrets.token_bytes(KEY_BYTES)
    save_seal(path, SealState(0, epoch_key(key, 0).hex(), time.time(), interval))
    return key


def load_seal(path: Path) -> SealState | None:
    """The sealing state, or None when `audit init` never ran. ValueError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e})") from None
    try:
        state = SealState(
            int(data["epoch"]), str(data["key"]), float(data["epoch_started"]),
            float(data["interval"]),
        )  # fmt: skip
        if len(state.key_bytes) != KEY_BYTES:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is not an audit sealing state") from None
    return state


def save_seal(path: Path, state: SealState) -> None:
    """Replace the state file (0600, fsync'ed): the previous key is no longer in it."""
    paths.ensure_dir(path.parent)
    paths.atomic_write(path, json.dumps(asdict(state)))


# -- the anchor --


@dataclass
class Anchor:
    seq: int  # the last event's seq
    head: str  # the last line's hash
    epoch: int | None
    floor: int  # the first seq the trail must still hold (older ones rotated away)


def load_anchor(path: Path) -> Anchor | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Anchor(int(data["seq"]), str(data["head"]), data.get("epoch"), int(data["floor"]))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def save_anchor(path: Path, anchor: Anchor) -> None:
    """Write-then-rename without fsync: cheap enough for every event, never half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.FILE_MODE)
    try:
        os.write(fd, json.dumps(asdict(anchor)).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SyslogSender:
    """RFC 3164 datagrams to the local syslog socket (journald listens on /dev/log)."""

    def __init__(self, address: str = "/dev/log", min_interval: float = 300.0) -> None:
        self.address = address
        self.min_interval = min_interval
        self._last = float("-inf")

    def anchor(self, anchor: Anchor, force: bool = False) -> bool:
        """Send the anchor when forced (a seal) or min_interval has passed; True when sent."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return False
        self._last = now
        msg = f"anchor seq={anchor.seq} head={anchor.head} epoch={anchor.epoch}"
        return self.send(msg)

    def send(self, message: str) -> bool:
        # facility authpriv (10), severity info (6)
        data = f"<86>{SYSLOG_TAG}[{os.getpid()}]: {message}".encode()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(self.address)
            s.send(data)
            return True
        return False


def parse_anchor_text(text: str) -> tuple[int, str]:
    """(seq, head) from a logged anchor line (`… seq=N head=H …`); ValueError otherwise."""
    fields = dict(w.split("=", 1) for w in text.split() if "=" in w)
    try:
        seq, head = int(fields["seq"]), fields["head"]
    except (KeyError, ValueError):
        raise ValueError("give the anchor as logged: seq=N head=HEX") from None
    if len(head) != 64:
        raise ValueError("the anchor's head is 64 hexadecimal digits")
    return seq, head
