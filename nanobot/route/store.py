"""The route's durable state: one append-only journal of accepted messages, stored replies and
retired keys, with group commit (writers arriving together share one fdatasync).

Records (one JSON object a line, in `state/route.jsonl`):
- {"op": "in", "id", "key", "msg"}     a message was accepted (durable before the channel's
                                        cursor moves on)
- {"op": "reply", "id", "out"}         its turn ended: the reply is stored and the message retired
                                        in this one write, so a restart resends the reply and
                                        never runs the turn again
- {"op": "out", "id", "out"}           a message that is not a reply (a tool's), before sending
- {"op": "done", "id", "key"}          the channel accepted it; the key is remembered so a
                                        channel that re-delivers (Telegram after a crash before
                                        its offset was saved) is told "already handled"

Crash windows and what a restart does:
- before "in" is on disk: the channel has not advanced its cursor and delivers the message again;
- "in" written, no "reply": the message is queued again (its turn runs once, from scratch);
- "reply" written: the stored reply is sent (no second turn);
- the channel accepted the reply, "done" not yet written: the reply is sent again — the only
  duplicate the route can produce, logged as such.
A torn last line (a kill during a write that was never acknowledged) is ignored; any other
unreadable line is skipped with a warning and the journal kept aside as `route.jsonl.corrupt`.
The journal is compacted (rewritten atomically with what is still open) when it grows.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from nanobot import paths
from nanobot.route.message import InboundMessage, OutboundMessage

log = logging.getLogger("nanobot.route")

DONE_KEEP = 5_000  # retired keys remembered: a channel re-delivers only its last batch (Telegram
# 100 updates, the WhatsApp bridge at most 1000 queued); more would only cost memory
COMPACT_BYTES = 8 * 1024 * 1024
COMPACT_CHUNK = 256  # records encoded at a time when compacting
JOURNAL = "route.jsonl"


class Store:
    """The journal under `root` (NANOBOT_HOME/state for the gateway). Methods block (fsync):
    call them from threads; they are thread-safe. Dedupe keys: `metadata["dedupe_key"]` when
    the channel gives one, else the record id."""

    def __init__(self, root: Path, *, compact: bool = True) -> None:
        self.path = paths.ensure_dir(root) / JOURNAL
        self._lock = threading.Lock()
        self._flushed = threading.Condition(self._lock)
        self._buffer: list[tuple[int, bytes]] = []  # (sequence number, line) not yet written
        self._seq = 0  # records handed to _commit
        self._durable = 0  # records known to be on disk
        self._flushing = False
        self._ids = itertools.count(1)
        self._inbound: dict[str, InboundMessage] = {}  # id → message without a reply
        self._keys: dict[str, str] = {}  # dedupe key → id, for pending messages and replies
        self._unsent: dict[str, OutboundMessage] = {}  # id → stored reply or outgoing message
        self._reply_keys: dict[str, str] = {}  # id of a stored reply → its message's key
        self._done: OrderedDict[str, None] = OrderedDict()
        self.resent = 0  # stored replies sent again after a restart (possible duplicates)
        self._load()
        if compact:
            self._compact()
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 — closed in close()

    # -- accepting ---------------------------------------------------------------------------

    def seen(self, key: str) -> bool:
        return key in self._keys or key in self._done

    def accept(self, msg: InboundMessage) -> bool:
        """Journal msg durably; False (nothing written) when its key is pending or done.
        Raises OSError when it cannot be written (then nothing was accepted)."""
        return self.accept_many([msg])[0]

    def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        """accept() for several messages with one write and one fdatasync; all or nothing:
        raises OSError when they cannot be written (then none was accepted)."""
        records, taken = [], []
        with self._lock:
            verdicts = []
            for msg in msgs:
                rid = self._new_id()
                key = str(msg.metadata.get("dedupe_key") or f"{msg.channel}-{rid}")
                if key in self._keys or key in self._done:
                    log.info("inbound %s was already accepted; not handled twice", key)
                    verdicts.append(False)
                    continue
                msg.metadata["inbox_id"] = rid
                msg.metadata["inbox_key"] = key
                self._keys[key] = rid
                self._inbound[rid] = msg
                taken.append((key, rid))
                records.append({"op": "in", "id": rid, "key": key, "msg": msg.to_dict()})
                verdicts.append(True)
        if not records:
            return verdicts
        try:
            self._commit(*records)
        except OSError:
            with self._lock:
                for key, rid in taken:
                    self._keys.pop(key, None)
                    self._inbound.pop(rid, None)
            raise
        return verdicts

    # -- replies -----------------------------------------------------------------------------

    def reply(self, msg: InboundMessage, out: OutboundMessage) -> str:
        """Store the reply to msg durably and retire msg in the same write; returns its id."""
        rid = msg.metadata.get("inbox_id") or self._next_id()
        self._commit({"op": "reply", "id": rid, "out": out.to_dict()})
        with self._lock:
            self._inbound.pop(rid, None)
            self._unsent[rid] = out
            key = msg.metadata.get("inbox_key")
            if key is not None:
                self._reply_keys[rid] = key
        return rid

    def outgoing(self, out: OutboundMessage) -> str:
        """Store a message that is not a reply (a tool's message to a chat) before sending it."""
        rid = self._next_id()
        self._commit({"op": "out", "id": rid, "out": out.to_dict()})
        with self._lock:
            self._unsent[rid] = out
        return rid

    def delivered(self, rid: str) -> bool:
        """The channel accepted the message stored as `rid`: retire it, remember its key.
        Cheap (no fsync), so the event loop may call it; True when the journal has grown past
        its limit and compact() is due (which rewrites it: call that from a thread)."""
        with self._lock:
            self._unsent.pop(rid, None)
            key = self._reply_keys.pop(rid, None)
            if key is not None:
                self._keys.pop(key, None)
                self._remember(key)
            # No fsync for "done": it guards against kill -9 (the page cache survives it);
            # after a power cut the worst case is one reply sent twice.
            return self._write_now({"op": "done", "id": rid, "key": key}) > COMPACT_BYTES

    def compact(self) -> None:
        """Rewrite the journal with what is still open (the owner of the state does this)."""
        with self._lock:
            if not self._flushing:
                self._compact()

    def retire(self, msg: InboundMessage) -> None:
        """Drop an accepted message without answering it (its sender cancelled the turn)."""
        if self.delivered(self.reply(msg, OutboundMessage(msg.channel, msg.chat_id, ""))):
            self.compact()

    def own_pending(self) -> list[InboundMessage]:
        """The messages without a reply that this process accepted."""
        mine = f"{os.getpid():x}."
        return [m for m in self.pending() if str(m.metadata.get("inbox_id", "")).startswith(mine)]

    def _remember(self, key: str) -> None:
        self._done[key] = None
        if len(self._done) > DONE_KEEP:
            self._done.popitem(last=False)

    # -- after a restart ---------------------------------------------------------------------

    def unsent(self) -> list[tuple[str, OutboundMessage]]:
        """Replies stored but not confirmed delivered by an earlier run, oldest first."""
        with self._lock:
            out = list(self._unsent.items())
        self.resent += len(out)
        return out

    def pending(self) -> list[InboundMessage]:
        """Accepted messages without a reply, oldest first."""
        with self._lock:
            return list(self._inbound.values())

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    # -- the journal -------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{os.getpid():x}.{next(self._ids):x}"

    def _next_id(self) -> str:
        with self._lock:
            return self._new_id()

    def _commit(self, *records: dict) -> None:
        """Append the records and return once they are on disk. Group commit: whoever finds no
        flush running writes everything queued so far with one write and one fdatasync."""
        line = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
        with self._lock:
            self._seq += 1
            mine = self._seq
            self._buffer.append((mine, line))
            while self._durable < mine:
                if self._flushing:
                    self._flushed.wait()
                    continue
                batch, self._buffer = self._buffer, []
                upto = self._seq
                self._flushing = True
                self._lock.release()
                try:
                    paths.write_all(self._fh.fileno(), b"".join(line for _, line in batch))
                    os.fdatasync(self._fh.fileno())
                except OSError:
                    self._lock.acquire()
                    self._flushing = False
                    self._truncate_torn()
                    # The others' records go back in line; they retry and learn for themselves.
                    self._buffer[:0] = [(seq, ln) for seq, ln in batch if seq != mine]
                    self._flushed.notify_all()
                    raise
                self._lock.acquire()
                self._flushing = False
                self._durable = max(self._durable, upto)
                self._flushed.notify_all()
            if self._buffer and not self._flushing:
                # Lines queued during the flush ("done" records, or records whose writers
                # wait): write them now; a waiting writer's own flush makes them durable.
                try:
                    paths.write_all(self._fh.fileno(), b"".join(line for _, line in self._buffer))
                    self._buffer = []
                except OSError:
                    self._truncate_torn()  # they stay queued; their writers' flush reports it

    def _truncate_torn(self) -> None:
        """After a failed write (disk full): drop a partial line so later appends stay valid."""
        try:
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                os.truncate(self.path, end)
        except OSError as e:
            log.error("could not repair %s after a failed write: %s", self.path, e)

    def _write_now(self, record: dict) -> int:
        """Append without waiting for the disk (under the lock); returns the journal's size."""
        line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
        if self._flushing:
            self._buffer.append((0, line))  # written after the running flush
            return 0
        paths.write_all(self._fh.fileno(), line)
        return self._fh.tell()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        bad = 0
        for raw in lines:
            try:
                self._apply(json.loads(raw))
            except (ValueError, TypeError, KeyError) as e:
                bad += 1
                log.warning("%s: skipped an unreadable record (%s)", self.path, e)
        if torn:
            log.info("%s: ignored a torn last record (a write cut short)", self.path)
        if bad:
            aside = self.path.with_name(JOURNAL + ".corrupt")
            shutil.copyfile(self.path, aside)
            log.warning("%d unreadable record(s); the journal was kept as %s", bad, aside)

    def _apply(self, r: dict) -> None:
        op, rid = r["op"], r["id"]
        if op == "in":
            msg = InboundMessage(**r["msg"])
            msg.metadata["inbox_id"] = rid
            msg.metadata["inbox_key"] = r["key"]
            self._inbound[rid] = msg
            self._keys[r["key"]] = rid
        elif op in ("reply", "out"):
            msg = self._inbound.pop(rid, None)
            self._unsent[rid] = OutboundMessage(**r["out"])
            key = msg.metadata.get("inbox_key") if msg is not None else None
            if key is not None:
                self._reply_keys[rid] = key
        elif op == "done":
            self._unsent.pop(rid, None)
            key = r.get("key") or self._reply_keys.get(rid)
            self._reply_keys.pop(rid, None)
            if key:
                self._keys.pop(key, None)
                self._remember(key)
        else:
            raise KeyError(f"unknown op {op!r}")

    def _compact(self) -> None:
        """Rewrite the journal with only what is still open (and the remembered keys)."""
        fh = getattr(self, "_fh", None)
        paths.atomic_write(self.path, self._open_lines())
        if fh is not None:
            fh.close()
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 — closed in close()

    def _open_records(self) -> Iterator[dict]:
        for k in self._done:
            yield {"op": "done", "id": "-", "key": k}
        keys_of = {v: k for k, v in self._keys.items()}
        for rid, msg in self._inbound.items():
            yield {"op": "in", "id": rid, "key": keys_of.get(rid, rid), "msg": asdict(msg)}
        for rid, out in self._unsent.items():
            key = self._reply_keys.get(rid)
            if key is not None:  # its "in" record first, so the reply retires a known message
                yield {"op": "in", "id": rid, "key": key, "msg": _stub(out)}
            yield {"op": "reply" if key else "out", "id": rid, "out": asdict(out)}

    def _open_lines(self) -> Iterator[bytes]:
        """The compacted journal in chunks of COMPACT_CHUNK records: a gateway that compacts
        while serving never holds the whole journal in memory (the C heap would keep that
        high-water mark for good)."""
        records = self._open_records()
        while chunk := list(itertools.islice(records, COMPACT_CHUNK)):
            yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk).encode()


def _stub(out: OutboundMessage) -> dict:
    """A placeholder inbound record for a compacted reply (only its key and id matter)."""
    return asdict(InboundMessage(out.channel, "", out.chat_id, ""))
