"""Speech to text for voice messages: Whisper over an OpenAI-compatible endpoint (Groq's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests


class TranscriptionError(Exception):
    """The speech-to-text service did not return a transcription."""


class WhisperTranscriber:
    """Blocking callable path -> text over an OpenAI-compatible /audio/transcriptions endpoint
    (Groq's by default); the channel runs it in a thread."""

    def __init__(
        self,
        api_key: str,
        api_base: str = "",
        *,
        model: str = "whisper-large-v3",
        timeout: float = 60.0,
    ):
        self._url = (api_base or "https://api.groq.com/openai/v1").rstrip("/")
        self._url += "/audio/transcriptions"
        self._key = api_key
        self.model = model
        self.timeout = timeout

    def __call__(self, path: Path) -> str:
        try:
            with open(path, "rb") as f:
                r = requests.post(
                    self._url,
                    headers={"Authorization": f"Bearer {self._key}"},
                    files={"file": (path.name, f)},
                    data={"model": self.model},
                    timeout=self.timeout,
                )
            text = r.json().get("text") if r.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError) as e:
            raise TranscriptionError(f"transcription request failed: {type(e).__name__}") from None
        if not isinstance(text, str):
            raise TranscriptionError(f"transcription failed: HTTP {r.status_code}")
        return text.strip()


def transcriber_from_config(config: Any) -> WhisperTranscriber | None:
    """A Groq Whisper transcriber when providers.groq.apiKey is set, else None."""
    groq = config.providers.groq
    return WhisperTranscriber(groq.api_key, groq.api_base) if groq.api_key else None
