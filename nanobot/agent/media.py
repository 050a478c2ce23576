"""Files a user sent, offered to the model: listed in the message, and as images where the
model reads them."""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path
from typing import Any

from nanobot.security.redact import redact

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # larger images are listed, not inlined
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
# Model names that accept image input (OpenAI, Anthropic, Google, and the common open
# vision models served by vLLM/ollama). Others get the file list only.
_VISION_RE = re.compile(
    r"gpt-4o|gpt-4\.1|gpt-5|o[134]-|o[34]\b|claude-(3|sonnet-4|opus-4|haiku-4)|"
    r"claude-.*-4|gemini|llava|vision|-vl\b|-vl-|pixtral|gemma-3|llama-4"
)


def accepts_images(model: str) -> bool:
    return bool(_VISION_RE.search(model.lower()))


def _describe(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path} (no longer available)"
    kind = mimetypes.guess_type(path.name)[0] or "file"
    return f"{path} ({kind}, {size:,} bytes)"


def user_text(text: str, media: list[str]) -> str:
    """The user message as stored in the session: the text and a list of the attached files."""
    if not media:
        return text
    listing = "\n".join(f"- {_describe(Path(p))}" for p in media)
    lead = f"{text}\n\n" if text else ""
    return f"{lead}[Attached files, readable with read_file:]\n{listing}"


def request_content(text: str, media: list[str], model: str) -> str | list[dict[str, Any]]:
    """What the model gets for this turn: `text` (redacted, like everything sent to a
    provider), plus image parts when the model reads them."""
    text = redact(text)
    if not media or not accepts_images(model):
        return text
    parts: list[dict[str, Any]] = []
    for p in media:
        path = Path(p)
        kind = mimetypes.guess_type(path.name)[0]
        if kind not in IMAGE_TYPES:
            continue
        try:
            if path.stat().st_size > MAX_IMAGE_BYTES:
                continue
            data = base64.b64encode(path.read_bytes()).decode()
        except OSError:
            continue
        parts.append({"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}})
    if not parts:
        return text
    return [{"type": "text", "text": text}, *parts]
