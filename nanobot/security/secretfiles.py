"""Who can read or replace the files secrets come from: `file:` references and credentials/.

A secret given as "file:/path" is only as safe as the file and every folder above it: a file
others can read leaks the key; a folder others can write lets them swap the file for their own
(and read what nanobot then sends, e.g. a provider key pointed at their server). inspect() says
what is wrong with one path, repair() fixes what can be fixed without guessing (modes of files
and folders we own); neither follows symlinks when changing anything.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

FAIL, WARN = "FAIL", "WARN"
_VAR = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class Finding:
    level: str  # FAIL | WARN
    path: Path
    problem: str


def file_refs(config_path: Path, env: dict[str, str] | None = None) -> list[tuple[str, Path]]:
    """(config key, file) for every "file:…" string in the config ("${NAME}" expanded)."""
    env = os.environ if env is None else env
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    out: list[tuple[str, Path]] = []

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, str) and node.startswith("file:"):
            raw = _VAR.sub(lambda m: env.get(m[1], m[0]), node[5:])
            if "${" not in raw:
                out.append((key, Path(raw).expanduser()))

    walk(data, "")
    return out


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))[2:].zfill(4)


def inspect(path: Path, uid: int, private_dir: bool = False) -> list[Finding]:
    """Findings for a secret file (or, private_dir, a folder that holds secrets) and its
    folders up to /. Owners other than uid and root are a FAIL, so is access by others to the
    file, and a folder others may write in without the sticky bit; group access is a WARN."""
    found: list[Finding] = []
    try:
        st = path.lstat()
    except FileNotFoundError:
        return [Finding(FAIL, path, "does not exist")]
    except OSError as e:
        return [Finding(WARN, path, f"cannot be checked ({e.strerror})")]
    if stat.S_ISLNK(st.st_mode):
        found.append(Finding(WARN, path, "is a symlink: the file it points to is checked"))
        try:
            target = path.resolve(strict=True)
        except OSError:
            return [*found, Finding(FAIL, path, "is a dangling symlink")]
        return found + inspect(target, uid, private_dir)
    if st.st_uid not in (uid, 0):
        found.append(Finding(FAIL, path, f"belongs to uid {st.st_uid}, not to nanobot's user"))
    if st.st_mode & 0o007:
        found.append(Finding(FAIL, path, f"mode {_mode(st)}: others can get at it"))
    elif st.st_mode & 0o070:
        found.append(Finding(WARN, path, f"mode {_mode(st)}: its group can get at it"))
    if private_dir and not stat.S_ISDIR(st.st_mode):
        found.append(Finding(FAIL, path, "is not a folder"))
    for folder in path.parents:
        found += _folder(folder, uid)
    return found


def _folder(folder: Path, uid: int) -> list[Finding]:
    try:
        st = folder.stat()
    except OSError:
        return []
    out = []
    sticky = st.st_mode & stat.S_ISVTX
    if st.st_uid not in (uid, 0):
        out.append(Finding(FAIL, folder, f"(a parent folder) belongs to uid {st.st_uid}"))
    if st.st_mode & 0o002 and not sticky:
        out.append(Finding(FAIL, folder, "(a parent folder) others can write in it"))
    elif st.st_mode & 0o020 and not sticky:
        out.append(Finding(WARN, folder, "(a parent folder) its group can write in it"))
    return out


def repair(path: Path, uid: int, private_dir: bool = False) -> list[str]:
    """chmod 600 (700 for private_dir) the path and drop group/other write from parent folders,
    where we own them and they are not symlinks. Returns what was done or could not be."""
    done: list[str] = []
    targets = [(path, 0o700 if private_dir else 0o600, True)]
    targets += [(p, None, False) for p in path.parents]
    for target, mode, is_leaf in targets:
        try:
            st = target.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            if is_leaf:
                done.append(f"skipped {target}: a symlink (fix its target by hand)")
            continue
        if st.st_uid != uid:
            continue  # not ours: doctor names it, a person decides
        old = stat.S_IMODE(st.st_mode)
        if is_leaf:
            new = mode if old & 0o077 else old
        else:
            new = old if st.st_mode & stat.S_ISVTX else old & ~0o022
        if new == old:
            continue
        try:
            os.chmod(target, new)  # lstat above: not a symlink
        except OSError as e:
            done.append(f"could not chmod {target}: {e.strerror}")
            continue
        done.append(f"chmod {oct(new)[2:]} {target} (was {_mode(st)})")
    return done


def credential_files(folder: Path) -> list[Path]:
    """The regular files directly in the credentials folder (symlinks included, to be named)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_symlink() or p.is_file())
    except OSError:
        return []
