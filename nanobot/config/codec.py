"""Turns camelCase JSON into the schema dataclasses and back, validating types and ranges."""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

from nanobot.config import secrets
from nanobot.config.compat import Leftovers
from nanobot.errors import ConfigError

_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _type_name(value) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string"}.get(
        type(value), {list: "a list", dict: "an object", type(None): "null"}.get(type(value), "?")
    )


class Decoder:
    """One decode pass over a config file; collects warnings, raises ConfigError on the first error.

    null means "not set" (the default applies), as nanobot writes it; so does "" for a key with
    fixed choices. Settings of nanobot features we lack go to `leftovers` (config.compat).
    """

    def __init__(self, source: Path) -> None:
        self.source = source
        self.leftovers = Leftovers()
        self.warnings: list[str] = []
        self.secrets: list[str] = []
        self.literal_secrets: list[str] = []
        self.origins: list[secrets.SecretOrigin] = []

    def fail(self, path: str, problem: str, fix: str) -> typing.NoReturn:
        raise ConfigError(f"config error in {self.source}: {path}: {problem} — fix: {fix}")

    def decode(self, cls, data, path: str = ""):
        if not isinstance(data, dict):
            self.fail(
                path or "(top level)", f"expected an object, got {_type_name(data)}", "use {…}"
            )
        hints = typing.get_type_hints(cls)
        by_key = {to_camel(f.name): f for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            f = by_key.get(key)
            sub = f"{path}.{key}" if path else key
            if f is None:
                if self.leftovers.take(path, key, value, self.fail):
                    continue
                import difflib  # only for a misspelt key

                close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
                hint = (
                    f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(by_key)}"
                )
                self.warnings.append(f"unknown config key '{sub}' in {self.source} ignored; {hint}")
                continue
            if value is None or (value == "" and f.metadata.get("choices")):
                continue  # not set: the default applies
            kwargs[f.name] = self.value(hints[f.name], value, sub, dict(f.metadata))
        return cls(**kwargs)

    def value(self, tp, value, path: str, meta: dict):
        origin = typing.get_origin(tp)
        if is_dataclass(tp):
            return self.decode(tp, value, path)
        if origin is list:
            if not isinstance(value, list):
                self.fail(path, f"expected a list, got {_type_name(value)}", 'write it as ["…"]')
            return [
                self.scalar(str, v, f"{path}[{i}]", meta, lenient=True)
                for i, v in enumerate(value)
                if v is not None
            ]
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(
                    path,
                    f"expected an object, got {_type_name(value)}",
                    'write it as {"Name": "value"}',
                )
            item = typing.get_args(tp)[1] if typing.get_args(tp) else str
            return {
                str(k): self.value(item, v, f"{path}.{k}", meta)
                for k, v in value.items()
                if v is not None
            }
        if isinstance(tp, types.UnionType):
            return self.union(typing.get_args(tp), value, path, meta)
        return self.scalar(tp, value, path, meta)

    def union(self, options: tuple, value, path: str, meta: dict):
        """A scalar that may be one of several types (`bool | str`: true, false or a choice)."""
        for tp in options:
            if type(value) is tp or (tp is float and type(value) is int):
                return self.scalar(tp, value, path, meta)
        shown = " or ".join(
            [_type_name(tp()) for tp in options if tp is not str]
            + [f"one of {', '.join(meta.get('choices') or ('a string',))}"] * (str in options)
        )
        self.fail(path, f"expected {shown}, got {_type_name(value)}", f"write {shown}")

    def scalar(self, tp, value, path: str, meta: dict, lenient: bool = False):
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(
                    path, f"expected true/false, got {_type_name(value)}", "write true or false"
                )
            return value
        if tp in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(
                    path, f"expected a number, got {_type_name(value)}", "write a plain number"
                )
            if tp is int and isinstance(value, float) and not value.is_integer():
                self.fail(path, f"expected a whole number, got {value}", "drop the fraction")
            value = tp(value)
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                self.fail(path, f"{value} is out of range", f"use a value from {lo} to {hi}")
            return value
        if tp is str:
            if lenient and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # Telegram ids are often written as numbers
            if not isinstance(value, str):
                self.fail(
                    path, f"expected a string, got {_type_name(value)}", 'put the value in "quotes"'
                )
            choices = meta.get("choices")
            if choices and value not in choices:
                self.fail(path, f"'{value}' is not allowed", f"use one of {', '.join(choices)}")
            if meta.get("secret") and value:
                value = self.resolve_secret(value, path)
            return value
        raise TypeError(f"unsupported schema type {tp!r} at {path}")

    def resolve_secret(self, value: str, path: str) -> str:
        """ "${NAME}" → environment; "file:PATH" → file contents (PATH may use ${NAME});
        "keyring:SERVICE/ACCOUNT" → the desktop keyring (config.secrets). Where each came
        from is recorded in `origins` (never the secret itself)."""
        if value.startswith(secrets.PREFIX):
            try:
                secret = secrets.resolve(value)
            except secrets.KeyringError as e:
                self.fail(path, e.problem, e.fix)
            self.origins.append(secrets.SecretOrigin(path, secrets.KEYRING, value))
        elif value.startswith("file:"):
            fname = self.expand(value[5:], path)
            try:
                secret = Path(fname).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as e:
                self.fail(
                    path,
                    f"cannot read secret file {fname} ({e.strerror})",
                    "create it or fix the path",
                )
            self.origins.append(secrets.SecretOrigin(path, secrets.FILE, fname))
        elif _REF_RE.fullmatch(value):
            secret = self.expand(value, path)
            self.origins.append(secrets.SecretOrigin(path, secrets.ENVIRONMENT, value[2:-1]))
        else:
            self.literal_secrets.append(path)
            self.origins.append(secrets.SecretOrigin(path, secrets.LITERAL, ""))
            secret = value
        if not secret:
            self.fail(
                path, "the secret reference resolves to an empty value", "set it or remove the key"
            )
        self.secrets.append(secret)
        return secret

    def expand(self, text: str, path: str) -> str:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in os.environ:
                self.fail(
                    path,
                    f"environment variable {name} is not set",
                    f"export {name}=… or change the reference",
                )
            return os.environ[name]

        return _REF_RE.sub(sub, text)


def encode(obj) -> dict:
    """A dataclass tree as a camelCase dict (defaults included)."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[to_camel(f.name)] = (
            encode(v) if is_dataclass(v) else (list(v) if isinstance(v, list) else v)
        )
    return out
