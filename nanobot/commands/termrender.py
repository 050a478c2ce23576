"""Markdown for the terminal, rendered as it streams: headings, bold, inline code, code
blocks, lists and quotes become ANSI styles; plain text passes through when not a TTY."""

from __future__ import annotations

BOLD, DIM, CODE, HEAD, RESET = "\033[1m", "\033[2m", "\033[36m", "\033[1;4m", "\033[0m"
_HOLD = 8  # the start of a line is held until its kind (heading, list, fence…) is known


class MarkdownStream:
    """feed(text) → what to write now; end() → the rest. With ansi=False, text is unchanged.

    Works a line at a time for block syntax (the start of a line is held back a few
    characters) and a character at a time inside a line, so text still appears as it comes.
    """

    def __init__(self, ansi: bool) -> None:
        self.ansi = ansi
        self._pending = ""
        self._line_start = True
        self._in_block = False  # inside a ``` code block
        self._line_style = ""  # the style of the whole current line (heading)
        self._bold = False
        self._code = False

    def feed(self, text: str) -> str:
        if not self.ansi:
            return text
        self._pending += text
        out: list[str] = []
        while self._pending:
            if self._line_start:
                if not self._start_line(out):
                    break
                continue
            if not self._inline(out):
                break
        return "".join(out)

    def end(self) -> str:
        if not self.ansi:
            return ""
        out = [self.feed("\n")] if self._pending else []
        self._pending = ""
        return "".join(out) + (RESET if self._styled() else "")

    def _styled(self) -> bool:
        return self._bold or self._code or bool(self._line_style) or self._in_block

    def _start_line(self, out: list[str]) -> bool:
        """Decide what the new line is; False when more text is needed."""
        p = self._pending
        head, nl, _ = p.partition("\n")
        stripped = head.lstrip()
        if not nl and len(head) < _HOLD and (not stripped or stripped[0] in "#-*+>`0123456789"):
            return False
        self._line_start = False
        if stripped.startswith("```"):
            if not nl:
                self._line_start = True
                return False
            self._in_block = not self._in_block
            self._pending = p[len(head) + 1 :]
            self._line_start = True
            out.append(DIM + "───" + RESET + "\n")
            return True
        if self._in_block:
            self._line_style = CODE
            out.append(CODE)
            return True
        indent = head[: len(head) - len(stripped)]
        marker, _, rest = stripped.partition(" ")
        if marker and set(marker) == {"#"} and len(marker) <= 6 and rest:
            self._line_style = HEAD
            out.append(indent + HEAD)
            self._pending = rest + p[len(head) :]
        elif marker in ("-", "*", "+") and rest:
            out.append(indent + "• ")
            self._pending = rest + p[len(head) :]
        elif marker == ">":
            out.append(indent + DIM + "│ " + RESET)
            self._pending = rest + p[len(head) :]
        return True

    def _inline(self, out: list[str]) -> bool:
        """Render up to the end of the line; False when more text is needed."""
        p = self._pending
        i = 0
        while i < len(p):
            c = p[i]
            if c == "\n":
                out.append((RESET if self._styled() else "") + "\n")
                self._bold = self._code = False
                self._line_style = ""
                self._line_start = True
                self._pending = p[i + 1 :]
                return True
            if self._in_block:
                out.append(c)
            elif c == "`":
                self._code = not self._code
                out.append(CODE if self._code else RESET + self._restore())
            elif c == "*" and not self._code:
                if i + 1 >= len(p):
                    self._pending = p[i:]
                    return False
                if p[i + 1] == "*":
                    self._bold = not self._bold
                    out.append(BOLD if self._bold else RESET + self._restore())
                    i += 1
                else:
                    out.append(c)
            else:
                out.append(c)
            i += 1
        self._pending = ""
        return False

    def _restore(self) -> str:
        return self._line_style + (BOLD if self._bold else "") + (CODE if self._code else "")
