"""`nanobot audit verify|tail`: check the audit trail's hash chain, or show its latest events."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Decisions shown by `tail --denied` (tools: "blocked by guard", "refused by …"; http: "rejected").
_DENIED_WORDS = ("denied", "blocked", "refused", "rejected", "rate limited")
_VALUE_CHARS = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--file",
        type=Path,
        default=None,
        help="audit file (default: NANOBOT_HOME/logs/audit.jsonl; its rotated backups are read too)",
    )
    sub.add_parser("verify", parents=[common], help="check the hash chain across all files")
    tail = sub.add_parser("tail", parents=[common], help="print the latest events")
    tail.add_argument("-n", type=int, default=20, metavar="N", help="how many events (default 20)")
    tail.add_argument(
        "--denied",
        action="store_true",
        help="only denied, blocked and refused decisions and rate-limit hits",
    )


def run(args: argparse.Namespace) -> int:
    from nanobot.security import audit

    path = args.file or audit.audit_path()
    if args.audit_command == "verify":
        return _verify(path)
    return _tail(path, args.n, args.denied)


def _verify(path: Path) -> int:
    from nanobot.security.audit import verify

    res = verify(path)
    if not res.ok:
        where, line_no, reason = res.first_bad
        print(f"audit chain BROKEN at {where}:{line_no}: {reason}")
        return 1
    if res.files == 0:
        print(f"audit chain OK: 0 lines in 0 files (no audit file yet at {path})")
        return 0
    print(f"audit chain OK: {res.lines_checked} lines in {res.files} files")
    for note in res.notes:
        print(f"note: {note}")
    return 0


def is_denied(event: dict) -> bool:
    """A refusal of any kind: access denied, tool blocked/refused, rate limit hit, HTTP 401…"""
    if event.get("event") == "rate_limit":
        return True
    decision = event.get("decision")
    return isinstance(decision, str) and any(w in decision.lower() for w in _DENIED_WORDS)


def format_event(event: dict) -> str:
    """One readable line: ts, event, channel, then key=value for the other fields."""
    parts = [str(event.get("ts", "?")), str(event.get("event", "?"))]
    if isinstance(event.get("channel"), str):
        parts.append(event["channel"])
    for key, value in event.items():
        if key in ("ts", "event", "channel", "prev"):
            continue
        parts.append(f"{key}={_show(value)}")
    return " ".join(parts)


def _show(value) -> str:
    if isinstance(value, str):
        text = value if value and not any(c.isspace() or c in '"=' for c in value) else None
        text = text or json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _tail(path: Path, count: int, denied_only: bool) -> int:
    from nanobot.security.audit import iter_lines_reversed, rotation_files

    if count <= 0:
        return 0
    seq, missing = rotation_files(path)
    picked: list[str] = []
    for p in reversed(seq):  # newest file first, each read from its end
        if p in missing:
            continue
        for raw in iter_lines_reversed(p):
            try:
                event = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                event = None
            if not isinstance(event, dict):
                if not denied_only and raw:
                    picked.append(f"(unreadable line in {p.name}: torn or edited)")
            elif not denied_only or is_denied(event):
                picked.append(format_event(event))
            if len(picked) >= count:
                break
        if len(picked) >= count:
            break
    if not seq:
        print(f"no audit events yet ({path} does not exist)")
    for line in reversed(picked):
        print(line)
    return 0
