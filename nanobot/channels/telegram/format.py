"""Markdown → Telegram HTML, and splitting long replies into parts Telegram accepts."""

from __future__ import annotations

import re

TELEGRAM_LIMIT = 4096
_SAFE_SCHEMES = ("http://", "https://", "tg://")
_MAX_LANG = 30

# A fence line: ``` optionally followed by a language word; the same rule opens and closes.
FENCE_RE = re.compile(r"^\s{0,3}```\s*([\w+#.-]*)\s*$")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_QUOTE_RE = re.compile(r"^\s{0,3}>\s?(.*)$")

# Inline spans, leftmost match wins; at the same position the earlier alternative wins.
_INLINE_RE = re.compile(
    r"\\(?P<esc>[\\`*_\[\]()#+\-.!~>|])"
    r"|`(?P<code>[^`\n]+)`"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<url>[^)\s]+)\)"
    r"|\*\*(?=\S)(?P<b1>.+?)(?<=\S)\*\*"
    r"|(?<!\w)__(?=\S)(?P<b2>.+?)(?<=\S)__(?!\w)"
    r"|~~(?=\S)(?P<s>.+?)(?<=\S)~~"
    r"|(?<![\w*])\*(?=[^\s*])(?P<i1>.+?)(?<=[^\s*])\*(?![\w*])"
    # `_` only opens and closes at word edges, so snake_case_words stay as they are.
    r"|(?<!\w)_(?=[^\s_])(?P<i2>.+?)(?<=[^\s_])_(?!\w)"
)


def escape(text: str) -> str:
    """Escape text for Telegram HTML: the three characters its parser treats specially."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    """Escape an attribute value that will be written inside double quotes."""
    return escape(text).replace('"', "&quot;")


def _inline(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _INLINE_RE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        pos = m.end()
        g = m.groupdict()
        if g["esc"] is not None:
            out.append(escape(g["esc"]))
        elif g["code"] is not None:
            out.append(f"<code>{escape(g['code'])}</code>")
        elif g["label"] is not None:
            url = g["url"]
            if url.lower().startswith(_SAFE_SCHEMES):
                out.append(f'<a href="{escape_attr(url)}">{_inline(g["label"])}</a>')
            else:
                out.append(escape(m.group(0)))
        elif g["b1"] is not None or g["b2"] is not None:
            out.append(f"<b>{_inline(g['b1'] or g['b2'])}</b>")
        elif g["s"] is not None:
            out.append(f"<s>{_inline(g['s'])}</s>")
        else:
            out.append(f"<i>{_inline(g['i1'] or g['i2'])}</i>")
    out.append(escape(text[pos:]))
    return "".join(out)


def _line(line: str) -> str:
    heading = _HEADING_RE.match(line)
    if heading:
        return f"<b>{_inline(heading.group(1))}</b>"
    bullet = _BULLET_RE.match(line)
    if bullet and bullet.group(2):
        return f"{bullet.group(1)}• {_inline(bullet.group(2))}"
    return _inline(line)


def _code_block(lang: str, lines: list[str]) -> str:
    body = escape("\n".join(lines))
    if lang:
        return f'<pre><code class="language-{escape_attr(lang[:_MAX_LANG])}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def markdown_to_html(text: str) -> str:
    """Render the Markdown a model writes as Telegram HTML (parse_mode HTML).

    Bold, italic, strikethrough, inline code, fenced code blocks, http/https/tg links, headings
    (as bold), bullets (as "•") and block quotes; everything else is escaped text. An unclosed
    fence runs to the end of the text. The visible text is never longer than the input.
    """
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        fence = FENCE_RE.match(lines[i])
        if fence:
            j = i + 1
            while j < len(lines) and not FENCE_RE.match(lines[j]):
                j += 1
            out.append(_code_block(fence.group(1), lines[i + 1 : j]))
            i = j + 1
            continue
        if _QUOTE_RE.match(lines[i]):
            quoted = []
            while i < len(lines) and (q := _QUOTE_RE.match(lines[i])):
                quoted.append(_line(q.group(1)))
                i += 1
            out.append("<blockquote>" + "\n".join(quoted) + "</blockquote>")
            continue
        out.append(_line(lines[i]))
        i += 1
    return "\n".join(out)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _fit(text: str, units: int) -> int:
    """How many leading characters of text fit in `units` UTF-16 code units."""
    used = 0
    for n, c in enumerate(text):
        used += 2 if ord(c) > 0xFFFF else 1
        if used > units:
            return n
    return len(text)


def _find_cut(text: str, units: int) -> tuple[int, int]:
    """(cut index, separator length): paragraph, then line, then word boundary, else hard cut."""
    n = _fit(text, units)
    for sep in ("\n\n", "\n", " "):
        # The separator is dropped, so it may reach past the window; the part itself may not.
        idx = text.rfind(sep, 0, n + len(sep))
        if idx >= max(1, n // 2):
            return idx, len(sep)
    return max(n, 1), 0


def _open_fence(text: str, carried: str | None) -> str | None:
    """The opener line of a fence still open at the end of text (None when all are closed)."""
    opener = carried
    for line in text.split("\n"):
        m = FENCE_RE.match(line)
        if m:
            opener = None if opener is not None else "```" + m.group(1)[:_MAX_LANG]
    return opener


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split Markdown into parts of at most `limit` UTF-16 units, each renderable on its own.

    Cuts at a paragraph break, else a line break, else a space (only in the second half of the
    window, so parts stay large), else mid-word. A code fence cut in two is closed at the end of
    one part and reopened (with its language) at the start of the next. Blank parts are dropped.
    """
    if limit < 64:
        raise ValueError("limit must be at least 64")
    parts: list[str] = []
    carried: str | None = None
    rest = text
    while rest:
        prefix = carried + "\n" if carried else ""
        if utf16_len(prefix) + utf16_len(rest) <= limit:
            parts.append(prefix + rest)
            break
        room = limit - utf16_len(prefix)
        cut, skip = _find_cut(rest, room)
        if _open_fence(rest[:cut], carried):  # leave room for the closing "\n```"
            cut, skip = _find_cut(rest, room - 4)
        body = prefix + rest[:cut]
        rest = rest[cut + skip :]
        carried = _open_fence(body[len(prefix) :], carried) if rest else None
        if carried:
            body += "\n```"
        parts.append(body)
    return [p for p in parts if p.strip() and not _only_fences(p)]


def _only_fences(part: str) -> bool:
    return all(FENCE_RE.match(line) or not line.strip() for line in part.split("\n"))
