"""Shell words for the exec guard: split a command like sh would, without running any of it.

parse() turns text into simple commands (quotes and escapes removed; `$(…)`, backticks, `<(…)` and
unquoted heredocs lexed recursively, in execution order); resolve() expands a command's words,
tracking plain variable assignments and aliases, so `c=rm; $c` and `$(echo rm)` read as `rm`.
Anything it cannot know becomes SENTINEL and is flagged, so the guard can treat it as suspicious.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 12
SENTINEL = "\x1a"  # stands for text an expansion produces that the guard cannot know

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=")
_PLAIN = re.compile(r"[^ \t\r\n;&|()<>\\'\"`$*?\[{]*")
_DQ_PLAIN = re.compile(r'[^"\\`$]*')
_REDIR = re.compile(r"&>>|&>|<<<|<<-|<<|<>|<&|>>|>\||>&|<|>")
_RESERVED = {"{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until"}
_RESERVED |= {"esac", "coproc"}


class TooDeep(Exception):
    """The command nests substitutions deeper than MAX_DEPTH."""


@dataclass
class _Exp:
    """An expansion inside a word: a variable (name) or a substitution (value when known)."""

    quoted: bool
    name: str = ""
    value: str | None = None
    command: bool = False  # $(…), `…` or <(…)


@dataclass
class _Word:
    parts: list[str | _Exp] = field(default_factory=list)
    glob: bool = False  # unquoted * ? [ {
    quoted: bool = False

    def add(self, part: str | _Exp) -> None:
        self.parts.append(part)

    def merged(self) -> _Word:
        """Join adjacent literal pieces (done once per word: repeated += would be quadratic)."""
        parts: list[str | _Exp] = []
        run: list[str] = []
        for part in [*self.parts, None]:
            if isinstance(part, str):
                run.append(part)
                continue
            if run:
                parts.append("".join(run))
                run = []
            if part is not None:
                parts.append(part)
        self.parts = parts
        return self

    def literal(self) -> str | None:
        return None if any(isinstance(p, _Exp) for p in self.parts) else "".join(self.parts)


@dataclass
class Cmd:
    words: list[_Word] = field(default_factory=list)
    redirects: list[tuple[str, _Word]] = field(default_factory=list)
    heredocs: list[str] = field(default_factory=list)
    piped: bool = False  # stdin comes from a pipe


@dataclass
class Arg:
    """A word after expansion: its text (SENTINEL where unknown) and how it was produced."""

    text: str
    expanded: bool = False
    command_sub: bool = False
    glob: bool = False


def _matching(src: str, i: int, open_: str = "(", close: str = ")") -> int:
    """Index of the bracket closing the one at src[i], skipping quotes; len(src) if unclosed."""
    depth, j = 0, i
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 1
        elif c == "'":
            j = src.find("'", j + 1) % (len(src) + 1)
        elif c == '"':
            j += 1
            while j < len(src) and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return len(src)


class _Lexer:
    """Splits shell text into simple commands; substitutions are lexed recursively, in order."""

    def __init__(
        self, src: str, depth: int, start: int = 0, nested: bool = False, arith: bool = False
    ) -> None:
        if depth > MAX_DEPTH:
            raise TooDeep
        self.src, self.i, self.depth = src, start, depth
        # nested: lexing `$(…)` in place; an unmatched `)` ends it, exactly as for the shell.
        self.nested, self.parens = nested, 0
        self.arith = arith  # inside `(( … ))`: `<<` is a shift, not a heredoc
        self.cmds: list[Cmd] = []
        self.cur, self.word, self.redirect = Cmd(), None, None
        self.heredocs: list[tuple[Cmd, str, bool, bool]] = []  # cmd, delimiter, quoted, strip tabs

    def run(self) -> list[Cmd]:
        src = self.src
        while self.i < len(src):
            c, two = src[self.i], src[self.i : self.i + 2]
            if c in " \t\r\n":
                self.i += 1
                self._end_word()
                if c == "\n":
                    self._read_heredocs()
                    self._end_cmd(False)
            elif c == "#" and self.word is None:
                self.i = src.find("\n", self.i) % (len(src) + 1)
            elif c in "<>" or two == "&>":
                self._angle()
            elif two == "((" and self.word is None and not self.cur.words:
                self._arith_command()
            elif c in ";&|()":
                if c == ")" and self.nested and not self.parens:
                    break
                self.parens += (c == "(") - (c == ")" and self.parens > 0)
                self._end_word()
                self.i += 2 if two in ("&&", "||", ";;", "|&") else 1
                keep = c == "(" and not self.cur.words and self.cur.piped
                self._end_cmd(c == "|" and two != "||" or keep)
            else:
                self._word_char()
        self._end_word()
        self._end_cmd(False)
        return self.cmds

    def _w(self, quoted: bool = False) -> _Word:
        if self.word is None:
            self.word = _Word()
        self.word.quoted |= quoted
        return self.word

    def _word_char(self) -> None:
        src, i = self.src, self.i
        c = src[i]
        if c == "\\":
            self.i += 2
            if src[i + 1 : i + 2] not in ("", "\n"):
                self._w(True).add(src[i + 1])
        elif c == "'":
            j = src.find("'", i + 1) % (len(src) + 1)
            self._w(True).add(src[i + 1 : j])
            self.i = j + 1
        elif c == '"':
            self.i += 1
            self._dquoted('"')
        elif c == "`":
            self._backtick(False)
        elif c == "$":
            self._dollar(False)
        else:
            end = max(_PLAIN.match(src, i).end(), i + 1)
            self._w().glob |= c in "*?[{"
            self._w().add(src[i:end])
            self.i = end

    def _dquoted(self, end: str | None) -> None:
        src, w = self.src, self._w(True)
        while self.i < len(src) and src[self.i] != end:
            c = src[self.i]
            if c == "\\" and self.i + 1 < len(src):
                nxt = src[self.i + 1]
                w.add(nxt if nxt in '$`"\\' else "" if nxt == "\n" else c + nxt)
                self.i += 2
            elif c == "`":
                self._backtick(True)
            elif c == "$":
                self._dollar(True)
            else:
                stop = max(_DQ_PLAIN.match(src, self.i).end(), self.i + 1)
                w.add(src[self.i : stop])
                self.i = stop
        self.i += 1

    def _dollar(self, quoted: bool) -> None:
        src, i, w = self.src, self.i, self._w()
        nxt, name = src[i + 1 : i + 2], _NAME.match(src, i + 1)
        if src.startswith("$((", i) or (nxt and nxt in "[{"):  # $((…)) $[…] ${…}
            j = _matching(src, i + 1, *{"(": "()", "[": "[]", "{": "{}"}[nxt])
            inner = src[i + 2 : j]
            if nxt == "{" and _NAME.fullmatch(inner):
                w.add(_Exp(quoted, name=inner))
            else:
                self._scan(inner)
                w.add(_Exp(quoted))
            self.i = j + 1
        elif nxt == "(":
            w.add(self._substitute_at(i + 2, quoted))
        elif nxt in ("'", '"') and not quoted:  # $'…' (ANSI-C) and $"…" (locale)
            self.i += 2
            if nxt == '"':
                return self._dquoted('"')
            j = i + 2
            while j < len(src) and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            raw = src[i + 2 : j].encode("latin-1", "backslashreplace")
            w.add(raw.decode("unicode_escape", "replace"))
            w.quoted, self.i = True, j + 1
        elif name:
            w.add(_Exp(quoted, name=name.group()))
            self.i = name.end()
        elif nxt and nxt in "@*#?$!-0123456789":
            w.add(_Exp(quoted))
            self.i += 2
        else:
            w.add("$")
            self.i += 1

    def _backtick(self, quoted: bool) -> None:
        src, j, buf = self.src, self.i + 1, []
        while j < len(src) and src[j] != "`":
            step = 2 if src[j] == "\\" and src[j + 1 : j + 2] in ("`", "$", "\\") else 1
            buf.append(src[j + step - 1])
            j += step
        self._w().add(self._substitute("".join(buf), quoted))
        self.i = j + 1

    def _substitute(self, inner: str, quoted: bool) -> _Exp:
        return self._adopt(_Lexer(inner, self.depth + 1).run(), quoted)

    def _substitute_at(self, start: int, quoted: bool) -> _Exp:
        """Lex the `$(…)`/`<(…)` body starting at src[start]; continue after its `)`."""
        sub = _Lexer(self.src, self.depth + 1, start, nested=True)
        exp = self._adopt(sub.run(), quoted)
        self.i = sub.i + 1
        return exp

    def _adopt(self, cmds: list[Cmd], quoted: bool) -> _Exp:
        self.cmds.extend(cmds)  # they run before the command that uses their output
        return _Exp(quoted, value=_static_output(cmds), command=True)

    def _scan(self, text: str) -> None:
        """Collect commands substituted inside text that is expanded but not split (heredoc, ${…})."""
        sub = _Lexer(text, self.depth + 1)
        sub._dquoted(None)
        self.cmds.extend(sub.cmds)

    def _arith_command(self) -> None:
        """`(( … ))`: lexed as commands too (bash may reparse it as nested subshells), no heredocs."""
        j = _matching(self.src, self.i)
        sub = _Lexer(self.src[self.i + 1 : j], self.depth + 1, arith=True)
        self.cmds.extend(sub.run())
        self.i = j + 1

    def _angle(self) -> None:
        src, i = self.src, self.i
        if src[i + 1 : i + 2] == "(" and src[i] in "<>":  # process substitution <(…) >(…)
            self._w().add(self._substitute_at(i + 2, False))
            return
        if self.word and not self.word.quoted and (self.word.literal() or "x").isdigit():
            self.word = None  # `2>` : the digits name a file descriptor
        self._end_word()
        op = _REDIR.match(src, i).group()
        self.redirect, self.i = op, i + len(op)

    def _end_word(self) -> None:
        w, self.word = self.word, None
        if w is None:
            return
        w.merged()
        if self.redirect:
            self.cur.redirects.append((self.redirect, w))
            # A delimiter with an expansion in it is taken literally by the shell; rather than
            # guess, lex what follows as commands (a wrong guess could hide them as heredoc text).
            if self.redirect in ("<<", "<<-") and not self.arith and w.literal() is not None:
                self.heredocs.append((self.cur, w.literal() or "", w.quoted, "-" in self.redirect))
            self.redirect = None
        elif self.cur.words or w.quoted or w.literal() not in _RESERVED:
            self.cur.words.append(w)

    def _end_cmd(self, piped: bool) -> None:
        if self.cur.words or self.cur.redirects:
            self.cmds.append(self.cur)
        self.cur = Cmd(piped=piped)

    def _read_heredocs(self) -> None:
        src = self.src
        for cmd, delim, quoted, strip in self.heredocs:
            lines = []
            while self.i < len(src):
                j = src.find("\n", self.i) % (len(src) + 1)
                line, self.i = src[self.i : j], j + 1
                if (line.lstrip("\t") if strip else line) == delim:
                    break
                lines.append(line)
            cmd.heredocs.append("\n".join(lines))
            if not quoted:
                self._scan(cmd.heredocs[-1])
        self.heredocs = []


def _static_output(cmds: list[Cmd]) -> str | None:
    """What `$(echo rm)` / `$(printf rm)` prints, when that is knowable without running it."""
    words = [w.literal() for w in cmds[0].words] if len(cmds) == 1 else [None]
    if None in words or not words or words[0] not in ("echo", "printf"):
        return None
    args = [a for a in words[1:] if a not in ("-n", "-e", "-E")]
    if words[0] == "printf" and (len(args) != 1 or "%" in args[0] or "\\" in args[0]):
        return None
    return " ".join(args)


def expand(word: _Word, env: dict[str, str]) -> list[Arg]:
    """Expand a word into fields: known values are substituted and, unquoted, split on IFS."""
    fields = [Arg("", glob=word.glob)]
    for part in word.parts:
        value = part if isinstance(part, str) else env.get(part.name) if part.name else part.value
        if isinstance(part, str) or (value is not None and part.quoted):
            fields[-1].text += value
        elif value is None:
            fields[-1].text += SENTINEL
            fields[-1].expanded = True
            fields[-1].command_sub |= part.command
        else:
            ifs = env.get("IFS")  # None: the script changed IFS to something unknowable
            first, *more = re.split(f"[{re.escape(ifs)}]+", value) if ifs else [value]
            fields[-1].text += first if ifs is not None else first + SENTINEL
            fields[-1].expanded |= ifs is None
            fields += [Arg(piece) for piece in more]
    return [f for f in fields if f.text or word.quoted]


def resolve(cmd: Cmd, env: dict[str, str]) -> list[Arg]:
    """Apply the command's assignments to env (over-approximating scope) and expand its words."""
    words = list(cmd.words)
    while words and _assign(words[0], env):
        words.pop(0)
    head = words[0].literal() if words else None
    if head in ("export", "declare", "typeset", "local", "readonly", "alias"):
        for w in words[1:]:
            _assign(w, env, "alias:" if head == "alias" else "")
    elif head in ("unset", "read", "mapfile", "readarray"):
        for w in words[1:]:
            env.pop(w.literal() or "", None)
    args = [a for w in words for a in expand(w, env)]
    alias = env.get(f"alias:{args[0].text}") if args else None
    return [Arg(t) for t in alias.split()] + args[1:] if alias else args


def _assign(word: _Word, env: dict[str, str], prefix: str = "") -> bool:
    """Record `NAME=value` in env (forget NAME when the value is unknowable); False if no assignment."""
    first = word.parts[0] if word.parts else None
    m = _ASSIGN.match(first) if isinstance(first, str) else None
    if m is None:
        return False
    fields = expand(_Word([first[m.end() :], *word.parts[1:]], quoted=True), env)
    text = fields[0].text if fields else ""
    if SENTINEL in text:
        env.pop(prefix + m.group(1), None)
    else:
        env[prefix + m.group(1)] = text
    return True


def parse(command: str, depth: int = 0) -> list[Cmd]:
    """The simple commands of `command` in the order they run (substitutions first)."""
    return _Lexer(command, depth).run()
