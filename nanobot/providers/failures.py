"""Classify a failed LLM call into ProviderError kinds, with a message a person can act on.

Statuses say most of it; the body says the rest (a 400 may be a context overflow, a 429 may
be an exhausted quota that no retry will fix). Markers cover OpenAI, Anthropic, vLLM,
llama.cpp, Ollama and the gateways' usual wording.
"""

from __future__ import annotations

import json

from nanobot.errors import ProviderError
from nanobot.security.redact import redact

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "context size",  # llama.cpp: "exceeds the available context size"
    "exceed_context_size",
    "prompt is too long",  # Anthropic
    "too many tokens",
    "input is too long",
    "reduce the length",
    "max_model_len",
)
_QUOTA_MARKERS = (
    "insufficient_quota",
    "exceeded your current quota",
    "quota exceeded",
    "billing",
    "credit balance",
    "insufficient balance",
    "insufficient credits",
    "payment required",
)
_MAX_TOKENS_MARKERS = ("max_tokens", "max_completion_tokens", "max_new_tokens")
USER_EXCERPT_CHARS = 100


def server_message(text: str) -> str:
    """The error's own message from a JSON body ({"error": {"message"}} or {"message"}),
    else the text itself; unredacted — callers redact before showing it."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
    return text


def safe_excerpt(text: str, limit: int = USER_EXCERPT_CHARS) -> str:
    """A short, single-line, redacted excerpt of a server's message, fit for a user."""
    text = " ".join(redact(server_message(text)[:2000]).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def is_quota(status: int, text: str) -> bool:
    lowered = text.lower()
    return status == 402 or any(m in lowered for m in _QUOTA_MARKERS)


def _key_fix(label: str, env_key: str) -> str:
    where = f"providers.{label}.apiKey" if label else "the provider's apiKey"
    return where + (f" or {env_key}" if env_key else "")


def classify_status(status: int, text: str, label: str, env_key: str = "") -> tuple[str, str]:
    """(kind, user_message) for an HTTP error status with its (raw) body text.
    env_key: the API key's environment variable (looked up from the provider name if "")."""
    if not env_key and label:
        from nanobot.config.loader import ENV_KEYS

        env_key = ENV_KEYS.get(label, "")
    lowered = text.lower()
    name = label or "model"
    base = f"providers.{label}.apiBase" if label else "the provider's apiBase"
    if is_quota(status, text):
        return "quota", (
            f"The {name} account is out of credit or over its quota (HTTP {status}). "
            "Fix: check the account's billing or limits, or configure another provider."
        )
    if status in (401, 403):
        return "auth", (
            f"The {name} API refused the key (HTTP {status}). Fix: check {_key_fix(label, env_key)}."
        )
    if status == 413 or any(m in lowered for m in _CONTEXT_MARKERS):
        return "context_length", (
            "The conversation is too long for this model. Send /reset to start afresh, "
            "or use a model with a larger context window."
        )
    if status == 429 or status >= 500:
        return "overloaded", (
            f"The {name} server is busy or failing (HTTP {status}); please try again in a minute."
        )
    if any(m in lowered for m in _MAX_TOKENS_MARKERS):
        return "bad_request", (
            f"The model refused the answer length (HTTP {status}: {safe_excerpt(text)}). "
            "Fix: lower agents.defaults.maxTokens."
        )
    if status == 404:
        return "bad_request", (
            f"The model server does not know this model or address (HTTP 404). "
            f"Fix: check agents.defaults.model and {base}."
        )
    return "bad_request", (
        f"The model server refused the request (HTTP {status}: {safe_excerpt(text)}). "
        f"Fix: check agents.defaults.model and {base}."
    )


def unreachable(detail: str, target_host: str, label: str) -> ProviderError:
    base = f"providers.{label}.apiBase" if label else "the provider's apiBase"
    return ProviderError(
        detail,
        kind="unreachable",
        user_message=(
            f"Could not reach the model server at {target_host}. "
            f"Fix: start it (for a local model), check the network, or check {base}."
        ),
    )


def timed_out(detail: str, seconds: float, label: str, streaming: bool) -> ProviderError:
    key = f"providers.{label}.timeout" if label else "the provider's timeout"
    what = "between two parts of its answer" if streaming else "for an answer"
    return ProviderError(
        detail,
        kind="timeout",
        user_message=(
            f"The model was silent for {seconds:g} s {what}, so nanobot stopped waiting. "
            f"A slow (local) model may need a larger {key}."
        ),
    )


def malformed(detail: str, label: str) -> ProviderError:
    base = f"providers.{label}.apiBase" if label else "the provider's apiBase"
    return ProviderError(
        detail,
        kind="bad_request",
        user_message=(
            "The model server sent an answer nanobot could not read. "
            f"Fix: check that {base} points at an OpenAI- or Anthropic-compatible API."
        ),
    )


_ANTHROPIC_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def stream_error(chunk: dict, label: str) -> ProviderError:
    """An error event inside a stream (OpenAI-style {"error": {...}} or Anthropic's
    {"type": "error", "error": {"type": ...}}), classified like an HTTP error."""
    err = chunk.get("error")
    err = err if isinstance(err, dict) else {"message": str(err or "")}
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    if status is None:
        status = _ANTHROPIC_ERROR_STATUS.get(str(err.get("type")), 500)
    text = json.dumps({"error": err})
    kind, user = classify_status(status, text, label)
    return ProviderError(
        f"{label or 'LLM API'} stream reported an error ({err.get('type') or status}): "
        f"{safe_excerpt(text, 300)}",
        kind=kind,
        user_message=user,
    )


def unreachable_midway(label: str) -> ProviderError:
    return ProviderError(
        f"{label or 'LLM API'} stream ended before the answer was complete",
        kind="unreachable",
        user_message=(
            "The connection to the model server ended in the middle of the answer. "
            "Please try again."
        ),
    )
