"""The one path policy for file tools and exec's working_dir: workspace confinement, protected home."""

from __future__ import annotations

import os
import re
from pathlib import Path

from nanobot.paths import SECRET_NAMES

MEDIA_NAME = "media"  # NANOBOT_HOME/media: files users sent, readable by file tools
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255

# Files under /proc that hand out another process's secrets (its environment or its memory).
_PROC_SECRET = re.compile(r"^/proc/[^/]+/(?:task/[^/]+/)?(?:environ|mem)$")


class PathRefused(ValueError):
    """A path the policy will not hand to a tool; str(exc) is the model-facing "Error: ..." text."""


class PathPolicy:
    """Turns a path written by the model into a real, absolute path a tool may touch.

    Contract of resolve():
      - relative paths resolve against the workspace; absolute paths are taken as written;
      - a leading `~` or `$` is refused, never expanded: file tools do not run a shell, and
        silently treating `~/.ssh/id_rsa` as a folder named `~` in the workspace would only
        confuse the model;
      - symlinks are resolved with os.path.realpath (also in the middle of the path and a dangling
        last component, so a write through a link lands where the link points);
      - when `restrict` is on, the real path must be the workspace's real path or lie under it
        (compared by path components, never by string prefix);
      - whatever `restrict` says, nothing under NANOBOT_HOME is available except the workspace and,
        for reading, the media folder where channels save what users send (config.json, its
        backups, credentials, sessions, logs, state, history …); /proc/<pid>/environ|mem are
        refused too;
      - with `restrict` on, reads may also reach the media folder; writes only the workspace;
      - NUL bytes, paths over 4096 characters and names over 255 bytes are refused.
    """

    def __init__(self, workspace: Path, restrict: bool, home: Path) -> None:
        self.workspace = Path(workspace)
        self.restrict = restrict
        self.home = Path(home)

    def resolve(self, raw: str, write: bool = False) -> Path:
        """Return the real path for `raw`, or raise PathRefused saying what to use instead."""
        self._check_syntax(raw)
        workspace = self._real_workspace()
        try:
            real = Path(os.path.realpath(os.path.join(workspace, raw)))
        except (OSError, ValueError) as exc:
            raise PathRefused(f"Error: cannot resolve path {_show(raw)}: {exc}") from None
        if ".." in real.parts or len(str(real)) > MAX_PATH_CHARS:
            raise PathRefused(f"Error: cannot resolve path {_show(raw)}; use a shorter, plain path")
        self._check_protected(raw, real, write)
        readable_media = not write and real.is_relative_to(self._real_media())
        if self.restrict and not real.is_relative_to(workspace) and not readable_media:
            raise PathRefused(
                f"Error: path {_show(raw)} is outside the workspace {workspace}; "
                "use a path inside it (relative paths start at the workspace)"
            )
        return real

    def check_dir(self, raw: str | None) -> Path:
        """Resolve a working directory (None or "" means the workspace); it must exist."""
        real = self.resolve(raw or ".")
        if not real.is_dir():
            raise PathRefused(
                f"Error: working_dir {_show(raw or '.')} is not an existing directory; "
                "leave working_dir out to run in the workspace, or create the directory first"
            )
        return real

    def _real_workspace(self) -> Path:
        # Computed per call: the workspace may be created (or re-linked) after start-up.
        return Path(os.path.realpath(self.workspace))

    def _check_syntax(self, raw: object) -> None:
        if not isinstance(raw, str) or not raw:
            raise PathRefused(
                "Error: path must be a non-empty string; give a path in the workspace"
            )
        if "\x00" in raw:
            raise PathRefused("Error: path contains a NUL byte; give a plain file path")
        if len(raw) > MAX_PATH_CHARS:
            raise PathRefused(
                f"Error: path is {len(raw)} characters long (limit {MAX_PATH_CHARS}); "
                "use a shorter path"
            )
        if any(
            len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in raw.split("/")
        ):
            raise PathRefused(
                f"Error: a name in the path is longer than {MAX_NAME_BYTES} bytes; use shorter names"
            )
        if raw[0] in "~$":
            raise PathRefused(
                f"Error: {raw[0]!r} is not expanded by file tools (no shell runs here); "
                f"use a path relative to the workspace {self._real_workspace()} or an absolute path"
            )

    def _real_media(self) -> Path:
        return Path(os.path.realpath(self.home / MEDIA_NAME))

    def _check_protected(self, raw: str, real: Path, write: bool) -> None:
        home = Path(os.path.realpath(self.home))
        workspace = self._real_workspace()
        in_workspace = workspace.is_relative_to(home) and real.is_relative_to(workspace)
        in_media = not write and real.is_relative_to(self._real_media())
        named_secret = any(real.is_relative_to(home / name) for name in SECRET_NAMES)
        if real.is_relative_to(home) and (named_secret or not (in_workspace or in_media)):
            raise PathRefused(
                f"Error: path {_show(raw)} is nanobot's own configuration or state and is never "
                "available to tools; work with files in the workspace instead"
            )
        if _PROC_SECRET.match(str(real)):
            raise PathRefused(
                f"Error: path {_show(raw)} exposes a process's environment or memory and is "
                "never available to tools"
            )


def _show(raw: str | None, limit: int = 200) -> str:
    """Quote a model-written path for an error message, shortened so errors stay small."""
    text = raw or ""
    return repr(text if len(text) <= limit else text[:limit] + "...")
