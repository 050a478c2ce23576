"""`nanobot audit init|verify|tail`: seal the audit trail, check it, or show its latest events."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Decisions shown by `tail --denied` (tools: "blocked by guard", "refused by …"; http: "rejected").
_DENIED_WORDS = ("denied", "blocked", "refused", "rejected", "rate limited")
_VALUE_CHARS = 120
_HIDDEN = ("ts", "seq", "event", "channel", "prev", "epoch", "mac")  # not shown by tail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--file",
        type=Path,
        default=None,
        help="audit file (default: NANOBOT_HOME/logs/audit.jsonl; its rotated backups are read too)",
    )
    init = sub.add_parser(
        "init", help="start sealing the trail; prints the verification key once (keep it elsewhere)"
    )
    init.add_argument(
        "--every",
        type=float,
        default=60.0,
        metavar="MINUTES",
        help="length of a sealing epoch: the key advances and the old one is destroyed this "
        "often (default 60)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing sealing key (the old verification key then checks only the "
        "events before this)",
    )
    verify = sub.add_parser(
        "verify", parents=[common], help="check chain, numbering, anchor and (with --key) seals"
    )
    verify.add_argument(
        "--key",
        default=None,
        metavar="HEX|file:PATH",
        help="the verification key printed by `audit init` (or file:PATH holding it)",
    )
    verify.add_argument(
        "--anchor",
        default=None,
        metavar="'seq=N head=HEX'",
        help="an anchor copied from the system log (journalctl -t nanobot-audit)",
    )
    tail = sub.add_parser("tail", parents=[common], help="print the latest events")
    tail.add_argument("-n", type=int, default=20, metavar="N", help="how many events (default 20)")
    tail.add_argument(
        "--denied",
        action="store_true",
        help="only denied, blocked and refused decisions and rate-limit hits",
    )


def run(args: argparse.Namespace) -> int:
    from nanobot.security import audit

    if args.audit_command == "init":
        return _init(args.every, args.force)
    path = args.file or audit.audit_path()
    if args.audit_command == "verify":
        return _verify(path, args.key, args.anchor)
    return _tail(path, args.n, args.denied)


def _init(minutes: float, force: bool) -> int:
    from nanobot.security.audit import AuditLog, audit_path
    from nanobot.security.auditseal import anchor_path, init_seal, seal_path

    if minutes < 1:
        print("--every must be at least 1 minute", file=sys.stderr)
        return 2
    path = seal_path()
    if path.exists() and not force:
        print(
            f"the audit trail is already sealed ({path} exists); keep using the verification key "
            "you were given, or replace it with --force",
            file=sys.stderr,
        )
        return 1
    key = init_seal(path, minutes * 60)
    log = AuditLog(audit_path(), anchor=anchor_path(), seal=path)
    log.record("audit_init", epoch_seconds=minutes * 60)
    log.close()
    print("Audit sealing is on. The verification key (shown once, not stored on this machine):")
    print()
    print(f"    {key.hex()}")
    print()
    print("Keep it somewhere else (a password manager, paper). Check the trail with")
    print("    nanobot audit verify --key <that key>")
    print(
        f"The sealing key in {path} advances every {minutes:g} minutes; the old one is destroyed."
    )
    return 0


def _read_key(text: str):
    from nanobot.security.auditseal import parse_key

    if text.startswith("file:"):
        text = Path(text[5:]).expanduser().read_text(encoding="utf-8")
    return parse_key(text)


def _verify(path: Path, key_text: str | None, anchor_text: str | None) -> int:
    from nanobot.security.auditseal import anchor_path, parse_anchor_text, seal_path
    from nanobot.security.auditverify import verify

    try:
        key = _read_key(key_text) if key_text else None
        expect = parse_anchor_text(anchor_text) if anchor_text else None
    except (OSError, ValueError) as e:
        print(f"audit verify: {e}", file=sys.stderr)
        return 2
    res = verify(path, anchor=anchor_path(), seal=seal_path(), key=key, expect=expect)
    if not res.ok:
        where, line_no, reason = res.first_bad
        at = f"{where}:{line_no}" if line_no else where
        print(f"audit chain BROKEN at {at}: {reason}")
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
        if key in _HIDDEN:
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
