"""The agent's workspace: created on first use (0700) with its bootstrap files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nanobot import paths

TEMPLATE_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "HEARTBEAT.md", "memory/MEMORY.md")


def write_templates(workspace: Path) -> list[Path]:
    """Copy the bootstrap files that are missing; never overwrite the user's edits."""
    written = []
    src = resources.files("nanobot") / "templates"
    for rel in TEMPLATE_FILES:
        dest = workspace / rel
        if dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text((src / rel).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(dest)
    return written


def ensure_workspace(workspace: Path) -> list[Path]:
    """The workspace folder exists (0700 when we create it) and has its bootstrap files;
    returns the files written."""
    if workspace.exists():
        return []
    paths.ensure_dir(workspace)
    return write_templates(workspace)
