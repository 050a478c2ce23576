"""Skills: instructions in skills/<name>/SKILL.md, from the workspace or built in (templates/).

A SKILL.md starts with front matter between `---` lines: `name`, `description`, `always`
(true: the whole skill is in every prompt) and the requirements — `bins` (programs on PATH)
and `env` (environment variables), written flat, under `requires:`, or as nanobot's
`metadata: {"nanobot": {"requires": {...}}}` JSON. A workspace skill overrides a built-in one of
the same name. A skill whose requirements are missing is listed as unavailable with the reason.

Workspace skills are read only through the safe reader (no links, regular files, capped) and
parsed once per version of the file (cached by its stamp, looked at again at most once a
second). Skills are instructions the agent follows: nothing here fetches or installs one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from nanobot.security.wsread import Refused, Stamp, WorkspaceReader
from nanobot.tools.base import ToolContext, ToolResult

FOLDER = "skills"
MAX_SKILL_BYTES = 64 * 1024
MAX_SKILLS = 200
RECHECK_SECONDS = 1.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Skill:
    name: str
    description: str
    body: str
    origin: str  # "workspace" or "built-in"
    location: str  # skills/<name>/SKILL.md, or the built-in file
    always: bool = False
    bins: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)

    def missing(self) -> str:
        """Why the skill cannot be used here ("" when it can)."""
        gone = [f"program {b}" for b in self.bins if not shutil.which(b)]
        gone += [f"environment variable {e}" for e in self.env if not os.environ.get(e)]
        return ("missing " + ", ".join(gone)) if gone else ""


def _list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            items = value.strip("[]").split(",")
    else:
        items = value.split(",")
    return [str(i).strip().strip("'\"") for i in items if str(i).strip().strip("'\"")]


def parse(text: str, default_name: str, origin: str, location: str) -> Skill:
    """A SKILL.md's front matter and body (no front matter: the name is the folder's)."""
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            body = text[end + 4 :].lstrip("\n")
            section = ""
            for line in text[3:end].splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                key, _, value = line.strip().partition(":")
                key, value = key.strip().lower(), value.strip()
                if not line.startswith((" ", "\t")):
                    section = key if not value else ""
                if key == "metadata" and value.startswith("{"):
                    try:
                        req = json.loads(value).get("nanobot", {}).get("requires", {})
                        meta["bins"], meta["env"] = req.get("bins", []), req.get("env", [])
                    except (ValueError, AttributeError):
                        pass
                elif section == "requires" and key in ("bins", "env") and value:
                    meta[key] = _list(value)
                elif value:
                    meta[key] = value.strip("'\"")
    bins = meta.get("bins", [])
    env = meta.get("env", [])
    return Skill(
        name=str(meta.get("name") or default_name),
        description=str(meta.get("description") or "").strip(),
        body=body.strip(),
        origin=origin,
        location=location,
        always=str(meta.get("always", "")).lower() in ("true", "yes", "1"),
        bins=bins if isinstance(bins, list) else _list(str(bins)),
        env=env if isinstance(env, list) else _list(str(env)),
    )


def builtin_skills() -> dict[str, Skill]:
    root = resources.files("nanobot") / "templates" / FOLDER
    out: dict[str, Skill] = {}
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        f = entry / "SKILL.md"
        if entry.is_dir() and f.is_file():
            skill = parse(f.read_text(encoding="utf-8"), entry.name, "built-in", str(f))
            out[skill.name] = skill
    return out


class Skills:
    """The skills of one workspace (its own ones over the built-ins); thread-safe, cached."""

    def __init__(self, reader: WorkspaceReader) -> None:
        self.reader = reader
        self._builtin = builtin_skills()
        self._cache: dict[str, tuple[Stamp | None, Skill | None]] = {}
        self._listed: tuple[float, dict[str, Skill]] | None = None
        self._lock = threading.Lock()

    def all(self) -> dict[str, Skill]:
        with self._lock:
            if self._listed and time.monotonic() - self._listed[0] < RECHECK_SECONDS:
                return self._listed[1]
        merged = dict(self._builtin)
        for folder in self._workspace_folders():
            skill = self._workspace_skill(folder)
            if skill is not None:
                merged[skill.name] = skill
        with self._lock:
            self._listed = (time.monotonic(), merged)
        return merged

    def get(self, name: str) -> Skill | None:
        return self.all().get(name)

    def prompt_section(self) -> str:
        """`always` skills in full, the others as an index the agent reads with read_skill."""
        skills = sorted(self.all().values(), key=lambda s: s.name)
        if not skills:
            return ""
        full, index = [], []
        for s in skills:
            why = s.missing()
            if s.always and not why:
                full.append(f"### Skill: {s.name}\n{s.body}")
            else:
                note = f" (unavailable: {why})" if why else ""
                index.append(f"- {s.name}: {s.description or '(no description)'}{note}")
        parts = ["## Skills"]
        if index:
            parts.append(
                "Skills are instructions for tasks. Before a task that matches one, read it "
                "with the read_skill tool and follow it.\n" + "\n".join(index)
            )
        parts += full
        return "\n\n".join(parts)

    def _workspace_folders(self) -> list[str]:
        root = self.reader.root / FOLDER
        try:
            st = os.lstat(root)
        except OSError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            return []  # a link or a file where the folder should be: no workspace skills
        try:
            with os.scandir(root) as it:
                names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        return sorted(n for n in names if _NAME.match(n))[:MAX_SKILLS]

    def _workspace_skill(self, folder: str) -> Skill | None:
        rel = f"{FOLDER}/{folder}/SKILL.md"
        try:
            stamp = self.reader.stamp(rel)
        except (Refused, OSError, ValueError):
            stamp = None
        with self._lock:
            hit = self._cache.get(rel)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
        text = self.reader.read_text(rel)  # refusals are reported once by the reader
        skill = parse(text, folder, "workspace", rel) if text is not None else None
        with self._lock:
            self._cache[rel] = (stamp, skill)
        return skill


class ReadSkillTool:
    """read_skill: the full instructions of one skill by name."""

    name = "read_skill"
    description = (
        "Read a skill's full instructions by its name (skills are listed in your instructions)."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64}},
        "required": ["name"],
        "additionalProperties": False,
    }

    def __init__(self, skills: Skills) -> None:
        self.skills = skills

    async def execute(self, ctx: ToolContext, **kwargs: Any) -> ToolResult:
        found = await asyncio.to_thread(self.skills.all)
        skill = found.get(kwargs["name"])
        if skill is None:
            return ToolResult.error(
                f"no skill named {kwargs['name']!r}; known: {', '.join(sorted(found)) or 'none'}"
            )
        why = skill.missing()
        head = f"Skill {skill.name} ({skill.origin})" + (
            f" — unavailable here: {why}" if why else ""
        )
        return ToolResult(f"{head}\n\n{skill.body}")
