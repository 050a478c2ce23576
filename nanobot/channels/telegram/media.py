"""Attachments users send on Telegram: size-limited downloads under generated names, voice notes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from nanobot.backoff import Backoff
from nanobot.channels.telegram.botapi import (
    BotAPI,
    FileTooLarge,
    MediaRef,
    TelegramError,
    is_int,
    with_retries,
)
from nanobot.paths import ensure_dir, media_dir
from nanobot.providers.transcribe import TranscriptionError
from nanobot.workers import run_detached, run_pooled

log = logging.getLogger("nanobot.channels.telegram")

VOICE_UNAVAILABLE = "[voice message: transcription unavailable — set providers.groq.apiKey]"


class MediaFetcher:
    """Fetches attachments into NANOBOT_HOME/media (0700) and describes them for the agent.

    Files get a random name with a whitelisted extension (never the sender's file name) and are
    refused above max_bytes, both by the size Telegram announces and while streaming.
    """

    def __init__(
        self,
        api: BotAPI,
        transcriber: Callable[[Path], str] | None,
        max_bytes: int,
        budget: float,
        backoff: Backoff,
    ) -> None:
        self.api = api
        self.transcriber = transcriber
        self.max_bytes = max_bytes
        self.send_budget = budget
        self.backoff = backoff

    async def fetch(self, ref: MediaRef, paths: list[str]) -> str:
        """Download one attachment (appending its path) and return the line for the content."""
        if ref.kind == "voice" and self.transcriber is None:
            return VOICE_UNAVAILABLE
        limit = self.max_bytes
        try:
            path = await self._download(ref, limit)
        except FileTooLarge:
            log.warning("Refused a Telegram %s larger than maxMediaBytes (%d)", ref.kind, limit)
            return (
                f"[{ref.kind} refused: larger than channels.telegram.maxMediaBytes ({limit} bytes)]"
            )
        except TelegramError as e:
            log.warning("Could not download a Telegram %s: %s", ref.kind, e)
            return f"[{ref.kind}: download failed]"
        paths.append(str(path))
        if ref.kind != "voice":
            return f"[{ref.kind}: {path}]"
        try:
            text = await run_detached(self.transcriber, path)
        except (TranscriptionError, OSError) as e:
            log.warning("Voice transcription failed: %s", e)
            return "[voice message: transcription failed]"
        return f"[voice message] {text}"

    async def _download(self, ref: MediaRef, limit: int) -> Path:
        if ref.size is not None and ref.size > limit:
            raise FileTooLarge(f"{ref.size} bytes")
        info = await with_retries(
            "getFile",
            self.api.call,
            "getFile",
            {"file_id": ref.file_id},
            budget=self.send_budget,
            backoff=self.backoff,
        )
        if not isinstance(info, dict) or not isinstance(info.get("file_path"), str):
            raise TelegramError("getFile", 400, "answer without a file_path")
        if is_int(info.get("file_size")) and info["file_size"] > limit:
            raise FileTooLarge(f"{info['file_size']} bytes")
        folder = await asyncio.to_thread(ensure_dir, media_dir())
        dest = folder / f"{uuid.uuid4().hex}{ref.ext}"
        await with_retries(
            "file download",
            run_pooled,
            self.api.download,
            info["file_path"],
            dest,
            limit,
            budget=self.send_budget,
            backoff=self.backoff,
        )
        return dest
