"""`nanobot onboard --import PATH`: take over an existing nanobot home (0.1.x … 0.3.x).

Literal secrets in its config.json (any apiKey, token, secret or password) move into
NANOBOT_HOME/credentials/ (0600) and the config refers to them as "file:…"; the config is
written 0600 (nanobot writes 0644) after a 0600 backup; NANOBOT_HOME, the credentials folder
and the workspace become 0700; a workspace from another home is copied (memory included),
one in place is kept. Every step is reported; the last line says whether a model is usable.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import time
from pathlib import Path

from nanobot import paths
from nanobot.commands.onboard_model import store_key
from nanobot.config.loader import load_config, save_config, workspace_path
from nanobot.errors import ConfigError

_SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)
_REFERENCE = re.compile(r"^(file:.+|\$\{[A-Za-z_][A-Za-z0-9_]*\})$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def move_secrets(data: object, path: str = "") -> list[str]:
    """Replace literal secrets in data (in place) by file: references; the paths moved."""
    moved: list[str] = []
    if not isinstance(data, dict):
        return moved
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            moved += move_secrets(value, sub)
        elif (
            isinstance(value, str)
            and value.strip()
            and _SECRET_KEY.search(key)
            and not _REFERENCE.match(value.strip())
        ):
            data[key] = store_key(sub.replace(".", "-"), value.strip())
            moved.append(sub)
    return moved


def _tighten(path: Path, mode: int, report: list[str]) -> None:
    if path.exists() and _mode(path) != mode:
        before = _mode(path)
        path.chmod(mode)
        report.append(f"Mode of {path}: {before:o} → {mode:o}")


def import_home(source: Path, cfg_path: Path) -> int:
    """Migrate the nanobot home (or config.json) at source into NANOBOT_HOME; print a report."""
    from nanobot.commands.onboard import model_status

    source = source.expanduser().absolute()
    src_cfg = source if source.is_file() else source / "config.json"
    try:
        data = json.loads(src_cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot import {src_cfg}: {getattr(e, 'strerror', None) or 'not valid JSON'} — "
            "fix: give the nanobot home folder (the one holding config.json) or its config.json"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"cannot import {src_cfg}: not a JSON object — fix: check the file")
    home = paths.home()
    report: list[str] = [f"Importing {src_cfg} into {home}"]
    _tighten(home, paths.HOME_MODE, report)
    paths.ensure_dir(home)
    if cfg_path.exists():
        backup = cfg_path.with_name(f"config.json.bak-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(cfg_path, backup)
        backup.chmod(paths.FILE_MODE)
        report.append(f"Backed up {cfg_path} to {backup} (0600; it still holds any literal keys)")
    for moved in move_secrets(data):
        cred = home / "credentials" / moved.replace(".", "-")
        report.append(f"Moved the literal {moved} into {cred} (0600); the config says file:{cred}")
    save_config(data, cfg_path)
    report.append(f"Wrote {cfg_path} (0600)")
    _tighten(home / "credentials", paths.HOME_MODE, report)
    src_home = src_cfg.parent
    if src_cfg != cfg_path and src_cfg.exists() and _mode(src_cfg) & 0o077:
        report.append(f"The old {src_cfg} is still readable by others: delete it or chmod 600 it")
    try:
        cfg, info = load_config(cfg_path)
    except ConfigError as e:
        print("\n".join(report))
        print(f"Not ready: {e}")
        return e.exit_code
    workspace = workspace_path(cfg)
    old_ws = src_home / "workspace"
    if workspace.exists():
        report.append(f"Workspace kept: {workspace}")
    elif old_ws.is_dir() and src_home != home:
        shutil.copytree(old_ws, workspace, symlinks=True)
        report.append(f"Copied the workspace (memory included) from {old_ws} to {workspace}")
    else:
        paths.ensure_dir(workspace)
    _tighten(workspace, paths.HOME_MODE, report)
    report += [f"Warning: {w}" for w in info.warnings]
    print("\n".join(report))
    print(model_status(cfg_path)[1])
    return 0
