"""The one redaction point: configured secret values and token-looking strings become [REDACTED]."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

MASK = "[REDACTED]"
MIN_SECRET_LEN = 6

# Shapes of credentials that should never be printed even when nobody configured them.
_TOKEN_PATTERNS = [
    r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / Anthropic / OpenRouter / DeepSeek style keys
    r"\b\d{6,12}:[A-Za-z0-9_\-]{30,}\b",  # Telegram bot tokens
    r"gsk_[A-Za-z0-9]{20,}",  # Groq
    r"AIza[0-9A-Za-z_\-]{30,}",  # Google
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
    r"(?<=[Bb]earer )[A-Za-z0-9._~+/\-]{12,}=*",  # Authorization: Bearer …
    r"(?i:(?<=x-api-key: ))\S{12,}",
    r"(?i:(?<=api_key=)|(?<=api-key=)|(?<=apikey=))[^&\s\"']{8,}",
]
_TOKEN_RE = re.compile("|".join(f"(?:{p})" for p in _TOKEN_PATTERNS))


CACHE_MIN_CHARS = 512  # texts this long, when they repeat (the prompt, history), are remembered
CACHE_MAX_CHARS = 256_000  # a quarter MiB: the prompt and the long history of active sessions


class Redactor:
    """Holds the secret values to hide; shared by the log filter, audit, errors and sessions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._re: re.Pattern[str] | None = None
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_chars = 0

    def add(self, *values: str | None) -> None:
        with self._lock:
            for v in values:
                if v and len(v) >= MIN_SECRET_LEN:
                    self._secrets.add(v)
            # Longest first so a secret containing another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._re = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
            self._forget()

    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._re = None
            self._forget()

    @property
    def remembered_chars(self) -> int:
        """How much text the cache holds (at most CACHE_MAX_CHARS)."""
        return self._cache_chars

    def redact(self, text: str, repeats: bool = False) -> str:
        """`text` with secrets masked. `repeats`: the same text comes back on later turns (the
        system prompt, history), so its result is remembered; a text seen once (a session
        line, a tool's output) is not, as remembering it would only churn the cache."""
        if not text:
            return text
        if not repeats or len(text) < CACHE_MIN_CHARS:
            return self._apply(text)
        done = self._cache.get(text)
        if done is not None:
            return done
        done = self._apply(text)
        with self._lock:
            self._cache[text] = done
            self._cache_chars += len(text)
            while self._cache_chars > CACHE_MAX_CHARS:
                old, _ = self._cache.popitem(last=False)
                self._cache_chars -= len(old)
        return done

    def _apply(self, text: str) -> str:
        pattern = self._re
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _TOKEN_RE.sub(MASK, text)

    def _forget(self) -> None:
        """The secrets changed: what was redacted before may need more masks now."""
        self._cache.clear()
        self._cache_chars = 0


REDACTOR = Redactor()


def redact(text: str, repeats: bool = False) -> str:
    return REDACTOR.redact(text, repeats)
