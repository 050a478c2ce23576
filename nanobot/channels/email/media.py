"""Attachments of admitted mail: listed for the agent, saved only within the limits.

Saved files live under NANOBOT_HOME/media/email/ with a random name and an extension taken
from the (allowed) MIME type, never from the name the sender chose.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import secrets
from pathlib import Path

from nanobot import paths
from nanobot.channels.email.parse import Attachment


def _human(size: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} MB"


def type_allowed(content_type: str, allowed: list[str]) -> bool:
    ct = content_type.lower()
    return any(fnmatch.fnmatchcase(ct, pattern.strip().lower()) for pattern in allowed)


def save_attachments(
    attachments: list[Attachment], cfg, root: Path | None = None
) -> tuple[list[str], list[str]]:
    """(lines describing each attachment, paths of the saved files)."""
    root = root or paths.media_dir() / "email"
    lines, saved = [], []
    for n, a in enumerate(attachments):
        desc = f"- {a.name} ({a.content_type}, {_human(a.size)})"
        if n >= cfg.max_attachments_per_email:
            lines.append(f"{desc}: not saved (more than maxAttachmentsPerEmail)")
        elif not type_allowed(a.content_type, cfg.allowed_attachment_types):
            lines.append(f"{desc}: not saved (type not in allowedAttachmentTypes)")
        elif a.size > cfg.max_attachment_size:
            lines.append(f"{desc}: not saved (larger than maxAttachmentSize)")
        else:
            ext = mimetypes.guess_extension(a.content_type) or ".bin"
            path = paths.ensure_dir(root) / f"{secrets.token_hex(12)}{ext}"
            paths.atomic_write(path, a.data)
            saved.append(str(path))
            lines.append(f"{desc}: saved as {path}")
    return lines, saved
