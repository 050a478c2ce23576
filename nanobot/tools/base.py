"""What a tool is: a name, a JSON-schema for its arguments, and an async execute()."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nanobot.agent.progress import TurnProgress

MAX_RESULT_CHARS = 16_000

# Decisions recorded for every tool call (log and audit trail).
ALLOWED = "allowed"
BLOCKED_BY_GUARD = "blocked by guard"
REFUSED_BY_SANDBOX = "refused by sandbox"
REFUSED_BY_PATH_POLICY = "refused by path policy"
INVALID_ARGUMENTS = "invalid arguments"
RATE_LIMITED = "rate limited"


class Outbox(Protocol):
    """Sends to a chat now: the turn's own chat unless channel/chat_id name another."""

    async def send(
        self,
        text: str,
        *,
        channel: str | None = None,
        chat_id: str | None = None,
        media: list[str] | None = None,
    ) -> None: ...


@dataclass
class ToolContext:
    """Who the current turn is for (its origin) and how to reach that chat; passed per call,
    never stored on a shared tool."""

    channel: str = "cli"
    chat_id: str = "direct"
    sender_id: str = "user"
    session_key: str = "cli:direct"
    message_id: str | None = None
    outbox: Outbox | None = None
    progress: TurnProgress | None = None  # the origin channel's live view of the turn
    # Texts this turn already sent to its own chat (the message tool), so the final answer
    # need not repeat them; per turn, like everything here.
    sent_here: list[str] = field(default_factory=list)


@dataclass
class ToolResult:
    """A tool's answer to the model; errors are text starting with "Error:"."""

    text: str
    decision: str = ALLOWED
    exit_code: int | None = None

    @classmethod
    def error(cls, text: str, decision: str = ALLOWED) -> ToolResult:
        return cls(text if text.startswith("Error:") else f"Error: {text}", decision)


class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]

    async def execute(self, ctx: ToolContext, **kwargs: Any) -> ToolResult: ...


_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def validate_args(schema: dict[str, Any], args: Any, path: str = "") -> list[str]:
    """Check args against the subset of JSON Schema tools use; returns readable problems."""
    errors: list[str] = []
    label = path or "arguments"
    expected = schema.get("type")
    if expected:
        types = _JSON_TYPES[expected]
        is_bool = isinstance(args, bool)
        if not isinstance(args, types) or (is_bool and expected != "boolean"):
            return [f"{label} must be {expected}, got {type(args).__name__}"]
    if "enum" in schema and args not in schema["enum"]:
        errors.append(f"{label} must be one of {schema['enum']}")
    if isinstance(args, (int, float)) and not isinstance(args, bool):
        if "minimum" in schema and args < schema["minimum"]:
            errors.append(f"{label} must be >= {schema['minimum']}")
        if "maximum" in schema and args > schema["maximum"]:
            errors.append(f"{label} must be <= {schema['maximum']}")
    if isinstance(args, str):
        if "minLength" in schema and len(args) < schema["minLength"]:
            errors.append(f"{label} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(args) > schema["maxLength"]:
            errors.append(f"{label} must have at most {schema['maxLength']} characters")
    if isinstance(args, list) and "items" in schema:
        for i, item in enumerate(args):
            errors += validate_args(schema["items"], item, f"{label}[{i}]")
    if isinstance(args, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in args:
                errors.append(f"missing required argument '{req}'")
        for key, value in args.items():
            if key in props:
                errors += validate_args(props[key], value, key if not path else f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"unknown argument '{key}'")
    return errors


def cap(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """Cut text to limit characters with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... (truncated, {len(text) - limit} more characters)"
