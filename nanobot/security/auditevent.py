"""What one audit event holds: its fields redacted, capped and made JSON-native."""

from __future__ import annotations

from datetime import UTC, datetime

from nanobot.security.redact import redact

MAX_FIELD_CHARS = 500
MAX_ITEMS = 50  # per dict/list, so one event stays a few KiB
_RESERVED = ("ts", "seq", "event", "prev", "epoch", "mac")


def _clean(value, limit: int = MAX_FIELD_CHARS):
    """Redact strings (recursively) before cutting them, so a cut never leaves half a secret;
    anything not JSON-native becomes a string."""
    if isinstance(value, str):
        text = redact(value)
        return text if len(text) <= limit else f"{text[:limit]}…[+{len(text) - limit} chars]"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        items = list(value.items())
        out = {_clean(str(k), 100): _clean(v, limit) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"+{len(items) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out = [_clean(v, limit) for v in items[:MAX_ITEMS]]
        return out + [f"…+{len(items) - MAX_ITEMS} more"] if len(items) > MAX_ITEMS else out
    return _clean(str(value), limit)


def event_fields(event: str, fields: dict) -> dict:
    """{"event": event, **fields}, each value cleaned; a field named like one the log sets
    itself (ts, seq, prev …) keeps a leading underscore."""
    obj = {"event": event}
    for key, value in fields.items():
        obj[f"_{key}" if key in _RESERVED else key] = _clean(value)
    return obj


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
