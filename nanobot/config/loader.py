"""Load, validate and save ~/.nanobot/config.json (camelCase, nanobot-compatible)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nanobot import paths
from nanobot.config.codec import Decoder, encode
from nanobot.config.schema import Config
from nanobot.config.secrets import ENVIRONMENT, SecretOrigin
from nanobot.errors import ConfigError
from nanobot.security.redact import REDACTOR

# Standard environment variables that fill an empty providers.<name>.apiKey.
ENV_KEYS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "groq": "GROQ_API_KEY",
    "zhipu": "ZHIPUAI_API_KEY",
    "dashscope": "DASHSCOPE_API_KEY",
    "moonshot": "MOONSHOT_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "aihubmix": "AIHUBMIX_API_KEY",
    "vllm": "HOSTED_VLLM_API_KEY",
}
# The official SDKs' base-URL variables fill an empty providers.<name>.apiBase.
ENV_BASES = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}


@dataclass
class LoadInfo:
    """What the loader learned besides the values: for status, doctor and the audit trail."""

    path: Path
    exists: bool
    warnings: list[str] = field(default_factory=list)  # all of them, for people
    permission_warnings: list[str] = field(default_factory=list)  # the mode ones among them
    literal_secrets: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    origins: list[SecretOrigin] = field(default_factory=list)  # where each secret lives


def _move_aliases(data: dict, dec: Decoder) -> None:
    """Fold the reference documents' spellings (agents.defaults.*) into tools.* — stricter wins."""
    defaults = (
        data.get("agents", {}).get("defaults") if isinstance(data.get("agents"), dict) else None
    )
    if not isinstance(defaults, dict):
        return
    tools = data.setdefault("tools", {})
    if not isinstance(tools, dict):
        return
    if "restrictToWorkspace" in defaults:
        alias = defaults.pop("restrictToWorkspace")
        if "restrictToWorkspace" in tools and tools["restrictToWorkspace"] != alias:
            dec.warnings.append(
                "agents.defaults.restrictToWorkspace and tools.restrictToWorkspace disagree; "
                "using true (the stricter). Keep only one of them."
            )
            tools["restrictToWorkspace"] = True
        else:
            tools["restrictToWorkspace"] = alias
    if "execConfig" in defaults:
        alias = defaults.pop("execConfig")
        exec_cfg = tools.setdefault("exec", {})
        if not isinstance(alias, dict) or not isinstance(exec_cfg, dict):
            dec.fail(
                "agents.defaults.execConfig", "expected an object", 'write it as {"timeout": 30}'
            )
        for key, value in alias.items():
            if key == "timeout" and "timeout" in exec_cfg and exec_cfg["timeout"] != value:
                dec.warnings.append(
                    "agents.defaults.execConfig.timeout and tools.exec.timeout disagree; "
                    "using the smaller. Keep only one of them."
                )
                if isinstance(value, (int, float)) and isinstance(
                    exec_cfg["timeout"], (int, float)
                ):
                    exec_cfg["timeout"] = min(value, exec_cfg["timeout"])
                continue
            exec_cfg.setdefault(key, value)


def _mode_warnings(path: Path, exists: bool) -> list[str]:
    """Loose modes, each with the fix for that file or folder. Only NANOBOT_HOME itself is ever
    advised a chmod 700; a config kept in another folder (say /tmp) is advised to move."""
    out = []
    home = paths.home()
    folder = path.parent
    if folder == home and home.exists() and stat.S_IMODE(home.stat().st_mode) & 0o077:
        mode = oct(stat.S_IMODE(home.stat().st_mode))[2:]
        out.append(f"{home} is accessible by group/others (mode {mode}); run: chmod 700 {home}")
    elif folder != home and exists and stat.S_IMODE(folder.stat().st_mode) & 0o022:
        out.append(
            f"{path} is in {folder}, which others can write to (they could replace it); "
            f"move it into {home}: mv {path} {home / 'config.json'}"
        )
    if exists and stat.S_IMODE(path.stat().st_mode) & 0o077:
        mode = oct(stat.S_IMODE(path.stat().st_mode))[2:]
        out.append(f"{path} is readable by group/others (mode {mode}); run: chmod 600 {path}")
    return out


def load_config(path: Path | None = None) -> tuple[Config, LoadInfo]:
    """Read config.json (or defaults when absent), resolve secret references, register secrets."""
    path = path or paths.config_path()
    dec = Decoder(path)
    exists = path.exists()
    data: dict = {}
    if exists:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"config error: cannot read {path} ({e.strerror}) — fix: check its owner and mode"
            ) from None
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"config error in {path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}) "
                "— fix: correct the syntax (a JSON validator helps) or run 'nanobot onboard' for a fresh file"
            ) from None
        if not isinstance(data, dict):
            dec.fail("(top level)", "expected an object", "the file must start with {")
        _move_aliases(data, dec)
    cfg = dec.decode(Config, data)
    for name, var in ENV_KEYS.items():
        prov = getattr(cfg.providers, name)
        if not prov.api_key and os.environ.get(var):
            prov.api_key = os.environ[var]
            dec.secrets.append(prov.api_key)
            dec.origins.append(SecretOrigin(f"providers.{name}.apiKey", ENVIRONMENT, var))
    for name, var in ENV_BASES.items():
        prov = getattr(cfg.providers, name)
        if not prov.api_base and os.environ.get(var):
            prov.api_base = os.environ[var]
    modes = _mode_warnings(path, exists)
    info = LoadInfo(
        path,
        exists,
        warnings=dec.warnings + dec.leftovers.warnings(path) + modes,
        permission_warnings=modes,
        literal_secrets=dec.literal_secrets,
        secrets=dec.secrets,
        origins=dec.origins,
    )
    REDACTOR.add(*info.secrets)
    for prov_name in ENV_KEYS:
        REDACTOR.add(*getattr(cfg.providers, prov_name).extra_headers.values())
    return cfg, info


def workspace_path(cfg: Config) -> Path:
    """agents.defaults.workspace with ~ and a leading ~/.nanobot mapped into NANOBOT_HOME."""
    raw = cfg.agents.defaults.workspace
    if raw in ("", "~/.nanobot/workspace"):
        return paths.default_workspace()
    if raw.startswith("~/.nanobot/"):
        return paths.home() / raw[len("~/.nanobot/") :]
    p = Path(raw).expanduser()
    return p if p.is_absolute() else paths.home() / p


def save_config(data: dict | Config, path: Path | None = None) -> Path:
    """Write config.json atomically with mode 0600 inside a 0700 NANOBOT_HOME."""
    path = path or paths.config_path()
    paths.ensure_dir(path.parent)
    body = encode(data) if isinstance(data, Config) else data
    paths.atomic_write(path, json.dumps(body, indent=2) + "\n")
    return path
