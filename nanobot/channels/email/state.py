"""What survives a restart: which UIDs were handled, which still want \\Seen, what we sent.

One JSON file per account and mailbox under NANOBOT_HOME/state/email/, rewritten atomically
(fsync, rename) after every change, so a kill -9 at any instant leaves the last complete state:
  uidvalidity  the mailbox's UIDVALIDITY the UIDs below belong to (a new one starts afresh)
  watermark    every UID <= watermark is handled (or was there before we first looked)
  handled      UIDs above the watermark that are handled
  unseen       UID → route key of accepted mail that gets \\Seen once its reply went out
The sent log (append-only, fsynced) holds the route keys of inbound mail we answered and the
Message-IDs of mail we sent: a stored reply sent again after a crash is not mailed twice, and
our own mail coming back is recognised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from nanobot import paths

log = logging.getLogger("nanobot.channels.email")

SENT_KEEP = 20_000  # lines of the sent log kept on load (older ones are rewritten away)


def account_slug(username: str, host: str, port: int, mailbox: str) -> str:
    """A stable file-name-safe id of (account, mailbox)."""
    raw = f"{username.lower()}\0{host.lower()}\0{port}\0{mailbox}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class MailboxState:
    """Handled UIDs of one mailbox. Methods write through to disk; call them from one task."""

    def __init__(self, root: Path, slug: str) -> None:
        self.path = paths.ensure_dir(root) / f"{slug}.json"
        self.uidvalidity = 0
        self.watermark = 0
        self.handled: set[int] = set()
        self.unseen: dict[int, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise OSError(f"cannot read the e-mail state {self.path} ({e}); move it away") from e
        self.uidvalidity = int(data.get("uidvalidity", 0))
        self.watermark = int(data.get("watermark", 0))
        self.handled = {int(u) for u in data.get("handled", [])}
        self.unseen = {int(u): str(k) for u, k in data.get("unseen", {}).items()}

    def _save(self) -> None:
        data = {
            "uidvalidity": self.uidvalidity,
            "watermark": self.watermark,
            "handled": sorted(self.handled),
            "unseen": {str(u): k for u, k in sorted(self.unseen.items())},
        }
        paths.atomic_write(self.path, json.dumps(data))

    def open(self, uidvalidity: int, uidnext: int) -> bool:
        """Start on a mailbox; True when it is new to us (first look, or UIDVALIDITY changed):
        then what is already there is left alone and mail from UID `uidnext` on is handled."""
        if uidvalidity == self.uidvalidity:
            return False
        self.uidvalidity = uidvalidity
        self.watermark = max(0, uidnext - 1)
        self.handled.clear()
        self.unseen.clear()
        self._save()
        return True

    def is_handled(self, uid: int) -> bool:
        return uid <= self.watermark or uid in self.handled

    def done(self, uid: int, *, seen_key: str | None = None) -> None:
        """uid is handled; with seen_key it still wants \\Seen once that key was answered."""
        self.handled.add(uid)
        if seen_key is not None:
            self.unseen[uid] = seen_key
        self._save()

    def seen(self, uids: list[int]) -> None:
        for uid in uids:
            self.unseen.pop(uid, None)
        self._save()

    def advance(self, existing: list[int]) -> None:
        """Move the watermark up to just below the lowest unhandled UID in `existing` (every UID
        above the watermark that the mailbox still holds) and forget handled UIDs below it."""
        waiting = [u for u in existing if u > self.watermark and u not in self.handled]
        top = max([self.watermark, *existing])
        mark = min(waiting) - 1 if waiting else top
        if mark > self.watermark:
            self.watermark = mark
            self.handled = {u for u in self.handled if u > mark}
            self._save()


class SentLog:
    """Route keys we answered and Message-IDs we sent, remembered across restarts."""

    def __init__(self, root: Path, slug: str) -> None:
        self.path = paths.ensure_dir(root) / f"{slug}-sent.log"
        self.keys: set[str] = set()
        self.ids: set[str] = set()
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) > SENT_KEEP:
            lines = lines[-SENT_KEEP:]
            paths.atomic_write(self.path, "".join(f"{line}\n" for line in lines))
        for line in lines:
            kind, _, value = line.partition(" ")
            (self.keys if kind == "key" else self.ids).add(value)

    def answered(self, key: str) -> bool:
        return key in self.keys

    def record(self, key: str | None, message_id: str | None) -> None:
        lines = []
        if key:
            self.keys.add(key)
            lines.append(f"key {key}\n")
        if message_id:
            self.ids.add(message_id)
            lines.append(f"mid {message_id}\n")
        if not lines:
            return
        with paths.open_private_append(self.path) as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
