"""The agent's workspace: created on first use (0700) with its bootstrap files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from nanobot import paths

TEMPLATE_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "HEARTBEAT.md", "memory/MEMORY.md")


def write_templates(workspace: Path) -> list[Path]:
    """Copy the bootstrap files that are missing; never overwrite the user's edits.

    The workspace is written by the agent: a folder on the way that is a symlink, or a name
    that already exists in any form, is left alone, and files are created with O_EXCL and
    O_NOFOLLOW, so a planted link never makes us write outside the workspace.
    """
    written = []
    src = resources.files("nanobot") / "templates"
    for rel in TEMPLATE_FILES:
        dest = workspace / rel
        if _linked_on_the_way(workspace, dest) or os.path.lexists(dest):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = (src / rel).read_text(encoding="utf-8").encode()
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        written.append(dest)
    return written


def _linked_on_the_way(workspace: Path, dest: Path) -> bool:
    """True when a folder between the workspace and dest is a symlink."""
    here = workspace
    for part in dest.relative_to(workspace).parts[:-1]:
        here = here / part
        if here.is_symlink():
            return True
    return False


def ensure_workspace(workspace: Path) -> list[Path]:
    """The workspace folder exists (0700 when we create it) and has its bootstrap files;
    returns the files written."""
    if workspace.exists():
        return []
    paths.ensure_dir(workspace)
    return write_templates(workspace)
