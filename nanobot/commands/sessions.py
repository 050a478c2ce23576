"""`nanobot sessions list|show|rm`: the conversations kept in NANOBOT_HOME/sessions."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nanobot import paths
from nanobot.errors import NanobotError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="sessions with their channel, size and last activity")
    show = sub.add_parser("show", help="print a session's messages")
    show.add_argument("name", help='a name from "sessions list", or a key such as telegram:42')
    show.add_argument("-n", type=int, default=20, help="how many of the last messages (0 = all)")
    rm = sub.add_parser("rm", help="remove a session (its history is deleted)")
    rm.add_argument("name", help='a name from "sessions list", or a key such as telegram:42')
    rm.add_argument("--archived", action="store_true", help="also its archived (reset) files")


def _find(name: str) -> Path:
    """The session file for a listed name or a session key; NanobotError when there is none."""
    from nanobot.agent.sessions import SessionStore

    folder = paths.sessions_dir()
    candidates = [] if "/" in name or name.startswith(".") else [folder / f"{name}.jsonl"]
    candidates.append(SessionStore(folder).path(name))
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            return path
    raise NanobotError(f'no session {name!r} in {folder} — see "nanobot sessions list"')


def _messages(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue  # a torn line
        if isinstance(m, dict) and "role" in m:
            out.append(m)
    return out


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _size(n: int) -> str:
    return (
        f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / 2**20:.1f} MiB"
    )


def _list() -> int:
    folder = paths.sessions_dir()
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not files:
        print(f"No sessions yet in {folder}.")
        return 0
    print(f"{'NAME':<36} {'CHANNEL':<10} {'MESSAGES':>8} {'SIZE':>10}  LAST ACTIVITY")
    for path in files:
        st = path.stat()
        channel = path.stem.split("_", 1)[0] if "_" in path.stem else "?"
        count = len(_messages(path))
        print(
            f"{path.stem:<36} {channel:<10} {count:>8} {_size(st.st_size):>10}  {_when(st.st_mtime)}"
        )
    archived = len(list(folder.glob("*.jsonl.old")))
    if archived:
        print(f"({archived} archived history file(s) from /reset or idle expiry not listed)")
    return 0


def _show(name: str, last: int) -> int:
    path = _find(name)
    messages = _messages(path)
    shown = messages[-last:] if last > 0 else messages
    if len(shown) < len(messages):
        print(f"(the last {len(shown)} of {len(messages)} messages; -n 0 shows all)")
    for m in shown:
        when = _when(m["ts"]) + " " if isinstance(m.get("ts"), (int, float)) else ""
        text = (
            m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
        )
        calls = m.get("tool_calls") or []
        names = ", ".join(c.get("function", {}).get("name", "?") for c in calls)
        if names:
            text = f"{text}\n  → calls {names}".strip()
        if m["role"] == "tool" and len(text) > 300:
            text = text[:300] + f"… ({len(text) - 300} more characters)"
        print(f"{when}{m['role']}: {text}")
    return 0


def _rm(name: str, archived: bool) -> int:
    path = _find(name)
    removed = [path]
    if archived:
        removed += list(path.parent.glob(f"{path.stem}.*.jsonl.old"))
    for p in removed:
        p.unlink()
    print(f"Removed {len(removed)} file(s) of session {path.stem}.")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "show":
        return _show(args.name, args.n)
    return _rm(args.name, args.archived)
