#!/usr/bin/python3
"""nanobotctl backup / restore: NANOBOT_HOME of the nanobot service as one archive (run as root).

  nanobotctl backup [--output FILE] [--credentials-to AGE_RECIPIENT]
  nanobotctl restore FILE [--credentials-identity AGE_KEY_FILE]

backup writes a gzip'ed tar (root only, 0600; default /var/backups/nanobot/nanobot-<host>-<utc
time>.tar.gz) of NANOBOT_HOME: config.json, sessions, state (inbox, Telegram offset, audit
anchor), logs (audit trail and rotated files), workspace, media and the rest, while the service
runs. The state and the logs are copied while the service is frozen (cgroup freezer) where
systemd can freeze it, the anchor before the trail it describes, and a *.jsonl copy ends at
its last complete line, so the copied audit trail verifies. The runtime secrets,
NANOBOT_HOME/credentials (the audit sealing key, ...) and NANOBOT_HOME/whatsapp-auth (the linked
WhatsApp session), are left out unless --credentials-to names an age recipient (age1...), and
then only encrypted to it. /etc/nanobot/credentials is never included: the Ansible role writes
it from the vault.

restore stops nanobot, moves the current files (not the runtime secrets) aside to
/var/lib/nanobot/restore-<time>-<pid>/ (the workspace filesystem is emptied instead: a mount
point cannot be moved), unpacks the archive and gives its files to the service user, replaces
the runtime secrets only when --credentials-identity decrypts the archive's copy, and starts
nanobot again (or when --start is given).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HOME = Path("/var/lib/nanobot/.nanobot")
UNIT = "nanobot.service"
USER = "nanobot"
BACKUP_DIR = Path("/var/backups/nanobot")
SECRET_DIRS = ("credentials", "whatsapp-auth")  # runtime secrets: only ever encrypted
# Copied first (while frozen): the anchor before the trail it describes.
FIRST = ("state", "logs", "sessions", "config.json")
LAST = ("workspace",)
MANIFEST = "nanobot-backup.json"
CREDS_MEMBER = "credentials.tar.age"


def _systemctl(*args: str) -> bool:
    return subprocess.run(["systemctl", *args], capture_output=True, check=False).returncode == 0


def _complete_lines(data: bytes) -> bytes:
    """A .jsonl file copied while written may end in half a line: keep the complete ones."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    """Add path (recursively); *.jsonl files trimmed to their last complete line."""
    if path.is_symlink() or not path.is_file():
        tar.add(path, arcname, recursive=False)
        if path.is_dir() and not path.is_symlink():
            for child in sorted(path.iterdir()):
                _add(tar, child, f"{arcname}/{child.name}")
        return
    info = tar.gettarinfo(path, arcname)
    with open(path, "rb") as f:
        data = f.read()
    if path.suffix == ".jsonl":
        data = _complete_lines(data)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _order(home: Path) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in home.iterdir() if p.name not in SECRET_DIRS)
    first = [n for n in FIRST if n in names]
    first += [n for n in names if n not in first and n not in LAST]
    return first, [n for n in LAST if n in names]


def backup(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.output or BACKUP_DIR / f"nanobot-{socket.gethostname()}-{stamp}.tar.gz")
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    first, last = _order(HOME)
    part = out.with_name(out.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    frozen = False
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            frozen = _systemctl("is-active", "--quiet", UNIT) and _systemctl("freeze", UNIT)
            try:
                for name in first:
                    _add(tar, HOME / name, name)
            finally:
                if frozen:
                    _systemctl("thaw", UNIT)
            for name in last:
                _add(tar, HOME / name, name)
            if args.credentials_to and any((HOME / n).exists() for n in SECRET_DIRS):
                _add_encrypted_credentials(tar, args.credentials_to)
            manifest = {
                "created": stamp,
                "host": socket.gethostname(),
                "frozen": frozen,
                "contents": first + last + ([CREDS_MEMBER] if args.credentials_to else []),
                "credentials": "age-encrypted" if args.credentials_to else "not included",
            }
            data = json.dumps(manifest, indent=2).encode() + b"\n"
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    how = "frozen for the state copy" if frozen else "not frozen (no cgroup freezer here)"
    print(
        f"backup written to {out} ({out.stat().st_size} bytes; nanobot {how}; credentials "
        f"{'encrypted to ' + args.credentials_to if args.credentials_to else 'not included'})"
    )
    return 0


def _add_encrypted_credentials(tar: tarfile.TarFile, recipient: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as inner:
        for name in SECRET_DIRS:
            if (HOME / name).exists():
                _add(inner, HOME / name, name)
    done = subprocess.run(
        ["age", "--encrypt", "--recipient", recipient],
        input=buf.getvalue(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"age could not encrypt the credentials: {done.stderr.decode().strip()}")
    info = tarfile.TarInfo(CREDS_MEMBER)
    info.size, info.mtime, info.mode = len(done.stdout), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(done.stdout))


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir() or m.issym()):
            raise SystemExit(f"refusing archive member {m.name!r}: not a plain relative path")
        if m.issym() and (m.linkname.startswith("/") or ".." in Path(m.linkname).parts):
            raise SystemExit(f"refusing symlink {m.name!r} -> {m.linkname!r}")
        if parts and parts[0] in SECRET_DIRS:
            raise SystemExit(f"refusing plain-text credentials in the archive ({m.name})")
        members.append(m)
    return members


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def restore(args: argparse.Namespace) -> int:
    account = pwd.getpwnam(USER)
    with tarfile.open(args.archive, "r:gz") as tar:
        members = _safe_members(tar)
        names = {m.name for m in members}
        if MANIFEST not in names:
            raise SystemExit(f"{args.archive} is not a nanobotctl backup (no {MANIFEST})")
        if CREDS_MEMBER in names and not args.credentials_identity:
            print(
                "note: the archive holds encrypted credentials; give --credentials-identity "
                "to restore them (the current ones are kept)"
            )
        was_active = _systemctl("is-active", "--quiet", UNIT)
        _systemctl("stop", UNIT)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = HOME.parent / f"restore-{stamp}-{os.getpid()}"
        aside.mkdir(mode=0o700)
        for entry in HOME.iterdir():
            if entry.name in SECRET_DIRS:
                continue
            if entry.name == "workspace" and os.path.ismount(entry):
                for child in entry.iterdir():  # a mount point cannot be moved: empty it
                    shutil.rmtree(
                        child
                    ) if child.is_dir() and not child.is_symlink() else child.unlink()
                continue
            entry.rename(aside / entry.name)
        extract = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for m in members:
            if m.name not in (MANIFEST, CREDS_MEMBER):
                tar.extract(m, HOME, **extract)  # over an existing (mount point) dir: attrs only
        for top in {m.name.split("/")[0] for m in members} - {MANIFEST, CREDS_MEMBER}:
            _chown_tree(HOME / top, account.pw_uid, account.pw_gid)
        if CREDS_MEMBER in names and args.credentials_identity:
            _restore_credentials(
                tar.extractfile(CREDS_MEMBER).read(), args.credentials_identity, account
            )
    if (was_active or args.start) and not _systemctl("start", UNIT):
        print(f"restored, but {UNIT} did not start: journalctl -u {UNIT}", file=sys.stderr)
        return 1
    print(f"restored {args.archive}; the previous files are in {aside}")
    return 0


def _restore_credentials(blob: bytes, identity: str, account) -> None:
    done = subprocess.run(
        ["age", "--decrypt", "--identity", identity],
        input=blob,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"age could not decrypt the credentials: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r") as inner:
        members = inner.getmembers()
        tops = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
        for m in members:
            parts = Path(m.name).parts
            if m.name.startswith("/") or ".." in parts or not parts or parts[0] not in SECRET_DIRS:
                raise SystemExit(f"refusing credentials member {m.name!r}")
        for top in tops:
            if (HOME / top).exists():
                shutil.rmtree(HOME / top)
        inner.extractall(HOME, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    for top in tops:
        _chown_tree(HOME / top, account.pw_uid, account.pw_gid)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nanobotctl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backup", help="write an archive of NANOBOT_HOME")
    b.add_argument("--output", help="archive path (default: /var/backups/nanobot/...)")
    b.add_argument(
        "--credentials-to",
        metavar="AGE_RECIPIENT",
        help="also include NANOBOT_HOME/credentials, encrypted to this age recipient",
    )
    r = sub.add_parser("restore", help="replace NANOBOT_HOME with an archive's contents")
    r.add_argument("archive")
    r.add_argument(
        "--credentials-identity",
        metavar="AGE_KEY_FILE",
        help="decrypt and restore the archive's credentials with this age identity",
    )
    r.add_argument("--start", action="store_true", help="start nanobot even if it was stopped")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("nanobotctl backup/restore must run as root (sudo nanobotctl ...)")
    return backup(args) if args.cmd == "backup" else restore(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
