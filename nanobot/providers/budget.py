"""Size max_tokens from the model's context window so that prompt + answer fit.

Decision: agents.defaults.maxTokens (default 8192) is an upper bound. When the context window
is known — providers.<name>.contextWindow, or for local servers what the server reports
(llama.cpp GET /props n_ctx, vLLM GET /v1/models max_model_len, llama.cpp's
/v1/models meta.n_ctx_train as a last resort) — the request asks for at most
window − estimated prompt − a margin, and never less than MIN_ANSWER_TOKENS (if even that
does not fit, the server says "context too long" and the error is classified so).
When the window is unknown (hosted APIs, Ollama) the configured value is sent unchanged:
hosted models' windows exceed 8192, and Ollama ends an answer at its own context instead of
refusing it. The prompt estimate is deliberately high (3 characters per token) so the answer
budget errs on the small side rather than overflowing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("nanobot.providers")

MIN_ANSWER_TOKENS = 256
MARGIN_TOKENS = 64
CHARS_PER_TOKEN = 3


def estimate_tokens(messages: list[dict], tools: list[dict] | None) -> int:
    """A generous estimate of the prompt's tokens from its JSON size."""
    size = len(json.dumps(messages, ensure_ascii=False))
    if tools:
        size += len(json.dumps(tools, ensure_ascii=False))
    return size // CHARS_PER_TOKEN + 1


class TokenBudget:
    """The context window (configured, or probed once, on first use) and the answer budget.

    probe(model) asks the server; it runs at most once per TokenBudget, from the first call.
    """

    def __init__(
        self, context_window: int = 0, probe: Callable[[str], int | None] | None = None
    ) -> None:
        self._window = context_window if context_window > 0 else None
        self._probe = None if self._window else probe
        self._lock = threading.Lock()

    @property
    def known(self) -> int | None:
        """The window if configured or already probed; never probes."""
        return self._window

    @property
    def probing(self) -> bool:
        """Whether the next call will probe the server (once; it blocks)."""
        return self._probe is not None

    def window(self, model: str) -> int | None:
        if self._probe is not None:
            with self._lock:
                probe, self._probe = self._probe, None
                if probe is not None:
                    self._window = _safe_probe(probe, model)
        return self._window

    def max_tokens(
        self, requested: int, messages: list[dict], tools: list[dict] | None, model: str
    ) -> int:
        """requested, lowered to what fits the known context window (never below the minimum)."""
        window = self.window(model)
        if not window:
            return requested
        room = window - estimate_tokens(messages, tools) - MARGIN_TOKENS
        return max(1, min(requested, max(MIN_ANSWER_TOKENS, room)))


def _safe_probe(probe: Callable[[str], int | None], model: str) -> int | None:
    window = probe(model)  # probes answer None for any failure: a probe is an optimisation
    if isinstance(window, int) and window > 0:
        log.info("model context window: %d tokens (reported by the server)", window)
        return window
    return None


def context_from_props(data: object) -> int | None:
    """llama.cpp GET /props: default_generation_settings.n_ctx (or a top-level n_ctx)."""
    if not isinstance(data, dict):
        return None
    settings = data.get("default_generation_settings")
    for source in (settings, data):
        if isinstance(source, dict) and isinstance(source.get("n_ctx"), int):
            return source["n_ctx"]
    return None


def context_from_models(data: object, model: str) -> int | None:
    """GET /v1/models: the entry for model (or the only one): vLLM max_model_len,
    context_length / max_context_length (other servers), llama.cpp meta.n_ctx_train."""
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    entries = [e for e in entries if isinstance(e, dict)]
    chosen = next((e for e in entries if e.get("id") == model), None)
    if chosen is None and len(entries) == 1:
        chosen = entries[0]
    if chosen is None:
        return None
    meta = chosen.get("meta") if isinstance(chosen.get("meta"), dict) else {}
    for value in (
        chosen.get("max_model_len"),
        chosen.get("context_length"),
        chosen.get("max_context_length"),
        meta.get("n_ctx"),
        meta.get("n_ctx_train"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return None
