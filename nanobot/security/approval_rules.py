"""Which tool calls a person should see before they run (tools.approval.mode "risky").

The guard (security/guard.py) decides what never runs; these rules pick, among what it lets
through, the calls that change things a person would want to know about. Commands are judged
on their parsed words (security/shellwords.py: quotes removed, substitutions and variables
resolved), never on the raw string, so `'r''m' a.txt` and `c=mv; $c a b` read as rm and mv.

`reason_for` returns a short reason ("deletes files (rm)") or None. It is deliberately broad:
a false positive costs one tap, a false negative runs a risky command unseen.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from nanobot.security.pathpolicy import PathPolicy, PathRefused
from nanobot.security.shellwords import SENTINEL, Arg, TooDeep, expand, parse, resolve

# Tools that only read: never asked about, even in mode "always".
READ_ONLY = frozenset({"read_file", "list_dir", "web_search", "web_fetch"})

# Commands that run the command in their arguments; value: options that take a value.
_WRAPPERS = {
    "sudo": {"-u", "-g", "-C", "-h", "-p", "-U", "-r", "-t", "-D", "-R", "-T", "--user"},
    "doas": {"-u", "-C"},
    "env": {"-u", "-C", "--unset", "--chdir", "-S", "--split-string"},
    "nice": {"-n", "--adjustment"},
    "ionice": {"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"},
    "stdbuf": {"-i", "-o", "-e"},
    "xargs": {"-I", "-n", "-P", "-L", "-d", "-E", "-s", "-a", "--max-args", "--max-procs"},
    "time": {"-f", "-o", "--format", "--output"},
    "exec": {"-a"},
    "nohup": set(),
    "setsid": set(),
    "command": set(),
    "builtin": set(),
    "busybox": set(),
    "flock": {"-w", "-E", "--timeout"},
    "watch": {"-n", "-d", "--interval"},
}
_POSITIONAL = {"timeout": 1, "flock": 1}  # words after the options that are not the command

_SIMPLE = {
    "rm": "deletes files",
    "rmdir": "deletes folders",
    "unlink": "deletes a file",
    "shred": "destroys a file's contents",
    "mv": "moves or renames files (may replace one)",
    "truncate": "truncates a file",
    "chmod": "changes permissions",
    "chown": "changes owners",
    "chgrp": "changes owners",
    "chattr": "changes file attributes",
    "setfacl": "changes permissions",
}
_INSTALLERS = {
    **dict.fromkeys(("apt", "apt-get", "aptitude", "dnf", "yum", "zypper", "brew"), None),
    **dict.fromkeys(("pip", "pip3", "pipx", "uv", "poetry", "gem", "cargo", "go"), None),
    **dict.fromkeys(("npm", "pnpm", "yarn", "bun", "snap", "flatpak", "conda"), None),
}
_INSTALL_VERBS = {"install", "i", "add", "remove", "uninstall", "purge", "upgrade", "update", "get"}
_PUBLISH = {"publish", "push", "upload", "release", "deploy"}
_PUBLISHERS = {"git", "npm", "pnpm", "yarn", "cargo", "twine", "gem", "docker", "podman"}
_PUBLISHERS |= {"poetry", "flit", "hatch", "helm", "gh", "hg"}
_DOWNLOADERS = {"curl", "wget", "fetch", "aria2c"}
_RUNNERS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby", "node"}
_OVERWRITE_OPS = {">", ">|", "&>"}
_HARMLESS_TARGETS = {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"}


@dataclass(frozen=True)
class Pattern:
    """One tools.approval.rules entry: `tool:NAME` or command words with shell-style globs."""

    tool: str | None
    words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """ValueError names the entry when it is empty or unbalanced."""
        text = text.strip()
        if text.startswith("tool:") and text[5:].strip():
            return cls(text[5:].strip(), ())
        try:
            words = tuple(shlex.split(text))
        except ValueError as exc:
            raise ValueError(f"tools.approval.rules: {text!r}: {exc}") from None
        if not words:
            raise ValueError("tools.approval.rules: an entry is empty; remove it")
        return cls(None, words)

    def matches(self, words: list[str]) -> bool:
        return len(words) >= len(self.words) and all(
            fnmatchcase(w, p) for w, p in zip(words, self.words, strict=False)
        )


class Rules:
    """The default rules plus tools.approval.rules, judged against one call."""

    def __init__(self, policy: PathPolicy, extra: Iterable[str] = ()) -> None:
        self.policy = policy
        self.patterns = [Pattern.parse(p) for p in extra]

    def reason_for(self, tool: str, args: dict[str, Any], origin: tuple[str, str]) -> str | None:
        """Why this call needs a person's approval, or None. origin = (channel, chat_id)."""
        for p in self.patterns:
            if p.tool is not None and fnmatchcase(tool, p.tool):
                return f"the {tool} tool is listed in tools.approval.rules"
        if tool == "exec" and isinstance(args.get("command"), str):
            return self._command(args["command"], args.get("working_dir"))
        if tool in ("write_file", "edit_file") and isinstance(args.get("path"), str):
            return self._write(args["path"])
        if tool == "message":
            target = (args.get("channel") or origin[0], args.get("chat_id") or origin[1])
            if tuple(map(str, target)) != origin:
                return f"sends a message to another chat ({target[0]}:{target[1]})"
        return None

    @staticmethod
    def hard_denied(tool: str, args: dict[str, Any]) -> bool:
        """The exec guard blocks this call outright: asking a person would change nothing."""
        from nanobot.security.guard import check_command

        command = args.get("command")
        return tool == "exec" and isinstance(command, str) and bool(check_command(command))

    def _write(self, raw: str) -> str | None:
        if self.policy.restrict:
            return None  # the path policy keeps writes in the workspace
        try:
            real = self.policy.resolve(raw, write=True)
        except PathRefused:
            return None  # the tool refuses it
        workspace = Path(os.path.realpath(self.policy.workspace))
        return None if real.is_relative_to(workspace) else f"writes outside the workspace ({real})"

    def _command(self, command: str, working_dir: Any) -> str | None:
        from nanobot.security.guard import check_command

        if check_command(command):
            return None  # a hard deny: the exec tool refuses it, no approval can change that
        try:
            cwd = self.policy.check_dir(working_dir if isinstance(working_dir, str) else None)
        except PathRefused:
            return None  # the exec tool refuses it
        try:
            return self._judge(command, cwd)
        except (TooDeep, RecursionError):
            return "a command too deeply nested to judge"

    def _judge(self, command: str, cwd: Path) -> str | None:
        env: dict[str, str] = {"IFS": " \t\n"}
        downloaded = False  # an earlier command of this pipeline downloads something
        for cmd in parse(command):
            for op, word in cmd.redirects:
                target = " ".join(a.text for a in expand(word, env))
                if op in _OVERWRITE_OPS and _existing_file(target, cwd):
                    return f"replaces the contents of {target} (> on an existing file)"
            words = _unwrap(resolve(cmd, env))
            if not words:
                continue
            if SENTINEL in words[0]:
                return "runs a command whose name is only known at run time"
            name = posixpath.basename(words[0])
            for p in self.patterns:
                if p.tool is None and p.matches([name, *words[1:]]):
                    return f"matches tools.approval.rules entry {' '.join(p.words)!r}"
            reason = _default(name, words[1:])
            if reason:
                return f"{reason} ({name})"
            if cmd.piped and downloaded and name in _RUNNERS:
                return f"pipes a download into {name}"
            downloaded = (downloaded and cmd.piped) or name in _DOWNLOADERS
        return None


def _default(name: str, args: list[str]) -> str | None:
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name == "find" and any(a in ("-delete", "-exec", "-execdir", "-ok") for a in args):
        return "deletes or runs commands on found files"
    if name == "dd" and any(a.startswith("of=") for a in args):
        return "writes a file with dd"
    verbs = [a for a in args if not a.startswith("-")]
    if name in ("python", "python3") and args[:2] == ["-m", "pip"]:
        name, verbs = "pip", [a for a in args[2:] if not a.startswith("-")]
    if name in _INSTALLERS and verbs and verbs[0] in _INSTALL_VERBS:
        return "installs or removes packages"
    if name in _PUBLISHERS and set(verbs[:2]) & _PUBLISH:
        return "pushes or publishes"
    return None


def _unwrap(args: list[Arg]) -> list[str]:
    """The words of the command that really runs under sudo/env/timeout/xargs/…"""
    words = [a.text for a in args]
    while words and posixpath.basename(words[0]) in _WRAPPERS:
        name = posixpath.basename(words[0])
        takes_value, i = _WRAPPERS[name], 1
        while i < len(words) and words[i].startswith("-") and words[i] != "--":
            i += 2 if words[i] in takes_value else 1
        while name == "env" and i < len(words) and "=" in words[i]:
            i += 1
        i += i < len(words) and words[i] == "--"
        words = words[i + _POSITIONAL.get(name, 0) :]
    return words


def _existing_file(target: str, cwd: Path) -> bool:
    if not target or SENTINEL in target or target in _HARMLESS_TARGETS or target.isdigit():
        return False
    path = Path(target) if target.startswith("/") else cwd / target
    try:
        return path.is_file()
    except OSError:
        return False
