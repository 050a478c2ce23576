"""Tool calls written as text: small local models often put them in the answer's content.

Recognised forms (the common ones of Qwen, Hermes, Llama and friends):
    {"name": "exec", "arguments": {"command": "ls"}}          a JSON object on its own line(s)
    [{"name": …, "arguments": …}, …]                           a JSON list of them
    <tool_call>{"name": …, "arguments": …}</tool_call>         Hermes/Qwen blocks
    <function=exec>{"command": "ls"}</function>                Llama 3.x
    ```json {"name": …, "arguments": …} ```                   a fenced block
"arguments" may also be "parameters" or "args", a JSON string or an object; {"function":
{"name", "arguments"}} (OpenAI's own shape) is understood too.

`extract` returns the calls that name a known tool with valid arguments, the text with every
call-shaped part removed (so none is ever shown raw), and why the others were refused.
`visible_prefix` tells a stream how much of a partial answer is certainly not such a call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nanobot.providers.base import ToolCall
from nanobot.tools.base import validate_args

_DECODER = json.JSONDecoder()
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)
_FUNCTION = re.compile(r"<function=([A-Za-z0-9_.-]+)>\s*(.*?)\s*(?:</function>|\Z)", re.S)
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n\s*([\[{].*?)\s*```", re.S)
_MARKERS = ("<tool_call", "<function=")


@dataclass
class TextCalls:
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""  # the content without anything call-shaped
    refused: list[str] = field(default_factory=list)  # why a call-shaped part was not run


# name → the tool's JSON schema, or None for a tool that does not exist
SchemaOf = Callable[[str], dict | None]


def extract(content: str, schema_of: SchemaOf) -> TextCalls:
    """The tool calls written in `content` (see the module docstring)."""
    out = TextCalls(text=content)
    if not content or not _might_hold_calls(content):
        return out
    spans: list[tuple[int, int]] = []
    for m in _TAGGED.finditer(content):
        spans.append(m.span())
        for obj in _objects(m.group(1)):
            _take(obj, schema_of, out)
    for m in _FUNCTION.finditer(content):
        spans.append(m.span())
        args = _loads(m.group(2) or "{}")
        _take({"name": m.group(1), "arguments": args}, schema_of, out)
    for m in _FENCE.finditer(content):
        if _inside(m.span(), spans):
            continue
        objs = _objects(m.group(1))
        if objs and all(_call_shape(o) for o in objs):
            spans.append(m.span())
            for obj in objs:
                _take(obj, schema_of, out)
    _bare_json(content, spans, schema_of, out)
    if spans:
        out.text = _cut(content, spans).strip()
    for n, call in enumerate(out.calls, 1):
        call.id = f"call_text_{n}"
    return out


def visible_prefix(raw: str) -> int:
    """How many characters of a streamed answer can be shown now: text before anything that may
    be a tool call written as text (a line starting with "{", "[", a fence, a <tool_call> tag),
    cut after the last whitespace so that a word is shown whole."""
    limit = len(raw)
    start = 0
    lines = raw.splitlines(keepends=True)
    for i, line in enumerate(lines):
        s = line.lstrip()
        complete = line.endswith("\n")
        hit = min((line.find(m) for m in _MARKERS if m in line), default=-1)
        if hit >= 0:
            limit = start + hit
            break
        partial_marker = not complete and s and any(m.startswith(s) for m in _MARKERS)
        if s[:1] in ("{", "[") or partial_marker:
            limit = start
            break
        if s.startswith("```") or (not complete and s and "```".startswith(s)):
            following = "".join(lines[i + 1 :]).lstrip()
            if not complete or not following or following[0] in "{[":
                limit = start
                break
        start += len(line)
    head = raw[:limit]
    cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return cut + 1


def _might_hold_calls(content: str) -> bool:
    return "{" in content or any(m in content for m in _MARKERS)


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _objects(text: str) -> list[dict]:
    """JSON objects written one after another (or as one list) in text."""
    objs: list[dict] = []
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            break
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            break
        items = value if isinstance(value, list) else [value]
        objs.extend(v for v in items if isinstance(v, dict))
    return objs


def _call_shape(obj: dict) -> tuple[str, object] | None:
    """(name, raw arguments) when obj looks like a tool call, else None."""
    inner = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = inner.get("name") or inner.get("tool")
    if not isinstance(name, str) or not name:
        return None
    for key in ("arguments", "parameters", "args", "input"):
        if key in inner:
            return name, inner[key]
    if set(inner) <= {"name", "tool", "type", "id"}:
        return name, {}
    return None


def _take(obj: dict, schema_of: SchemaOf, out: TextCalls) -> None:
    shape = _call_shape(obj)
    if shape is None:
        out.refused.append("a JSON object that is not a tool call")
        return
    name, raw = shape
    args = _loads(raw) if isinstance(raw, str) else raw
    if args is None and raw in ("", None):
        args = {}
    schema = schema_of(name)
    if schema is None:
        out.refused.append(f"there is no tool named {name!r}")
        return
    if not isinstance(args, dict):
        out.refused.append(f"the arguments for {name} are not a JSON object")
        return
    problems = validate_args(schema, args)
    if problems:
        out.refused.append(f"invalid arguments for {name}: {'; '.join(problems)}")
        return
    out.calls.append(ToolCall(id="", name=name, arguments=args))


def _bare_json(content: str, spans: list[tuple[int, int]], schema_of, out: TextCalls) -> None:
    """JSON objects (or lists) starting a line and shaped like calls."""
    for m in re.finditer(r"(?m)^[ \t]*([\[{])", content):
        begin = m.start(1)
        if _inside((begin, begin + 1), spans):
            continue
        try:
            value, end = _DECODER.raw_decode(content, begin)
        except ValueError:
            continue
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, dict) and _call_shape(v) for v in items):
            continue
        spans.append((m.start(), end))
        for obj in items:
            _take(obj, schema_of, out)


def _inside(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] < b for a, b in spans)


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for a, b in sorted(spans):
        if a >= pos:
            out.append(text[pos:a])
            pos = b
        else:
            pos = max(pos, b)
    out.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(out))
