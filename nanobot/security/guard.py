"""The exec safety guard: blocks destructive shell commands, judged after shell-like normalisation.

A best-effort first line; the OS sandbox is the wall. shellwords splits and expands the command the
way sh would; each simple command is then judged by the rule for its name (the tables below).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch

from nanobot.security.shellwords import SENTINEL, Arg, TooDeep, expand, parse, resolve

_DISK = re.compile(
    r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|md\d|dm-\d|loop\d|sr\d|root$|mapper/|disk/)"
)
_PROC_ENVIRON = re.compile(r"/proc/[^/\s]+/(?:task/[^/\s]+/)?environ\b")
_SYSTEM_PATHS = {"/", "/*", "~", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt"}
_SYSTEM_PATHS |= {"/proc", "/root", "/sbin", "/srv", "/sys", "/usr", "/var"}
_RM_SHORT = re.compile(r"-[dfiIrRv]*[rRf][dfiIrRv]*")
_RM_LONG = ("recursive", "force", "no-preserve-root")
_DANGEROUS_NAMES = {"rm", "dd", "mkfs", "shred", "wipefs", "format", "shutdown", "reboot", "halt"}
_DANGEROUS_NAMES |= {"poweroff"}  # what a glob in command position must not be able to reach
_EDGE = r"[^\s;&|(){}<>]"  # a character that continues a command name
# Possessive runs and an edge look-behind keep these linear on long input.
_FUNC_DEF = re.compile(rf"(?<!{_EDGE})({_EDGE}++)\s*+\(\s*+\)|\bfunction\s++({_EDGE}++)")
_CODE_RULES = (  # inline python/perl/ruby/node/php code
    (
        re.compile(r"\brmtree\b|\brm_rf?\b|\bremove_dir_all\b|\brmSync\b|\brimraf\b"),
        "recursive delete in inline code",
    ),
    (re.compile(r'\|\s*"(?:/bin/)?(?:ba|da|z)?sh\b'), "inline code pipes into a shell"),
    (
        re.compile(r"\A(?=[\s\S]*\bwhile\b)(?=[\s\S]*\bfork\b)"),
        "fork loop in inline code (fork bomb)",
    ),
)
_SHELL_OUT = re.compile(
    r"\b(?:system|[pP]open|call|run|check_call|check_output|getoutput|spawn\w*|exec\w*)\s*\("
)
_CALL_ARGS = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(\))""")
_BACKTICKS = re.compile(r"`([^`]*)`|\bqx\s*[({]([^)}]*)[)}]")
_CODE_FLAGS = {"python": "c", "perl": "eE", "ruby": "e", "node": "ep", "php": "r"}
_CANONICAL = re.compile(r"(python|pypy|perl|ruby|php)[\d.]*|(mkfs)\..+|(node)js")

# Commands that run the command in their arguments: name -> (options taking a value, positionals).
_WRAPPERS = {
    "sudo": ("-u -g -C -h -p -U -r -t -D -R -T --user --group", 0),
    "doas": ("-u -C", 0),
    "env": ("-u -C --unset --chdir", 0),
    "nice": ("-n --adjustment", 0),
    "ionice": ("-c -n -p -P -u --class --classdata", 0),
    "time": ("-f -o --format --output", 0),  # also the bash keyword (`time -p cmd`)
    "timeout": ("-s -k --signal --kill-after", 1),
    "stdbuf": ("-i -o -e", 0),
    "exec": ("-a", 0),
    "xargs": ("-I -n -P -L -d -E -s -a --max-args --max-procs --delimiter --arg-file", 0),
    "chroot": ("--userspec --groups", 1),
    "flock": ("-w -E --timeout --conflict-exit-code", 1),
    "watch": ("-n -d --interval", 0),
    "strace": ("-e -o -p -s -u -E", 0),
    **dict.fromkeys(
        ("nohup", "setsid", "command", "builtin", "busybox", "toybox", "unbuffer"),
        ("", 0),
    ),
    **dict.fromkeys(("taskset", "chrt"), ("", 1)),
}


@dataclass
class _Call:
    """One command to judge: canonical name, its arguments and where its stdin comes from."""

    name: str
    args: list[Arg]
    depth: int
    piped: bool = False
    stdin: list[Arg] = field(default_factory=list)  # heredoc bodies and here-strings


def check_command(command: str) -> str | None:
    """Return a short reason when `command` must not run, None when the guard lets it through."""
    try:
        return _check(command, 0)
    except (TooDeep, RecursionError):
        return "command nested too deeply to check"


def _check(command: str, depth: int) -> str | None:
    if _fork_bomb(command):
        return "fork bomb"
    env: dict[str, str] = {"IFS": " \t\n"}
    for cmd in parse(command, depth):
        redirects = [(op, Arg(" ".join(a.text for a in expand(w, env)))) for op, w in cmd.redirects]
        stdin = [Arg(body) for body in cmd.heredocs] + [t for op, t in redirects if op == "<<<"]
        for op, target in redirects:
            if op in (">", ">>", ">|", "&>", "&>>", "<>") and _is_disk(target.text):
                return f"raw disk write (redirect to {target.text})"
            if _PROC_ENVIRON.search(target.text):
                return "reads a process environment (it holds secrets)"
        reason = _check_args(resolve(cmd, env), depth, cmd.piped, stdin)
        if reason:
            return reason
    return None


def _check_args(
    args: list[Arg], depth: int, piped: bool = False, stdin: Iterable[Arg] = ()
) -> str | None:
    """Judge one simple command (already expanded) by the rule for its name."""
    if any(_PROC_ENVIRON.search(a.text) for a in args):
        return "reads a process environment (it holds secrets)"
    args, reason = _unwrap(args, depth)
    if reason or not args:
        return reason
    head = args[0]
    if head.glob and re.fullmatch(r"\{[^{}]*,[^{}]*\}", head.text):  # brace expansion {rm,-rf,/}
        return _check_args([Arg(t) for t in head.text[1:-1].split(",")] + args[1:], depth, piped)
    pattern = posixpath.basename(head.text) or head.text
    hits = sorted(n for n in _DANGEROUS_NAMES if head.glob and fnmatch(n, pattern))
    if hits:
        return f"a glob in command position can run {hits[0]}"
    if head.expanded:  # `$c -rf /`, `$0 -c '…'`, `… | $SHELL`
        if any(_destructive_arg(a) for a in args[1:]):
            return "command name built at run time, with destructive arguments"
        if piped and not _operands(args[1:]):
            return "piping into a command built at run time (decode-and-execute)"
        return next(filter(None, (_check(a.text, depth + 1) for a in args[1:])), None)
    m = _CANONICAL.fullmatch(pattern)
    name = next(g for g in m.groups() if g) if m else pattern
    rule = _RULES.get(name)
    return rule(_Call(name, args[1:], depth, piped, list(stdin))) if rule else None


def _unwrap(args: list[Arg], depth: int) -> tuple[list[Arg], str | None]:
    """Strip sudo/env/xargs/… so the rules see the command that really runs."""
    while args and posixpath.basename(args[0].text) in _WRAPPERS:
        name = posixpath.basename(args[0].text)
        value_opts, positional = _WRAPPERS[name]
        i = 1
        while i < len(args) and args[i].text != "--":
            t = args[i].text
            if name == "env" and t in ("-S", "--split-string"):  # env -S 'rm -rf /'
                return [], _check(" ".join(a.text for a in args[i + 1 :]), depth + 1)
            if t == "-" or (not t.startswith("-") and not (name == "env" and "=" in t)):
                break
            i += 2 if t in value_opts.split() else 1
        args = args[i + (i < len(args) and args[i].text == "--") + positional :]
    return args, None


def _norm_path(text: str) -> str:
    path = posixpath.normpath(re.sub(r"/+", "/", text)) if text.startswith("/") else text
    return re.sub(r"^(?:/proc/[^/]+/root)+(?=/)", "", path)


def _is_disk(text: str) -> bool:
    return bool(_DISK.match(_norm_path(text)))


def _long_rm(text: str, min_len: int = 1) -> bool:
    """`--rec`, `--f`, …: GNU tools accept any unambiguous prefix of a long option."""
    name = text[2:].split("=")[0]
    return (
        text.startswith("--") and len(name) >= min_len and any(o.startswith(name) for o in _RM_LONG)
    )


def _destructive_arg(arg: Arg) -> bool:
    t = arg.text
    return bool(
        _RM_SHORT.fullmatch(t)
        or _long_rm(t, 3)
        or (t.startswith("-") and SENTINEL in t)
        or _norm_path(t) in _SYSTEM_PATHS
    )


def _fork_bomb(text: str) -> bool:
    """A defined function piped into itself: `:(){ :|:& };:`, `bomb(){ bomb|bomb& };bomb`."""
    names = {m.group(1) or m.group(2) for m in _FUNC_DEF.finditer(text)}
    if not names:
        return False
    alt = "|".join(map(re.escape, names))
    return bool(re.search(rf"(?<!{_EDGE})({alt})\s*+\|&?\s*+\1(?!{_EDGE})", text))


def _operands(args: list[Arg]) -> list[str]:
    return [a.text for a in args if not a.text.startswith("-") or a.text == "-"]


# ---- rules, one per command name -------------------------------------------------------------


def _always(reason: str) -> Callable[[_Call], str | None]:
    return lambda call: reason


def _rm(call: _Call) -> str | None:
    for arg in call.args:
        t = arg.text
        if t == "--":
            break
        if _long_rm(t) or (
            t[:1] == "-" and t[1:2] != "-" and (arg.expanded or set(t) & set("rRf"))
        ):
            return "recursive or forced delete (rm -r/-f)"
    return None


def _dd(call: _Call) -> str | None:
    for t in (a.text for a in call.args):
        if t.startswith("if=") or (t.startswith("of=") and _is_disk(t[3:])):
            return f"raw disk copy (dd {t.split('=')[0]}=)"
    return None


def _find(call: _Call) -> str | None:
    args = call.args
    for i, arg in enumerate(args):
        if arg.text == "-delete":
            return "find -delete"
        if arg.text in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((j for j in range(i, len(args)) if args[j].text in (";", "+")), len(args))
            reason = _check_args(args[i + 1 : end], call.depth + 1)
            if reason:
                return f"find -exec: {reason}"
    return None


def _chperm(call: _Call) -> str | None:
    opts = [a.text for a in call.args if a.text.startswith("-")]
    recursive = any(o.startswith("--rec") or (o[1:2] != "-" and "R" in o) for o in opts)
    for path in map(_norm_path, _operands(call.args)):
        if path == "/" or (recursive and path in _SYSTEM_PATHS):
            return f"{call.name} on a system directory ({path})"
    return None


def _power(call: _Call) -> str | None:
    ops = _operands(call.args)
    verbs = (
        {"0", "6"} if call.name in ("init", "telinit") else {"poweroff", "reboot", "halt", "kexec"}
    )
    return f"system shutdown/reboot ({call.name} {ops[0]})" if ops and ops[0] in verbs else None


def _disk_target(call: _Call) -> str | None:
    ops = _operands(call.args)
    targets = ops if call.name in ("tee", "shred") else ops[-1:]
    return f"raw disk write ({call.name} to a device)" if any(map(_is_disk, targets)) else None


def _shell(call: _Call) -> str | None:
    args, i, has_c = call.args, 0, False
    while i < len(args) and args[i].text[:1] in "-+" and args[i].text not in ("-", "--"):
        t = args[i].text
        has_c = has_c or (t[1:2] != "-" and "c" in t)
        i += 2 if t in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file") else 1
    rest = args[i + (i < len(args) and args[i].text == "--") :]
    if has_c:
        if not rest or rest[0].expanded:
            return "shell -c with a command built at run time (generated code)"
        return _check(rest[0].text, call.depth + 1)
    if rest and rest[0].text not in ("-", "/dev/stdin"):
        return "shell runs a script produced by a command" if rest[0].command_sub else None
    return _stdin_program(call, _check)


def _stdin_program(call: _Call, judge: Callable[[str, int], str | None]) -> str | None:
    """The program comes from stdin: judge heredocs/here-strings; a pipe is decode-and-execute."""
    for text in call.stdin:
        reason = (
            "reads code built at run time" if text.expanded else judge(text.text, call.depth + 1)
        )
        if reason:
            return reason
    return (
        f"piping into {call.name} runs generated code (decode-and-execute)" if call.piped else None
    )


def _eval(call: _Call) -> str | None:
    if any(a.expanded for a in call.args):
        return "eval of text built at run time"
    return _check(" ".join(a.text for a in call.args), call.depth + 1)


def _source(call: _Call) -> str | None:
    ops = [a for a in call.args if not a.text.startswith("-") or a.text == "-"]
    bad = ops and (
        ops[0].command_sub or ops[0].text in ("-", "/dev/stdin") or "/fd/" in ops[0].text
    )
    return "sourcing generated code" if bad else None


def _interpreter(call: _Call) -> str | None:
    """python -c / perl -e / node -e …: judge the inline code; a program piped in is blocked."""
    letters, args, i = _CODE_FLAGS[call.name], call.args, 0
    while i < len(args):
        arg, nxt = args[i], args[i + 1] if i + 1 < len(args) else Arg("")
        t = arg.text
        if t == "-":
            break
        if not t.startswith("-") or (call.name == "python" and t.startswith("-m")):
            return None  # a script file or a module
        key, eq, value = t[2:].partition("=")
        if t.startswith("--") and key in ("eval", "print"):
            return _judge_code(Arg(value) if eq else nxt, call)
        pos = 0 if t.startswith("--") else next((k for k, c in enumerate(t) if c in letters), 0)
        if pos:
            return _judge_code(
                Arg(t[pos + 1 :], command_sub=arg.command_sub) if t[pos + 1 :] else nxt, call
            )
        i += 2 if call.name == "python" and t in ("-W", "-X") else 1
    return _stdin_program(call, _check_code)


def _awk(call: _Call) -> str | None:
    args, i = call.args, 0
    while i < len(args) and args[i].text.startswith("-") and args[i].text != "--":
        if args[i].text in ("-f", "--file"):
            return None
        i += 2 if args[i].text in ("-F", "-v", "--assign", "--field-separator") else 1
    i += i < len(args) and args[i].text == "--"
    return _judge_code(args[i], call) if i < len(args) else None


def _judge_code(code: Arg, call: _Call) -> str | None:
    if code.command_sub:
        return f"{call.name} runs code produced by a command (decode-and-execute)"
    return _check_code(code.text, call.depth + 1)


def _check_code(code: str, depth: int) -> str | None:
    """Inline interpreter code: known destructive calls, and shell commands it hands to the OS."""
    for pattern, reason in _CODE_RULES:
        if pattern.search(code):
            return reason
    commands = [m.group(1) or m.group(2) or "" for m in _BACKTICKS.finditer(code)]
    for m in _SHELL_OUT.finditer(code):
        literals = []
        for lit in _CALL_ARGS.finditer(code, m.end()):
            if lit.group(3):
                break
            literals.append(lit.group(1) if lit.group(1) is not None else lit.group(2))
        commands.append(" ".join(literals))
    for command in commands:
        reason = _check(command, depth + 1)
        if reason:
            return f"inline code runs a blocked command: {reason}"
    return None


_RULES: dict[str, Callable[[_Call], str | None]] = {
    "rm": _rm,
    "dd": _dd,
    "find": _find,
    "eval": _eval,
    "format": _always("disk format (format)"),
    **dict.fromkeys(("chmod", "chown", "chgrp"), _chperm),
    **dict.fromkeys(
        ("mkfs", "mke2fs", "mkswap", "wipefs", "blkdiscard"), _always("filesystem format (mkfs)")
    ),
    **dict.fromkeys(("shutdown", "reboot", "poweroff", "halt"), _always("system shutdown/reboot")),
    **dict.fromkeys(("init", "telinit", "systemctl"), _power),
    **dict.fromkeys(("tee", "shred", "cp", "mv", "install"), _disk_target),
    **dict.fromkeys(("source", "."), _source),
    **dict.fromkeys(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"), _shell),
    **dict.fromkeys(_CODE_FLAGS, _interpreter),
    **dict.fromkeys(("awk", "gawk", "mawk", "nawk"), _awk),
}
