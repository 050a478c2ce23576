"""Telegram Bot API: JSON calls on the event loop (nanobot.ahttp), file uploads and downloads
with requests in a worker thread, retries, update parsing."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from nanobot import ahttp, httpjson
from nanobot.backoff import Backoff
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.channels.telegram")

T = TypeVar("T")
_FILE_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$")
_CHUNK = 64 * 1024


class TelegramError(Exception):
    """Telegram answered {"ok": false}: `code` is error_code, `retry_after` comes with a 429."""

    def __init__(self, method: str, code: int, description: str, retry_after: float | None = None):
        self.method = method
        self.code = code
        self.description = redact(description)[:300]
        self.retry_after = retry_after
        super().__init__(f"{method}: {code} {self.description}")


class TransportError(Exception):
    """No Bot API answer: connection refused or reset, timeout, or a reply that is not JSON."""


class FileTooLarge(Exception):
    """The file is larger than channels.telegram.maxMediaBytes."""


class BotAPI:
    """Bot API over HTTPS: POST {api_base}/bot{token}/{method} with a JSON body.

    The URL holds the token, so it is never logged or put into an exception: errors name the
    method only, and the transports' own exceptions (which may quote the URL) are replaced, not
    chained.
    """

    def __init__(self, token: str, api_base: str, *, proxy: str = "", timeout: float = 30.0):
        base = api_base.rstrip("/")
        self._url = f"{base}/bot{token}/"
        self._file_url = f"{base}/file/bot{token}/"
        self._proxies = httpjson.proxies_for(base, proxy)
        self.timeout = timeout
        # Idle connections kept: one per reply that may be sent at once in a burst.
        self.client = ahttp.Client(proxy=proxy, pool=256)
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        """requests, for uploads and downloads (made on first use)."""
        if self._session is None:
            self._session = httpjson.session()
        return self._session

    def close(self) -> None:
        self.client.close()
        if self._session is not None:
            self._session.close()

    async def call(self, method: str, params: dict | None = None, *, timeout: float | None = None):
        """One call on the event loop; returns `result` or raises TelegramError /
        TransportError. Cancelling it closes its connection."""
        try:
            r = await self.client.post_json(
                self._url + method, params or {}, timeout=timeout or self.timeout
            )
        except (ahttp.TransportError, ValueError) as e:
            raise TransportError(f"{method}: {type(e).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        return _result(method, r.status, body)

    def upload(
        self, method: str, params: dict, field: str, path: Path, *, timeout: float | None = None
    ):
        """One blocking call sending the file at path as multipart/form-data (params as
        fields); returns `result` or raises TelegramError / TransportError."""
        fields = {k: str(v) for k, v in params.items()}
        try:
            with open(path, "rb") as f:
                r = self.session.post(
                    self._url + method,
                    data=fields,
                    files={field: (path.name, f)},
                    timeout=timeout or self.timeout,
                    proxies=self._proxies,
                )
            try:
                body = r.json()
            except requests.JSONDecodeError:
                body = None
        except (requests.RequestException, OSError) as e:
            raise TransportError(f"{method}: {type(e).__name__}") from None
        return _result(method, r.status_code, body)

    def download(self, file_path: str, dest: Path, max_bytes: int, *, timeout: float = 60.0) -> int:
        """Stream {api_base}/file/bot{token}/{file_path} into dest (created 0600, must not exist).

        Raises FileTooLarge as soon as the size passes max_bytes; a partial file is removed.
        Returns the number of bytes written.
        """
        if not _FILE_PATH_RE.match(file_path) or ".." in file_path:
            raise TelegramError("download", 400, "unexpected file_path from getFile")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        total = 0
        try:
            with (
                os.fdopen(fd, "wb") as out,
                self.session.get(
                    self._file_url + quote(file_path),
                    stream=True,
                    timeout=timeout,
                    proxies=self._proxies,
                ) as r,
            ):
                if r.status_code != 200:
                    raise TelegramError("download", r.status_code, "file download refused")
                declared = r.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FileTooLarge(f"{declared} bytes")
                for chunk in r.iter_content(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise FileTooLarge(f"more than {max_bytes} bytes")
                    out.write(chunk)
        except requests.RequestException as e:
            dest.unlink(missing_ok=True)
            raise TransportError(f"download: {type(e).__name__}") from None
        except (TelegramError, FileTooLarge, OSError):
            dest.unlink(missing_ok=True)
            raise
        return total


def _result(method: str, status: int, body: Any):
    """The `result` of a Bot API answer, or the TelegramError / TransportError it means."""
    if body is None:
        if status >= 400:
            raise TelegramError(method, status, "answer without a Bot API body")
        raise TransportError(f"{method}: answer is not JSON")
    if not isinstance(body, dict):
        raise TransportError(f"{method}: answer is not a JSON object")
    if body.get("ok") is True:
        return body.get("result")
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    retry_after = params.get("retry_after")
    code = body.get("error_code")
    raise TelegramError(
        method,
        code if isinstance(code, int) else status,
        str(body.get("description", "")),
        float(retry_after) if isinstance(retry_after, int | float) else None,
    )


async def with_retries(
    what: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    budget: float,
    backoff: Backoff,
    **kwargs: Any,
) -> T:
    """Await fn(*args), retrying 429 (after retry_after), 5xx and transport errors
    while the next attempt would still start within `budget` seconds; other errors are raised."""
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            return await fn(*args, **kwargs)
        except TelegramError as e:
            if e.code == 429:
                wait = e.retry_after if e.retry_after is not None else backoff.delay(attempt)
            elif e.code >= 500:
                wait = backoff.delay(attempt)
            else:
                raise
            err: Exception = e
        except TransportError as e:
            wait, err = backoff.delay(attempt), e
        if time.monotonic() + wait > deadline:
            raise err
        log.warning("Telegram %s failed (%s); retrying in %.1f s", what, err, wait)
        await asyncio.sleep(wait)
        attempt += 1


# ---- updates ----------------------------------------------------------------------------

_MESSAGE_KINDS = ("message", "edited_message")
# callback_query: presses of the approval buttons (channels/telegram/approve.py)
ALLOWED_UPDATES = [*_MESSAGE_KINDS, "callback_query"]
_USERNAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_SAFE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".pdf", ".txt", ".md", ".csv", ".json"}
_SAFE_EXT |= {".oga", ".ogg", ".opus", ".mp3", ".m4a", ".wav", ".mp4", ".zip", ".docx", ".xlsx"}
_MIME_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
}
# Content a user can send that we cannot read; the agent is told what arrived.
_OTHER_KINDS = ("sticker", "video", "video_note", "animation", "location", "contact", "poll")


class MalformedUpdate(ValueError):
    """An update that does not have the shape the Bot API documents."""


@dataclass
class MediaRef:
    kind: str  # "image", "file" or "voice"
    file_id: str
    size: int | None
    ext: str


@dataclass
class Incoming:
    sender: str  # "<user id>|<username>" or "<user id>"
    chat_id: str
    text: str
    media: list[MediaRef] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _safe_ext(name: Any, mime: Any, default: str) -> str:
    suffix = Path(name).suffix.lower() if isinstance(name, str) else ""
    if suffix in _SAFE_EXT:
        return suffix
    return _MIME_EXT.get(mime, default) if isinstance(mime, str) else default


def _media_ref(kind: str, obj: Any, default_ext: str) -> MediaRef:
    if not isinstance(obj, dict) or not isinstance(obj.get("file_id"), str):
        raise MalformedUpdate(f"{kind} without a file_id")
    size = obj.get("file_size")
    ext = _safe_ext(obj.get("file_name"), obj.get("mime_type"), default_ext)
    return MediaRef(kind, obj["file_id"], size if isinstance(size, int) else None, ext)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_update(update: dict) -> Incoming | None:
    """The message in an update, or None when it carries nothing for the agent (a service
    message). Raises MalformedUpdate when the update lacks a message, sender or chat."""
    kind = next((k for k in _MESSAGE_KINDS if k in update), None)
    msg = update.get(kind) if kind else None
    if not isinstance(msg, dict):
        raise MalformedUpdate("no message object")
    sender, chat = msg.get("from"), msg.get("chat")
    if not isinstance(sender, dict) or not is_int(sender.get("id")):
        raise MalformedUpdate("message without a sender id")
    if not isinstance(chat, dict) or not is_int(chat.get("id")):
        raise MalformedUpdate("message without a chat id")
    text = msg.get("text", msg.get("caption"))
    if text is not None and not isinstance(text, str):
        raise MalformedUpdate("text is not a string")
    media: list[MediaRef] = []
    photos = msg.get("photo")
    if photos is not None:
        if (
            not isinstance(photos, list)
            or not photos
            or not all(isinstance(p, dict) for p in photos)
        ):
            raise MalformedUpdate("photo is not a list of sizes")
        largest = max(photos, key=lambda p: (p.get("width") or 0) * (p.get("height") or 0))
        media.append(_media_ref("image", largest, ".jpg"))
    if "document" in msg:
        media.append(_media_ref("file", msg["document"], ".bin"))
    for key, ext in (("voice", ".ogg"), ("audio", ".mp3")):
        if key in msg:
            media.append(_media_ref("voice", msg[key], ext))
    if not text and not media:
        other = next((k for k in _OTHER_KINDS if k in msg), None)
        if other is None:
            return None
        text = f"[{other.replace('_', ' ')} received; only text, photos, files and voice are read]"
    username = sender.get("username")
    if not (isinstance(username, str) and _USERNAME_RE.fullmatch(username)):
        username = None
    user_id = str(sender["id"])
    edited = kind == "edited_message"
    return Incoming(
        sender=f"{user_id}|{username}" if username else user_id,
        chat_id=str(chat["id"]),
        text=f"[edited] {text}" if edited and text else (text or ""),
        media=media,
        metadata={
            "message_id": msg.get("message_id"),
            "chat_type": chat.get("type"),
            "username": username,
            "edited": edited,
        },
    )
