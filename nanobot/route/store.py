"""The route's durable state: accepted messages, replies not yet delivered, retired message keys.

Each accepted message is a file in `inbox/` (written before the channel's cursor moves on).
When its turn ends, the reply is written to `outbox/` under the same name and the inbox file is
removed: the reply's existence retires the message, so a restart resends the stored reply and
never runs the turn again. Once the channel took the reply, its key is appended to `done.log`
and the outbox file removed; the journal lets a channel that re-delivers a message (Telegram
after a crash before its offset was saved) be told "already handled".

Crash windows and what a restart does:
- before the inbox write: the channel has not advanced its cursor and delivers the message again;
- inbox written, turn unfinished: the message is queued again (the turn runs once, from scratch);
- reply written: the stored reply is sent (no second turn);
- channel accepted the reply, done.log not yet written: the reply is sent again (counted and
  logged as a possible duplicate; the only duplicate the route can produce).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from nanobot import paths
from nanobot.route.message import InboundMessage, OutboundMessage

log = logging.getLogger("nanobot.route")

DONE_KEEP = 20_000  # retired keys remembered (a channel re-delivers only its last batch)
_seq = itertools.count()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120]


def _key_of(name: str) -> str:
    return name.split("-", 2)[-1].removesuffix(".json")


class Store:
    """Files under `root` (NANOBOT_HOME/state for the gateway). Methods block: call them in a
    thread. Dedupe keys: `metadata["dedupe_key"]` when the channel gives one, else generated."""

    def __init__(self, root: Path) -> None:
        self.inbox = paths.ensure_dir(root / "inbox")
        self.outbox = paths.ensure_dir(root / "outbox")
        self._done_path = root / "done.log"
        self._pending: set[str] = set()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._done_lines = 0
        self._done_fh = None
        self.resent = 0  # stored replies sent again after a restart (possible duplicates)
        self._load()

    def _load(self) -> None:
        self._pending = {
            _key_of(f.name) for d in (self.inbox, self.outbox) for f in d.glob("*.json")
        }
        try:
            lines = self._done_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for key in lines[-DONE_KEEP:]:
            if key:
                self._done[key] = None
        self._done_lines = len(lines)

    # -- accepting ---------------------------------------------------------------------------

    def seen(self, key: str) -> bool:
        return key in self._pending or key in self._done

    def accept(self, msg: InboundMessage) -> bool:
        """Write msg to the inbox; False (and nothing written) when its key is pending or done."""
        raw = msg.metadata.get("dedupe_key") or f"{msg.channel}-{time.time_ns()}-{next(_seq)}"
        key = _safe(str(raw))
        if self.seen(key):
            log.info("inbound %s was already accepted; not handled twice", key)
            return False
        self._pending.add(key)
        name = f"{time.time_ns():020d}-{next(_seq):06d}-{key}.json"
        msg.metadata["inbox_file"] = name
        try:
            paths.atomic_write(self.inbox / name, json.dumps(asdict(msg), ensure_ascii=False))
        except OSError:
            self._pending.discard(key)
            raise
        return True

    # -- replies -----------------------------------------------------------------------------

    def reply(self, msg: InboundMessage, out: OutboundMessage) -> str:
        """Store the reply to msg durably and retire msg; returns the record's name."""
        name = msg.metadata.get("inbox_file") or f"{time.time_ns():020d}-{next(_seq):06d}-x.json"
        record = {"inbound": asdict(msg), "reply": asdict(out)}
        paths.atomic_write(self.outbox / name, json.dumps(record, ensure_ascii=False))
        (self.inbox / name).unlink(missing_ok=True)
        self._pending.add(_key_of(name))
        return name

    def outgoing(self, out: OutboundMessage) -> str:
        """Store a message that is not a reply (a tool's message to a chat) before sending it."""
        name = f"{time.time_ns():020d}-{next(_seq):06d}-out.{next(_seq)}.json"
        paths.atomic_write(self.outbox / name, json.dumps({"reply": asdict(out)}))
        return name

    def delivered(self, name: str) -> None:
        """The channel accepted the reply stored as `name`: remember its key, drop the record."""
        key = _key_of(name)
        self._remember(key)
        (self.outbox / name).unlink(missing_ok=True)
        self._pending.discard(key)

    def _remember(self, key: str) -> None:
        self._done[key] = None
        if len(self._done) > DONE_KEEP:
            self._done.popitem(last=False)
        if self._done_fh is None:
            self._done_fh = paths.open_private_append(self._done_path)
        # No fsync: the record protects against kill -9 (the page cache survives it); after a
        # power cut the worst case is one reply sent twice.
        self._done_fh.write(key + "\n")
        self._done_fh.flush()
        self._done_lines += 1
        if self._done_lines > 2 * DONE_KEEP:
            self._compact()

    def _compact(self) -> None:
        self._done_fh.close()
        self._done_fh = None
        paths.atomic_write(self._done_path, "".join(k + "\n" for k in self._done))
        self._done_lines = len(self._done)

    # -- after a restart ---------------------------------------------------------------------

    def unsent(self) -> list[tuple[str, OutboundMessage]]:
        """Replies stored but not confirmed delivered by an earlier run, oldest first."""
        out = []
        for f in sorted(self.outbox.glob("*.json")):
            try:
                record = json.loads(f.read_text(encoding="utf-8"))
                out.append((f.name, OutboundMessage(**record["reply"])))
            except (OSError, ValueError, TypeError, KeyError) as e:
                self._set_aside(f, e)
        self.resent += len(out)
        return out

    def pending(self) -> list[InboundMessage]:
        """Accepted messages without a reply, oldest first; unreadable files set aside."""
        replied = {f.name for f in self.outbox.glob("*.json")}
        out = []
        for f in sorted(self.inbox.glob("*.json")):
            if f.name in replied:  # crashed between writing the reply and retiring the message
                f.unlink(missing_ok=True)
                continue
            try:
                msg = InboundMessage(**json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as e:
                self._set_aside(f, e)
                continue
            msg.metadata["inbox_file"] = f.name
            out.append(msg)
        return out

    def _set_aside(self, f: Path, err: Exception) -> None:
        log.warning("%s is unreadable (%s); moved aside as %s.corrupt", f, err, f.stem)
        try:
            os.replace(f, f.with_suffix(".corrupt"))
        except OSError as e:
            log.error("could not move %s aside: %s", f, e)
        self._pending.discard(_key_of(f.name))

    def close(self) -> None:
        if self._done_fh is not None:
            self._done_fh.close()
            self._done_fh = None
